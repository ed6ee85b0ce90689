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

/// Which code unlocks the card in the unlock form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockCodeKind {
    /// The 6-digit one-time code sent to the holder (self-service).
    OneTime,
    /// The 8-character unlock code from the Registration Authority.
    FromRa,
}

/// Whether the unlock form can be sent: `Ok` when it can, `Err(Some(words))` naming what is
/// wrong for the holder, `Err(None)` while a field is still empty (nothing to complain
/// about yet, nothing to send either).
pub fn unlock_problem(
    kind: UnlockCodeKind,
    code: &str,
    new_passcode: &str,
    repeated: &str,
) -> Result<(), Option<&'static str>> {
    let code_problem = match kind {
        UnlockCodeKind::OneTime => (!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())))
            .then_some("The one-time code is 6 digits."),
        UnlockCodeKind::FromRa => (!(code.chars().count() == 8
            && code.chars().all(|c| c.is_ascii_alphanumeric())))
        .then_some("The unlock code is 8 letters or digits."),
    };
    if let Some(problem) = code_problem {
        return Err((!code.is_empty()).then_some(problem));
    }
    if new_passcode.is_empty() {
        return Err(None);
    }
    if let Some(problem) = passcode_problem(new_passcode) {
        return Err(Some(problem));
    }
    if repeated.is_empty() {
        return Err(None);
    }
    if repeated != new_passcode {
        return Err(Some("The two new passcodes are not the same."));
    }
    Ok(())
}

/// Whether the passcode change form can be sent, as [`unlock_problem`] answers.
pub fn change_problem(
    current: &str,
    new: &str,
    repeated: &str,
) -> Result<(), Option<&'static str>> {
    if current.is_empty() {
        return Err(None);
    }
    if passcode_problem(current).is_some() {
        return Err(Some("Your current passcode is 4 to 8 letters or digits."));
    }
    if new.is_empty() {
        return Err(None);
    }
    if let Some(problem) = passcode_problem(new) {
        return Err(Some(problem));
    }
    if new == current {
        return Err(Some("The new passcode is the same as the current one."));
    }
    if repeated.is_empty() {
        return Err(None);
    }
    if repeated != new {
        return Err(Some("The two new passcodes are not the same."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_form_checks_each_field_in_turn() {
        assert_eq!(change_problem("k2468m", "n1357p", "n1357p"), Ok(()));
        assert_eq!(change_problem("", "", ""), Err(None));
        assert_eq!(change_problem("k2468m", "n1357p", ""), Err(None));
        assert!(change_problem("k2", "n1357p", "n1357p").is_err_and(|p| p.is_some()));
        assert!(
            change_problem("k2468m", "k2468m", "k2468m")
                .is_err_and(|p| p.is_some_and(|p| p.contains("same as the current")))
        );
        assert!(
            change_problem("k2468m", "n1357p", "n1357")
                .is_err_and(|p| p.is_some_and(|p| p.contains("not the same")))
        );
    }

    #[test]
    fn the_unlock_form_checks_each_field_in_turn() {
        use UnlockCodeKind::{FromRa, OneTime};
        assert_eq!(
            unlock_problem(FromRa, "80264513", "n1357p", "n1357p"),
            Ok(())
        );
        assert_eq!(
            unlock_problem(OneTime, "123456", "n1357p", "n1357p"),
            Ok(())
        );
        // Nothing typed yet: not sendable, nothing to complain about.
        assert_eq!(unlock_problem(FromRa, "", "", ""), Err(None));
        assert_eq!(unlock_problem(FromRa, "80264513", "", ""), Err(None));
        assert_eq!(unlock_problem(FromRa, "80264513", "n1357p", ""), Err(None));
        // Each broken rule named.
        assert!(
            unlock_problem(FromRa, "8026", "n1357p", "n1357p")
                .is_err_and(|p| p.is_some_and(|p| p.contains("8 letters")))
        );
        assert!(
            unlock_problem(OneTime, "12345a", "n1357p", "n1357p")
                .is_err_and(|p| p.is_some_and(|p| p.contains("6 digits")))
        );
        assert!(
            unlock_problem(FromRa, "80264513", "n1", "n1")
                .is_err_and(|p| p.is_some_and(|p| p.contains("At least 4")))
        );
        assert!(
            unlock_problem(FromRa, "80264513", "n1357p", "n1357q")
                .is_err_and(|p| p.is_some_and(|p| p.contains("not the same")))
        );
    }

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
