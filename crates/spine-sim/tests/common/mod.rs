//! Shared test fixtures: a lab directory with a card CA, a service identity and provisioned
//! cards for a small pharmacy team, spine-sim started in-process on loopback, and a real
//! TLS + HTTP client (tokio-rustls and hyper) that presents a card's key as a software key.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cardgate_spine_sim::{RunningSim, SimConfig, SpineSim, init_service_dir};
use cardgate_vcard::card_file::Slot;
use cardgate_vcard::provision::{
    CardSpec, ProvisionedCard, RevokedCard, TestCa, Validity, provision, record_revocations,
};
use http_body_util::BodyExt as _;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Asha: a pharmacist with a locum profile and a registered email.
pub const ASHA: &str = "555000111222";
/// Ben: the pharmacy manager, Sponsor/LSA.
pub const BEN: &str = "555000333444";
/// Chloe: her card was cancelled (revoked).
pub const CHLOE: &str = "555000555666";
/// Dan: his card's certificates expired.
pub const DAN: &str = "555000777888";
/// Eve: an old-generation card, due for renewal.
pub const EVE: &str = "555000999000";
/// Fay: no registered contact, certificate due for renewal in 30 days.
pub const FAY: &str = "555000121212";

/// One provisioned card, as a test needs it.
pub struct TestCard {
    pub uid: String,
    pub serial: String,
    pub certificate: Vec<u8>,
    pub key_pkcs8: Vec<u8>,
    pub provisioned: ProvisionedCard,
}

/// A lab directory and a running sim.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub ca_dir: PathBuf,
    pub outbox: PathBuf,
    pub cards: BTreeMap<&'static str, TestCard>,
    pub sim: RunningSim,
}

fn card(ca: &TestCa, spec: CardSpec) -> TestCard {
    let provisioned = provision(ca, &spec).unwrap();
    TestCard {
        uid: provisioned.card.profile.holder_uuid.clone(),
        serial: provisioned.card.profile.card_serial.clone(),
        certificate: provisioned.certificates[&Slot::Authentication].clone(),
        key_pkcs8: provisioned.card.slots[&Slot::Authentication]
            .private_key_pkcs8
            .to_vec(),
        provisioned,
    }
}

impl Lab {
    /// Makes the CA, the service identity, the team's cards (Chloe's revoked) and starts
    /// the sim with `max_idle_time`.
    pub async fn start_with_idle(max_idle_time: u64) -> Lab {
        Lab::start_with(max_idle_time, false, "").await
    }

    /// A lab in which Asha's card has RSA-2048 keys (PKCS#1 v1.5 CMS, RSA-PSS in TLS 1.3).
    pub async fn start_rsa() -> Lab {
        Lab::start_with(900, true, "").await
    }

    /// The team's lab with `extra` appended to the configuration (an `[oidc]` table).
    #[allow(dead_code)]
    pub async fn start_with_extra(extra: &str) -> Lab {
        Lab::start_with(900, false, extra).await
    }

    async fn start_with(max_idle_time: u64, rsa_asha: bool, extra: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("card-ca");
        let service_dir = dir.path().join("service");
        let outbox = dir.path().join("outbox.jsonl");
        let ca = TestCa::generate("Cardgate Test Card CA").unwrap();
        ca.save(&ca_dir).unwrap();
        init_service_dir(&service_dir).unwrap();

        let mut cards = BTreeMap::new();
        let asha = CardSpec::new("Asha Patel", ASHA);
        let asha = if rsa_asha {
            asha.key_algorithm(cardgate_vcard::card_file::KeyAlgorithm::Rsa2048)
        } else {
            asha
        };
        cards.insert("asha", card(&ca, asha));
        cards.insert("ben", card(&ca, CardSpec::new("Ben Okafor", BEN)));
        cards.insert("chloe", card(&ca, CardSpec::new("Chloe Smith", CHLOE)));
        cards.insert(
            "dan",
            card(
                &ca,
                CardSpec::new("Dan Jones", DAN).validity(Validity::Expired),
            ),
        );
        cards.insert(
            "eve",
            card(
                &ca,
                CardSpec::new("Eve Brown", EVE)
                    .old_generation()
                    .validity(Validity::ExpiresInDays(30)),
            ),
        );
        cards.insert(
            "fay",
            card(
                &ca,
                CardSpec::new("Fay Green", FAY).validity(Validity::ExpiresInDays(30)),
            ),
        );
        let revoked = RevokedCard::all_of(
            &cards["chloe"].provisioned.card,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        record_revocations(&ca_dir, &revoked).unwrap();

        let text = config_text(
            dir.path(),
            &ca_dir,
            &service_dir,
            &outbox,
            &cards,
            max_idle_time,
        );
        let text = format!(
            "{text}\n{}",
            extra.replace("@DIR@", &dir.path().display().to_string())
        );
        let config = SimConfig::from_toml(&text).unwrap();
        let sim = SpineSim::start(config).await.unwrap();
        Lab {
            dir,
            ca_dir,
            outbox,
            cards,
            sim,
        }
    }

    /// [`Lab::start_with_idle`] with the default 900 s.
    pub async fn start() -> Lab {
        Lab::start_with_idle(900).await
    }

    /// A TLS client trusting the service CA, presenting `card`'s authentication key.
    pub fn client_for(&self, card: &str) -> Arc<ClientConfig> {
        let c = &self.cards[card];
        client_config(
            self.sim.service_ca_pem(),
            Some((&c.certificate, &c.key_pkcs8)),
        )
    }

    /// A TLS client with no client certificate.
    pub fn anonymous(&self) -> Arc<ClientConfig> {
        client_config(self.sim.service_ca_pem(), None)
    }

    /// A mode B login for `card`: the session JSON.
    pub async fn login(&self, card: &str) -> serde_json::Value {
        let (status, body) = call(
            self.sim.mtls_addr(),
            self.client_for(card),
            "POST",
            "/v1/sessions",
            None,
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    /// A mode B login that also selects `role`: (session JSON, token).
    pub async fn login_as(&self, card: &str, role: &str) -> (serde_json::Value, String) {
        let session = self.login(card).await;
        let token = session["token"].as_str().unwrap().to_owned();
        let id = session["session_id"].as_str().unwrap();
        let (status, body) = self
            .api(
                "PUT",
                &format!("/v1/sessions/{id}/role"),
                Some(&token),
                Some(serde_json::json!({ "role_profile_id": role })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body, token)
    }

    /// A JSON call on the API listener without a client certificate.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let (status, bytes) = call(
            self.sim.addr(),
            self.anonymous(),
            method,
            path,
            token,
            body.map(|b| serde_json::to_vec(&b).unwrap()),
        )
        .await
        .unwrap();
        let value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }

    /// Writes `card`'s certificate and key as PEM files for openssl and curl.
    pub fn write_pem_identity(&self, card: &str) -> (PathBuf, PathBuf) {
        let c = &self.cards[card];
        let cert = self.dir.path().join(format!("{card}.crt.pem"));
        let key = self.dir.path().join(format!("{card}.key.pem"));
        std::fs::write(&cert, pem("CERTIFICATE", &c.certificate)).unwrap();
        std::fs::write(&key, pem("PRIVATE KEY", &c.key_pkcs8)).unwrap();
        (cert, key)
    }

    /// Writes the service CA as a PEM file.
    pub fn write_service_ca(&self) -> PathBuf {
        let path = self.dir.path().join("service-ca.pem");
        std::fs::write(&path, self.sim.service_ca_pem()).unwrap();
        path
    }
}

fn config_text(
    _base: &Path,
    ca_dir: &Path,
    service_dir: &Path,
    outbox: &Path,
    cards: &BTreeMap<&'static str, TestCard>,
    max_idle_time: u64,
) -> String {
    let mut text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
listen_mtls = "127.0.0.1:0"
service_dir = "{}"
card_ca_dir = "{}"
outbox = "{}"
max_idle_time = {max_idle_time}

[[users]]
uid = "{ASHA}"
name = "Asha Patel"
email = "asha.patel@nhs.example"
[[users.role_profiles]]
id = "RP-1001"
job_role = "Pharmacist"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download", "eps.dispense-notify", "eps.claim", "scr.view"]
[[users.role_profiles]]
id = "RP-1002"
job_role = "Locum Pharmacist"
ods_code = "FFFFF"
organisation_name = "Locum organisation"
activities = ["eps.download", "eps.dispense-notify"]

[[users]]
uid = "{BEN}"
name = "Ben Okafor"
email = "ben.okafor@nhs.example"
[[users.role_profiles]]
id = "RP-2001"
job_role = "Pharmacy Manager"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download", "admin.unlock", "admin.tac", "admin.renew"]

[[users]]
uid = "{CHLOE}"
name = "Chloe Smith"

[[users]]
uid = "{DAN}"
name = "Dan Jones"

[[users]]
uid = "{EVE}"
name = "Eve Brown"
mobile = "07700900123"

[[users]]
uid = "{FAY}"
name = "Fay Green"
"#,
        service_dir.display(),
        ca_dir.display(),
        outbox.display(),
    );
    for (i, card) in cards.values().enumerate() {
        text.push_str(&format!(
            "\n[[cards]]\nserial = \"{}\"\nuid = \"{}\"\nunlock_code = \"9876543{i}\"\n",
            card.serial, card.uid
        ));
    }
    text
}

/// DER as PEM.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A TLS 1.3 client config with the ring provider, trusting `ca_pem` only.
pub fn client_config(ca_pem: &str, identity: Option<(&[u8], &[u8])>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
    roots.add(CertificateDer::from(pem.contents)).unwrap();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// One HTTP/1.1 request over a fresh TLS connection.
pub async fn call(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Vec<u8>), Box<dyn std::error::Error + Send + Sync>> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(http_body_util::Full::new(hyper::body::Bytes::from(
        body.unwrap_or_default(),
    )))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes().to_vec();
    Ok((status, bytes))
}

/// Connects, sends a request and returns the TLS error the exchange ended with (the
/// alert the server sent), or `None` if it succeeded.
pub async fn tls_failure(addr: SocketAddr, config: Arc<ClientConfig>) -> Option<rustls::Error> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let rustls_error = |e: std::io::Error| -> Option<rustls::Error> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned()
    };
    let mut tls = match TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
    {
        Ok(tls) => tls,
        Err(e) => return Some(rustls_error(e).expect("a TLS error")),
    };
    let request = b"POST /v1/sessions HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
    if let Err(e) = tls.write_all(request).await {
        return rustls_error(e);
    }
    let mut response = Vec::new();
    match tls.read_to_end(&mut response).await {
        Ok(_) => None,
        Err(e) => rustls_error(e),
    }
}

/// The JSON lines of the outbox.
pub fn outbox_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
