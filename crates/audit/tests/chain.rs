//! The log end to end on real files: append and verify, every kind of tampering detected at the
//! right line with the right kind, reopening, torn writes, anchors, and random edits.
#![allow(clippy::expect_used)] // Tests may expect: a panic is the failure report.

use std::fs;
use std::path::{Path, PathBuf};

use cardgate_audit::{
    AuditError, AuditEvent, AuditLog, AuditReceipt, BreakKind, CallerIdentity, EntryHash, MAX_LINE,
    TailItem, tail, verify, verify_with_anchors,
};
use cardgate_piv::{CardSerial, HolderUuid};
use proptest::prelude::*;
use time::OffsetDateTime;
use time::macros::datetime;

fn holder() -> HolderUuid {
    HolderUuid::new("123456789012").expect("uuid")
}

fn at(i: u64) -> OffsetDateTime {
    datetime!(2026-03-01 09:00:00 UTC) + time::Duration::seconds(i as i64)
}

/// A varied event for index `i`.
fn event(i: u64) -> AuditEvent {
    match i % 4 {
        0 => AuditEvent::CardInserted {
            reader: format!("Reader {i}"),
            card_serial: Some(CardSerial::new("0412345678").expect("serial")),
            holder: Some(holder()),
        },
        1 => AuditEvent::AuthorisationDecision {
            holder: Some(holder()),
            caller: CallerIdentity {
                uid: 1000,
                pid: 4000 + i as u32,
                executable: Some("/opt/pmr/bin/pmr".into()),
            },
            action: "eps.download".into(),
            ods: Some("FA123".into()),
            allowed: i % 3 == 0,
            reason_code: "no_session".into(),
            session_generation: Some(i),
            origin: None,
        },
        2 => AuditEvent::Note {
            holder: None,
            author: Some("test".into()),
            text: format!("note number {i}"),
        },
        _ => AuditEvent::CardRemoved {
            reader: format!("Reader {i}"),
            card_serial: None,
            holder: Some(holder()),
        },
    }
}

/// A new log with `n` entries; returns its path (inside `dir`) and the receipts.
fn write_log(dir: &Path, n: u64) -> (PathBuf, Vec<AuditReceipt>) {
    let path = dir.join("audit.jsonl");
    let mut log = AuditLog::open(&path).expect("open");
    let receipts = (0..n)
        .map(|i| log.append(at(i), &event(i)).expect("append"))
        .collect();
    (path, receipts)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).expect("write");
}

fn first_break(path: &Path) -> (u64, Option<u64>, BreakKind) {
    let report = verify(path).expect("verify");
    let b = report.first_break.expect("a break");
    (b.line, b.seq, b.kind)
}

#[test]
fn append_then_verify_round_trip() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, receipts) = write_log(dir.path(), 10);
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!(report.verified_entries, 10);
    assert_eq!(report.head, receipts.last().copied());

    // The file format: one canonical JSON object per line, chained by hash.
    let first: serde_json::Value = serde_json::from_str(&lines(&path)[0]).expect("json");
    let keys: Vec<&str> = first
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5);
    for k in ["seq", "at", "prev", "event", "hash"] {
        assert!(keys.contains(&k), "{keys:?}");
    }
    assert_eq!(first["seq"], 1);
    assert_eq!(first["at"], "2026-03-01T09:00:00Z");
    assert_eq!(first["prev"], EntryHash::GENESIS.to_string());
    assert_eq!(first["hash"], receipts[0].hash.to_string());
    let second: serde_json::Value = serde_json::from_str(&lines(&path)[1]).expect("json");
    assert_eq!(second["prev"], receipts[0].hash.to_string());
}

#[test]
fn tail_returns_the_last_entries_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, receipts) = write_log(dir.path(), 7);
    let items = tail(&path, 3).expect("tail");
    assert_eq!(items.len(), 3);
    for (item, i) in items.iter().zip(4u64..7) {
        match item {
            TailItem::Entry(entry) => {
                assert_eq!(entry.seq, i + 1);
                assert_eq!(entry.at, at(i));
                assert_eq!(entry.event, event(i));
                assert_eq!(entry.hash, receipts[i as usize].hash);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(tail(&path, 100).expect("tail").len(), 7);
}

#[test]
fn an_edited_byte_in_an_event_is_reported_at_its_line() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir.path(), 6);
    let mut l = lines(&path);
    assert!(l[2].contains("note number 2"));
    l[2] = l[2].replace("note number 2", "note numbex 2");
    write_lines(&path, &l);
    assert_eq!(first_break(&path), (3, Some(3), BreakKind::Edited));
}

#[test]
fn an_equivalent_but_rewritten_line_is_an_edit() {
    // Same JSON meaning, same hash input, other bytes: still not what the log wrote.
    let dir = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir.path(), 4);
    for (from, to) in [
        (r#""seq":2,"#, r#""seq":2, "#),
        (r#""at":"2026-03-01T09"#, r#""at":"2026\u002d03-01T09"#),
    ] {
        let mut l = lines(&path);
        let original = l[1].clone();
        l[1] = l[1].replacen(from, to, 1);
        assert_ne!(l[1], original);
        write_lines(&path, &l);
        assert_eq!(first_break(&path), (2, Some(2), BreakKind::Edited), "{to}");
        l[1] = original;
        write_lines(&path, &l);
        assert!(verify(&path).expect("verify").is_intact());
    }
}

#[test]
fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
    // Someone who edits an entry and fixes its own hash still breaks the link after it.
    let dir = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir.path(), 5);
    let other = tempfile::tempdir().expect("dir");
    // Build a different third entry that chains from the real second one: same seq, same
    // prev, another event.
    let (forged_path, _) = {
        let p = other.path().join("audit.jsonl");
        let original = lines(&path);
        write_lines(&p, &original[..2]);
        let mut log = AuditLog::open(&p).expect("open");
        log.append(at(2), &event(99)).expect("append");
        (p, ())
    };
    let mut l = lines(&path);
    l[2] = lines(&forged_path)[2].clone();
    write_lines(&path, &l);
    assert_eq!(first_break(&path), (4, Some(4), BreakKind::Edited));
}

#[test]
fn a_deleted_line_is_reported_as_missing() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir.path(), 6);
    let mut l = lines(&path);
    l.remove(2);
    write_lines(&path, &l);
    let report = verify(&path).expect("verify");
    let b = report.first_break.expect("break");
    assert_eq!(
        (b.line, b.seq, b.kind),
        (3, Some(4), BreakKind::DeletedOrMissing)
    );
    assert!(b.detail.contains("seq 3"), "{}", b.detail);
    assert_eq!(report.verified_entries, 2);
}

#[test]
fn a_deleted_first_line_is_reported() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir.path(), 4);
    let mut l = lines(&path);
    l.remove(0);
    write_lines(&path, &l);
    assert_eq!(
        first_break(&path),
        (1, Some(2), BreakKind::DeletedOrMissing)
    );
}

#[test]
fn swapped_lines_are_reported_as_reordered() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir.path(), 6);
    let mut l = lines(&path);
    l.swap(1, 2);
    write_lines(&path, &l);
    assert_eq!(first_break(&path), (2, Some(3), BreakKind::Reordered));

    // The last two swapped.
    let dir2 = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir2.path(), 6);
    let mut l = lines(&path);
    l.swap(4, 5);
    write_lines(&path, &l);
    assert_eq!(first_break(&path), (5, Some(6), BreakKind::Reordered));
}

#[test]
fn a_duplicated_line_is_reported() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir.path(), 6);
    let mut l = lines(&path);
    let copy = l[2].clone();
    l.insert(3, copy);
    write_lines(&path, &l);
    assert_eq!(first_break(&path), (4, Some(3), BreakKind::Duplicated));
}

#[test]
fn a_line_cut_mid_way_is_torn() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir.path(), 5);
    let bytes = fs::read(&path).expect("read");
    let last_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("newline")
        + 1;
    let cut = last_start + (bytes.len() - last_start) / 2;
    fs::write(&path, &bytes[..cut]).expect("write");
    let report = verify(&path).expect("verify");
    let b = report.first_break.expect("break");
    assert_eq!((b.line, b.seq, b.kind), (5, None, BreakKind::Torn));
    assert_eq!(report.verified_entries, 4);

    // Cut in the middle of the file (later lines glued on): malformed at that line.
    let dir2 = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir2.path(), 5);
    let mut l = lines(&path);
    let half = l[1].len() / 2;
    l[1].truncate(half);
    let glued = format!("{}{}", l[1], l[2]);
    l.splice(1..3, [glued]);
    write_lines(&path, &l);
    assert_eq!(first_break(&path).0, 2);
    assert_eq!(first_break(&path).2, BreakKind::Malformed);
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, receipts) = write_log(dir.path(), 3);
    let mut log = AuditLog::open(&path).expect("reopen");
    assert_eq!(log.head(), receipts.last().copied());
    assert!(log.recovered_torn_tail().is_none());
    let r = log.append(at(3), &event(3)).expect("append");
    assert_eq!(r.seq, 4);
    drop(log);
    let log = AuditLog::open(&path).expect("reopen");
    assert_eq!(log.head(), Some(r));
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!(report.verified_entries, 4);
}

#[test]
fn an_empty_log_opens_and_verifies() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).expect("open");
    assert_eq!(log.head(), None);
    let report = verify(&path).expect("verify");
    assert!(report.is_intact());
    assert_eq!(report.verified_entries, 0);
    assert!(tail(&path, 5).expect("tail").is_empty());
}

#[test]
fn a_torn_final_line_after_a_crash_is_set_aside_and_the_chain_continues() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, receipts) = write_log(dir.path(), 4);
    let before = fs::read(&path).expect("read");

    // Simulate a crash mid-write: half of what would have been entry 5.
    let next_dir = tempfile::tempdir().expect("dir");
    let (full, _) = write_log(next_dir.path(), 5);
    let fifth = lines(&full)[4].clone();
    let torn = &fifth.as_bytes()[..fifth.len() / 2];
    let mut crashed = before.clone();
    crashed.extend_from_slice(torn);
    fs::write(&path, &crashed).expect("write");
    assert_eq!(first_break(&path).2, BreakKind::Torn);
    let items = tail(&path, 2).expect("tail");
    assert!(
        matches!(items.last(), Some(TailItem::Unreadable { .. })),
        "{items:?}"
    );

    let mut log = AuditLog::open(&path).expect("open repairs the torn line");
    let recovered = log.recovered_torn_tail().expect("reported").clone();
    assert_eq!(recovered.offset, before.len() as u64);
    assert_eq!(recovered.length, torn.len() as u64);
    assert_eq!(
        fs::read(&path).expect("read"),
        before,
        "only the torn bytes went"
    );
    let sidecar = fs::read_to_string(&recovered.saved_to).expect("sidecar kept");
    let record: serde_json::Value = serde_json::from_str(sidecar.trim()).expect("json");
    assert_eq!(record["bytes_hex"], hex::encode(torn));
    assert_eq!(record["sha256"], recovered.sha256);
    assert_eq!(log.head(), receipts.last().copied());

    // The daemon records the repair on the chain; everything verifies.
    let r = log.append(at(10), &recovered.to_event()).expect("append");
    assert_eq!(r.seq, 5);
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!(report.verified_entries, 5);
}

#[test]
fn open_refuses_a_damaged_end() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir.path(), 4);
    let mut l = lines(&path);
    l[3] = l[3].replace("Reader 3", "Reader 8");
    write_lines(&path, &l);
    match AuditLog::open(&path) {
        Err(AuditError::Corrupt { at, .. }) => {
            assert_eq!((at.line, at.kind), (4, BreakKind::Edited));
        }
        other => panic!("{other:?}"),
    }

    // The last line deleted leaves a valid chain (only anchors can tell); the second-to-last
    // deleted breaks the link between the last two.
    let dir2 = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir2.path(), 4);
    let mut l = lines(&path);
    l.remove(2);
    write_lines(&path, &l);
    match AuditLog::open(&path) {
        Err(AuditError::Corrupt { at, .. }) => {
            assert_eq!((at.line, at.kind), (3, BreakKind::DeletedOrMissing));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn open_does_not_truncate_a_file_that_is_not_a_log() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("not-a-log");
    let junk = vec![b'x'; MAX_LINE + 10];
    fs::write(&path, &junk).expect("write");
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Corrupt { .. })
    ));
    assert_eq!(fs::read(&path).expect("read"), junk);
}

#[test]
fn anchors_catch_a_cut_end_and_a_rewrite() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, receipts) = write_log(dir.path(), 6);
    let anchor = receipts[5];
    assert!(
        verify_with_anchors(&path, &[receipts[2], anchor])
            .expect("verify")
            .is_intact()
    );

    // Cut the last two entries: the chain alone still verifies, the anchor does not.
    let mut l = lines(&path);
    l.truncate(4);
    write_lines(&path, &l);
    assert!(verify(&path).expect("verify").is_intact());
    let report = verify_with_anchors(&path, &[anchor]).expect("verify");
    let b = report.first_break.expect("break");
    assert_eq!((b.line, b.seq, b.kind), (5, Some(6), BreakKind::Truncated));

    // A complete rewrite with fresh hashes: the chain verifies, the anchor does not.
    fs::remove_file(&path).expect("rm");
    let mut log = AuditLog::open(&path).expect("open");
    for i in 0..6 {
        log.append(at(i), &event(i + 1)).expect("append");
    }
    assert!(verify(&path).expect("verify").is_intact());
    let b = verify_with_anchors(&path, &[receipts[2]])
        .expect("verify")
        .first_break
        .expect("break");
    assert_eq!(
        (b.line, b.seq, b.kind),
        (3, Some(3), BreakKind::AnchorMismatch)
    );
}

#[test]
fn times_are_written_in_utc() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).expect("open");
    let local = datetime!(2026-06-01 10:30:00 +01:00);
    log.append(local, &event(0)).expect("append");
    assert!(lines(&path)[0].contains(r#""at":"2026-06-01T09:30:00Z""#));
    match &tail(&path, 1).expect("tail")[0] {
        TailItem::Entry(e) => assert_eq!(e.at, local),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_oversized_entry_is_refused_without_touching_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir.path(), 2);
    let before = fs::read(&path).expect("read");
    let mut log = AuditLog::open(&path).expect("open");
    let huge = AuditEvent::Note {
        holder: None,
        author: None,
        text: "x".repeat(MAX_LINE),
    };
    assert!(matches!(
        log.append(at(5), &huge),
        Err(AuditError::EntryTooLarge { .. })
    ));
    assert_eq!(fs::read(&path).expect("read"), before);
    assert_eq!(log.append(at(5), &event(5)).expect("append").seq, 3);
}

#[test]
fn writing_to_a_device_with_no_space_is_disk_full_and_then_refused() {
    // /dev/full answers every write with ENOSPC; it cannot be truncated back, so the log also
    // shows that an unrecoverable failure refuses every later append.
    let mut log = AuditLog::open("/dev/full").expect("open /dev/full");
    let err = log.append(at(0), &event(0)).expect_err("no space");
    assert!(err.is_disk_full(), "{err}");
    assert!(err.to_string().contains("audit disk is full"), "{err}");
    assert!(matches!(
        log.append(at(1), &event(1)),
        Err(AuditError::Poisoned { .. })
    ));
}

#[test]
fn a_batch_is_the_same_chain_as_one_append_at_a_time() {
    let dir = tempfile::tempdir().expect("dir");
    let one_by_one = dir.path().join("single.jsonl");
    let mut single = AuditLog::open(&one_by_one).expect("open");
    let expected: Vec<AuditReceipt> = (0..7)
        .map(|i| single.append(at(i), &event(i)).expect("append"))
        .collect();

    let batched = dir.path().join("batched.jsonl");
    let mut log = AuditLog::open(&batched).expect("open");
    let events: Vec<AuditEvent> = (0..7).map(event).collect();
    let first: Vec<(OffsetDateTime, &AuditEvent)> =
        (0..3).map(|i| (at(i), &events[i as usize])).collect();
    let rest: Vec<(OffsetDateTime, &AuditEvent)> =
        (3..7).map(|i| (at(i), &events[i as usize])).collect();
    let mut receipts = log.append_batch(&first).expect("batch 1");
    receipts.extend(log.append_batch(&rest).expect("batch 2"));
    assert_eq!(receipts, expected);
    assert_eq!(log.head(), expected.last().copied());
    assert_eq!(
        fs::read(&batched).expect("read"),
        fs::read(&one_by_one).expect("read")
    );
    assert_eq!(log.append_batch(&[]).expect("empty batch"), Vec::new());
    drop(log);
    let mut reopened = AuditLog::open(&batched).expect("reopen");
    assert_eq!(reopened.append(at(8), &event(8)).expect("append").seq, 8);
}

#[test]
fn a_batch_with_one_oversized_entry_records_none_of_it() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, _) = write_log(dir.path(), 2);
    let before = fs::read(&path).expect("read");
    let mut log = AuditLog::open(&path).expect("open");
    let huge = AuditEvent::Note {
        holder: None,
        author: None,
        text: "x".repeat(MAX_LINE),
    };
    let ok = event(3);
    assert!(matches!(
        log.append_batch(&[(at(3), &ok), (at(4), &huge)]),
        Err(AuditError::EntryTooLarge { .. })
    ));
    assert_eq!(fs::read(&path).expect("read"), before);
    assert_eq!(log.append(at(5), &event(5)).expect("append").seq, 3);
}

/// The log bytes for a sequence of events (written through the real log).
fn log_bytes(events: &[AuditEvent]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).expect("open");
    for (i, e) in events.iter().enumerate() {
        log.append(at(i as u64), e).expect("append");
    }
    fs::read(&path).expect("read")
}

fn arb_event() -> impl Strategy<Value = AuditEvent> {
    (0u64..1000, "[a-zA-Z0-9 ]{0,24}").prop_map(|(i, text)| match i % 5 {
        4 => AuditEvent::Note {
            holder: Some(holder()),
            author: None,
            text,
        },
        _ => event(i),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any single changed byte anywhere is detected, and at the line it is in.
    #[test]
    fn any_single_byte_edit_is_detected_at_its_line(
        events in prop::collection::vec(arb_event(), 1..10),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
    ) {
        let bytes = log_bytes(&events);
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.jsonl");
        fs::write(&path, &bytes).expect("write");
        prop_assert!(verify(&path).expect("verify").is_intact());
        for (index, delta) in edits {
            let pos = index.index(bytes.len());
            let mut edited = bytes.clone();
            edited[pos] = edited[pos].wrapping_add(delta);
            fs::write(&path, &edited).expect("write");
            let report = verify(&path).expect("verify");
            let line = bytes[..pos].iter().filter(|b| **b == b'\n').count() as u64 + 1;
            let b = report.first_break;
            prop_assert!(b.is_some(), "edit at {} not detected", pos);
            prop_assert_eq!(b.map(|b| b.line), Some(line));
        }
    }

    /// Removing, duplicating or moving any one line is detected.
    #[test]
    fn any_line_removed_duplicated_or_moved_is_detected(
        events in prop::collection::vec(arb_event(), 2..10),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
        op in 0u8..3,
    ) {
        let text = String::from_utf8(log_bytes(&events)).expect("utf8");
        let mut l: Vec<String> = text.lines().map(str::to_owned).collect();
        let n = l.len();
        let (i, j) = (a.index(n), b.index(n));
        match op {
            // Removing the last line is the one change only an anchor can show.
            0 => { let i = i.min(n - 2); l.remove(i); }
            1 => { let copy = l[i].clone(); l.insert(j, copy); }
            _ => { prop_assume!(i != j); let moved = l.remove(i); l.insert(j, moved); }
        }
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.jsonl");
        write_lines(&path, &l);
        prop_assert!(!verify(&path).expect("verify").is_intact(), "op {} i {} j {}", op, i, j);
    }
}
