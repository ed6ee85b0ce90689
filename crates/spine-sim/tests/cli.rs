//! The `spine-sim` binary: `init` writes a service identity, a configuration with an
//! unknown key is refused with the key named, and `--config` serves (curl fetches the CRL)
//! until SIGTERM.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_spine-sim");

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let config = dir.join("spine-sim.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nlisten_mtls = \"127.0.0.1:0\"\n\
             service_dir = \"service\"\ncard_ca_dir = \"card-ca\"\noutbox = \"outbox.jsonl\"\n{extra}\n\
             [[users]]\nuid = \"555000111222\"\nname = \"Asha Patel\"\n"
        ),
    )
    .unwrap();
    config
}

#[test]
fn init_then_serve_then_stop() {
    let dir = tempfile::tempdir().unwrap();
    cardgate_vcard::provision::TestCa::generate("CLI Card CA")
        .unwrap()
        .save(&dir.path().join("card-ca"))
        .unwrap();
    let init = Command::new(BIN)
        .args(["init", "--dir"])
        .arg(dir.path().join("service"))
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for file in ["service-ca.crt.pem", "server.crt.pem", "server.key.pem"] {
        assert!(dir.path().join("service").join(file).exists(), "{file}");
    }
    // A second init refuses to replace what agents may pin.
    let again = Command::new(BIN)
        .args(["init", "--dir"])
        .arg(dir.path().join("service"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // Unknown keys are refused, named.
    let bad = write_config(dir.path(), "max_idle = 5");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_idle"), "{stderr}");

    let config = write_config(dir.path(), "max_idle_time = 300");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let api = lines.next().unwrap().unwrap();
    let mtls = lines.next().unwrap().unwrap();
    let url = api.strip_prefix("listen ").unwrap().to_owned();
    assert!(mtls.starts_with("listen_mtls https://127.0.0.1:"), "{mtls}");
    let curl = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(dir.path().join("service/service-ca.crt.pem"))
        .arg(format!("{url}/v1/crl"))
        .output()
        .expect("curl must be installed (scripts/setup installs it)");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "200");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
