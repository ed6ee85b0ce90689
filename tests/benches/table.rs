//! The one benchmark table (issue 8): prints the rows every bench recorded in this run of
//! `scripts/bench` (`tests/bench_table.rs`), each figure next to its reference from the same
//! run. `scripts/bench` runs the benches and then this; on its own it reprints the last run.
//!
//! Run with `--bench` (as `cargo bench` does) it fails when a bench recorded nothing; without
//! it (clippy's and `cargo test --benches` builds) it only prints what there is.

use std::path::PathBuf;
use std::process::ExitCode;

use cardgate_e2e::bench_table::{TABLE_DIR_VAR, render};

fn main() -> ExitCode {
    let full = std::env::args().any(|a| a == "--bench");
    let dir = std::env::var_os(TABLE_DIR_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-table"));
    match render(&dir) {
        Ok(table) => {
            println!("{table}");
            println!(
                "rows from {}; rerun everything: scripts/bench",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(partial) if !full => {
            println!("{partial}");
            ExitCode::SUCCESS
        }
        Err(partial) => {
            eprintln!("{partial}");
            ExitCode::FAILURE
        }
    }
}
