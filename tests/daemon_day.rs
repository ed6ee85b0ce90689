//! End-to-end: `cardgated` on a private `dbus-daemon`, watching the lab's real pcscd with
//! virtual PIV cards in the vpcd readers, logging in at an in-process spine-sim on loopback.
//! A scripted pharmacy day through the client proxy and through `busctl` as an independent
//! client; malformed calls to every method; no passcode on the audit trail afterwards.
#![allow(clippy::unwrap_used)]

use std::process::ExitCode;
use std::time::Duration;

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, DISPENSER, PHARMACIST};
use cardgate_e2e::daemon_harness::{
    OrFail as _, RunningDaemon, connect_once_readers_seen, fail, insert_and_read, wait_for,
};
use cardgate_e2e::daemon_process::DaemonProcess;
use cardgate_e2e::{
    PcscClient, SELECT_PIV, async_lab_trial, check, lab_trial, run_lab_suite, runtime_with_workers,
    transmit,
};
use cardgate_ipc::Action;
use cardgate_lab::{Lab, ReaderSlot};
use libtest_mimic::Failed;

/// VERIFY with no data: the card answers 90 00 while its passcode is verified, else 63 Cx
/// with the tries left, and costs no try.
const VERIFY_STATUS: [u8; 4] = [0x00, 0x20, 0x00, 0x80];

fn main() -> ExitCode {
    if let Some(code) = cardgate_e2e::daemon_process::run_if_child() {
        return code;
    }
    run_lab_suite(vec![
        async_lab_trial("pharmacy_day_through_dbus_pcscd_and_spine_sim", day),
        async_lab_trial(
            "a_card_that_refuses_to_forget_its_passcode_is_reset_at_logout",
            refusing_card_reset,
        ),
        lab_trial(
            "the_daemons_own_log_at_trace_level_holds_no_passcode",
            no_passcode_in_the_daemon_log,
        ),
        lab_trial(
            "a_caller_outside_the_group_is_refused_restricted_methods_by_the_policy_and_the_daemon",
            restricted_methods_for_another_user,
        ),
        lab_trial(
            "a_member_of_a_group_known_only_to_nss_may_call_restricted_methods",
            restricted_methods_for_an_nss_group_member,
        ),
    ])
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
        .or_fail("Authorise")?;
    check(!answer.allowed && answer.reason == "no-card", || {
        format!("{answer:?}")
    })?;

    // The pharmacist's card goes in.
    let pharmacist = world.card(PHARMACIST).or_fail("card")?;
    let inserted = insert_and_read(lab, ReaderSlot::First, pharmacist, agent, PHARMACIST.1).await?;
    let state = agent.state().await.or_fail("State")?;
    check(state == "card-present", || format!("State {state}"))?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(answer.reason == "not-logged-in", || format!("{answer:?}"))?;

    // A malformed passcode costs nothing and is named.
    let tries_before = agent.passcode_tries_left().await.or_fail("tries")?;
    let bad = error_name(agent.login("12", false).await);
    check(bad.ends_with("Error.InvalidArgument"), || bad.clone())?;
    let tries_after = agent.passcode_tries_left().await.or_fail("tries")?;
    check(tries_before == tries_after, || {
        format!("tries {tries_before} -> {tries_after}")
    })?;

    // Log in: the card signs the TLS handshake at spine-sim.
    let mut ended = agent
        .receive_session_ended()
        .await
        .or_fail("SessionEnded stream")?;
    let mut removed = agent
        .receive_card_removed()
        .await
        .or_fail("CardRemoved stream")?;
    let roles = agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;
    check(roles.iter().any(|r| r.id == "RP-PHARM-FA123"), || {
        format!("{roles:?}")
    })?;
    let state = agent.state().await.or_fail("State")?;
    check(state == "logged-in", || format!("State {state}"))?;
    // A verified passcode resets the counter: the full three, not "unknown".
    let tries = agent.passcode_tries_left().await.or_fail("tries")?;
    check(tries == 3, || format!("tries after log-in: {tries}"))?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
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
        .or_fail("SelectRoleProfile")?;
    for action in Action::ALL.map(Action::name) {
        let answer = agent.authorise(action, DEMO_ODS).await.or_fail(action)?;
        check(answer.allowed && answer.reason == "allowed", || {
            format!("{action}: {answer:?}")
        })?;
    }
    let elsewhere = agent
        .authorise("download", "FQ999")
        .await
        .or_fail("Authorise")?;
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
    let ticket = agent.get_ticket().await.or_fail("GetTicket")?;
    check(
        ticket.holder_uuid == PHARMACIST.1 && ticket.ods_code == DEMO_ODS,
        || format!("{ticket:?}"),
    )?;

    // Role change within the session (to the locum profile): download still allowed here.
    agent
        .select_role_profile("RP-LOCUM-FFFFF")
        .await
        .or_fail("SelectRoleProfile locum")?;
    let answer = agent
        .authorise("claim", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(answer.reason == "missing-activity", || {
        format!("{answer:?}")
    })?;
    agent
        .select_role_profile("RP-PHARM-FA123")
        .await
        .or_fail("SelectRoleProfile back")?;

    // The card leaves: CardRemoved, SessionEnded, and every answer is no-card.
    let generation_before = agent.session_generation().await.or_fail("gen")?;
    inserted.remove().or_fail("removing the card")?;
    use futures_lite::StreamExt as _;
    let signal = tokio::time::timeout(Duration::from_secs(5), removed.next())
        .await
        .map_err(|_| Failed::from("no CardRemoved signal within 5 s"))?
        .ok_or_else(|| Failed::from("CardRemoved stream ended"))?;
    let args = signal.args().or_fail("CardRemoved args")?;
    check(args.generation > generation_before, || {
        format!(
            "CardRemoved generation {} not after {generation_before}",
            args.generation
        )
    })?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
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
    let end = end.args().or_fail("SessionEnded args")?;
    check(end.reason == "card-removed", || {
        format!("SessionEnded {}", end.reason)
    })?;

    // Another holder's card: nothing is inherited.
    let dispenser = world.card(DISPENSER).or_fail("card")?;
    let _second = insert_and_read(lab, ReaderSlot::First, dispenser, agent, DISPENSER.1).await?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(answer.reason == "not-logged-in", || format!("{answer:?}"))?;
    let role = agent.selected_role_profile().await.or_fail("role")?;
    check(role.id.is_empty(), || format!("{role:?}"))?;
    let ticket = error_name(agent.get_ticket().await);
    check(ticket.ends_with("Error.NotLoggedIn"), || ticket.clone())?;

    // Logged out, the card no longer holds a verified passcode: another program sharing the
    // reader (a plain PC/SC client here) finds it locked. While logged in it does not.
    let other_program = PcscClient::new()?;
    // One connection throughout, left without a reset at the end (dropping it would reset
    // the card, which clears the verified state by itself and would prove nothing).
    let card = other_program.connect(ReaderSlot::First)?;
    let verified = |card: &pcsc::Card| -> Result<Vec<u8>, Failed> {
        transmit(card, &SELECT_PIV)?;
        transmit(card, &VERIFY_STATUS)
    };
    agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;
    let during = verified(&card)?;
    check(during == [0x90, 0x00], || {
        format!("logged in, the card answered {during:02X?} to a status VERIFY")
    })?;
    agent.logout().await.or_fail("Logout")?;
    let after = verified(&card)?;
    card.disconnect(pcsc::Disposition::LeaveCard)
        .map_err(|(_, e)| fail("SCardDisconnect", e))?;
    check(after == [0x63, 0xC3], || {
        format!(
            "after Logout the card answered {after:02X?} to a status VERIFY (63 C3: not verified, 3 tries)"
        )
    })?;

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
    let status = agent.status().await.or_fail("Status after abuse")?;
    check(status.contains_key("SessionGeneration"), || {
        format!("{status:?}")
    })?;
    let tries = agent.passcode_tries_left().await.or_fail("tries")?;
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
    check_callers_recorded(&audit)
}

/// Every decision names its caller as the bus daemon saw it: this test process for the
/// proxy's calls, a `busctl` process for busctl's, never one mistaken for the other (the
/// daemon caches identities per connection).
fn check_callers_recorded(audit: &str) -> Result<(), Failed> {
    let me = std::process::id();
    let my_exe = std::env::current_exe()
        .or_fail("current_exe")?
        .display()
        .to_string();
    let (mut mine, mut busctls) = (0, 0);
    for line in audit.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).or_fail("audit line")?;
        let event = &entry["event"];
        if event["kind"] != "authorisation_decision" {
            continue;
        }
        let caller = &event["caller"];
        let pid = caller["pid"].as_u64().unwrap_or_default();
        let exe = caller["executable"].as_str().unwrap_or_default();
        if exe.ends_with("/busctl") {
            check(pid != u64::from(me), || {
                format!("busctl recorded as us: {line}")
            })?;
            busctls += 1;
        } else {
            check(pid == u64::from(me) && exe == my_exe, || {
                format!("a decision not from us ({me}, {my_exe}) nor busctl: {line}")
            })?;
            mine += 1;
        }
    }
    check(busctls == 1 && mine > 8, || {
        format!("decisions recorded: {mine} from this test, {busctls} from busctl")
    })?;
    // What a method did names its caller too: the passcode tries, the session's start, the
    // role chosen, and the log-out's end (a removal's end names none: the card did it).
    let events: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|entry| entry["event"].clone())
        .collect();
    for kind in ["passcode_attempt", "session_started", "role_selected"] {
        let mut of_kind = events.iter().filter(|e| e["kind"] == kind).peekable();
        check(of_kind.peek().is_some(), || {
            format!("no {kind} on the trail")
        })?;
        for event in of_kind {
            check(event["caller"]["pid"].as_u64().is_some(), || {
                format!("{kind} without its caller: {event}")
            })?;
        }
    }
    let ends: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["kind"] == "session_ended")
        .collect();
    check(
        ends.iter()
            .any(|e| e["reason"] == "logout" && e["caller"]["pid"] == u64::from(me)),
        || format!("no log-out's end naming this test as its caller: {ends:?}"),
    )?;
    check(
        ends.iter()
            .filter(|e| e["reason"] == "card_removed")
            .all(|e| e.get("caller").is_none()),
        || format!("a removal's end names a caller: {ends:?}"),
    )
}

/// The daemon as its own process, logging everything (`trace` for every module, zbus's
/// included): a wrong passcode, the right one, a passcode change and a log-out, then its log
/// must hold none of the three passcodes, neither as typed nor as the hex of the bytes sent
/// to the card. The log must also show it logged at all, or the grep proves nothing.
fn no_passcode_in_the_daemon_log(lab: &mut Lab) -> Result<(), Failed> {
    const WRONG: &str = "90817263";
    const NEW: &str = "55172839";
    let runtime = runtime_with_workers(2)?;
    let log = runtime.block_on(async {
        let dir = tempfile::tempdir().or_fail("tempdir")?;
        let world = cardgate_demo::DemoWorld::start(dir.path())
            .await
            .or_fail("demo world")?;
        let bus = cardgate_demo::PrivateBus::start().or_fail("private bus")?;
        let address = bus.address().to_owned();
        let card = world.card(PHARMACIST).or_fail("card")?;
        let daemon =
            DaemonProcess::spawn(&world, &address, Some("trace")).or_fail("daemon process")?;
        let (connection, agent) = connect_once_readers_seen(&address).await?;
        let _inserted = insert_and_read(lab, ReaderSlot::First, card, &agent, PHARMACIST.1).await?;
        let wrong = error_name(agent.login(WRONG, false).await);
        check(wrong.ends_with("Error.WrongPasscode"), || wrong.clone())?;
        agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;
        agent
            .change_passcode(DEMO_PASSCODE, NEW, false)
            .await
            .or_fail("ChangePasscode")?;
        agent.logout().await.or_fail("Logout")?;
        drop(agent);
        drop(connection);
        daemon.stop().or_fail("daemon process")
    })?;
    check(
        log.contains("cardgated ready") && log.lines().count() > 20,
        || format!("the daemon hardly logged; the grep would prove nothing:\n{log}"),
    )?;
    for secret in [DEMO_PASSCODE, WRONG, NEW] {
        let hex = hex::encode(secret.as_bytes());
        for form in [secret.to_owned(), hex.clone(), hex.to_uppercase()] {
            check(!log.contains(&form), || {
                let line = log.lines().find(|l| l.contains(&form)).unwrap_or_default();
                format!("a passcode ({form}) is in the daemon's log: {line}")
            })?;
        }
    }
    Ok(())
}

/// The rules every bus below starts from: anyone may connect; `strict` is the system bus's
/// default (no method calls but to the bus itself, root excepted) plus the project's own
/// policy file, `open` lets every call through so only the daemon's own check stands.
fn bus_config(socket: &std::path::Path, strict: bool) -> String {
    let policy = if strict {
        format!(
            r#"<policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"/>
  </policy>
  <policy user="root">
    <allow own="*"/>
    <allow send_type="method_call"/>
  </policy>
  <include>{}</include>"#,
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../packaging/org.cardgate.Agent.conf"
            )
        )
    } else {
        r#"<policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>"#
            .to_owned()
    };
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  {policy}
</busconfig>
"#,
        socket.display()
    )
}

/// `busctl` run as the unprivileged user `nobody` against `address`.
fn busctl_as_nobody(address: &str, args: &[&str]) -> (bool, String) {
    busctl_as("nobody", address, args)
}

/// `busctl` run as `user` (its groups set by `runuser` through NSS) against `address`.
fn busctl_as(user: &str, address: &str, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new("runuser")
        .args(["-u", user, "--", "busctl"])
        .arg(format!("--address={address}"))
        .args([
            "call",
            cardgate_ipc::BUS_NAME,
            cardgate_ipc::OBJECT_PATH,
            cardgate_ipc::INTERFACE,
        ])
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
        Err(e) => (false, format!("runuser could not run: {e}")),
    }
}

/// A caller that is neither root nor in the restricted group (`nobody`, through `busctl`):
/// on a bus with the system bus's defaults and the project's policy file, `Login` and
/// `GetTicket` are refused by the bus itself; on a bus that lets everything through, by the
/// daemon's own check of the caller's uid and groups. `Authorise` works for it on both, and
/// the decision is audited under its uid.
fn restricted_methods_for_another_user(_lab: &mut Lab) -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt as _;
    let runtime = runtime_with_workers(2)?;
    runtime.block_on(async {
        let dir = tempfile::tempdir().or_fail("tempdir")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .or_fail("chmod")?;
        let world = cardgate_demo::DemoWorld::start(&dir.path().join("world"))
            .await
            .or_fail("demo world")?;
        for strict in [true, false] {
            let name = if strict { "strict" } else { "open" };
            let daemon = BusDaemon::start(&world, dir.path(), name, strict, |_| {}).await?;
            let address = daemon.address.clone();

            let (ok, out) = busctl_as_nobody(&address, &["Login", "sb", "12345678", "false"]);
            let refused_by = if strict {
                "Access denied"
            } else {
                "only for members of the"
            };
            // The bus's refusal never reaches the daemon, so its words are not in it.
            let daemon_spoke = out.contains("only for members of the");
            check(
                !ok && out.contains(refused_by) && daemon_spoke != strict,
                || format!("{name} bus: Login as nobody: {out}"),
            )?;
            let (ok, out) = busctl_as_nobody(&address, &["GetTicket"]);
            check(!ok && out.contains(refused_by), || {
                format!("{name} bus: GetTicket as nobody: {out}")
            })?;
            let (ok, out) = busctl_as_nobody(&address, &["Authorise", "ss", "download", DEMO_ODS]);
            check(ok && out.contains("\"no-card\""), || {
                format!("{name} bus: Authorise as nobody: {out}")
            })?;

            let audit = daemon.stop().await?;
            check(
                audit
                    .lines()
                    .any(|l| l.contains("authorisation_decision") && l.contains("\"uid\":65534")),
                || format!("{name} bus: no decision audited under nobody's uid:\n{audit}"),
            )?;
            check(!audit.contains("12345678"), || {
                "the passcode is on the trail".into()
            })?;
        }
        Ok(())
    })
}

/// `cardgated` on its own `dbus-daemon` (rules from [`bus_config`]), over the lab's pcscd.
struct BusDaemon {
    address: String,
    audit_path: std::path::PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), cardgated::DaemonError>>,
    _bus: KillOnDrop,
}

impl BusDaemon {
    /// Starts the bus `name` in `dir` and the daemon on it with `world`'s configuration as
    /// `adjust` leaves it; returns once the daemon answers on the bus.
    async fn start(
        world: &cardgate_demo::DemoWorld,
        dir: &std::path::Path,
        name: &str,
        strict: bool,
        adjust: impl FnOnce(&mut cardgated::Config),
    ) -> Result<BusDaemon, Failed> {
        let socket = dir.join(format!("bus-{name}"));
        let config_path = dir.join(format!("bus-{name}.conf"));
        std::fs::write(&config_path, bus_config(&socket, strict)).or_fail("bus config")?;
        let bus = std::process::Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--nopidfile"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .or_fail("dbus-daemon")?;
        let bus = KillOnDrop(bus);
        let address = format!("unix:path={}", socket.display());
        wait_for("the bus socket", || {
            let socket = socket.clone();
            async move { socket.exists() }
        })
        .await?;
        let mut config = world.config(&address).or_fail("config")?;
        config.paths.audit = dir.join(format!("audit-{name}.jsonl"));
        adjust(&mut config);
        let audit_path = config.paths.audit.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(cardgated::run(
            config,
            std::sync::Arc::new(cardgate_reader::PcscBackend::new()),
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        wait_for("the daemon to answer on the bus", || {
            let address = address.clone();
            async move { busctl(&address, &["status", cardgate_ipc::BUS_NAME]).0 }
        })
        .await?;
        Ok(BusDaemon {
            address,
            audit_path,
            stop,
            task,
            _bus: bus,
        })
    }

    /// Stops the daemon (it must stop cleanly) and returns its audit trail.
    async fn stop(self) -> Result<String, Failed> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .map_err(|_| Failed::from("cardgated did not stop"))?
            .or_fail("cardgated task")?
            .or_fail("cardgated")?;
        std::fs::read_to_string(&self.audit_path).or_fail("audit")
    }
}

/// The user and the group of the NSS trial, in `libnss-extrausers`' files only.
const NSS_USER: &str = "cardgate-nss-member";
const NSS_GROUP: &str = "cardgate-nss-staff";

/// Makes `NSS_USER` and `NSS_GROUP` exist only through NSS, in this test's mount namespace:
/// `libnss-extrausers` reads them from `/var/lib/extrausers`, and `nsswitch.conf` asks it
/// after `files` (both bind-mounted over the real ones, which stay as they are). Afterwards
/// `getent` finds both and `/etc/passwd` and `/etc/group` hold neither.
fn nss_only_user_and_group(dir: &std::path::Path) -> Result<(), Failed> {
    // Debian installs the module outside the multiarch directory.
    let module = [
        "/usr/lib/libnss_extrausers.so.2",
        "/usr/lib/x86_64-linux-gnu/libnss_extrausers.so.2",
    ];
    check(
        module.iter().any(|m| std::path::Path::new(m).exists()),
        || "libnss-extrausers is not installed: run scripts/setup".to_owned(),
    )?;
    let extrausers = dir.join("extrausers");
    std::fs::create_dir_all(&extrausers).or_fail("extrausers dir")?;
    std::fs::write(
        extrausers.join("passwd"),
        format!("{NSS_USER}:x:64901:64901::/nonexistent:/usr/sbin/nologin\n"),
    )
    .or_fail("extrausers passwd")?;
    std::fs::write(
        extrausers.join("group"),
        format!("{NSS_USER}:x:64901:\n{NSS_GROUP}:x:64902:{NSS_USER}\n"),
    )
    .or_fail("extrausers group")?;
    std::fs::write(
        extrausers.join("shadow"),
        format!("{NSS_USER}:*:20000::::::\n"),
    )
    .or_fail("extrausers shadow")?;
    let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let nsswitch: String = nsswitch
        .lines()
        .filter(|l| {
            !l.starts_with("passwd:") && !l.starts_with("group:") && !l.starts_with("shadow:")
        })
        .chain([
            "passwd: files extrausers",
            "group: files extrausers",
            "shadow: files extrausers",
        ])
        .map(|l| format!("{l}\n"))
        .collect();
    let nsswitch_path = dir.join("nsswitch.conf");
    std::fs::write(&nsswitch_path, nsswitch).or_fail("nsswitch.conf")?;
    std::fs::create_dir_all("/var/lib/extrausers").or_fail("/var/lib/extrausers")?;
    for (from, to) in [
        (
            extrausers.as_path(),
            std::path::Path::new("/var/lib/extrausers"),
        ),
        (
            nsswitch_path.as_path(),
            std::path::Path::new("/etc/nsswitch.conf"),
        ),
    ] {
        let status = std::process::Command::new("mount")
            .arg("--bind")
            .args([from, to])
            .status()
            .or_fail("mount")?;
        check(status.success(), || {
            format!("mount --bind {} {}", from.display(), to.display())
        })?;
    }
    let getent = |what: &str, name: &str| {
        std::process::Command::new("getent")
            .args([what, name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    check(getent("group", NSS_GROUP).contains(NSS_USER), || {
        format!("NSS does not list {NSS_USER} in {NSS_GROUP}")
    })?;
    check(!getent("passwd", NSS_USER).is_empty(), || {
        format!("NSS does not know {NSS_USER}")
    })?;
    for file in ["/etc/passwd", "/etc/group"] {
        let text = std::fs::read_to_string(file).or_fail(file)?;
        check(
            !text.contains(NSS_USER) && !text.contains(NSS_GROUP),
            || format!("{file} names the NSS-only user or group: the trial would prove nothing"),
        )?;
    }
    Ok(())
}

/// An estate whose groups come from a directory (SSSD, LDAP, AD): the restricted group and its
/// member exist only through NSS. The member may call restricted methods (the answer is the
/// method's own, `NotLoggedIn` ("Log in to get a ticket"), never `NotPermitted`); `nobody` still may not.
fn restricted_methods_for_an_nss_group_member(_lab: &mut Lab) -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt as _;
    let runtime = runtime_with_workers(2)?;
    runtime.block_on(async {
        let dir = tempfile::tempdir().or_fail("tempdir")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .or_fail("chmod")?;
        nss_only_user_and_group(dir.path())?;
        let world = cardgate_demo::DemoWorld::start(&dir.path().join("world"))
            .await
            .or_fail("demo world")?;
        let daemon = BusDaemon::start(&world, dir.path(), "nss", false, |config| {
            config.ipc.restricted_group = NSS_GROUP.to_owned();
        })
        .await?;
        let address = daemon.address.clone();

        let (ok, out) = busctl_as(NSS_USER, &address, &["GetTicket"]);
        check(
            !ok && out.contains("Log in to get a ticket") && !out.contains("only for members"),
            || format!("GetTicket as the NSS group's member: {out}"),
        )?;
        let (ok, out) = busctl_as(NSS_USER, &address, &["Login", "sb", "12", "false"]);
        check(
            !ok && out.contains("passcode") && !out.contains("only for members"),
            || {
                format!(
                    "Login as the NSS group's member was not let through to its own checks: {out}"
                )
            },
        )?;
        let (ok, out) = busctl_as_nobody(&address, &["GetTicket"]);
        check(
            !ok && out.contains(&format!("only for members of the \"{NSS_GROUP}\"")),
            || format!("GetTicket as nobody: {out}"),
        )?;
        daemon.stop().await.map(|_| ())
    })
}

/// Kills and reaps a child process when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 15 item 4: a card that answers VERIFY P1 = FF with 6A86 is reset when the session
/// ends, so another program's fresh connection finds the passcode unverified (and cannot sign
/// without it); the audit trail says why. Without the fallback the card stays verified.
async fn refusing_card_reset(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let mut card = running.world.card(PHARMACIST).or_fail("card")?;
    card.quirks.refuses_pin_logout = true;
    let _inserted = running.insert_pharmacist_card(lab, card).await?;
    running
        .agent
        .login(DEMO_PASSCODE, false)
        .await
        .or_fail("Login")?;
    running.agent.logout().await.or_fail("Logout")?;
    // Another program, connecting afresh after the log-out.
    let other_program = PcscClient::new()?;
    let card = other_program.connect(ReaderSlot::First)?;
    transmit(&card, &SELECT_PIV)?;
    let status = transmit(&card, &VERIFY_STATUS)?;
    check(status == [0x63, 0xC3], || {
        format!(
            "after Logout the refusing card answered {status:02X?} to a status VERIFY (want 63 C3)"
        )
    })?;
    // Its key needs the passcode: GENERAL AUTHENTICATE with 9A does not sign.
    let mut sign = vec![
        0x00, 0x87, 0x11, 0x9A, 0x26, 0x7C, 0x24, 0x82, 0x00, 0x81, 0x20,
    ];
    sign.extend_from_slice(&[0x11; 32]);
    sign.push(0x00);
    let signed = transmit(&card, &sign)?;
    check(!signed.ends_with(&[0x90, 0x00]), || {
        format!("the reset card signed without the passcode: {signed:02X?}")
    })?;
    card.disconnect(pcsc::Disposition::LeaveCard)
        .map_err(|(_, e)| fail("SCardDisconnect", e))?;
    let audit = running.stop().await?;
    check(
        audit.contains("refused to forget the verified passcode") && audit.contains("6A86"),
        || format!("no audit note of the reset:\n{audit}"),
    )?;
    Ok(())
}
