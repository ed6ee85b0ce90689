//! The agent's configuration file, `cardgated.toml`: which pharmacy the workstation serves
//! (the policy table of `cardgate-policy`), how to reach the endpoint, whom to trust for
//! cards, what card removal and a card left in the reader do, where the audit trail and the
//! passcode ledger live, and which bus to serve on.
//!
//! One schema for everyone who reads the file: `cardgated` (re-exported as
//! `cardgated::config`) and `cardgate doctor`. Everything the file alone can tell is checked
//! when it is read (`cardgated --check-config FILE` does only that): unknown keys and bad
//! values are refused with the key named, so a typo can never silently switch a protection
//! off. What needs the world (the CA file exists, the endpoint answers) is the daemon's and
//! the doctor's to find out. The documented default is `config/cardgated.toml`; the demo's is
//! embedded ([`Config::demo`]). [`Sections`] is the lenient view for the doctor, which must
//! still diagnose a workstation whose file the agent refuses.
//!
//! Pure: serde and toml, no runtime, bus or PC/SC.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cardgate_policy::PolicyConfig;
use serde::Deserialize;

mod endpoint_url;
mod error;
mod sections;

pub use endpoint_url::EndpointUrl;
pub use error::ConfigError;
pub use sections::Sections;

/// The demo's configuration, with `@DEMO_DIR@` standing for the directory the demo writes
/// its CA, CRL, audit trail and ledger into. Only with the `demo` feature (the demo crate
/// and the tests enable it), so the shipped binaries carry no demo configuration.
#[cfg(any(test, feature = "demo"))]
pub const DEMO_CONFIG: &str = include_str!("../../../config/cardgated-demo.toml");

/// The group whose members may call restricted methods when `[ipc] restricted_group` is not
/// set; the same as `cardgate_ipc::RESTRICTED_GROUP` and the shipped bus policy (the daemon's
/// tests tie them; this crate does not link the bus).
pub const DEFAULT_RESTRICTED_GROUP: &str = "cardgate";

/// The whole file, checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[policy]`: ODS codes, locums, the action-to-activity map (`cardgate_policy`).
    pub policy: PolicyConfig,
    /// `[endpoint]`: the Spine-like endpoint.
    pub endpoint: EndpointConfig,
    /// `[card]`: whom to trust for cards.
    pub card: CardTrustConfig,
    /// `[session]`: removal behaviour and timers.
    #[serde(default)]
    pub session: SessionConfig,
    /// `[paths]`: the audit trail and the passcode ledger.
    pub paths: PathsConfig,
    /// `[audit]`: how the trail is sealed into segments and how long they are kept.
    #[serde(default)]
    pub audit: AuditTrailConfig,
    /// `[ipc]`: which bus, who may call restricted methods.
    #[serde(default)]
    pub ipc: IpcConfig,
    /// `[renewal]`: what certificate self-renewal needs on this workstation.
    #[serde(default)]
    pub renewal: RenewalConfig,
    /// `[workstation]`: what the removal of a logged-in workstation session's card does.
    #[serde(default)]
    pub workstation: WorkstationConfig,
    /// `[web]`: which web pages may sign in with the card through the browser bridge
    /// (`org.cardgate.Web1`, docs/web.md); absent or an empty list: web sign-in is off.
    #[serde(default)]
    pub web: WebConfig,
}

/// `[web]`: the browser sign-in's origin rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// The origins (`https://pmr.example.nhs.uk`, scheme, host and port only) whose pages may
    /// ask for a card-signed sign-in, the gate and role selection. Empty: web sign-in off.
    pub allowed_origins: Vec<String>,
    /// Also accept `http://localhost`, `http://127.0.0.1` and `http://[::1]` origins: a
    /// developer's machine only; never in a pharmacy. Off by default.
    pub allow_http_loopback: bool,
}

impl WebConfig {
    /// The rules an origin must meet before the allow-list is consulted.
    pub fn rules(&self) -> cardgate_webauth::OriginRules {
        cardgate_webauth::OriginRules {
            allow_http_loopback: self.allow_http_loopback,
        }
    }

    /// The allow-list, each entry in its serialised form (what a browser reports). Entries
    /// that do not parse were refused when the file was read, so none is lost here.
    pub fn allowed(&self) -> Vec<cardgate_webauth::WebOrigin> {
        self.allowed_origins
            .iter()
            .filter_map(|o| cardgate_webauth::WebOrigin::parse(o, self.rules()).ok())
            .collect()
    }

    /// Every allowed origin must be an origin under the rules (an `http://` entry needs
    /// `allow_http_loopback`, and is for loopback only).
    fn check(&self) -> Result<(), ConfigError> {
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            if let Err(e) = cardgate_webauth::WebOrigin::parse(origin, self.rules()) {
                return Err(ConfigError::value(
                    "web.allowed_origins",
                    format!("entry {} is not an allowed origin: {e}", i + 1),
                ));
            }
        }
        Ok(())
    }
}

/// What the removal of the card that opened a workstation login session does to that session
/// (`[workstation] removal_action`, `crate::workstation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemovalAction {
    /// logind locks the session's screen (`Session.Lock`); the same card and its passcode
    /// unlock it.
    #[default]
    Lock,
    /// logind ends the session (`Session.Terminate`).
    Terminate,
    /// Only the signal `SessionCardRemoved`; the desktop decides.
    Signal,
}

impl RemovalAction {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalAction::Lock => "lock",
            RemovalAction::Terminate => "terminate",
            RemovalAction::Signal => "signal",
        }
    }
}

/// `[workstation]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkstationConfig {
    /// What card removal does to the workstation login session the card opened.
    pub removal_action: RemovalAction,
}

/// `[renewal]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalConfig {
    /// A file holding the cards' PIV management key in hex (32 digits: AES-128, 48: 3DES),
    /// readable by the agent only. Key generation and certificate writing need it; without
    /// it `RenewCertificate` is refused before the card is touched.
    #[serde(default)]
    pub management_key: Option<PathBuf>,
}

/// `[endpoint]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The API and mode A listener, `https://host:port`.
    pub url: String,
    /// The mode B listener (client certificate from the card), `https://host:port`. Needed
    /// only for `login_mode = "B"`.
    #[serde(default)]
    pub mtls_url: Option<String>,
    /// The service CA (PEM) that the endpoint's server certificate must chain to; no system
    /// roots are trusted for it.
    pub service_ca: PathBuf,
    /// `"A"` (the card signs a challenge, CMS) or `"B"` (the card signs the TLS handshake).
    pub login_mode: LoginMode,
}

/// How the card proves itself to the endpoint (`docs/spine-protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum LoginMode {
    /// Mode A: a CMS signature over the broker's challenge.
    A,
    /// Mode B: TLS 1.3 client authentication, the card signing the handshake.
    B,
}

/// `[card]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardTrustConfig {
    /// The issuing CA certificate(s) a card must chain to (PEM).
    pub ca: PathBuf,
    /// Where the CRL comes from: `"endpoint"` (fetched from the endpoint at start, then
    /// again every `crl_refresh_seconds`) or the path of a DER or PEM CRL file.
    pub crl: String,
    /// With `crl = "endpoint"`: how often the CRL is fetched again (and always before the
    /// held one's nextUpdate); default 3600, at least 1.
    #[serde(default = "default_crl_refresh_seconds")]
    pub crl_refresh_seconds: u64,
}

fn default_crl_refresh_seconds() -> u64 {
    3600
}

/// What card removal does (`[session] removal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemovalMode {
    /// The session ends and the endpoint is told (the NHS default).
    #[default]
    Normal,
    /// The session is locked: the same card (holder, serial, certificate) with its passcode
    /// resumes it; another card starts afresh.
    SessionLock,
    /// The session survives removal for `mobility_grace` (decisions made before the removal
    /// are void: the generation is bumped), then it ends with `reauthentication-due`.
    Mobility,
}

/// `[session]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// What card removal does.
    pub removal: RemovalMode,
    /// Under `mobility`, seconds after which a session whose card left must re-authenticate.
    pub mobility_grace: u64,
    /// Seconds without authorised activity, with the card in the reader, after which the
    /// agent signals `CardLeftInReader` (0 turns it off).
    pub card_left_idle_time: u64,
    /// Whether a card left in an idle workstation also ends the session.
    pub end_session_when_card_left: bool,
    /// Upper bound on the session's idle time, seconds; the endpoint's `max_idle_time` is
    /// used when it is shorter.
    pub max_idle_time: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            removal: RemovalMode::Normal,
            mobility_grace: 300,
            card_left_idle_time: 600,
            end_session_when_card_left: false,
            max_idle_time: 900,
        }
    }
}

/// `[paths]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// The hash-chained audit trail (JSON lines).
    pub audit: PathBuf,
    /// The passcode failure ledger, so the three-attempt limit survives restarts.
    pub ledger: PathBuf,
}

/// `[audit]`: the trail's segments (`cardgate_audit::SegmentPolicy`). A trail that lives for
/// years is sealed into files of a bounded size and one UTC day each, and the oldest are
/// removed (the removal recorded on the chain) once older than `keep_days`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditTrailConfig {
    /// Seal the active file once it holds this many bytes (0: no size limit). Default 64 MiB.
    pub segment_max_bytes: u64,
    /// Seal the active file at the first entry of each UTC day. Default true.
    pub segment_daily: bool,
    /// Remove sealed segments whose last entry is older than this many days (0: keep every
    /// segment, the default: retention is the estate's decision).
    pub keep_days: u32,
}

impl Default for AuditTrailConfig {
    fn default() -> Self {
        AuditTrailConfig {
            segment_max_bytes: 64 * 1024 * 1024,
            segment_daily: true,
            keep_days: 0,
        }
    }
}

/// The smallest size limit `[audit] segment_max_bytes` takes: one longest entry (64 KiB), so
/// a segment always holds whole entries and sealing cannot run once per entry.
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;

impl AuditTrailConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.segment_max_bytes != 0 && self.segment_max_bytes < MIN_SEGMENT_BYTES {
            return Err(ConfigError::value(
                "audit.segment_max_bytes",
                format!("0 (no limit) or at least {MIN_SEGMENT_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

/// `[ipc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpcConfig {
    /// `"system"` or a D-Bus address (`unix:path=/run/...`).
    pub bus: String,
    /// The group whose members may call restricted methods (root always may).
    pub restricted_group: String,
}

impl Default for IpcConfig {
    fn default() -> Self {
        IpcConfig {
            bus: "system".into(),
            restricted_group: DEFAULT_RESTRICTED_GROUP.into(),
        }
    }
}

impl Config {
    /// Parses and checks a configuration; the error names the key that is wrong.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::syntax(&e))?;
        config.check()?;
        Ok(config)
    }

    /// Reads and checks a configuration file; the error names the file and the key.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|e| e.in_file(path))
    }

    /// The embedded demo configuration with its files under `dir` and the endpoint at the
    /// given URLs (the demo's in-process spine-sim picks free ports). `demo` feature only.
    #[cfg(any(test, feature = "demo"))]
    pub fn demo(dir: &Path, url: &str, mtls_url: &str) -> Result<Config, ConfigError> {
        let text = DEMO_CONFIG
            .replace("@DEMO_DIR@", &dir.display().to_string())
            .replace("@ENDPOINT_URL@", url)
            .replace("@ENDPOINT_MTLS_URL@", mtls_url);
        Config::from_toml(&text)
    }

    /// The checks serde cannot express, in the order the keys appear in the file.
    fn check(&self) -> Result<(), ConfigError> {
        self.endpoint.check()?;
        self.card.check()?;
        self.session.check()?;
        self.audit.check()?;
        self.ipc.check()?;
        self.web.check()
    }

    /// The session idle limit as a duration.
    pub fn max_idle(&self) -> Duration {
        Duration::from_secs(self.session.max_idle_time)
    }
}

impl EndpointConfig {
    /// Both URLs as the endpoint client will parse them; mode B needs its listener.
    fn check(&self) -> Result<(), ConfigError> {
        for (key, url) in [
            ("endpoint.url", Some(&self.url)),
            ("endpoint.mtls_url", self.mtls_url.as_ref()),
        ] {
            if let Some(url) = url {
                EndpointUrl::parse(url).map_err(|rule| {
                    ConfigError::value(
                        key,
                        format!("the Spine client configuration is not usable: {rule}"),
                    )
                })?;
            }
        }
        if self.login_mode == LoginMode::B && self.mtls_url.is_none() {
            return Err(ConfigError::value(
                "endpoint.mtls_url",
                "required when login_mode = \"B\"",
            ));
        }
        Ok(())
    }
}

impl CardTrustConfig {
    /// A refresh interval and a CRL source.
    fn check(&self) -> Result<(), ConfigError> {
        if self.crl_refresh_seconds == 0 {
            return Err(ConfigError::value(
                "card.crl_refresh_seconds",
                "must be at least 1 (seconds)",
            ));
        }
        if self.crl.trim().is_empty() {
            return Err(ConfigError::value(
                "card.crl",
                "\"endpoint\" or the path of a CRL file",
            ));
        }
        Ok(())
    }
}

impl SessionConfig {
    /// Timers that cannot be zero where they are used.
    fn check(&self) -> Result<(), ConfigError> {
        if self.removal == RemovalMode::Mobility && self.mobility_grace == 0 {
            return Err(ConfigError::value(
                "session.mobility_grace",
                "must be at least 1 second",
            ));
        }
        if self.max_idle_time == 0 {
            return Err(ConfigError::value(
                "session.max_idle_time",
                "must be at least 1 second",
            ));
        }
        Ok(())
    }
}

impl IpcConfig {
    /// `"system"` or something shaped like a D-Bus address.
    fn check(&self) -> Result<(), ConfigError> {
        if self.bus.trim().is_empty() {
            return Err(ConfigError::value(
                "ipc.bus",
                "\"system\" or a D-Bus address",
            ));
        }
        if self.bus != "system" && !self.bus.contains(':') {
            return Err(ConfigError::value(
                "ipc.bus",
                "\"system\" or a D-Bus address such as unix:path=/run/cardgate/bus",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = include_str!("../../../config/cardgated.toml");

    #[test]
    fn web_sign_in_is_off_by_default_and_its_origins_are_checked() {
        let c = Config::from_toml(DOCUMENTED).unwrap();
        assert!(c.web.allowed_origins.is_empty() && !c.web.allow_http_loopback);
        let before_web = &DOCUMENTED[..DOCUMENTED.find("\n[web]").unwrap()];
        let with = |web: &str| before_web.to_owned() + "\n[web]\n" + web;
        let c = Config::from_toml(&with(
            "allowed_origins = [\"https://PMR.example.nhs.uk:443\"]\n",
        ))
        .unwrap();
        assert_eq!(c.web.allowed()[0].as_str(), "https://pmr.example.nhs.uk");
        let e = Config::from_toml(&with("allowed_origins = [\"http://localhost:8080\"]\n"))
            .unwrap_err();
        assert!(
            e.to_string().contains("web.allowed_origins: entry 1")
                && e.to_string().contains("HTTPS"),
            "{e}"
        );
        let c = Config::from_toml(&with(
            "allowed_origins = [\"http://localhost:8080\"]\nallow_http_loopback = true\n",
        ))
        .unwrap();
        assert_eq!(c.web.allowed()[0].as_str(), "http://localhost:8080");
        let e = Config::from_toml(&with("allowed_origins = [\"https://a.example/login\"]\n"))
            .unwrap_err();
        assert!(e.to_string().contains("path"), "{e}");
        let e = Config::from_toml(&with("allowed_origin = []\n")).unwrap_err();
        assert!(e.to_string().contains("allowed_origin"), "{e}");
    }

    #[test]
    fn the_documented_default_and_the_demo_parse() {
        let c = Config::from_toml(DOCUMENTED).unwrap();
        assert_eq!(c.session.removal, RemovalMode::Normal);
        assert_eq!(c.ipc.bus, "system");
        let d = Config::demo(
            Path::new("/tmp/x"),
            "https://127.0.0.1:1",
            "https://127.0.0.1:2",
        )
        .unwrap();
        assert_eq!(d.paths.audit, Path::new("/tmp/x/audit.jsonl"));
    }

    fn refused(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key_named() {
        let typo = DOCUMENTED.replace("removal = \"normal\"", "removl = \"normal\"");
        assert!(refused(&typo).contains("removl"), "{}", refused(&typo));
        let mode = DOCUMENTED.replace("removal = \"normal\"", "removal = \"sometimes\"");
        assert!(refused(&mode).contains("removal"), "{}", refused(&mode));
        let lock = DOCUMENTED.replace("removal = \"normal\"", "removal = \"session-lock\"");
        assert_eq!(
            Config::from_toml(&lock).unwrap().session.removal,
            RemovalMode::SessionLock
        );
        let mobility = DOCUMENTED.replace("removal = \"normal\"", "removal = \"mobility\"");
        assert_eq!(
            Config::from_toml(&mobility).unwrap().session.removal,
            RemovalMode::Mobility
        );
        let no_grace = mobility.replace("mobility_grace = 300", "mobility_grace = 0");
        assert!(
            refused(&no_grace).contains("session.mobility_grace"),
            "{}",
            refused(&no_grace)
        );
        let login = DOCUMENTED.replace("login_mode = \"B\"", "login_mode = \"C\"");
        assert!(
            refused(&login).contains("login_mode"),
            "{}",
            refused(&login)
        );
        let ods = DOCUMENTED.replace("[\"FA123\"]", "[\"FA-123\"]");
        assert!(refused(&ods).contains("FA-123"), "{}", refused(&ods));
        let url = DOCUMENTED.replace("https://spine.example:8443", "http://spine.example");
        assert!(refused(&url).contains("endpoint.url"), "{}", refused(&url));
        let bus = DOCUMENTED.replace("bus = \"system\"", "bus = \"sytem\"");
        assert!(refused(&bus).contains("ipc.bus"), "{}", refused(&bus));
    }

    #[test]
    fn the_audit_segments_default_to_64_mib_daily_kept_for_ever_and_tiny_ones_are_refused() {
        let c = Config::from_toml(DOCUMENTED).unwrap();
        assert_eq!(c.audit.segment_max_bytes, 64 * 1024 * 1024);
        assert!(c.audit.segment_daily);
        assert_eq!(c.audit.keep_days, 0);
        let without = DOCUMENTED.replace("[audit]", "[audit_unused]");
        let without: String = without
            .split("[audit_unused]")
            .next()
            .map(|head| head.to_owned() + &DOCUMENTED[DOCUMENTED.find("[ipc]").unwrap()..])
            .unwrap();
        let d = Config::from_toml(&without).unwrap();
        assert_eq!(d.audit.segment_max_bytes, c.audit.segment_max_bytes);
        let tiny = DOCUMENTED.replace("segment_max_bytes = 67108864", "segment_max_bytes = 100");
        assert!(
            refused(&tiny).contains("audit.segment_max_bytes"),
            "{}",
            refused(&tiny)
        );
        let off = DOCUMENTED.replace("segment_max_bytes = 67108864", "segment_max_bytes = 0");
        assert_eq!(Config::from_toml(&off).unwrap().audit.segment_max_bytes, 0);
    }

    #[test]
    fn workstation_removal_action_defaults_to_lock_and_unknown_values_name_the_key() {
        assert_eq!(
            Config::from_toml(DOCUMENTED)
                .unwrap()
                .workstation
                .removal_action,
            RemovalAction::Lock
        );
        let logout = DOCUMENTED.replace("removal_action = \"lock\"", "removal_action = \"logout\"");
        assert!(
            refused(&logout).contains("removal_action"),
            "{}",
            refused(&logout)
        );
        let terminate = DOCUMENTED.replace(
            "removal_action = \"lock\"",
            "removal_action = \"terminate\"",
        );
        assert_eq!(
            Config::from_toml(&terminate)
                .unwrap()
                .workstation
                .removal_action,
            RemovalAction::Terminate
        );
    }

    #[test]
    fn a_file_names_itself_in_the_error_and_the_problem_stands_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cardgated.toml");
        std::fs::write(
            &path,
            DOCUMENTED.replace("max_idle_time = 900", "max_idle_time = 0"),
        )
        .unwrap();
        let e = Config::from_file(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "configuration: {}: session.max_idle_time: must be at least 1 second",
                path.display()
            )
        );
        assert_eq!(
            e.problem(),
            "session.max_idle_time: must be at least 1 second"
        );
        let missing = Config::from_file(&dir.path().join("nope.toml")).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
        assert!(
            missing
                .to_string()
                .starts_with("reading the configuration "),
            "{missing}"
        );
    }
}
