//! The process around an agent: logging, the stop signal and the runtime, the same for the
//! shipped `cardgated` and the demo's `cardgated-demo` (whose `main`s are otherwise only
//! their command lines).

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

/// Logging: to the journal, with priorities and structured fields, when systemd started the
/// program with stderr connected to it (`JOURNAL_STREAM`); to stderr otherwise (a terminal,
/// the tests). `RUST_LOG` sets the filter; `info` by default. `program` is the journal's
/// syslog identifier.
pub fn init_logging(program: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(journal) => {
                tracing_subscriber::registry()
                    .with(filter())
                    .with(journal.with_syslog_identifier(program.to_owned()))
                    .init();
                return;
            }
            Err(e) => eprintln!("{program}: the journal is not reachable ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves at SIGTERM (systemd's stop) or Ctrl-C, whichever comes first.
pub async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// Runs `service` on a multi-threaded runtime to its end: success is exit 0, an error is
/// printed after `program:` and is exit 1.
pub fn run_to_exit<E: Display>(
    program: &str,
    service: impl Future<Output = Result<(), E>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{program}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(service) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}
