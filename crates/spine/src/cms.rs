//! Mode A's signature: a CMS `SignedData` (RFC 5652) over the broker's challenge, with the
//! signature over the signed attributes made by the card.
//!
//! The shape is the one `docs/spine-protocol.md` fixes and `openssl cms -verify` accepts:
//! attached `id-data` content, the card's certificate included, one `SignerInfo` identified by
//! issuer and serial number, SHA-256, signed attributes `contentType` and `messageDigest`,
//! and `ecdsa-with-SHA256` or `sha256WithRSAEncryption`. The structures come from RustCrypto's
//! `cms`, so DER details (the SET OF ordering of the signed attributes, which is exactly what
//! the card signs) are right by construction rather than by hand-written bytes.

use cardgate_piv::{KeyAlgorithm, Sha256Digest, SignInput};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use der::{Any, Decode as _, Encode as _};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::error::SpineError;
use crate::signer::{CardSigner, Check, check_signature};

/// id-data (RFC 5652 §4).
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// id-signedData (RFC 5652 §5.1).
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// id-contentType (RFC 5652 §11.1).
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// id-messageDigest (RFC 5652 §11.2).
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// id-sha256 (RFC 5754 §2.2).
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// ecdsa-with-SHA256 (RFC 5754 §3.3).
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// sha256WithRSAEncryption (RFC 5754 §3.2).
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

fn encoding(what: &str, e: der::Error) -> SpineError {
    SpineError::Protocol {
        reason: format!("the CMS message could not be built ({what}: {e})"),
    }
}

/// Builds the DER `ContentInfo` of a CMS `SignedData` over `content` (the challenge,
/// attached), signed by the card behind `signer`. The card signs once; its signature is
/// checked against the certificate before the message is returned.
pub fn signed_data(signer: &dyn CardSigner, content: &[u8]) -> Result<Vec<u8>, SpineError> {
    let certificate_der = signer.certificate_der();
    let certificate =
        Certificate::from_der(certificate_der).map_err(|e| SpineError::UnsupportedCard {
            reason: format!("the card's certificate does not parse: {e}"),
        })?;

    // Signed attributes: contentType = id-data, messageDigest = SHA-256(content).
    let content_digest = Sha256Digest::of(content);
    let content_type = Attribute {
        oid: ID_CONTENT_TYPE,
        values: SetOfVec::try_from(vec![
            Any::encode_from(&ID_DATA).map_err(|e| encoding("contentType", e))?,
        ])
        .map_err(|e| encoding("contentType", e))?,
    };
    let message_digest = Attribute {
        oid: ID_MESSAGE_DIGEST,
        values: SetOfVec::try_from(vec![
            Any::encode_from(
                &OctetString::new(content_digest.as_bytes().to_vec())
                    .map_err(|e| encoding("messageDigest", e))?,
            )
            .map_err(|e| encoding("messageDigest", e))?,
        ])
        .map_err(|e| encoding("messageDigest", e))?,
    };
    let signed_attributes = SetOfVec::try_from(vec![content_type, message_digest])
        .map_err(|e| encoding("signed attributes", e))?;
    // What is signed is the DER of the attributes as a SET OF (tag 31), not the [0] IMPLICIT
    // form they take inside SignerInfo (RFC 5652 §5.4).
    let to_be_signed = signed_attributes
        .to_der()
        .map_err(|e| encoding("signed attributes", e))?;
    let digest = Sha256Digest::of(&to_be_signed);

    let (input, check, signature_oid, signature_parameters) = match signer.key_algorithm() {
        KeyAlgorithm::EccP256 => (
            SignInput::EcdsaP256Sha256(digest),
            Check::EcdsaSha256,
            ECDSA_WITH_SHA256,
            None,
        ),
        KeyAlgorithm::Rsa2048 => (
            SignInput::RsaPkcs1Sha256(digest),
            Check::RsaPkcs1Sha256,
            SHA256_WITH_RSA,
            Some(Any::null()),
        ),
        other => {
            return Err(SpineError::UnsupportedCard {
                reason: format!("no CMS signature scheme for {other:?} keys"),
            });
        }
    };
    let signature = signer.sign(input)?;
    check_signature(certificate_der, check, &to_be_signed, &signature)?;

    let sha256 = AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: None,
    };
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: certificate.tbs_certificate.issuer.clone(),
            serial_number: certificate.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: sha256.clone(),
        signed_attrs: Some(signed_attributes),
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: signature_oid,
            parameters: signature_parameters,
        },
        signature: OctetString::new(signature).map_err(|e| encoding("signature", e))?,
        unsigned_attrs: None,
    };
    let signed = SignedData {
        // id-data content, issuerAndSerialNumber signer, no attribute certificates: v1.
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![sha256])
            .map_err(|e| encoding("digest algorithms", e))?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: Some(
                Any::encode_from(
                    &OctetString::new(content.to_vec()).map_err(|e| encoding("content", e))?,
                )
                .map_err(|e| encoding("content", e))?,
            ),
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(vec![CertificateChoices::Certificate(certificate)])
                .map_err(|e| encoding("certificates", e))?,
        )),
        crls: None,
        signer_infos: SignerInfos(
            SetOfVec::try_from(vec![signer_info]).map_err(|e| encoding("signer infos", e))?,
        ),
    };
    let content_info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(|e| encoding("SignedData", e))?,
    };
    content_info
        .to_der()
        .map_err(|e| encoding("ContentInfo", e))
}
