//! The passcode's shape as the holder types it: what the dialog checks on every keystroke, so
//! nothing is sent to the agent (and no card try can be spent) until it is right.

/// Why the typed passcode cannot be sent yet, in words for the holder; `None` when it can.
pub fn passcode_problem(typed: &str) -> Option<&'static str> {
    let len = typed.chars().count();
    if !typed.chars().all(|c| c.is_ascii_alphanumeric()) {
        Some("Only letters and digits.")
    } else if len < 4 {
        Some("At least 4 letters or digits.")
    } else if len > 8 {
        Some("At most 8 letters or digits.")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_to_eight_letters_or_digits() {
        for ok in ["1234", "abcd1234", "A1b2C"] {
            assert_eq!(passcode_problem(ok), None, "{ok}");
        }
        for bad in ["", "123", "123456789", "12 34", "12-34", "pässe12"] {
            assert!(passcode_problem(bad).is_some(), "{bad}");
        }
    }
}
