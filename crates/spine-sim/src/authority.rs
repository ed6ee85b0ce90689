//! The card CA as the national service runs it: trust anchor for card certificates, the
//! current CRL (regenerated when the RA's revocation register changes), the TLS client
//! verifier built from both, the card checks of `cardgate-certs`, and renewal signing.
//!
//! The CRL follows `revoked.json` in the CA directory: when `vcard ca revoke` (or a test's
//! `record_revocations`) adds a card, the next handshake and the next `GET /v1/crl` see it,
//! without a restart, as a real RA's cancellation reaches the service within its CRL cycle.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use cardgate_certs::{CheckPolicy, Crl, FindingKind, TrustAnchors, check_card_certificate};
use cardgate_spine::wire::ErrorCode;
use cardgate_vcard::provision::{CA_KEY_FILE, REVOKED_FILE, TestCa, load_revocations};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber, SubjectPublicKeyInfo,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName as TlsName, RootCertStore, SignatureScheme};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::api::ApiError;
use crate::error::SimError;

/// How long a CRL the sim issues is valid; it is reissued well before (see [`REISSUE_AFTER`]).
const CRL_VALIDITY_DAYS: u32 = 7;
/// A CRL older than this is reissued even if the register did not change.
const REISSUE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Validity of a renewed certificate: the two years one seed gives.
const RENEWED_VALIDITY_DAYS: i64 = 730;

/// What a card check yields for a usable card.
#[derive(Clone, Debug)]
pub(crate) struct CheckedCard {
    /// The holder's UUID from the certificate subject.
    pub uid: String,
    /// The certificate's notAfter.
    pub not_after: OffsetDateTime,
}

/// The CRL of the moment and the verifier built from it.
struct CrlSnapshot {
    register_stamp: Option<(SystemTime, u64)>,
    made_at: Instant,
    der: Arc<Vec<u8>>,
    parsed: Arc<Crl>,
    verifier: Arc<dyn ClientCertVerifier>,
}

/// The card CA's fixed material.
struct CaCore {
    dir: PathBuf,
    ca: TestCa,
    ca_key: KeyPair,
    anchors: TrustAnchors,
    roots: Arc<RootCertStore>,
    root_hints: Vec<TlsName>,
    provider: Arc<CryptoProvider>,
}

/// The card CA, shared by the TLS verifier and the handlers.
pub(crate) struct CardAuthority {
    core: CaCore,
    current: RwLock<Arc<CrlSnapshot>>,
}

impl std::fmt::Debug for CardAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardAuthority")
            .field("dir", &self.core.dir)
            .field("ca", &self.core.ca)
            .finish_non_exhaustive()
    }
}

impl CardAuthority {
    /// Loads the CA in `dir` and issues a first CRL from its register.
    pub fn load(dir: &Path, provider: Arc<CryptoProvider>) -> Result<CardAuthority, SimError> {
        let ca = TestCa::load(dir)?;
        // TestCa keeps its key private; renewal signs with the same key file it loaded.
        let key_path = dir.join(CA_KEY_FILE);
        let key_pem = std::fs::read_to_string(&key_path)
            .map(Zeroizing::new)
            .map_err(|e| SimError::ServiceIdentity {
                path: key_path.clone(),
                reason: e.to_string(),
            })?;
        let ca_key = KeyPair::from_pem(&key_pem).map_err(|source| SimError::Certificate {
            what: "the card CA key",
            source,
        })?;
        let anchors = TrustAnchors::from_der([ca.certificate_der()])?;
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.certificate_der().to_vec()))
            .map_err(|e| SimError::Tls(format!("card CA certificate: {e}")))?;
        let root_hints = roots.subjects();
        let core = CaCore {
            dir: dir.to_path_buf(),
            ca,
            ca_key,
            anchors,
            roots: Arc::new(roots),
            root_hints,
            provider,
        };
        let first = core.issue_snapshot()?;
        Ok(CardAuthority {
            core,
            current: RwLock::new(Arc::new(first)),
        })
    }

    /// The CA certificate as PEM (for agents' card trust store and curl tests).
    pub fn ca_pem(&self) -> String {
        self.core.ca.certificate_pem()
    }
}

impl CaCore {
    fn register_stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(self.dir.join(REVOKED_FILE)).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    fn issue_snapshot(&self) -> Result<CrlSnapshot, SimError> {
        let register_stamp = self.register_stamp();
        let revoked = load_revocations(&self.dir)?;
        let der = self.ca.crl_der(&revoked, CRL_VALIDITY_DAYS)?;
        let parsed = Crl::from_der(&der, &self.anchors)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
                .with_crls([CertificateRevocationListDer::from(der.clone())])
                // The card CA issues end-entity certificates directly; its own status is a trust
                // anchor's, not something a CRL of its own speaks about.
                .only_check_end_entity_revocation()
                .build()
                .map_err(|e| SimError::Tls(format!("client verifier: {e}")))?;
        tracing::info!(revoked = revoked.len(), "issued a card CRL");
        Ok(CrlSnapshot {
            register_stamp,
            made_at: Instant::now(),
            der: Arc::new(der),
            parsed: Arc::new(parsed),
            verifier,
        })
    }
}

impl CardAuthority {
    /// The current snapshot, reissued first if the register changed or the CRL is old.
    fn snapshot(&self) -> Arc<CrlSnapshot> {
        let current = match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if current.register_stamp == self.core.register_stamp()
            && current.made_at.elapsed() < REISSUE_AFTER
        {
            return current;
        }
        match self.core.issue_snapshot() {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                match self.current.write() {
                    Ok(mut guard) => *guard = fresh.clone(),
                    Err(poisoned) => *poisoned.into_inner() = fresh.clone(),
                }
                fresh
            }
            Err(e) => {
                // Keep the last good CRL (it still lists every card revoked before) and say
                // so loudly: the register needs fixing.
                tracing::error!(error = %e, "cannot reissue the card CRL; keeping the last one");
                current
            }
        }
    }

    /// The current CRL (DER) for `GET /v1/crl`.
    pub fn crl_der(&self) -> Arc<Vec<u8>> {
        self.snapshot().der.clone()
    }

    /// Checks a card's authentication certificate (validity, chain, CRL, key usage, holder
    /// UUID) with `cardgate-certs`, mapping the most important blocking finding to the
    /// protocol's code. `card_serial` is the one the directory knows for the holder, if any.
    pub fn check(
        &self,
        certificate_der: &[u8],
        card_serial: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<CheckedCard, ApiError> {
        let snapshot = self.snapshot();
        // The serial only feeds the old-generation rule, which is not a login question.
        let serial = card_serial.unwrap_or("0");
        let report = check_card_certificate(
            certificate_der,
            &self.core.anchors,
            Some(&snapshot.parsed),
            serial,
            now,
            &CheckPolicy::default(),
        )
        .map_err(|e| {
            ApiError::new(
                ErrorCode::CertificateUntrusted,
                format!("The certificate cannot be read: {e}"),
            )
        })?;
        const PRIORITY: [(FindingKind, ErrorCode); 7] = [
            (FindingKind::Revoked, ErrorCode::CertificateRevoked),
            (
                FindingKind::ChainNotVerified,
                ErrorCode::CertificateUntrusted,
            ),
            (FindingKind::Expired, ErrorCode::CertificateExpired),
            (FindingKind::NotYetValid, ErrorCode::CertificateNotYetValid),
            (
                FindingKind::KeyUsageUnsuitable,
                ErrorCode::CertificateUntrusted,
            ),
            (
                FindingKind::RevocationUnknown,
                ErrorCode::CertificateUntrusted,
            ),
            (FindingKind::NoHolderUuid, ErrorCode::UnknownUser),
        ];
        for (kind, code) in PRIORITY {
            if let Some(finding) = report.finding(kind)
                && finding.severity == cardgate_certs::Severity::Blocking
            {
                return Err(ApiError::new(
                    code,
                    format!("{} {}", finding.message, finding.next_step),
                ));
            }
        }
        if let cardgate_certs::Verdict::Unusable { reason } = report.verdict() {
            return Err(ApiError::new(
                ErrorCode::CertificateUntrusted,
                format!("{} {}", reason.message, reason.next_step),
            ));
        }
        let uid = report.holder_uuid.clone().ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownUser,
                "The certificate names no 12-digit user id.",
            )
        })?;
        Ok(CheckedCard {
            uid,
            not_after: report.not_after,
        })
    }

    /// Issues a renewed authentication certificate: the old certificate's subject, the new
    /// key (`spki_der`), two years from now, signed by the card CA.
    pub fn issue_renewal(
        &self,
        old_certificate_der: &[u8],
        spki_der: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "{what}");
            ApiError::new(
                ErrorCode::Internal,
                format!("Could not issue the certificate ({what})."),
            )
        };
        let (_, old) = x509_parser::parse_x509_certificate(old_certificate_der)
            .map_err(|e| internal("old certificate", &e))?;
        let public_key = SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| {
            ApiError::new(
                ErrorCode::MalformedRequest,
                format!("The CSR's public key is not usable: {e}"),
            )
        })?;
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let mut params = CertificateParams::default();
        params.distinguished_name =
            copy_name(old.subject()).map_err(|e| internal("copying the subject", &e))?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(RENEWED_VALIDITY_DAYS);
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = Issuer::from_ca_cert_der(
            &CertificateDer::from(self.core.ca.certificate_der()),
            &self.core.ca_key,
        )
        .map_err(|e| internal("card CA as issuer", &e))?;
        let certificate = params
            .signed_by(&public_key, &issuer)
            .map_err(|e| internal("signing", &e))?;
        Ok(certificate.der().to_vec())
    }

    /// The TLS client verifier for the mTLS listener.
    pub fn client_verifier(self: &Arc<Self>) -> Arc<dyn ClientCertVerifier> {
        Arc::new(CardClientVerifier {
            authority: self.clone(),
        })
    }
}

/// A fresh positive 16-byte certificate serial from the system RNG.
fn random_serial() -> Result<SerialNumber, ApiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "The random generator failed."))?;
    bytes[0] = (bytes[0] & 0x7F) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Rebuilds an X.509 name attribute by attribute, keeping each string type (the UUID is a
/// PrintableString), so the renewed certificate's subject encodes as the old one did.
fn copy_name(name: &x509_parser::x509::X509Name<'_>) -> Result<DistinguishedName, String> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let mut dn = DistinguishedName::new();
    for attr in name.iter_attributes() {
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or("an attribute type OID has an arc too large")?
            .collect();
        let data = attr.attr_value().data;
        let text = std::str::from_utf8(data).map_err(|_| "an attribute is not UTF-8")?;
        let value = match attr.attr_value().header.tag() {
            Tag::PrintableString => {
                DnValue::PrintableString(text.try_into().map_err(|e: rcgen::Error| e.to_string())?)
            }
            Tag::Utf8String => DnValue::Utf8String(text.to_owned()),
            Tag::Ia5String => {
                DnValue::Ia5String(text.try_into().map_err(|e: rcgen::Error| e.to_string())?)
            }
            other => return Err(format!("unsupported string type {other:?} in the subject")),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// The mTLS listener's client verifier: rustls' WebPKI verifier with the card CA and the
/// current CRL, swapped for a fresh one when the register changes. Revoked certificates
/// fail with `certificate_revoked`, expired ones with `certificate_expired`.
struct CardClientVerifier {
    authority: Arc<CardAuthority>,
}

impl std::fmt::Debug for CardClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardClientVerifier")
    }
}

impl ClientCertVerifier for CardClientVerifier {
    fn root_hint_subjects(&self) -> &[TlsName] {
        &self.authority.core.root_hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result =
            self.authority
                .snapshot()
                .verifier
                .verify_client_cert(end_entity, intermediates, now);
        if let Err(e) = &result {
            tracing::info!(error = %e, "refused a client certificate in the handshake");
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self
                .authority
                .core
                .provider
                .signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self
                .authority
                .core
                .provider
                .signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.authority
            .core
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
