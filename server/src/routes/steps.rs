//! `GET /api/2.0/quiver/runs/by-step-key?key=K` → `{runs: [{run_id, experiment_id, status,
//! start_time, end_time}]}`: the active runs whose step key (tag `quiver.step.key`) is `K`,
//! newest first, found through the store's step-key index (what `quiver run --reuse` asks).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::quiver;
use crate::wire::Fields;
use crate::{blocking, ApiResult, AppState};

/// Registers the route.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    quiver(router, "/runs/by-step-key", get(by_step_key))
}

async fn by_step_key(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let key = f.req_str("key")?;
    let runs = blocking(move || Ok(s.store.runs_with_step_key(&key)?)).await?;
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({
                "run_id": r.run_id,
                "experiment_id": r.experiment_id,
                "status": r.status.as_str(),
                "start_time": r.start_time,
                "end_time": r.end_time,
            })
        })
        .collect();
    Ok(Json(json!({ "runs": runs })))
}
