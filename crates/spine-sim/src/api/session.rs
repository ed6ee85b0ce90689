//! Log-in and the session: mode A (challenge, then the card's CMS signature), mode B (the
//! card signs the TLS handshake), reading and ending a session, role selection, and token
//! introspection for the services behind the endpoint.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use cardgate_spine::wire::{
    ActivateResponse, AuditAnchor, Empty, ErrorCode, IntrospectRequest, IntrospectResponse,
    SelectRoleRequest, Session, ValidateRequest,
};

use crate::cms_verify::verify_challenge_signature;
use crate::state::{CHALLENGE_LIFETIME, SessionRecord, random_bytes, token_hash};

use super::extract::{ApiJson, ApiPath, PeerCertificate, unauthorised};
use super::{ApiError, AppResult, AppState, Shared};

pub(super) async fn auth_activate(
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

pub(super) async fn auth_validate(
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
    let checked = check_card(state, &certificate)?;
    state.open_session(&checked.uid, certificate, checked.not_after)
}

/// The card checks every log-in makes (chain to the card CA, validity, the current CRL, key
/// usage, the holder's UUID; the directory's card serial for the old-generation rule), shared
/// by both login modes and the OpenID Connect provider's sign-in.
pub(crate) fn check_card(
    state: &AppState,
    certificate: &[u8],
) -> AppResult<crate::authority::CheckedCard> {
    let uid_hint = x509_parser::parse_x509_certificate(certificate)
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
    state
        .authority
        .check(
            certificate,
            serial.as_deref(),
            time::OffsetDateTime::now_utc(),
        )
        .inspect_err(|e| tracing::info!(code = %e.code, uid = ?uid_hint, "card refused"))
}

pub(super) async fn mtls_login(
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

pub(super) async fn read_session(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(id): ApiPath,
) -> AppResult<axum::Json<Session>> {
    let session = own_session(&state, &headers, &id)?;
    Ok(axum::Json(state.session_view(&session)))
}

pub(super) async fn logout(
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

pub(super) async fn select_role(
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

/// Keeps the workstation's audit chain head handed in at this log-in (one JSON line in the
/// anchors file), so a trail rewritten on the workstation afterwards can be caught.
pub(super) async fn audit_anchor(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(id): ApiPath,
    ApiJson(anchor): ApiJson<AuditAnchor>,
) -> AppResult<StatusCode> {
    let session = own_session(&state, &headers, &id)?;
    let well_formed = anchor.hash.len() == 64
        && anchor
            .hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed || anchor.seq == 0 {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "An audit anchor is a sequence number from 1 and a SHA-256 in 64 lowercase hex digits.",
        ));
    }
    let line = serde_json::json!({
        "uid": session.uid,
        "session_id": id,
        "seq": anchor.seq,
        "hash": anchor.hash,
        "at": state.clock.wall().format(&time::format_description::well_known::Rfc3339).ok(),
    });
    if let Some(path) = &state.anchors {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| writeln!(f, "{line}"))
            .map_err(|e| {
                tracing::error!(path = %path.display(), error = %e, "cannot keep the anchor");
                ApiError::new(
                    ErrorCode::Internal,
                    "The audit anchor could not be kept; try again later.",
                )
            })?;
    }
    tracing::info!(uid = %session.uid, seq = anchor.seq, "audit anchor kept");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn introspect(
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
