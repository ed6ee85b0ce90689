//! OAuth error answers (RFC 6749 §4.1.2.1, §5.2; RFC 6750 §3): JSON `{error,
//! error_description}` at the token, userinfo and sign-in endpoints; a redirect to the
//! client's registered redirect URI with `error`, `error_description` and `state`; or, when
//! the redirect URI cannot be trusted (unknown client, unregistered URI), an HTML page and
//! never a redirect. Descriptions may quote client input, so only the code is logged.

use axum::http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::pages;

/// An OAuth error as JSON.
#[derive(Debug)]
pub(crate) struct OAuthError {
    pub status: StatusCode,
    /// The OAuth `error` code (`invalid_grant`, `access_denied`, ...).
    pub error: &'static str,
    /// The sentence for `error_description`.
    pub description: String,
    /// Where the sign-in page should send the browser next (an error redirect), if anywhere.
    pub redirect: Option<String>,
}

impl OAuthError {
    /// A 400 with `error` and `description`.
    pub fn bad_request(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            redirect: None,
        }
    }

    /// `invalid_client` (401, RFC 6749 §5.2).
    pub fn invalid_client(description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            ..OAuthError::bad_request("invalid_client", description)
        }
    }

    /// `invalid_token` (401, RFC 6750 §3.1).
    pub fn invalid_token(description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            ..OAuthError::bad_request("invalid_token", description)
        }
    }

    /// `server_error` (500 is never sent for a client's mistake; this is the provider's own).
    pub fn server_error(what: &str) -> OAuthError {
        tracing::error!("OpenID Connect provider failure: {what}");
        OAuthError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            ..OAuthError::bad_request(
                "server_error",
                format!("The provider failed ({what}); try again."),
            )
        }
    }

    /// With an error redirect for the sign-in page.
    pub fn with_redirect(mut self, redirect: String) -> OAuthError {
        self.redirect = Some(redirect);
        self
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        tracing::info!(
            error = self.error,
            status = self.status.as_u16(),
            "OAuth error"
        );
        let mut body = serde_json::json!({
            "error": self.error,
            "error_description": self.description,
        });
        if let Some(redirect) = &self.redirect {
            body["redirect"] = serde_json::Value::String(redirect.clone());
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            let value = if self.error == "invalid_token" {
                "Bearer error=\"invalid_token\""
            } else {
                "Basic realm=\"spine-sim\""
            };
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(value));
        }
        response
    }
}

/// An authorization request that cannot be answered by redirect: an HTML page for the person
/// at the browser, with the OAuth code in `#error`'s `data-error`.
#[derive(Debug)]
pub(crate) struct ErrorPage {
    pub error: &'static str,
    pub description: String,
}

impl ErrorPage {
    /// A page for `error`.
    pub fn new(error: &'static str, description: impl Into<String>) -> ErrorPage {
        ErrorPage {
            error,
            description: description.into(),
        }
    }
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        tracing::info!(
            error = self.error,
            "authorization request refused with a page"
        );
        let mut response = (
            StatusCode::BAD_REQUEST,
            pages::error_page(self.error, &self.description),
        )
            .into_response();
        pages::harden(response.headers_mut());
        response
    }
}
