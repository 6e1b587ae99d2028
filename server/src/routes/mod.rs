//! The routes, one module per MLflow service.

mod artifacts;
mod experiments;
mod logged_models;
mod metrics;
mod misc;
mod runs;
mod sql;

use axum::routing::MethodRouter;
use axum::Router;

use crate::AppState;

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

/// Every route of the server.
pub(crate) fn all() -> Router<AppState> {
    let router = Router::new();
    let router = experiments::routes(router);
    let router = runs::routes(router);
    let router = metrics::routes(router);
    let router = artifacts::routes(router);
    let router = logged_models::routes(router);
    let router = sql::routes(router);
    misc::routes(router)
}
