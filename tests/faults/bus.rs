//! The D-Bus daemon restarted under the agent (a `dbus-daemon` the test runs at a fixed
//! socket path, killed and started again at the same path). The agent must not be left alive
//! but deaf: either it owns its name on the new bus within 15 s, or it has exited with an
//! error so that systemd (`Restart=on-failure` in `packaging/cardgated.service`) starts it
//! again. Either way the audit chain verifies and no session outlives the card.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, DemoWorld};
use cardgate_e2e::check;
use cardgate_e2e::daemon_harness::OrFail as _;
use libtest_mimic::Failed;

use crate::support::{
    FaultDaemon, assert_no_session_survives, card_tries_left, client, insert_shared,
    pharmacist_read, virtual_reader,
};

/// Starts `dbus-daemon --session` listening on `socket`; returns once the socket exists.
fn start_bus(socket: &Path) -> Result<Child, Failed> {
    let _ = std::fs::remove_file(socket);
    let child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--nopidfile"])
        .arg(format!("--address=unix:path={}", socket.display()))
        .spawn()
        .or_fail("starting dbus-daemon")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() {
        if Instant::now() > deadline {
            return Err(Failed::from("dbus-daemon made no socket within 5 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}

/// See the module comment.
pub async fn dbus_daemon_restarted() -> Result<(), Failed> {
    let bus_dir = tempfile::tempdir().or_fail("tempdir")?;
    let socket = bus_dir.path().join("bus");
    let address = format!("unix:path={}", socket.display());
    let mut bus = start_bus(&socket)?;
    let dir = tempfile::tempdir().or_fail("tempdir")?;
    let world = DemoWorld::start(dir.path()).await.or_fail("demo world")?;
    let (backend, reader) = virtual_reader();
    let running =
        FaultDaemon::start_on_bus(world, dir, backend.clone(), address.clone(), |_, _| {}).await?;
    let agent = running.agent.clone();
    let (applet, full) = running.pharmacist_card()?;
    insert_shared(&backend, &reader, &applet)?;
    pharmacist_read(&agent, Duration::from_secs(10)).await?;
    agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;

    // The bus goes away and comes back at the same address.
    let _ = bus.kill();
    let _ = bus.wait();
    let mut bus = start_bus(&socket)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut reconnected = None;
    while Instant::now() < deadline && !running.has_exited() {
        if let Ok(Ok(fresh)) = tokio::time::timeout(Duration::from_secs(1), client(&address)).await
        {
            reconnected = Some(fresh);
            break;
        }
    }
    let verdict = match reconnected {
        Some(fresh) => {
            // Back on the bus: the card's session is still the card's, and ends with it.
            let generation = fresh
                .session_generation()
                .await
                .or_fail("SessionGeneration")?;
            backend.remove(&reader);
            assert_no_session_survives(&fresh, generation, Duration::from_secs(10)).await?;
            let answer = fresh.authorise("download", DEMO_ODS).await;
            check(answer.is_ok_and(|a| !a.allowed), || {
                "allowed without a card".into()
            })?;
            running.stop().await?;
            "re-owned its name on the restarted bus".to_owned()
        }
        None if running.has_exited() => {
            backend.remove(&reader);
            let outcome = running.exited().await?;
            check(outcome.is_err(), || {
                "cardgated lost its bus and exited *successfully*: systemd would not restart it"
                    .into()
            })?;
            format!(
                "exited with an error for systemd to restart it: {:?}",
                outcome.err()
            )
        }
        None => {
            let _ = bus.kill();
            return Err(Failed::from(
                "15 s after the bus restarted cardgated neither owns its name nor has exited: \
                 alive but unreachable, every PMR call fails with ServiceUnknown",
            ));
        }
    };
    let left = card_tries_left(&applet);
    check(left == full, || {
        format!("the card's retry counter went {full} -> {left}")
    })?;
    eprintln!("D-Bus daemon restarted: cardgated {verdict}");
    let _ = bus.kill();
    let _ = bus.wait();
    Ok(())
}
