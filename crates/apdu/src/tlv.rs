//! BER-TLV as PIV (SP 800-73-4) and ISO 7816-4 use it: tags of 1 to 3 bytes, definite lengths
//! up to 0xFFFFFF, zero-copy parsing, a depth-bounded tree parser and a builder for nested
//! templates such as `7C { 82 00, 81 <challenge> }`.
//!
//! Parsing is strict: no indefinite lengths and no `00`/`FF` padding between objects. Length
//! fields in non-minimal form (`81 05`) are accepted, since cards send them; encoding always
//! writes the minimal form.

use std::fmt;

use crate::Error;

/// The longest tag accepted, in bytes (PIV's longest is 3, e.g. `5FC105`).
pub const MAX_TAG_LEN: usize = 3;
/// The deepest nesting of constructed objects [`parse_tree`] follows. PIV templates nest at
/// most three deep; the bound keeps hostile input from exhausting the stack.
pub const MAX_NESTING_DEPTH: usize = 16;

/// A BER-TLV tag, its bytes read big-endian: `Tag(0x5FC102)` is the CHUID's tag `5F C1 02`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(pub u32);

impl Tag {
    /// PIV data object container (`53`): wraps every data object read or written.
    pub const DATA_OBJECT: Tag = Tag(0x53);
    /// Tag list (`5C`): names the data object in GET DATA.
    pub const TAG_LIST: Tag = Tag(0x5C);
    /// Application property template (`61`): the answer to SELECT of the PIV application.
    pub const APPLICATION_PROPERTY_TEMPLATE: Tag = Tag(0x61);
    /// Application identifier (`4F`).
    pub const APPLICATION_IDENTIFIER: Tag = Tag(0x4F);
    /// Dynamic authentication template (`7C`): GENERAL AUTHENTICATE's data.
    pub const DYNAMIC_AUTHENTICATION_TEMPLATE: Tag = Tag(0x7C);
    /// Public key template (`7F49`): the answer to GENERATE ASYMMETRIC KEY PAIR.
    pub const PUBLIC_KEY_TEMPLATE: Tag = Tag(0x7F49);

    /// Parses exactly one tag from `bytes` (no trailing bytes), e.g. from a `5C` tag list.
    pub fn from_bytes(bytes: &[u8]) -> Result<Tag, Error> {
        match parse_tag(bytes, 0) {
            Ok((tag, used)) if used == bytes.len() => Ok(tag),
            _ => Err(Error::MalformedTag {
                bytes: bytes.to_vec(),
            }),
        }
    }

    /// The tag's bytes as they appear on the wire (leading zero bytes dropped, at least one).
    pub fn to_bytes(self) -> Vec<u8> {
        let bytes = self.0.to_be_bytes();
        let first = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        bytes[first..].to_vec()
    }

    /// Whether the value holds further TLVs (bit 6 of the first tag byte, 0x20).
    pub fn is_constructed(self) -> bool {
        self.to_bytes().first().is_some_and(|b| b & 0x20 != 0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({self})")
    }
}

impl fmt::Display for Tag {
    /// Upper-case hex of the tag bytes, as specifications write them (`5FC102`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.to_bytes() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// One TLV object borrowed from the buffer it was parsed from.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tlv<'a> {
    /// The tag.
    pub tag: Tag,
    /// The value bytes (for a constructed tag: the encoded children).
    pub value: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// Parses the first TLV of `input` and returns it with the bytes after it.
    pub fn parse_one(input: &'a [u8]) -> Result<(Tlv<'a>, &'a [u8]), Error> {
        parse_one_at(input, 0)
    }

    /// Parses the whole buffer as a sequence of TLVs. An empty buffer is an empty sequence
    /// (a template with no children); trailing bytes that are not a whole TLV are an error.
    pub fn parse_all(input: &'a [u8]) -> Result<Vec<Tlv<'a>>, Error> {
        let mut out = Vec::new();
        let mut offset = 0;
        let mut rest = input;
        while !rest.is_empty() {
            let (tlv, after) = parse_one_at(rest, offset)?;
            offset += rest.len() - after.len();
            out.push(tlv);
            rest = after;
        }
        Ok(out)
    }

    /// Parses the value as a sequence of TLVs (for constructed tags, and for PIV's `53`
    /// container, which holds TLVs although its tag is primitive).
    pub fn children(&self) -> Result<Vec<Tlv<'a>>, Error> {
        Tlv::parse_all(self.value).map_err(|e| match e {
            Error::LengthPastBuffer {
                offset,
                length,
                available,
                ..
            } => Error::ChildPastParent {
                parent: self.tag,
                offset,
                length,
                available,
            },
            other => other,
        })
    }

    /// The first TLV in `list` with `tag`.
    pub fn find(list: &[Tlv<'a>], tag: Tag) -> Option<Tlv<'a>> {
        list.iter().find(|t| t.tag == tag).copied()
    }

    /// The TLV re-encoded (minimal length form).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self.tag, self.value)
    }
}

impl fmt::Debug for Tlv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tlv")
            .field("tag", &self.tag)
            .field("value", &crate::hexfmt::Hex(self.value))
            .finish()
    }
}

/// A parsed TLV tree: primitive objects keep their value, constructed ones their children.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node<'a> {
    /// The tag.
    pub tag: Tag,
    /// The value or the children, as the tag's constructed bit says.
    pub content: Content<'a>,
}

/// What a [`Node`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Content<'a> {
    /// A primitive object's value bytes.
    Primitive(&'a [u8]),
    /// A constructed object's children.
    Constructed(Vec<Node<'a>>),
}

impl Node<'_> {
    /// The node encoded again in minimal form. Parsing the result gives an equal tree.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.content {
            Content::Primitive(value) => encode(self.tag, value),
            Content::Constructed(children) => encode(self.tag, &encode_tree(children)),
        }
    }
}

/// Parses a whole buffer into a tree, descending into every constructed tag (at most
/// [`MAX_NESTING_DEPTH`] levels). A constructed value that is not a TLV sequence is an error.
pub fn parse_tree(input: &[u8]) -> Result<Vec<Node<'_>>, Error> {
    parse_tree_at(input, 0, None)
}

/// Encodes a sequence of tree nodes, one after the other.
pub fn encode_tree(nodes: &[Node<'_>]) -> Vec<u8> {
    nodes.iter().flat_map(Node::to_bytes).collect()
}

fn parse_tree_at<'a>(
    input: &'a [u8],
    depth: usize,
    parent: Option<Tlv<'a>>,
) -> Result<Vec<Node<'a>>, Error> {
    if depth > MAX_NESTING_DEPTH {
        return Err(Error::NestingTooDeep {
            limit: MAX_NESTING_DEPTH,
        });
    }
    let list = match parent {
        Some(parent) => parent.children()?,
        None => Tlv::parse_all(input)?,
    };
    list.into_iter()
        .map(|tlv| {
            let content = if tlv.tag.is_constructed() {
                Content::Constructed(parse_tree_at(tlv.value, depth + 1, Some(tlv))?)
            } else {
                Content::Primitive(tlv.value)
            };
            Ok(Node {
                tag: tlv.tag,
                content,
            })
        })
        .collect()
}

/// Encodes one TLV with a minimal definite length.
pub fn encode(tag: Tag, value: &[u8]) -> Vec<u8> {
    let mut out = tag.to_bytes();
    out.extend(encode_length(value.len()));
    out.extend_from_slice(value);
    out
}

/// Encodes a definite length in minimal form: `00`..`7F` in one byte, then `81 xx`,
/// `82 xxxx`, `83 xxxxxx`. Lengths above 0xFFFFFF get the general BER long form, which this
/// crate's parser (like PIV cards) refuses.
pub fn encode_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes = len.to_be_bytes();
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let significant = &bytes[first..];
    let mut out = Vec::with_capacity(1 + significant.len());
    // At most size_of::<usize>() bytes, so this fits in the low seven bits.
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
    out
}

/// Builds a sequence of TLVs, nesting templates by building them separately:
///
/// ```
/// use cardgate_apdu::tlv::{Builder, Tag};
/// let challenge = [0x11; 8];
/// let data = Builder::new()
///     .add(Tag(0x82), &[])
///     .add(Tag(0x81), &challenge)
///     .into_template(Tag::DYNAMIC_AUTHENTICATION_TEMPLATE);
/// assert_eq!(&data[..6], &[0x7C, 0x0C, 0x82, 0x00, 0x81, 0x08]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Builder {
    encoded: Vec<u8>,
}

impl Builder {
    /// An empty sequence.
    pub fn new() -> Self {
        Builder::default()
    }

    /// Appends one primitive (or pre-encoded constructed) TLV.
    pub fn add(mut self, tag: Tag, value: &[u8]) -> Self {
        self.encoded.extend(encode(tag, value));
        self
    }

    /// Appends `inner`'s sequence wrapped in `tag`.
    pub fn add_template(mut self, tag: Tag, inner: Builder) -> Self {
        self.encoded.extend(encode(tag, &inner.encoded));
        self
    }

    /// The sequence's bytes, unwrapped.
    pub fn into_bytes(self) -> Vec<u8> {
        self.encoded
    }

    /// The sequence wrapped in one outer `tag`.
    pub fn into_template(self, tag: Tag) -> Vec<u8> {
        encode(tag, &self.encoded)
    }
}

/// Parses a tag starting at `input[0]`; `base` is `input`'s offset in the caller's buffer.
/// Returns the tag and how many bytes it took.
fn parse_tag(input: &[u8], base: usize) -> Result<(Tag, usize), Error> {
    let Some(&first) = input.first() else {
        return Err(Error::Truncated {
            what: "BER-TLV tag",
            offset: base,
            needed: 1,
            available: 0,
        });
    };
    let mut value = u32::from(first);
    let mut used = 1;
    if first & 0x1F == 0x1F {
        // Subsequent bytes follow while bit 8 is set.
        loop {
            let Some(&next) = input.get(used) else {
                return Err(Error::Truncated {
                    what: "BER-TLV tag",
                    offset: base,
                    needed: used + 1,
                    available: input.len(),
                });
            };
            if used >= MAX_TAG_LEN {
                return Err(Error::TagTooLong {
                    offset: base,
                    max: MAX_TAG_LEN,
                });
            }
            value = (value << 8) | u32::from(next);
            used += 1;
            if next & 0x80 == 0 {
                break;
            }
        }
    }
    Ok((Tag(value), used))
}

/// Parses a length field at `input[0]`; returns the length and how many bytes it took.
fn parse_length(input: &[u8], base: usize) -> Result<(usize, usize), Error> {
    let Some(&first) = input.first() else {
        return Err(Error::Truncated {
            what: "BER-TLV length",
            offset: base,
            needed: 1,
            available: 0,
        });
    };
    match first {
        0x00..=0x7F => Ok((usize::from(first), 1)),
        0x80 => Err(Error::IndefiniteLength { offset: base }),
        0x81..=0x83 => {
            let count = usize::from(first & 0x7F);
            let Some(bytes) = input.get(1..1 + count) else {
                return Err(Error::Truncated {
                    what: "BER-TLV length",
                    offset: base,
                    needed: 1 + count,
                    available: input.len(),
                });
            };
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            Ok((len, 1 + count))
        }
        _ => Err(Error::LengthTooLarge {
            offset: base,
            length_bytes: usize::from(first & 0x7F),
        }),
    }
}

fn parse_one_at(input: &[u8], base: usize) -> Result<(Tlv<'_>, &[u8]), Error> {
    let (tag, tag_len) = parse_tag(input, base)?;
    let (length, length_len) = parse_length(&input[tag_len..], base + tag_len)?;
    let value_start = tag_len + length_len;
    let after_header = &input[value_start..];
    if length > after_header.len() {
        return Err(Error::LengthPastBuffer {
            what: "BER-TLV value",
            offset: base + value_start,
            length,
            available: after_header.len(),
        });
    }
    let (value, rest) = after_header.split_at(length);
    Ok((Tlv { tag, value }, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn parses_a_piv_select_answer() {
        // Application property template: AID, coexistent tag allocation authority.
        let raw = bytes("61114F0600001000010079074F05A000000308");
        let (apt, rest) = Tlv::parse_one(&raw).unwrap();
        assert!(rest.is_empty());
        assert_eq!(apt.tag, Tag::APPLICATION_PROPERTY_TEMPLATE);
        assert!(apt.tag.is_constructed());
        let children = apt.children().unwrap();
        assert_eq!(children.len(), 2);
        let aid = Tlv::find(&children, Tag::APPLICATION_IDENTIFIER).unwrap();
        assert_eq!(aid.value, bytes("000010000100"));
        let authority = Tlv::find(&children, Tag(0x79)).unwrap();
        assert_eq!(authority.children().unwrap()[0].value, bytes("A000000308"));
        assert_eq!(Tlv::find(&children, Tag(0x50)), None);
    }

    #[test]
    fn parses_three_byte_tags_and_long_lengths() {
        let tag_list = bytes("5C035FC105");
        let (list, _) = Tlv::parse_one(&tag_list).unwrap();
        assert_eq!(Tag::from_bytes(list.value).unwrap(), Tag(0x5FC105));
        let encoded = encode(Tag(0x70), &[0xAA; 0x100]);
        assert_eq!(&encoded[..4], &bytes("70820100")[..]);
        let (tlv, rest) = Tlv::parse_one(&encoded).unwrap();
        assert_eq!((tlv.value.len(), rest.len()), (0x100, 0));
        // Non-minimal length forms are accepted.
        let non_minimal = bytes("8181020102");
        let (tlv, _) = Tlv::parse_one(&non_minimal).unwrap();
        assert_eq!(tlv.value, &[0x01, 0x02]);
        assert_eq!(
            Tlv::parse_one(&bytes("5FC10283000001AA")).unwrap().0.value,
            &[0xAA]
        );
    }

    #[test]
    fn tags_encode_and_classify() {
        assert_eq!(Tag(0x5FC102).to_bytes(), bytes("5FC102"));
        assert_eq!(Tag(0x7F49).to_bytes(), bytes("7F49"));
        assert_eq!(Tag(0).to_bytes(), vec![0]);
        assert!(Tag(0x7C).is_constructed());
        assert!(Tag(0x7F49).is_constructed());
        assert!(!Tag(0x53).is_constructed());
        assert!(!Tag(0x5FC102).is_constructed());
        assert_eq!(Tag(0x5FC102).to_string(), "5FC102");
        assert!(matches!(
            Tag::from_bytes(&[0x5F]),
            Err(Error::MalformedTag { .. })
        ));
        assert!(matches!(
            Tag::from_bytes(&[0x53, 0x00]),
            Err(Error::MalformedTag { .. })
        ));
        assert!(matches!(
            Tag::from_bytes(&[]),
            Err(Error::MalformedTag { .. })
        ));
    }

    #[test]
    fn lengths_encode_minimally() {
        assert_eq!(encode_length(0), bytes("00"));
        assert_eq!(encode_length(0x7F), bytes("7F"));
        assert_eq!(encode_length(0x80), bytes("8180"));
        assert_eq!(encode_length(0xFF), bytes("81FF"));
        assert_eq!(encode_length(0x100), bytes("820100"));
        assert_eq!(encode_length(0xFFFFFF), bytes("83FFFFFF"));
        assert_eq!(encode_length(0x1000000), bytes("8401000000"));
    }

    #[test]
    fn builder_nests_templates() {
        let challenge = bytes("0102030405060708");
        let data = Builder::new()
            .add(Tag(0x82), &[])
            .add(Tag(0x81), &challenge)
            .into_template(Tag::DYNAMIC_AUTHENTICATION_TEMPLATE);
        assert_eq!(
            data,
            bytes("7C0C8200810801020304050607 08".replace(' ', "").as_str())
        );
        let nested = Builder::new()
            .add_template(Tag(0x7C), Builder::new().add(Tag(0x82), &[]))
            .add(Tag(0x99), &[1])
            .into_bytes();
        assert_eq!(nested, bytes("7C028200990101"));
    }

    #[test]
    fn parse_all_reads_sequences_and_empty_input() {
        assert_eq!(Tlv::parse_all(&[]).unwrap(), vec![]);
        let raw = bytes("8200810101");
        let list = Tlv::parse_all(&raw).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].value, &[0x01]);
    }

    #[test]
    fn malformed_tlvs_are_errors_with_offsets() {
        assert!(matches!(
            Tlv::parse_one(&[]),
            Err(Error::Truncated { offset: 0, .. })
        ));
        // Tag only.
        assert!(matches!(
            Tlv::parse_one(&bytes("53")),
            Err(Error::Truncated {
                what: "BER-TLV length",
                offset: 1,
                ..
            })
        ));
        // Multi-byte tag cut short.
        assert!(matches!(
            Tlv::parse_one(&bytes("5FC1")),
            Err(Error::Truncated { .. })
        ));
        // Four-byte tag.
        assert_eq!(
            Tlv::parse_one(&bytes("5F81818101AA")),
            Err(Error::TagTooLong { offset: 0, max: 3 })
        );
        // Indefinite length.
        assert_eq!(
            Tlv::parse_one(&bytes("7C80820000 00".replace(' ', "").as_str())),
            Err(Error::IndefiniteLength { offset: 1 })
        );
        // Four length bytes, and the reserved FF.
        assert_eq!(
            Tlv::parse_one(&bytes("538400000001AA")),
            Err(Error::LengthTooLarge {
                offset: 1,
                length_bytes: 4
            })
        );
        assert!(matches!(
            Tlv::parse_one(&bytes("53FF")),
            Err(Error::LengthTooLarge { .. })
        ));
        // Long length form cut short.
        assert!(matches!(
            Tlv::parse_one(&bytes("538201")),
            Err(Error::Truncated {
                offset: 1,
                needed: 3,
                available: 2,
                ..
            })
        ));
        // Value past the buffer, second object of a sequence: offset counts from the start.
        assert_eq!(
            Tlv::parse_all(&bytes("8200 8105AABB".replace(' ', "").as_str())),
            Err(Error::LengthPastBuffer {
                what: "BER-TLV value",
                offset: 4,
                length: 5,
                available: 2
            })
        );
        // Absurd length.
        assert!(matches!(
            Tlv::parse_one(&bytes("53 83FFFFFF 00".replace(' ', "").as_str())),
            Err(Error::LengthPastBuffer {
                length: 0xFFFFFF,
                ..
            })
        ));
    }

    #[test]
    fn a_child_past_its_parent_is_an_error() {
        // 7C holds 3 bytes, but its child 81 claims 5.
        let raw = bytes("7C038105AA 9000".replace(' ', "").as_str());
        let (outer, rest) = Tlv::parse_one(&raw).unwrap();
        assert_eq!(rest, &[0x90, 0x00]);
        assert_eq!(
            outer.children(),
            Err(Error::ChildPastParent {
                parent: Tag(0x7C),
                offset: 2,
                length: 5,
                available: 1
            })
        );
        assert!(matches!(
            parse_tree(&raw),
            Err(Error::ChildPastParent { .. })
        ));
    }

    #[test]
    fn trees_parse_and_re_encode() {
        let raw = bytes(
            "7C0A 8200 8106 010203040506 5301FF"
                .replace(' ', "")
                .as_str(),
        );
        let tree = parse_tree(&raw).unwrap();
        assert_eq!(tree.len(), 2);
        let Content::Constructed(children) = &tree[0].content else {
            panic!("7C is constructed: {tree:?}");
        };
        assert_eq!(children[1].content, Content::Primitive(&raw[6..12]));
        assert_eq!(tree[1].content, Content::Primitive(&[0xFF][..]));
        assert_eq!(encode_tree(&tree), raw);
    }

    #[test]
    fn nesting_is_bounded() {
        // 20 levels of 7C wrapping: deeper than MAX_NESTING_DEPTH.
        let mut raw = Vec::new();
        for _ in 0..20 {
            raw = encode(Tag(0x7C), &raw);
        }
        assert_eq!(
            parse_tree(&raw),
            Err(Error::NestingTooDeep {
                limit: MAX_NESTING_DEPTH
            })
        );
        // Exactly at the limit is fine.
        let mut raw = Vec::new();
        for _ in 0..MAX_NESTING_DEPTH {
            raw = encode(Tag(0x7C), &raw);
        }
        assert!(parse_tree(&raw).is_ok());
    }
}
