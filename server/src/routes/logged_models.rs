//! Routes of the logged models service (MLflow 3's `log_model`): create, get, finalize, delete,
//! search, tags, params, and the model's artifacts (listing, and single files for the web UI).
//!
//! A logged model's files live in the artifact store under the path its `artifact_uri` names
//! (`mlflow-artifacts:/<exp>/models/<id>/artifacts` is the store directory
//! `<exp>/models/<id>/artifacts`); the client uploads them through the artifact proxy.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use quiver_store::artifact_path;
use quiver_store::{
    CreateLoggedModel, DatasetRef, LoggedModelOrder, LoggedModelSearch, LoggedModelStatus, Param,
};
use serde_json::{json, Map, Value};

use super::artifacts::{file_info, file_path, send_file, served_root};
use super::runs::{search, tags_field};
use super::{done, mlflow, path_params};
use crate::error::{ApiError, ApiResult};
use crate::wire::Fields;
use crate::{blocking, json, AppState};

/// Default page size of `logged-models/search` (the proto's default).
const SEARCH_DEFAULT: i64 = 50;

/// Registers this module's routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let r = mlflow(router, "2.0", "/logged-models", post(create));
    let r = mlflow(r, "2.0", "/logged-models/search", post(search_models));
    let r = mlflow(
        r,
        "2.0",
        "/logged-models/{model_id}",
        get(get_model).patch(finalize).delete(delete_model),
    );
    let r = mlflow(r, "2.0", "/logged-models/{model_id}/tags", patch(set_tags));
    let r = mlflow(
        r,
        "2.0",
        "/logged-models/{model_id}/tags/{*tag_key}",
        axum::routing::delete(delete_tag),
    );
    let r = mlflow(
        r,
        "2.0",
        "/logged-models/{model_id}/params",
        post(log_params),
    );
    let r = mlflow(
        r,
        "2.0",
        "/logged-models/{model_id}/artifacts/directories",
        get(list_artifacts),
    );
    mlflow(
        r,
        "2.0",
        "/logged-models/{model_id}/artifacts/files",
        get(get_artifact),
    )
}

/// `{"model": <logged model>}`.
fn model_response(m: &quiver_store::LoggedModel) -> Json<Value> {
    Json(json!({ "model": json::logged_model(m) }))
}

/// A repeated `{key*, value}` field of params; a missing value is `""`.
pub(crate) fn params_field(f: &Fields) -> ApiResult<Vec<Param>> {
    f.list("params")?
        .iter()
        .map(|p| {
            Ok(Param::new(
                p.req_str("key")?,
                p.opt_str("value")?.unwrap_or_default(),
            ))
        })
        .collect()
}

/// A non-empty optional string field.
fn opt_nonempty(f: &Fields, name: &str) -> ApiResult<Option<String>> {
    Ok(f.opt_str(name)?.filter(|s| !s.is_empty()))
}

/// The required `status` field: a name (`LOGGED_MODEL_READY`) or the enum's number (2).
pub(crate) fn status_field(f: &Fields) -> ApiResult<LoggedModelStatus> {
    let v = f.raw("status").ok_or_else(|| f.missing("status"))?;
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(f.invalid("status", v)),
    };
    LoggedModelStatus::parse(&text).ok_or_else(|| f.invalid("status", v))
}

/// The `order_by` objects of a search: `{field_name*, ascending (default true), dataset_name,
/// dataset_digest}`.
fn order_by_field(f: &Fields) -> ApiResult<Vec<LoggedModelOrder>> {
    f.list("order_by")?
        .iter()
        .map(|o| {
            Ok(LoggedModelOrder {
                field_name: o.req_str("field_name")?,
                ascending: o.opt_bool("ascending")?.unwrap_or(true),
                dataset_name: opt_nonempty(o, "dataset_name")?,
                dataset_digest: opt_nonempty(o, "dataset_digest")?,
            })
        })
        .collect()
}

/// The `datasets` of a search: `{dataset_name*, dataset_digest}`.
fn datasets_field(f: &Fields) -> ApiResult<Vec<DatasetRef>> {
    f.list("datasets")?
        .iter()
        .map(|d| {
            Ok(DatasetRef {
                dataset_name: d.req_str("dataset_name")?,
                dataset_digest: opt_nonempty(d, "dataset_digest")?,
            })
        })
        .collect()
}

/// The request of `logged-models` (create).
pub(crate) fn create_request(f: &Fields) -> ApiResult<CreateLoggedModel> {
    Ok(CreateLoggedModel {
        experiment_id: f.req_str("experiment_id")?,
        name: opt_nonempty(f, "name")?,
        model_type: opt_nonempty(f, "model_type")?,
        source_run_id: opt_nonempty(f, "source_run_id")?,
        params: params_field(f)?,
        tags: tags_field(f, "tags")?,
    })
}

/// `POST logged-models {experiment_id*, name, model_type, source_run_id, params, tags}` →
/// `{model}` (status `LOGGED_MODEL_PENDING`).
async fn create(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let req = create_request(&f)?;
    let model = blocking(move || Ok(s.store.create_logged_model(&req)?)).await?;
    Ok(model_response(&model))
}

/// `GET logged-models/{model_id}` → `{model}`.
async fn get_model(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let id = path_params(path)?;
    let model = blocking(move || Ok(s.store.get_logged_model(&id)?)).await?;
    Ok(model_response(&model))
}

/// `PATCH logged-models/{model_id} {status*}` (finalize) → `{model}`.
async fn finalize(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    f: Fields,
) -> ApiResult<Json<Value>> {
    let id = path_params(path)?;
    let status = status_field(&f)?;
    let model = blocking(move || Ok(s.store.finalize_logged_model(&id, status)?)).await?;
    Ok(model_response(&model))
}

/// `DELETE logged-models/{model_id}` → `{}`.
async fn delete_model(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> ApiResult<Json<Value>> {
    crate::drain(body).await;
    let id = path_params(path)?;
    blocking(move || Ok(s.store.delete_logged_model(&id)?)).await?;
    Ok(done())
}

/// `PATCH logged-models/{model_id}/tags {tags}` → `{model}`.
async fn set_tags(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    f: Fields,
) -> ApiResult<Json<Value>> {
    let id = path_params(path)?;
    let tags = tags_field(&f, "tags")?;
    let model = blocking(move || Ok(s.store.set_logged_model_tags(&id, &tags)?)).await?;
    Ok(model_response(&model))
}

/// `DELETE logged-models/{model_id}/tags/{tag_key}` → `{}` (the key may hold slashes).
async fn delete_tag(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> ApiResult<Json<Value>> {
    crate::drain(body).await;
    let (id, key) = path_params(path)?;
    blocking(move || Ok(s.store.delete_logged_model_tag(&id, &key)?)).await?;
    Ok(done())
}

/// `POST logged-models/{model_id}/params {params}` → `{}`.
async fn log_params(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    f: Fields,
) -> ApiResult<Json<Value>> {
    let id = path_params(path)?;
    let params = params_field(&f)?;
    blocking(move || Ok(s.store.log_logged_model_params(&id, &params)?)).await?;
    Ok(done())
}

/// The request of `logged-models/search`.
pub(crate) fn search_request(f: &Fields) -> ApiResult<LoggedModelSearch> {
    Ok(LoggedModelSearch {
        experiment_ids: f.str_list("experiment_ids")?,
        filter: f.opt_str("filter")?.unwrap_or_default(),
        datasets: datasets_field(f)?,
        max_results: search::max_results(f, SEARCH_DEFAULT)?,
        order_by: order_by_field(f)?,
        page_token: opt_nonempty(f, "page_token")?,
    })
}

/// `POST logged-models/search {experiment_ids, filter, datasets, max_results (50), order_by,
/// page_token}` → `{models, next_page_token}`.
async fn search_models(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let req = search_request(&f)?;
    let page = blocking(move || Ok(s.store.search_logged_models(&req)?)).await?;
    let models = page.models.iter().map(json::logged_model);
    Ok(Json(json::page(
        "models",
        models.collect(),
        page.next_page_token,
    )))
}

/// The query of `logged-models/{model_id}/artifacts/directories`: the directory, normalized.
pub(crate) fn list_artifacts_request(f: &Fields) -> ApiResult<String> {
    let dir = crate::routes::artifacts::safe_path(
        &f.opt_str("artifact_directory_path")?.unwrap_or_default(),
    )?;
    // `page_token` is accepted and ignored: a listing is one page.
    f.opt_str("page_token")?;
    Ok(dir)
}

/// `GET logged-models/{model_id}/artifacts/directories?artifact_directory_path=` →
/// `{root_uri, files}`: the entries directly under that directory of the model's artifacts, with
/// paths relative to the model's artifact root. A model whose artifacts this server does not
/// serve lists no files.
async fn list_artifacts(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    f: Fields,
) -> ApiResult<Json<Value>> {
    let id = path_params(path)?;
    let dir = list_artifacts_request(&f)?;
    let listed = dir.clone();
    let (root_uri, entries) = blocking(move || {
        let uri = s.store.get_logged_model(&id)?.artifact_uri;
        let entries = match served_root(&uri)? {
            Some(root) => s
                .store
                .list_artifacts(&artifact_path::join(&root, &listed))?,
            None => Vec::new(),
        };
        Ok((uri, entries))
    })
    .await?;
    let files = entries
        .iter()
        .map(|e| file_info(&artifact_path::join(&dir, &e.path), e))
        .collect();
    let mut out = Map::new();
    out.insert("root_uri".into(), json!(root_uri));
    json::put_list(&mut out, "files", files);
    Ok(Json(Value::Object(out)))
}

/// `GET logged-models/{model_id}/artifacts/files?artifact_file_path=p` (the web UI): the bytes
/// of file `p` of the model's artifacts.
async fn get_artifact(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    f: Fields,
) -> ApiResult<Response> {
    let id = path_params(path)?;
    let rel = file_path(&f.req_str("artifact_file_path")?)?;
    let store = s.store.clone();
    let path = blocking(move || {
        let uri = store.get_logged_model(&id)?.artifact_uri;
        match served_root(&uri)? {
            Some(root) => Ok(artifact_path::join(&root, &rel)),
            None => Err(ApiError::invalid(format!(
                "The artifacts of logged model {id} are at '{uri}', which this server does not \
                 serve"
            ))),
        }
    })
    .await?;
    send_file(s.store.clone(), path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> Fields {
        Fields::from_map(v.as_object().unwrap().clone())
    }

    #[test]
    fn order_by_objects_default_to_ascending() {
        let f = fields(json!({"order_by": [
            {"field_name": "creation_timestamp", "ascending": false},
            {"field_name": "metrics.acc", "dataset_name": "ds", "dataset_digest": ""},
            {"fieldName": "name", "ascending": "true"},
        ]}));
        assert_eq!(
            order_by_field(&f).unwrap(),
            vec![
                LoggedModelOrder {
                    field_name: "creation_timestamp".into(),
                    ascending: false,
                    ..Default::default()
                },
                LoggedModelOrder {
                    field_name: "metrics.acc".into(),
                    ascending: true,
                    dataset_name: Some("ds".into()),
                    dataset_digest: None,
                },
                LoggedModelOrder {
                    field_name: "name".into(),
                    ascending: true,
                    ..Default::default()
                },
            ]
        );
        assert!(order_by_field(&fields(json!({}))).unwrap().is_empty());
        let e = order_by_field(&fields(json!({"order_by": [{"ascending": true}]}))).unwrap_err();
        assert!(
            e.message
                .contains("Missing value for required parameter 'order_by[0].field_name'"),
            "{e}"
        );
        for bad in [
            json!({"order_by": ["name DESC"]}),
            json!({"order_by": [{"field_name": "name", "ascending": 1}]}),
            json!({"order_by": {"field_name": "name"}}),
        ] {
            let e = order_by_field(&fields(bad.clone())).unwrap_err();
            assert_eq!(e.code, "INVALID_PARAMETER_VALUE", "{bad}");
        }
    }

    #[test]
    fn datasets_need_a_name() {
        let f = fields(json!({"datasets": [{"dataset_name": "a"},
                                           {"dataset_name": "b", "dataset_digest": "d"}]}));
        assert_eq!(
            datasets_field(&f).unwrap(),
            vec![
                DatasetRef {
                    dataset_name: "a".into(),
                    dataset_digest: None
                },
                DatasetRef {
                    dataset_name: "b".into(),
                    dataset_digest: Some("d".into())
                },
            ]
        );
        let e =
            datasets_field(&fields(json!({"datasets": [{"dataset_digest": "d"}]}))).unwrap_err();
        assert!(e.message.contains("'datasets[0].dataset_name'"), "{e}");
    }

    #[test]
    fn statuses_by_name_or_number() {
        let status = |v: Value| status_field(&fields(json!({ "status": v })));
        assert_eq!(
            status(json!("LOGGED_MODEL_READY")).unwrap(),
            LoggedModelStatus::Ready
        );
        assert_eq!(status(json!(3)).unwrap(), LoggedModelStatus::UploadFailed);
        assert_eq!(status(json!("1")).unwrap(), LoggedModelStatus::Pending);
        for bad in [json!("READY"), json!(0), json!(true), json!({})] {
            assert_eq!(status(bad).unwrap_err().code, "INVALID_PARAMETER_VALUE");
        }
        let e = status_field(&fields(json!({}))).unwrap_err();
        assert!(e.message.contains("'status'"), "{e}");
    }
}
