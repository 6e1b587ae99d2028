//! The mutations of the store, as written to the write-ahead log.
//!
//! Every write is first validated against the current state, then turned into one [`Op`] that
//! carries everything needed to apply it deterministically (ids, timestamps, series ids): replaying
//! the log onto the state it was written against rebuilds the same catalog and metric buffers.

use serde::{Deserialize, Serialize};

use crate::catalog::models::{
    DeploymentRecord, LoggedModelRecord, ModelVersionRecord, RegisteredModelRecord,
};
use crate::error::{Error, Result};
use crate::model_types::{ModelOutput, RegistryEvent};
use crate::types::{ArtifactEntry, DatasetInput, LifecycleStage, Param, RunInfo, RunStatus, Tag};

/// One logged mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Op {
    /// A new experiment with a freshly allocated id.
    CreateExperiment {
        id: u64,
        name: String,
        artifact_location: String,
        tags: Vec<Tag>,
        time: i64,
    },
    /// A rename.
    RenameExperiment { id: u64, name: String, time: i64 },
    /// Delete or restore an experiment, and with it all its runs.
    SetExperimentStage {
        id: u64,
        stage: LifecycleStage,
        time: i64,
    },
    /// Upsert an experiment tag.
    SetExperimentTag { id: u64, tag: Tag, time: i64 },
    /// Remove an experiment tag.
    DeleteExperimentTag { id: u64, key: String, time: i64 },
    /// A new run with its initial tags.
    CreateRun { info: RunInfo, tags: Vec<Tag> },
    /// Change status, end time or name of a run.
    UpdateRun {
        run_id: String,
        status: Option<RunStatus>,
        end_time: Option<i64>,
        run_name: Option<String>,
    },
    /// Delete or restore a run.
    SetRunStage {
        run_id: String,
        stage: LifecycleStage,
        time: i64,
    },
    /// Metrics, new params and tags of one run, atomically.
    LogBatch(Box<LogBatch>),
    /// Remove a run tag.
    DeleteRunTag { run_id: String, key: String },
    /// Record dataset inputs of a run.
    LogInputs {
        run_id: String,
        experiment_id: u64,
        inputs: Vec<DatasetInput>,
    },
    /// Point an artifact path at a stored blob.
    PutArtifact(ArtifactEntry),
    /// Remove an artifact file, or every file under a directory.
    DeleteArtifacts { path: String },
    /// Create or change a logged model. New variants go last: the log stores the variant index.
    LoggedModel(Box<LoggedModelChange>),
    /// Record logged models a run used and produced.
    RunModels {
        run_id: String,
        inputs: Vec<String>,
        outputs: Vec<ModelOutput>,
    },
    /// Changes of the model registry or of deployments, with the events that record them.
    Registry {
        changes: Vec<RegistryChange>,
        events: Vec<EventRecord>,
    },
    /// Delete deleted runs permanently (`quiver gc`): their record, params, tags, metrics,
    /// inputs and artifact paths. Their metric points leave the segments when those are
    /// rewritten, their blobs at the next blob collection.
    PurgeRuns { runs: Vec<PurgedRun> },
    /// Delete a deleted experiment permanently: its record, name, tags, datasets and whatever
    /// runs it still holds (purged as by [`Op::PurgeRuns`]).
    PurgeExperiment { id: u64 },
}

/// A run named in [`Op::PurgeRuns`], with its experiment (the run index is kept per experiment,
/// and the run's record is gone once the op is applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PurgedRun {
    pub(crate) run_id: String,
    pub(crate) experiment_id: u64,
}

/// The payload of [`Op::LoggedModel`]: upserts of its record, tags and params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LoggedModelChange {
    pub(crate) model_id: String,
    /// The model's record as it is after the change.
    pub(crate) record: LoggedModelRecord,
    pub(crate) set_tags: Vec<Tag>,
    pub(crate) delete_tags: Vec<String>,
    pub(crate) params: Vec<Param>,
}

/// One change of the registry. Records are carried whole, as they are after the change, so
/// that applying is a put or a delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum RegistryChange {
    /// Create or change (rename, describe, touch) registered model `id`.
    PutModel {
        id: u64,
        record: RegisteredModelRecord,
    },
    /// Delete a registered model with its versions, tags and aliases.
    DeleteModel {
        id: u64,
    },
    PutModelTag {
        id: u64,
        tag: Tag,
    },
    DeleteModelTag {
        id: u64,
        key: String,
    },
    PutVersion {
        id: u64,
        version: u64,
        record: ModelVersionRecord,
    },
    /// Delete a version with its tags and the aliases pointing at it.
    DeleteVersion {
        id: u64,
        version: u64,
    },
    PutVersionTag {
        id: u64,
        version: u64,
        tag: Tag,
    },
    DeleteVersionTag {
        id: u64,
        version: u64,
        key: String,
    },
    PutAlias {
        id: u64,
        alias: String,
        version: u64,
    },
    DeleteAlias {
        id: u64,
        alias: String,
    },
    PutDeployment {
        name: String,
        record: DeploymentRecord,
    },
    DeleteDeployment {
        name: String,
    },
}

/// A registry event and the registered model (by internal id) it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventRecord {
    pub(crate) model: u64,
    pub(crate) event: RegistryEvent,
}

/// The payload of [`Op::LogBatch`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct LogBatch {
    /// The run written to.
    pub(crate) run_id: String,
    /// The series the points belong to; points refer to them by index.
    pub(crate) series: Vec<SeriesRef>,
    /// The points, in the order they were logged.
    pub(crate) points: Vec<PointRecord>,
    /// Model and dataset references of points that have them; points refer to them by index + 1.
    pub(crate) extras: Vec<PointExtras>,
    /// Params not logged before (re-logging the same value is a no-op and not recorded).
    pub(crate) params: Vec<Param>,
    /// Tags to upsert.
    pub(crate) tags: Vec<Tag>,
}

/// A metric series of a run, with the id it has in the columnar store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SeriesRef {
    pub(crate) key: String,
    pub(crate) id: u64,
    /// True when this batch created the series.
    pub(crate) new: bool,
}

/// One metric point inside a [`LogBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct PointRecord {
    /// Index into [`LogBatch::series`].
    pub(crate) series: u32,
    pub(crate) value: f64,
    pub(crate) timestamp: i64,
    pub(crate) step: i64,
    /// 0 for none, else index + 1 into [`LogBatch::extras`].
    pub(crate) extra: u32,
}

/// The optional model and dataset of a metric point.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub(crate) struct PointExtras {
    pub(crate) model_id: Option<String>,
    pub(crate) dataset_name: Option<String>,
    pub(crate) dataset_digest: Option<String>,
}

impl Op {
    /// Serializes the op for the log, appending to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        // Serializing plain data into a Vec cannot fail.
        let bytes = postcard::to_extend(self, std::mem::take(out)).expect("encode op");
        *out = bytes;
    }

    /// Reads an op back from the log.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Op> {
        let op: Op = postcard::from_bytes(bytes)
            .map_err(|e| Error::Internal(format!("undecodable log record: {e}")))?;
        if let Op::LogBatch(b) = &op {
            // Indexes inside a batch must point into it, so that applying it cannot panic.
            let bad = b
                .points
                .iter()
                .any(|p| p.series as usize >= b.series.len() || p.extra as usize > b.extras.len());
            if bad {
                return Err(Error::Internal(
                    "log record refers to a series or extra outside its batch".into(),
                ));
            }
        }
        Ok(op)
    }

    /// This op with its metric points reduced to what the catalog keeps of them, for carrying
    /// forward into the catalog's delta log once the points are in Parquet segments: the greatest
    /// point (the catalog's "latest" rule) of each series and model/dataset reference, since the
    /// catalog keeps the latest value of each series and, for logged models, of each (key,
    /// dataset). Points keep their order in the batch, so ties resolve as they did live. `None`
    /// when nothing of the op concerns the catalog.
    pub(crate) fn catalog_part(&self) -> Option<Op> {
        let Op::LogBatch(batch) = self else {
            return Some(self.clone());
        };
        let mut best: std::collections::HashMap<(u32, u32), usize> =
            std::collections::HashMap::new();
        for (i, p) in batch.points.iter().enumerate() {
            let slot = best.entry((p.series, p.extra)).or_insert(i);
            if crate::metrics::latest_order(&p.key(), &batch.points[*slot].key()).is_gt() {
                *slot = i;
            }
        }
        let mut kept: Vec<usize> = best.into_values().collect();
        kept.sort_unstable();
        let points: Vec<PointRecord> = kept.into_iter().map(|i| batch.points[i]).collect();
        if points.is_empty() && batch.params.is_empty() && batch.tags.is_empty() {
            return None;
        }
        Some(Op::LogBatch(Box::new(LogBatch {
            points,
            ..(**batch).clone()
        })))
    }
}

impl PointRecord {
    /// The (step, timestamp, value) triple that orders points of a series.
    pub(crate) fn key(&self) -> (i64, i64, f64) {
        (self.step, self.timestamp, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_reduce_to_latest() {
        let batch = LogBatch {
            run_id: "r".into(),
            series: vec![SeriesRef {
                key: "loss".into(),
                id: 7,
                new: true,
            }],
            points: vec![
                PointRecord {
                    series: 0,
                    value: f64::NAN,
                    timestamp: 5,
                    step: 2,
                    extra: 0,
                },
                PointRecord {
                    series: 0,
                    value: 1.0,
                    timestamp: 9,
                    step: 1,
                    extra: 0,
                },
            ],
            ..Default::default()
        };
        let op = Op::LogBatch(Box::new(batch));
        let mut buf = Vec::new();
        op.encode_into(&mut buf);
        let back = Op::decode(&buf).unwrap();
        let Op::LogBatch(b) = back.catalog_part().unwrap() else {
            panic!()
        };
        assert_eq!(b.points.len(), 1);
        assert_eq!(b.points[0].step, 2);
        assert!(b.points[0].value.is_nan());
        assert!(Op::decode(&[0xff, 0xff]).is_err());
        let mut bad = b.clone();
        bad.points[0].series = 5;
        let mut buf = Vec::new();
        Op::LogBatch(bad).encode_into(&mut buf);
        assert!(Op::decode(&buf).is_err());
    }
}
