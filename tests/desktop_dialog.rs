//! End-to-end: the pharmacist at the counter meets `cardgate-desktop` (crates/desktop,
//! docs/desktop.md). Everything is real but logind: `cardgated` on a private bus watching the
//! lab's pcscd (a virtual PIV card in a vpcd reader) and logging in at spine-sim; an X server
//! (Xvfb); the desktop program, this very binary run again as `cardgate-desktop`, drawing its
//! GTK 4 windows there; the accessibility bus (at-spi2-core, activated on the bus as on a
//! desktop) through which `tests/desktop/atspi_driver.py` finds every window and control by
//! its accessible name, reads what it says and presses it, as a screen reader does; xdotool
//! typing at the keyboard; a stand-in notification server recording what would pop up, and a
//! stand-in tray host (StatusNotifierWatcher).
//! logind is the stand-in of `tests/logind.rs`, with the desktop program in the active session.
//!
//! The private bus plays both the system bus (the agent) and the session bus (notifications,
//! the accessibility bus's address).
//!
//! Checked, in order: the card goes in and the dialog opens by itself with the holder's name,
//! UUID, tries left and the certificate warning; nothing is sent while the passcode's shape is
//! wrong; a wrong passcode shows two tries left; the right one (typed, Enter) logs in and the
//! role picker offers both profiles; choosing one (pressed through AT-SPI) selects it in the
//! agent; the certificate notification offers "Renew now", and choosing it runs the renewal in
//! the renewal window to its end; logging out notifies; the tray icon's tooltip names the
//! holder, role and state, and activating it opens the status window; the program run again
//! opens the
//! status window of the running copy (holder, role, state), where the role is changed without
//! a passcode, the passcode is changed, and "Log out" logs out; a PMR's `RequestLogin` opens the
//! dialog naming the program and its reason, and Escape cancels it (`Cancelled` for the PMR);
//! the card pulled with the dialog open closes it (`NoCard`); the card back in opens the
//! dialog again and the picker offers the last role first, chosen with Enter alone; three
//! wrong passcodes (the third only once "Use my final try" is ticked) lock the card, the
//! dialog shows the three ways out in order and leads through the RA's unlock code and a new
//! passcode (a mismatch named, nothing sent) to a log-in with it; the card pulled during the
//! session brings the session-ended notification; a second program asking while the dialog is
//! open → `LoginInProgress`; the dialog program killed mid-dialog → `Cancelled`, no try
//! spent. With `CARDGATE_SCREENSHOTS=<dir>` it also saves
//! the screenshots docs/desktop.md shows.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use cardgate_demo::PHARMACIST;
use cardgate_e2e::daemon_harness::{RunningDaemon, fail, insert_and_read, wait_for};
use cardgate_e2e::login_requests::{answered, error_name, request};
use cardgate_e2e::logind::{ActiveSession, stand_in_logind};
use cardgate_e2e::memory_image::{
    Secret, assert_no_secret, assert_only_protected, fresh, protected_copies,
};
use cardgate_e2e::{TEST_MANAGEMENT_KEY, TEST_UNLOCK_CODE, check, lab_trial};
use cardgate_ipc::LoginProxy;
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::provision::{CardSpec, Validity};
use libtest_mimic::{Arguments, Failed};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;

/// The pharmacist's card in this suite.
const CARD_SERIAL: &str = "6516770201";

/// Set in the environment of the child that runs as `cardgate-desktop`.
const AS_DESKTOP: &str = "CARDGATE_E2E_AS_DESKTOP";

fn main() -> ExitCode {
    if std::env::var_os(AS_DESKTOP).is_some() {
        return cardgate_desktop::run(std::env::args_os());
    }
    cardgate_lab::enter_lab_namespace();
    let args = Arguments::from_args();
    let trials = vec![lab_trial(
        "the_pharmacist_logs_in_chooses_a_role_and_renews_through_the_desktop_dialog",
        |lab| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(3)
                .enable_all()
                .build()
                .map_err(|e| fail("runtime", e))?
                .block_on(at_the_counter(lab))
        },
    )];
    libtest_mimic::run(&args, trials).exit_code()
}

// ------------------------------------------------------------------ the X server

/// Xvfb on a display of its own, stopped on drop.
struct Screen {
    display: String,
    child: Child,
}

impl Screen {
    fn start() -> Result<Screen, Failed> {
        // Xvfb picks a free display and writes its number on stdout once it is ready.
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1024x768x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail("starting Xvfb (scripts/setup installs xvfb)", e))?;
        let mut number = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut number));
        let number = number.trim().to_owned();
        let screen = Screen {
            display: format!(":{number}"),
            child,
        };
        match read {
            Some(Ok(_)) if !number.is_empty() => Ok(screen),
            other => Err(Failed::from(format!(
                "Xvfb did not open a display: {other:?}"
            ))),
        }
    }

    /// Saves the window titled `window` as `dir/name.png` (xwd, then netpbm).
    fn shoot(&self, dir: &Path, window: &str, name: &str) -> Result<(), Failed> {
        let png = dir.join(format!("{name}.png"));
        let script = format!(
            "xwd -silent -display {} -name '{window}' | xwdtopnm 2>/dev/null | pnmtopng > {}",
            self.display,
            png.display()
        );
        let status = Command::new("sh")
            .args(["-c", &script])
            .status()
            .map_err(|e| fail("screenshot", e))?;
        check(status.success(), || format!("screenshot {name}: {status}"))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // SIGTERM, so Xvfb removes its lock file and socket.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ the screen reader

/// One accessible object as the driver reports it.
#[derive(Debug, Clone)]
struct Node {
    role: String,
    name: String,
    description: String,
    visible: bool,
    sensitive: bool,
}

/// The AT-SPI role of GTK's password fields (a `GtkText` that hides its characters).
const PASSWORD_ROLE: &str = "password text";

/// `tests/desktop/atspi_driver.py`, one JSON request and answer per line.
struct ScreenReader {
    child: Child,
    requests: ChildStdin,
    answers: BufReader<ChildStdout>,
}

impl ScreenReader {
    fn start(display: &str, session_bus: &str) -> Result<ScreenReader, Failed> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("desktop/atspi_driver.py");
        // Debian's python3, which has the Atspi bindings (python3-gi, gir1.2-atspi-2.0).
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .env("DISPLAY", display)
            .env("DBUS_SESSION_BUS_ADDRESS", session_bus)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| fail("starting the AT-SPI driver (/usr/bin/python3)", e))?;
        let requests = child.stdin.take().ok_or("no stdin")?;
        let answers = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(ScreenReader {
            child,
            requests,
            answers,
        })
    }

    fn ask(&mut self, request: Value) -> Result<Value, Failed> {
        tokio::task::block_in_place(|| {
            writeln!(self.requests, "{request}").map_err(|e| fail("AT-SPI driver", e))?;
            let mut line = String::new();
            self.answers
                .read_line(&mut line)
                .map_err(|e| fail("AT-SPI driver", e))?;
            let answer: Value = serde_json::from_str(&line)
                .map_err(|e| fail(&format!("AT-SPI driver answered {line:?}"), e))?;
            if answer["ok"] == json!(true) {
                Ok(answer)
            } else {
                Err(Failed::from(format!("AT-SPI: {}", answer["error"])))
            }
        })
    }

    fn windows(&mut self) -> Result<Vec<String>, Failed> {
        let answer = self.ask(json!({"op": "windows"}))?;
        Ok(serde_json::from_value(answer["windows"].clone()).unwrap_or_default())
    }

    fn nodes(&mut self, window: &str) -> Result<Vec<Node>, Failed> {
        let answer = self.ask(json!({"op": "dump", "window": window}))?;
        let nodes = answer["nodes"].as_array().cloned().unwrap_or_default();
        Ok(nodes
            .iter()
            .map(|n| Node {
                role: n["role"].as_str().unwrap_or_default().to_owned(),
                name: n["name"].as_str().unwrap_or_default().to_owned(),
                description: n["description"].as_str().unwrap_or_default().to_owned(),
                visible: n["visible"] == json!(true),
                sensitive: n["sensitive"] == json!(true),
            })
            .collect())
    }

    /// Every AT-SPI `object:text-changed` event sent since the previous call, as any listener
    /// on the accessibility bus receives it: (kind, role of the field, text carried).
    fn text_changes(&mut self) -> Result<Vec<(String, String, String)>, Failed> {
        let answer = self.ask(json!({"op": "text_changes"}))?;
        let changes = answer["changes"].as_array().cloned().unwrap_or_default();
        Ok(changes
            .iter()
            .map(|c| {
                let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                (field("kind"), field("role"), field("text"))
            })
            .collect())
    }

    /// The secret fields' text changes since the last look carried at most one character
    /// each (what typing one announces): no whole passcode or code went to the listeners on
    /// the accessibility bus, nor into the unwiped memory GTK builds those events in. At least
    /// one insertion into a password field was seen, so the listener is known to hear them.
    fn secret_fields_announced_one_character_at_a_time(
        &mut self,
        when: &str,
    ) -> Result<(), Failed> {
        let changes = self.text_changes()?;
        let secret: Vec<_> = changes
            .iter()
            .filter(|(_, role, _)| role == PASSWORD_ROLE)
            .collect();
        check(
            secret.iter().any(|(kind, _, _)| kind.ends_with(":insert")),
            || format!("{when}: no typing into a password field heard over AT-SPI: {changes:?}"),
        )?;
        let whole: Vec<_> = secret
            .iter()
            .filter(|(_, _, text)| text.chars().count() > 1)
            .map(|(kind, _, text)| format!("{kind} of {} characters", text.chars().count()))
            .collect();
        check(whole.is_empty(), || {
            format!("{when}: a password field announced several characters at once: {whole:?}")
        })
    }

    /// Presses the visible control named `name` in `window` (its first action).
    fn press(&mut self, window: &str, name: &str) -> Result<(), Failed> {
        self.ask(json!({"op": "press", "window": window, "name": name}))
            .map(|_| ())
    }

    /// Waits up to 20 s for `window` to be open and `holds` of its visible nodes; returns them.
    async fn until(
        &mut self,
        window: &str,
        what: &str,
        holds: impl Fn(&[Node]) -> bool,
    ) -> Result<Vec<Node>, Failed> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = Err(Failed::from("never looked"));
        while Instant::now() < deadline {
            last = self
                .nodes(window)
                .map(|nodes| nodes.into_iter().filter(|n| n.visible).collect::<Vec<_>>());
            if let Ok(nodes) = &last
                && holds(nodes)
            {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Err(Failed::from(format!(
            "{window:?}: {what} within 20 s; last seen: {}",
            match last {
                Ok(nodes) => describe(&nodes),
                Err(e) => e.message().unwrap_or_default().to_owned(),
            }
        )))
    }

    /// Waits up to 20 s for no window named `window` to be open.
    async fn until_closed(&mut self, window: &str) -> Result<(), Failed> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !self.windows()?.iter().any(|w| w == window) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Err(Failed::from(format!("{window:?} still open after 20 s")))
    }
}

impl Drop for ScreenReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn describe(nodes: &[Node]) -> String {
    nodes
        .iter()
        .filter(|n| !n.name.is_empty())
        .map(|n| {
            format!(
                "{}{:?}{}{}",
                n.role,
                n.name,
                if n.description.is_empty() {
                    String::new()
                } else {
                    format!("[{}]", n.description)
                },
                if n.sensitive { "" } else { "(insensitive)" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text of the label whose accessible description is `description`.
fn labelled<'a>(nodes: &'a [Node], description: &str) -> Option<&'a str> {
    nodes
        .iter()
        .find(|n| n.description == description)
        .map(|n| n.name.as_str())
}

fn button<'a>(nodes: &'a [Node], name: &str) -> Option<&'a Node> {
    nodes
        .iter()
        .find(|n| n.role.contains("button") && n.name == name)
}

impl ScreenReader {
    /// Waits for the passcode dialog to be open and asking for the passcode.
    async fn until_asked(&mut self, what: &str) -> Result<Vec<Node>, Failed> {
        self.until(cardgate_desktop::TITLE, what, |n| {
            n.iter().any(|n| n.name == "Passcode")
        })
        .await
    }
}

/// `result` failed with the named error.
fn expect_error<T: std::fmt::Debug>(
    result: &zbus::Result<T>,
    name: &str,
    what: &str,
) -> Result<(), Failed> {
    check(error_name(result) == name, || {
        format!("{what}: expected {name}, got {result:?}")
    })
}

/// The agent's selected role profile is `id`.
async fn selected_is(
    agent: &cardgate_ipc::AgentProxy<'static>,
    id: &str,
    what: &str,
) -> Result<(), Failed> {
    let selected = agent
        .selected_role_profile()
        .await
        .map_err(|e| fail("SelectedRoleProfile", e))?;
    check(selected.id == id, || {
        format!("{what}: selected {selected:?}")
    })
}

// ------------------------------------------------------------------ the keyboard

/// Types into the window titled `window`, as the pharmacist would: keyboard focus to it, then
/// each key through XTEST (xdotool).
fn keys(display: &str, window: &str, keys: &[&str]) -> Result<(), Failed> {
    let focus = Command::new("xdotool")
        .env("DISPLAY", display)
        .args([
            "search",
            "--sync",
            "--name",
            &format!("^{window}$"),
            "windowfocus",
            "--sync",
        ])
        .status()
        .map_err(|e| fail("xdotool (scripts/setup installs it)", e))?;
    check(focus.success(), || format!("focusing {window:?}: {focus}"))?;
    for key in keys {
        let mut command = Command::new("xdotool");
        command.env("DISPLAY", display);
        match key.strip_prefix("key:") {
            Some(name) => command.args(["key", name]),
            None => command.args(["type", "--delay", "40", key]),
        };
        let status = command.status().map_err(|e| fail("xdotool", e))?;
        check(status.success(), || format!("xdotool {key:?}: {status}"))?;
    }
    Ok(())
}

// ------------------------------------------------------------------ notifications

/// The stand-in notification server, in a module of its own: zbus generates a
/// signal-emitting trait beside the interface with no doc comment of its own.
mod notifications {
    #![allow(missing_docs)]

    use std::collections::HashMap;

    use tokio::sync::mpsc;
    use zbus::object_server::SignalEmitter;
    use zbus::zvariant::OwnedValue;

    /// What the desktop program asked the notification server to show.
    #[derive(Debug, Clone)]
    pub struct Shown {
        pub id: u32,
        pub summary: String,
        pub body: String,
        pub actions: Vec<String>,
    }

    /// A stand-in `org.freedesktop.Notifications`, recording every notification.
    pub struct NotificationServer {
        pub shown: mpsc::UnboundedSender<Shown>,
        pub next: u32,
    }

    #[zbus::interface(name = "org.freedesktop.Notifications")]
    impl NotificationServer {
        #[allow(clippy::too_many_arguments)]
        fn notify(
            &mut self,
            _app_name: String,
            _replaces_id: u32,
            _app_icon: String,
            summary: String,
            body: String,
            actions: Vec<String>,
            _hints: HashMap<String, OwnedValue>,
            _expire_timeout: i32,
        ) -> u32 {
            self.next += 1;
            let _ = self.shown.send(Shown {
                id: self.next,
                summary,
                body,
                actions,
            });
            self.next
        }

        fn get_capabilities(&self) -> Vec<String> {
            vec!["actions".into(), "body".into()]
        }

        fn get_server_information(&self) -> (String, String, String, String) {
            (
                "stand-in".into(),
                "cardgate tests".into(),
                "1".into(),
                "1.2".into(),
            )
        }

        /// The person chose `action_key` on notification `id` (the test plays the person).
        #[zbus(signal)]
        pub async fn action_invoked(
            emitter: &SignalEmitter<'_>,
            id: u32,
            action_key: &str,
        ) -> zbus::Result<()>;
    }

    /// A stand-in StatusNotifierWatcher (the desktop's tray host), recording the items that
    /// register.
    pub struct TrayWatcher {
        pub registered: mpsc::UnboundedSender<String>,
    }

    #[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
    impl TrayWatcher {
        fn register_status_notifier_item(&self, service: String) {
            let _ = self.registered.send(service);
        }

        fn register_status_notifier_host(&self, _service: String) {}

        #[zbus(property)]
        fn is_status_notifier_host_registered(&self) -> bool {
            true
        }
    }
}

use notifications::{NotificationServer, Shown, TrayWatcher};

const NOTIFICATIONS_PATH: &str = "/org/freedesktop/Notifications";

async fn next_notification(
    shown: &mut mpsc::UnboundedReceiver<Shown>,
    about: &str,
) -> Result<Shown, Failed> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let next = tokio::time::timeout_at(deadline, shown.recv())
            .await
            .map_err(|_| Failed::from(format!("no notification about {about:?} within 20 s")))?
            .ok_or_else(|| Failed::from("the notification server stopped"))?;
        if next.summary.contains(about) || next.body.contains(about) {
            return Ok(next);
        }
    }
}

// ------------------------------------------------------------------ the desktop program

/// `cardgate-desktop` (this binary as it), its log in a file for failures.
struct Desktop {
    child: Child,
    log: PathBuf,
    dir: PathBuf,
    display: String,
    bus: String,
}

impl Desktop {
    /// The program as this session's desktop would start it, its log going to `log`.
    fn command(dir: &Path, display: &str, bus: &str) -> Result<Command, Failed> {
        let exe = std::env::current_exe().map_err(|e| fail("current_exe", e))?;
        let mut command = Command::new(exe);
        command
            .args(["--bus", bus])
            .env(AS_DESKTOP, "1")
            .env("DISPLAY", display)
            .env("GDK_BACKEND", "x11")
            .env("DBUS_SESSION_BUS_ADDRESS", bus)
            .env("XDG_STATE_HOME", dir.join("state"))
            .env("RUST_LOG", "info")
            .env_remove("NO_AT_BRIDGE")
            .env_remove("GTK_A11Y")
            .stdout(Stdio::null());
        Ok(command)
    }

    fn start(
        dir: &Path,
        display: &str,
        bus: &str,
        active: &ActiveSession,
    ) -> Result<Desktop, Failed> {
        let log = dir.join("desktop.log");
        let log_file = std::fs::File::create(&log).map_err(|e| fail("desktop log", e))?;
        let child = Desktop::command(dir, display, bus)?
            .stderr(log_file)
            .spawn()
            .map_err(|e| fail("starting cardgate-desktop", e))?;
        active.add(child.id());
        Ok(Desktop {
            child,
            log,
            dir: dir.to_owned(),
            display: display.to_owned(),
            bus: bus.to_owned(),
        })
    }

    /// Runs the program a second time with `args`, as the application list would, and waits
    /// for it: the running copy does the work, the second one hands over and exits.
    fn run_again(&self, args: &[&str]) -> Result<(), Failed> {
        let output = Desktop::command(&self.dir, &self.display, &self.bus)?
            .args(args)
            .output()
            .map_err(|e| fail("running cardgate-desktop again", e))?;
        check(output.status.success(), || {
            format!(
                "cardgate-desktop {args:?} the second time: {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        self.kill();
    }
}

// ------------------------------------------------------------------ the scenario

async fn at_the_counter(lab: &mut Lab) -> Result<(), Failed> {
    let dir = tempfile::tempdir().map_err(|e| fail("tempdir", e))?;
    // Renewal needs the card's management key.
    let key_path = dir.path().join("management-key.hex");
    std::fs::write(&key_path, hex::encode(TEST_MANAGEMENT_KEY)).map_err(|e| fail("key file", e))?;
    // The card is registered at spine-sim with its unlock code, for the unlock paths.
    let sim_cards = format!(
        "\n[[cards]]\nserial = \"{CARD_SERIAL}\"\nuid = \"{}\"\nunlock_code = \"{TEST_UNLOCK_CODE}\"\n",
        PHARMACIST.1
    );
    let running = RunningDaemon::start_with(&sim_cards, move |config| {
        config.renewal.management_key = Some(key_path);
    })
    .await?;
    let address = running.address.clone();
    let agent = running.agent.clone();
    let active = ActiveSession::default();
    let _logind = stand_in_logind(&address, active.clone()).await?;
    let (shown_tx, mut shown) = mpsc::unbounded_channel();
    let (tray_tx, mut tray_items) = mpsc::unbounded_channel();
    let notifications = zbus::connection::Builder::address(address.as_str())
        .map_err(|e| fail("bus address", e))?
        .serve_at(
            NOTIFICATIONS_PATH,
            NotificationServer {
                shown: shown_tx,
                next: 0,
            },
        )
        .map_err(|e| fail("notification server", e))?
        .name("org.freedesktop.Notifications")
        .map_err(|e| fail("notification server name", e))?
        .serve_at(
            "/StatusNotifierWatcher",
            TrayWatcher {
                registered: tray_tx,
            },
        )
        .map_err(|e| fail("tray watcher", e))?
        .name("org.kde.StatusNotifierWatcher")
        .map_err(|e| fail("tray watcher name", e))?
        .build()
        .await
        .map_err(|e| fail("notification server", e))?;
    let screen = Screen::start()?;
    let shots = std::env::var_os("CARDGATE_SCREENSHOTS").map(PathBuf::from);
    let shoot = |window: &str, name: &str| match &shots {
        Some(dir) => screen.shoot(dir, window, name),
        None => Ok(()),
    };
    let mut desktop = Desktop::start(dir.path(), &screen.display, &address, &active)?;
    let mut reader = ScreenReader::start(&screen.display, &address)?;
    let pmr = LoginProxy::new(
        &zbus::connection::Builder::address(address.as_str())
            .map_err(|e| fail("bus address", e))?
            .build()
            .await
            .map_err(|e| fail("PMR connection", e))?,
    )
    .await
    .map_err(|e| fail("Login1 proxy", e))?;

    // Made at run time: the dialog program is this binary, whose constants are in its
    // memory whatever it does (issue 15's scans below).
    let passcode = fresh(6, "");
    let passcode = passcode.as_str();
    let first_wrong = fresh(8, "");
    let body = async {
        // The desktop program has registered when a request no longer meets NoPrompt.
        wait_for(
            "cardgate-desktop to register as the session's dialog",
            || {
                let pmr = pmr.clone();
                async move { error_name(&pmr.request_login("probe").await) != "NoPrompt" }
            },
        )
        .await?;

        // The card goes in: the dialog opens by itself, saying whose card it is.
        let card = running
            .world
            .card_from(
                &CardSpec::new(PHARMACIST.0, PHARMACIST.1)
                    .card_serial(CARD_SERIAL)
                    .pin(passcode)
                    .puk(TEST_UNLOCK_CODE)
                    .management_key(&TEST_MANAGEMENT_KEY)
                    .validity(Validity::ExpiresInDays(20)),
            )
            .map_err(|e| fail("card", e))?;
        let inserted =
            insert_and_read(lab, ReaderSlot::First, card.clone(), &agent, PHARMACIST.1).await?;
        let title = cardgate_desktop::TITLE;
        let nodes = reader
            .until(title, "the holder's name and the passcode field", |n| {
                labelled(n, "Card holder") == Some(PHARMACIST.0)
                    && n.iter().any(|n| n.name == "Passcode")
            })
            .await?;
        check(
            labelled(&nodes, "Card UUID") == Some(&format!("UUID {}", PHARMACIST.1)),
            || format!("UUID: {}", describe(&nodes)),
        )?;
        check(
            labelled(&nodes, "Tries left") == Some("3 tries left."),
            || format!("tries: {}", describe(&nodes)),
        )?;
        check(
            labelled(&nodes, "Warnings").is_some_and(|w| w.contains("20 days")),
            || format!("the certificate warning: {}", describe(&nodes)),
        )?;
        check(
            labelled(&nodes, "Who is asking") == Some(cardgate_desktop::CARD_INSERTED_REASON),
            || format!("why: {}", describe(&nodes)),
        )?;
        check(
            button(&nodes, "Log in").is_some_and(|b| !b.sensitive),
            || format!("Log in before anything is typed: {}", describe(&nodes)),
        )?;
        shoot(title, "dialog")?;

        // The wrong shape: checked as typed, nothing sent.
        keys(&screen.display, title, &["12"])?;
        let nodes = reader
            .until(title, "the shape problem", |n| {
                labelled(n, "Passcode check").is_some_and(|t| t.contains("At least 4"))
            })
            .await?;
        check(
            button(&nodes, "Log in").is_some_and(|b| !b.sensitive),
            || format!("Log in with a short passcode: {}", describe(&nodes)),
        )?;
        keys(&screen.display, title, &["key:BackSpace", "key:BackSpace"])?;
        check(agent.passcode_tries_left().await.unwrap_or(-1) == 3, || {
            "a try was spent on a passcode of the wrong shape".into()
        })?;

        // A wrong passcode: the tries left.
        keys(&screen.display, title, &[&first_wrong, "key:Return"])?;
        reader
            .until(title, "two tries left", |n| {
                labelled(n, "Passcode check") == Some("Wrong passcode. 2 tries left.")
                    && labelled(n, "Tries left") == Some("2 tries left.")
            })
            .await?;

        // The right one typed, not yet sent: the program holds it only on locked,
        // undumpable pages (GTK's password buffer), and its core image holds none of it.
        keys(&screen.display, title, &[passcode])?;
        reader
            .until(title, "the passcode typed", |n| {
                button(n, "Log in").is_some_and(|b| b.sensitive)
            })
            .await?;
        let typed = Secret::new("the passcode typed", passcode);
        let scan_dir = dir.path().to_owned();
        let pid = desktop.child.id();
        let (held, open) = tokio::task::spawn_blocking({
            let (typed, scan_dir) = (typed.clone(), scan_dir.clone());
            move || {
                (
                    protected_copies(pid, &typed),
                    assert_only_protected(
                        pid,
                        &scan_dir,
                        "the dialog open, passcode typed",
                        &[typed],
                    ),
                )
            }
        })
        .await
        .map_err(|e| fail("scan", e))?;
        check(held.map_err(Failed::from)? >= 1, || {
            "the typed passcode is not on locked pages in the dialog program".into()
        })?;
        open.map_err(Failed::from)?;

        // Enter: logged in, and the picker offers both profiles.
        keys(&screen.display, title, &["key:Return"])?;
        reader.until_closed(title).await?;
        let picker = cardgate_desktop::PICKER_TITLE;
        let own = "Pharmacist · High Street Pharmacy (FA123)";
        let locum = "Locum Pharmacist · Locum organisation (FFFFF)";
        let nodes = reader
            .until(picker, "both role profiles", |n| {
                button(n, own).is_some() && button(n, locum).is_some()
            })
            .await?;
        check(agent.passcode_tries_left().await.unwrap_or(-1) == 3, || {
            "the tries left did not come back to 3 after the right passcode".into()
        })?;
        shoot(picker, "role-picker")?;
        // The dialog closed, the passcode sent: the program holds it (and the wrong one)
        // nowhere.
        let secrets = [typed, Secret::new("the wrong passcode", &first_wrong)];
        tokio::task::spawn_blocking(move || {
            assert_no_secret(
                pid,
                &scan_dir,
                "the dialog closed, the role picker open",
                &secrets,
            )
        })
        .await
        .map_err(|e| fail("scan", e))?
        .map_err(Failed::from)?;
        reader.secret_fields_announced_one_character_at_a_time("the passcode sent")?;
        drop(nodes);
        reader.press(picker, own)?;
        reader.until_closed(picker).await?;
        selected_is(&agent, "RP-PHARM-FA123", "selected").await?;

        // The certificate notification, with "Renew now"; choosing it renews.
        let expiring = next_notification(&mut shown, "20 days").await?;
        check(
            expiring.actions.first().map(String::as_str) == Some(cardgate_desktop::RENEW_ACTION),
            || format!("the certificate notification: {expiring:?}"),
        )?;
        NotificationServer::action_invoked(
            &SignalEmitter::new(&notifications, NOTIFICATIONS_PATH)
                .map_err(|e| fail("emitter", e))?,
            expiring.id,
            cardgate_desktop::RENEW_ACTION,
        )
        .await
        .map_err(|e| fail("ActionInvoked", e))?;
        let renewal = cardgate_desktop::RENEWAL_TITLE;
        reader
            .until(renewal, "the renewal's end", |n| {
                labelled(n, "Renewal step").is_some_and(|t| t.contains("renewed"))
                    && button(n, "Close").is_some_and(|b| b.sensitive)
            })
            .await?;
        shoot(renewal, "renewal")?;
        reader.press(renewal, "Close")?;
        reader.until_closed(renewal).await?;

        // Logging out tells the holder.
        agent.logout().await.map_err(|e| fail("Logout", e))?;
        next_notification(&mut shown, "You logged out.").await?;

        // A PMR asks: the dialog names it and its reason; Escape cancels.
        let pending = request(&pmr, "Download today's prescriptions");
        let nodes = reader
            .until(title, "the PMR's request", |n| {
                labelled(n, "Who is asking")
                    .is_some_and(|t| t.contains("Download today's prescriptions"))
            })
            .await?;
        let asking = labelled(&nodes, "Who is asking").unwrap_or_default();
        check(asking.contains("desktop_dialog"), || {
            format!("the dialog does not name the asking program: {asking:?}")
        })?;
        keys(&screen.display, title, &["key:Escape"])?;
        reader.until_closed(title).await?;
        let cancelled = answered(pending).await?;
        expect_error(&cancelled, "Cancelled", "Escape")?;

        // The card pulled with the dialog open closes it.
        let pending = request(&pmr, "Check the patient's record");
        reader.until_asked("the second request").await?;
        inserted.remove().map_err(|e| fail("pulling the card", e))?;
        reader.until_closed(title).await?;
        let pulled = answered(pending).await?;
        expect_error(&pulled, "NoCard", "card pulled")?;

        // Back in: the dialog again, and the picker offers the last role first; Enter takes it.
        let inserted =
            insert_and_read(lab, ReaderSlot::First, card.clone(), &agent, PHARMACIST.1).await?;
        reader
            .until_asked("the dialog at the second insertion")
            .await?;
        keys(&screen.display, title, &[passcode, "key:Return"])?;
        let remembered = format!("{own} · last used");
        let nodes = reader
            .until(picker, "the last role, marked", |n| {
                button(n, &remembered).is_some()
            })
            .await?;
        let first = nodes
            .iter()
            .find(|n| n.role.contains("button") && n.name.contains('·'));
        check(first.is_some_and(|b| b.name == remembered), || {
            format!("the last role is not first: {}", describe(&nodes))
        })?;
        keys(&screen.display, picker, &["key:Return"])?;
        reader.until_closed(picker).await?;
        selected_is(&agent, "RP-PHARM-FA123", "Enter in the picker selected").await?;

        // The status window, from the program run again as the application list runs it:
        // holder, role and state; the role changed without a passcode; the passcode changed;
        // logging out.
        // The tray icon: its tooltip says who is logged in, in which role; a click opens the
        // status window.
        let item = tokio::time::timeout(Duration::from_secs(20), tray_items.recv())
            .await
            .map_err(|_| Failed::from("no tray icon registered within 20 s"))?
            .ok_or("the tray watcher stopped")?;
        let tray = zbus::proxy::Builder::<zbus::Proxy<'_>>::new(&notifications)
            .destination(item.as_str())
            .and_then(|b| b.path("/StatusNotifierItem"))
            .and_then(|b| b.interface("org.kde.StatusNotifierItem"))
            .map_err(|e| fail("tray item proxy", e))?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| fail("tray item proxy", e))?;
        type ToolTip = (String, Vec<(i32, i32, Vec<u8>)>, String, String);
        let (_, _, tip_title, tip_text): ToolTip = tray
            .get_property("ToolTip")
            .await
            .map_err(|e| fail("the tray icon's ToolTip", e))?;
        check(
            tip_title == "Smartcard: You are logged in."
                && tip_text == format!("{}, {own}", PHARMACIST.0),
            || format!("the tray tooltip: {tip_title:?} / {tip_text:?}"),
        )?;
        let status = cardgate_desktop::STATUS_TITLE;
        tray.call_method("Activate", &(0i32, 0i32))
            .await
            .map_err(|e| fail("activating the tray icon", e))?;
        reader
            .until(status, "the status window from the tray", |n| {
                labelled(n, "Card holder") == Some(PHARMACIST.0)
            })
            .await?;
        keys(&screen.display, status, &["key:Escape"])?;
        reader.until_closed(status).await?;

        // Without a tray: the program run again, as the application list runs it.
        desktop.run_again(&["--status"])?;
        reader
            .until(status, "the holder, role and state", |n| {
                labelled(n, "Card holder") == Some(PHARMACIST.0)
                    && labelled(n, "Role") == Some(&format!("Role: {own}"))
                    && labelled(n, "State") == Some("You are logged in.")
            })
            .await?;
        reader.press(status, "Change role")?;
        reader
            .until(picker, "the picker for a change of role", |n| {
                button(n, locum).is_some()
            })
            .await?;
        reader.press(picker, locum)?;
        reader.until_closed(picker).await?;
        reader
            .until(status, "the new role", |n| {
                labelled(n, "Role") == Some(&format!("Role: {locum}"))
            })
            .await?;
        selected_is(&agent, "RP-LOCUM-FFFFF", "Change role selected").await?;
        reader.press(status, "Change passcode")?;
        reader
            .until(status, "the passcode form", |n| {
                n.iter().any(|n| n.name == "Current passcode")
            })
            .await?;
        let changed = "n2468q";
        keys(
            &screen.display,
            status,
            &[passcode, "key:Tab", changed, "key:Tab", changed],
        )?;
        reader
            .until(status, "the change ready to send", |n| {
                button(n, "Change the passcode").is_some_and(|b| b.sensitive)
            })
            .await?;
        shoot(status, "status")?;
        reader.press(status, "Change the passcode")?;
        reader
            .until(status, "the passcode changed", |n| {
                labelled(n, "Status message").is_some_and(|t| t.contains("passcode is changed"))
            })
            .await?;
        reader.press(status, "Log out")?;
        next_notification(&mut shown, "You logged out.").await?;
        reader
            .until(status, "logged out", |n| {
                labelled(n, "State")
                    == Some("Your smartcard is in the reader; you are not logged in. 3 tries left.")
            })
            .await?;
        keys(&screen.display, status, &["key:Escape"])?;
        reader.until_closed(status).await?;

        // Three wrong passcodes, the last only once the holder says it is the final try,
        // lock the card; the dialog leads through the RA's unlock code to a new passcode.
        let pending = request(&pmr, "Check the stock");
        reader.until_asked("the request to check the stock").await?;
        // Three different wrong ones: the agent never sends a value that just failed again.
        for (wrong, left) in [("98765432", "2 tries left."), ("87654321", "1 try left")] {
            keys(&screen.display, title, &[wrong, "key:Return"])?;
            reader
                .until(title, left, |n| {
                    labelled(n, "Tries left").is_some_and(|t| t.starts_with(left))
                })
                .await?;
        }
        keys(&screen.display, title, &["76543210", "key:Return"])?;
        let nodes = reader
            .until(title, "the final-try confirmation", |n| {
                n.iter().any(|n| n.name == "Use my final try")
            })
            .await?;
        check(
            button(&nodes, "Log in").is_some_and(|b| !b.sensitive),
            || format!("Log in on the final try, unconfirmed: {}", describe(&nodes)),
        )?;
        check(agent.passcode_tries_left().await.unwrap_or(-1) == 1, || {
            "the unconfirmed final try was sent to the card".into()
        })?;
        // From the keyboard: Tab to the check box, Space ticks it (GTK 4.8 gives check boxes
        // no AT-SPI action), back to the field and Enter.
        keys(&screen.display, title, &["key:Tab", "key:space"])?;
        reader
            .until(title, "Log in once the final try is confirmed", |n| {
                button(n, "Log in").is_some_and(|b| b.sensitive)
            })
            .await?;
        keys(&screen.display, title, &["key:shift+Tab", "key:Return"])?;
        let nodes = reader
            .until(title, "the ways to unlock the card", |n| {
                button(n, "Unlock with a code from the RA").is_some()
                    && button(n, "Unlock with a one-time code").is_some()
            })
            .await?;
        check(
            labelled(&nodes, "Passcode check").is_some_and(|t| {
                let at = |s| t.find(s).unwrap_or(usize::MAX);
                at("one-time code") < at("Sponsor") && at("Sponsor") < at("Registration Authority")
            }),
            || format!("the unlock paths in order: {}", describe(&nodes)),
        )?;
        check(agent.passcode_tries_left().await.unwrap_or(-1) == 0, || {
            "the card is not locked after three wrong passcodes".into()
        })?;
        next_notification(&mut shown, "locked").await?;
        shoot(title, "locked")?;
        // Self-service first, as the paths say: this holder registered no email or mobile, and
        // the dialog says so (the national service's own words) without asking for a code.
        reader.press(title, "Unlock with a one-time code")?;
        let nodes = reader
            .until(title, "the self-service refusal", |n| {
                labelled(n, "Unlock step").is_some_and(|t| t.contains("No email or mobile"))
            })
            .await?;
        check(!nodes.iter().any(|n| n.name == "One-time code"), || {
            format!("a one-time code was asked for: {}", describe(&nodes))
        })?;
        reader.press(title, "Unlock with a code from the RA")?;
        reader
            .until(title, "the unlock form", |n| {
                n.iter().any(|n| n.name == "Unlock code")
                    && button(n, "Unlock card").is_some_and(|b| !b.sensitive)
            })
            .await?;
        let new_passcode = "n1357p";
        keys(
            &screen.display,
            title,
            &[
                TEST_UNLOCK_CODE,
                "key:Tab",
                new_passcode,
                "key:Tab",
                "n1357q",
            ],
        )?;
        reader
            .until(title, "the mismatch named", |n| {
                labelled(n, "Unlock check").is_some_and(|t| t.contains("not the same"))
                    && button(n, "Unlock card").is_some_and(|b| !b.sensitive)
            })
            .await?;
        keys(&screen.display, title, &["key:BackSpace", "p"])?;
        reader
            .until(title, "Unlock card once the form is right", |n| {
                button(n, "Unlock card").is_some_and(|b| b.sensitive)
            })
            .await?;
        shoot(title, "unlock")?;
        reader.press(title, "Unlock card")?;
        reader
            .until(title, "the card unlocked", |n| {
                labelled(n, "Passcode check")
                    == Some("Your card is unlocked. Log in with your new passcode.")
                    && labelled(n, "Tries left") == Some("3 tries left.")
            })
            .await?;
        keys(&screen.display, title, &[new_passcode, "key:Return"])?;
        reader.until_closed(title).await?;
        let profiles = answered(pending)
            .await?
            .map_err(|e| fail("RequestLogin after the unlock", e))?;
        check(profiles.len() == 2, || format!("the PMR got {profiles:?}"))?;
        let remembered = format!("{locum} · last used");
        reader
            .until(
                picker,
                "the picker after the unlock, the role changed to marked",
                |n| button(n, &remembered).is_some(),
            )
            .await?;
        reader.press(picker, &remembered)?;
        reader.until_closed(picker).await?;
        reader.secret_fields_announced_one_character_at_a_time(
            "the passcode changed, the card unlocked and the new passcode sent",
        )?;

        // The card pulled during the session: the session-ended notification says why.
        inserted.remove().map_err(|e| fail("pulling the card", e))?;
        let ended = next_notification(&mut shown, "removed").await?;
        check(ended.summary.to_lowercase().contains("session"), || {
            format!("the removal notification: {ended:?}")
        })?;

        // Back in, the dialog opens by itself; the holder closes it. Then a PMR asks, a second
        // program asking meanwhile is told a log-in is in progress, and the dialog program is
        // killed mid-dialog: the PMR hears Cancelled.
        let inserted =
            insert_and_read(lab, ReaderSlot::First, card.clone(), &agent, PHARMACIST.1).await?;
        reader
            .until_asked("the dialog at the third insertion")
            .await?;
        reader.press(title, "Cancel")?;
        reader.until_closed(title).await?;
        let pending = request(&pmr, "Claim for today's items");
        reader.until_asked("the claim request").await?;
        let second = pmr.request_login("Print the labels").await;
        expect_error(
            &second,
            "LoginInProgress",
            "a second program asking at once",
        )?;
        desktop.kill();
        let killed = answered(pending).await?;
        expect_error(&killed, "Cancelled", "dialog killed")?;
        check(agent.passcode_tries_left().await.unwrap_or(-1) == 3, || {
            "a try was spent by a cancelled or killed dialog".into()
        })?;
        drop(inserted);
        Ok::<(), Failed>(())
    };
    let outcome = body.await;
    let log = desktop.log();
    drop(desktop);
    drop(reader);
    let stopped = running.stop().await;
    match outcome {
        Err(e) => Err(Failed::from(format!(
            "{}\n---- cardgate-desktop log ----\n{log}",
            e.message().unwrap_or("failed")
        ))),
        Ok(()) => stopped.map(|_| ()),
    }
}
