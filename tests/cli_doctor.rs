//! End-to-end: `cardgate doctor` and `cardgate support-bundle` as separate processes in the
//! PC/SC lab (a real pcscd with vpcd readers and virtual PIV cards), reading the agent's
//! configuration file, reaching the in-process spine-sim over TLS and `cardgated` on a private
//! `dbus-daemon`. One trial per fault IT support meets (no pcscd, no reader, no card, a
//! blocked card, an expired certificate, the endpoint down, the agent not running), each
//! asserting that doctor's line for it FAILs, names the cause and gives a next step; and a
//! healthy workstation where every line is OK and the agent is not disturbed. The bundle is
//! checked for what a service desk asks for, and grepped for the passcodes typed and the
//! session ticket, which must not be in it.
//!
//! The CLI is this test binary re-run with `CARDGATE_E2E_AS_CLI=1` (its `main` is then
//! `cardgate_cli::main()`), as in `cli_e2e.rs`; `CARDGATE_BIN` runs an installed `cardgate`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_PASSCODE, DemoWorld, PHARMACIST, PrivateBus};
use cardgate_e2e::cli_process::{Run, run_cli_async};
use cardgate_e2e::daemon_harness::{OrFail as _, RunningDaemon, fail, wait_for};
use cardgate_e2e::{PcscClient, async_lab_trial, check, run_cli_or_lab_suite};
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::CardFile;
use cardgate_vcard::provision::{CardSpec, TestCa, Validity, provision};
use libtest_mimic::Failed;
use serde_json::Value;

fn main() -> ExitCode {
    run_cli_or_lab_suite(|| {
        vec![
            async_lab_trial("doctor_healthy_workstation_every_line_ok", healthy),
            async_lab_trial("doctor_no_pcscd_and_agent_not_running", no_pcscd),
            async_lab_trial("doctor_no_reader", no_reader),
            async_lab_trial("doctor_no_card", no_card),
            async_lab_trial("doctor_blocked_card", blocked_card),
            async_lab_trial("doctor_expired_certificate", expired_certificate),
            async_lab_trial("doctor_endpoint_down", endpoint_down),
            async_lab_trial(
                "support_bundle_has_the_facts_and_no_secrets",
                support_bundle,
            ),
        ]
    })
}

/// Runs the CLI on a blocking thread, so the daemon in this process keeps serving.
async fn cardgate(args: Vec<String>) -> Run {
    run_cli_async(args, None).await.unwrap()
}

/// Writes the agent's configuration for `world` (the demo's, as `cardgated` would read it)
/// serving on `bus`, optionally with another endpoint URL; returns its path.
fn write_config(world: &DemoWorld, bus: &str, endpoint: Option<&str>) -> Result<PathBuf, Failed> {
    let dir = world.dir().display().to_string();
    let url = endpoint
        .map(str::to_owned)
        .unwrap_or_else(|| world.sim().url());
    let mtls = endpoint
        .map(str::to_owned)
        .unwrap_or_else(|| world.sim().mtls_url());
    let text = cardgate_demo::DEMO_CONFIG
        .replace("\"unix:path=@DEMO_DIR@/bus\"", &format!("\"{bus}\""))
        .replace("@DEMO_DIR@", &dir)
        .replace("@ENDPOINT_URL@", &url)
        .replace("@ENDPOINT_MTLS_URL@", &mtls);
    // The file must be one the agent itself accepts.
    cardgated::Config::from_toml(&text).or_fail("the doctor's config")?;
    let path = world.dir().join("doctor-cardgated.toml");
    std::fs::write(&path, text).or_fail("writing the config")?;
    Ok(path)
}

/// `cardgate --json doctor --config CONFIG`, parsed; also the plain run, for the words.
async fn doctor(config: &Path) -> Result<(Run, Value, Run), Failed> {
    let config = config.display().to_string();
    let json_run = cardgate(vec![
        "--json".into(),
        "doctor".into(),
        "--config".into(),
        config.clone(),
    ])
    .await;
    let value: Value = serde_json::from_str(json_run.stdout.trim())
        .map_err(|e| fail(&format!("doctor --json is JSON ({json_run})"), e))?;
    let plain = cardgate(vec!["doctor".into(), "--config".into(), config]).await;
    check(plain.code == json_run.code, || {
        format!("plain and --json exit codes differ:\n{plain}\n{json_run}")
    })?;
    Ok((json_run, value, plain))
}

/// The line for `check`: (verdict, summary, next step).
fn line(report: &Value, id: &str) -> Result<(String, String, String), Failed> {
    let checks = report["checks"]
        .as_array()
        .ok_or_else(|| Failed::from(format!("no checks in {report}")))?;
    let found = checks
        .iter()
        .find(|c| c["check"] == id)
        .ok_or_else(|| Failed::from(format!("no {id} line in {report}")))?;
    Ok((
        found["verdict"].as_str().unwrap_or_default().to_owned(),
        found["summary"].as_str().unwrap_or_default().to_owned(),
        found["next_step"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// Asserts the `id` line failed, its summary contains `cause` and its next step `next`, and
/// that the plain output prints both; and that doctor exited 1.
fn expect_fail(
    run: &Run,
    report: &Value,
    plain: &Run,
    id: &str,
    cause: &str,
    next: &str,
) -> Result<(), Failed> {
    let (verdict, summary, next_step) = line(report, id)?;
    check(run.code == 1, || {
        format!("doctor must exit 1 on a failure: {run}")
    })?;
    check(verdict == "fail", || format!("{id} should FAIL: {report}"))?;
    check(summary.contains(cause), || {
        format!("{id} should name {cause:?}: {summary}")
    })?;
    check(next_step.contains(next), || {
        format!("{id}'s next step should say {next:?}: {next_step}")
    })?;
    check(
        plain
            .stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains(id) && l.contains(cause))
            && plain.stdout.contains(&format!("Next step: {next_step}")),
        || format!("plain output for {id}: {plain}"),
    )?;
    Ok(())
}

fn expect_verdict(report: &Value, id: &str, verdict: &str) -> Result<(), Failed> {
    let (v, summary, _) = line(report, id)?;
    check(v == verdict, || {
        format!("{id} should be {verdict}, is {v}: {summary}\n{report}")
    })
}

/// The demo world with no agent: the doctor's config points at an empty private bus.
struct Offline {
    world: DemoWorld,
    bus: PrivateBus,
    _dir: tempfile::TempDir,
}

async fn offline() -> Result<Offline, Failed> {
    let dir = tempfile::tempdir().or_fail("tempdir")?;
    let world = DemoWorld::start(dir.path()).await.or_fail("demo world")?;
    let bus = PrivateBus::start().or_fail("private bus")?;
    Ok(Offline {
        world,
        bus,
        _dir: dir,
    })
}

fn card_of(world: &DemoWorld, spec: CardSpec) -> Result<CardFile, Failed> {
    let ca = TestCa::load(&world.dir().join("card-ca")).or_fail("card CA")?;
    Ok(provision(&ca, &spec.pin(DEMO_PASSCODE))
        .or_fail("provisioning")?
        .card)
}

async fn healthy(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let config = write_config(&running.world, &running.address, None)?;
    let card = running.world.card(PHARMACIST).or_fail("card")?;
    let _inserted = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(card)))
        .or_fail("inserting the card")?;
    let agent = running.agent.clone();
    wait_for("the agent to read the card", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
    })
    .await?;

    let (run, report, plain) = doctor(&config).await?;
    check(run.code == 0, || format!("a healthy workstation: {run}"))?;
    for id in [
        "config",
        "pcscd",
        "readers",
        "card",
        "atr",
        "piv",
        "passcode",
        "certificate",
        "clock",
        "endpoint",
        "daemon",
    ] {
        expect_verdict(&report, id, "ok")?;
    }
    check(plain.stdout.contains("All checks passed."), || {
        format!("plain: {plain}")
    })?;
    let card = &report["card"];
    check(
        card["holder_uuid"] == PHARMACIST.1
            && card["passcode_tries_left"] == 3
            && card["atr"]["hex"] == "3B F8 13 00 00 81 31 FE 15 63 61 72 64 67 61 74 65 B3"
            && card["atr"]["protocols"][0] == "T=1"
            && card["atr"]["check_byte_ok"] == true
            && card["apdu_round_trip_ms"]
                .as_f64()
                .is_some_and(|ms| ms > 0.0),
        || format!("card details: {card}"),
    )?;
    let readers = report["readers"].as_array().cloned().unwrap_or_default();
    check(
        readers.len() == 2
            && readers[0]["name"] == "Virtual PCD 00 00"
            && readers[0]["card_present"] == true
            && readers[0]["pin_pad"] == "none"
            && readers[1]["card_present"] == false,
        || format!("readers: {readers:?}"),
    )?;
    check(report["daemon_status"]["state"] == "card-present", || {
        format!("agent state: {report}")
    })?;
    let (_, piv, _) = line(&report, "piv")?;
    check(piv.contains("APDU round trip"), || piv.clone())?;
    // Doctor read the card beside the agent without disturbing it: no try spent, the agent
    // still sees the same card in the same state and can log in.
    let tries = running
        .agent
        .passcode_tries_left()
        .await
        .or_fail("PasscodeTriesLeft")?;
    check(tries == 3, || format!("tries after doctor: {tries}"))?;
    running
        .agent
        .login(DEMO_PASSCODE, false)
        .await
        .or_fail("Login after doctor")?;
    let (run, report, _) = doctor(&config).await?;
    check(run.code == 0, || {
        format!("doctor with a session open: {run}")
    })?;
    let state = running.agent.state().await.or_fail("State")?;
    check(state == "logged-in", || {
        format!("the session survived doctor: {state}")
    })?;
    check(report["daemon_status"]["state"] == "logged-in", || {
        format!("{report}")
    })?;
    running.stop().await?;
    Ok(())
}

async fn no_pcscd(lab: &mut Lab) -> Result<(), Failed> {
    let world = offline().await?;
    let config = write_config(&world.world, world.bus.address(), None)?;
    lab.kill_pcscd().or_fail("stopping pcscd")?;
    let (run, report, plain) = doctor(&config).await?;
    expect_fail(
        &run,
        &report,
        &plain,
        "pcscd",
        "pcscd) is not running",
        "systemctl start pcscd",
    )?;
    for id in ["readers", "card", "atr", "piv", "passcode", "certificate"] {
        expect_verdict(&report, id, "skipped")?;
    }
    // The agent is not running on the configured bus either, and doctor says so.
    expect_fail(
        &run,
        &report,
        &plain,
        "daemon",
        "is not running",
        "systemctl restart cardgated",
    )?;
    // What does not need pcscd still works.
    expect_verdict(&report, "endpoint", "ok")?;
    expect_verdict(&report, "config", "ok")?;
    Ok(())
}

async fn no_reader(lab: &mut Lab) -> Result<(), Failed> {
    let world = offline().await?;
    let config = write_config(&world.world, world.bus.address(), None)?;
    // A pcscd with no reader configured, in the lab's namespace instead of its own.
    lab.kill_pcscd().or_fail("stopping the lab's pcscd")?;
    for stale in ["pcscd.comm", "pcscd.pid"] {
        let _ = std::fs::remove_file(Path::new("/run/pcscd").join(stale));
    }
    let empty = tempfile::tempdir().or_fail("tempdir")?;
    let mut pcscd = Command::new("pcscd")
        .args(["--foreground", "--config"])
        .arg(empty.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .or_fail("starting pcscd")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        if let Ok(client) = PcscClient::new()
            && client.readers().is_ok()
        {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let outcome = async {
        check(ready, || "pcscd with no reader never answered".into())?;
        let (run, report, plain) = doctor(&config).await?;
        expect_verdict(&report, "pcscd", "ok")?;
        expect_fail(
            &run,
            &report,
            &plain,
            "readers",
            "no smartcard reader",
            "reseat the reader's USB cable",
        )?;
        expect_verdict(&report, "card", "skipped")
    }
    .await;
    let _ = pcscd.kill();
    let _ = pcscd.wait();
    outcome
}

async fn no_card(_lab: &mut Lab) -> Result<(), Failed> {
    let world = offline().await?;
    let config = write_config(&world.world, world.bus.address(), None)?;
    let (run, report, plain) = doctor(&config).await?;
    expect_verdict(&report, "readers", "ok")?;
    expect_fail(
        &run,
        &report,
        &plain,
        "card",
        "no card in any reader",
        "insert the smartcard",
    )?;
    for id in ["atr", "piv", "passcode", "certificate"] {
        expect_verdict(&report, id, "skipped")?;
    }
    Ok(())
}

async fn blocked_card(lab: &mut Lab) -> Result<(), Failed> {
    let world = offline().await?;
    let config = write_config(&world.world, world.bus.address(), None)?;
    let mut card = card_of(&world.world, CardSpec::new(PHARMACIST.0, PHARMACIST.1))?;
    card.pin.tries_left = 0;
    let _inserted = lab
        .insert(ReaderSlot::Second, Box::new(PivApplet::new(card)))
        .or_fail("inserting the card")?;
    let (run, report, plain) = doctor(&config).await?;
    expect_verdict(&report, "piv", "ok")?;
    expect_fail(
        &run,
        &report,
        &plain,
        "passcode",
        "LOCKED",
        "Sponsor or Local Smartcard Administrator",
    )?;
    check(report["card"]["passcode_tries_left"] == 0, || {
        format!("{report}")
    })?;
    check(report["card"]["reader"] == "Virtual PCD 00 01", || {
        format!("the card is in the second reader: {report}")
    })?;
    Ok(())
}

async fn expired_certificate(lab: &mut Lab) -> Result<(), Failed> {
    let world = offline().await?;
    let config = write_config(&world.world, world.bus.address(), None)?;
    let card = card_of(
        &world.world,
        CardSpec::new(PHARMACIST.0, PHARMACIST.1).validity(Validity::Expired),
    )?;
    let _inserted = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(card)))
        .or_fail("inserting the card")?;
    let (run, report, plain) = doctor(&config).await?;
    expect_verdict(&report, "passcode", "ok")?;
    expect_fail(
        &run,
        &report,
        &plain,
        "certificate",
        "expired",
        "Registration Authority",
    )?;
    Ok(())
}

async fn endpoint_down(lab: &mut Lab) -> Result<(), Failed> {
    let world = offline().await?;
    // Nothing listens on this port in the lab's private network namespace.
    let config = write_config(
        &world.world,
        world.bus.address(),
        Some("https://127.0.0.1:9"),
    )?;
    let card = world.world.card(PHARMACIST).or_fail("card")?;
    let _inserted = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(card)))
        .or_fail("inserting the card")?;
    let (run, report, plain) = doctor(&config).await?;
    expect_fail(
        &run,
        &report,
        &plain,
        "endpoint",
        "cannot be reached",
        "check the network",
    )?;
    expect_verdict(&report, "clock", "skipped")?;
    // Without the endpoint there is no CRL, so revocation is unknown: the certificate line
    // says why, pointing at the endpoint.
    expect_fail(
        &run,
        &report,
        &plain,
        "certificate",
        "endpoint is not reachable",
        "see the endpoint line",
    )?;
    Ok(())
}

async fn support_bundle(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let config = write_config(&running.world, &running.address, None)?;
    let card = running.world.card(PHARMACIST).or_fail("card")?;
    let _inserted = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(card)))
        .or_fail("inserting the card")?;
    let agent = running.agent.clone();
    wait_for("the agent to read the card", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
    })
    .await?;
    // The steps before the fault: a wrong passcode, the right one, a role, a ticket.
    const WRONG: &str = "wr0ng9x";
    let wrong = running.agent.login(WRONG, false).await;
    check(wrong.is_err(), || "a wrong passcode was accepted".into())?;
    running
        .agent
        .login(DEMO_PASSCODE, false)
        .await
        .or_fail("Login")?;
    running
        .agent
        .select_role_profile("RP-PHARM-FA123")
        .await
        .or_fail("SelectRoleProfile")?;
    let ticket = running.agent.get_ticket().await.or_fail("GetTicket")?;
    check(ticket.token.len() >= 16, || "a ticket token".into())?;

    let out = running.world.dir().join("bundle.json");
    let run = cardgate(vec![
        "support-bundle".into(),
        "--config".into(),
        config.display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--fault-time".into(),
        "2026-11-23 10:15".into(),
    ])
    .await;
    check(
        run.code == 0
            && run.stdout.contains(&out.display().to_string())
            && run.stdout.contains(&format!("Card UUID: {}", PHARMACIST.1)),
        || format!("support-bundle: {run}"),
    )?;
    let text = std::fs::read_to_string(&out).or_fail("reading the bundle")?;
    // No passcode (right or wrong), no ticket, in any form.
    for secret in [DEMO_PASSCODE, WRONG, ticket.token.as_str()] {
        check(!text.contains(secret), || {
            format!("the bundle holds a secret ({} chars)", secret.len())
        })?;
    }
    let bundle: Value = serde_json::from_str(&text).or_fail("bundle is JSON")?;
    check(
        bundle["format"] == "cardgate-support-bundle/1"
            && bundle["card_uuid"] == PHARMACIST.1
            && bundle["fault_time"] == "2026-11-23 10:15"
            && bundle["created_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
        || format!("bundle header: {text}"),
    )?;
    let steps: Vec<&str> = bundle["steps_taken"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["kind"].as_str()).collect())
        .unwrap_or_default();
    check(
        steps.contains(&"card_inserted")
            && steps.iter().filter(|k| **k == "passcode_attempt").count() >= 2
            && steps.contains(&"session_started")
            && steps.contains(&"role_selected"),
        || format!("steps taken: {steps:?}"),
    )?;
    check(bundle["audit"]["verify"]["intact"] == true, || {
        format!("audit verify: {}", bundle["audit"])
    })?;
    check(
        bundle["card"]["atr"]["hex"]
            .as_str()
            .is_some_and(|h| h.starts_with("3B F8"))
            && bundle["card"]["card_serial"].is_string()
            && bundle["readers"].as_array().is_some_and(|r| r.len() == 2)
            && bundle["agent_status"]["state"] == "logged-in",
        || format!("reader and card details: {text}"),
    )?;
    check(
        bundle["versions"]["cardgate"].is_string()
            && bundle["versions"]["pcscd"]
                .as_str()
                .is_some_and(|v| v.contains("pcsc-lite"))
            && bundle["versions"]["kernel"].is_string(),
        || format!("versions: {}", bundle["versions"]),
    )?;
    check(bundle["error_messages"].is_array(), || {
        format!("error messages: {text}")
    })?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&out)
            .or_fail("bundle metadata")?
            .permissions()
            .mode()
            & 0o777
    };
    check(mode == 0o600, || format!("bundle mode {mode:o}"))?;

    // With the card gone and the endpoint down, the faults are in the error messages.
    drop(_inserted);
    lab.wait_until_empty(ReaderSlot::First, Duration::from_secs(10))
        .or_fail("the card to leave")?;
    let down = write_config(
        &running.world,
        &running.address,
        Some("https://127.0.0.1:9"),
    )?;
    let run = cardgate(vec![
        "--json".into(),
        "support-bundle".into(),
        "--config".into(),
        down.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ])
    .await;
    let answer: Value = serde_json::from_str(run.stdout.trim())
        .map_err(|e| fail(&format!("support-bundle --json ({run})"), e))?;
    check(
        answer["ok"] == true && answer["failures"].as_u64().is_some_and(|n| n >= 2),
        || format!("{answer}"),
    )?;
    let text = std::fs::read_to_string(&out).or_fail("reading the bundle")?;
    check(
        text.contains("FAIL card: no card in any reader")
            && text.contains("FAIL endpoint:")
            && !text.contains(DEMO_PASSCODE)
            && !text.contains(ticket.token.as_str()),
        || format!("second bundle: {text}"),
    )?;
    running.stop().await?;
    Ok(())
}
