//! Quiver's own model endpoints (not MLflow's): deployment records and the registry's history.
//!
//! - `POST /api/2.0/quiver/deployments {name*, model_name*, version, alias, target*,
//!   description}` → `{"deployment": {...}}`
//! - `GET /api/2.0/quiver/deployments` → `{"deployments": [...]}` (by name)
//! - `GET /api/2.0/quiver/deployments/{name}` → `{"deployment": {...}}`
//! - `DELETE /api/2.0/quiver/deployments/{name}` → `{}`
//! - `GET /api/2.0/quiver/registry-events?name=` → `{"events": [...]}` (oldest first; only
//!   those of one registered model when `name` is given)
//!
//! Lists are always present here, even when empty. Writes name the user making them.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use quiver_store::CreateDeployment;
use serde_json::{json, Value};

use super::{done, path_params, quiver};
use crate::error::ApiResult;
use crate::user::User;
use crate::wire::Fields;
use crate::{blocking, json, AppState};

/// Registers this module's routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let r = quiver(router, "/deployments", get(list).post(create));
    let r = quiver(r, "/deployments/{*name}", get(get_one).delete(delete_one));
    quiver(r, "/registry-events", get(events))
}

/// A non-empty optional string field.
fn opt_nonempty(f: &Fields, name: &str) -> ApiResult<Option<String>> {
    Ok(f.opt_str(name)?.filter(|s| !s.is_empty()))
}

/// The request of `deployments` (create).
pub(crate) fn create_request(f: &Fields) -> ApiResult<CreateDeployment> {
    Ok(CreateDeployment {
        name: f.req_str("name")?,
        model_name: f.req_str("model_name")?,
        version: opt_nonempty(f, "version")?,
        alias: opt_nonempty(f, "alias")?,
        target: f.req_str("target")?,
        description: opt_nonempty(f, "description")?,
    })
}

/// `POST deployments {name*, model_name*, version, alias, target*, description}` →
/// `{deployment}`. The store checks that exactly one of version and alias is given and that it
/// exists.
async fn create(State(s): State<AppState>, User(user): User, f: Fields) -> ApiResult<Json<Value>> {
    let req = create_request(&f)?;
    let d = blocking(move || Ok(s.store.create_deployment(&req, &user)?)).await?;
    Ok(Json(json!({ "deployment": json::deployment(&d) })))
}

/// `GET deployments` → `{deployments}`.
async fn list(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let all = blocking(move || Ok(s.store.deployments()?)).await?;
    let list: Vec<Value> = all.iter().map(json::deployment).collect();
    Ok(Json(json!({ "deployments": list })))
}

/// `GET deployments/{name}` → `{deployment}`.
async fn get_one(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let name = path_params(path)?;
    let d = blocking(move || Ok(s.store.get_deployment(&name)?)).await?;
    Ok(Json(json!({ "deployment": json::deployment(&d) })))
}

/// `DELETE deployments/{name}` → `{}`.
async fn delete_one(
    State(s): State<AppState>,
    User(user): User,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> ApiResult<Json<Value>> {
    crate::drain(body).await;
    let name = path_params(path)?;
    blocking(move || Ok(s.store.delete_deployment(&name, &user)?)).await?;
    Ok(done())
}

/// `GET registry-events?name=` → `{events}`.
async fn events(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let name = opt_nonempty(&f, "name")?;
    let events = blocking(move || Ok(s.store.registry_events(name.as_deref())?)).await?;
    let list: Vec<Value> = events.iter().map(json::registry_event).collect();
    Ok(Json(json!({ "events": list })))
}
