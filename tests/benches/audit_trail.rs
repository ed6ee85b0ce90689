//! The audit trail at estate scale (issue 16 item 2): `cardgate audit verify`'s walk in
//! entries per second over a trail of a million entries sealed into segments, against the
//! floor of reading the same bytes and hashing them once with SHA-256 (what no verifier can
//! beat); and start-up (`AuditLog::open`, the head recovered) on that trail against a trail
//! of a thousand entries, to show it does not grow with the trail.
//!
//! Rerun: `cargo bench -p cardgate-e2e --bench audit_trail` (part of `scripts/bench`).

use std::io::Read as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cardgate_audit::{AuditEvent, AuditLog, SegmentPolicy, trail_files, verify};
use cardgate_e2e::bench_table::{BenchRow, record};
use time::macros::datetime;

const RERUN: &str = "cargo bench -p cardgate-e2e --bench audit_trail";
const ENTRIES: u64 = 1_000_000;
const BATCH: u64 = 10_000;
/// The daemon's default segment size.
const POLICY: SegmentPolicy = SegmentPolicy {
    max_bytes: Some(64 * 1024 * 1024),
    daily: true,
    keep_days: None,
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("audit_trail bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A trail of `n` authorisation-sized entries, an hour's worth every 3,600.
fn write_trail(path: &std::path::Path, n: u64) -> Result<(), String> {
    let mut log = AuditLog::open_with(path, POLICY).map_err(|e| e.to_string())?;
    let start = datetime!(2026-03-01 00:00:00 UTC);
    let mut i = 0;
    while i < n {
        let events: Vec<(time::OffsetDateTime, AuditEvent)> = (i..(i + BATCH).min(n))
            .map(|k| {
                (
                    start + time::Duration::seconds(k as i64),
                    AuditEvent::Note {
                        holder: None,
                        author: Some("bench".into()),
                        text: format!("authorise download FA123 for entry {k}: allowed"),
                    },
                )
            })
            .collect();
        let refs: Vec<_> = events.iter().map(|(at, e)| (*at, e)).collect();
        log.append_batch(&refs).map_err(|e| e.to_string())?;
        i += BATCH;
    }
    Ok(())
}

/// The best of `runs` timings of `f`.
fn best(runs: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<Duration, String> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

fn run() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let big = dir.path().join("big").join("audit.jsonl");
    let small = dir.path().join("small").join("audit.jsonl");
    for p in [&big, &small] {
        std::fs::create_dir_all(p.parent().ok_or("no parent")?).map_err(|e| e.to_string())?;
    }
    write_trail(&big, ENTRIES)?;
    write_trail(&small, 1_000)?;
    let files = trail_files(&big).map_err(|e| e.to_string())?;

    let walk = best(3, || {
        let report = verify(&big).map_err(|e| e.to_string())?;
        if !report.is_intact() || report.verified_entries != ENTRIES {
            return Err(format!(
                "the trail did not verify: {:?}",
                report.first_break
            ));
        }
        Ok(())
    })?;
    let floor = best(3, || {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        for file in &files {
            let mut f = std::fs::File::open(file).map_err(|e| e.to_string())?;
            loop {
                let n = f.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                ctx.update(&buf[..n]);
            }
        }
        std::hint::black_box(ctx.finish());
        Ok(())
    })?;
    let open = |path: &std::path::Path| {
        best(20, || {
            let log = AuditLog::open_with(path, POLICY).map_err(|e| e.to_string())?;
            std::hint::black_box(log.head());
            Ok(())
        })
    };
    let (open_big, open_small) = (open(&big)?, open(&small)?);

    let per_second = |d: Duration| ENTRIES as f64 / d.as_secs_f64();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "audit_trail: {ENTRIES} entries in {} files; verify {:.0} entries/s, read+SHA-256 \
         floor {:.0} entries/s; open {:.0} µs (1,000 entries: {:.0} µs)",
        files.len(),
        per_second(walk),
        per_second(floor),
        us(open_big),
        us(open_small)
    );
    println!("  rerun: {RERUN}");
    let rows = [
        BenchRow::compare(
            "cardgate audit verify, entries per second (1M entries, 64 MiB segments)",
            per_second(walk),
            "reading the same files and hashing them once (SHA-256)",
            per_second(floor),
            0,
        )
        .goal(
            "at least 1,000,000 entries/s",
            per_second(walk) >= 1_000_000.0,
        ),
        BenchRow::compare(
            "Start-up (AuditLog::open, head recovered), µs, on a 1M-entry trail",
            us(open_big),
            "the same on a 1,000-entry trail",
            us(open_small),
            0,
        )
        .goal(
            "independent of the trail's length (within 2x)",
            us(open_big) <= 2.0 * us(open_small).max(1.0),
        ),
    ];
    record("audit_trail", &rows).map_err(|e| format!("bench table: {e}"))?;
    Ok(())
}
