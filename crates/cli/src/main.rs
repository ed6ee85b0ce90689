//! The `cardgate` binary: everything is in the library (`cardgate_cli::main`), so tests and
//! the man page share one definition.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cardgate_cli::main()
}
