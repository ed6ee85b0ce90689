//! Finding the system programs the lab needs, and installing them through the project's
//! `scripts/setup` when they are missing (a test never skips for want of a package).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::LabError;

/// The vpcd reader driver vsmartcard-vpcd installs; pcscd loads it from the lab's own
/// reader.conf.d file.
pub(crate) const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

/// Programs the lab runs, with the Debian package that ships each.
const PROGRAMS: [(&str, &str); 4] = [
    ("pcscd", "pcscd"),
    ("unshare", "util-linux"),
    ("ip", "iproute2"),
    ("mount", "mount"),
];

/// The project's setup script, found from this crate's source directory, so tests run from
/// any working directory can install what they need.
pub fn setup_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup")
}

/// Makes sure pcscd, the vpcd driver, unshare and ip are installed, running
/// [`setup_script`] once if anything is missing, and fails loudly if it still is.
pub fn ensure_lab_packages() -> Result<(), LabError> {
    if missing_packages().is_empty() {
        return Ok(());
    }
    let script = setup_script();
    eprintln!(
        "cardgate-lab: lab packages missing ({:?}); running {}",
        missing_packages(),
        script.display()
    );
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .map_err(LabError::io(format!("running {}", script.display())))?;
    if !status.success() {
        return Err(LabError::SetupFailed {
            setup_script: script,
            status: status.to_string(),
        });
    }
    let missing = missing_packages();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::MissingPackages {
            missing,
            setup_script: script,
        })
    }
}

fn missing_packages() -> Vec<String> {
    let mut missing: Vec<String> = PROGRAMS
        .iter()
        .filter(|(program, _)| find_program(program).is_none())
        .map(|(program, package)| format!("{program} (package {package})"))
        .collect();
    if !Path::new(VPCD_DRIVER).exists() {
        missing.push(format!("{VPCD_DRIVER} (package vsmartcard-vpcd)"));
    }
    missing
}

/// Looks a program up on PATH, then in the sbin directories a non-login root shell may lack.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
