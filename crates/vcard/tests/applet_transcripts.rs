//! Replays the APDU transcripts in `tests/transcripts/*.apdu` against a fresh, powered-on
//! [`PivApplet`] over the standard test card (see `applet_support`).
//!
//! Transcript format, one item per line:
//!
//! - `# …` and blank lines: comments.
//! - `> <hex>`: a command APDU (spaces allowed anywhere between hex digits).
//! - `< <pattern>`: the response the command before it must get, data and status word.
//!   A pattern is hex bytes plus wildcards: `..` matches any one byte, `..{N}` any N bytes,
//!   `*` any run of bytes (possibly empty), for what differs between runs (signatures,
//!   their lengths).
//! - `! power-off`, `! power-on`, `! reset`: what the reader does to the card.
//!
//! Every `>` is followed by exactly one `<`.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod applet_support;

use std::path::{Path, PathBuf};

use applet_support::{powered_applet, send_bytes};
use cardgate_vcard::Card;

/// One element of a response pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pattern {
    Byte(u8),
    AnyByte,
    AnyRun,
}

fn parse_pattern(text: &str) -> Result<Vec<Pattern>, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    let mut rest = compact.as_str();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('*') {
            out.push(Pattern::AnyRun);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("..") {
            if let Some(counted) = after.strip_prefix('{') {
                let end = counted
                    .find('}')
                    .ok_or_else(|| format!("unclosed {{ in {text:?}"))?;
                let n: usize = counted[..end]
                    .parse()
                    .map_err(|e| format!("bad count in {text:?}: {e}"))?;
                out.extend(std::iter::repeat_n(Pattern::AnyByte, n));
                rest = &counted[end + 1..];
            } else {
                out.push(Pattern::AnyByte);
                rest = after;
            }
        } else {
            let pair = rest
                .get(..2)
                .ok_or_else(|| format!("odd hex digit count in {text:?}"))?;
            let byte =
                u8::from_str_radix(pair, 16).map_err(|e| format!("bad hex {pair:?}: {e}"))?;
            out.push(Pattern::Byte(byte));
            rest = &rest[2..];
        }
    }
    Ok(out)
}

fn matches(pattern: &[Pattern], bytes: &[u8]) -> bool {
    match pattern.split_first() {
        None => bytes.is_empty(),
        Some((Pattern::AnyRun, tail)) => {
            (0..=bytes.len()).any(|skip| matches(tail, &bytes[skip..]))
        }
        Some((Pattern::AnyByte, tail)) => !bytes.is_empty() && matches(tail, &bytes[1..]),
        Some((Pattern::Byte(b), tail)) => bytes.first() == Some(b) && matches(tail, &bytes[1..]),
    }
}

/// Replays one transcript; returns how many exchanges it checked.
fn replay(path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut card, _keys) = powered_applet();
    let mut pending: Option<(usize, Vec<u8>)> = None;
    let mut exchanges = 0;
    for (index, raw_line) in text.lines().enumerate() {
        let line_no = index + 1;
        let at = || format!("{}:{line_no}", path.display());
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(command) = line.strip_prefix('>') {
            if let Some((previous, _)) = pending {
                return Err(format!("{}: command at line {previous} has no `<`", at()));
            }
            let compact: String = command.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = hex::decode(&compact).map_err(|e| format!("{}: {e}", at()))?;
            pending = Some((line_no, bytes));
        } else if let Some(expected) = line.strip_prefix('<') {
            let Some((_, command)) = pending.take() else {
                return Err(format!("{}: `<` without a command", at()));
            };
            let pattern = parse_pattern(expected).map_err(|e| format!("{}: {e}", at()))?;
            let (data, sw) = send_bytes(&mut card, &command);
            let mut response = data;
            response.extend(sw.to_be_bytes());
            if !matches(&pattern, &response) {
                return Err(format!(
                    "{}: command {}\n  expected {}\n  got      {}",
                    at(),
                    hex::encode_upper(&command),
                    expected.trim(),
                    hex::encode_upper(&response)
                ));
            }
            exchanges += 1;
        } else if let Some(action) = line.strip_prefix('!') {
            match action.trim() {
                "power-off" => card.power_off(),
                "power-on" => card.power_on(),
                "reset" => card.reset(),
                other => return Err(format!("{}: unknown reader action {other:?}", at())),
            }
        } else {
            return Err(format!("{}: unknown line {line:?}", at()));
        }
    }
    if let Some((line, _)) = pending {
        return Err(format!("{}:{line}: command has no `<`", path.display()));
    }
    Ok(exchanges)
}

fn transcript_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts")
}

/// The transcripts this file replays; a new fixture must be listed here to run.
const TRANSCRIPTS: [&str; 5] = [
    "select.apdu",
    "get_data.apdu",
    "pin_lifecycle.apdu",
    "signing.apdu",
    "malformed.apdu",
];

fn run(name: &str) {
    match replay(&transcript_dir().join(name)) {
        Ok(exchanges) => assert!(exchanges >= 5, "{name} checks only {exchanges} exchanges"),
        Err(message) => panic!("{message}"),
    }
}

#[test]
fn select_transcript() {
    run("select.apdu");
}

#[test]
fn get_data_transcript() {
    run("get_data.apdu");
}

#[test]
fn pin_lifecycle_transcript() {
    run("pin_lifecycle.apdu");
}

#[test]
fn signing_transcript() {
    run("signing.apdu");
}

#[test]
fn malformed_transcript() {
    run("malformed.apdu");
}

#[test]
fn every_transcript_in_the_folder_is_replayed() {
    let mut found: Vec<String> = std::fs::read_dir(transcript_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".apdu"))
        .collect();
    found.sort();
    let mut listed: Vec<String> = TRANSCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

#[test]
fn the_pattern_matcher_is_strict_where_it_must_be() {
    let p = parse_pattern("7C .. 82 * 9000").unwrap();
    assert!(matches(&p, &[0x7C, 0x05, 0x82, 0x01, 0x02, 0x90, 0x00]));
    assert!(matches(&p, &[0x7C, 0x05, 0x82, 0x90, 0x00]));
    assert!(!matches(&p, &[0x7C, 0x82, 0x90, 0x00]));
    assert!(!matches(&p, &[0x7C, 0x05, 0x82, 0x01, 0x69, 0x82]));
    let counted = parse_pattern("01 ..{3} 9000").unwrap();
    assert!(matches(&counted, &[1, 7, 7, 7, 0x90, 0]));
    assert!(!matches(&counted, &[1, 7, 7, 0x90, 0]));
    assert!(parse_pattern("0").is_err());
    assert!(parse_pattern("..{x}").is_err());
}
