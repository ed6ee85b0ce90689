//! End-to-end: `cardgated` on a private `dbus-daemon`, watching the lab's real pcscd with
//! virtual PIV cards in the vpcd readers, logging in at an in-process spine-sim on loopback.
//! A scripted pharmacy day through the client proxy and through `busctl` as an independent
//! client; malformed calls to every method; no passcode on the audit trail afterwards.
#![allow(clippy::unwrap_used)]

use std::process::ExitCode;
use std::time::Duration;

use cardgate_e2e::daemon_harness::{RunningDaemon, fail, wait_for};
use cardgate_e2e::{check, lab_trial};
use cardgate_ipc::ACTIONS;
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::applet::PivApplet;
use cardgated::demo::{DEMO_ODS, DEMO_PASSCODE, DISPENSER, PHARMACIST};
use libtest_mimic::{Arguments, Failed};

fn main() -> ExitCode {
    cardgate_lab::enter_lab_namespace();
    let args = Arguments::from_args();
    let trials = vec![lab_trial(
        "pharmacy_day_through_dbus_pcscd_and_spine_sim",
        pharmacy_day,
    )];
    libtest_mimic::run(&args, trials).exit_code()
}

/// The named error of a failed call, e.g. `org.cardgate.Agent1.Error.NoCard`.
fn error_name<T: std::fmt::Debug>(result: zbus::Result<T>) -> String {
    match result {
        Ok(value) => format!("no error (got {value:?})"),
        Err(zbus::Error::MethodError(name, _, _)) => name.to_string(),
        Err(e) => format!("{e}"),
    }
}

fn busctl(address: &str, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new("busctl")
        .arg(format!("--address={address}"))
        .args(args)
        .output();
    match output {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("busctl could not run: {e}")),
    }
}

fn pharmacy_day(lab: &mut Lab) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail("runtime", e))?;
    runtime.block_on(day(lab))
}

async fn day(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let RunningDaemon {
        world,
        address,
        agent,
        ..
    } = &running;

    // Morning: no card yet.
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(!answer.allowed && answer.reason == "no-card", || {
        format!("{answer:?}")
    })?;

    // The pharmacist's card goes in.
    let pharmacist = world.card(PHARMACIST).map_err(|e| fail("card", e))?;
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(pharmacist)))
        .map_err(|e| fail("inserting the card", e))?;
    wait_for("the card to be read", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
    })
    .await?;
    let state = agent.state().await.map_err(|e| fail("State", e))?;
    check(state == "card-present", || format!("State {state}"))?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(answer.reason == "not-logged-in", || format!("{answer:?}"))?;

    // A malformed passcode costs nothing and is named.
    let tries_before = agent
        .passcode_tries_left()
        .await
        .map_err(|e| fail("tries", e))?;
    let bad = error_name(agent.login("12", false).await);
    check(bad.ends_with("Error.InvalidArgument"), || bad.clone())?;
    let tries_after = agent
        .passcode_tries_left()
        .await
        .map_err(|e| fail("tries", e))?;
    check(tries_before == tries_after, || {
        format!("tries {tries_before} -> {tries_after}")
    })?;

    // Log in: the card signs the TLS handshake at spine-sim.
    let mut ended = agent
        .receive_session_ended()
        .await
        .map_err(|e| fail("SessionEnded stream", e))?;
    let mut removed = agent
        .receive_card_removed()
        .await
        .map_err(|e| fail("CardRemoved stream", e))?;
    let roles = agent
        .login(DEMO_PASSCODE, false)
        .await
        .map_err(|e| fail("Login", e))?;
    check(roles.iter().any(|r| r.id == "RP-PHARM-FA123"), || {
        format!("{roles:?}")
    })?;
    let state = agent.state().await.map_err(|e| fail("State", e))?;
    check(state == "logged-in", || format!("State {state}"))?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(answer.reason == "no-role-selected", || {
        format!("{answer:?}")
    })?;

    let unknown = error_name(agent.select_role_profile("RP-NOT-MINE").await);
    check(unknown.ends_with("Error.UnknownRoleProfile"), || {
        unknown.clone()
    })?;
    agent
        .select_role_profile("RP-PHARM-FA123")
        .await
        .map_err(|e| fail("SelectRoleProfile", e))?;
    for action in ACTIONS {
        let answer = agent
            .authorise(action, DEMO_ODS)
            .await
            .map_err(|e| fail(action, e))?;
        check(answer.allowed && answer.reason == "allowed", || {
            format!("{action}: {answer:?}")
        })?;
    }
    let elsewhere = agent
        .authorise("download", "FQ999")
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(!elsewhere.allowed, || format!("{elsewhere:?}"))?;

    // busctl, an independent client, asks the same.
    let (ok, out) = busctl(
        address,
        &[
            "call",
            cardgate_ipc::BUS_NAME,
            cardgate_ipc::OBJECT_PATH,
            cardgate_ipc::INTERFACE,
            "Authorise",
            "ss",
            "download",
            DEMO_ODS,
        ],
    );
    check(ok && out.contains("true \"allowed\""), || {
        format!("busctl: {out}")
    })?;
    let ticket = agent.get_ticket().await.map_err(|e| fail("GetTicket", e))?;
    check(
        ticket.holder_uuid == PHARMACIST.1 && ticket.ods_code == DEMO_ODS,
        || format!("{ticket:?}"),
    )?;

    // Role change within the session (to the locum profile): download still allowed here.
    agent
        .select_role_profile("RP-LOCUM-FFFFF")
        .await
        .map_err(|e| fail("SelectRoleProfile locum", e))?;
    let answer = agent
        .authorise("claim", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(answer.reason == "missing-activity", || {
        format!("{answer:?}")
    })?;
    agent
        .select_role_profile("RP-PHARM-FA123")
        .await
        .map_err(|e| fail("SelectRoleProfile back", e))?;

    // The card leaves: CardRemoved, SessionEnded, and every answer is no-card.
    let generation_before = agent
        .session_generation()
        .await
        .map_err(|e| fail("gen", e))?;
    inserted
        .remove()
        .map_err(|e| fail("removing the card", e))?;
    use futures_lite::StreamExt as _;
    let signal = tokio::time::timeout(Duration::from_secs(5), removed.next())
        .await
        .map_err(|_| Failed::from("no CardRemoved signal within 5 s"))?
        .ok_or_else(|| Failed::from("CardRemoved stream ended"))?;
    let args = signal.args().map_err(|e| fail("CardRemoved args", e))?;
    check(args.generation > generation_before, || {
        format!(
            "CardRemoved generation {} not after {generation_before}",
            args.generation
        )
    })?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(!answer.allowed && answer.reason == "no-card", || {
        format!("{answer:?}")
    })?;
    check(answer.generation >= args.generation, || {
        format!("{answer:?}")
    })?;
    let end = tokio::time::timeout(Duration::from_secs(5), ended.next())
        .await
        .map_err(|_| Failed::from("no SessionEnded signal"))?
        .ok_or_else(|| Failed::from("SessionEnded stream ended"))?;
    let end = end.args().map_err(|e| fail("SessionEnded args", e))?;
    check(end.reason == "card-removed", || {
        format!("SessionEnded {}", end.reason)
    })?;

    // Another holder's card: nothing is inherited.
    let dispenser = world.card(DISPENSER).map_err(|e| fail("card", e))?;
    let _second = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(dispenser)))
        .map_err(|e| fail("inserting the second card", e))?;
    wait_for("the second card to be read", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == DISPENSER.1 }
    })
    .await?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(answer.reason == "not-logged-in", || format!("{answer:?}"))?;
    let role = agent
        .selected_role_profile()
        .await
        .map_err(|e| fail("role", e))?;
    check(role.id.is_empty(), || format!("{role:?}"))?;
    let ticket = error_name(agent.get_ticket().await);
    check(ticket.ends_with("Error.NotLoggedIn"), || ticket.clone())?;

    // Malformed calls to every method: a named error each, and the daemon stays up.
    let cases: Vec<(&str, String)> = vec![
        (
            "Authorise bad action",
            error_name(agent.authorise("fly", DEMO_ODS).await),
        ),
        (
            "Authorise bad ODS",
            error_name(agent.authorise("download", "").await),
        ),
        (
            "Authorise locum ODS",
            error_name(agent.authorise("download", "FA-1;").await),
        ),
        ("Login short", error_name(agent.login("", false).await)),
        (
            "Login long",
            error_name(agent.login("123456789", true).await),
        ),
        (
            "Login symbols",
            error_name(agent.login("12 4!", false).await),
        ),
        (
            "LoginWithPinPad on a plain reader",
            error_name(agent.login_with_pin_pad(false).await),
        ),
        (
            "SelectRoleProfile empty",
            error_name(agent.select_role_profile("").await),
        ),
        (
            "SelectRoleProfile no session",
            error_name(agent.select_role_profile("RP-DISP-FA123").await),
        ),
        ("Logout no session", error_name(agent.logout().await)),
        (
            "ChangePasscode bad",
            error_name(agent.change_passcode("1", "2", false).await),
        ),
        ("GetTicket no session", error_name(agent.get_ticket().await)),
    ];
    for (case, name) in &cases {
        check(name.starts_with("org.cardgate.Agent1.Error."), || {
            format!("{case}: {name}")
        })?;
    }
    // Wrong signatures, sent by busctl: refused by the bus layer, daemon unaffected.
    for args in [
        vec!["Authorise", "s", "download"],
        vec!["Login", "s", "k2468m"],
        vec!["SelectRoleProfile", "i", "4"],
        vec!["Authorise", "ii", "1", "2"],
    ] {
        let mut full = vec![
            "call",
            cardgate_ipc::BUS_NAME,
            cardgate_ipc::OBJECT_PATH,
            cardgate_ipc::INTERFACE,
        ];
        full.extend(args.iter().copied());
        let (ok, out) = busctl(address, &full);
        check(!ok, || format!("busctl {args:?} succeeded: {out}"))?;
    }
    let status = agent
        .status()
        .await
        .map_err(|e| fail("Status after abuse", e))?;
    check(status.contains_key("SessionGeneration"), || {
        format!("{status:?}")
    })?;
    let tries = agent
        .passcode_tries_left()
        .await
        .map_err(|e| fail("tries", e))?;
    check(tries == 3, || {
        format!("the dispenser's card lost tries: {tries}")
    })?;

    let audit = running.stop().await?;
    check(!audit.contains(DEMO_PASSCODE), || {
        "the passcode is on the audit trail".into()
    })?;
    check(audit.contains("authorisation_decision"), || {
        "no decisions audited".into()
    })?;
    check(audit.contains("passcode_attempt"), || {
        "no passcode attempt audited".into()
    })?;
    Ok(())
}
