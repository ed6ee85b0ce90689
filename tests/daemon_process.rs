//! The daemon in a process of its own, where the process boundary matters: its own log output
//! (nothing secret in it) and its own memory and wake-ups (the daemon bench).
//!
//! The suite's binary is re-executed with [`CHILD_VAR`] naming a configuration file; its
//! `main` calls [`run_if_child`] first, which then runs nothing but the daemon as `cardgated`
//! does (`cardgated::run` on pcscd, a `tracing` subscriber on stderr at the filter in
//! [`LOG_VAR`]) until its stdin is closed. The child inherits the lab namespace, so it sees the
//! suite's private pcscd and bus.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;

use cardgate_demo::DemoWorld;

/// Set (to a configuration file) when the binary is re-executed as the daemon.
pub const CHILD_VAR: &str = "CARDGATE_E2E_DAEMON_CONFIG";
/// The child's log filter (`tracing_subscriber::EnvFilter` syntax); no logging when unset.
pub const LOG_VAR: &str = "CARDGATE_E2E_DAEMON_LOG";
/// Set to N: the child watches N empty in-process virtual readers instead of pcscd (for
/// what the daemon itself costs per reader, beyond what the lab's pcscd can give).
pub const VIRTUAL_READERS_VAR: &str = "CARDGATE_E2E_DAEMON_VIRTUAL_READERS";

/// Set (to a configuration file) when the binary is re-executed as `cardgated` itself:
/// `cardgated::process::main` with `--config` that file, exactly what the shipped binary
/// runs (its hardening, its logging, its stop on SIGTERM).
pub const AS_CARDGATED_VAR: &str = "CARDGATE_E2E_AS_CARDGATED";

/// Call first in `main`: when this process is the daemon child, runs the daemon and returns
/// its exit code; otherwise `None`.
pub fn run_if_child() -> Option<ExitCode> {
    if let Some(config) = std::env::var_os(AS_CARDGATED_VAR) {
        return Some(cardgated::process::main([
            "cardgated".into(),
            "--config".into(),
            config,
        ]));
    }
    let config = std::env::var_os(CHILD_VAR)?;
    if let Some(filter) = std::env::var_os(LOG_VAR) {
        // No timestamps: a test grepping the log for digits must not match a clock.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter.to_string_lossy()))
            .with_writer(std::io::stderr)
            .without_time()
            .init();
    }
    Some(run_daemon(Path::new(&config)))
}

/// The daemon on pcscd until stdin closes.
fn run_daemon(config: &Path) -> ExitCode {
    let config = match cardgated::Config::from_file(config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("daemon child: {e}");
            return ExitCode::FAILURE;
        }
    };
    let virtual_readers = std::env::var(VIRTUAL_READERS_VAR)
        .ok()
        .and_then(|n| n.parse::<usize>().ok());
    let backend: Arc<dyn cardgate_reader::ReaderBackend> = match virtual_readers {
        Some(n) => {
            let backend = cardgate_reader::VirtualBackend::new();
            for i in 0..n {
                backend.attach_reader(&format!("Virtual Reader {i:02}"));
            }
            Arc::new(backend)
        }
        None => Arc::new(cardgate_reader::PcscBackend::new()),
    };
    serve_until_stdin_closes("daemon child", |stopped| {
        cardgated::run(config, backend, None, stopped)
    })
}

/// The end of a re-executed child's standard input: the test closed it to stop the child.
pub type StdinClosed = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A re-executed child's life (the daemon, the demo): runs what `serve` returns on a fresh
/// runtime until it ends, [`StdinClosed`] telling it when to stop; an error goes to stderr
/// after `who`.
pub fn serve_until_stdin_closes<F, E>(who: &str, serve: impl FnOnce(StdinClosed) -> F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let Ok(runtime) = crate::runtime() else {
        return ExitCode::FAILURE;
    };
    let stopped: StdinClosed = Box::pin(async {
        let _ = tokio::task::spawn_blocking(|| {
            use std::io::Read as _;
            let _ = std::io::stdin().read(&mut [0u8; 1]);
        })
        .await;
    });
    match runtime.block_on(serve(stopped)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{who}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A running daemon child.
#[derive(Debug)]
pub struct DaemonProcess {
    child: Child,
    log: PathBuf,
    /// Runs `cardgated`'s own `main`, which stops on SIGTERM (not at the end of stdin).
    as_cardgated: bool,
}

impl DaemonProcess {
    /// Starts the daemon for `world` on the bus at `address`, logging at `log_filter` (if
    /// any) to a file in the world's directory. Returns once the process runs; wait for its
    /// bus name before calling it.
    pub fn spawn(
        world: &DemoWorld,
        address: &str,
        log_filter: Option<&str>,
    ) -> Result<DaemonProcess, String> {
        DaemonProcess::spawn_with(world, address, log_filter, None, false)
    }

    /// As [`DaemonProcess::spawn`], running `cardgated`'s own `main` on pcscd (what the
    /// shipped binary runs, hardening included), logging at `RUST_LOG=log_filter`.
    pub fn spawn_cardgated(
        world: &DemoWorld,
        address: &str,
        log_filter: &str,
    ) -> Result<DaemonProcess, String> {
        DaemonProcess::spawn_with(world, address, Some(log_filter), None, true)
    }

    /// As [`DaemonProcess::spawn`], watching `readers` empty in-process virtual readers
    /// instead of pcscd.
    pub fn spawn_on_virtual_readers(
        world: &DemoWorld,
        address: &str,
        readers: usize,
    ) -> Result<DaemonProcess, String> {
        DaemonProcess::spawn_with(world, address, None, Some(readers), false)
    }

    fn spawn_with(
        world: &DemoWorld,
        address: &str,
        log_filter: Option<&str>,
        virtual_readers: Option<usize>,
        as_cardgated: bool,
    ) -> Result<DaemonProcess, String> {
        let text = cardgate_demo::DEMO_CONFIG
            .replace("unix:path=@DEMO_DIR@/bus", address)
            .replace("@DEMO_DIR@", &world.dir().display().to_string())
            .replace("@ENDPOINT_URL@", &world.sim().url())
            .replace("@ENDPOINT_MTLS_URL@", &world.sim().mtls_url());
        let config = world.dir().join("daemon-process.toml");
        std::fs::write(&config, text).map_err(|e| format!("writing the configuration: {e}"))?;
        let log = world.dir().join("daemon-process.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("creating the daemon log: {e}"))?;
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut command = Command::new(exe);
        command
            .env_remove(LOG_VAR)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log_file);
        if as_cardgated {
            command
                .env(AS_CARDGATED_VAR, &config)
                .env_remove(CHILD_VAR)
                .env("RUST_LOG", log_filter.unwrap_or("info"));
        } else {
            command.env(CHILD_VAR, &config).env_remove(AS_CARDGATED_VAR);
            if let Some(filter) = log_filter {
                command.env(LOG_VAR, filter);
            }
        }
        match virtual_readers {
            Some(n) => command.env(VIRTUAL_READERS_VAR, n.to_string()),
            None => command.env_remove(VIRTUAL_READERS_VAR),
        };
        let child = command
            .spawn()
            .map_err(|e| format!("starting the daemon process: {e}"))?;
        Ok(DaemonProcess {
            child,
            log,
            as_cardgated,
        })
    }

    /// The daemon's process id (as seen in the lab's pid namespace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the daemon (closes its stdin, as a service manager's stop would end it) and
    /// returns everything it logged; an unclean exit is an error carrying the log.
    pub fn stop(mut self) -> Result<String, String> {
        drop(self.child.stdin.take());
        if self.as_cardgated {
            // As systemd stops it.
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let status = self
            .child
            .wait()
            .map_err(|e| format!("waiting for the daemon: {e}"))?;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if status.success() {
            Ok(log)
        } else {
            Err(format!("the daemon exited {status}; its log:\n{log}"))
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        // Stopped already, or a failed test: never leave it running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
