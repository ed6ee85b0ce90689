//! The D-Bus daemon restarted under the agent (a `dbus-daemon` the test runs at a fixed
//! socket path, killed and started again at the same path). The agent must not be left alive
//! but deaf: either it owns its name on the new bus within 15 s, or it has exited with an
//! error so that systemd (`Restart=on-failure` in `packaging/cardgated.service`) starts it
//! again. Either way the audit chain verifies and no session outlives the card.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, DemoWorld, PHARMACIST};
use cardgate_e2e::check;
use cardgate_e2e::daemon_harness::fail;
use cardgate_reader::VirtualBackend;
use cardgate_vcard::applet::PivApplet;
use libtest_mimic::Failed;

use crate::support::{
    FaultDaemon, SharedCard, assert_no_session_survives, card_tries_left, client, wait_until,
};

/// Starts `dbus-daemon --session` listening on `socket`; returns once the socket exists.
fn start_bus(socket: &Path) -> Result<Child, Failed> {
    let _ = std::fs::remove_file(socket);
    let child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--nopidfile"])
        .arg(format!("--address=unix:path={}", socket.display()))
        .spawn()
        .map_err(|e| fail("starting dbus-daemon", e))?;
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
    let bus_dir = tempfile::tempdir().map_err(|e| fail("tempdir", e))?;
    let socket = bus_dir.path().join("bus");
    let address = format!("unix:path={}", socket.display());
    let mut bus = start_bus(&socket)?;
    let dir = tempfile::tempdir().map_err(|e| fail("tempdir", e))?;
    let world = DemoWorld::start(dir.path())
        .await
        .map_err(|e| fail("demo world", e))?;
    let backend = Arc::new(VirtualBackend::new());
    let reader = backend.attach_reader("Fault Reader 00 00");
    let running =
        FaultDaemon::start_on_bus(world, dir, backend.clone(), address.clone(), |_, _| {}).await?;
    let agent = running.agent.clone();
    let applet = Arc::new(Mutex::new(PivApplet::new(
        running
            .world
            .card(PHARMACIST)
            .map_err(|e| fail("card", e))?,
    )));
    let full = card_tries_left(&applet);
    backend
        .insert(&reader, Box::new(SharedCard::new(&applet)))
        .map_err(|_| Failed::from("reader occupied"))?;
    wait_until("the card to be read", Duration::from_secs(10), || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
    })
    .await?;
    agent
        .login(DEMO_PASSCODE, false)
        .await
        .map_err(|e| fail("Login", e))?;

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
                .map_err(|e| fail("SessionGeneration", e))?;
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
