//! The Spine-like protocol (`docs/spine-protocol.md`): the wire types shared with
//! `spine-sim`, and the agent's client, in which the card signs.
//!
//! - [`CardSigner`] is what a login needs from the card; [`ThreadCardSigner`] serves it from
//!   a `PivClient` on a thread of its own, because rustls' signer is synchronous and a card
//!   takes up to half a second.
//! - Mode A ([`SpineClient::login_with_signed_challenge`]): the card signs a CMS
//!   `SignedData` over the broker's challenge ([`cms::signed_data`]).
//! - Mode B ([`SpineClient::login_with_client_certificate`]): the card signs the TLS 1.3
//!   handshake ([`tls::CardClientAuth`]); the private key never leaves the card.
//! - Renewal: [`csr::card_certificate_request`] has the card make a new key and sign the
//!   request for it.
//!
//! Every failure is a [`SpineError`] variant the user can act on. Tokens and unlock codes are
//! [`wire::Secret`]s or `cardgate_piv::UnlockCode`s: redacted in `Debug`, never logged.

#![forbid(unsafe_code)]

mod client;
pub mod cms;
mod config;
pub mod csr;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod signer;
pub mod tls;
pub mod wire;

pub use client::SpineClient;
pub use config::{Endpoint, SpineConfig};
pub use error::{SpineError, Step};
pub use signer::{CardSigner, ThreadCardSigner, key_algorithm_of};
