//! The HTTP API of docs/spine-protocol.md: the axum router, one handler per endpoint, the
//! body and path extractors that turn bad input into `{"error", "message"}` answers, and
//! the rules (idle timeout, role activities, unlock and TAC rules).
//!
//! Bad client input is always a 4xx with a reason; a handler never panics on it. Secrets
//! (tokens, unlock codes, one-time codes) are never logged: log lines carry uids, card
//! serials and error codes only.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use cardgate_spine::wire::{
    ActivateResponse, Empty, ErrorBody, ErrorCode, IntrospectRequest, IntrospectResponse,
    MAX_BODY_BYTES, OutboxMessage, RenewRequest, RenewResponse, Secret, SelectRoleRequest,
    SelfServiceUnlockConfirm, SelfServiceUnlockRequest, SelfServiceUnlockStarted, Session,
    SponsorUnlockRequest, TacAction, TacActivateRequest, TacEvent, TacRecord, TacState,
    TacUsageRequest, UnlockCodeResponse, ValidateRequest, activity, paths,
};
use ring::rand::SystemRandom;
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;

use crate::authority::CardAuthority;
use crate::cms_verify::verify_challenge_signature;
use crate::state::{
    CHALLENGE_LIFETIME, Clock, Directory, Inner, MAX_WRONG_CODES, SessionRecord,
    UNLOCK_REQUEST_LIFETIME, UnlockRequest, constant_time_eq, random_bytes, random_id, token_hash,
};

/// Days of validity above which renewal is refused (`renewal_not_due`).
const RENEWAL_WINDOW_DAYS: i64 = 90;
/// Longest id accepted in a path (session, request, TAC serial).
const MAX_PATH_ID: usize = 128;

/// An error answer: status, code and a sentence for a person.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
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

    fn internal(what: &str) -> ApiError {
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
async fn refuse_large_bodies(request: Request, next: Next) -> Response {
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

/// Shared state of the handlers.
pub(crate) struct AppState {
    pub directory: Directory,
    pub authority: Arc<CardAuthority>,
    pub clock: Arc<Clock>,
    pub inner: Mutex<Inner>,
    pub max_idle: Duration,
    pub outbox: PathBuf,
    pub rng: SystemRandom,
}

impl AppState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(guard) => guard,
            // A handler never panics while holding the lock; if one did, the maps are
            // still consistent (each update is a single insert/remove).
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn random_id(&self, prefix: &str) -> Result<String, ApiError> {
        random_id(&self.rng, prefix).ok_or_else(|| ApiError::internal("random generator"))
    }

    /// The session behind `Authorization: Bearer`, after the idle rule; counts as activity.
    fn authorise(&self, headers: &HeaderMap) -> Result<SessionRecord, ApiError> {
        let token = bearer(headers)?;
        let now = self.clock.now();
        let mut inner = self.lock();
        let id = inner
            .tokens
            .get(&token_hash(&token))
            .cloned()
            .ok_or_else(unauthorised)?;
        let session = inner.sessions.get_mut(&id).ok_or_else(unauthorised)?;
        if session.expired || now.saturating_duration_since(session.last_activity) > self.max_idle {
            session.expired = true;
            return Err(ApiError::new(
                ErrorCode::SessionExpired,
                "The session ended after a period of inactivity; log in again with your card.",
            ));
        }
        session.last_activity = now;
        Ok(session.clone())
    }

    /// [`AppState::authorise`] and the selected role profile must permit `needed`.
    fn authorise_activity(
        &self,
        headers: &HeaderMap,
        needed: &str,
    ) -> Result<SessionRecord, ApiError> {
        let session = self.authorise(headers)?;
        match session.selected_profile() {
            Some(profile) if profile.activities.iter().any(|a| a == needed) => Ok(session),
            Some(profile) => Err(ApiError::new(
                ErrorCode::ForbiddenActivity,
                format!(
                    "The role profile {} ({} at {}) does not permit {needed}.",
                    profile.id, profile.job_role, profile.ods_code
                ),
            )),
            None => Err(ApiError::new(
                ErrorCode::ForbiddenActivity,
                format!("Select a role profile that permits {needed} first."),
            )),
        }
    }

    /// Opens a session for a checked card holder.
    fn open_session(
        &self,
        uid: &str,
        certificate_der: Vec<u8>,
        certificate_not_after: time::OffsetDateTime,
    ) -> Result<Session, ApiError> {
        let user = self.directory.users.get(uid).ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownUser,
                format!("User {uid} is not registered with this service; contact your RA."),
            )
        })?;
        let token = random_bytes(&self.rng, 32)
            .map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
            .ok_or_else(|| ApiError::internal("random generator"))?;
        let record = SessionRecord {
            session_id: self.random_id("s-")?,
            token: Secret::new(token),
            uid: uid.to_owned(),
            name: user.name.clone(),
            certificate_der,
            certificate_not_after,
            role_profiles: user.role_profiles.iter().map(Into::into).collect(),
            selected: None,
            passcode_expires_at: user.passcode_expires_at,
            last_activity: self.clock.now(),
            expired: false,
        };
        let session = self.session_view(&record);
        let mut inner = self.lock();
        inner.purge_sessions(self.clock.now(), self.max_idle);
        inner
            .tokens
            .insert(token_hash(record.token.expose()), record.session_id.clone());
        inner.sessions.insert(record.session_id.clone(), record);
        tracing::info!(uid, session = %session.session_id, "session opened");
        Ok(session)
    }

    fn session_view(&self, record: &SessionRecord) -> Session {
        Session {
            session_id: record.session_id.clone(),
            token: record.token.clone(),
            uid: record.uid.clone(),
            name: record.name.clone(),
            max_idle_time: self.max_idle.as_secs(),
            logout_url: paths::session_path(&record.session_id),
            certificate_not_after: record.certificate_not_after,
            role_profiles: record.role_profiles.clone(),
            selected_role_profile: record.selected.clone(),
            passcode_expires_at: record.passcode_expires_at,
        }
    }
}

fn unauthorised() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorised,
        "No active session for this token; log in with your card.",
    )
}

fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
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

/// The router serving both listeners.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(paths::AUTH_ACTIVATE, post(auth_activate))
        .route(paths::AUTH_VALIDATE, post(auth_validate))
        .route(paths::SESSIONS, post(mtls_login))
        .route(paths::SESSION, get(read_session).delete(logout))
        .route(paths::SESSION_ROLE, put(select_role))
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

type AppResult<T> = Result<T, ApiError>;
type Shared = State<Arc<AppState>>;

async fn auth_activate(
    State(state): Shared,
    ApiJson(_): ApiJson<Empty>,
) -> AppResult<axum::Json<ActivateResponse>> {
    let challenge_id = state.random_id("c-")?;
    let challenge =
        random_bytes(&state.rng, 32).ok_or_else(|| ApiError::internal("random generator"))?;
    let now = state.clock.now();
    state.lock().add_challenge(
        challenge_id.clone(),
        challenge.clone(),
        now + CHALLENGE_LIFETIME,
        now,
    );
    Ok(axum::Json(ActivateResponse {
        challenge_id,
        challenge,
        expires_at: state.clock.wall() + CHALLENGE_LIFETIME,
    }))
}

async fn auth_validate(
    State(state): Shared,
    ApiJson(request): ApiJson<ValidateRequest>,
) -> AppResult<(StatusCode, axum::Json<Session>)> {
    // Taken out whatever happens next: a challenge is good for one attempt.
    let taken = state.lock().challenges.remove(&request.challenge_id);
    let (challenge, expires) = taken.ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownChallenge,
            "This challenge was never issued or was already used; ask for a new one.",
        )
    })?;
    if state.clock.now() > expires {
        return Err(ApiError::new(
            ErrorCode::ChallengeExpired,
            "The challenge is older than 60 seconds; ask for a new one.",
        ));
    }
    let certificate = verify_challenge_signature(&request.signed_data, &challenge)?;
    let session = login_with_certificate(&state, certificate)?;
    Ok((StatusCode::CREATED, axum::Json(session)))
}

/// The card checks and the session, shared by both login modes.
fn login_with_certificate(state: &AppState, certificate: Vec<u8>) -> AppResult<Session> {
    let uid_hint = x509_parser::parse_x509_certificate(&certificate)
        .ok()
        .and_then(|(_, c)| {
            c.subject()
                .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
                .next()
                .and_then(|a| a.as_str().ok().map(str::to_owned))
        });
    let serial = uid_hint
        .as_deref()
        .and_then(|uid| state.directory.card_of(uid))
        .map(|c| c.serial.clone());
    let checked = state
        .authority
        .check(
            &certificate,
            serial.as_deref(),
            time::OffsetDateTime::now_utc(),
        )
        .inspect_err(|e| tracing::info!(code = %e.code, uid = ?uid_hint, "card refused"))?;
    state.open_session(&checked.uid, certificate, checked.not_after)
}

async fn mtls_login(
    State(state): Shared,
    axum::Extension(peer): axum::Extension<PeerCertificate>,
    ApiJson(_): ApiJson<Empty>,
) -> AppResult<(StatusCode, axum::Json<Session>)> {
    let certificate = peer.0.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NoClientCertificate,
            "No client certificate: mode B login is on the mutual-TLS listener, with the card.",
        )
    })?;
    let session = login_with_certificate(&state, certificate.to_vec())?;
    Ok((StatusCode::CREATED, axum::Json(session)))
}

/// The session named in the path, which must be the bearer's own.
fn own_session(state: &AppState, headers: &HeaderMap, id: &str) -> AppResult<SessionRecord> {
    let session = state.authorise(headers)?;
    if session.session_id != id {
        return Err(ApiError::new(
            ErrorCode::Unauthorised,
            "This token does not belong to that session.",
        ));
    }
    Ok(session)
}

async fn read_session(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(id): ApiPath,
) -> AppResult<axum::Json<Session>> {
    let session = own_session(&state, &headers, &id)?;
    Ok(axum::Json(state.session_view(&session)))
}

async fn logout(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(id): ApiPath,
) -> AppResult<StatusCode> {
    own_session(&state, &headers, &id)?;
    if let Some(record) = state.lock().remove_session(&id) {
        tracing::info!(uid = %record.uid, session = %id, "logged out");
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn select_role(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(id): ApiPath,
    ApiJson(request): ApiJson<SelectRoleRequest>,
) -> AppResult<axum::Json<Session>> {
    let session = own_session(&state, &headers, &id)?;
    if !session
        .role_profiles
        .iter()
        .any(|p| p.id == request.role_profile_id)
    {
        return Err(ApiError::new(
            ErrorCode::UnknownRoleProfile,
            format!(
                "{:?} is not one of your role profiles.",
                request.role_profile_id
            ),
        ));
    }
    let mut inner = state.lock();
    let record = inner.sessions.get_mut(&id).ok_or_else(unauthorised)?;
    record.selected = Some(request.role_profile_id.clone());
    tracing::info!(uid = %record.uid, role_profile = %request.role_profile_id, "role selected");
    Ok(axum::Json(state.session_view(record)))
}

async fn introspect(
    State(state): Shared,
    ApiJson(request): ApiJson<IntrospectRequest>,
) -> axum::Json<IntrospectResponse> {
    let now = state.clock.now();
    let mut inner = state.lock();
    let Some(id) = inner
        .tokens
        .get(&token_hash(request.token.expose()))
        .cloned()
    else {
        return axum::Json(IntrospectResponse::Inactive);
    };
    let Some(session) = inner.sessions.get_mut(&id) else {
        return axum::Json(IntrospectResponse::Inactive);
    };
    let idle = now.saturating_duration_since(session.last_activity);
    if session.expired || idle > state.max_idle {
        session.expired = true;
        return axum::Json(IntrospectResponse::Inactive);
    }
    let profile = session.selected_profile();
    axum::Json(IntrospectResponse::Active {
        uid: session.uid.clone(),
        role_profile_id: profile.map(|p| p.id.clone()),
        ods_code: profile.map(|p| p.ods_code.clone()),
        idle_expires_at: state.clock.wall() + (state.max_idle - idle),
    })
}

async fn crl(State(state): Shared) -> Response {
    let der = state.authority.crl_der();
    (
        [(CONTENT_TYPE, "application/pkix-crl")],
        Bytes::from(der.as_ref().clone()),
    )
        .into_response()
}

async fn renew(
    State(state): Shared,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RenewRequest>,
) -> AppResult<axum::Json<RenewResponse>> {
    use x509_parser::prelude::FromDer as _;
    let session = state.authorise(&headers)?;
    if let Some(card) = state.directory.card_of(&session.uid)
        && cardgate_certs::is_old_generation(&card.serial)
    {
        return Err(old_generation(&card.serial));
    }
    let now = time::OffsetDateTime::now_utc();
    if session.certificate_not_after <= now {
        return Err(ApiError::new(
            ErrorCode::CertificateExpired,
            "Your certificate has expired: it cannot be renewed online. See your RA in person.",
        ));
    }
    let days_left = (session.certificate_not_after - now).whole_days();
    if days_left > RENEWAL_WINDOW_DAYS {
        return Err(ApiError::new(
            ErrorCode::RenewalNotDue,
            format!(
                "Your certificate is valid for {days_left} more days; renewal opens {RENEWAL_WINDOW_DAYS} days before expiry."
            ),
        ));
    }
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&request.csr)
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::MalformedRequest,
                    format!("csr is not a PKCS#10 request: {e}"),
                )
            })?;
    if !rest.is_empty() {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "csr has trailing bytes after the PKCS#10 request.",
        ));
    }
    csr.verify_signature().map_err(|_| {
        ApiError::new(
            ErrorCode::BadSignature,
            "The CSR is not signed by the key it carries.",
        )
    })?;
    let named = csr
        .certification_request_info
        .subject
        .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
        .next()
        .and_then(|a| a.as_str().ok());
    if named != Some(session.uid.as_str()) {
        return Err(ApiError::new(
            ErrorCode::ForbiddenActivity,
            "The CSR must name you (your user id as the subject serialNumber): you can only renew your own certificate.",
        ));
    }
    let spki = csr.certification_request_info.subject_pki.raw;
    let old_spki = x509_parser::parse_x509_certificate(&session.certificate_der)
        .map(|(_, c)| c.public_key().raw.to_vec())
        .map_err(|_| ApiError::internal("session certificate"))?;
    if spki == old_spki.as_slice() {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "The CSR carries the current key: renewal needs a new key generated on the card.",
        ));
    }
    let certificate = state
        .authority
        .issue_renewal(&session.certificate_der, spki)?;
    tracing::info!(uid = %session.uid, "certificate renewed");
    Ok(axum::Json(RenewResponse { certificate }))
}

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

/// `asha.patel@nhs.example` → `a***@nhs.example`; `07700900123` → `*******0123`.
fn mask_contact(contact: &str) -> String {
    match contact.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => {
            let chars: Vec<char> = contact.chars().collect();
            let keep = chars.len().saturating_sub(4);
            chars
                .iter()
                .enumerate()
                .map(|(i, c)| if i < keep { '*' } else { *c })
                .collect()
        }
    }
}

async fn self_service_unlock(
    State(state): Shared,
    ApiJson(request): ApiJson<SelfServiceUnlockRequest>,
) -> AppResult<(StatusCode, axum::Json<SelfServiceUnlockStarted>)> {
    let card = card_for(&state, &request.uid, &request.card_serial)?;
    if cardgate_certs::is_old_generation(&card.serial) {
        return Err(old_generation(&card.serial));
    }
    let user = state
        .directory
        .users
        .get(&request.uid)
        .ok_or_else(|| ApiError::internal("directory"))?;
    let contact = user
        .email
        .as_deref()
        .or(user.mobile.as_deref())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NoRegisteredContact,
                "No email or mobile number is registered for self-service unlock: ask your \
                 Sponsor or Local Smartcard Administrator, or your RA.",
            )
        })?;
    let number = random_bytes(&state.rng, 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % 1_000_000)
        .ok_or_else(|| ApiError::internal("random generator"))?;
    let code = Secret::new(format!("{number:06}"));
    let request_id = state.random_id("u-")?;
    let message = OutboxMessage {
        to: contact.to_owned(),
        uid: request.uid.clone(),
        one_time_code: code.clone(),
        at: state.clock.wall(),
    };
    append_outbox(&state.outbox, &message)?;
    let now = state.clock.now();
    state.lock().add_unlock_request(
        request_id.clone(),
        UnlockRequest {
            card_serial: card.serial.clone(),
            code,
            wrong: 0,
            expires: now + UNLOCK_REQUEST_LIFETIME,
        },
        now,
    );
    tracing::info!(uid = %request.uid, card = %card.serial, "self-service unlock: one-time code sent");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(SelfServiceUnlockStarted {
            request_id,
            sent_to: mask_contact(contact),
        }),
    ))
}

fn append_outbox(path: &std::path::Path, message: &OutboxMessage) -> AppResult<()> {
    let mut line = serde_json::to_vec(message).map_err(|_| ApiError::internal("outbox line"))?;
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(&line))
        .map_err(|e| {
            tracing::error!(path = %path.display(), error = %e, "cannot write the outbox");
            ApiError::new(
                ErrorCode::Internal,
                "The one-time code could not be sent; try again later.",
            )
        })
}

async fn self_service_confirm(
    State(state): Shared,
    ApiPath(request_id): ApiPath,
    ApiJson(confirm): ApiJson<SelfServiceUnlockConfirm>,
) -> AppResult<axum::Json<UnlockCodeResponse>> {
    let now = state.clock.now();
    let serial = {
        let mut inner = state.lock();
        let no_request = || {
            ApiError::new(
                ErrorCode::WrongOneTimeCode,
                "No such unlock request (it expired or was voided after three wrong codes); \
                 start again.",
            )
        };
        let request = inner
            .unlock_requests
            .get_mut(&request_id)
            .ok_or_else(no_request)?;
        if now > request.expires {
            inner.unlock_requests.remove(&request_id);
            return Err(no_request());
        }
        if !constant_time_eq(
            confirm.one_time_code.expose().as_bytes(),
            request.code.expose().as_bytes(),
        ) {
            request.wrong += 1;
            let left = MAX_WRONG_CODES.saturating_sub(request.wrong);
            if left == 0 {
                inner.unlock_requests.remove(&request_id);
                return Err(ApiError::new(
                    ErrorCode::WrongOneTimeCode,
                    "Wrong code, three times: this request is void; start again.",
                ));
            }
            return Err(ApiError::new(
                ErrorCode::WrongOneTimeCode,
                format!("Wrong code; {left} tries left."),
            ));
        }
        let request = inner
            .unlock_requests
            .remove(&request_id)
            .ok_or_else(no_request)?;
        request.card_serial
    };
    let card = state
        .directory
        .cards
        .get(&serial)
        .ok_or_else(|| ApiError::internal("directory"))?;
    tracing::info!(uid = %card.uid, card = %serial, "self-service unlock: unlock code released");
    Ok(axum::Json(UnlockCodeResponse {
        unlock_code: card.unlock_code.clone(),
    }))
}

async fn sponsor_unlock(
    State(state): Shared,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SponsorUnlockRequest>,
) -> AppResult<axum::Json<UnlockCodeResponse>> {
    let session = state.authorise_activity(&headers, activity::ADMIN_UNLOCK)?;
    let own_card_error = || {
        ApiError::new(
            ErrorCode::OwnCard,
            "You cannot unlock your own card: ask another Sponsor or LSA, or use self-service \
             unlock.",
        )
    };
    if request.uid == session.uid {
        return Err(own_card_error());
    }
    if state
        .directory
        .cards
        .get(&request.card_serial)
        .is_some_and(|c| c.uid == session.uid)
    {
        return Err(own_card_error());
    }
    let card = card_for(&state, &request.uid, &request.card_serial)?;
    if cardgate_certs::is_old_generation(&card.serial) {
        return Err(old_generation(&card.serial));
    }
    tracing::info!(
        sponsor = %session.uid,
        uid = %card.uid,
        card = %card.serial,
        "sponsor unlock: unlock code released"
    );
    Ok(axum::Json(UnlockCodeResponse {
        unlock_code: card.unlock_code.clone(),
    }))
}

fn check_tac_serial(serial: &str) -> AppResult<()> {
    if serial.len() > 20 || !serial.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "A TAC serial is 1 to 20 digits, as printed on the card.",
        ));
    }
    Ok(())
}

fn blank_tac(serial: &str) -> TacRecord {
    TacRecord {
        tac_serial: serial.to_owned(),
        state: TacState::Blank,
        holder_uid: None,
        custodian: None,
        usage: Vec::new(),
        history: Vec::new(),
    }
}

async fn tac_read(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(serial): ApiPath,
) -> AppResult<axum::Json<TacRecord>> {
    state.authorise_activity(&headers, activity::ADMIN_TAC)?;
    check_tac_serial(&serial)?;
    let record = state
        .lock()
        .tacs
        .get(&serial)
        .cloned()
        .unwrap_or_else(|| blank_tac(&serial));
    Ok(axum::Json(record))
}

async fn tac_activate(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(serial): ApiPath,
    ApiJson(request): ApiJson<TacActivateRequest>,
) -> AppResult<axum::Json<TacRecord>> {
    let session = state.authorise_activity(&headers, activity::ADMIN_TAC)?;
    check_tac_serial(&serial)?;
    if !state.directory.users.contains_key(&request.holder_uid) {
        return Err(ApiError::new(
            ErrorCode::UnknownUser,
            format!(
                "User {} is not registered: a TAC is activated for a registered team member.",
                request.holder_uid
            ),
        ));
    }
    if request.custodian.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "Name the custodian who keeps the TAC and its register.",
        ));
    }
    let at = state.clock.wall();
    let mut inner = state.lock();
    let record = inner
        .tacs
        .entry(serial.clone())
        .or_insert_with(|| blank_tac(&serial));
    if record.state == TacState::Active {
        return Err(ApiError::new(
            ErrorCode::TacInUse,
            format!(
                "TAC {serial} is already active for {}; return it to blank first.",
                record.holder_uid.as_deref().unwrap_or("someone")
            ),
        ));
    }
    record.state = TacState::Active;
    record.holder_uid = Some(request.holder_uid.clone());
    record.custodian = Some(request.custodian.clone());
    record.history.push(TacEvent {
        at,
        action: TacAction::Activated,
        by: session.uid.clone(),
        holder_uid: Some(request.holder_uid.clone()),
    });
    tracing::info!(tac = %serial, holder = %request.holder_uid, sponsor = %session.uid, "TAC activated");
    Ok(axum::Json(record.clone()))
}

async fn tac_usage(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(serial): ApiPath,
    ApiJson(usage): ApiJson<TacUsageRequest>,
) -> AppResult<axum::Json<TacRecord>> {
    let session = state.authorise_activity(&headers, activity::ADMIN_TAC)?;
    check_tac_serial(&serial)?;
    if usage.until < usage.from {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "`until` is before `from`.",
        ));
    }
    if usage.used_by.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "Say who used the TAC (`used_by`).",
        ));
    }
    let at = state.clock.wall();
    let mut inner = state.lock();
    let record = inner
        .tacs
        .get_mut(&serial)
        .filter(|r| r.state == TacState::Active)
        .ok_or_else(|| tac_not_active(&serial))?;
    record.usage.push(usage);
    record.history.push(TacEvent {
        at,
        action: TacAction::UsageRecorded,
        by: session.uid.clone(),
        holder_uid: record.holder_uid.clone(),
    });
    Ok(axum::Json(record.clone()))
}

fn tac_not_active(serial: &str) -> ApiError {
    ApiError::new(
        ErrorCode::TacNotActive,
        format!("TAC {serial} is blank: activate it first."),
    )
}

async fn tac_return(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(serial): ApiPath,
) -> AppResult<axum::Json<TacRecord>> {
    let session = state.authorise_activity(&headers, activity::ADMIN_TAC)?;
    check_tac_serial(&serial)?;
    let at = state.clock.wall();
    let mut inner = state.lock();
    let record = inner
        .tacs
        .get_mut(&serial)
        .filter(|r| r.state == TacState::Active)
        .ok_or_else(|| tac_not_active(&serial))?;
    let holder = record.holder_uid.take();
    record.state = TacState::Blank;
    record.custodian = None;
    record.history.push(TacEvent {
        at,
        action: TacAction::Returned,
        by: session.uid.clone(),
        holder_uid: holder,
    });
    tracing::info!(tac = %serial, sponsor = %session.uid, "TAC returned to blank");
    Ok(axum::Json(record.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_are_masked() {
        assert_eq!(mask_contact("asha.patel@nhs.example"), "a***@nhs.example");
        assert_eq!(mask_contact("07700900123"), "*******0123");
        assert_eq!(mask_contact("12"), "12");
    }

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
