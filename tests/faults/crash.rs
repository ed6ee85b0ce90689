//! The daemon killed with SIGKILL while it writes audit entries, then started again: the
//! hash chain verifies and every decision it acknowledged before dying is on the trail.
//!
//! The daemon runs as a separate process (this test binary again, with
//! `FAULTS_DAEMON_DIR` set: see [`daemon_child`]) on the lab's pcscd, so it can really be
//! killed; the world (card CA, spine-sim) and the bus stay in the test process.

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, DemoWorld, PHARMACIST, PrivateBus};
use cardgate_e2e::check;
use cardgate_e2e::daemon_harness::OrFail as _;
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_reader::PcscBackend;
use cardgate_vcard::applet::PivApplet;
use cardgated::Config;
use libtest_mimic::Failed;

use crate::support::{
    SharedCard, assert_entries_at_least, assert_no_session_survives, card_tries_left, client,
    wait_until,
};

/// The environment variables that turn this binary into the daemon.
const DIR: &str = "FAULTS_DAEMON_DIR";
const URL: &str = "FAULTS_DAEMON_URL";
const MTLS_URL: &str = "FAULTS_DAEMON_MTLS_URL";
const BUS: &str = "FAULTS_DAEMON_BUS";

/// When this binary was started as the daemon: runs `cardgated` on the demo configuration
/// for the world in `FAULTS_DAEMON_DIR`, on the lab's pcscd, until SIGTERM. Returns `None`
/// when the variables are not set (the normal test run).
pub fn daemon_child() -> Option<std::process::ExitCode> {
    let dir = std::env::var_os(DIR)?;
    let var = |name| std::env::var(name).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .ok()?;
    let outcome = runtime.block_on(async {
        let config = Config::demo(std::path::Path::new(&dir), &var(URL), &var(MTLS_URL))?;
        let stop = async {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                term.recv().await;
            }
        };
        cardgated::run(config, Arc::new(PcscBackend::new()), Some(var(BUS)), stop).await
    });
    Some(match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cardgated (fault child): {e}");
            std::process::ExitCode::FAILURE
        }
    })
}

/// Starts the daemon child for `world` on `bus`.
fn spawn_daemon(world: &DemoWorld, bus: &str) -> Result<Child, Failed> {
    let exe = std::env::current_exe().or_fail("current_exe")?;
    Command::new(exe)
        .env(DIR, world.dir())
        .env(URL, world.sim().url())
        .env(MTLS_URL, world.sim().mtls_url())
        .env(BUS, bus)
        .spawn()
        .or_fail("starting the daemon child")
}

/// Rounds of kill-while-writing.
const ROUNDS: usize = 3;

/// See the module comment.
pub async fn sigkill_while_auditing(lab: &mut Lab) -> Result<(), Failed> {
    let dir = tempfile::tempdir().or_fail("tempdir")?;
    let world = DemoWorld::start(dir.path()).await.or_fail("demo world")?;
    let bus = PrivateBus::start().or_fail("private bus")?;
    let address = bus.address().to_owned();
    let audit_path = world.dir().join("audit.jsonl");
    let applet = Arc::new(Mutex::new(PivApplet::new(
        world.card(PHARMACIST).or_fail("card")?,
    )));
    let full = card_tries_left(&applet);
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(SharedCard::new(&applet)))
        .or_fail("insert")?;

    let mut acknowledged = 0usize;
    let mut logins = 0usize;
    let mut daemon = spawn_daemon(&world, &address)?;
    for round in 0..ROUNDS {
        let agent = client(&address).await?;
        wait_until("the card to be read", Duration::from_secs(20), || {
            let agent = agent.clone();
            async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
        })
        .await?;
        // A daemon that died took its session with it: nothing is allowed before a login.
        let answer = agent
            .authorise("download", DEMO_ODS)
            .await
            .or_fail("Authorise after restart")?;
        acknowledged += 1;
        check(!answer.allowed, || {
            format!("round {round}: allowed before any login: {answer:?}")
        })?;
        agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;
        logins += 1;
        agent
            .select_role_profile("RP-PHARM-FA123")
            .await
            .or_fail("SelectRoleProfile")?;
        // Eight callers asking as fast as they can; the daemon dies under them.
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let agent = agent.clone();
            let answered = Arc::clone(&answered);
            callers.spawn(async move {
                while let Ok(answer) = agent.authorise("download", DEMO_ODS).await {
                    if answer.allowed {
                        answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        daemon.kill().or_fail("SIGKILL")?;
        daemon.wait().or_fail("reaping the daemon")?;
        while callers.join_next().await.is_some() {}
        let before_kill = answered.load(std::sync::atomic::Ordering::SeqCst);
        check(before_kill > 0, || {
            format!("round {round}: nothing answered before the kill")
        })?;
        acknowledged += before_kill;
        // Started again on the same trail: it must open it (setting any torn tail aside).
        daemon = spawn_daemon(&world, &address)?;
    }

    // A clean stop, then the whole trail: chain intact, every acknowledged decision there.
    let agent = client(&address).await?;
    // The restarted daemon must have read the card before it is pulled: otherwise its first
    // monitor event (pcscd still reporting the card, up to 400 ms after the pull) would come
    // after "no card" was already observed.
    wait_until(
        "the restarted daemon to read the card",
        Duration::from_secs(20),
        || {
            let agent = agent.clone();
            async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
        },
    )
    .await?;
    let generation = agent
        .session_generation()
        .await
        .or_fail("SessionGeneration")?;
    let state = agent.state().await.or_fail("State")?;
    check(state != "logged-in", || {
        format!("a session survived the crash: {state}")
    })?;
    drop(inserted);
    assert_no_session_survives(
        &agent,
        generation.saturating_sub(1),
        Duration::from_secs(10),
    )
    .await?;
    acknowledged += 1;
    let pid = daemon.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = daemon.wait().or_fail("reaping the daemon")?;
    check(status.success(), || {
        format!("the daemon stopped with {status}")
    })?;
    let report = cardgate_audit::verify(&audit_path).or_fail("verify")?;
    check(report.is_intact(), || {
        format!(
            "the audit chain is broken after SIGKILL: {:?}",
            report.first_break
        )
    })?;
    let audit = std::fs::read_to_string(&audit_path).or_fail("audit")?;
    assert_entries_at_least(&audit, "authorisation_decision", acknowledged)?;
    assert_entries_at_least(&audit, "session_started", logins)?;
    let left = card_tries_left(&applet);
    check(left == full, || {
        format!("the card's retry counter went {full} -> {left}")
    })?;
    let torn = audit.matches("\"kind\":\"torn_tail_discarded\"").count();
    eprintln!(
        "{ROUNDS} SIGKILLs under 8 callers: {acknowledged} decisions acknowledged, all on a \
         chain of {} entries; {torn} torn tails set aside",
        report.verified_entries
    );
    Ok(())
}
