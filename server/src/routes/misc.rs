//! Health, version and server capabilities.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::mlflow;
use crate::AppState;

/// `GET /health`, `GET /version`, `GET /api/3.0/mlflow/server-info`.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = router
        .route("/health", get(|| async { "OK" }))
        .route("/version", get(|| async { crate::MLFLOW_COMPAT_VERSION }));
    mlflow(router, "3.0", "/server-info", get(server_info))
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
