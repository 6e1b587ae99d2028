//! # quiver-server
//!
//! The MLflow tracking REST API (as the unmodified `mlflow` 3.x Python client uses it) mapped
//! onto [`quiver_store::Store`], with axum. Every MLflow route is served under both
//! `/api/2.0/...` (the client) and `/ajax-api/2.0/...` (the web UI). Anything not implemented
//! answers `404 ENDPOINT_NOT_FOUND` in MLflow's JSON error format.
//!
//! The wire format lives here only: [`wire`] reads requests with MLflow's conventions, [`json`]
//! writes responses, [`error`] is the one mapping of store errors onto error codes and statuses,
//! [`user`] names who makes a request (recorded with registry and deployment changes).
//!
//! Serving: [`serve::serve`] is the accept loop (connection cap, header-read and idle timeouts,
//! `TCP_NODELAY`, JSON for every error) and [`security::SecurityOptions::protect`] adds the
//! Host allowlist and the cross-origin checks that keep web pages away from a local server.

pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod import;
pub mod json;
mod routes;
pub mod security;
pub mod serve;
pub mod studio;
pub mod ui;
pub mod user;
pub mod wire;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Uri};
use axum::Router;
use quiver_store::Store;

pub use error::{ApiError, ApiResult};

/// The version this server reports (`GET /version`): the MLflow API level it implements.
pub const MLFLOW_COMPAT_VERSION: &str = "3.17.2";

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store the API is served from.
    pub store: Arc<Store>,
    /// What runs `POST /api/2.0/quiver/import` (none: the route refuses).
    pub importer: Option<Arc<dyn import::Importer>>,
}

/// The whole API as an axum router (without the Host and Origin checks of
/// [`security::SecurityOptions::protect`], which a server open to browsers needs). Imports
/// are refused: see [`router_with_importer`].
pub fn router(store: Arc<Store>) -> Router {
    router_with_importer(store, None)
}

/// [`router`], with `importer` running the imports `POST /api/2.0/quiver/import` asks for.
pub fn router_with_importer(
    store: Arc<Store>,
    importer: Option<Arc<dyn import::Importer>>,
) -> Router {
    let state = AppState { store, importer };
    routes::all()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Reads and drops a request body (up to 1 MiB) before answering, so that the connection can be
/// kept alive: a response sent while the body is unread makes the server close the connection,
/// and a client reusing it then fails.
async fn drain(body: Body) {
    let _ = axum::body::to_bytes(body, 1 << 20).await;
}

async fn not_found(method: Method, uri: Uri, body: Body) -> ApiError {
    drain(body).await;
    ApiError::endpoint_not_found(method.as_str(), uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri, body: Body) -> ApiError {
    drain(body).await;
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        ..ApiError::endpoint_not_found(method.as_str(), uri.path())
    }
}

/// Runs a blocking store call off the async runtime (store calls fsync and touch sled).
pub async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    F: FnOnce() -> ApiResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}
