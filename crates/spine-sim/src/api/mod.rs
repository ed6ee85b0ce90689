//! The HTTP API of docs/spine-protocol.md. The plumbing lives here and beside it: the router
//! and its fallbacks (this file), the error answer (`error`), request extraction (the TLS
//! client certificate, bearer tokens, size-limited JSON bodies and path ids: `extract`) and
//! the shared state with its session rules (`app`). The handlers, one file per group:
//! `session` (both log-in modes, sessions, roles, introspection), `renewal` (CRL and
//! certificate renewal), `unlock` (self-service and sponsor unlock) and `tac`.
//!
//! Bad client input is always a 4xx with a reason; a handler never panics on it. Secrets
//! (tokens, unlock codes, one-time codes) are never logged: log lines carry uids, card
//! serials and error codes only.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use cardgate_spine::wire::{ErrorCode, MAX_BODY_BYTES, paths};

mod app;
mod error;
mod extract;
mod renewal;
mod session;
mod tac;
mod unlock;

pub(crate) use app::AppState;
pub(crate) use error::ApiError;
pub(crate) use extract::PeerCertificate;
use extract::refuse_large_bodies;
use renewal::{crl, renew};
pub(crate) use session::check_card;
use session::{
    audit_anchor, auth_activate, auth_validate, introspect, logout, mtls_login, read_session,
    select_role,
};
use tac::{tac_activate, tac_read, tac_return, tac_usage};
use unlock::{self_service_confirm, self_service_unlock, sponsor_unlock};

/// The router serving both listeners.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(paths::AUTH_ACTIVATE, post(auth_activate))
        .route(paths::AUTH_VALIDATE, post(auth_validate))
        .route(paths::SESSIONS, post(mtls_login))
        .route(paths::SESSION, get(read_session).delete(logout))
        .route(paths::SESSION_ROLE, put(select_role))
        .route(paths::SESSION_AUDIT_ANCHOR, put(audit_anchor))
        .route(paths::INTROSPECT, post(introspect))
        .route(paths::CRL, get(crl))
        .route(paths::RENEW, post(renew))
        .route(paths::SELF_SERVICE_UNLOCK, post(self_service_unlock))
        .route(paths::SELF_SERVICE_CONFIRM, post(self_service_confirm))
        .route(paths::SPONSOR_UNLOCK, post(sponsor_unlock))
        .route(paths::TAC, get(tac_read))
        .route(paths::TAC_ACTIVATE, post(tac_activate))
        .route(paths::TAC_USAGE, post(tac_usage))
        .route(paths::TAC_RETURN, post(tac_return))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_large_bodies))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: ErrorCode::MalformedRequest,
        message: "No such endpoint (see docs/spine-protocol.md).".into(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: ErrorCode::MalformedRequest,
        message: "This endpoint does not take that method.".into(),
    }
}

/// What a handler answers: its value, or an error answer.
type AppResult<T> = Result<T, ApiError>;
/// The shared state, as handlers take it.
type Shared = State<Arc<AppState>>;

/// Refused for old-generation cards (numbers beginning 01, 02 or 03): renewal and unlock.
fn old_generation(serial: &str) -> ApiError {
    ApiError::new(
        ErrorCode::OldGenerationCard,
        format!(
            "Card {serial} is an old-generation card (numbers beginning 01, 02 or 03): it \
             cannot be renewed or unlocked. Ask your RA for a new card."
        ),
    )
}

/// The card named by (uid, serial), which must belong to that uid.
fn card_for<'a>(
    state: &'a AppState,
    uid: &str,
    serial: &str,
) -> AppResult<&'a crate::config::CardConfig> {
    if !state.directory.users.contains_key(uid) {
        return Err(ApiError::new(
            ErrorCode::UnknownUser,
            format!("User {uid} is not registered with this service."),
        ));
    }
    match state.directory.cards.get(serial) {
        Some(card) if card.uid == uid => Ok(card),
        _ => Err(ApiError::new(
            ErrorCode::UnknownCard,
            format!("Card {serial} is not registered to user {uid}."),
        )),
    }
}
