//! The holder-to-account mapping file (`map=`, default `/etc/cardgate/pam-users`): which card
//! holders may log in to which local accounts.
//!
//! ```text
//! # holder UUID   local accounts (comma-separated)
//! 555000111222    asha
//! 555000333444    ben,dispensary
//! ```
//!
//! A holder not listed may log in nowhere. The file must not be writable by group or others
//! (whoever can write it chooses who logs in), and a malformed line is an error naming the
//! line: the whole file is refused rather than half read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::PamError;

/// The parsed mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    entries: Vec<(String, Vec<String>)>,
}

impl Mapping {
    /// Reads and checks the mapping file.
    pub fn load(path: &Path) -> Result<Mapping, PamError> {
        let error = |problem: String| PamError::Mapping {
            path: path.display().to_string(),
            problem,
        };
        let meta = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(error(
                "writable by group or others; chmod go-w (only root may choose who logs in)".into(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        Mapping::parse(&text).map_err(error)
    }

    /// Parses the text of a mapping file; the error names the bad line.
    pub fn parse(text: &str) -> Result<Mapping, String> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(holder), Some(users), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(format!(
                    "line {}: expected \"HOLDER-UUID user[,user...]\"",
                    number + 1
                ));
            };
            if holder.len() != 12 || !holder.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "line {}: the holder UUID must be 12 digits",
                    number + 1
                ));
            }
            let users: Vec<String> = users.split(',').map(str::to_owned).collect();
            if users.iter().any(|u| {
                u.is_empty()
                    || !u
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            }) {
                return Err(format!("line {}: a bad user name", number + 1));
            }
            entries.push((holder.to_owned(), users));
        }
        Ok(Mapping { entries })
    }

    /// Whether the holder `holder` may log in as `user`.
    pub fn allows(&self, holder: &str, user: &str) -> bool {
        self.entries
            .iter()
            .any(|(h, users)| h == holder && users.iter().any(|u| u == user))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn holders_map_to_their_accounts_only() {
        let m =
            Mapping::parse("# comment\n555000111222 asha\n\n555000333444   ben,dispensary # two\n")
                .unwrap();
        assert!(m.allows("555000111222", "asha"));
        assert!(!m.allows("555000111222", "ben"));
        assert!(m.allows("555000333444", "dispensary"));
        assert!(!m.allows("555000999999", "asha"));
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(
            Mapping::parse("5550001112 asha")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(
            Mapping::parse("\n555000111222")
                .unwrap_err()
                .contains("line 2")
        );
        assert!(Mapping::parse("555000111222 a b").is_err());
        assert!(Mapping::parse("555000111222 a,,b").is_err());
    }

    #[test]
    fn a_group_writable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map");
        std::fs::write(&path, "555000111222 asha\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(
            Mapping::load(&path)
                .unwrap_err()
                .to_string()
                .contains("writable")
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Mapping::load(&path).unwrap().allows("555000111222", "asha"));
    }
}
