//! The one place that maps store errors onto MLflow's error codes and HTTP statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quiver_store::ErrorCode;

/// An error as the REST API reports it: `{"error_code": ..., "message": ...}` with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// MLflow's error code name (`RESOURCE_DOES_NOT_EXIST` ...).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// `400 INVALID_PARAMETER_VALUE`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_PARAMETER_VALUE",
            message: message.into(),
        }
    }

    /// `404 RESOURCE_DOES_NOT_EXIST`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "RESOURCE_DOES_NOT_EXIST",
            message: message.into(),
        }
    }

    /// `404 ENDPOINT_NOT_FOUND`: a route Quiver does not serve.
    pub fn endpoint_not_found(method: &str, path: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "ENDPOINT_NOT_FOUND",
            message: format!("No endpoint {method} {path} in this server"),
        }
    }

    /// `500 INTERNAL_ERROR`.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR",
            message: message.into(),
        }
    }
}

impl From<quiver_store::Error> for ApiError {
    fn from(e: quiver_store::Error) -> Self {
        let code = e.code();
        let status = match code {
            ErrorCode::ResourceDoesNotExist => StatusCode::NOT_FOUND,
            ErrorCode::ResourceAlreadyExists | ErrorCode::InvalidParameterValue => {
                StatusCode::BAD_REQUEST
            }
            // MLflow answers INVALID_STATE with 500, which its client retries seven times with
            // backoff; it is a user error, so Quiver answers 400 with the same error code.
            ErrorCode::InvalidState => StatusCode::BAD_REQUEST,
            // A full disk: 507 Insufficient Storage, so clients tell it from a bug.
            ErrorCode::ResourceExhausted => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            // The log gets the whole error (with the paths of the server's files); the client a
            // message without them.
            tracing::error!(error = %e, "request failed");
        }
        ApiError {
            status,
            code: code.as_str(),
            message: e.public_message(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error_code": self.code, "message": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
