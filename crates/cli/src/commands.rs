//! The commands: each reaches the agent (or the audit file), prints for people or `--json`,
//! and returns the exit code. Errors are printed here, once, with what to do next.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use cardgate_ipc::{AgentError, AgentProxy};
use cardgate_secmem::LockedString;
use futures_lite::StreamExt;
use serde_json::json;
use zbus::proxy::CacheProperties;
use zeroize::Zeroizing;

use crate::error::CliError;
use crate::format::{self, StatusView};
use crate::{AuditCommand, Cli, Command, DEFAULT_AUDIT_PATH, DEFAULT_CONFIG_PATH};

/// Runs `cli` and returns the process exit code.
pub(crate) async fn run(cli: Cli) -> u8 {
    let json = cli.json;
    let bus = cli.bus.clone();
    let result = match cli.command {
        Command::Status => status(&bus, json).await,
        Command::Check { action, ods } => check(&bus, json, &action, ods).await,
        Command::Audit { command } => audit(json, command),
        Command::Watch => watch(&bus, json).await,
        Command::Login {
            pin_pad,
            passcode_stdin,
            confirm_final_try,
            role,
        } => login(&bus, json, pin_pad, passcode_stdin, confirm_final_try, role).await,
        Command::Role { id } => role(&bus, json, &id).await,
        Command::Logout => logout(&bus, json).await,
        Command::Completions { shell } => {
            let mut cmd = crate::command();
            clap_complete::generate(shell, &mut cmd, "cardgate", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => man(),
        Command::Demo { command } => crate::demo::run(&bus, json, command).await,
        Command::Staff(command) => crate::staff::run(&bus, json, command).await,
        Command::Doctor { config } => Ok(crate::doctor::run(&config, &bus, json).await),
        Command::SupportBundle {
            config,
            output,
            fault_time,
            events,
            audit_file,
        } => {
            crate::support_bundle::run(&config, &bus, json, output, fault_time, events, audit_file)
                .await
        }
    };
    match result {
        Ok(code) => code,
        Err((code, e)) => {
            report(json, &e);
            code
        }
    }
}

/// A failure and the exit code it means for this command.
pub(crate) type Outcome = Result<u8, (u8, CliError)>;

pub(crate) fn report(json: bool, e: &CliError) {
    if json {
        println!(
            "{}",
            json!({"ok": false, "error": e.code(), "message": e.to_string()})
        );
    } else {
        eprintln!("cardgate: {e}");
    }
}

pub(crate) fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// Connects to `bus` and checks that the agent owns its name, so "not running" is said as such.
pub(crate) async fn connect(
    bus: &str,
) -> Result<(zbus::Connection, AgentProxy<'static>), CliError> {
    let unreachable = |source| CliError::BusUnreachable {
        bus: bus.to_owned(),
        source,
    };
    let connection = if bus == "system" {
        zbus::Connection::system().await.map_err(unreachable)?
    } else {
        zbus::connection::Builder::address(bus)
            .map_err(unreachable)?
            .build()
            .await
            .map_err(unreachable)?
    };
    let dbus = zbus::fdo::DBusProxy::new(&connection)
        .await
        .map_err(unreachable)?;
    let name = zbus::names::BusName::try_from(cardgate_ipc::BUS_NAME)
        .map_err(|e| unreachable(zbus::Error::from(e)))?;
    if !dbus.name_has_owner(name).await.unwrap_or(false) {
        return Err(CliError::DaemonNotRunning {
            bus: bus.to_owned(),
        });
    }
    let agent = AgentProxy::builder(&connection)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(unreachable)?;
    Ok((connection, agent))
}

pub(crate) async fn read_status(bus: &str, agent: &AgentProxy<'_>) -> Result<StatusView, CliError> {
    let map = agent
        .status()
        .await
        .map_err(|e| CliError::from_call(bus, e))?;
    Ok(StatusView::from_map(&map))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn status(bus: &str, json: bool) -> Outcome {
    let (_c, agent) = connect(bus).await.map_err(|e| (1, e))?;
    let view = read_status(bus, &agent).await.map_err(|e| (1, e))?;
    if json {
        print_json(&serde_json::to_value(&view).unwrap_or_default());
    } else {
        print!("{}", format::render_status(&view, now()));
    }
    Ok(0)
}

async fn check(bus: &str, json: bool, action: &str, ods: Option<String>) -> Outcome {
    if action.parse::<cardgate_ipc::Action>().is_err() {
        return Err((
            2,
            CliError::Usage(format!(
                "unknown action \"{action}\"; use one of: {}",
                cardgate_ipc::Action::valid_names()
            )),
        ));
    }
    let (_c, agent) = connect(bus).await.map_err(|e| (2, e))?;
    let ods = match ods {
        Some(o) => o,
        None => {
            let view = read_status(bus, &agent).await.map_err(|e| (2, e))?;
            if view.selected_role_profile.ods_code.is_empty() {
                return Err((
                    2,
                    CliError::Usage(
                        "no role profile is selected, so give the pharmacy's ODS code with --ods CODE"
                            .into(),
                    ),
                ));
            }
            view.selected_role_profile.ods_code
        }
    };
    let answer = agent
        .authorise(action, &ods)
        .await
        .map_err(|e| (2, CliError::from_call(bus, e)))?;
    if json {
        print_json(&json!({
            "action": action,
            "ods_code": ods,
            "allowed": answer.allowed,
            "reason": answer.reason,
            "message": answer.message,
            "generation": answer.generation,
        }));
    } else {
        print!("{}", format::render_check(action, &ods, &answer));
    }
    Ok(if answer.allowed { 0 } else { 1 })
}

/// The anchors in `file`: one JSON object per line with `seq` and `hash` (other fields, such
/// as the endpoint's `uid` and `at`, ignored); a line that is not one is named.
fn read_anchors(file: &std::path::Path) -> Result<Vec<cardgate_audit::AuditReceipt>, CliError> {
    #[derive(serde::Deserialize)]
    struct Anchor {
        seq: u64,
        hash: String,
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Usage(format!("reading the anchors {}: {e}", file.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let bad = |why: String| {
                CliError::Usage(format!(
                    "{} line {}: not an anchor ({why}); each line is {{\"seq\": N, \"hash\": \"64 hex digits\"}}",
                    file.display(),
                    i + 1
                ))
            };
            let anchor: Anchor = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            let hash = anchor
                .hash
                .parse()
                .map_err(|_| bad("the hash is not a SHA-256 in hex".into()))?;
            Ok(cardgate_audit::AuditReceipt {
                seq: anchor.seq,
                hash,
            })
        })
        .collect()
}

/// `[paths] audit` of the daemon's configuration if it is readable, else the documented default.
fn default_audit_path() -> PathBuf {
    cardgate_config::Sections::from_file(std::path::Path::new(DEFAULT_CONFIG_PATH))
        .ok()
        .and_then(|s| s.paths)
        .map(|p| p.audit)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_AUDIT_PATH))
}

fn audit(json: bool, command: AuditCommand) -> Outcome {
    match command {
        AuditCommand::Verify { file, anchors } => {
            let path = file.unwrap_or_else(default_audit_path);
            let anchors = match anchors {
                Some(file) => read_anchors(&file).map_err(|e| (2, e))?,
                None => Vec::new(),
            };
            let report = cardgate_audit::verify_with_anchors(&path, &anchors)
                .map_err(|e| (2, CliError::from(e)))?;
            if json {
                let mut value = serde_json::to_value(&report).unwrap_or_default();
                if let Some(map) = value.as_object_mut() {
                    map.insert("file".into(), json!(path.display().to_string()));
                    map.insert("intact".into(), json!(report.is_intact()));
                }
                print_json(&value);
            } else {
                match &report.first_break {
                    None => {
                        println!(
                            "{}: intact, {} entries verified.",
                            path.display(),
                            report.verified_entries
                        );
                        if let Some(head) = &report.head {
                            println!(
                                "Anchor (keep a copy elsewhere): seq {} hash {}",
                                head.seq, head.hash
                            );
                        }
                    }
                    Some(b) => {
                        match b.file.as_deref().filter(|f| *f != path.as_path()) {
                            Some(segment) => println!(
                                "{}: DAMAGED in segment {}: {b}",
                                path.display(),
                                segment.display()
                            ),
                            None => println!("{}: DAMAGED at {b}", path.display()),
                        }
                        println!(
                            "{} entries verified before the break. Keep this file unchanged as evidence and call IT support.",
                            report.verified_entries
                        );
                    }
                }
            }
            Ok(if report.is_intact() { 0 } else { 1 })
        }
        AuditCommand::Tail { n, file } => {
            let path = file.unwrap_or_else(default_audit_path);
            let items = cardgate_audit::tail(&path, n).map_err(|e| (2, CliError::from(e)))?;
            for item in items {
                match item {
                    cardgate_audit::TailItem::Entry(e) => {
                        let at =
                            e.at.format(&time::format_description::well_known::Rfc3339)
                                .unwrap_or_default();
                        let event = serde_json::to_value(&e.event).unwrap_or_default();
                        if json {
                            print_json(&json!({"seq": e.seq, "at": at, "event": event,
                                "hash": e.hash.to_string()}));
                        } else {
                            println!("{at} #{} {} {event}", e.seq, e.event.kind());
                        }
                    }
                    cardgate_audit::TailItem::Unreadable { text, problem } => {
                        if json {
                            print_json(&json!({"unreadable": text, "problem": problem}));
                        } else {
                            println!("UNREADABLE ({problem}): {text}");
                        }
                    }
                    _ => {}
                }
            }
            Ok(0)
        }
    }
}

/// A D-Bus value as JSON: scalars as themselves, anything else as its D-Bus text form.
fn value_json(v: &zbus::zvariant::Value<'_>) -> serde_json::Value {
    use zbus::zvariant::Value;
    match v {
        Value::Str(s) => json!(s.as_str()),
        Value::U64(n) => json!(n),
        Value::I64(n) => json!(n),
        Value::U32(n) => json!(n),
        Value::I32(n) => json!(n),
        Value::Bool(b) => json!(b),
        Value::Value(inner) => value_json(inner),
        other => json!(other.to_string()),
    }
}

/// Turns a signal's body into named JSON arguments.
fn signal_args(member: &str, message: &zbus::Message) -> Vec<(String, serde_json::Value)> {
    let body = message.body();
    let fields = match body.deserialize::<zbus::zvariant::Structure<'_>>() {
        Ok(s) => s.into_fields(),
        Err(_) => Vec::new(),
    };
    let names = format::signal_arg_names(member);
    fields
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let name = names
                .get(i)
                .map(|n| (*n).to_owned())
                .unwrap_or_else(|| format!("arg{i}"));
            (name, value_json(v))
        })
        .collect()
}

/// The changed properties of a `PropertiesChanged` on the agent, by name.
fn changed_properties(message: &zbus::Message) -> Vec<(String, serde_json::Value)> {
    type Body = (
        String,
        std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
        Vec<String>,
    );
    let Ok((interface, changed, _)) = message.body().deserialize::<Body>() else {
        return Vec::new();
    };
    if interface != cardgate_ipc::INTERFACE {
        return Vec::new();
    }
    let mut out: Vec<(String, serde_json::Value)> = changed
        .iter()
        .map(|(k, v)| (k.clone(), value_json(v)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The event a message stands for: its name and named arguments; `None` to skip it.
fn event_of(message: &zbus::Message) -> Option<(String, Vec<(String, serde_json::Value)>)> {
    let header = message.header();
    let member = header.member()?.to_string();
    match member.as_str() {
        "PropertiesChanged" => {
            let changed = changed_properties(message);
            (!changed.is_empty()).then_some(("PropertiesChanged".to_owned(), changed))
        }
        "NameOwnerChanged" => {
            let (_, _, new_owner) = message
                .body()
                .deserialize::<(String, String, String)>()
                .ok()?;
            let name = if new_owner.is_empty() {
                "AgentStopped"
            } else {
                "AgentStarted"
            };
            Some((name.to_owned(), Vec::new()))
        }
        _ => Some((member.clone(), signal_args(&member, message))),
    }
}

async fn watch(bus: &str, json: bool) -> Outcome {
    let (connection, _agent) = connect(bus).await.map_err(|e| (1, e))?;
    let bus_error = |source| {
        (
            1,
            CliError::BusUnreachable {
                bus: bus.to_owned(),
                source,
            },
        )
    };
    let signal = || zbus::MatchRule::builder().msg_type(zbus::message::Type::Signal);
    // The agent's own signals; its property changes (the state, tries left, role); and its
    // name coming and going on the bus, so a crash or restart shows in the stream.
    let agent_signals = signal()
        .interface(cardgate_ipc::INTERFACE)
        .and_then(|b| b.path(cardgate_ipc::OBJECT_PATH))
        .map(|b| b.build())
        .map_err(bus_error)?;
    let properties = signal()
        .interface("org.freedesktop.DBus.Properties")
        .and_then(|b| b.member("PropertiesChanged"))
        .and_then(|b| b.path(cardgate_ipc::OBJECT_PATH))
        .map(|b| b.build())
        .map_err(bus_error)?;
    let owner = signal()
        .sender("org.freedesktop.DBus")
        .and_then(|b| b.member("NameOwnerChanged"))
        .and_then(|b| b.arg(0, cardgate_ipc::BUS_NAME))
        .map(|b| b.build())
        .map_err(bus_error)?;
    let subscribe = |rule| zbus::MessageStream::for_match_rule(rule, &connection, Some(64));
    let agent_signals = subscribe(agent_signals).await.map_err(bus_error)?;
    let properties = subscribe(properties).await.map_err(bus_error)?;
    let owner = subscribe(owner).await.map_err(bus_error)?;
    let mut stream = agent_signals.or(properties).or(owner);
    // On stderr in both modes, so `--json` stdout stays one event a line and a script (or a
    // test) knows the subscriptions are in place before it acts.
    eprintln!("Watching the cardgate agent; Ctrl-C stops.");
    loop {
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(0),
            m = stream.next() => m,
        };
        let Some(Ok(message)) = next else {
            return Err((
                1,
                CliError::DaemonNotRunning {
                    bus: bus.to_owned(),
                },
            ));
        };
        let Some((event, args)) = event_of(&message) else {
            continue;
        };
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        if json {
            let mut obj = serde_json::Map::new();
            obj.insert("at".into(), json!(at));
            obj.insert("signal".into(), json!(event));
            for (k, v) in &args {
                obj.insert(k.clone(), v.clone());
            }
            print_json(&serde_json::Value::Object(obj));
        } else {
            println!("{}", format::render_signal(&at, &event, &args));
        }
        let _ = std::io::stdout().flush();
    }
}

pub(crate) fn ask(prompt: &str) -> Result<String, CliError> {
    let io = |source| CliError::Io {
        what: "reading your answer".into(),
        source,
    };
    eprint!("{prompt}");
    std::io::stderr().flush().map_err(io)?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(io)?;
    Ok(answer.trim().to_owned())
}

fn read_passcode(from_stdin: bool) -> Result<LockedString, CliError> {
    let io = |source| CliError::Io {
        what: "reading the passcode from the terminal (scripts: use --passcode-stdin)".into(),
        source,
    };
    let mut text = Zeroizing::new(String::with_capacity(64));
    if from_stdin {
        std::io::stdin().lock().read_line(&mut text).map_err(io)?;
    } else {
        *text = rpassword::prompt_password("Passcode (not shown): ").map_err(io)?;
    }
    // Held on locked, undumpable pages until sent; the line read is cleared.
    Ok(LockedString::copy_of(text.trim_end_matches(['\r', '\n'])))
}

async fn login(
    bus: &str,
    json: bool,
    pin_pad: bool,
    passcode_stdin: bool,
    confirm_final_try: bool,
    role: Option<String>,
) -> Outcome {
    let fail = |e| (1, e);
    let (_c, agent) = connect(bus).await.map_err(fail)?;
    let view = read_status(bus, &agent).await.map_err(fail)?;
    let mut confirm = confirm_final_try;
    if view.passcode_tries_left == 1 && !confirm {
        if !std::io::stdin().is_terminal() {
            return Err(fail(CliError::Agent(AgentError::FinalTryNotConfirmed(
                "one try is left before the card locks; nothing was sent to the card. Run again with --confirm-final-try only if you are sure of the passcode".into(),
            ))));
        }
        let answer = ask(
            "Only ONE try is left: a wrong passcode now locks the card.\nType 'yes' to use it, anything else to stop: ",
        )
        .map_err(fail)?;
        if answer != "yes" {
            eprintln!("Stopped; nothing was sent to the card.");
            return Ok(1);
        }
        confirm = true;
    }
    let pad = pin_pad || view.readers.iter().any(|r| r.card_present && r.pin_pad);
    let profiles = if pad && !passcode_stdin {
        if !json {
            eprintln!("Type your passcode on the reader's PIN pad.");
        }
        agent.login_with_pin_pad(confirm).await
    } else {
        let passcode = read_passcode(passcode_stdin).map_err(fail)?;
        agent.login(passcode.as_str(), confirm).await
    }
    .map_err(|e| fail(CliError::from_call(bus, e)))?;

    let chosen = match (&role, profiles.len()) {
        (Some(id), _) => Some(id.clone()),
        (None, 0) => None,
        (None, 1) => profiles.first().map(|p| p.id.clone()),
        (None, _) if std::io::stdin().is_terminal() && !json => {
            eprintln!("Choose a role profile:");
            for (i, p) in profiles.iter().enumerate() {
                eprintln!(
                    "  {}. {} at {} ({})",
                    i + 1,
                    p.job_role,
                    p.organisation_name,
                    p.ods_code
                );
            }
            let answer = ask("Number: ").map_err(fail)?;
            let index: usize = answer.parse().unwrap_or(0);
            match profiles.get(index.wrapping_sub(1)) {
                Some(p) => Some(p.id.clone()),
                None => {
                    return Err(fail(CliError::Usage(format!(
                        "\"{answer}\" is not one of the numbers listed; you are logged in with no role selected: choose one with `cardgate role ID`"
                    ))));
                }
            }
        }
        (None, _) => None,
    };
    if let Some(id) = &chosen {
        agent
            .select_role_profile(id)
            .await
            .map_err(|e| fail(CliError::from_call(bus, e)))?;
    }
    if json {
        print_json(&json!({
            "ok": true,
            "role_profiles": profiles,
            "selected_role_profile": chosen,
        }));
    } else {
        println!("Logged in.");
        match &chosen {
            Some(id) => {
                if let Some(p) = profiles.iter().find(|p| &p.id == id) {
                    println!(
                        "Role: {} at {} ({})",
                        p.job_role, p.organisation_name, p.ods_code
                    );
                }
            }
            None => {
                println!(
                    "No role selected; choose one with `cardgate role ID`. Your role profiles:"
                );
                for p in &profiles {
                    println!(
                        "  {}: {} at {} ({})",
                        p.id, p.job_role, p.organisation_name, p.ods_code
                    );
                }
            }
        }
    }
    Ok(0)
}

async fn role(bus: &str, json: bool, id: &str) -> Outcome {
    let (_c, agent) = connect(bus).await.map_err(|e| (1, e))?;
    agent
        .select_role_profile(id)
        .await
        .map_err(|e| (1, CliError::from_call(bus, e)))?;
    let view = read_status(bus, &agent).await.map_err(|e| (1, e))?;
    let p = &view.selected_role_profile;
    if json {
        print_json(&json!({"ok": true, "selected_role_profile": p}));
    } else {
        println!(
            "Role: {} at {} ({})",
            p.job_role, p.organisation_name, p.ods_code
        );
    }
    Ok(0)
}

async fn logout(bus: &str, json: bool) -> Outcome {
    let (_c, agent) = connect(bus).await.map_err(|e| (1, e))?;
    agent
        .logout()
        .await
        .map_err(|e| (1, CliError::from_call(bus, e)))?;
    if json {
        print_json(&json!({"ok": true}));
    } else {
        println!("Logged out. Remove your card if you are leaving the workstation.");
    }
    Ok(0)
}

fn man() -> Outcome {
    let page = clap_mangen::Man::new(crate::command());
    let mut out = Vec::new();
    page.render(&mut out).map_err(|source| {
        (
            2,
            CliError::Io {
                what: "writing the man page".into(),
                source,
            },
        )
    })?;
    std::io::stdout().write_all(&out).map_err(|source| {
        (
            2,
            CliError::Io {
                what: "writing the man page".into(),
                source,
            },
        )
    })?;
    Ok(0)
}
