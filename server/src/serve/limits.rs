//! Quiver's own limits on a request head, checked before routing so that an oversized request
//! line or header block is refused with MLflow's JSON error body. hyper's limits are set above
//! these (see [`super::io`] for what still reaches them).

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// Limits on a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HeadLimits {
    pub(super) max_request_target: usize,
    pub(super) max_header_bytes: usize,
    pub(super) max_headers: usize,
}

impl HeadLimits {
    /// `414` for a request target (path and query) over the limit, `431` for too many header
    /// fields or too many header bytes (names, values and `": \r\n"`), else the next service.
    pub(super) async fn check(self, req: Request, next: Next) -> Response {
        let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if target > self.max_request_target {
            return too_large(
                req,
                StatusCode::URI_TOO_LONG,
                format!(
                    "Request line too long: the request target has {target} bytes, at most {} \
                     are allowed",
                    self.max_request_target
                ),
            )
            .await;
        }
        let headers = req.headers();
        if headers.len() > self.max_headers {
            let n = headers.len();
            return too_large(
                req,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "Request header fields too large: {n} fields, at most {} are allowed",
                    self.max_headers
                ),
            )
            .await;
        }
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if bytes > self.max_header_bytes {
            return too_large(
                req,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "Request header fields too large: {bytes} bytes, at most {} are allowed",
                    self.max_header_bytes
                ),
            )
            .await;
        }
        next.run(req).await
    }
}

async fn too_large(req: Request, status: StatusCode, message: String) -> Response {
    crate::drain(req.into_body()).await;
    ApiError {
        status,
        code: "INVALID_PARAMETER_VALUE",
        message,
    }
    .into_response()
}
