//! Facts into words: each check area's [`facts`](super::facts) become its report lines (a
//! verdict, a sentence, the next step), the card's details for the JSON report and the
//! support bundle, and [`render`] writes the report for people. Nothing here asks the world,
//! so every sentence is tested from constructed facts.

use std::time::Duration;

use cardgate_certs::{FindingKind, Verdict as CertVerdict};
use cardgate_config::ConfigError;
use cardgate_piv::{ChannelError, PasscodeStatus, PivError};
use cardgate_spine::SpineError;

use super::facts::{
    CardFacts, CardRead, CertificateFacts, CheckedCertificate, ConfigFacts, CrlFacts, DaemonFacts,
    EndpointFacts, Facts, IdentityFacts, PcscFacts, PcscdProblem,
};
use super::{CardDetails, CheckLine, DoctorReport, ReaderDetails, Verdict};
use crate::atr;
use crate::error::{CliError, UNLOCK_ADVICE};

/// Clock skew (seconds) from which doctor warns; the endpoint refuses logins beyond 300 s.
const SKEW_WARN_SECONDS: u64 = 60;
/// Clock skew (seconds) beyond which logins are refused (the Spine client's default limit).
const SKEW_FAIL_SECONDS: u64 = 300;

/// The label at the start of a line.
fn label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Ok => "OK  ",
        Verdict::Warn => "WARN",
        Verdict::Fail => "FAIL",
        Verdict::Skipped => "SKIP",
    }
}

/// One line.
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

/// A check that could not run because of an earlier one.
fn skipped(check: &'static str, because: &str) -> CheckLine {
    line(
        check,
        Verdict::Skipped,
        format!("not checked: {because}"),
        None,
    )
}

/// The report from everything found: the lines in order, and the details behind them.
pub(super) fn report(facts: &Facts) -> DoctorReport {
    let mut checks = vec![config_line(facts)];
    let (readers, card) = match &facts.pcsc {
        PcscFacts::Listed { readers, card, .. } => (readers.clone(), card.as_deref()),
        _ => (Vec::new(), None),
    };
    checks.extend(pcsc_lines(&facts.pcsc));
    checks.push(certificate_line(&facts.certificate));
    checks.push(clock_line_of(&facts.endpoint));
    checks.push(endpoint_line(&facts.endpoint));
    checks.push(daemon_line(&facts.daemon, &facts.bus));
    DoctorReport {
        checked_at: facts.checked_at.clone(),
        config_file: facts.config_path.display().to_string(),
        bus: facts.bus.clone(),
        checks,
        readers,
        card: card.map(|c| card_details(c, &facts.certificate)),
        daemon_status: match &facts.daemon {
            DaemonFacts::Answers(view) => Some(view.clone()),
            _ => None,
        },
        clock_skew_seconds: match &facts.endpoint {
            EndpointFacts::Answers { skew, .. } => *skew,
            _ => None,
        },
    }
}

/// The configuration line: the agent's own verdict on the file.
fn config_line(facts: &Facts) -> CheckLine {
    let path = facts.config_path.display();
    match &facts.config {
        ConfigFacts::Accepted => line(
            "config",
            Verdict::Ok,
            format!("agent configuration {path} read"),
            None,
        ),
        ConfigFacts::Refused(e) => {
            let why = match e {
                ConfigError::Read { source, .. } => format!("cannot read it: {source}"),
                other => format!("it is not valid: {}", other.problem()),
            };
            line(
                "config",
                Verdict::Fail,
                format!("agent configuration {path}: {why}"),
                Some(
                    "check the file (`sudo cardgated --check-config /etc/cardgate/cardgated.toml`), reinstall the cardgate package, or point doctor at the right file with --config PATH",
                ),
            )
        }
    }
}

/// The lines of the PC/SC side: pcscd, readers, card, ATR, PIV, passcode.
fn pcsc_lines(pcsc: &PcscFacts) -> Vec<CheckLine> {
    let skip_card_lines = |lines: &mut Vec<CheckLine>, because: &str| {
        for check in ["card", "atr", "piv", "passcode"] {
            lines.push(skipped(check, because));
        }
    };
    let mut lines = Vec::new();
    let (socket, readers, problems, card) = match pcsc {
        PcscFacts::Stopped(e) => {
            return vec![line(
                "pcscd",
                Verdict::Fail,
                format!("the PC/SC checks stopped unexpectedly: {e}"),
                Some("run doctor again; if it persists, call IT support with this output"),
            )];
        }
        PcscFacts::Unavailable {
            socket,
            problem,
            error: e,
        } => {
            let (summary, next) = match problem {
                PcscdProblem::Refused => (
                    format!(
                        "pcscd is running but refused this program ({e}); Debian's pcscd asks polkit, which refuses service accounts and users outside the active desktop session (pcscd logs \"Rejected unauthorized PC/SC client\" or \"is NOT authorized for action\")"
                    ),
                    "install the cardgate polkit rule for pcscd (shipped in the package: /usr/share/polkit-1/rules.d/), or run doctor from the logged-in desktop session; check `journalctl -u pcscd --since \"10 min ago\"`",
                ),
                PcscdProblem::NotReachable => (
                    format!(
                        "the PC/SC service (pcscd) is not running or not reachable at {} ({e})",
                        socket.display()
                    ),
                    "start it: `sudo systemctl start pcscd.socket pcscd` (install with `sudo apt-get install pcscd` if missing), then run doctor again",
                ),
                PcscdProblem::Error => (
                    format!("the PC/SC service (pcscd) answered with an error: {e}"),
                    "restart it (`sudo systemctl restart pcscd`) and run doctor again; if it persists, escalate with `journalctl -u pcscd`",
                ),
            };
            lines.push(line("pcscd", Verdict::Fail, summary, Some(next)));
            lines.push(skipped("readers", "pcscd is not reachable"));
            skip_card_lines(&mut lines, "pcscd is not reachable");
            return lines;
        }
        PcscFacts::Listed {
            socket,
            readers,
            problems,
            card,
        } => (socket, readers, problems, card),
    };
    lines.push(line(
        "pcscd",
        Verdict::Ok,
        format!("the PC/SC service (pcscd) answers on {}", socket.display()),
        None,
    ));
    if readers.is_empty() {
        lines.push(line(
            "readers",
            Verdict::Fail,
            "pcscd lists no smartcard reader",
            Some(
                "reseat the reader's USB cable or try another port, then run doctor again; if still none, the reader or its driver (libccid) is at fault: `lsusb` should list it; escalate with this output",
            ),
        ));
        skip_card_lines(&mut lines, "no reader");
        return lines;
    }
    lines.push(readers_line(readers, problems));
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
        Some(card) => lines.extend(card_lines(card)),
    }
    lines
}

/// The readers line: each reader with its PIN pad and model, and any problems seen.
fn readers_line(readers: &[ReaderDetails], problems: &[String]) -> CheckLine {
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
    if problems.is_empty() {
        line(
            "readers",
            Verdict::Ok,
            format!("{} reader(s): {listed}", readers.len()),
            None,
        )
    } else {
        line(
            "readers",
            Verdict::Warn,
            format!(
                "{} reader(s): {listed}; problems: {}",
                readers.len(),
                problems.join("; ")
            ),
            Some(
                "another program may hold the card exclusively: close other smartcard software, remove and reinsert the card, run doctor again",
            ),
        )
    }
}

/// The card, ATR, PIV and passcode lines of the card read.
fn card_lines(card: &CardFacts) -> Vec<CheckLine> {
    let mut lines = vec![
        line(
            "card",
            Verdict::Ok,
            format!("a card is in {}", card.reader),
            None,
        ),
        atr_line(card),
    ];
    let not_read = |lines: &mut Vec<CheckLine>, summary: String, next: &str, because: &str| {
        lines.push(line("piv", Verdict::Fail, summary, Some(next)));
        lines.push(skipped("passcode", because));
    };
    match &card.read {
        CardRead::NotPrepared(e) => not_read(
            &mut lines,
            format!("internal error preparing the card read: {e}"),
            "call IT support with this output",
            "the card could not be read",
        ),
        CardRead::NoTransaction(e) => not_read(
            &mut lines,
            format!("cannot open a transaction with the card: {e}"),
            "another program may hold the card: close other smartcard software, remove and reinsert the card, run doctor again",
            "the card could not be read",
        ),
        CardRead::Transacted {
            identity: Err(e), ..
        } => {
            let next = match e {
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
            not_read(
                &mut lines,
                format!("the card's PIV application could not be read: {e}"),
                next,
                "the PIV application did not answer",
            );
        }
        CardRead::Transacted {
            identity: Ok(identity),
            round_trip,
            ..
        } => {
            let rtt_ms = round_trip.as_secs_f64() * 1000.0;
            let (verdict, next) = if *round_trip > Duration::from_millis(500) {
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
                    identity.card_serial, identity.holder_uuid, identity.holder_name
                ),
                next,
            ));
            lines.push(passcode_line(identity));
        }
    }
    lines
}

/// The ATR line: its structure, and what pcsc-tools knows it as.
fn atr_line(card: &CardFacts) -> CheckLine {
    let atr = &card.atr;
    let known = if atr.known_as.is_empty() {
        if card.known_list {
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
    let summary = format!(
        "ATR {} ({} convention, {}{text}); {known}",
        atr.hex,
        atr.convention,
        atr.protocols.join(" "),
    );
    if atr.problems.is_empty() {
        line("atr", Verdict::Ok, summary, None)
    } else {
        line(
            "atr",
            Verdict::Warn,
            format!("{summary}; malformed: {}", atr.problems.join("; ")),
            Some(
                "remove the card, clean its contacts and reinsert it; if the ATR stays malformed the card or reader is faulty",
            ),
        )
    }
}

/// The passcode line: locked (with the ways out), one try left, or fine.
fn passcode_line(identity: &IdentityFacts) -> CheckLine {
    match &identity.passcode {
        Ok(PasscodeStatus::Blocked) => line(
            "passcode",
            Verdict::Fail,
            "the card is LOCKED: no passcode tries left (blocked card)",
            Some(UNLOCK_ADVICE),
        ),
        Ok(PasscodeStatus::TriesLeft(n)) if n.is_final() => line(
            "passcode",
            Verdict::Warn,
            "1 passcode try left: one more wrong passcode locks the card",
            Some(
                "the holder should not guess; if unsure of the passcode, get it reset by the Sponsor or LSA before trying",
            ),
        ),
        Ok(PasscodeStatus::TriesLeft(n)) => line(
            "passcode",
            Verdict::Ok,
            format!(
                "{} passcode tries left (read without spending one)",
                n.get()
            ),
            None,
        ),
        Ok(PasscodeStatus::Verified) => line(
            "passcode",
            Verdict::Ok,
            "the passcode is verified on the card (a holder is logged in)",
            None,
        ),
        Err(e) => line(
            "passcode",
            Verdict::Warn,
            format!("the passcode's tries could not be read: {e}"),
            Some("remove and reinsert the card and run doctor again"),
        ),
    }
}

/// The card's details for the JSON report (public data only).
fn card_details(card: &CardFacts, certificate: &CertificateFacts) -> CardDetails {
    let mut details = CardDetails {
        reader: card.reader.clone(),
        atr: card.atr.clone(),
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
    if let CardRead::Transacted {
        apdus,
        round_trip,
        identity,
    } = &card.read
    {
        details.apdus = *apdus;
        details.apdu_round_trip_ms = Some(round_trip.as_secs_f64() * 1000.0);
        if let Ok(identity) = identity {
            details.card_serial = Some(identity.card_serial.clone());
            details.holder_uuid = Some(identity.holder_uuid.clone());
            details.holder_name = Some(identity.holder_name.clone());
            details.passcode_tries_left = match identity.passcode {
                Ok(PasscodeStatus::Blocked) => Some(0),
                Ok(PasscodeStatus::TriesLeft(n)) => Some(n.get()),
                _ => None,
            };
        }
    }
    if let CertificateFacts::Checked { certificate, .. } = certificate {
        details.certificate_serial = Some(certificate.serial.clone());
        details.certificate_not_after = Some(certificate.not_after.clone());
        details.certificate_issuer = Some(certificate.issuer.clone());
        details.certificate_findings = certificate.findings.clone();
    }
    details
}

/// The certificate line: validity, chain, revocation, and where a missing CRL comes from.
fn certificate_line(certificate: &CertificateFacts) -> CheckLine {
    match certificate {
        CertificateFacts::NoCard => skipped("certificate", "no card was read"),
        CertificateFacts::NoConfig => skipped(
            "certificate",
            "the agent's configuration ([card] ca) is not available",
        ),
        CertificateFacts::CaUnusable { ca, error } => line(
            "certificate",
            Verdict::Fail,
            format!(
                "the card CA {} configured in [card] ca is not usable: {error}",
                ca.display()
            ),
            Some("reinstall the card CA file named in the agent's configuration"),
        ),
        CertificateFacts::Uncheckable(e) => line(
            "certificate",
            Verdict::Fail,
            format!("the card's authentication certificate cannot be checked: {e}"),
            Some("the card is faulty: the holder needs the RA for a new card"),
        ),
        CertificateFacts::Checked {
            certificate,
            crl,
            crl_source,
        } => checked_certificate_line(certificate, crl, crl_source),
    }
}

/// The certificate line for a certificate that was checked.
fn checked_certificate_line(
    certificate: &CheckedCertificate,
    crl: &CrlFacts,
    crl_source: &str,
) -> CheckLine {
    let crl_note = match crl {
        CrlFacts::Usable => String::new(),
        CrlFacts::EndpointUnusable(e) => format!(" (the endpoint's CRL is not usable: {e})"),
        CrlFacts::EndpointUnfetched => {
            " (the CRL could not be fetched: the endpoint is not reachable, see below)".into()
        }
        CrlFacts::FileUnusable(e) => {
            format!(" (the CRL file {crl_source} is not usable: {e})")
        }
        CrlFacts::FileUnreadable(e) => {
            format!(" (the CRL file {crl_source} cannot be read: {e})")
        }
    };
    let serial = &certificate.serial;
    let not_after = &certificate.not_after;
    let date = not_after.get(..10).unwrap_or(not_after);
    match &certificate.verdict {
        CertVerdict::Usable => line(
            "certificate",
            Verdict::Ok,
            format!(
                "authentication certificate {serial} valid until {date}, issued by the configured CA, not revoked"
            ),
            None,
        ),
        CertVerdict::UsableWithWarning { warnings } => {
            let first = warnings.first();
            line(
                "certificate",
                Verdict::Warn,
                format!(
                    "authentication certificate {serial} valid until {date}: {}",
                    first.map(|f| f.message.as_str()).unwrap_or("")
                ),
                first.map(|f| f.next_step.as_str()),
            )
        }
        CertVerdict::Unusable { reason } => {
            // A CRL this workstation could not get is IT's problem, not the holder's: point
            // at where the CRL comes from rather than repeat the holder's advice.
            let next = if reason.kind == FindingKind::RevocationUnknown && *crl != CrlFacts::Usable
            {
                format!(
                    "the CRL comes from {}: fix that first (see the endpoint line), then run doctor again; the card itself is not at fault",
                    if crl_source == "endpoint" {
                        "the endpoint ([card] crl = \"endpoint\")".to_owned()
                    } else {
                        format!("the file {crl_source} ([card] crl)")
                    }
                )
            } else {
                reason.next_step.clone()
            };
            line(
                "certificate",
                Verdict::Fail,
                format!(
                    "authentication certificate {serial} (valid until {date}) cannot be used: {}{crl_note}",
                    reason.message
                ),
                Some(&next),
            )
        }
        _ => line(
            "certificate",
            Verdict::Warn,
            format!("authentication certificate {serial} valid until {date}"),
            Some("run doctor again with a newer cardgate"),
        ),
    }
}

/// The clock line, from the endpoint's answer.
fn clock_line_of(endpoint: &EndpointFacts) -> CheckLine {
    match endpoint {
        EndpointFacts::NoConfig => skipped("clock", "needs the endpoint's time"),
        EndpointFacts::Answers { skew, .. } => clock_line(*skew),
        _ => skipped("clock", "the endpoint did not answer"),
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

/// The endpoint line.
fn endpoint_line(endpoint: &EndpointFacts) -> CheckLine {
    let fail = |summary: String, next: &str| line("endpoint", Verdict::Fail, summary, Some(next));
    match endpoint {
        EndpointFacts::NoConfig => skipped(
            "endpoint",
            "the agent's configuration ([endpoint]) is not available",
        ),
        EndpointFacts::BadUrl { url, error } => fail(
            format!("endpoint.url {url} is not usable: {error}"),
            "correct [endpoint] url in the agent's configuration",
        ),
        EndpointFacts::ServiceCaUnreadable { path, error } => fail(
            format!("the service CA {} cannot be read: {error}", path.display()),
            "reinstall the service CA file named in [endpoint] service_ca",
        ),
        EndpointFacts::NoClient(e) => fail(
            format!("the endpoint client cannot be set up: {e}"),
            "check [endpoint] service_ca in the agent's configuration",
        ),
        EndpointFacts::Answers { url, ms, .. } => line(
            "endpoint",
            Verdict::Ok,
            format!("the endpoint {url} answers over TLS with the pinned service CA ({ms} ms)"),
            None,
        ),
        EndpointFacts::Unusable { url, error } => {
            let next = match error {
                SpineError::Unreachable { .. } | SpineError::TimedOut { .. } => {
                    "check the network cable and that the HSCN/N3 connection is up (`ping`, the router); if other workstations cannot reach it either, the service is down: escalate with the time"
                }
                SpineError::Tls { .. } => {
                    "the server's certificate is not from the pinned service CA: check [endpoint] service_ca and that no proxy intercepts TLS; escalate with this output"
                }
                _ => "escalate with the time and this output",
            };
            fail(format!("the endpoint {url} is not usable: {error}"), next)
        }
    }
}

/// The agent line.
fn daemon_line(daemon: &DaemonFacts, bus: &str) -> CheckLine {
    match daemon {
        DaemonFacts::Answers(view) => line(
            "daemon",
            Verdict::Ok,
            format!(
                "cardgated answers on {bus}: state {}, {} reader(s){}",
                view.state,
                view.readers.len(),
                if view.holder_uuid.is_empty() {
                    String::new()
                } else {
                    format!(", card UUID {}", view.holder_uuid)
                }
            ),
            None,
        ),
        DaemonFacts::StatusFailed(e) => line(
            "daemon",
            Verdict::Fail,
            format!("cardgated is on the bus but its Status call failed: {e}"),
            Some(
                "restart it (`sudo systemctl restart cardgated`) and read `journalctl -u cardgated --since \"10 min ago\"`",
            ),
        ),
        DaemonFacts::NotRunning => line(
            "daemon",
            Verdict::Fail,
            format!("the cardgate agent (cardgated) is not running on bus {bus}"),
            Some(
                "start it: `sudo systemctl restart cardgated`, then `journalctl -u cardgated --since \"10 min ago\"` for why it stopped",
            ),
        ),
        DaemonFacts::Unreachable(e) => line(
            "daemon",
            Verdict::Fail,
            match e {
                CliError::BusUnreachable { source, .. } => {
                    format!("the D-Bus bus {bus} cannot be reached ({source})")
                }
                other => format!("the cardgate agent cannot be asked: {other}"),
            },
            Some(
                "the system bus is down or the address is wrong: restart the workstation; if it persists, escalate",
            ),
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
            label(c.verdict),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use cardgate_certs::{Finding, Severity};
    use cardgate_piv::PasscodeTriesLeft;

    use super::*;
    use crate::format::StatusView;

    /// A healthy workstation: every check passes.
    fn healthy() -> Facts {
        Facts {
            checked_at: "2026-11-23T10:00:00Z".into(),
            config_path: PathBuf::from("/etc/cardgate/cardgated.toml"),
            bus: "system".into(),
            config: ConfigFacts::Accepted,
            pcsc: PcscFacts::Listed {
                socket: PathBuf::from("/run/pcscd/pcscd.comm"),
                readers: vec![ReaderDetails {
                    name: "Reader 0".into(),
                    card_present: true,
                    pin_pad: "none".into(),
                    model: None,
                    usb_id: None,
                }],
                problems: Vec::new(),
                card: Some(card(Ok(PasscodeStatus::TriesLeft(PasscodeTriesLeft::new(
                    3,
                ))))),
            },
            certificate: CertificateFacts::Checked {
                certificate: certificate(CertVerdict::Usable),
                crl: CrlFacts::Usable,
                crl_source: "endpoint".into(),
            },
            endpoint: EndpointFacts::Answers {
                url: "https://spine.example:8443".into(),
                ms: 12,
                skew: Some(2),
            },
            daemon: DaemonFacts::Answers(StatusView {
                state: "idle".into(),
                ..StatusView::default()
            }),
        }
    }

    fn card(passcode: Result<PasscodeStatus, PivError>) -> Box<CardFacts> {
        Box::new(CardFacts {
            reader: "Reader 0".into(),
            atr: atr::decode(&[0x3B, 0x80, 0x80, 0x01, 0x01], None),
            known_list: true,
            read: CardRead::Transacted {
                apdus: 6,
                round_trip: Duration::from_millis(4),
                identity: Ok(IdentityFacts {
                    card_serial: "0412345678".into(),
                    holder_uuid: "555000000001".into(),
                    holder_name: "Pat Pharmacist".into(),
                    passcode,
                }),
            },
        })
    }

    fn certificate(verdict: CertVerdict) -> CheckedCertificate {
        CheckedCertificate {
            serial: "1A2B".into(),
            not_after: "2028-01-31T00:00:00Z".into(),
            issuer: "CN=Test CA".into(),
            findings: Vec::new(),
            verdict,
        }
    }

    fn ids(report: &DoctorReport) -> Vec<&'static str> {
        report.checks.iter().map(|c| c.check).collect()
    }

    fn the<'a>(report: &'a DoctorReport, check: &str) -> &'a CheckLine {
        report.checks.iter().find(|c| c.check == check).unwrap()
    }

    #[test]
    fn a_healthy_workstation_reports_every_check_in_order_and_passes() {
        let r = report(&healthy());
        assert_eq!(
            ids(&r),
            [
                "config",
                "pcscd",
                "readers",
                "card",
                "atr",
                "piv",
                "passcode",
                "certificate",
                "clock",
                "endpoint",
                "daemon"
            ]
        );
        assert!(!r.failed(), "{}", render(&r));
        let text = render(&r);
        assert!(text.ends_with("All checks passed.\n"), "{text}");
        assert!(
            text.contains("OK   passcode     3 passcode tries left (read without spending one)\n"),
            "{text}"
        );
        let card = r.card.unwrap();
        assert_eq!(card.passcode_tries_left, Some(3));
        assert_eq!(card.certificate_serial.as_deref(), Some("1A2B"));
        assert_eq!(card.apdus, 6);
        assert_eq!(r.clock_skew_seconds, Some(2));
    }

    #[test]
    fn a_blocked_card_renders_the_unlock_lines() {
        let mut facts = healthy();
        if let PcscFacts::Listed { card: c, .. } = &mut facts.pcsc {
            *c = Some(card(Ok(PasscodeStatus::Blocked)));
        }
        let r = report(&facts);
        let passcode = the(&r, "passcode");
        assert_eq!(passcode.verdict, Verdict::Fail);
        assert!(passcode.summary.contains("LOCKED"), "{}", passcode.summary);
        assert_eq!(passcode.next_step.as_deref(), Some(UNLOCK_ADVICE));
        let text = render(&r);
        assert!(
            text.contains(&format!(
                "FAIL passcode     the card is LOCKED: no passcode tries left (blocked card)\n                  Next step: {UNLOCK_ADVICE}\n"
            )),
            "{text}"
        );
        assert!(text.contains("cardgate unlock --sponsor"), "{text}");
        assert!(text.ends_with("1 check(s) FAILED. Do the first failure's next step first: later checks often fail because of it.\n"), "{text}");
        assert_eq!(r.card.unwrap().passcode_tries_left, Some(0));
    }

    #[test]
    fn the_last_try_warns_not_to_guess() {
        let mut facts = healthy();
        if let PcscFacts::Listed { card: c, .. } = &mut facts.pcsc {
            *c = Some(card(Ok(PasscodeStatus::TriesLeft(PasscodeTriesLeft::new(
                1,
            )))));
        }
        let r = report(&facts);
        let passcode = the(&r, "passcode");
        assert_eq!(passcode.verdict, Verdict::Warn);
        assert!(
            passcode
                .next_step
                .as_ref()
                .unwrap()
                .contains("should not guess")
        );
        assert!(!r.failed());
    }

    #[test]
    fn pcscd_refusing_the_caller_names_polkit_and_skips_the_card_checks() {
        let mut facts = healthy();
        facts.pcsc = PcscFacts::Unavailable {
            socket: PathBuf::from("/run/pcscd/pcscd.comm"),
            problem: PcscdProblem::Refused,
            error: "SCardEstablishContext: access denied".into(),
        };
        facts.certificate = CertificateFacts::NoCard;
        let r = report(&facts);
        assert_eq!(the(&r, "pcscd").verdict, Verdict::Fail);
        assert!(the(&r, "pcscd").summary.contains("polkit"));
        for check in ["readers", "card", "atr", "piv", "passcode"] {
            assert_eq!(
                the(&r, check).summary,
                "not checked: pcscd is not reachable",
                "{check}"
            );
        }
        assert_eq!(
            the(&r, "certificate").summary,
            "not checked: no card was read"
        );
        assert!(r.card.is_none() && r.readers.is_empty());
    }

    #[test]
    fn a_card_that_left_mid_read_says_to_leave_it_in() {
        let mut facts = healthy();
        if let PcscFacts::Listed { card: Some(c), .. } = &mut facts.pcsc {
            c.read = CardRead::Transacted {
                apdus: 2,
                round_trip: Duration::from_millis(700),
                identity: Err(PivError::Channel(ChannelError::CardRemoved)),
            };
        }
        let r = report(&facts);
        assert!(
            the(&r, "piv")
                .next_step
                .as_ref()
                .unwrap()
                .contains("leave the card in")
        );
        assert_eq!(
            the(&r, "passcode").summary,
            "not checked: the PIV application did not answer"
        );
        let card = r.card.unwrap();
        assert_eq!((card.apdus, card.holder_uuid), (2, None));
    }

    #[test]
    fn a_crl_the_endpoint_could_not_give_points_at_the_endpoint_not_the_holder() {
        let mut facts = healthy();
        facts.certificate = CertificateFacts::Checked {
            certificate: certificate(CertVerdict::Unusable {
                reason: Finding {
                    kind: FindingKind::RevocationUnknown,
                    severity: Severity::Blocking,
                    message: "Revocation cannot be checked.".into(),
                    next_step: "Ask your RA.".into(),
                },
            }),
            crl: CrlFacts::EndpointUnfetched,
            crl_source: "endpoint".into(),
        };
        facts.endpoint = EndpointFacts::Unusable {
            url: "https://spine.example:8443".into(),
            error: SpineError::Config { reason: "x".into() },
        };
        let r = report(&facts);
        let cert = the(&r, "certificate");
        assert!(cert.summary.ends_with("see below)"), "{}", cert.summary);
        assert!(
            cert.next_step
                .as_ref()
                .unwrap()
                .starts_with("the CRL comes from the endpoint ([card] crl = \"endpoint\")"),
            "{:?}",
            cert.next_step
        );
        assert_eq!(
            the(&r, "clock").summary,
            "not checked: the endpoint did not answer"
        );
        assert_eq!(the(&r, "endpoint").verdict, Verdict::Fail);
    }

    #[test]
    fn a_file_the_agent_refuses_fails_the_config_line_with_the_key_named() {
        let mut facts = healthy();
        let text = include_str!("../../../../config/cardgated.toml")
            .replace("max_idle_time = 900", "max_idle_time = 0");
        facts.config = ConfigFacts::Refused(cardgate_config::Config::from_toml(&text).unwrap_err());
        let line = config_line(&facts);
        assert_eq!(line.verdict, Verdict::Fail);
        assert_eq!(
            line.summary,
            "agent configuration /etc/cardgate/cardgated.toml: it is not valid: session.max_idle_time: must be at least 1 second"
        );
        facts.config = ConfigFacts::Refused(
            cardgate_config::Config::from_file(std::path::Path::new("/nonexistent/cardgated.toml"))
                .unwrap_err(),
        );
        assert!(config_line(&facts).summary.contains(": cannot read it: "));
    }

    #[test]
    fn failures_print_their_next_step_and_set_the_exit_code() {
        let mut facts = healthy();
        facts.daemon = DaemonFacts::NotRunning;
        let r = report(&facts);
        assert!(r.failed());
        let text = render(&r);
        assert!(text.contains("OK   pcscd"), "{text}");
        assert!(
            text.contains(
                "FAIL daemon       the cardgate agent (cardgated) is not running on bus system\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("Next step: start it: `sudo systemctl restart cardgated`"),
            "{text}"
        );
        assert!(text.contains("1 check(s) FAILED"), "{text}");
        assert!(
            text.starts_with("cardgate doctor, 2026-11-23 10:00:00 (UTC)\n"),
            "{text}"
        );
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
        let mut facts = healthy();
        facts.daemon = DaemonFacts::NotRunning;
        facts.pcsc = PcscFacts::Stopped("boom".into());
        facts.certificate = CertificateFacts::NoCard;
        let v = serde_json::to_value(report(&facts)).unwrap();
        assert_eq!(v["checks"][1]["check"], "pcscd");
        assert_eq!(v["checks"][1]["verdict"], "fail");
        assert_eq!(v["checks"][5]["check"], "daemon");
        assert!(
            v["checks"][5]["next_step"]
                .as_str()
                .unwrap()
                .starts_with("start it")
        );
        assert!(v["card"].is_null());
        assert_eq!(v["clock_skew_seconds"], 2);
    }
}
