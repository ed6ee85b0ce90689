//! The authentication token: the card's certificate, the algorithm and the card's signature
//! over [`signed_data`], as JSON in Web eID's field names, with a format of our own
//! ([`TOKEN_FORMAT`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use der::asn1::UintRef;
use der::{Decode as _, Reader as _, SliceReader};
use ring::digest::{SHA256, digest};
use ring::signature::{self, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::{ChallengeNonce, WebAuthError, WebOrigin};

/// The token format this crate writes and reads.
pub const TOKEN_FORMAT: &str = "cardgate-web:1";
/// The largest token accepted (a certificate of a few kilobytes and a signature).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How the card signed: the JOSE names, as Web eID uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignatureAlgorithm {
    /// ECDSA P-256 with SHA-256; the signature is `r ‖ s`, 32 bytes each (JOSE's form).
    ES256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
}

impl SignatureAlgorithm {
    fn name(self) -> &'static str {
        match self {
            SignatureAlgorithm::ES256 => "ES256",
            SignatureAlgorithm::RS256 => "RS256",
        }
    }
}

/// What the card signs: `SHA-256(origin) ‖ SHA-256(nonce)`, 64 bytes.
pub fn signed_data(origin: &WebOrigin, nonce: &ChallengeNonce) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(digest(&SHA256, origin.as_str().as_bytes()).as_ref());
    out[32..].copy_from_slice(digest(&SHA256, nonce.as_str().as_bytes()).as_ref());
    out
}

/// The SHA-256 digest of [`signed_data`]: what the agent hands the card, which signs a digest
/// the host computed (both algorithms hash the signed data with SHA-256).
pub fn digest_to_sign(origin: &WebOrigin, nonce: &ChallengeNonce) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &signed_data(origin, nonce)).as_ref());
    out
}

/// Turns the card's DER `ECDSA-Sig-Value` into JOSE's fixed `r ‖ s` (32 bytes each).
pub fn ecdsa_der_to_fixed(der_signature: &[u8]) -> Result<[u8; 64], WebAuthError> {
    let malformed = |why: String| WebAuthError::EcdsaSignatureMalformed { why };
    let mut reader = SliceReader::new(der_signature).map_err(|e| malformed(e.to_string()))?;
    let (r, s) = reader
        .sequence(|seq| Ok((UintRef::decode(seq)?, UintRef::decode(seq)?)))
        .map_err(|e| malformed(e.to_string()))?;
    if !reader.is_finished() {
        return Err(malformed("bytes after the signature".into()));
    }
    let mut out = [0u8; 64];
    for (half, int) in [(0usize, r), (32, s)] {
        let bytes = int.as_bytes();
        if bytes.len() > 32 {
            return Err(malformed(format!("an integer of {} bytes", bytes.len())));
        }
        out[half + 32 - bytes.len()..half + 32].copy_from_slice(bytes);
    }
    Ok(out)
}

/// The token a page receives and posts to its identity provider. Field names as Web eID's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthToken {
    /// Always [`TOKEN_FORMAT`].
    pub format: String,
    /// The card's authentication certificate, DER in standard base64. "Unverified": the
    /// provider must check its chain and revocation itself.
    pub unverified_certificate: String,
    /// How the signature was made.
    pub algorithm: SignatureAlgorithm,
    /// The card's signature over [`signed_data`], standard base64.
    pub signature: String,
    /// The agent that made the token (`cardgate/VERSION`), for the provider's logs.
    pub app_version: String,
}

/// A token whose signature verified: the certificate to check next (chain, validity, CRL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The card's certificate, DER.
    pub certificate_der: Vec<u8>,
}

impl AuthToken {
    /// A token from the card's certificate and its signature as the card returned it (DER for
    /// ECDSA, which is turned into `r ‖ s` here).
    pub fn new(
        certificate_der: &[u8],
        algorithm: SignatureAlgorithm,
        card_signature: &[u8],
        app_version: &str,
    ) -> Result<Self, WebAuthError> {
        let signature = match algorithm {
            SignatureAlgorithm::ES256 => ecdsa_der_to_fixed(card_signature)?.to_vec(),
            SignatureAlgorithm::RS256 => card_signature.to_vec(),
        };
        Ok(AuthToken {
            format: TOKEN_FORMAT.to_owned(),
            unverified_certificate: STANDARD.encode(certificate_der),
            algorithm,
            signature: STANDARD.encode(signature),
            app_version: app_version.to_owned(),
        })
    }

    /// Reads a token from JSON, refusing one larger than [`MAX_TOKEN_BYTES`].
    pub fn from_json(json: &str) -> Result<Self, WebAuthError> {
        if json.len() > MAX_TOKEN_BYTES {
            return Err(WebAuthError::TokenMalformed {
                why: format!("{} bytes, at most {MAX_TOKEN_BYTES}", json.len()),
            });
        }
        serde_json::from_str(json).map_err(|e| WebAuthError::TokenMalformed { why: e.to_string() })
    }

    /// The token as JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings and a unit enum always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the format and that the signature was made by the certificate's key over this
    /// origin and nonce. The certificate itself (chain, validity, revocation) is the caller's
    /// to check next, with the returned DER.
    pub fn verify(
        &self,
        origin: &WebOrigin,
        nonce: &ChallengeNonce,
    ) -> Result<VerifiedToken, WebAuthError> {
        if self.format != TOKEN_FORMAT {
            return Err(WebAuthError::UnknownFormat {
                found: self.format.chars().take(64).collect(),
                expected: TOKEN_FORMAT,
            });
        }
        let b64 = |field: &str, text: &str| {
            STANDARD
                .decode(text)
                .map_err(|e| WebAuthError::TokenMalformed {
                    why: format!("{field} is not base64: {e}"),
                })
        };
        let certificate_der = b64("unverifiedCertificate", &self.unverified_certificate)?;
        let signature = b64("signature", &self.signature)?;
        let (_, cert) = X509Certificate::from_der(&certificate_der)
            .map_err(|e| WebAuthError::CertificateMalformed { why: e.to_string() })?;
        let spki = cert.public_key();
        let key_oid = &spki.algorithm.algorithm;
        let key: &'static str = if *key_oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if curve != Some(OID_EC_P256) {
                return Err(WebAuthError::UnsupportedKey {
                    what: "an elliptic curve other than P-256".into(),
                });
            }
            "ECDSA P-256"
        } else if *key_oid == OID_PKCS1_RSAENCRYPTION {
            "RSA"
        } else {
            return Err(WebAuthError::UnsupportedKey {
                what: format!("key algorithm {key_oid}"),
            });
        };
        let verifier: &dyn signature::VerificationAlgorithm = match (self.algorithm, key) {
            (SignatureAlgorithm::ES256, "ECDSA P-256") => &signature::ECDSA_P256_SHA256_FIXED,
            (SignatureAlgorithm::RS256, "RSA") => &signature::RSA_PKCS1_2048_8192_SHA256,
            (algorithm, key) => {
                return Err(WebAuthError::AlgorithmMismatch {
                    algorithm: algorithm.name(),
                    key,
                });
            }
        };
        UnparsedPublicKey::new(verifier, &spki.subject_public_key.data)
            .verify(&signed_data(origin, nonce), &signature)
            .map_err(|_| WebAuthError::SignatureInvalid {
                origin: origin.to_string(),
            })?;
        Ok(VerifiedToken { certificate_der })
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};

    use super::*;
    use crate::OriginRules;

    struct Card {
        cert_der: Vec<u8>,
        key: EcdsaKeyPair,
    }

    /// A P-256 "card": a self-signed certificate and its key, signing DER as a PIV card does.
    fn card() -> Card {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der(), &rng)
                .unwrap();
        Card {
            cert_der: cert.der().to_vec(),
            key,
        }
    }

    fn origin(s: &str) -> WebOrigin {
        WebOrigin::parse(s, OriginRules::default()).unwrap()
    }

    /// What the agent does: the card signs the signed data (ring hashes it, as the card is
    /// handed `digest_to_sign`), and the token is built from the DER signature.
    fn sign(card: &Card, o: &WebOrigin, n: &ChallengeNonce) -> AuthToken {
        let der = card
            .key
            .sign(&SystemRandom::new(), &signed_data(o, n))
            .unwrap();
        AuthToken::new(
            &card.cert_der,
            SignatureAlgorithm::ES256,
            der.as_ref(),
            "cardgate/test",
        )
        .unwrap()
    }

    #[test]
    fn a_token_verifies_for_its_origin_and_nonce_only() {
        let card = card();
        let (o, n) = (
            origin("https://idp.example.nhs.uk"),
            ChallengeNonce::generate().unwrap(),
        );
        let token = AuthToken::from_json(&sign(&card, &o, &n).to_json()).unwrap();
        assert_eq!(token.verify(&o, &n).unwrap().certificate_der, card.cert_der);

        let elsewhere = origin("https://evil.example.com");
        let err = token.verify(&elsewhere, &n).unwrap_err();
        assert!(
            matches!(err, WebAuthError::SignatureInvalid { .. }),
            "{err}"
        );
        let other_nonce = ChallengeNonce::generate().unwrap();
        assert!(token.verify(&o, &other_nonce).is_err());
    }

    #[test]
    fn the_digest_is_the_sha256_of_the_signed_data() {
        let (o, n) = (
            origin("https://a.example"),
            ChallengeNonce::generate().unwrap(),
        );
        let expected = digest(&SHA256, &signed_data(&o, &n));
        assert_eq!(&digest_to_sign(&o, &n)[..], expected.as_ref());
        assert_eq!(
            &signed_data(&o, &n)[..32],
            digest(&SHA256, b"https://a.example").as_ref()
        );
    }

    #[test]
    fn altered_and_mismatched_tokens_are_refused_naming_why() {
        let card = card();
        let (o, n) = (
            origin("https://idp.example"),
            ChallengeNonce::generate().unwrap(),
        );
        let good = sign(&card, &o, &n);

        let mut t = good.clone();
        t.algorithm = SignatureAlgorithm::RS256;
        let err = t.verify(&o, &n).unwrap_err();
        assert!(
            err.to_string()
                .contains("RS256 but its certificate holds a ECDSA"),
            "{err}"
        );

        let mut t = good.clone();
        t.format = "web-eid:1.0".into();
        assert!(matches!(
            t.verify(&o, &n),
            Err(WebAuthError::UnknownFormat { .. })
        ));

        let mut t = good.clone();
        t.unverified_certificate = STANDARD.encode(b"not a certificate");
        assert!(matches!(
            t.verify(&o, &n),
            Err(WebAuthError::CertificateMalformed { .. })
        ));

        let mut t = good;
        t.signature = "%%%".into();
        let err = t.verify(&o, &n).unwrap_err();
        assert!(err.to_string().contains("signature is not base64"), "{err}");

        let err = AuthToken::from_json(&"x".repeat(MAX_TOKEN_BYTES + 1)).unwrap_err();
        assert!(err.to_string().contains("at most 16384"), "{err}");
        let err = AuthToken::from_json(r#"{"format":"cardgate-web:1"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }

    #[test]
    fn der_ecdsa_signatures_become_fixed_width() {
        let card = card();
        let der = card.key.sign(&SystemRandom::new(), b"message").unwrap();
        let fixed = ecdsa_der_to_fixed(der.as_ref()).unwrap();
        UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            card.key.public_key().as_ref(),
        )
        .verify(b"message", &fixed)
        .unwrap();
        assert!(ecdsa_der_to_fixed(&[0x30, 0x03, 0x02, 0x01]).is_err());
        assert!(ecdsa_der_to_fixed(b"").is_err());
    }
}
