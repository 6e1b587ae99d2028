//! The entities of models: MLflow 3's logged models, the model registry (registered models,
//! versions, stages, aliases), and Quiver's own deployment records and registry history.
//!
//! Plain Rust values like [`crate::types`]; the wire format lives in the server crate.

use serde::{Deserialize, Serialize};

use crate::types::{Metric, Param, Tag};

/// The state of a logged model's upload (MLflow's `LoggedModelStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoggedModelStatus {
    /// `LOGGED_MODEL_PENDING`: created, artifacts still uploading.
    Pending,
    /// `LOGGED_MODEL_READY`: finalized.
    Ready,
    /// `LOGGED_MODEL_UPLOAD_FAILED`: the client gave up uploading.
    UploadFailed,
}

impl LoggedModelStatus {
    /// The status as MLflow spells it (`"LOGGED_MODEL_READY"` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LoggedModelStatus::Pending => "LOGGED_MODEL_PENDING",
            LoggedModelStatus::Ready => "LOGGED_MODEL_READY",
            LoggedModelStatus::UploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }

    /// Parses MLflow's name of a status, or its enum number (1, 2, 3).
    pub fn parse(s: &str) -> Option<LoggedModelStatus> {
        Some(match s {
            "LOGGED_MODEL_PENDING" | "1" => LoggedModelStatus::Pending,
            "LOGGED_MODEL_READY" | "2" => LoggedModelStatus::Ready,
            "LOGGED_MODEL_UPLOAD_FAILED" | "3" => LoggedModelStatus::UploadFailed,
            _ => return None,
        })
    }
}

/// A metric point recorded against a logged model (logged with its `model_id`). The model keeps
/// the latest point per (key, dataset name, dataset digest, run); every point stays in the
/// `metrics` SQL table with its `model_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetric {
    /// The run the point was logged in.
    pub run_id: String,
    /// The point (its `model_id` is the model's).
    pub metric: Metric,
}

/// A model logged by MLflow 3's `log_model`: an id, an artifact directory and metadata, owned by
/// an experiment and usually produced by a run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedModel {
    /// `m-` and 32 hex characters.
    pub model_id: String,
    /// The experiment it belongs to.
    pub experiment_id: String,
    /// Its name (`model` by default in the client).
    pub name: String,
    /// `<experiment artifact location>/models/<model_id>/artifacts`.
    pub artifact_uri: String,
    /// Upload state.
    pub status: LoggedModelStatus,
    /// Free text about the status ("" when none).
    pub status_message: String,
    /// Kind of model (free text, "" when none).
    pub model_type: String,
    /// The run that produced it ("" when none).
    pub source_run_id: String,
    /// Creation time, ms since the epoch.
    pub creation_timestamp: i64,
    /// Last change, ms since the epoch.
    pub last_updated_timestamp: i64,
    /// Tags, sorted by key.
    pub tags: Vec<Tag>,
    /// Params, sorted by key.
    pub params: Vec<Param>,
    /// Metrics recorded against the model, latest per (key, dataset, run).
    pub metrics: Vec<ModelMetric>,
}

/// What a new logged model starts with.
#[derive(Debug, Clone, Default)]
pub struct CreateLoggedModel {
    /// The experiment (must exist and be active).
    pub experiment_id: String,
    /// Its name; a generated one when `None` or empty.
    pub name: Option<String>,
    /// Kind of model.
    pub model_type: Option<String>,
    /// The run that produces it (must exist).
    pub source_run_id: Option<String>,
    /// Initial params.
    pub params: Vec<Param>,
    /// Initial tags.
    pub tags: Vec<Tag>,
}

/// One `order_by` entry of a logged-model search (MLflow sends objects, not strings).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoggedModelOrder {
    /// `name`, `model_id`, `creation_timestamp`, `last_updated_timestamp`, `status`,
    /// `source_run_id`, `model_type`, or `metrics.<key>`.
    pub field_name: String,
    /// Ascending (MLflow's default) or descending.
    pub ascending: bool,
    /// For a metric: only points on this dataset.
    pub dataset_name: Option<String>,
    /// For a metric: only points on this dataset digest.
    pub dataset_digest: Option<String>,
}

/// A dataset a logged-model search restricts metric filters and orders to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatasetRef {
    /// Dataset name.
    pub dataset_name: String,
    /// Dataset digest; any digest when `None`.
    pub dataset_digest: Option<String>,
}

/// A `logged-models/search` request.
#[derive(Debug, Clone, Default)]
pub struct LoggedModelSearch {
    /// Experiments to search.
    pub experiment_ids: Vec<String>,
    /// MLflow filter on attributes, `metrics.`, `params.` and `tags.` (empty: all).
    pub filter: String,
    /// When given, metric clauses only consider points on these datasets.
    pub datasets: Vec<DatasetRef>,
    /// Page size (MLflow's default 50).
    pub max_results: usize,
    /// Order; ties end with creation time, newest first, then id.
    pub order_by: Vec<LoggedModelOrder>,
    /// Token of the page to return.
    pub page_token: Option<String>,
}

/// One page of logged models.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedModelPage {
    /// The models, in order.
    pub models: Vec<LoggedModel>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// A logged model a run produced, at a step (MLflow's `ModelOutput`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelOutput {
    /// The logged model.
    pub model_id: String,
    /// The step at which it was produced.
    pub step: i64,
}

/// The stage of a model version (MLflow's deprecated but still used stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Stage {
    /// `"None"`, the stage of a new version.
    #[default]
    None,
    /// `"Staging"`.
    Staging,
    /// `"Production"`.
    Production,
    /// `"Archived"`.
    Archived,
}

impl Stage {
    /// Every stage, in MLflow's order.
    pub const ALL: [Stage; 4] = [
        Stage::None,
        Stage::Staging,
        Stage::Production,
        Stage::Archived,
    ];

    /// The stage as MLflow spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "None",
            Stage::Staging => "Staging",
            Stage::Production => "Production",
            Stage::Archived => "Archived",
        }
    }

    /// Parses a stage name, ignoring case (as MLflow does).
    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

/// An alias of a registered model and the version it points to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelAlias {
    /// The alias (`champion` ...).
    pub alias: String,
    /// The version number, as a decimal string.
    pub version: String,
}

/// A registered model: a name under which versions of a model are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredModel {
    /// Unique name (no `/` or `:`).
    pub name: String,
    /// Creation time, ms since the epoch.
    pub creation_timestamp: i64,
    /// Last change of the model or one of its versions, ms since the epoch.
    pub last_updated_timestamp: i64,
    /// Who created it.
    pub user_id: String,
    /// Description ("" when none).
    pub description: String,
    /// The newest version in each stage that has one, in stage order.
    pub latest_versions: Vec<ModelVersion>,
    /// Tags, sorted by key.
    pub tags: Vec<Tag>,
    /// Aliases, sorted by alias.
    pub aliases: Vec<ModelAlias>,
}

/// One version of a registered model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    /// The registered model's name.
    pub name: String,
    /// `"1"`, `"2"` ...: numbers are never reused, even after a delete.
    pub version: String,
    /// Creation time, ms since the epoch.
    pub creation_timestamp: i64,
    /// Last change, ms since the epoch.
    pub last_updated_timestamp: i64,
    /// Who created it.
    pub user_id: String,
    /// Its stage.
    pub current_stage: Stage,
    /// Description ("" when none).
    pub description: String,
    /// Where the model is (`models:/m-...`, `runs:/<run>/model`, an artifact URI).
    pub source: String,
    /// The run that produced it ("" when none).
    pub run_id: String,
    /// Link to the run (free text, "" when none).
    pub run_link: String,
    /// The logged model it registers ("" when none).
    pub model_id: String,
    /// Tags, sorted by key.
    pub tags: Vec<Tag>,
    /// Aliases pointing at it, sorted.
    pub aliases: Vec<String>,
}

/// What a new model version is made from.
#[derive(Debug, Clone, Default)]
pub struct CreateModelVersion {
    /// The registered model (must exist).
    pub name: String,
    /// Where the model is.
    pub source: String,
    /// The run that produced it.
    pub run_id: Option<String>,
    /// Initial tags.
    pub tags: Vec<Tag>,
    /// Link to the run.
    pub run_link: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// The logged model it registers.
    pub model_id: Option<String>,
}

/// A search of registered models or model versions: MLflow's string filter and `order_by`.
#[derive(Debug, Clone, Default)]
pub struct RegistrySearch {
    /// Filter, e.g. `name LIKE 'fraud%' AND tags.team = 'risk'` (empty: all).
    pub filter: String,
    /// Page size.
    pub max_results: usize,
    /// `order_by` clauses such as `name DESC`, `version_number DESC`.
    pub order_by: Vec<String>,
    /// Token of the page to return.
    pub page_token: Option<String>,
}

/// One page of registered models.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredModelPage {
    /// The models, in order.
    pub registered_models: Vec<RegisteredModel>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// One page of model versions.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersionPage {
    /// The versions, in order.
    pub model_versions: Vec<ModelVersion>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// One recorded change of the registry or of deployments: what changed, who changed it, when,
/// and the value before and after. Queryable as the `registry_events` SQL table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEvent {
    /// Position in the history (1, 2, ...), in commit order.
    pub seq: u64,
    /// When, ms since the epoch.
    pub time: i64,
    /// Who (the request's user; "" when unknown).
    pub user_id: String,
    /// What: `create_registered_model`, `rename_registered_model`, `update_registered_model`,
    /// `delete_registered_model`, `set_registered_model_tag`, `delete_registered_model_tag`,
    /// `create_model_version`, `update_model_version`, `transition_stage`,
    /// `delete_model_version`, `set_model_version_tag`, `delete_model_version_tag`, `set_alias`,
    /// `delete_alias`, `create_deployment`, `delete_deployment`.
    pub action: String,
    /// The registered model's name at the time.
    pub model_name: String,
    /// The version concerned, if any.
    pub version: Option<String>,
    /// The tag key, alias or deployment name concerned, if any.
    pub key: Option<String>,
    /// The value before (stage, description, name, tag value, alias target ...), if any.
    pub before: Option<String>,
    /// The value after, if any.
    pub after: Option<String>,
}

/// A deployment record: a model version (or whatever version an alias points to) serving at a
/// target. While it exists, the version, its registered model and the run that produced it
/// cannot be deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// Unique name of the deployment.
    pub name: String,
    /// The registered model (its current name).
    pub model_name: String,
    /// The version deployed, when it names one.
    pub version: Option<String>,
    /// The alias deployed, when it names one.
    pub alias: Option<String>,
    /// The version deployed now (the alias's target for an alias deployment).
    pub resolved_version: Option<String>,
    /// Where it runs (free text: `k8s/prod-eu`, `sagemaker:fraud` ...).
    pub target: String,
    /// Description ("" when none).
    pub description: String,
    /// Who created it.
    pub user_id: String,
    /// Creation time, ms since the epoch.
    pub creation_timestamp: i64,
}

/// What a new deployment names.
#[derive(Debug, Clone, Default)]
pub struct CreateDeployment {
    /// Unique name (same rules as an entity key).
    pub name: String,
    /// The registered model.
    pub model_name: String,
    /// A version of it (exactly one of `version` and `alias`).
    pub version: Option<String>,
    /// An alias of it.
    pub alias: Option<String>,
    /// Where it runs (non-empty).
    pub target: String,
    /// Description.
    pub description: Option<String>,
}
