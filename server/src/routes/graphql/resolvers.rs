//! The resolvers: MLflow's `Query` and `Mutation` roots and the run type, whose `experiment` and
//! `modelVersions` are resolved on demand. Each reads its input with the REST handler's request
//! reader and calls the same store function as the REST handler; only the output differs
//! (typed objects here, JSON there).

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, Object, ServerError};
use quiver_store::{LoggedModel, Run, Store};

use super::inputs::{
    GetExperimentInput, GetMetricHistoryBulkIntervalInput, GetRunInput, ListArtifactsInput,
    SearchDatasetsInput, SearchModelVersionsInput, SearchRunsInput,
};
use super::types::{
    finite, ApiErrorObject, DatasetInputObject, DatasetSummaryObject, DeploymentJobStateObject,
    ExperimentObject, FileInfo, LongString, MetricObject, MetricWithRunId, ModelInput,
    ModelMetricObject, ModelOutputObject, ModelParamObject, ModelVersionObject, RunData,
    RunInfoObject, RunInputs, RunOutputs, Test, TestMutation,
};
use crate::error::{ApiError, ApiResult};
use crate::routes::registry::versions;
use crate::routes::{artifacts, experiments, metrics, runs};
use crate::wire::Fields;

/// Reports `e` as a GraphQL error with MLflow's message alone (as MLflow reports it) and makes
/// the field null.
fn fail<T>(ctx: &Context<'_>, e: ApiError) -> Option<T> {
    ctx.add_error(ServerError::new(e.message, None));
    None
}

/// Runs `f` with the request's store on the blocking pool (store calls fsync and touch sled);
/// a failure is reported by [`fail`].
async fn with_store<T, F>(ctx: &Context<'_>, f: F) -> Option<T>
where
    F: FnOnce(&Store) -> ApiResult<T> + Send + 'static,
    T: Send + 'static,
{
    let Some(store) = ctx.data_opt::<Arc<Store>>().cloned() else {
        return fail(ctx, ApiError::internal("the GraphQL request has no store"));
    };
    match crate::blocking(move || f(&store)).await {
        Ok(v) => Some(v),
        Err(e) => fail(ctx, e),
    }
}

/// The `modelVersions` of a run: the versions whose `run_id` is `run_id`, found as MLflow finds
/// them (a `model-versions/search` with that filter).
fn versions_of_run(store: &Store, run_id: &str) -> ApiResult<Vec<ModelVersionObject>> {
    let mut filter = serde_json::Map::new();
    filter.insert("filter".into(), format!("run_id='{run_id}'").into());
    let req = versions::search_request(&Fields::from_map(filter))?;
    let page = store.search_model_versions(&req)?;
    Ok(page.model_versions.iter().map(Into::into).collect())
}

/// The fields of a model version that come from elsewhere: the params and metrics of the
/// logged model it registers (none without one), and its deployment job (never any).
#[ComplexObject]
impl ModelVersionObject {
    async fn model_params(&self, ctx: &Context<'_>) -> Option<Vec<ModelParamObject>> {
        let id = self.model_id.clone();
        with_store(ctx, move |s| {
            Ok(registered_logged_model(s, &id)?
                .map(|m| m.params.iter().map(Into::into).collect())
                .unwrap_or_default())
        })
        .await
    }

    async fn model_metrics(&self, ctx: &Context<'_>) -> Option<Vec<ModelMetricObject>> {
        let id = self.model_id.clone();
        with_store(ctx, move |s| {
            Ok(registered_logged_model(s, &id)?
                .map(|m| {
                    m.metrics
                        .iter()
                        .map(|mm| ModelMetricObject {
                            metric: MetricObject::new(&mm.metric, &mm.run_id),
                        })
                        .collect()
                })
                .unwrap_or_default())
        })
        .await
    }

    async fn deployment_job_state(&self) -> Option<DeploymentJobStateObject> {
        None
    }
}

/// The logged model `model_id` names, if any and if it still exists (a version outlives a
/// deleted logged model).
fn registered_logged_model(store: &Store, model_id: &str) -> ApiResult<Option<LoggedModel>> {
    if model_id.is_empty() {
        return Ok(None);
    }
    match store.get_logged_model(model_id) {
        Ok(m) => Ok(Some(m)),
        Err(quiver_store::Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A run (`MlflowRunExtension`): MLflow's run with its experiment and model versions.
#[derive(Debug, Clone)]
pub(crate) struct RunObject(pub(crate) Run);

/// A run with its experiment and the model versions it produced.
#[Object(name = "MlflowRunExtension")]
impl RunObject {
    /// Identity and state.
    async fn info(&self) -> Option<RunInfoObject> {
        Some((&self.0.info).into())
    }

    /// Latest metrics, params and tags.
    async fn data(&self) -> Option<RunData> {
        let run_id = &self.0.info.run_id;
        Some(RunData {
            metrics: (self.0.metrics.iter())
                .map(|m| MetricObject::new(m, run_id))
                .collect(),
            params: self.0.params.iter().map(Into::into).collect(),
            tags: self.0.tags.iter().map(Into::into).collect(),
        })
    }

    /// Datasets and logged models the run used.
    async fn inputs(&self) -> Option<RunInputs> {
        Some(RunInputs {
            dataset_inputs: (self.0.dataset_inputs.iter())
                .map(DatasetInputObject::from)
                .collect(),
            model_inputs: (self.0.model_inputs.iter())
                .map(|id| ModelInput {
                    model_id: id.clone(),
                })
                .collect(),
        })
    }

    /// Logged models the run produced.
    async fn outputs(&self) -> Option<RunOutputs> {
        Some(RunOutputs {
            model_outputs: (self.0.model_outputs.iter())
                .map(ModelOutputObject::from)
                .collect(),
        })
    }

    /// The run's experiment (as `experiments/get` returns it).
    async fn experiment(&self, ctx: &Context<'_>) -> Option<ExperimentObject> {
        let id = self.0.info.experiment_id.clone();
        with_store(ctx, move |s| Ok((&s.get_experiment(&id)?).into())).await
    }

    /// The registered model versions made from this run.
    async fn model_versions(&self, ctx: &Context<'_>) -> Option<Vec<ModelVersionObject>> {
        let run_id = self.0.info.run_id.clone();
        with_store(ctx, move |s| versions_of_run(s, &run_id)).await
    }
}

/// The answer of `mlflowGetExperiment`.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
#[graphql(name = "MlflowGetExperimentResponse")]
pub(crate) struct GetExperimentResponse {
    /// The experiment.
    experiment: Option<ExperimentObject>,
    /// Always null.
    #[graphql(name = "apiError")]
    api_error: Option<ApiErrorObject>,
}

/// The answer of `mlflowGetRun`.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
#[graphql(name = "MlflowGetRunResponse")]
pub(crate) struct GetRunResponse {
    /// The run.
    run: Option<RunObject>,
    /// Always null.
    #[graphql(name = "apiError")]
    api_error: Option<ApiErrorObject>,
}

/// The answer of `mlflowSearchRuns`.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
#[graphql(name = "MlflowSearchRunsResponse")]
pub(crate) struct SearchRunsResponse {
    /// One page of runs.
    runs: Vec<RunObject>,
    /// Token of the next page (`""` on the last one).
    next_page_token: String,
    /// Always null.
    #[graphql(name = "apiError")]
    api_error: Option<ApiErrorObject>,
}

/// The answer of `mlflowGetMetricHistoryBulkInterval`.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
#[graphql(name = "MlflowGetMetricHistoryBulkIntervalResponse")]
pub(crate) struct GetMetricHistoryBulkIntervalResponse {
    /// The sampled points, by run id, then step.
    metrics: Vec<MetricWithRunId>,
    /// Always null.
    #[graphql(name = "apiError")]
    api_error: Option<ApiErrorObject>,
}

/// The answer of `mlflowListArtifacts`.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
#[graphql(name = "MlflowListArtifactsResponse")]
pub(crate) struct ListArtifactsResponse {
    /// The run's artifact root.
    root_uri: String,
    /// The entries directly under the listed directory.
    files: Vec<FileInfo>,
    /// Always `""`: a listing is one page.
    next_page_token: String,
    /// Always null.
    #[graphql(name = "apiError")]
    api_error: Option<ApiErrorObject>,
}

/// The answer of `mlflowSearchModelVersions`.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
#[graphql(name = "MlflowSearchModelVersionsResponse")]
pub(crate) struct SearchModelVersionsResponse {
    /// One page of versions.
    model_versions: Vec<ModelVersionObject>,
    /// Token of the next page (`""` on the last one).
    next_page_token: String,
    /// Always null.
    #[graphql(name = "apiError")]
    api_error: Option<ApiErrorObject>,
}

/// The answer of `mlflowSearchDatasets`.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
#[graphql(name = "MlflowSearchDatasetsResponse")]
pub(crate) struct SearchDatasetsResponse {
    /// The datasets the experiments' runs used.
    dataset_summaries: Vec<DatasetSummaryObject>,
    /// Always null.
    #[graphql(name = "apiError")]
    api_error: Option<ApiErrorObject>,
}

/// `mlflowSearchRuns`, a query and a mutation in MLflow's schema.
async fn search_runs(
    ctx: &Context<'_>,
    input: Option<SearchRunsInput>,
) -> Option<SearchRunsResponse> {
    let fields = input.unwrap_or_default().fields();
    with_store(ctx, move |s| {
        let req = runs::search_request(&fields)?;
        let page = s.search_runs(&req)?;
        Ok(SearchRunsResponse {
            runs: page.runs.into_iter().map(RunObject).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            api_error: None,
        })
    })
    .await
}

/// MLflow's `Query` root.
#[derive(Debug, Default)]
pub(crate) struct Query;

/// Reads: experiments, runs, metric samples, artifact listings, model versions.
#[Object(name = "Query")]
impl Query {
    /// An experiment by id (REST `experiments/get`).
    async fn mlflow_get_experiment(
        &self,
        ctx: &Context<'_>,
        input: Option<GetExperimentInput>,
    ) -> Option<GetExperimentResponse> {
        let fields = input.unwrap_or_default().fields();
        with_store(ctx, move |s| {
            let id = experiments::get_request(&fields)?;
            Ok(GetExperimentResponse {
                experiment: Some((&s.get_experiment(&id)?).into()),
                api_error: None,
            })
        })
        .await
    }

    /// Sampled histories of one metric over several runs (REST
    /// `metrics/get-history-bulk-interval`).
    async fn mlflow_get_metric_history_bulk_interval(
        &self,
        ctx: &Context<'_>,
        input: Option<GetMetricHistoryBulkIntervalInput>,
    ) -> Option<GetMetricHistoryBulkIntervalResponse> {
        let fields = input.unwrap_or_default().fields();
        with_store(ctx, move |s| {
            let (run_ids, key, steps, max_results) = metrics::bulk_interval_request(&fields)?;
            let mut points = Vec::new();
            for (run_id, h) in metrics::bulk_interval(s, &run_ids, &key, steps, max_results)? {
                let (values, timestamps, steps) = (h.values(), h.timestamps(), h.steps());
                points.extend((0..h.len()).map(|i| MetricWithRunId {
                    key: h.key().to_string(),
                    value: finite(values[i]),
                    timestamp: LongString(timestamps[i]),
                    step: LongString(steps[i]),
                    run_id: run_id.clone(),
                }));
            }
            Ok(GetMetricHistoryBulkIntervalResponse {
                metrics: points,
                api_error: None,
            })
        })
        .await
    }

    /// A run (REST `runs/get`).
    async fn mlflow_get_run(
        &self,
        ctx: &Context<'_>,
        input: Option<GetRunInput>,
    ) -> Option<GetRunResponse> {
        let fields = input.unwrap_or_default().fields();
        with_store(ctx, move |s| {
            let run_id = fields.run_id()?;
            Ok(GetRunResponse {
                run: Some(RunObject(s.get_run(&run_id)?)),
                api_error: None,
            })
        })
        .await
    }

    /// The artifacts directly under a directory of a run (REST `artifacts/list`).
    async fn mlflow_list_artifacts(
        &self,
        ctx: &Context<'_>,
        input: Option<ListArtifactsInput>,
    ) -> Option<ListArtifactsResponse> {
        let fields = input.unwrap_or_default().fields();
        with_store(ctx, move |s| {
            let (run_id, dir) = artifacts::list_run_artifacts_request(&fields)?;
            let (root_uri, entries) = artifacts::run_artifacts(s, &run_id, &dir)?;
            Ok(ListArtifactsResponse {
                root_uri,
                files: (entries.into_iter())
                    .map(|(path, e)| FileInfo::new(path, &e))
                    .collect(),
                next_page_token: String::new(),
                api_error: None,
            })
        })
        .await
    }

    /// Registered model versions (REST `model-versions/search`).
    async fn mlflow_search_model_versions(
        &self,
        ctx: &Context<'_>,
        input: Option<SearchModelVersionsInput>,
    ) -> Option<SearchModelVersionsResponse> {
        let fields = input.unwrap_or_default().fields();
        with_store(ctx, move |s| {
            let req = versions::search_request(&fields)?;
            let page = s.search_model_versions(&req)?;
            Ok(SearchModelVersionsResponse {
                model_versions: page.model_versions.iter().map(Into::into).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
                api_error: None,
            })
        })
        .await
    }

    /// Runs of experiments (REST `runs/search`); also a mutation, as in MLflow.
    async fn mlflow_search_runs(
        &self,
        ctx: &Context<'_>,
        input: Option<SearchRunsInput>,
    ) -> Option<SearchRunsResponse> {
        search_runs(ctx, input).await
    }

    /// Echoes `inputString`: a check that the endpoint answers.
    async fn test(&self, input_string: Option<String>) -> Option<Test> {
        Some(Test {
            output: input_string,
        })
    }
}

/// MLflow's `Mutation` root (its searches, which take long inputs).
#[derive(Debug, Default)]
pub(crate) struct Mutation;

/// Searches that MLflow's schema declares as mutations.
#[Object(name = "Mutation")]
impl Mutation {
    /// The datasets the runs of experiments used (REST `experiments/search-datasets`).
    async fn mlflow_search_datasets(
        &self,
        ctx: &Context<'_>,
        input: Option<SearchDatasetsInput>,
    ) -> Option<SearchDatasetsResponse> {
        let fields = input.unwrap_or_default().fields();
        with_store(ctx, move |s| {
            let ids = experiments::search_datasets_request(&fields)?;
            Ok(SearchDatasetsResponse {
                dataset_summaries: s
                    .search_datasets(&ids)?
                    .into_iter()
                    .map(Into::into)
                    .collect(),
                api_error: None,
            })
        })
        .await
    }

    /// Runs of experiments (REST `runs/search`).
    async fn mlflow_search_runs(
        &self,
        ctx: &Context<'_>,
        input: Option<SearchRunsInput>,
    ) -> Option<SearchRunsResponse> {
        search_runs(ctx, input).await
    }

    /// Echoes `inputString`.
    #[graphql(name = "testMutation")]
    async fn test_mutation(&self, input_string: Option<String>) -> Option<TestMutation> {
        Some(TestMutation {
            output: input_string,
        })
    }
}
