//! The challenge nonce: random bytes the identity provider makes for one sign-in, base64 as
//! Web eID sends them. The agent checks only its shape; single use and age are the
//! provider's to enforce (it is the one that made it).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::WebAuthError;

/// The fewest random bytes a nonce may carry (256 bits).
pub const MIN_NONCE_BYTES: usize = 32;
/// The longest nonce text accepted (a bound on what a page can make the card sign over).
pub const MAX_NONCE_CHARS: usize = 256;
/// How long a provider honours a nonce it made (Web eID's default, five minutes).
pub const NONCE_LIFETIME_SECS: u64 = 300;

/// A challenge nonce of the right shape: standard base64 of at least [`MIN_NONCE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChallengeNonce(String);

impl ChallengeNonce {
    /// Makes a fresh nonce of [`MIN_NONCE_BYTES`] random bytes from the system's source.
    pub fn generate() -> Result<Self, WebAuthError> {
        let mut bytes = [0u8; MIN_NONCE_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| WebAuthError::RandomUnavailable)?;
        Ok(ChallengeNonce(STANDARD.encode(bytes)))
    }

    /// Checks the shape of a nonce a page passed on.
    pub fn parse(given: &str) -> Result<Self, WebAuthError> {
        let malformed = |why: String| WebAuthError::NonceMalformed {
            why,
            min: MIN_NONCE_BYTES,
        };
        if given.len() > MAX_NONCE_CHARS {
            return Err(malformed(format!(
                "{} characters, at most {MAX_NONCE_CHARS}",
                given.len()
            )));
        }
        let bytes = STANDARD
            .decode(given)
            .map_err(|e| malformed(format!("not base64: {e}")))?;
        if bytes.len() < MIN_NONCE_BYTES {
            return Err(malformed(format!("{} bytes", bytes.len())));
        }
        Ok(ChallengeNonce(given.to_owned()))
    }

    /// The nonce as sent, the bytes hashed into the signature.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_nonces_parse_and_differ() {
        let a = ChallengeNonce::generate().unwrap();
        let b = ChallengeNonce::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(ChallengeNonce::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn short_long_and_non_base64_nonces_are_refused() {
        let short = STANDARD.encode([7u8; 31]);
        let err = ChallengeNonce::parse(&short).unwrap_err();
        assert!(err.to_string().contains("31 bytes"), "{err}");
        let err = ChallengeNonce::parse("not*base64*at*all*!!").unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
        let long = STANDARD.encode([7u8; 200]);
        let err = ChallengeNonce::parse(&long).unwrap_err();
        assert!(err.to_string().contains("at most 256"), "{err}");
    }
}
