//! End-to-end: the example PMR clients and the typed-proxy tests of `examples/` (Python, C,
//! Java), each run as an integrator would run it, against the demo agent on a private bus.
//!
//! Each trial starts a private `dbus-daemon` and `cardgated-demo --bus ADDRESS` in a
//! process of its own (which serves `org.cardgate.Agent1` and the demo-only
//! `org.cardgate.Demo1`), then runs the client as a subprocess with `DBUS_SYSTEM_BUS_ADDRESS`
//! set to that bus (clients connect to the system bus, as in production) and the demo
//! passcode in `CARDGATE_PASSCODE`. For the examples the trial waits for their line
//! `waiting for card removal`, takes the card out through `Demo1.RemoveCard`, and checks
//! that the client voided its decision and was then refused with `no-card`. The typed-proxy
//! tests must exit 0 (every method answered with the signature its introspection declares).
//!
//! Which demo: `CARDGATED_DEMO_BIN` if set (a `cardgated-demo` built elsewhere); otherwise this
//! binary re-runs itself with [`AS_DEMO`] set, and its `main` then does what `cardgated-demo
//! --bus ADDRESS` does (`cardgate_demo::run`), as `cli_e2e.rs` does for the CLI: Cargo builds
//! another package's binary only on request, so `target/debug/cardgated-demo` may be stale.
//!
//! Missing tools (`/usr/bin/python3` with dbus-next, gcc, gdbus-codegen, the JDK and
//! dbus-java) fail the trial with the package to install: `scripts/setup` installs them all.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, PrivateBus};
use libtest_mimic::{Arguments, Failed, Trial};

/// Set (to a bus address) when this binary is re-executed as the demo agent.
const AS_DEMO: &str = "CARDGATE_E2E_AS_DEMO";
/// Debian's interpreter, which has python3-dbus-next (not a pyenv `python3` on PATH).
const PYTHON: &str = "/usr/bin/python3";
/// The line each example prints once it holds an allowed decision.
const WAITING: &str = "waiting for card removal";
/// How long one client may take (the typed-proxy tests renew a certificate on the card).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    if let Some(address) = std::env::var_os(AS_DEMO) {
        return run_demo(address.to_string_lossy().into_owned());
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("python_example", || example(python("pmr_client.py"))),
        Trial::test("python_typed_proxy", || {
            typed_proxy(python("typed_proxy_test.py"))
        }),
        Trial::test("c_example", || {
            let build = CBuild::new()?;
            example(build.program("pmr_client"))
        }),
        Trial::test("c_typed_proxy", || {
            let build = CBuild::new()?;
            typed_proxy(build.program("typed_proxy_test"))
        }),
        Trial::test("java_example", || {
            let build = JavaBuild::new()?;
            example(build.command())
        }),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

/// The re-executed child: the demo agent on `address` until stdin closes.
fn run_demo(address: String) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    cardgate_e2e::daemon_process::serve_until_stdin_closes("demo child", |stopped| {
        cardgate_demo::run(Some(address), stopped)
    })
}

fn fail(what: &str, e: impl std::fmt::Display) -> Failed {
    Failed::from(format!("{what}: {e}"))
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn python(script: &str) -> Command {
    let mut command = Command::new(PYTHON);
    command.arg(examples_dir().join("python").join(script));
    // Only Debian's packages: nothing from a developer's own Python path.
    command
        .env_remove("PYTHONPATH")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// `make -s -C examples/DIR BUILD=BUILD TARGETS...`; returns what it printed.
fn make(dir: &str, packages: &str, build: &Path, targets: &[&str]) -> Result<String, Failed> {
    let output = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(examples_dir().join(dir))
        .arg(format!("BUILD={}", build.display()))
        .args(targets)
        .output()
        .map_err(|e| fail("running make (apt-get install make)", e))?;
    if !output.status.success() {
        return Err(Failed::from(format!(
            "building examples/{dir} failed ({}; scripts/setup installs {packages}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The C programs, built by `examples/c/Makefile` (gdbus-codegen from the shipped XML) into
/// a temporary directory.
struct CBuild {
    dir: tempfile::TempDir,
}

impl CBuild {
    fn new() -> Result<CBuild, Failed> {
        let dir = tempfile::tempdir().map_err(|e| fail("tempdir", e))?;
        let packages = "gcc, make, pkg-config, libglib2.0-dev and libglib2.0-dev-bin";
        make("c", packages, dir.path(), &[])?;
        Ok(CBuild { dir })
    }

    fn program(&self, name: &str) -> Command {
        Command::new(self.dir.path().join(name))
    }
}

/// The Java example, compiled by `examples/java/Makefile` into a temporary directory; the
/// command is the one its `run` target runs.
struct JavaBuild {
    _dir: tempfile::TempDir,
    command: Vec<String>,
}

impl JavaBuild {
    fn new() -> Result<JavaBuild, Failed> {
        let dir = tempfile::tempdir().map_err(|e| fail("tempdir", e))?;
        let packages = "default-jdk-headless and libdbus-java";
        make("java", packages, dir.path(), &[])?;
        let line = make("java", packages, dir.path(), &["print-command"])?;
        let command: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        if command.is_empty() {
            return Err(Failed::from("make print-command printed nothing"));
        }
        Ok(JavaBuild { _dir: dir, command })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.command[0]);
        command.args(&self.command[1..]);
        command
    }
}

/// A private bus with the demo agent on it, both stopped on drop.
struct Demo {
    bus: PrivateBus,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Result<Demo, Failed> {
        let bus = PrivateBus::start().map_err(|e| fail("private bus", e))?;
        let dir = tempfile::tempdir().map_err(|e| fail("tempdir", e))?;
        let log = dir.path().join("demo.log");
        let log_file = std::fs::File::create(&log).map_err(|e| fail("demo log", e))?;
        let mut command = match std::env::var_os("CARDGATED_DEMO_BIN") {
            Some(bin) => {
                let mut c = Command::new(bin);
                c.args(["--bus", bus.address()]);
                c
            }
            None => {
                let exe = std::env::current_exe().map_err(|e| fail("current_exe", e))?;
                let mut c = Command::new(exe);
                c.env(AS_DEMO, bus.address());
                c
            }
        };
        // The demo's files (and its bus-address file) in this trial's directory.
        command
            .env("TMPDIR", dir.path())
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().map_err(|e| fail("demo log", e))?)
            .stderr(log_file);
        let child = command.spawn().map_err(|e| fail("starting the demo", e))?;
        let demo = Demo {
            bus,
            child,
            log,
            _dir: dir,
        };
        demo.wait_until_served()?;
        Ok(demo)
    }

    fn address(&self) -> &str {
        self.bus.address()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Until both the agent and the demo controls answer on the bus.
    fn wait_until_served(&self) -> Result<(), Failed> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let served = block_on(async {
                let connection = self.connection().await?;
                for (path, interface) in [
                    ("/org/cardgate/Agent", "org.cardgate.Agent1"),
                    ("/org/cardgate/Demo", "org.cardgate.Demo1"),
                ] {
                    let reply = connection
                        .call_method(
                            Some("org.cardgate.Agent"),
                            path,
                            Some("org.freedesktop.DBus.Introspectable"),
                            "Introspect",
                            &(),
                        )
                        .await?;
                    let xml: String = reply.body().deserialize()?;
                    if !xml.contains(&format!("\"{interface}\"")) {
                        return Err(zbus::Error::Failure(format!("{path} lacks {interface}")));
                    }
                }
                Ok::<(), zbus::Error>(())
            })?;
            match served {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(Failed::from(format!(
                        "the demo never served Agent1 and Demo1 ({e}); its log:\n{}",
                        self.log()
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    async fn connection(&self) -> zbus::Result<zbus::Connection> {
        zbus::connection::Builder::address(self.address())?
            .build()
            .await
    }

    /// `Demo1.RemoveCard("")`: the card leaves the first reader holding one.
    fn remove_card(&self) -> Result<(), Failed> {
        block_on(async {
            self.connection()
                .await?
                .call_method(
                    Some("org.cardgate.Agent"),
                    "/org/cardgate/Demo",
                    Some("org.cardgate.Demo1"),
                    "RemoveCard",
                    &("",),
                )
                .await
                .map(drop)
        })?
        .map_err(|e| fail("Demo1.RemoveCard", e))
    }
}

impl Drop for Demo {
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

fn block_on<T>(future: impl std::future::Future<Output = T>) -> Result<T, Failed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail("runtime", e))?;
    Ok(runtime.block_on(future))
}

/// A client's run: exit code and everything it printed.
struct Run {
    code: Option<i32>,
    stdout: Vec<String>,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "exit {:?}\n--- stdout ---", self.code)?;
        for line in &self.stdout {
            writeln!(f, "{line}")?;
        }
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// Runs `command` against `demo`; `on_line` sees each stdout line as it comes.
fn run_client(
    mut command: Command,
    demo: &Demo,
    mut on_line: impl FnMut(&str) -> Result<(), Failed>,
) -> Result<Run, Failed> {
    command
        .env("DBUS_SYSTEM_BUS_ADDRESS", demo.address())
        .env("CARDGATE_PASSCODE", DEMO_PASSCODE)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = format!("{:?}", command.get_program());
    let mut child = command.spawn().map_err(|e| {
        fail(
            &format!("starting {program} (scripts/setup installs what the examples need)"),
            e,
        )
    })?;
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut stdout = Vec::new();
    let mut failure = None;
    loop {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if failure.is_none()
                    && let Err(e) = on_line(&line)
                {
                    failure = Some(e);
                    let _ = child.kill();
                }
                stdout.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                let _ = child.kill();
                failure = Some(Failed::from(format!(
                    "{program} still running after {CLIENT_TIMEOUT:?}"
                )));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let status = child
        .wait()
        .map_err(|e| fail("waiting for the client", e))?;
    let _ = reader.join();
    let run = Run {
        code: status.code(),
        stdout,
        stderr: errors.join().unwrap_or_default(),
    };
    match failure {
        Some(e) => Err(Failed::from(format!(
            "{}\n{run}\n--- demo log ---\n{}",
            e.message().unwrap_or("failed"),
            demo.log()
        ))),
        None => Ok(run),
    }
}

/// The number after `generation ` in `line`.
fn generation_in(line: &str) -> Option<u64> {
    line.rsplit("generation ")
        .next()?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// An example client: logged in, allowed, the card taken out once it waits, its decision
/// voided, then refused with `no-card`; exit 0; the passcode never printed.
fn example(command: Command) -> Result<(), Failed> {
    let demo = Demo::start()?;
    let mut removed = false;
    let run = run_client(command, &demo, |line| {
        if line == WAITING {
            demo.remove_card()?;
            removed = true;
        }
        Ok(())
    })?;
    let context = || format!("{run}\n--- demo log ---\n{}", demo.log());
    let find = |prefix: &str| run.stdout.iter().find(|l| l.starts_with(prefix));
    let gate = format!("authorise download {DEMO_ODS}: ");
    let answers: Vec<&String> = run.stdout.iter().filter(|l| l.starts_with(&gate)).collect();
    let allowed = answers.first().copied();
    let refused = answers.get(1).copied();
    let voided = find("card removed: the decision of generation ");
    let kept = allowed.and_then(|l| generation_in(l));
    let checks = [
        (run.code == Some(0), "exit code 0".to_owned()),
        (removed, format!("the line {WAITING:?}")),
        (
            find("status: card-present, holder 'Asha Patel', workstation ODS codes ")
                .is_some_and(|l| l.contains(DEMO_ODS)),
            "the status line with the holder and the workstation's ODS code".to_owned(),
        ),
        (
            find("role: RP-PHARM-FA123 (Pharmacist at FA123)").is_some(),
            "the pharmacy's own role profile selected".to_owned(),
        ),
        (
            allowed.is_some_and(|l| l.contains("allowed (allowed)")) && kept.is_some(),
            "an allowed decision with its generation".to_owned(),
        ),
        (
            voided.and_then(|l| generation_in(l)).is_some()
                && voided.and_then(|l| generation_in(l)) == kept,
            "the allowed decision's generation voided after the removal".to_owned(),
        ),
        (
            refused.is_some_and(|l| l.contains("refused (no-card)"))
                && refused.and_then(|l| generation_in(l)) > kept,
            "refused with no-card under a newer generation after the removal".to_owned(),
        ),
        (
            !run.stdout.iter().any(|l| l.contains(DEMO_PASSCODE))
                && !run.stderr.contains(DEMO_PASSCODE),
            "the passcode never printed".to_owned(),
        ),
    ];
    for (ok, what) in checks {
        if !ok {
            return Err(Failed::from(format!("expected {what}:\n{}", context())));
        }
    }
    Ok(())
}

/// A typed-proxy test: exit 0, its closing line, and the error name it met for wrong-typed
/// arguments (printed into this test's output).
fn typed_proxy(command: Command) -> Result<(), Failed> {
    let demo = Demo::start()?;
    let run = run_client(command, &demo, |_| Ok(()))?;
    let wrong_type = run
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("wrong-typed arguments: "));
    let done = run
        .stdout
        .last()
        .is_some_and(|l| l.starts_with("typed proxy: all "));
    if run.code != Some(0) || !done || wrong_type.is_none() {
        return Err(Failed::from(format!(
            "the typed-proxy test failed:\n{run}\n--- demo log ---\n{}",
            demo.log()
        )));
    }
    println!(
        "  wrong-typed arguments answered {}",
        wrong_type.unwrap_or("")
    );
    Ok(())
}
