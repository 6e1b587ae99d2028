//! Experiments: create, read, rename, delete/restore, tags.

use super::{now_ms, Store};
use crate::error::{Error, Result};
use crate::ops::Op;
use crate::types::{Experiment, LifecycleStage, Tag, ViewType};
use crate::validate;

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("No Experiment with id={id} exists"))
}

pub(super) fn check_experiment_tag(tag: &Tag) -> Result<()> {
    validate::entity_key("tag", &tag.key)?;
    if tag.value.chars().count() > validate::MAX_EXPERIMENT_TAG_VAL_LENGTH {
        return Err(Error::InvalidParameter(format!(
            "'value' exceeds the maximum length of {} characters",
            validate::MAX_EXPERIMENT_TAG_VAL_LENGTH
        )));
    }
    Ok(())
}

impl Store {
    /// Creates an experiment and returns its id. Names are unique among active *and* deleted
    /// experiments ([`Error::AlreadyExists`]). The artifact location defaults to
    /// `mlflow-artifacts:/<id>`; a relative local path is made absolute against the process's
    /// current directory, as MLflow's stores do (`resolve_uri_if_local`).
    pub fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[Tag],
    ) -> Result<String> {
        validate::experiment_name(name)?;
        tags.iter().try_for_each(check_experiment_tag)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            if cat.experiment_id_by_name(name)?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "Experiment '{name}' already exists."
                )));
            }
            let id = cat.next_experiment_id()?.max(1);
            let artifact_location = match artifact_location {
                Some(loc) if !loc.is_empty() => resolve_if_local(loc),
                _ => format!("mlflow-artifacts:/{id}"),
            };
            let op = Op::CreateExperiment {
                id,
                name: name.to_string(),
                artifact_location,
                tags: tags.to_vec(),
                time,
            };
            Ok((Some(op), id.to_string()))
        })
    }

    /// The experiment with id `experiment_id` (deleted ones too).
    pub fn get_experiment(&self, experiment_id: &str) -> Result<Experiment> {
        let id = validate::experiment_id(experiment_id)?;
        self.inner
            .catalog
            .experiment(id)?
            .ok_or_else(|| not_found(experiment_id))
    }

    /// The experiment called `name` (deleted ones too).
    pub fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        let cat = &self.inner.catalog;
        cat.experiment_id_by_name(name)?
            .and_then(|id| cat.experiment(id).transpose())
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("Could not find experiment with name '{name}'")))
    }

    /// Every experiment in `view`, by id.
    pub fn list_experiments(&self, view: ViewType) -> Result<Vec<Experiment>> {
        self.inner.catalog.experiments(view)
    }

    /// Renames an active experiment.
    pub fn rename_experiment(&self, experiment_id: &str, new_name: &str) -> Result<()> {
        validate::experiment_name(new_name)?;
        let id = validate::experiment_id(experiment_id)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let exp = cat
                .experiment(id)?
                .ok_or_else(|| not_found(experiment_id))?;
            if exp.lifecycle_stage != LifecycleStage::Active {
                return Err(Error::InvalidState(
                    "Cannot rename a non-active experiment.".into(),
                ));
            }
            if exp.name == new_name {
                return Ok((None, ()));
            }
            if cat.experiment_id_by_name(new_name)?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "Experiment '{new_name}' already exists."
                )));
            }
            let op = Op::RenameExperiment {
                id,
                name: new_name.to_string(),
                time,
            };
            Ok((Some(op), ()))
        })
    }

    /// Marks an experiment and all its runs deleted. Refused ([`Error::InvalidState`]) while a
    /// deployment serves a model version one of its runs produced.
    pub fn delete_experiment(&self, experiment_id: &str) -> Result<()> {
        self.set_experiment_stage(experiment_id, LifecycleStage::Deleted)
    }

    /// Restores a deleted experiment and its runs.
    pub fn restore_experiment(&self, experiment_id: &str) -> Result<()> {
        self.set_experiment_stage(experiment_id, LifecycleStage::Active)
    }

    fn set_experiment_stage(&self, experiment_id: &str, stage: LifecycleStage) -> Result<()> {
        let id = validate::experiment_id(experiment_id)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let exp = cat.experiment(id)?.ok_or_else(|| not_found(experiment_id))?;
            if stage == LifecycleStage::Active && exp.lifecycle_stage == LifecycleStage::Active {
                return Err(Error::InvalidParameter(format!(
                    "Cannot restore an active experiment. Experiment {experiment_id} is already active."
                )));
            }
            if stage == LifecycleStage::Deleted {
                let runs: std::collections::HashSet<String> =
                    cat.run_ids_of_experiment(id)?.into_iter().collect();
                super::deployments::guard(
                    cat,
                    |_, served| served.is_some_and(|(_, v)| runs.contains(&v.run_id)),
                    || format!("experiment '{experiment_id}'"),
                )?;
            }
            Ok((Some(Op::SetExperimentStage { id, stage, time }), ()))
        })
    }

    /// Sets (upserts) a tag on an active experiment.
    pub fn set_experiment_tag(&self, experiment_id: &str, key: &str, value: &str) -> Result<()> {
        let tag = Tag::new(key, value);
        check_experiment_tag(&tag)?;
        let id = validate::experiment_id(experiment_id)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let exp = cat.experiment(id)?.ok_or_else(|| not_found(experiment_id))?;
            if exp.lifecycle_stage != LifecycleStage::Active {
                return Err(Error::InvalidParameter(format!(
                    "The experiment {experiment_id} must be in the 'active' state. Current state is deleted."
                )));
            }
            Ok((Some(Op::SetExperimentTag { id, tag, time }), ()))
        })
    }

    /// Removes a tag from an experiment.
    pub fn delete_experiment_tag(&self, experiment_id: &str, key: &str) -> Result<()> {
        let id = validate::experiment_id(experiment_id)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let exp = cat
                .experiment(id)?
                .ok_or_else(|| not_found(experiment_id))?;
            if !exp.tags.iter().any(|t| t.key == key) {
                return Err(Error::NotFound(format!(
                    "No tag with name: {key} in experiment with id {experiment_id}"
                )));
            }
            let op = Op::DeleteExperimentTag {
                id,
                key: key.to_string(),
                time,
            };
            Ok((Some(op), ()))
        })
    }
}

/// `location` made absolute if it is a relative local path (no URI scheme): joined to the
/// current directory and normalized (`.` and `..` resolved lexically, as Python's
/// `os.path.abspath`). Anything with a scheme, and absolute paths, are kept as given.
fn resolve_if_local(location: &str) -> String {
    let has_scheme = location.split_once(':').is_some_and(|(scheme, _)| {
        scheme.len() > 1
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    });
    if has_scheme || location.starts_with('/') {
        return location.to_string();
    }
    let Ok(cwd) = std::env::current_dir() else {
        return location.to_string();
    };
    let mut parts: Vec<String> = Vec::new();
    let joined = format!("{}/{location}", cwd.display());
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p.to_string()),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod location_tests {
    use super::resolve_if_local;

    #[test]
    fn relative_local_paths_become_absolute_and_uris_stay() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            resolve_if_local("my_location"),
            cwd.join("my_location").display().to_string()
        );
        assert_eq!(
            resolve_if_local("./a/../b"),
            cwd.join("b").display().to_string()
        );
        for kept in [
            "/abs/path",
            "s3://bucket/x",
            "mlflow-artifacts:/3",
            "file:///tmp/x",
        ] {
            assert_eq!(resolve_if_local(kept), kept);
        }
    }
}
