//! End-to-end: the card of a registered workstation login session leaves the reader and
//! `cardgated` acts on that logind session as `[workstation] removal_action` says, once per
//! action: `lock` (`Session.Lock`), `terminate` (`Session.Terminate`, the registration is
//! dropped), `signal` (logind is not asked at all). logind is a stand-in: a small zbus server
//! owning `org.freedesktop.login1` on the private bus, serving the manager's `GetSession` and
//! two session objects, and recording every `Lock`/`Terminate` with the time it arrived.
//!
//! The removal is made through the lab's real pcscd (vpcd); an independent PC/SC client
//! blocked in `SCardGetStatusChange` marks when removal reached pcscd-watching clients, and
//! the latency from there to logind's call is printed (the 10 ms goal belongs to the benches;
//! here only a generous bound is asserted). Checked: the method was called once, on the
//! registered session's object and on no other; `SessionCardRemoved` was signalled with the
//! action; `RegisterSession` before `Login` is `NotLoggedIn`.
#![allow(clippy::unwrap_used)]

use std::ffi::CString;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_PASSCODE, PHARMACIST};
use cardgate_e2e::daemon_harness::{OrFail as _, RunningDaemon, wait_for};
use cardgate_e2e::{async_lab_trial, check, run_lab_suite};
use cardgate_ipc::WorkstationProxy;
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::applet::PivApplet;
use cardgated::config::RemovalAction;
use futures_lite::StreamExt as _;
use libtest_mimic::Failed;
use zbus::zvariant::OwnedObjectPath;

fn main() -> ExitCode {
    run_lab_suite(vec![async_lab_trial(
        "removal_locks_terminates_or_signals_the_registered_logind_session",
        run,
    )])
}

/// One call logind received: the session object, the method, when.
type Calls = Arc<Mutex<Vec<(String, &'static str, Instant)>>>;

/// The stand-in's manager object.
struct Manager;

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl Manager {
    /// logind's `GetSession`: the object of session `id` (ids here are plain).
    fn get_session(&self, id: String) -> zbus::fdo::Result<OwnedObjectPath> {
        OwnedObjectPath::try_from(format!("/org/freedesktop/login1/session/{id}"))
            .map_err(|e| zbus::fdo::Error::InvalidArgs(e.to_string()))
    }
}

/// One stand-in session object.
struct Session {
    path: String,
    calls: Calls,
}

#[zbus::interface(name = "org.freedesktop.login1.Session")]
impl Session {
    /// Records the lock.
    fn lock(&self) {
        self.calls
            .lock()
            .unwrap()
            .push((self.path.clone(), "Lock", Instant::now()));
    }

    /// Records the termination.
    fn terminate(&self) {
        self.calls
            .lock()
            .unwrap()
            .push((self.path.clone(), "Terminate", Instant::now()));
    }
}

/// Blocks in `SCardGetStatusChange` on the first reader until its card is gone; returns when
/// that was seen.
fn watch_removal(ready: std::sync::mpsc::Sender<()>) -> Result<Instant, String> {
    let context = pcsc::Context::establish(pcsc::Scope::User).map_err(|e| e.to_string())?;
    let name = CString::new(ReaderSlot::First.to_string()).map_err(|e| e.to_string())?;
    let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
    context
        .get_status_change(Duration::ZERO, &mut states)
        .map_err(|e| e.to_string())?;
    let _ = ready.send(());
    loop {
        states[0].sync_current_state();
        context
            .get_status_change(Some(Duration::from_secs(20)), &mut states)
            .map_err(|e| e.to_string())?;
        if states[0].event_state().contains(pcsc::State::EMPTY) {
            return Ok(Instant::now());
        }
    }
}

async fn run(lab: &mut Lab) -> Result<(), Failed> {
    for action in [
        RemovalAction::Lock,
        RemovalAction::Terminate,
        RemovalAction::Signal,
    ] {
        run_one(lab, action).await.map_err(|e| {
            Failed::from(format!(
                "{}: {}",
                action.as_str(),
                e.message().unwrap_or("")
            ))
        })?;
    }
    Ok(())
}

/// One daemon with `removal_action = action`: register, remove, check what logind got.
async fn run_one(lab: &mut Lab, action: RemovalAction) -> Result<(), Failed> {
    let running = RunningDaemon::start(|config| config.workstation.removal_action = action).await?;
    let RunningDaemon {
        world,
        address,
        agent,
        ..
    } = &running;

    let calls: Calls = Arc::default();
    let mut logind = zbus::connection::Builder::address(address.as_str())
        .or_fail("bus address")?
        .serve_at("/org/freedesktop/login1", Manager)
        .or_fail("logind manager")?;
    for id in ["e2e7", "e2e9"] {
        let path = format!("/org/freedesktop/login1/session/{id}");
        logind = logind
            .serve_at(
                OwnedObjectPath::try_from(path.clone()).or_fail("path")?,
                Session {
                    path: path.clone(),
                    calls: Arc::clone(&calls),
                },
            )
            .or_fail("logind session")?;
    }
    let _logind = logind
        .name("org.freedesktop.login1")
        .or_fail("logind name")?
        .build()
        .await
        .or_fail("stand-in logind")?;

    let pharmacist = world.card(PHARMACIST).or_fail("card")?;
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(pharmacist)))
        .or_fail("inserting the card")?;
    wait_for("the card to be read", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
    })
    .await?;
    let workstation = WorkstationProxy::new(agent.inner().connection())
        .await
        .or_fail("workstation proxy")?;

    // Without an agent session there is nothing to tie the workstation session to.
    let early = workstation.register_session("e2e7", "cgpharm").await;
    check(
        early
            .as_ref()
            .is_err_and(|e| e.to_string().contains("NotLoggedIn")),
        || format!("RegisterSession before Login: {early:?}"),
    )?;
    agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;
    let object = workstation
        .register_session("e2e7", "cgpharm")
        .await
        .or_fail("RegisterSession")?;
    let expected = match action {
        RemovalAction::Signal => "/",
        _ => "/org/freedesktop/login1/session/e2e7",
    };
    check(object.as_str() == expected, || {
        format!("logind object: {object}")
    })?;
    let mut removed_signals = workstation
        .receive_session_card_removed()
        .await
        .or_fail("SessionCardRemoved stream")?;

    // An independent PC/SC client watches the reader; then the card leaves.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let watcher = std::thread::spawn(move || watch_removal(ready_tx));
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .or_fail("the PC/SC watcher")?;
    let removed_at = Instant::now();
    inserted.remove().or_fail("removing the card")?;
    let seen_at = watcher
        .join()
        .map_err(|_| Failed::from("the PC/SC watcher panicked"))?
        .or_fail("SCardGetStatusChange")?;
    let signal = tokio::time::timeout(Duration::from_secs(5), removed_signals.next())
        .await
        .map_err(|_| Failed::from("no SessionCardRemoved signal"))?
        .ok_or("the signal stream ended")?;
    let args = signal.args().or_fail("signal args")?;
    check(
        args.session_id == "e2e7" && args.user == "cgpharm" && args.action == action.as_str(),
        || {
            format!(
                "SessionCardRemoved({}, {}, {})",
                args.session_id, args.user, args.action
            )
        },
    )?;
    // Let any stray second call arrive before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let calls = calls.lock().unwrap().clone();
    let method = match action {
        RemovalAction::Lock => "Lock",
        RemovalAction::Terminate => "Terminate",
        _ => {
            check(calls.is_empty(), || format!("logind calls: {calls:?}"))?;
            return running.stop().await.map(|_| ());
        }
    };
    check(
        calls.len() == 1
            && calls[0].0 == "/org/freedesktop/login1/session/e2e7"
            && calls[0].1 == method,
        || format!("logind calls: {calls:?}"),
    )?;
    let registered = workstation.sessions().await.or_fail("Sessions")?;
    check(
        registered.len() == usize::from(action == RemovalAction::Lock),
        || format!("registered after {method}: {registered:?}"),
    )?;
    let locked_at = calls[0].2;
    let after_pcsc = locked_at.saturating_duration_since(seen_at);
    let after_vpcd = locked_at.saturating_duration_since(removed_at);
    eprintln!(
        "removal -> logind {method}: {:.2} ms after a PC/SC client saw it, {:.2} ms after the vpcd removal",
        after_pcsc.as_secs_f64() * 1e3,
        after_vpcd.as_secs_f64() * 1e3
    );
    check(after_vpcd < Duration::from_secs(2), || {
        format!("{method} came {after_vpcd:?} after the removal")
    })?;
    let state = agent.state().await.or_fail("State")?;
    check(state == "no-card", || {
        format!("State after removal: {state}")
    })?;
    running.stop().await?;
    Ok(())
}
