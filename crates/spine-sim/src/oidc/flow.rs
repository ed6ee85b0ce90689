//! The provider's memory of each sign-in, and its rules, with no HTTP in it: authorization
//! requests and the challenge nonce each carries (single use, [`NONCE_LIFETIME`]), the
//! holder once the card signed, authorization codes (single use, [`CODE_LIFETIME`], bound
//! to client, redirect URI and PKCE S256 challenge) and access tokens for userinfo.
//!
//! Times are the sim's monotonic clock, so tests age challenges and codes by advancing it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardgate_webauth::{ChallengeNonce, NONCE_LIFETIME_SECS};
use time::OffsetDateTime;

use crate::state::token_hash;

/// How long the challenge nonce of a sign-in page is honoured.
pub(crate) const NONCE_LIFETIME: Duration = Duration::from_secs(NONCE_LIFETIME_SECS);
/// How long a sign-in may take from the authorization request to the chosen role.
pub(crate) const REQUEST_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How long an authorization code may wait for the token request.
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// Pending requests, codes and tokens kept at most each (a flood cannot eat memory).
const MAX_ENTRIES: usize = 10_000;

/// What the client asked for at the authorization endpoint, once checked.
#[derive(Clone, Debug)]
pub(crate) struct Authorization {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The PKCE S256 challenge (base64url of SHA-256 of the verifier).
    pub code_challenge: String,
    pub scope: String,
}

/// The holder the card identified.
#[derive(Clone, Debug)]
pub(crate) struct Holder {
    pub uid: String,
    pub auth_time: OffsetDateTime,
}

/// One sign-in in progress.
#[derive(Debug)]
struct PendingRequest {
    authorization: Authorization,
    /// The challenge, until the first sign-in attempt takes it.
    challenge: Option<(ChallengeNonce, Instant)>,
    holder: Option<Holder>,
    expires: Instant,
}

/// What a code stands for.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub authorization: Authorization,
    pub holder: Holder,
    pub role_id: String,
}

#[derive(Debug)]
struct CodeRecord {
    grant: Grant,
    expires: Instant,
    /// Set once redeemed: a second use is refused and revokes what the first one issued.
    redeemed_token: Option<[u8; 32]>,
}

#[derive(Debug)]
struct TokenRecord {
    grant: Grant,
    expires: Instant,
}

/// Why a step of the flow was refused. The handlers turn each into an OAuth error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlowError {
    /// No such sign-in (never started, finished or expired).
    UnknownRequest,
    /// The challenge of this sign-in was already used once.
    ChallengeReplayed,
    /// The challenge is older than [`NONCE_LIFETIME`].
    ChallengeStale,
    /// A role was chosen before the card signed in.
    NotSignedIn,
    /// The code was never issued (or long gone).
    UnknownCode,
    /// The code was already redeemed.
    CodeReused,
    /// The code is older than [`CODE_LIFETIME`].
    CodeExpired,
    /// The code belongs to another client.
    CodeOfAnotherClient,
    /// The redirect URI differs from the authorization request's.
    RedirectUriMismatch,
    /// The code verifier is not 43 to 128 unreserved characters (RFC 7636 §4.1).
    VerifierMalformed,
    /// SHA-256 of the verifier is not the challenge.
    PkceMismatch,
}

impl FlowError {
    /// The sentence for `error_description`.
    pub fn description(&self) -> String {
        match self {
            FlowError::UnknownRequest => {
                "This sign-in is not known: it finished, or expired after 10 minutes; start again \
                 from the application."
                    .into()
            }
            FlowError::ChallengeReplayed => {
                "This sign-in challenge was already used once: a challenge is single use, so \
                 the sign-in was ended; start again from the application."
                    .into()
            }
            FlowError::ChallengeStale => format!(
                "The sign-in challenge is older than {NONCE_LIFETIME_SECS} seconds (stale); \
                 start again from the application."
            ),
            FlowError::NotSignedIn => "Sign in with the card before choosing a role.".into(),
            FlowError::UnknownCode => "The authorization code is not known to the provider.".into(),
            FlowError::CodeReused => {
                "The authorization code was already used: codes are single use; the tokens \
                 issued for it were revoked."
                    .into()
            }
            FlowError::CodeExpired => format!(
                "The authorization code expired ({} seconds after it was issued).",
                CODE_LIFETIME.as_secs()
            ),
            FlowError::CodeOfAnotherClient => {
                "The authorization code was issued to another client.".into()
            }
            FlowError::RedirectUriMismatch => {
                "redirect_uri differs from the one of the authorization request.".into()
            }
            FlowError::VerifierMalformed => {
                "The PKCE code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ \
                 (RFC 7636)."
                    .into()
            }
            FlowError::PkceMismatch => {
                "PKCE verification failed: the code_verifier does not match the code_challenge \
                 (S256) of the authorization request."
                    .into()
            }
        }
    }
}

/// Base64url (no padding) of SHA-256 of `verifier`: the S256 code challenge (RFC 7636 §4.2).
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// Whether `challenge` has the shape of an S256 challenge (43 base64url characters).
pub(crate) fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn verifier_well_formed(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Every sign-in, code and token of the provider.
#[derive(Debug)]
pub(crate) struct Flows {
    token_lifetime: Duration,
    requests: HashMap<String, PendingRequest>,
    codes: HashMap<[u8; 32], CodeRecord>,
    tokens: HashMap<[u8; 32], TokenRecord>,
}

fn make_room<V>(map: &mut HashMap<impl Eq + std::hash::Hash, V>, live: impl Fn(&V) -> bool) {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, v| live(v));
    }
}

impl Flows {
    /// No sign-ins yet; access tokens will live `token_lifetime`.
    pub fn new(token_lifetime: Duration) -> Flows {
        Flows {
            token_lifetime,
            requests: HashMap::new(),
            codes: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    /// Starts a sign-in with its challenge; `id` names it on the sign-in page.
    pub fn start(
        &mut self,
        id: String,
        authorization: Authorization,
        challenge: ChallengeNonce,
        now: Instant,
    ) -> Result<(), FlowError> {
        make_room(&mut self.requests, |r| r.expires > now);
        if self.requests.len() >= MAX_ENTRIES {
            return Err(FlowError::UnknownRequest);
        }
        self.requests.insert(
            id,
            PendingRequest {
                authorization,
                challenge: Some((challenge, now + NONCE_LIFETIME)),
                holder: None,
                expires: now + REQUEST_LIFETIME,
            },
        );
        Ok(())
    }

    /// The authorization request behind a sign-in (to build an error redirect).
    pub fn authorization(&self, id: &str, now: Instant) -> Option<&Authorization> {
        self.requests
            .get(id)
            .filter(|r| r.expires > now)
            .map(|r| &r.authorization)
    }

    /// Takes the sign-in's challenge for its one attempt: afterwards it is gone, whatever
    /// the attempt's outcome. A replayed or stale challenge ends the sign-in.
    pub fn take_challenge(&mut self, id: &str, now: Instant) -> Result<ChallengeNonce, FlowError> {
        let request = self
            .requests
            .get_mut(id)
            .filter(|r| r.expires > now)
            .ok_or(FlowError::UnknownRequest)?;
        let Some((nonce, expires)) = request.challenge.take() else {
            self.requests.remove(id);
            return Err(FlowError::ChallengeReplayed);
        };
        if now > expires {
            self.requests.remove(id);
            return Err(FlowError::ChallengeStale);
        }
        Ok(nonce)
    }

    /// Records the holder the card identified.
    pub fn signed_in(&mut self, id: &str, holder: Holder) -> Result<(), FlowError> {
        let request = self.requests.get_mut(id).ok_or(FlowError::UnknownRequest)?;
        request.holder = Some(holder);
        Ok(())
    }

    /// The holder of a signed-in sign-in.
    pub fn holder(&self, id: &str, now: Instant) -> Result<&Holder, FlowError> {
        self.requests
            .get(id)
            .filter(|r| r.expires > now)
            .ok_or(FlowError::UnknownRequest)?
            .holder
            .as_ref()
            .ok_or(FlowError::NotSignedIn)
    }

    /// Ends a sign-in (refused, or finished with a code).
    pub fn end(&mut self, id: &str) -> Option<Authorization> {
        self.requests.remove(id).map(|r| r.authorization)
    }

    /// Finishes a signed-in sign-in with the chosen role: a fresh code for it.
    pub fn issue_code(
        &mut self,
        id: &str,
        role_id: String,
        code: &str,
        now: Instant,
    ) -> Result<Grant, FlowError> {
        let holder = self.holder(id, now)?.clone();
        let authorization = self.end(id).ok_or(FlowError::UnknownRequest)?;
        make_room(&mut self.codes, |c| c.expires > now);
        let grant = Grant {
            authorization,
            holder,
            role_id,
        };
        self.codes.insert(
            token_hash(code),
            CodeRecord {
                grant: grant.clone(),
                expires: now + CODE_LIFETIME,
                redeemed_token: None,
            },
        );
        Ok(grant)
    }

    /// Redeems a code at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6), then records
    /// `access_token` for it. A reused code is refused and revokes the token of its first use.
    pub fn redeem(
        &mut self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        verifier: &str,
        access_token: &str,
        now: Instant,
    ) -> Result<Grant, FlowError> {
        let record = self
            .codes
            .get_mut(&token_hash(code))
            .ok_or(FlowError::UnknownCode)?;
        if let Some(issued) = record.redeemed_token {
            self.tokens.remove(&issued);
            return Err(FlowError::CodeReused);
        }
        if now > record.expires {
            return Err(FlowError::CodeExpired);
        }
        if record.grant.authorization.client_id != client_id {
            return Err(FlowError::CodeOfAnotherClient);
        }
        if redirect_uri != Some(record.grant.authorization.redirect_uri.as_str()) {
            return Err(FlowError::RedirectUriMismatch);
        }
        // Whatever happens from here, the code is spent: a wrong verifier is not retried.
        let hash = token_hash(access_token);
        record.redeemed_token = Some(hash);
        if !verifier_well_formed(verifier) {
            return Err(FlowError::VerifierMalformed);
        }
        if !crate::state::constant_time_eq(
            s256(verifier).as_bytes(),
            record.grant.authorization.code_challenge.as_bytes(),
        ) {
            return Err(FlowError::PkceMismatch);
        }
        let grant = record.grant.clone();
        make_room(&mut self.tokens, |t| t.expires > now);
        self.tokens.insert(
            hash,
            TokenRecord {
                grant: grant.clone(),
                expires: now + self.token_lifetime,
            },
        );
        Ok(grant)
    }

    /// The grant behind a live access token.
    pub fn token(&self, access_token: &str, now: Instant) -> Option<&Grant> {
        self.tokens
            .get(&token_hash(access_token))
            .filter(|t| t.expires > now)
            .map(|t| &t.grant)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const TOKEN_LIFE: Duration = Duration::from_secs(600);

    #[test]
    fn s256_is_rfc_7636_appendix_b() {
        assert_eq!(
            s256(VERIFIER),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_s256_challenge(&s256(VERIFIER)));
        assert!(!is_s256_challenge("too-short"));
        assert!(!is_s256_challenge(&"+".repeat(43)));
    }

    fn authorization() -> Authorization {
        Authorization {
            client_id: "pmr".into(),
            redirect_uri: "https://localhost/cb".into(),
            state: Some("st".into()),
            nonce: Some("n".into()),
            code_challenge: s256(VERIFIER),
            scope: "openid".into(),
        }
    }

    fn holder() -> Holder {
        Holder {
            uid: "555000111222".into(),
            auth_time: OffsetDateTime::now_utc(),
        }
    }

    fn signed_in_with_code(flows: &mut Flows, now: Instant, code: &str) {
        let nonce = ChallengeNonce::generate().unwrap();
        flows
            .start("r".into(), authorization(), nonce.clone(), now)
            .unwrap();
        assert_eq!(flows.take_challenge("r", now).unwrap(), nonce);
        flows.signed_in("r", holder()).unwrap();
        flows.issue_code("r", "RP-1".into(), code, now).unwrap();
    }

    #[test]
    fn a_challenge_is_taken_once_and_not_after_its_lifetime() {
        let now = Instant::now();
        let mut flows = Flows::new(TOKEN_LIFE);
        let nonce = ChallengeNonce::generate().unwrap();
        flows
            .start("a".into(), authorization(), nonce.clone(), now)
            .unwrap();
        assert_eq!(flows.take_challenge("a", now).unwrap(), nonce);
        assert_eq!(
            flows.take_challenge("a", now),
            Err(FlowError::ChallengeReplayed)
        );
        // The replay ended the sign-in.
        assert_eq!(
            flows.take_challenge("a", now),
            Err(FlowError::UnknownRequest)
        );

        flows
            .start("b".into(), authorization(), nonce, now)
            .unwrap();
        let later = now + NONCE_LIFETIME + Duration::from_secs(1);
        assert_eq!(
            flows.take_challenge("b", later),
            Err(FlowError::ChallengeStale)
        );
        assert!(flows.authorization("b", later).is_none());
    }

    #[test]
    fn a_role_needs_the_card_first() {
        let now = Instant::now();
        let mut flows = Flows::new(TOKEN_LIFE);
        let nonce = ChallengeNonce::generate().unwrap();
        flows
            .start("r".into(), authorization(), nonce, now)
            .unwrap();
        assert_eq!(
            flows.issue_code("r", "RP-1".into(), "c", now).unwrap_err(),
            FlowError::NotSignedIn
        );
    }

    #[test]
    fn a_code_is_redeemed_once_and_its_reuse_revokes_the_token() {
        let now = Instant::now();
        let mut flows = Flows::new(TOKEN_LIFE);
        signed_in_with_code(&mut flows, now, "code-1");
        let cb = Some("https://localhost/cb");
        let grant = flows
            .redeem("code-1", "pmr", cb, VERIFIER, "at-1", now)
            .unwrap();
        assert_eq!(grant.role_id, "RP-1");
        assert!(flows.token("at-1", now).is_some());
        assert_eq!(
            flows
                .redeem("code-1", "pmr", cb, VERIFIER, "at-2", now)
                .unwrap_err(),
            FlowError::CodeReused
        );
        assert!(flows.token("at-1", now).is_none(), "revoked by the reuse");
        assert!(flows.token("at-2", now).is_none());
    }

    #[test]
    fn pkce_client_redirect_and_expiry_are_checked() {
        let now = Instant::now();
        let cb = Some("https://localhost/cb");
        let cases: [(&str, Option<&str>, &str, Instant, FlowError); 6] = [
            ("other", cb, VERIFIER, now, FlowError::CodeOfAnotherClient),
            (
                "pmr",
                Some("https://evil/cb"),
                VERIFIER,
                now,
                FlowError::RedirectUriMismatch,
            ),
            ("pmr", None, VERIFIER, now, FlowError::RedirectUriMismatch),
            ("pmr", cb, "short", now, FlowError::VerifierMalformed),
            ("pmr", cb, &"x".repeat(43), now, FlowError::PkceMismatch),
            (
                "pmr",
                cb,
                VERIFIER,
                now + CODE_LIFETIME + Duration::from_secs(1),
                FlowError::CodeExpired,
            ),
        ];
        for (client, redirect, verifier, at, expected) in cases {
            let mut flows = Flows::new(TOKEN_LIFE);
            signed_in_with_code(&mut flows, now, "c");
            let err = flows
                .redeem("c", client, redirect, verifier, "at", at)
                .unwrap_err();
            assert_eq!(err, expected);
            assert!(flows.token("at", at).is_none());
        }
        let mut flows = Flows::new(TOKEN_LIFE);
        assert_eq!(
            flows
                .redeem("nope", "pmr", cb, VERIFIER, "at", now)
                .unwrap_err(),
            FlowError::UnknownCode
        );
    }

    #[test]
    fn a_wrong_verifier_spends_the_code() {
        let now = Instant::now();
        let cb = Some("https://localhost/cb");
        let mut flows = Flows::new(TOKEN_LIFE);
        signed_in_with_code(&mut flows, now, "c");
        let wrong = "y".repeat(43);
        assert_eq!(
            flows.redeem("c", "pmr", cb, &wrong, "at", now).unwrap_err(),
            FlowError::PkceMismatch
        );
        assert_eq!(
            flows
                .redeem("c", "pmr", cb, VERIFIER, "at2", now)
                .unwrap_err(),
            FlowError::CodeReused
        );
    }

    #[test]
    fn access_tokens_expire() {
        let now = Instant::now();
        let mut flows = Flows::new(TOKEN_LIFE);
        signed_in_with_code(&mut flows, now, "c");
        flows
            .redeem(
                "c",
                "pmr",
                Some("https://localhost/cb"),
                VERIFIER,
                "at",
                now,
            )
            .unwrap();
        assert!(
            flows
                .token("at", now + TOKEN_LIFE + Duration::from_secs(1))
                .is_none()
        );
    }
}
