//! What a signature is computed over ([`SignInput`]) and the host-side encodings a PIV card
//! needs: the card signs an ECDSA digest as given and performs raw RSA on a block the host
//! padded, so PKCS#1 v1.5 (DigestInfo + padding) and EMSA-PSS (RFC 8017 §9.1.1, MGF1-SHA-256,
//! 32-byte salt) are built here. rustls needs PSS for TLS 1.3 client authentication with RSA
//! cards; the `rsa` crate keeps its PSS encoder private.

use ring::digest;
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

use crate::error::PivError;
use crate::slot::KeyAlgorithm;

/// The RSA-2048 block size in bytes: input and output of the card's raw operation.
pub(crate) const RSA_2048_BYTES: usize = 256;
/// SHA-256's output length.
const SHA256_LEN: usize = 32;
/// The PSS salt length: the hash length, as TLS 1.3 requires.
const PSS_SALT_LEN: usize = SHA256_LEN;
/// DER of `DigestInfo { sha256, NULL }` up to the digest (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// A SHA-256 digest: what every signature here is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sha256Digest([u8; SHA256_LEN]);

impl Sha256Digest {
    /// Hashes `message`.
    pub fn of(message: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, message);
        let mut out = [0u8; SHA256_LEN];
        out.copy_from_slice(d.as_ref());
        Sha256Digest(out)
    }

    /// A digest computed elsewhere.
    pub fn from_bytes(bytes: [u8; SHA256_LEN]) -> Self {
        Sha256Digest(bytes)
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; SHA256_LEN] {
        &self.0
    }
}

/// What to sign and how: the scheme decides the algorithm the slot's key must have and the
/// encoding done on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignInput {
    /// ECDSA P-256 over a SHA-256 digest; the card returns a DER `ECDSA-Sig-Value`.
    EcdsaP256Sha256(Sha256Digest),
    /// RSA-2048 PKCS#1 v1.5 with SHA-256 (TLS 1.2, and certificate signing).
    RsaPkcs1Sha256(Sha256Digest),
    /// RSA-2048 PSS with SHA-256, MGF1-SHA-256 and a 32-byte random salt (TLS 1.3).
    RsaPssSha256(Sha256Digest),
}

impl SignInput {
    /// The key algorithm the slot must hold for this scheme.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            SignInput::EcdsaP256Sha256(_) => KeyAlgorithm::EccP256,
            SignInput::RsaPkcs1Sha256(_) | SignInput::RsaPssSha256(_) => KeyAlgorithm::Rsa2048,
        }
    }

    /// The bytes sent to the card: the digest for ECDSA, the encoded 256-byte block for RSA.
    pub(crate) fn card_input(&self) -> Result<Zeroizing<Vec<u8>>, PivError> {
        match self {
            SignInput::EcdsaP256Sha256(d) => Ok(Zeroizing::new(d.0.to_vec())),
            SignInput::RsaPkcs1Sha256(d) => Ok(pkcs1_v15_sha256(d, RSA_2048_BYTES)),
            SignInput::RsaPssSha256(d) => {
                let mut salt = [0u8; PSS_SALT_LEN];
                SystemRandom::new()
                    .fill(&mut salt)
                    .map_err(|_| PivError::Random)?;
                emsa_pss_sha256(d, &salt, RSA_2048_BYTES * 8 - 1)
            }
        }
    }
}

/// EMSA-PKCS1-v1_5 (RFC 8017 §9.2): `00 01 FF…FF 00 DigestInfo`, `len` bytes.
pub(crate) fn pkcs1_v15_sha256(digest: &Sha256Digest, len: usize) -> Zeroizing<Vec<u8>> {
    let t_len = SHA256_DIGEST_INFO_PREFIX.len() + SHA256_LEN;
    let mut em = Zeroizing::new(vec![0xFF; len]);
    em[0] = 0x00;
    em[1] = 0x01;
    em[len - t_len - 1] = 0x00;
    em[len - t_len..len - SHA256_LEN].copy_from_slice(&SHA256_DIGEST_INFO_PREFIX);
    em[len - SHA256_LEN..].copy_from_slice(&digest.0);
    em
}

/// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with SHA-256, MGF1-SHA-256 and `salt`, for a modulus of
/// `em_bits + 1` bits.
pub(crate) fn emsa_pss_sha256(
    m_hash: &Sha256Digest,
    salt: &[u8],
    em_bits: usize,
) -> Result<Zeroizing<Vec<u8>>, PivError> {
    let em_len = em_bits.div_ceil(8);
    // Step 3: emLen < hLen + sLen + 2 is an encoding error.
    if em_len < SHA256_LEN + salt.len() + 2 {
        return Err(PivError::InvalidInput {
            what: "PSS parameters",
            reason: format!("a {em_bits}-bit encoding cannot hold the digest and salt"),
        });
    }
    // Steps 5-6: H = Hash(00 00 00 00 00 00 00 00 || mHash || salt).
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0u8; 8]);
    ctx.update(&m_hash.0);
    ctx.update(salt);
    let h = ctx.finish();
    // Steps 7-8: DB = PS || 01 || salt, PS being zeros.
    let db_len = em_len - SHA256_LEN - 1;
    let mut em = Zeroizing::new(vec![0u8; em_len]);
    em[db_len - salt.len() - 1] = 0x01;
    em[db_len - salt.len()..db_len].copy_from_slice(salt);
    // Steps 9-10: maskedDB = DB xor MGF1(H, emLen - hLen - 1).
    mgf1_sha256_xor(h.as_ref(), &mut em[..db_len]);
    // Step 11: clear the leftmost 8 emLen - emBits bits.
    let clear_bits = 8 * em_len - em_bits;
    em[0] &= 0xFF >> clear_bits;
    // Step 12: EM = maskedDB || H || BC.
    em[db_len..em_len - 1].copy_from_slice(h.as_ref());
    em[em_len - 1] = 0xBC;
    Ok(em)
}

/// XORs MGF1-SHA-256(`seed`, `out.len()`) into `out` (RFC 8017 §B.2.1).
fn mgf1_sha256_xor(seed: &[u8], out: &mut [u8]) {
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(SHA256_LEN)) {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(seed);
        ctx.update(&counter.to_be_bytes());
        let mask = ctx.finish();
        for (byte, m) in chunk.iter_mut().zip(mask.as_ref()) {
            *byte ^= m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
    use rsa::{BigUint, RsaPrivateKey};

    /// Raw RSA with the private key, as the card does it.
    fn raw_sign(key: &RsaPrivateKey, block: &[u8]) -> Vec<u8> {
        let m = BigUint::from_bytes_be(block);
        let s = m.modpow(key.d(), key.n()).to_bytes_be();
        let mut out = vec![0u8; key.size() - s.len()];
        out.extend(s);
        out
    }

    fn key() -> RsaPrivateKey {
        let mut rng = rand::thread_rng();
        RsaPrivateKey::new(&mut rng, 2048).unwrap()
    }

    #[test]
    fn pss_blocks_verify_with_an_independent_verifier() {
        let key = key();
        let public = key.to_public_key();
        let message = b"TLS 1.3, client CertificateVerify";
        let digest = Sha256Digest::of(message);
        for _ in 0..4 {
            let input = SignInput::RsaPssSha256(digest).card_input().unwrap();
            assert_eq!(input.len(), 256);
            let signature = raw_sign(&key, &input);
            let verifying = rsa::pss::VerifyingKey::<sha2::Sha256>::new(public.clone());
            let signature = rsa::pss::Signature::try_from(signature.as_slice()).unwrap();
            rsa::signature::Verifier::verify(&verifying, message, &signature)
                .expect("PSS signature over the host-encoded block verifies");
            // And it is bound to the message.
            assert!(rsa::signature::Verifier::verify(&verifying, b"other", &signature).is_err());
        }
    }

    #[test]
    fn pss_salts_differ_between_signatures() {
        let digest = Sha256Digest::of(b"m");
        let a = SignInput::RsaPssSha256(digest).card_input().unwrap();
        let b = SignInput::RsaPssSha256(digest).card_input().unwrap();
        assert_ne!(*a, *b);
        assert_eq!(a[255], 0xBC);
        assert_eq!(
            a[0] & 0x80,
            0,
            "the top bit is cleared for a 2047-bit encoding"
        );
    }

    #[test]
    fn pkcs1_blocks_verify_with_an_independent_verifier() {
        let key = key();
        let message = b"TLS 1.2 handshake";
        let input = SignInput::RsaPkcs1Sha256(Sha256Digest::of(message))
            .card_input()
            .unwrap();
        let signature = raw_sign(&key, &input);
        key.to_public_key()
            .verify(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest_bytes(message),
                &signature,
            )
            .expect("PKCS#1 v1.5 signature verifies");
    }

    #[test]
    fn pss_refuses_a_modulus_too_small() {
        assert!(emsa_pss_sha256(&Sha256Digest::of(b"m"), &[0; 32], 500).is_err());
        assert!(emsa_pss_sha256(&Sha256Digest::of(b"m"), &[0; 32], 528).is_ok());
    }

    trait DigestBytes {
        fn digest_bytes(m: &[u8]) -> Vec<u8>;
    }
    impl DigestBytes for sha2::Sha256 {
        fn digest_bytes(m: &[u8]) -> Vec<u8> {
            use sha2::Digest as _;
            sha2::Sha256::digest(m).to_vec()
        }
    }
}
