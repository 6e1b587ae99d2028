//! Exporting the model registry: each registered model (description, tags), its versions in
//! number order with the same numbers (a number deleted here is created and deleted in the
//! target, as MLflow never reuses one), their sources pointed at the exported runs, their
//! descriptions, tags and stages, then the model's aliases.

use anyhow::{bail, Context};
use quiver_store::{ModelVersion, RegisteredModel, RegistrySearch, Stage, Store};
use serde_json::{json, Value};

use super::journal::Journal;
use crate::admin;
use crate::mlflow_rest::{is_code, MlflowRest, Retry};

/// Every registered model of the store, with its live versions in number order.
pub(crate) fn models(store: &Store) -> anyhow::Result<Vec<(RegisteredModel, Vec<ModelVersion>)>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .search_registered_models(&RegistrySearch {
                max_results: 1000,
                page_token: token.take(),
                ..Default::default()
            })
            .map_err(admin::store_error)?;
        for m in page.registered_models {
            let versions = versions(store, &m.name)?;
            out.push((m, versions));
        }
        match page.next_page_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// The live versions of model `name`, in number order.
fn versions(store: &Store, name: &str) -> anyhow::Result<Vec<ModelVersion>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .search_model_versions(&RegistrySearch {
                filter: format!("name = '{}'", name.replace('\'', "\\'")),
                max_results: 10_000,
                page_token: token.take(),
                ..Default::default()
            })
            .map_err(admin::store_error)?;
        out.extend(page.model_versions.into_iter().filter(|v| v.name == name));
        match page.next_page_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    out.sort_by_key(|v| v.version.parse::<u64>().unwrap_or(u64::MAX));
    Ok(out)
}

/// A version's source with its run pointed at the exported one: `runs:/<old>/p` becomes
/// `runs:/<new>/p`, and a source under the old run's artifact URI goes under the new one's.
/// Anything else (a `models:/` URI, a path elsewhere) is kept.
pub(crate) fn map_source(source: &str, old: &str, new: &str, uris: Option<(&str, &str)>) -> String {
    if let Some(rest) = source.strip_prefix("runs:/") {
        let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
        if id == old {
            return if path.is_empty() {
                format!("runs:/{new}")
            } else {
                format!("runs:/{new}/{path}")
            };
        }
    }
    if let Some((old_uri, new_uri)) = uris {
        let old_uri = old_uri.trim_end_matches('/');
        if let Some(rest) = source.strip_prefix(old_uri) {
            if rest.is_empty() || rest.starts_with('/') {
                return format!("{}{rest}", new_uri.trim_end_matches('/'));
            }
        }
    }
    source.to_string()
}

/// A `models:/<logged model id>[/path]` source pointed at the exported logged model; `None` for
/// any other source, or a logged model not exported.
pub(crate) fn map_model_source(source: &str, journal: &Journal) -> Option<String> {
    let rest = source.strip_prefix("models:/")?;
    let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
    let new = journal.target_model(id)?;
    Some(if path.is_empty() {
        format!("models:/{new}")
    } else {
        format!("models:/{new}/{path}")
    })
}

/// The target's model version `name`/`version`, if it exists (live).
fn target_version(rest: &MlflowRest, name: &str, version: &str) -> anyhow::Result<Option<Value>> {
    match rest.get(
        "model-versions/get",
        &[("name", name), ("version", version)],
    ) {
        Ok(v) => Ok(Some(v["model_version"].clone())),
        Err(e) if is_code(&e, "RESOURCE_DOES_NOT_EXIST") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Exports every registered model not yet done; returns (models, versions) exported now.
/// `run` maps a source run id to its target id.
pub(crate) fn export(
    store: &Store,
    rest: &MlflowRest,
    journal: &mut Journal,
    models: &[(RegisteredModel, Vec<ModelVersion>)],
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<(u64, u64)> {
    let (mut n_models, mut n_versions) = (0, 0);
    for (m, versions) in models {
        bar.inc(1);
        if journal.models.contains(&m.name) {
            continue;
        }
        export_model(store, rest, journal, m, versions, &mut n_versions)
            .with_context(|| format!("registered model {}", m.name))?;
        journal.record(&["M", &m.name])?;
        n_models += 1;
    }
    Ok((n_models, n_versions))
}

fn export_model(
    store: &Store,
    rest: &MlflowRest,
    journal: &mut Journal,
    m: &RegisteredModel,
    versions: &[ModelVersion],
    n_versions: &mut u64,
) -> anyhow::Result<()> {
    let name = m.name.as_str();
    let tags: Vec<Value> = m
        .tags
        .iter()
        .map(|t| json!({"key": t.key, "value": t.value}))
        .collect();
    match rest.get("registered-models/get", &[("name", name)]) {
        Ok(_) => {
            // There already (an earlier, cut-off export, or someone else's): bring it in line.
            rest.patch(
                "registered-models/update",
                &json!({"name": name, "description": m.description}),
            )?;
            for t in &m.tags {
                rest.post(
                    "registered-models/set-tag",
                    &json!({"name": name, "key": t.key, "value": t.value}),
                    Retry::Safe,
                )?;
            }
        }
        Err(e) if is_code(&e, "RESOURCE_DOES_NOT_EXIST") => {
            let mut body = json!({"name": name, "tags": tags});
            if !m.description.is_empty() {
                body["description"] = json!(m.description);
            }
            rest.post("registered-models/create", &body, Retry::NotSent)?;
        }
        Err(e) => return Err(e),
    }
    let last = versions
        .last()
        .and_then(|v| v.version.parse::<u64>().ok())
        .unwrap_or(0);
    for n in 1..=last {
        let number = n.to_string();
        if journal
            .versions
            .contains(&(name.to_string(), number.clone()))
        {
            continue;
        }
        let here = versions.iter().find(|v| v.version == number);
        // A number deleted here stands in with the source of the next version.
        let model = here.or_else(|| {
            versions
                .iter()
                .find(|v| v.version.parse::<u64>().is_ok_and(|k| k > n))
        });
        let Some(model) = model else { break };
        let source = mapped_source(store, rest, journal, model)?;
        let run_id = journal.target_run(&model.run_id).map(str::to_owned);
        let existing = target_version(rest, name, &number)?;
        if existing.is_none() {
            let mut body = json!({"name": name, "source": source});
            if let Some(r) = &run_id {
                body["run_id"] = json!(r);
            }
            if let Some(id) = journal.target_model(&model.model_id) {
                body["model_id"] = json!(id);
            }
            if here.is_some() {
                let tags: Vec<Value> = model
                    .tags
                    .iter()
                    .map(|t| json!({"key": t.key, "value": t.value}))
                    .collect();
                body["tags"] = json!(tags);
                if !model.description.is_empty() {
                    body["description"] = json!(model.description);
                }
                if !model.run_link.is_empty() {
                    body["run_link"] = json!(model.run_link);
                }
            }
            let made = rest.post("model-versions/create", &body, Retry::NotSent)?;
            let got = admin::json_str(&made["model_version"], "version");
            if got != number {
                bail!(
                    "the target numbered the new version {got}, not {number} (it had versions \
                     of its own?): version numbers cannot be kept"
                );
            }
        } else if here.is_some() {
            rest.patch(
                "model-versions/update",
                &json!({"name": name, "version": number, "description": model.description}),
            )?;
            for t in &model.tags {
                rest.post(
                    "model-versions/set-tag",
                    &json!({"name": name, "version": number, "key": t.key, "value": t.value}),
                    Retry::Safe,
                )?;
            }
        }
        match here {
            Some(v) => {
                if v.current_stage != Stage::None {
                    rest.post(
                        "model-versions/transition-stage",
                        &json!({"name": name, "version": number,
                            "stage": v.current_stage.as_str(),
                            "archive_existing_versions": false}),
                        Retry::Safe,
                    )?;
                }
            }
            None => {
                rest.delete(
                    "model-versions/delete",
                    &json!({"name": name, "version": number}),
                )?;
            }
        }
        journal.record(&["V", name, &number])?;
        *n_versions += u64::from(here.is_some());
    }
    for a in &m.aliases {
        rest.post(
            "registered-models/alias",
            &json!({"name": name, "alias": a.alias, "version": a.version}),
            Retry::Safe,
        )?;
    }
    Ok(())
}

/// Version `v`'s source, pointed at its run's target id when that run was exported.
fn mapped_source(
    store: &Store,
    rest: &MlflowRest,
    journal: &Journal,
    v: &ModelVersion,
) -> anyhow::Result<String> {
    if let Some(source) = map_model_source(&v.source, journal) {
        return Ok(source);
    }
    let Some(new) = journal.target_run(&v.run_id) else {
        return Ok(v.source.clone());
    };
    if v.source.starts_with("runs:/") {
        return Ok(map_source(&v.source, &v.run_id, new, None));
    }
    let old_uri = store
        .get_run(&v.run_id)
        .map(|r| r.info.artifact_uri)
        .unwrap_or_default();
    if old_uri.is_empty() || !v.source.starts_with(&old_uri) {
        return Ok(v.source.clone());
    }
    let new_uri = admin::json_str(&rest.get_run(new)?["info"], "artifact_uri");
    Ok(map_source(
        &v.source,
        &v.run_id,
        new,
        Some((&old_uri, &new_uri)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_sources_follow_their_logged_model() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "http://t:5000").unwrap();
        j.record(&["L", "m-old", "m-new"]).unwrap();
        j.record(&["l", "m-half", "m-x"]).unwrap();
        assert_eq!(
            map_model_source("models:/m-old", &j).as_deref(),
            Some("models:/m-new")
        );
        assert_eq!(
            map_model_source("models:/m-old/sub", &j).as_deref(),
            Some("models:/m-new/sub")
        );
        assert_eq!(map_model_source("models:/m-half", &j), None, "not complete");
        assert_eq!(map_model_source("models:/fraud/1", &j), None);
        assert_eq!(map_model_source("runs:/m-old/x", &j), None);
    }

    #[test]
    fn sources_follow_their_run() {
        let (old, new) = ("0ld", "n3w");
        assert_eq!(
            map_source("runs:/0ld/model", old, new, None),
            "runs:/n3w/model"
        );
        assert_eq!(map_source("runs:/0ld", old, new, None), "runs:/n3w");
        assert_eq!(
            map_source("runs:/other/model", old, new, None),
            "runs:/other/model"
        );
        assert_eq!(
            map_source("models:/m-123", old, new, None),
            "models:/m-123",
            "logged models are not exported: kept"
        );
        let uris = Some((
            "mlflow-artifacts:/1/0ld/artifacts",
            "mlflow-artifacts:/4/n3w/artifacts",
        ));
        assert_eq!(
            map_source("mlflow-artifacts:/1/0ld/artifacts/model", old, new, uris),
            "mlflow-artifacts:/4/n3w/artifacts/model"
        );
        assert_eq!(
            map_source("mlflow-artifacts:/1/0ld/artifactsX", old, new, uris),
            "mlflow-artifacts:/1/0ld/artifactsX"
        );
    }
}
