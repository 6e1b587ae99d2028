//! Routes of the logged models service.
//!
//! Quiver has no logged models yet, but the client searches them on every
//! `list_artifacts(run, path)` and `runs:/` download (it looks for a model named like the
//! artifact path, and an error there propagates), so `search` answers an empty result.

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::mlflow;
use crate::wire::Fields;
use crate::{ApiResult, AppState};

/// Registers this module's routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    mlflow(router, "2.0", "/logged-models/search", post(search))
}

/// `POST /api/2.0/mlflow/logged-models/search`: no models exist, so every search finds none
/// (`{}`, protobuf-JSON for an empty `models` list). The request is still checked to be a JSON
/// object with fields of the right types.
async fn search(fields: Fields) -> ApiResult<Json<Value>> {
    fields.str_list("experiment_ids")?;
    fields.opt_str("filter")?;
    fields.list("datasets")?;
    fields.list("order_by")?;
    fields.opt_i64("max_results")?;
    fields.opt_str("page_token")?;
    Ok(Json(json!({})))
}
