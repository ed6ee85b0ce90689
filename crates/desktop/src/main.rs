//! `cardgate-desktop`, the program: everything is in the library (`lib.rs`).

fn main() -> std::process::ExitCode {
    cardgate_desktop::run(std::env::args_os())
}
