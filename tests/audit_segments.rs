//! End-to-end (issue 16): `cardgated` with `[audit] segment_max_bytes` at its minimum seals
//! its trail into segments while PMR calls `Authorise` over the bus; the `cardgate audit
//! verify` and `tail` commands, each in its own process, read the whole trail across the
//! segments (while the daemon, idle, still runs); a sealed segment taken away is found and
//! named. And at a log-in through the lab's pcscd the daemon hands the endpoint (spine-sim,
//! over TLS) its chain head; a trail rewritten afterwards verifies on its own but not against
//! the endpoint's anchors.
//!
//! Which processes: the daemon runs in this test's process (`RunningDaemon`) on the lab's
//! pcscd and a private bus; this test binary re-runs itself as the CLI
//! (`CARDGATE_E2E_AS_CLI`, then its `main` is exactly `cardgate`'s).

use std::path::PathBuf;
use std::process::ExitCode;

use cardgate_audit::{AuditLog, TailItem, sealed_segments, tail};
use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, PHARMACIST};
use cardgate_e2e::cli_process::run_cli;
use cardgate_e2e::daemon_harness::{RunningDaemon, fail, wait_for};
use cardgate_e2e::{async_lab_trial, check, run_cli_or_lab_suite};
use cardgate_lab::Lab;
use libtest_mimic::Failed;

/// Enough decisions (a few hundred bytes each) to fill several 64 KiB segments.
const DECISIONS: usize = 800;

fn main() -> ExitCode {
    run_cli_or_lab_suite(|| {
        vec![
            async_lab_trial(
                "the_daemon_seals_its_trail_and_the_cli_verifies_it_across_segments",
                sealed_trail,
            ),
            async_lab_trial(
                "a_trail_rewritten_after_a_log_in_is_caught_by_the_endpoints_anchor",
                anchored_at_the_endpoint,
            ),
        ]
    })
}

/// `cardgate ARGS` as its own process: its exit code and all it printed.
fn cardgate(args: &[&str]) -> Result<(i32, String), Failed> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let run = run_cli(&args, None)?;
    Ok((run.code, format!("{}{}", run.stdout, run.stderr)))
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

async fn anchored_at_the_endpoint(lab: &mut Lab) -> Result<(), Failed> {
    let mut audit = PathBuf::new();
    let running = RunningDaemon::start(|config| audit = config.paths.audit.clone()).await?;
    let anchors = running.world.dir().join("audit-anchors.jsonl");
    let _inserted = running.insert_pharmacist(lab).await?;
    running
        .agent
        .login(DEMO_PASSCODE, false)
        .await
        .map_err(|e| fail("Login", e))?;
    wait_for("the endpoint to keep the chain head", || {
        let anchors = anchors.clone();
        async move { std::fs::read_to_string(&anchors).is_ok_and(|t| !t.is_empty()) }
    })
    .await?;
    let kept = std::fs::read_to_string(&anchors).map_err(|e| fail("anchors", e))?;
    let entries: Vec<_> = tail(&audit, 10_000)
        .map_err(|e| fail("tail", e))?
        .into_iter()
        .filter_map(|item| match item {
            TailItem::Entry(entry) => Some(entry),
            _ => None,
        })
        .collect();
    let started = entries
        .iter()
        .find(|e| e.event.kind() == "session_started")
        .ok_or("no session_started entry")?;
    check(
        kept.contains(&format!("\"seq\":{}", started.seq))
            && kept.contains(&started.hash.to_string())
            && kept.contains(PHARMACIST.1),
        || format!("the endpoint kept {kept:?}, the session started at {started:?}"),
    )?;
    let file = audit.display().to_string();
    let with_anchors = ["audit", "verify", "--file", &file, "--anchors"];
    let anchors_arg = anchors.display().to_string();
    let verify_against = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push(&anchors_arg);
        cardgate(&all)
    };
    let (code, said) = verify_against(&with_anchors)?;
    check(code == 0 && said.contains("intact"), || {
        format!("the untouched trail against the endpoint's anchors: {said}")
    })?;

    // Rewritten by someone who can write the file: the first passcode attempt dropped and every
    // hash after it recomputed. On its own the chain verifies; against the anchor it does not.
    let rewritten = audit.with_file_name("rewritten.jsonl");
    {
        let mut log = AuditLog::open(&rewritten).map_err(|e| fail("rewriting", e))?;
        let mut dropped = false;
        for entry in &entries {
            if !dropped && entry.event.kind() == "passcode_attempt" {
                dropped = true;
                continue;
            }
            log.append(entry.at, &entry.event)
                .map_err(|e| fail("rewriting", e))?;
        }
        check(dropped, || "no passcode attempt to drop".into())?;
    }
    std::fs::rename(&rewritten, &audit).map_err(|e| fail("replacing the trail", e))?;
    let (code, said) = cardgate(&["audit", "verify", "--file", &file])?;
    check(code == 0, || {
        format!("the rewritten chain alone should verify (that is the point): {said}")
    })?;
    let (code, said) = verify_against(&with_anchors)?;
    check(
        code == 1 && (said.contains("anchor mismatch") || said.contains("truncated")),
        || format!("the rewritten trail against the endpoint's anchors: {said}"),
    )?;

    // A malformed anchors file is named, not taken for a verdict.
    std::fs::write(&anchors, "not json\n").map_err(|e| fail("anchors", e))?;
    let (code, said) = verify_against(&with_anchors)?;
    check(code == 2 && said.contains("line 1"), || {
        format!("a malformed anchors file: {said}")
    })?;
    running.stop().await?;
    Ok(())
}
