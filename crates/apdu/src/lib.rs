//! ISO 7816-4 command and response APDUs, status words, command chaining, GET RESPONSE
//! handling and BER-TLV. Pure: no I/O, no PC/SC, no async runtime.
//!
//! The agent and the virtual card share this crate, so both sides of every exchange agree on
//! the bytes. Every parser takes untrusted input and returns an [`Error`], never panics; the
//! `fuzz/` directory at the repository root holds one cargo-fuzz target per parser.

#![forbid(unsafe_code)]

mod command;
mod error;
mod exchange;
mod hexfmt;
mod response;
mod status;
pub mod tlv;

pub use command::{
    CLA_CHAINING, CommandApdu, MAX_EXTENDED_DATA, MAX_EXTENDED_LE, MAX_SHORT_DATA, MAX_SHORT_LE,
};
pub use error::Error;
pub use exchange::{ExchangeError, ExchangeOptions, INS_GET_RESPONSE, Transmit, transceive};
pub use response::ResponseApdu;
pub use status::StatusWord;
