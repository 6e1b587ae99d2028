//! Logged models (MLflow 3's `log_model`): create, finalize, tags, params, delete, search, and the
//! run outputs and model inputs that link them to runs.
//!
//! A logged model's files are ordinary artifacts under `<experiment>/models/<model_id>/artifacts`
//! (the client uploads them through the artifact proxy); its record, tags and params live in the
//! catalog, and metric points logged with its `model_id` update its metrics.

use rand::Rng;

use super::runs::{active_run, generate_run_name};
use super::{now_ms, Store};
use crate::catalog::models::LoggedModelRecord;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model_types::{
    CreateLoggedModel, LoggedModel, LoggedModelPage, LoggedModelSearch, LoggedModelStatus,
    ModelMetric, ModelOutput,
};
use crate::ops::{LoggedModelChange, Op};
use crate::types::{LifecycleStage, Param, Tag};
use crate::validate;

/// Most models in one `log_run_outputs` / `log_model_inputs` call.
const MAX_MODELS_PER_CALL: usize = 1000;

pub(super) fn model_not_found(model_id: &str) -> Error {
    Error::NotFound(format!("Logged model with ID '{model_id}' not found."))
}

/// The logged-model tag listing the registered versions made from it (MLflow's
/// `mlflow.modelVersions`).
pub(crate) const MODEL_VERSIONS_TAG: &str = "mlflow.modelVersions";

/// `s` as a JSON string the way Python's `json.dumps` writes it (non-ASCII as `\uXXXX`).
fn python_json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in serde_json::to_string(s).expect("strings serialize").chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// The whole logged model `model_id`, unless it does not exist or was deleted.
pub(crate) fn load(cat: &Catalog, model_id: &str) -> Result<Option<LoggedModel>> {
    let Some(rec) = cat.models.logged_model(model_id)? else {
        return Ok(None);
    };
    if rec.deleted {
        return Ok(None);
    }
    let metrics = cat
        .models
        .logged_model_metrics(model_id)?
        .into_iter()
        .map(|(run_id, metric)| ModelMetric { run_id, metric })
        .collect();
    Ok(Some(LoggedModel {
        model_id: model_id.to_string(),
        experiment_id: rec.experiment_id.to_string(),
        name: rec.name,
        artifact_uri: rec.artifact_uri,
        status: rec.status,
        status_message: rec.status_message,
        model_type: rec.model_type,
        source_run_id: rec.source_run_id,
        creation_timestamp: rec.creation_time,
        last_updated_timestamp: rec.last_updated_time,
        tags: cat.models.logged_model_tags(model_id)?,
        params: cat.models.logged_model_params(model_id)?,
        metrics,
    }))
}

/// The record of a live logged model, or MLflow's not-found error.
fn live_record(cat: &Catalog, model_id: &str) -> Result<LoggedModelRecord> {
    cat.models
        .logged_model(model_id)?
        .filter(|r| !r.deleted)
        .ok_or_else(|| model_not_found(model_id))
}

fn checked_tags(tags: &[Tag]) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|t| {
            validate::entity_key("tag", &t.key)?;
            Ok(Tag::new(
                t.key.clone(),
                validate::truncate(&t.value, validate::MAX_TAG_VAL_LENGTH),
            ))
        })
        .collect()
}

/// Params not logged before; a different value for a logged key is an error (params are
/// write-once, as for runs).
fn new_params(cat: &Catalog, model_id: &str, params: &[Param]) -> Result<Vec<Param>> {
    let existing = cat.models.logged_model_params(model_id)?;
    let mut out: Vec<Param> = Vec::new();
    for p in params {
        validate::entity_key("param", &p.key)?;
        let value = validate::truncate(&p.value, validate::MAX_PARAM_VAL_LENGTH);
        let old = existing
            .iter()
            .chain(out.iter())
            .find(|e| e.key == p.key)
            .map(|e| e.value.clone());
        match old {
            Some(v) if v == value => {}
            Some(v) => {
                return Err(Error::InvalidParameter(format!(
                    "Changing param values is not allowed. Param with key='{}' was already \
                     logged with value='{v}' for model ID='{model_id}'. Attempted logging new \
                     value '{value}'.",
                    p.key
                )))
            }
            None => out.push(Param::new(p.key.clone(), value)),
        }
    }
    Ok(out)
}

impl Store {
    /// Creates a logged model in an active experiment, status `Pending`, and returns it. Its
    /// artifact URI is `<experiment artifact location>/models/<model_id>/artifacts`.
    pub fn create_logged_model(&self, req: &CreateLoggedModel) -> Result<LoggedModel> {
        let exp_id = validate::experiment_id(&req.experiment_id)?;
        let tags = checked_tags(&req.tags)?;
        let name = req
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(generate_run_name);
        let model_id = format!("m-{}", hex::encode(rand::rng().random::<[u8; 16]>()));
        let time = now_ms();
        self.inner.commit(|cat| {
            let exp = cat.experiment(exp_id)?.ok_or_else(|| {
                Error::NotFound(format!(
                    "No Experiment with id={} exists",
                    req.experiment_id
                ))
            })?;
            if exp.lifecycle_stage != LifecycleStage::Active {
                return Err(Error::InvalidParameter(format!(
                    "The experiment {} must be in the 'active' state. Current state is deleted.",
                    req.experiment_id
                )));
            }
            // As MLflow, the source run is recorded as given: it need not exist (yet) here.
            let source_run_id = req.source_run_id.clone().unwrap_or_default();
            if !source_run_id.is_empty() {
                validate::run_id(&source_run_id)?;
            }
            let params = new_params(cat, &model_id, &req.params)?;
            let record = LoggedModelRecord {
                experiment_id: exp_id,
                name,
                artifact_uri: format!(
                    "{}/models/{model_id}/artifacts",
                    exp.artifact_location.trim_end_matches('/')
                ),
                status: LoggedModelStatus::Pending,
                status_message: String::new(),
                model_type: req.model_type.clone().unwrap_or_default(),
                source_run_id,
                creation_time: time,
                last_updated_time: time,
                deleted: false,
            };
            let change = LoggedModelChange {
                model_id: model_id.clone(),
                record,
                set_tags: tags,
                delete_tags: Vec::new(),
                params,
            };
            Ok((Some(Op::LoggedModel(Box::new(change))), ()))
        })?;
        self.get_logged_model(&model_id)
    }

    /// The logged model `model_id` (deleted models are not found).
    pub fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel> {
        load(&self.inner.catalog, model_id)?.ok_or_else(|| model_not_found(model_id))
    }

    /// Sets a logged model's status (MLflow's finalize) and returns it.
    pub fn finalize_logged_model(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel> {
        self.change_logged_model(model_id, |_, change| {
            change.record.status = status;
            Ok(())
        })?;
        self.get_logged_model(model_id)
    }

    /// Deletes a logged model: it is no longer found or searched. Refused while a model version
    /// that registers it is deployed.
    pub fn delete_logged_model(&self, model_id: &str) -> Result<()> {
        self.change_logged_model(model_id, |cat, change| {
            super::deployments::guard(
                cat,
                |_, v| v.is_some_and(|(_, v)| v.model_id == model_id),
                || format!("logged model '{model_id}'"),
            )?;
            change.record.deleted = true;
            Ok(())
        })
    }

    /// Upserts tags of a logged model and returns it.
    pub fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> Result<LoggedModel> {
        let tags = checked_tags(tags)?;
        self.change_logged_model(model_id, |_, change| {
            change.set_tags = tags;
            Ok(())
        })?;
        self.get_logged_model(model_id)
    }

    /// Appends version `version` of registered model `name` to the logged model's
    /// `mlflow.modelVersions` tag, a JSON list written as MLflow writes it
    /// (`[{"name": "model", "version": 1}]`), reading the tag in the same commit so that
    /// concurrent registrations all land.
    pub(crate) fn note_model_version(
        &self,
        model_id: &str,
        name: &str,
        version: u64,
    ) -> Result<()> {
        self.change_logged_model(model_id, |cat, change| {
            let current = cat
                .models
                .logged_model_tags(model_id)?
                .into_iter()
                .find(|t| t.key == MODEL_VERSIONS_TAG);
            let mut entries: Vec<(String, u64)> = current
                .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t.value).ok())
                .unwrap_or_default()
                .iter()
                .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["version"].as_u64()?)))
                .collect();
            entries.push((name.to_string(), version));
            let listed: Vec<String> = entries
                .iter()
                .map(|(n, v)| format!("{{\"name\": {}, \"version\": {v}}}", python_json_str(n)))
                .collect();
            change.set_tags = vec![Tag::new(
                MODEL_VERSIONS_TAG,
                format!("[{}]", listed.join(", ")),
            )];
            Ok(())
        })
    }

    /// Removes a tag of a logged model ([`Error::NotFound`] if it has none such).
    pub fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<()> {
        self.change_logged_model(model_id, |cat, change| {
            if !cat
                .models
                .logged_model_tags(model_id)?
                .iter()
                .any(|t| t.key == key)
            {
                return Err(Error::NotFound(format!(
                    "No tag with key '{key}' found for logged model with ID '{model_id}'."
                )));
            }
            change.delete_tags.push(key.to_string());
            Ok(())
        })
    }

    /// Logs params of a logged model (write-once: re-logging the same value is a no-op, another
    /// value an error).
    pub fn log_logged_model_params(&self, model_id: &str, params: &[Param]) -> Result<()> {
        self.change_logged_model(model_id, |cat, change| {
            change.params = new_params(cat, model_id, params)?;
            Ok(())
        })
    }

    /// One change of a live logged model: `edit` fills in the change from the current record.
    fn change_logged_model(
        &self,
        model_id: &str,
        edit: impl FnOnce(&Catalog, &mut LoggedModelChange) -> Result<()>,
    ) -> Result<()> {
        let time = now_ms();
        self.inner.commit(|cat| {
            let mut record = live_record(cat, model_id)?;
            record.last_updated_time = time;
            let mut change = LoggedModelChange {
                model_id: model_id.to_string(),
                record,
                set_tags: Vec::new(),
                delete_tags: Vec::new(),
                params: Vec::new(),
            };
            edit(cat, &mut change)?;
            Ok((Some(Op::LoggedModel(Box::new(change))), ()))
        })
    }

    /// Searches logged models of some experiments with MLflow's filter grammar (attributes
    /// `name`, `model_id`, `model_type`, `status`, `source_run_id`, `creation_timestamp`,
    /// `last_updated_timestamp`; `metrics.`, `params.`, `tags.`). Default order: newest first.
    pub fn search_logged_models(&self, req: &LoggedModelSearch) -> Result<LoggedModelPage> {
        crate::search::logged_models::search(&self.inner.catalog, req)
    }

    /// Records that active run `run_id` produced these logged models (MLflow's `runs/outputs`).
    pub fn log_run_outputs(&self, run_id: &str, outputs: &[ModelOutput]) -> Result<()> {
        let ids: Vec<String> = outputs.iter().map(|o| o.model_id.clone()).collect();
        self.log_run_models(run_id, Vec::new(), outputs.to_vec(), &ids)
    }

    /// Records that active run `run_id` used these logged models (`runs/log-inputs` models).
    pub fn log_model_inputs(&self, run_id: &str, model_ids: &[String]) -> Result<()> {
        self.log_run_models(run_id, model_ids.to_vec(), Vec::new(), model_ids)
    }

    fn log_run_models(
        &self,
        run_id: &str,
        inputs: Vec<String>,
        outputs: Vec<ModelOutput>,
        ids: &[String],
    ) -> Result<()> {
        if ids.len() > MAX_MODELS_PER_CALL {
            return Err(Error::InvalidParameter(format!(
                "A request can name at most {MAX_MODELS_PER_CALL} models. Got {}.",
                ids.len()
            )));
        }
        self.inner.commit(|cat| {
            active_run(cat, run_id)?;
            for id in ids {
                live_record(cat, id)?;
            }
            if ids.is_empty() {
                return Ok((None, ()));
            }
            let op = Op::RunModels {
                run_id: run_id.to_string(),
                inputs,
                outputs,
            };
            Ok((Some(op), ()))
        })
    }
}
