//! Runs: create, read, update, delete/restore, tags, params, dataset inputs.

use rand::Rng;

use super::{now_ms, Store};
use crate::catalog::{Catalog, RUN_NAME_TAG};
use crate::error::{Error, Result};
use crate::ops::{LogBatch, Op};
use crate::types::{
    CreateRun, DatasetInput, DatasetSummary, LifecycleStage, Param, Run, RunInfo, RunStatus, Tag,
    UpdateRun, ViewType, DATASET_CONTEXT_TAG,
};
use crate::validate;

/// Most datasets in one `log_inputs` call.
const MAX_DATASETS_PER_CALL: usize = 1000;

/// Most rows of [`Store::search_datasets`] (MLflow's `MAX_DATASET_SUMMARIES_RESULTS`).
const MAX_DATASET_SUMMARIES: usize = 1000;

pub(super) fn run_not_found(run_id: &str) -> Error {
    Error::NotFound(format!("Run with id={run_id} not found"))
}

/// The info of a run that exists and is active, or the error MLflow gives.
pub(super) fn active_run(cat: &Catalog, run_id: &str) -> Result<RunInfo> {
    validate::run_id(run_id)?;
    let info = cat.run_info(run_id)?.ok_or_else(|| run_not_found(run_id))?;
    if info.lifecycle_stage != LifecycleStage::Active {
        return Err(Error::InvalidParameter(format!(
            "The run {run_id} must be in the 'active' state. Current state is {}.",
            info.lifecycle_stage.as_str()
        )));
    }
    Ok(info)
}

/// Checks a run tag and truncates its value as MLflow does.
pub(super) fn checked_tag(tag: &Tag) -> Result<Tag> {
    validate::entity_key("tag", &tag.key)?;
    Ok(Tag::new(
        tag.key.clone(),
        validate::truncate(&tag.value, validate::MAX_TAG_VAL_LENGTH),
    ))
}

/// A readable random run name in MLflow's style (`adjective-noun-123`).
pub(super) fn generate_run_name() -> String {
    const ADJECTIVES: &[&str] = &[
        "able", "bold", "brave", "bright", "calm", "clever", "crisp", "daring", "eager", "fair",
        "gentle", "glad", "grand", "happy", "keen", "kind", "lively", "lucky", "merry", "nimble",
        "proud", "quick", "quiet", "rare", "sharp", "shy", "smart", "swift", "tidy", "vast",
        "warm", "wise", "zesty", "amber", "silver", "golden",
    ];
    const NOUNS: &[&str] = &[
        "ant", "bear", "bee", "cat", "crane", "deer", "dove", "eagle", "finch", "fox", "frog",
        "gull", "hare", "hawk", "heron", "koi", "lark", "lynx", "mole", "moth", "newt", "otter",
        "owl", "panda", "quail", "robin", "seal", "shark", "snail", "swan", "toad", "trout",
        "whale", "wolf", "wren", "yak",
    ];
    let mut rng = rand::rng();
    format!(
        "{}-{}-{}",
        ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
        NOUNS[rng.random_range(0..NOUNS.len())],
        rng.random_range(0..1000)
    )
}

impl Store {
    /// Creates a run in an active experiment (`"0"` by default) and returns it. Its name is
    /// `run_name`, else the `mlflow.runName` tag, else generated; the two must agree when both
    /// are given. The `mlflow.runName` tag is always set to the name.
    pub fn create_run(&self, req: CreateRun) -> Result<Run> {
        let experiment_id = req.experiment_id.unwrap_or_else(|| "0".into());
        let exp_id = validate::experiment_id(&experiment_id)?;
        let mut tags: Vec<Tag> = req.tags.iter().map(checked_tag).collect::<Result<_>>()?;
        let tag_name = tags
            .iter()
            .find(|t| t.key == RUN_NAME_TAG)
            .map(|t| t.value.clone());
        let run_name = match (req.run_name.filter(|n| !n.is_empty()), tag_name) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::InvalidParameter(format!(
                    "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with \
                     different values (run_name='{a}', mlflow.runName='{b}')."
                )))
            }
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => generate_run_name(),
        };
        if !tags.iter().any(|t| t.key == RUN_NAME_TAG) {
            tags.push(Tag::new(RUN_NAME_TAG, run_name.clone()));
        }
        let run_id = hex::encode(rand::rng().random::<[u8; 16]>());
        let start_time = req.start_time.unwrap_or_else(now_ms);
        self.inner.commit(|cat| {
            let exp = cat
                .experiment(exp_id)?
                .ok_or_else(|| Error::NotFound(format!("No Experiment with id={experiment_id} exists")))?;
            if exp.lifecycle_stage != LifecycleStage::Active {
                return Err(Error::InvalidParameter(format!(
                    "The experiment {experiment_id} must be in the 'active' state. Current state is deleted."
                )));
            }
            let info = RunInfo {
                artifact_uri: format!("{}/{run_id}/artifacts", exp.artifact_location.trim_end_matches('/')),
                run_id: run_id.clone(),
                run_name,
                experiment_id: exp.experiment_id,
                user_id: req.user_id.unwrap_or_default(),
                status: RunStatus::Running,
                start_time,
                end_time: None,
                lifecycle_stage: LifecycleStage::Active,
                deleted_time: None,
            };
            Ok((Some(Op::CreateRun { info, tags }), ()))
        })?;
        self.get_run(&run_id)
    }

    /// The run with its latest metrics, params, tags and inputs (deleted runs too).
    pub fn get_run(&self, run_id: &str) -> Result<Run> {
        validate::run_id(run_id)?;
        self.inner
            .catalog
            .run(run_id)?
            .ok_or_else(|| run_not_found(run_id))
    }

    /// Updates status, end time or name of an active run; returns the new info.
    pub fn update_run(&self, run_id: &str, update: UpdateRun) -> Result<RunInfo> {
        self.inner.commit(|cat| {
            active_run(cat, run_id)?;
            let op = Op::UpdateRun {
                run_id: run_id.to_string(),
                status: update.status,
                end_time: update.end_time,
                run_name: update.run_name.filter(|n| !n.is_empty()),
            };
            Ok((Some(op), ()))
        })?;
        Ok(self.get_run(run_id)?.info)
    }

    /// Marks a run deleted.
    ///
    /// Refused ([`Error::InvalidState`]) while a deployment serves a model version the run
    /// produced.
    pub fn delete_run(&self, run_id: &str) -> Result<()> {
        self.set_run_stage(run_id, LifecycleStage::Deleted)
    }

    /// Restores a deleted run.
    pub fn restore_run(&self, run_id: &str) -> Result<()> {
        self.set_run_stage(run_id, LifecycleStage::Active)
    }

    fn set_run_stage(&self, run_id: &str, stage: LifecycleStage) -> Result<()> {
        validate::run_id(run_id)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            cat.run_info(run_id)?.ok_or_else(|| run_not_found(run_id))?;
            if stage == LifecycleStage::Deleted {
                super::deployments::guard(
                    cat,
                    |_, served| served.is_some_and(|(_, v)| v.run_id == run_id),
                    || format!("run '{run_id}'"),
                )?;
            }
            let op = Op::SetRunStage {
                run_id: run_id.to_string(),
                stage,
                time,
            };
            Ok((Some(op), ()))
        })
    }

    /// Sets (upserts) a tag of an active run; the value is truncated to 8000 characters.
    /// Setting `mlflow.runName` renames the run.
    pub fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        self.log_batch(run_id, &[], &[], &[Tag::new(key, value)])
    }

    /// Removes a tag of an active run ([`Error::NotFound`] if it has no such tag).
    pub fn delete_tag(&self, run_id: &str, key: &str) -> Result<()> {
        self.inner.commit(|cat| {
            active_run(cat, run_id)?;
            if cat.tag(run_id, key)?.is_none() {
                return Err(Error::NotFound(format!(
                    "No tag with name: {key} in run with id {run_id}"
                )));
            }
            let op = Op::DeleteRunTag {
                run_id: run_id.to_string(),
                key: key.to_string(),
            };
            Ok((Some(op), ()))
        })
    }

    /// Logs a param of an active run. Params are write-once: the same value again is a no-op,
    /// another value is [`Error::InvalidParameter`]. Values are truncated to 6000 characters.
    pub fn log_param(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        self.log_batch(run_id, &[], &[Param::new(key, value)], &[])
    }

    /// Records datasets used by an active run. Datasets are deduplicated per experiment by
    /// (name, digest).
    pub fn log_inputs(&self, run_id: &str, inputs: &[DatasetInput]) -> Result<()> {
        if inputs.len() > MAX_DATASETS_PER_CALL {
            return Err(Error::InvalidParameter(format!(
                "A logging request can contain at most {MAX_DATASETS_PER_CALL} datasets. Got {}.",
                inputs.len()
            )));
        }
        for input in inputs {
            check_dataset_input(input)?;
        }
        self.inner.commit(|cat| {
            let info = active_run(cat, run_id)?;
            if inputs.is_empty() {
                return Ok((None, ()));
            }
            let op = Op::LogInputs {
                run_id: run_id.to_string(),
                experiment_id: validate::experiment_id(&info.experiment_id)?,
                inputs: inputs.to_vec(),
            };
            Ok((Some(op), ()))
        })
    }

    /// The distinct (experiment, dataset name, digest, context) of the dataset inputs of every
    /// run, active or deleted, of the given experiments, as MLflow's `SearchDatasets` lists them:
    /// at most 1000, in (experiment, name, digest, context) order. Unknown
    /// experiments are skipped; an id that is not a number is
    /// [`Error::InvalidParameter`].
    pub fn search_datasets(&self, experiment_ids: &[&str]) -> Result<Vec<DatasetSummary>> {
        let cat = &self.inner.catalog;
        let mut found = std::collections::BTreeSet::new();
        for exp in experiment_ids {
            let id = validate::experiment_id(exp)?;
            for run_id in cat.run_ids_of_experiment(id)? {
                for input in cat.run_dataset_inputs(&run_id)? {
                    let context = input
                        .tags
                        .iter()
                        .find(|t| t.key == DATASET_CONTEXT_TAG)
                        .map(|t| t.value.clone());
                    found.insert(DatasetSummary {
                        experiment_id: id.to_string(),
                        name: input.dataset.name,
                        digest: input.dataset.digest,
                        context,
                    });
                }
            }
        }
        Ok(found.into_iter().take(MAX_DATASET_SUMMARIES).collect())
    }

    /// The runs of the given experiments in `view`, newest first (start time descending, then
    /// run id). Full search with filters comes with the search module.
    pub fn list_runs(&self, experiment_ids: &[&str], view: ViewType) -> Result<Vec<RunInfo>> {
        let cat = &self.inner.catalog;
        let mut out = Vec::new();
        for exp in experiment_ids {
            let id = validate::experiment_id(exp)?;
            for run_id in cat.run_ids_of_experiment(id)? {
                if let Some(info) = cat.run_info(&run_id)? {
                    if view.includes(info.lifecycle_stage) {
                        out.push(info);
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            b.start_time
                .cmp(&a.start_time)
                .then(a.run_id.cmp(&b.run_id))
        });
        Ok(out)
    }

    /// Validates params and tags of a batch against the run; fills `batch` with what to log.
    pub(super) fn prepare_params_and_tags(
        cat: &Catalog,
        run_id: &str,
        params: &[Param],
        tags: &[Tag],
        batch: &mut LogBatch,
    ) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        let dups: Vec<&str> = params
            .iter()
            .filter(|p| !seen.insert(p.key.as_str()))
            .map(|p| p.key.as_str())
            .collect();
        if !dups.is_empty() {
            return Err(Error::InvalidParameter(format!(
                "Duplicate parameter keys have been submitted: {dups:?}. Please ensure the \
                 request contains only one param value per param key."
            )));
        }
        let mut changed = Vec::new();
        for p in params {
            validate::entity_key("param", &p.key)?;
            let value = validate::truncate(&p.value, validate::MAX_PARAM_VAL_LENGTH);
            match cat.param(run_id, &p.key)? {
                Some(old) if old == value => {}
                Some(old) => changed.push((p.key.clone(), old, value)),
                None => batch.params.push(Param::new(p.key.clone(), value)),
            }
        }
        match changed.as_slice() {
            [] => {}
            [(key, old, new)] if params.len() == 1 => {
                return Err(Error::InvalidParameter(format!(
                    "Changing param values is not allowed. Param with key='{key}' was already \
                     logged with value='{old}' for run ID='{run_id}'. Attempted logging new value '{new}'."
                )))
            }
            many => {
                let old: Vec<String> = many.iter().map(|(k, o, _)| format!("{k}={o}")).collect();
                let new: Vec<String> = many.iter().map(|(k, _, n)| format!("{k}={n}")).collect();
                return Err(Error::InvalidParameter(format!(
                    "Changing param values is not allowed. Params were already logged='{old:?}' \
                     for run ID='{run_id}'. Attempted logging new values '{new:?}'."
                )));
            }
        }
        for t in tags {
            batch.tags.push(checked_tag(t)?);
        }
        Ok(())
    }
}

fn check_dataset_input(input: &DatasetInput) -> Result<()> {
    let ds = &input.dataset;
    let limit = |what: &str, value: &str, max: usize| {
        if value.chars().count() > max {
            Err(Error::InvalidParameter(format!(
                "Dataset {what} exceeds the maximum length of {max} characters"
            )))
        } else {
            Ok(())
        }
    };
    for (what, value) in [
        ("name", &ds.name),
        ("digest", &ds.digest),
        ("source_type", &ds.source_type),
    ] {
        if value.is_empty() {
            return Err(Error::InvalidParameter(format!(
                "Missing value for required parameter 'dataset.{what}'"
            )));
        }
    }
    limit("name", &ds.name, 500)?;
    limit("digest", &ds.digest, 36)?;
    limit("source", &ds.source, 65535)?;
    limit("schema", ds.schema.as_deref().unwrap_or(""), 1_048_575)?;
    limit("profile", ds.profile.as_deref().unwrap_or(""), 16_777_215)?;
    for t in &input.tags {
        limit("input tag key", &t.key, 255)?;
        limit("input tag value", &t.value, 500)?;
    }
    Ok(())
}
