//! Mode A (the broker flow) through the real stack, with the CMS made by an independent
//! implementation: `openssl cms -sign -binary -nodetach -md sha256` with a provisioned
//! card's key and certificate written as PEM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{ASHA, Lab};
use hyper::StatusCode;
use serde_json::{Value, json};

/// Signs `content` with `card`'s key using openssl: the CMS DER.
async fn openssl_sign(lab: &Lab, card: &str, content: &[u8]) -> Vec<u8> {
    let (cert, key) = lab.write_pem_identity(card);
    let dir = lab.dir.path();
    let input = dir.join(format!("{card}-challenge.bin"));
    let output = dir.join(format!("{card}-signed.der"));
    std::fs::write(&input, content).unwrap();
    let status = tokio::process::Command::new("openssl")
        .args([
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-md",
            "sha256",
            "-outform",
            "DER",
        ])
        .arg("-in")
        .arg(&input)
        .arg("-signer")
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&output)
        .status()
        .await
        .expect("openssl must be installed (scripts/setup installs it)");
    assert!(status.success());
    std::fs::read(&output).unwrap()
}

/// openssl's own verdict on the CMS (the doc promises it verifies with the card CA).
async fn openssl_verifies(lab: &Lab, der: &[u8]) -> bool {
    let dir = lab.dir.path();
    let path = dir.join("to-verify.der");
    let ca = dir.join("card-ca.pem");
    std::fs::write(&path, der).unwrap();
    std::fs::write(&ca, lab.sim.card_ca_pem()).unwrap();
    tokio::process::Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ])
        .arg("-in")
        .arg(&path)
        .arg("-CAfile")
        .arg(&ca)
        .status()
        .await
        .unwrap()
        .success()
}

async fn challenge(lab: &Lab) -> (String, Vec<u8>) {
    let (status, body) = lab
        .api("POST", "/login/authactivate", None, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let typed: cardgate_spine::wire::ActivateResponse = serde_json::from_value(body).unwrap();
    assert_eq!(typed.challenge.len(), 32);
    (typed.challenge_id, typed.challenge)
}

async fn validate(lab: &Lab, id: &str, signed: &[u8]) -> (StatusCode, Value) {
    lab.api(
        "POST",
        "/login/authvalidate",
        None,
        Some(json!({"challenge_id": id, "signed_data": STANDARD.encode(signed)})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_cms_over_the_challenge_opens_a_session() {
    let lab = Lab::start().await;
    let (id, bytes) = challenge(&lab).await;
    let signed = openssl_sign(&lab, "asha", &bytes).await;
    assert!(openssl_verifies(&lab, &signed).await);
    let (status, session) = validate(&lab, &id, &signed).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!(session["uid"], ASHA);
    assert!(session["token"].as_str().unwrap().len() >= 40);

    // Replaying the same challenge and signature is refused.
    let (status, body) = validate(&lab, &id, &signed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unknown_challenge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_over_another_challenge_is_refused() {
    let lab = Lab::start().await;
    let (id, _) = challenge(&lab).await;
    let (_, other) = challenge(&lab).await;
    let signed = openssl_sign(&lab, "asha", &other).await;
    let (status, body) = validate(&lab, &id, &signed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "bad_signature");
    // The failed attempt used the challenge up.
    let (_, body) = validate(&lab, &id, &signed).await;
    assert_eq!(body["error"], "unknown_challenge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_signature_is_refused() {
    let lab = Lab::start().await;
    let (id, bytes) = challenge(&lab).await;
    let mut signed = openssl_sign(&lab, "asha", &bytes).await;
    // The signature value is the last OCTET STRING: flip a bit near the end.
    let n = signed.len();
    signed[n - 5] ^= 0x01;
    let (status, body) = validate(&lab, &id, &signed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "bad_signature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_challenge_is_refused() {
    let lab = Lab::start().await;
    let (id, bytes) = challenge(&lab).await;
    let signed = openssl_sign(&lab, "asha", &bytes).await;
    lab.sim.advance_clock(Duration::from_secs(61));
    let (status, body) = validate(&lab, &id, &signed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "challenge_expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_cards_are_refused_with_their_codes() {
    let lab = Lab::start().await;
    for (card, code) in [
        ("chloe", "certificate_revoked"),
        ("dan", "certificate_expired"),
    ] {
        let (id, bytes) = challenge(&lab).await;
        let signed = openssl_sign(&lab, card, &bytes).await;
        let (status, body) = validate(&lab, &id, &signed).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{card}: {body}");
        assert_eq!(body["error"], code, "{card}: {body}");
        assert!(body["message"].as_str().unwrap().len() > 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_signed_data_is_a_malformed_request() {
    let lab = Lab::start().await;
    let (id, _) = challenge(&lab).await;
    let (status, body) = validate(&lab, &id, b"\x30\x03\x02\x01\x01").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "malformed_request");
    let (status, body) = lab
        .api(
            "POST",
            "/login/authvalidate",
            None,
            Some(json!({"challenge_id": "c-x", "signed_data": "not base64!"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "malformed_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_card_logs_in_with_openssl_cms_and_with_mtls() {
    let lab = Lab::start_rsa().await;
    let (id, bytes) = challenge(&lab).await;
    let signed = openssl_sign(&lab, "asha", &bytes).await;
    let (status, session) = validate(&lab, &id, &signed).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!(session["uid"], ASHA);
    // Mode B with the same RSA key: rustls signs the CertificateVerify with RSA-PSS.
    let session = lab.login("asha").await;
    assert_eq!(session["uid"], ASHA);
}
