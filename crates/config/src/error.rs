//! The crate's one error type, [`ConfigError`]: why a configuration cannot be used, naming
//! the file and the key, in the words `cardgated --check-config` prints.

use std::path::{Path, PathBuf};

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable).
    #[error("reading the configuration {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or a key that is unknown, missing or of the wrong type: the parser's
    /// message names the key (and the line).
    #[error("configuration: {}{message}", in_file(file.as_deref()))]
    Syntax {
        /// The file, when one was read.
        file: Option<PathBuf>,
        /// The parser's message.
        message: String,
    },
    /// A value of the right type that breaks a rule serde cannot express.
    #[error("configuration: {}{key}: {rule}", in_file(file.as_deref()))]
    Value {
        /// The file, when one was read.
        file: Option<PathBuf>,
        /// The key, dotted (`session.mobility_grace`).
        key: &'static str,
        /// The rule it breaks, saying what to write instead.
        rule: String,
    },
}

impl ConfigError {
    /// What is wrong, without the file or the `configuration:` prefix: the parser's message,
    /// `key: rule`, or the operating system's error for a file that cannot be read.
    pub fn problem(&self) -> String {
        match self {
            ConfigError::Read { source, .. } => source.to_string(),
            ConfigError::Syntax { message, .. } => message.clone(),
            ConfigError::Value { key, rule, .. } => format!("{key}: {rule}"),
        }
    }

    /// The same error, naming `path` as the file it is in.
    pub(crate) fn in_file(self, path: &Path) -> ConfigError {
        match self {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                file: Some(path.to_owned()),
                message,
            },
            ConfigError::Value { key, rule, .. } => ConfigError::Value {
                file: Some(path.to_owned()),
                key,
                rule,
            },
            other => other,
        }
    }

    /// A value error for `key` (not yet placed in a file).
    pub(crate) fn value(key: &'static str, rule: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            file: None,
            key,
            rule: rule.into(),
        }
    }

    /// A parser error (not yet placed in a file).
    pub(crate) fn syntax(error: &toml::de::Error) -> ConfigError {
        ConfigError::Syntax {
            file: None,
            message: error.to_string().trim_end().to_owned(),
        }
    }
}

/// `PATH: ` when the error is in a file, nothing otherwise.
fn in_file(file: Option<&Path>) -> String {
    file.map(|f| format!("{}: ", f.display()))
        .unwrap_or_default()
}
