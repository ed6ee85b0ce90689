//! The agent's view of the Spine-like endpoint: the calls a session needs (log in with the
//! card signing, hand in the audit chain head, select a role profile, log out), behind a small object-safe trait so the
//! core does not care whether mode A or mode B is configured.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cardgate_spine::wire::{AuditAnchor, Session};
use cardgate_spine::{CardSigner, SpineClient, SpineError};

use crate::config::LoginMode;

/// A boxed, sendable future (the trait must be object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the agent core needs from the endpoint.
pub trait Endpoint: Send + Sync + 'static {
    /// Logs in, the card signing through `signer` (its passcode already verified).
    fn login(&self, signer: Arc<dyn CardSigner>) -> BoxFuture<'_, Result<Session, SpineError>>;

    /// Selects (or switches) the session's role profile.
    fn select_role<'a>(
        &'a self,
        session: &'a Session,
        role_profile_id: &'a str,
    ) -> BoxFuture<'a, Result<Session, SpineError>>;

    /// Ends the session at the endpoint.
    fn logout<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), SpineError>>;

    /// Hands the endpoint the audit chain head at this log-in, to keep off the workstation
    /// (test doubles keep nothing).
    fn anchor_audit<'a>(
        &'a self,
        _session: &'a Session,
        _anchor: &'a AuditAnchor,
    ) -> BoxFuture<'a, Result<(), SpineError>> {
        Box::pin(async { Ok(()) })
    }

    /// The full client, for the staff tasks (unlock, renewal, TACs); `None` for endpoints
    /// that only log in (test doubles), which then refuse those tasks.
    fn spine_client(&self) -> Option<&SpineClient> {
        None
    }
}

/// The real endpoint through [`SpineClient`], in the configured login mode.
#[derive(Debug)]
pub struct SpineEndpoint {
    client: SpineClient,
    mode: LoginMode,
}

impl SpineEndpoint {
    /// An endpoint logging in with `mode`.
    pub fn new(client: SpineClient, mode: LoginMode) -> Self {
        SpineEndpoint { client, mode }
    }

    /// The client, for the calls the agent core does not make (the CRL at start).
    pub fn client(&self) -> &SpineClient {
        &self.client
    }
}

impl Endpoint for SpineEndpoint {
    fn login(&self, signer: Arc<dyn CardSigner>) -> BoxFuture<'_, Result<Session, SpineError>> {
        Box::pin(async move {
            match self.mode {
                LoginMode::A => self.client.login_with_signed_challenge(signer).await,
                LoginMode::B => self.client.login_with_client_certificate(signer).await,
            }
        })
    }

    fn select_role<'a>(
        &'a self,
        session: &'a Session,
        role_profile_id: &'a str,
    ) -> BoxFuture<'a, Result<Session, SpineError>> {
        Box::pin(self.client.select_role(session, role_profile_id))
    }

    fn logout<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), SpineError>> {
        Box::pin(self.client.logout(session))
    }

    fn anchor_audit<'a>(
        &'a self,
        session: &'a Session,
        anchor: &'a AuditAnchor,
    ) -> BoxFuture<'a, Result<(), SpineError>> {
        Box::pin(self.client.anchor_audit(session, anchor))
    }

    fn spine_client(&self) -> Option<&SpineClient> {
        Some(&self.client)
    }
}
