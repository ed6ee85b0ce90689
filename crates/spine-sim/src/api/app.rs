//! The state every handler shares, and the session rules on it: the bearer token to its
//! session after the idle rule, the selected role profile against the activity an endpoint
//! needs, opening a session for a checked card holder.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use cardgate_policy::Activity;
use cardgate_spine::wire::{ErrorCode, Secret, Session, paths};
use ring::rand::SystemRandom;

use crate::authority::CardAuthority;
use crate::state::{Clock, Directory, Inner, SessionRecord, random_bytes, random_id, token_hash};

use super::ApiError;
use super::extract::{bearer, unauthorised};

/// Shared state of the handlers.
pub(crate) struct AppState {
    pub directory: Directory,
    pub authority: Arc<CardAuthority>,
    pub clock: Arc<Clock>,
    pub inner: Mutex<Inner>,
    pub max_idle: Duration,
    pub outbox: PathBuf,
    pub anchors: Option<PathBuf>,
    pub rng: SystemRandom,
}

impl AppState {
    /// The state's lock (a poisoned lock is taken over: every update is one insert/remove).
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(guard) => guard,
            // A handler never panics while holding the lock; if one did, the maps are
            // still consistent (each update is a single insert/remove).
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A fresh random id with `prefix`.
    pub(crate) fn random_id(&self, prefix: &str) -> Result<String, ApiError> {
        random_id(&self.rng, prefix).ok_or_else(|| ApiError::internal("random generator"))
    }

    /// The session behind `Authorization: Bearer`, after the idle rule; counts as activity.
    pub(super) fn authorise(&self, headers: &HeaderMap) -> Result<SessionRecord, ApiError> {
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
    pub(super) fn authorise_activity(
        &self,
        headers: &HeaderMap,
        needed: &Activity,
    ) -> Result<SessionRecord, ApiError> {
        let needed = needed.as_str();
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
    pub(super) fn open_session(
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

    /// The session as the client sees it.
    pub(super) fn session_view(&self, record: &SessionRecord) -> Session {
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
