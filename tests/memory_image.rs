//! Looking for secrets in another process's memory: every readable mapping read live through
//! `/proc/PID/mem` (what the process holds, whatever it asked the kernel to leave out of a
//! dump), and a core image made by `gcore` (what a crash report or a support engineer's dump
//! would hold). Used by the residue suite (tests/secret_residue.rs) on the daemon, the CLI and
//! the desktop program.
//!
//! A secret is searched for as typed and as the card receives it (padded with `FF` to the 8
//! bytes VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER carry).

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use memchr::memmem;

/// A value made at run time of `len` letters and digits (`prefix` first, for a wrong shape):
/// never a literal, because the program under test (daemon, CLI, dialog) is this very binary
/// re-executed, whose constants would be found in its memory whatever that program did.
pub fn fresh(len: usize, prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = vec![0u8; len];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .unwrap_or_else(|_| bytes.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8));
    let mut value = prefix.to_owned();
    value.extend(
        bytes
            .iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char),
    );
    value
}

/// One value that must not be found, under the name a failure reports (never the value
/// alone: a test log is a log too, though these are test values).
#[derive(Debug, Clone)]
pub struct Secret {
    /// What the value was (e.g. "the wrong passcode of step 1").
    pub label: String,
    /// The forms searched for: as typed, and padded as sent to the card.
    forms: Vec<(&'static str, Vec<u8>)>,
}

impl Secret {
    /// `value` as typed and, when shorter than 8 bytes, padded with `FF` to 8.
    pub fn new(label: impl Into<String>, value: &str) -> Secret {
        let mut forms = vec![("as typed", value.as_bytes().to_vec())];
        if value.len() < 8 {
            let mut padded = value.as_bytes().to_vec();
            padded.resize(8, 0xFF);
            forms.push(("padded for the card", padded));
        }
        Secret {
            label: label.into(),
            forms,
        }
    }
}

impl Secret {
    /// `value` only in the form a D-Bus message carries it (a string argument: its length as a
    /// little-endian `u32`, the bytes, a NUL): for a process where the value as typed is
    /// somebody else's to clear (the login program hosting the PAM module keeps what it read
    /// from its terminal), this form is the module's own.
    pub fn on_the_bus(label: impl Into<String>, value: &str) -> Secret {
        let mut framed = u32::try_from(value.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes()
            .to_vec();
        framed.extend_from_slice(value.as_bytes());
        framed.push(0);
        Secret {
            label: label.into(),
            forms: vec![("as a D-Bus string", framed)],
        }
    }
}

/// Where a secret was found.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The secret's label and the form found.
    pub what: String,
    /// The mapping (live scan) or the core file offset (image scan).
    pub place: String,
    /// The bytes around it, in hex, to tell a message buffer from a string.
    pub context: String,
    /// Found live on pages locked in memory and left out of dumps (`lo` and `dd` in
    /// `/proc/PID/smaps`): where a secret may be while it is in use.
    pub protected: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protected = if self.protected {
            " (locked, undumpable)"
        } else {
            ""
        };
        write!(
            f,
            "{} at {}{protected} [{}]",
            self.what, self.place, self.context
        )
    }
}

/// Every place in `haystack` (starting at address or offset `base`) where a form of a secret
/// occurs.
fn search(haystack: &[u8], base: u64, region: &str, secrets: &[Secret]) -> Vec<Finding> {
    let mut found = Vec::new();
    for secret in secrets {
        for (form, needle) in &secret.forms {
            for at in memmem::find_iter(haystack, needle) {
                let from = at.saturating_sub(24);
                let to = (at + needle.len() + 24).min(haystack.len());
                found.push(Finding {
                    what: format!("{} ({form})", secret.label),
                    place: format!("{region} +0x{:x}", base + at as u64),
                    context: hex::encode(&haystack[from..to]),
                    protected: false,
                });
            }
        }
    }
    found
}

/// Reads every readable mapping of `pid` through `/proc/PID/mem` (root, or the process's own
/// user with ptrace rights) and returns every secret found. Mappings the kernel refuses to
/// read (`[vvar]`, guard pages) are skipped; a process whose maps cannot be read is an error.
pub fn scan_live(pid: u32, secrets: &[Secret]) -> Result<Vec<Finding>, String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("reading /proc/{pid}/maps: {e}"))?;
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .map_err(|e| format!("opening /proc/{pid}/mem: {e}"))?;
    let protected = protected_mappings(pid)?;
    let mut found = Vec::new();
    let mut read_any = 0u64;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let name = line.split_whitespace().nth(5).unwrap_or("[anonymous]");
        if !perms.starts_with('r') || name == "[vvar]" || name == "[vsyscall]" {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        let mut region = vec![0u8; (end - start) as usize];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut region).is_err() {
            continue;
        }
        read_any += end - start;
        let is_protected = protected.contains(&start);
        found.extend(
            search(&region, start, name, secrets)
                .into_iter()
                .map(|f| Finding {
                    protected: is_protected,
                    ..f
                }),
        );
    }
    if read_any == 0 {
        return Err(format!("nothing of process {pid}'s memory could be read"));
    }
    Ok(found)
}

/// The start addresses of `pid`'s mappings that are locked and left out of dumps.
fn protected_mappings(pid: u32) -> Result<Vec<u64>, String> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .map_err(|e| format!("reading /proc/{pid}/smaps: {e}"))?;
    let mut protected = Vec::new();
    let mut start = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let flags: Vec<&str> = flags.split_whitespace().collect();
            if flags.contains(&"dd")
                && flags.contains(&"lo")
                && let Some(start) = start
            {
                protected.push(start);
            }
        } else if let Some((range, _)) = line.split_once(' ')
            && let Some((from, _)) = range.split_once('-')
            && let Ok(from) = u64::from_str_radix(from, 16)
        {
            start = Some(from);
        }
    }
    Ok(protected)
}

/// Makes a core image of `pid` with `gcore` into `dir` (the process goes on running) and
/// returns its path. `gcore` comes with gdb (scripts/setup installs it).
pub fn gcore(pid: u32, dir: &Path) -> Result<PathBuf, String> {
    let prefix = dir.join("core");
    let run = Command::new("gcore")
        .arg("-o")
        .arg(&prefix)
        .arg(pid.to_string())
        .output()
        .map_err(|e| format!("running gcore (install gdb: scripts/setup): {e}"))?;
    let path = PathBuf::from(format!("{}.{pid}", prefix.display()));
    if !run.status.success() || !path.exists() {
        return Err(format!(
            "gcore {pid} failed ({}): {}{}",
            run.status,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    Ok(path)
}

/// Every secret found in the core image at `path`. The image is removed afterwards.
pub fn scan_image(path: &Path, secrets: &[Secret]) -> Result<Vec<Finding>, String> {
    let image = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let _ = std::fs::remove_file(path);
    if image.len() < 64 * 1024 {
        return Err(format!(
            "the core image of {} is {} bytes: too small to hold a process",
            path.display(),
            image.len()
        ));
    }
    Ok(search(&image, 0, "core image", secrets))
}

/// Both scans of `pid` (live memory, then a `gcore` image in `dir`); an error lists every
/// finding, headed by `moment` (what had just happened).
pub fn assert_no_secret(
    pid: u32,
    dir: &Path,
    moment: &str,
    secrets: &[Secret],
) -> Result<(), String> {
    scan_both(pid, dir, secrets, false).map_err(|found| {
        report(
            &found,
            &format!(
                "{moment}: {} secret value(s) found in process {pid}'s memory",
                found.len()
            ),
        )
    })
}

/// While a secret is in use (a dialog open, a value typed and not yet sent): the process may
/// hold it live only on locked, undumpable pages, and its core image holds none of it.
pub fn assert_only_protected(
    pid: u32,
    dir: &Path,
    moment: &str,
    secrets: &[Secret],
) -> Result<(), String> {
    scan_both(pid, dir, secrets, true).map_err(|found| {
        report(
            &found,
            &format!(
                "{moment}: {} secret value(s) outside locked, undumpable pages in process {pid}",
                found.len()
            ),
        )
    })
}

/// The live scan (protected pages left out when `allow_protected`) and the image scan: `Err`
/// with what was found (a failed scan is one finding saying why).
fn scan_both(
    pid: u32,
    dir: &Path,
    secrets: &[Secret],
    allow_protected: bool,
) -> Result<(), Vec<Finding>> {
    let failed = |why: String| {
        vec![Finding {
            what: "the scan itself".into(),
            place: why,
            context: String::new(),
            protected: false,
        }]
    };
    let mut found: Vec<Finding> = scan_live(pid, secrets)
        .map_err(failed)?
        .into_iter()
        .filter(|f| !(allow_protected && f.protected))
        .collect();
    let image = gcore(pid, dir).map_err(failed)?;
    found.extend(scan_image(&image, secrets).map_err(failed)?);
    if found.is_empty() { Ok(()) } else { Err(found) }
}

/// `heading`, then the first 40 findings, one a line.
fn report(found: &[Finding], heading: &str) -> String {
    let list: Vec<String> = found.iter().take(40).map(ToString::to_string).collect();
    format!("{heading}:\n  {}", list.join("\n  "))
}

/// How many live copies of `secret` `pid` holds on locked, undumpable pages (to show a
/// value in use is held there, so that [`assert_only_protected`] proved something).
pub fn protected_copies(pid: u32, secret: &Secret) -> Result<usize, String> {
    Ok(scan_live(pid, std::slice::from_ref(secret))?
        .iter()
        .filter(|f| f.protected)
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_found_as_typed_and_padded_and_nothing_else_is() {
        let secrets = [Secret::new("the passcode", "k2468m")];
        let mut memory = b"....k2468m....".to_vec();
        memory.extend_from_slice(&[0x00, 0x20, 0x00, 0x80, 0x08]);
        memory.extend_from_slice(b"k2468m\xff\xff");
        let found = search(&memory, 0x1000, "heap", &secrets);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().any(|f| f.what.contains("padded")));
        assert!(search(b"k2468 m k2468", 0, "heap", &secrets).is_empty());
    }

    #[test]
    fn on_the_bus_a_secret_is_found_framed_as_a_dbus_string_only() {
        let secrets = [Secret::on_the_bus("the passcode", "k2468m")];
        let found = search(b"..\x06\x00\x00\x00k2468m\x00..", 0, "heap", &secrets);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(search(b"k2468m\n k2468m\x00", 0, "heap", &secrets).is_empty());
    }

    #[test]
    fn an_eight_character_value_has_one_form() {
        assert_eq!(Secret::new("code", "80264513").forms.len(), 1);
    }

    /// Through another process, so the needle's own copy in this one cannot be what is
    /// found: `cat` holds the line it echoed in its buffer; a value it never saw is not found.
    #[test]
    fn the_live_scan_finds_what_another_process_holds_and_only_that() {
        use std::io::{BufRead, BufReader, Write};
        let mut cat = Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cat");
        let mut input = cat.stdin.take().expect("stdin");
        input.write_all(b"zq7Xw9pL-held\n").expect("write");
        let mut echoed = String::new();
        BufReader::new(cat.stdout.take().expect("stdout"))
            .read_line(&mut echoed)
            .expect("read");
        let held = scan_live(cat.id(), &[Secret::new("held", "zq7Xw9pL-held")]);
        let absent = scan_live(cat.id(), &[Secret::new("absent", "never-SEEN-7Q")]);
        drop(input);
        let _ = cat.wait();
        assert!(
            !held.expect("scanning cat").is_empty(),
            "cat's line was not found"
        );
        assert!(
            absent.expect("scanning cat").is_empty(),
            "a value cat never saw was found"
        );
    }
}
