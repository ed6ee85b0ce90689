//! Recorded APDU transcripts (`tests/transcripts/*.apdu`) replayed against the client: each
//! scenario runs over a [`ReplayChannel`], which fails the test on the first byte the client
//! sends differently from the recording, and checks what the client made of the answers.
//!
//! The transcripts were recorded from the real `PivApplet` by running the same scenarios over
//! a recording channel. To record them again (after a deliberate change to what the client
//! sends):
//!
//! ```text
//! CARDGATE_RECORD_TRANSCRIPTS=1 cargo test -p cardgate-piv --test transcripts -- --test-threads=1
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap: a panic is the failure report.

mod support;

use std::sync::Arc;

use cardgate_piv::{
    CardChannel, FinalTry, Passcode, PasscodeGuard, PasscodeStatus, PasscodeTriesLeft, PivClient,
    PivError, Sha256Digest, SignInput, Slot,
};
use support::{AppletChannel, HOLDER_NAME, HOLDER_UUID, PIN, ReplayChannel};

/// The card serial the recorded card has (derived from the UUID by provisioning).
const RECORDED_SERIAL_LEN: usize = 10;

fn passcode(value: &str) -> Passcode {
    Passcode::new(value.to_owned()).unwrap()
}

fn client<C: CardChannel>(channel: C) -> PivClient<C> {
    PivClient::new(channel, Arc::new(PasscodeGuard::in_memory().unwrap()))
}

/// Login's read: SELECT, CHUID, the 9A certificate.
fn identity<C: CardChannel>(client: &mut PivClient<C>) {
    let identity = client.read_identity().unwrap();
    assert_eq!(identity.holder_uuid.as_str(), HOLDER_UUID);
    assert_eq!(identity.holder_name, HOLDER_NAME);
    assert_eq!(identity.card_serial.as_str().len(), RECORDED_SERIAL_LEN);
}

/// Three wrong passcodes, the unconfirmed final try refused, then nothing sent to the
/// locked card.
fn lockout<C: CardChannel>(client: &mut PivClient<C>) {
    client.card_serial().unwrap();
    assert_eq!(
        client.passcode_status().unwrap(),
        PasscodeStatus::TriesLeft(PasscodeTriesLeft::new(3))
    );
    for (value, left, final_try) in [
        ("1111", 2, FinalTry::NotConfirmed),
        ("2222", 1, FinalTry::NotConfirmed),
    ] {
        let e = client
            .verify_passcode(&passcode(value), final_try)
            .unwrap_err();
        assert!(
            matches!(&e, PivError::WrongPasscode { tries_left, .. } if tries_left.get() == left),
            "{e:?}"
        );
    }
    let e = client
        .verify_passcode(&passcode("3333"), FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::FinalTryNotConfirmed { .. }), "{e:?}");
    let e = client
        .verify_passcode(&passcode("2222"), FinalTry::Confirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::RepeatedFailedValue { .. }), "{e:?}");
    let e = client
        .verify_passcode(&passcode("3333"), FinalTry::Confirmed)
        .unwrap_err();
    assert!(
        matches!(&e, PivError::WrongPasscode { tries_left, .. } if tries_left.is_exhausted()),
        "{e:?}"
    );
    let e = client
        .verify_passcode(&passcode(PIN), FinalTry::Confirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::CardBlocked { .. }), "{e:?}");
    assert_eq!(client.passcode_status().unwrap(), PasscodeStatus::Blocked);
}

/// The passcode verified, then an ECDSA signature over a fixed digest with the 9A key.
fn verify_and_sign<C: CardChannel>(client: &mut PivClient<C>) {
    client
        .verify_passcode(&passcode(PIN), FinalTry::NotConfirmed)
        .unwrap();
    assert_eq!(client.passcode_status().unwrap(), PasscodeStatus::Verified);
    let signature = client
        .sign(
            Slot::Authentication,
            SignInput::EcdsaP256Sha256(Sha256Digest::of(b"cardgate transcript")),
        )
        .unwrap();
    assert_eq!(signature[0], 0x30, "a DER ECDSA-Sig-Value");
}

type Scenario = (
    &'static str,
    &'static str,
    fn(&mut PivClient<ReplayChannel>),
);

/// Every transcript, with its title and the scenario that produced it.
const SCENARIOS: [Scenario; 3] = [
    (
        "identity.apdu",
        "Login's identity read: SELECT, CHUID (card serial), the 9A certificate\n\
         (holder UUID and name), with GET RESPONSE for the long certificate.",
        identity,
    ),
    (
        "lockout.apdu",
        "The three-attempt lockout: two wrong passcodes, the final try refused until\n\
         confirmed, the failed value not re-sent, the third failure, then nothing sent.",
        lockout,
    ),
    (
        "verify_and_sign.apdu",
        "VERIFY, the status query, and an ECDSA P-256 signature with the 9A key.",
        verify_and_sign,
    ),
];

/// Runs a scenario over the real applet and writes its transcript.
fn record(name: &str, title: &str, scenario: fn(&mut PivClient<AppletChannel>)) {
    let card = support::provisioned(&support::spec());
    let mut client = client(AppletChannel::new(support::applet(&card)));
    scenario(&mut client);
    let text = support::format_transcript(title, &client.channel().exchanges);
    let path = support::transcript_dir().join(name);
    std::fs::create_dir_all(support::transcript_dir()).unwrap();
    std::fs::write(&path, text).unwrap();
}

fn run(index: usize) {
    let (name, title, scenario) = SCENARIOS[index];
    if std::env::var_os("CARDGATE_RECORD_TRANSCRIPTS").is_some() {
        // The same scenario body, instantiated for the recording channel.
        let recorder: fn(&mut PivClient<AppletChannel>) = match index {
            0 => identity,
            1 => lockout,
            _ => verify_and_sign,
        };
        record(name, title, recorder);
    }
    let mut client = client(ReplayChannel::open(name));
    scenario(&mut client);
    client.channel().assert_finished();
}

#[test]
fn identity_transcript() {
    run(0);
}

#[test]
fn lockout_transcript() {
    run(1);
}

#[test]
fn verify_and_sign_transcript() {
    run(2);
}

#[test]
fn every_transcript_in_the_folder_is_replayed() {
    let mut found: Vec<String> = std::fs::read_dir(support::transcript_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".apdu"))
        .collect();
    found.sort();
    let mut listed: Vec<String> = SCENARIOS.iter().map(|s| s.0.to_owned()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

#[test]
fn replay_refuses_a_different_byte() {
    // A client that would send a different passcode than the recording must fail the test.
    let result = std::panic::catch_unwind(|| {
        let mut client = client(ReplayChannel::open("verify_and_sign.apdu"));
        let _ = client.verify_passcode(&passcode("7392"), FinalTry::NotConfirmed);
    });
    assert!(
        result.is_err(),
        "the replay accepted a command it never saw"
    );
}

#[test]
fn lockout_transcript_sends_nothing_after_the_third_failure() {
    // The recording itself ends with status queries only: read it back and check that after
    // the 63C0 answer no VERIFY with data appears.
    let text = std::fs::read_to_string(support::transcript_dir().join("lockout.apdu")).unwrap();
    let exchanges = support::parse_transcript(&text).unwrap();
    let blocked_at = exchanges
        .iter()
        .position(|(_, r)| r.ends_with(&[0x63, 0xC0]))
        .expect("the third failure is recorded");
    assert!(
        exchanges[blocked_at + 1..]
            .iter()
            .all(|(c, _)| c[1] != 0x20),
        "nothing is sent to the card after it locked"
    );
    let verifies_with_data = exchanges
        .iter()
        .filter(|(c, _)| c[1] == 0x20 && c.len() > 4)
        .count();
    assert_eq!(verifies_with_data, 3, "three tries, no more");
}
