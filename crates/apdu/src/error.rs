//! The crate's one error type: everything that can be wrong with APDU or BER-TLV bytes, each
//! variant saying what was wrong and where (a byte offset into the buffer given to the parser).

use crate::tlv::Tag;

/// Why bytes could not be parsed as (or a value could not be encoded to) an APDU or BER-TLV.
///
/// Offsets count from the start of the buffer handed to the parser; for
/// [`Tlv::children`](crate::tlv::Tlv::children) that is the parent's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ends before a field that must be there (also: empty input).
    #[error("{what} truncated at offset {offset}: needs {needed} byte(s), only {available} left")]
    Truncated {
        /// The field that is cut short.
        what: &'static str,
        /// Where the field starts.
        offset: usize,
        /// How many bytes the field needs.
        needed: usize,
        /// How many bytes remain from `offset`.
        available: usize,
    },
    /// A length field announces more bytes than the buffer holds.
    #[error("{what} at offset {offset} declares {length} byte(s) but only {available} follow")]
    LengthPastBuffer {
        /// What the length belongs to.
        what: &'static str,
        /// Where the value should start.
        offset: usize,
        /// The declared length.
        length: usize,
        /// The bytes actually remaining.
        available: usize,
    },
    /// A command APDU's body length matches neither "Lc data" nor "Lc data Le".
    #[error(
        "command APDU: Lc at offset {offset} says {lc} data byte(s), but {remaining} byte(s) \
         follow it (expected {lc}, or {lc} plus a {le_size}-byte Le)"
    )]
    LcMismatch {
        /// Where the Lc field starts.
        offset: usize,
        /// The value of Lc.
        lc: usize,
        /// The bytes after the Lc field.
        remaining: usize,
        /// The size an Le field would have in this form (1 short, 2 extended).
        le_size: usize,
    },
    /// An extended-length command whose Lc is zero but carries more bytes: no valid case.
    #[error(
        "command APDU: extended Lc at offset {offset} is 0000, which is not allowed when bytes follow"
    )]
    ExtendedLcZero {
        /// Where the extended Lc field starts.
        offset: usize,
    },
    /// The command data does not fit any APDU form (at most 255 short, 65535 extended).
    #[error("command data of {len} bytes is longer than the {max} bytes a {form} APDU can carry")]
    DataTooLong {
        /// The data length.
        len: usize,
        /// The limit of the form asked for.
        max: usize,
        /// "short" or "extended".
        form: &'static str,
    },
    /// Le cannot be encoded: 0 has no encoding (00 means 256), and the maximum is 65536.
    #[error("Le of {le} is out of range: it must be 1 to {max}")]
    LeOutOfRange {
        /// The requested Le.
        le: usize,
        /// The largest Le the form allows.
        max: usize,
    },
    /// A BER-TLV tag longer than the 3 bytes PIV and ISO 7816-4 use.
    #[error("BER-TLV tag at offset {offset} is longer than {max} bytes")]
    TagTooLong {
        /// Where the tag starts.
        offset: usize,
        /// The longest tag accepted.
        max: usize,
    },
    /// Tag bytes that are not one well-formed BER tag (e.g. a `5F` with nothing after it).
    #[error("bytes {bytes:02X?} are not a single well-formed BER-TLV tag")]
    MalformedTag {
        /// The bytes offered as a tag.
        bytes: Vec<u8>,
    },
    /// The indefinite length form (`80`), which DER, PIV and ISO 7816-4 SIMPLE-TLV do not allow.
    #[error("BER-TLV length at offset {offset} is indefinite (80), which is not allowed here")]
    IndefiniteLength {
        /// Where the length field starts.
        offset: usize,
    },
    /// A length field with more length bytes than supported (at most 3: 0xFFFFFF).
    #[error(
        "BER-TLV length at offset {offset} uses {length_bytes} length byte(s); at most 3 are allowed"
    )]
    LengthTooLarge {
        /// Where the length field starts.
        offset: usize,
        /// How many length bytes the field announces (0x84 announces 4).
        length_bytes: usize,
    },
    /// A TLV inside a constructed value claims more bytes than its parent holds.
    #[error(
        "BER-TLV inside tag {parent} at offset {offset} (within the parent's value) declares \
         {length} byte(s) but the parent has only {available} left"
    )]
    ChildPastParent {
        /// The enclosing tag.
        parent: Tag,
        /// Where the child's value starts, within the parent's value.
        offset: usize,
        /// The child's declared length.
        length: usize,
        /// The bytes the parent has left for it.
        available: usize,
    },
    /// Constructed TLVs nested deeper than the parser allows (guards the stack).
    #[error("BER-TLV nesting is deeper than {limit} levels")]
    NestingTooDeep {
        /// The deepest nesting accepted.
        limit: usize,
    },
}
