//! Routes of the runs service: create, get, update, delete, restore, set-tag, delete-tag,
//! log-parameter, log-metric, log-batch, log-inputs, outputs, search.

pub(crate) mod batch;
pub(crate) mod search;

use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use quiver_store::{
    CreateRun, Dataset, DatasetInput, Metric, ModelOutput, Param, RunSearch, RunStatus, Tag,
    UpdateRun,
};
use serde_json::{json, Value};

use super::{done, mlflow};
use crate::error::{ApiError, ApiResult};
use crate::wire::{self, Fields};
use crate::{blocking, json, AppState};

/// Largest log-batch request body (MLflow's `MAX_BATCH_LOG_REQUEST_SIZE`).
pub(crate) const MAX_BATCH_LOG_REQUEST_SIZE: usize = 1_000_000;

/// Default page size of `runs/search`.
const SEARCH_RUNS_DEFAULT: i64 = 1000;

/// Registers this module's routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let r = mlflow(router, "2.0", "/runs/create", post(create));
    let r = mlflow(r, "2.0", "/runs/get", get(get_run));
    let r = mlflow(r, "2.0", "/runs/update", post(update));
    let r = mlflow(r, "2.0", "/runs/delete", post(delete));
    let r = mlflow(r, "2.0", "/runs/restore", post(restore));
    let r = mlflow(r, "2.0", "/runs/set-tag", post(set_tag));
    let r = mlflow(r, "2.0", "/runs/delete-tag", post(delete_tag));
    let r = mlflow(r, "2.0", "/runs/log-parameter", post(log_param));
    let r = mlflow(r, "2.0", "/runs/log-metric", post(log_metric));
    let r = mlflow(r, "2.0", "/runs/log-batch", post(log_batch));
    let r = mlflow(r, "2.0", "/runs/log-inputs", post(log_inputs));
    let r = mlflow(r, "2.0", "/runs/outputs", post(log_outputs));
    mlflow(r, "2.0", "/runs/search", post(search))
}

/// A repeated `{key*, value}` field (run, experiment tags); a missing value is `""`.
pub(crate) fn tags_field(f: &Fields, name: &str) -> ApiResult<Vec<Tag>> {
    f.list(name)?
        .iter()
        .map(|t| {
            Ok(Tag::new(
                t.req_str("key")?,
                t.opt_str("value")?.unwrap_or_default(),
            ))
        })
        .collect()
}

fn status_from_number(n: i64) -> Option<RunStatus> {
    Some(match n {
        1 => RunStatus::Running,
        2 => RunStatus::Scheduled,
        3 => RunStatus::Finished,
        4 => RunStatus::Failed,
        5 => RunStatus::Killed,
        _ => return None,
    })
}

/// The `status` field: a name (`FINISHED`) or the enum's number.
fn status_field(f: &Fields) -> ApiResult<Option<RunStatus>> {
    let Some(v) = f.raw("status") else {
        return Ok(None);
    };
    let parsed = match v {
        Value::String(s) => {
            RunStatus::parse(s).or_else(|| s.parse().ok().and_then(status_from_number))
        }
        Value::Number(n) => n.as_i64().and_then(status_from_number),
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| f.invalid("status", v))
}

/// A non-empty optional string field.
fn opt_nonempty(f: &Fields, name: &str) -> ApiResult<Option<String>> {
    Ok(f.opt_str(name)?.filter(|s| !s.is_empty()))
}

/// A metric point from `{key*, value*, timestamp*, step, model_id, dataset_name, dataset_digest}`.
fn metric_fields(f: &Fields) -> ApiResult<Metric> {
    Ok(Metric {
        key: f.req_str("key")?,
        value: f.req_f64("value")?,
        timestamp: f.req_i64("timestamp")?,
        step: f.opt_i64("step")?.unwrap_or(0),
        model_id: opt_nonempty(f, "model_id")?,
        dataset_name: opt_nonempty(f, "dataset_name")?,
        dataset_digest: opt_nonempty(f, "dataset_digest")?,
    })
}

/// The request of `runs/create`.
pub(crate) fn create_request(f: &Fields) -> ApiResult<CreateRun> {
    Ok(CreateRun {
        experiment_id: opt_nonempty(f, "experiment_id")?,
        user_id: f.opt_str("user_id")?,
        run_name: opt_nonempty(f, "run_name")?,
        start_time: f.opt_i64("start_time")?,
        tags: tags_field(f, "tags")?,
    })
}

/// `POST runs/create {experiment_id, user_id, run_name, start_time, tags}` → `{run}`.
async fn create(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let req = create_request(&f)?;
    let run = blocking(move || Ok(s.store.create_run(req)?)).await?;
    Ok(Json(json!({ "run": json::run(&run) })))
}

/// `GET runs/get?run_id=` (or `run_uuid`) → `{run}`; deleted runs too.
async fn get_run(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let run_id = f.run_id()?;
    let run = blocking(move || Ok(s.store.get_run(&run_id)?)).await?;
    Ok(Json(json!({ "run": json::run(&run) })))
}

/// The request of `runs/update`: the run id and the update.
pub(crate) fn update_request(f: &Fields) -> ApiResult<(String, UpdateRun)> {
    let run_id = f.run_id()?;
    let update = UpdateRun {
        status: status_field(f)?,
        end_time: f.opt_i64("end_time")?,
        run_name: opt_nonempty(f, "run_name")?,
    };
    Ok((run_id, update))
}

/// `POST runs/update {run_id*, status, end_time, run_name}` → `{run_info}`.
async fn update(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let (run_id, update) = update_request(&f)?;
    let info = blocking(move || Ok(s.store.update_run(&run_id, update)?)).await?;
    Ok(Json(json!({ "run_info": json::run_info(&info) })))
}

/// `POST runs/delete {run_id*}`.
async fn delete(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let run_id = f.run_id()?;
    blocking(move || Ok(s.store.delete_run(&run_id)?)).await?;
    Ok(done())
}

/// `POST runs/restore {run_id*}`.
async fn restore(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let run_id = f.run_id()?;
    blocking(move || Ok(s.store.restore_run(&run_id)?)).await?;
    Ok(done())
}

/// The request of `runs/set-tag` and `runs/log-parameter`: run id, key, value (`""` when
/// absent).
pub(crate) fn key_value_request(f: &Fields) -> ApiResult<(String, String, String)> {
    let run_id = f.run_id()?;
    let key = f.req_str("key")?;
    let value = f.opt_str("value")?.unwrap_or_default();
    Ok((run_id, key, value))
}

/// `POST runs/set-tag {run_id*, key*, value}`.
async fn set_tag(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let (run_id, key, value) = key_value_request(&f)?;
    blocking(move || Ok(s.store.set_tag(&run_id, &key, &value)?)).await?;
    Ok(done())
}

/// `POST runs/delete-tag {run_id*, key*}`.
async fn delete_tag(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let run_id = f.run_id()?;
    let key = f.req_str("key")?;
    blocking(move || Ok(s.store.delete_tag(&run_id, &key)?)).await?;
    Ok(done())
}

/// `POST runs/log-parameter {run_id*, key*, value}`: write-once.
async fn log_param(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let (run_id, key, value) = key_value_request(&f)?;
    blocking(move || Ok(s.store.log_param(&run_id, &key, &value)?)).await?;
    Ok(done())
}

/// The request of `runs/log-metric`: the run id and the point.
pub(crate) fn log_metric_request(f: &Fields) -> ApiResult<(String, Metric)> {
    Ok((f.run_id()?, metric_fields(f)?))
}

/// `POST runs/log-metric {run_id*, key*, value*, timestamp*, step, model_id, dataset_name,
/// dataset_digest}`.
async fn log_metric(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let (run_id, metric) = log_metric_request(&f)?;
    blocking(move || Ok(s.store.log_metric(&run_id, &metric)?)).await?;
    Ok(done())
}

/// `POST runs/log-batch {run_id*, metrics[], params[], tags[]}`: atomic; at most 1 MB of JSON.
async fn log_batch(State(s): State<AppState>, req: Request) -> ApiResult<Json<Value>> {
    let body = wire::json_body(req).await?;
    let batch::Batch {
        run_id,
        metrics,
        params,
        tags,
    } = log_batch_request(&body)?;
    blocking(move || Ok(s.store.log_batch(&run_id, &metrics, &params, &tags)?)).await?;
    Ok(done())
}

/// The request of `runs/log-batch` from its JSON body: at most
/// [`MAX_BATCH_LOG_REQUEST_SIZE`] bytes, read by the fast path ([`batch::parse`]) or, when that
/// declines, by the general one ([`batch_from_fields`]).
pub(crate) fn log_batch_request(body: &[u8]) -> ApiResult<batch::Batch> {
    if body.len() > MAX_BATCH_LOG_REQUEST_SIZE {
        return Err(ApiError::invalid(format!(
            "Batched logging API requests must be at most {MAX_BATCH_LOG_REQUEST_SIZE} bytes, \
             got a request of size {}.",
            body.len()
        )));
    }
    match batch::parse(body) {
        Some(b) => Ok(b),
        None => batch_from_fields(&Fields::from_json(body)?),
    }
}

/// A log-batch body read through the general path (with MLflow's error messages).
pub(crate) fn batch_from_fields(f: &Fields) -> ApiResult<batch::Batch> {
    let run_id = f.run_id()?;
    let metrics = f
        .list("metrics")?
        .iter()
        .map(metric_fields)
        .collect::<ApiResult<Vec<_>>>()?;
    let params = f
        .list("params")?
        .iter()
        .map(|p| {
            Ok(Param::new(
                p.req_str("key")?,
                p.opt_str("value")?.unwrap_or_default(),
            ))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let tags = tags_field(f, "tags")?;
    Ok(batch::Batch {
        run_id,
        metrics,
        params,
        tags,
    })
}

/// The request of `runs/log-inputs`: run id, dataset inputs, model ids.
pub(crate) fn log_inputs_request(
    f: &Fields,
) -> ApiResult<(String, Vec<DatasetInput>, Vec<String>)> {
    let run_id = f.run_id()?;
    let mut inputs = Vec::new();
    for d in f.list("datasets")? {
        let tags = d
            .list("tags")?
            .iter()
            .map(|t| Ok(Tag::new(t.req_str("key")?, t.req_str("value")?)))
            .collect::<ApiResult<Vec<_>>>()?;
        let ds = d.object("dataset")?.ok_or_else(|| d.missing("dataset"))?;
        inputs.push(DatasetInput {
            tags,
            dataset: Dataset {
                name: ds.req_str("name")?,
                digest: ds.req_str("digest")?,
                source_type: ds.req_str("source_type")?,
                source: ds.req_str("source")?,
                schema: ds.opt_str("schema")?,
                profile: ds.opt_str("profile")?,
            },
        });
    }
    let models = f
        .list("models")?
        .iter()
        .map(|m| m.req_str("model_id"))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok((run_id, inputs, models))
}

/// `POST runs/log-inputs {run_id*, datasets[{tags, dataset{name*, digest*, source_type*,
/// source*, schema, profile}}], models[{model_id*}]}`. The whole request is read before anything
/// is recorded; datasets are recorded first, then model inputs.
async fn log_inputs(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let (run_id, inputs, models) = log_inputs_request(&f)?;
    blocking(move || {
        // Unknown models are refused before the datasets are recorded, so a refused request
        // records nothing.
        for m in &models {
            s.store.get_logged_model(m)?;
        }
        if !inputs.is_empty() || models.is_empty() {
            s.store.log_inputs(&run_id, &inputs)?;
        }
        if !models.is_empty() {
            s.store.log_model_inputs(&run_id, &models)?;
        }
        Ok(())
    })
    .await?;
    Ok(done())
}

/// The request of `runs/outputs`: run id and model outputs.
pub(crate) fn log_outputs_request(f: &Fields) -> ApiResult<(String, Vec<ModelOutput>)> {
    let run_id = f.run_id()?;
    if f.raw("models").is_none() {
        return Err(f.missing("models"));
    }
    let outputs = f
        .list("models")?
        .iter()
        .map(|m| {
            Ok(ModelOutput {
                model_id: m.req_str("model_id")?,
                step: m.opt_i64("step")?.unwrap_or(0),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok((run_id, outputs))
}

/// `POST runs/outputs {run_id*, models*[{model_id*, step}]}`: the logged models the run
/// produced (`step` defaults to 0).
async fn log_outputs(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let (run_id, outputs) = log_outputs_request(&f)?;
    blocking(move || Ok(s.store.log_run_outputs(&run_id, &outputs)?)).await?;
    Ok(done())
}

/// The request of `runs/search`.
pub(crate) fn search_request(f: &Fields) -> ApiResult<RunSearch> {
    Ok(RunSearch {
        experiment_ids: f.str_list("experiment_ids")?,
        filter: f.opt_str("filter")?.unwrap_or_default(),
        view: search::view_type(f, "run_view_type")?,
        max_results: search::max_results(f, SEARCH_RUNS_DEFAULT)?,
        order_by: f.str_list("order_by")?,
        page_token: f.opt_str("page_token")?,
    })
}

/// `POST runs/search {experiment_ids[], filter, run_view_type, max_results, order_by[],
/// page_token}` → `{runs, next_page_token}`, served by the store's run index.
async fn search(State(s): State<AppState>, f: Fields) -> ApiResult<Response> {
    let req = search_request(&f)?;
    // Written straight to bytes: at 100 runs a page, a `Value` tree would cost more than the
    // search itself.
    let body = blocking(move || {
        let page = s.store.search_runs(&req)?;
        let mut buf = Vec::with_capacity(page.runs.len() * 1600 + 64);
        let mut o = json::ObjectWriter::new(&mut buf);
        o.list("runs", &page.runs, json::write_run);
        if let Some(token) = &page.next_page_token {
            o.field("next_page_token", token);
        }
        o.end();
        Ok(buf)
    })
    .await?;
    Ok(json::json_response(body))
}
