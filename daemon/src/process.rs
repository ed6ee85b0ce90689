//! The process around an agent: `cardgated`'s command line and `main`, the hardening that
//! comes first (no core dumps), logging, the stop signal and the runtime; the same for the
//! shipped `cardgated` and the demo's `cardgated-demo`.

use std::ffi::OsString;
use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

/// The cardgate smartcard agent.
#[derive(Debug, Parser)]
#[command(
    name = "cardgated",
    version,
    about = "the cardgate smartcard agent",
    long_about = "cardgated is the smartcard agent of a pharmacy workstation. It watches the \
smartcard readers through pcscd, verifies the holder's passcode on the card (never spending a \
try on its own), logs the holder in to the national endpoint with the card signing, and answers \
over D-Bus (org.cardgate.Agent on the system bus) whether this workstation may do an EPS action \
now; the answer turns to no the moment the card leaves the reader.\n\n\
It runs as the systemd service cardgated.service under the cardgate account, reads \
/etc/cardgate/cardgated.toml, keeps its audit trail and passcode ledger in /var/lib/cardgate \
and logs to the journal. The cardgate(1) command is its user interface."
)]
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
    /// Print this manual page (roff, section 8) and exit; the package's cardgated(8) is made
    /// with it when the package is built.
    #[arg(long)]
    man: bool,
}

/// `cardgated`'s manual page (section 8, a system daemon) in roff, from the same definition
/// as its command line, so the two cannot drift.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory as _;
    let mut page = Vec::new();
    clap_mangen::Man::new(Args::command())
        .section("8")
        .render(&mut page)?;
    Ok(page)
}

/// `cardgated`'s `main`, from its command line: hardens the process, sets up logging, reads
/// and checks the configuration, and serves on pcscd until SIGTERM or Ctrl-C.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = Args::parse_from(args);
    if args.man {
        use std::io::Write as _;
        return match man_page().and_then(|page| std::io::stdout().write_all(&page)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cardgated: writing the manual page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(code) = harden("cardgated") {
        return code;
    }
    init_logging("cardgated");

    if let Some(path) = &args.check_config {
        return match crate::Config::from_file(path) {
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

    run_to_exit("cardgated", async {
        let config = crate::Config::from_file(&args.config)?;
        let backend = Arc::new(cardgate_reader::PcscBackend::new());
        crate::run(config, backend, args.bus, stop_signal()).await
    })
}

/// No core dumps, before anything secret can be read (the unit's `LimitCORE=0` says the same
/// for the installed service; this covers a daemon started by hand). A process that cannot
/// be kept out of dumps does not start: exit 1 with the reason.
pub fn harden(program: &str) -> Result<(), ExitCode> {
    cardgate_secmem::forbid_core_dumps().map_err(|e| {
        eprintln!("{program}: {e}");
        ExitCode::FAILURE
    })
}

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
        // What a D-Bus call carrying a secret left on a worker's stack, cleared as it idles.
        .on_thread_park(cardgate_secmem::scrub_stack)
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
