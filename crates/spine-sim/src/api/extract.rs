//! Taking requests apart: the client certificate from the TLS handshake, the bearer token,
//! JSON bodies (size-limited, whatever the `Content-Type`) and path ids, each failure an
//! [`ApiError`] answer, and the middleware that refuses declared oversize bodies before
//! reading them.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cardgate_spine::wire::{ErrorCode, MAX_BODY_BYTES};
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;

use super::ApiError;

/// Longest id accepted in a path (session, request, TAC serial).
const MAX_PATH_ID: usize = 128;

/// The certificate the client presented in the TLS handshake, put into each request's
/// extensions by the accept loop (`None` on the server-authentication-only listener).
#[derive(Clone, Debug)]
pub(crate) struct PeerCertificate(pub Option<CertificateDer<'static>>);

/// A JSON body, read with the 64 KiB limit, parsed whatever the `Content-Type` (curl users
/// forget it), with every failure an [`ApiError`]. An empty body counts as `{}`.
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::new(
                    ErrorCode::MalformedRequest,
                    format!("The request body could not be read: {rejection}"),
                )
            }
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(ApiJson).map_err(|e| {
            ApiError::new(
                ErrorCode::MalformedRequest,
                format!("The request body is not the JSON this endpoint expects: {e}"),
            )
        })
    }
}

/// One path parameter, checked for length, with failures as [`ApiError`]s.
pub(crate) struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| {
                    ApiError::new(
                        ErrorCode::MalformedRequest,
                        format!("The path is not valid: {e}"),
                    )
                })?;
        if value.is_empty() || value.len() > MAX_PATH_ID {
            return Err(ApiError::new(
                ErrorCode::MalformedRequest,
                format!("A path id must be 1 to {MAX_PATH_ID} characters."),
            ));
        }
        Ok(ApiPath(value))
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
    )
}

/// Declared bodies above the limit but at most this large are read and thrown away before
/// the 413 goes out: a client still writing its body when the server closes would see a
/// broken pipe instead of the answer. Larger ones are refused without reading.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Refuses a declared body above the limit before parsing any of it; chunked bodies are
/// cut off by [`DefaultBodyLimit`] while being read.
pub(super) async fn refuse_large_bodies(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY_BYTES as u64 => {
            if n <= DRAIN_LIMIT as u64 {
                let _ = axum::body::to_bytes(request.into_body(), DRAIN_LIMIT).await;
            }
            let mut response = too_large().into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
        _ => next.run(request).await,
    }
}

pub(super) fn unauthorised() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorised,
        "No active session for this token; log in with your card.",
    )
}

/// The token of `Authorization: Bearer`, or the unauthorised answer.
pub(super) fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(unauthorised)?
        .to_str()
        .map_err(|_| unauthorised())?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(unauthorised)?
        .trim();
    if token.is_empty() {
        return Err(unauthorised());
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut headers = HeaderMap::new();
        assert!(bearer(&headers).is_err());
        headers.insert(
            AUTHORIZATION,
            "Basic abc".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(bearer(&headers).is_err());
        headers.insert(
            AUTHORIZATION,
            "Bearer abc".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(bearer(&headers).ok().as_deref(), Some("abc"));
    }
}
