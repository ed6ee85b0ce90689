//! Mode B against an independent TLS 1.3 server: `openssl s_server -tls1_3 -Verify 1`
//! requires a client certificate from the card CA. The card-backed client must complete the
//! handshake (the card signing CertificateVerify: ECDSA for P-256, RSA-PSS for RSA), and the
//! server's status page (`-www`) must show the card's certificate as the peer's. A card from
//! another CA must be refused (`-verify_return_error`).
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardgate_spine::tls::{CardClientAuth, client_config, connect, service_roots};
use cardgate_spine::{CardSigner, Endpoint, SpineError};
use support::Kind;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A running `openssl s_server`, killed on drop.
struct SServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts s_server requiring a client certificate from `card_ca_pem`.
fn s_server(service: &support::ServiceCa, card_ca_pem: &str) -> SServer {
    support::require_openssl();
    let dir = tempfile::tempdir().unwrap();
    let cert = support::write(dir.path(), "server.pem", &service.server_cert_pem);
    let key = support::write(dir.path(), "server.key", &service.server_key_pem);
    let card_ca = support::write(dir.path(), "card-ca.pem", card_ca_pem);
    let port = support::free_port();
    let child = Command::new("openssl")
        // -verify_return_error: without it s_server reports a failed chain and goes on.
        .args([
            "s_server",
            "-tls1_3",
            "-Verify",
            "1",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(&card_ca)
        .args([
            "-cert", &cert, "-key", &key, "-www", "-naccept", "4", "-accept",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = SServer {
        child,
        port,
        _dir: dir,
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "openssl s_server did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// Connects with the card, sends `GET /` and returns the status page (or the error).
async fn fetch_status_page(
    service: &support::ServiceCa,
    signer: Arc<dyn CardSigner>,
    port: u16,
) -> Result<String, SpineError> {
    let auth = CardClientAuth::new(signer)?;
    let config = client_config(
        service_roots(service.ca_pem.as_bytes())?,
        Some(Arc::clone(&auth)),
    )?;
    let endpoint = Endpoint::new("127.0.0.1", port)?;
    let result = async {
        let mut stream = connect(
            config,
            &endpoint,
            Duration::from_secs(5),
            Duration::from_secs(20),
        )
        .await?;
        // A TLS 1.3 server refuses the client's certificate after the client's handshake
        // ended: the alert arrives on the first read, inside an io::Error.
        let io = |e: std::io::Error| match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => SpineError::Tls {
                source: tls.clone(),
            },
            None => SpineError::Protocol {
                reason: e.to_string(),
            },
        };
        stream
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .map_err(io)?;
        let mut page = Vec::new();
        stream.read_to_end(&mut page).await.map_err(io)?;
        Ok(String::from_utf8_lossy(&page).into_owned())
    }
    .await;
    match (result, auth.take_card_error()) {
        (Err(_), Some(card)) => Err(card),
        (result, _) => result,
    }
}

fn card_pem(der: &[u8]) -> String {
    cardgate_vcard::provision::certificate_pem(der)
}

async fn completes_mutual_tls(kind: Kind) {
    let service = support::service_ca();
    let card = support::card(kind);
    let server = s_server(&service, &card.ca.certificate_pem());
    let (signer, _controls) = support::signer(&card.card);
    let page = fetch_status_page(&service, signer.clone(), server.port)
        .await
        .unwrap_or_else(|e| panic!("{kind:?} card: mutual TLS failed: {e:?}"));
    assert!(page.contains("TLSv1.3"), "{page}");
    // s_server prints the peer certificate it verified; it must be the card's.
    let expected = card_pem(signer.certificate_der());
    let expected_body: String = expected
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let page_compact: String = page.lines().collect();
    assert!(
        page_compact.contains(&expected_body),
        "{kind:?}: the server did not see the card's certificate:\n{page}"
    );
    assert!(!page.contains("no client certificate available"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecc_card_completes_mutual_tls_with_openssl() {
    completes_mutual_tls(Kind::Ecc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_card_completes_mutual_tls_with_openssl_using_pss() {
    completes_mutual_tls(Kind::Rsa).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_runtime_works_too() {
    completes_mutual_tls(Kind::Ecc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_from_another_ca_is_refused() {
    let service = support::service_ca();
    let trusted = support::card(Kind::Ecc);
    let stranger = support::card(Kind::Ecc);
    let server = s_server(&service, &trusted.ca.certificate_pem());
    let (signer, _controls) = support::signer(&stranger.card);
    let result = fetch_status_page(&service, signer, server.port).await;
    match result {
        Err(SpineError::Tls {
            source: rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        }) => {}
        Ok(page) => panic!("a card from an unknown CA was accepted:\n{page}"),
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_pulled_during_the_handshake_is_reported_as_removed() {
    let service = support::service_ca();
    let card = support::card(Kind::Ecc);
    let server = s_server(&service, &card.ca.certificate_pem());
    let (signer, controls) = support::signer(&card.card);
    controls
        .pull_on_sign
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let result = fetch_status_page(&service, signer, server.port).await;
    assert!(matches!(result, Err(SpineError::CardRemoved)), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_certificate_must_chain_to_the_pinned_service_ca() {
    let service = support::service_ca();
    let other_service = support::service_ca();
    let card = support::card(Kind::Ecc);
    let server = s_server(&service, &card.ca.certificate_pem());
    let (signer, _controls) = support::signer(&card.card);
    // The client pins another service CA: the real server's certificate must not pass.
    let result = fetch_status_page(&other_service, signer, server.port).await;
    assert!(
        matches!(
            result,
            Err(SpineError::Tls {
                source: rustls::Error::InvalidCertificate(_)
            })
        ),
        "{result:?}"
    );
}
