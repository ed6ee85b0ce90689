//! The test certificate authority: a P-256 CA that issues the virtual cards' certificates,
//! keeps a list of revoked cards and signs CRLs, stored as two PEM files in a directory.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use super::{ProvisionError, random_serial_number};
use crate::card_file::{CardFile, Slot};

/// The CA certificate's file name inside a CA directory.
pub const CA_CERTIFICATE_FILE: &str = "ca.crt.pem";
/// The CA private key's file name inside a CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key.pem";
/// The revocation register's file name inside a CA directory (JSON list of [`RevokedCard`]).
pub const REVOKED_FILE: &str = "revoked.json";
/// The organisation (O) of a generated test CA; issued subjects repeat it, as a national
/// issuer's certificates all carry the issuing organisation.
pub const TEST_CA_ORGANISATION: &str = "Cardgate Lab";
/// How long a generated test CA is valid: long enough to outlive any card it issues.
const CA_VALIDITY_DAYS: i64 = 3650;

/// A test certificate authority: its key and self-signed certificate.
///
/// The lab's stand-in for the national smartcard CA: every virtual card chains to it, and
/// the agent under test is configured to trust it (and its CRL) instead of the real one.
pub struct TestCa {
    key: KeyPair,
    certificate_der: Vec<u8>,
    organisation: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of Debug output: CA material ends up in test logs.
        f.debug_struct("TestCa")
            .field("organisation", &self.organisation)
            .field("certificate_der_len", &self.certificate_der.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TestCa {
    /// Generates a fresh CA with a P-256 key, valid from yesterday for ten years, named
    /// `CN=<common_name>, O=Cardgate Lab`.
    pub fn generate(common_name: &str) -> Result<TestCa, ProvisionError> {
        let common_name = common_name.trim();
        if common_name.is_empty() || common_name.chars().count() > 64 {
            return Err(ProvisionError::InvalidCaName {
                name: common_name.to_owned(),
            });
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| {
            ProvisionError::Certificate {
                what: "the CA key".into(),
                source,
            }
        })?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, TEST_CA_ORGANISATION);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        params.serial_number = Some(random_serial_number());
        params.key_identifier_method = KeyIdMethod::Sha256;
        let certificate =
            params
                .self_signed(&key)
                .map_err(|source| ProvisionError::Certificate {
                    what: "the CA certificate".into(),
                    source,
                })?;
        Ok(TestCa {
            key,
            certificate_der: certificate.der().to_vec(),
            organisation: TEST_CA_ORGANISATION.to_owned(),
        })
    }

    /// Writes `ca.crt.pem` and `ca.key.pem` (mode 0600) into `dir`, creating it if needed.
    ///
    /// Refuses to replace an existing CA: cards issued by it would stop chaining.
    pub fn save(&self, dir: &Path) -> Result<(), ProvisionError> {
        std::fs::create_dir_all(dir).map_err(|source| ProvisionError::CaIo {
            path: dir.to_path_buf(),
            source,
        })?;
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERTIFICATE_FILE);
        for path in [&key_path, &cert_path] {
            if path.exists() {
                return Err(ProvisionError::CaExists { path: path.clone() });
            }
        }
        let key_pem = Zeroizing::new(self.key.serialize_pem());
        write_new_file(&key_path, key_pem.as_bytes(), 0o600)?;
        write_new_file(&cert_path, self.certificate_pem().as_bytes(), 0o644)
    }

    /// Reads a CA saved by [`TestCa::save`] and checks that key and certificate belong
    /// together.
    pub fn load(dir: &Path) -> Result<TestCa, ProvisionError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERTIFICATE_FILE);
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map(Zeroizing::new)
                .map_err(|source| ProvisionError::CaIo {
                    path: path.to_path_buf(),
                    source,
                })
        };
        let key_pem = read(&key_path)?;
        let cert_pem = read(&cert_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| ProvisionError::CaInvalid {
            path: key_path.clone(),
            reason: format!("not a PKCS#8 private key PEM ({e})"),
        })?;
        let invalid_cert = |reason: String| ProvisionError::CaInvalid {
            path: cert_path.clone(),
            reason,
        };
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| invalid_cert(format!("not a certificate PEM ({e})")))?;
        let certificate_der = pem.contents;
        let (_, certificate) = x509_parser::parse_x509_certificate(&certificate_der)
            .map_err(|e| invalid_cert(format!("not an X.509 certificate ({e})")))?;
        if certificate.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid_cert(format!(
                "its public key does not match {}",
                key_path.display()
            )));
        }
        let organisation = certificate
            .subject()
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok())
            .unwrap_or(TEST_CA_ORGANISATION)
            .to_owned();
        Ok(TestCa {
            key,
            certificate_der,
            organisation,
        })
    }

    /// The CA certificate (DER): what the agent's trust store needs.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The CA certificate as PEM.
    pub fn certificate_pem(&self) -> String {
        certificate_pem(&self.certificate_der)
    }

    /// The organisation (O) of the CA's subject, repeated in issued subjects.
    pub fn organisation(&self) -> &str {
        &self.organisation
    }

    /// A CRL listing `revoked`, issued now and due for renewal in `next_update_days` days.
    pub fn crl_der(
        &self,
        revoked: &[RevokedCard],
        next_update_days: u32,
    ) -> Result<Vec<u8>, ProvisionError> {
        let now = OffsetDateTime::now_utc();
        self.crl_der_between(
            revoked,
            now - Duration::minutes(1),
            now + Duration::days(i64::from(next_update_days)),
        )
    }

    /// A CRL with explicit issue and next-update times, so tests can build a stale CRL
    /// (next update in the past) and check the agent's behaviour with it.
    pub fn crl_der_between(
        &self,
        revoked: &[RevokedCard],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, ProvisionError> {
        if next_update <= this_update {
            return Err(ProvisionError::InvalidCrlWindow);
        }
        let crl_number = u64::try_from(OffsetDateTime::now_utc().unix_timestamp())
            .unwrap_or(1)
            .to_be_bytes();
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            // Seconds since the epoch: monotonic across runs without a counter file.
            crl_number: SerialNumber::from_slice(&crl_number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.certificate_serial),
                    revocation_time: r.revoked_at,
                    reason_code: Some(RevocationReason::CessationOfOperation),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl =
            params
                .signed_by(&self.issuer()?)
                .map_err(|source| ProvisionError::Certificate {
                    what: "the CRL".into(),
                    source,
                })?;
        Ok(crl.der().to_vec())
    }

    /// The rcgen issuer view of this CA, for signing certificates and CRLs.
    pub(super) fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, ProvisionError> {
        Issuer::from_ca_cert_der(&self.certificate_der.as_slice().into(), &self.key).map_err(
            |source| ProvisionError::Certificate {
                what: "the CA certificate (as issuer)".into(),
                source,
            },
        )
    }
}

/// One revoked certificate of a card: what the CA needs for its CRL, and what a person
/// reading the register needs to recognise the card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedCard {
    /// The certificate's serial number (big-endian bytes as in the certificate).
    #[serde(with = "hex")]
    pub certificate_serial: Vec<u8>,
    /// When the CA processed the revocation (the RA cancelling a lost or stolen card).
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// The card's serial number, as in its CHUID.
    pub card_serial: String,
    /// The holder's 12-digit UUID.
    pub holder_uuid: String,
    /// The slot whose certificate this was.
    pub slot: Slot,
}

impl RevokedCard {
    /// Every certificate on `card`, revoked at `revoked_at`: a cancelled card is cancelled
    /// whole and can never be reactivated.
    pub fn all_of(
        card: &CardFile,
        revoked_at: OffsetDateTime,
    ) -> Result<Vec<RevokedCard>, ProvisionError> {
        let mut revoked = Vec::new();
        for slot in Slot::ALL {
            let Some(object) = card.objects.get(&slot.certificate_object()) else {
                continue;
            };
            let der = super::objects::certificate_from_object(&object.0).ok_or(
                ProvisionError::CardCertificate {
                    slot,
                    reason: "the certificate object has no 70 (certificate) element".into(),
                },
            )?;
            let (_, certificate) = x509_parser::parse_x509_certificate(&der).map_err(|e| {
                ProvisionError::CardCertificate {
                    slot,
                    reason: format!("not an X.509 certificate ({e})"),
                }
            })?;
            revoked.push(RevokedCard {
                certificate_serial: certificate.raw_serial().to_vec(),
                revoked_at,
                card_serial: card.profile.card_serial.clone(),
                holder_uuid: card.profile.holder_uuid.clone(),
                slot,
            });
        }
        Ok(revoked)
    }
}

/// The revocation register kept in a CA directory (`revoked.json`); empty when absent.
pub fn load_revocations(dir: &Path) -> Result<Vec<RevokedCard>, ProvisionError> {
    let path = dir.join(REVOKED_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ProvisionError::CaIo { path, source }),
    };
    serde_json::from_str(&text).map_err(|e| ProvisionError::CaInvalid {
        path,
        reason: format!("not a revocation register ({e})"),
    })
}

/// Adds `revoked` to the register in `dir`, skipping certificates already listed, and
/// returns how many were new.
pub fn record_revocations(dir: &Path, revoked: &[RevokedCard]) -> Result<usize, ProvisionError> {
    let mut register = load_revocations(dir)?;
    let mut added = 0;
    for entry in revoked {
        if !register
            .iter()
            .any(|r| r.certificate_serial == entry.certificate_serial)
        {
            register.push(entry.clone());
            added += 1;
        }
    }
    let path = dir.join(REVOKED_FILE);
    let text = serde_json::to_string_pretty(&register).map_err(|e| ProvisionError::CaInvalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| ProvisionError::CaIo { path, source })?;
    Ok(added)
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), ProvisionError> {
    let io = |source| ProvisionError::CaIo {
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

/// A DER certificate as PEM (`-----BEGIN CERTIFICATE-----`, 64-character lines, LF).
pub fn certificate_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
