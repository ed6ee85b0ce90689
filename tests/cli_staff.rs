//! End-to-end: the staff tasks of the `cardgate` CLI (`passcode change`, the three `unlock`
//! paths, `renew`, `tac`) as a separate process against the real `cardgated` on a private
//! `dbus-daemon`, watching this binary's own lab pcscd with virtual PIV cards in the vpcd
//! readers, at an in-process spine-sim that knows a holder with a registered email, a
//! Sponsor/LSA, an old-generation card and every card's unlock code.
//!
//! The CLI process is this test binary re-run with `CARDGATE_E2E_AS_CLI=1` (its `main` is then
//! exactly `cardgate_cli::main()`), or `CARDGATE_BIN` if set, as in `cli_e2e.rs`. Setup steps
//! that are not under test (blocking a card with wrong passcodes, logging the sponsor in) go
//! through the client proxy; every staff task goes through the CLI.
#![allow(clippy::unwrap_used)]

use std::process::ExitCode;

use cardgate_demo::DEMO_PASSCODE;
use cardgate_e2e::cli_process::{Run, run_cli_async};
use cardgate_e2e::daemon_harness::{OrFail as _, RunningDaemon, wait_for};
use cardgate_e2e::{TEST_MANAGEMENT_KEY, async_lab_trial, check, run_cli_or_lab_suite};
use cardgate_ipc::AgentProxy;
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::provision::{CardSpec, Validity};
use libtest_mimic::Failed;
use serde_json::Value;

/// A holder with a registered email (self-service works), pharmacist at FA123.
const CARA: (&str, &str, &str) = ("Cara Jones", "555000555666", "6516770101");
/// A Sponsor/LSA at FA123 (admin.unlock, admin.tac).
const DEV: (&str, &str, &str) = ("Dev Shah", "555000777888", "6516770102");
/// An old-generation card (number begins 02), registered email.
const EVE: (&str, &str, &str) = ("Eve Moss", "555000999000", "0212345678");
/// A holder with no registered contact: self-service is refused.
const FINN: (&str, &str, &str) = ("Finn Hale", "555000121212", "6516770104");
/// The test cards' unlock code, which spine-sim holds for each card.
const UNLOCK_CODE: &str = cardgate_e2e::TEST_UNLOCK_CODE;
const SPONSOR_ROLE: &str = "RP-LSA-FA123";
const CARA_ROLE: &str = "RP-CARA-FA123";

fn main() -> ExitCode {
    run_cli_or_lab_suite(|| {
        vec![
            async_lab_trial(
                "unlock_self_service_with_the_outbox_code_then_ra_code_then_sponsor_never_own_card",
                unlock_paths_async,
            ),
            async_lab_trial(
                "renew_writes_a_new_certificate_the_endpoint_accepts_and_refuses_old_and_not_due_cards",
                renewal_async,
            ),
            async_lab_trial(
                "tac_activate_record_use_return_and_passcode_change_and_bad_arguments",
                tac_and_passcode_async,
            ),
        ]
    })
}

fn extra_sim_toml() -> String {
    let user = |(name, uid, _): (&str, &str, &str), contact: &str, role: &str, activities: &str| {
        format!(
            r#"
[[users]]
uid = "{uid}"
name = "{name}"
{contact}
[[users.role_profiles]]
id = "{role}"
job_role = "Pharmacist"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = [{activities}]
"#
        )
    };
    let card = |(_, uid, serial): (&str, &str, &str)| {
        format!(
            "\n[[cards]]\nserial = \"{serial}\"\nuid = \"{uid}\"\nunlock_code = \"{UNLOCK_CODE}\"\n"
        )
    };
    let mut toml = String::new();
    toml += &user(
        CARA,
        "email = \"cara.jones@nhs.example\"",
        CARA_ROLE,
        "\"eps.download\"",
    );
    toml += &user(
        DEV,
        "",
        SPONSOR_ROLE,
        "\"eps.download\", \"admin.unlock\", \"admin.tac\"",
    );
    toml += &user(
        EVE,
        "email = \"eve.moss@nhs.example\"",
        "RP-EVE-FA123",
        "\"eps.download\"",
    );
    toml += &user(FINN, "", "RP-FINN-FA123", "\"eps.download\"");
    for c in [CARA, DEV, EVE, FINN] {
        toml += &card(c);
    }
    toml
}

/// The daemon with the staff world and the management key configured.
async fn start() -> Result<RunningDaemon, Failed> {
    let key_dir = tempfile::tempdir().or_fail("tempdir")?;
    let key_path = key_dir.keep().join("management-key.hex");
    std::fs::write(&key_path, hex::encode(TEST_MANAGEMENT_KEY)).or_fail("key file")?;
    RunningDaemon::start_with(&extra_sim_toml(), move |config| {
        config.renewal.management_key = Some(key_path);
    })
    .await
}

fn card(
    running: &RunningDaemon,
    who: (&str, &str, &str),
    validity: Validity,
) -> Result<PivApplet, Failed> {
    let spec = CardSpec::new(who.0, who.1)
        .card_serial(who.2)
        .pin(DEMO_PASSCODE)
        .puk(UNLOCK_CODE)
        .management_key(&TEST_MANAGEMENT_KEY)
        .validity(validity);
    Ok(PivApplet::new(
        running.world.card_from(&spec).or_fail("card")?,
    ))
}

/// `cardgate --json` with the words of `line` (split at spaces) and `stdin`.
async fn json(address: &str, line: &str, stdin: &str) -> Result<Run, Failed> {
    let mut args = vec!["--json"];
    args.extend(line.split_whitespace());
    cli(address, &args, stdin).await
}

/// Runs `cardgate --bus ADDRESS ARGS` with `stdin` on a blocking thread, so the daemon keeps
/// serving meanwhile.
async fn cli(address: &str, args: &[&str], stdin: &str) -> Result<Run, Failed> {
    let mut all = vec!["--bus".to_owned(), address.to_owned()];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    run_cli_async(all, Some(stdin.to_owned())).await
}

async fn wait_holder(agent: &AgentProxy<'static>, uid: &str) -> Result<(), Failed> {
    let uid = uid.to_owned();
    wait_for(&format!("holder {uid} to be read"), || {
        let agent = agent.clone();
        let uid = uid.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == uid }
    })
    .await
}

async fn wait_state(agent: &AgentProxy<'static>, state: &str) -> Result<(), Failed> {
    let state = state.to_owned();
    wait_for(&format!("State {state}"), || {
        let agent = agent.clone();
        let state = state.clone();
        async move { agent.state().await.unwrap_or_default() == state }
    })
    .await
}

/// Locks the card in the reader with three different wrong passcodes (the last confirmed).
async fn block(agent: &AgentProxy<'static>, wrong: [&str; 3]) -> Result<(), Failed> {
    for (i, value) in wrong.iter().enumerate() {
        let result = agent.login(value, i == 2).await;
        check(result.is_err(), || {
            format!("wrong passcode {value} accepted")
        })?;
    }
    wait_state(agent, "card-locked").await
}

/// Logs in through the proxy and selects `role` (setup, not under test).
async fn log_in(agent: &AgentProxy<'static>, passcode: &str, role: &str) -> Result<(), Failed> {
    agent.login(passcode, false).await.or_fail("login")?;
    agent.select_role_profile(role).await.or_fail("role")
}

/// The one-time code of the newest outbox message for `uid`.
fn outbox_code(running: &RunningDaemon, uid: &str) -> Result<String, Failed> {
    let path = running.world.dir().join("outbox.jsonl");
    let text = std::fs::read_to_string(&path).or_fail("outbox")?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["uid"] == uid)
        .and_then(|m| m["one_time_code"].as_str().map(str::to_owned))
        .ok_or_else(|| Failed::from(format!("no outbox message for {uid}:\n{text}")))
}

fn expect_ok(run: &Run, what: &str) -> Result<(), Failed> {
    check(run.code == 0 && run.json()["ok"] == true, || {
        format!("{what}:\n{run}")
    })
}

fn expect_error(run: &Run, code: &str, what: &str) -> Result<(), Failed> {
    check(run.code != 0 && run.error() == code, || {
        format!("{what}: wanted {code}\n{run}")
    })
}

// ------------------------------------------------------------------ unlock

async fn unlock_paths_async(lab: &mut Lab) -> Result<(), Failed> {
    let running = start().await?;
    let (agent, bus) = (&running.agent, running.address.as_str());

    // Cara's card, locked by three wrong passcodes.
    let cara = lab
        .insert(
            ReaderSlot::First,
            Box::new(card(&running, CARA, Validity::Default)?),
        )
        .or_fail("insert")?;
    wait_holder(agent, CARA.1).await?;
    block(agent, ["000000", "111111", "222222"]).await?;

    // The locked card's messages list the paths open to this holder, in order.
    let status = json(bus, "status", "").await?;
    let warnings = status.json()["warnings"].to_string();
    let (a, b, c) = (
        warnings.find("cardgate unlock`"),
        warnings.find("--sponsor"),
        warnings.find("--code"),
    );
    check(a < b && b < c && a.is_some(), || {
        format!("status of a locked card does not list the three paths in order:\n{status}")
    })?;
    let login = json(bus, "login --passcode-stdin", &format!("{DEMO_PASSCODE}\n")).await?;
    check(
        login.error() == "CardBlocked" && login.stdout.contains("Registration Authority"),
        || format!("login on a locked card:\n{login}"),
    )?;

    // Path 1, self-service: the code goes to the registered email (the sim's outbox).
    let started = json(bus, "unlock", "").await?;
    expect_ok(&started, "self-service start")?;
    let request_id = started.json()["request_id"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    check(
        started.json()["sent_to"]
            .as_str()
            .unwrap_or("")
            .contains("***"),
        || format!("sent_to not masked:\n{started}"),
    )?;
    let code = outbox_code(&running, CARA.1)?;
    // A malformed one-time code is named and costs nothing.
    let bad = json(
        bus,
        &format!("unlock --request-id {request_id} --secrets-stdin"),
        "12ab\n5836xz\n5836xz\n",
    )
    .await?;
    expect_error(&bad, "InvalidArgument", "malformed one-time code")?;
    check(
        bad.stdout.contains("one_time_code") && !bad.stdout.contains("12ab"),
        || format!("the error must name the argument, never echo it:\n{bad}"),
    )?;
    let done = json(
        bus,
        &format!("unlock --request-id {request_id} --secrets-stdin"),
        &format!("{code}\n5836xz\n5836xz\n"),
    )
    .await?;
    expect_ok(&done, "self-service confirm")?;
    wait_state(agent, "card-present").await?;
    check(agent.passcode_tries_left().await.unwrap_or(-1) == 3, || {
        "tries not back to 3 after self-service unlock".into()
    })?;

    // Path 3, the RA's code: lock again, a malformed code costs nothing, the right one unlocks.
    block(agent, ["333333", "444444", "555555"]).await?;
    let bad = json(
        bus,
        "unlock --code --secrets-stdin",
        "123\n7291ab\n7291ab\n",
    )
    .await?;
    expect_error(&bad, "InvalidArgument", "malformed unlock code")?;
    check(bad.stdout.contains("unlock_code"), || format!("{bad}"))?;
    let mismatch = json(
        bus,
        "unlock --code --secrets-stdin",
        &format!("{UNLOCK_CODE}\n7291ab\n7291ac\n"),
    )
    .await?;
    check(mismatch.code != 0 && mismatch.error() == "usage", || {
        format!("two different new passcodes:\n{mismatch}")
    })?;
    let ra = json(
        bus,
        "unlock --code --secrets-stdin",
        &format!("{UNLOCK_CODE}\n7291ab\n7291ab\n"),
    )
    .await?;
    expect_ok(&ra, "RA unlock")?;
    wait_state(agent, "card-present").await?;
    agent
        .login("7291ab", false)
        .await
        .or_fail("login with the passcode set at the RA unlock")?;
    agent.logout().await.or_fail("logout")?;

    // Path 2, a Sponsor: lock Cara's card again, move it to the second reader, the sponsor
    // logs in with their own card in the first.
    block(agent, ["666666", "777777", "888888"]).await?;
    let cara_card = cara.remove().or_fail("remove")?;
    wait_state(agent, "no-card").await?;
    let dev = lab
        .insert(
            ReaderSlot::First,
            Box::new(card(&running, DEV, Validity::Default)?),
        )
        .or_fail("insert sponsor")?;
    wait_holder(agent, DEV.1).await?;
    log_in(agent, DEMO_PASSCODE, SPONSOR_ROLE).await?;
    let cara = lab
        .insert(ReaderSlot::Second, cara_card)
        .or_fail("insert holder")?;
    wait_for("both cards in", || {
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
    // Give the agent a moment to read the holder's card (the sponsor's session stays put).
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;

    // Never the sponsor's own card: NotEligible (the agent refuses before asking the endpoint,
    // which would refuse too; this suite cannot tell the two apart).
    let own = json(
        bus,
        &format!(
            "unlock --sponsor --holder {} --card {} --secrets-stdin",
            DEV.1, DEV.2
        ),
        "4826pq\n4826pq\n",
    )
    .await?;
    expect_error(&own, "NotEligible", "sponsor unlocking their own card")?;
    let bad = json(
        bus,
        &format!(
            "unlock --sponsor --holder 12345 --card {} --secrets-stdin",
            CARA.2
        ),
        "4826pq\n4826pq\n",
    )
    .await?;
    expect_error(&bad, "InvalidArgument", "malformed holder UUID")?;
    check(bad.stdout.contains("holder_uuid"), || format!("{bad}"))?;
    let sponsor = json(
        bus,
        &format!(
            "unlock --sponsor --holder {} --card {} --secrets-stdin",
            CARA.1, CARA.2
        ),
        "4826pq\n4826pq\n",
    )
    .await?;
    expect_ok(&sponsor, "sponsor unlock")?;
    agent.logout().await.or_fail("sponsor logout")?;
    dev.remove().or_fail("remove sponsor")?;
    wait_holder(agent, CARA.1).await?;
    agent
        .login("4826pq", false)
        .await
        .or_fail("login with the passcode set at the sponsor unlock")?;
    agent.logout().await.or_fail("logout")?;
    cara.remove().or_fail("remove")?;

    // Old-generation cards cannot be unlocked: told at once.
    let eve = lab
        .insert(
            ReaderSlot::First,
            Box::new(card(&running, EVE, Validity::Default)?),
        )
        .or_fail("insert")?;
    wait_holder(agent, EVE.1).await?;
    let old = json(bus, "unlock", "").await?;
    expect_error(
        &old,
        "NotEligible",
        "self-service on an old-generation card",
    )?;
    check(old.stdout.contains("01, 02 or 03"), || format!("{old}"))?;
    eve.remove().or_fail("remove")?;

    // No registered contact: self-service is refused with the endpoint's reason.
    let finn = lab
        .insert(
            ReaderSlot::First,
            Box::new(card(&running, FINN, Validity::Default)?),
        )
        .or_fail("insert")?;
    wait_holder(agent, FINN.1).await?;
    let none = json(bus, "unlock", "").await?;
    expect_error(
        &none,
        "NotEligible",
        "self-service without a registered contact",
    )?;
    finn.remove().or_fail("remove")?;

    let audit = running.stop().await?;
    for needle in [
        "\"path\":\"self_service\"",
        "\"path\":\"registration_authority\"",
        "\"path\":\"sponsor\"",
        "\"outcome\":\"succeeded\"",
        "\"outcome\":\"refused\"",
    ] {
        check(audit.contains(needle), || format!("audit lacks {needle}"))?;
    }
    for secret in [
        UNLOCK_CODE,
        "5836xz",
        "7291ab",
        "4826pq",
        code.as_str(),
        DEMO_PASSCODE,
    ] {
        check(!audit.contains(secret), || {
            "a secret reached the audit trail".to_owned()
        })?;
    }
    Ok(())
}

// ------------------------------------------------------------------ renewal

async fn renewal_async(lab: &mut Lab) -> Result<(), Failed> {
    let running = start().await?;
    let (agent, bus) = (&running.agent, running.address.as_str());

    // Not logged in: said so, nothing touched.
    let cara = lab
        .insert(
            ReaderSlot::First,
            Box::new(card(&running, CARA, Validity::ExpiresInDays(30))?),
        )
        .or_fail("insert")?;
    wait_holder(agent, CARA.1).await?;
    let early = json(bus, "renew", "").await?;
    expect_error(&early, "NotLoggedIn", "renew without a session")?;

    let old_not_after = agent.certificate_not_after().await.or_fail("expiry")?;
    let login = json(
        bus,
        &format!("login --passcode-stdin --role {}", CARA_ROLE),
        &format!("{DEMO_PASSCODE}\n"),
    )
    .await?;
    expect_ok(&login, "login")?;
    // pcscd powers a card no program has connected down after well under a second, and the
    // power cycle resets its security status: the session keeps the card connected
    // (daemon/src/actor.rs), so a renewal a while after the log-in still finds the passcode
    // verified. Without the hold this renewal fails with 6982.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let renewed = json(bus, "renew", "").await?;
    expect_ok(&renewed, "renew")?;
    let steps = renewed.json()["steps"].to_string();
    check(
        [
            "generating-key",
            "requesting-certificate",
            "writing-certificate",
            "done",
        ]
        .iter()
        .all(|s| steps.contains(s)),
        || format!("progress steps missing:\n{renewed}"),
    )?;
    let new_not_after = renewed.json()["certificate_not_after"]
        .as_i64()
        .unwrap_or(0);
    check(new_not_after > old_not_after + 600 * 86_400, || {
        format!("new expiry {new_not_after} vs old {old_not_after}")
    })?;
    // The card itself holds it (read back by the agent through pcscd), the session carries on,
    // and the endpoint accepts the new key and certificate at a fresh log-in.
    let on_card = agent.certificate_not_after().await.or_fail("expiry")?;
    check(on_card == new_not_after, || {
        format!("the card reads {on_card}, renewal said {new_not_after}")
    })?;
    check(
        agent.state().await.unwrap_or_default() == "logged-in",
        || "the session did not survive renewal".into(),
    )?;
    agent.logout().await.or_fail("logout")?;
    login_fresh(agent).await?;
    // Renewed: not due any more.
    let again = json(bus, "renew", "").await?;
    expect_error(&again, "NotEligible", "renewing a fresh certificate")?;
    check(again.stdout.contains("not due"), || format!("{again}"))?;
    agent.logout().await.or_fail("logout")?;
    cara.remove().or_fail("remove")?;

    // Old generation: refused with the reason, before the card's key is touched.
    let eve = lab
        .insert(
            ReaderSlot::First,
            Box::new(card(&running, EVE, Validity::ExpiresInDays(30))?),
        )
        .or_fail("insert")?;
    wait_holder(agent, EVE.1).await?;
    log_in(agent, DEMO_PASSCODE, "RP-EVE-FA123").await?;
    let before = agent.certificate_not_after().await.unwrap_or(0);
    let old = json(bus, "renew", "").await?;
    expect_error(&old, "NotEligible", "renewing an old-generation card")?;
    check(old.stdout.contains("01, 02 or 03"), || format!("{old}"))?;
    // Its key is untouched: the endpoint still accepts a fresh log-in with it.
    agent.logout().await.or_fail("logout")?;
    log_in(agent, DEMO_PASSCODE, "RP-EVE-FA123").await?;
    check(
        agent.certificate_not_after().await.unwrap_or(0) == before,
        || "the old-generation card's certificate changed".into(),
    )?;
    agent.logout().await.or_fail("logout")?;
    eve.remove().or_fail("remove")?;

    let audit = running.stop().await?;
    check(
        audit.contains("\"subject\":\"certificates\"")
            && audit.contains("\"outcome\":\"succeeded\""),
        || "no successful renewal on the audit trail".into(),
    )?;
    check(audit.contains("\"outcome\":\"refused\""), || {
        "no refused renewal on the audit trail".into()
    })?;
    Ok(())
}

async fn login_fresh(agent: &AgentProxy<'static>) -> Result<(), Failed> {
    log_in(agent, DEMO_PASSCODE, CARA_ROLE).await.map_err(|e| {
        Failed::from(format!(
            "log-in with the renewed certificate and key: {}",
            e.message().unwrap_or("")
        ))
    })
}

// ------------------------------------------------------------------ TAC, passcode, arguments

async fn tac_and_passcode_async(lab: &mut Lab) -> Result<(), Failed> {
    let running = start().await?;
    let (agent, bus) = (&running.agent, running.address.as_str());

    // Without a session: TACs need the sponsor logged in.
    let none = json(bus, "tac show 4000000001", "").await?;
    expect_error(&none, "NotLoggedIn", "TAC without a session")?;

    let dev = lab
        .insert(
            ReaderSlot::First,
            Box::new(card(&running, DEV, Validity::Default)?),
        )
        .or_fail("insert")?;
    wait_holder(agent, DEV.1).await?;

    // Passcode change: the policy said first, new passcode twice, then it works.
    let changed = cli(
        bus,
        &["passcode", "change", "--secrets-stdin"],
        &format!("{DEMO_PASSCODE}\nq7w8e9\nq7w8e9\n"),
    )
    .await?;
    check(
        changed.code == 0 && changed.stderr.contains("4 to 8 letters or digits"),
        || format!("passcode change:\n{changed}"),
    )?;
    let bad = json(bus, "passcode change --secrets-stdin", "q7w8e9\nab\nab\n").await?;
    check(bad.error() == "usage", || {
        format!("short new passcode:\n{bad}")
    })?;
    let tries = agent.passcode_tries_left().await.unwrap_or(-1);
    check(tries == 3, || {
        format!("a refused change spent a try: {tries}")
    })?;
    log_in(agent, "q7w8e9", SPONSOR_ROLE).await?;

    // The TAC lifecycle with the custodian's register (a custodian's name has spaces).
    let (serial, finn) = ("4000000001", FINN.1);
    let activate = [
        "--json",
        "tac",
        "activate",
        serial,
        "--holder",
        finn,
        "--custodian",
        "Pharmacy manager",
    ];
    let activated = cli(bus, &activate, "").await?;
    expect_ok(&activated, "TAC activate")?;
    check(activated.json()["tac"]["state"] == "active", || {
        format!("{activated}")
    })?;
    let twice = cli(bus, &activate, "").await?;
    expect_error(&twice, "NotEligible", "activating an active TAC")?;
    let (nine, half_five) = ("2026-11-23T09:00:00Z", "2026-11-23T17:30:00Z");
    let record_use = |from: &str, until: &str| {
        format!("tac record-use {serial} --used-by {finn} --from {from} --until {until}")
    };
    let used = json(bus, &record_use(nine, half_five), "").await?;
    expect_ok(&used, "TAC record-use")?;
    let backwards = json(bus, &record_use(half_five, nine), "").await?;
    expect_error(&backwards, "InvalidArgument", "until before from")?;
    let returned = json(bus, &format!("tac return {serial}"), "").await?;
    expect_ok(&returned, "TAC return")?;
    let shown = cli(bus, &["tac", "show", serial], "").await?;
    check(
        shown.code == 0
            && shown.stdout.contains("blank")
            && shown.stdout.contains(FINN.1)
            && shown.stdout.contains("returned"),
        || format!("the register must outlive the return:\n{shown}"),
    )?;
    let record = json(bus, &format!("tac show {serial}"), "").await?;
    check(
        record.json()["tac"]["usage"].as_array().map(Vec::len) == Some(1),
        || format!("{record}"),
    )?;

    // Bad arguments: named, through the CLI and straight over the bus (busctl).
    let bad = json(bus, "tac show 12ab", "").await?;
    expect_error(&bad, "InvalidArgument", "non-digit TAC serial")?;
    check(bad.stdout.contains("tac_serial"), || format!("{bad}"))?;
    let bad = json(
        bus,
        &format!("tac activate {serial} --holder 1234 --custodian x"),
        "",
    )
    .await?;
    expect_error(&bad, "InvalidArgument", "short holder UUID")?;
    let bad_time = json(bus, &record_use("yesterday", "now"), "").await?;
    check(bad_time.code == 2 && bad_time.error() == "usage", || {
        format!("{bad_time}")
    })?;
    let call = "org.cardgate.Agent /org/cardgate/Agent org.cardgate.Agent1";
    for (method, signature, args, named) in [
        (
            "UnlockWithCode",
            "ssb",
            vec!["12", "123456", "false"],
            "unlock_code",
        ),
        (
            "UnlockWithCode",
            "ssb",
            vec![UNLOCK_CODE, "1", "false"],
            "new_passcode",
        ),
        (
            "UnlockWithOneTimeCode",
            "sss",
            vec!["r 1", "123456", "123456"],
            "request_id",
        ),
        (
            "SponsorUnlock",
            "sss",
            vec![CARA.1, "bad serial!", "123456"],
            "card_serial",
        ),
        (
            "TacRecordUse",
            "ssxx",
            vec![serial, FINN.1, "0", "10"],
            "from",
        ),
        ("TacActivate", "sss", vec![serial, FINN.1, ""], "custodian"),
    ] {
        let mut command = vec![format!("--address={bus}"), "call".to_owned()];
        command.extend(call.split(' ').map(str::to_owned));
        command.push(method.to_owned());
        command.push(signature.to_owned());
        command.extend(args.iter().map(|s| (*s).to_owned()));
        let output = std::process::Command::new("busctl")
            .args(&command)
            .output()
            .or_fail("busctl")?;
        let text = String::from_utf8_lossy(&output.stderr).into_owned();
        check(!output.status.success() && text.contains(named), || {
            format!("busctl {method} {args:?}: wanted an error naming {named}, got: {text}")
        })?;
    }
    let tries = agent.passcode_tries_left().await.unwrap_or(-1);
    check(tries == -1 || tries == 3, || {
        format!("bad arguments spent a try: {tries}")
    })?;

    agent.logout().await.or_fail("logout")?;
    dev.remove().or_fail("remove")?;
    let audit = running.stop().await?;
    for kind in ["tac_activated", "tac_used", "tac_returned"] {
        check(audit.contains(kind), || format!("audit lacks {kind}"))?;
    }
    check(!audit.contains("q7w8e9"), || {
        "a passcode reached the audit trail".into()
    })?;
    Ok(())
}
