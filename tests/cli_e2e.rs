//! End-to-end: the `cardgate` CLI as a separate process against the real `cardgated` serving
//! on a private `dbus-daemon`, logging in at an in-process spine-sim. The card is a virtual PIV
//! card in the daemon's in-process `VirtualBackend` (not the lab's pcscd: the daemon suites
//! already cover that path; here the subject is the CLI's behaviour and exit codes).
//!
//! Which executable: `CARDGATE_BIN` if set (an installed `cardgate`); otherwise this test
//! binary re-runs itself with `CARDGATE_E2E_AS_CLI=1`, and then its `main` is exactly the
//! `cardgate` binary's (`cardgate_cli::main()`): real argument parsing, real stdout, stderr and
//! exit codes, in its own process. Why not `target/debug/cardgate`: Cargo builds another
//! package's binary only on request, so that file may be missing or stale.
#![allow(clippy::unwrap_used)]

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, DemoWorld, PHARMACIST, PrivateBus};
use cardgate_e2e::cli_process::{Run, cli_command, run_cli, run_cli_async, run_if_cli};
use cardgate_e2e::{async_trial, check};
use cardgate_reader::VirtualBackend;
use cardgate_vcard::applet::PivApplet;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() -> ExitCode {
    if let Some(code) = run_if_cli() {
        return code;
    }
    let args = Arguments::from_args();
    let trials = vec![
        async_trial("status_check_login_logout_watch_and_audit", day_async),
        Trial::test("daemon_not_running_is_said_clearly", not_running),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn fail(what: &str, e: impl std::fmt::Display) -> Failed {
    Failed::from(format!("{what}: {e}"))
}

fn cardgate(args: &[&str], stdin: Option<&str>) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    run_cli(&args, stdin).unwrap()
}

/// Runs the CLI on a blocking thread so the daemon keeps serving meanwhile.
async fn cardgate_async(args: Vec<String>, stdin: Option<String>) -> Run {
    run_cli_async(args, stdin).await.unwrap()
}

fn args(bus: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec!["--bus".to_owned(), bus.to_owned()];
    v.extend(rest.iter().map(|s| (*s).to_owned()));
    v
}

async fn wait_for_status(bus: &str, needle: &str) -> Result<Run, Failed> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let run = cardgate_async(args(bus, &["status"]), None).await;
        if run.stdout.contains(needle) {
            return Ok(run);
        }
        if Instant::now() > deadline {
            return Err(Failed::from(format!(
                "status never showed {needle:?}; last:\n{run}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn day_async() -> Result<(), Failed> {
    let dir = tempfile::tempdir().map_err(|e| fail("tempdir", e))?;
    let world = DemoWorld::start(dir.path())
        .await
        .map_err(|e| fail("demo world", e))?;
    let bus = PrivateBus::start().map_err(|e| fail("private bus", e))?;
    let address = bus.address().to_owned();
    let config = world.config(&address).map_err(|e| fail("config", e))?;
    let audit_path = config.paths.audit.clone();
    let backend = Arc::new(VirtualBackend::new());
    let reader = backend.attach_reader("Virtual Omnikey 00 00");
    let card = world.card(PHARMACIST).map_err(|e| fail("card", e))?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(cardgated::run(config, backend.clone(), None, async move {
        let _ = stopped.await;
    }));
    let b = address.as_str();

    // Morning: the agent is up, no card.
    let run = wait_for_status(b, "State:       no-card").await?;
    check(run.code == 0, || format!("status exit code: {run}"))?;
    check(run.stdout.contains("Insert your smartcard"), || {
        format!("no-card advice: {run}")
    })?;
    check(
        run.stdout.contains("Virtual Omnikey 00 00 (no card)"),
        || format!("reader listed: {run}"),
    )?;
    let run = cardgate_async(args(b, &["--json", "status"]), None).await;
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .map_err(|e| fail(&format!("status --json is JSON ({run})"), e))?;
    check(
        json["state"] == "no-card" && json["passcode_tries_left"] == -1,
        || format!("status --json: {run}"),
    )?;

    // check with no card: refused, exit 1, reason code printed.
    let run = cardgate_async(args(b, &["check", "download", "--ods", DEMO_ODS]), None).await;
    check(
        run.code == 1 && run.stdout.contains("REFUSED") && run.stdout.contains("(no-card)"),
        || format!("check with no card: {run}"),
    )?;
    // A usage error (unknown action) is exit 2, before the bus is asked.
    let run = cardgate_async(args(b, &["check", "teleport", "--ods", DEMO_ODS]), None).await;
    check(
        run.code == 2 && run.stderr.contains("unknown action"),
        || format!("check with an unknown action: {run}"),
    )?;

    // The card goes in.
    backend
        .insert(&reader, Box::new(PivApplet::new(card)))
        .map_err(|_| Failed::from("the virtual reader is occupied"))?;
    let run = wait_for_status(b, &format!("UUID {}", PHARMACIST.1)).await?;
    check(
        run.stdout.contains(&format!("UUID {}", PHARMACIST.1))
            && run.stdout.contains(PHARMACIST.0)
            && run.stdout.contains("Tries left:  3 of 3")
            && run.stdout.contains("cardgate login"),
        || format!("status with a card: {run}"),
    )?;

    // Two wrong passcodes: each is refused with the tries left, the second leaves one.
    for (wrong, left) in [("0000aa", "2"), ("1111bb", "1")] {
        let run = cardgate_async(
            args(b, &["login", "--passcode-stdin"]),
            Some(format!("{wrong}\n")),
        )
        .await;
        check(
            run.code == 1 && !run.stderr.contains(wrong) && !run.stdout.contains(wrong),
            || format!("a wrong passcode: {run}"),
        )?;
        let run = cardgate_async(args(b, &["status"]), None).await;
        check(
            run.stdout.contains(&format!("Tries left:  {left} of 3")),
            || format!("tries left after a wrong passcode: {run}"),
        )?;
    }
    let run = cardgate_async(args(b, &["status"]), None).await;
    check(
        run.stdout
            .contains("one more wrong passcode locks the card"),
        || format!("last-try advice: {run}"),
    )?;
    // The final try is not used without an explicit yes (stdin is not a terminal here).
    let run = cardgate_async(
        args(b, &["login", "--passcode-stdin"]),
        Some(format!("{DEMO_PASSCODE}\n")),
    )
    .await;
    check(
        run.code == 1 && run.stderr.contains("--confirm-final-try"),
        || format!("the final try without confirmation: {run}"),
    )?;
    let run = cardgate_async(args(b, &["status"]), None).await;
    check(run.stdout.contains("Tries left:  1 of 3"), || {
        format!("a try was spent without confirmation: {run}")
    })?;

    // Log in on the confirmed final try: passcode on stdin (never echoed), the pharmacist has two profiles: --role picks.
    let run = cardgate_async(
        args(
            b,
            &[
                "login",
                "--passcode-stdin",
                "--confirm-final-try",
                "--role",
                "RP-PHARM-FA123",
            ],
        ),
        Some(format!("{DEMO_PASSCODE}\n")),
    )
    .await;
    check(run.code == 0 && run.stdout.contains("Logged in."), || {
        format!("login: {run}")
    })?;
    check(
        !run.stdout.contains(DEMO_PASSCODE) && !run.stderr.contains(DEMO_PASSCODE),
        || format!("the passcode was echoed: {run}"),
    )?;
    let run = wait_for_status(b, "State:       logged-in").await?;
    check(
        run.stdout
            .contains("Pharmacist at High Street Pharmacy (FA123)"),
        || format!("status logged in: {run}"),
    )?;

    // Allowed: exit 0. With no --ods the selected role's ODS code is used.
    let run = cardgate_async(args(b, &["check", "download", "--ods", DEMO_ODS]), None).await;
    check(run.code == 0 && run.stdout.starts_with("ALLOWED"), || {
        format!("check allowed: {run}")
    })?;
    let run = cardgate_async(args(b, &["--json", "check", "view-scr"]), None).await;
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .map_err(|e| fail(&format!("check --json ({run})"), e))?;
    check(
        run.code == 0 && json["allowed"] == true && json["ods_code"] == DEMO_ODS,
        || format!("check --json allowed: {run}"),
    )?;
    // Refused for another pharmacy: exit 1 with the reason code.
    let run = cardgate_async(args(b, &["check", "download", "--ods", "FZ999"]), None).await;
    check(
        run.code == 1 && run.stdout.contains("(ods-not-configured)"),
        || format!("check refused for another pharmacy: {run}"),
    )?;

    // Role change within the session, and back.
    let run = cardgate_async(args(b, &["role", "RP-LOCUM-FFFFF"]), None).await;
    check(
        run.code == 0 && run.stdout.contains("Locum Pharmacist"),
        || format!("role change: {run}"),
    )?;
    let run = cardgate_async(args(b, &["role", "RP-NOT-MINE"]), None).await;
    check(run.code == 1 && run.stderr.contains("What to do"), || {
        format!("an unknown role: {run}")
    })?;
    let run = cardgate_async(args(b, &["role", "RP-PHARM-FA123"]), None).await;
    check(run.code == 0, || format!("role change back: {run}"))?;

    // watch: sees the card leave, as one line each, until stopped.
    let mut watcher = cli_command()?
        .args(["--bus", b, "--json", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail("starting watch", e))?;
    // Wait for its "Watching" line: the subscription is in place.
    let watch_err = watcher.stderr.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(watch_err), &mut line);
        line
    })
    .await
    .unwrap();
    check(ready.starts_with("Watching"), || {
        format!("watch did not start: {ready:?}")
    })?;

    // Log out, then the card leaves.
    let run = cardgate_async(args(b, &["logout"]), None).await;
    check(run.code == 0 && run.stdout.contains("Logged out"), || {
        format!("logout: {run}")
    })?;
    let run = cardgate_async(args(b, &["logout"]), None).await;
    check(run.code == 1, || format!("a second logout: {run}"))?;
    backend.remove(&reader);
    wait_for_status(b, "State:       no-card").await?;
    // The daemon's own audit trail verifies, then a tampered copy does not.
    let audit = audit_path.display().to_string();
    let run = cardgate_async(
        vec![
            "audit".into(),
            "verify".into(),
            "--file".into(),
            audit.clone(),
        ],
        None,
    )
    .await;
    check(run.code == 0 && run.stdout.contains("intact"), || {
        format!("audit verify on the daemon's trail: {run}")
    })?;
    let run = cardgate_async(
        vec![
            "audit".into(),
            "tail".into(),
            "-n".into(),
            "3".into(),
            "--file".into(),
            audit.clone(),
        ],
        None,
    )
    .await;
    check(run.code == 0 && run.stdout.lines().count() == 3, || {
        format!("audit tail -n 3: {run}")
    })?;
    check(!run.stdout.contains(DEMO_PASSCODE), || {
        format!("passcode in the audit tail: {run}")
    })?;

    let text = std::fs::read_to_string(&audit_path).map_err(|e| fail("reading the trail", e))?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    check(lines.len() >= 4, || format!("a short trail:\n{text}"))?;
    lines[2] = lines[2].replacen("\"seq\":3,\"at\":\"20", "\"seq\":3,\"at\":\"19", 1);
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, lines.join("\n") + "\n").map_err(|e| fail("writing", e))?;
    let tampered = tampered.display().to_string();
    let run = cardgate_async(
        vec![
            "audit".into(),
            "verify".into(),
            "--file".into(),
            tampered.clone(),
        ],
        None,
    )
    .await;
    check(
        run.code == 1 && run.stdout.contains("DAMAGED at line 3 (seq 3): edited"),
        || format!("audit verify on a tampered trail: {run}"),
    )?;
    let run = cardgate_async(
        vec![
            "--json".into(),
            "audit".into(),
            "verify".into(),
            "--file".into(),
            tampered,
        ],
        None,
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .map_err(|e| fail(&format!("audit verify --json ({run})"), e))?;
    check(
        run.code == 1 && json["intact"] == false && json["first_break"]["line"] == 3,
        || format!("audit verify --json on a tampered trail: {run}"),
    )?;

    let _ = stop.send(());
    daemon
        .await
        .map_err(|e| fail("daemon task", e))?
        .map_err(|e| fail("daemon", e))?;

    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = watcher.kill();
    let output = watcher
        .wait_with_output()
        .map_err(|e| fail("watch output", e))?;
    let lines = String::from_utf8_lossy(&output.stdout).into_owned();
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen = |what: &dyn Fn(&serde_json::Value) -> bool| events.iter().any(what);
    check(
        seen(&|v| v["signal"] == "SessionEnded" && v["reason"] == "logged-out")
            && seen(&|v| v["signal"] == "CardRemoved" && v["reader"] == "Virtual Omnikey 00 00")
            && seen(&|v| v["signal"] == "PropertiesChanged" && v["State"] == "no-card")
            && seen(&|v| v["signal"] == "AgentStopped"),
        || format!("watch --json lines:\n{lines}"),
    )?;

    // The agent has stopped: status says so (exit 1), check is a daemon error (exit 2).
    let run = cardgate_async(args(b, &["status"]), None).await;
    check(
        run.code == 1 && run.stderr.contains("is not running"),
        || format!("status with the agent stopped: {run}"),
    )?;
    drop(bus);
    Ok(())
}

/// No agent on the bus, and no bus at all.
fn not_running() -> Result<(), Failed> {
    let bus = PrivateBus::start().map_err(|e| fail("private bus", e))?;
    let run = cardgate(&["--bus", bus.address(), "status"], None);
    check(
        run.code == 1
            && run.stderr.contains("cardgated) is not running")
            && run.stderr.contains("systemctl restart cardgated"),
        || format!("status without the agent: {run}"),
    )?;
    let run = cardgate(
        &[
            "--bus",
            bus.address(),
            "check",
            "download",
            "--ods",
            "FA123",
        ],
        None,
    );
    check(run.code == 2, || format!("check without the agent: {run}"))?;
    let run = cardgate(&["--bus", bus.address(), "--json", "status"], None);
    check(
        run.code == 1 && run.stdout.contains("\"error\":\"daemon-not-running\""),
        || format!("status --json without the agent: {run}"),
    )?;
    drop(bus);
    let run = cardgate(&["--bus", "unix:path=/nonexistent/bus", "status"], None);
    check(
        run.code == 1 && run.stderr.contains("cannot reach the cardgate agent"),
        || format!("status with no bus: {run}"),
    )?;
    Ok(())
}
