//! The browser sign-in in the core (`org.cardgate.Web1`, docs/web.md): which web origins may
//! use the card (`[web]` in cardgated.toml), the challenge nonces already seen, and the
//! sign-in itself: the passcode verified on the card (the three-attempt policy of any log-in),
//! the agent's ordinary session started if none is running for this card, and the card's
//! authentication key (slot 9A) signing `SHA-256(origin) ‖ SHA-256(nonce)`
//! (`cardgate_webauth`, the one definition of the token).
//!
//! Everything a page could get wrong is refused here before the holder is asked or the card
//! touched: the origin's shape, HTTPS, the allow-list, the nonce's shape, a nonce seen before.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use cardgate_audit::{AuditEvent, CallerIdentity};
use cardgate_piv::{KeyAlgorithm, Sha256Digest, SignInput};
use cardgate_spine::{CardSigner as _, SpineError};
use cardgate_webauth::{
    AuthToken, ChallengeNonce, NONCE_LIFETIME_SECS, SignatureAlgorithm, WebAuthError, WebOrigin,
    digest_to_sign,
};
use tokio::time::Instant;

use super::session::{PasscodeEntry, SIGN_TIMEOUT};
use super::{Agent, lock, printable};
use crate::error::CoreError;

/// How many nonces the agent remembers at most. Each one took an allow-listed page and a
/// dialog the holder saw, so this bounds memory, not a flood; past it the oldest goes first
/// (the identity provider takes each nonce once as well).
pub(super) const MAX_SEEN_NONCES: usize = 1024;

/// How long a nonce is remembered: as long as a provider honours one.
pub(super) const NONCE_MEMORY: Duration = Duration::from_secs(NONCE_LIFETIME_SECS);

/// What the token says made it.
pub const APP_VERSION: &str = concat!("cardgate/", env!("CARGO_PKG_VERSION"));

/// The nonces seen in the last [`NONCE_MEMORY`], at most [`MAX_SEEN_NONCES`], oldest first.
#[derive(Debug, Default)]
pub(super) struct SeenNonces {
    order: VecDeque<(Instant, String)>,
    seen: HashMap<String, Instant>,
}

impl SeenNonces {
    /// Takes `nonce` at `now`: `false` if it was seen within [`NONCE_MEMORY`].
    pub(super) fn take(&mut self, nonce: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front()
            && now.duration_since(*at) >= NONCE_MEMORY
        {
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(nonce) {
            return false;
        }
        if self.order.len() >= MAX_SEEN_NONCES
            && let Some((_, old)) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back((now, nonce.to_owned()));
        self.seen.insert(nonce.to_owned(), now);
        true
    }
}

/// The core's names for the contract's refusals of an origin or a nonce.
fn web_refusal(error: WebAuthError) -> CoreError {
    match error {
        e @ WebAuthError::NotHttps { .. } => CoreError::OriginNotHttps(e.to_string()),
        e @ WebAuthError::NotAnOrigin { .. } => CoreError::OriginNotAllowed(e.to_string()),
        e @ WebAuthError::NonceMalformed { .. } => CoreError::NonceMalformed(e.to_string()),
        e => CoreError::Internal(e.to_string()),
    }
}

impl Agent {
    /// The page's origin, if it may use the card here: a web origin under `[web]
    /// allow_http_loopback`, and on `[web] allowed_origins` (empty: web sign-in is off).
    pub fn web_origin(&self, given: &str) -> Result<WebOrigin, CoreError> {
        let web = &self.shared.config.web;
        let origin = WebOrigin::parse(given, web.rules()).map_err(web_refusal)?;
        if web.allowed_origins.is_empty() {
            return Err(CoreError::OriginNotAllowed(format!(
                "Web sign-in is off on this workstation: {origin} is not allowed to use the \
                 smartcard (IT support adds it to [web] allowed_origins in cardgated.toml)."
            )));
        }
        if !web.allowed().contains(&origin) {
            return Err(CoreError::OriginNotAllowed(format!(
                "{origin} is not allowed to use the smartcard on this workstation (IT support \
                 adds it to [web] allowed_origins in cardgated.toml)."
            )));
        }
        Ok(origin)
    }

    /// The identity provider's nonce, if it has the shape and was not seen before. Taken
    /// once, whatever becomes of this request: after any refusal the page asks its provider
    /// for a fresh challenge.
    pub fn take_nonce(&self, given: &str) -> Result<ChallengeNonce, CoreError> {
        let nonce = ChallengeNonce::parse(given).map_err(web_refusal)?;
        if !lock(&self.shared.nonces).take(nonce.as_str(), Instant::now()) {
            return Err(CoreError::NonceReplayed(
                "This challenge was already used for a sign-in on this workstation; the page \
                 must ask its identity provider for a new one. Nothing was sent to the card."
                    .into(),
            ));
        }
        Ok(nonce)
    }

    /// The web sign-in once the holder typed the passcode in the agent's dialog: verified on
    /// the card (the same policy as any log-in: tries read first, the final try only when
    /// confirmed, a value that just failed never re-sent), the agent's session started if
    /// none runs for this card (a locked or away one of this card resumed), then the card
    /// signs the digest of `origin` and `nonce` with its authentication key. Returns the
    /// token as JSON.
    pub async fn web_sign_in(
        &self,
        caller: &CallerIdentity,
        origin: &WebOrigin,
        nonce: &ChallengeNonce,
        passcode: Option<&str>,
        confirm_final_try: bool,
    ) -> Result<String, CoreError> {
        let entry = PasscodeEntry::new(passcode, confirm_final_try)?;
        tracing::info!(uid = caller.uid, pid = caller.pid, %origin, "web sign-in");
        let _one_at_a_time = self.shared.session_changes.lock().await;
        let verified = self.verify_holder(caller, entry, false).await?;
        let has_session = lock(&self.shared.state)
            .live_session()
            .is_some_and(|s| s.detached.is_none() && s.insertion == verified.insertion);
        if !has_session {
            self.open_session(caller, &verified).await?;
        }

        let certificate = verified.report.identity.auth_certificate_der.clone();
        let signer = verified
            .actor
            .signer(
                verified.insertion.clone(),
                certificate.clone(),
                SIGN_TIMEOUT,
            )
            .map_err(|e| CoreError::CardFault(e.to_string()))?;
        let digest = Sha256Digest::from_bytes(digest_to_sign(origin, nonce));
        let (input, algorithm) = match signer.key_algorithm() {
            KeyAlgorithm::EccP256 => (
                SignInput::EcdsaP256Sha256(digest),
                SignatureAlgorithm::ES256,
            ),
            KeyAlgorithm::Rsa2048 => (SignInput::RsaPkcs1Sha256(digest), SignatureAlgorithm::RS256),
            other => {
                return Err(CoreError::CardFault(format!(
                    "The card's authentication key ({other:?}) cannot sign a web sign-in; ECDSA \
                     P-256 or RSA is needed."
                )));
            }
        };
        let signature = tokio::task::spawn_blocking(move || signer.sign(input))
            .await
            .map_err(|e| CoreError::Internal(format!("the signing task failed: {e}")))?
            .map_err(|e| match e {
                SpineError::CardRemoved => CoreError::NoCard(
                    "The card was taken out while it was signing the sign-in.".into(),
                ),
                e => CoreError::CardFault(format!("The card could not sign the sign-in: {e}")),
            })?;
        let token = AuthToken::new(&certificate, algorithm, &signature, APP_VERSION)
            .map_err(|e| CoreError::CardFault(e.to_string()))?;
        // A sign-in is work at the counter: the idle timers start again.
        lock(&self.shared.state).last_activity = Instant::now();
        Ok(token.to_json())
    }

    /// Records a web sign-in request and its outcome (`signed` or the refusal's name),
    /// naming the holder of the card in the reader when one was read. A request refused
    /// before its origin parsed is recorded with the origin as given, made printable.
    pub async fn audit_web_sign_in(
        &self,
        caller: &CallerIdentity,
        origin: &str,
        outcome: &str,
    ) -> Result<(), CoreError> {
        let holder = {
            let state = lock(&self.shared.state);
            state
                .active_card()
                .and_then(|(_, card)| card.report.as_ref())
                .map(|r| r.identity.holder_uuid.clone())
        };
        self.audit_async(AuditEvent::WebSignIn {
            caller: caller.clone(),
            origin: printable(origin),
            holder,
            outcome: outcome.to_owned(),
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_nonce_is_taken_once_until_it_would_have_expired_anyway() {
        let mut seen = SeenNonces::default();
        let t0 = Instant::now();
        assert!(seen.take("a", t0));
        assert!(!seen.take("a", t0 + Duration::from_secs(1)));
        assert!(seen.take("b", t0 + Duration::from_secs(2)));
        assert!(!seen.take("a", t0 + NONCE_MEMORY - Duration::from_millis(1)));
        // Past the provider's lifetime the memory lets go (the provider refuses it by age).
        assert!(seen.take("a", t0 + NONCE_MEMORY));
        assert!(!seen.take("b", t0 + NONCE_MEMORY));
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_is_bounded_oldest_first() {
        let mut seen = SeenNonces::default();
        let t0 = Instant::now();
        for i in 0..MAX_SEEN_NONCES {
            assert!(seen.take(&format!("n{i}"), t0));
        }
        assert!(seen.take("one more", t0));
        assert_eq!(seen.order.len(), MAX_SEEN_NONCES);
        assert!(seen.take("n0", t0), "the oldest made room");
        assert!(!seen.take("n5", t0));
    }
}
