//! Routes of the metrics service.

use axum::Router;

use crate::AppState;

/// Registers this module's routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
}
