//! End-to-end (issue 15): no passcode, unlock code or one-time code stays in the memory of
//! the programs that carried it, once the call that carried it has answered.
//!
//! `cardgated` runs as a process of its own (its own `main`, hardening included, through
//! [`DaemonProcess::spawn_cardgated`]) on the lab's real pcscd and a private dbus-daemon;
//! the card is a virtual PIV card behind vpcd, in this test process, so nothing of the card's
//! own memory is in the daemon's. After every kind of secret-carrying call (wrong, right,
//! malformed, refused before the final try, a passcode change, both unlocks, the card pulled
//! mid-call) the daemon's memory is read live (`/proc/PID/mem`, every readable mapping) and
//! as a `gcore` image, and every secret used so far is searched for as typed and padded as
//! the card receives it ([`cardgate_e2e::memory_image`]).

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use cardgate_demo::DemoWorld;
use cardgate_e2e::daemon_harness::{OrFail as _, connect_once_readers_seen, wait_for};
use cardgate_e2e::daemon_process::DaemonProcess;
use cardgate_e2e::login_requests::error_name;
use cardgate_e2e::memory_image::{Secret, assert_no_secret, fresh};
use cardgate_e2e::{check, lab_trial, run_lab_suite, runtime_with_workers};
use cardgate_ipc::AgentStaffProxy;
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::Card;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::provision::CardSpec;
use libtest_mimic::Failed;

/// The holder of the test card: a registered contact (self-service) and one role here.
const HOLDER: (&str, &str, &str) = ("Ria Shah", "555000565656", "6516770301");
/// Set: on a finding, the daemon is kept running for 300 s so it can be examined.
const PAUSE_VAR: &str = "SECRET_RESIDUE_PAUSE";

fn main() -> ExitCode {
    if let Some(code) = cardgate_e2e::daemon_process::run_if_child() {
        return code;
    }
    run_lab_suite(vec![lab_trial(
        "the_daemon_holds_no_secret_after_any_secret_carrying_call",
        daemon_holds_no_secret,
    )])
}

/// The spine-sim records for [`HOLDER`]: who they are, their contact, their card's unlock code.
fn holder_toml(unlock_code: &str) -> String {
    let (name, uid, serial) = HOLDER;
    format!(
        r#"
[[users]]
uid = "{uid}"
name = "{name}"
email = "ria.shah@nhs.example"
[[users.role_profiles]]
id = "RP-RIA-FA123"
job_role = "Pharmacist"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download"]

[[cards]]
serial = "{serial}"
uid = "{uid}"
unlock_code = "{unlock_code}"
"#
    )
}

/// The virtual card, shared so the test can hang it in the middle of a VERIFY: once
/// `armed`, the next VERIFY carrying a value tells `reached` and waits for `release`
/// (answering nothing useful; the card is pulled meanwhile).
struct HangingCard {
    applet: Arc<Mutex<PivApplet>>,
    armed: Arc<AtomicBool>,
    hang: Arc<(Mutex<Option<bool>>, Condvar)>,
}

impl HangingCard {
    fn applet(&self) -> std::sync::MutexGuard<'_, PivApplet> {
        self.applet.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Card for HangingCard {
    fn atr(&self) -> Vec<u8> {
        self.applet().atr()
    }
    fn power_on(&mut self) {
        self.applet().power_on();
    }
    fn power_off(&mut self) {
        self.applet().power_off();
    }
    fn reset(&mut self) {
        self.applet().reset();
    }
    fn transmit(&mut self, command: &[u8]) -> Vec<u8> {
        let verify_with_value = command.len() > 5 && command[1] == 0x20;
        if !(verify_with_value && self.armed.swap(false, Ordering::SeqCst)) {
            return self.applet().transmit(command);
        }
        let (state, wake) = &*self.hang;
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        *state = Some(false);
        wake.notify_all();
        while *state != Some(true) {
            state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        vec![0x6F, 0x00]
    }
}

/// The secrets used so far, and the checks after each step.
struct Residue<'a> {
    pid: u32,
    dir: &'a Path,
    secrets: Vec<Secret>,
}

impl Residue<'_> {
    fn used(&mut self, label: &str, value: &str) {
        self.secrets.push(Secret::new(label, value));
    }

    /// Both scans of the daemon after `moment`; a little time first for the daemon's own
    /// tasks that finish after the reply (the audit append, the timers).
    async fn check(&self, moment: &str) -> Result<(), Failed> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (pid, dir, secrets) = (self.pid, self.dir.to_owned(), self.secrets.clone());
        let moment = moment.to_owned();
        let found =
            tokio::task::spawn_blocking(move || assert_no_secret(pid, &dir, &moment, &secrets))
                .await
                .or_fail("scan task")?;
        if let (Err(found), Some(_)) = (&found, std::env::var_os(PAUSE_VAR)) {
            // A debugging aid: the daemon stays up for gdb (`gdb -p PID`, `info symbol`).
            eprintln!("{found}\n{PAUSE_VAR}: daemon pid {pid} kept for 300 s");
            tokio::time::sleep(Duration::from_secs(300)).await;
        }
        found.map_err(Failed::from)
    }
}

fn expect_error<T: std::fmt::Debug>(
    result: &zbus::Result<T>,
    name: &str,
    what: &str,
) -> Result<(), Failed> {
    let got = error_name(result);
    check(got == name, || format!("{what}: wanted {name}, got {got}"))
}

fn daemon_holds_no_secret(lab: &mut Lab) -> Result<(), Failed> {
    runtime_with_workers(2)?.block_on(daemon_holds_no_secret_async(lab))
}

async fn daemon_holds_no_secret_async(lab: &mut Lab) -> Result<(), Failed> {
    let dir = tempfile::tempdir().or_fail("tempdir")?;
    let unlock_code = fresh(8, "");
    let world = DemoWorld::start_with(dir.path(), &holder_toml(&unlock_code))
        .await
        .or_fail("demo world")?;
    let bus = cardgate_demo::PrivateBus::start().or_fail("private bus")?;
    let address = bus.address().to_owned();
    let passcode = fresh(6, "");
    let spec = CardSpec::new(HOLDER.0, HOLDER.1)
        .card_serial(HOLDER.2)
        .pin(&passcode)
        .puk(&unlock_code);
    let applet = Arc::new(Mutex::new(PivApplet::new(
        world.card_from(&spec).or_fail("card")?,
    )));
    let armed = Arc::new(AtomicBool::new(false));
    let hang = Arc::new((Mutex::new(None), Condvar::new()));

    let daemon =
        DaemonProcess::spawn_cardgated(&world, &address, "debug").or_fail("daemon process")?;
    let (connection, agent) = connect_once_readers_seen(&address).await?;
    let staff = AgentStaffProxy::builder(&connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .or_fail("staff proxy")?;
    let inserted = lab
        .insert(
            ReaderSlot::First,
            Box::new(HangingCard {
                applet: Arc::clone(&applet),
                armed: Arc::clone(&armed),
                hang: Arc::clone(&hang),
            }),
        )
        .or_fail("insert")?;
    wait_for("the card to be read", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == HOLDER.1 }
    })
    .await?;

    let mut residue = Residue {
        pid: daemon.pid(),
        dir: dir.path(),
        secrets: Vec::new(),
    };
    // A baseline: the scans work on this process and find nothing before any secret.
    residue.check("after the card was read").await?;

    // A wrong passcode, then two of the wrong shape (refused before the card).
    let wrong = fresh(8, "");
    residue.used("the wrong passcode", &wrong);
    let answer = agent.login(&wrong, false).await;
    expect_error(&answer, "WrongPasscode", "a wrong passcode")?;
    residue.check("after a wrong passcode").await?;
    let (symbol, too_long) = (fresh(5, "!"), fresh(12, ""));
    residue.used("a passcode with a symbol", &symbol);
    residue.used("a passcode too long", &too_long);
    let answer = agent.login(&symbol, false).await;
    expect_error(&answer, "InvalidArgument", "a passcode with a symbol")?;
    let answer = agent.login(&too_long, false).await;
    expect_error(&answer, "InvalidArgument", "a passcode too long")?;
    residue.check("after passcodes of the wrong shape").await?;

    // The right one, a change, a log-out.
    residue.used("the passcode", &passcode);
    agent.login(&passcode, false).await.or_fail("Login")?;
    residue.check("after a right passcode").await?;
    let changed = fresh(8, "");
    residue.used("the changed passcode", &changed);
    agent
        .change_passcode(&passcode, &changed, false)
        .await
        .or_fail("ChangePasscode")?;
    residue.check("after a passcode change").await?;
    agent.logout().await.or_fail("Logout")?;

    // Locked by three wrong values, the last refused until confirmed.
    for _ in 0..2 {
        let wrong = fresh(7, "");
        residue.used("a wrong passcode", &wrong);
        let answer = agent.login(&wrong, false).await;
        expect_error(&answer, "WrongPasscode", "a wrong passcode")?;
    }
    let last = fresh(8, "");
    residue.used("the final try", &last);
    let answer = agent.login(&last, false).await;
    expect_error(&answer, "FinalTryNotConfirmed", "the final try unconfirmed")?;
    residue
        .check("after a final try refused unconfirmed")
        .await?;
    let answer = agent.login(&last, true).await;
    expect_error(
        &answer,
        "WrongPasscode",
        "the final try confirmed (no tries left)",
    )?;
    residue.check("after the card locked").await?;

    // The RA's unlock code: first malformed, then right.
    let (malformed, after_ra) = (fresh(5, ""), fresh(6, ""));
    residue.used("a malformed unlock code", &malformed);
    residue.used("the new passcode after the RA unlock", &after_ra);
    let answer = staff.unlock_with_code(&malformed, &after_ra, false).await;
    expect_error(&answer, "InvalidArgument", "a malformed unlock code")?;
    residue.used("the unlock code", &unlock_code);
    staff
        .unlock_with_code(&unlock_code, &after_ra, false)
        .await
        .or_fail("UnlockWithCode")?;
    residue.check("after the RA unlock").await?;

    // Locked again; self-service: the one-time code releases the unlock code over TLS.
    for _ in 0..3 {
        let wrong = fresh(8, "");
        residue.used("a wrong passcode", &wrong);
        let _ = agent.login(&wrong, true).await;
    }
    let started = staff
        .start_self_service_unlock()
        .await
        .or_fail("StartSelfServiceUnlock")?;
    let code = outbox_code(world.dir(), HOLDER.1)?;
    residue.used("the one-time code", &code);
    let after_self = fresh(6, "");
    residue.used("the new passcode after self-service", &after_self);
    staff
        .unlock_with_one_time_code(&started.request_id, &code, &after_self)
        .await
        .or_fail("UnlockWithOneTimeCode")?;
    residue.check("after the self-service unlock").await?;

    // The card pulled in the middle of a VERIFY carrying the passcode.
    armed.store(true, Ordering::SeqCst);
    let pending = {
        let agent = agent.clone();
        let after_self = after_self.clone();
        tokio::spawn(async move { agent.login(&after_self, false).await })
    };
    let hang_for_wait = Arc::clone(&hang);
    tokio::task::spawn_blocking(move || {
        let (state, wake) = &*hang_for_wait;
        let state = state.lock().unwrap_or_else(|p| p.into_inner());
        let (state, timeout) = wake
            .wait_timeout_while(state, Duration::from_secs(20), |s| s.is_none())
            .unwrap_or_else(|p| p.into_inner());
        drop(state);
        if timeout.timed_out() {
            Err("the VERIFY never reached the card")
        } else {
            Ok(())
        }
    })
    .await
    .or_fail("hang wait")?
    .map_err(Failed::from)?;
    // The removal waits for the card's exchange to end: let the hung card go 20 ms into it.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let (state, wake) = &*hang;
        *state.lock().unwrap_or_else(|p| p.into_inner()) = Some(true);
        wake.notify_all();
    });
    let _ = tokio::task::spawn_blocking(move || inserted.remove())
        .await
        .or_fail("remove task")?;
    let _ = releaser.join();
    let answer = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .map_err(|_| Failed::from("Login never answered after the card was pulled"))?
        .or_fail("login task")?;
    check(answer.is_err(), || {
        format!("Login with the card pulled mid-VERIFY succeeded: {answer:?}")
    })?;
    residue
        .check("after the card was pulled mid-VERIFY")
        .await?;

    drop((agent, staff, connection));
    let log = daemon.stop().or_fail("daemon process")?;
    check(log.contains("cardgated ready"), || {
        format!("the daemon never said it was ready:\n{log}")
    })
}

/// The one-time code of the newest outbox message for `uid` (spine-sim's stand-in for the
/// email it sends).
fn outbox_code(dir: &Path, uid: &str) -> Result<String, Failed> {
    let text = std::fs::read_to_string(dir.join("outbox.jsonl")).or_fail("outbox")?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["uid"] == uid)
        .and_then(|m| m["one_time_code"].as_str().map(str::to_owned))
        .ok_or_else(|| Failed::from(format!("no outbox message for {uid}:\n{text}")))
}
