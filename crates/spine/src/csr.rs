//! Certificate renewal with a key made on the card: a PKCS#10 request for the new key, signed
//! by the card, naming the holder as the current certificate does.
//!
//! The renewal the issue describes composes as:
//! `authenticate_management_key` → `generate_key` → [`card_certificate_request`] →
//! [`crate::SpineClient::renew_certificate`] → `write_certificate`. Note the order's cost:
//! PIV has no staging slot, so from `generate_key` until `write_certificate` the slot holds a
//! key its certificate does not match; a renewal that fails half-way leaves the card needing
//! another renewal attempt (the session stays valid, the old certificate is not revoked).

use std::sync::Mutex;

use cardgate_piv::{
    CardChannel, KeyAlgorithm, PivClient, PublicKey, Sha256Digest, SignInput, Slot,
};
use der::Encode as _;
use der::asn1::Uint;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, PublicKeyData, SignatureAlgorithm,
    SigningKey,
};
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::SpineError;
use crate::signer::{Check, check_signature_with_key};

/// The new key as rcgen sees it: the public key the card returned, and a signature function
/// that asks the card.
struct CardCsrKey<'a> {
    /// The subject public key's bytes: the EC point, or the RSAPublicKey DER.
    key: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
    kind: KeyAlgorithm,
    sign: Mutex<&'a mut dyn FnMut(SignInput) -> Result<Vec<u8>, SpineError>>,
    /// The card's error, kept for the caller (rcgen's error cannot carry it).
    failure: Mutex<Option<SpineError>>,
}

impl PublicKeyData for CardCsrKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

impl SigningKey for CardCsrKey<'_> {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let digest = Sha256Digest::of(message);
        let (input, check) = match self.kind {
            KeyAlgorithm::Rsa2048 => (SignInput::RsaPkcs1Sha256(digest), Check::RsaPkcs1Sha256),
            _ => (SignInput::EcdsaP256Sha256(digest), Check::EcdsaSha256),
        };
        let result = match self.sign.lock() {
            Ok(mut sign) => (*sign)(input),
            Err(_) => Err(SpineError::CardUnavailable {
                reason: "the card's signing function failed earlier",
            }),
        }
        .and_then(|signature| {
            check_signature_with_key(&self.key, check, message, &signature).map(|()| signature)
        });
        result.map_err(|e| {
            if let Ok(mut failure) = self.failure.lock() {
                *failure = Some(e);
            }
            rcgen::Error::RemoteKeyError
        })
    }
}

/// A PKCS#10 request (DER) for `public_key`, with the subject of `current_certificate_der`
/// (the holder's current certificate: the renewed one keeps its subject), signed through
/// `sign` by the card that holds the new key.
pub fn certificate_request(
    public_key: &PublicKey,
    current_certificate_der: &[u8],
    sign: &mut dyn FnMut(SignInput) -> Result<Vec<u8>, SpineError>,
) -> Result<Vec<u8>, SpineError> {
    let (key, algorithm, kind) = match public_key {
        PublicKey::EccP256 { point } => (
            point.clone(),
            &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EccP256,
        ),
        PublicKey::Rsa2048 { modulus, exponent } => (
            rsa_public_key_der(modulus, exponent)?,
            &rcgen::PKCS_RSA_SHA256,
            KeyAlgorithm::Rsa2048,
        ),
        other => {
            return Err(SpineError::UnsupportedCard {
                reason: format!("no certificate request for a {other:?} key"),
            });
        }
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = subject_of(current_certificate_der)?;
    let card_key = CardCsrKey {
        key,
        algorithm,
        kind,
        sign: Mutex::new(sign),
        failure: Mutex::new(None),
    };
    match params.serialize_request(&card_key) {
        Ok(request) => Ok(request.der().to_vec()),
        Err(e) => Err(card_key
            .failure
            .lock()
            .ok()
            .and_then(|mut f| f.take())
            .unwrap_or_else(|| SpineError::Protocol {
                reason: format!("the certificate request could not be built: {e}"),
            })),
    }
}

/// Generates a new key of `algorithm` in `slot` on the card and returns a certificate request
/// for it, signed by the card. The management key must be authenticated and the passcode
/// verified first; the old key in the slot is gone once this starts.
pub fn card_certificate_request<C: CardChannel>(
    client: &mut PivClient<C>,
    slot: Slot,
    algorithm: KeyAlgorithm,
    current_certificate_der: &[u8],
) -> Result<Vec<u8>, SpineError> {
    let public_key = client
        .generate_key(slot, algorithm)
        .map_err(SpineError::from_card)?;
    certificate_request(&public_key, current_certificate_der, &mut |input| {
        client.sign(slot, input).map_err(SpineError::from_card)
    })
}

/// The subject of a certificate as rcgen's name, attribute by attribute in order, keeping
/// each value's string type (the server compares subjects).
fn subject_of(certificate_der: &[u8]) -> Result<DistinguishedName, SpineError> {
    let unusable = |reason: String| SpineError::UnsupportedCard {
        reason: format!("the current certificate's subject cannot be copied: {reason}"),
    };
    let (_, certificate) = X509Certificate::from_der(certificate_der)
        .map_err(|e| unusable(format!("the certificate does not parse: {e}")))?;
    let mut name = DistinguishedName::new();
    for attribute in certificate.subject().iter_attributes() {
        let oid: Vec<u64> = attribute
            .attr_type()
            .iter()
            .ok_or_else(|| unusable("an attribute type is out of range".into()))?
            .collect();
        let value = attribute.attr_value();
        let text = std::str::from_utf8(value.data)
            .map_err(|_| unusable("an attribute is not text".into()))?;
        let value = if value.header.tag() == Tag::PrintableString {
            DnValue::PrintableString(
                text.try_into()
                    .map_err(|_| unusable("a PrintableString is not printable".into()))?,
            )
        } else {
            DnValue::Utf8String(text.to_owned())
        };
        name.push(DnType::from_oid(&oid), value);
    }
    Ok(name)
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017).
fn rsa_public_key_der(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, SpineError> {
    let invalid = |e: der::Error| SpineError::UnsupportedCard {
        reason: format!("the card's RSA public key cannot be encoded: {e}"),
    };
    let parts = vec![
        Uint::new(modulus).map_err(invalid)?,
        Uint::new(exponent).map_err(invalid)?,
    ];
    parts.to_der().map_err(invalid)
}
