//! Property tests: every encoder's output parses back to the value it encoded, and no parser
//! panics on arbitrary bytes.

use cardgate_apdu::tlv::{self, Builder, Tag, Tlv};
use cardgate_apdu::{CommandApdu, ResponseApdu, StatusWord};
use proptest::prelude::*;

/// Commands in the range the short form can carry.
fn short_command() -> impl Strategy<Value = CommandApdu> {
    (
        any::<[u8; 4]>(),
        proptest::collection::vec(any::<u8>(), 0..=255),
        proptest::option::of(1usize..=256),
    )
        .prop_map(|([cla, ins, p1, p2], data, le)| CommandApdu {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        })
}

/// Commands anywhere in the extended range (data kept below 2 KiB for speed, plus the edges).
fn extended_command() -> impl Strategy<Value = CommandApdu> {
    let data = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        Just(vec![0xA5; 65535]),
    ];
    let le = prop_oneof![
        Just(None),
        (1usize..=65536).prop_map(Some),
        Just(Some(65536)),
        Just(Some(1)),
    ];
    (any::<[u8; 4]>(), data, le).prop_map(|([cla, ins, p1, p2], data, le)| CommandApdu {
        cla,
        ins,
        p1,
        p2,
        data,
        le,
    })
}

/// Tags as BER encodes them: 1 byte (low five bits not all set), or 2 and 3 bytes with the
/// continuation bit right.
fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        any::<u8>()
            .prop_filter("not a multi-byte lead", |b| b & 0x1F != 0x1F)
            .prop_map(|b| Tag(u32::from(b))),
        (any::<u8>(), 0u8..0x80).prop_map(|(a, b)| Tag(u32::from_be_bytes([0, 0, a | 0x1F, b]))),
        (any::<u8>(), 0x80u8..=0xFF, 0u8..0x80).prop_map(|(a, b, c)| Tag(u32::from_be_bytes([
            0,
            a | 0x1F,
            b,
            c
        ]))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn short_commands_round_trip(command in short_command()) {
        let bytes = command.to_bytes().unwrap();
        prop_assert!(bytes.len() <= 4 + 1 + 255 + 1, "short form expected: {} bytes", bytes.len());
        prop_assert_eq!(CommandApdu::parse(&bytes).unwrap(), command);
    }

    #[test]
    fn extended_commands_round_trip(command in extended_command()) {
        let extended = command.to_bytes_extended().unwrap();
        prop_assert_eq!(CommandApdu::parse(&extended).unwrap(), command.clone());
        let either = command.to_bytes().unwrap();
        prop_assert_eq!(CommandApdu::parse(&either).unwrap(), command);
    }

    #[test]
    fn responses_round_trip(data in proptest::collection::vec(any::<u8>(), 0..1024), sw in any::<u16>()) {
        let response = ResponseApdu::new(data, StatusWord::from(sw));
        prop_assert_eq!(ResponseApdu::parse(&response.to_bytes()).unwrap(), response);
    }

    #[test]
    fn status_words_round_trip(sw in any::<u16>()) {
        prop_assert_eq!(StatusWord::from(sw).to_u16(), sw);
        let [sw1, sw2] = sw.to_be_bytes();
        prop_assert_eq!(StatusWord::from((sw1, sw2)).to_bytes(), [sw1, sw2]);
    }

    #[test]
    fn tlvs_round_trip(tag in tag(), value in proptest::collection::vec(any::<u8>(), 0..70_000)) {
        let encoded = tlv::encode(tag, &value);
        let (parsed, rest) = Tlv::parse_one(&encoded).unwrap();
        prop_assert!(rest.is_empty());
        prop_assert_eq!(parsed.tag, tag);
        prop_assert_eq!(parsed.value, &value[..]);
        prop_assert_eq!(Tag::from_bytes(&tag.to_bytes()).unwrap(), tag);
    }

    #[test]
    fn tlv_sequences_round_trip(items in proptest::collection::vec(
        (tag(), proptest::collection::vec(any::<u8>(), 0..300)), 0..8)
    ) {
        let builder = items.iter().fold(Builder::new(), |b, (t, v)| b.add(*t, v));
        let bytes = builder.into_bytes();
        let parsed = Tlv::parse_all(&bytes).unwrap();
        prop_assert_eq!(parsed.len(), items.len());
        for (tlv, (t, v)) in parsed.iter().zip(&items) {
            prop_assert_eq!(tlv.tag, *t);
            prop_assert_eq!(tlv.value, &v[..]);
        }
        // Wrapped in a template, the same sequence comes back as its children.
        let template = Builder::new().add(Tag(0x7C), &bytes).into_bytes();
        let (outer, _) = Tlv::parse_one(&template).unwrap();
        prop_assert_eq!(outer.children().unwrap(), parsed);
    }

    #[test]
    fn parsed_trees_re_encode_to_equal_trees(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(tree) = tlv::parse_tree(&bytes) {
            let again = tlv::encode_tree(&tree);
            prop_assert_eq!(tlv::parse_tree(&again).unwrap(), tree);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_parser(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(command) = CommandApdu::parse(&bytes) {
            // Whatever parses can be encoded again and means the same.
            let again = command.to_bytes().unwrap();
            prop_assert_eq!(CommandApdu::parse(&again).unwrap(), command);
        }
        let _ = ResponseApdu::parse(&bytes);
        if let Ok(list) = Tlv::parse_all(&bytes) {
            for tlv in list {
                let _ = tlv.children();
            }
        }
        let _ = Tlv::parse_one(&bytes);
        let _ = tlv::parse_tree(&bytes);
        let _ = Tag::from_bytes(&bytes);
    }

    #[test]
    fn apdu_shaped_bytes_never_panic_the_command_parser(
        header in any::<[u8; 4]>(),
        marker in prop_oneof![Just(0u8), any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        // Arbitrary bytes rarely hit the extended form; force its marker byte half the time.
        let mut bytes = header.to_vec();
        bytes.push(marker);
        bytes.extend(body);
        let _ = CommandApdu::parse(&bytes);
    }
}
