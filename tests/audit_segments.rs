//! End-to-end (issue 16, segments): `cardgated` with `[audit] segment_max_bytes` at its
//! minimum seals its trail into segments while PMR calls `Authorise` over the bus; the
//! `cardgate audit verify` and `tail` commands, each in its own process, read the whole trail
//! across the segments (while the daemon, idle, still runs); a sealed segment taken away is
//! found and named.
//!
//! Which processes: the daemon runs in this test's process (`RunningDaemon`) on the lab's
//! pcscd and a private bus; this test binary re-runs itself as the CLI
//! (`CARDGATE_E2E_AS_CLI`, then its `main` is exactly `cardgate`'s).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use cardgate_audit::sealed_segments;
use cardgate_demo::DEMO_ODS;
use cardgate_e2e::daemon_harness::{RunningDaemon, fail};
use cardgate_e2e::{check, lab_trial};
use cardgate_lab::Lab;
use libtest_mimic::{Arguments, Failed};

const AS_CLI: &str = "CARDGATE_E2E_AS_CLI";
/// Enough decisions (a few hundred bytes each) to fill several 64 KiB segments.
const DECISIONS: usize = 800;

fn main() -> ExitCode {
    if std::env::var_os(AS_CLI).is_some() {
        return cardgate_cli::main();
    }
    cardgate_lab::enter_lab_namespace();
    let args = Arguments::from_args();
    let trials = vec![lab_trial(
        "the_daemon_seals_its_trail_and_the_cli_verifies_it_across_segments",
        |lab| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| fail("runtime", e))?
                .block_on(sealed_trail(lab))
        },
    )];
    libtest_mimic::run(&args, trials).exit_code()
}

/// `cardgate ARGS`, its exit code and what it printed.
fn cardgate(args: &[&str]) -> Result<(i32, String), Failed> {
    let exe = std::env::current_exe().map_err(|e| fail("current exe", e))?;
    let out = Command::new(exe)
        .env(AS_CLI, "1")
        .args(args)
        .output()
        .map_err(|e| fail("cardgate", e))?;
    Ok((
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

async fn sealed_trail(_lab: &mut Lab) -> Result<(), Failed> {
    let mut audit = PathBuf::new();
    let running = RunningDaemon::start(|config| {
        config.audit.segment_max_bytes = cardgated::config::MIN_SEGMENT_BYTES;
        audit = config.paths.audit.clone();
    })
    .await?;
    for _ in 0..DECISIONS {
        let answer = running
            .agent
            .authorise("download", DEMO_ODS)
            .await
            .map_err(|e| fail("Authorise", e))?;
        check(!answer.allowed, || format!("no card, yet {answer:?}"))?;
    }
    // Read while the daemon runs (idle now): stopping it removes its directory.
    let sealed = sealed_segments(&audit).map_err(|e| fail("listing the segments", e))?;
    check(sealed.len() >= 3, || {
        format!(
            "{DECISIONS} decisions sealed {} segment(s); the active file is {} bytes",
            sealed.len(),
            std::fs::metadata(&audit).map(|m| m.len()).unwrap_or(0)
        )
    })?;
    let file = audit.display().to_string();
    let (code, said) = cardgate(&["audit", "verify", "--file", &file])?;
    check(code == 0 && said.contains("intact"), || {
        format!("audit verify across {} segments: {said}", sealed.len())
    })?;
    let (code, said) = cardgate(&["audit", "tail", "-n", "500", "--file", &file])?;
    let decisions = said.matches("download").count();
    check(code == 0 && decisions >= 490, || {
        format!("audit tail -n 500 showed {decisions} decisions: {said}")
    })?;

    // A sealed segment taken away: found, named, exit 1.
    let (_, taken) = &sealed[1];
    std::fs::remove_file(taken).map_err(|e| fail("removing a segment", e))?;
    let (_, after) = &sealed[2];
    let (code, said) = cardgate(&["audit", "verify", "--file", &file])?;
    let after_name = after
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    check(
        code == 1 && said.contains("missing") && said.contains(&after_name),
        || format!("audit verify with a segment taken away: {said}"),
    )?;
    running.stop().await?;
    Ok(())
}
