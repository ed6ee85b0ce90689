//! End-to-end: `cardgate login`'s interactive passcode prompt, driven through a real
//! pseudo-terminal, against `cardgated` on a private `dbus-daemon` watching the lab's pcscd
//! with a virtual PIV card in a vpcd reader.
//!
//! The CLI runs as the session leader of a new pty (`setsid --ctty`), so it reads the
//! passcode from `/dev/tty` exactly as on a workstation. The test waits for the prompt, then
//! for the terminal's ECHO flag to go off (the CLI must switch it off itself: a timeout is a
//! failure), types the passcode, and checks that nothing it typed came back on the screen. A
//! wrong passcode reports the tries left; the right one logs in.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_PASSCODE, PHARMACIST};
use cardgate_e2e::cli_process::AS_CLI;
use cardgate_e2e::daemon_harness::{OrFail as _, RunningDaemon, wait_for};
use cardgate_e2e::memory_image::{
    Secret, assert_no_secret, assert_only_protected, fresh, protected_copies,
};
use cardgate_e2e::{async_lab_trial, check, run_cli_or_lab_suite};
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::provision::CardSpec;
use libtest_mimic::Failed;
use nix::sys::termios::{LocalFlags, tcgetattr};

fn main() -> ExitCode {
    run_cli_or_lab_suite(|| {
        vec![
            async_lab_trial(
                "login_prompt_through_a_pty_no_echo_wrong_then_right",
                prompt,
            ),
            async_lab_trial(
                "the_cli_holds_a_secret_only_on_locked_pages_while_prompting_and_nowhere_once_sent",
                residue,
            ),
        ]
    })
}

/// The CLI on a pseudo-terminal: everything it writes to the terminal is collected.
struct PtyRun {
    child: Child,
    /// The master side, to type on.
    keyboard: File,
    /// The slave side, kept to read the terminal's flags (ECHO).
    slave: OwnedFd,
    screen: Arc<Mutex<String>>,
}

impl PtyRun {
    fn start(args: &[&str]) -> Result<PtyRun, Failed> {
        let pty = nix::pty::openpty(None, None).or_fail("openpty")?;
        let stdio = |fd: &OwnedFd| -> Result<Stdio, Failed> {
            Ok(Stdio::from(fd.try_clone().or_fail("dup")?))
        };
        // setsid makes the CLI a session leader and --ctty makes its stdin, the pty, its
        // controlling terminal, so /dev/tty is this pty.
        let exe = std::env::current_exe().or_fail("current_exe")?;
        let child = Command::new("setsid")
            .arg("--ctty")
            .arg(exe)
            .args(args)
            .env(AS_CLI, "1")
            .stdin(stdio(&pty.slave)?)
            .stdout(stdio(&pty.slave)?)
            .stderr(stdio(&pty.slave)?)
            .spawn()
            .or_fail("starting the CLI under setsid")?;
        let mut screen_reader = File::from(pty.master.try_clone().or_fail("dup")?);
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            // Ends with EIO once the last slave descriptor is closed.
            while let Ok(n) = screen_reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Ok(PtyRun {
            child,
            keyboard: File::from(pty.master),
            slave: pty.slave,
            screen,
        })
    }

    /// The CLI's process id (`setsid` runs it in place).
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `text` on the screen (and, for a secret, for echo to be off), then types
    /// `line` and Enter.
    fn type_at(&mut self, text: &str, line: &str) -> Result<(), Failed> {
        self.wait(text, |r| Ok(r.screen().contains(text)))?;
        if text.contains("not shown") || text.contains("again") {
            self.wait("terminal echo off", |r| Ok(!r.echo_on()?))?;
        }
        self.keyboard
            .write_all(format!("{line}\n").as_bytes())
            .or_fail("typing")
    }

    /// Waits (at most 30 s) for the CLI to end; its exit code.
    fn exit_code(&mut self) -> Result<i32, Failed> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().or_fail("wait")? {
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(Failed::from(format!(
                    "the CLI did not finish; screen:\n{}",
                    self.screen()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    fn echo_on(&self) -> Result<bool, Failed> {
        Ok(tcgetattr(&self.slave)
            .or_fail("tcgetattr")?
            .local_flags
            .contains(LocalFlags::ECHO))
    }

    /// Waits (at most 15 s) until `probe` holds.
    fn wait(
        &self,
        what: &str,
        probe: impl Fn(&PtyRun) -> Result<bool, Failed>,
    ) -> Result<(), Failed> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if probe(self)? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Failed::from(format!(
            "timed out waiting for {what}; screen so far:\n{}",
            self.screen()
        )))
    }

    /// Waits for the prompt and for echo to go off, types `passcode` and Enter, and returns
    /// the exit code and the whole screen.
    fn answer_prompt(mut self, passcode: &str) -> Result<(i32, String), Failed> {
        self.type_at("Passcode (not shown): ", passcode)?;
        let code = self.exit_code()?;
        // Let the reader drain what the CLI wrote last.
        drop(self.slave);
        std::thread::sleep(Duration::from_millis(200));
        let screen = self.screen.lock().unwrap().clone();
        Ok((code, screen))
    }
}

async fn prompt(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
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
    let bus = running.address.clone();

    // A wrong passcode: no echo, refused, the tries left said.
    const WRONG: &str = "zz9911";
    let b = bus.clone();
    let (code, screen) = tokio::task::spawn_blocking(move || {
        PtyRun::start(&["--bus", &b, "login", "--role", "RP-PHARM-FA123"])?.answer_prompt(WRONG)
    })
    .await
    .or_fail("pty thread")??;
    check(code == 1, || {
        format!("a wrong passcode: exit {code}\n{screen}")
    })?;
    check(!screen.contains(WRONG), || {
        format!("the wrong passcode was echoed:\n{screen}")
    })?;
    check(
        screen.contains("2 tries left") || screen.contains("2 attempts left"),
        || format!("tries left not reported:\n{screen}"),
    )?;
    let tries = running
        .agent
        .passcode_tries_left()
        .await
        .or_fail("PasscodeTriesLeft")?;
    check(tries == 2, || {
        format!("tries after one wrong passcode: {tries}")
    })?;

    // The right passcode: no echo, logged in with the role.
    let b = bus.clone();
    let (code, screen) = tokio::task::spawn_blocking(move || {
        PtyRun::start(&["--bus", &b, "login", "--role", "RP-PHARM-FA123"])?
            .answer_prompt(DEMO_PASSCODE)
    })
    .await
    .or_fail("pty thread")??;
    check(code == 0, || {
        format!("the right passcode: exit {code}\n{screen}")
    })?;
    check(!screen.contains(DEMO_PASSCODE), || {
        format!("the passcode was echoed:\n{screen}")
    })?;
    check(
        screen.contains("Logged in.") && screen.contains("Pharmacist"),
        || format!("log-in not reported:\n{screen}"),
    )?;
    let state = running.agent.state().await.or_fail("State")?;
    check(state == "logged-in", || format!("State {state}"))?;
    running.stop().await?;
    Ok(())
}

/// Issue 15, the CLI's side: `cardgate passcode change` holds the current passcode while it
/// asks for the new one, only on locked, undumpable pages (a live scan finds it only there,
/// a `gcore` image nowhere); `cardgate login`, once the passcode went to the agent and it asks
/// which role, holds it nowhere. Values are made at run time (the CLI is this binary).
async fn residue(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let passcode = fresh(6, "");
    let card = running
        .world
        .card_from(&CardSpec::new(PHARMACIST.0, PHARMACIST.1).pin(&passcode))
        .or_fail("card")?;
    let _inserted = lab
        .insert(ReaderSlot::First, Box::new(PivApplet::new(card)))
        .or_fail("inserting the card")?;
    let agent = running.agent.clone();
    wait_for("the agent to read the card", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
    })
    .await?;
    let bus = running.address.clone();
    let dir = tempfile::tempdir().or_fail("tempdir")?;
    let scratch = dir.path().to_owned();

    // Log-in, then the role question: the passcode has gone.
    let (b, p, d) = (bus.clone(), passcode.clone(), scratch.clone());
    tokio::task::spawn_blocking(move || -> Result<(), Failed> {
        let mut cli = PtyRun::start(&["--bus", &b, "login"])?;
        cli.type_at("Passcode (not shown): ", &p)?;
        cli.wait("the role question", |r| Ok(r.screen().contains("Number: ")))?;
        std::thread::sleep(Duration::from_millis(200));
        assert_no_secret(
            cli.pid(),
            &d,
            "cardgate login, passcode sent, asking for the role",
            &[Secret::new("the passcode", &p)],
        )
        .map_err(Failed::from)?;
        cli.type_at("Number: ", "1")?;
        let code = cli.exit_code()?;
        check(code == 0, || {
            format!("login: exit {code}\n{}", cli.screen())
        })
    })
    .await
    .or_fail("pty thread")??;

    // A passcode change: the current one typed, the new one being asked for.
    let new = fresh(8, "");
    let (b, p, d) = (bus.clone(), passcode.clone(), scratch.clone());
    let n = new.clone();
    tokio::task::spawn_blocking(move || -> Result<(), Failed> {
        let mut cli = PtyRun::start(&["--bus", &b, "passcode", "change"])?;
        cli.type_at("Current passcode (not shown): ", &p)?;
        cli.wait("the new passcode question", |r| {
            Ok(r.screen().contains("New passcode (not shown): "))
        })?;
        std::thread::sleep(Duration::from_millis(200));
        let current = Secret::new("the current passcode", &p);
        let held = protected_copies(cli.pid(), &current).map_err(Failed::from)?;
        check(held >= 1, || {
            "the current passcode is not on locked pages while the CLI holds it".to_owned()
        })?;
        assert_only_protected(
            cli.pid(),
            &d,
            "cardgate passcode change, asking for the new passcode",
            std::slice::from_ref(&current),
        )
        .map_err(Failed::from)?;
        cli.type_at("New passcode (not shown): ", &n)?;
        cli.type_at("New passcode again: ", &n)?;
        let code = cli.exit_code()?;
        check(code == 0, || {
            format!("passcode change: exit {code}\n{}", cli.screen())
        })
    })
    .await
    .or_fail("pty thread")??;
    running.stop().await?;
    Ok(())
}
