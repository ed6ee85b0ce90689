//! ATR decoding for `cardgate doctor`: the ISO/IEC 7816-3 structure of a card's Answer To
//! Reset (convention, protocols, historical bytes, check byte) and its name in pcsc-tools'
//! list of known ATRs (`/usr/share/pcsc/smartcard_list.txt`, when installed). Pure: the list's
//! text is passed in, so every rule is unit-tested.

use serde::Serialize;

/// Where pcsc-tools (Debian package `pcsc-tools`) installs its list of known ATRs.
pub const SMARTCARD_LIST: &str = "/usr/share/pcsc/smartcard_list.txt";

/// What an ATR says, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AtrInfo {
    /// The ATR in upper-case hex, bytes separated by spaces (the form pcsc-tools uses).
    pub hex: String,
    /// `direct` (TS = 3B) or `inverse` (TS = 3F).
    pub convention: String,
    /// The transmission protocols offered (`T=0`, `T=1`, ...), T=0 when none is named.
    pub protocols: Vec<String>,
    /// The historical bytes, hex.
    pub historical_bytes: String,
    /// The historical bytes as text, when they are all printable ASCII.
    pub historical_text: Option<String>,
    /// Whether the check byte TCK is right; `None` when the ATR has none (T=0 only).
    pub check_byte_ok: Option<bool>,
    /// What is wrong with the ATR's structure; empty when it is well formed.
    pub problems: Vec<String>,
    /// The card's names in pcsc-tools' list of known ATRs; empty when unknown or the list is
    /// not installed.
    pub known_as: Vec<String>,
}

/// Upper-case hex with spaces, as pcsc-tools writes ATRs.
pub fn spaced_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes `atr` (ISO/IEC 7816-3 §8.2) and looks it up in `known_list` (the text of
/// `smartcard_list.txt`, if available). Never fails: a malformed ATR is described in
/// [`AtrInfo::problems`].
pub fn decode(atr: &[u8], known_list: Option<&str>) -> AtrInfo {
    let mut problems = Vec::new();
    let convention = match atr.first() {
        Some(0x3B) => "direct".to_owned(),
        Some(0x3F) => "inverse".to_owned(),
        Some(other) => {
            problems.push(format!("TS is {other:02X}, neither 3B nor 3F"));
            "unknown".to_owned()
        }
        None => {
            problems.push("the ATR is empty".to_owned());
            "unknown".to_owned()
        }
    };
    let mut protocols: Vec<u8> = Vec::new();
    let mut historical = Vec::new();
    let mut check_byte_ok = None;
    if let Some(&t0) = atr.get(1) {
        let historical_count = usize::from(t0 & 0x0F);
        let mut y = t0 >> 4;
        let mut i = 2;
        let mut truncated = false;
        loop {
            // TA, TB, TC are present per bits 5, 6, 7 of Y; TD per bit 8.
            for bit in 0..3 {
                if y & (1 << bit) != 0 {
                    i += 1;
                }
            }
            if y & 0x08 == 0 {
                break;
            }
            let Some(&td) = atr.get(i) else {
                truncated = true;
                break;
            };
            i += 1;
            let protocol = td & 0x0F;
            if !protocols.contains(&protocol) {
                protocols.push(protocol);
            }
            y = td >> 4;
        }
        if i > atr.len() {
            truncated = true;
        }
        if truncated {
            problems.push("the interface bytes run past the end of the ATR".to_owned());
        } else {
            let end = i + historical_count;
            match atr.get(i..end) {
                Some(h) => historical = h.to_vec(),
                None => problems.push(format!(
                    "T0 announces {historical_count} historical bytes but only {} follow",
                    atr.len() - i
                )),
            }
            let needs_tck = protocols.iter().any(|&p| p != 0);
            let expected_len = end + usize::from(needs_tck);
            if needs_tck {
                if atr.len() >= expected_len {
                    // XOR of every byte from T0 to TCK inclusive is zero.
                    let xor = atr[1..expected_len].iter().fold(0u8, |a, b| a ^ b);
                    check_byte_ok = Some(xor == 0);
                    if xor != 0 {
                        problems.push("the check byte TCK is wrong".to_owned());
                    }
                } else {
                    problems.push("the check byte TCK is missing".to_owned());
                }
            }
            if atr.len() > expected_len && problems.is_empty() {
                problems.push(format!(
                    "{} byte(s) after the end of the ATR",
                    atr.len() - expected_len
                ));
            }
        }
    } else if !atr.is_empty() {
        problems.push("the ATR has no T0 byte".to_owned());
    }
    if protocols.is_empty() {
        protocols.push(0);
    }
    let historical_text = (!historical.is_empty()
        && historical
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' '))
    .then(|| String::from_utf8_lossy(&historical).into_owned());
    let hex = spaced_hex(atr);
    let known_as = known_list
        .map(|list| known_names(&hex, list))
        .unwrap_or_default();
    AtrInfo {
        hex,
        convention,
        protocols: protocols.iter().map(|p| format!("T={p}")).collect(),
        historical_bytes: spaced_hex(&historical),
        historical_text,
        check_byte_ok,
        problems,
        known_as,
    }
}

/// The descriptions of every entry of a `smartcard_list.txt` whose pattern matches `atr_hex`
/// (spaced upper-case hex). Entries are a pattern line followed by tab-indented description
/// lines; patterns use `.` for any hex digit and `[..]` for a set of digits (`0[1-5]`).
pub fn known_names(atr_hex: &str, list: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut matching = false;
    for line in list.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with('\t') || line.starts_with(' ') {
            if matching {
                let text = line.trim();
                if !text.is_empty() {
                    names.push(text.to_owned());
                }
            }
            continue;
        }
        let pattern = line.trim();
        matching = !pattern.is_empty() && pattern_matches(pattern, atr_hex);
    }
    names
}

/// Whether `pattern` (pcsc-tools' ATR regular expression subset) matches all of `text`.
fn pattern_matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.to_ascii_uppercase();
    let mut p = pattern.chars().peekable();
    let mut t = text.chars();
    while let Some(pc) = p.next() {
        let Some(tc) = t.next() else {
            return false;
        };
        match pc {
            '.' => {
                if tc == ' ' {
                    return false;
                }
            }
            '[' => {
                let mut set = Vec::new();
                let mut closed = false;
                for c in p.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    set.push(c);
                }
                if !closed || !set_contains(&set, tc) {
                    return false;
                }
            }
            other => {
                if other != tc {
                    return false;
                }
            }
        }
    }
    t.next().is_none()
}

/// Whether a bracket set (`1-5`, `45`, `1,3`) contains `c`.
fn set_contains(set: &[char], c: char) -> bool {
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            if (set[i]..=set[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ATR every virtual card of the lab reports (crates/vcard).
    const VCARD: [u8; 18] = [
        0x3B, 0xF8, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, b'c', b'a', b'r', b'd', b'g', b'a',
        b't', b'e', 0xB3,
    ];
    /// A YubiKey 4, as listed by pcsc-tools.
    const YUBIKEY4: [u8; 18] = [
        0x3B, 0xF8, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x59, 0x75, 0x62, 0x69, 0x6B, 0x65,
        0x79, 0x34, 0xD4,
    ];
    const LIST: &str = "# comment\n\
        3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4\n\
        \tYubico Yubikey 4 OTP+CCID\n\
        \n\
        3B F8 13 00 00 81 31 FE .. .. .. .. .. .. .. .. .. ..\n\
        \tSome T=1 card with eight historical bytes\n\
        \tsecond line\n\
        \n\
        3B 65 00 00 9C 1[01] 01 01 03\n\
        \tA card with a set\n\
        \n\
        3B 6F 00 00 80 5A .. 0[1-5] .. .. .. .. .. .. .. .. 82 90 00\n\
        \tA card with a range\n";

    #[test]
    fn the_virtual_cards_atr_decodes_as_t1_with_text_and_a_good_check_byte() {
        let info = decode(&VCARD, None);
        assert_eq!(info.convention, "direct");
        assert_eq!(info.protocols, vec!["T=1"]);
        assert_eq!(info.historical_text.as_deref(), Some("cardgate"));
        assert_eq!(info.check_byte_ok, Some(true));
        assert!(info.problems.is_empty(), "{:?}", info.problems);
        assert_eq!(
            info.hex,
            "3B F8 13 00 00 81 31 FE 15 63 61 72 64 67 61 74 65 B3"
        );
    }

    #[test]
    fn a_bad_check_byte_and_a_truncated_atr_are_named() {
        let mut bad = VCARD;
        bad[17] ^= 0x01;
        let info = decode(&bad, None);
        assert_eq!(info.check_byte_ok, Some(false));
        assert!(info.problems.iter().any(|p| p.contains("TCK")));
        let info = decode(&VCARD[..12], None);
        assert!(
            info.problems.iter().any(|p| p.contains("historical")),
            "{:?}",
            info.problems
        );
        let info = decode(&[0x12, 0x00], None);
        assert!(info.problems.iter().any(|p| p.contains("TS")));
        assert!(!decode(&[], None).problems.is_empty());
    }

    #[test]
    fn t0_only_atrs_have_no_check_byte() {
        // 3B 65 00 00 9C 11 01 01 03: T=0 implicit, five historical bytes, no TCK.
        let atr = [0x3B, 0x65, 0x00, 0x00, 0x9C, 0x11, 0x01, 0x01, 0x03];
        let info = decode(&atr, Some(LIST));
        assert_eq!(info.protocols, vec!["T=0"]);
        assert_eq!(info.check_byte_ok, None);
        assert!(info.problems.is_empty(), "{:?}", info.problems);
        assert_eq!(info.known_as, vec!["A card with a set"]);
    }

    #[test]
    fn known_atrs_are_named_from_the_list_with_wildcards_sets_and_ranges() {
        let info = decode(&YUBIKEY4, Some(LIST));
        assert_eq!(
            info.known_as,
            vec![
                "Yubico Yubikey 4 OTP+CCID",
                "Some T=1 card with eight historical bytes",
                "second line"
            ]
        );
        let info = decode(&VCARD, Some(LIST));
        assert_eq!(
            info.known_as,
            vec!["Some T=1 card with eight historical bytes", "second line"]
        );
        assert!(known_names("3B 65 00 00 9C 12 01 01 03", LIST).is_empty());
        assert_eq!(
            known_names(
                "3B 6F 00 00 80 5A 11 03 00 00 00 00 00 00 00 00 82 90 00",
                LIST
            ),
            vec!["A card with a range"]
        );
        assert!(
            known_names(
                "3B 6F 00 00 80 5A 11 07 00 00 00 00 00 00 00 00 82 90 00",
                LIST
            )
            .is_empty()
        );
        // A prefix is not a match.
        assert!(known_names("3B F8 13 00", LIST).is_empty());
    }

    #[test]
    fn the_installed_list_parses_and_knows_the_yubikey_4() {
        // pcsc-tools is one of the lab's packages (scripts/setup), so the list is there.
        let list = std::fs::read_to_string(SMARTCARD_LIST)
            .unwrap_or_else(|e| panic!("{SMARTCARD_LIST}: {e} (apt-get install pcsc-tools)"));
        let info = decode(&YUBIKEY4, Some(&list));
        assert!(
            info.known_as.iter().any(|n| n.contains("Yubikey 4")),
            "{:?}",
            info.known_as
        );
        assert!(decode(&VCARD, Some(&list)).known_as.is_empty());
    }
}
