//! The error answer of every endpoint: a status, a stable code and a sentence for a person,
//! as `{"error", "message"}` (docs/spine-protocol.md). Messages may quote client input, so
//! only the code is logged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cardgate_spine::wire::{ErrorBody, ErrorCode};

/// An error answer: status, code and a sentence for a person.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: ErrorCode,
    pub(super) message: String,
}

impl ApiError {
    /// An error with the status the protocol gives `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
        }
    }

    /// The code (tests and logs).
    #[cfg(test)]
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The sentence for a person.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A failure of the service itself (logged; the client is told to try again).
    pub(super) fn internal(what: &str) -> ApiError {
        tracing::error!("internal error: {what}");
        ApiError::new(
            ErrorCode::Internal,
            format!("The service failed ({what}); try again."),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The code only: messages may quote client input (which may hold a secret).
        tracing::debug!(code = %self.code, status = self.status.as_u16(), "answering with an error");
        (
            self.status,
            axum::Json(ErrorBody {
                error: self.code,
                message: self.message,
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_statuses_follow_the_codes() {
        assert_eq!(
            ApiError::new(ErrorCode::OwnCard, "x").status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            ApiError::new(ErrorCode::OwnCard, "x").code(),
            ErrorCode::OwnCard
        );
    }
}
