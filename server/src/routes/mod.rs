//! The routes, one module per MLflow service.

mod artifacts;
#[cfg(feature = "fuzzing")]
pub(crate) mod decoders;
mod deployments;
mod experiments;
mod gc;
mod graphql;
mod import;
mod logged_models;
mod manifests;
mod metrics;
mod misc;
mod registry;
mod runs;
mod sql;
mod steps;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::routing::MethodRouter;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::{ApiError, ApiResult, AppState};

/// Registers `route` at `/api/<version>/mlflow<path>` and `/ajax-api/<version>/mlflow<path>`,
/// as MLflow registers every RPC.
pub(crate) fn mlflow(
    router: Router<AppState>,
    version: &str,
    path: &str,
    route: MethodRouter<AppState>,
) -> Router<AppState> {
    router
        .route(&format!("/api/{version}/mlflow{path}"), route.clone())
        .route(&format!("/ajax-api/{version}/mlflow{path}"), route)
}

/// Registers `route` at `/api/2.0/quiver<path>` and `/ajax-api/2.0/quiver<path>`: Quiver's own
/// endpoints, which are not MLflow's.
pub(crate) fn quiver(
    router: Router<AppState>,
    path: &str,
    route: MethodRouter<AppState>,
) -> Router<AppState> {
    router
        .route(&format!("/api/2.0/quiver{path}"), route.clone())
        .route(&format!("/ajax-api/2.0/quiver{path}"), route)
}

/// The parameters captured from a route's path (percent-decoded), or a 400 in MLflow's error
/// format when they do not decode.
pub(crate) fn path_params<T>(path: Result<Path<T>, PathRejection>) -> ApiResult<T> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::invalid(format!("Invalid path: {e}")))
}

/// The answer of an RPC that returns nothing: `{}`.
pub(crate) fn done() -> Json<Value> {
    Json(json!({}))
}

/// Every route of the server.
pub(crate) fn all() -> Router<AppState> {
    let router = Router::new();
    let router = experiments::routes(router);
    let router = runs::routes(router);
    let router = metrics::routes(router);
    let router = artifacts::routes(router);
    let router = logged_models::routes(router);
    let router = registry::routes(router);
    let router = deployments::routes(router);
    let router = sql::routes(router);
    let router = gc::routes(router);
    let router = import::routes(router);
    let router = manifests::routes(router);
    let router = steps::routes(router);
    let router = graphql::routes(router);
    misc::routes(router)
}

#[cfg(test)]
mod tests {
    /// axum refuses conflicting routes by panicking when they are added: build them all once.
    #[test]
    fn every_route_registers_without_conflict() {
        let _ = super::all();
    }
}
