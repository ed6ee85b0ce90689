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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardgate_certs::{CheckPolicy, Crl, FindingKind, TrustAnchors, Verdict as CertVerdict};
use cardgate_piv::{PasscodeGuard, PasscodeStatus, PivClient};
use cardgate_reader::{PcscBackend, PinPad, ReaderBackend, ReaderError, ReaderName};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::atr::{self, AtrInfo};
use crate::error::{CliError, UNLOCK_ADVICE};
use crate::format::StatusView;

/// Clock skew (seconds) from which doctor warns; the endpoint refuses logins beyond 300 s.
const SKEW_WARN_SECONDS: u64 = 60;
/// Clock skew (seconds) beyond which logins are refused (the Spine client's default limit).
const SKEW_FAIL_SECONDS: u64 = 300;
/// Where pcsc-lite's client library finds pcscd unless `PCSCLITE_CSOCK_NAME` says otherwise.
const PCSCD_SOCKET: &str = "/run/pcscd/pcscd.comm";

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

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "OK  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "SKIP",
        }
    }
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

/// The parts of the agent's configuration (`cardgated.toml`) doctor needs. Read leniently
/// (unknown keys ignored): `cardgated --check-config` is the strict reader; doctor must still
/// work with a newer or older file.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct AgentConfig {
    #[serde(default)]
    pub endpoint: Option<EndpointSection>,
    #[serde(default)]
    pub card: Option<CardSection>,
    #[serde(default)]
    pub paths: Option<PathsSection>,
    #[serde(default)]
    pub ipc: Option<IpcSection>,
}

/// `[endpoint]`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EndpointSection {
    pub url: String,
    #[serde(default)]
    pub mtls_url: Option<String>,
    pub service_ca: PathBuf,
}

/// `[card]`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CardSection {
    pub ca: PathBuf,
    pub crl: String,
}

/// `[paths]`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PathsSection {
    #[serde(default)]
    pub audit: Option<PathBuf>,
}

/// `[ipc]`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct IpcSection {
    #[serde(default)]
    pub bus: Option<String>,
}

/// Reads the configuration, or says why not.
pub(crate) fn read_config(path: &Path) -> Result<AgentConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    toml::from_str(&text).map_err(|e| format!("it is not valid: {}", e.to_string().trim_end()))
}

fn line(
    check: &'static str,
    verdict: Verdict,
    summary: impl Into<String>,
    next: Option<&str>,
) -> CheckLine {
    CheckLine {
        check,
        verdict,
        summary: summary.into(),
        next_step: next.map(str::to_owned),
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

/// What the PC/SC side found.
struct PcscFindings {
    lines: Vec<CheckLine>,
    readers: Vec<ReaderDetails>,
    card: Option<CardDetails>,
    /// The authentication certificate (DER) and card serial, for the certificate check.
    certificate: Option<CardCertificate>,
}

/// The authentication certificate (DER) and the card serial, as read from the card.
type CardCertificate = (Vec<u8>, String);

/// What the endpoint check found.
struct EndpointFindings {
    endpoint: CheckLine,
    clock: CheckLine,
    skew: Option<i64>,
    crl_der: Option<Vec<u8>>,
}

/// Runs every check. Never fails: whatever cannot be checked is a line saying why.
pub async fn diagnose(config_path: &Path, bus: &str) -> DoctorReport {
    let checked_at = now_rfc3339();
    let mut checks = Vec::new();

    // 1. The agent's configuration.
    let config = match read_config(config_path) {
        Ok(c) => {
            checks.push(line(
                "config",
                Verdict::Ok,
                format!("agent configuration {} read", config_path.display()),
                None,
            ));
            Some(c)
        }
        Err(why) => {
            checks.push(line(
                "config",
                Verdict::Fail,
                format!("agent configuration {}: {why}", config_path.display()),
                Some(
                    "check the file (`sudo cardgated --check-config /etc/cardgate/cardgated.toml`), reinstall the cardgate package, or point doctor at the right file with --config PATH",
                ),
            ));
            None
        }
    };
    let bus = match (&config, bus) {
        (
            Some(AgentConfig {
                ipc: Some(IpcSection { bus: Some(b) }),
                ..
            }),
            "system",
        ) => b.clone(),
        _ => bus.to_owned(),
    };

    // 2-7. pcscd, readers, card, ATR, PIV, passcode: PC/SC calls block, so off the runtime.
    let pcsc = tokio::task::spawn_blocking(check_pcsc)
        .await
        .unwrap_or_else(|e| PcscFindings {
            lines: vec![line(
                "pcscd",
                Verdict::Fail,
                format!("the PC/SC checks stopped unexpectedly: {e}"),
                Some("run doctor again; if it persists, call IT support with this output"),
            )],
            readers: Vec::new(),
            card: None,
            certificate: None,
        });
    checks.extend(pcsc.lines);
    let mut card = pcsc.card;

    // 10 (run before the certificate check, which needs the endpoint's CRL).
    let endpoint = check_endpoint(config.as_ref()).await;

    // 8. The certificate.
    checks.push(check_certificate(
        config.as_ref(),
        pcsc.certificate.as_ref(),
        endpoint.crl_der.as_deref(),
        card.as_mut(),
    ));
    // 9, 10.
    checks.push(endpoint.clock);
    checks.push(endpoint.endpoint);

    // 11. The agent.
    let (daemon_line, daemon_status) = check_daemon(&bus).await;
    checks.push(daemon_line);

    DoctorReport {
        checked_at,
        config_file: config_path.display().to_string(),
        bus,
        checks,
        readers: pcsc.readers,
        card,
        daemon_status,
        clock_skew_seconds: endpoint.skew,
    }
}

/// The socket pcsc-lite's clients connect to.
fn pcscd_socket() -> PathBuf {
    std::env::var_os("PCSCLITE_CSOCK_NAME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PCSCD_SOCKET))
}

/// Whether a process named `pcscd` runs (visible in this pid namespace's /proc).
fn pcscd_process_runs() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let is_pid = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        is_pid && std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "pcscd")
    })
}

fn skipped(check: &'static str, because: &str) -> CheckLine {
    line(
        check,
        Verdict::Skipped,
        format!("not checked: {because}"),
        None,
    )
}

fn check_pcsc() -> PcscFindings {
    let mut lines = Vec::new();
    let mut readers = Vec::new();
    let backend = PcscBackend::new();
    let skip_card_lines = |lines: &mut Vec<CheckLine>, because: &str| {
        for check in ["card", "atr", "piv", "passcode"] {
            lines.push(skipped(check, because));
        }
    };

    // pcscd running and reachable.
    let names = match backend.list_readers() {
        Ok(names) => {
            lines.push(line(
                "pcscd",
                Verdict::Ok,
                format!(
                    "the PC/SC service (pcscd) answers on {}",
                    pcscd_socket().display()
                ),
                None,
            ));
            names
        }
        Err(e) => {
            let socket = pcscd_socket();
            let lost = e.is_service_lost();
            // The PC/SC call and its answer, without the wrapper's own sentence.
            let e = match &e {
                ReaderError::ServiceUnavailable { call, source } => format!("{call}: {source}"),
                other => other.to_string(),
            };
            let (summary, next) = if lost && pcscd_process_runs() && socket.exists() {
                (
                    format!(
                        "pcscd is running but refused this program ({e}); Debian's pcscd asks polkit, which refuses service accounts and users outside the active desktop session (pcscd logs \"Rejected unauthorized PC/SC client\")"
                    ),
                    "install the cardgate polkit rule for pcscd (shipped in the package: /usr/share/polkit-1/rules.d/), or run doctor from the logged-in desktop session; check `journalctl -u pcscd --since \"10 min ago\"`",
                )
            } else if lost {
                (
                    format!(
                        "the PC/SC service (pcscd) is not running or not reachable at {} ({e})",
                        socket.display()
                    ),
                    "start it: `sudo systemctl start pcscd.socket pcscd` (install with `sudo apt-get install pcscd` if missing), then run doctor again",
                )
            } else {
                (
                    format!("the PC/SC service (pcscd) answered with an error: {e}"),
                    "restart it (`sudo systemctl restart pcscd`) and run doctor again; if it persists, escalate with `journalctl -u pcscd`",
                )
            };
            lines.push(line("pcscd", Verdict::Fail, summary, Some(next)));
            lines.push(skipped("readers", "pcscd is not reachable"));
            skip_card_lines(&mut lines, "pcscd is not reachable");
            return PcscFindings {
                lines,
                readers,
                card: None,
                certificate: None,
            };
        }
    };

    if names.is_empty() {
        lines.push(line(
            "readers",
            Verdict::Fail,
            "pcscd lists no smartcard reader",
            Some(
                "reseat the reader's USB cable or try another port, then run doctor again; if still none, the reader or its driver (libccid) is at fault: `lsusb` should list it; escalate with this output",
            ),
        ));
        skip_card_lines(&mut lines, "no reader");
        return PcscFindings {
            lines,
            readers,
            card: None,
            certificate: None,
        };
    }

    // Each reader: is a card in, what PIN pad; the first card found is read.
    let mut card = None;
    let mut certificate = None;
    let mut card_lines = Vec::new();
    let mut reader_problems = Vec::new();
    for name in &names {
        let mut details = ReaderDetails {
            name: name.as_str().to_owned(),
            card_present: false,
            pin_pad: "unknown".into(),
            model: None,
            usb_id: None,
        };
        match backend.connect(name) {
            Ok(mut connection) => {
                details.card_present = true;
                match connection.features() {
                    Ok(features) => {
                        details.pin_pad = match features.pin_pad() {
                            PinPad::Absent => "none".into(),
                            PinPad::Disabled { .. } => "disabled".into(),
                            PinPad::Usable { .. } => "usable".into(),
                        };
                        details.model = features.model().map(|m| m.name.to_owned());
                        details.usb_id = features.properties().and_then(|p| {
                            Some(format!("{:04x}:{:04x}", p.vendor_id?, p.product_id?))
                        });
                    }
                    Err(e) => reader_problems.push(format!("{name}: features unreadable ({e})")),
                }
                if card.is_none() {
                    let (lines_for_card, details, cert) = read_card(name, connection.as_mut());
                    card_lines = lines_for_card;
                    card = Some(details);
                    certificate = cert;
                }
            }
            Err(ReaderError::NoCard { .. }) => {}
            Err(e) => reader_problems.push(format!("{name}: {e}")),
        }
        readers.push(details);
    }
    let listed = readers
        .iter()
        .map(|r| {
            let pad = match r.pin_pad.as_str() {
                "usable" => "PIN pad",
                "disabled" => "PIN pad advertised but not used (known model without one)",
                "none" => "no PIN pad",
                _ => "PIN pad unknown until a card is in",
            };
            let model = r
                .model
                .as_deref()
                .map(|m| format!(", {m}"))
                .unwrap_or_default();
            format!("{} ({pad}{model})", r.name)
        })
        .collect::<Vec<_>>()
        .join("; ");
    if reader_problems.is_empty() {
        lines.push(line(
            "readers",
            Verdict::Ok,
            format!("{} reader(s): {listed}", readers.len()),
            None,
        ));
    } else {
        lines.push(line(
            "readers",
            Verdict::Warn,
            format!(
                "{} reader(s): {listed}; problems: {}",
                readers.len(),
                reader_problems.join("; ")
            ),
            Some(
                "another program may hold the card exclusively: close other smartcard software, remove and reinsert the card, run doctor again",
            ),
        ));
    }
    match card {
        None => {
            lines.push(line(
                "card",
                Verdict::Fail,
                "no card in any reader",
                Some(
                    "insert the smartcard (chip first, face up) and run doctor again; if a card is in, remove and reinsert it; if it is still not seen, try a second card: if that is not seen either, the reader is at fault",
                ),
            ));
            for check in ["atr", "piv", "passcode"] {
                lines.push(skipped(check, "no card"));
            }
        }
        Some(_) => lines.extend(card_lines),
    }
    PcscFindings {
        lines,
        readers,
        card,
        certificate,
    }
}

/// Reads the card in `reader` in one shared transaction: ATR, SELECT (timed), identity and
/// the passcode's tries (VERIFY without data: no try spent).
fn read_card(
    reader: &ReaderName,
    connection: &mut dyn cardgate_reader::CardConnection,
) -> (Vec<CheckLine>, CardDetails, Option<CardCertificate>) {
    let mut lines = Vec::new();
    let known_list = std::fs::read_to_string(atr::SMARTCARD_LIST).ok();
    let atr_bytes = connection.atr().unwrap_or_default();
    let atr = atr::decode(&atr_bytes, known_list.as_deref());
    let mut details = CardDetails {
        reader: reader.as_str().to_owned(),
        atr: atr.clone(),
        card_serial: None,
        holder_uuid: None,
        holder_name: None,
        passcode_tries_left: None,
        certificate_serial: None,
        certificate_not_after: None,
        certificate_issuer: None,
        certificate_findings: Vec::new(),
        apdu_round_trip_ms: None,
        apdus: 0,
    };
    lines.push(line(
        "card",
        Verdict::Ok,
        format!("a card is in {reader}"),
        None,
    ));
    let known = if atr.known_as.is_empty() {
        if known_list.is_some() {
            "not in pcsc-tools' list of known cards".to_owned()
        } else {
            format!(
                "not looked up ({} missing: apt-get install pcsc-tools)",
                atr::SMARTCARD_LIST
            )
        }
    } else {
        format!("known as: {}", atr.known_as.join(" / "))
    };
    let text = atr
        .historical_text
        .as_deref()
        .map(|t| format!(", historical bytes \"{t}\""))
        .unwrap_or_default();
    let atr_summary = format!(
        "ATR {} ({} convention, {}{text}); {known}",
        atr.hex,
        atr.convention,
        atr.protocols.join(" "),
    );
    if atr.problems.is_empty() {
        lines.push(line("atr", Verdict::Ok, atr_summary, None));
    } else {
        lines.push(line(
            "atr",
            Verdict::Warn,
            format!("{atr_summary}; malformed: {}", atr.problems.join("; ")),
            Some(
                "remove the card, clean its contacts and reinsert it; if the ATR stays malformed the card or reader is faulty",
            ),
        ));
    }

    let guard = match PasscodeGuard::in_memory() {
        Ok(g) => Arc::new(g),
        Err(e) => {
            lines.push(line(
                "piv",
                Verdict::Fail,
                format!("internal error preparing the card read: {e}"),
                Some("call IT support with this output"),
            ));
            lines.push(skipped("passcode", "the card could not be read"));
            return (lines, details, None);
        }
    };
    let transaction = match connection.transaction() {
        Ok(t) => t,
        Err(e) => {
            lines.push(line(
                "piv",
                Verdict::Fail,
                format!("cannot open a transaction with the card: {e}"),
                Some(
                    "another program may hold the card: close other smartcard software, remove and reinsert the card, run doctor again",
                ),
            ));
            lines.push(skipped("passcode", "the card could not be read"));
            return (lines, details, None);
        }
    };
    let mut client = PivClient::new(cardgate_card::TransactionChannel::new(transaction), guard);
    let started = Instant::now();
    let selected = client.select();
    let round_trip = started.elapsed();
    let identity = selected.and_then(|()| client.read_identity());
    let passcode = identity.as_ref().ok().map(|_| client.passcode_status());
    details.apdus = client.channel().apdus();
    details.apdu_round_trip_ms = Some(round_trip.as_secs_f64() * 1000.0);
    drop(client);

    let identity = match identity {
        Ok(identity) => identity,
        Err(e) => {
            use cardgate_piv::{ChannelError, PivError};
            let next = match &e {
                PivError::Channel(ChannelError::CardRemoved | ChannelError::ReaderGone) => {
                    "the card (or reader) went away during the check: leave the card in and run doctor again"
                }
                PivError::Channel(ChannelError::ServiceGone) => {
                    "pcscd stopped during the check: run doctor again; if pcscd keeps stopping, escalate with `journalctl -u pcscd`"
                }
                _ => {
                    "this may not be a smartcard for this system, or it is damaged: remove and reinsert it; if it persists, the holder needs the RA with the card UUID printed on the card"
                }
            };
            lines.push(line(
                "piv",
                Verdict::Fail,
                format!("the card's PIV application could not be read: {e}"),
                Some(next),
            ));
            lines.push(skipped("passcode", "the PIV application did not answer"));
            return (lines, details, None);
        }
    };
    details.card_serial = Some(identity.card_serial.as_str().to_owned());
    details.holder_uuid = Some(identity.holder_uuid.as_str().to_owned());
    details.holder_name = Some(identity.holder_name.clone());
    let rtt_ms = round_trip.as_secs_f64() * 1000.0;
    let (verdict, next) = if round_trip > Duration::from_millis(500) {
        (
            Verdict::Warn,
            Some(
                "the card answers slowly: try another USB port (not a hub) or another reader; escalate if log-ins are slow",
            ),
        )
    } else {
        (Verdict::Ok, None)
    };
    lines.push(line(
        "piv",
        verdict,
        format!(
            "PIV application found: card serial {}, holder UUID {} ({}); APDU round trip {rtt_ms:.1} ms",
            identity.card_serial.as_str(),
            identity.holder_uuid.as_str(),
            identity.holder_name
        ),
        next,
    ));
    match passcode {
        Some(Ok(PasscodeStatus::Blocked)) => {
            details.passcode_tries_left = Some(0);
            lines.push(line(
                "passcode",
                Verdict::Fail,
                "the card is LOCKED: no passcode tries left (blocked card)",
                Some(UNLOCK_ADVICE),
            ));
        }
        Some(Ok(PasscodeStatus::TriesLeft(n))) => {
            details.passcode_tries_left = Some(n.get());
            if n.is_final() {
                lines.push(line(
                    "passcode",
                    Verdict::Warn,
                    "1 passcode try left: one more wrong passcode locks the card",
                    Some(
                        "the holder should not guess; if unsure of the passcode, get it reset by the Sponsor or LSA before trying",
                    ),
                ));
            } else {
                lines.push(line(
                    "passcode",
                    Verdict::Ok,
                    format!(
                        "{} passcode tries left (read without spending one)",
                        n.get()
                    ),
                    None,
                ));
            }
        }
        Some(Ok(PasscodeStatus::Verified)) => lines.push(line(
            "passcode",
            Verdict::Ok,
            "the passcode is verified on the card (a holder is logged in)",
            None,
        )),
        Some(Err(e)) => lines.push(line(
            "passcode",
            Verdict::Warn,
            format!("the passcode's tries could not be read: {e}"),
            Some("remove and reinsert the card and run doctor again"),
        )),
        None => lines.push(skipped("passcode", "the card was not read")),
    }
    let certificate = Some((
        identity.auth_certificate_der.clone(),
        identity.card_serial.as_str().to_owned(),
    ));
    (lines, details, certificate)
}

/// The certificate line: validity, chain to the configured card CA, revocation against the
/// configured CRL (the endpoint's, or a file).
fn check_certificate(
    config: Option<&AgentConfig>,
    certificate: Option<&CardCertificate>,
    endpoint_crl: Option<&[u8]>,
    card: Option<&mut CardDetails>,
) -> CheckLine {
    let Some((der, card_serial)) = certificate else {
        return skipped("certificate", "no card was read");
    };
    let Some(card_config) = config.and_then(|c| c.card.as_ref()) else {
        return skipped(
            "certificate",
            "the agent's configuration ([card] ca) is not available",
        );
    };
    let anchors = match std::fs::read(&card_config.ca)
        .map_err(|e| e.to_string())
        .and_then(|pem| TrustAnchors::from_pem(&pem).map_err(|e| e.to_string()))
    {
        Ok(a) => a,
        Err(e) => {
            return line(
                "certificate",
                Verdict::Fail,
                format!(
                    "the card CA {} configured in [card] ca is not usable: {e}",
                    card_config.ca.display()
                ),
                Some("reinstall the card CA file named in the agent's configuration"),
            );
        }
    };
    let mut crl_note = String::new();
    let crl = if card_config.crl == "endpoint" {
        match endpoint_crl {
            Some(der) => match Crl::from_der(der, &anchors) {
                Ok(crl) => Some(crl),
                Err(e) => {
                    crl_note = format!(" (the endpoint's CRL is not usable: {e})");
                    None
                }
            },
            None => {
                crl_note =
                    " (the CRL could not be fetched: the endpoint is not reachable, see below)"
                        .into();
                None
            }
        }
    } else {
        match std::fs::read(&card_config.crl) {
            Ok(bytes) => match Crl::from_der(&bytes, &anchors)
                .or_else(|_| Crl::from_pem(&bytes, &anchors))
            {
                Ok(crl) => Some(crl),
                Err(e) => {
                    crl_note = format!(" (the CRL file {} is not usable: {e})", card_config.crl);
                    None
                }
            },
            Err(e) => {
                crl_note = format!(" (the CRL file {} cannot be read: {e})", card_config.crl);
                None
            }
        }
    };
    let report = match cardgate_certs::check_card_certificate(
        der,
        &anchors,
        crl.as_ref(),
        card_serial,
        OffsetDateTime::now_utc(),
        &CheckPolicy::default(),
    ) {
        Ok(r) => r,
        Err(e) => {
            return line(
                "certificate",
                Verdict::Fail,
                format!("the card's authentication certificate cannot be checked: {e}"),
                Some("the card is faulty: the holder needs the RA for a new card"),
            );
        }
    };
    let not_after = report
        .not_after
        .format(&Rfc3339)
        .unwrap_or_else(|_| report.not_after.to_string());
    if let Some(card) = card {
        card.certificate_serial = Some(report.certificate_serial.clone());
        card.certificate_not_after = Some(not_after.clone());
        card.certificate_issuer = Some(report.issuer.clone());
        card.certificate_findings = report
            .findings
            .iter()
            .map(|f| format!("{} {}", f.message, f.next_step))
            .collect();
    }
    let date = not_after.get(..10).unwrap_or(&not_after).to_owned();
    match report.verdict() {
        CertVerdict::Usable => line(
            "certificate",
            Verdict::Ok,
            format!(
                "authentication certificate {} valid until {date}, issued by the configured CA, not revoked",
                report.certificate_serial
            ),
            None,
        ),
        CertVerdict::UsableWithWarning { warnings } => {
            let first = warnings.first();
            line(
                "certificate",
                Verdict::Warn,
                format!(
                    "authentication certificate {} valid until {date}: {}",
                    report.certificate_serial,
                    first.map(|f| f.message.as_str()).unwrap_or("")
                ),
                first.map(|f| f.next_step.as_str()),
            )
        }
        CertVerdict::Unusable { reason } => {
            // A CRL this workstation could not get is IT's problem, not the holder's: point
            // at where the CRL comes from rather than repeat the holder's advice.
            let next = if reason.kind == FindingKind::RevocationUnknown && !crl_note.is_empty() {
                format!(
                    "the CRL comes from {}: fix that first (see the endpoint line), then run doctor again; the card itself is not at fault",
                    if card_config.crl == "endpoint" {
                        "the endpoint ([card] crl = \"endpoint\")".to_owned()
                    } else {
                        format!("the file {} ([card] crl)", card_config.crl)
                    }
                )
            } else {
                reason.next_step.clone()
            };
            line(
                "certificate",
                Verdict::Fail,
                format!(
                    "authentication certificate {} (valid until {date}) cannot be used: {}{crl_note}",
                    report.certificate_serial, reason.message
                ),
                Some(&next),
            )
        }
        _ => line(
            "certificate",
            Verdict::Warn,
            format!(
                "authentication certificate {} valid until {date}",
                report.certificate_serial
            ),
            Some("run doctor again with a newer cardgate"),
        ),
    }
}

/// The endpoint over TLS with the pinned service CA (fetching the CRL, an unauthenticated
/// call), and the clock against the endpoint's `Date`.
async fn check_endpoint(config: Option<&AgentConfig>) -> EndpointFindings {
    let Some(section) = config.and_then(|c| c.endpoint.as_ref()) else {
        return EndpointFindings {
            endpoint: skipped(
                "endpoint",
                "the agent's configuration ([endpoint]) is not available",
            ),
            clock: skipped("clock", "needs the endpoint's time"),
            skew: None,
            crl_der: None,
        };
    };
    let fail = |summary: String, next: &str| EndpointFindings {
        endpoint: line("endpoint", Verdict::Fail, summary, Some(next)),
        clock: skipped("clock", "the endpoint did not answer"),
        skew: None,
        crl_der: None,
    };
    let api = match cardgate_spine::Endpoint::parse(&section.url) {
        Ok(e) => e,
        Err(e) => {
            return fail(
                format!("endpoint.url {} is not usable: {e}", section.url),
                "correct [endpoint] url in the agent's configuration",
            );
        }
    };
    let mtls = section
        .mtls_url
        .as_deref()
        .and_then(|u| cardgate_spine::Endpoint::parse(u).ok())
        .unwrap_or_else(|| api.clone());
    let service_ca = match std::fs::read(&section.service_ca) {
        Ok(pem) => pem,
        Err(e) => {
            return fail(
                format!(
                    "the service CA {} cannot be read: {e}",
                    section.service_ca.display()
                ),
                "reinstall the service CA file named in [endpoint] service_ca",
            );
        }
    };
    let mut spine_config = cardgate_spine::SpineConfig::new(api, mtls, service_ca);
    spine_config.connect_timeout = Duration::from_secs(3);
    spine_config.request_timeout = Duration::from_secs(10);
    let client = match cardgate_spine::SpineClient::new(spine_config) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                format!("the endpoint client cannot be set up: {e}"),
                "check [endpoint] service_ca in the agent's configuration",
            );
        }
    };
    let started = Instant::now();
    match client.crl().await {
        Ok(der) => {
            let ms = started.elapsed().as_millis();
            let skew = client.clock_skew();
            let clock = clock_line(skew);
            EndpointFindings {
                endpoint: line(
                    "endpoint",
                    Verdict::Ok,
                    format!(
                        "the endpoint {} answers over TLS with the pinned service CA ({ms} ms)",
                        section.url
                    ),
                    None,
                ),
                clock,
                skew,
                crl_der: Some(der),
            }
        }
        Err(e) => {
            use cardgate_spine::SpineError as S;
            let next = match &e {
                S::Unreachable { .. } | S::TimedOut { .. } => {
                    "check the network cable and that the HSCN/N3 connection is up (`ping`, the router); if other workstations cannot reach it either, the service is down: escalate with the time"
                }
                S::Tls { .. } => {
                    "the server's certificate is not from the pinned service CA: check [endpoint] service_ca and that no proxy intercepts TLS; escalate with this output"
                }
                _ => "escalate with the time and this output",
            };
            fail(
                format!("the endpoint {} is not usable: {e}", section.url),
                next,
            )
        }
    }
}

/// The clock line from the measured skew (workstation minus endpoint, seconds).
fn clock_line(skew: Option<i64>) -> CheckLine {
    match skew {
        None => line(
            "clock",
            Verdict::Warn,
            "the endpoint's answer had no Date, so the clock was not compared",
            Some("check the workstation's time is set automatically (`timedatectl`)"),
        ),
        Some(s) if s.unsigned_abs() > SKEW_FAIL_SECONDS => line(
            "clock",
            Verdict::Fail,
            format!(
                "the workstation clock is {} s {} the endpoint's: log-ins are refused beyond {SKEW_FAIL_SECONDS} s",
                s.unsigned_abs(),
                if s > 0 { "ahead of" } else { "behind" }
            ),
            Some(
                "correct the date and time (`sudo timedatectl set-ntp true`, check `timedatectl status`), then run doctor again",
            ),
        ),
        Some(s) if s.unsigned_abs() > SKEW_WARN_SECONDS => line(
            "clock",
            Verdict::Warn,
            format!(
                "the workstation clock is {} s {} the endpoint's",
                s.unsigned_abs(),
                if s > 0 { "ahead of" } else { "behind" }
            ),
            Some("turn on automatic time (`sudo timedatectl set-ntp true`)"),
        ),
        Some(s) => line(
            "clock",
            Verdict::Ok,
            format!(
                "the workstation clock is within {} s of the endpoint's",
                s.unsigned_abs().max(1)
            ),
            None,
        ),
    }
}

/// The agent on D-Bus.
async fn check_daemon(bus: &str) -> (CheckLine, Option<StatusView>) {
    match crate::commands::connect(bus).await {
        Ok((_connection, agent)) => match agent.status().await {
            Ok(map) => {
                let view = StatusView::from_map(&map);
                let summary = format!(
                    "cardgated answers on {bus}: state {}, {} reader(s){}",
                    view.state,
                    view.readers.len(),
                    if view.holder_uuid.is_empty() {
                        String::new()
                    } else {
                        format!(", card UUID {}", view.holder_uuid)
                    }
                );
                (line("daemon", Verdict::Ok, summary, None), Some(view))
            }
            Err(e) => (
                line(
                    "daemon",
                    Verdict::Fail,
                    format!("cardgated is on the bus but its Status call failed: {e}"),
                    Some(
                        "restart it (`sudo systemctl restart cardgated`) and read `journalctl -u cardgated --since \"10 min ago\"`",
                    ),
                ),
                None,
            ),
        },
        Err(CliError::DaemonNotRunning { .. }) => (
            line(
                "daemon",
                Verdict::Fail,
                format!("the cardgate agent (cardgated) is not running on bus {bus}"),
                Some(
                    "start it: `sudo systemctl restart cardgated`, then `journalctl -u cardgated --since \"10 min ago\"` for why it stopped",
                ),
            ),
            None,
        ),
        Err(e) => (
            line(
                "daemon",
                Verdict::Fail,
                match &e {
                    CliError::BusUnreachable { source, .. } => {
                        format!("the D-Bus bus {bus} cannot be reached ({source})")
                    }
                    other => format!("the cardgate agent cannot be asked: {other}"),
                },
                Some(
                    "the system bus is down or the address is wrong: restart the workstation; if it persists, escalate",
                ),
            ),
            None,
        ),
    }
}

/// The report for people: one verdict a line, the next step under each failure or warning.
pub fn render(report: &DoctorReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "cardgate doctor, {} (UTC)\n",
        report.checked_at.replace('T', " ").trim_end_matches('Z')
    ));
    for c in &report.checks {
        out.push_str(&format!(
            "{} {:<12} {}\n",
            c.verdict.label(),
            c.check,
            c.summary
        ));
        if let Some(next) = &c.next_step
            && matches!(c.verdict, Verdict::Fail | Verdict::Warn)
        {
            out.push_str(&format!("     {:<12} Next step: {next}\n", ""));
        }
    }
    let failed = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .count();
    if failed == 0 {
        out.push_str("All checks passed.\n");
    } else {
        out.push_str(&format!(
            "{failed} check(s) FAILED. Do the first failure's next step first: later checks often fail because of it.\n"
        ));
    }
    out
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn report(lines: Vec<CheckLine>) -> DoctorReport {
        DoctorReport {
            checked_at: "2026-11-23T10:00:00Z".into(),
            config_file: "/etc/cardgate/cardgated.toml".into(),
            bus: "system".into(),
            checks: lines,
            readers: Vec::new(),
            card: None,
            daemon_status: None,
            clock_skew_seconds: None,
        }
    }

    #[test]
    fn failures_print_their_next_step_and_set_the_exit_code() {
        let r = report(vec![
            line("pcscd", Verdict::Ok, "answers", None),
            line(
                "card",
                Verdict::Fail,
                "no card in any reader",
                Some("insert the smartcard"),
            ),
            skipped("atr", "no card"),
        ]);
        assert!(r.failed());
        let text = render(&r);
        assert!(text.contains("OK   pcscd"), "{text}");
        assert!(text.contains("FAIL card"), "{text}");
        assert!(text.contains("Next step: insert the smartcard"), "{text}");
        assert!(text.contains("SKIP atr"), "{text}");
        assert!(text.contains("1 check(s) FAILED"), "{text}");
        let ok = report(vec![line("pcscd", Verdict::Ok, "answers", None)]);
        assert!(!ok.failed());
        assert!(render(&ok).contains("All checks passed."));
    }

    #[test]
    fn clock_skew_is_ok_then_warned_then_failed_and_says_which_way() {
        assert_eq!(clock_line(Some(3)).verdict, Verdict::Ok);
        let warn = clock_line(Some(-90));
        assert_eq!(warn.verdict, Verdict::Warn);
        assert!(warn.summary.contains("90 s behind"), "{}", warn.summary);
        let fail = clock_line(Some(400));
        assert_eq!(fail.verdict, Verdict::Fail);
        assert!(fail.summary.contains("400 s ahead of"), "{}", fail.summary);
        assert!(fail.next_step.unwrap().contains("timedatectl"));
        assert_eq!(clock_line(None).verdict, Verdict::Warn);
    }

    #[test]
    fn the_json_report_has_stable_keys() {
        let r = report(vec![line(
            "daemon",
            Verdict::Fail,
            "down",
            Some("start it"),
        )]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["checks"][0]["check"], "daemon");
        assert_eq!(v["checks"][0]["verdict"], "fail");
        assert_eq!(v["checks"][0]["next_step"], "start it");
        assert!(v["card"].is_null());
    }

    #[test]
    fn the_config_is_read_leniently_and_its_problems_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cardgated.toml");
        std::fs::write(
            &path,
            "[endpoint]\nurl = \"https://spine.example:8443\"\nservice_ca = \"/x.pem\"\nlogin_mode = \"B\"\nfuture_key = 1\n[card]\nca = \"/ca.pem\"\ncrl = \"endpoint\"\n[ipc]\nbus = \"unix:path=/run/x\"\n",
        )
        .unwrap();
        let c = read_config(&path).unwrap();
        assert_eq!(c.card.unwrap().crl, "endpoint");
        assert_eq!(c.ipc.unwrap().bus.as_deref(), Some("unix:path=/run/x"));
        let missing = read_config(&dir.path().join("nope.toml")).unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
        std::fs::write(&path, "[card\n").unwrap();
        assert!(read_config(&path).unwrap_err().contains("not valid"));
    }
}
