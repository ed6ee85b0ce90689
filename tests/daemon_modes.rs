//! End-to-end: `cardgated` with `removal = "session-lock"` on a private `dbus-daemon`,
//! watching the lab's real pcscd with virtual PIV cards in the vpcd readers, logging in at an
//! in-process spine-sim. The pharmacist's card leaves (the session locks, answers turn to
//! `no-card`), the same card comes back and its passcode resumes the same session and role
//! (same ticket token, no new log-in); then another card ends the locked session as
//! `card-swapped`; `ChangePasscode` works through the bus and keeps passcodes off the trail.
#![allow(clippy::unwrap_used)]

use std::process::ExitCode;
use std::time::Duration;

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, DISPENSER, PHARMACIST};
use cardgate_e2e::daemon_harness::{OrFail as _, RunningDaemon, insert_and_read, wait_for};
use cardgate_e2e::{async_lab_trial, check, run_lab_suite};
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::applet::PivApplet;
use cardgated::config::RemovalMode;
use futures_lite::StreamExt as _;
use libtest_mimic::Failed;

fn main() -> ExitCode {
    run_lab_suite(vec![
        async_lab_trial(
            "session_lock_resume_and_swap_through_dbus_pcscd_and_spine_sim",
            run,
        ),
        async_lab_trial(
            "a_card_revoked_while_the_daemon_runs_is_refused_in_the_reader_and_after",
            revoked_while_running,
        ),
        async_lab_trial(
            "a_passcode_the_endpoint_says_expires_soon_is_signalled_at_log_in",
            expiring_at_log_in,
        ),
        async_lab_trial(
            "a_session_the_endpoint_idled_out_ends_here_as_endpoint_ended",
            idled_out_at_the_endpoint,
        ),
    ])
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
        .or_fail("SessionEnded stream")?;

    // Log in and choose a role.
    let pharmacist = world.card(PHARMACIST).or_fail("card")?;
    let inserted = insert_and_read(
        lab,
        ReaderSlot::First,
        pharmacist.clone(),
        agent,
        PHARMACIST.1,
    )
    .await?;
    agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;
    agent
        .select_role_profile("RP-PHARM-FA123")
        .await
        .or_fail("SelectRoleProfile")?;
    let before = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(before.allowed, || format!("{before:?}"))?;
    let ticket = agent.get_ticket().await.or_fail("GetTicket")?;

    // The card leaves: locked, no-card, nothing ended.
    inserted.remove().or_fail("removing the card")?;
    wait_for("State session-locked", || {
        let agent = agent.clone();
        async move { agent.state().await.unwrap_or_default() == "session-locked" }
    })
    .await?;
    let locked = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(
        !locked.allowed && locked.reason == "no-card" && locked.generation > before.generation,
        || format!("{locked:?} after {before:?}"),
    )?;

    // The same card back, its passcode again: the same session and role.
    let again = insert_and_read(lab, ReaderSlot::First, pharmacist, agent, PHARMACIST.1).await?;
    let state = agent.state().await.or_fail("State")?;
    check(state == "session-locked", || format!("State {state}"))?;
    agent
        .login(DEMO_PASSCODE, false)
        .await
        .or_fail("Login to resume")?;
    let role = agent.selected_role_profile().await.or_fail("role")?;
    check(role.id == "RP-PHARM-FA123", || format!("{role:?}"))?;
    let resumed = agent.get_ticket().await.or_fail("GetTicket")?;
    check(resumed.token == ticket.token, || {
        "the resumed session has another token".into()
    })?;
    let after = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(after.allowed, || format!("{after:?}"))?;

    // Out again, and another holder's card: the locked session ends as card-swapped.
    again.remove().or_fail("removing the card")?;
    wait_for("State session-locked", || {
        let agent = agent.clone();
        async move { agent.state().await.unwrap_or_default() == "session-locked" }
    })
    .await?;
    let dispenser = world.card(DISPENSER).or_fail("card")?;
    let _second = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(dispenser)))
        .or_fail("inserting the second card")?;
    let end = tokio::time::timeout(Duration::from_secs(10), ended.next())
        .await
        .map_err(|_| Failed::from("no SessionEnded signal"))?
        .ok_or_else(|| Failed::from("SessionEnded stream ended"))?;
    let end = end.args().or_fail("SessionEnded args")?;
    check(end.reason == "card-swapped", || {
        format!("SessionEnded {}", end.reason)
    })?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(answer.reason == "not-logged-in", || format!("{answer:?}"))?;
    let state = agent.state().await.or_fail("State")?;
    check(state == "card-present", || format!("State {state}"))?;

    // ChangePasscode through the bus, then the new passcode logs in.
    agent
        .change_passcode(DEMO_PASSCODE, "n3w5678", false)
        .await
        .or_fail("ChangePasscode")?;
    agent
        .login("n3w5678", false)
        .await
        .or_fail("Login with the new passcode")?;

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

/// The daemon fetched the CRL at start; the RA then revokes the dispenser's card while it is in
/// the reader (spine-sim serves the new CRL). Within the refresh interval the daemon holds the
/// new CRL and checks the card in the reader again, so it is refused as revoked without being
/// taken out; inserted again, it is refused at once and cannot log in. Without the refresh the
/// revoked card would pass on the start-up CRL.
async fn revoked_while_running(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|config| config.card.crl_refresh_seconds = 1).await?;
    let RunningDaemon { world, agent, .. } = &running;
    let dispenser = world.card(DISPENSER).or_fail("card")?;

    // First, before the revocation: the card is fine.
    let inserted = insert_and_read(
        lab,
        ReaderSlot::First,
        dispenser.clone(),
        agent,
        DISPENSER.1,
    )
    .await?;
    let before = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(before.reason == "not-logged-in", || {
        format!("the card was not usable before the revocation: {before:?}")
    })?;

    let revoked = cardgate_vcard::provision::RevokedCard::all_of(
        &dispenser,
        time::OffsetDateTime::now_utc() - time::Duration::seconds(5),
    )
    .or_fail("revoking")?;
    cardgate_vcard::provision::record_revocations(&world.dir().join("card-ca"), &revoked)
        .or_fail("recording the revocation")?;
    // Still in the reader: the next refresh (every second here) checks it again.
    wait_for("the card in the reader to be refused as revoked", || {
        let agent = agent.clone();
        async move {
            agent
                .authorise("download", DEMO_ODS)
                .await
                .is_ok_and(|a| a.reason == "certificate-revoked")
        }
    })
    .await?;
    inserted.remove().or_fail("removing")?;
    wait_for("the card to be gone", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.is_ok_and(|h| h.is_empty()) }
    })
    .await?;

    let _again = insert_and_read(lab, ReaderSlot::First, dispenser, agent, DISPENSER.1).await?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(answer.reason == "certificate-revoked", || {
        format!("a revoked card was not refused as revoked: {answer:?}")
    })?;
    let refused = agent.login(DEMO_PASSCODE, false).await;
    check(refused.is_err(), || {
        format!("a revoked card logged in: {refused:?}")
    })?;
    running.stop().await.map(|_| ())
}

/// A holder whose passcode the directory says expires in ten days.
const EXPIRING: (&str, &str) = ("Priya Shah", "555000999000");

/// The endpoint's session carries the passcode expiry; at log-in the daemon signals
/// `PasscodeExpiring` with the days left and what to do, and `Status` lists it as a warning.
/// The demo pharmacist (no expiry in the directory) gets no such signal.
async fn expiring_at_log_in(lab: &mut Lab) -> Result<(), Failed> {
    let expires =
        time::OffsetDateTime::now_utc() + time::Duration::days(10) + time::Duration::hours(1);
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .or_fail("format")?;
    let extra = format!(
        r#"
[[users]]
uid = "{uid}"
name = "{name}"
passcode_expires_at = "{expires}"
[[users.role_profiles]]
id = "RP-PS-FA123"
job_role = "Pharmacist"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download"]
"#,
        uid = EXPIRING.1,
        name = EXPIRING.0,
    );
    let running = RunningDaemon::start_with(&extra, |_| {}).await?;
    let RunningDaemon { world, agent, .. } = &running;
    let mut expiring = agent
        .receive_passcode_expiring()
        .await
        .or_fail("PasscodeExpiring stream")?;

    for (holder, expect_signal) in [(PHARMACIST, false), (EXPIRING, true)] {
        let card = world.card(holder).or_fail("card")?;
        let inserted = insert_and_read(lab, ReaderSlot::First, card, agent, holder.1).await?;
        agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;
        let signal = tokio::time::timeout(Duration::from_millis(500), expiring.next()).await;
        match (expect_signal, signal) {
            (false, Err(_)) => {}
            (true, Ok(Some(signal))) => {
                let args = signal.args().or_fail("args")?;
                check(args.days_left == 10, || {
                    format!("days_left {}", args.days_left)
                })?;
                check(
                    args.message.contains("10 days")
                        && args.message.contains("cardgate passcode change"),
                    || args.message.to_string(),
                )?;
                let status = agent.status().await.or_fail("Status")?;
                check(
                    format!("{status:?}").contains("Your passcode expires in 10 days"),
                    || format!("Status has no passcode warning: {status:?}"),
                )?;
            }
            (_, other) => {
                return Err(format!(
                    "{}: expected a PasscodeExpiring signal: {expect_signal}, got {:?}",
                    holder.0,
                    other.map(|s| s.map(|s| s.args().map(|a| a.message.to_string())))
                )
                .into());
            }
        }
        agent.logout().await.or_fail("Logout")?;
        inserted.remove().or_fail("removing")?;
        wait_for("the card to be gone", || {
            let agent = agent.clone();
            async move { agent.holder_uuid().await.is_ok_and(|h| h.is_empty()) }
        })
        .await?;
    }
    running.stop().await.map(|_| ())
}

/// A Sponsor at FA123 whose role allows Temporary Access Cards, for a staff call.
const SPONSOR: (&str, &str) = ("Dev Shah", "555000777888");

/// spine-sim's clock moves past its idle limit (the workstation's own timer has not run
/// out): the next endpoint call in the session (a role change, then in a second session a
/// staff task) is told the session is over, and the daemon ends its own session as
/// `endpoint-ended` instead of carrying on with a dead ticket; decisions after that are
/// refused.
async fn idled_out_at_the_endpoint(lab: &mut Lab) -> Result<(), Failed> {
    let sponsor_toml = format!(
        r#"
[[users]]
uid = "{}"
name = "{}"
[[users.role_profiles]]
id = "RP-LSA-FA123"
job_role = "Sponsor"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download", "admin.tac"]
"#,
        SPONSOR.1, SPONSOR.0
    );
    let running = RunningDaemon::start_with(&sponsor_toml, |_| {}).await?;
    let RunningDaemon { world, agent, .. } = &running;
    let mut ended = agent
        .receive_session_ended()
        .await
        .or_fail("SessionEnded stream")?;
    let card = world.card(PHARMACIST).or_fail("card")?;
    let inserted = insert_and_read(lab, ReaderSlot::First, card, agent, PHARMACIST.1).await?;
    agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;
    agent
        .select_role_profile("RP-PHARM-FA123")
        .await
        .or_fail("SelectRoleProfile")?;
    world.sim().advance_clock(Duration::from_secs(901));
    let refused = agent.select_role_profile("RP-LOCUM-FFFFF").await;
    ended_by_the_endpoint(&refused, &mut ended, "a role change").await?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(answer.reason == "not-logged-in", || format!("{answer:?}"))?;
    tokio::task::spawn_blocking(move || inserted.remove())
        .await
        .or_fail("remove task")?
        .or_fail("remove")?;

    // A staff task (reading a TAC) in a session the endpoint has idled out: the same.
    let card = world.card(SPONSOR).or_fail("card")?;
    let _inserted = insert_and_read(lab, ReaderSlot::First, card, agent, SPONSOR.1).await?;
    agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;
    agent
        .select_role_profile("RP-LSA-FA123")
        .await
        .or_fail("SelectRoleProfile")?;
    let staff = cardgate_ipc::AgentStaffProxy::builder(agent.inner().connection())
        .build()
        .await
        .or_fail("staff proxy")?;
    world.sim().advance_clock(Duration::from_secs(901));
    let refused = staff.tac_read("4000000001").await;
    ended_by_the_endpoint(&refused, &mut ended, "a TAC read").await?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(answer.reason == "not-logged-in", || format!("{answer:?}"))?;
    let audit = running.stop().await?;
    let ended_there = audit.matches(r#""reason":"endpoint_ended""#).count();
    check(ended_there == 2, || {
        format!("{ended_there} session ends on the audit trail as endpoint_ended, 2 expected")
    })
}

/// `refused` is `NotLoggedIn` and `SessionEnded(endpoint-ended)` follows within 2 s.
async fn ended_by_the_endpoint<T: std::fmt::Debug>(
    refused: &zbus::Result<T>,
    ended: &mut cardgate_ipc::SessionEndedStream,
    what: &str,
) -> Result<(), Failed> {
    check(
        matches!(refused, Err(zbus::Error::MethodError(name, _, _)) if name.ends_with("Error.NotLoggedIn")),
        || format!("{what} in a session the endpoint ended: {refused:?}"),
    )?;
    let signal = tokio::time::timeout(Duration::from_secs(2), ended.next())
        .await
        .map_err(|_| Failed::from(format!("no SessionEnded after {what}")))?
        .ok_or("SessionEnded stream ended")?;
    let reason = signal.args().or_fail("args")?.reason.to_string();
    check(reason == "endpoint-ended", || {
        format!("SessionEnded({reason}) after {what}")
    })
}
