//! `cardgate`, the command line of the cardgate smartcard agent, for pharmacy staff, IT support
//! and scripts. It talks to `cardgated` over D-Bus (`docs/ipc.md`) and reads the audit trail
//! directly, so a support call can get the card UUID, the state and the exact error messages
//! in one command (`docs/support.md`).
//!
//! A library with a thin `main`, so the e2e tests and the man page use the same definition.
//! Exit codes: 0 success (for `check`: allowed), 1 a refusal or a problem found (refused,
//! tampered audit trail, agent not running), 2 a usage error or the agent unreachable in
//! `check`.

#![forbid(unsafe_code)]

pub mod atr;
mod commands;
pub mod demo;
pub mod doctor;
mod error;
pub mod format;
pub mod staff;
pub mod support_bundle;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

pub use error::CliError;

/// The audit trail's path in the daemon's documented default configuration.
pub const DEFAULT_AUDIT_PATH: &str = "/var/lib/cardgate/audit.jsonl";
/// The daemon's configuration file, read (only for `[paths] audit`) when `--file` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/cardgate/cardgated.toml";

/// Smartcard status, authorisation checks and audit verification for the cardgate agent.
#[derive(Debug, Parser)]
#[command(name = "cardgate", version, propagate_version = true)]
pub struct Cli {
    /// Print JSON for scripts instead of sentences for people.
    #[arg(long, global = true)]
    pub json: bool,
    /// The D-Bus bus the agent serves on: `system`, or an address (`unix:path=...`).
    #[arg(long, global = true, value_name = "ADDRESS", default_value = "system")]
    pub bus: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Readers, card, holder, state, role, tries left and certificate expiry, with what to do.
    Status,
    /// Ask the agent whether ACTION is allowed now; exit 0 allowed, 1 refused, 2 error.
    Check {
        /// The action to ask about (the help lists them, from the policy crate).
        #[arg(help = action_help())]
        action: String,
        /// The pharmacy's ODS code (default: the selected role profile's).
        #[arg(long, value_name = "CODE")]
        ods: Option<String>,
    },
    /// Verify or show the audit trail (read directly from the file).
    Audit {
        /// What to do with the trail.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the agent's events as they happen, one per line, until Ctrl-C.
    Watch,
    /// Log in with the card in the reader.
    Login {
        /// Type the passcode on the reader's PIN pad.
        #[arg(long)]
        pin_pad: bool,
        /// Read the passcode from the first line of standard input (for scripts; never echoed).
        #[arg(long, conflicts_with = "pin_pad")]
        passcode_stdin: bool,
        /// Agree in advance to use the card's final try (otherwise asked on the terminal).
        #[arg(long)]
        confirm_final_try: bool,
        /// The role profile id to select when the holder has several.
        #[arg(long, value_name = "ID")]
        role: Option<String>,
    },
    /// Select or switch the role profile within the session (ids are listed at log-in).
    Role {
        /// The role profile id (e.g. `RP-PHARM-FA123`).
        id: String,
    },
    /// End the session; the card stays in the reader.
    Logout,
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Drive the embedded demo (`scripts/run`): take the card out, put it back, swap
    /// holders, type on the demo PIN pad, make the idle timers run out soon.
    Demo {
        /// What to do.
        #[command(subcommand)]
        command: demo::DemoCommand,
    },
    /// Staff tasks: `passcode change`, `unlock`, `renew`, `tac` (`staff.rs`).
    #[command(flatten)]
    Staff(staff::StaffCommand),
    /// Check everything a smartcard log-in needs (pcscd, readers, card, ATR, PIV, tries,
    /// certificate, clock, endpoint, agent): one verdict a line, the next step for each
    /// failure; exit 0 when nothing failed, 1 otherwise. Works without the agent running.
    Doctor {
        /// The agent's configuration file (endpoint, card CA, CRL source, audit path, bus).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Write one file for the service desk: card UUID, time of the fault, steps taken (recent
    /// audit entries), error messages, reader and card details, versions. No passcode, key or
    /// ticket is ever in it.
    SupportBundle {
        /// The agent's configuration file.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Where to write the bundle (default: cardgate-support-TIME.json here, TIME in UTC).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// When the fault happened, as the holder reports it (e.g. "2026-11-23 10:15");
        /// default: now.
        #[arg(long, value_name = "WHEN")]
        fault_time: Option<String>,
        /// How many recent audit entries to include as the steps taken.
        #[arg(long, value_name = "N", default_value_t = 50)]
        events: usize,
        /// The audit trail (default: the agent's configured one).
        #[arg(long, value_name = "PATH")]
        audit_file: Option<PathBuf>,
    },
}

/// `cardgate audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; prints the first break and exits 1 if the trail was tampered with.
    Verify {
        /// The audit trail (default: the daemon's configured one).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Anchors kept elsewhere (the endpoint's audit anchors file: one JSON object per
        /// line with `seq` and `hash`): the trail must hold each, with that hash. Catches a
        /// trail rewritten after the anchors were taken.
        #[arg(long, value_name = "PATH")]
        anchors: Option<PathBuf>,
    },
    /// Show the last entries.
    Tail {
        /// How many entries.
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
        /// The audit trail (default: the daemon's configured one).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
}

/// The help of `check ACTION`: the policy crate's action list, so it cannot go stale.
fn action_help() -> String {
    format!("One of {}.", cardgate_ipc::Action::valid_names())
}

/// The clap definition, for completions, the man page and tests.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parses the command line and runs it; what the `cardgate` binary's `main` is.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any passcode is read: no core dump may hold one.
    if let Err(e) = cardgate_secmem::forbid_core_dumps() {
        eprintln!("cardgate: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // What a call carrying a secret left on the stack, cleared whenever the runtime waits.
        .on_thread_park(cardgate_secmem::scrub_stack)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cardgate: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    ExitCode::from(runtime.block_on(commands::run(cli)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn the_man_page_and_completions_come_from_the_definition() {
        let mut out = Vec::new();
        clap_mangen::Man::new(command()).render(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.contains("cardgate"));
        assert!(page.contains("\\-\\-json"), "{page}");
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut command(),
            "cardgate",
            &mut out,
        );
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("status") && script.contains("check"));
    }

    #[test]
    fn check_takes_an_ods_code_and_globals_go_anywhere() {
        let cli =
            Cli::try_parse_from(["cardgate", "check", "download", "--ods", "FA123", "--json"])
                .unwrap();
        assert!(cli.json);
        assert_eq!(cli.bus, "system");
        assert!(matches!(
            cli.command,
            Command::Check { ref action, ref ods } if action == "download" && ods.as_deref() == Some("FA123")
        ));
        let err = Cli::try_parse_from(["cardgate", "login", "--pin-pad", "--passcode-stdin"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
