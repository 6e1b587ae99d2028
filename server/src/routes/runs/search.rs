//! What `runs/search` and `experiments/search` share on the wire: view types and `max_results`.
//! The grammar, evaluation and page tokens live in the store (`quiver_store::RunSearch`).

use quiver_store::ViewType;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::wire::Fields;

/// The view type in field `name`: `ACTIVE_ONLY` (default), `DELETED_ONLY`, `ALL`, or 1, 2, 3.
pub(crate) fn view_type(f: &Fields, name: &str) -> ApiResult<ViewType> {
    let Some(v) = f.raw(name) else {
        return Ok(ViewType::ActiveOnly);
    };
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(f.invalid(name, v)),
    };
    match text.as_str() {
        "ACTIVE_ONLY" | "1" => Ok(ViewType::ActiveOnly),
        "DELETED_ONLY" | "2" => Ok(ViewType::DeletedOnly),
        "ALL" | "3" => Ok(ViewType::All),
        _ => Err(f.invalid(name, v)),
    }
}

/// MLflow's error for a `max_results` out of range.
pub(crate) fn invalid_max_results(n: i64, why: &str) -> ApiError {
    ApiError::invalid(format!(
        "Invalid value {n} for parameter 'max_results' supplied. {why}"
    ))
}

/// A search's `max_results` (`default` when absent); negative values are refused here, the
/// upper limit by the store.
pub(crate) fn max_results(f: &Fields, default: i64) -> ApiResult<usize> {
    let n = f.opt_i64("max_results")?.unwrap_or(default);
    usize::try_from(n).map_err(|_| invalid_max_results(n, "It must be a positive integer"))
}
