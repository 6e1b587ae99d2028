//! Model versions: create, update, transition stage, delete, get, search, download URI, tags, and
//! the files of a version (`/model-versions/get-artifact`, the web UI's).

use axum::extract::State;
use axum::response::Response;
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use quiver_store::{artifact_path, CreateModelVersion, RegistrySearch, Tag};
use serde_json::{json, Value};

use super::search_fields;
use crate::error::{ApiError, ApiResult};
use crate::routes::artifacts::{file_path, send_file, served_root};
use crate::routes::runs::tags_field;
use crate::routes::{done, mlflow};
use crate::user::User;
use crate::wire::Fields;
use crate::{blocking, json, AppState};

/// Default and largest page of `model-versions/search` (the proto's default).
const SEARCH_DEFAULT: i64 = 200_000;
const SEARCH_MAX: i64 = 200_000;

/// Registers this module's routes.
pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    let p = "/model-versions";
    let r = mlflow(router, "2.0", &format!("{p}/create"), post(create));
    let r = mlflow(r, "2.0", &format!("{p}/update"), patch(update));
    let r = mlflow(r, "2.0", &format!("{p}/transition-stage"), post(transition));
    let r = mlflow(r, "2.0", &format!("{p}/delete"), delete(delete_version));
    let r = mlflow(r, "2.0", &format!("{p}/get"), get(get_version));
    let r = mlflow(r, "2.0", &format!("{p}/search"), get(search).post(search));
    let r = mlflow(
        r,
        "2.0",
        &format!("{p}/get-download-uri"),
        get(download_uri),
    );
    let r = mlflow(r, "2.0", &format!("{p}/set-tag"), post(set_tag));
    let r = mlflow(r, "2.0", &format!("{p}/delete-tag"), delete(delete_tag));
    // Not an RPC: MLflow serves it at the root, for the web UI.
    r.route("/model-versions/get-artifact", get(get_artifact))
}

/// `{"model_version": ...}`.
fn version_response(v: &quiver_store::ModelVersion) -> Json<Value> {
    Json(json!({ "model_version": json::model_version(v) }))
}

/// A non-empty optional string field.
fn opt_nonempty(f: &Fields, name: &str) -> ApiResult<Option<String>> {
    Ok(f.opt_str(name)?.filter(|s| !s.is_empty()))
}

/// The request of `model-versions/create`.
pub(crate) fn create_request(f: &Fields) -> ApiResult<CreateModelVersion> {
    Ok(CreateModelVersion {
        name: f.req_str("name")?,
        source: f.req_str("source")?,
        run_id: opt_nonempty(f, "run_id")?,
        tags: tags_field(f, "tags")?,
        run_link: opt_nonempty(f, "run_link")?,
        description: opt_nonempty(f, "description")?,
        model_id: opt_nonempty(f, "model_id")?,
    })
}

/// `POST model-versions/create {name*, source*, run_id, tags, run_link, description, model_id}`
/// → `{model_version}`, status `READY`.
async fn create(State(s): State<AppState>, User(user): User, f: Fields) -> ApiResult<Json<Value>> {
    let req = create_request(&f)?;
    let version = blocking(move || Ok(s.store.create_model_version(&req, &user)?)).await?;
    Ok(version_response(&version))
}

/// `PATCH model-versions/update {name*, version*, description}` → `{model_version}`.
async fn update(State(s): State<AppState>, User(user): User, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let version = f.req_str("version")?;
    let description = f.opt_str("description")?.unwrap_or_default();
    let v = blocking(move || {
        Ok(s.store
            .update_model_version(&name, &version, &description, &user)?)
    })
    .await?;
    Ok(version_response(&v))
}

/// `POST model-versions/transition-stage {name*, version*, stage*, archive_existing_versions}`
/// → `{model_version}`. The stage is matched ignoring case by the store.
async fn transition(
    State(s): State<AppState>,
    User(user): User,
    f: Fields,
) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let version = f.req_str("version")?;
    let stage = f.req_str("stage")?;
    let archive = f.opt_bool("archive_existing_versions")?.unwrap_or(false);
    let v = blocking(move || {
        Ok(s.store
            .transition_model_version_stage(&name, &version, &stage, archive, &user)?)
    })
    .await?;
    Ok(version_response(&v))
}

/// `DELETE model-versions/delete {name*, version*}` → `{}` (refused while deployed).
async fn delete_version(
    State(s): State<AppState>,
    User(user): User,
    f: Fields,
) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let version = f.req_str("version")?;
    blocking(move || Ok(s.store.delete_model_version(&name, &version, &user)?)).await?;
    Ok(done())
}

/// `GET model-versions/get?name=&version=` → `{model_version}`.
async fn get_version(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let version = f.req_str("version")?;
    let v = blocking(move || Ok(s.store.get_model_version(&name, &version)?)).await?;
    Ok(version_response(&v))
}

/// The request of `model-versions/search`.
pub(crate) fn search_request(f: &Fields) -> ApiResult<RegistrySearch> {
    search_fields(f, SEARCH_DEFAULT, SEARCH_MAX)
}

/// `GET|POST model-versions/search {filter, max_results (200000, at most 200000), order_by[],
/// page_token}` → `{model_versions, next_page_token}`.
async fn search(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let req = search_request(&f)?;
    let page = blocking(move || Ok(s.store.search_model_versions(&req)?)).await?;
    let versions = page.model_versions.iter().map(json::model_version);
    Ok(Json(json::page(
        "model_versions",
        versions.collect(),
        page.next_page_token,
    )))
}

/// `GET model-versions/get-download-uri?name=&version=` → `{artifact_uri}`.
async fn download_uri(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let version = f.req_str("version")?;
    let uri = blocking(move || Ok(s.store.model_version_download_uri(&name, &version)?)).await?;
    Ok(Json(json!({ "artifact_uri": uri })))
}

/// `POST model-versions/set-tag {name*, version*, key*, value*}` → `{}`.
async fn set_tag(State(s): State<AppState>, User(user): User, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let version = f.req_str("version")?;
    let tag = Tag::new(f.req_str("key")?, f.opt_str("value")?.unwrap_or_default());
    blocking(move || {
        Ok(s.store
            .set_model_version_tag(&name, &version, &tag, &user)?)
    })
    .await?;
    Ok(done())
}

/// `DELETE model-versions/delete-tag {name*, version*, key*}` → `{}`.
async fn delete_tag(
    State(s): State<AppState>,
    User(user): User,
    f: Fields,
) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let version = f.req_str("version")?;
    let key = f.req_str("key")?;
    blocking(move || {
        Ok(s.store
            .delete_model_version_tag(&name, &version, &key, &user)?)
    })
    .await?;
    Ok(done())
}

/// `GET /model-versions/get-artifact?name=&version=&path=`: the bytes of file `path` of a
/// version, when its download URI is served by this server.
async fn get_artifact(State(s): State<AppState>, f: Fields) -> ApiResult<Response> {
    let name = f.req_str("name")?;
    let version = f.req_str("version")?;
    let rel = file_path(&f.req_str("path")?)?;
    let store = s.store.clone();
    let path = blocking(move || {
        let uri = store.model_version_download_uri(&name, &version)?;
        match served_root(&uri)? {
            Some(root) => Ok(artifact_path::join(&root, &rel)),
            None => Err(ApiError::invalid(format!(
                "The files of version {version} of model '{name}' are at '{uri}', which this \
                 server does not serve"
            ))),
        }
    })
    .await?;
    send_file(s.store.clone(), path).await
}
