//! End-to-end: `pam_cardgate.so` loaded by the real libpam through `pamtester`, talking to
//! `cardgated` on a private `dbus-daemon`, which watches the lab's real pcscd with virtual PIV
//! cards in the vpcd readers and logs in at an in-process spine-sim.
//!
//! A PAM service file with a unique name is written into `/etc/pam.d/` pointing at the built
//! module by absolute path, and removed afterwards (also when the test fails). Covered: the
//! account check; a wrong passcode refused with the tries left; the right passcode logs in
//! and `open_session` registers the workstation session; a holder not mapped to the account
//! is refused without spending a try; another card cannot open the registered session, the
//! same card put back can; `close_session` forgets it; three wrong passcodes (the last one explicitly chosen) block
//! the card, and a blocked card is refused, saying how to get it unlocked, without asking for
//! a passcode. And (issue 15) pamtester stopped under gdb at `pam_end` after a log-in, its
//! core image holding no D-Bus message of the module's with the passcode in it.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use cardgate_demo::{DEMO_PASSCODE, DISPENSER, PHARMACIST};
use cardgate_e2e::daemon_harness::{
    OrFail as _, RunningDaemon, fail, insert_and_read, reinsert_and_read, wait_for,
};
use cardgate_e2e::memory_image::{Secret, scan_image};
use cardgate_e2e::{async_lab_trial, check, run_lab_suite};
use cardgate_ipc::WorkstationProxy;
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::applet::PivApplet;
use cardgated::config::RemovalAction;
use libtest_mimic::Failed;

fn main() -> ExitCode {
    run_lab_suite(vec![async_lab_trial(
        "pamtester_logs_in_refuses_wrong_unmapped_blocked_and_other_cards",
        run,
    )])
}

/// The built module: `libpam_cardgate.so` next to the test binary's `deps/` directory.
pub fn pam_module() -> Result<PathBuf, Failed> {
    let exe = std::env::current_exe().or_fail("current_exe")?;
    let deps = exe.parent().ok_or("no deps directory")?;
    let profile = deps.parent().ok_or("no profile directory")?;
    [profile, deps]
        .iter()
        .map(|dir| dir.join("libpam_cardgate.so"))
        .find(|p| p.exists())
        .ok_or_else(|| {
            Failed::from(format!(
                "libpam_cardgate.so not found in {}: build it with cargo build -p cardgate-pam",
                profile.display()
            ))
        })
}

/// A PAM service file in `/etc/pam.d/`, removed on drop.
struct PamService {
    name: String,
    path: PathBuf,
}

impl PamService {
    fn write(module: &Path, args: &str) -> Result<PamService, Failed> {
        let name = format!("cardgate-e2e-{}", std::process::id());
        let path = Path::new("/etc/pam.d").join(&name);
        let module = module.display();
        let text = format!(
            "# Written by cardgate's pam_login test; removed when it ends.\n\
             auth     required {module} {args}\n\
             account  required {module} {args}\n\
             session  required {module} {args}\n"
        );
        std::fs::write(&path, text).or_fail("writing the PAM service file")?;
        Ok(PamService { name, path })
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What one pamtester run said.
struct Outcome {
    ok: bool,
    text: String,
}

/// Runs `pamtester SERVICE USER OPS...` with `input` on stdin (and `XDG_SESSION_ID` when
/// given), off the async runtime's threads.
async fn pamtester(
    service: &str,
    user: &str,
    ops: &[&str],
    input: &str,
    session_id: Option<&str>,
) -> Result<Outcome, Failed> {
    let (service, user, input) = (service.to_owned(), user.to_owned(), input.to_owned());
    let ops: Vec<String> = ops.iter().map(|s| (*s).to_owned()).collect();
    let session_id = session_id.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new("pamtester");
        command
            .arg("-v")
            .arg(&service)
            .arg(&user)
            .args(&ops)
            .env_remove("XDG_SESSION_ID")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(id) = &session_id {
            command.env("XDG_SESSION_ID", id);
        }
        let mut child = command
            .spawn()
            .or_fail("pamtester (scripts/setup installs it)")?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(input.as_bytes())
            .or_fail("pamtester stdin")?;
        let out = child.wait_with_output().or_fail("pamtester")?;
        Ok(Outcome {
            ok: out.status.success(),
            text: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    })
    .await
    .or_fail("pamtester task")?
}

/// `pamtester SERVICE USER authenticate` with the demo passcode typed.
async fn authenticate(service: &str, user: &str) -> Result<Outcome, Failed> {
    pamtester(
        service,
        user,
        &["authenticate"],
        &format!("{DEMO_PASSCODE}\n"),
        None,
    )
    .await
}

/// `pamtester SERVICE USER authenticate` with `passcode` typed, under gdb, stopped when it
/// calls `pam_end` (the module has answered and is still loaded) for a core image at `core`,
/// then killed. `ok` when the authentication succeeded and the image was written.
async fn pamtester_stopped_at_pam_end(
    service: &str,
    user: &str,
    passcode: &str,
    core: &Path,
) -> Result<Outcome, Failed> {
    let (service, user) = (service.to_owned(), user.to_owned());
    let input = format!("{passcode}\n");
    let core = core.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("gdb")
            .args(["-q", "-batch", "-nx"])
            .args([
                "-ex",
                "set breakpoint pending on",
                "-ex",
                "break pam_end",
                "-ex",
                "run",
            ])
            .arg("-ex")
            .arg(format!("gcore {}", core.display()))
            .args([
                "-ex",
                "kill",
                "--args",
                "pamtester",
                "-v",
                &service,
                &user,
                "authenticate",
            ])
            .env_remove("XDG_SESSION_ID")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail("gdb (scripts/setup installs it)", e))?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(input.as_bytes())
            .map_err(|e| fail("pamtester stdin", e))?;
        let out = child.wait_with_output().map_err(|e| fail("gdb", e))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Outcome {
            ok: text.contains("Breakpoint 1, ") && core.exists(),
            text,
        })
    })
    .await
    .map_err(|e| fail("gdb task", e))?
}

async fn run(lab: &mut Lab) -> Result<(), Failed> {
    let started = Instant::now();
    let module = pam_module()?;
    let running = RunningDaemon::start(|config| {
        // No logind on the private bus here: registration must not ask it.
        config.workstation.removal_action = RemovalAction::Signal;
    })
    .await?;
    let RunningDaemon {
        world,
        address,
        agent,
        ..
    } = &running;
    let dir = tempfile::tempdir().or_fail("tempdir")?;
    let map = dir.path().join("pam-users");
    std::fs::write(
        &map,
        format!(
            "# holder UUID -> accounts\n{} cgpharm\n{} cgdisp,cgpharm\n",
            PHARMACIST.1, DISPENSER.1
        ),
    )
    .or_fail("mapping file")?;
    let service = PamService::write(&module, &format!("bus={address} map={}", map.display()))?;
    let svc = service.name.as_str();
    let connection = agent.inner().connection().clone();
    let workstation = WorkstationProxy::new(&connection)
        .await
        .or_fail("workstation proxy")?;

    // The pharmacist's card in the first reader.
    let pharmacist = world.card(PHARMACIST).or_fail("card")?;
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(pharmacist)))
        .or_fail("inserting the card")?;
    wait_for("the card to be read", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
    })
    .await?;

    // account: card in, holder mapped, usable.
    let acct = pamtester(svc, "cgpharm", &["acct_mgmt"], "", None).await?;
    check(acct.ok, || format!("acct_mgmt refused: {}", acct.text))?;

    // A wrong passcode: refused with the tries left.
    let wrong = pamtester(svc, "cgpharm", &["authenticate"], "wrong1\n", None).await?;
    check(!wrong.ok && wrong.text.contains("2 tries left"), || {
        format!("a wrong passcode: {}", wrong.text)
    })?;
    check(!wrong.text.contains("wrong1"), || {
        format!("the passcode was echoed back: {}", wrong.text)
    })?;

    // The right passcode logs in; open_session registers the workstation session.
    let right = pamtester(
        svc,
        "cgpharm",
        &["authenticate", "open_session"],
        &format!("{DEMO_PASSCODE}\n"),
        Some("e2e7"),
    )
    .await?;
    check(right.ok, || format!("the right passcode: {}", right.text))?;
    let state = agent.state().await.or_fail("State")?;
    check(state == "logged-in", || format!("State is {state}"))?;
    let sessions = workstation.sessions().await.or_fail("Sessions")?;
    check(
        sessions.len() == 1
            && sessions[0].0 == "e2e7"
            && sessions[0].1 == "cgpharm"
            && sessions[0].2 == PHARMACIST.1,
        || format!("registered sessions: {sessions:?}"),
    )?;
    agent.logout().await.or_fail("Logout")?;

    // Issue 15: the login program holds none of the module's copies once the module is done.
    // pamtester stopped at pam_end (the module still loaded) and its core image taken.
    let image_dir = tempfile::tempdir().map_err(|e| fail("tempdir", e))?;
    let core = image_dir.path().join("pamtester.core");
    let stopped = pamtester_stopped_at_pam_end(svc, "cgpharm", DEMO_PASSCODE, &core).await?;
    check(stopped.ok, || {
        format!("pamtester under gdb: {}", stopped.text)
    })?;
    let found = scan_image(&core, &[Secret::on_the_bus("the passcode", DEMO_PASSCODE)])
        .map_err(Failed::from)?;
    check(found.is_empty(), || {
        let places: Vec<String> = found.iter().map(ToString::to_string).collect();
        format!(
            "the login program still holds the module's D-Bus message with the passcode:\n  {}",
            places.join("\n  ")
        )
    })?;
    agent.logout().await.map_err(|e| fail("Logout", e))?;

    // A holder not mapped to the account: refused, no try spent, no passcode asked.
    let unmapped = pamtester(svc, "cgdisp", &["authenticate"], "", None).await?;
    check(
        !unmapped.ok && unmapped.text.contains("may not log in as cgdisp"),
        || format!("an unmapped holder: {}", unmapped.text),
    )?;
    check(!unmapped.text.contains("passcode:"), || {
        format!("a passcode was asked for: {}", unmapped.text)
    })?;
    let acct = pamtester(svc, "cgdisp", &["acct_mgmt"], "", None).await?;
    check(!acct.ok, || {
        format!("acct_mgmt for an unmapped holder: {}", acct.text)
    })?;

    // The pharmacist's card leaves; the dispenser's comes in. It may not open the
    // pharmacist's registered session (a screen unlock with another card).
    let pharmacist_card = inserted.remove().or_fail("removing the card")?;
    let dispenser = world.card(DISPENSER).or_fail("card")?;
    let dispenser_inserted =
        insert_and_read(lab, ReaderSlot::First, dispenser, agent, DISPENSER.1).await?;
    let other = authenticate(svc, "cgpharm").await?;
    check(
        !other.ok && other.text.contains("only that card can unlock it"),
        || format!("another card on a registered session: {}", other.text),
    )?;

    // The same card back: its passcode opens the registered session again (what the screen
    // locker's authenticate does after a removal lock).
    let dispenser_card = dispenser_inserted.remove().or_fail("removing the card")?;
    let back =
        reinsert_and_read(lab, ReaderSlot::First, pharmacist_card, agent, PHARMACIST.1).await?;
    let unlock = authenticate(svc, "cgpharm").await?;
    check(unlock.ok, || {
        format!("the same card again: {}", unlock.text)
    })?;
    agent.logout().await.or_fail("Logout")?;
    back.remove().or_fail("removing the card")?;
    let _dispenser = lab
        .insert(ReaderSlot::First, dispenser_card)
        .or_fail("inserting the card again")?;
    wait_for("the dispenser's card to be read again", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == DISPENSER.1 }
    })
    .await?;
    let closed = pamtester(svc, "cgpharm", &["close_session"], "", Some("e2e7")).await?;
    check(closed.ok, || format!("close_session: {}", closed.text))?;
    let sessions = workstation.sessions().await.or_fail("Sessions")?;
    check(sessions.is_empty(), || format!("after close: {sessions:?}"))?;

    // Three wrong passcodes block the card; the last one only as an explicit choice.
    for (input, expect) in [("wrong1\n", "2 tries left"), ("wrong2\n", "1 try left")] {
        let out = pamtester(svc, "cgdisp", &["authenticate"], input, None).await?;
        check(!out.ok && out.text.contains(expect), || {
            format!("wrong passcode ({expect}): {}", out.text)
        })?;
    }
    let declined = pamtester(svc, "cgdisp", &["authenticate"], "no\n", None).await?;
    check(
        !declined.ok && declined.text.contains("still has its last try"),
        || format!("declining the final try: {}", declined.text),
    )?;
    let last = pamtester(svc, "cgdisp", &["authenticate"], "YES\nwrong3\n", None).await?;
    check(!last.ok && last.text.contains("locked"), || {
        format!("the final wrong try: {}", last.text)
    })?;
    let blocked = pamtester(
        svc,
        "cgdisp",
        &["authenticate"],
        &format!("{DEMO_PASSCODE}\n"),
        None,
    )
    .await?;
    check(
        !blocked.ok && blocked.text.contains("to unlock it") && !blocked.text.contains("passcode:"),
        || format!("a blocked card: {}", blocked.text),
    )?;
    let acct = pamtester(svc, "cgdisp", &["acct_mgmt"], "", None).await?;
    check(!acct.ok, || {
        format!("acct_mgmt with a blocked card: {}", acct.text)
    })?;

    drop(service);
    let audit = running.stop().await?;
    check(
        !audit.contains("wrong1") && !audit.contains("wrong3") && !audit.contains(DEMO_PASSCODE),
        || "a passcode reached the audit trail".into(),
    )?;
    eprintln!("pam_login: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
