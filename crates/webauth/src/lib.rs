//! The browser sign-in's contract (docs/web.md), pure: what a page's origin must look like,
//! the challenge nonce an identity provider hands out, and the authentication token the card
//! signs in the agent and the provider checks.
//!
//! The construction is Web eID's: the card signs `SHA-256(origin) ‖ SHA-256(nonce)` (the
//! [`signed_data`]), so a token made for one site cannot be replayed on another (its origin is
//! inside the signature) nor twice on the same one (the provider takes each nonce once). The
//! origin is the one the browser reports for the page, never one the page names itself.
//!
//! Both sides use this crate, so there is one definition of the bytes signed: the agent
//! ([`digest_to_sign`], [`AuthToken::new`]) and the provider ([`AuthToken::verify`]). No I/O,
//! no clock: the provider keeps the nonces and their ages.

#![forbid(unsafe_code)]

mod error;
mod nonce;
mod origin;
mod token;

pub use error::WebAuthError;
pub use nonce::{ChallengeNonce, MAX_NONCE_CHARS, MIN_NONCE_BYTES, NONCE_LIFETIME_SECS};
pub use origin::{OriginRules, WebOrigin};
pub use token::{
    AuthToken, MAX_TOKEN_BYTES, SignatureAlgorithm, TOKEN_FORMAT, VerifiedToken, digest_to_sign,
    ecdsa_der_to_fixed, signed_data,
};
