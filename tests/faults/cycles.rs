//! Insert/remove cycles with the card pulled at random points: during the daemon's read at
//! insertion (certificate reading), during a login (VERIFY, then the card signing the TLS
//! handshake), and as a brief removal under a live session. Over the in-process virtual
//! reader the cycles are fast enough for 1,000 in CI; over the lab's real pcscd a share of
//! them hang the card at a random APDU of insertion + login and pull it mid-command.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE};
use cardgate_e2e::check;
use cardgate_e2e::daemon_harness::OrFail as _;
use cardgate_ipc::AgentProxy;
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_reader::PcscBackend;
use libtest_mimic::Failed;

use crate::support::{
    FaultDaemon, Hang, Rng, SharedCard, assert_entries_at_least, assert_no_session_survives,
    card_tries_left, cycles, insert_shared, login_and_allow, pharmacist_read, virtual_reader,
    wait_until,
};

/// How long the daemon may take to see an insertion or removal.
const SEE: Duration = Duration::from_secs(10);

/// What the test saw acknowledged, to find on the audit trail afterwards.
#[derive(Default, Debug)]
pub struct Acknowledged {
    /// `Login` calls answered with role profiles.
    pub logins: usize,
    /// `Authorise` calls answered (allowed or not).
    pub decisions: usize,
}

/// Logs in, selects the pharmacist role and checks that download is allowed; returns the
/// generation it was allowed under.
pub(crate) async fn full_login(
    agent: &AgentProxy<'static>,
    ack: &mut Acknowledged,
) -> Result<u64, Failed> {
    let generation = login_and_allow(agent).await?;
    ack.logins += 1;
    ack.decisions += 1;
    Ok(generation)
}

/// Busy-waits `micros` µs: sleeps are too coarse to land inside a read of a few APDUs.
fn spin(micros: u64) {
    let until = Instant::now() + Duration::from_micros(micros);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Removal points hit over a run, for the summary line.
#[derive(Default, Debug)]
struct Tally {
    during_read: u64,
    during_login: u64,
    login_completed_first: u64,
    brief_under_session: u64,
}

/// `cycles()` insert/remove cycles over the virtual reader: 60 % pull the card at a random
/// moment of the read at insertion, 30 % at a random moment of a login, 10 % bounce it (out
/// and in faster than a poll) under a live session. After each: the invariants, and the
/// card's retry counter still full (the test only ever types the right passcode).
pub async fn virtual_cycles() -> Result<(), Failed> {
    let (backend, reader) = virtual_reader();
    let running = FaultDaemon::start(backend.clone(), |_, _| {}).await?;
    let agent = running.agent.clone();
    let (applet, full) = running.pharmacist_card()?;
    let mut rng = Rng::from_env("virtual_reader_card_pulled_at_random_points");
    let mut ack = Acknowledged::default();
    let mut tally = Tally::default();

    // One clean login first, to learn how long a login takes here.
    insert_shared(&backend, &reader, &applet)?;
    pharmacist_read(&agent, SEE).await?;
    let started = Instant::now();
    let generation = full_login(&agent, &mut ack).await?;
    let login_time = started.elapsed();
    backend.remove(&reader);
    assert_no_session_survives(&agent, generation, SEE).await?;

    let total = cycles();
    let began = Instant::now();
    // Pulls during a login wait a random time in 0..window µs after the call goes out.
    let mut window = login_time.as_micros() as u64;
    for cycle in 0..total {
        let before = agent
            .session_generation()
            .await
            .or_fail("SessionGeneration")?;
        insert_shared(&backend, &reader, &applet)?;
        let kind = rng.below(10);
        let card_generation = if kind < 6 {
            // Pulled during the read at insertion (SELECT, CHUID, certificate, status).
            spin(rng.below(3_000));
            tally.during_read += 1;
            // The daemon may not have seen this card at all; nothing was decided with it.
            before.saturating_sub(1)
        } else if kind < 9 {
            pharmacist_read(&agent, SEE).await?;
            let generation = agent
                .session_generation()
                .await
                .or_fail("SessionGeneration")?;
            let login = {
                let agent = agent.clone();
                tokio::spawn(async move { agent.login(DEMO_PASSCODE, false).await })
            };
            tokio::time::sleep(Duration::from_micros(rng.below(window.max(1)))).await;
            backend.remove(&reader);
            let outcome = login.await.or_fail("login task")?;
            // The window adapts so about half the pulls land inside the login.
            if outcome.is_ok() {
                ack.logins += 1;
                tally.login_completed_first += 1;
                window = window * 9 / 10;
            } else {
                tally.during_login += 1;
                window = window * 11 / 10;
            }
            generation
        } else {
            pharmacist_read(&agent, SEE).await?;
            let generation = full_login(&agent, &mut ack).await?;
            // Out and in again faster than the monitor polls: the session must still end.
            check(backend.bounce(&reader), || "bounce: no card".into())?;
            wait_until("the bounce to end the session", SEE, || {
                let agent = agent.clone();
                async move {
                    agent
                        .session_generation()
                        .await
                        .is_ok_and(|g| g > generation)
                }
            })
            .await?;
            let answer = agent
                .authorise("download", DEMO_ODS)
                .await
                .or_fail("Authorise after bounce")?;
            ack.decisions += 1;
            check(!answer.allowed && answer.generation > generation, || {
                format!("cycle {cycle}: after a brief removal Authorise answered {answer:?}")
            })?;
            tally.brief_under_session += 1;
            generation
        };
        backend.remove(&reader);
        assert_no_session_survives(&agent, card_generation, SEE)
            .await
            .map_err(|e| Failed::from(format!("cycle {cycle}: {}", e.message().unwrap_or(""))))?;
        ack.decisions += 1;
        let left = card_tries_left(&applet);
        check(left == full, || {
            format!("cycle {cycle}: the card's retry counter went from {full} to {left}")
        })?;
    }
    let elapsed = began.elapsed();

    // Afterwards the agent works as on the first day, and its own counter is full.
    insert_shared(&backend, &reader, &applet)?;
    pharmacist_read(&agent, SEE).await?;
    let tries = agent
        .passcode_tries_left()
        .await
        .or_fail("PasscodeTriesLeft")?;
    check(tries == i32::from(full), || {
        format!("the agent reports {tries} tries left, the card has {full}")
    })?;
    full_login(&agent, &mut ack).await?;
    eprintln!(
        "{total} cycles in {elapsed:.1?} (login {login_time:.1?}): {tally:?}, acknowledged {ack:?}"
    );
    let audit = running.stop().await?;
    assert_entries_at_least(&audit, "session_started", ack.logins)?;
    assert_entries_at_least(&audit, "authorisation_decision", ack.decisions)
}

/// Cycles over the lab's pcscd: the card hangs at a random APDU of the read at insertion
/// plus a login (processed or not before it hangs), is pulled mid-command, and the
/// invariants are checked; `cycles() / 40` of them (25 by default).
pub async fn pcscd_cycles(lab: &mut Lab) -> Result<(), Failed> {
    let running = FaultDaemon::start(Arc::new(PcscBackend::new()), |_, _| {}).await?;
    let agent = running.agent.clone();
    let (applet, full) = running.pharmacist_card()?;
    let mut rng = Rng::from_env("pcscd_card_pulled_mid_apdu");
    let mut ack = Acknowledged::default();

    // A clean insertion and login, counting the APDUs each part takes.
    let card = SharedCard::new(&applet);
    let served = card.served();
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(card))
        .or_fail("insert")?;
    pharmacist_read(&agent, SEE).await?;
    let read_apdus = served.load(Ordering::SeqCst);
    let generation = full_login(&agent, &mut ack).await?;
    let all_apdus = served.load(Ordering::SeqCst);
    tokio::task::spawn_blocking(move || inserted.remove())
        .await
        .or_fail("remove task")?
        .or_fail("remove")?;
    assert_no_session_survives(&agent, generation, SEE).await?;
    ack.decisions += 1;

    let total = (cycles() / 40).max(1);
    let began = Instant::now();
    let mut points = Vec::new();
    for cycle in 0..total {
        let at = 1 + rng.below(all_apdus);
        let processed = rng.below(2) == 1;
        points.push(at);
        let (card, hang) = Hang::card(&applet, at, processed);
        let before = agent
            .session_generation()
            .await
            .or_fail("SessionGeneration")?;
        // Lab::insert waits for pcscd to see the card; the daemon may already be reading it.
        let inserted = lab
            .insert(ReaderSlot::First, Box::new(card))
            .or_fail("insert")?;
        let login = if at > read_apdus {
            pharmacist_read(&agent, SEE).await?;
            let agent = agent.clone();
            Some(tokio::spawn(async move {
                agent.login(DEMO_PASSCODE, false).await
            }))
        } else {
            None
        };
        // Pull the card while it hangs in the chosen command.
        hang.pull(inserted)
            .await
            .map_err(|e| Failed::from(format!("cycle {cycle}: {}", e.message().unwrap_or(""))))?;
        if let Some(login) = login {
            if login.await.or_fail("login task")?.is_ok() {
                ack.logins += 1;
            }
        }
        assert_no_session_survives(&agent, before, SEE)
            .await
            .map_err(|e| {
                Failed::from(format!(
                    "cycle {cycle} (APDU {at}, processed {processed}): {}",
                    e.message().unwrap_or("")
                ))
            })?;
        ack.decisions += 1;
        let left = card_tries_left(&applet);
        check(left == full, || {
            format!("cycle {cycle} (APDU {at}): the card's retry counter went {full} -> {left}")
        })?;
    }
    let elapsed = began.elapsed();

    // The card works again afterwards. A VERIFY whose answer was lost counts as a failure in
    // the agent's own ledger (it cannot know whether the card counted it) only until the
    // card's counter is read again, at the next insertion: the agent reports every try.
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(SharedCard::new(&applet)))
        .or_fail("insert")?;
    pharmacist_read(&agent, SEE).await?;
    let reported = agent
        .passcode_tries_left()
        .await
        .or_fail("PasscodeTriesLeft")?;
    check(reported == i32::from(full), || {
        format!("after the pulls the agent reports {reported} tries left, the card has {full}")
    })?;
    full_login(&agent, &mut ack).await?;
    let tries = agent
        .passcode_tries_left()
        .await
        .or_fail("PasscodeTriesLeft")?;
    check(tries == i32::from(full), || {
        format!("after a good login the agent reports {tries} tries left")
    })?;
    let left = card_tries_left(&applet);
    check(left == full, || {
        format!("the card's retry counter went {full} -> {left}")
    })?;
    drop(inserted);
    points.sort_unstable();
    eprintln!(
        "{total} pcscd cycles in {elapsed:.1?}; read {read_apdus} + login {} APDUs; pulled at {points:?}",
        all_apdus - read_apdus
    );
    let audit = running.stop().await?;
    assert_entries_at_least(&audit, "session_started", ack.logins)?;
    assert_entries_at_least(&audit, "authorisation_decision", ack.decisions)
}
