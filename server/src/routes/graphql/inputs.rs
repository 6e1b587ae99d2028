//! The input types of the GraphQL schema, named and shaped as MLflow's. Each becomes the
//! [`Fields`] of the REST request it mirrors, so that a resolver reads it with the same request
//! reader (and the same checks and error messages) as the REST handler.

use async_graphql::{Enum, InputObject};
use serde_json::{Map, Value};

use super::types::LongString;
use crate::wire::Fields;

/// The fields of a REST request, built from an input object's set members.
#[derive(Debug, Default)]
struct Builder(Map<String, Value>);

impl Builder {
    fn str(mut self, name: &str, v: &Option<String>) -> Self {
        if let Some(v) = v {
            self.0.insert(name.into(), Value::String(v.clone()));
        }
        self
    }

    fn int(mut self, name: &str, v: Option<i64>) -> Self {
        if let Some(v) = v {
            self.0.insert(name.into(), Value::from(v));
        }
        self
    }

    /// A `[String]` member: null items are dropped (protobuf lists have none).
    fn list(mut self, name: &str, v: &Option<Vec<Option<String>>>) -> Self {
        if let Some(items) = v {
            let items = items.iter().flatten().cloned().map(Value::String).collect();
            self.0.insert(name.into(), Value::Array(items));
        }
        self
    }

    fn done(self) -> Fields {
        Fields::from_map(self.0)
    }
}

/// Which runs a search covers (`MlflowViewType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "MlflowViewType", rename_items = "SCREAMING_SNAKE_CASE")]
pub(crate) enum ViewType {
    /// Active runs only.
    ActiveOnly,
    /// Deleted runs only.
    DeletedOnly,
    /// Both.
    All,
}

impl ViewType {
    fn wire_name(self) -> &'static str {
        match self {
            ViewType::ActiveOnly => "ACTIVE_ONLY",
            ViewType::DeletedOnly => "DELETED_ONLY",
            ViewType::All => "ALL",
        }
    }
}

/// The input of `mlflowGetExperiment` (REST `experiments/get`).
#[derive(Debug, Clone, Default, InputObject)]
#[graphql(name = "MlflowGetExperimentInput")]
pub(crate) struct GetExperimentInput {
    /// The experiment.
    pub(crate) experiment_id: Option<String>,
}

impl GetExperimentInput {
    /// As the REST request's fields.
    pub(crate) fn fields(&self) -> Fields {
        Builder::default()
            .str("experiment_id", &self.experiment_id)
            .done()
    }
}

/// The input of `mlflowGetRun` (REST `runs/get`).
#[derive(Debug, Clone, Default, InputObject)]
#[graphql(name = "MlflowGetRunInput")]
pub(crate) struct GetRunInput {
    /// The run.
    pub(crate) run_id: Option<String>,
    /// The run (MLflow's deprecated name).
    pub(crate) run_uuid: Option<String>,
}

impl GetRunInput {
    /// As the REST request's fields.
    pub(crate) fn fields(&self) -> Fields {
        Builder::default()
            .str("run_id", &self.run_id)
            .str("run_uuid", &self.run_uuid)
            .done()
    }
}

/// The input of `mlflowSearchRuns` (REST `runs/search`).
#[derive(Debug, Clone, Default, InputObject)]
#[graphql(name = "MlflowSearchRunsInput")]
pub(crate) struct SearchRunsInput {
    /// The experiments to search.
    pub(crate) experiment_ids: Option<Vec<Option<String>>>,
    /// MLflow's filter grammar.
    pub(crate) filter: Option<String>,
    /// Active, deleted or all runs.
    pub(crate) run_view_type: Option<ViewType>,
    /// Page size.
    pub(crate) max_results: Option<i32>,
    /// `order_by` clauses.
    pub(crate) order_by: Option<Vec<Option<String>>>,
    /// Where the previous page ended.
    pub(crate) page_token: Option<String>,
}

impl SearchRunsInput {
    /// As the REST request's fields.
    pub(crate) fn fields(&self) -> Fields {
        Builder::default()
            .list("experiment_ids", &self.experiment_ids)
            .str("filter", &self.filter)
            .str(
                "run_view_type",
                &self.run_view_type.map(|v| v.wire_name().to_string()),
            )
            .int("max_results", self.max_results.map(i64::from))
            .list("order_by", &self.order_by)
            .str("page_token", &self.page_token)
            .done()
    }
}

/// The input of `mlflowGetMetricHistoryBulkInterval` (REST
/// `metrics/get-history-bulk-interval`).
#[derive(Debug, Clone, Default, InputObject)]
#[graphql(name = "MlflowGetMetricHistoryBulkIntervalInput")]
pub(crate) struct GetMetricHistoryBulkIntervalInput {
    /// The runs (at most 100).
    pub(crate) run_ids: Option<Vec<Option<String>>>,
    /// The metric.
    pub(crate) metric_key: Option<String>,
    /// First step, inclusive (with `endStep`).
    pub(crate) start_step: Option<i32>,
    /// Last step, inclusive (with `startStep`).
    pub(crate) end_step: Option<i32>,
    /// Points per run (1 to 2500, the default).
    pub(crate) max_results: Option<i32>,
}

impl GetMetricHistoryBulkIntervalInput {
    /// As the REST request's fields.
    pub(crate) fn fields(&self) -> Fields {
        Builder::default()
            .list("run_ids", &self.run_ids)
            .str("metric_key", &self.metric_key)
            .int("start_step", self.start_step.map(i64::from))
            .int("end_step", self.end_step.map(i64::from))
            .int("max_results", self.max_results.map(i64::from))
            .done()
    }
}

/// The input of `mlflowListArtifacts` (REST `artifacts/list`).
#[derive(Debug, Clone, Default, InputObject)]
#[graphql(name = "MlflowListArtifactsInput")]
pub(crate) struct ListArtifactsInput {
    /// The run.
    pub(crate) run_id: Option<String>,
    /// The run (MLflow's deprecated name).
    pub(crate) run_uuid: Option<String>,
    /// The directory to list, relative to the run's artifact root (the root when absent).
    pub(crate) path: Option<String>,
    /// Accepted and ignored: a listing is one page.
    pub(crate) page_token: Option<String>,
}

impl ListArtifactsInput {
    /// As the REST request's fields.
    pub(crate) fn fields(&self) -> Fields {
        Builder::default()
            .str("run_id", &self.run_id)
            .str("run_uuid", &self.run_uuid)
            .str("path", &self.path)
            .str("page_token", &self.page_token)
            .done()
    }
}

/// The input of `mlflowSearchModelVersions` (REST `model-versions/search`).
#[derive(Debug, Clone, Default, InputObject)]
#[graphql(name = "MlflowSearchModelVersionsInput")]
pub(crate) struct SearchModelVersionsInput {
    /// Filter (`name = 'm'`, `run_id = '...'` ...).
    pub(crate) filter: Option<String>,
    /// Page size.
    pub(crate) max_results: Option<LongString>,
    /// `order_by` clauses.
    pub(crate) order_by: Option<Vec<Option<String>>>,
    /// Where the previous page ended.
    pub(crate) page_token: Option<String>,
}

impl SearchModelVersionsInput {
    /// As the REST request's fields.
    pub(crate) fn fields(&self) -> Fields {
        Builder::default()
            .str("filter", &self.filter)
            .int("max_results", self.max_results.map(|n| n.0))
            .list("order_by", &self.order_by)
            .str("page_token", &self.page_token)
            .done()
    }
}

/// The input of `mlflowSearchDatasets` (REST `experiments/search-datasets`).
#[derive(Debug, Clone, Default, InputObject)]
#[graphql(name = "MlflowSearchDatasetsInput")]
pub(crate) struct SearchDatasetsInput {
    /// The experiments (1 to 20).
    pub(crate) experiment_ids: Option<Vec<Option<String>>>,
}

impl SearchDatasetsInput {
    /// As the REST request's fields.
    pub(crate) fn fields(&self) -> Fields {
        Builder::default()
            .list("experiment_ids", &self.experiment_ids)
            .done()
    }
}
