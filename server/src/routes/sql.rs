//! `POST /api/2.0/quiver/sql`: read-only SQL over the store (Quiver's own API, not MLflow's).
//!
//! Body `{"query": "SELECT ..."}`. Answers JSON, `{"columns": [{"name", "type"}], "rows":
//! [{column: value}]}`, or an Arrow IPC stream when the request says
//! `Accept: application/vnd.apache.arrow.stream`. Anything but a query is a 400.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use quiver_store::arrow::record_batch::RecordBatch;
use serde_json::{json, Value};

use quiver_store::sql_output::ARROW_STREAM;

use crate::wire::Fields;
use crate::{blocking, ApiError, ApiResult, AppState};

/// Registers the SQL route under `/api/2.0/quiver/sql` and `/ajax-api/2.0/quiver/sql`.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/api/2.0/quiver/sql", post(sql))
        .route("/ajax-api/2.0/quiver/sql", post(sql))
}

async fn sql(State(s): State<AppState>, headers: HeaderMap, f: Fields) -> ApiResult<Response> {
    let query = f.req_str("query")?;
    let wants_arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(ARROW_STREAM));
    let batches = blocking(move || Ok(s.store.sql(&query)?)).await?;
    if wants_arrow {
        let bytes = quiver_store::sql_output::arrow_ipc(&batches)
            .map_err(|e| ApiError::internal(format!("encoding the result: {e}")))?;
        return Ok(([(header::CONTENT_TYPE, ARROW_STREAM)], bytes).into_response());
    }
    Ok(axum::Json(json_result(&batches)?).into_response())
}

/// The result as `{"columns": [...], "rows": [...]}`.
fn json_result(batches: &[RecordBatch]) -> ApiResult<Value> {
    let rows = quiver_store::sql_output::json_rows(batches)
        .map_err(|e| ApiError::internal(format!("encoding the result: {e}")))?;
    let columns: Vec<Value> = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({"columns": columns, "rows": rows}))
}
