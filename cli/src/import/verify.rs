//! Checking an import: per run, the info, params and tags, and per metric series the number of
//! points and an order-independent checksum of them, compared between source and store.

use std::collections::{BTreeMap, HashMap};

use quiver_store::{ImportLoggedModel, ImportRegisteredModel, Metric, Store};

use super::source::SourceRun;

/// Points per page when the store's series are read back.
const PAGE: u64 = 1_000_000;

/// The point count and checksum of each metric series of a run, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SeriesSums(pub(crate) BTreeMap<String, (u64, u64)>);

/// A 64-bit mix of one point (splitmix64's finalizer over its fields); NaNs of any payload are
/// one value, as they are one value to MLflow.
fn point_hash(step: i64, timestamp: i64, value: f64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let bits = if value.is_nan() {
        f64::NAN.to_bits()
    } else {
        value.to_bits()
    };
    mix(mix(mix(step as u64) ^ timestamp as u64) ^ bits)
}

impl SeriesSums {
    /// Adds points (any order: the checksum is a wrapping sum).
    pub(crate) fn add(&mut self, points: &[Metric]) {
        for m in points {
            let e = self.0.entry(m.key.clone()).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.wrapping_add(point_hash(m.step, m.timestamp, m.value));
        }
    }

    /// The points in all series.
    pub(crate) fn points(&self) -> u64 {
        self.0.values().map(|(n, _)| n).sum()
    }

    /// The sums of the series of run `run_id` as the store has them.
    pub(crate) fn of_store(store: &Store, run_id: &str) -> quiver_store::Result<SeriesSums> {
        let mut sums = SeriesSums::default();
        for latest in store.latest_metrics(run_id)? {
            let mut token: Option<String> = None;
            loop {
                let (h, next) =
                    store.metric_history(run_id, &latest.key, token.as_deref(), Some(PAGE))?;
                let e = sums.0.entry(latest.key.clone()).or_insert((0, 0));
                for i in 0..h.len() {
                    e.0 += 1;
                    e.1 = e.1.wrapping_add(point_hash(
                        h.steps()[i],
                        h.timestamps()[i],
                        h.values()[i],
                    ));
                }
                match next {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
        }
        Ok(sums)
    }
}

/// (name, digest, tag count) of each dataset input, sorted: what an import must keep.
fn input_keys(inputs: &[quiver_store::DatasetInput]) -> Vec<(&str, &str, usize)> {
    let mut v: Vec<_> = inputs
        .iter()
        .map(|i| {
            (
                i.dataset.name.as_str(),
                i.dataset.digest.as_str(),
                i.tags.len(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Keys and values, to compare as sets.
fn pairs<'a>(kv: impl Iterator<Item = (&'a String, &'a String)>) -> HashMap<&'a str, &'a str> {
    kv.map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The differences between a source run (with the sums of its points) and the same run in the
/// store; empty when they agree.
pub(crate) fn differences(
    store: &Store,
    src: &SourceRun,
    src_sums: &SeriesSums,
) -> quiver_store::Result<Vec<String>> {
    let mut out = Vec::new();
    let run = match store.get_run(&src.id) {
        Ok(r) => r,
        Err(quiver_store::Error::NotFound(_)) => return Ok(vec!["missing".into()]),
        Err(e) => return Err(e),
    };
    let i = &run.info;
    let mut check = |what: &str, same: bool, detail: String| {
        if !same {
            out.push(format!("{what}: {detail}"));
        }
    };
    check(
        "status",
        i.status == src.status,
        format!("{:?} != {:?}", i.status, src.status),
    );
    check(
        "times",
        (i.start_time, i.end_time) == (src.start_time, src.end_time),
        format!(
            "{:?} != {:?}",
            (i.start_time, i.end_time),
            (src.start_time, src.end_time)
        ),
    );
    check(
        "lifecycle stage",
        i.lifecycle_stage == src.stage,
        format!("{:?} != {:?}", i.lifecycle_stage, src.stage),
    );
    check(
        "user",
        i.user_id == src.user_id,
        format!("{} != {}", i.user_id, src.user_id),
    );
    let params = pairs(run.params.iter().map(|p| (&p.key, &p.value)));
    let src_params = pairs(src.params.iter().map(|p| (&p.key, &p.value)));
    check(
        "params",
        params == src_params,
        format!("{} != {} params", params.len(), src_params.len()),
    );
    let tags = pairs(run.tags.iter().map(|t| (&t.key, &t.value)));
    let src_tags = pairs(src.tags.iter().map(|t| (&t.key, &t.value)));
    let missing_tags = src_tags
        .iter()
        .filter(|(k, v)| tags.get(*k) != Some(v))
        .count();
    check("tags", missing_tags == 0, format!("{missing_tags} differ"));
    let sorted = input_keys(&run.dataset_inputs);
    let src_inputs = input_keys(&src.inputs);
    check(
        "dataset inputs",
        sorted == src_inputs,
        format!("{} != {}", sorted.len(), src_inputs.len()),
    );
    let sums = SeriesSums::of_store(store, &src.id)?;
    for (key, (n, sum)) in &src_sums.0 {
        match sums.0.get(key) {
            Some((m, s)) if (m, s) == (n, sum) => {}
            Some((m, _)) => out.push(format!(
                "metric {key}: {m} points (source {n}) or other values"
            )),
            None => out.push(format!("metric {key}: missing")),
        }
    }
    Ok(out)
}

/// How the registry differs from the source's models (descriptions, tags, each version's
/// stage, source, run, description, tags and aliases); empty when it agrees.
pub(crate) fn registry_differences(store: &Store, models: &[ImportRegisteredModel]) -> Vec<String> {
    let mut out = Vec::new();
    let sorted = |tags: &[quiver_store::Tag]| {
        let mut v: Vec<(String, String)> = tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        v.sort();
        v
    };
    for m in models {
        let got = match store.get_registered_model(&m.name) {
            Ok(g) => g,
            Err(e) => {
                out.push(format!("model {}: {e}", m.name));
                continue;
            }
        };
        if got.description != m.description || sorted(&got.tags) != sorted(&m.tags) {
            out.push(format!("model {}: description or tags differ", m.name));
        }
        for v in &m.versions {
            let n = v.version.to_string();
            match store.get_model_version(&m.name, &n) {
                Ok(g) => {
                    let mut aliases: Vec<&str> = m
                        .aliases
                        .iter()
                        .filter(|(_, to)| *to == v.version)
                        .map(|(a, _)| a.as_str())
                        .collect();
                    aliases.sort();
                    let mut have: Vec<&str> = g.aliases.iter().map(String::as_str).collect();
                    have.sort();
                    if (
                        g.current_stage,
                        g.source.as_str(),
                        g.run_id.as_str(),
                        g.description.as_str(),
                    ) != (
                        v.stage,
                        v.source.as_str(),
                        v.run_id.as_str(),
                        v.description.as_str(),
                    ) || sorted(&g.tags) != sorted(&v.tags)
                        || have != aliases
                    {
                        out.push(format!("model {} version {n}: differs", m.name));
                    }
                }
                Err(e) => out.push(format!("model {} version {n}: {e}", m.name)),
            }
        }
    }
    out
}

/// How the store's logged model differs from `expected` (its experiment id the store's): the
/// record, tags and params; a model deleted in the source must not be found.
pub(crate) fn logged_model_differences(
    store: &Store,
    expected: &ImportLoggedModel,
    deleted: bool,
) -> Vec<String> {
    let got = match store.get_logged_model(&expected.model_id) {
        Ok(_) if deleted => return vec!["deleted in the source, live here".into()],
        Err(_) if deleted => return Vec::new(),
        Ok(g) => g,
        Err(e) => return vec![e.to_string()],
    };
    let mut out = Vec::new();
    if (
        got.experiment_id.as_str(),
        got.name.as_str(),
        got.status,
        got.status_message.as_str(),
        got.model_type.as_str(),
        got.source_run_id.as_str(),
        got.creation_timestamp,
    ) != (
        expected.experiment_id.as_str(),
        expected.name.as_str(),
        expected.status,
        expected.status_message.as_str(),
        expected.model_type.as_str(),
        expected.source_run_id.as_str(),
        expected.creation_time,
    ) {
        out.push("its record differs".to_string());
    }
    let pairs = |kv: Vec<(&String, &String)>| {
        let mut v: Vec<(String, String)> = kv
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    };
    if pairs(got.tags.iter().map(|t| (&t.key, &t.value)).collect())
        != pairs(expected.tags.iter().map(|t| (&t.key, &t.value)).collect())
    {
        out.push("its tags differ".to_string());
    }
    if pairs(got.params.iter().map(|p| (&p.key, &p.value)).collect())
        != pairs(expected.params.iter().map(|p| (&p.key, &p.value)).collect())
    {
        out.push("its params differ".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_ignore_order_and_nan_payloads() {
        let a = [
            Metric::new("m", 1.0, 1, 1),
            Metric::new("m", f64::NAN, 2, 2),
        ];
        let b = [
            Metric::new("m", f64::from_bits(f64::NAN.to_bits() | 1), 2, 2),
            Metric::new("m", 1.0, 1, 1),
        ];
        let (mut x, mut y) = (SeriesSums::default(), SeriesSums::default());
        x.add(&a);
        y.add(&b);
        assert_eq!(x, y);
        assert_eq!(x.points(), 2);
        y.add(&[Metric::new("m", 1.0, 1, 2)]);
        assert_ne!(x, y);
        let mut z = SeriesSums::default();
        z.add(&[
            Metric::new("m", 1.0, 2, 1),
            Metric::new("m", f64::NAN, 1, 2),
        ]);
        assert_ne!(x, z, "a different point, not a different order");
    }
}
