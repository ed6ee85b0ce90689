//! `cardgate doctor`: one command for IT support that checks, in order, everything a smartcard
//! log-in on this workstation needs, and prints one verdict a line with the next step for each
//! failure: the agent's configuration, pcscd, the readers and their PIN pads, the card, its
//! ATR, the PIV application and the APDU round-trip time, the passcode tries, the
//! authentication certificate (validity, chain, revocation), the clock against the endpoint's,
//! the endpoint over TLS with the pinned service CA, and the agent on D-Bus.
//!
//! Doctor talks PC/SC itself, so it works when `cardgated` is down: shared mode, one short
//! transaction per card, reads only (SELECT, CHUID, the 9A certificate, and VERIFY without
//! data, which reports the tries left without spending one), and the card is left as it was
//! (`SCARD_LEAVE_CARD`), so an agent session on the same card is not disturbed.
//!
//! Two rooms (private modules): `gather` asks the world (the file, pcscd, the card, the
//! endpoint, the bus) and writes down what it found as typed facts (`facts`), one struct per
//! check area, no sentences; `render` turns facts into the lines, the JSON report and the text
//! people read, touching nothing. The report types below are what both share with the support
//! bundle.

use std::path::Path;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::atr::AtrInfo;
use crate::format::StatusView;

pub(crate) mod facts;
mod gather;
mod render;

pub use render::render;

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Fine.
    Ok,
    /// Works, but someone should know (few tries left, certificate expiring, clock drifting).
    Warn,
    /// Broken: a log-in cannot work until the next step is done.
    Fail,
    /// Not checked, because something it needs failed earlier (the line says what).
    Skipped,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckLine {
    /// Stable id of the check (`config`, `pcscd`, `readers`, `card`, `atr`, `piv`,
    /// `passcode`, `certificate`, `clock`, `endpoint`, `daemon`).
    pub check: &'static str,
    /// Its outcome.
    pub verdict: Verdict,
    /// What was found, in a sentence.
    pub summary: String,
    /// What to do next; set for every failure and warning.
    pub next_step: Option<String>,
}

/// A reader as doctor saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReaderDetails {
    /// The PC/SC name.
    pub name: String,
    /// Whether a card is in it.
    pub card_present: bool,
    /// `usable`, `none`, `disabled` (advertised by a model known not to have one), or
    /// `unknown` (features are read through a card connection, so only with a card in).
    pub pin_pad: String,
    /// The model from the quirk table, recognised by USB vendor and product id.
    pub model: Option<String>,
    /// USB vendor and product id as the reader reports them (PC/SC part 10), hex.
    pub usb_id: Option<String>,
}

/// The card as doctor read it (no passcode, no key: public data only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CardDetails {
    /// The reader it is in.
    pub reader: String,
    /// The decoded ATR.
    pub atr: AtrInfo,
    /// The card serial from the CHUID, when the PIV application answered.
    pub card_serial: Option<String>,
    /// The holder's 12-digit UUID from the authentication certificate.
    pub holder_uuid: Option<String>,
    /// The holder's name.
    pub holder_name: Option<String>,
    /// Passcode tries left (`None` when unknown); `0` means locked.
    pub passcode_tries_left: Option<u8>,
    /// The authentication certificate's serial (hex), as the CRL and the RA know it.
    pub certificate_serial: Option<String>,
    /// The authentication certificate's expiry, RFC 3339.
    pub certificate_not_after: Option<String>,
    /// The certificate's issuer.
    pub certificate_issuer: Option<String>,
    /// Every finding about the certificate, in words for people.
    pub certificate_findings: Vec<String>,
    /// Time for one APDU round trip (SELECT of the PIV application), milliseconds.
    pub apdu_round_trip_ms: Option<f64>,
    /// APDUs sent to read this (never a passcode).
    pub apdus: u64,
}

/// Everything doctor found: the lines, and the details behind them for a support bundle.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// When the checks ran, UTC, RFC 3339.
    pub checked_at: String,
    /// The agent's configuration file read.
    pub config_file: String,
    /// The bus the agent was looked for on.
    pub bus: String,
    /// One line per check, in order.
    pub checks: Vec<CheckLine>,
    /// The readers pcscd lists.
    pub readers: Vec<ReaderDetails>,
    /// The card read (the first reader with a card), if any.
    pub card: Option<CardDetails>,
    /// The agent's own view, when it answered.
    pub daemon_status: Option<StatusView>,
    /// Workstation clock minus the endpoint's, seconds, when measured.
    pub clock_skew_seconds: Option<i64>,
}

impl DoctorReport {
    /// Whether any check failed (exit code 1).
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Fail)
    }
}

/// Now, UTC, to the second (`2026-11-23T10:15:02Z`).
pub(crate) fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Runs every check. Never fails: whatever cannot be checked is a line saying why.
pub async fn diagnose(config_path: &Path, bus: &str) -> DoctorReport {
    render::report(&gather::gather(config_path, bus).await)
}

/// `cardgate doctor`: runs the checks, prints them, exit 0 when nothing failed, 1 otherwise.
pub(crate) async fn run(config: &Path, bus: &str, json: bool) -> u8 {
    let report = diagnose(config, bus).await;
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).unwrap_or_else(|e| format!(
                "{{\"ok\":false,\"error\":\"internal\",\"message\":\"{e}\"}}"
            ))
        );
    } else {
        print!("{}", render(&report));
    }
    u8::from(report.failed())
}
