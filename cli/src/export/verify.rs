//! Checking an export by reading the target back over REST: per run its info, params, tags
//! (parent links mapped), dataset inputs, every metric series (point count and the
//! order-independent checksum of [`SeriesSums`], read through paged `metrics/get-history`) and
//! its artifact paths and sizes; per model version its stage, source, run, description, tags and
//! aliases.

use std::collections::{BTreeMap, HashMap};

use quiver_store::{LifecycleStage, Metric, ModelVersion, RegisteredModel, Run};
use serde_json::Value;

use super::runs::{comparable, proxied_path, PARENT_TAG};
use crate::admin;
use crate::import::verify::SeriesSums;
use crate::mlflow_rest::MlflowRest;

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
