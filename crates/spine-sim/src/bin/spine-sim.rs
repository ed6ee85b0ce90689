//! `spine-sim`: the Spine-like endpoint as a program. A thin shell over the library:
//! `spine-sim --config FILE` serves until Ctrl-C or SIGTERM; `spine-sim init --dir DIR`
//! writes the service CA and a server certificate for 127.0.0.1/localhost.

use std::path::PathBuf;
use std::process::ExitCode;

use cardgate_spine_sim::{SimConfig, SpineSim, init_service_dir};
use clap::{Parser, Subcommand};

/// A Spine-like national endpoint for the lab (docs/spine-protocol.md).
#[derive(Parser, Debug)]
#[command(name = "spine-sim", version)]
struct Cli {
    /// The configuration file (TOML; relative paths in it are taken from its directory).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a new service CA and server certificate (refuses to overwrite).
    Init {
        /// The service directory to create.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match (cli.command, cli.config) {
        (Some(Command::Init { dir }), _) => match init_service_dir(&dir) {
            Ok(_) => {
                println!(
                    "service identity written to {} (agents pin {}/{})",
                    dir.display(),
                    dir.display(),
                    cardgate_spine_sim::identity::SERVICE_CA_FILE
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        (None, Some(path)) => {
            let config = match SimConfig::from_file(&path) {
                Ok(config) => config,
                Err(e) => return fail(&e),
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => return fail(&e),
            };
            runtime.block_on(serve(config))
        }
        (None, None) => {
            eprintln!("spine-sim: give --config FILE to serve, or `init --dir DIR`");
            ExitCode::from(2)
        }
    }
}

async fn serve(config: SimConfig) -> ExitCode {
    let sim = match SpineSim::start(config).await {
        Ok(sim) => sim,
        Err(e) => return fail(&e),
    };
    // One line per listener on stdout, so a script that asked for port 0 learns the ports.
    println!("listen {}", sim.url());
    println!("listen_mtls {}", sim.mtls_url());
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sim.shutdown().await;
    ExitCode::SUCCESS
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("spine-sim: {error}");
    ExitCode::FAILURE
}
