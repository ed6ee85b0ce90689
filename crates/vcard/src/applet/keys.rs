//! Slot and management-key cryptography: parsing slot keys from their PKCS#8 DER, the
//! signature (ECDSA over a digest the host computed), the raw RSA private-key operation, ECDH,
//! key generation, public key templates, and the management key's block cipher.
//!
//! Everything here answers in status words, because every failure ends as one on the wire.

use aes::Aes128;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use cardgate_apdu::StatusWord;
use cardgate_apdu::tlv::{self, Tag};
use des::TdesEde3;
use ecdsa::signature::hazmat::PrehashSigner;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::RngCore;
use rand::rngs::OsRng;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey};
use zeroize::Zeroizing;

use crate::card_file::{KeyAlgorithm, ManagementKey, ManagementKeyAlgorithm, SlotKey};

/// RSA-2048's modulus length in bytes: the exact input and output of the raw operation.
pub(crate) const RSA_2048_BYTES: usize = 256;
/// The P-256 field size in bytes: digests are left-padded or truncated to it.
const P256_FIELD_BYTES: usize = 32;
/// The longest digest accepted for a P-256 signature (SHA-512); longer input is not a digest.
const MAX_DIGEST_BYTES: usize = 64;

/// A slot's private key, parsed and ready to use.
pub(crate) enum SlotPrivateKey {
    /// ECDSA / ECDH over P-256.
    EccP256(p256::SecretKey),
    /// RSA-2048.
    Rsa2048(Box<RsaPrivateKey>),
}

impl SlotPrivateKey {
    /// Parses a card-file slot key. A key that does not parse or does not match its declared
    /// algorithm means a corrupt card file: the card answers 6F00, as a card whose key store
    /// failed would.
    pub(crate) fn from_slot_key(key: &SlotKey) -> Result<SlotPrivateKey, StatusWord> {
        let der = key.private_key_pkcs8.as_slice();
        match key.algorithm {
            KeyAlgorithm::EccP256 => p256::SecretKey::from_pkcs8_der(der)
                .map(SlotPrivateKey::EccP256)
                .map_err(|_| StatusWord::NoPreciseDiagnosis),
            KeyAlgorithm::Rsa2048 => {
                let key = RsaPrivateKey::from_pkcs8_der(der)
                    .map_err(|_| StatusWord::NoPreciseDiagnosis)?;
                if key.size() != RSA_2048_BYTES {
                    return Err(StatusWord::NoPreciseDiagnosis);
                }
                Ok(SlotPrivateKey::Rsa2048(Box::new(key)))
            }
        }
    }

    /// Generates a fresh key from the operating system's random source.
    pub(crate) fn generate(algorithm: KeyAlgorithm) -> Result<SlotPrivateKey, StatusWord> {
        match algorithm {
            KeyAlgorithm::EccP256 => {
                Ok(SlotPrivateKey::EccP256(p256::SecretKey::random(&mut OsRng)))
            }
            KeyAlgorithm::Rsa2048 => RsaPrivateKey::new(&mut OsRng, RSA_2048_BYTES * 8)
                .map(|k| SlotPrivateKey::Rsa2048(Box::new(k)))
                .map_err(|_| StatusWord::NoPreciseDiagnosis),
        }
    }

    /// The key as PKCS#8 DER for the card file.
    pub(crate) fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, StatusWord> {
        let document = match self {
            SlotPrivateKey::EccP256(key) => key.to_pkcs8_der(),
            SlotPrivateKey::Rsa2048(key) => key.to_pkcs8_der(),
        }
        .map_err(|_| StatusWord::NoPreciseDiagnosis)?;
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }

    /// The public key's fields as GENERATE ASYMMETRIC KEY PAIR and GET METADATA return them:
    /// `86 <uncompressed point>` for EC, `81 <modulus> 82 <exponent>` for RSA.
    pub(crate) fn public_key_fields(&self) -> Vec<u8> {
        match self {
            SlotPrivateKey::EccP256(key) => tlv::encode(
                Tag(0x86),
                key.public_key().to_encoded_point(false).as_bytes(),
            ),
            SlotPrivateKey::Rsa2048(key) => {
                let mut out = tlv::encode(Tag(0x81), &key.n().to_bytes_be());
                out.extend(tlv::encode(Tag(0x82), &key.e().to_bytes_be()));
                out
            }
        }
    }

    /// The private-key operation of GENERAL AUTHENTICATE's `81` input.
    ///
    /// EC: the input is a digest the host computed; it is left-padded or truncated to the
    /// field size as ECDSA does, and the answer is a DER `ECDSA-Sig-Value`. RSA: the input is
    /// a block of exactly 256 bytes the host already padded (PKCS#1 v1.5, PSS or an encrypted
    /// key), and the answer is the raw RSA result, 256 bytes. Input of the wrong size: 6A80.
    pub(crate) fn private_operation(&self, input: &[u8]) -> Result<Vec<u8>, StatusWord> {
        match self {
            SlotPrivateKey::EccP256(key) => {
                if input.is_empty() || input.len() > MAX_DIGEST_BYTES {
                    return Err(StatusWord::IncorrectData);
                }
                let mut digest = [0u8; P256_FIELD_BYTES];
                if input.len() >= P256_FIELD_BYTES {
                    digest.copy_from_slice(&input[..P256_FIELD_BYTES]);
                } else {
                    digest[P256_FIELD_BYTES - input.len()..].copy_from_slice(input);
                }
                let signer = p256::ecdsa::SigningKey::from(key);
                let signature: p256::ecdsa::Signature = signer
                    .sign_prehash(&digest)
                    .map_err(|_| StatusWord::NoPreciseDiagnosis)?;
                Ok(signature.to_der().as_bytes().to_vec())
            }
            SlotPrivateKey::Rsa2048(key) => {
                if input.len() != RSA_2048_BYTES {
                    return Err(StatusWord::IncorrectData);
                }
                let block = BigUint::from_bytes_be(input);
                if &block >= key.n() {
                    return Err(StatusWord::IncorrectData);
                }
                let result = rsa::hazmat::rsa_decrypt_and_check(&**key, Some(&mut OsRng), &block)
                    .map_err(|_| StatusWord::NoPreciseDiagnosis)?;
                let bytes = Zeroizing::new(result.to_bytes_be());
                let mut out = vec![0u8; RSA_2048_BYTES];
                out[RSA_2048_BYTES - bytes.len()..].copy_from_slice(&bytes);
                Ok(out)
            }
        }
    }

    /// ECDH (GENERAL AUTHENTICATE with `85 <point>`): the x coordinate of the shared point.
    /// Only EC keys agree on keys; a point that is not on the curve is 6A80.
    pub(crate) fn key_agreement(&self, peer_point: &[u8]) -> Result<Vec<u8>, StatusWord> {
        let SlotPrivateKey::EccP256(key) = self else {
            return Err(StatusWord::IncorrectData);
        };
        let peer =
            p256::PublicKey::from_sec1_bytes(peer_point).map_err(|_| StatusWord::IncorrectData)?;
        let shared = (peer.to_projective() * *key.to_nonzero_scalar()).to_affine();
        Ok(shared.x().to_vec())
    }
}

/// The management key's block size: what witnesses and challenges must be.
pub(crate) fn management_block_size(algorithm: ManagementKeyAlgorithm) -> usize {
    match algorithm {
        ManagementKeyAlgorithm::Aes128 => 16,
        ManagementKeyAlgorithm::Tdes => 8,
    }
}

/// The card file's algorithm for a GENERAL AUTHENTICATE P1, if it is a management key one.
pub(crate) fn management_algorithm_id(algorithm: ManagementKeyAlgorithm) -> u8 {
    match algorithm {
        ManagementKeyAlgorithm::Aes128 => 0x08,
        ManagementKeyAlgorithm::Tdes => 0x03,
    }
}

/// Whether P1 of a GENERAL AUTHENTICATE names this management key's algorithm. SP 800-78-4
/// table 6-2 keeps `00` as the deprecated identifier of 3-key 3DES, and OpenSC still sends it
/// (its `C_GenerateRandom` asks a 9B challenge with P1 `00`), so a 3DES card accepts both; an
/// AES card refuses `00`, as AES-keyed hardware does.
pub(crate) fn names_management_algorithm(p1: u8, algorithm: ManagementKeyAlgorithm) -> bool {
    p1 == management_algorithm_id(algorithm)
        || (p1 == 0x00 && algorithm == ManagementKeyAlgorithm::Tdes)
}

/// Which way the management key's block cipher runs.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    /// Encrypt.
    Encrypt,
    /// Decrypt.
    Decrypt,
}

/// One ECB pass of the management key's cipher over `data` (a whole number of blocks). A key
/// of the wrong length means a corrupt card file (6F00); data that is not whole blocks is
/// 6A80.
pub(crate) fn management_cipher(
    key: &ManagementKey,
    direction: Direction,
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, StatusWord> {
    let block_size = management_block_size(key.algorithm);
    if data.is_empty() || data.len() % block_size != 0 {
        return Err(StatusWord::IncorrectData);
    }
    let mut out = Zeroizing::new(data.to_vec());
    match key.algorithm {
        ManagementKeyAlgorithm::Aes128 => {
            let cipher =
                Aes128::new_from_slice(&key.key).map_err(|_| StatusWord::NoPreciseDiagnosis)?;
            run_blocks(&cipher, direction, &mut out, block_size);
        }
        ManagementKeyAlgorithm::Tdes => {
            let cipher =
                TdesEde3::new_from_slice(&key.key).map_err(|_| StatusWord::NoPreciseDiagnosis)?;
            run_blocks(&cipher, direction, &mut out, block_size);
        }
    }
    Ok(out)
}

fn run_blocks<C: BlockEncrypt + BlockDecrypt>(
    cipher: &C,
    direction: Direction,
    data: &mut [u8],
    block_size: usize,
) {
    for chunk in data.chunks_exact_mut(block_size) {
        let block = GenericArray::from_mut_slice(chunk);
        match direction {
            Direction::Encrypt => cipher.encrypt_block(block),
            Direction::Decrypt => cipher.decrypt_block(block),
        }
    }
}

/// Random bytes for a witness or challenge.
pub(crate) fn random_block(len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    OsRng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecdsa::signature::hazmat::PrehashVerifier;

    fn ec_slot_key() -> (SlotKey, p256::SecretKey) {
        let secret = p256::SecretKey::random(&mut OsRng);
        let key = SlotKey {
            algorithm: KeyAlgorithm::EccP256,
            private_key_pkcs8: Zeroizing::new(secret.to_pkcs8_der().unwrap().as_bytes().to_vec()),
            pin_policy: crate::card_file::PinPolicy::Once,
        };
        (key, secret)
    }

    #[test]
    fn ecdsa_signs_the_digest_it_is_given_padded_or_truncated() {
        let (slot_key, secret) = ec_slot_key();
        let key = SlotPrivateKey::from_slot_key(&slot_key).unwrap();
        let verifier = p256::ecdsa::VerifyingKey::from(secret.public_key());
        let digest = [0x5Au8; 32];
        let der = key.private_operation(&digest).unwrap();
        let signature = p256::ecdsa::Signature::from_der(&der).unwrap();
        verifier.verify_prehash(&digest, &signature).unwrap();
        // A 48-byte digest is truncated to its leftmost 32 bytes.
        let long = [0x11u8; 48];
        let signature =
            p256::ecdsa::Signature::from_der(&key.private_operation(&long).unwrap()).unwrap();
        verifier.verify_prehash(&long[..32], &signature).unwrap();
        // A short input is the same number left-padded with zeros.
        let short = [0x22u8; 4];
        let signature =
            p256::ecdsa::Signature::from_der(&key.private_operation(&short).unwrap()).unwrap();
        let mut padded = [0u8; 32];
        padded[28..].copy_from_slice(&short);
        verifier.verify_prehash(&padded, &signature).unwrap();
        assert_eq!(key.private_operation(&[]), Err(StatusWord::IncorrectData));
        assert_eq!(
            key.private_operation(&[0; 65]),
            Err(StatusWord::IncorrectData)
        );
    }

    #[test]
    fn ecdh_agrees_with_the_peer() {
        let (slot_key, secret) = ec_slot_key();
        let key = SlotPrivateKey::from_slot_key(&slot_key).unwrap();
        let peer = p256::SecretKey::random(&mut OsRng);
        let peer_point = peer.public_key().to_encoded_point(false);
        let ours = key.key_agreement(peer_point.as_bytes()).unwrap();
        let theirs = (secret.public_key().to_projective() * *peer.to_nonzero_scalar())
            .to_affine()
            .x()
            .to_vec();
        assert_eq!(ours, theirs);
        assert_eq!(
            key.key_agreement(&[0x04, 1, 2, 3]),
            Err(StatusWord::IncorrectData)
        );
    }

    #[test]
    fn corrupt_or_mislabelled_keys_are_card_errors() {
        let (mut slot_key, _) = ec_slot_key();
        slot_key.algorithm = KeyAlgorithm::Rsa2048;
        assert!(matches!(
            SlotPrivateKey::from_slot_key(&slot_key),
            Err(StatusWord::NoPreciseDiagnosis)
        ));
        slot_key.private_key_pkcs8 = Zeroizing::new(vec![0x30, 0x00]);
        slot_key.algorithm = KeyAlgorithm::EccP256;
        assert!(matches!(
            SlotPrivateKey::from_slot_key(&slot_key),
            Err(StatusWord::NoPreciseDiagnosis)
        ));
    }

    #[test]
    fn management_cipher_round_trips_and_matches_known_answers() {
        // FIPS-197 appendix C.1 (AES-128).
        let aes = ManagementKey {
            algorithm: ManagementKeyAlgorithm::Aes128,
            key: Zeroizing::new(hex::decode("000102030405060708090a0b0c0d0e0f").unwrap()),
        };
        let plain = hex::decode("00112233445566778899aabbccddeeff").unwrap();
        let encrypted = management_cipher(&aes, Direction::Encrypt, &plain).unwrap();
        assert_eq!(
            hex::encode(encrypted.as_slice()),
            "69c4e0d86a7b0430d8cdb78070b4c55a"
        );
        let decrypted = management_cipher(&aes, Direction::Decrypt, &encrypted).unwrap();
        assert_eq!(decrypted.as_slice(), plain.as_slice());

        let tdes = ManagementKey {
            algorithm: ManagementKeyAlgorithm::Tdes,
            key: Zeroizing::new(
                hex::decode("010203040506070801020304050607080102030405060708").unwrap(),
            ),
        };
        let block = [0x42u8; 8];
        let encrypted = management_cipher(&tdes, Direction::Encrypt, &block).unwrap();
        assert_ne!(encrypted.as_slice(), block.as_slice());
        let decrypted = management_cipher(&tdes, Direction::Decrypt, &encrypted).unwrap();
        assert_eq!(decrypted.as_slice(), block.as_slice());
        assert_eq!(
            management_cipher(&tdes, Direction::Encrypt, &[0; 7]).map(|_| ()),
            Err(StatusWord::IncorrectData)
        );
    }
}
