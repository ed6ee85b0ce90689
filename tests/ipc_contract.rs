//! End-to-end: the D-Bus contract of `org.cardgate.Agent1` as an integrator meets it, with
//! `cardgated` on a private `dbus-daemon` watching the lab's real pcscd (virtual PIV cards in
//! the vpcd readers) and logging in at an in-process spine-sim.
//!
//! - the running service introspects exactly as the shipped XML files
//!   (`crates/ipc/interfaces/`) say, member by member;
//! - every reply's body signature is the concatenation of the out arguments the introspection
//!   declares (a typed client built from the introspection would accept it);
//! - one `PropertiesChanged` per state change, carrying exactly the properties that changed,
//!   sent before the reply of the method that caused it, the generation with its state;
//! - `PasscodeTriesLeft` is current when `WrongPasscode` answers;
//! - `CertificateExpiring` says the same day count in its argument and its sentence;
//! - wrong-typed arguments are refused before the agent sees them, the daemon stays up.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, PHARMACIST};
use cardgate_e2e::daemon_harness::{OrFail as _, RunningDaemon, fail, wait_for};
use cardgate_e2e::{async_lab_trial, check, run_lab_suite};
use cardgate_ipc::{AGENT1_XML, BUS_NAME, INTERFACE, OBJECT_PATH, WORKSTATION1_XML, property};
use cardgate_lab::Lab;
use cardgate_vcard::provision::{CardSpec, Validity};
use futures_lite::StreamExt as _;
use libtest_mimic::Failed;
use zbus::message::Type as MessageType;
use zbus::zvariant::OwnedValue;

const PROPERTIES_INTERFACE: &str = "org.freedesktop.DBus.Properties";

fn main() -> ExitCode {
    if let Some(code) = cardgate_e2e::daemon_process::run_if_child() {
        return code;
    }
    run_lab_suite(vec![
        async_lab_trial(
            "the_running_service_introspects_exactly_as_the_shipped_xml",
            introspection_is_the_shipped_xml,
        ),
        async_lab_trial(
            "every_reply_has_the_signature_its_introspection_declares",
            replies_match_their_introspection,
        ),
        async_lab_trial(
            "one_properties_changed_per_state_change_with_only_what_changed_before_the_reply",
            one_signal_per_change,
        ),
        async_lab_trial(
            "passcode_tries_left_is_current_when_wrong_passcode_answers",
            tries_left_before_the_answer,
        ),
        async_lab_trial("certificate_expiring_says_one_day_count", one_day_count),
        async_lab_trial(
            "wrong_typed_arguments_are_refused_and_the_daemon_stays_up",
            wrong_types,
        ),
    ])
}

/// A connection of the test's own (a client like any PMR's) to the daemon's bus.
async fn client(running: &RunningDaemon) -> Result<zbus::Connection, Failed> {
    zbus::connection::Builder::address(running.address.as_str())
        .or_fail("bus address")?
        .build()
        .await
        .or_fail("connecting")
}

// ------------------------------------------------------------------ introspection

/// One interface as comparable lines: `method Login in passcode s`, `property State s read`,
/// annotations included; XML comments and attribute order do not matter.
fn describe(interface: &zbus_xml::Interface<'_>) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    let args = |args: &[zbus_xml::Arg]| -> Vec<String> {
        args.iter()
            .map(|a| {
                let direction = match a.direction() {
                    Some(zbus_xml::ArgDirection::In) => "in",
                    Some(zbus_xml::ArgDirection::Out) => "out",
                    None => "",
                };
                format!("{direction} {} {}", a.name().unwrap_or("?"), a.ty().inner())
            })
            .collect()
    };
    for m in interface.methods() {
        let list = args(m.args());
        lines.insert(format!("method {} ({})", m.name(), list.join(", ")));
        for a in m.annotations() {
            lines.insert(format!("method {} @{}={}", m.name(), a.name(), a.value()));
        }
    }
    for s in interface.signals() {
        lines.insert(format!(
            "signal {} ({})",
            s.name(),
            args(s.args()).join(", ")
        ));
    }
    for p in interface.properties() {
        lines.insert(format!(
            "property {} {} {:?}",
            p.name(),
            p.ty().inner(),
            p.access()
        ));
        for a in p.annotations() {
            lines.insert(format!("property {} @{}={}", p.name(), a.name(), a.value()));
        }
    }
    lines
}

fn interfaces(xml: &str, what: &str) -> Result<BTreeMap<String, BTreeSet<String>>, Failed> {
    let node = zbus_xml::Node::from_reader(xml.as_bytes()).or_fail(what)?;
    Ok(node
        .interfaces()
        .iter()
        .map(|i| (i.name().to_string(), describe(i)))
        .collect())
}

async fn introspection_is_the_shipped_xml(_lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let connection = client(&running).await?;
    let live = zbus::fdo::IntrospectableProxy::builder(&connection)
        .destination(BUS_NAME)
        .and_then(|b| b.path(OBJECT_PATH))
        .or_fail("introspectable proxy")?
        .build()
        .await
        .or_fail("introspectable proxy")?
        .introspect()
        .await
        .or_fail("Introspect")?;
    let live = interfaces(&live, "the live introspection")?;
    let mut shipped = interfaces(AGENT1_XML, "org.cardgate.Agent1.xml")?;
    shipped.extend(interfaces(
        WORKSTATION1_XML,
        "org.cardgate.Workstation1.xml",
    )?);
    shipped.extend(interfaces(
        cardgate_ipc::LOGIN1_XML,
        "org.cardgate.Login1.xml",
    )?);
    shipped.extend(interfaces(cardgate_ipc::WEB1_XML, "org.cardgate.Web1.xml")?);

    let ours: BTreeSet<&String> = live
        .keys()
        .filter(|name| name.starts_with("org.cardgate."))
        .collect();
    check(ours == shipped.keys().collect(), || {
        format!(
            "served interfaces {ours:?}, shipped XML files describe {:?}",
            shipped.keys().collect::<Vec<_>>()
        )
    })?;
    for (name, expected) in &shipped {
        let served = &live[name];
        let missing: Vec<_> = expected.difference(served).collect();
        let extra: Vec<_> = served.difference(expected).collect();
        check(missing.is_empty() && extra.is_empty(), || {
            format!(
                "{name}: in the XML but not served: {missing:#?}\nserved but not in the XML: {extra:#?}"
            )
        })?;
    }
    check(
        shipped[INTERFACE]
            .iter()
            .filter(|l| l.starts_with("property "))
            .filter(|l| !l.contains('@'))
            .count()
            == property::ALL.len(),
        || "the XML and cardgate_ipc::property::ALL list different properties".into(),
    )?;
    running.stop().await.map(|_| ())
}

// ------------------------------------------------------------------ reply signatures

/// The out arguments' types of every method of every shipped interface, from the XML (the
/// previous trial shows the live introspection says the same).
fn declared_replies() -> Result<BTreeMap<String, String>, Failed> {
    let mut replies = BTreeMap::new();
    for (xml, what) in [(AGENT1_XML, "Agent1"), (WORKSTATION1_XML, "Workstation1")] {
        let node = zbus_xml::Node::from_reader(xml.as_bytes()).or_fail(what)?;
        for interface in node.interfaces() {
            for method in interface.methods() {
                let out: String = method
                    .args()
                    .iter()
                    .filter(|a| a.direction() == Some(zbus_xml::ArgDirection::Out))
                    .map(|a| a.ty().inner().to_string())
                    .collect();
                replies.insert(format!("{}.{}", interface.name(), method.name()), out);
            }
        }
    }
    Ok(replies)
}

/// Calls `interface.method` with `args` on the raw connection and returns the reply's body
/// signature, or the error's name.
async fn call<B>(
    connection: &zbus::Connection,
    interface: &str,
    method: &str,
    args: &B,
) -> Result<String, String>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    match connection
        .call_method(Some(BUS_NAME), OBJECT_PATH, Some(interface), method, args)
        .await
    {
        Ok(reply) => Ok(reply.body().signature().to_string_no_parens()),
        Err(zbus::Error::MethodError(name, text, _)) => Err(format!("{name}: {text:?}")),
        Err(e) => Err(e.to_string()),
    }
}

async fn replies_match_their_introspection(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let _inserted = running.insert_pharmacist(lab).await?;
    let connection = client(&running).await?;
    let declared = declared_replies()?;
    let agent = INTERFACE;
    let workstation = "org.cardgate.Workstation1";
    // Every method this world can answer with success, in an order that makes each one
    // succeed; the staff tasks are proved the same way by the Python and C typed-proxy
    // tests against the demo (tests/clients.rs).
    let mut answered = Vec::new();
    let mut expect = |method: &str, got: Result<String, String>| {
        answered.push((method.to_owned(), got));
    };
    expect(
        "Agent1.Status",
        call(&connection, agent, "Status", &()).await,
    );
    expect(
        "Agent1.Authorise",
        call(&connection, agent, "Authorise", &("download", DEMO_ODS)).await,
    );
    expect(
        "Agent1.Login",
        call(&connection, agent, "Login", &(DEMO_PASSCODE, false)).await,
    );
    expect(
        "Agent1.SelectRoleProfile",
        call(
            &connection,
            agent,
            "SelectRoleProfile",
            &("RP-PHARM-FA123",),
        )
        .await,
    );
    expect(
        "Agent1.Authorise",
        call(&connection, agent, "Authorise", &("download", DEMO_ODS)).await,
    );
    expect(
        "Agent1.GetTicket",
        call(&connection, agent, "GetTicket", &()).await,
    );
    expect(
        "Workstation1.CardStanding",
        call(&connection, workstation, "CardStanding", &()).await,
    );
    expect(
        "Workstation1.Sessions",
        call(&connection, workstation, "Sessions", &()).await,
    );
    expect(
        "Workstation1.UnregisterSession",
        call(&connection, workstation, "UnregisterSession", &("c1",)).await,
    );
    // Changed and changed back.
    for (current, new) in [(DEMO_PASSCODE, "m1357q"), ("m1357q", DEMO_PASSCODE)] {
        let changed = call(&connection, agent, "ChangePasscode", &(current, new, false)).await;
        expect("Agent1.ChangePasscode", changed);
    }
    expect(
        "Agent1.Logout",
        call(&connection, agent, "Logout", &()).await,
    );
    for (method, got) in answered {
        let key = format!("org.cardgate.{method}");
        let want = declared
            .get(&key)
            .ok_or_else(|| Failed::from(format!("{key} is not in the XML")))?;
        match got {
            Ok(signature) => check(&signature == want, || {
                format!(
                    "{key} replied with body signature {signature:?}; its introspection declares {want:?}"
                )
            })?,
            Err(e) => return Err(Failed::from(format!("{key} failed: {e}"))),
        }
    }
    running.stop().await.map(|_| ())
}

// ------------------------------------------------------------------ PropertiesChanged

/// What the test's connection received while a step ran: the `PropertiesChanged` signals
/// (changed property names and values) and, for a method call, how many of them arrived
/// before its reply.
#[derive(Debug, Default)]
struct Seen {
    changes: Vec<BTreeMap<String, OwnedValue>>,
    before_reply: Option<usize>,
    other_signals: Vec<String>,
}

/// Runs `step` and collects what arrives on `stream` until the bus has been quiet for
/// `settle`. `reply_serial`: the serial of the method call whose reply to look for.
async fn collect(
    stream: &mut zbus::MessageStream,
    settle: Duration,
    reply_serial: Option<std::num::NonZeroU32>,
) -> Result<Seen, Failed> {
    let mut seen = Seen::default();
    while let Ok(Some(message)) = tokio::time::timeout(settle, stream.next()).await {
        let message = message.or_fail("message stream")?;
        let header = message.header();
        match message.message_type() {
            MessageType::Signal
                if header.interface().map(|i| i.as_str()) == Some(PROPERTIES_INTERFACE)
                    && header.member().map(|m| m.as_str()) == Some("PropertiesChanged") =>
            {
                let (iface, changed, _invalidated): (
                    String,
                    std::collections::HashMap<String, OwnedValue>,
                    Vec<String>,
                ) = message
                    .body()
                    .deserialize()
                    .or_fail("PropertiesChanged body")?;
                if iface == INTERFACE {
                    seen.changes.push(changed.into_iter().collect());
                }
            }
            MessageType::Signal => {
                seen.other_signals
                    .push(header.member().map(|m| m.to_string()).unwrap_or_default());
            }
            MessageType::MethodReturn | MessageType::Error
                if reply_serial.is_some() && header.reply_serial() == reply_serial =>
            {
                seen.before_reply = Some(seen.changes.len());
            }
            _ => {}
        }
    }
    Ok(seen)
}

fn names(change: &BTreeMap<String, OwnedValue>) -> BTreeSet<&str> {
    change.keys().map(String::as_str).collect()
}

/// Sends a method call on `connection` without waiting, returning its serial.
async fn send_call<B>(
    connection: &zbus::Connection,
    method: &str,
    args: &B,
) -> Result<std::num::NonZeroU32, Failed>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let message = zbus::Message::method_call(OBJECT_PATH, method)
        .and_then(|b| b.destination(BUS_NAME))
        .and_then(|b| b.interface(INTERFACE))
        .and_then(|b| b.build(args))
        .or_fail("building the call")?;
    let serial = message.primary_header().serial_num();
    connection
        .send(&message)
        .await
        .or_fail("sending the call")?;
    Ok(serial)
}

async fn one_signal_per_change(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let connection = client(&running).await?;
    zbus::fdo::DBusProxy::new(&connection)
        .await
        .or_fail("bus proxy")?
        .add_match_rule(
            zbus::MatchRule::builder()
                .msg_type(MessageType::Signal)
                .sender(BUS_NAME)
                .or_fail("match rule")?
                .build(),
        )
        .await
        .or_fail("AddMatch")?;
    let mut stream = zbus::MessageStream::from(&connection);
    let settle = Duration::from_millis(1500);

    let _inserted = running.insert_pharmacist(lab).await?;
    let _ = collect(&mut stream, settle, None).await?;
    let generation = running
        .agent
        .session_generation()
        .await
        .or_fail("SessionGeneration")?;

    // Log-in: State and SessionGeneration change (tries left stay 3), in one signal,
    // before the reply.
    let serial = send_call(&connection, "Login", &(DEMO_PASSCODE, false)).await?;
    let seen = collect(&mut stream, settle, Some(serial)).await?;
    check(seen.changes.len() == 1, || {
        format!(
            "log-in: {} PropertiesChanged, want 1: {seen:#?}",
            seen.changes.len()
        )
    })?;
    let want: BTreeSet<&str> = [property::STATE, property::SESSION_GENERATION].into();
    check(names(&seen.changes[0]) == want, || {
        format!(
            "log-in changed {:?}, want {want:?}",
            names(&seen.changes[0])
        )
    })?;
    check(seen.before_reply == Some(1), || {
        format!("log-in: the reply came before its PropertiesChanged: {seen:#?}")
    })?;
    let state: String = seen.changes[0][property::STATE]
        .clone()
        .try_into()
        .or_fail("State")?;
    let after_login: u64 = seen.changes[0][property::SESSION_GENERATION]
        .clone()
        .try_into()
        .or_fail("SessionGeneration")?;
    check(state == "logged-in" && after_login > generation, || {
        format!("log-in announced State {state:?} with generation {after_login} (was {generation})")
    })?;

    // Role selection: SelectedRoleProfile and SessionGeneration.
    let serial = send_call(&connection, "SelectRoleProfile", &("RP-PHARM-FA123",)).await?;
    let seen = collect(&mut stream, settle, Some(serial)).await?;
    let want: BTreeSet<&str> = [
        property::SELECTED_ROLE_PROFILE,
        property::SESSION_GENERATION,
    ]
    .into();
    check(
        seen.changes.len() == 1 && names(&seen.changes[0]) == want && seen.before_reply == Some(1),
        || {
            format!(
                "role selection: want one PropertiesChanged of {want:?} before the reply, saw {seen:#?}"
            )
        },
    )?;

    // Removal: everything about the card and the session at once, generation included.
    drop(_inserted);
    let seen = collect(&mut stream, settle, None).await?;
    let want: BTreeSet<&str> = property::ALL
        .into_iter()
        .filter(|p| *p != property::WORKSTATION_ODS_CODES)
        .collect();
    check(seen.changes.len() == 1, || {
        format!(
            "removal: {} PropertiesChanged, want 1: {seen:#?}",
            seen.changes.len()
        )
    })?;
    check(names(&seen.changes[0]) == want, || {
        format!(
            "removal changed {:?}, want {want:?}",
            names(&seen.changes[0])
        )
    })?;
    let state: String = seen.changes[0][property::STATE]
        .clone()
        .try_into()
        .or_fail("State")?;
    check(state == "no-card", || {
        format!("removal announced State {state:?}")
    })?;
    check(
        seen.other_signals.iter().any(|s| s == "CardRemoved")
            && seen.other_signals.iter().any(|s| s == "SessionEnded"),
        || {
            format!(
                "removal: CardRemoved and SessionEnded expected, saw {:?}",
                seen.other_signals
            )
        },
    )?;
    running.stop().await.map(|_| ())
}

// ------------------------------------------------------------------ tries left

async fn tries_left_before_the_answer(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let _inserted = running.insert_pharmacist(lab).await?;
    let agent = &running.agent;
    for (wrong, left) in [("0000aa", 2), ("0000bb", 1)] {
        let answer = agent.login(wrong, false).await;
        check(
            matches!(&answer, Err(zbus::Error::MethodError(name, _, _)) if name.as_str() == "org.cardgate.Agent1.Error.WrongPasscode"),
            || format!("a wrong passcode answered {answer:?}"),
        )?;
        // Read at once, on the same connection, after the error reply: no waiting.
        let tries = agent
            .passcode_tries_left()
            .await
            .or_fail("PasscodeTriesLeft")?;
        check(tries == left, || {
            format!("PasscodeTriesLeft read {tries} right after WrongPasscode; want {left}")
        })?;
        // The warnings follow: the holder is told how many tries are left before the lock.
        let warnings = status_warnings(agent).await?;
        let want = if left == 1 {
            "only 1 passcode try is left".to_owned()
        } else {
            format!("{left} passcode tries are left")
        };
        check(warnings.iter().any(|w| w.contains(&want)), || {
            format!("Warnings right after WrongPasscode do not say {want:?}: {warnings:?}")
        })?;
    }
    agent
        .login(DEMO_PASSCODE, true)
        .await
        .or_fail("the right passcode on the final try")?;
    let tries = agent
        .passcode_tries_left()
        .await
        .or_fail("PasscodeTriesLeft")?;
    check(tries == 3, || {
        format!("PasscodeTriesLeft read {tries} right after a good log-in; want 3")
    })?;
    running.stop().await.map(|_| ())
}

/// The `Warnings` entry of `Status`.
async fn status_warnings(agent: &cardgate_ipc::AgentProxy<'static>) -> Result<Vec<String>, Failed> {
    let status = agent.status().await.or_fail("Status")?;
    let warnings = status
        .get(property::WARNINGS)
        .ok_or_else(|| fail("Status", "no Warnings entry"))?;
    Vec::<String>::try_from(warnings.try_clone().or_fail("Warnings")?).or_fail("Warnings")
}

// ------------------------------------------------------------------ day counts

async fn one_day_count(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let mut expiring = running
        .agent
        .receive_certificate_expiring()
        .await
        .or_fail("subscribing to CertificateExpiring")?;
    // Issued to expire 29 days from now: by the time it is read, 28 days and some
    // hours are left, which the holder's sentence calls "in 29 days".
    let card = running
        .world
        .card_from(
            &CardSpec::new(PHARMACIST.0, PHARMACIST.1)
                .pin(DEMO_PASSCODE)
                .validity(Validity::ExpiresInDays(29)),
        )
        .or_fail("card")?;
    let _inserted = running.insert_pharmacist_card(lab, card).await?;
    let signal = tokio::time::timeout(Duration::from_secs(10), expiring.next())
        .await
        .map_err(|_| Failed::from("no CertificateExpiring within 10 s"))?
        .ok_or_else(|| Failed::from("the signal stream ended"))?;
    let args = signal.args().or_fail("CertificateExpiring")?;
    check(*args.days_left() == 29, || {
        format!(
            "days_left {} for a certificate expiring in 29 days",
            args.days_left()
        )
    })?;
    check(args.message().contains("in 29 days"), || {
        format!(
            "days_left {} but the sentence says: {}",
            args.days_left(),
            args.message()
        )
    })?;
    running.stop().await.map(|_| ())
}

// ------------------------------------------------------------------ wrong types

async fn wrong_types(lab: &mut Lab) -> Result<(), Failed> {
    let running = RunningDaemon::start(|_| {}).await?;
    let _inserted = running.insert_pharmacist(lab).await?;
    let connection = client(&running).await?;
    // A passcode sent as a number, an ODS code as a boolean: refused by the bus library
    // before the agent sees them (so no try can be spent), with zbus's error name.
    let login = call(&connection, INTERFACE, "Login", &(2468_i32, false)).await;
    let gate = call(&connection, INTERFACE, "Authorise", &("download", true)).await;
    for (what, got) in [("Login(i, b)", &login), ("Authorise(s, b)", &gate)] {
        check(
            matches!(got, Err(e) if e.starts_with("org.freedesktop.zbus.Error:") && e.contains("ignature")),
            || {
                format!(
                    "{what} answered {got:?}; docs/ipc.md documents org.freedesktop.zbus.Error (signature mismatch)"
                )
            },
        )?;
    }
    wait_for("the daemon to answer after the malformed calls", || {
        let agent = running.agent.clone();
        async move { agent.state().await.is_ok() }
    })
    .await?;
    let tries = running
        .agent
        .passcode_tries_left()
        .await
        .or_fail("PasscodeTriesLeft")?;
    check(tries == 3, || {
        format!("{tries} tries left after malformed calls; none may be spent")
    })?;
    let profiles = running
        .agent
        .login(DEMO_PASSCODE, false)
        .await
        .or_fail("a good log-in after the malformed calls")?;
    check(!profiles.is_empty(), || "no role profiles".into())?;
    running.stop().await.map(|_| ())
}
