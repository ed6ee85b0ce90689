//! Benchmark: from a card's insertion to a fully read and checked identity, cardgate's card
//! layer (`CardInspector`: SELECT, CHUID, the 9A certificate, passcode status, certificate
//! checks with CRL) against OpenSC's `pkcs15-tool` reading the same card's certificates, in
//! one run, on the same provisioned card file, in the same lab (private pcscd + vpcd).
//!
//! The clock starts for every client when `Lab::insert` returns, i.e. when pcscd reports the
//! card present through `SCardGetStatusChange`. For cardgate it stops when the inspector's
//! report is ready (the monitor's insertion event, connect, one transaction, the checks); for
//! OpenSC when `pkcs15-tool` exits. APDUs are counted by the card itself
//! (`InsertedCard::apdu_count`). `pkcs15-tool --version` gives the floor of starting the
//! tool at all, so the ratio can be read without process start-up too.
//!
//! `cargo bench -p cardgate-e2e --bench identity_read` (root; its own lab namespace).
//! Without `--bench` (as `cargo test` runs it) it does a short smoke run of 3.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use cardgate_card::{CardInspector, Insertion, TrustConfig};
use cardgate_certs::{CheckPolicy, Crl, TrustAnchors, Verdict};
use cardgate_e2e::bench_table::{BenchRow, record};
use cardgate_e2e::tools::find_program;
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_piv::PasscodeGuard;
use cardgate_reader::{PcscBackend, ReaderBackend, ReaderEvent, ReaderEventKind};
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::provision::{CardSpec, TestCa, provision};

const RERUN: &str = "cargo bench -p cardgate-e2e --bench identity_read";
const SLOT: ReaderSlot = ReaderSlot::First;
const EVENT_DEADLINE: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    cardgate_lab::enter_lab_namespace();
    let full = std::env::args().any(|a| a == "--bench");
    let runs = if full { 25 } else { 3 };
    match run(runs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("identity_read: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One client's runs: times and card-side APDU counts.
#[derive(Default)]
struct Runs {
    times: Vec<Duration>,
    apdus: Vec<u64>,
}

impl Runs {
    fn median_time(&self) -> Duration {
        median(&self.times)
    }
    fn p90_time(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t.get((t.len() * 9).div_ceil(10).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    }
    fn median_apdus(&self) -> u64 {
        let mut a = self.apdus.clone();
        a.sort_unstable();
        a.get(a.len() / 2).copied().unwrap_or_default()
    }
}

fn median(times: &[Duration]) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    t.get(t.len() / 2).copied().unwrap_or_default()
}

fn run(runs: usize) -> Result<(), String> {
    let pkcs15_tool = find_program("pkcs15-tool").map_err(|e| format!("{e:?}"))?;
    let lab = Lab::start().map_err(|e| e.to_string())?;
    let ca = TestCa::generate("identity_read bench CA").map_err(|e| e.to_string())?;
    let provisioned = provision(&ca, &CardSpec::new("Bench Holder", "555000999777"))
        .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let card_path = dir.path().join("card.json");
    provisioned
        .card
        .save(&card_path)
        .map_err(|e| e.to_string())?;

    let anchors = TrustAnchors::from_der([ca.certificate_der()]).map_err(|e| e.to_string())?;
    let crl = Crl::from_der(&ca.crl_der(&[], 7).map_err(|e| e.to_string())?, &anchors)
        .map_err(|e| e.to_string())?;
    let trust = TrustConfig {
        anchors,
        crl: Some(crl),
        policy: CheckPolicy::default(),
    };

    let ours = cardgate_runs(&lab, &card_path, trust, runs)?;
    let read_one = opensc_runs(
        &lab,
        &card_path,
        &pkcs15_tool,
        &["--reader", "0", "--read-certificate", "01"],
        runs,
    )?;
    let list_all = opensc_runs(
        &lab,
        &card_path,
        &pkcs15_tool,
        &["--reader", "0", "--list-certificates"],
        runs,
    )?;
    let mut floor = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        // With no card in, it prints its version and exits 176 ("Card not present"): that
        // is the cost of starting the tool and OpenSC's context, which is the floor wanted.
        tool(&pkcs15_tool, &["--version"], dir.path(), false)?;
        floor.push(started.elapsed());
    }
    let floor = median(&floor);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("Insertion to a read identity, median of {runs} runs each, same card file, same lab");
    println!("clock: from Lab::insert returning (pcscd reports the card present) to the result");
    println!(
        "{:<58} {:>9} {:>9} {:>6} {:>9} {:>9}",
        "client", "median ms", "p90 ms", "APDUs", "time x", "APDU x"
    );
    let row = |label: &str, r: &Runs| {
        println!(
            "{:<58} {:>9.2} {:>9.2} {:>6} {:>9.3} {:>9.3}",
            label,
            ms(r.median_time()),
            ms(r.p90_time()),
            r.median_apdus(),
            ms(ours.median_time()) / ms(r.median_time()),
            ours.median_apdus() as f64 / r.median_apdus().max(1) as f64,
        );
    };
    row(
        "cardgate CardInspector (event, read, CRL+chain check)",
        &ours,
    );
    row("OpenSC pkcs15-tool --read-certificate 01", &read_one);
    row("OpenSC pkcs15-tool --list-certificates", &list_all);
    println!(
        "{:<58} {:>9.2}",
        "pkcs15-tool --version (process start floor)",
        ms(floor)
    );
    for (label, r) in [
        ("--read-certificate 01", &read_one),
        ("--list-certificates", &list_all),
    ] {
        let net = r.median_time().saturating_sub(floor);
        println!(
            "time ratio against OpenSC {label} minus the floor ({:.2} ms): {:.3}",
            ms(net),
            ms(ours.median_time()) / ms(net).max(f64::EPSILON)
        );
    }
    println!("(time x, APDU x: cardgate's median divided by that row's)");
    let mut rows = Vec::new();
    for (label, theirs) in [
        ("pkcs15-tool --read-certificate 01", &read_one),
        ("pkcs15-tool --list-certificates", &list_all),
    ] {
        rows.push(
            BenchRow::compare(
                "Insertion to checked identity, median ms",
                ms(ours.median_time()),
                format!("OpenSC {label}"),
                ms(theirs.median_time()),
                2,
            )
            .goal(
                "< 0.5x",
                ms(ours.median_time()) < 0.5 * ms(theirs.median_time()),
            ),
        );
        rows.push(
            BenchRow::compare(
                "Insertion to checked identity, APDUs",
                ours.median_apdus() as f64,
                format!("OpenSC {label}"),
                theirs.median_apdus() as f64,
                0,
            )
            .goal("fewer", ours.median_apdus() < theirs.median_apdus()),
        );
    }
    if let Some(path) = record("identity_read", &rows).map_err(|e| e.to_string())? {
        println!("rows recorded in {}", path.display());
    }
    println!("rerun: {RERUN}");
    Ok(())
}

/// cardgate's card layer as the daemon runs it: monitor events fed to the inspector, one
/// inspection per insertion.
fn cardgate_runs(
    lab: &Lab,
    card_path: &Path,
    trust: TrustConfig,
    runs: usize,
) -> Result<Runs, String> {
    let backend = Arc::new(PcscBackend::new());
    let (sender, events) = mpsc::channel();
    let monitor = backend
        .monitor(Box::new(sender))
        .map_err(|e| e.to_string())?;
    let guard = Arc::new(PasscodeGuard::in_memory().map_err(|e| e.to_string())?);
    let inspector = CardInspector::new(backend, guard, trust);
    let mut out = Runs::default();
    // One untimed warm-up, so the first figure is not the page cache's.
    for i in 0..=runs {
        let applet = PivApplet::open(card_path).map_err(|e| e.to_string())?;
        let inserted = lab
            .insert(SLOT, Box::new(applet))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let insertion = next_insertion(&inspector, &events)?;
        let report = inspector.inspect(&insertion).map_err(|e| e.to_string())?;
        let took = started.elapsed();
        if report.certificate.verdict() != Verdict::Usable {
            return Err(format!(
                "the bench card is not usable: {:?}",
                report.warnings
            ));
        }
        let apdus = inserted.apdu_count();
        if apdus != report.apdus {
            return Err(format!(
                "the card answered {apdus} APDUs, the report counts {}",
                report.apdus
            ));
        }
        inserted.remove().map_err(|e| e.to_string())?;
        wait_removed(&inspector, &events)?;
        if i > 0 {
            out.times.push(took);
            out.apdus.push(apdus);
        }
    }
    monitor.shutdown();
    Ok(out)
}

fn next_insertion(
    inspector: &CardInspector,
    events: &Receiver<ReaderEvent>,
) -> Result<Insertion, String> {
    loop {
        let event = events
            .recv_timeout(EVENT_DEADLINE)
            .map_err(|_| "no insertion event".to_owned())?;
        if let Some(insertion) = inspector.track(&event) {
            return Ok(insertion);
        }
    }
}

fn wait_removed(inspector: &CardInspector, events: &Receiver<ReaderEvent>) -> Result<(), String> {
    loop {
        let event = events
            .recv_timeout(EVENT_DEADLINE)
            .map_err(|_| "no removal event".to_owned())?;
        inspector.track(&event);
        if matches!(event.kind, ReaderEventKind::CardRemoved { .. }) {
            return Ok(());
        }
    }
}

/// OpenSC reading the same card file, a fresh `HOME` (no OpenSC cache) per run.
fn opensc_runs(
    lab: &Lab,
    card_path: &Path,
    program: &Path,
    args: &[&str],
    runs: usize,
) -> Result<Runs, String> {
    let mut out = Runs::default();
    for i in 0..=runs {
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        let applet = PivApplet::open(card_path).map_err(|e| e.to_string())?;
        let inserted = lab
            .insert(SLOT, Box::new(applet))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let stdout = tool(program, args, home.path(), true)?;
        let took = started.elapsed();
        if !stdout.contains("BEGIN CERTIFICATE") && !stdout.contains("X.509 Certificate") {
            return Err(format!(
                "pkcs15-tool {args:?} printed no certificate:\n{stdout}"
            ));
        }
        let apdus = inserted.apdu_count();
        inserted.remove().map_err(|e| e.to_string())?;
        lab.wait_until_empty(SLOT, EVENT_DEADLINE)
            .map_err(|e| e.to_string())?;
        if i > 0 {
            out.times.push(took);
            out.apdus.push(apdus);
        }
    }
    Ok(out)
}

/// Runs the tool to completion (no polling: `Command::output` waits on the child); with
/// `must_succeed`, a failed run is an error.
fn tool(program: &Path, args: &[&str], home: &Path, must_succeed: bool) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if must_succeed && !output.status.success() {
        return Err(format!(
            "{} {args:?} failed ({}):\n{}{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
