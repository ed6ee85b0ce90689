//! Test equipment for the client's integration tests: provisioned virtual cards wrapped in a
//! [`CardChannel`] that counts (and can record) every APDU, and a [`ReplayChannel`] that plays
//! a recorded transcript back and fails the test on the first byte the client sends
//! differently.
//!
//! Transcripts use the format of `crates/vcard/tests/transcripts/`: `# comment`, `> <hex>`
//! for a command, `< <hex>` for the card's answer (data then SW1 SW2); here every answer is
//! exact bytes, since they were recorded, not written by hand.
#![allow(dead_code)] // Each test binary uses its own part of the helpers.
#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is the failure report.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cardgate_piv::{CardChannel, ChannelError, PasscodeGuard, PivClient};
use cardgate_vcard::Card;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::provision::{CardSpec, ProvisionedCard, TestCa, provision};

/// One recorded exchange: (command, response), raw bytes.
pub type Exchange = (Vec<u8>, Vec<u8>);

/// The passcode the test cards get.
pub const PIN: &str = "7391";
/// The unlock code the test cards get.
pub const PUK: &str = "80264513";
/// The AES-128 management key the test cards get.
pub const MANAGEMENT_KEY: [u8; 16] = [
    0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98, 0xA9, 0xBA, 0xCB, 0xDC, 0xED, 0xFE, 0x0F,
];
/// The holder of the test cards.
pub const HOLDER_NAME: &str = "Asha Patel";
/// The holder's UUID.
pub const HOLDER_UUID: &str = "555000111222";

/// The standard spec: a permanent ECC card for Asha Patel with the test passcode, unlock code
/// and management key.
pub fn spec() -> CardSpec {
    CardSpec::new(HOLDER_NAME, HOLDER_UUID)
        .pin(PIN)
        .puk(PUK)
        .management_key(&MANAGEMENT_KEY)
}

/// Provisions a card from `spec` with a fresh test CA.
pub fn provisioned(spec: &CardSpec) -> ProvisionedCard {
    let ca = TestCa::generate("Cardgate Piv Test CA").expect("test CA");
    provision(&ca, spec).expect("provisioning")
}

/// A powered-on applet over a provisioned card, in memory.
pub fn applet(card: &ProvisionedCard) -> PivApplet {
    let mut applet = PivApplet::new(card.card.clone());
    applet.power_on();
    applet
}

/// The virtual card as a [`CardChannel`]: counts APDUs and records every exchange.
pub struct AppletChannel {
    /// The card.
    pub applet: PivApplet,
    /// Every exchange so far: (command, response).
    pub exchanges: Vec<Exchange>,
    /// Whether to announce extended APDUs.
    pub extended: bool,
    /// When set, the transport fails with this instead of reaching the card, after
    /// delivering the command (as a card pulled mid-command).
    pub fail_next: Option<fn() -> ChannelError>,
}

impl AppletChannel {
    /// A channel to `applet`, short APDUs only.
    pub fn new(applet: PivApplet) -> Self {
        AppletChannel {
            applet,
            exchanges: Vec::new(),
            extended: false,
            fail_next: None,
        }
    }

    /// APDUs sent so far.
    pub fn count(&self) -> usize {
        self.exchanges.len()
    }

    /// The card's passcode tries left, read from its card file (not through APDUs).
    pub fn card_pin_tries(&self) -> u8 {
        self.applet.card_file().pin.tries_left
    }
}

impl CardChannel for AppletChannel {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let response = self.applet.transmit(command);
        self.exchanges.push((command.to_vec(), response.clone()));
        if let Some(fail) = self.fail_next.take() {
            return Err(fail());
        }
        Ok(response)
    }

    fn supports_extended_apdus(&self) -> bool {
        self.extended
    }
}

/// A client over `applet` with a fresh in-memory guard.
pub fn client(applet: PivApplet) -> PivClient<AppletChannel> {
    PivClient::new(
        AppletChannel::new(applet),
        Arc::new(PasscodeGuard::in_memory().expect("guard")),
    )
}

/// The directory of the recorded transcripts.
pub fn transcript_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts")
}

/// What a command is, for the comment above it in a recorded transcript. Passcode values are
/// test data here, but the comment still names only the command.
fn describe(command: &[u8]) -> String {
    let ins = command.get(1).copied().unwrap_or(0);
    let p1 = command.get(2).copied().unwrap_or(0);
    let p2 = command.get(3).copied().unwrap_or(0);
    match ins {
        0xA4 => "SELECT the PIV application".into(),
        0xCB => {
            let tag = command
                .get(7..10)
                .map(|t| t.iter().map(|b| format!("{b:02X}")).collect::<String>())
                .unwrap_or_default();
            format!("GET DATA {tag}")
        }
        0xC0 => "GET RESPONSE".into(),
        0x20 if command.len() == 4 => "VERIFY without data: passcode status, spends nothing".into(),
        0x20 => "VERIFY the passcode".into(),
        0x24 => "CHANGE REFERENCE DATA".into(),
        0x2C => "RESET RETRY COUNTER with the unlock code".into(),
        0x87 if p2 == 0x9B => "GENERAL AUTHENTICATE with the management key".into(),
        0x87 => format!("GENERAL AUTHENTICATE: sign with {p2:02X} (algorithm {p1:02X})"),
        0x47 => format!("GENERATE ASYMMETRIC KEY PAIR in {p2:02X}"),
        0xDB => "PUT DATA".into(),
        0xF7 => format!("GET METADATA of {p2:02X}"),
        other => format!("INS {other:02X}"),
    }
}

/// Formats recorded exchanges as a transcript.
pub fn format_transcript(title: &str, exchanges: &[Exchange]) -> String {
    let mut out = String::new();
    for line in title.lines() {
        let _ = writeln!(out, "# {line}");
    }
    let _ = writeln!(
        out,
        "# Recorded from cardgate-vcard's PivApplet by crates/piv/tests/transcripts.rs\n\
         # (CARDGATE_RECORD_TRANSCRIPTS=1 cargo test -p cardgate-piv --test transcripts)."
    );
    for (command, response) in exchanges {
        let _ = writeln!(out, "\n# {}", describe(command));
        let _ = writeln!(out, "> {}", hex::encode_upper(command));
        let _ = writeln!(out, "< {}", hex::encode_upper(response));
    }
    out
}

/// Parses a transcript into (command, response) pairs.
pub fn parse_transcript(text: &str) -> Result<Vec<Exchange>, String> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, Vec<u8>)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let hex_of = |s: &str| {
            let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            hex::decode(compact).map_err(|e| format!("line {line_no}: {e}"))
        };
        if let Some(command) = line.strip_prefix('>') {
            if let Some((previous, _)) = pending {
                return Err(format!("line {previous}: command without `<`"));
            }
            pending = Some((line_no, hex_of(command)?));
        } else if let Some(response) = line.strip_prefix('<') {
            let Some((_, command)) = pending.take() else {
                return Err(format!("line {line_no}: `<` without a command"));
            };
            out.push((command, hex_of(response)?));
        } else {
            return Err(format!("line {line_no}: unknown line {line:?}"));
        }
    }
    if let Some((line, _)) = pending {
        return Err(format!("line {line}: command without `<`"));
    }
    Ok(out)
}

/// Plays a transcript back: each command the client sends must be exactly the next recorded
/// one, and gets the recorded answer. A different byte fails the test at once.
pub struct ReplayChannel {
    name: String,
    script: VecDeque<Exchange>,
    played: usize,
}

impl ReplayChannel {
    /// A replay of the transcript file `name` in [`transcript_dir`].
    pub fn open(name: &str) -> Self {
        let path = transcript_dir().join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; record it with CARDGATE_RECORD_TRANSCRIPTS=1",
                path.display()
            )
        });
        let script = parse_transcript(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        ReplayChannel {
            name: name.to_owned(),
            script: script.into(),
            played: 0,
        }
    }

    /// Fails the test unless every recorded exchange was played.
    pub fn assert_finished(&self) {
        assert!(
            self.script.is_empty(),
            "{}: the client stopped after {} exchanges; {} recorded ones were not sent, \
             the next being {}",
            self.name,
            self.played,
            self.script.len(),
            self.script
                .front()
                .map(|(c, _)| hex::encode_upper(c))
                .unwrap_or_default()
        );
    }
}

impl CardChannel for ReplayChannel {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let Some((expected, response)) = self.script.pop_front() else {
            panic!(
                "{}: the client sent {} after the transcript's {} exchanges ended",
                self.name,
                hex::encode_upper(command),
                self.played
            );
        };
        assert_eq!(
            hex::encode_upper(command),
            hex::encode_upper(&expected),
            "{}: exchange {} differs from the transcript",
            self.name,
            self.played + 1
        );
        self.played += 1;
        Ok(response)
    }
}
