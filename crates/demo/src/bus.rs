//! A private D-Bus for the demo and the e2e suites ([`PrivateBus`]), and where the demo
//! writes its address for `cardgate demo ...` and the example clients ([`bus_address_file`]).

use std::path::PathBuf;

use crate::error::DemoError;

/// A private `dbus-daemon --session`, killed on drop.
#[derive(Debug)]
pub struct PrivateBus {
    address: String,
    pid: u32,
}

impl PrivateBus {
    /// Starts one (LAB.md, "A private D-Bus").
    pub fn start() -> Result<PrivateBus, DemoError> {
        let output = std::process::Command::new("dbus-daemon")
            .args(["--session", "--print-address=1", "--print-pid=1", "--fork"])
            .output()
            .map_err(|e| {
                DemoError::Bus(format!("starting dbus-daemon (apt-get install dbus): {e}"))
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        let address = lines.next().unwrap_or_default().trim().to_owned();
        let pid = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| DemoError::Bus("dbus-daemon printed no pid".into()))?;
        if address.is_empty() {
            return Err(DemoError::Bus("dbus-daemon printed no address".into()));
        }
        Ok(PrivateBus { address, pid })
    }

    /// The bus address.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status();
    }
}

/// Where the demo writes its bus address for `cardgate demo ...` and example clients:
/// `$XDG_RUNTIME_DIR/cardgate-demo.bus`, else `/tmp/cardgate-demo-UID.bus`.
pub fn bus_address_file() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("cardgate-demo.bus"),
        _ => std::env::temp_dir().join(format!("cardgate-demo-{}.bus", effective_uid())),
    }
}

/// The process's uid, from `/proc/self/status` (the workspace forbids `unsafe`, so no libc).
fn effective_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
