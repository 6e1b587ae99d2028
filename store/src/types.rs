//! The entities of the store, in MLflow's vocabulary.
//!
//! These are plain Rust values: the wire format (MLflow's JSON) lives in the server crate.

use serde::{Deserialize, Serialize};

/// Whether an experiment or run is live or in the trash (MLflow's `lifecycle_stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LifecycleStage {
    /// `"active"`.
    Active,
    /// `"deleted"`: hidden from default searches, restorable.
    Deleted,
}

impl LifecycleStage {
    /// The stage as MLflow spells it (`"active"`, `"deleted"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStage::Active => "active",
            LifecycleStage::Deleted => "deleted",
        }
    }
}

/// Which lifecycle stages a listing includes (MLflow's `ViewType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ViewType {
    /// Active entities only (the default).
    #[default]
    ActiveOnly,
    /// Deleted entities only.
    DeletedOnly,
    /// Both.
    All,
}

impl ViewType {
    /// Whether an entity in `stage` is part of this view.
    pub fn includes(self, stage: LifecycleStage) -> bool {
        match self {
            ViewType::ActiveOnly => stage == LifecycleStage::Active,
            ViewType::DeletedOnly => stage == LifecycleStage::Deleted,
            ViewType::All => true,
        }
    }
}

/// The status of a run (MLflow's `RunStatus`); no transitions are enforced, as in MLflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunStatus {
    /// `RUNNING`.
    Running,
    /// `SCHEDULED`.
    Scheduled,
    /// `FINISHED`.
    Finished,
    /// `FAILED`.
    Failed,
    /// `KILLED`.
    Killed,
}

impl RunStatus {
    /// The status as MLflow spells it (`"RUNNING"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }

    /// Parses MLflow's spelling of a status.
    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "RUNNING" => RunStatus::Running,
            "SCHEDULED" => RunStatus::Scheduled,
            "FINISHED" => RunStatus::Finished,
            "FAILED" => RunStatus::Failed,
            "KILLED" => RunStatus::Killed,
            _ => return None,
        })
    }
}

/// A key/value tag of an experiment, run or dataset input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tag {
    /// The tag's key.
    pub key: String,
    /// The tag's value.
    pub value: String,
}

impl Tag {
    /// A tag from anything string-like.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A run parameter: written once, never changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Param {
    /// The parameter's key.
    pub key: String,
    /// The parameter's value.
    pub value: String,
}

impl Param {
    /// A param from anything string-like.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Param {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// An experiment: a named group of runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Decimal id, `"0"` for the `Default` experiment.
    pub experiment_id: String,
    /// Unique name (unique among deleted experiments too).
    pub name: String,
    /// Where the runs' artifacts live (`mlflow-artifacts:/<id>` by default).
    pub artifact_location: String,
    /// Active or deleted.
    pub lifecycle_stage: LifecycleStage,
    /// Creation time, ms since the epoch.
    pub creation_time: i64,
    /// Last change of the experiment itself (rename, delete, restore, tags), ms since the epoch.
    pub last_update_time: i64,
    /// Experiment tags, sorted by key.
    pub tags: Vec<Tag>,
}

/// One point of a metric series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// The metric's key (`loss`, `val/acc` ...).
    pub key: String,
    /// The value; NaN and ±Inf are kept as they are.
    pub value: f64,
    /// Time of the point, ms since the epoch (non-negative).
    pub timestamp: i64,
    /// Training step (may be negative), 0 by default.
    pub step: i64,
    /// The logged model this point belongs to, if any.
    pub model_id: Option<String>,
    /// The name of the dataset this point was computed on, if any.
    pub dataset_name: Option<String>,
    /// The digest of that dataset, if any.
    pub dataset_digest: Option<String>,
}

impl Metric {
    /// A point without model or dataset.
    pub fn new(key: impl Into<String>, value: f64, timestamp: i64, step: i64) -> Self {
        Metric {
            key: key.into(),
            value,
            timestamp,
            step,
            model_id: None,
            dataset_name: None,
            dataset_digest: None,
        }
    }
}

/// A metric point together with the run it belongs to (bulk reads over several runs).
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetric {
    /// The run.
    pub run_id: String,
    /// The point.
    pub metric: Metric,
}

/// The identity and state of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// 32 lowercase hex characters.
    pub run_id: String,
    /// Human-readable name (generated when none is given).
    pub run_name: String,
    /// The experiment the run belongs to.
    pub experiment_id: String,
    /// Who started the run.
    pub user_id: String,
    /// Status, independent of the lifecycle stage.
    pub status: RunStatus,
    /// Start time, ms since the epoch.
    pub start_time: i64,
    /// End time, ms since the epoch, once ended.
    pub end_time: Option<i64>,
    /// Active or deleted.
    pub lifecycle_stage: LifecycleStage,
    /// `<experiment artifact location>/<run_id>/artifacts`.
    pub artifact_uri: String,
    /// When the run was deleted, while it is.
    pub deleted_time: Option<i64>,
}

/// A dataset as MLflow describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dataset {
    /// Name of the dataset.
    pub name: String,
    /// Digest of its content (≤ 36 chars).
    pub digest: String,
    /// Kind of source (`local`, `s3`, `hugging_face` ...).
    pub source_type: String,
    /// The source itself, usually JSON.
    pub source: String,
    /// Optional schema, usually JSON.
    pub schema: Option<String>,
    /// Optional profile, usually JSON.
    pub profile: Option<String>,
}

/// The input tag that says what a dataset was used for (`train`, `eval` ...); searched as
/// `datasets.context`.
pub const DATASET_CONTEXT_TAG: &str = "mlflow.data.context";

/// A dataset as some run of an experiment used it, with that use's context: one row of
/// [`crate::Store::search_datasets`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetSummary {
    /// The experiment of the run that used the dataset.
    pub experiment_id: String,
    /// Name of the dataset.
    pub name: String,
    /// Digest of its content.
    pub digest: String,
    /// The input's [`DATASET_CONTEXT_TAG`] (`training` ...), `None` without one.
    pub context: Option<String>,
}

/// A dataset used by a run, with the input's tags (`mlflow.data.context` = `train`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DatasetInput {
    /// Tags of this use of the dataset.
    pub tags: Vec<Tag>,
    /// The dataset.
    pub dataset: Dataset,
}

/// A run with its data: the latest value of each metric, params, tags and inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Identity and state.
    pub info: RunInfo,
    /// Latest value of every metric, sorted by key.
    pub metrics: Vec<Metric>,
    /// Params, sorted by key.
    pub params: Vec<Param>,
    /// Tags, sorted by key.
    pub tags: Vec<Tag>,
    /// Datasets the run used.
    pub dataset_inputs: Vec<DatasetInput>,
    /// Logged models the run used, by id.
    pub model_inputs: Vec<String>,
    /// Logged models the run produced.
    pub model_outputs: Vec<crate::model_types::ModelOutput>,
}

/// What a new run starts with.
#[derive(Debug, Clone, Default)]
pub struct CreateRun {
    /// Experiment to create the run in (`"0"` if `None`).
    pub experiment_id: Option<String>,
    /// Who starts it (`""` if `None`, as MLflow).
    pub user_id: Option<String>,
    /// Its name; a generated one if neither this nor an `mlflow.runName` tag is given.
    pub run_name: Option<String>,
    /// Start time in ms (now if `None`).
    pub start_time: Option<i64>,
    /// Initial tags.
    pub tags: Vec<Tag>,
}

/// Changes to a run's info; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateRun {
    /// New status.
    pub status: Option<RunStatus>,
    /// End time, ms.
    pub end_time: Option<i64>,
    /// New name (also rewrites the `mlflow.runName` tag).
    pub run_name: Option<String>,
}

/// One page of a metric's history.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPage {
    /// Points in MLflow order (timestamp, step, value).
    pub metrics: Vec<Metric>,
    /// Opaque token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// An artifact file: where its bytes are and how many there are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    /// Store-relative path (`<exp>/<run>/artifacts/<relative path>`).
    pub path: String,
    /// The blob holding the content.
    pub digest: crate::blobs::Digest,
    /// Size in bytes.
    pub size: u64,
}

/// One entry of a directory listing of artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactListEntry {
    /// Path relative to the listed directory's root (the full store-relative path minus the listed prefix).
    pub path: String,
    /// Whether the entry is a directory.
    pub is_dir: bool,
    /// File size; `None` for directories.
    pub size: Option<u64>,
}
