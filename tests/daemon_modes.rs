//! End-to-end: `cardgated` with `removal = "session-lock"` on a private `dbus-daemon`,
//! watching the lab's real pcscd with virtual PIV cards in the vpcd readers, logging in at an
//! in-process spine-sim. The pharmacist's card leaves (the session locks, answers turn to
//! `no-card`), the same card comes back and its passcode resumes the same session and role
//! (same ticket token, no new log-in); then another card ends the locked session as
//! `card-swapped`; `ChangePasscode` works through the bus and keeps passcodes off the trail.
#![allow(clippy::unwrap_used)]

use std::process::ExitCode;
use std::time::Duration;

use cardgate_e2e::daemon_harness::{RunningDaemon, fail, wait_for};
use cardgate_e2e::{check, lab_trial};
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::applet::PivApplet;
use cardgated::config::RemovalMode;
use cardgated::demo::{DEMO_ODS, DEMO_PASSCODE, DISPENSER, PHARMACIST};
use futures_lite::StreamExt as _;
use libtest_mimic::{Arguments, Failed};

fn main() -> ExitCode {
    cardgate_lab::enter_lab_namespace();
    let args = Arguments::from_args();
    let trials = vec![lab_trial(
        "session_lock_resume_and_swap_through_dbus_pcscd_and_spine_sim",
        session_lock,
    )];
    libtest_mimic::run(&args, trials).exit_code()
}

fn session_lock(lab: &mut Lab) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail("runtime", e))?;
    runtime.block_on(run(lab))
}

async fn run(lab: &mut Lab) -> Result<(), Failed> {
    let running =
        RunningDaemon::start(|config| config.session.removal = RemovalMode::SessionLock).await?;
    let RunningDaemon {
        world,
        address: _,
        agent,
        ..
    } = &running;
    let mut ended = agent
        .receive_session_ended()
        .await
        .map_err(|e| fail("SessionEnded stream", e))?;

    // Log in and choose a role.
    let pharmacist = world.card(PHARMACIST).map_err(|e| fail("card", e))?;
    let inserted = lab
        .insert(
            ReaderSlot::First,
            Box::new(PivApplet::new(pharmacist.clone())),
        )
        .map_err(|e| fail("inserting the card", e))?;
    wait_for("the card to be read", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
    })
    .await?;
    agent
        .login(DEMO_PASSCODE, false)
        .await
        .map_err(|e| fail("Login", e))?;
    agent
        .select_role_profile("RP-PHARM-FA123")
        .await
        .map_err(|e| fail("SelectRoleProfile", e))?;
    let before = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(before.allowed, || format!("{before:?}"))?;
    let ticket = agent.get_ticket().await.map_err(|e| fail("GetTicket", e))?;

    // The card leaves: locked, no-card, nothing ended.
    inserted
        .remove()
        .map_err(|e| fail("removing the card", e))?;
    wait_for("State session-locked", || {
        let agent = agent.clone();
        async move { agent.state().await.unwrap_or_default() == "session-locked" }
    })
    .await?;
    let locked = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(
        !locked.allowed && locked.reason == "no-card" && locked.generation > before.generation,
        || format!("{locked:?} after {before:?}"),
    )?;

    // The same card back, its passcode again: the same session and role.
    let again = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(pharmacist)))
        .map_err(|e| fail("reinserting the card", e))?;
    wait_for("the card to be read again", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
    })
    .await?;
    let state = agent.state().await.map_err(|e| fail("State", e))?;
    check(state == "session-locked", || format!("State {state}"))?;
    agent
        .login(DEMO_PASSCODE, false)
        .await
        .map_err(|e| fail("Login to resume", e))?;
    let role = agent
        .selected_role_profile()
        .await
        .map_err(|e| fail("role", e))?;
    check(role.id == "RP-PHARM-FA123", || format!("{role:?}"))?;
    let resumed = agent.get_ticket().await.map_err(|e| fail("GetTicket", e))?;
    check(resumed.token == ticket.token, || {
        "the resumed session has another token".into()
    })?;
    let after = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(after.allowed, || format!("{after:?}"))?;

    // Out again, and another holder's card: the locked session ends as card-swapped.
    again.remove().map_err(|e| fail("removing the card", e))?;
    wait_for("State session-locked", || {
        let agent = agent.clone();
        async move { agent.state().await.unwrap_or_default() == "session-locked" }
    })
    .await?;
    let dispenser = world.card(DISPENSER).map_err(|e| fail("card", e))?;
    let _second = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(dispenser)))
        .map_err(|e| fail("inserting the second card", e))?;
    let end = tokio::time::timeout(Duration::from_secs(10), ended.next())
        .await
        .map_err(|_| Failed::from("no SessionEnded signal"))?
        .ok_or_else(|| Failed::from("SessionEnded stream ended"))?;
    let end = end.args().map_err(|e| fail("SessionEnded args", e))?;
    check(end.reason == "card-swapped", || {
        format!("SessionEnded {}", end.reason)
    })?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(answer.reason == "not-logged-in", || format!("{answer:?}"))?;
    let state = agent.state().await.map_err(|e| fail("State", e))?;
    check(state == "card-present", || format!("State {state}"))?;

    // ChangePasscode through the bus, then the new passcode logs in.
    agent
        .change_passcode(DEMO_PASSCODE, "n3w5678", false)
        .await
        .map_err(|e| fail("ChangePasscode", e))?;
    agent
        .login("n3w5678", false)
        .await
        .map_err(|e| fail("Login with the new passcode", e))?;

    let audit = running.stop().await?;
    for secret in [DEMO_PASSCODE, "n3w5678"] {
        check(!audit.contains(secret), || {
            "a passcode is on the audit trail".into()
        })?;
    }
    check(
        audit.contains("card-swapped") && audit.contains("session resumed"),
        || "the audit trail lacks the swap or the resumption".into(),
    )?;
    Ok(())
}
