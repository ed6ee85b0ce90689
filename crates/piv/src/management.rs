//! The card management key (key reference 9B), which guards key generation and writing data
//! objects, and its block cipher for mutual authentication (SP 800-73-4 part 2 appendix A.1:
//! the card sends an encrypted witness, the host returns it decrypted with a challenge of its
//! own, and the card proves it holds the key by returning the challenge encrypted).

use std::fmt;

use aes::Aes128;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use des::TdesEde3;
use zeroize::Zeroizing;

use crate::error::PivError;

/// A management key: AES-128 (algorithm 08, what provisioning gives NHS-style cards) or
/// three-key 3DES (algorithm 03, the YubiKey factory default). The key bytes are zeroized on
/// drop and never shown in `Debug`.
#[derive(Clone)]
pub struct ManagementKey {
    algorithm: ManagementAlgorithm,
    key: Zeroizing<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ManagementAlgorithm {
    Aes128,
    Tdes,
}

impl ManagementKey {
    /// An AES-128 key (16 bytes).
    pub fn aes128(key: &[u8]) -> Result<ManagementKey, PivError> {
        Self::checked(ManagementAlgorithm::Aes128, key, 16, "AES-128")
    }

    /// A three-key 3DES key (24 bytes).
    pub fn tdes(key: &[u8]) -> Result<ManagementKey, PivError> {
        Self::checked(ManagementAlgorithm::Tdes, key, 24, "3DES")
    }

    fn checked(
        algorithm: ManagementAlgorithm,
        key: &[u8],
        expected: usize,
        name: &'static str,
    ) -> Result<ManagementKey, PivError> {
        if key.len() != expected {
            return Err(PivError::InvalidManagementKey {
                algorithm: name,
                expected,
                actual: key.len(),
            });
        }
        Ok(ManagementKey {
            algorithm,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// The SP 800-78-4 algorithm identifier (P1 of GENERAL AUTHENTICATE).
    pub(crate) fn algorithm_id(&self) -> u8 {
        match self.algorithm {
            ManagementAlgorithm::Aes128 => 0x08,
            ManagementAlgorithm::Tdes => 0x03,
        }
    }

    /// The cipher's block size: what witnesses and challenges are.
    pub(crate) fn block_size(&self) -> usize {
        match self.algorithm {
            ManagementAlgorithm::Aes128 => 16,
            ManagementAlgorithm::Tdes => 8,
        }
    }

    /// One block through the cipher. `None` if `block` is not one block (checked before the
    /// cipher sees it, so the fixed-size conversion cannot fail).
    pub(crate) fn crypt_block(&self, block: &[u8], encrypt: bool) -> Option<Zeroizing<Vec<u8>>> {
        if block.len() != self.block_size() {
            return None;
        }
        let mut out = Zeroizing::new(block.to_vec());
        match self.algorithm {
            ManagementAlgorithm::Aes128 => {
                let buffer = GenericArray::from_mut_slice(&mut out);
                let cipher = Aes128::new_from_slice(&self.key).ok()?;
                if encrypt {
                    cipher.encrypt_block(buffer);
                } else {
                    cipher.decrypt_block(buffer);
                }
            }
            ManagementAlgorithm::Tdes => {
                let buffer = GenericArray::from_mut_slice(&mut out);
                let cipher = TdesEde3::new_from_slice(&self.key).ok()?;
                if encrypt {
                    cipher.encrypt_block(buffer);
                } else {
                    cipher.decrypt_block(buffer);
                }
            }
        }
        Some(out)
    }
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementKey")
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_matches_the_fips_197_vector() {
        let key = ManagementKey::aes128(&[
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
            0x0e, 0x0f,
        ])
        .unwrap();
        let plain = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        let cipher = key.crypt_block(&plain, true).unwrap();
        assert_eq!(
            cipher.as_slice(),
            &[
                0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
                0xc5, 0x5a
            ]
        );
        assert_eq!(key.crypt_block(&cipher, false).unwrap().as_slice(), &plain);
        assert!(key.crypt_block(&plain[..8], true).is_none());
    }

    #[test]
    fn key_lengths_are_checked_and_never_shown() {
        assert!(ManagementKey::aes128(&[0; 24]).is_err());
        assert!(ManagementKey::tdes(&[0; 16]).is_err());
        let key = ManagementKey::tdes(&[0xAB; 24]).unwrap();
        assert_eq!(key.block_size(), 8);
        assert_eq!(key.algorithm_id(), 0x03);
        let text = format!("{key:?}");
        assert!(
            !text.to_lowercase().contains("abab") && !text.contains("171"),
            "{text}"
        );
    }
}
