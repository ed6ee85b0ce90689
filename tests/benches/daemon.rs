//! Benchmark (issue 5): the daemon over D-Bus, each figure against its reference in the same
//! run. `cardgated::run` serves on a private `dbus-daemon`, watching the lab's pcscd with a
//! virtual PIV card in the vpcd reader, logged in at an in-process spine-sim.
//!
//! 1. Authorise: sequential `Authorise("download", ODS)` calls against
//!    `org.freedesktop.DBus.Peer.Ping` to the daemon's unique name on the same connection
//!    (interleaved call by call): median, p99 and the ratio; then throughput with 1, 10 and
//!    100 concurrent clients (each its own connection, a bounded number of calls in all).
//!    Every decision is appended to the audit trail and `fdatasync`ed before the answer, so
//!    a 400-byte append with `fdatasync` next to the audit trail is timed in the same loop:
//!    with Ping, the floor of an audited decision on this disk. `Status` (no audit) is timed
//!    too.
//! 2. Removal: a plain PC/SC client thread blocked in `SCardGetStatusChange` timestamps the
//!    reader going EMPTY, a D-Bus listener timestamps `SessionEnded`; the difference is the
//!    agent's own cost (pcscd's 50-400 ms vpcd polling is common to both, LAB.md).
//! 3. Idle: CPU (sum of `/proc/self/task/*/schedstat` run time) and voluntary context
//!    switches (sum over `/proc/self/task/*/status`) of this process over an idle window
//!    before the daemon starts (baseline) and with the daemon running, a card in and logged
//!    in; pcscd's own voluntary switches over the same window. The lab's virtual card
//!    threads (`vpcd-card-*`) run in this process and answer pcscd's polling, so they are
//!    counted apart: the daemon's extra wake-ups are the other threads' switches above the
//!    baseline's. Resident memory (VmRSS, VmHWM) of the process with the daemon running.
//! 4. The daemon alone: this binary re-executed as nothing but the daemon
//!    (`cardgate_e2e::daemon_process`: `cardgated::run` on pcscd, as `cardgated` runs it) in a
//!    process of its own, so its
//!    resident memory and wake-ups are its own: with the lab's two readers empty, one card
//!    in and logged in, and a card in each reader; pcscd's wake-ups in the same windows are
//!    the reference. (The lab has two readers: one vpcd entry per pcscd, LAB.md.)
//! 5. The daemon alone again on a pcscd started with no reader configured (a workstation
//!    whose reader is unplugged): memory and wake-ups with nothing to watch.
//! 6. One and four readers: the lab's pcscd cannot give them (one vpcd entry is two readers;
//!    a second entry lists four but hangs every client once cards are in, LAB.md), so the
//!    daemon alone watches 1 and 4 empty in-process virtual readers instead: its own memory
//!    and wake-ups per reader, with no pcscd in the picture.
//!
//! `cargo bench -p cardgate-e2e --bench daemon` (root; its own lab namespace). Without
//! `--bench` (as clippy's builds and `cargo test --benches` run it) it does a short smoke run.
#![allow(clippy::unwrap_used)]

use std::ffi::CString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, DISPENSER, DemoWorld, PHARMACIST, PrivateBus};
use cardgate_e2e::bench_table::{BenchRow, record};
use cardgate_e2e::daemon_process::DaemonProcess;
use cardgate_ipc::AgentProxy;
use cardgate_lab::{Lab, LabOptions, ReaderSlot};
use cardgate_reader::PcscBackend;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::CardFile;
use futures_lite::StreamExt as _;
use zbus::proxy::CacheProperties;

/// How to run this again.
const RERUN: &str = "cargo bench -p cardgate-e2e --bench daemon";
/// The reader the card goes into.
const SLOT: ReaderSlot = ReaderSlot::First;
/// The role profile selected before authorising.
const ROLE: &str = "RP-PHARM-FA123";
/// Goal: Authorise median at most this many times Peer.Ping's.
const RATIO_GOAL: f64 = 1.5;
/// Goal: SessionEnded at most this much after the plain PC/SC client sees the removal.
const REMOVAL_GOAL: Duration = Duration::from_millis(10);

/// Goal: no wake-ups beyond pcscd's own; below this many extra per second counts as noise.
const IDLE_GOAL_PER_S: f64 = 0.5;

/// Sizes of one run: full (`--bench`) or smoke.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Sequential calls of each kind.
    calls: usize,
    /// Removal rounds.
    rounds: usize,
    /// Idle sampling window.
    idle: Duration,
}

/// Enters the lab namespace and runs the full benchmark (`--bench`) or a smoke run.
fn main() -> ExitCode {
    if let Some(code) = cardgate_e2e::daemon_process::run_if_child() {
        return code;
    }
    cardgate_lab::enter_lab_namespace();
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full {
        Plan {
            calls: 2000,
            rounds: 10,
            idle: Duration::from_secs(5),
        }
    } else {
        Plan {
            calls: 50,
            rounds: 2,
            idle: Duration::from_millis(500),
        }
    };
    match run(plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("daemon bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Any error as text.
type BenchResult<T> = Result<T, String>;

/// Formats an error with context.
fn ctx<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// Starts the lab, runs the benchmark, prints pcscd's log on failure.
fn run(plan: Plan) -> BenchResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ctx("runtime"))?;
    let mut lab = Lab::start().map_err(ctx("starting the lab"))?;
    let result = runtime.block_on(bench(&lab, plan));
    if result.is_err() {
        eprintln!("---- pcscd log ----\n{}", lab.pcscd_log());
    }
    let _ = lab.kill_pcscd();
    drop(lab);
    let mut rows = result?;

    // 5. The daemon alone with no reader at all: pcscd started with none configured.
    let mut empty = Lab::start_with(LabOptions {
        no_readers: true,
        ..LabOptions::default()
    })
    .map_err(ctx("starting the lab with no readers"))?;
    let sample = runtime.block_on(alone_with_empty_readers(
        EmptyReaders::PcscdWithNone(empty.pcscd_pid()),
        "0 readers",
        plan.idle,
    ));
    let _ = empty.kill_pcscd();
    let sample = sample?;
    print_alone(std::slice::from_ref(&sample));
    rows.extend(alone_rows(std::slice::from_ref(&sample)));
    // 6. One and four readers: the lab's pcscd gives two (a second vpcd entry hangs every
    //    client once cards are in), so the daemon alone watches in-process virtual readers,
    //    empty: what the daemon itself costs per reader, with no pcscd beside it.
    let mut virtual_samples = Vec::new();
    for (readers, label) in [(1, "1 virtual reader"), (4, "4 virtual readers")] {
        virtual_samples.push(runtime.block_on(alone_with_empty_readers(
            EmptyReaders::Virtual(readers),
            label,
            plan.idle,
        ))?);
    }
    print_alone(&virtual_samples);
    for a in &virtual_samples {
        rows.push(BenchRow {
            measure: format!("Daemon alone, {}: resident memory MiB", a.cards),
            figure: format!("{:.1}", a.rss_mib),
            reference: "0 readers on pcscd, above".into(),
            reference_figure: format!("{:.1}", sample.rss_mib),
            ratio: Some(a.rss_mib / sample.rss_mib.max(1e-9)),
            ..BenchRow::default()
        });
        rows.push(BenchRow {
            measure: format!("Daemon alone, {}: idle wake-ups per s", a.cards),
            figure: format!("{:.1}", a.daemon_per_s),
            reference: "no pcscd: in-process readers".into(),
            goal: "none".into(),
            verdict: if a.daemon_per_s < IDLE_GOAL_PER_S {
                "met"
            } else {
                "not met"
            }
            .into(),
            ..BenchRow::default()
        });
    }
    drop(runtime);
    if let Some(path) = record("daemon", &rows).map_err(ctx("recording rows"))? {
        println!("rows recorded in {}", path.display());
    }
    println!("\nrerun: {RERUN}");
    Ok(())
}

/// Where the daemon alone finds its readers for a sample with every reader empty.
enum EmptyReaders {
    /// The lab's pcscd (its pid, for its wake-ups), started with no reader configured.
    PcscdWithNone(Option<u32>),
    /// This many in-process virtual readers, no pcscd.
    Virtual(usize),
}

/// The daemon alone, as its own process, idle with every reader empty: memory and wake-ups
/// with nothing to watch (no reader on pcscd) or per reader (in-process readers).
async fn alone_with_empty_readers(
    readers: EmptyReaders,
    label: &'static str,
    window: Duration,
) -> BenchResult<AloneSample> {
    let dir = tempfile::tempdir().map_err(ctx("tempdir"))?;
    let world = DemoWorld::start(dir.path())
        .await
        .map_err(ctx("demo world"))?;
    let bus = PrivateBus::start().map_err(ctx("private bus"))?;
    let address = bus.address().to_owned();
    let (child, expected, pcscd) = match readers {
        EmptyReaders::PcscdWithNone(pcscd) => {
            (DaemonProcess::spawn(&world, &address, None), 0, pcscd)
        }
        EmptyReaders::Virtual(n) => (
            DaemonProcess::spawn_on_virtual_readers(&world, &address, n),
            n,
            None,
        ),
    };
    let child = child.map_err(ctx("the daemon alone"))?;
    let (connection, agent) = client(&address).await?;
    wait_for_name(&connection).await?;
    wait_for("the daemon to list its readers", || {
        let agent = agent.clone();
        async move { agent.readers().await.is_ok_and(|r| r.len() == expected) }
    })
    .await?;
    let sample = idle_window(child.pid(), pcscd, window, label).await;
    tokio::task::spawn_blocking(move || child.stop())
        .await
        .map_err(ctx("waiting"))?
        .map_err(ctx("the daemon alone"))?;
    drop(bus);
    Ok(sample)
}

/// Waits until the daemon owns its bus name.
async fn wait_for_name(connection: &zbus::Connection) -> BenchResult<()> {
    let dbus = zbus::fdo::DBusProxy::new(connection)
        .await
        .map_err(ctx("bus proxy"))?;
    wait_for("the daemon alone to own its name", || {
        let dbus = dbus.clone();
        async move {
            dbus.name_has_owner(cardgate_ipc::BUS_NAME.try_into().unwrap())
                .await
                .unwrap_or(false)
        }
    })
    .await
}

/// One idle window of the daemon process `pid`, with pcscd's wake-ups beside it.
async fn idle_window(
    pid: u32,
    pcscd: Option<u32>,
    window: Duration,
    cards: &'static str,
) -> AloneSample {
    // Let the last event's work settle before the window opens.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = pid.to_string();
    let pcscd = pcscd.map(|p| p.to_string());
    let (cpu_before, before) = threads_of(&pid);
    let pcscd_before = pcscd.as_deref().map(threads_of).unwrap_or_default();
    tokio::time::sleep(window).await;
    let (cpu_after, after) = threads_of(&pid);
    let pcscd_after = pcscd.as_deref().map(threads_of).unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let secs = window.as_secs_f64();
    AloneSample {
        cards,
        rss_mib: status_field(&status, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
        daemon_per_s: after.saturating_sub(before) as f64 / secs,
        pcscd_per_s: pcscd_after.1.saturating_sub(pcscd_before.1) as f64 / secs,
        cpu_ms: cpu_after.saturating_sub(cpu_before) as f64 / 1e6,
    }
}

/// One printed line of the detailed table.
fn row(what: &str, figure: String, goal: &str, verdict: &str) {
    println!("{what:<52} {figure:>30} {goal:>22} {verdict:>8}");
}

/// Prints the daemon-alone samples' rows.
fn print_alone(alone: &[AloneSample]) {
    let met = |ok: bool| if ok { "met" } else { "not met" };
    for a in alone {
        row(
            &format!("alone, {}: RSS MiB / CPU ms", a.cards),
            format!("{:.1} / {:.2}", a.rss_mib, a.cpu_ms),
            "(reported)",
            "",
        );
        row(
            &format!("alone, {}: wake-ups/s daemon / pcscd", a.cards),
            format!("{:.1} / {:.1}", a.daemon_per_s, a.pcscd_per_s),
            &format!("< {IDLE_GOAL_PER_S}/s"),
            met(a.daemon_per_s < IDLE_GOAL_PER_S),
        );
    }
}

/// The one table's rows for the daemon-alone samples.
fn alone_rows(alone: &[AloneSample]) -> Vec<BenchRow> {
    let mut rows = Vec::new();
    for a in alone {
        rows.push(BenchRow {
            measure: format!("Daemon alone, {}: resident memory MiB", a.cards),
            figure: format!("{:.1}", a.rss_mib),
            ..BenchRow::default()
        });
        rows.push(
            BenchRow::compare(
                format!("Daemon alone, {}: idle wake-ups per s", a.cards),
                a.daemon_per_s,
                "pcscd's own, same window",
                a.pcscd_per_s,
                1,
            )
            .goal("none beyond pcscd's", a.daemon_per_s < IDLE_GOAL_PER_S),
        );
    }
    rows
}

/// The value at quantile `q` (0..=1) of sorted `values`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize)
        .saturating_sub(1)
        .min(sorted.len() - 1);
    sorted[index]
}

/// Microseconds.
fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Milliseconds of a signed difference in seconds.
fn signed_ms(seconds: f64) -> f64 {
    seconds * 1000.0
}

/// Sum over this process' threads of (run time in ns, voluntary context switches).
fn own_threads() -> (u64, u64) {
    threads_of("self")
}

/// Sum over `pid`'s threads of (run time in ns from schedstat, voluntary context switches).
fn threads_of(pid: &str) -> (u64, u64) {
    let mut run_ns = 0;
    let mut switches = 0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        let path = task.path();
        if let Ok(text) = std::fs::read_to_string(path.join("schedstat")) {
            run_ns += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Ok(text) = std::fs::read_to_string(path.join("status")) {
            switches += status_field(&text, "voluntary_ctxt_switches:").unwrap_or(0);
        }
    }
    (run_ns, switches)
}

/// A numeric field of a `/proc/*/status` text (the first number after `name`).
fn status_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l[name.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Voluntary context switches of this process' threads, by thread name (`comm`).
fn switches_by_thread() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm"))
            .map(|n| n.trim().to_owned())
            .unwrap_or_default();
        let switches = std::fs::read_to_string(path.join("status"))
            .ok()
            .and_then(|t| status_field(&t, "voluntary_ctxt_switches:"))
            .unwrap_or(0);
        *by_name.entry(name).or_insert(0) += switches;
    }
    by_name
}

/// CPU and wake-ups of this process and of pcscd over one idle window.
#[derive(Debug, Clone)]
struct Idle {
    /// This process' CPU time, ms.
    cpu_ms: f64,
    /// This process' voluntary context switches.
    switches: u64,
    /// pcscd's voluntary context switches.
    pcscd_switches: u64,
    /// This process' voluntary context switches by thread name (those that switched).
    by_thread: Vec<(String, u64)>,
}

/// Sleeps through `window` and samples what this process and pcscd did meanwhile.
async fn idle_sample(pcscd: Option<u32>, window: Duration) -> Idle {
    let pcscd = pcscd.map(|p| p.to_string());
    let threads_before = switches_by_thread();
    let before = own_threads();
    let pcscd_before = pcscd.as_deref().map(threads_of).unwrap_or_default();
    tokio::time::sleep(window).await;
    let after = own_threads();
    let by_thread = switches_by_thread()
        .into_iter()
        .map(|(name, n)| {
            let was = threads_before.get(&name).copied().unwrap_or(0);
            (name, n.saturating_sub(was))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let pcscd_after = pcscd.as_deref().map(threads_of).unwrap_or_default();
    Idle {
        cpu_ms: after.0.saturating_sub(before.0) as f64 / 1e6,
        switches: after.1.saturating_sub(before.1),
        pcscd_switches: pcscd_after.1.saturating_sub(pcscd_before.1),
        by_thread,
    }
}

/// Waits up to 10 s for `probe` to hold.
async fn wait_for<F, Fut>(what: &str, mut probe: F) -> BenchResult<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if probe().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("timed out waiting for {what}"))
}

/// A new connection to `address` and an agent proxy on it.
async fn client(address: &str) -> BenchResult<(zbus::Connection, AgentProxy<'static>)> {
    let connection = zbus::connection::Builder::address(address)
        .map_err(ctx("bus address"))?
        .build()
        .await
        .map_err(ctx("connecting"))?;
    let agent = AgentProxy::builder(&connection)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(ctx("agent proxy"))?;
    Ok((connection, agent))
}

/// One `Peer.Ping` to `unique`.
async fn ping(connection: &zbus::Connection, unique: &str) -> BenchResult<()> {
    connection
        .call_method(
            Some(unique),
            cardgate_ipc::OBJECT_PATH,
            Some("org.freedesktop.DBus.Peer"),
            "Ping",
            &(),
        )
        .await
        .map(|_| ())
        .map_err(ctx("Peer.Ping"))
}

/// One `Authorise("download", ODS)` that must be allowed.
async fn authorise(agent: &AgentProxy<'_>) -> BenchResult<()> {
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(ctx("Authorise"))?;
    if answer.allowed {
        Ok(())
    } else {
        Err(format!("Authorise refused: {answer:?}"))
    }
}

/// Inserts the card, waits until the daemon has read it, logs in and selects [`ROLE`].
async fn card_in_and_log_in(
    lab: &Lab,
    card: &CardFile,
    agent: &AgentProxy<'_>,
) -> BenchResult<cardgate_vcard::vpcd::InsertedCard> {
    let inserted = lab
        .insert(SLOT, Box::new(PivApplet::new(card.clone())))
        .map_err(ctx("inserting the card"))?;
    wait_for("the card to be read", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
    })
    .await?;
    agent
        .login(DEMO_PASSCODE, false)
        .await
        .map_err(ctx("Login"))?;
    agent
        .select_role_profile(ROLE)
        .await
        .map_err(ctx("SelectRoleProfile"))?;
    Ok(inserted)
}

/// Throughput of `total` calls of one kind spread over `clients` connections.
async fn throughput(
    address: &str,
    unique: &str,
    clients: usize,
    total: usize,
    use_ping: bool,
) -> BenchResult<f64> {
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(client(address).await?);
    }
    let each = total / clients;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (connection, agent) in connections {
        let unique = unique.to_owned();
        tasks.push(tokio::spawn(async move {
            for _ in 0..each {
                if use_ping {
                    ping(&connection, &unique).await?;
                } else {
                    authorise(&agent).await?;
                }
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(ctx("client task"))??;
    }
    Ok((each * clients) as f64 / started.elapsed().as_secs_f64())
}

/// The floor of an audited decision on this disk: 400-byte appends, each followed by
/// `fdatasync`, to a file next to the audit trail.
struct FsyncFloor {
    /// The appended file.
    file: std::fs::File,
}

impl FsyncFloor {
    /// Creates (or opens) the file at `path` for appending.
    fn open(path: &std::path::Path) -> BenchResult<FsyncFloor> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(|file| FsyncFloor { file })
            .map_err(ctx("fsync floor file"))
    }

    /// One timed append + `fdatasync`.
    fn append(&mut self) -> BenchResult<Duration> {
        use std::io::Write as _;
        let started = Instant::now();
        self.file
            .write_all(&[b'x'; 400])
            .map_err(ctx("fsync floor write"))?;
        self.file.sync_data().map_err(ctx("fsync floor sync"))?;
        Ok(started.elapsed())
    }
}

/// A plain PC/SC client waiting for `SLOT` to go empty; `ready` is sent once it is watching.
fn pcsc_watch_removal(ready: std::sync::mpsc::SyncSender<()>) -> BenchResult<Instant> {
    let context = pcsc::Context::establish(pcsc::Scope::User).map_err(ctx("establish"))?;
    let name = CString::new(SLOT.to_string()).map_err(ctx("reader name"))?;
    let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
    context
        .get_status_change(Duration::ZERO, &mut states)
        .map_err(ctx("SCardGetStatusChange"))?;
    states[0].sync_current_state();
    let _ = ready.send(());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if states[0].current_state().contains(pcsc::State::EMPTY) {
            return Err("the reader was already empty".into());
        }
        match context.get_status_change(Duration::from_secs(10), &mut states) {
            Ok(()) => {}
            Err(pcsc::Error::Timeout) => {}
            Err(e) => return Err(format!("SCardGetStatusChange: {e}")),
        }
        if states[0].event_state().contains(pcsc::State::EMPTY) {
            return Ok(Instant::now());
        }
        states[0].sync_current_state();
        if Instant::now() > deadline {
            return Err("the PC/SC client never saw the removal".into());
        }
    }
}

/// Starts the world, the bus and the daemon; runs the three parts; prints the table.
/// One idle window of the daemon alone.
struct AloneSample {
    /// What was in the readers.
    cards: &'static str,
    /// The daemon's resident memory at the end of the window, MiB.
    rss_mib: f64,
    /// The daemon's voluntary context switches per second over the window.
    daemon_per_s: f64,
    /// pcscd's over the same window.
    pcscd_per_s: f64,
    /// The daemon's CPU time over the window, ms.
    cpu_ms: f64,
}

/// Runs this binary again as the daemon alone ([`daemon_child`]) on `address` and samples it
/// idle with no card, one card logged in, and a card in each reader.
async fn alone(
    lab: &Lab,
    world: &DemoWorld,
    address: &str,
    pcscd: Option<u32>,
    window: Duration,
) -> BenchResult<Vec<AloneSample>> {
    let child = DaemonProcess::spawn(world, address, None).map_err(ctx("the daemon alone"))?;
    let (_connection, agent) = client(address).await?;
    wait_for_name(&_connection).await?;
    let sample = |cards: &'static str| idle_window(child.pid(), pcscd, window, cards);
    let mut samples = vec![sample("2 readers, no card").await];
    let pharmacist = world.card(PHARMACIST).map_err(ctx("card"))?;
    let first = card_in_and_log_in(lab, &pharmacist, &agent).await?;
    samples.push(sample("2 readers, 1 card, logged in").await);
    let dispenser = world.card(DISPENSER).map_err(ctx("card"))?;
    let second = lab
        .insert(ReaderSlot::Second, Box::new(PivApplet::new(dispenser)))
        .map_err(ctx("inserting the second card"))?;
    wait_for("the second card to be read", || {
        let agent = agent.clone();
        async move {
            agent
                .readers()
                .await
                .map(|r| r.iter().filter(|r| r.card_present).count() == 2)
                .unwrap_or(false)
        }
    })
    .await?;
    samples.push(sample("2 readers, 2 cards, 1 logged in").await);
    tokio::task::spawn_blocking(move || child.stop())
        .await
        .map_err(ctx("waiting"))?
        .map_err(ctx("the daemon alone"))?;
    first.remove().map_err(ctx("removing"))?;
    second.remove().map_err(ctx("removing"))?;
    Ok(samples)
}

async fn bench(lab: &Lab, plan: Plan) -> BenchResult<Vec<BenchRow>> {
    let dir = tempfile::tempdir().map_err(ctx("tempdir"))?;
    let world = DemoWorld::start(dir.path())
        .await
        .map_err(ctx("demo world"))?;
    let bus = PrivateBus::start().map_err(ctx("private bus"))?;
    let address = bus.address().to_owned();
    let config = world.config(&address).map_err(ctx("config"))?;
    let audit_dir = config
        .paths
        .audit
        .parent()
        .map(std::path::Path::to_path_buf)
        .ok_or("the audit trail has no directory")?;
    let card = world.card(PHARMACIST).map_err(ctx("card"))?;
    let pcscd = lab.pcscd_pid();

    // 3a. Baseline: the lab, spine-sim and the bus up, no daemon yet.
    let baseline = idle_sample(pcscd, plan.idle).await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(cardgated::run(
        config,
        Arc::new(PcscBackend::new()),
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    let (connection, agent) = client(&address).await?;
    let dbus = zbus::fdo::DBusProxy::new(&connection)
        .await
        .map_err(ctx("bus proxy"))?;
    wait_for("cardgated to own its name", || {
        let dbus = dbus.clone();
        async move {
            dbus.name_has_owner(cardgate_ipc::BUS_NAME.try_into().unwrap())
                .await
                .unwrap_or(false)
        }
    })
    .await?;
    let unique = dbus
        .get_name_owner(cardgate_ipc::BUS_NAME.try_into().unwrap())
        .await
        .map_err(ctx("GetNameOwner"))?
        .to_string();
    let mut inserted = Some(card_in_and_log_in(lab, &card, &agent).await?);

    // 1. Authorise against Peer.Ping, interleaved call by call after a warm-up.
    for _ in 0..100.min(plan.calls) {
        authorise(&agent).await?;
        ping(&connection, &unique).await?;
    }
    let mut floor_file = FsyncFloor::open(&audit_dir.join("fsync-floor.jsonl"))?;
    let mut auth_times = Vec::with_capacity(plan.calls);
    let mut ping_times = Vec::with_capacity(plan.calls);
    let mut status_times = Vec::with_capacity(plan.calls);
    let mut fsync_times = Vec::with_capacity(plan.calls);
    for _ in 0..plan.calls {
        let started = Instant::now();
        authorise(&agent).await?;
        auth_times.push(started.elapsed());
        let started = Instant::now();
        ping(&connection, &unique).await?;
        ping_times.push(started.elapsed());
        let started = Instant::now();
        agent.status().await.map_err(ctx("Status"))?;
        status_times.push(started.elapsed());
        fsync_times.push(floor_file.append()?);
    }
    auth_times.sort();
    ping_times.sort();
    status_times.sort();
    let status_med = quantile(&status_times, 0.5);
    fsync_times.sort();
    let (auth_med, auth_p99) = (quantile(&auth_times, 0.5), quantile(&auth_times, 0.99));
    let (ping_med, ping_p99) = (quantile(&ping_times, 0.5), quantile(&ping_times, 0.99));
    let ratio = auth_med.as_secs_f64() / ping_med.as_secs_f64().max(1e-12);
    let p99_ratio = auth_p99.as_secs_f64() / ping_p99.as_secs_f64().max(1e-12);
    let fsync_med = quantile(&fsync_times, 0.5);
    let floor = ping_med + fsync_med;
    let floor_ratio = auth_med.as_secs_f64() / floor.as_secs_f64().max(1e-12);
    let mut rates = Vec::new();
    for clients in [1usize, 10, 100] {
        let auth = throughput(&address, &unique, clients, plan.calls, false).await?;
        let pings = throughput(&address, &unique, clients, plan.calls, true).await?;
        rates.push((clients, auth, pings));
    }

    // 3b. Idle with the card in and logged in; memory with the daemon running.
    let idle = idle_sample(pcscd, plan.idle).await;
    let status = std::fs::read_to_string("/proc/self/status").map_err(ctx("status"))?;
    let rss_kb = status_field(&status, "VmRSS:").unwrap_or(0);
    let hwm_kb = status_field(&status, "VmHWM:").unwrap_or(0);

    // 2. Removal: SessionEnded against a plain PC/SC client watching the same reader.
    let mut ended = agent
        .receive_session_ended()
        .await
        .map_err(ctx("SessionEnded stream"))?;
    let mut deltas = Vec::with_capacity(plan.rounds);
    for round in 0..plan.rounds {
        let card_in = match inserted.take() {
            Some(c) => c,
            None => card_in_and_log_in(lab, &card, &agent).await?,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let watcher = tokio::task::spawn_blocking(move || pcsc_watch_removal(ready_tx));
        tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(10)))
            .await
            .map_err(ctx("ready"))?
            .map_err(ctx("the PC/SC client did not start"))?;
        // Let the client enter its blocking SCardGetStatusChange.
        tokio::time::sleep(Duration::from_millis(50)).await;
        card_in.remove().map_err(ctx("removing the card"))?;
        let signal = tokio::time::timeout(Duration::from_secs(5), ended.next())
            .await
            .map_err(|_| format!("round {round}: no SessionEnded within 5 s"))?
            .ok_or("SessionEnded stream ended")?;
        let dbus_at = Instant::now();
        let args = signal.args().map_err(ctx("SessionEnded args"))?;
        if args.reason != "card-removed" {
            return Err(format!("round {round}: SessionEnded {}", args.reason));
        }
        let pcsc_at = watcher.await.map_err(ctx("PC/SC client"))??;
        let delta = if dbus_at >= pcsc_at {
            dbus_at.duration_since(pcsc_at).as_secs_f64()
        } else {
            -pcsc_at.duration_since(dbus_at).as_secs_f64()
        };
        deltas.push(delta);
        wait_for("the daemon to see no card", || {
            let agent = agent.clone();
            async move {
                agent
                    .holder_uuid()
                    .await
                    .map(|h| h.is_empty())
                    .unwrap_or(false)
            }
        })
        .await?;
    }
    deltas.sort_by(f64::total_cmp);
    let removal_med = deltas.get(deltas.len() / 2).copied().unwrap_or_default();
    let removal_max = deltas.last().copied().unwrap_or_default();

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), daemon)
        .await
        .map_err(|_| "cardgated did not stop".to_owned())?
        .map_err(ctx("cardgated task"))?
        .map_err(ctx("cardgated"))?;

    // 4. The daemon alone in its own process.
    let alone = alone(lab, &world, &address, pcscd, plan.idle).await?;
    drop(bus);

    // The table.
    let met = |ok: bool| if ok { "met" } else { "not met" };
    // The lab's virtual card threads (`vpcd-card-*`) live in this process but answer
    // pcscd's polling: they are pcscd's wake-ups, not the daemon's.
    let not_card = |i: &Idle| {
        i.by_thread
            .iter()
            .filter(|(name, _)| !name.starts_with("vpcd-card"))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let card_switches: u64 = idle
        .by_thread
        .iter()
        .filter(|(name, _)| name.starts_with("vpcd-card"))
        .map(|(_, n)| n)
        .sum();
    let extra_switches = not_card(&idle).saturating_sub(not_card(&baseline));
    let extra_per_s = extra_switches as f64 / plan.idle.as_secs_f64();
    let idle_ok = extra_per_s < IDLE_GOAL_PER_S;
    let window = plan.idle.as_secs_f64();
    println!(
        "cardgated over D-Bus (private dbus-daemon, lab pcscd + vpcd, spine-sim); \
         {} calls, {} removal rounds, {window:.1} s idle windows",
        plan.calls, plan.rounds
    );
    println!(
        "{:<52} {:>30} {:>22} {:>8}",
        "measure", "figure", "goal", ""
    );
    row(
        "Authorise latency median / p99 (us)",
        format!("{:.1} / {:.1}", us(auth_med), us(auth_p99)),
        "",
        "",
    );
    row(
        "Peer.Ping latency median / p99 (us)",
        format!("{:.1} / {:.1}", us(ping_med), us(ping_p99)),
        "",
        "",
    );
    row(
        "Authorise / Ping, median (p99)",
        format!("{ratio:.2}x ({p99_ratio:.2}x)"),
        &format!("< {RATIO_GOAL}x"),
        met(ratio < RATIO_GOAL),
    );
    row(
        "Status (no caller identity, no audit) median (us)",
        format!("{:.1}", us(status_med)),
        "",
        "",
    );
    row(
        "audit floor: 400 B append + fdatasync, same fs (us)",
        format!("{:.1}", us(fsync_med)),
        "",
        "",
    );
    row(
        "Authorise / (Ping + audit floor), median",
        format!("{floor_ratio:.2}x"),
        &format!("< {RATIO_GOAL}x"),
        met(floor_ratio < RATIO_GOAL),
    );
    for (clients, auth, pings) in &rates {
        row(
            &format!("throughput, {clients} client(s): Authorise / Ping (/s)"),
            format!("{auth:.0} / {pings:.0} ({:.2}x)", pings / auth.max(1e-9)),
            "",
            "",
        );
    }
    row(
        "removal: SessionEnded - PC/SC client, median (ms)",
        format!("{:.2}", signed_ms(removal_med)),
        &format!("< {} ms", REMOVAL_GOAL.as_millis()),
        met(removal_med < REMOVAL_GOAL.as_secs_f64()),
    );
    row(
        "removal: SessionEnded - PC/SC client, max (ms)",
        format!("{:.2}", signed_ms(removal_max)),
        &format!("< {} ms", REMOVAL_GOAL.as_millis()),
        met(removal_max < REMOVAL_GOAL.as_secs_f64()),
    );
    row(
        "idle CPU ms: baseline / daemon + card logged in",
        format!("{:.2} / {:.2}", baseline.cpu_ms, idle.cpu_ms),
        "",
        "",
    );
    row(
        "idle voluntary switches: baseline / daemon",
        format!("{} / {}", baseline.switches, idle.switches),
        "",
        "",
    );
    row(
        "idle switches: pcscd / lab card threads (daemon)",
        format!("{} / {card_switches}", idle.pcscd_switches),
        "",
        "",
    );
    row(
        "idle: daemon's extra wake-ups (not card threads)",
        format!("{extra_switches} ({extra_per_s:.1}/s)"),
        &format!("< {IDLE_GOAL_PER_S}/s"),
        met(idle_ok),
    );
    row(
        "resident memory VmRSS / VmHWM (MiB, whole process)",
        format!(
            "{:.1} / {:.1}",
            rss_kb as f64 / 1024.0,
            hwm_kb as f64 / 1024.0
        ),
        "(reported)",
        "",
    );
    println!(
        "idle switches by thread: baseline {:?}; daemon {:?}",
        baseline.by_thread, idle.by_thread
    );
    println!("removal deltas (ms): {:?}", {
        deltas
            .iter()
            .map(|d| (signed_ms(*d) * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    });
    print_alone(&alone);

    // The headline rows for scripts/bench's one table.
    let mut rows = vec![
        BenchRow::compare(
            "Authorise over D-Bus, 1 client, median µs",
            us(auth_med),
            "Peer.Ping to the daemon",
            us(ping_med),
            1,
        )
        .goal(format!("< {RATIO_GOAL}x"), ratio < RATIO_GOAL),
        BenchRow::compare(
            "Authorise, median µs, against Ping + one fdatasync'd audit append",
            us(auth_med),
            "Ping + audit floor",
            us(floor),
            1,
        ),
    ];
    for (clients, auth, pings) in &rates {
        // Time per call (the inverse of throughput), so the ratio reads like the latency's.
        rows.push(
            BenchRow::compare(
                format!("Authorise, {clients} concurrent clients, µs per call"),
                1e6 / auth.max(1e-9),
                "Peer.Ping, same clients",
                1e6 / pings.max(1e-9),
                1,
            )
            .goal(
                format!("< {RATIO_GOAL}x"),
                pings / auth.max(1e-9) < RATIO_GOAL,
            ),
        );
    }
    rows.push(
        BenchRow::compare(
            "Removal to SessionEnded, median ms after pcscd reports it",
            signed_ms(removal_med),
            "plain PC/SC client, same reader (0 by definition)",
            0.0,
            2,
        )
        .goal(
            format!("< {} ms extra", REMOVAL_GOAL.as_millis()),
            removal_med < REMOVAL_GOAL.as_secs_f64(),
        ),
    );
    rows.extend(alone_rows(&alone));
    Ok(rows)
}
