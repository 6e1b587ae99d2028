//! Registered models: create, rename, update, delete, get, search, latest versions, tags and
//! aliases.

use axum::extract::State;
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use quiver_store::{RegistrySearch, Tag};
use serde_json::{json, Map, Value};

use super::search_fields;
use crate::error::ApiResult;
use crate::routes::runs::tags_field;
use crate::routes::{done, mlflow};
use crate::user::User;
use crate::wire::Fields;
use crate::{blocking, json, AppState};

/// Default and largest page of `registered-models/search`.
const SEARCH_DEFAULT: i64 = 100;
const SEARCH_MAX: i64 = 1000;

/// Registers this module's routes.
pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    let p = "/registered-models";
    let r = mlflow(router, "2.0", &format!("{p}/create"), post(create));
    let r = mlflow(r, "2.0", &format!("{p}/rename"), post(rename));
    let r = mlflow(r, "2.0", &format!("{p}/update"), patch(update));
    let r = mlflow(r, "2.0", &format!("{p}/delete"), delete(delete_model));
    let r = mlflow(r, "2.0", &format!("{p}/get"), get(get_model));
    let r = mlflow(r, "2.0", &format!("{p}/search"), get(search).post(search));
    let r = mlflow(
        r,
        "2.0",
        &format!("{p}/get-latest-versions"),
        post(latest_versions).get(latest_versions),
    );
    let r = mlflow(r, "2.0", &format!("{p}/set-tag"), post(set_tag));
    let r = mlflow(r, "2.0", &format!("{p}/delete-tag"), delete(delete_tag));
    mlflow(
        r,
        "2.0",
        &format!("{p}/alias"),
        post(set_alias).delete(delete_alias).get(get_by_alias),
    )
}

/// `{"registered_model": ...}`.
fn model_response(m: &quiver_store::RegisteredModel) -> Json<Value> {
    Json(json!({ "registered_model": json::registered_model(m) }))
}

/// `POST registered-models/create {name*, tags, description}` → `{registered_model}`.
async fn create(State(s): State<AppState>, User(user): User, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let tags = tags_field(&f, "tags")?;
    let description = f.opt_str("description")?;
    let model = blocking(move || {
        Ok(s.store
            .create_registered_model(&name, &tags, description.as_deref(), &user)?)
    })
    .await?;
    Ok(model_response(&model))
}

/// `POST registered-models/rename {name*, new_name*}` → `{registered_model}`.
async fn rename(State(s): State<AppState>, User(user): User, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let new_name = f.req_str("new_name")?;
    let model =
        blocking(move || Ok(s.store.rename_registered_model(&name, &new_name, &user)?)).await?;
    Ok(model_response(&model))
}

/// `PATCH registered-models/update {name*, description}` → `{registered_model}`.
async fn update(State(s): State<AppState>, User(user): User, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let description = f.opt_str("description")?.unwrap_or_default();
    let model = blocking(move || {
        Ok(s.store
            .update_registered_model(&name, &description, &user)?)
    })
    .await?;
    Ok(model_response(&model))
}

/// `DELETE registered-models/delete {name*}` → `{}` (refused while a version is deployed).
async fn delete_model(
    State(s): State<AppState>,
    User(user): User,
    f: Fields,
) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    blocking(move || Ok(s.store.delete_registered_model(&name, &user)?)).await?;
    Ok(done())
}

/// `GET registered-models/get?name=` → `{registered_model}`.
async fn get_model(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let model = blocking(move || Ok(s.store.get_registered_model(&name)?)).await?;
    Ok(model_response(&model))
}

/// The request of `registered-models/search`.
pub(crate) fn search_request(f: &Fields) -> ApiResult<RegistrySearch> {
    search_fields(f, SEARCH_DEFAULT, SEARCH_MAX)
}

/// `GET|POST registered-models/search {filter, max_results (100, at most 1000), order_by[],
/// page_token}` → `{registered_models, next_page_token}`.
async fn search(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let req = search_request(&f)?;
    let page = blocking(move || Ok(s.store.search_registered_models(&req)?)).await?;
    let models = page.registered_models.iter().map(json::registered_model);
    Ok(Json(json::page(
        "registered_models",
        models.collect(),
        page.next_page_token,
    )))
}

/// `POST|GET registered-models/get-latest-versions {name*, stages[]}` → `{model_versions}`: the
/// newest version in each stage asked for (every stage when none is).
async fn latest_versions(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let stages = f.str_list("stages")?;
    let versions = blocking(move || Ok(s.store.get_latest_versions(&name, &stages)?)).await?;
    let mut out = Map::new();
    json::put_list(
        &mut out,
        "model_versions",
        versions.iter().map(json::model_version).collect(),
    );
    Ok(Json(Value::Object(out)))
}

/// `POST registered-models/set-tag {name*, key*, value*}` → `{}`.
async fn set_tag(State(s): State<AppState>, User(user): User, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let tag = Tag::new(f.req_str("key")?, f.opt_str("value")?.unwrap_or_default());
    blocking(move || Ok(s.store.set_registered_model_tag(&name, &tag, &user)?)).await?;
    Ok(done())
}

/// `DELETE registered-models/delete-tag {name*, key*}` → `{}`.
async fn delete_tag(
    State(s): State<AppState>,
    User(user): User,
    f: Fields,
) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let key = f.req_str("key")?;
    blocking(move || Ok(s.store.delete_registered_model_tag(&name, &key, &user)?)).await?;
    Ok(done())
}

/// `POST registered-models/alias {name*, alias*, version*}` → `{}`: points the alias at the
/// version, moving it if it pointed elsewhere.
async fn set_alias(
    State(s): State<AppState>,
    User(user): User,
    f: Fields,
) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let alias = f.req_str("alias")?;
    let version = f.req_str("version")?;
    blocking(move || {
        Ok(s.store
            .set_registered_model_alias(&name, &alias, &version, &user)?)
    })
    .await?;
    Ok(done())
}

/// `DELETE registered-models/alias {name*, alias*}` → `{}` (refused while a deployment names it).
async fn delete_alias(
    State(s): State<AppState>,
    User(user): User,
    f: Fields,
) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let alias = f.req_str("alias")?;
    blocking(move || {
        Ok(s.store
            .delete_registered_model_alias(&name, &alias, &user)?)
    })
    .await?;
    Ok(done())
}

/// `GET registered-models/alias?name=&alias=` → `{model_version}`: the version it points to.
async fn get_by_alias(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let alias = f.req_str("alias")?;
    let version = blocking(move || Ok(s.store.get_model_version_by_alias(&name, &alias)?)).await?;
    Ok(Json(
        json!({ "model_version": json::model_version(&version) }),
    ))
}
