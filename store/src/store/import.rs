//! Bringing history from another tracking server (`quiver import`): experiments keep their ids
//! when they are free, runs keep their ids, names, users, statuses, times and lifecycle stages,
//! and metric points come in batches far larger than MLflow's logging limits. The readers of
//! the source formats live in the `quiver` binary; this is what they write through.
//!
//! A run is imported in steps ([`Store::import_run`], [`Store::import_metrics`] as often as
//! needed, [`Store::finish_imported_run`]); an importer that was interrupted between them
//! throws the partial run away with [`Store::discard_imported_run`] and imports it again.

use super::metrics::{batch_op, check_metrics};
use super::runs::{checked_tag, run_not_found};
use super::{experiments::check_experiment_tag, Store};
use crate::error::{Error, Result};
use crate::ops::Op;
use crate::types::{LifecycleStage, Metric, Param, RunInfo, Tag};
use crate::validate;
use crate::PurgeRequest;

/// Most points one [`Store::import_metrics`] call takes (one log record of a few MB).
pub const IMPORT_BATCH: usize = 50_000;

/// An experiment as the source had it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportExperiment {
    /// Its id in the source; kept when this store has no experiment with that id.
    pub experiment_id: String,
    /// Its name (the key: an experiment of that name here is the same experiment).
    pub name: String,
    /// Deleted experiments stay deleted ([`Store::finish_imported_experiment`]).
    pub lifecycle_stage: LifecycleStage,
    /// Creation time, ms since the epoch.
    pub creation_time: i64,
    /// Its tags.
    pub tags: Vec<Tag>,
}

/// Where an imported experiment landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedExperiment {
    /// Its id in this store.
    pub experiment_id: String,
    /// Whether it was created now (false: an experiment of that name was here already).
    pub created: bool,
}

impl Store {
    /// Creates the experiment `e` unless one of its name exists (then that one is used). Its id
    /// is the source's when that is a free number here, else the next free one. Created
    /// active: runs can then be imported into it, and a deleted one is deleted afterwards by
    /// [`Store::finish_imported_experiment`].
    pub fn import_experiment(&self, e: &ImportExperiment) -> Result<ImportedExperiment> {
        validate::experiment_name(&e.name)?;
        e.tags.iter().try_for_each(check_experiment_tag)?;
        self.inner.commit(|cat| {
            if let Some(id) = cat.experiment_id_by_name(&e.name)? {
                let found = ImportedExperiment {
                    experiment_id: id.to_string(),
                    created: false,
                };
                return Ok((None, found));
            }
            let id = match e.experiment_id.parse::<u64>() {
                Ok(id) if cat.experiment(id)?.is_none() => id,
                _ => cat.next_experiment_id()?.max(1),
            };
            let op = Op::CreateExperiment {
                id,
                name: e.name.clone(),
                artifact_location: format!("mlflow-artifacts:/{id}"),
                tags: e.tags.clone(),
                time: e.creation_time,
            };
            let made = ImportedExperiment {
                experiment_id: id.to_string(),
                created: true,
            };
            Ok((Some(op), made))
        })
    }

    /// Marks an imported experiment deleted when the source had it deleted (with its runs, as
    /// deleting an experiment does here).
    pub fn finish_imported_experiment(
        &self,
        experiment_id: &str,
        stage: LifecycleStage,
        time: i64,
    ) -> Result<()> {
        let id = validate::experiment_id(experiment_id)?;
        if stage == LifecycleStage::Active {
            return Ok(());
        }
        self.inner.commit(|cat| {
            let exp = cat.experiment(id)?.ok_or_else(|| {
                Error::NotFound(format!("No Experiment with id={experiment_id} exists"))
            })?;
            if exp.lifecycle_stage == stage {
                return Ok((None, ()));
            }
            Ok((Some(Op::SetExperimentStage { id, stage, time }), ()))
        })
    }

    /// Creates run `info.run_id` with its info (status, times, user, name), `tags` and
    /// `params`, in experiment `info.experiment_id` of this store (any stage). Returns false,
    /// changing nothing, when a run with that id exists. The run is active until
    /// [`Store::finish_imported_run`] gives it its stage.
    pub fn import_run(&self, info: &RunInfo, tags: &[Tag], params: &[Param]) -> Result<bool> {
        validate::run_id(&info.run_id)?;
        let exp_id = validate::experiment_id(&info.experiment_id)?;
        let tags: Vec<Tag> = tags.iter().map(checked_tag).collect::<Result<_>>()?;
        let created = self.inner.commit(|cat| {
            if cat.run_info(&info.run_id)?.is_some() {
                return Ok((None, false));
            }
            let exp = cat.experiment(exp_id)?.ok_or_else(|| {
                Error::NotFound(format!(
                    "No Experiment with id={} exists",
                    info.experiment_id
                ))
            })?;
            let mut info = info.clone();
            info.artifact_uri = format!(
                "{}/{}/artifacts",
                exp.artifact_location.trim_end_matches('/'),
                info.run_id
            );
            info.lifecycle_stage = LifecycleStage::Active;
            info.deleted_time = None;
            Ok((Some(Op::CreateRun { info, tags }), true))
        })?;
        if created && !params.is_empty() {
            for chunk in params.chunks(IMPORT_BATCH) {
                self.inner
                    .commit(|cat| Ok((batch_op(cat, &info.run_id, &[], chunk, &[])?, ())))?;
            }
        }
        Ok(created)
    }

    /// Adds up to [`IMPORT_BATCH`] metric points to an imported run, as they are (NaN and ±Inf
    /// kept; exact duplicates stored once, as everywhere).
    pub fn import_metrics(&self, run_id: &str, metrics: &[Metric]) -> Result<()> {
        if metrics.len() > IMPORT_BATCH {
            return Err(Error::InvalidParameter(format!(
                "an import batch holds at most {IMPORT_BATCH} points, not {}",
                metrics.len()
            )));
        }
        validate::run_id(run_id)?;
        check_metrics(metrics)?;
        self.inner.commit(|cat| {
            if cat.run_info(run_id)?.is_none() {
                return Err(run_not_found(run_id));
            }
            Ok((batch_op(cat, run_id, metrics, &[], &[])?, ()))
        })
    }

    /// Gives an imported run its lifecycle stage (a deleted run is deleted at `deleted_time`).
    pub fn finish_imported_run(
        &self,
        run_id: &str,
        stage: LifecycleStage,
        deleted_time: Option<i64>,
    ) -> Result<()> {
        validate::run_id(run_id)?;
        if stage == LifecycleStage::Active {
            return Ok(());
        }
        self.inner.commit(|cat| {
            let info = cat.run_info(run_id)?.ok_or_else(|| run_not_found(run_id))?;
            if info.lifecycle_stage == stage {
                return Ok((None, ()));
            }
            let time = deleted_time.unwrap_or_else(super::now_ms);
            let op = Op::SetRunStage {
                run_id: run_id.to_string(),
                stage,
                time,
            };
            Ok((Some(op), ()))
        })
    }

    /// Removes a run an interrupted import left half written (deletes and purges it), so that
    /// it can be imported again from the start.
    pub fn discard_imported_run(&self, run_id: &str) -> Result<()> {
        let info = self.get_run(run_id)?.info;
        if info.lifecycle_stage == LifecycleStage::Active {
            self.delete_run(run_id)?;
        }
        self.purge(&PurgeRequest {
            run_ids: vec![run_id.to_string()],
            ..PurgeRequest::default()
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RunStatus;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        (dir, store)
    }

    fn experiment(id: &str, name: &str) -> ImportExperiment {
        ImportExperiment {
            experiment_id: id.into(),
            name: name.into(),
            lifecycle_stage: LifecycleStage::Active,
            creation_time: 1_000,
            tags: vec![Tag::new("team", "a")],
        }
    }

    fn info(run_id: &str, experiment_id: &str) -> RunInfo {
        RunInfo {
            run_id: run_id.into(),
            run_name: "old-run".into(),
            experiment_id: experiment_id.into(),
            user_id: "ann".into(),
            status: RunStatus::Finished,
            start_time: 5_000,
            end_time: Some(9_000),
            artifact_uri: "file:///elsewhere".into(),
            lifecycle_stage: LifecycleStage::Deleted,
            deleted_time: Some(10_000),
        }
    }

    #[test]
    fn experiments_keep_free_ids_and_are_found_by_name() {
        let (_dir, s) = store();
        let e = s.import_experiment(&experiment("7", "old")).unwrap();
        assert_eq!((e.experiment_id.as_str(), e.created), ("7", true));
        let got = s.get_experiment("7").unwrap();
        assert_eq!((got.name.as_str(), got.creation_time), ("old", 1_000));
        // Same name again: the same experiment; a taken id: the next free one.
        let again = s.import_experiment(&experiment("3", "old")).unwrap();
        assert_eq!((again.experiment_id.as_str(), again.created), ("7", false));
        let other = s.import_experiment(&experiment("7", "other")).unwrap();
        assert_eq!(other.experiment_id, "8");
        assert_eq!(s.create_experiment("new", None, &[]).unwrap(), "9");
    }

    #[test]
    fn a_run_keeps_its_id_info_and_every_point() {
        let (_dir, s) = store();
        let exp = s.import_experiment(&experiment("4", "old")).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        let params: Vec<Param> = (0..250).map(|i| Param::new(format!("p{i}"), "v")).collect();
        let tags = [Tag::new("mlflow.runName", "old-run")];
        assert!(s
            .import_run(&info(id, &exp.experiment_id), &tags, &params)
            .unwrap());
        let points: Vec<Metric> = (0..IMPORT_BATCH as i64)
            .map(|i| Metric::new("loss", if i == 3 { f64::NAN } else { i as f64 }, i, i / 2))
            .collect();
        s.import_metrics(id, &points).unwrap();
        s.import_metrics(id, &[Metric::new("loss", f64::INFINITY, 1, 1)])
            .unwrap();
        s.finish_imported_run(id, LifecycleStage::Deleted, Some(10_000))
            .unwrap();

        let run = s.get_run(id).unwrap();
        assert_eq!(run.info.status, RunStatus::Finished);
        assert_eq!(
            (run.info.start_time, run.info.end_time),
            (5_000, Some(9_000))
        );
        assert_eq!(run.info.lifecycle_stage, LifecycleStage::Deleted);
        assert_eq!(run.info.user_id, "ann");
        assert_eq!(
            run.info.artifact_uri,
            format!("mlflow-artifacts:/4/{id}/artifacts")
        );
        assert_eq!(run.params.len(), 250);
        let (h, _) = s.metric_history(id, "loss", None, None).unwrap();
        assert_eq!(h.len(), IMPORT_BATCH + 1);
        assert!(h.values().iter().any(|v| v.is_nan()));
        assert!(h.values().contains(&f64::INFINITY));

        // Importing it again changes nothing; a batch too large is refused.
        assert!(!s.import_run(&info(id, "4"), &[], &[]).unwrap());
        let too_many = vec![Metric::new("m", 1.0, 1, 1); IMPORT_BATCH + 1];
        assert!(matches!(
            s.import_metrics(id, &too_many),
            Err(Error::InvalidParameter(_))
        ));
    }

    #[test]
    fn a_discarded_run_can_be_imported_again() {
        let (_dir, s) = store();
        let exp = s.import_experiment(&experiment("1", "old")).unwrap();
        let id = "fedcba9876543210fedcba9876543210";
        s.import_run(&info(id, &exp.experiment_id), &[], &[])
            .unwrap();
        s.import_metrics(id, &[Metric::new("m", 1.0, 1, 1)])
            .unwrap();
        s.discard_imported_run(id).unwrap();
        assert!(matches!(s.get_run(id), Err(Error::NotFound(_))));
        assert!(s
            .import_run(&info(id, &exp.experiment_id), &[], &[])
            .unwrap());
        s.import_metrics(id, &[Metric::new("m", 2.0, 1, 1)])
            .unwrap();
        let (h, _) = s.metric_history(id, "m", None, None).unwrap();
        assert_eq!(h.values(), &[2.0]);
    }

    #[test]
    fn a_deleted_experiment_is_deleted_after_its_runs() {
        let (_dir, s) = store();
        let mut e = experiment("2", "gone");
        e.lifecycle_stage = LifecycleStage::Deleted;
        let exp = s.import_experiment(&e).unwrap();
        let mut i = info("00000000000000000000000000000001", &exp.experiment_id);
        i.lifecycle_stage = LifecycleStage::Active;
        s.import_run(&i, &[], &[]).unwrap();
        s.finish_imported_experiment(&exp.experiment_id, LifecycleStage::Deleted, 2_000)
            .unwrap();
        let got = s.get_experiment(&exp.experiment_id).unwrap();
        assert_eq!(got.lifecycle_stage, LifecycleStage::Deleted);
    }
}
