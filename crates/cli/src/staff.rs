//! The staff tasks of `cardgate`: `passcode change`, `unlock` (the three paths of the
//! guidance, in order), `renew` (certificate self-renewal with a progress bar) and `tac`
//! (Temporary Access Cards and the custodian's register). Each reaches the agent over D-Bus
//! (`docs/ipc.md`, "Staff tasks"), explains the rule before the card is touched, reads
//! secrets without echo (or, for scripts, one a line from standard input with
//! `--secrets-stdin`), and prints sentences for people or `--json`.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use cardgate_ipc::{AgentError, AgentStaffProxy, TacInfo};
use cardgate_secmem::LockedString;
use clap::{Args, Subcommand};
use futures_lite::StreamExt;
use serde_json::json;
use zeroize::Zeroizing;

use crate::commands::{Outcome, ask, connect, print_json, read_status};
use crate::error::CliError;

/// The staff subcommands, flattened into `cardgate`'s own.
#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Change the card's passcode (the current one, then the new one twice; nothing shown).
    Passcode {
        /// What to do with the passcode.
        #[command(subcommand)]
        command: PasscodeCommand,
    },
    /// Unlock a locked card: self-service with a one-time code (default), `--sponsor` for a
    /// Sponsor or LSA unlocking someone else's card, or `--code` with the RA's unlock code.
    Unlock(UnlockArgs),
    /// Renew the card's certificate yourself (in the 90 days before it expires): a new key
    /// is made on the card, which can take up to a minute. You must be logged in.
    Renew,
    /// Temporary Access Cards, for Sponsors and LSAs (logged in with that role).
    Tac {
        /// What to do with the TAC.
        #[command(subcommand)]
        command: TacCommand,
    },
}

/// `cardgate passcode` subcommands.
#[derive(Debug, Subcommand)]
pub enum PasscodeCommand {
    /// Change the passcode.
    Change {
        /// Read the current and new passcodes (the new one twice), one a line, from standard
        /// input (for scripts; never echoed).
        #[arg(long)]
        secrets_stdin: bool,
        /// Agree in advance to use the card's final try.
        #[arg(long)]
        confirm_final_try: bool,
    },
}

/// `cardgate unlock` options.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Continue a self-service unlock: the request id printed when the code was sent.
    #[arg(long, value_name = "ID", conflicts_with_all = ["code", "sponsor"])]
    pub request_id: Option<String>,
    /// Unlock with the unlock code the Registration Authority (RA) gave you.
    #[arg(long, conflicts_with = "sponsor")]
    pub code: bool,
    /// As a Sponsor or LSA logged in with your own card: unlock the card of HOLDER, which is
    /// in the other reader (never your own card).
    #[arg(long, requires_all = ["holder", "card"])]
    pub sponsor: bool,
    /// With `--sponsor`: the holder's 12-digit UUID.
    #[arg(long, value_name = "UUID", requires = "sponsor")]
    pub holder: Option<String>,
    /// With `--sponsor`: the holder's card number.
    #[arg(long, value_name = "SERIAL", requires = "sponsor")]
    pub card: Option<String>,
    /// Read the secrets (one-time code or unlock code, then the new passcode twice) one a
    /// line from standard input (for scripts; never echoed).
    #[arg(long)]
    pub secrets_stdin: bool,
    /// Agree in advance to use the unlock code's final try (`--code`).
    #[arg(long)]
    pub confirm_final_try: bool,
}

/// `cardgate tac` subcommands.
#[derive(Debug, Subcommand)]
pub enum TacCommand {
    /// Activate a blank TAC for a team member, with the custodian who keeps it.
    Activate {
        /// The TAC's card number.
        serial: String,
        /// The team member's 12-digit UUID.
        #[arg(long, value_name = "UUID")]
        holder: String,
        /// Who keeps the card and its register (a name or UUID).
        #[arg(long, value_name = "NAME")]
        custodian: String,
    },
    /// Record in the custodian's register who used the TAC, and when.
    RecordUse {
        /// The TAC's card number.
        serial: String,
        /// The team member's 12-digit UUID.
        #[arg(long, value_name = "UUID")]
        used_by: String,
        /// From when (RFC 3339, e.g. 2026-11-23T09:00:00Z).
        #[arg(long, value_name = "TIME")]
        from: String,
        /// Until when (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: String,
    },
    /// Return the TAC to blank (the permanent card has arrived); its register is kept.
    Return {
        /// The TAC's card number.
        serial: String,
    },
    /// Show a TAC's state, register and history.
    Show {
        /// The TAC's card number.
        serial: String,
    },
}

/// The passcode rule, said before anything is asked or sent.
const PASSCODE_POLICY: &str = "A passcode is 4 to 8 letters or digits. Three wrong passcodes \
    in a row lock the card; a locked card must be unlocked (self-service, a Sponsor or LSA, or \
    the RA). Nothing you type is shown.";

/// Runs a staff command.
pub(crate) async fn run(bus: &str, json: bool, command: StaffCommand) -> Outcome {
    match command {
        StaffCommand::Passcode {
            command:
                PasscodeCommand::Change {
                    secrets_stdin,
                    confirm_final_try,
                },
        } => passcode_change(bus, json, secrets_stdin, confirm_final_try).await,
        StaffCommand::Unlock(args) => unlock(bus, json, args).await,
        StaffCommand::Renew => renew(bus, json).await,
        StaffCommand::Tac { command } => tac(bus, json, command).await,
    }
}

fn fail(e: CliError) -> (u8, CliError) {
    (1, e)
}

fn call_error(bus: &str) -> impl Fn(zbus::Error) -> (u8, CliError) + '_ {
    move |e| fail(CliError::from_call(bus, e))
}

async fn staff_proxy(connection: &zbus::Connection) -> Result<AgentStaffProxy<'static>, CliError> {
    AgentStaffProxy::new(connection)
        .await
        .map_err(|e| CliError::Agent(AgentError::from(e)))
}

/// Where secrets come from: the terminal without echo, or standard input one a line.
struct Secrets {
    from_stdin: bool,
}

impl Secrets {
    /// One secret, held on locked, undumpable pages until sent (the line read is cleared).
    fn read(&self, prompt: &str) -> Result<LockedString, CliError> {
        let io = |source| CliError::Io {
            what: "reading from the terminal (scripts: use --secrets-stdin)".into(),
            source,
        };
        let mut text = Zeroizing::new(String::with_capacity(64));
        if self.from_stdin {
            std::io::stdin().lock().read_line(&mut text).map_err(io)?;
        } else {
            *text = rpassword::prompt_password(prompt).map_err(io)?;
        }
        Ok(LockedString::copy_of(text.trim_end_matches(['\r', '\n'])))
    }

    /// The new passcode, twice; they must match and have the right shape (checked here so
    /// a typo never reaches the card).
    fn new_passcode(&self) -> Result<LockedString, CliError> {
        let first = self.read("New passcode (not shown): ")?;
        let second = self.read("New passcode again: ")?;
        if *first != *second {
            return Err(CliError::Usage(
                "the two new passcodes differ; nothing was sent to the card".into(),
            ));
        }
        let len = first.as_str().chars().count();
        if !(4..=8).contains(&len) || !first.as_str().chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CliError::Usage(
                "the new passcode must be 4 to 8 letters or digits; nothing was sent to the card"
                    .into(),
            ));
        }
        Ok(first)
    }
}

/// Whether the final try may be used: confirmed in advance, or asked on the terminal.
fn final_try_ok(confirmed: bool, what: &str) -> Result<bool, CliError> {
    if confirmed {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Agent(AgentError::FinalTryNotConfirmed(format!(
            "one {what} try is left before the card locks; nothing was sent to the card. Run again with --confirm-final-try only if you are sure"
        ))));
    }
    let answer = ask(&format!(
        "Only ONE {what} try is left: a wrong one now locks the card.\nType 'yes' to use it, anything else to stop: "
    ))?;
    Ok(answer == "yes")
}

async fn passcode_change(bus: &str, json: bool, secrets_stdin: bool, confirm: bool) -> Outcome {
    let (_c, agent) = connect(bus).await.map_err(fail)?;
    let view = read_status(bus, &agent).await.map_err(fail)?;
    if !json {
        eprintln!("{PASSCODE_POLICY}");
        if view.passcode_tries_left > 0 {
            eprintln!(
                "Your card has {} passcode tr{} left.",
                view.passcode_tries_left,
                if view.passcode_tries_left == 1 {
                    "y"
                } else {
                    "ies"
                }
            );
        }
    }
    let mut confirm = confirm;
    if view.passcode_tries_left == 1 && !confirm {
        if !final_try_ok(false, "passcode").map_err(fail)? {
            eprintln!("Stopped; nothing was sent to the card.");
            return Ok(1);
        }
        confirm = true;
    }
    // A reader with its own keypad takes both passcodes there: never on this computer.
    if view.readers.iter().any(|r| r.card_present && r.pin_pad) {
        if !json {
            eprintln!(
                "Type on the reader: your current passcode, then the new one, then the new one again, each followed by OK."
            );
        }
        agent
            .change_passcode_with_pin_pad(confirm)
            .await
            .map_err(call_error(bus))?;
        return done_change(json);
    }
    let secrets = Secrets {
        from_stdin: secrets_stdin,
    };
    let current = secrets
        .read("Current passcode (not shown): ")
        .map_err(fail)?;
    let new = secrets.new_passcode().map_err(fail)?;
    agent
        .change_passcode(&current, &new, confirm)
        .await
        .map_err(call_error(bus))?;
    done_change(json)
}

fn done_change(json: bool) -> Outcome {
    if json {
        print_json(&json!({"ok": true}));
    } else {
        println!("Passcode changed. Use the new one from now on.");
    }
    Ok(0)
}

/// The unlock paths, in the guidance's order.
const UNLOCK_PATHS: &str = "A locked card can be unlocked, in this order:\n  \
    1. yourself, if you registered an email or mobile number: `cardgate unlock` sends a one-time code;\n  \
    2. a Sponsor or Local Smartcard Administrator (LSA) with their own card: `cardgate unlock --sponsor --holder UUID --card SERIAL`;\n  \
    3. the Registration Authority (RA): `cardgate unlock --code` with the unlock code they give you.\n\
    Cards whose number begins 01, 02 or 03 cannot be unlocked: ask the RA for a new card.";

async fn unlock(bus: &str, json: bool, args: UnlockArgs) -> Outcome {
    let (connection, agent) = connect(bus).await.map_err(fail)?;
    let staff = staff_proxy(&connection).await.map_err(fail)?;
    let secrets = Secrets {
        from_stdin: args.secrets_stdin,
    };
    if args.sponsor {
        let holder = args.holder.unwrap_or_default();
        let card = args.card.unwrap_or_default();
        if !json {
            eprintln!(
                "Sponsor unlock of card {card} (holder {holder}). The holder chooses the new passcode now. {PASSCODE_POLICY}"
            );
        }
        let new = secrets.new_passcode().map_err(fail)?;
        staff
            .sponsor_unlock(&holder, &card, &new)
            .await
            .map_err(call_error(bus))?;
        return done_unlock(json, "sponsor");
    }
    if args.code {
        let view = read_status(bus, &agent).await.map_err(fail)?;
        if view.readers.iter().any(|r| r.card_present && r.pin_pad) {
            if !json {
                eprintln!(
                    "Type on the reader: the Registration Authority's unlock code (8 characters), then your new passcode, then the new passcode again, each followed by OK. {PASSCODE_POLICY}"
                );
            }
            let result = staff
                .unlock_with_code_on_pin_pad(args.confirm_final_try)
                .await;
            if let Err(zbus::Error::MethodError(name, _, _)) = &result
                && name.as_str().ends_with("Error.FinalTryNotConfirmed")
                && !args.confirm_final_try
                && final_try_ok(false, "unlock code").map_err(fail)?
            {
                eprintln!("Type the unlock code and the new passcode on the reader again.");
                staff
                    .unlock_with_code_on_pin_pad(true)
                    .await
                    .map_err(call_error(bus))?;
                return done_unlock(json, "registration-authority");
            }
            result.map_err(call_error(bus))?;
            return done_unlock(json, "registration-authority");
        }
    }
    if args.code {
        if !json {
            eprintln!(
                "Unlock with the Registration Authority's unlock code (8 letters or digits). {PASSCODE_POLICY}"
            );
        }
        let code = secrets.read("Unlock code (not shown): ").map_err(fail)?;
        let new = secrets.new_passcode().map_err(fail)?;
        let result = staff
            .unlock_with_code(&code, &new, args.confirm_final_try)
            .await;
        if let Err(zbus::Error::MethodError(name, _, _)) = &result
            && name.as_str().ends_with("Error.FinalTryNotConfirmed")
            && !args.confirm_final_try
            && final_try_ok(false, "unlock code").map_err(fail)?
        {
            staff
                .unlock_with_code(&code, &new, true)
                .await
                .map_err(call_error(bus))?;
            return done_unlock(json, "registration-authority");
        }
        result.map_err(call_error(bus))?;
        return done_unlock(json, "registration-authority");
    }
    let request_id = match args.request_id {
        Some(id) => id,
        None => {
            if !json {
                eprintln!("{UNLOCK_PATHS}\n\nTrying self-service unlock (path 1).");
            }
            let started = staff
                .start_self_service_unlock()
                .await
                .map_err(call_error(bus))?;
            let interactive = args.secrets_stdin || std::io::stdin().is_terminal();
            if !interactive {
                if json {
                    print_json(&json!({
                        "ok": true,
                        "path": "self-service",
                        "request_id": started.request_id,
                        "sent_to": started.sent_to,
                    }));
                } else {
                    println!(
                        "A one-time code was sent to {}. Continue with: cardgate unlock --request-id {}",
                        started.sent_to, started.request_id
                    );
                }
                return Ok(0);
            }
            eprintln!("A one-time code was sent to {}.", started.sent_to);
            started.request_id
        }
    };
    if !json {
        eprintln!("{PASSCODE_POLICY}");
    }
    let code = secrets
        .read("One-time code (6 digits, not shown): ")
        .map_err(fail)?;
    let new = secrets.new_passcode().map_err(fail)?;
    staff
        .unlock_with_one_time_code(&request_id, &code, &new)
        .await
        .map_err(call_error(bus))?;
    done_unlock(json, "self-service")
}

fn done_unlock(json: bool, path: &str) -> Outcome {
    if json {
        print_json(&json!({"ok": true, "path": path}));
    } else {
        println!(
            "The card is unlocked and has its new passcode. Log in with it (`cardgate login`)."
        );
    }
    Ok(0)
}

async fn renew(bus: &str, json: bool) -> Outcome {
    let (connection, _agent) = connect(bus).await.map_err(fail)?;
    let staff = staff_proxy(&connection).await.map_err(fail)?;
    let mut progress = staff
        .receive_renewal_progress()
        .await
        .map_err(call_error(bus))?;
    let bar = if json || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        eprintln!(
            "Renewing your certificate: a new key is made on the card (this can take up to a minute). Do not remove the card."
        );
        let bar = indicatif::ProgressBar::new(100);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {percent:>3}% {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    };
    bar.set_message("starting");
    let call = staff.renew_certificate();
    futures_lite::pin!(call);
    let mut steps: Vec<String> = Vec::new();
    let result = loop {
        tokio::select! {
            result = &mut call => break result,
            Some(signal) = progress.next() => {
                if let Ok(args) = signal.args() {
                    bar.set_position(u64::from(args.percent));
                    bar.set_message(step_words(args.step));
                    steps.push(args.step.to_owned());
                }
            }
        }
    };
    let not_after = match result {
        Ok(t) => t,
        Err(e) => {
            bar.abandon_with_message("stopped");
            return Err(call_error(bus)(e));
        }
    };
    // The reply can overtake the last signals: collect them for a moment.
    while !steps.iter().any(|s| s == "done") {
        match tokio::time::timeout(Duration::from_millis(500), progress.next()).await {
            Ok(Some(signal)) => {
                if let Ok(args) = signal.args() {
                    steps.push(args.step.to_owned());
                }
            }
            _ => break,
        }
    }
    bar.finish_with_message("done");
    let date = time::OffsetDateTime::from_unix_timestamp(not_after)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| not_after.to_string());
    if json {
        print_json(&json!({"ok": true, "certificate_not_after": not_after, "steps": steps}));
    } else {
        println!("Your certificate is renewed; it is now valid until {date}.");
    }
    Ok(0)
}

fn step_words(step: &str) -> &'static str {
    match step {
        "generating-key" => "the card is making its new key",
        "requesting-certificate" => "asking the national service for the certificate",
        "writing-certificate" => "writing the new certificate to the card",
        "done" => "done",
        _ => "working",
    }
}

fn rfc3339(argument: &str, value: &str) -> Result<i64, CliError> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            CliError::Usage(format!(
                "--{argument} \"{value}\" is not a time like 2026-11-23T09:00:00Z"
            ))
        })
}

async fn tac(bus: &str, json: bool, command: TacCommand) -> Outcome {
    // Times are checked before the agent is asked.
    let (what, times) = match &command {
        TacCommand::RecordUse { from, until, .. } => (
            "recorded",
            Some((
                rfc3339("from", from).map_err(|e| (2, e))?,
                rfc3339("until", until).map_err(|e| (2, e))?,
            )),
        ),
        TacCommand::Activate { .. } => ("activated", None),
        TacCommand::Return { .. } => ("returned to blank", None),
        TacCommand::Show { .. } => ("", None),
    };
    let (connection, _agent) = connect(bus).await.map_err(fail)?;
    let staff = staff_proxy(&connection).await.map_err(fail)?;
    let record = match (&command, times) {
        (
            TacCommand::Activate {
                serial,
                holder,
                custodian,
            },
            _,
        ) => staff.tac_activate(serial, holder, custodian).await,
        (
            TacCommand::RecordUse {
                serial, used_by, ..
            },
            Some((from, until)),
        ) => staff.tac_record_use(serial, used_by, from, until).await,
        (TacCommand::Return { serial }, _) => staff.tac_return(serial).await,
        (TacCommand::Show { serial } | TacCommand::RecordUse { serial, .. }, _) => {
            staff.tac_read(serial).await
        }
    }
    .map_err(call_error(bus))?;
    if json {
        print_json(&json!({"ok": true, "tac": record}));
    } else {
        if !what.is_empty() {
            println!("TAC {} {what}.", record.tac_serial);
        }
        print!("{}", render_tac(&record));
    }
    Ok(0)
}

fn date_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// A TAC's record for people.
pub fn render_tac(tac: &TacInfo) -> String {
    let mut out = format!("TAC {}: {}", tac.tac_serial, tac.state);
    if tac.state == "active" {
        out.push_str(&format!(
            ", for {} (custodian: {})",
            tac.holder_uid, tac.custodian
        ));
    }
    out.push('\n');
    if tac.usage.is_empty() {
        out.push_str("Register: no use recorded.\n");
    } else {
        out.push_str("Register (who used it):\n");
        for u in &tac.usage {
            out.push_str(&format!(
                "  {} from {} until {}\n",
                u.used_by,
                date_time(u.from),
                date_time(u.until)
            ));
        }
    }
    for h in &tac.history {
        out.push_str(&format!(
            "  {} {} by {}{}\n",
            date_time(h.at),
            h.action,
            h.by,
            if h.holder_uid.is_empty() {
                String::new()
            } else {
                format!(" (holder {})", h.holder_uid)
            }
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Result<StaffCommand, clap::Error> {
        let mut all = vec!["cardgate"];
        all.extend(args);
        match Cli::try_parse_from(all)?.command {
            Command::Staff(c) => Ok(c),
            other => panic!("not a staff command: {other:?}"),
        }
    }

    #[test]
    fn the_unlock_paths_are_exclusive_and_sponsor_needs_holder_and_card() {
        assert!(matches!(
            parse(&["unlock"]).unwrap(),
            StaffCommand::Unlock(UnlockArgs {
                code: false,
                sponsor: false,
                request_id: None,
                ..
            })
        ));
        assert!(parse(&["unlock", "--code", "--sponsor"]).is_err());
        assert!(parse(&["unlock", "--sponsor", "--holder", "555000555666"]).is_err());
        assert!(parse(&["unlock", "--holder", "555000555666"]).is_err());
        assert!(parse(&["unlock", "--request-id", "x", "--code"]).is_err());
        let c = parse(&[
            "unlock",
            "--sponsor",
            "--holder",
            "555000555666",
            "--card",
            "6516770101",
        ])
        .unwrap();
        assert!(matches!(
            c,
            StaffCommand::Unlock(UnlockArgs { sponsor: true, .. })
        ));
    }

    #[test]
    fn passcode_renew_and_tac_parse() {
        assert!(matches!(
            parse(&["passcode", "change", "--secrets-stdin"]).unwrap(),
            StaffCommand::Passcode {
                command: PasscodeCommand::Change {
                    secrets_stdin: true,
                    confirm_final_try: false
                }
            }
        ));
        assert!(matches!(parse(&["renew"]).unwrap(), StaffCommand::Renew));
        assert!(parse(&["tac", "activate", "1", "--holder", "555000121212"]).is_err());
        assert!(matches!(
            parse(&[
                "tac",
                "record-use",
                "1",
                "--used-by",
                "u",
                "--from",
                "a",
                "--until",
                "b"
            ])
            .unwrap(),
            StaffCommand::Tac {
                command: TacCommand::RecordUse { .. }
            }
        ));
    }

    #[test]
    fn times_are_rfc3339_and_the_error_says_so() {
        assert_eq!(
            rfc3339("from", "2026-11-23T09:00:00Z").unwrap(),
            1_795_424_400
        );
        let e = rfc3339("until", "tomorrow").unwrap_err();
        assert!(e.to_string().contains("--until"), "{e}");
    }

    #[test]
    fn a_tac_reads_with_its_register() {
        let tac = TacInfo {
            tac_serial: "4000000001".into(),
            state: "active".into(),
            holder_uid: "555000121212".into(),
            custodian: "Pharmacy manager".into(),
            usage: vec![cardgate_ipc::TacUse {
                used_by: "555000121212".into(),
                from: 1_795_424_400,
                until: 1_795_455_000,
            }],
            history: vec![],
        };
        let text = render_tac(&tac);
        assert!(text.contains("active, for 555000121212 (custodian: Pharmacy manager)"));
        assert!(text.contains("from 2026-11-23T09:00:00Z until 2026-11-23T17:30:00Z"));
    }
}
