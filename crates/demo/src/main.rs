//! `cardgated-demo`: the agent on its demo world, with no hardware and no pcscd
//! (`cardgate_demo::run`), until Ctrl-C or SIGTERM. `scripts/run` runs it. The production
//! `cardgated` has no demo in it; this binary is test equipment and is not packaged.

use std::process::ExitCode;

use clap::Parser;

/// The cardgate agent on its demo world: in-process virtual readers and cards, an in-process
/// Spine-like endpoint, the demo controls (org.cardgate.Demo1), a private D-Bus.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Serve on this D-Bus address instead of a private bus the demo starts.
    #[arg(long, value_name = "ADDRESS")]
    bus: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(code) = cardgated::process::harden("cardgated-demo") {
        return code;
    }
    // As `cardgated` does: stderr on a terminal, `RUST_LOG` as the filter (`info` by default).
    cardgated::process::init_logging("cardgated-demo");
    cardgated::process::run_to_exit(
        "cardgated-demo",
        cardgate_demo::run(args.bus, cardgated::process::stop_signal()),
    )
}
