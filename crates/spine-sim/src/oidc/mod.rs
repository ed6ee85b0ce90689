//! The CIS2-like OpenID Connect provider (docs/spine-protocol.md, "Version 2"): discovery,
//! JWKS, the authorization endpoint (authorization code flow only, PKCE S256 only), the
//! sign-in page on which the card signs the provider's challenge through the browser bridge
//! and the holder picks a role, the token endpoint and userinfo. It serves its own listener,
//! with server authentication only, so a browser is never asked for a certificate.
//!
//! - `flow`: the sign-ins, codes and tokens and their rules (no HTTP).
//! - `endpoints`: the handlers.
//! - `jose`: the signing key, the JWKS, ID tokens (`jsonwebtoken`, ES256).
//! - `error`: OAuth error answers, the error page.
//! - `pages`: the HTML and the scripts served to the browser.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cardgate_webauth::{OriginRules, WebOrigin};

use crate::api::AppState;
use crate::config::{OidcClientConfig, OidcConfig};
use crate::error::SimError;

mod endpoints;
mod error;
mod flow;
mod jose;
mod pages;

pub use jose::write_signing_key;

use error::OAuthError;
use flow::Flows;
use jose::SigningKey;

/// The largest request body the provider reads: a sign-in token (at most 16 KiB) with room
/// to spare; token requests are far smaller.
pub(crate) const MAX_OIDC_BODY_BYTES: usize = 32 * 1024;

/// The `acr` of a smartcard sign-in (CIS2's name for AAL3 with an NHS smartcard).
pub const ACR_SMARTCARD: &str = "AAL3_CIS2_SMARTCARD";
/// The `amr` of a smartcard sign-in.
pub const AMR_SMARTCARD: &str = "N3_SMARTCARD";
/// The `acr_values` a smartcard sign-in satisfies; a request for none of them is refused.
pub const ACR_SATISFIED: [&str; 4] = [
    ACR_SMARTCARD,
    "AAL3_N3_SMARTCARD",
    "AAL3_ANY",
    "AAL2_OR_AAL3_ANY",
];

/// The provider's state: the shared sim state (directory, card CA, clock), its own
/// configuration and its sign-ins.
pub(crate) struct Provider {
    app: Arc<AppState>,
    issuer: String,
    origin: WebOrigin,
    clients: HashMap<String, OidcClientConfig>,
    key: SigningKey,
    token_lifetime: Duration,
    flows: Mutex<Flows>,
}

impl Provider {
    /// The provider for `config`, its issuer (and origin) `issuer`.
    pub fn new(
        app: Arc<AppState>,
        config: &OidcConfig,
        issuer: String,
    ) -> Result<Provider, SimError> {
        let origin = WebOrigin::parse(&issuer, OriginRules::default()).map_err(|e| {
            SimError::ConfigInvalid {
                path: Default::default(),
                reason: format!("oidc.issuer: {e}"),
            }
        })?;
        let token_lifetime = Duration::from_secs(config.token_lifetime);
        Ok(Provider {
            app,
            issuer: origin.as_str().to_owned(),
            origin,
            clients: config
                .clients
                .iter()
                .map(|c| (c.client_id.clone(), c.clone()))
                .collect(),
            key: SigningKey::load(&config.signing_key)?,
            token_lifetime,
            flows: Mutex::new(Flows::new(token_lifetime)),
        })
    }

    /// The issuer URL (`https://host:port`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn flows(&self) -> MutexGuard<'_, Flows> {
        match self.flows.lock() {
            Ok(guard) => guard,
            // Each update is one map operation: the maps stay consistent.
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Checks that the signing key in `config` loads (before any listener is bound).
pub(crate) fn check_signing_key(config: &OidcConfig) -> Result<(), SimError> {
    SigningKey::load(&config.signing_key).map(|_| ())
}

/// The provider's routes.
pub(crate) fn router(provider: Arc<Provider>) -> Router {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(endpoints::discovery),
        )
        .route("/jwks", get(endpoints::jwks))
        .route("/authorize", get(endpoints::authorize))
        .route("/signin/{request}", post(endpoints::signin))
        .route("/signin/{request}/role", post(endpoints::choose_role))
        .route("/token", post(endpoints::token))
        .route(
            "/userinfo",
            get(endpoints::userinfo).post(endpoints::userinfo),
        )
        .route("/cardgate.js", get(endpoints::cardgate_js))
        .route("/signin.js", get(endpoints::signin_js))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_OIDC_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_large_bodies))
        .with_state(provider)
}

async fn not_found() -> OAuthError {
    OAuthError {
        status: StatusCode::NOT_FOUND,
        ..OAuthError::bad_request(
            "invalid_request",
            "No such endpoint (see /.well-known/openid-configuration).",
        )
    }
}

async fn method_not_allowed() -> OAuthError {
    OAuthError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        ..OAuthError::bad_request(
            "invalid_request",
            "This endpoint does not take that method.",
        )
    }
}

fn too_large() -> OAuthError {
    OAuthError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        ..OAuthError::bad_request(
            "invalid_request",
            format!("The request body is larger than {MAX_OIDC_BODY_BYTES} bytes."),
        )
    }
}

/// Refuses a declared body above the limit before reading it (chunked ones are cut off by
/// the body limit while read).
async fn refuse_large_bodies(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_OIDC_BODY_BYTES as u64 => {
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
