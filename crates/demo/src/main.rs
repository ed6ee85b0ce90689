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
    // Logs to stderr, `RUST_LOG` as the filter (`info` by default), as `cardgated` does on a
    // terminal.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cardgated-demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cardgate_demo::run(args.bus, stop_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cardgated-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
