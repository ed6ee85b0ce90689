//! Issue 8's failure scenarios against real processes and a real file system:
//!
//! - a writer killed with SIGKILL while appending, restarted several times: every entry it
//!   acknowledged is on the chain and the chain verifies;
//! - a full disk (a 16 KiB tmpfs in a private mount namespace): appends fail with
//!   `DiskFull`, nothing acknowledged is lost, and appends resume once space is freed.
//!
//! Each test re-runs this test binary as a child (an `#[ignore]`d half that refuses to run
//! without its environment), so the kill and the mount happen to a separate process.
#![allow(clippy::expect_used)] // Tests may expect: a panic is the failure report.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use cardgate_audit::{
    AuditEvent, AuditLog, AuditReceipt, EntryHash, SegmentPolicy, sealed_segments, verify,
    verify_with_anchors,
};
use time::OffsetDateTime;
use time::macros::datetime;

const CHILD_LOG: &str = "CARDGATE_AUDIT_TEST_CHILD_LOG";
/// Set for the child that seals segments (2 KiB, daily) and keeps one day of them.
const CHILD_SEGMENTS: &str = "CARDGATE_AUDIT_TEST_CHILD_SEGMENTS";

/// The child's segment policy: small segments, sealed daily, one day kept, so a kill lands
/// in the middle of sealing and removing as often as in the middle of a write.
const SMALL_SEGMENTS: SegmentPolicy = SegmentPolicy {
    max_bytes: Some(2048),
    daily: true,
    keep_days: Some(1),
};
const TMPFS_CHILD: &str = "CARDGATE_AUDIT_TEST_TMPFS_CHILD";

fn at(i: u64) -> OffsetDateTime {
    datetime!(2026-03-01 09:00:00 UTC) + time::Duration::milliseconds(i as i64)
}

fn note(i: u64) -> AuditEvent {
    AuditEvent::Note {
        holder: None,
        author: Some("crash-test".into()),
        text: format!("entry {i} {}", "padding ".repeat((i % 7) as usize)),
    }
}

fn this_test_binary() -> std::path::PathBuf {
    std::env::current_exe().expect("current_exe")
}

/// The child half: appends forever, printing each receipt only after `append` returned.
#[test]
#[ignore = "child half of sigkill_while_appending_loses_no_acknowledged_entry"]
fn sigkill_child_appends_forever() {
    let path = std::env::var_os(CHILD_LOG)
        .expect("run by sigkill_while_appending_loses_no_acknowledged_entry, not directly");
    let segmented = std::env::var_os(CHILD_SEGMENTS).is_some();
    let policy = if segmented {
        SMALL_SEGMENTS
    } else {
        SegmentPolicy::default()
    };
    let mut log = AuditLog::open_with(&path, policy).expect("open");
    // Each run goes on from where the trail's clock stopped (a day every 72 entries when
    // segmented), so days pass across the kills too.
    let start = log.head().map_or(0, |h| h.seq);
    let clock = |i: u64| {
        if segmented {
            datetime!(2026-03-01 00:00:00 UTC) + time::Duration::minutes(20 * i as i64)
        } else {
            at(i)
        }
    };
    if let Some(torn) = log.recovered_torn_tail() {
        let event = torn.to_event();
        log.append(clock(start), &event).expect("record repair");
    }
    let stdout = std::io::stdout();
    for i in start.. {
        let r = log.append(clock(i), &note(i)).expect("append");
        let mut out = stdout.lock();
        writeln!(out, "ACK {} {}", r.seq, r.hash).expect("stdout");
        out.flush().expect("flush");
    }
}

#[test]
fn sigkill_while_appending_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let (acknowledged, torn_repairs) = kill_and_restart(&path, false);

    // Every acknowledged entry is on the chain, with the hash it was acknowledged with.
    let report = verify_with_anchors(&path, &acknowledged).expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert!(report.verified_entries >= acknowledged.len() as u64);
    eprintln!(
        "{} entries acknowledged over 6 kills, {torn_repairs} torn writes repaired",
        acknowledged.len()
    );
}

/// Issue 16: the same with the trail sealed into small segments and old ones removed, so the
/// kills land while sealing and removing too. Every acknowledged entry that retention has not
/// removed (by its recorded rule) is on the chain with its hash, and the trail verifies.
#[test]
fn sigkill_while_sealing_and_removing_segments_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let (acknowledged, torn_repairs) = kill_and_restart(&path, true);
    let sealed = sealed_segments(&path).expect("list");
    let report = verify_with_anchors(&path, &acknowledged).expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);
    let first_kept = sealed.first().map_or(1, |(seq, _)| *seq);
    assert!(first_kept > 1, "retention removed nothing: {sealed:?}");
    let kept = acknowledged.iter().filter(|a| a.seq >= first_kept).count() as u64;
    assert!(report.verified_entries >= kept);
    assert_eq!(
        report.head.map(|h| h.seq),
        AuditLog::open(&path).expect("open").head().map(|h| h.seq)
    );
    eprintln!(
        "{} entries acknowledged over 6 kills, {torn_repairs} torn writes repaired, {} segments \
         kept from seq {first_kept}",
        acknowledged.len(),
        sealed.len()
    );
}

/// Runs the appending child six times, killing it after a varying number of
/// acknowledgements; returns every acknowledgement and how many torn writes `open` repaired.
fn kill_and_restart(path: &Path, segmented: bool) -> (Vec<AuditReceipt>, u32) {
    let mut acknowledged: Vec<AuditReceipt> = Vec::new();
    let mut torn_repairs = 0;
    let policy = if segmented {
        SMALL_SEGMENTS
    } else {
        SegmentPolicy::default()
    };
    for round in 0..6u64 {
        let mut command = Command::new(this_test_binary());
        command
            .args([
                "--exact",
                "sigkill_child_appends_forever",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_LOG, path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if segmented {
            command.env(CHILD_SEGMENTS, "1");
        }
        let mut child = command.spawn().expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a varying number of acknowledgements, while it is mid-stream.
        let kill_after = 20 + round * 37;
        let mut seen = 0;
        for line in lines.by_ref() {
            let line = line.expect("line");
            if let Some(ack) = parse_ack(&line) {
                acknowledged.push(ack);
                seen += 1;
                if seen == kill_after {
                    child.kill().expect("SIGKILL");
                    break;
                }
            }
        }
        // Acknowledgements already in the pipe when the kill landed count too.
        for line in lines {
            if let Some(ack) = parse_ack(&line.expect("line")) {
                acknowledged.push(ack);
            }
        }
        let status = child.wait().expect("wait");
        assert!(seen == kill_after, "child stopped early: {status:?}");

        // Restart: open repairs a torn line if the kill landed mid-write.
        let log = AuditLog::open_with(path, policy).expect("reopen after SIGKILL");
        if log.recovered_torn_tail().is_some() {
            torn_repairs += 1;
        }
        let head = log.head().expect("head");
        let last_ack = acknowledged.last().expect("acks");
        assert!(head.seq >= last_ack.seq, "{head:?} < {last_ack:?}");
    }
    (acknowledged, torn_repairs)
}

fn parse_ack(line: &str) -> Option<AuditReceipt> {
    let rest = line.strip_prefix("ACK ")?;
    let (seq, hash) = rest.split_once(' ')?;
    Some(AuditReceipt {
        seq: seq.parse().ok()?,
        hash: hash.trim().parse::<EntryHash>().ok()?,
    })
}

/// The child half: inside its own mount namespace, mounts a 16 KiB tmpfs and fills it.
#[test]
#[ignore = "child half of a_full_disk_refuses_appends_and_loses_nothing"]
fn tmpfs_child_fills_the_disk() {
    assert!(
        std::env::var_os(TMPFS_CHILD).is_some(),
        "run by a_full_disk_refuses_appends_and_loses_nothing (inside unshare), not directly"
    );
    let dir = tempfile::tempdir().expect("dir");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "cardgate-audit-test"])
        .arg(dir.path())
        .status()
        .expect("run mount");
    assert!(status.success(), "mount -t tmpfs failed: {status:?}");
    let outcome = std::panic::catch_unwind(|| fill_the_disk(dir.path()));
    let _ = Command::new("umount").arg(dir.path()).status();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn fill_the_disk(dir: &Path) {
    // A page of filler to free later.
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0u8; 4096]).expect("filler");
    let path = dir.join("audit.jsonl");
    let mut log = AuditLog::open(&path).expect("open");
    let mut receipts = Vec::new();
    let err = loop {
        let i = receipts.len() as u64;
        match log.append(at(i), &note(i)) {
            Ok(r) => receipts.push(r),
            Err(e) => break e,
        }
        assert!(receipts.len() < 10_000, "the 16 KiB tmpfs never filled");
    };
    assert!(err.is_disk_full(), "expected DiskFull, got {err}");
    assert!(err.to_string().contains("audit disk is full"), "{err}");
    assert!(receipts.len() > 5, "only {} entries fit", receipts.len());

    // Nothing acknowledged is lost, nothing half-written is left.
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!(report.head, receipts.last().copied());

    // Still full: still refused, and still DiskFull (not poisoned: the rollback worked).
    let again = log.append(at(9999), &note(9999)).expect_err("still full");
    assert!(again.is_disk_full(), "{again}");

    // Space freed: appends resume and continue the chain.
    std::fs::remove_file(&filler).expect("rm filler");
    let next = log
        .append(at(10_000), &note(10_000))
        .expect("append after freeing space");
    assert_eq!(next.seq, receipts.len() as u64 + 1);
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!(report.head, Some(next));
    println!("DISKFULL-SCENARIO-PASSED after {} entries", receipts.len());
}

#[test]
fn a_full_disk_refuses_appends_and_loses_nothing() {
    // A private mount namespace (and user namespace, so this also works without root); the
    // kernel drops the tmpfs when the child exits, even if it panics.
    let output = Command::new("unshare")
        .args(["--mount", "--map-root-user", "--"])
        .arg(this_test_binary())
        .args([
            "--exact",
            "tmpfs_child_fills_the_disk",
            "--ignored",
            "--nocapture",
        ])
        .env(TMPFS_CHILD, "1")
        .output()
        .expect("unshare (util-linux) is needed to mount a private tmpfs for this test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("DISKFULL-SCENARIO-PASSED"),
        "child failed ({:?}); it needs `unshare --mount --map-root-user` (user namespaces \
         enabled, or root)\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
}
