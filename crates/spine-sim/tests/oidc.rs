//! The OpenID Connect provider over real HTTPS on loopback: the whole authorization code flow
//! with PKCE, the card's key signing the provider's challenge over its origin (the token built
//! as the agent builds it), then refusals, each with its OAuth `error` and a description that
//! names the problem.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardgate_webauth::{
    AuthToken, ChallengeNonce, OriginRules, SignatureAlgorithm, WebOrigin, signed_data,
};
use common::Lab;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const REDIRECT: &str = "https://localhost:8443/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    cardgate_spine_sim::write_signing_key(&key).unwrap();
    let extra = format!(
        "[oidc]\nlisten = \"127.0.0.1:0\"\nsigning_key = \"{}\"\n[[oidc.clients]]\nclient_id = \"pmr\"\nname = \"Test PMR\"\nredirect_uris = [\"{REDIRECT}\"]\n",
        key.display()
    );
    let lab = Lab::start_with_extra(&extra).await;
    std::mem::forget(dir);
    lab
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(lab: &Lab, method: &str, path: &str, content_type: &str, body: &str) -> Answer {
    let tcp = TcpStream::connect(lab.sim.oidc_addr().unwrap())
        .await
        .unwrap();
    let tls = TlsConnector::from(lab.anonymous())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", content_type)
        .body(http_body_util::Full::new(hyper::body::Bytes::from(
            body.to_owned(),
        )))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        location,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn authorize_path(extra: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id=pmr&redirect_uri={}&scope=openid&state=st-1&nonce=n-1{extra}",
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    )
}

/// The sign-in page's request id and challenge.
fn page_data(page: &str) -> (String, String) {
    let attr = |name: &str| {
        let start = page.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        page[start..start + page[start..].find('"').unwrap()].to_owned()
    };
    (attr("data-request"), attr("data-nonce"))
}

/// The token as the agent builds it: the card's key signs the signed data for `origin`.
fn token(lab: &Lab, card: &str, origin: &str, nonce: &str) -> AuthToken {
    let c = &lab.cards[card];
    let key = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &c.key_pkcs8,
        &SystemRandom::new(),
    )
    .unwrap();
    let origin = WebOrigin::parse(origin, OriginRules::default()).unwrap();
    let nonce = ChallengeNonce::parse(nonce).unwrap();
    let der = key
        .sign(&SystemRandom::new(), &signed_data(&origin, &nonce))
        .unwrap();
    AuthToken::new(
        &c.certificate,
        SignatureAlgorithm::ES256,
        der.as_ref(),
        "cardgate/test",
    )
    .unwrap()
}

async fn sign_in(lab: &Lab, card: &str, origin: Option<&str>) -> (String, Answer) {
    let page = send(
        lab,
        "GET",
        &authorize_path(&format!(
            "&code_challenge={CHALLENGE}&code_challenge_method=S256"
        )),
        "text/plain",
        "",
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let (id, nonce) = page_data(&page.body);
    let issuer = lab.sim.oidc_issuer().unwrap().to_owned();
    let t = token(lab, card, origin.unwrap_or(&issuer), &nonce);
    let body = serde_json::json!({"token": serde_json::to_value(&t).unwrap()}).to_string();
    (
        id.clone(),
        send(
            lab,
            "POST",
            &format!("/signin/{id}"),
            "application/json",
            &body,
        )
        .await,
    )
}

async fn code_for(lab: &Lab) -> String {
    let (id, answer) = sign_in(lab, "asha", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let roles = answer.json()["roles"].clone();
    assert_eq!(roles[0]["person_roleid"], "RP-1001");
    let done = send(
        lab,
        "POST",
        &format!("/signin/{id}/role"),
        "application/json",
        r#"{"role_id":"RP-1001"}"#,
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let redirect = done.json()["redirect"].as_str().unwrap().to_owned();
    assert!(redirect.starts_with(REDIRECT));
    assert_eq!(query(&redirect, "state").as_deref(), Some("st-1"));
    query(&redirect, "code").unwrap()
}

fn token_form(code: &str, verifier: &str) -> String {
    format!(
        "grant_type=authorization_code&client_id=pmr&code={code}&code_verifier={verifier}&redirect_uri={}",
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    )
}

fn assert_error(answer: &Answer, error: &str, names: &str) {
    let body = answer.json();
    assert_eq!(body["error"], error, "{}", answer.body);
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(names), "{description}");
}

#[tokio::test]
async fn the_code_flow_with_pkce_issues_an_es256_id_token_with_the_cis2_claims() {
    let lab = lab().await;
    let discovery = send(
        &lab,
        "GET",
        "/.well-known/openid-configuration",
        "text/plain",
        "",
    )
    .await
    .json();
    assert_eq!(discovery["issuer"], lab.sim.oidc_issuer().unwrap());
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let code = code_for(&lab).await;
    let answer = send(
        &lab,
        "POST",
        "/token",
        "application/x-www-form-urlencoded",
        &token_form(&code, VERIFIER),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let tokens = answer.json();
    let id_token = tokens["id_token"].as_str().unwrap();
    let jwks = send(&lab, "GET", "/jwks", "text/plain", "").await.json();
    let jwk = &jwks["keys"][0];
    // The signature, checked with ring (not the provider's jsonwebtoken).
    let parts: Vec<&str> = id_token.split('.').collect();
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], lab.sim.oidc_issuer().unwrap());
    assert_eq!(claims["aud"], "pmr");
    assert_eq!(claims["sub"], common::ASHA);
    assert_eq!(claims["acr"], "AAL3_CIS2_SMARTCARD");
    assert_eq!(claims["amr"], serde_json::json!(["N3_SMARTCARD"]));
    assert_eq!(claims["nonce"], "n-1");
    assert_eq!(claims["selected_roleid"], "RP-1001");
    assert_eq!(claims["nhsid_nrbac_roles"][0]["org_code"], "FA123");
    assert_eq!(claims["nhsid_user_orgs"][0]["org_code"], "FA123");
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    // The code is single use.
    let again = send(
        &lab,
        "POST",
        "/token",
        "application/x-www-form-urlencoded",
        &token_form(&code, VERIFIER),
    )
    .await;
    assert_eq!(again.status, 400);
    assert_error(&again, "invalid_grant", "already used");
}

#[tokio::test]
async fn refusals_are_oauth_errors_that_name_the_problem() {
    let lab = lab().await;
    // Unknown client and unregistered redirect: a page, never a redirect.
    let page = send(
        &lab,
        "GET",
        &authorize_path("").replace("client_id=pmr", "client_id=nobody"),
        "text/plain",
        "",
    )
    .await;
    assert_eq!((page.status, page.location.is_none()), (400, true));
    assert!(page.body.contains("unknown client"), "{}", page.body);
    let page = send(
        &lab,
        "GET",
        &authorize_path("").replace("8443", "9999"),
        "text/plain",
        "",
    )
    .await;
    assert_eq!((page.status, page.location.is_none()), (400, true));
    assert!(page.body.contains("not registered"), "{}", page.body);
    // PKCE missing or plain: an error redirect.
    for (extra, names) in [
        ("", "code_challenge is missing"),
        (
            &*format!("&code_challenge={CHALLENGE}&code_challenge_method=plain"),
            "plain",
        ),
    ] {
        let answer = send(&lab, "GET", &authorize_path(extra), "text/plain", "").await;
        assert_eq!(answer.status, 302);
        let location = answer.location.unwrap();
        assert_eq!(
            query(&location, "error").as_deref(),
            Some("invalid_request")
        );
        assert!(
            query(&location, "error_description")
                .unwrap()
                .contains(names)
        );
        assert_eq!(query(&location, "state").as_deref(), Some("st-1"));
    }
    // Wrong origin, revoked card, expired card.
    let (_, answer) = sign_in(&lab, "asha", Some("https://evil.example")).await;
    assert_error(&answer, "access_denied", "does not match origin");
    assert!(
        answer.json()["redirect"]
            .as_str()
            .unwrap()
            .contains("error=access_denied")
    );
    let (_, answer) = sign_in(&lab, "chloe", None).await;
    assert_error(&answer, "access_denied", "cancelled");
    let (_, answer) = sign_in(&lab, "dan", None).await;
    assert_error(&answer, "access_denied", "expired");
    // A replayed challenge.
    let (id, answer) = sign_in(&lab, "asha", None).await;
    assert_eq!(answer.status, 200);
    let replay = send(
        &lab,
        "POST",
        &format!("/signin/{id}"),
        "application/json",
        r#"{"token":{}}"#,
    )
    .await;
    assert_error(&replay, "access_denied", "already used");
    // PKCE mismatch, unknown client at the token endpoint, a bad code.
    let code = code_for(&lab).await;
    let answer = send(
        &lab,
        "POST",
        "/token",
        "application/x-www-form-urlencoded",
        &token_form(&code, &"x".repeat(43)),
    )
    .await;
    assert_error(&answer, "invalid_grant", "PKCE");
    let answer = send(
        &lab,
        "POST",
        "/token",
        "application/x-www-form-urlencoded",
        &token_form("c", VERIFIER).replace("client_id=pmr", "client_id=x"),
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_error(&answer, "invalid_client", "Unknown client");
    let answer = send(
        &lab,
        "POST",
        "/token",
        "application/x-www-form-urlencoded",
        &token_form("nope", VERIFIER),
    )
    .await;
    assert_error(&answer, "invalid_grant", "not known");
    // A body too large.
    let answer = send(
        &lab,
        "POST",
        "/token",
        "application/x-www-form-urlencoded",
        &"a".repeat(40_000),
    )
    .await;
    assert_eq!(answer.status, 413);
}

#[tokio::test]
async fn a_stale_challenge_ends_the_sign_in() {
    let lab = lab().await;
    let page = send(
        &lab,
        "GET",
        &authorize_path(&format!(
            "&code_challenge={CHALLENGE}&code_challenge_method=S256"
        )),
        "text/plain",
        "",
    )
    .await;
    let (id, nonce) = page_data(&page.body);
    lab.sim.advance_clock(std::time::Duration::from_secs(
        cardgate_webauth::NONCE_LIFETIME_SECS + 1,
    ));
    let issuer = lab.sim.oidc_issuer().unwrap().to_owned();
    let t = token(&lab, "asha", &issuer, &nonce);
    let body = serde_json::json!({"token": serde_json::to_value(&t).unwrap()}).to_string();
    let answer = send(
        &lab,
        "POST",
        &format!("/signin/{id}"),
        "application/json",
        &body,
    )
    .await;
    assert_error(&answer, "access_denied", "stale");
}
