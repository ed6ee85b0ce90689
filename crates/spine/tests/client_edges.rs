//! The client's failure paths that need no real endpoint: nothing listening (unreachable,
//! fast), a server that accepts and never answers (timed out, within the limit), a server
//! whose clock is an hour off (clock skew, refused before the card is asked to sign), and the
//! mapping of the protocol's error bodies.
#![allow(clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cardgate_piv::{KeyAlgorithm, SignInput};
use cardgate_spine::wire::ErrorCode;
use cardgate_spine::{CardSigner, Endpoint, SpineClient, SpineConfig, SpineError, Step};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::Kind;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

fn client(service: &support::ServiceCa, port: u16, timeout: Duration) -> SpineClient {
    let endpoint = Endpoint::new("127.0.0.1", port).unwrap();
    let mut config = SpineConfig::new(
        endpoint.clone(),
        endpoint,
        service.ca_pem.as_bytes().to_vec(),
    );
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = timeout;
    SpineClient::new(config).unwrap()
}

/// A card signer that counts how often it was asked, around a real one.
struct Counting {
    inner: Arc<dyn CardSigner>,
    count: AtomicUsize,
}

impl CardSigner for Counting {
    fn certificate_der(&self) -> &[u8] {
        self.inner.certificate_der()
    }
    fn key_algorithm(&self) -> KeyAlgorithm {
        self.inner.key_algorithm()
    }
    fn sign(&self, input: SignInput) -> Result<Vec<u8>, SpineError> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.inner.sign(input)
    }
}

/// A one-route HTTPS server answering every request with `status`, `body` and a `Date`
/// `clock_offset` away from now. Returns its port.
async fn fake_server(
    service: &support::ServiceCa,
    status: u16,
    body: &'static str,
    clock_offset: time::Duration,
) -> u16 {
    let certs = vec![CertificateDer::from_pem_slice(service.server_cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(service.server_key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
                    let date = (OffsetDateTime::now_utc() + clock_offset)
                        .format(&Rfc2822)
                        .unwrap()
                        .replace("+0000", "GMT");
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .header("date", date)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(body.as_bytes())))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn nothing_listening_is_unreachable_at_once() {
    let service = support::service_ca();
    let port = support::free_port();
    let client = client(&service, port, Duration::from_secs(10));
    let started = Instant::now();
    let result = client.crl().await;
    assert!(
        matches!(result, Err(SpineError::Unreachable { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_the_limit() {
    let service = support::service_ca();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts, reads nothing, says nothing, keeps the connection open.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let limit = Duration::from_millis(500);
    let client = client(&service, port, limit);
    let started = Instant::now();
    let result = client.crl().await;
    let waited = started.elapsed();
    assert!(
        matches!(
            result,
            Err(SpineError::TimedOut {
                step: Step::Request,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        waited >= limit && waited < limit + Duration::from_millis(500),
        "{waited:?}"
    );
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_an_hour_off_is_refused_before_the_card_signs() {
    let service = support::service_ca();
    let body = r#"{"challenge_id": "c-1", "challenge": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "expires_at": "2030-01-01T00:00:00Z"}"#;
    let port = fake_server(&service, 200, body, time::Duration::hours(-1)).await;
    let client = client(&service, port, Duration::from_secs(10));
    let card = support::card(Kind::Ecc);
    let (signer, _controls) = support::signer(&card.card);
    let counting = Arc::new(Counting {
        inner: signer,
        count: AtomicUsize::new(0),
    });
    let result = client.login_with_signed_challenge(counting.clone()).await;
    match result {
        // The server is an hour behind: the workstation is ahead by about 3600 s.
        Err(SpineError::ClockSkew { skew_seconds }) => {
            assert!((3590..=3610).contains(&skew_seconds), "{skew_seconds}")
        }
        other => panic!("expected ClockSkew, got {other:?}"),
    }
    assert_eq!(
        counting.count.load(Ordering::SeqCst),
        0,
        "the card must not sign"
    );
    assert!(client.clock_skew().unwrap() > 3500);
}

#[tokio::test]
async fn a_small_skew_is_measured_and_allowed() {
    let service = support::service_ca();
    let port = fake_server(&service, 200, "{}", time::Duration::seconds(-20)).await;
    let client = client(&service, port, Duration::from_secs(10));
    client.crl().await.unwrap();
    let skew = client.clock_skew().unwrap();
    assert!((15..=25).contains(&skew), "{skew}");
}

/// An HTTP status, a body, and what the error must be.
type Case = (u16, &'static str, fn(&SpineError) -> bool);

#[tokio::test]
async fn error_bodies_map_to_what_the_user_acts_on() {
    let service = support::service_ca();
    let cases: [Case; 4] = [
        (
            401,
            r#"{"error": "certificate_revoked", "message": "revoked"}"#,
            |e| matches!(e, SpineError::CardRevoked),
        ),
        (
            401,
            r#"{"error": "session_expired", "message": "idle"}"#,
            |e| matches!(e, SpineError::SessionExpired),
        ),
        (
            409,
            r#"{"error": "renewal_not_due", "message": "later"}"#,
            |e| matches!(e, SpineError::Refused { status: 409, code: ErrorCode::RenewalNotDue, message } if message == "later"),
        ),
        (502, "<html>bad gateway</html>", |e| {
            matches!(
                e,
                SpineError::Refused {
                    status: 502,
                    code: ErrorCode::Other,
                    ..
                }
            )
        }),
    ];
    for (status, body, expected) in cases {
        let port = fake_server(&service, status, body, time::Duration::ZERO).await;
        let client = client(&service, port, Duration::from_secs(10));
        let result = client.crl().await;
        let error = result.expect_err(body);
        assert!(expected(&error), "{status} {body}: {error:?}");
    }
}
