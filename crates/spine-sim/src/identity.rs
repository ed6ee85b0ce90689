//! The service identity: the service CA that agents pin and the server certificate (for
//! `127.0.0.1`, `::1` and `localhost`) it issued, stored as PEM files in the service
//! directory by `spine-sim init`.
//!
//! The service CA's private key is used once and thrown away: nothing but the server
//! certificate is ever signed with it, so there is no CA key on disk to protect.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::error::SimError;

/// The service CA certificate agents pin (`service-ca.crt.pem`).
pub const SERVICE_CA_FILE: &str = "service-ca.crt.pem";
/// The server certificate (`server.crt.pem`).
pub const SERVER_CERTIFICATE_FILE: &str = "server.crt.pem";
/// The server's private key (`server.key.pem`, mode 0600).
pub const SERVER_KEY_FILE: &str = "server.key.pem";

/// The loaded service identity.
pub struct ServiceIdentity {
    /// The service CA certificate as PEM: what an agent's configuration pins.
    pub ca_pem: String,
    /// The server certificate (DER).
    pub certificate: CertificateDer<'static>,
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ServiceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceIdentity")
            .field("certificate_len", &self.certificate.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ServiceIdentity {
    /// Makes a new service CA and a server certificate for the loopback names, valid for
    /// ten years (lab equipment; the agent pins the CA).
    pub fn generate() -> Result<ServiceIdentity, SimError> {
        let cert_err = |what| move |source| SimError::Certificate { what, source };
        let now = OffsetDateTime::now_utc();
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(cert_err("the service CA key"))?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::OrganizationName, "Cardgate Lab");
        ca.distinguished_name
            .push(DnType::CommonName, "spine-sim service CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = now - Duration::days(1);
        ca.not_after = now + Duration::days(3650);
        let ca_cert = ca
            .self_signed(&ca_key)
            .map_err(cert_err("the service CA certificate"))?;

        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err("the server key"))?;
        let mut server = CertificateParams::default();
        server.distinguished_name = DistinguishedName::new();
        server
            .distinguished_name
            .push(DnType::OrganizationName, "Cardgate Lab");
        server
            .distinguished_name
            .push(DnType::CommonName, "spine-sim");
        server.subject_alt_names = vec![
            SanType::DnsName(
                "localhost"
                    .try_into()
                    .map_err(cert_err("the server name"))?,
            ),
            SanType::IpAddress([127, 0, 0, 1].into()),
            SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
        ];
        server.is_ca = IsCa::ExplicitNoCa;
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.use_authority_key_identifier_extension = true;
        server.not_before = now - Duration::days(1);
        server.not_after = now + Duration::days(3650);
        let issuer = Issuer::from_params(&ca, &ca_key);
        let server_cert = server
            .signed_by(&key, &issuer)
            .map_err(cert_err("the server certificate"))?;
        Ok(ServiceIdentity {
            ca_pem: ca_cert.pem(),
            certificate: server_cert.der().clone(),
            key: Zeroizing::new(key.serialize_der()),
        })
    }

    /// Writes the three files into `dir` (created if needed). Refuses to replace any of
    /// them: agents may already pin the CA.
    pub fn save(&self, dir: &Path) -> Result<(), SimError> {
        std::fs::create_dir_all(dir).map_err(|source| SimError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        for name in [SERVICE_CA_FILE, SERVER_CERTIFICATE_FILE, SERVER_KEY_FILE] {
            let path = dir.join(name);
            if path.exists() {
                return Err(SimError::ServiceIdentityExists { path });
            }
        }
        let cert_pem = pem_block("CERTIFICATE", &self.certificate);
        let key_pem = Zeroizing::new(pem_block("PRIVATE KEY", &self.key));
        write_new(&dir.join(SERVICE_CA_FILE), self.ca_pem.as_bytes(), 0o644)?;
        write_new(
            &dir.join(SERVER_CERTIFICATE_FILE),
            cert_pem.as_bytes(),
            0o644,
        )?;
        write_new(&dir.join(SERVER_KEY_FILE), key_pem.as_bytes(), 0o600)
    }

    /// Reads a directory written by [`ServiceIdentity::save`].
    pub fn load(dir: &Path) -> Result<ServiceIdentity, SimError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(Zeroizing::new)
                .map_err(|e| SimError::ServiceIdentity {
                    path,
                    reason: e.to_string(),
                })
        };
        let ca_pem = read(SERVICE_CA_FILE)?.to_string();
        let cert_pem = read(SERVER_CERTIFICATE_FILE)?;
        let key_pem = read(SERVER_KEY_FILE)?;
        let invalid = |name: &str, reason: String| SimError::ServiceIdentity {
            path: dir.join(name),
            reason,
        };
        let (_, cert) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| invalid(SERVER_CERTIFICATE_FILE, format!("not a PEM file ({e})")))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| invalid(SERVER_KEY_FILE, format!("not a PKCS#8 key ({e})")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.contents)
            .map_err(|e| invalid(SERVER_CERTIFICATE_FILE, format!("not a certificate ({e})")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid(
                SERVER_CERTIFICATE_FILE,
                format!("its key does not match {SERVER_KEY_FILE}"),
            ));
        }
        if x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).is_err() {
            return Err(invalid(SERVICE_CA_FILE, "not a certificate PEM".into()));
        }
        Ok(ServiceIdentity {
            ca_pem,
            certificate: CertificateDer::from(cert.contents),
            key: Zeroizing::new(key.serialize_der()),
        })
    }

    /// The server key for rustls.
    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.to_vec()))
    }
}

/// DER as a PEM block with 64-character lines.
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), SimError> {
    let io = |source| SimError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(contents).map_err(io)
}
