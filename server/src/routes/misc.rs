//! Health, version and server capabilities.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::mlflow;
use crate::{blocking, ApiError, AppState};

/// `GET /health`, `GET /version`, `GET /api/3.0/mlflow/server-info`, and the web UI's
/// `ajax-api/3.0/mlflow/ui-telemetry` and `ajax-api/2.0/mlflow/gateway-proxy`.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = router
        .route("/health", get(health))
        .route("/version", get(|| async { crate::MLFLOW_COMPAT_VERSION }))
        .route(
            "/ajax-api/3.0/mlflow/ui-telemetry",
            get(ui_telemetry_config).post(ui_telemetry_records),
        )
        .route(
            "/ajax-api/2.0/mlflow/gateway-proxy",
            get(no_gateway).post(no_gateway),
        );
    mlflow(router, "3.0", "/server-info", get(server_info))
}

/// `GET|POST ajax-api/2.0/mlflow/gateway-proxy`: the web UI lists AI-gateway endpoints on run
/// pages. Quiver has no gateway, so the list is empty, as `mlflow server` answers without a
/// deployments target.
async fn no_gateway(body: axum::body::Body) -> Json<Value> {
    let _ = axum::body::to_bytes(body, 1 << 20).await;
    Json(json!({"endpoints": []}))
}

/// `GET ajax-api/3.0/mlflow/ui-telemetry`: the web UI asks whether to send usage events.
/// Quiver never phones out, so the answer is always MLflow's "disabled" configuration.
async fn ui_telemetry_config() -> Json<Value> {
    Json(json!({
        "disable_ui_telemetry": true,
        "disable_ui_events": [],
        "ui_rollout_percentage": 0,
    }))
}

/// `POST ajax-api/3.0/mlflow/ui-telemetry`: records the web UI sends anyway are read and
/// dropped (MLflow's answer when telemetry is off).
async fn ui_telemetry_records(body: axum::body::Body) -> Json<Value> {
    let _ = axum::body::to_bytes(body, 1 << 20).await;
    Json(json!({"status": "disabled"}))
}

/// `OK` while the store accepts writes; otherwise 503 with the reason in MLflow's error format
/// (e.g. `RESOURCE_EXHAUSTED` while the disk is full), so that a load balancer or an operator
/// sees a server that cannot record anything.
async fn health(State(s): State<AppState>) -> Response {
    match blocking(move || Ok(s.store.writable())).await {
        Ok(Ok(())) => "OK".into_response(),
        Ok(Err(e)) => {
            let mut refusal = ApiError::from(e);
            refusal.status = StatusCode::SERVICE_UNAVAILABLE;
            refusal.into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// What the client probes before artifact operations: proxied artifact serving is on;
/// multipart uploads and presigned URLs are off, so the client streams single PUTs and GETs.
async fn server_info() -> Json<Value> {
    Json(json!({
        "store_type": "QuiverStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "artifact_serving_enabled": true,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "model_artifact_presigned_downloads_supported": false,
        "artifacts_presigned_only": false,
        "tracking_auth": "",
        "features_enabled": {},
    }))
}
