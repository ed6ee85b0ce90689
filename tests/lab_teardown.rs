//! Checks from outside the lab that its pcscd dies with the test binary: when a lab test
//! panics, and when the binary is killed outright. This binary stays outside the namespace
//! and runs itself again as the "victim" (with [`VICTIM_ENV`] set), which enters a lab,
//! starts pcscd, reports the lab's configuration directory, and then panics or waits to be
//! killed.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use cardgate_lab::Lab;
use libtest_mimic::{Arguments, Failed, Trial};

/// Set to "panic" or "wait-for-kill" in the victim's environment.
const VICTIM_ENV: &str = "CARDGATE_TEARDOWN_VICTIM";

fn main() -> ExitCode {
    if let Some(mode) = std::env::var_os(VICTIM_ENV) {
        run_victim(&mode.to_string_lossy());
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("pcscd_dies_when_a_lab_test_panics", || {
            let (mut victim, config_dir) = start_victim("panic")?;
            // Tell the victim to panic now that we saw its pcscd running.
            victim
                .stdin
                .take()
                .ok_or("victim has no stdin")?
                .write_all(b"go\n")
                .map_err(|e| format!("signalling the victim: {e}"))?;
            let status = victim
                .wait()
                .map_err(|e| format!("waiting for the victim: {e}"))?;
            if status.success() {
                return Err("the victim was meant to fail (panic) but exited 0".into());
            }
            expect_no_pcscd(&config_dir)
        }),
        Trial::test("pcscd_dies_when_the_test_binary_is_killed", || {
            let (mut victim, config_dir) = start_victim("wait-for-kill")?;
            // SIGKILL: no destructor, no panic handler runs in the outer process.
            victim
                .kill()
                .map_err(|e| format!("killing the victim: {e}"))?;
            let _ = victim.wait();
            expect_no_pcscd(&config_dir)
        }),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

/// Starts this binary as a victim and returns it once its pcscd runs, with the lab's
/// configuration directory (which appears on pcscd's command line).
fn start_victim(mode: &str) -> Result<(Child, String), Failed> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let mut victim = Command::new(exe)
        .env(VICTIM_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // The victim's panic message would read like a failure of this suite.
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the victim: {e}"))?;
    let stdout = victim.stdout.take().ok_or("victim has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading the victim's report: {e}"))?;
    let Some(config_dir) = line.trim().strip_prefix("lab-config-dir ") else {
        let _ = victim.kill();
        return Err(format!("the victim did not start a lab; it said {line:?}").into());
    };
    let config_dir = config_dir.to_string();
    if pcscd_processes(&config_dir)?.is_empty() {
        let _ = victim.kill();
        return Err(format!("no pcscd with {config_dir} seen while the victim runs").into());
    }
    Ok((victim, config_dir))
}

/// Fails unless every pcscd started with `config_dir` is gone within a few seconds.
fn expect_no_pcscd(config_dir: &str) -> Result<(), Failed> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = pcscd_processes(config_dir)?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(
                format!("pcscd still running after the test binary ended: {left:?}").into(),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Command lines of running processes that mention `config_dir` (read from /proc, so no
/// pgrep is needed and zombies, which have no command line, do not count).
fn pcscd_processes(config_dir: &str) -> Result<Vec<String>, Failed> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("reading /proc: {e}"))?;
    for entry in entries.flatten() {
        let cmdline = Path::new("/proc").join(entry.file_name()).join("cmdline");
        let Ok(bytes) = std::fs::read(cmdline) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
        if text.contains("pcscd") && text.contains(config_dir) {
            found.push(format!(
                "pid {}: {text}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    Ok(found)
}

/// The victim: enters a lab, starts pcscd, reports, then panics or waits to be killed.
fn run_victim(mode: &str) -> ! {
    cardgate_lab::enter_lab_namespace();
    let lab = match Lab::start() {
        Ok(lab) => lab,
        Err(e) => {
            println!("lab failed: {e}");
            std::process::exit(3);
        }
    };
    println!("lab-config-dir {}", lab.config_dir().display());
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    if mode == "panic" {
        // Leak the lab so its Drop cannot be what stops pcscd: the namespace must.
        std::mem::forget(lab);
        panic!("the victim panics with pcscd running, as a failing lab test would");
    }
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
