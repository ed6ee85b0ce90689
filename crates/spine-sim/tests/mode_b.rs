//! Mode B (TLS client authentication with the card) through the real stack: a rustls client
//! presenting a provisioned card's key against spine-sim's mTLS listener on loopback, the
//! session lifecycle, handshake refusals with the right TLS alert, and curl with the
//! provisioned identity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ASHA, Lab, call, tls_failure};
use hyper::StatusCode;
use rustls::AlertDescription;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_roles_introspection_and_logout() {
    let lab = Lab::start().await;
    let session = lab.login("asha").await;
    assert_eq!(session["uid"], ASHA);
    assert_eq!(session["name"], "Asha Patel");
    assert_eq!(session["max_idle_time"], 900);
    assert_eq!(session["selected_role_profile"], serde_json::Value::Null);
    let profiles = session["role_profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 2);
    assert_eq!(profiles[1]["ods_code"], "FFFFF");
    // The typed wire struct reads it too: the contract holds.
    let typed: cardgate_spine::wire::Session = serde_json::from_value(session.clone()).unwrap();
    assert_eq!(
        typed.logout_url,
        format!("/v1/sessions/{}", typed.session_id)
    );

    let token = session["token"].as_str().unwrap();
    let id = session["session_id"].as_str().unwrap();

    let (status, body) = lab
        .api(
            "PUT",
            &format!("/v1/sessions/{id}/role"),
            Some(token),
            Some(json!({"role_profile_id": "RP-9999"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "unknown_role_profile");

    let (status, body) = lab
        .api(
            "PUT",
            &format!("/v1/sessions/{id}/role"),
            Some(token),
            Some(json!({"role_profile_id": "RP-1001"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["selected_role_profile"], "RP-1001");

    let (status, body) = lab
        .api(
            "POST",
            "/v1/tokens/introspect",
            None,
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true);
    assert_eq!(body["uid"], ASHA);
    assert_eq!(body["role_profile_id"], "RP-1001");
    assert_eq!(body["ods_code"], "FA123");
    assert!(body["idle_expires_at"].is_string());

    // Switching role within the session is allowed.
    let (status, body) = lab
        .api(
            "PUT",
            &format!("/v1/sessions/{id}/role"),
            Some(token),
            Some(json!({"role_profile_id": "RP-1002"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body2) = lab
        .api("GET", &format!("/v1/sessions/{id}"), Some(token), None)
        .await;
    assert_eq!(body, body2);
    assert_eq!(body2["selected_role_profile"], "RP-1002");

    // Another session's token cannot read or end this one.
    let other = lab.login("ben").await;
    let (status, body) = lab
        .api(
            "DELETE",
            &format!("/v1/sessions/{id}"),
            other["token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorised");

    let (status, _) = lab
        .api("DELETE", &format!("/v1/sessions/{id}"), Some(token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
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
    let (status, body) = lab
        .api("GET", &format!("/v1/sessions/{id}"), Some(token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_card_is_refused_in_the_handshake_with_certificate_revoked() {
    let lab = Lab::start().await;
    let error = tls_failure(lab.sim.mtls_addr(), lab.client_for("chloe")).await;
    assert_eq!(
        error,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateRevoked
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_revoked_while_running_is_refused_at_its_next_handshake() {
    let lab = Lab::start().await;
    assert_eq!(
        tls_failure(lab.sim.mtls_addr(), lab.client_for("asha")).await,
        None
    );
    let revoked = cardgate_vcard::provision::RevokedCard::all_of(
        &lab.cards["asha"].provisioned.card,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    // A different size makes the register's change visible even within one mtime tick.
    cardgate_vcard::provision::record_revocations(&lab.ca_dir, &revoked).unwrap();
    assert_eq!(
        tls_failure(lab.sim.mtls_addr(), lab.client_for("asha")).await,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateRevoked
        ))
    );
    // And the CRL endpoint lists her card now.
    let (status, der) = call(
        lab.sim.addr(),
        lab.anonymous(),
        "GET",
        "/v1/crl",
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
    let serial = x509_parser::parse_x509_certificate(&lab.cards["asha"].certificate)
        .unwrap()
        .1
        .raw_serial()
        .to_vec();
    assert!(
        crl.iter_revoked_certificates()
            .any(|r| r.raw_serial() == serial.as_slice())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_card_is_refused_in_the_handshake_with_certificate_expired() {
    let lab = Lab::start().await;
    let error = tls_failure(lab.sim.mtls_addr(), lab.client_for("dan")).await;
    assert_eq!(
        error,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateExpired
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused() {
    let lab = Lab::start().await;
    let error = tls_failure(lab.sim.mtls_addr(), lab.anonymous()).await;
    assert_eq!(
        error,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
        ))
    );
    // On the server-auth listener the same call is answered, with the reason.
    let (status, body) = lab.api("POST", "/v1/sessions", None, Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "no_client_certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let lab = Lab::start().await;
    let other_ca = cardgate_vcard::provision::TestCa::generate("Someone Else").unwrap();
    let stranger = cardgate_vcard::provision::provision(
        &other_ca,
        &cardgate_vcard::provision::CardSpec::new("Mallory", ASHA),
    )
    .unwrap();
    let slot = cardgate_vcard::card_file::Slot::Authentication;
    let config = common::client_config(
        lab.sim.service_ca_pem(),
        Some((
            &stranger.certificates[&slot],
            &stranger.card.slots[&slot].private_key_pkcs8,
        )),
    );
    let error = tls_failure(lab.sim.mtls_addr(), config).await;
    assert_eq!(
        error,
        Some(rustls::Error::AlertReceived(AlertDescription::UnknownCA))
    );
}

async fn curl(args: &[&str]) -> (String, String) {
    let output = tokio::process::Command::new("curl")
        .args(args)
        .output()
        .await
        .expect("curl must be installed (scripts/setup installs it)");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_the_provisioned_identity_talks_to_spine_sim() {
    let lab = Lab::start().await;
    let (cert, key) = lab.write_pem_identity("asha");
    let ca = lab.write_service_ca();
    let url = format!("{}/v1/sessions", lab.sim.mtls_url());
    let (stdout, stderr) = curl(&[
        "-sS",
        "--tlsv1.3",
        "--cacert",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-H",
        "content-type: application/json",
        "-d",
        "{}",
        "-w",
        "\n%{http_code}",
        &url,
    ])
    .await;
    let (body, code) = stdout
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("{stdout} {stderr}"));
    assert_eq!(code, "201", "{body} {stderr}");
    let session: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(session["uid"], ASHA);

    let crl_path = lab.dir.path().join("crl.der");
    let (stdout, stderr) = curl(&[
        "-sS",
        "--cacert",
        ca.to_str().unwrap(),
        "-o",
        crl_path.to_str().unwrap(),
        "-w",
        "%{http_code} %{content_type}",
        &format!("{}/v1/crl", lab.sim.url()),
    ])
    .await;
    assert_eq!(stdout, "200 application/pkix-crl", "{stderr}");
    let der = std::fs::read(&crl_path).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
    assert_eq!(
        crl.iter_revoked_certificates().count(),
        4,
        "Chloe's four certificates"
    );

    // curl without a client certificate is refused on the mTLS listener.
    let (stdout, _) = curl(&[
        "-sS",
        "--cacert",
        ca.to_str().unwrap(),
        "-d",
        "{}",
        "-w",
        "%{http_code}",
        &url,
    ])
    .await;
    assert!(stdout.ends_with("000"), "{stdout}");
}
