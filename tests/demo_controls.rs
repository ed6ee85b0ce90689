//! End-to-end: the embedded demo as a person (or an integrator's test) drives it. The real
//! demo (`cardgate_demo::run`, what `cardgated-demo` and `scripts/run` run) in its own process on a
//! private `dbus-daemon`; the card taken out, put back and swapped through
//! `org.cardgate.Demo1`; every signal of `org.cardgate.Agent1` seen; bad input named; the
//! `cardgate demo` command finding the demo by its address file; and the production `run`
//! serving no such object.
//!
//! Which processes: this test binary re-runs itself as the demo (`CARDGATE_E2E_AS_DEMO`,
//! stopping when its standard input closes) and as the CLI (`CARDGATE_E2E_AS_CLI`, then its
//! `main` is exactly `cardgate`'s), as tests/cli_e2e.rs does.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_CARDS, DEMO_ODS, DEMO_PASSCODE, DEMO_READERS, DemoWorld, PrivateBus};
use cardgate_e2e::daemon_harness::{connect_uncached, fail, wait_for};
use cardgate_e2e::{async_trial, check};
use cardgate_ipc::{AgentProxy, BUS_NAME, DEMO_OBJECT_PATH, DemoProxy};
use futures_lite::StreamExt as _;
use libtest_mimic::{Arguments, Failed};
use zbus::message::Type as MessageType;

const AS_DEMO: &str = "CARDGATE_E2E_AS_DEMO";
const AS_CLI: &str = "CARDGATE_E2E_AS_CLI";

fn main() -> ExitCode {
    if std::env::var_os(AS_CLI).is_some() {
        return cardgate_cli::main();
    }
    if let Some(bus) = std::env::var_os(AS_DEMO) {
        return run_demo(bus.to_string_lossy().into_owned());
    }
    let args = Arguments::from_args();
    let trials = vec![
        async_trial(
            "demo_controls_pull_reinsert_swap_and_show_every_signal",
            every_signal,
        ),
        async_trial(
            "the_production_run_serves_no_demo_controls",
            production_has_none,
        ),
        async_trial(
            "the_holder_changes_and_unlocks_the_passcode_on_the_pin_pad",
            on_the_pin_pad,
        ),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

/// The demo child: `cardgate_demo::run` on `bus` until standard input closes.
fn run_demo(bus: String) -> ExitCode {
    cardgate_e2e::daemon_process::serve_until_stdin_closes("demo child", |stopped| {
        cardgate_demo::run(Some(bus), stopped)
    })
}

/// The demo process; closing its standard input (drop) stops it.
struct DemoProcess {
    child: Child,
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every signal the agent object sent, by member name, with its body as text.
#[derive(Clone, Default)]
struct Signals(Arc<Mutex<Vec<(String, String)>>>);

impl Signals {
    fn count(&self, member: &str, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, body)| m == member && body.contains(needle))
            .count()
    }

    async fn wait(&self, member: &str, needle: &str, already: usize) -> Result<(), Failed> {
        wait_for(&format!("{member} with {needle:?}"), || {
            let seen = self.count(member, needle);
            async move { seen > already }
        })
        .await
        .map_err(|e| {
            Failed::from(format!(
                "{}; signals seen: {:?}",
                e.message().unwrap_or(""),
                self.0.lock().unwrap()
            ))
        })
    }
}

async fn listen(connection: &zbus::Connection) -> Result<Signals, Failed> {
    zbus::fdo::DBusProxy::new(connection)
        .await
        .map_err(|e| fail("bus proxy", e))?
        .add_match_rule(
            zbus::MatchRule::builder()
                .msg_type(MessageType::Signal)
                .sender(BUS_NAME)
                .map_err(|e| fail("match rule", e))?
                .build(),
        )
        .await
        .map_err(|e| fail("AddMatch", e))?;
    let signals = Signals::default();
    let sink = signals.clone();
    let mut stream = zbus::MessageStream::from(connection);
    tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            if message.message_type() != MessageType::Signal {
                continue;
            }
            let member = message
                .header()
                .member()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let body = message
                .body()
                .deserialize::<zbus::zvariant::Structure<'_>>()
                .map(|s| format!("{s:?}"))
                .unwrap_or_default();
            sink.0.lock().unwrap().push((member, body));
        }
    });
    Ok(signals)
}

fn agent_error<T: std::fmt::Debug>(result: zbus::Result<T>) -> (String, String) {
    match result {
        Err(zbus::Error::MethodError(name, text, _)) => {
            (name.to_string(), text.unwrap_or_default())
        }
        other => (format!("not an agent error: {other:?}"), String::new()),
    }
}

async fn state(agent: &AgentProxy<'_>) -> String {
    agent.state().await.unwrap_or_default()
}

async fn wait_state(agent: &AgentProxy<'_>, want: &str) -> Result<(), Failed> {
    wait_for(&format!("State {want}"), || async move {
        state(agent).await == want
    })
    .await
}

/// The demo in its own process on a private bus, and a connection to it.
struct RunningDemo {
    runtime_dir: tempfile::TempDir,
    exe: std::path::PathBuf,
    connection: zbus::Connection,
    agent: AgentProxy<'static>,
    demo: DemoProxy<'static>,
    process: DemoProcess,
    _bus: PrivateBus,
}

impl RunningDemo {
    /// Starts the demo and waits for its first card to be read.
    async fn start() -> Result<RunningDemo, Failed> {
        let runtime_dir = tempfile::tempdir().map_err(|e| fail("tempdir", e))?;
        let bus = PrivateBus::start().map_err(|e| fail("private bus", e))?;
        let exe = std::env::current_exe().map_err(|e| fail("current exe", e))?;
        let process = DemoProcess {
            child: Command::new(&exe)
                .env(AS_DEMO, bus.address())
                .env("XDG_RUNTIME_DIR", runtime_dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| fail("starting the demo", e))?,
        };
        let (connection, agent) = connect_uncached(bus.address()).await?;
        wait_state(&agent, "card-present").await?;
        let demo = DemoProxy::new(&connection)
            .await
            .map_err(|e| fail("demo proxy", e))?;
        Ok(RunningDemo {
            runtime_dir,
            exe,
            connection,
            agent,
            demo,
            process,
            _bus: bus,
        })
    }

    /// The demo's audit trail (`cardgate_demo::run` writes it under the temporary directory
    /// named after its process).
    fn audit(&self) -> Result<String, Failed> {
        let path = std::env::temp_dir()
            .join(format!("cardgated-demo-{}", self.process.child.id()))
            .join("audit.jsonl");
        std::fs::read_to_string(&path).map_err(|e| fail(&format!("{}", path.display()), e))
    }
}

/// Swaps the demo card `name` (holder `uuid`) into the first reader and waits until the agent
/// has read it.
async fn swap_in(
    demo: &DemoProxy<'_>,
    agent: &AgentProxy<'static>,
    name: &str,
    uuid: &str,
) -> Result<(), Failed> {
    demo.swap_card(name)
        .await
        .map_err(|e| fail("SwapCard", e))?;
    wait_for(&format!("the {name}'s card to be read"), || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == uuid }
    })
    .await
}

async fn every_signal() -> Result<(), Failed> {
    let running = RunningDemo::start().await?;
    let signals = listen(&running.connection).await?;
    let RunningDemo {
        runtime_dir,
        exe,
        connection,
        agent,
        demo,
        ..
    } = &running;
    let cards: HashMap<String, String> = demo
        .cards()
        .await
        .map_err(|e| fail("Cards", e))?
        .into_iter()
        .map(|(name, _, uuid, _, _)| (name, uuid))
        .collect();
    check(cards.len() == DEMO_CARDS.len(), || {
        format!("cards: {cards:?}")
    })?;

    // The pharmacist logs in, then pulls the card.
    agent
        .login(DEMO_PASSCODE, false)
        .await
        .map_err(|e| fail("Login", e))?;
    agent
        .select_role_profile("RP-PHARM-FA123")
        .await
        .map_err(|e| fail("SelectRoleProfile", e))?;
    let allowed = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(allowed.allowed, || {
        format!("logged in, Authorise said {allowed:?}")
    })?;
    signals
        .wait("SessionStarted", &cards["pharmacist"], 0)
        .await?;
    demo.remove_card("")
        .await
        .map_err(|e| fail("RemoveCard", e))?;
    signals.wait("CardRemoved", "Demo Reader 00 00", 0).await?;
    signals.wait("SessionEnded", "card-removed", 0).await?;
    wait_state(agent, "no-card").await?;
    let refused = agent
        .authorise("download", DEMO_ODS)
        .await
        .map_err(|e| fail("Authorise", e))?;
    check(!refused.allowed && refused.reason == "no-card", || {
        format!("after removal Authorise said {refused:?}")
    })?;

    // Back in, then the dispenser swapped in: the passcode-expiry warning at log-in.
    demo.insert_card("pharmacist", "")
        .await
        .map_err(|e| fail("InsertCard", e))?;
    signals
        .wait("CardInserted", &cards["pharmacist"], 0)
        .await?;
    wait_state(agent, "card-present").await?;
    swap_in(demo, agent, "dispenser", &cards["dispenser"]).await?;
    signals.wait("CardInserted", &cards["dispenser"], 0).await?;
    agent
        .login(DEMO_PASSCODE, false)
        .await
        .map_err(|e| fail("the dispenser's Login", e))?;
    signals.wait("PasscodeExpiring", "", 0).await?;
    agent.logout().await.map_err(|e| fail("Logout", e))?;
    signals.wait("SessionEnded", "logged-out", 0).await?;

    // The card due for renewal: the warning at insertion, the renewal's progress.
    swap_in(demo, agent, "expiring", &cards["expiring"]).await?;
    signals.wait("CertificateExpiring", "20 days", 0).await?;
    agent
        .login(DEMO_PASSCODE, false)
        .await
        .map_err(|e| fail("the expiring card's Login", e))?;
    let staff = cardgate_ipc::AgentStaffProxy::new(connection)
        .await
        .map_err(|e| fail("staff proxy", e))?;
    let renewed = staff
        .renew_certificate()
        .await
        .map_err(|e| fail("RenewCertificate", e))?;
    check(
        renewed > time::OffsetDateTime::now_utc().unix_timestamp(),
        || format!("the new certificate expires at {renewed}"),
    )?;
    signals.wait("RenewalProgress", "done", 0).await?;

    // The idle timers, made short: the session idles out, then the card left in is reported.
    demo.shorten_idle(1)
        .await
        .map_err(|e| fail("ShortenIdle", e))?;
    signals.wait("SessionEnded", "idle-timeout", 0).await?;
    signals
        .wait("CardLeftInReader", "Demo Reader 00 00", 0)
        .await?;

    // Bad input: named, nothing changed, the demo still answers.
    let (name, text) = agent_error(demo.insert_card("bogus", "").await);
    check(
        name == "org.cardgate.Agent1.Error.InvalidArgument"
            && text.contains("bogus")
            && text.contains("pharmacist"),
        || format!("an unknown card answered {name}: {text}"),
    )?;
    let (name, text) = agent_error(demo.insert_card("manager", "").await);
    check(
        name == "org.cardgate.Agent1.Error.InvalidArgument" && text.contains("already holds"),
        || format!("an occupied reader answered {name}: {text}"),
    )?;
    let (name, text) = agent_error(demo.insert_card("manager", "Reader 9").await);
    check(
        name == "org.cardgate.Agent1.Error.InvalidArgument" && text.contains("Demo Reader 00 01"),
        || format!("an unknown reader answered {name}: {text}"),
    )?;
    check(state(agent).await == "card-present", || {
        "bad demo calls changed the state".into()
    })?;

    // The command a person types, finding the demo by its address file.
    let removals = signals.count("CardRemoved", "");
    let output = Command::new(exe)
        .env(AS_CLI, "1")
        .env("XDG_RUNTIME_DIR", runtime_dir.path())
        .args(["demo", "remove"])
        .output()
        .map_err(|e| fail("cardgate demo remove", e))?;
    check(output.status.success(), || {
        format!(
            "cardgate demo remove: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    signals.wait("CardRemoved", "", removals).await?;
    wait_state(agent, "no-card").await?;
    let output = Command::new(exe)
        .env(AS_CLI, "1")
        .env("XDG_RUNTIME_DIR", runtime_dir.path())
        .args(["demo", "remove"])
        .output()
        .map_err(|e| fail("cardgate demo remove", e))?;
    let said = String::from_utf8_lossy(&output.stderr);
    check(
        !output.status.success() && said.contains("No demo card"),
        || format!("a second `cardgate demo remove` said: {said}"),
    )?;
    Ok(())
}

/// Keys `values` on the demo's PIN pad, one entry each, for the reader's next prompts.
async fn key_on_pad(demo: &DemoProxy<'_>, values: &[&str]) -> Result<(), Failed> {
    for value in values {
        demo.enter_on_pin_pad(value)
            .await
            .map_err(|e| fail("EnterOnPinPad", e))?;
    }
    Ok(())
}

/// `result` is an `InvalidArgument` that names `method`, the one to call instead.
fn refused_naming(result: zbus::Result<()>, method: &str) -> Result<(), Failed> {
    let (name, text) = agent_error(result);
    check(
        name == "org.cardgate.Agent1.Error.InvalidArgument" && text.contains(method),
        || format!("typed at a pad reader, answered {name}: {text} (want {method} named)"),
    )
}

async fn tries_left(agent: &AgentProxy<'_>) -> i32 {
    agent.passcode_tries_left().await.unwrap_or(-1)
}

/// Issue 15 item 3, driven as the holder at a PIN-pad reader (the demo's Omnikey 3821 model):
/// typed values are refused there, naming the pad method; the passcode changes and the RA's
/// unlock code unlocks with every value keyed on the pad; a confirmation keyed differently
/// never reaches the card; the audit trail records the pad entries and none of the values.
async fn on_the_pin_pad() -> Result<(), Failed> {
    let running = RunningDemo::start().await?;
    let RunningDemo { agent, demo, .. } = &running;
    let pharmacist = &DEMO_CARDS[0];
    let pad = DEMO_READERS[2];
    demo.remove_card("")
        .await
        .map_err(|e| fail("RemoveCard", e))?;
    wait_state(agent, "no-card").await?;
    demo.insert_card(pharmacist.name, pad)
        .await
        .map_err(|e| fail("InsertCard on the pad reader", e))?;
    wait_state(agent, "card-present").await?;
    let staff = cardgate_ipc::AgentStaffProxy::new(&running.connection)
        .await
        .map_err(|e| fail("staff proxy", e))?;

    // Typed on the keyboard at a pad reader: refused before anything reaches the card.
    let typed = agent
        .change_passcode(DEMO_PASSCODE, "n3wpad77", false)
        .await;
    refused_naming(typed, "ChangePasscodeWithPinPad")?;
    let typed = staff
        .unlock_with_code(pharmacist.unlock_code, "n3wpad77", false)
        .await;
    refused_naming(typed, "UnlockWithCodeOnPinPad")?;
    check(tries_left(agent).await == 3, || {
        "a typed value spent a try".into()
    })?;

    // The change, every value keyed on the pad; the new passcode logs in, the old does not.
    let new = "n3wpad77";
    key_on_pad(demo, &[DEMO_PASSCODE, new, new]).await?;
    agent
        .change_passcode_with_pin_pad(false)
        .await
        .map_err(|e| fail("ChangePasscodeWithPinPad", e))?;
    key_on_pad(demo, &[new]).await?;
    agent
        .login_with_pin_pad(false)
        .await
        .map_err(|e| fail("LoginWithPinPad with the new passcode", e))?;
    agent.logout().await.map_err(|e| fail("Logout", e))?;
    key_on_pad(demo, &[DEMO_PASSCODE]).await?;
    let (name, _) = agent_error(agent.login_with_pin_pad(false).await);
    check(
        name.ends_with(".WrongPasscode") && tries_left(agent).await == 2,
        || format!("the old passcode after the change answered {name}"),
    )?;

    // The new passcode keyed twice differently: the reader itself refuses, the card is not
    // asked, no try is spent.
    key_on_pad(demo, &[new, "a1b2c3", "a1b2c4"]).await?;
    let (name, text) = agent_error(agent.change_passcode_with_pin_pad(false).await);
    check(
        text.contains("confirmation") && text.contains("differ") && tries_left(agent).await == 2,
        || format!("a mismatched confirmation answered {name}: {text}"),
    )?;

    // Locked by wrong passcodes on the pad (the last one confirmed), then the RA's unlock
    // code and a new passcode keyed there; the new one logs in.
    key_on_pad(demo, &["wr0ng11"]).await?;
    let _ = agent.login_with_pin_pad(false).await;
    key_on_pad(demo, &["wr0ng22"]).await?;
    let (name, _) = agent_error(agent.login_with_pin_pad(true).await);
    check(
        name.ends_with(".WrongPasscode") && tries_left(agent).await == 0,
        || format!("the confirmed final wrong try answered {name}"),
    )?;
    let unlocked = "unl0ck88";
    key_on_pad(demo, &[pharmacist.unlock_code, unlocked, unlocked]).await?;
    staff
        .unlock_with_code_on_pin_pad(false)
        .await
        .map_err(|e| fail("UnlockWithCodeOnPinPad", e))?;
    check(tries_left(agent).await == 3, || {
        "the tries left did not come back to 3 after the unlock".into()
    })?;
    key_on_pad(demo, &[unlocked]).await?;
    agent
        .login_with_pin_pad(false)
        .await
        .map_err(|e| fail("LoginWithPinPad after the unlock", e))?;

    // On the audit trail: the pad entries and the change, none of the values keyed.
    let audit = running.audit()?;
    check(
        audit.contains("reader_keypad")
            && audit.contains("passcode changed by the holder (ChangePasscodeWithPinPad)"),
        || format!("the pad change is not on the audit trail:\n{audit}"),
    )?;
    for value in [DEMO_PASSCODE, new, unlocked, pharmacist.unlock_code] {
        check(!audit.contains(value), || {
            "a keyed value is on the audit trail".into()
        })?;
    }
    Ok(())
}

async fn production_has_none() -> Result<(), Failed> {
    let dir = tempfile::tempdir().map_err(|e| fail("tempdir", e))?;
    let world = DemoWorld::start(dir.path())
        .await
        .map_err(|e| fail("world", e))?;
    let bus = PrivateBus::start().map_err(|e| fail("private bus", e))?;
    let config = world.config(bus.address()).map_err(|e| fail("config", e))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(cardgated::run(
        config,
        Arc::new(cardgate_reader::VirtualBackend::new()),
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    let (connection, agent) = connect_uncached(bus.address()).await?;
    wait_for("the daemon to answer", || {
        let agent = agent.clone();
        async move { agent.state().await.is_ok() }
    })
    .await?;
    let introspected = zbus::fdo::IntrospectableProxy::builder(&connection)
        .destination(BUS_NAME)
        .and_then(|b| b.path(DEMO_OBJECT_PATH))
        .map_err(|e| fail("introspectable proxy", e))?
        .build()
        .await
        .map_err(|e| fail("introspectable proxy", e))?
        .introspect()
        .await;
    // No object at all (UnknownObject), or one without the interface.
    match introspected {
        Ok(xml) => check(!xml.contains("org.cardgate.Demo1"), || {
            format!("the production daemon serves the demo controls:\n{xml}")
        })?,
        Err(zbus::fdo::Error::UnknownObject(_)) => {}
        Err(e) => return Err(fail("Introspect", e)),
    }
    let demo = DemoProxy::new(&connection)
        .await
        .map_err(|e| fail("demo proxy", e))?;
    let (name, _) = agent_error(demo.remove_card("").await);
    check(
        name.starts_with("org.freedesktop.DBus.Error.Unknown"),
        || format!("RemoveCard on the production daemon answered {name}"),
    )?;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), daemon)
        .await
        .map_err(|_| Failed::from("cardgated did not stop"))?
        .map_err(|e| fail("cardgated task", e))?
        .map_err(|e| fail("cardgated", e))?;
    Ok(())
}
