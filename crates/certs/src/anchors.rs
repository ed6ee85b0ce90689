//! The configured issuing CAs ([`TrustAnchors`]): the certificates a card's authentication
//! certificate must be signed by, loaded once from the agent's configuration (DER or PEM).

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::{CertsError, der_error, truncation};

/// One issuing CA the agent trusts, kept as owned values so the daemon can hold it for its
/// whole life without keeping the configuration file's bytes around.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustAnchor {
    der: Vec<u8>,
    subject: String,
    subject_raw: Vec<u8>,
    spki_raw: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    may_sign_crls: bool,
}

impl TrustAnchor {
    /// The anchor's subject as RFC 4514 text, for reports and the service desk.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The anchor certificate as configured (DER), e.g. for the TLS client's trust store.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// When the anchor itself stops being valid: after it, no card can chain to it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// When the anchor itself becomes valid.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// The DER of the subject name, compared byte for byte with issuer names.
    pub(crate) fn subject_raw(&self) -> &[u8] {
        &self.subject_raw
    }

    /// The DER of the SubjectPublicKeyInfo: identifies the signing key across CRL and chain.
    pub(crate) fn spki_raw(&self) -> &[u8] {
        &self.spki_raw
    }

    /// Whether keyUsage (if present) allows cRLSign: a CA key limited to certificates must
    /// not be able to vouch for a CRL.
    pub(crate) fn may_sign_crls(&self) -> bool {
        self.may_sign_crls
    }

    /// The anchor's public key, parsed for a signature check.
    pub(crate) fn spki(&self) -> Option<SubjectPublicKeyInfo<'_>> {
        SubjectPublicKeyInfo::from_der(&self.spki_raw)
            .ok()
            .map(|(_, spki)| spki)
    }

    fn from_der(der: &[u8], what: &str) -> Result<TrustAnchor, CertsError> {
        let certificate = parse_certificate(der, what)?;
        let subject = certificate.subject().to_string();
        let basic = certificate
            .basic_constraints()
            .map_err(|_| CertsError::AnchorNotCa {
                subject: subject.clone(),
                reason: "it has more than one basicConstraints extension",
            })?;
        if !basic.is_some_and(|b| b.value.ca) {
            return Err(CertsError::AnchorNotCa {
                subject,
                reason: "its basicConstraints do not say cA",
            });
        }
        let key_usage = certificate
            .key_usage()
            .map_err(|_| CertsError::AnchorNotCa {
                subject: subject.clone(),
                reason: "it has more than one keyUsage extension",
            })?;
        if key_usage.as_ref().is_some_and(|k| !k.value.key_cert_sign()) {
            return Err(CertsError::AnchorNotCa {
                subject,
                reason: "its keyUsage does not allow keyCertSign",
            });
        }
        Ok(TrustAnchor {
            der: der.to_vec(),
            subject_raw: certificate.subject().as_raw().to_vec(),
            spki_raw: certificate.public_key().raw.to_vec(),
            not_before: certificate.validity().not_before.to_datetime(),
            not_after: certificate.validity().not_after.to_datetime(),
            may_sign_crls: key_usage.is_none_or(|k| k.value.crl_sign()),
            subject,
        })
    }
}

/// The issuing CA certificates a card must chain to. More than one is normal during a CA
/// key rollover, when cards from the old and the new CA are both in circulation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustAnchors {
    anchors: Vec<TrustAnchor>,
}

impl TrustAnchors {
    /// Trusts these DER certificates. Refuses an empty list (nothing could ever be trusted)
    /// and any certificate that is not a CA (a card's certificate configured by mistake).
    pub fn from_der<'a>(
        certificates: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<TrustAnchors, CertsError> {
        let anchors = certificates
            .into_iter()
            .enumerate()
            .map(|(i, der)| TrustAnchor::from_der(der, &format!("trust anchor {}", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        if anchors.is_empty() {
            return Err(CertsError::NoTrustAnchors);
        }
        Ok(TrustAnchors { anchors })
    }

    /// Trusts every `CERTIFICATE` block of a PEM file (other blocks are refused, so a private
    /// key pasted into the trust file is noticed rather than ignored).
    pub fn from_pem(pem: &[u8]) -> Result<TrustAnchors, CertsError> {
        let mut ders = Vec::new();
        for (i, block) in Pem::iter_from_buffer(pem).enumerate() {
            let what = format!("PEM block {} of the trust anchor file", i + 1);
            let block = block.map_err(|e| CertsError::MalformedPem {
                what: what.clone(),
                detail: e.to_string(),
            })?;
            if block.label != "CERTIFICATE" {
                return Err(CertsError::MalformedPem {
                    what,
                    detail: format!("it is a {:?} block, not a CERTIFICATE", block.label),
                });
            }
            ders.push(block.contents);
        }
        TrustAnchors::from_der(ders.iter().map(Vec::as_slice))
    }

    /// The anchors, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &TrustAnchor> {
        self.anchors.iter()
    }

    /// How many anchors are configured (never zero).
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Always false: construction refuses an empty list. Present because clippy expects it
    /// beside `len`.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Anchors whose subject is exactly `issuer_raw` (DER of a name).
    pub(crate) fn named(&self, issuer_raw: &[u8]) -> impl Iterator<Item = &TrustAnchor> {
        self.anchors
            .iter()
            .filter(move |a| a.subject_raw() == issuer_raw)
    }
}

/// Parses one DER certificate and refuses trailing bytes.
pub(crate) fn parse_certificate<'a>(
    der: &'a [u8],
    what: &str,
) -> Result<X509Certificate<'a>, CertsError> {
    if let Some(e) = truncation(what, der) {
        return Err(e);
    }
    let (rest, certificate) = X509Certificate::from_der(der).map_err(|e| der_error(what, &e))?;
    if !rest.is_empty() {
        return Err(CertsError::TrailingData {
            what: what.to_owned(),
            extra: rest.len(),
        });
    }
    Ok(certificate)
}
