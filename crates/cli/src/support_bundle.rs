//! `cardgate support-bundle`: one JSON file with what a service desk asks for about a
//! smartcard fault: the card UUID, the time and date of the fault, the steps taken (the
//! recent audit entries), the error messages, the reader and card details (`doctor`'s full
//! report), and the versions of cardgate, pcscd and the system.
//!
//! Never in it: a passcode, an unlock code, key material or a session ticket. The sources
//! hold none (the audit trail has no field for one; doctor reads public card data only; the
//! ticket is never asked for), and the finished document is still passed through
//! [`redact`], which blanks any field whose name says it could hold a secret, before a byte is
//! written.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::doctor::{self, Verdict};
use crate::error::CliError;

/// The bundle's format name and version, first key of the file.
pub const FORMAT: &str = "cardgate-support-bundle/1";
/// What replaces a redacted value.
pub const REDACTED: &str = "<redacted>";

/// Field names (or their last `_`/`-` separated word) that could hold a secret.
const SECRET_WORDS: &[&str] = &[
    "passcode",
    "pin",
    "puk",
    "password",
    "token",
    "ticket",
    "secret",
    "key",
    "cookie",
    "authorization",
];
/// Field names ending in a secret word that hold none (counts and flags about secrets).
const NOT_SECRET: &[&str] = &["pin_pad"];

/// Whether a field called `name` could hold a secret.
fn is_secret_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if NOT_SECRET.contains(&lower.as_str()) {
        return false;
    }
    if lower == "unlock_code" || lower.ends_with("_unlock_code") {
        return true;
    }
    let last = lower.rsplit(['_', '-']).next().unwrap_or(&lower);
    SECRET_WORDS.contains(&last)
}

/// Blanks every value (of any type) under a field whose name could hold a secret, at any
/// depth. The last line of defence: the bundle's sources hold no secrets to begin with.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_field(k) && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The first line a program prints for `--version`, or why not.
fn program_version(program: &str, args: &[&str]) -> String {
    match std::process::Command::new(program).args(args).output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("(no output)")
                .trim()
                .to_owned()
        }
        Err(e) => format!("not available ({e})"),
    }
}

fn os_release() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The recent audit entries (oldest first) and the chain check, or the problem reading them.
fn audit_section(path: &Path, events: usize) -> (Value, Vec<String>) {
    let mut problems = Vec::new();
    let steps = match cardgate_audit::tail(path, events) {
        Ok(items) => items
            .into_iter()
            .filter_map(|item| match item {
                cardgate_audit::TailItem::Entry(e) => Some(json!({
                    "seq": e.seq,
                    "at": e.at.format(&Rfc3339).unwrap_or_default(),
                    "kind": e.event.kind(),
                    "event": serde_json::to_value(&e.event).unwrap_or_default(),
                })),
                cardgate_audit::TailItem::Unreadable { text, problem } => {
                    problems.push(format!("audit trail: unreadable line ({problem})"));
                    Some(json!({"unreadable": text, "problem": problem}))
                }
                _ => None,
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            problems.push(format!(
                "audit trail {} not included: {e} (run as root or the agent's account)",
                path.display()
            ));
            Vec::new()
        }
    };
    let verify = match cardgate_audit::verify(path) {
        Ok(report) => {
            if let Some(b) = &report.first_break {
                let place = b
                    .file
                    .as_deref()
                    .filter(|f| *f != path)
                    .map(|f| format!(" in segment {}", f.display()))
                    .unwrap_or_default();
                problems.push(format!("audit trail DAMAGED{place} at {b}"));
            }
            let mut v = serde_json::to_value(&report).unwrap_or_default();
            if let Some(map) = v.as_object_mut() {
                map.insert("intact".into(), json!(report.is_intact()));
            }
            v
        }
        Err(e) => json!({"error": e.to_string()}),
    };
    (
        json!({"file": path.display().to_string(), "steps_taken": steps, "verify": verify}),
        problems,
    )
}

/// Builds the bundle's document (already redacted).
pub(crate) async fn build(
    config: &Path,
    bus: &str,
    fault_time: Option<String>,
    events: usize,
    audit_file: Option<PathBuf>,
) -> Value {
    let created_at = doctor::now_rfc3339();
    let report = doctor::diagnose(config, bus).await;
    let audit_path = audit_file.unwrap_or_else(|| {
        cardgate_config::Sections::from_file(config)
            .ok()
            .and_then(|s| s.paths)
            .map(|p| p.audit)
            .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_AUDIT_PATH))
    });
    let (audit, audit_problems) = audit_section(&audit_path, events);

    // The card UUID: the agent's view first (what the holder was using), else the card read.
    let card_uuid = report
        .daemon_status
        .as_ref()
        .map(|s| s.holder_uuid.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| report.card.as_ref().and_then(|c| c.holder_uuid.clone()));
    let mut errors: Vec<String> = report
        .checks
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Fail | Verdict::Warn))
        .map(|c| {
            let verdict = if c.verdict == Verdict::Fail {
                "FAIL"
            } else {
                "WARN"
            };
            match &c.next_step {
                Some(next) => format!("{verdict} {}: {} Next step: {next}", c.check, c.summary),
                None => format!("{verdict} {}: {}", c.check, c.summary),
            }
        })
        .collect();
    if let Some(status) = &report.daemon_status {
        errors.extend(
            status
                .warnings
                .iter()
                .map(|w| format!("agent warning: {w}")),
        );
    }
    errors.extend(audit_problems);

    let mut doc = json!({
        "format": FORMAT,
        "created_at": created_at,
        "fault_time": fault_time.unwrap_or_else(|| created_at.clone()),
        "card_uuid": card_uuid,
        "host": read_trimmed("/proc/sys/kernel/hostname"),
        "error_messages": errors,
        "steps_taken": audit["steps_taken"].clone(),
        "audit": {"file": audit["file"].clone(), "verify": audit["verify"].clone()},
        "readers": serde_json::to_value(&report.readers).unwrap_or_default(),
        "card": serde_json::to_value(&report.card).unwrap_or_default(),
        "agent_status": serde_json::to_value(&report.daemon_status).unwrap_or_default(),
        "doctor": serde_json::to_value(&report).unwrap_or_default(),
        "versions": {
            "cardgate": env!("CARGO_PKG_VERSION"),
            "pcscd": program_version("pcscd", &["--version"]),
            "os": os_release(),
            "kernel": read_trimmed("/proc/sys/kernel/osrelease"),
        },
    });
    redact(&mut doc);
    doc
}

/// The default file name: `cardgate-support-<UTC time>.json` in the current directory.
fn default_output() -> PathBuf {
    let now = OffsetDateTime::now_utc();
    PathBuf::from(format!(
        "cardgate-support-{:04}{:02}{:02}T{:02}{:02}{:02}Z.json",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    ))
}

/// `cardgate support-bundle`: writes the file (mode 0600: it names the holder) and says where.
pub(crate) async fn run(
    config: &Path,
    bus: &str,
    json_out: bool,
    output: Option<PathBuf>,
    fault_time: Option<String>,
    events: usize,
    audit_file: Option<PathBuf>,
) -> Result<u8, (u8, CliError)> {
    let doc = build(config, bus, fault_time, events, audit_file).await;
    let path = output.unwrap_or_else(default_output);
    let text = serde_json::to_string_pretty(&doc).map_err(|e| {
        (
            2,
            CliError::Usage(format!("the bundle could not be encoded: {e}")),
        )
    })?;
    write_private(&path, text.as_bytes()).map_err(|source| {
        (
            2,
            CliError::Io {
                what: format!("writing the support bundle to {}", path.display()),
                source,
            },
        )
    })?;
    let failures = doc["error_messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|m| m.as_str().is_some_and(|s| s.starts_with("FAIL")))
                .count()
        })
        .unwrap_or(0);
    if json_out {
        println!(
            "{}",
            json!({"ok": true, "file": path.display().to_string(), "bytes": text.len(),
                "card_uuid": doc["card_uuid"], "fault_time": doc["fault_time"],
                "failures": failures})
        );
    } else {
        println!(
            "Support bundle written to {} ({} bytes).",
            path.display(),
            text.len()
        );
        println!(
            "Card UUID: {}",
            doc["card_uuid"]
                .as_str()
                .unwrap_or("not known (no card read)")
        );
        println!(
            "Fault time: {}",
            doc["fault_time"].as_str().unwrap_or_default()
        );
        println!(
            "Problems found: {failures} (see \"error_messages\" in the file; `cardgate doctor` shows them with next steps)."
        );
        println!(
            "Attach the file to the service desk ticket. It holds no passcode, key or ticket."
        );
    }
    Ok(0)
}

/// Writes `bytes` to `path`, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fields_that_could_hold_secrets_are_blanked_at_any_depth() {
        let mut doc = json!({
            "card_uuid": "555000111222",
            "passcode": "k2468m",
            "nested": {"new_passcode": "abcd1234", "pin": 1234, "puk": "12345678",
                       "unlock_code": "u1", "ods_code": "FA123"},
            "list": [{"token": "tok-SECRET", "access_token": "a"}, {"ticket": {"token": "t"}}],
            "private_key": "-----BEGIN PRIVATE KEY-----",
            "management_key": [1, 2, 3],
            "Authorization": "Bearer x",
            "pin_pad": "usable",
            "passcode_tries_left": 3,
            "key_usage": "digitalSignature",
            "absent_token": null,
        });
        redact(&mut doc);
        let text = doc.to_string();
        for secret in [
            "k2468m",
            "abcd1234",
            "12345678",
            "u1\"",
            "tok-SECRET",
            "BEGIN PRIVATE KEY",
            "Bearer",
            "[1,2,3]",
        ] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert_eq!(doc["passcode"], REDACTED);
        assert_eq!(doc["nested"]["pin"], REDACTED);
        assert_eq!(doc["list"][1]["ticket"], REDACTED);
        // What support needs stays.
        assert_eq!(doc["card_uuid"], "555000111222");
        assert_eq!(doc["nested"]["ods_code"], "FA123");
        assert_eq!(doc["pin_pad"], "usable");
        assert_eq!(doc["passcode_tries_left"], 3);
        assert_eq!(doc["key_usage"], "digitalSignature");
        assert!(doc["absent_token"].is_null());
    }

    #[test]
    fn the_bundle_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        write_private(&path, b"{}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_default_name_carries_the_time() {
        let name = default_output().display().to_string();
        assert!(
            name.starts_with("cardgate-support-") && name.ends_with("Z.json"),
            "{name}"
        );
    }
}
