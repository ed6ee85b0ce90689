//! Issue 16 item 2, on a real file system: the trail sealed into segments by size and by day
//! is one chain; a missing, renamed or edited segment is found and named with its file;
//! retention removes old segments only after recording it, and a trail that starts late
//! without that record is reported; every state a crash can leave between the steps of
//! sealing or removing opens, continues and verifies.
#![allow(clippy::expect_used)] // Tests may expect: a panic is the failure report.

use std::path::{Path, PathBuf};

use cardgate_audit::{
    AuditEvent, AuditLog, BreakKind, SegmentPolicy, TailItem, sealed_segments, tail, verify,
    verify_with_anchors,
};
use time::OffsetDateTime;
use time::macros::datetime;

/// Entry `i`, twenty minutes after the one before: 72 entries a day.
fn at(i: u64) -> OffsetDateTime {
    datetime!(2026-03-01 00:00:00 UTC) + time::Duration::minutes(20 * i as i64)
}

fn note(i: u64) -> AuditEvent {
    AuditEvent::Note {
        holder: None,
        author: Some("segments-test".into()),
        text: format!("entry {i}"),
    }
}

const BY_SIZE_AND_DAY: SegmentPolicy = SegmentPolicy {
    max_bytes: Some(4096),
    daily: true,
    keep_days: None,
};

/// A trail of `n` notes under `policy` in a fresh directory.
fn trail(n: u64, policy: SegmentPolicy) -> (tempfile::TempDir, PathBuf, AuditLog) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open_with(&path, policy).expect("open");
    for i in 0..n {
        log.append(at(i), &note(i)).expect("append");
    }
    (dir, path, log)
}

fn segments(path: &Path) -> Vec<(u64, PathBuf)> {
    sealed_segments(path).expect("list")
}

#[test]
fn sealed_by_size_and_by_day_the_trail_is_one_chain() {
    let (_dir, path, log) = trail(300, BY_SIZE_AND_DAY);
    let sealed = segments(&path);
    // 300 entries over five days, about 30 entries per 4 KiB: sealed by size within a day and
    // at every midnight.
    assert!(sealed.len() >= 8, "{sealed:?}");
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!(report.verified_entries, 300);
    assert_eq!(report.head, log.head());
    // Each segment holds one UTC day at most.
    for (_, file) in &sealed {
        let text = std::fs::read_to_string(file).expect("read");
        let days: std::collections::BTreeSet<&str> = text
            .lines()
            .map(|l| &l[l.find("\"at\":\"").expect("at") + 6..][..10])
            .collect();
        assert_eq!(days.len(), 1, "{} spans {days:?}", file.display());
    }
    // Reopened, the head comes back and the chain goes on.
    drop(log);
    let mut log = AuditLog::open_with(&path, BY_SIZE_AND_DAY).expect("reopen");
    assert_eq!(log.head(), report.head);
    log.append(at(300), &note(300))
        .expect("append after reopen");
    assert!(verify(&path).expect("verify").is_intact());
}

#[test]
fn a_missing_segment_is_found_in_the_file_after_it() {
    let (_dir, path, _log) = trail(300, BY_SIZE_AND_DAY);
    let sealed = segments(&path);
    std::fs::remove_file(&sealed[2].1).expect("remove");
    let report = verify(&path).expect("verify");
    let at = report.first_break.expect("a break");
    assert_eq!(at.kind, BreakKind::DeletedOrMissing, "{at}");
    assert_eq!(at.file.as_deref(), Some(sealed[3].1.as_path()), "{at}");
    assert_eq!(at.line, 1);
}

#[test]
fn segments_renamed_into_another_order_are_found() {
    let (_dir, path, _log) = trail(300, BY_SIZE_AND_DAY);
    let sealed = segments(&path);
    let (a, b) = (&sealed[1].1, &sealed[2].1);
    let swap = a.with_extension("swap");
    std::fs::rename(a, &swap).expect("rename");
    std::fs::rename(b, a).expect("rename");
    std::fs::rename(&swap, b).expect("rename");
    let at = verify(&path).expect("verify").first_break.expect("a break");
    assert_eq!(at.kind, BreakKind::Reordered, "{at}");
    assert_eq!(at.file.as_deref(), Some(a.as_path()), "{at}");
}

#[test]
fn an_edited_segment_is_found_with_its_file_and_line() {
    let (_dir, path, _log) = trail(300, BY_SIZE_AND_DAY);
    let sealed = segments(&path);
    let file = &sealed[4].1;
    let text = std::fs::read_to_string(file).expect("read");
    let edited = text.replacen("\"text\":\"entry ", "\"text\":\"entrY ", 2);
    let edited = edited.replacen("\"text\":\"entrY ", "\"text\":\"entry ", 1);
    std::fs::write(file, edited).expect("write");
    let at = verify(&path).expect("verify").first_break.expect("a break");
    assert_eq!(at.kind, BreakKind::Edited, "{at}");
    assert_eq!(at.file.as_deref(), Some(file.as_path()), "{at}");
    assert_eq!(at.line, 2, "{at}");
}

const KEEP_TWO_DAYS: SegmentPolicy = SegmentPolicy {
    max_bytes: None,
    daily: true,
    keep_days: Some(2),
};

#[test]
fn retention_records_the_removal_and_the_late_start_verifies() {
    // Seven days, sealed daily, two days kept.
    let (_dir, path, log) = trail(7 * 72, KEEP_TWO_DAYS);
    let sealed = segments(&path);
    assert!(sealed.len() <= 3, "{sealed:?}");
    let first_kept = sealed[0].0;
    assert!(first_kept > 1);
    let text = std::fs::read_to_string(&path).expect("read");
    let all: String = sealed
        .iter()
        .map(|(_, f)| std::fs::read_to_string(f).expect("read"))
        .collect::<String>()
        + &text;
    assert!(
        all.contains("\"kind\":\"segments_removed\""),
        "no removal on the chain"
    );
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!(report.head, log.head());

    // One more segment deleted by hand: the start is no longer explained.
    std::fs::remove_file(&sealed[0].1).expect("remove");
    let at = verify(&path).expect("verify").first_break.expect("a break");
    assert_eq!(at.kind, BreakKind::DeletedOrMissing, "{at}");
    assert!(at.detail.contains("no removal"), "{at}");
}

#[test]
fn a_trail_whose_beginning_was_deleted_is_reported_without_a_removal_record() {
    let (_dir, path, _log) = trail(300, BY_SIZE_AND_DAY);
    let sealed = segments(&path);
    std::fs::remove_file(&sealed[0].1).expect("remove");
    let at = verify(&path).expect("verify").first_break.expect("a break");
    assert_eq!(at.kind, BreakKind::DeletedOrMissing, "{at}");
    assert_eq!(at.file.as_deref(), Some(sealed[1].1.as_path()), "{at}");
}

/// The states a crash can leave while sealing: the active file renamed and no new one, and a
/// new one still empty. Each opens with the head of the sealed segment, goes on, verifies.
#[test]
fn a_crash_between_the_steps_of_sealing_loses_nothing() {
    for leave_empty_active in [false, true] {
        let (_dir, path, log) = trail(100, SegmentPolicy::default());
        let head = log.head();
        drop(log);
        let sealed = path.with_file_name("audit.jsonl.00000000000000000001");
        std::fs::rename(&path, &sealed).expect("rename");
        if leave_empty_active {
            std::fs::write(&path, b"").expect("create");
        }
        let mut log = AuditLog::open_with(&path, BY_SIZE_AND_DAY).expect("open after the crash");
        assert_eq!(log.head(), head);
        let next = log.append(at(100), &note(100)).expect("append");
        assert_eq!(next.seq, 101);
        let report = verify(&path).expect("verify");
        assert!(report.is_intact(), "{:?}", report.first_break);
        assert_eq!(report.verified_entries, 101);
    }
}

/// The state a crash can leave while removing: the removal recorded, some of the files still
/// there. The trail verifies, and the next removal takes the rest.
#[test]
fn a_crash_between_recording_a_removal_and_the_files_going_loses_nothing() {
    let (_dir, path, log) = trail(
        4 * 72,
        SegmentPolicy {
            keep_days: None,
            ..KEEP_TWO_DAYS
        },
    );
    drop(log);
    let sealed = segments(&path);
    assert_eq!(sealed.len(), 3, "{sealed:?}");
    // Record the removal of the first two segments as retention would, keep the files, then
    // "crash" after removing only the first.
    let last_of_second = sealed[2].0 - 1;
    let second = std::fs::read_to_string(&sealed[1].1).expect("read");
    let last_line = second.lines().last().expect("line");
    let hash = &last_line[last_line.find("\"hash\":\"").expect("hash") + 8..][..64];
    let mut log = AuditLog::open(&path).expect("open");
    let anchor = log
        .append(
            at(4 * 72),
            &AuditEvent::SegmentsRemoved {
                through_seq: last_of_second,
                through_hash: hash.to_owned(),
                segments: 2,
                keep_days: 2,
            },
        )
        .expect("record");
    drop(log);
    std::fs::remove_file(&sealed[0].1).expect("remove");
    let report = verify_with_anchors(&path, &[anchor]).expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);

    // Back under the retention policy: the next seal removes what is older than two days.
    let mut log = AuditLog::open_with(&path, KEEP_TWO_DAYS).expect("open");
    for i in 4 * 72 + 1..6 * 72 {
        log.append(at(i), &note(i)).expect("append");
    }
    let left = segments(&path);
    assert!(left.iter().all(|(s, _)| *s > last_of_second), "{left:?}");
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);
}

#[test]
fn the_tail_reaches_into_the_sealed_segments() {
    let (_dir, path, _log) = trail(300, BY_SIZE_AND_DAY);
    let items = tail(&path, 100).expect("tail");
    let seqs: Vec<u64> = items
        .iter()
        .map(|item| match item {
            TailItem::Entry(entry) => entry.seq,
            other => panic!("not an entry: {other:?}"),
        })
        .collect();
    assert_eq!(seqs, (201..=300).collect::<Vec<u64>>());
}

/// Reopening with one, two or three entries in a freshly sealed trail's active file: the first
/// of them must link to the newest segment whichever of the two lines `open` reads it among.
#[test]
fn a_fresh_active_file_of_any_length_reopens() {
    for extra in 1..=3u64 {
        let policy = SegmentPolicy {
            daily: true,
            ..SegmentPolicy::default()
        };
        // 72 entries fill day one; `extra` more start day two in a fresh active file.
        let (_dir, path, log) = trail(72 + extra, policy);
        assert_eq!(segments(&path).len(), 1);
        let head = log.head();
        drop(log);
        let reopened = AuditLog::open_with(&path, policy).expect("reopen");
        assert_eq!(
            reopened.head(),
            head,
            "with {extra} entries in the active file"
        );
    }
}
