//! Exporting logged models (MLflow 3's models): each one created in its experiment's target with
//! its name, type, params, tags and its source run mapped, its artifacts uploaded under its new
//! artifact URI, then finalized with its status; then the model inputs and outputs of the
//! exported runs linked to the new ids. Model versions that register a logged model are mapped
//! to it by the registry export.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use quiver_store::{LifecycleStage, LoggedModel, LoggedModelSearch, LoggedModelStatus, Store};
use serde_json::{json, Value};

use super::journal::Journal;
use super::runs::{files_under, proxied_path, upload_tree};
use crate::admin;
use crate::mlflow_rest::{is_code, MlflowRest, Retry};

/// The logged models of experiments `experiment_ids`.
pub(crate) fn models(store: &Store, experiment_ids: &[String]) -> anyhow::Result<Vec<LoggedModel>> {
    let mut out = Vec::new();
    if experiment_ids.is_empty() {
        return Ok(out);
    }
    let mut token = None;
    loop {
        let page = store
            .search_logged_models(&LoggedModelSearch {
                experiment_ids: experiment_ids.to_vec(),
                max_results: 1000,
                page_token: token.take(),
                ..Default::default()
            })
            .map_err(admin::store_error)?;
        out.extend(page.models);
        match page.next_page_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    // Oldest first, as they were made.
    out.sort_by(|a, b| {
        (a.creation_timestamp, &a.model_id).cmp(&(b.creation_timestamp, &b.model_id))
    });
    Ok(out)
}

fn pairs<'a>(kv: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<Value> {
    kv.map(|(k, v)| json!({"key": k, "value": v})).collect()
}

/// Exports the logged models not yet done (one cut off earlier is deleted in the target and
/// made anew); returns how many were exported now and their artifact files.
pub(crate) fn export(
    store: &Store,
    rest: &MlflowRest,
    journal: &mut Journal,
    models: &[LoggedModel],
) -> anyhow::Result<(u64, u64)> {
    let (mut n, mut files) = (0, 0);
    for m in models {
        if journal.target_model(&m.model_id).is_some() {
            continue;
        }
        let Some((experiment, _)) = journal.experiments.get(&m.experiment_id).cloned() else {
            continue;
        };
        if journal.deleted_experiments.contains(&m.experiment_id) {
            // Deleted there by an earlier export: MLflow makes no models in it (a model made
            // here since is left out).
            continue;
        }
        if let Some((stale, _)) = journal.logged.get(&m.model_id).cloned() {
            match rest.delete(&format!("logged-models/{stale}"), &json!({})) {
                Ok(_) => {}
                Err(e) if is_code(&e, "RESOURCE_DOES_NOT_EXIST") => {}
                Err(e) => return Err(e.context(format!("discarding the cut-off model {stale}"))),
            }
        }
        let mut body = json!({
            "experiment_id": experiment,
            "name": m.name,
            "params": pairs(m.params.iter().map(|p| (&p.key, &p.value))),
            "tags": pairs(m.tags.iter().map(|t| (&t.key, &t.value))),
        });
        if !m.model_type.is_empty() {
            body["model_type"] = json!(m.model_type);
        }
        if !m.source_run_id.is_empty() {
            let run = journal
                .target_run(&m.source_run_id)
                .unwrap_or(&m.source_run_id);
            body["source_run_id"] = json!(run);
        }
        let made = rest
            .post("logged-models", &body, Retry::NotSent)
            .with_context(|| format!("creating logged model {} ({})", m.model_id, m.name))?;
        let info = &made["model"]["info"];
        let target = admin::json_str(info, "model_id");
        journal.record(&["l", &m.model_id, &target])?;
        if let Some(root) = proxied_path(&m.artifact_uri) {
            let (k, _) = upload_tree(store, rest, &root, &admin::json_str(info, "artifact_uri"))
                .with_context(|| format!("logged model {}", m.model_id))?;
            files += k;
        }
        if m.status != LoggedModelStatus::Pending {
            rest.patch(
                &format!("logged-models/{target}"),
                &json!({"model_id": target, "status": m.status.as_str()}),
            )?;
        }
        journal.record(&["L", &m.model_id, &target])?;
        n += 1;
    }
    Ok((n, files))
}

/// Links the model inputs and outputs of the exported (active) runs `run_ids` to the exported
/// logged models; returns how many runs were linked now.
pub(crate) fn link_runs(
    store: &Store,
    rest: &MlflowRest,
    journal: &mut Journal,
    run_ids: &[String],
) -> anyhow::Result<u64> {
    let mut n = 0;
    for src in run_ids {
        let Some(target) = journal.target_run(src).map(str::to_owned) else {
            continue;
        };
        if journal.linked.contains(src) {
            continue;
        }
        let run = store.get_run(src).map_err(admin::store_error)?;
        if run.info.lifecycle_stage == LifecycleStage::Deleted
            || (run.model_inputs.is_empty() && run.model_outputs.is_empty())
        {
            continue;
        }
        let outputs: Vec<Value> = run
            .model_outputs
            .iter()
            .filter_map(|o| {
                let id = journal.target_model(&o.model_id)?;
                Some(json!({"model_id": id, "step": o.step}))
            })
            .collect();
        if !outputs.is_empty() {
            rest.post(
                "runs/outputs",
                &json!({"run_id": target, "models": outputs}),
                Retry::Safe,
            )?;
        }
        let inputs: Vec<Value> = run
            .model_inputs
            .iter()
            .filter_map(|id| Some(json!({"model_id": journal.target_model(id)?})))
            .collect();
        if !inputs.is_empty() {
            rest.post(
                "runs/log-inputs",
                &json!({"run_id": target, "models": inputs}),
                Retry::Safe,
            )?;
        }
        journal.record(&["O", src])?;
        n += 1;
    }
    Ok(n)
}

/// How the exported logged models differ in the target (name, type, status, source run, params,
/// tags, artifact sizes).
pub(crate) fn differences(
    store: &Store,
    rest: &MlflowRest,
    journal: &Journal,
    models: &[LoggedModel],
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for m in models {
        let Some(target) = journal.target_model(&m.model_id) else {
            continue;
        };
        let got = match rest.get(&format!("logged-models/{target}"), &[]) {
            Ok(v) => v["model"].clone(),
            Err(e) => {
                out.push(format!("logged model {}: {e:#}", m.model_id));
                continue;
            }
        };
        let info = &got["info"];
        let kv = |v: &Value| -> BTreeMap<String, String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| (admin::json_str(x, "key"), admin::json_str(x, "value")))
                        .collect()
                })
                .unwrap_or_default()
        };
        let params: BTreeMap<String, String> = m
            .params
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        let tags = kv(&info["tags"]);
        let run = match journal.target_run(&m.source_run_id) {
            Some(r) => r.to_string(),
            None => m.source_run_id.clone(),
        };
        let same = admin::json_str(info, "name") == m.name
            && admin::json_str(info, "model_type") == m.model_type
            && admin::json_str(info, "status") == m.status.as_str()
            && admin::json_str(info, "source_run_id") == run
            && kv(&got["data"]["params"]) == params
            && m.tags.iter().all(|t| tags.get(&t.key) == Some(&t.value));
        if !same {
            out.push(format!(
                "logged model {} (target {target}): differs",
                m.model_id
            ));
        }
        if let (Some(root), Some(dest)) = (
            proxied_path(&m.artifact_uri),
            proxied_path(&admin::json_str(info, "artifact_uri")),
        ) {
            let want = files_under(store, &root)?;
            if !want.is_empty() {
                let have: HashMap<String, u64> = rest.walk_proxied(&dest)?.into_iter().collect();
                for (rel, size) in want {
                    if have.get(&rel) != Some(&size) {
                        out.push(format!(
                            "logged model {} artifact {rel}: missing or another size",
                            m.model_id
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}
