//! What doctor found, as data: one type per check area (the configuration, PC/SC with its
//! readers and card, the certificate, the endpoint with the clock, the agent). No sentences
//! live here: errors that the rendering branches on stay typed (`PivError`, `SpineError`,
//! `CliError`, `ConfigError`), errors it only quotes are kept as their text. [`super::gather`]
//! fills these in; [`super::render`] words them.

use std::path::PathBuf;
use std::time::Duration;

use cardgate_certs::Verdict as CertVerdict;
use cardgate_config::ConfigError;
use cardgate_piv::{PasscodeStatus, PivError};
use cardgate_spine::SpineError;

use super::ReaderDetails;
use crate::atr::AtrInfo;
use crate::error::CliError;
use crate::format::StatusView;

/// Everything one doctor run found, in the order the checks are reported.
#[derive(Debug)]
pub(crate) struct Facts {
    /// When the checks ran, UTC, RFC 3339.
    pub checked_at: String,
    /// The agent's configuration file.
    pub config_path: PathBuf,
    /// The bus the agent was looked for on (the configured one unless `--bus` said otherwise).
    pub bus: String,
    /// The configuration file.
    pub config: ConfigFacts,
    /// pcscd, its readers and the first card.
    pub pcsc: PcscFacts,
    /// The card's authentication certificate.
    pub certificate: CertificateFacts,
    /// The endpoint, and the clock measured against it.
    pub endpoint: EndpointFacts,
    /// The agent on D-Bus.
    pub daemon: DaemonFacts,
}

/// The configuration file, judged by the agent's own reader (`cardgate_config`).
#[derive(Debug)]
pub(crate) enum ConfigFacts {
    /// `cardgated` would accept it.
    Accepted,
    /// `cardgated` would refuse it (or it cannot be read); the error names the key.
    Refused(ConfigError),
}

/// Why pcscd could not be asked for its readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PcscdProblem {
    /// pcscd runs and its socket is there, but it refused this program (polkit).
    Refused,
    /// pcscd is not running or its socket is not reachable.
    NotReachable,
    /// pcscd answered with an error.
    Error,
}

/// The PC/SC side: pcscd, the readers it lists, the first card found.
#[derive(Debug)]
pub(crate) enum PcscFacts {
    /// The PC/SC checks themselves stopped (the blocking task ended abnormally).
    Stopped(String),
    /// pcscd could not be asked.
    Unavailable {
        /// The socket pcsc-lite's clients connect to.
        socket: PathBuf,
        /// Why.
        problem: PcscdProblem,
        /// The PC/SC call and its answer.
        error: String,
    },
    /// pcscd answered with its list of readers.
    Listed {
        /// The socket it answered on.
        socket: PathBuf,
        /// Every reader, with what was seen of it.
        readers: Vec<ReaderDetails>,
        /// Readers that could not be looked at fully (`name: problem`).
        problems: Vec<String>,
        /// The first card found, read.
        card: Option<Box<CardFacts>>,
    },
}

/// The card in the first reader that has one.
#[derive(Debug)]
pub(crate) struct CardFacts {
    /// The reader it is in.
    pub reader: String,
    /// Its decoded ATR.
    pub atr: AtrInfo,
    /// Whether pcsc-tools' list of known cards was there to look the ATR up in.
    pub known_list: bool,
    /// How far reading it got.
    pub read: CardRead,
}

/// How far reading the card got.
#[derive(Debug)]
pub(crate) enum CardRead {
    /// The read could not be prepared (an internal error).
    NotPrepared(String),
    /// No transaction could be opened with the card.
    NoTransaction(String),
    /// A transaction ran.
    Transacted {
        /// APDUs sent (never a passcode).
        apdus: u64,
        /// The SELECT of the PIV application, timed.
        round_trip: Duration,
        /// The identity and the passcode's state, or why the PIV application did not answer.
        identity: Result<IdentityFacts, PivError>,
    },
}

/// The identity read from the card, and its passcode's state.
#[derive(Debug)]
pub(crate) struct IdentityFacts {
    /// The card serial from the CHUID.
    pub card_serial: String,
    /// The holder's UUID.
    pub holder_uuid: String,
    /// The holder's name.
    pub holder_name: String,
    /// The passcode's state, read without spending a try.
    pub passcode: Result<PasscodeStatus, PivError>,
}

/// The card's authentication certificate against the configured CA and CRL.
#[derive(Debug)]
pub(crate) enum CertificateFacts {
    /// No card was read.
    NoCard,
    /// The configuration's `[card]` table is not available.
    NoConfig,
    /// The configured card CA cannot be used.
    CaUnusable {
        /// `[card] ca`.
        ca: PathBuf,
        /// Why.
        error: String,
    },
    /// The certificate could not be checked at all (not parseable).
    Uncheckable(String),
    /// Checked.
    Checked {
        /// What the check found.
        certificate: CheckedCertificate,
        /// Whether the CRL could be used.
        crl: CrlFacts,
        /// `[card] crl`: `"endpoint"` or a file.
        crl_source: String,
    },
}

/// A checked certificate, as far as doctor reports it.
#[derive(Debug)]
pub(crate) struct CheckedCertificate {
    /// Its serial (hex).
    pub serial: String,
    /// Its expiry, RFC 3339.
    pub not_after: String,
    /// Its issuer.
    pub issuer: String,
    /// Every finding, `message next step`.
    pub findings: Vec<String>,
    /// The verdict of `cardgate-certs`.
    pub verdict: CertVerdict,
}

/// The CRL the certificate was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CrlFacts {
    /// A usable CRL.
    Usable,
    /// The endpoint's CRL arrived but cannot be used.
    EndpointUnusable(String),
    /// The endpoint's CRL could not be fetched.
    EndpointUnfetched,
    /// The CRL file cannot be used.
    FileUnusable(String),
    /// The CRL file cannot be read.
    FileUnreadable(String),
}

/// The endpoint over TLS with the pinned service CA.
#[derive(Debug)]
pub(crate) enum EndpointFacts {
    /// The configuration's `[endpoint]` table is not available.
    NoConfig,
    /// `[endpoint] url` does not parse.
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        error: String,
    },
    /// The service CA file cannot be read.
    ServiceCaUnreadable {
        /// `[endpoint] service_ca`.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The client could not be set up.
    NoClient(String),
    /// The endpoint answered (its CRL fetched).
    Answers {
        /// The URL.
        url: String,
        /// How long the call took, milliseconds.
        ms: u128,
        /// Workstation minus endpoint clock, seconds, when the answer had a `Date`.
        skew: Option<i64>,
    },
    /// The endpoint did not answer usably.
    Unusable {
        /// The URL.
        url: String,
        /// What the client said.
        error: SpineError,
    },
}

/// The agent on D-Bus.
#[derive(Debug)]
pub(crate) enum DaemonFacts {
    /// It answered `Status`.
    Answers(StatusView),
    /// It is on the bus but `Status` failed.
    StatusFailed(String),
    /// Its name is not on the bus.
    NotRunning,
    /// The bus cannot be reached, or the agent not asked.
    Unreachable(CliError),
}
