//! The CLI as its own process, for the CLI suites: the suite's binary re-executed as
//! `cardgate` (or the binary `CARDGATE_BIN` names, to test an installed one), and what one
//! run of it printed.

use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};

use libtest_mimic::Failed;
use serde_json::Value;

use crate::daemon_harness::OrFail as _;

/// Set in the environment of a suite's binary re-executed to be the CLI.
pub const AS_CLI: &str = "CARDGATE_E2E_AS_CLI";

/// The CLI's exit code when this process is a suite's binary re-executed as the CLI (it
/// then runs the CLI instead of the suite): the first thing a CLI suite's `main` asks.
pub fn run_if_cli() -> Option<ExitCode> {
    std::env::var_os(AS_CLI).map(|_| cardgate_cli::main())
}

/// A command that runs the CLI: `CARDGATE_BIN` when set, else this binary as the CLI.
pub fn cli_command() -> Result<Command, Failed> {
    Ok(match std::env::var_os("CARDGATE_BIN") {
        Some(bin) => Command::new(bin),
        None => {
            let mut command = Command::new(std::env::current_exe().or_fail("current_exe")?);
            command.env(AS_CLI, "1");
            command
        }
    })
}

/// One run of the CLI: exit code, stdout, stderr.
pub struct Run {
    /// The exit code, -1 when a signal ended it.
    pub code: i32,
    /// All it printed on standard output.
    pub stdout: String,
    /// All it printed on standard error.
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// The last line of stdout as JSON (`--json` prints its object last), `Null` if none.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.lines().last().unwrap_or("")).unwrap_or(Value::Null)
    }

    /// The `--json` error code (`NotEligible`, ...), or `""`.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_owned()
    }
}

/// Runs the CLI with `args`, writing `stdin` (if any) to it, and waits for it to end.
pub fn run_cli(args: &[String], stdin: Option<&str>) -> Result<Run, Failed> {
    let mut child = cli_command()?
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .or_fail("spawning cardgate")?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.unwrap_or("").as_bytes())
            .or_fail("stdin")?;
    }
    let output = child.wait_with_output().or_fail("cardgate")?;
    Ok(Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// [`run_cli`] on a blocking thread, so that a daemon in this process keeps serving
/// meanwhile.
pub async fn run_cli_async(args: Vec<String>, stdin: Option<String>) -> Result<Run, Failed> {
    tokio::task::spawn_blocking(move || run_cli(&args, stdin.as_deref()))
        .await
        .or_fail("join")?
}
