//! The API's errors: one stable JSON shape, `{"error": {"code": "...", "message": "..."}}`,
//! with a 4xx status for anything the caller can fix and 503 for an agent that cannot answer
//! now. Extractor rejections (a malformed body, a bad query) are mapped to the same shape.

use crate::control::Rejected;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// One line for a person.
    pub message: String,
}

/// The JSON body of every error.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code: bad_request, unprocessable, unauthorized, forbidden, not_found,
    /// method_not_allowed, conflict, payload_too_large, unsupported_media_type, timeout,
    /// too_many_requests, unavailable.
    pub code: String,
    /// What went wrong, in one line.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: bad input.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503: the agent cannot answer now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<Rejected> for ApiError {
    fn from(r: Rejected) -> Self {
        let message = r.to_string();
        match r {
            Rejected::Refused(_) => Self::bad_request(message),
            Rejected::Busy | Rejected::TooSoon(_) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
            }
            Rejected::TimedOut | Rejected::ShuttingDown | Rejected::Store(_) => {
                Self::unavailable(message)
            }
        }
    }
}

impl From<athena_storage::StoreError> for ApiError {
    fn from(e: athena_storage::StoreError) -> Self {
        Self::unavailable(format!(
            "the store cannot be read: {}",
            athena_sync::one_line(&e)
        ))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            _ => "bad_request",
        };
        // Any other rejection is the caller's input too: never a 5xx.
        let status = if status.is_client_error() {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, code, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;
