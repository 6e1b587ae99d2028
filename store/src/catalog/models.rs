//! The catalog's model trees: logged models, the runs' model inputs and outputs, the registry
//! (registered models, versions, tags, aliases), deployments and the registry's event history.
//!
//! Registered models are keyed by an internal id (8 bytes big-endian), with a name → id tree, so a
//! rename rewrites one record and everything keyed under the model (versions, tags, aliases,
//! deployments, events) follows. Versions are keyed `model id ‖ version (8 bytes BE)`.

use serde::{Deserialize, Serialize};

use super::kv::{Kv, Tree};
use super::{dec, enc, run_key, run_prefix, u64_value, utf8};
use crate::error::Result;
use crate::model_types::{LoggedModelStatus, ModelOutput, Stage};
use crate::ops::{EventRecord, LoggedModelChange, RegistryChange};
use crate::types::{Metric, Param, Tag};

const META_NEXT_MODEL: &[u8] = b"next_registered_model_id";
const META_NEXT_EVENT: &[u8] = b"next_registry_event";

/// A logged model as stored (tags, params and metrics live in their own trees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LoggedModelRecord {
    pub(crate) experiment_id: u64,
    pub(crate) name: String,
    pub(crate) artifact_uri: String,
    pub(crate) status: LoggedModelStatus,
    pub(crate) status_message: String,
    pub(crate) model_type: String,
    pub(crate) source_run_id: String,
    pub(crate) creation_time: i64,
    pub(crate) last_updated_time: i64,
    /// Deleted models are kept (their metric points still name them) but no longer found.
    pub(crate) deleted: bool,
}

/// A registered model as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RegisteredModelRecord {
    pub(crate) name: String,
    pub(crate) creation_time: i64,
    pub(crate) last_updated_time: i64,
    pub(crate) user_id: String,
    pub(crate) description: String,
    /// The number the next version gets; numbers are never reused.
    pub(crate) next_version: u64,
}

/// A model version as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModelVersionRecord {
    pub(crate) creation_time: i64,
    pub(crate) last_updated_time: i64,
    pub(crate) user_id: String,
    pub(crate) stage: Stage,
    pub(crate) description: String,
    pub(crate) source: String,
    pub(crate) run_id: String,
    pub(crate) run_link: String,
    pub(crate) model_id: String,
}

/// A deployment as stored: the model by internal id, so renames follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeploymentRecord {
    pub(crate) model: u64,
    pub(crate) version: Option<u64>,
    pub(crate) alias: Option<String>,
    pub(crate) target: String,
    pub(crate) description: String,
    pub(crate) user_id: String,
    pub(crate) creation_time: i64,
}

/// The model trees of the catalog.
#[derive(Debug)]
pub(crate) struct ModelTrees {
    meta: Tree,
    logged_models: Tree,
    logged_models_by_experiment: Tree,
    logged_model_tags: Tree,
    logged_model_params: Tree,
    logged_model_metrics: Tree,
    run_model_inputs: Tree,
    run_model_outputs: Tree,
    registered_models: Tree,
    registered_model_names: Tree,
    registered_model_tags: Tree,
    model_versions: Tree,
    model_version_tags: Tree,
    model_aliases: Tree,
    deployments: Tree,
    registry_events: Tree,
}

fn id_key(id: u64, rest: &[u8]) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.extend_from_slice(rest);
    k
}

fn version_key(id: u64, version: u64, rest: &[u8]) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(rest);
    k
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// `model_id NUL run_id NUL key NUL dataset name NUL dataset digest`: one model metric cell.
fn model_metric_key(model_id: &str, run_id: &str, m: &Metric) -> Vec<u8> {
    let mut k = run_key(model_id, run_id);
    for part in [
        m.key.as_str(),
        m.dataset_name.as_deref().unwrap_or(""),
        m.dataset_digest.as_deref().unwrap_or(""),
    ] {
        k.push(0);
        k.extend_from_slice(part.as_bytes());
    }
    k
}

/// Everything under `prefix` in `tree` as `(key without prefix, value)` strings.
fn strings_under(tree: &Tree, prefix: &[u8]) -> Result<Vec<(String, String)>> {
    tree.scan_prefix(prefix)
        .map(|e| e.map(|(k, v)| (utf8(&k[prefix.len()..]), utf8(&v))))
        .collect()
}

impl ModelTrees {
    /// Opens the model trees of `kv`.
    pub(crate) fn open(kv: &Kv) -> Result<ModelTrees> {
        let t = |name: &str| kv.tree(name);
        Ok(ModelTrees {
            meta: t("meta")?,
            logged_models: t("logged_models")?,
            logged_models_by_experiment: t("logged_models_by_experiment")?,
            logged_model_tags: t("logged_model_tags")?,
            logged_model_params: t("logged_model_params")?,
            logged_model_metrics: t("logged_model_metrics")?,
            run_model_inputs: t("run_model_inputs")?,
            run_model_outputs: t("run_model_outputs")?,
            registered_models: t("registered_models")?,
            registered_model_names: t("registered_model_names")?,
            registered_model_tags: t("registered_model_tags")?,
            model_versions: t("model_versions")?,
            model_version_tags: t("model_version_tags")?,
            model_aliases: t("model_aliases")?,
            deployments: t("deployments")?,
            registry_events: t("registry_events")?,
        })
    }

    // ----- logged models -----

    /// The record of logged model `model_id` (deleted ones included).
    pub(crate) fn logged_model(&self, model_id: &str) -> Result<Option<LoggedModelRecord>> {
        self.logged_models
            .get(model_id.as_bytes())?
            .map(|b| dec(&b))
            .transpose()
    }

    /// The tags of a logged model, by key.
    pub(crate) fn logged_model_tags(&self, model_id: &str) -> Result<Vec<Tag>> {
        Ok(
            strings_under(&self.logged_model_tags, &run_prefix(model_id))?
                .into_iter()
                .map(|(k, v)| Tag::new(k, v))
                .collect(),
        )
    }

    /// The params of a logged model, by key.
    pub(crate) fn logged_model_params(&self, model_id: &str) -> Result<Vec<Param>> {
        Ok(
            strings_under(&self.logged_model_params, &run_prefix(model_id))?
                .into_iter()
                .map(|(k, v)| Param::new(k, v))
                .collect(),
        )
    }

    /// The metrics recorded against a logged model as `(run_id, latest point)`, by run and key.
    pub(crate) fn logged_model_metrics(&self, model_id: &str) -> Result<Vec<(String, Metric)>> {
        self.logged_model_metrics
            .scan_prefix(&run_prefix(model_id))
            .map(|e| e.and_then(|(_, v)| dec(&v)))
            .collect()
    }

    /// The ids of the logged models of experiment `id` (deleted ones included).
    pub(crate) fn logged_model_ids_of_experiment(&self, id: u64) -> Result<Vec<String>> {
        self.logged_models_by_experiment
            .scan_prefix(&id.to_be_bytes())
            .map(|e| e.map(|(k, _)| utf8(&k[8..])))
            .collect()
    }

    /// Every logged model id, in id order.
    pub(crate) fn all_logged_model_ids(&self) -> Result<Vec<String>> {
        self.logged_models
            .iter()
            .map(|e| e.map(|(k, _)| utf8(&k)))
            .collect()
    }

    /// The logged models run `run_id` used, by id.
    pub(crate) fn run_model_inputs(&self, run_id: &str) -> Result<Vec<String>> {
        Ok(strings_under(&self.run_model_inputs, &run_prefix(run_id))?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// The logged models run `run_id` produced, by id.
    pub(crate) fn run_model_outputs(&self, run_id: &str) -> Result<Vec<ModelOutput>> {
        let prefix = run_prefix(run_id);
        self.run_model_outputs
            .scan_prefix(&prefix)
            .map(|e| {
                let (k, v) = e?;
                Ok(ModelOutput {
                    model_id: utf8(&k[prefix.len()..]),
                    step: dec(&v)?,
                })
            })
            .collect()
    }

    /// Forgets which logged models run `run_id` used and produced (the models themselves stay:
    /// model versions may point at them).
    pub(crate) fn purge_run(&self, run_id: &str) -> Result<()> {
        let prefix = run_prefix(run_id);
        self.run_model_inputs.remove_prefix(&prefix)?;
        self.run_model_outputs.remove_prefix(&prefix)?;
        Ok(())
    }

    // ----- registry -----

    /// The id the next registered model gets.
    pub(crate) fn next_model_id(&self) -> Result<u64> {
        Ok(u64_value(self.meta.get(META_NEXT_MODEL)?))
    }

    /// The sequence number the next registry event gets (from 1).
    pub(crate) fn next_event_seq(&self) -> Result<u64> {
        Ok(u64_value(self.meta.get(META_NEXT_EVENT)?).max(1))
    }

    /// The internal id of the registered model called `name`.
    pub(crate) fn model_id_by_name(&self, name: &str) -> Result<Option<u64>> {
        Ok(self
            .registered_model_names
            .get(name.as_bytes())?
            .map(|v| be_u64(&v)))
    }

    /// The record of registered model `id`.
    pub(crate) fn registered_model(&self, id: u64) -> Result<Option<RegisteredModelRecord>> {
        self.registered_models
            .get(&id.to_be_bytes())?
            .map(|b| dec(&b))
            .transpose()
    }

    /// Every registered model as `(id, record)`, by id.
    pub(crate) fn registered_models(&self) -> Result<Vec<(u64, RegisteredModelRecord)>> {
        self.registered_models
            .iter()
            .map(|e| {
                let (k, v) = e?;
                Ok((be_u64(&k), dec(&v)?))
            })
            .collect()
    }

    /// The tags of registered model `id`, by key.
    pub(crate) fn registered_model_tags(&self, id: u64) -> Result<Vec<Tag>> {
        Ok(
            strings_under(&self.registered_model_tags, &id.to_be_bytes())?
                .into_iter()
                .map(|(k, v)| Tag::new(k, v))
                .collect(),
        )
    }

    /// The versions of registered model `id` as `(number, record)`, in number order.
    pub(crate) fn versions(&self, id: u64) -> Result<Vec<(u64, ModelVersionRecord)>> {
        self.model_versions
            .scan_prefix(&id.to_be_bytes())
            .map(|e| {
                let (k, v) = e?;
                Ok((be_u64(&k[8..]), dec(&v)?))
            })
            .collect()
    }

    /// Every version of every registered model as `(model id, number, record)`.
    pub(crate) fn all_versions(&self) -> Result<Vec<(u64, u64, ModelVersionRecord)>> {
        self.model_versions
            .iter()
            .map(|e| {
                let (k, v) = e?;
                Ok((be_u64(&k), be_u64(&k[8..]), dec(&v)?))
            })
            .collect()
    }

    /// Version `version` of registered model `id`.
    pub(crate) fn version(&self, id: u64, version: u64) -> Result<Option<ModelVersionRecord>> {
        self.model_versions
            .get(&version_key(id, version, &[]))?
            .map(|b| dec(&b))
            .transpose()
    }

    /// The tags of a version, by key.
    pub(crate) fn version_tags(&self, id: u64, version: u64) -> Result<Vec<Tag>> {
        Ok(
            strings_under(&self.model_version_tags, &version_key(id, version, &[]))?
                .into_iter()
                .map(|(k, v)| Tag::new(k, v))
                .collect(),
        )
    }

    /// The aliases of registered model `id` as `(alias, version)`, by alias.
    pub(crate) fn aliases(&self, id: u64) -> Result<Vec<(String, u64)>> {
        self.model_aliases
            .scan_prefix(&id.to_be_bytes())
            .map(|e| e.map(|(k, v)| (utf8(&k[8..]), be_u64(&v))))
            .collect()
    }

    /// The version alias `alias` of model `id` points to.
    pub(crate) fn alias(&self, id: u64, alias: &str) -> Result<Option<u64>> {
        Ok(self
            .model_aliases
            .get(&id_key(id, alias.as_bytes()))?
            .map(|v| be_u64(&v)))
    }

    /// The deployment called `name`.
    pub(crate) fn deployment(&self, name: &str) -> Result<Option<DeploymentRecord>> {
        self.deployments
            .get(name.as_bytes())?
            .map(|b| dec(&b))
            .transpose()
    }

    /// Every deployment as `(name, record)`, by name.
    pub(crate) fn deployments(&self) -> Result<Vec<(String, DeploymentRecord)>> {
        self.deployments
            .iter()
            .map(|e| {
                let (k, v) = e?;
                Ok((utf8(&k), dec(&v)?))
            })
            .collect()
    }

    /// Every registry event, oldest first.
    pub(crate) fn events(&self) -> Result<Vec<EventRecord>> {
        self.registry_events
            .iter()
            .map(|e| e.and_then(|(_, v)| dec(&v)))
            .collect()
    }

    // ----- writers (called from `Catalog::apply`) -----

    /// Applies a logged-model change.
    pub(crate) fn apply_logged_model(&self, c: &LoggedModelChange) -> Result<()> {
        let id = &c.model_id;
        self.logged_models.insert(id, enc(&c.record))?;
        self.logged_models_by_experiment
            .insert(id_key(c.record.experiment_id, id.as_bytes()), [])?;
        for t in &c.set_tags {
            self.logged_model_tags
                .insert(run_key(id, &t.key), &t.value)?;
        }
        for k in &c.delete_tags {
            self.logged_model_tags.remove(&run_key(id, k))?;
        }
        for p in &c.params {
            self.logged_model_params
                .insert(run_key(id, &p.key), &p.value)?;
        }
        Ok(())
    }

    /// Records model inputs and outputs of a run.
    pub(crate) fn apply_run_models(
        &self,
        run_id: &str,
        inputs: &[String],
        outputs: &[ModelOutput],
    ) -> Result<()> {
        for m in inputs {
            self.run_model_inputs.insert(run_key(run_id, m), [])?;
        }
        for o in outputs {
            self.run_model_outputs
                .insert(run_key(run_id, &o.model_id), enc(&o.step))?;
        }
        Ok(())
    }

    /// Offers metric point `m` of run `run_id` to its model's metrics (kept if it is the latest
    /// of its key and dataset, by MLflow's (step, timestamp, value) rule).
    pub(crate) fn offer_model_metric(&self, run_id: &str, m: &Metric) -> Result<()> {
        let Some(model_id) = m.model_id.as_deref() else {
            return Ok(());
        };
        let key = model_metric_key(model_id, run_id, m);
        if let Some(bytes) = self.logged_model_metrics.get(&key)? {
            let (_, old): (String, Metric) = dec(&bytes)?;
            let newer = crate::metrics::latest_order(
                &(m.step, m.timestamp, m.value),
                &(old.step, old.timestamp, old.value),
            );
            if newer.is_lt() {
                return Ok(());
            }
        }
        self.logged_model_metrics
            .insert(key, enc(&(run_id.to_string(), m)))
    }

    /// Applies registry changes and records their events.
    pub(crate) fn apply_registry(
        &self,
        changes: &[RegistryChange],
        events: &[EventRecord],
    ) -> Result<()> {
        for c in changes {
            self.apply_change(c)?;
        }
        for e in events {
            self.registry_events
                .insert(e.event.seq.to_be_bytes(), enc(e))?;
            if e.event.seq >= self.next_event_seq()? {
                self.meta
                    .insert(META_NEXT_EVENT, (e.event.seq + 1).to_be_bytes())?;
            }
        }
        Ok(())
    }

    fn apply_change(&self, c: &RegistryChange) -> Result<()> {
        match c {
            RegistryChange::PutModel { id, record } => {
                if let Some(old) = self.registered_model(*id)? {
                    if old.name != record.name {
                        self.registered_model_names.remove(old.name.as_bytes())?;
                    }
                }
                self.registered_model_names
                    .insert(&record.name, id.to_be_bytes())?;
                self.registered_models
                    .insert(id.to_be_bytes(), enc(record))?;
                if *id >= self.next_model_id()? {
                    self.meta.insert(META_NEXT_MODEL, (id + 1).to_be_bytes())?;
                }
            }
            RegistryChange::DeleteModel { id } => {
                if let Some(old) = self.registered_model(*id)? {
                    self.registered_model_names.remove(old.name.as_bytes())?;
                }
                self.registered_models.remove(&id.to_be_bytes())?;
                let prefix = id.to_be_bytes();
                for tree in [
                    &self.registered_model_tags,
                    &self.model_versions,
                    &self.model_version_tags,
                    &self.model_aliases,
                ] {
                    tree.remove_prefix(&prefix)?;
                }
            }
            RegistryChange::PutModelTag { id, tag } => {
                self.registered_model_tags
                    .insert(id_key(*id, tag.key.as_bytes()), &tag.value)?;
            }
            RegistryChange::DeleteModelTag { id, key } => {
                self.registered_model_tags
                    .remove(&id_key(*id, key.as_bytes()))?;
            }
            RegistryChange::PutVersion {
                id,
                version,
                record,
            } => {
                self.model_versions
                    .insert(version_key(*id, *version, &[]), enc(record))?;
            }
            RegistryChange::DeleteVersion { id, version } => {
                self.model_versions
                    .remove(&version_key(*id, *version, &[]))?;
                self.model_version_tags
                    .remove_prefix(&version_key(*id, *version, &[]))?;
                for (alias, v) in self.aliases(*id)? {
                    if v == *version {
                        self.model_aliases.remove(&id_key(*id, alias.as_bytes()))?;
                    }
                }
            }
            RegistryChange::PutVersionTag { id, version, tag } => {
                self.model_version_tags
                    .insert(version_key(*id, *version, tag.key.as_bytes()), &tag.value)?;
            }
            RegistryChange::DeleteVersionTag { id, version, key } => {
                self.model_version_tags
                    .remove(&version_key(*id, *version, key.as_bytes()))?;
            }
            RegistryChange::PutAlias { id, alias, version } => {
                self.model_aliases
                    .insert(id_key(*id, alias.as_bytes()), version.to_be_bytes())?;
            }
            RegistryChange::DeleteAlias { id, alias } => {
                self.model_aliases.remove(&id_key(*id, alias.as_bytes()))?;
            }
            RegistryChange::PutDeployment { name, record } => {
                self.deployments.insert(name, enc(record))?;
            }
            RegistryChange::DeleteDeployment { name } => {
                self.deployments.remove(name.as_bytes())?;
            }
        }
        Ok(())
    }
}
