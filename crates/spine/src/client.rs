//! [`SpineClient`]: the agent's calls to the Spine-like endpoint (`docs/spine-protocol.md`),
//! the two logins in which the card signs, and the mapping of every failure to a
//! [`SpineError`] the user can act on.

use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use rustls::{ClientConfig, RootCertStore};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use cardgate_piv::UnlockCode;

use crate::config::SpineConfig;
use crate::error::SpineError;
use crate::http::{self, Call, Response};
use crate::signer::CardSigner;
use crate::tls::{CardClientAuth, client_config, service_roots};
use crate::wire::{
    ActivateResponse, AuditAnchor, Empty, ErrorBody, ErrorCode, IntrospectRequest,
    IntrospectResponse, RenewRequest, RenewResponse, Secret, SelectRoleRequest,
    SelfServiceUnlockConfirm, SelfServiceUnlockRequest, SelfServiceUnlockStarted, Session,
    SponsorUnlockRequest, TacActivateRequest, TacRecord, TacUsageRequest, UnlockCodeResponse,
    ValidateRequest, paths,
};

/// The client of the Spine-like endpoint. Cheap to share (`&self` everywhere); every request
/// opens its own connection and is bounded by the configured time limits.
pub struct SpineClient {
    config: SpineConfig,
    roots: RootCertStore,
    api_tls: Arc<ClientConfig>,
    /// Local minus server time, seconds, from the last answer with a `Date`.
    last_skew: Mutex<Option<i64>>,
}

impl std::fmt::Debug for SpineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpineClient")
            .field("api", &self.config.api)
            .field("mtls", &self.config.mtls)
            .finish_non_exhaustive()
    }
}

/// Which listener a call goes to.
enum Listener {
    Api,
    Mtls(Arc<ClientConfig>),
}

impl SpineClient {
    /// A client for `config`; fails if the service CA is not usable.
    pub fn new(config: SpineConfig) -> Result<SpineClient, SpineError> {
        let roots = service_roots(&config.service_ca_pem)?;
        let api_tls = client_config(roots.clone(), None)?;
        Ok(SpineClient {
            config,
            roots,
            api_tls,
            last_skew: Mutex::new(None),
        })
    }

    /// The workstation's clock minus the server's, in seconds, as last measured from an
    /// answer's `Date` header (positive: the workstation is ahead). `None` before any answer.
    pub fn clock_skew(&self) -> Option<i64> {
        self.last_skew.lock().ok().and_then(|s| *s)
    }

    /// Mode A, the broker flow: a challenge, the card's CMS signature over it, a session.
    /// The card signs once, on a blocking thread; a workstation clock beyond the allowed
    /// skew is refused before the card is asked.
    pub async fn login_with_signed_challenge(
        &self,
        card: Arc<dyn CardSigner>,
    ) -> Result<Session, SpineError> {
        let response = self
            .send(
                Listener::Api,
                Method::POST,
                paths::AUTH_ACTIVATE,
                None,
                Some(&Empty {}),
            )
            .await?;
        self.refuse_clock_skew(&response)?;
        let activate: ActivateResponse = expect(response, StatusCode::OK)?;
        let challenge = activate.challenge;
        let signed_data =
            tokio::task::spawn_blocking(move || crate::cms::signed_data(card.as_ref(), &challenge))
                .await
                .map_err(|_| SpineError::CardUnavailable {
                    reason: "the card's signing task failed",
                })??;
        let request = ValidateRequest {
            challenge_id: activate.challenge_id,
            signed_data,
        };
        let response = self
            .send(
                Listener::Api,
                Method::POST,
                paths::AUTH_VALIDATE,
                None,
                Some(&request),
            )
            .await?;
        expect(response, StatusCode::CREATED)
    }

    /// Mode B: TLS client authentication on the mTLS listener, the card signing the TLS 1.3
    /// handshake. A revoked or expired card is refused by the server's TLS alert and reported
    /// as [`SpineError::CardRevoked`] / [`SpineError::CertificateExpired`].
    pub async fn login_with_client_certificate(
        &self,
        card: Arc<dyn CardSigner>,
    ) -> Result<Session, SpineError> {
        let auth = CardClientAuth::new(card)?;
        let tls = client_config(self.roots.clone(), Some(Arc::clone(&auth)))?;
        let result = self
            .send(
                Listener::Mtls(tls),
                Method::POST,
                paths::SESSIONS,
                None,
                Some(&Empty {}),
            )
            .await;
        // The card's own failure explains a failed handshake better than rustls can.
        if let Some(card_error) = auth.take_card_error() {
            if result.is_err() {
                return Err(card_error);
            }
        }
        let response = result?;
        let skew = self.refuse_clock_skew(&response);
        let session: Session = expect(response, StatusCode::CREATED)?;
        if let Err(e) = skew {
            // The session exists but must not be used with a wrong clock: end it.
            if let Err(logout) = self.logout(&session).await {
                tracing::warn!(error = %logout, "could not end the session refused for clock skew");
            }
            return Err(e);
        }
        Ok(session)
    }

    /// Selects (or switches) the session's role profile.
    pub async fn select_role(
        &self,
        session: &Session,
        role_profile_id: &str,
    ) -> Result<Session, SpineError> {
        let body = SelectRoleRequest {
            role_profile_id: role_profile_id.to_owned(),
        };
        let path = paths::session_role_path(&session.session_id);
        self.call_as(session, Method::PUT, &path, Some(&body)).await
    }

    /// Hands the endpoint the workstation's audit chain head at this log-in, to keep.
    pub async fn anchor_audit(
        &self,
        session: &Session,
        anchor: &AuditAnchor,
    ) -> Result<(), SpineError> {
        let path = paths::session_audit_anchor_path(&session.session_id);
        let response = self
            .send(
                Listener::Api,
                Method::PUT,
                &path,
                Some(&session.token),
                Some(anchor),
            )
            .await?;
        expect_empty(response, StatusCode::NO_CONTENT)
    }

    /// Reads the session as the server has it now (roles, selection); counts as activity.
    pub async fn session(&self, session: &Session) -> Result<Session, SpineError> {
        let path = paths::session_path(&session.session_id);
        self.call_as::<Empty, _>(session, Method::GET, &path, None)
            .await
    }

    /// Asks whether `token` is active, as an application holding a token would.
    pub async fn introspect(&self, token: &Secret) -> Result<IntrospectResponse, SpineError> {
        let body = IntrospectRequest {
            token: token.clone(),
        };
        let response = self
            .send(
                Listener::Api,
                Method::POST,
                paths::INTROSPECT,
                None,
                Some(&body),
            )
            .await?;
        expect(response, StatusCode::OK)
    }

    /// Ends the session (the card left the reader, or the holder logged out).
    pub async fn logout(&self, session: &Session) -> Result<(), SpineError> {
        let path = paths::session_path(&session.session_id);
        let response = self
            .send::<Empty>(
                Listener::Api,
                Method::DELETE,
                &path,
                Some(&session.token),
                None,
            )
            .await?;
        expect_empty(response, StatusCode::NO_CONTENT)
    }

    /// The card CA's current CRL (DER).
    pub async fn crl(&self) -> Result<Vec<u8>, SpineError> {
        let response = self
            .send::<Empty>(Listener::Api, Method::GET, paths::CRL, None, None)
            .await?;
        if response.status != StatusCode::OK {
            return Err(refusal(&response));
        }
        Ok(response.body.to_vec())
    }

    /// Renews the session holder's certificate from a CSR signed by a new key made on the
    /// card ([`crate::csr`]); returns the new certificate (DER) to write to the card.
    pub async fn renew_certificate(
        &self,
        session: &Session,
        csr_der: &[u8],
    ) -> Result<Vec<u8>, SpineError> {
        let body = RenewRequest {
            csr: csr_der.to_vec(),
        };
        let response = self
            .send(
                Listener::Api,
                Method::POST,
                paths::RENEW,
                Some(&session.token),
                Some(&body),
            )
            .await?;
        let renewed: RenewResponse = expect(response, StatusCode::OK)?;
        Ok(renewed.certificate)
    }

    /// Self-service unlock, step 1: a one-time code goes to the holder's registered contact.
    pub async fn start_self_service_unlock(
        &self,
        uid: &str,
        card_serial: &str,
    ) -> Result<SelfServiceUnlockStarted, SpineError> {
        let body = SelfServiceUnlockRequest {
            uid: uid.to_owned(),
            card_serial: card_serial.to_owned(),
        };
        let response = self
            .send(
                Listener::Api,
                Method::POST,
                paths::SELF_SERVICE_UNLOCK,
                None,
                Some(&body),
            )
            .await?;
        expect(response, StatusCode::ACCEPTED)
    }

    /// Self-service unlock, step 2: the one-time code for the card's unlock code, to use at
    /// once with `PivClient::reset_retry_counter`.
    pub async fn confirm_self_service_unlock(
        &self,
        request_id: &str,
        one_time_code: &Secret,
    ) -> Result<UnlockCode, SpineError> {
        let body = SelfServiceUnlockConfirm {
            one_time_code: one_time_code.clone(),
        };
        let path = paths::self_service_confirm_path(request_id);
        let response = self
            .send(Listener::Api, Method::POST, &path, None, Some(&body))
            .await?;
        unlock_code(expect(response, StatusCode::OK)?)
    }

    /// A Sponsor/LSA (the session's selected profile has `admin.unlock`) gets the unlock
    /// code of someone else's card.
    pub async fn sponsor_unlock(
        &self,
        session: &Session,
        uid: &str,
        card_serial: &str,
    ) -> Result<UnlockCode, SpineError> {
        let body = SponsorUnlockRequest {
            uid: uid.to_owned(),
            card_serial: card_serial.to_owned(),
        };
        let response = self
            .send(
                Listener::Api,
                Method::POST,
                paths::SPONSOR_UNLOCK,
                Some(&session.token),
                Some(&body),
            )
            .await?;
        unlock_code(expect(response, StatusCode::OK)?)
    }

    /// A Temporary Access Card's record.
    pub async fn tac(&self, session: &Session, tac_serial: &str) -> Result<TacRecord, SpineError> {
        let path = paths::tac_path(tac_serial);
        self.call_as::<Empty, _>(session, Method::GET, &path, None)
            .await
    }

    /// Activates a blank TAC for a holder, with its custodian.
    pub async fn activate_tac(
        &self,
        session: &Session,
        tac_serial: &str,
        request: &TacActivateRequest,
    ) -> Result<TacRecord, SpineError> {
        let path = paths::tac_activate_path(tac_serial);
        self.call_as(session, Method::POST, &path, Some(request))
            .await
    }

    /// Records who used a TAC and when, in the custodian's register.
    pub async fn record_tac_usage(
        &self,
        session: &Session,
        tac_serial: &str,
        usage: &TacUsageRequest,
    ) -> Result<TacRecord, SpineError> {
        let path = paths::tac_usage_path(tac_serial);
        self.call_as(session, Method::POST, &path, Some(usage))
            .await
    }

    /// Returns a TAC to blank (its holder's permanent card has arrived).
    pub async fn return_tac(
        &self,
        session: &Session,
        tac_serial: &str,
    ) -> Result<TacRecord, SpineError> {
        let path = paths::tac_return_path(tac_serial);
        self.call_as::<Empty, _>(session, Method::POST, &path, None)
            .await
    }

    /// One call on the API listener as the session's holder, answered with 200 and a body.
    async fn call_as<B: Serialize, R: DeserializeOwned>(
        &self,
        session: &Session,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, SpineError> {
        let response = self
            .send(Listener::Api, method, path, Some(&session.token), body)
            .await?;
        expect(response, StatusCode::OK)
    }

    /// Sends one request and measures the clock skew from its answer.
    async fn send<B: Serialize>(
        &self,
        listener: Listener,
        method: Method,
        path: &str,
        bearer: Option<&Secret>,
        body: Option<&B>,
    ) -> Result<Response, SpineError> {
        let json = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| SpineError::Protocol {
                reason: format!("the request body cannot be encoded: {e}"),
            })?;
        let (tls, endpoint) = match listener {
            Listener::Api => (Arc::clone(&self.api_tls), &self.config.api),
            Listener::Mtls(tls) => (tls, &self.config.mtls),
        };
        let call = Call {
            method,
            path,
            bearer,
            json,
        };
        let response = http::send(
            tls,
            endpoint,
            self.config.connect_timeout,
            self.config.request_timeout,
            call,
        )
        .await?;
        if let Some(server_time) = response.date {
            let skew = skew_seconds(OffsetDateTime::now_utc(), server_time);
            if let Ok(mut last) = self.last_skew.lock() {
                *last = Some(skew);
            }
            if skew.unsigned_abs() > self.config.max_clock_skew.as_secs() {
                tracing::warn!(
                    skew_seconds = skew,
                    "the workstation clock differs from the national endpoint's"
                );
            }
        }
        Ok(response)
    }

    /// Refuses a login answer whose `Date` is too far from the workstation's clock.
    fn refuse_clock_skew(&self, response: &Response) -> Result<(), SpineError> {
        let Some(server_time) = response.date else {
            return Ok(());
        };
        let skew = skew_seconds(OffsetDateTime::now_utc(), server_time);
        if skew.unsigned_abs() > self.config.max_clock_skew.as_secs() {
            return Err(SpineError::ClockSkew { skew_seconds: skew });
        }
        Ok(())
    }
}

/// Local minus server, whole seconds (HTTP dates have one-second resolution).
fn skew_seconds(local: OffsetDateTime, server: OffsetDateTime) -> i64 {
    (local - server).whole_seconds()
}

/// The body of a successful answer with status `expected`, or the server's refusal.
pub(crate) fn expect<T: DeserializeOwned>(
    response: Response,
    expected: StatusCode,
) -> Result<T, SpineError> {
    if response.status != expected {
        return Err(refusal(&response));
    }
    serde_json::from_slice(&response.body).map_err(|e| SpineError::Protocol {
        reason: format!("a {} answer does not parse: {e}", response.status.as_u16()),
    })
}

/// Success with no body expected.
pub(crate) fn expect_empty(response: Response, expected: StatusCode) -> Result<(), SpineError> {
    if response.status != expected {
        return Err(refusal(&response));
    }
    Ok(())
}

/// The error for an answer that is not the expected success.
fn refusal(response: &Response) -> SpineError {
    let status = response.status.as_u16();
    match serde_json::from_slice::<ErrorBody>(&response.body) {
        Ok(body) if !response.status.is_success() => {
            SpineError::from_server(status, body.error, body.message)
        }
        _ if response.status.is_success() => SpineError::Protocol {
            reason: format!("unexpected HTTP status {status}"),
        },
        _ => SpineError::Refused {
            status,
            code: ErrorCode::Other,
            message: format!("HTTP {status} without a protocol error body"),
        },
    }
}

/// Checks the unlock code's shape without ever printing it.
fn unlock_code(response: UnlockCodeResponse) -> Result<UnlockCode, SpineError> {
    UnlockCode::new(response.unlock_code.expose().to_owned()).map_err(|_| SpineError::Protocol {
        reason: "the unlock code the server released is not 8 letters or digits".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn skew_sign_is_local_minus_server() {
        let server = datetime!(2026-01-02 03:04:05 UTC);
        assert_eq!(
            skew_seconds(server + time::Duration::minutes(6), server),
            360
        );
        assert_eq!(
            skew_seconds(server - time::Duration::seconds(2), server),
            -2
        );
    }

    #[test]
    fn clock_skew_message_says_which_way() {
        let ahead = SpineError::ClockSkew { skew_seconds: 400 }.to_string();
        assert!(
            ahead.contains("ahead") && ahead.contains("400 s"),
            "{ahead}"
        );
        let behind = SpineError::ClockSkew { skew_seconds: -400 }.to_string();
        assert!(behind.contains("behind"), "{behind}");
    }
}
