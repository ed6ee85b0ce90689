//! Mode A: verification of the card's CMS `SignedData` over a challenge (RFC 5652 §5.4), as
//! `openssl cms -verify -binary` does it: attached `id-data` content equal to the challenge,
//! one signer identified by issuer and serial, signed attributes `contentType` = `id-data`
//! and `messageDigest` = SHA-256(content), and the signature over the DER of the signed
//! attributes re-tagged as `SET OF`, checked with ring against the signer certificate's key.
//!
//! Returns the signer's certificate; the chain, validity and CRL checks come after, in
//! [`crate::authority`].

use cardgate_spine::wire::ErrorCode;
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode as _, Encode as _};

use crate::api::ApiError;

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// Some signers name the key type instead of the signature algorithm for ECDSA.
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// OpenSSL writes `rsaEncryption` as the CMS signature algorithm for PKCS#1 v1.5.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

fn malformed(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::MalformedRequest, message)
}

fn bad_signature(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadSignature, message)
}

/// Verifies `signed_data` (DER `ContentInfo`) over `challenge`; returns the signer's
/// certificate (DER).
pub(crate) fn verify_challenge_signature(
    signed_data: &[u8],
    challenge: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let info = ContentInfo::from_der(signed_data)
        .map_err(|e| malformed(format!("signed_data is not a CMS ContentInfo: {e}")))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(malformed("signed_data must hold SignedData"));
    }
    let signed: SignedData = info
        .content
        .decode_as()
        .map_err(|e| malformed(format!("signed_data is not a CMS SignedData: {e}")))?;
    if signed.encap_content_info.econtent_type != ID_DATA {
        return Err(malformed(
            "the encapsulated content must be of type id-data",
        ));
    }
    let content = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| malformed("the challenge must be attached (not a detached signature)"))?
        .decode_as::<OctetString>()
        .map_err(|e| {
            malformed(format!(
                "the encapsulated content is not an OCTET STRING: {e}"
            ))
        })?;
    if content.as_bytes() != challenge {
        return Err(bad_signature(
            "The signature is over something other than this challenge.",
        ));
    }

    let signers = signed.signer_infos.0.as_slice();
    let [signer] = signers else {
        return Err(malformed(format!(
            "exactly one SignerInfo is expected, found {}",
            signers.len()
        )));
    };
    let SignerIdentifier::IssuerAndSerialNumber(sid) = &signer.sid else {
        return Err(malformed(
            "the signer must be identified by issuer and serial number",
        ));
    };
    let certificate = signed
        .certificates
        .as_ref()
        .and_then(|set| {
            set.0.iter().find_map(|choice| match choice {
                CertificateChoices::Certificate(c)
                    if c.tbs_certificate.issuer == sid.issuer
                        && c.tbs_certificate.serial_number == sid.serial_number =>
                {
                    Some(c)
                }
                _ => None,
            })
        })
        .ok_or_else(|| malformed("the signer's certificate is not in the SignedData"))?;
    let certificate_der = certificate
        .to_der()
        .map_err(|e| malformed(format!("the signer's certificate cannot be encoded: {e}")))?;

    if signer.digest_alg.oid != ID_SHA256 {
        return Err(malformed("the digest algorithm must be SHA-256"));
    }
    let attributes = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| malformed("signed attributes (contentType, messageDigest) are required"))?;
    let single_value = |oid: ObjectIdentifier, name: &str| {
        let attribute = attributes
            .iter()
            .find(|a| a.oid == oid)
            .ok_or_else(|| malformed(format!("the {name} signed attribute is missing")))?;
        match attribute.values.as_slice() {
            [value] => Ok(value.clone()),
            _ => Err(malformed(format!(
                "the {name} signed attribute must have one value"
            ))),
        }
    };
    let content_type: ObjectIdentifier = single_value(ID_CONTENT_TYPE, "contentType")?
        .decode_as()
        .map_err(|e| malformed(format!("contentType is not an OID: {e}")))?;
    if content_type != ID_DATA {
        return Err(malformed(
            "the contentType signed attribute must be id-data",
        ));
    }
    let digest: OctetString = single_value(ID_MESSAGE_DIGEST, "messageDigest")?
        .decode_as()
        .map_err(|e| malformed(format!("messageDigest is not an OCTET STRING: {e}")))?;
    let expected = ring::digest::digest(&ring::digest::SHA256, content.as_bytes());
    if digest.as_bytes() != expected.as_ref() {
        return Err(bad_signature(
            "The messageDigest attribute does not match the challenge.",
        ));
    }
    // RFC 5652 §5.4: the signature covers the attributes' DER with the SET OF tag, not the
    // [0] IMPLICIT tag they travel under.
    let message = attributes
        .to_der()
        .map_err(|e| malformed(format!("the signed attributes cannot be encoded: {e}")))?;

    let algorithm: &'static dyn ring::signature::VerificationAlgorithm =
        match signer.signature_algorithm.oid {
            oid if oid == ECDSA_WITH_SHA256 || oid == ID_EC_PUBLIC_KEY => {
                &ring::signature::ECDSA_P256_SHA256_ASN1
            }
            oid if oid == RSA_ENCRYPTION || oid == SHA256_WITH_RSA => {
                &ring::signature::RSA_PKCS1_2048_8192_SHA256
            }
            oid => {
                return Err(malformed(format!(
                    "signature algorithm {oid} is not supported (ecdsa-with-SHA256 or \
                     sha256WithRSAEncryption)"
                )));
            }
        };
    let (_, parsed) = x509_parser::parse_x509_certificate(&certificate_der)
        .map_err(|e| malformed(format!("the signer's certificate is not X.509: {e}")))?;
    let key = ring::signature::UnparsedPublicKey::new(
        algorithm,
        parsed.public_key().subject_public_key.data.as_ref(),
    );
    key.verify(&message, signer.signature.as_bytes())
        .map_err(|_| {
            bad_signature("The card's signature does not verify with its certificate's key.")
        })?;
    Ok(certificate_der)
}
