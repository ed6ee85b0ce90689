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

fn main() -> ExitCode {
    let args = Args::parse();
    cardgated::process::init_logging("cardgated");

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

    cardgated::process::run_to_exit("cardgated", async {
        let config = cardgated::Config::from_file(&args.config)?;
        let backend = Arc::new(cardgate_reader::PcscBackend::new());
        cardgated::run(config, backend, args.bus, cardgated::process::stop_signal()).await
    })
}
