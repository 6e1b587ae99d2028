//! Checking an export by reading the target back over REST: per run its info, params, tags
//! (parent links mapped), dataset inputs, every metric series (point count and the
//! order-independent checksum of [`SeriesSums`], read through paged `metrics/get-history`) and
//! its artifact paths and sizes; per model version its stage, source, run, description, tags and
//! aliases.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::bail;
use indicatif::ProgressBar;
use quiver_store::{LifecycleStage, Metric, ModelVersion, RegisteredModel, Run, RunInfo, Store};
use serde_json::Value;

use super::journal::Journal;
use super::runs::{self, comparable, proxied_path, PARENT_TAG};
use super::{bar_style, registry, Selection};
use crate::admin;
use crate::import::verify::SeriesSums;
use crate::mlflow_rest::MlflowRest;

/// The models the export wrote: registered models with their live versions, logged models.
#[derive(Debug, Clone, Copy)]
pub(super) struct Models<'a> {
    pub(super) registry: &'a [(RegisteredModel, Vec<ModelVersion>)],
    pub(super) logged: &'a [quiver_store::LoggedModel],
}

/// The outcome of checking one run: its points and its differences.
type RunCheck = anyhow::Result<(u64, Vec<String>)>;

/// Key/value pairs of a JSON list of `{key, value}`.
fn pairs(v: &Value) -> BTreeMap<String, String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|kv| (admin::json_str(kv, "key"), admin::json_str(kv, "value")))
                .collect()
        })
        .unwrap_or_default()
}

/// The sums of the target run's series `keys`, read page by page.
pub(crate) fn target_sums(
    rest: &MlflowRest,
    target: &str,
    keys: &[String],
) -> anyhow::Result<SeriesSums> {
    let mut sums = SeriesSums::default();
    for key in keys {
        rest.metric_history(target, key, |page| {
            let points: Vec<Metric> = page
                .iter()
                .map(|p| Metric::new(key, comparable(p.value), p.timestamp, p.step))
                .collect();
            sums.add(&points);
            Ok(())
        })?;
    }
    Ok(sums)
}

/// How target run `target` differs from source run `run` (whose points sum to `sums` and
/// whose artifact files are `files`); `deleted` says whether it must be deleted there (its own
/// stage, or its experiment's); `parent` maps a source run id to its target id.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_differences(
    rest: &MlflowRest,
    run: &Run,
    target: &str,
    sums: &SeriesSums,
    files: &[(String, u64)],
    deleted: bool,
    parent: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let got = rest.get_run(target)?;
    let info = &got["info"];
    let i = &run.info;
    let mut check = |what: &str, ok: bool, detail: String| {
        if !ok {
            out.push(format!("{what}: {detail}"));
        }
    };
    let status = admin::json_str(info, "status");
    check(
        "status",
        status == i.status.as_str(),
        format!("{status} (source {})", i.status.as_str()),
    );
    let start = admin::json_i64(info, "start_time").ok();
    let end = admin::json_i64(info, "end_time").ok();
    check(
        "times",
        (start, end) == (Some(i.start_time), i.end_time),
        format!(
            "{start:?}, {end:?} (source {}, {:?})",
            i.start_time, i.end_time
        ),
    );
    let user = admin::json_str(info, "user_id");
    check(
        "user",
        user == i.user_id,
        format!("{user} (source {})", i.user_id),
    );
    let name = admin::json_str(info, "run_name");
    check(
        "name",
        i.run_name.is_empty() || name == i.run_name,
        format!("{name} (source {})", i.run_name),
    );
    let stage = admin::json_str(info, "lifecycle_stage");
    let want = if deleted {
        LifecycleStage::Deleted
    } else {
        LifecycleStage::Active
    };
    check(
        "lifecycle stage",
        stage == want.as_str(),
        format!("{stage} (source {})", want.as_str()),
    );
    let params = pairs(&got["data"]["params"]);
    let src_params: BTreeMap<String, String> = run
        .params
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    check(
        "params",
        params == src_params,
        format!("{} params (source {})", params.len(), src_params.len()),
    );
    let tags = pairs(&got["data"]["tags"]);
    let differ: Vec<&str> = run
        .tags
        .iter()
        .filter(|t| !(t.key == "mlflow.runName" && t.value != i.run_name))
        .filter(|t| {
            let want = if t.key == PARENT_TAG {
                parent(&t.value).unwrap_or_else(|| t.value.clone())
            } else {
                t.value.clone()
            };
            tags.get(&t.key) != Some(&want)
        })
        .map(|t| t.key.as_str())
        .collect();
    check("tags", differ.is_empty(), differ.join(", "));
    let mut inputs: Vec<(String, String)> = got["inputs"]["dataset_inputs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    (
                        admin::json_str(&d["dataset"], "name"),
                        admin::json_str(&d["dataset"], "digest"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    inputs.sort();
    let mut src_inputs: Vec<(String, String)> = run
        .dataset_inputs
        .iter()
        .map(|d| (d.dataset.name.clone(), d.dataset.digest.clone()))
        .collect();
    src_inputs.sort();
    check(
        "dataset inputs",
        inputs == src_inputs,
        format!("{inputs:?} (source {src_inputs:?})"),
    );
    let keys: Vec<String> = sums.0.keys().cloned().collect();
    let have = target_sums(rest, target, &keys)?;
    for (key, (n, sum)) in &sums.0 {
        match have.0.get(key) {
            Some((m, s)) if (m, s) == (n, sum) => {}
            Some((m, _)) => out.push(format!(
                "metric {key}: {m} points (source {n}) or other values"
            )),
            None => out.push(format!("metric {key}: missing")),
        }
    }
    if !files.is_empty() {
        let uri = admin::json_str(info, "artifact_uri");
        let have: HashMap<String, u64> = match proxied_path(&uri) {
            Some(dir) => rest.walk_proxied(&dir)?.into_iter().collect(),
            None => HashMap::new(),
        };
        for (rel, size) in files {
            match have.get(rel) {
                Some(s) if s == size => {}
                Some(s) => out.push(format!("artifact {rel}: {s} bytes (source {size})")),
                None => out.push(format!("artifact {rel}: missing")),
            }
        }
    }
    Ok(out)
}

/// How the target's registry differs from the store's models (`source` maps a version to the
/// source it was exported with).
pub(crate) fn registry_differences(
    rest: &MlflowRest,
    models: &[(RegisteredModel, Vec<ModelVersion>)],
    source: &dyn Fn(&ModelVersion) -> anyhow::Result<(String, String)>,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (m, versions) in models {
        let got = match rest.get("registered-models/get", &[("name", &m.name)]) {
            Ok(g) => g["registered_model"].clone(),
            Err(e) => {
                out.push(format!("model {}: {e:#}", m.name));
                continue;
            }
        };
        let src_tags: BTreeMap<String, String> = m
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        if admin::json_str(&got, "description") != m.description || pairs(&got["tags"]) != src_tags
        {
            out.push(format!("model {}: description or tags differ", m.name));
        }
        for v in versions {
            let g = match rest.get(
                "model-versions/get",
                &[("name", &m.name), ("version", &v.version)],
            ) {
                Ok(g) => g["model_version"].clone(),
                Err(e) => {
                    out.push(format!("model {} version {}: {e:#}", m.name, v.version));
                    continue;
                }
            };
            let (want_source, want_run) = source(v)?;
            let mut aliases: Vec<String> = g["aliases"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            aliases.sort();
            let mut src_aliases = v.aliases.clone();
            src_aliases.sort();
            let vtags: BTreeMap<String, String> = v
                .tags
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect();
            let same = admin::json_str(&g, "current_stage") == v.current_stage.as_str()
                && admin::json_str(&g, "source") == want_source
                && admin::json_str(&g, "run_id") == want_run
                && admin::json_str(&g, "description") == v.description
                && pairs(&g["tags"]) == vtags
                && aliases == src_aliases;
            if !same {
                out.push(format!("model {} version {}: differs", m.name, v.version));
            }
        }
    }
    Ok(out)
}

/// Reads every exported run of the selection, and the registry, back from the target and
/// compares; an error when anything differs.
pub(super) fn all(
    store: &Store,
    rest: &MlflowRest,
    journal: &Journal,
    sel: &Selection,
    sums: &mut HashMap<String, SeriesSums>,
    models: Models<'_>,
    jobs: u16,
) -> anyhow::Result<()> {
    let Models {
        registry: models,
        logged,
    } = models;
    let exported: Vec<&RunInfo> = sel
        .runs
        .iter()
        .filter(|r| journal.target_run(&r.run_id).is_some())
        .collect();
    let bar = ProgressBar::new(exported.len() as u64)
        .with_style(bar_style(
            "{prefix:>11} [{bar:30}] {pos}/{len} runs {per_sec}",
        ))
        .with_prefix("verify");
    // The experiments: the target's stage and tags (those it created), and which of them are
    // deleted there (their runs are then deleted too).
    let mut problems = Vec::new();
    let mut deleted_exps: HashSet<&str> = HashSet::new();
    for e in &sel.experiments {
        let Some((target, created)) = journal.experiments.get(&e.experiment_id) else {
            continue;
        };
        let got = rest.get("experiments/get", &[("experiment_id", target)])?["experiment"].clone();
        let stage = admin::json_str(&got, "lifecycle_stage");
        if stage == LifecycleStage::Deleted.as_str() {
            deleted_exps.insert(e.experiment_id.as_str());
        }
        if *created {
            let tags = pairs(&got["tags"]);
            let same_tags = e.tags.iter().all(|t| tags.get(&t.key) == Some(&t.value));
            if stage != e.lifecycle_stage.as_str() || !same_tags {
                problems.push(format!(
                    "experiment {} (target {target}): stage {stage} (source {}) or tags differ",
                    e.experiment_id,
                    e.lifecycle_stage.as_str()
                ));
            }
        }
    }
    let parent = |src: &str| journal.target_run(src).map(str::to_owned);
    // Each run's sums: those of the points sent now, else read from the store.
    let sums: Vec<Option<SeriesSums>> = exported.iter().map(|r| sums.remove(&r.run_id)).collect();
    let sums = Mutex::new(sums);
    let next = AtomicUsize::new(0);
    let found: Mutex<Vec<(usize, RunCheck)>> = Mutex::new(Vec::new());
    let check = |i: usize| -> RunCheck {
        let info = exported[i];
        let run = store.get_run(&info.run_id).map_err(admin::store_error)?;
        let known = sums.lock().expect("sums")[i].take();
        let src = match known {
            Some(s) => s,
            None => store_sums(store, &info.run_id)?,
        };
        let files = runs::store_files(store, &run)?;
        let deleted = info.lifecycle_stage == LifecycleStage::Deleted
            || deleted_exps.contains(info.experiment_id.as_str());
        let target = journal.target_run(&info.run_id).expect("filtered above");
        let diffs = run_differences(rest, &run, target, &src, &files, deleted, &parent)?;
        Ok((
            src.points(),
            diffs
                .into_iter()
                .map(|d| format!("run {} (target {target}): {d}", info.run_id))
                .collect(),
        ))
    };
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= exported.len() {
                    return;
                }
                let outcome = check(i);
                bar.inc(1);
                found.lock().expect("results").push((i, outcome));
            });
        }
    });
    let mut found = found.into_inner().expect("results");
    found.sort_by_key(|(i, _)| *i);
    let mut points = 0;
    for (_, outcome) in found {
        let (n, diffs) = outcome?;
        points += n;
        problems.extend(diffs);
    }
    bar.finish_and_clear();
    let source_of = |v: &ModelVersion| -> anyhow::Result<(String, String)> {
        if let Some(source) = registry::map_model_source(&v.source, journal) {
            let run = journal.target_run(&v.run_id).unwrap_or(&v.run_id);
            return Ok((source, run.to_string()));
        }
        match journal.target_run(&v.run_id) {
            Some(new) if v.source.starts_with("runs:/") => Ok((
                registry::map_source(&v.source, &v.run_id, new, None),
                new.to_string(),
            )),
            Some(new) => {
                let old_uri = store
                    .get_run(&v.run_id)
                    .map(|r| r.info.artifact_uri)
                    .unwrap_or_default();
                let new_uri = admin::json_str(&rest.get_run(new)?["info"], "artifact_uri");
                let uris = (!old_uri.is_empty()).then_some((old_uri.as_str(), new_uri.as_str()));
                Ok((
                    registry::map_source(&v.source, &v.run_id, new, uris),
                    new.to_string(),
                ))
            }
            None => Ok((v.source.clone(), v.run_id.clone())),
        }
    };
    problems.extend(super::logged_models::differences(
        store, rest, journal, logged,
    )?);
    problems.extend(registry_differences(rest, models, &source_of)?);
    if problems.is_empty() {
        println!(
            "verified {} runs, {} metric points and {} registered models in the target: identical to the store",
            exported.len(),
            points,
            models.len()
        );
        return Ok(());
    }
    for p in problems.iter().take(50) {
        eprintln!("{p}");
    }
    bail!(
        "verification found {} differences between the store and the target",
        problems.len()
    )
}

/// The sums of a run's points in the store, as the target will have them.
fn store_sums(store: &Store, run_id: &str) -> anyhow::Result<SeriesSums> {
    let mut sums = SeriesSums::default();
    for latest in store.latest_metrics(run_id).map_err(admin::store_error)? {
        let mut token: Option<String> = None;
        loop {
            let (h, next) = store
                .metric_history(run_id, &latest.key, token.as_deref(), Some(1_000_000))
                .map_err(admin::store_error)?;
            let page: Vec<Metric> = (0..h.len())
                .map(|i| {
                    Metric::new(
                        &latest.key,
                        runs::comparable(h.values()[i]),
                        h.timestamps()[i],
                        h.steps()[i],
                    )
                })
                .collect();
            sums.add(&page);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
    }
    Ok(sums)
}
