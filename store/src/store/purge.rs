//! Garbage collection: permanent deletion of deleted runs and experiments (MLflow's `gc`), and
//! the removal of what nothing references any more: metric points of purged runs from the
//! segments, and artifact blobs no path points at (deleted, overwritten or purged artifacts).
//!
//! Deleting a run or an experiment only marks it deleted; [`Store::purge`] removes it for good.
//! Blobs and segment rows left without a reference are collected by [`Store::gc`], which the
//! background thread also runs after a change that may have left some
//! ([`super::StoreOptions::gc_interval`]) and once after the store opens.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::manifests::{is_manifest_path, referenced_by_manifest};
use super::{now_ms, Inner, Store};
use crate::blobs::{BlobStore, Digest, GcReport};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::ops::{Op, PurgedRun};
use crate::types::LifecycleStage;
use crate::validate;

/// Runs purged per logged op: bounds the staged catalog writes one op holds before it is durable.
const PURGE_BATCH: usize = 256;

/// What [`Store::purge`] deletes for good, with MLflow `gc`'s meaning of its options.
#[derive(Debug, Clone, Default)]
pub struct PurgeRequest {
    /// Only runs deleted, and experiments last changed, at least this long ago. With explicit
    /// ids, a younger one is an error.
    pub older_than: Option<Duration>,
    /// These deleted runs (each must exist and be deleted).
    pub run_ids: Vec<String>,
    /// These deleted experiments, with all their runs (each must exist and be deleted).
    /// When both id lists are empty, every deleted run and every deleted experiment is purged.
    pub experiment_ids: Vec<String>,
}

/// What [`Store::purge`] or [`Store::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Runs deleted for good (those of purged experiments included).
    pub runs_purged: u64,
    /// Experiments deleted for good.
    pub experiments_purged: u64,
    /// Metric points removed from segments.
    pub metric_points_removed: u64,
    /// The blob collection.
    pub blobs: GcReport,
}

impl Store {
    /// Deletes deleted runs and experiments permanently, as `mlflow gc` does: their records,
    /// params, tags, metrics (catalog and segment rows), inputs and artifacts, then collects
    /// what that left unreferenced ([`Store::gc`]). Experiment names become free again; ids are
    /// never reused. Logged models stay (registered model versions may point at them).
    ///
    /// Explicit ids that do not exist are [`Error::NotFound`]; ids of runs or experiments that
    /// are not deleted, or not older than `older_than`, are [`Error::InvalidParameter`], and
    /// then nothing is purged.
    pub fn purge(&self, req: &PurgeRequest) -> Result<PurgeReport> {
        let cutoff = req
            .older_than
            .map(|d| now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
        let old_enough = |t: Option<i64>| cutoff.is_none_or(|c| t.is_some_and(|t| t <= c));
        let cat = &self.inner.catalog;
        let everything = req.run_ids.is_empty() && req.experiment_ids.is_empty();

        let mut experiments = Vec::new();
        if everything {
            for e in cat.experiments(crate::types::ViewType::DeletedOnly)? {
                if old_enough(Some(e.last_update_time)) {
                    experiments.push(validate::experiment_id(&e.experiment_id)?);
                }
            }
        }
        for id in &req.experiment_ids {
            let exp = self.get_experiment(id)?;
            if exp.lifecycle_stage != LifecycleStage::Deleted {
                return Err(Error::InvalidParameter(format!(
                    "Experiment {id} is not in the deleted lifecycle stage; only deleted \
                     experiments can be purged"
                )));
            }
            if !old_enough(Some(exp.last_update_time)) {
                return Err(Error::InvalidParameter(format!(
                    "Experiment {id} is not older than the required age"
                )));
            }
            experiments.push(validate::experiment_id(id)?);
        }

        let mut runs = Vec::new();
        if everything {
            for info in cat.all_run_infos()? {
                if info.lifecycle_stage == LifecycleStage::Deleted && old_enough(info.deleted_time)
                {
                    runs.push(info.run_id);
                }
            }
        }
        for id in &req.run_ids {
            let info = self.get_run(id)?.info;
            if info.lifecycle_stage != LifecycleStage::Deleted {
                return Err(Error::InvalidParameter(format!(
                    "Run {id} is not in the deleted lifecycle stage; only deleted runs can be \
                     purged"
                )));
            }
            if !old_enough(info.deleted_time) {
                return Err(Error::InvalidParameter(format!(
                    "Run {id} is not older than the required age"
                )));
            }
            runs.push(info.run_id);
        }

        let mut report = PurgeReport::default();
        for chunk in runs.chunks(PURGE_BATCH) {
            report.runs_purged += self.purge_runs(chunk, None)?;
        }
        for id in experiments {
            let run_ids = cat.run_ids_of_experiment(id)?;
            for chunk in run_ids.chunks(PURGE_BATCH) {
                report.runs_purged += self.purge_runs(chunk, Some(id))?;
            }
            let purged = self.inner.commit(|cat| {
                let deleted = cat
                    .experiment(id)?
                    .is_some_and(|e| e.lifecycle_stage == LifecycleStage::Deleted);
                let op = deleted.then_some(Op::PurgeExperiment { id });
                Ok((op, deleted))
            })?;
            if purged {
                report.experiments_purged += 1;
                tracing::info!(experiment = id, "purged experiment");
            }
        }
        // Points of purged runs may still be in buffers: persist them, then rewrite.
        self.inner.flush()?;
        let collected = self.gc()?;
        report.metric_points_removed = collected.metric_points_removed;
        report.blobs = collected.blobs;
        Ok(report)
    }

    /// Purges those of `run_ids` that are still there and deleted (or, with `experiment`, that
    /// belong to that experiment while it is deleted), in one logged op; returns how many.
    pub(super) fn purge_runs(&self, run_ids: &[String], experiment: Option<u64>) -> Result<u64> {
        self.inner.commit(|cat| {
            let mut runs = Vec::new();
            for run_id in run_ids {
                let Some(info) = cat.run_info(run_id)? else {
                    continue;
                };
                let Ok(experiment_id) = info.experiment_id.parse::<u64>() else {
                    continue;
                };
                let purgeable = match experiment {
                    Some(id) => {
                        id == experiment_id
                            && cat
                                .experiment(id)?
                                .is_some_and(|e| e.lifecycle_stage == LifecycleStage::Deleted)
                    }
                    None => info.lifecycle_stage == LifecycleStage::Deleted,
                };
                if purgeable {
                    runs.push(PurgedRun {
                        run_id: run_id.clone(),
                        experiment_id,
                    });
                }
            }
            let n = runs.len() as u64;
            Ok(((n > 0).then_some(Op::PurgeRuns { runs }), n))
        })
    }

    /// Removes what nothing references any more: the metric points of purged runs from the
    /// segments, and blobs that no artifact path points at. Uploads wait only while the
    /// unreferenced blobs are deleted, not while the store is scanned.
    pub fn gc(&self) -> Result<PurgeReport> {
        self.inner.collect_garbage()
    }
}

impl Inner {
    /// See [`Store::gc`].
    pub(super) fn collect_garbage(&self) -> Result<PurgeReport> {
        let metric_points_removed = self.drop_purged_points()?;
        self.collect_blobs().map(|blobs| PurgeReport {
            metric_points_removed,
            blobs,
            ..PurgeReport::default()
        })
    }

    /// Rewrites the segments that hold points of purged runs (see [`Store::gc`]).
    pub(super) fn drop_purged_points(&self) -> Result<u64> {
        self.purged_points_pending.store(false, Ordering::Release);
        let catalog = &self.catalog;
        self.metrics
            .drop_series(|id| catalog.series_exists(id))
            .inspect_err(|_| self.purged_points_pending.store(true, Ordering::Release))
    }

    /// Removes the blobs no artifact path refers to (see [`Store::gc`]).
    pub(super) fn collect_blobs(&self) -> Result<GcReport> {
        self.gc_wanted.store(false, Ordering::Release);
        let catalog = &self.catalog;
        // First pass without the lock: blobs unreferenced now are the only candidates, since a
        // blob referenced later was referenced by a put that holds the lock until it commits.
        let referenced = referenced_blobs(catalog, &self.blobs)?;
        let stored = self.blobs.list()?;
        let total = stored.len() as u64;
        let candidates: Vec<Digest> = stored
            .into_iter()
            .filter(|d| !referenced.contains(d))
            .collect();
        drop(referenced);
        let mut blobs = if candidates.is_empty() {
            GcReport::default()
        } else {
            let _gc = self.gc_lock.write().expect("gc lock");
            let referenced = referenced_blobs(catalog, &self.blobs)?;
            self.blobs
                .remove_unreferenced(&candidates, |d| referenced.contains(d))?
        };
        blobs.blobs_kept = total - blobs.blobs_removed;
        Ok(blobs)
    }
}

/// The digest of every artifact path (runs' and logged models' alike), and of every file the
/// runs' manifests (source snapshots, outputs) list.
fn referenced_blobs(catalog: &Catalog, blobs: &BlobStore) -> Result<HashSet<Digest>> {
    let mut referenced = HashSet::new();
    for entry in catalog.artifacts_with_prefix("") {
        let entry = entry?;
        if is_manifest_path(&entry.path) {
            // A manifest that cannot be read stops the collection: what it names is unknown.
            referenced_by_manifest(&blobs.map(&entry.digest)?, &mut referenced);
        }
        referenced.insert(entry.digest);
    }
    Ok(referenced)
}
