//! `cardgated`: the thin `main` over the `cardgated` library. Parses the command line, sets
//! up logging (journald under systemd, stderr otherwise), reads and checks the configuration,
//! and runs until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

/// The cardgate smartcard agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file.
    #[arg(long, default_value = "/etc/cardgate/cardgated.toml")]
    config: PathBuf,
    /// Check FILE and exit: 0 if it is valid, 2 with the key named if not.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Serve on this D-Bus address instead of the configured bus.
    #[arg(long, value_name = "ADDRESS")]
    bus: Option<String>,
}

/// Logging: to the journal, with priorities and structured fields, when systemd started us
/// with stderr connected to it (`JOURNAL_STREAM`); to stderr otherwise (a terminal, the
/// tests). `RUST_LOG` sets the filter; `info` by default.
fn init_logging() {
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
                    .with(journal.with_syslog_identifier("cardgated".to_owned()))
                    .init();
                return;
            }
            Err(e) => eprintln!("cardgated: the journal is not reachable ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .init();
}

async fn stop_signal() {
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

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();

    if let Some(path) = &args.check_config {
        return match cardgated::Config::from_file(path) {
            Ok(_) => {
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cardgated: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let config = cardgated::Config::from_file(&args.config)?;
        let backend = Arc::new(cardgate_reader::PcscBackend::new());
        cardgated::run(config, backend, args.bus, stop_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cardgated: {e}");
            ExitCode::FAILURE
        }
    }
}
