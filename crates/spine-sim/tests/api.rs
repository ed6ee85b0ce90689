//! The rest of the API through the real stack: idle timeout (with the sim's clock advanced,
//! not slept), certificate renewal from a CSR, both unlock paths, the TAC lifecycle, and bad
//! input (malformed and oversized bodies) answered with 4xx while the server keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{ASHA, BEN, EVE, FAY, Lab, call, outbox_lines};
use hyper::StatusCode;
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_end_and_activity_keeps_them_alive() {
    let lab = Lab::start_with_idle(60).await;
    let session = lab.login("asha").await;
    let token = session["token"].as_str().unwrap();
    let id = session["session_id"].as_str().unwrap();
    let path = format!("/v1/sessions/{id}");

    // Activity at 40 s and 80 s keeps it alive past 60 s in total.
    lab.sim.advance_clock(Duration::from_secs(40));
    assert_eq!(
        lab.api("GET", &path, Some(token), None).await.0,
        StatusCode::OK
    );
    lab.sim.advance_clock(Duration::from_secs(40));
    assert_eq!(
        lab.api("GET", &path, Some(token), None).await.0,
        StatusCode::OK
    );

    // Introspection is not activity, and reports when the session would end.
    let (_, body) = lab
        .api(
            "POST",
            "/v1/tokens/introspect",
            None,
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(body["active"], true);

    lab.sim.advance_clock(Duration::from_secs(61));
    let (status, body) = lab
        .api(
            "POST",
            "/v1/tokens/introspect",
            None,
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"active": false}));
    let (status, body) = lab.api("GET", &path, Some(token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "session_expired");
}

/// A CSR for `uid` from a fresh P-256 key (the card would generate it on board).
fn csr_for(uid: &str) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::PrintableString(uid.try_into().unwrap()),
    );
    dn.push(DnType::CommonName, "Renewal");
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().der().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_issues_a_certificate_with_the_same_subject_and_the_new_key() {
    let lab = Lab::start().await;
    let session = lab.login("fay").await;
    let token = session["token"].as_str().unwrap();
    let csr = csr_for(FAY);
    let (status, body) = lab
        .api(
            "POST",
            "/v1/certificates/renew",
            Some(token),
            Some(json!({"csr": STANDARD.encode(&csr)})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let issued = STANDARD
        .decode(body["certificate"].as_str().unwrap())
        .unwrap();
    let (_, new) = x509_parser::parse_x509_certificate(&issued).unwrap();
    let (_, old) = x509_parser::parse_x509_certificate(&lab.cards["fay"].certificate).unwrap();
    assert_eq!(new.subject().as_raw(), old.subject().as_raw());
    assert_eq!(new.issuer().as_raw(), old.issuer().as_raw());
    use x509_parser::prelude::FromDer as _;
    let (_, request) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&csr).unwrap();
    assert_eq!(
        new.public_key().raw,
        request.certification_request_info.subject_pki.raw
    );
    assert!(new.validity().not_after.to_datetime() > old.validity().not_after.to_datetime());
    // It chains to the card CA and passes the agent's own checks.
    let anchors = cardgate_certs::TrustAnchors::from_pem(lab.sim.card_ca_pem().as_bytes()).unwrap();
    let report = cardgate_certs::check_card_certificate(
        &issued,
        &anchors,
        None,
        &lab.cards["fay"].serial,
        time::OffsetDateTime::now_utc(),
        &cardgate_certs::CheckPolicy::default().danger_accept_unknown_revocation(),
    )
    .unwrap();
    assert!(matches!(
        report.chain,
        cardgate_certs::ChainStatus::Verified { .. }
    ));
    assert_eq!(report.holder_uuid.as_deref(), Some(FAY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_refusals() {
    let lab = Lab::start().await;
    let renew = |token: String, csr: Vec<u8>| {
        let lab = &lab;
        async move {
            lab.api(
                "POST",
                "/v1/certificates/renew",
                Some(&token),
                Some(json!({"csr": STANDARD.encode(csr)})),
            )
            .await
        }
    };
    // Two years left: not due.
    let asha = lab.login("asha").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = renew(asha.clone(), csr_for(ASHA)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "renewal_not_due");
    // Old-generation card, even though due.
    let eve = lab.login("eve").await["token"].as_str().unwrap().to_owned();
    let (status, body) = renew(eve, csr_for(EVE)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "old_generation_card");
    // A CSR naming someone else.
    let fay = lab.login("fay").await["token"].as_str().unwrap().to_owned();
    let (status, body) = renew(fay.clone(), csr_for(ASHA)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden_activity");
    // A CSR whose signature was tampered with.
    let mut csr = csr_for(FAY);
    let n = csr.len();
    csr[n - 3] ^= 0x01;
    let (status, body) = renew(fay.clone(), csr).await;
    assert!(status.is_client_error(), "{body}");
    assert!(
        body["error"] == "bad_signature" || body["error"] == "malformed_request",
        "{body}"
    );
    // Not a CSR at all.
    let (status, body) = renew(fay, b"hello".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "malformed_request");
    // No bearer.
    let (status, body) = lab
        .api(
            "POST",
            "/v1/certificates/renew",
            None,
            Some(json!({"csr": "AAAA"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_service_unlock_with_the_one_time_code() {
    let lab = Lab::start().await;
    let serial = lab.cards["asha"].serial.clone();
    let (status, body) = lab
        .api(
            "POST",
            "/v1/unlock/self-service",
            None,
            Some(json!({"uid": ASHA, "card_serial": serial})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["sent_to"], "a***@nhs.example");
    let request_id = body["request_id"].as_str().unwrap().to_owned();
    let lines = outbox_lines(&lab.outbox);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["to"], "asha.patel@nhs.example");
    assert_eq!(lines[0]["uid"], ASHA);
    let code = lines[0]["one_time_code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 6);

    let confirm = format!("/v1/unlock/self-service/{request_id}/confirm");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, body) = lab
        .api(
            "POST",
            &confirm,
            None,
            Some(json!({"one_time_code": wrong})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "wrong_one_time_code");
    assert!(!body.to_string().contains(&code));

    let (status, body) = lab
        .api("POST", &confirm, None, Some(json!({"one_time_code": code})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let unlock: cardgate_spine::wire::UnlockCodeResponse = serde_json::from_value(body).unwrap();
    assert_eq!(unlock.unlock_code.expose().len(), 8);
    // Used once.
    let (_, body) = lab
        .api("POST", &confirm, None, Some(json!({"one_time_code": code})))
        .await;
    assert_eq!(body["error"], "wrong_one_time_code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_wrong_codes_void_the_request() {
    let lab = Lab::start().await;
    let serial = lab.cards["asha"].serial.clone();
    let (_, body) = lab
        .api(
            "POST",
            "/v1/unlock/self-service",
            None,
            Some(json!({"uid": ASHA, "card_serial": serial})),
        )
        .await;
    let confirm = format!(
        "/v1/unlock/self-service/{}/confirm",
        body["request_id"].as_str().unwrap()
    );
    let code = outbox_lines(&lab.outbox)[0]["one_time_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..3 {
        let (_, body) = lab
            .api(
                "POST",
                &confirm,
                None,
                Some(json!({"one_time_code": wrong})),
            )
            .await;
        assert_eq!(body["error"], "wrong_one_time_code");
    }
    let (status, body) = lab
        .api("POST", &confirm, None, Some(json!({"one_time_code": code})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "wrong_one_time_code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_service_refusals() {
    let lab = Lab::start().await;
    let cases = [
        (
            FAY,
            lab.cards["fay"].serial.clone(),
            StatusCode::CONFLICT,
            "no_registered_contact",
        ),
        (
            EVE,
            lab.cards["eve"].serial.clone(),
            StatusCode::CONFLICT,
            "old_generation_card",
        ),
        (
            ASHA,
            lab.cards["ben"].serial.clone(),
            StatusCode::NOT_FOUND,
            "unknown_card",
        ),
        (
            "555000000000",
            "1234".into(),
            StatusCode::NOT_FOUND,
            "unknown_user",
        ),
    ];
    for (uid, serial, status, code) in cases {
        let (got, body) = lab
            .api(
                "POST",
                "/v1/unlock/self-service",
                None,
                Some(json!({"uid": uid, "card_serial": serial})),
            )
            .await;
        assert_eq!(
            (got, body["error"].as_str().unwrap()),
            (status, code),
            "{uid}: {body}"
        );
    }
    assert!(outbox_lines(&lab.outbox).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sponsor_unlock_rules() {
    let lab = Lab::start().await;
    let asha_serial = lab.cards["asha"].serial.clone();
    let ben_serial = lab.cards["ben"].serial.clone();

    // Ben without a role selected, then as manager.
    let ben = lab.login("ben").await["token"].as_str().unwrap().to_owned();
    let (status, body) = lab
        .api(
            "POST",
            "/v1/unlock/sponsor",
            Some(&ben),
            Some(json!({"uid": ASHA, "card_serial": asha_serial})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden_activity");
    let (_, ben) = lab.login_as("ben", "RP-2001").await;
    let (status, body) = lab
        .api(
            "POST",
            "/v1/unlock/sponsor",
            Some(&ben),
            Some(json!({"uid": ASHA, "card_serial": asha_serial})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["unlock_code"].as_str().unwrap().len(), 8);

    // Never his own card, however it is named.
    for (uid, serial) in [(BEN, ben_serial.clone()), (ASHA, ben_serial.clone())] {
        let (status, body) = lab
            .api(
                "POST",
                "/v1/unlock/sponsor",
                Some(&ben),
                Some(json!({"uid": uid, "card_serial": serial})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "own_card");
    }
    // Old-generation cards cannot be unlocked.
    let (status, body) = lab
        .api(
            "POST",
            "/v1/unlock/sponsor",
            Some(&ben),
            Some(json!({"uid": EVE, "card_serial": lab.cards["eve"].serial})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "old_generation_card");

    // A pharmacist's profile does not permit unlocking.
    let (_, asha) = lab.login_as("asha", "RP-1001").await;
    let (status, body) = lab
        .api(
            "POST",
            "/v1/unlock/sponsor",
            Some(&asha),
            Some(json!({"uid": BEN, "card_serial": ben_serial})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden_activity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tac_lifecycle() {
    let lab = Lab::start().await;
    let (_, ben) = lab.login_as("ben", "RP-2001").await;
    let tac = "/v1/tac/9000000001";

    let (status, body) = lab.api("GET", tac, Some(&ben), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "blank");

    let (status, body) = lab
        .api(
            "POST",
            &format!("{tac}/usage"),
            Some(&ben),
            Some(json!({
                "used_by": ASHA, "from": "2026-01-02T09:00:00Z", "until": "2026-01-02T17:00:00Z"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "tac_not_active");

    let (status, body) = lab
        .api(
            "POST",
            &format!("{tac}/activate"),
            Some(&ben),
            Some(json!({
                "holder_uid": ASHA, "custodian": "Ben Okafor"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "active");
    assert_eq!(body["holder_uid"], ASHA);

    let (status, body) = lab
        .api(
            "POST",
            &format!("{tac}/activate"),
            Some(&ben),
            Some(json!({
                "holder_uid": FAY, "custodian": "Ben Okafor"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "tac_in_use");

    let (status, body) = lab
        .api(
            "POST",
            &format!("{tac}/usage"),
            Some(&ben),
            Some(json!({
                "used_by": ASHA, "from": "2026-01-02T09:00:00Z", "until": "2026-01-02T17:00:00Z"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["usage"][0]["used_by"], ASHA);

    let (status, body) = lab
        .api(
            "POST",
            &format!("{tac}/usage"),
            Some(&ben),
            Some(json!({
                "used_by": ASHA, "from": "2026-01-02T17:00:00Z", "until": "2026-01-02T09:00:00Z"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = lab
        .api("POST", &format!("{tac}/return"), Some(&ben), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "blank");
    assert_eq!(body["holder_uid"], serde_json::Value::Null);
    let record: cardgate_spine::wire::TacRecord = serde_json::from_value(body).unwrap();
    let actions: Vec<_> = record.history.iter().map(|e| e.action).collect();
    use cardgate_spine::wire::TacAction::*;
    assert_eq!(actions, [Activated, UsageRecorded, Returned]);
    assert!(record.history.iter().all(|e| e.by == BEN));
    assert_eq!(record.usage.len(), 1, "the register survives the return");

    // Only a Sponsor/LSA profile may touch TACs.
    let (_, asha) = lab.login_as("asha", "RP-1001").await;
    let (status, body) = lab.api("GET", tac, Some(&asha), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden_activity");
    let (status, body) = lab
        .api("GET", "/v1/tac/not-a-serial", Some(&ben), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "malformed_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_and_the_server_keeps_serving() {
    let lab = Lab::start().await;
    let raw = |path: &'static str, body: Vec<u8>| {
        let lab = &lab;
        async move {
            call(
                lab.sim.addr(),
                lab.anonymous(),
                "POST",
                path,
                None,
                Some(body),
            )
            .await
            .unwrap()
        }
    };
    let error_of = |bytes: &[u8]| -> String {
        let body: cardgate_spine::wire::ErrorBody = serde_json::from_slice(bytes).unwrap();
        body.error.as_str().to_owned()
    };

    for body in [
        b"{".to_vec(),
        b"[1,2,3]".to_vec(),
        b"{\"token\": 5}".to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"null".to_vec(),
    ] {
        let (status, bytes) = raw("/v1/tokens/introspect", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_of(&bytes), "malformed_request");
    }
    let (status, bytes) = raw("/v1/unlock/self-service", b"{\"uid\": \"x\"}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&bytes), "malformed_request");

    // Oversized: declared length above 64 KiB.
    let big = format!("{{\"token\": \"{}\"}}", "a".repeat(70 * 1024)).into_bytes();
    let (status, bytes) = raw("/v1/tokens/introspect", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_of(&bytes), "body_too_large");

    // Far too large: refused without reading (the client may only see the connection
    // close); the server is unaffected.
    let huge = vec![b' '; 2 * 1024 * 1024];
    let _ = call(
        lab.sim.addr(),
        lab.anonymous(),
        "POST",
        "/v1/tokens/introspect",
        None,
        Some(huge),
    )
    .await;

    // Oversized and chunked (no declared length), through curl.
    let ca = lab.write_service_ca();
    let file = lab.dir.path().join("big.json");
    std::fs::write(
        &file,
        format!("{{\"token\": \"{}\"}}", "b".repeat(100 * 1024)),
    )
    .unwrap();
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .args([
            "-H",
            "transfer-encoding: chunked",
            "-H",
            "content-type: application/json",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{}/v1/tokens/introspect", lab.sim.url()))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.ends_with("413"), "{stdout}");

    // Unknown endpoint and wrong method: JSON errors too.
    let (status, body) = lab.api("GET", "/v1/nothing-here", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "malformed_request");
    let (status, body) = lab.api("GET", "/login/authactivate", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "malformed_request");
    // Bearer junk.
    let (status, body) = lab
        .api("GET", "/v1/sessions/s-1", Some("not-a-token"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Still serving.
    let session = lab.login("asha").await;
    assert_eq!(session["uid"], ASHA);
    let (status, _) = lab.api("POST", "/login/authactivate", None, None).await;
    assert_eq!(status, StatusCode::OK, "an empty body counts as {{}}");
}
