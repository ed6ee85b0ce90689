//! Whatever bytes arrive, `transmit` answers at least a status word and never panics, and
//! the card keeps answering afterwards.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod applet_support;

use applet_support::{PIN, powered_applet, verify};
use cardgate_vcard::Card;
use proptest::prelude::*;

/// Instructions the applet knows, so generated commands reach its deeper paths.
const KNOWN_INS: [u8; 12] = [
    0xA4, 0xCB, 0xDB, 0x20, 0x24, 0x2C, 0x87, 0x47, 0xC0, 0xFD, 0xF8, 0xF7,
];

fn command() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Any bytes at all.
        proptest::collection::vec(any::<u8>(), 0..300),
        // Well-formed short APDUs with a known instruction and arbitrary parameters/data.
        (
            prop_oneof![Just(0x00u8), Just(0x10u8), any::<u8>()],
            proptest::sample::select(KNOWN_INS.to_vec()),
            any::<u8>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..255),
            proptest::option::of(any::<u8>()),
        )
            .prop_map(|(cla, ins, p1, p2, data, le)| {
                let mut out = vec![cla, ins, p1, p2];
                if !data.is_empty() {
                    out.push(data.len() as u8);
                    out.extend(data);
                }
                out.extend(le);
                out
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_and_always_answer_a_status_word(
        commands in proptest::collection::vec(command(), 1..12)
    ) {
        let (mut card, _) = powered_applet();
        for bytes in &commands {
            let response = card.transmit(bytes);
            prop_assert!(response.len() >= 2, "{bytes:02X?} -> {response:02X?}");
        }
        // Still a working card: the PIN may have lost tries to random VERIFYs, but a
        // status query answers one of the three verdicts.
        let response = card.transmit(&[0x00, 0x20, 0x00, 0x80]);
        let sw = u16::from_be_bytes([response[response.len() - 2], response[response.len() - 1]]);
        prop_assert!(sw == 0x9000 || sw == 0x6983 || (0x63C0..=0x63C3).contains(&sw), "{sw:04X}");
    }
}

#[test]
fn random_bytes_cannot_guess_their_way_past_the_pin_counter() {
    // A fixed sequence of garbage followed by a right PIN: the counter was untouched by
    // malformed VERIFYs.
    let (mut card, _) = powered_applet();
    for garbage in [
        &[0x00, 0x20, 0x00, 0x80, 0x03, 1, 2, 3][..],
        &[0x00, 0x20][..],
        &[][..],
    ] {
        card.transmit(garbage);
    }
    assert_eq!(verify(&mut card, PIN), 0x9000);
}
