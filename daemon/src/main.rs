//! `cardgated`: the thin `main` over the `cardgated` library ([`cardgated::process::main`],
//! which the end-to-end suites also run as a process of its own, so what they test is what
//! ships).

use std::process::ExitCode;

fn main() -> ExitCode {
    cardgated::process::main(std::env::args_os())
}
