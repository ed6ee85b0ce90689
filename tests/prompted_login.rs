//! End-to-end: the prompted log-in (`org.cardgate.Login1`, docs/ipc.md). `cardgated` on a
//! private bus watching the lab's real pcscd (a virtual PIV card in a vpcd reader), logging in
//! at an in-process spine-sim. Three separate bus connections play the parts: a passcode
//! dialog (serving `org.cardgate.Prompt1` as `cardgate-desktop` does), a second would-be
//! dialog, and a PMR that calls `RequestLogin` and never sends a passcode. logind is the
//! stand-in of `tests/logind.rs`: this test's own process is in the active session `c1`; any
//! other process is in `c2`, a background session of the same user.
//!
//! Checked, in order: no dialog → `NoPrompt` and no try spent; one dialog per session; the
//! dialog is asked with the requester in words and the reason; only the registered dialog may
//! answer; a wrong passcode goes back to the dialog with the tries left while the request
//! waits; the right one logs in and the PMR gets the role profiles; a request during a session
//! answers at once; the holder's cancel → `Cancelled`; two programs at once →
//! `LoginInProgress`; the card pulled while the dialog is open → the dialog is closed
//! (`EndLogin card-removed`) and the PMR gets `NoCard`; the dialog program killed mid-dialog
//! → `Cancelled`, and another dialog may then register; a program outside the active session
//! (`busctl` as a separate process) is refused, and so is one in another user's session; a malformed reason is refused; the daemon is
//! up throughout and stops cleanly.
#![allow(clippy::unwrap_used)]

use std::process::ExitCode;
use std::time::Duration;

use cardgate_demo::{DEMO_PASSCODE, PHARMACIST};
use cardgate_e2e::daemon_harness::{OrFail as _, RunningDaemon, insert_and_read, wait_for};
use cardgate_e2e::login_requests::{answered, error_name, request};
use cardgate_e2e::logind::{ActiveSession, stand_in_logind};
use cardgate_e2e::{async_lab_trial, check, run_lab_suite};
use cardgate_ipc::LoginProxy;
use cardgate_lab::{Lab, ReaderSlot};
use libtest_mimic::Failed;
use tokio::sync::mpsc;
use zbus::zvariant::ObjectPath;

fn main() -> ExitCode {
    run_lab_suite(vec![async_lab_trial(
        "a_program_asks_for_a_log_in_and_the_agents_dialog_gets_the_passcode",
        prompted,
    )])
}

// ------------------------------------------------------------------ the dialog

/// What the agent asked of a dialog.
#[derive(Debug)]
enum Asked {
    Begin {
        cookie: String,
        requester: String,
        reason: String,
    },
    End {
        cookie: String,
        why: String,
    },
}

/// A passcode dialog as `cardgate-desktop` serves it, reporting every call.
struct Dialog {
    asked: mpsc::UnboundedSender<Asked>,
}

#[zbus::interface(name = "org.cardgate.Prompt1")]
impl Dialog {
    fn begin_login(&self, cookie: String, requester: String, reason: String) {
        let _ = self.asked.send(Asked::Begin {
            cookie,
            requester,
            reason,
        });
    }

    fn end_login(&self, cookie: String, why: String) {
        let _ = self.asked.send(Asked::End { cookie, why });
    }
}

const DIALOG_PATH: &str = "/org/cardgate/test/Dialog";

/// A connection serving a dialog, its `Login1` proxy, and what it is asked.
async fn dialog(
    address: &str,
) -> Result<(LoginProxy<'static>, mpsc::UnboundedReceiver<Asked>), Failed> {
    let (tx, rx) = mpsc::unbounded_channel();
    let connection = zbus::connection::Builder::address(address)
        .or_fail("bus address")?
        .serve_at(DIALOG_PATH, Dialog { asked: tx })
        .or_fail("dialog object")?
        .build()
        .await
        .or_fail("dialog connection")?;
    let login = LoginProxy::new(&connection).await.or_fail("Login1 proxy")?;
    Ok((login, rx))
}

async fn program(address: &str) -> Result<LoginProxy<'static>, Failed> {
    let connection = zbus::connection::Builder::address(address)
        .or_fail("bus address")?
        .build()
        .await
        .or_fail("program connection")?;
    LoginProxy::new(&connection).await.or_fail("Login1 proxy")
}

fn path() -> ObjectPath<'static> {
    ObjectPath::from_static_str_unchecked(DIALOG_PATH)
}

async fn next_asked(asked: &mut mpsc::UnboundedReceiver<Asked>) -> Result<Asked, Failed> {
    tokio::time::timeout(Duration::from_secs(10), asked.recv())
        .await
        .map_err(|_| Failed::from("the dialog was not asked within 10 s"))?
        .ok_or_else(|| Failed::from("the dialog's channel closed"))
}

async fn begun(
    asked: &mut mpsc::UnboundedReceiver<Asked>,
) -> Result<(String, String, String), Failed> {
    match next_asked(asked).await? {
        Asked::Begin {
            cookie,
            requester,
            reason,
        } => Ok((cookie, requester, reason)),
        other => Err(Failed::from(format!("expected BeginLogin, got {other:?}"))),
    }
}

// ------------------------------------------------------------------ the scenario

async fn prompted(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let address = running.address.clone();
    let agent = running.agent.clone();
    let sessions = ActiveSession::default();
    let _logind = stand_in_logind(&address, sessions.clone()).await?;
    let card = running.world.card(PHARMACIST).or_fail("card")?;
    let inserted =
        insert_and_read(lab, ReaderSlot::First, card.clone(), &agent, PHARMACIST.1).await?;
    let tries = || {
        let agent = agent.clone();
        async move { agent.passcode_tries_left().await.unwrap_or(-99) }
    };
    let pmr = program(&address).await?;

    // No dialog registered: NoPrompt, and the card was not touched.
    let before = tries().await;
    let none = pmr.request_login("Download today's prescriptions").await;
    check(error_name(&none) == "NoPrompt", || {
        format!("no dialog: {none:?}")
    })?;
    check(tries().await == before, || {
        "a try was spent without a dialog".into()
    })?;

    // A malformed reason is refused before anything else.
    let bad = pmr.request_login("two\nlines").await;
    check(error_name(&bad) == "InvalidArgument", || {
        format!("bad reason: {bad:?}")
    })?;

    // One dialog per session.
    let (dialog_a, mut asked_a) = dialog(&address).await?;
    dialog_a
        .register_prompt(&path())
        .await
        .or_fail("registering the dialog")?;
    let (dialog_b, _asked_b) = dialog(&address).await?;
    let second = dialog_b.register_prompt(&path()).await;
    check(error_name(&second) == "NotPermitted", || {
        format!("a second dialog for the same session: {second:?}")
    })?;

    // The PMR asks; the dialog is asked, naming the program and the reason.
    let pending = request(&pmr, "Download today's prescriptions");
    let (cookie, requester, reason) = begun(&mut asked_a).await?;
    check(reason == "Download today's prescriptions", || {
        format!("reason {reason:?}")
    })?;
    check(requester.contains("prompted_login"), || {
        format!("the requester in words does not name the program: {requester:?}")
    })?;
    // Only the registered dialog may answer.
    let intruder = dialog_b.answer_login(&cookie, DEMO_PASSCODE, false).await;
    check(error_name(&intruder) == "NotPermitted", || {
        format!("another connection answered: {intruder:?}")
    })?;
    check(tries().await == before, || {
        "the intruder's answer reached the card".into()
    })?;
    // A wrong passcode goes back to the dialog; the request waits.
    let wrong = dialog_a.answer_login(&cookie, "98765432", false).await;
    check(error_name(&wrong) == "WrongPasscode", || {
        format!("wrong passcode: {wrong:?}")
    })?;
    check(tries().await == before - 1, || {
        "the tries left did not drop by one".into()
    })?;
    check(!pending.is_finished(), || {
        "the request ended on a wrong passcode".into()
    })?;
    let profiles = dialog_a
        .answer_login(&cookie, DEMO_PASSCODE, false)
        .await
        .or_fail("the right passcode")?;
    let got = answered(pending).await?.or_fail("RequestLogin")?;
    check(!got.is_empty() && got == profiles, || {
        format!("the PMR got {got:?}, the dialog {profiles:?}")
    })?;
    let state = agent.state().await.or_fail("State")?;
    check(state == "logged-in" || state == "role-selected", || {
        format!("state {state}")
    })?;

    // During the session: the profiles at once, no dialog.
    let again = pmr
        .request_login("Claim")
        .await
        .or_fail("RequestLogin in a session")?;
    check(again == got, || {
        "a request in the session got other profiles".into()
    })?;
    check(asked_a.try_recv().is_err(), || {
        "the dialog was asked during a session".into()
    })?;
    agent.logout().await.or_fail("Logout")?;

    // The holder cancels.
    let pending = request(&pmr, "Return a prescription");
    let (cookie, _, _) = begun(&mut asked_a).await?;
    dialog_a
        .cancel_login(&cookie)
        .await
        .or_fail("CancelLogin")?;
    let cancelled = answered(pending).await?;
    check(error_name(&cancelled) == "Cancelled", || {
        format!("cancelled: {cancelled:?}")
    })?;

    // Two programs at once; then the card is pulled while the dialog is open.
    let other = program(&address).await?;
    let pending = request(&pmr, "Download");
    let (cookie, _, _) = begun(&mut asked_a).await?;
    let busy = other.request_login("Claim").await;
    check(error_name(&busy) == "LoginInProgress", || {
        format!("two at once: {busy:?}")
    })?;
    let tries_now = tries().await;
    inserted.remove().or_fail("pulling the card")?;
    match next_asked(&mut asked_a).await? {
        Asked::End { cookie: ended, why } if ended == cookie && why == "card-removed" => {}
        other => {
            return Err(Failed::from(format!(
                "expected EndLogin card-removed, got {other:?}"
            )));
        }
    }
    let pulled = answered(pending).await?;
    check(error_name(&pulled) == "NoCard", || {
        format!("card pulled: {pulled:?}")
    })?;
    let late = dialog_a.answer_login(&cookie, DEMO_PASSCODE, false).await;
    check(error_name(&late) == "NotPermitted", || {
        format!("an answer after removal: {late:?}")
    })?;

    // The dialog program is killed mid-dialog.
    let inserted = insert_and_read(lab, ReaderSlot::First, card, &agent, PHARMACIST.1).await?;
    check(tries().await == tries_now, || {
        "the pulled request spent a try".into()
    })?;
    let pending = request(&pmr, "Download");
    let _ = begun(&mut asked_a).await?;
    let connection = dialog_a.inner().connection().clone();
    drop(dialog_a);
    connection
        .close()
        .await
        .or_fail("closing the dialog's connection")?;
    let killed = answered(pending).await?;
    check(error_name(&killed) == "Cancelled", || {
        format!("dialog killed: {killed:?}")
    })?;
    // Its slot is free again.
    dialog_b
        .register_prompt(&path())
        .await
        .or_fail("registering after the first dialog ended")?;

    // A program outside the active desktop session (busctl, another process: session c2).
    let outside = std::process::Command::new("busctl")
        .arg(format!("--address={address}"))
        .args([
            "call",
            cardgate_ipc::BUS_NAME,
            cardgate_ipc::OBJECT_PATH,
            cardgate_ipc::LOGIN_INTERFACE,
            "RequestLogin",
            "s",
            "Download",
        ])
        .output()
        .or_fail("busctl")?;
    let said = String::from_utf8_lossy(&outside.stderr).into_owned();
    check(
        !outside.status.success() && said.contains("active desktop session"),
        || format!("a program outside the active session was not refused: {said}"),
    )?;

    // A program in another user's session (c3, uid 1000, active on its own seat): the dialog
    // of this session is not its to use. busctl waits a moment before it calls, so logind
    // knows its pid by then.
    let other = std::process::Command::new("sh")
        .args([
            "-c",
            "sleep 0.5; exec busctl \"$@\"",
            "sh",
            &format!("--address={address}"),
            "call",
            cardgate_ipc::BUS_NAME,
            cardgate_ipc::OBJECT_PATH,
            cardgate_ipc::LOGIN_INTERFACE,
            "RequestLogin",
            "s",
            "Download",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .or_fail("busctl")?;
    sessions.add_foreign(other.id());
    let other = other.wait_with_output().or_fail("busctl")?;
    let said = String::from_utf8_lossy(&other.stderr).into_owned();
    check(
        !other.status.success() && said.contains("active desktop session"),
        || format!("a program of another user's session was not refused: {said}"),
    )?;
    check(tries().await == before, || {
        "a refused request touched the card".into()
    })?;

    // Still up.
    wait_for("the agent to answer", || {
        let agent = agent.clone();
        async move { agent.status().await.is_ok() }
    })
    .await?;
    drop(inserted);
    running.stop().await.map(|_| ())
}
