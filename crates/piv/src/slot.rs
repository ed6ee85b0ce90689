//! PIV key slots, key algorithms and the public keys a card returns when it generates a key
//! (the `7F49` template of SP 800-73-4 part 2 table 11).

use std::fmt;

use cardgate_apdu::tlv::{Tag, Tlv};

use crate::error::{Operation, PivError};

/// A PIV key slot (SP 800-73-4 part 1 table 4b), with the certificate object that goes with
/// it: callers name slots by what they are for, not by key reference bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Slot {
    /// 9A, PIV Authentication: logs the holder in and signs the TLS handshake.
    Authentication,
    /// 9C, Digital Signature: the card asks for the passcode before every use.
    Signature,
    /// 9D, Key Management.
    KeyManagement,
    /// 9E, Card Authentication: usable without a passcode.
    CardAuthentication,
}

impl Slot {
    /// Every slot, in key-reference order.
    pub const ALL: [Slot; 4] = [
        Slot::Authentication,
        Slot::Signature,
        Slot::KeyManagement,
        Slot::CardAuthentication,
    ];

    /// The key reference byte (P2 of GENERAL AUTHENTICATE and GENERATE ASYMMETRIC KEY PAIR).
    pub fn key_reference(self) -> u8 {
        match self {
            Slot::Authentication => 0x9A,
            Slot::Signature => 0x9C,
            Slot::KeyManagement => 0x9D,
            Slot::CardAuthentication => 0x9E,
        }
    }

    /// The tag of the data object holding this slot's certificate (e.g. `0x5FC105` for 9A).
    pub fn certificate_object(self) -> u32 {
        match self {
            Slot::Authentication => 0x5FC105,
            Slot::Signature => 0x5FC10A,
            Slot::KeyManagement => 0x5FC10B,
            Slot::CardAuthentication => 0x5FC101,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Slot::Authentication => "PIV Authentication (9A)",
            Slot::Signature => "Digital Signature (9C)",
            Slot::KeyManagement => "Key Management (9D)",
            Slot::CardAuthentication => "Card Authentication (9E)",
        };
        f.write_str(name)
    }
}

/// The asymmetric key algorithms NHS-style cards carry (SP 800-78-4 identifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA / ECDH over P-256, identifier 0x11.
    EccP256,
    /// RSA with a 2048-bit modulus, identifier 0x07.
    Rsa2048,
}

impl KeyAlgorithm {
    /// The SP 800-78-4 algorithm identifier (P1 of GENERAL AUTHENTICATE, tag 80 of key
    /// generation).
    pub fn algorithm_id(self) -> u8 {
        match self {
            KeyAlgorithm::EccP256 => 0x11,
            KeyAlgorithm::Rsa2048 => 0x07,
        }
    }
}

/// A public key as the card returned it from key generation, ready for a certificate
/// request or a verifier (ring's `UnparsedPublicKey` takes the point, and
/// `RsaPublicKeyComponents` the modulus and exponent).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKey {
    /// A P-256 point, uncompressed (`04 || x || y`, 65 bytes).
    EccP256 {
        /// The SEC 1 uncompressed point.
        point: Vec<u8>,
    },
    /// An RSA-2048 public key.
    Rsa2048 {
        /// The modulus, big-endian, 256 bytes.
        modulus: Vec<u8>,
        /// The public exponent, big-endian.
        exponent: Vec<u8>,
    },
}

impl PublicKey {
    /// Parses a `7F49` public key template for a key of `algorithm`.
    pub(crate) fn from_template(algorithm: KeyAlgorithm, data: &[u8]) -> Result<Self, PivError> {
        let malformed = |reason: &str| PivError::MalformedResponse {
            operation: Operation::GenerateKey,
            reason: reason.to_owned(),
        };
        let (template, rest) =
            Tlv::parse_one(data).map_err(|e| malformed(&format!("not a TLV: {e}")))?;
        if template.tag != Tag::PUBLIC_KEY_TEMPLATE || !rest.is_empty() {
            return Err(malformed("expected one 7F49 public key template"));
        }
        let fields = template
            .children()
            .map_err(|e| malformed(&format!("7F49 content is not TLVs: {e}")))?;
        match algorithm {
            KeyAlgorithm::EccP256 => {
                let point = Tlv::find(&fields, Tag(0x86))
                    .ok_or_else(|| malformed("no 86 point in the EC public key"))?;
                if point.value.len() != 65 || point.value[0] != 0x04 {
                    return Err(malformed(
                        "the EC point is not an uncompressed P-256 point (65 bytes, 04 first)",
                    ));
                }
                Ok(PublicKey::EccP256 {
                    point: point.value.to_vec(),
                })
            }
            KeyAlgorithm::Rsa2048 => {
                let modulus = Tlv::find(&fields, Tag(0x81))
                    .ok_or_else(|| malformed("no 81 modulus in the RSA public key"))?;
                let exponent = Tlv::find(&fields, Tag(0x82))
                    .ok_or_else(|| malformed("no 82 exponent in the RSA public key"))?;
                let modulus = strip_leading_zeros(modulus.value);
                if modulus.len() != 256 || modulus[0] & 0x80 == 0 {
                    return Err(malformed("the RSA modulus is not 2048 bits"));
                }
                let exponent = strip_leading_zeros(exponent.value);
                if exponent.is_empty() || exponent.len() > 8 {
                    return Err(malformed("the RSA exponent is empty or too long"));
                }
                Ok(PublicKey::Rsa2048 {
                    modulus: modulus.to_vec(),
                    exponent: exponent.to_vec(),
                })
            }
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicKey::EccP256 { .. } => KeyAlgorithm::EccP256,
            PublicKey::Rsa2048 { .. } => KeyAlgorithm::Rsa2048,
        }
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardgate_apdu::tlv;

    #[test]
    fn ec_template_parses_and_bad_points_are_refused() {
        let mut point = vec![0x04];
        point.extend([0x11; 64]);
        let template = tlv::encode(Tag::PUBLIC_KEY_TEMPLATE, &tlv::encode(Tag(0x86), &point));
        assert_eq!(
            PublicKey::from_template(KeyAlgorithm::EccP256, &template).unwrap(),
            PublicKey::EccP256 {
                point: point.clone()
            }
        );
        let short = tlv::encode(
            Tag::PUBLIC_KEY_TEMPLATE,
            &tlv::encode(Tag(0x86), &point[..33]),
        );
        assert!(PublicKey::from_template(KeyAlgorithm::EccP256, &short).is_err());
        assert!(PublicKey::from_template(KeyAlgorithm::EccP256, &[0x7F]).is_err());
        assert!(PublicKey::from_template(KeyAlgorithm::Rsa2048, &template).is_err());
    }

    #[test]
    fn rsa_template_needs_a_2048_bit_modulus() {
        let mut modulus = vec![0x00, 0xC1];
        modulus.extend([0x22; 255]);
        let mut fields = tlv::encode(Tag(0x81), &modulus);
        fields.extend(tlv::encode(Tag(0x82), &[0x01, 0x00, 0x01]));
        let template = tlv::encode(Tag::PUBLIC_KEY_TEMPLATE, &fields);
        let key = PublicKey::from_template(KeyAlgorithm::Rsa2048, &template).unwrap();
        assert!(
            matches!(&key, PublicKey::Rsa2048 { modulus, exponent } if modulus.len() == 256 && exponent == &[1, 0, 1])
        );
        let mut fields = tlv::encode(Tag(0x81), &modulus[..200]);
        fields.extend(tlv::encode(Tag(0x82), &[0x01, 0x00, 0x01]));
        let template = tlv::encode(Tag::PUBLIC_KEY_TEMPLATE, &fields);
        assert!(PublicKey::from_template(KeyAlgorithm::Rsa2048, &template).is_err());
    }
}
