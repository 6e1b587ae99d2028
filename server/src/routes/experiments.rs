//! Routes of the experiments service: create, get, get-by-name, search, update (rename),
//! delete, restore, set-experiment-tag, delete-experiment-tag, and the web UI's
//! search-datasets.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use quiver_store::{ExperimentSearch, Tag};
use serde_json::{json, Value};

use super::runs::search;
use super::runs::tags_field;
use super::{done, mlflow};
use crate::error::{ApiError, ApiResult};
use crate::wire::Fields;
use crate::{blocking, json, AppState};

/// Registers this module's routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let r = mlflow(router, "2.0", "/experiments/create", post(create));
    let r = mlflow(r, "2.0", "/experiments/get", get(get_experiment));
    let r = mlflow(r, "2.0", "/experiments/get-by-name", get(get_by_name));
    let r = mlflow(r, "2.0", "/experiments/search", get(search).post(search));
    let r = mlflow(r, "2.0", "/experiments/update", post(update));
    let r = mlflow(r, "2.0", "/experiments/delete", post(delete));
    let r = mlflow(r, "2.0", "/experiments/restore", post(restore));
    let r = mlflow(r, "2.0", "/experiments/set-experiment-tag", post(set_tag));
    let r = mlflow(
        r,
        "2.0",
        "/experiments/search-datasets",
        post(search_datasets),
    );
    mlflow(
        r,
        "2.0",
        "/experiments/delete-experiment-tag",
        post(delete_tag),
    )
}

/// The request of `experiments/create`: name, artifact location, tags.
pub(crate) fn create_request(f: &Fields) -> ApiResult<(String, Option<String>, Vec<Tag>)> {
    let name = f.req_str("name")?;
    let location = f.opt_str("artifact_location")?;
    let tags = tags_field(f, "tags")?;
    Ok((name, location, tags))
}

/// `POST experiments/create {name*, artifact_location, tags}` → `{experiment_id}`.
async fn create(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let (name, location, tags) = create_request(&f)?;
    let id = blocking(move || {
        Ok(s.store
            .create_experiment(&name, location.as_deref(), &tags)?)
    })
    .await?;
    Ok(Json(json!({ "experiment_id": id })))
}

/// Most experiments in one `experiments/search-datasets` request (MLflow's limit).
const MAX_DATASET_SEARCH_EXPERIMENTS: usize = 20;

/// The request of `experiments/search-datasets`: 1 to 20 experiment ids.
pub(crate) fn search_datasets_request(f: &Fields) -> ApiResult<Vec<String>> {
    let ids = f.str_list("experiment_ids")?;
    if ids.is_empty() {
        return Err(ApiError::invalid(
            "SearchDatasets request must specify at least one experiment_id.",
        ));
    }
    if ids.len() > MAX_DATASET_SEARCH_EXPERIMENTS {
        return Err(ApiError::invalid(format!(
            "SearchDatasets request cannot specify more than {MAX_DATASET_SEARCH_EXPERIMENTS} \
             experiment_ids. Received {} experiment_ids.",
            ids.len()
        )));
    }
    Ok(ids)
}

/// `POST experiments/search-datasets {experiment_ids*}` → `{dataset_summaries: [{experiment_id,
/// name, digest, context}]}`: the datasets the experiments' runs used (the web UI's filter).
async fn search_datasets(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let ids = search_datasets_request(&f)?;
    let found = blocking(move || Ok(s.store.search_datasets(&ids)?)).await?;
    let summaries = found
        .iter()
        .map(|d| {
            let mut o = json!({
                "experiment_id": d.experiment_id,
                "name": d.name,
                "digest": d.digest,
            });
            if let Some(c) = &d.context {
                o["context"] = json!(c);
            }
            o
        })
        .collect();
    let mut obj = serde_json::Map::new();
    json::put_list(&mut obj, "dataset_summaries", summaries);
    Ok(Json(Value::Object(obj)))
}

/// The request of `experiments/get` (and GraphQL's `mlflowGetExperiment`): the id.
pub(crate) fn get_request(f: &Fields) -> ApiResult<String> {
    f.req_str("experiment_id")
}

/// `GET experiments/get?experiment_id=` → `{experiment}`.
async fn get_experiment(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = get_request(&f)?;
    let exp = blocking(move || Ok(s.store.get_experiment(&id)?)).await?;
    Ok(Json(json!({ "experiment": json::experiment(&exp) })))
}

/// `GET experiments/get-by-name?experiment_name=` → `{experiment}` (deleted ones too).
async fn get_by_name(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("experiment_name")?;
    let exp = blocking(move || Ok(s.store.get_experiment_by_name(&name)?)).await?;
    Ok(Json(json!({ "experiment": json::experiment(&exp) })))
}

/// `POST experiments/update {experiment_id*, new_name*}`: renames.
async fn update(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = f.req_str("experiment_id")?;
    let name = f.req_str("new_name")?;
    blocking(move || Ok(s.store.rename_experiment(&id, &name)?)).await?;
    Ok(done())
}

/// `POST experiments/delete {experiment_id*}`: the experiment and its runs go to the trash.
async fn delete(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = f.req_str("experiment_id")?;
    blocking(move || Ok(s.store.delete_experiment(&id)?)).await?;
    Ok(done())
}

/// `POST experiments/restore {experiment_id*}`.
async fn restore(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = f.req_str("experiment_id")?;
    blocking(move || Ok(s.store.restore_experiment(&id)?)).await?;
    Ok(done())
}

/// `POST experiments/set-experiment-tag {experiment_id*, key*, value}`.
async fn set_tag(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = f.req_str("experiment_id")?;
    let key = f.req_str("key")?;
    let value = f.opt_str("value")?.unwrap_or_default();
    blocking(move || Ok(s.store.set_experiment_tag(&id, &key, &value)?)).await?;
    Ok(done())
}

/// `POST experiments/delete-experiment-tag {experiment_id*, key*}`.
async fn delete_tag(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = f.req_str("experiment_id")?;
    let key = f.req_str("key")?;
    blocking(move || Ok(s.store.delete_experiment_tag(&id, &key)?)).await?;
    Ok(done())
}

/// The request of `experiments/search`.
pub(crate) fn search_request(f: &Fields) -> ApiResult<ExperimentSearch> {
    Ok(ExperimentSearch {
        filter: f.opt_str("filter")?.unwrap_or_default(),
        view: search::view_type(f, "view_type")?,
        max_results: search::max_results(f, 0)?,
        order_by: f.str_list("order_by")?,
        page_token: f.opt_str("page_token")?,
    })
}

/// `POST|GET experiments/search {max_results*, view_type, filter, order_by[], page_token}`
/// → `{experiments, next_page_token}`. Default order: creation time descending, then id.
async fn search(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let req = search_request(&f)?;
    let page = blocking(move || Ok(s.store.search_experiments(&req)?)).await?;
    let mut out = serde_json::Map::new();
    json::put_list(
        &mut out,
        "experiments",
        page.experiments.iter().map(json::experiment).collect(),
    );
    if let Some(token) = page.next_page_token {
        out.insert("next_page_token".into(), Value::String(token));
    }
    Ok(Json(Value::Object(out)))
}
