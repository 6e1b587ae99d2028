//! `POST /api/2.0/quiver/gc`: permanent deletion of deleted runs and experiments, and removal of
//! unreferenced blobs and metric points (Quiver's own API; what `quiver gc --url` calls).
//!
//! Body: `{older_than_ms, run_ids: [..], experiment_ids: [..], unreferenced_only}`, all optional.
//! Without ids, every deleted run and experiment (older than `older_than_ms`) is purged, as
//! `mlflow gc` does; `unreferenced_only: true` purges nothing and only collects what nothing
//! references. Answer: `{runs_purged, experiments_purged, metric_points_removed, blobs_removed,
//! bytes_freed, blobs_kept}`.

use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use quiver_store::{PurgeReport, PurgeRequest};
use serde_json::{json, Value};

use super::quiver;
use crate::error::ApiResult;
use crate::wire::Fields;
use crate::{blocking, ApiError, AppState};

/// Registers the route.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    quiver(router, "/gc", post(gc))
}

/// `POST gc {older_than_ms, run_ids, experiment_ids, unreferenced_only}` → the report.
async fn gc(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let older_than = match f.opt_i64("older_than_ms")? {
        Some(ms) if ms < 0 => {
            return Err(ApiError::invalid(format!(
                "Invalid value {ms} for parameter 'older_than_ms': must be at least 0"
            )))
        }
        Some(ms) => Some(Duration::from_millis(ms as u64)),
        None => None,
    };
    let req = PurgeRequest {
        older_than,
        run_ids: f.str_list("run_ids")?,
        experiment_ids: f.str_list("experiment_ids")?,
    };
    let unreferenced_only = f.opt_bool("unreferenced_only")?.unwrap_or(false);
    if unreferenced_only && (!req.run_ids.is_empty() || !req.experiment_ids.is_empty()) {
        return Err(ApiError::invalid(
            "'unreferenced_only' purges nothing: it cannot be given with run_ids or experiment_ids",
        ));
    }
    let report = blocking(move || {
        Ok(if unreferenced_only {
            s.store.gc()?
        } else {
            s.store.purge(&req)?
        })
    })
    .await?;
    Ok(Json(report_json(&report)))
}

/// The JSON of a report.
fn report_json(r: &PurgeReport) -> Value {
    json!({
        "runs_purged": r.runs_purged,
        "experiments_purged": r.experiments_purged,
        "metric_points_removed": r.metric_points_removed,
        "blobs_removed": r.blobs.blobs_removed,
        "bytes_freed": r.blobs.bytes_freed,
        "blobs_kept": r.blobs.blobs_kept,
    })
}
