//! Entering the lab namespaces: a test binary re-executes itself under `unshare` with its own
//! mount namespace (a private tmpfs on /run/pcscd, so its pcscd never meets the system's), its
//! own network namespace (the vpcd ports 35963/35964 are its own) and its own pid namespace
//! (when the binary ends, however it ends, the kernel kills pcscd and everything else in it).

use std::ffi::OsString;
use std::process::Command;

use crate::LabError;
use crate::packages::{ensure_lab_packages, find_program};

/// Set (to "1") in the environment of a process running inside the lab namespaces.
pub const LAB_NAMESPACE_ENV: &str = "CARDGATE_LAB_NAMESPACE";

/// Runs inside the new namespaces before the binary: a private /run/pcscd and a loopback
/// interface that is up (a fresh network namespace starts with `lo` down).
const PROLOGUE: &str = "set -e
mkdir -p /run/pcscd
mount -t tmpfs -o mode=0755 cardgate-lab /run/pcscd
ip link set lo up
set +e
\"$@\"
exit $?";

/// Whether this process already runs inside the lab namespaces.
pub fn in_lab_namespace() -> bool {
    std::env::var_os(LAB_NAMESPACE_ENV).is_some_and(|v| v == "1")
}

/// Moves this test binary into its own lab namespaces; call it first thing in `main()`.
///
/// Outside the lab, it re-executes the same binary with the same arguments inside fresh
/// mount, network and pid namespaces and exits with that run's status, so it does not return.
/// Inside, or when the arguments only ask for a test listing (`--list`, which must work
/// without root for IDEs and nextest), it returns at once.
///
/// Failure to enter (not root, no unshare, no CAP_SYS_ADMIN) prints what to do and exits
/// with status 2: a lab test never passes by skipping.
pub fn enter_lab_namespace() {
    if in_lab_namespace() || only_lists_tests() {
        return;
    }
    match reexec_in_namespace() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cardgate-lab: {e}");
            std::process::exit(2);
        }
    }
}

fn only_lists_tests() -> bool {
    std::env::args_os().skip(1).any(|a| a == "--list")
}

/// Runs this binary again inside the namespaces; returns the exit code to leave with.
fn reexec_in_namespace() -> Result<i32, LabError> {
    if !running_as_root()? {
        return Err(LabError::NotRoot);
    }
    ensure_lab_packages()?;
    let exe = std::env::current_exe().map_err(LabError::io("finding this test binary"))?;

    let mut command = match find_program("setpriv") {
        // If this process is killed outright, setpriv's pdeathsig kills unshare, whose
        // --kill-child kills the namespace's first process, and with it the namespace.
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--", "unshare"]);
            c
        }
        None => Command::new("unshare"),
    };
    command
        .args([
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            PROLOGUE,
            "cardgate-lab-namespace",
        ])
        .arg(&exe)
        .args(std::env::args_os().skip(1).collect::<Vec<OsString>>())
        .env(LAB_NAMESPACE_ENV, "1");
    let status = command
        .status()
        .map_err(LabError::io("starting unshare for the lab namespaces"))?;
    if let Some(code) = status.code() {
        // 2 from the prologue (mount/ip failing) looks like a test failure; say why.
        if code != 0 && code != 101 && !namespace_works() {
            return Err(LabError::NamespaceFailed {
                command: format!("unshare ... sh -c <prologue> {}", exe.display()),
                status: status.to_string(),
            });
        }
        return Ok(code);
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(128 + status.signal().unwrap_or(0))
}

/// Whether the namespaces and prologue work at all, to tell a failing test from a lab that
/// could not be built.
fn namespace_works() -> bool {
    Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            PROLOGUE,
            "cardgate-lab-namespace",
            "true",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// Reads the effective uid from /proc/self/status (no libc call needed).
fn running_as_root() -> Result<bool, LabError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(LabError::io("reading /proc/self/status"))?;
    Ok(status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0"))
}
