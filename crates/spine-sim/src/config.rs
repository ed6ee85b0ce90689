//! spine-sim's TOML configuration (docs/spine-protocol.md, "spine-sim configuration"): the
//! listeners, where the service identity and the card CA live, and the directory of users,
//! role profiles and cards. Unknown keys are refused with the key named, so a typo never
//! silently turns a setting off.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cardgate_spine::wire::{RoleProfile, Secret};
use serde::Deserialize;

use crate::error::SimError;

/// The default `max_idle_time`: 15 minutes, the agent's usual screen-lock horizon.
pub const DEFAULT_MAX_IDLE_TIME: u64 = 900;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Listeners and file locations.
    pub server: ServerConfig,
    /// The directory of people.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// The cards the RA issued, with their unlock codes.
    #[serde(default)]
    pub cards: Vec<CardConfig>,
    /// The CIS2-like OpenID Connect provider (protocol version 2 of
    /// docs/spine-protocol.md); absent: not served.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
}

/// The default lifetime of an ID token and an access token, in seconds.
pub const DEFAULT_TOKEN_LIFETIME: u64 = 600;

/// `[oidc]`: the OpenID Connect provider, on a listener of its own that never asks for a
/// client certificate (a browser is never offered a certificate picker).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Where the provider listens. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The issuer, which is also the web origin the card's signature is checked against
    /// (`https://host[:port]`, no path). Absent: `https://localhost:<bound port>`, which the
    /// service certificate covers.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The provider's ID token signing key: PKCS#8 PEM of an ECDSA P-256 key (ES256). A
    /// relative path is taken from the configuration file's directory.
    pub signing_key: PathBuf,
    /// Seconds an ID token and an access token are valid.
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime: u64,
    /// The registered relying parties.
    #[serde(default)]
    pub clients: Vec<OidcClientConfig>,
}

fn default_token_lifetime() -> u64 {
    DEFAULT_TOKEN_LIFETIME
}

/// `[[oidc.clients]]`: a registered relying party.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcClientConfig {
    /// The `client_id`.
    pub client_id: String,
    /// The name the sign-in page shows ("High Street Pharmacy PMR").
    pub name: String,
    /// The redirect URIs, compared exactly (no prefix or wildcard matching).
    pub redirect_uris: Vec<String>,
    /// A confidential client's secret (`client_secret_basic` or `client_secret_post`).
    /// Absent: a public client, which authenticates with PKCE alone. Redacted in `Debug`.
    #[serde(default)]
    pub client_secret: Option<Secret>,
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Mode A and the API (server authentication only). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Mode B (client certificate required). Port 0 picks a free port.
    pub listen_mtls: SocketAddr,
    /// The service CA and server certificate made by `spine-sim init`.
    pub service_dir: PathBuf,
    /// The card CA directory (`vcard ca init`): verifies cards, signs CRLs and renewals.
    pub card_ca_dir: PathBuf,
    /// Where one-time codes are "sent": one JSON line per message.
    pub outbox: PathBuf,
    /// Where the workstations' audit chain heads handed in at log-in are kept: one JSON line
    /// each (`uid`, `session_id`, `seq`, `hash`, `at`), the file `cardgate audit verify
    /// --anchors` reads. Absent: they are accepted and only logged.
    #[serde(default)]
    pub anchors: Option<PathBuf>,
    /// Seconds of inactivity after which a session ends.
    #[serde(default = "default_max_idle_time")]
    pub max_idle_time: u64,
}

fn default_max_idle_time() -> u64 {
    DEFAULT_MAX_IDLE_TIME
}

/// `[[users]]`: one person in the directory.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The 12-digit UUID (the certificate subject's serialNumber).
    pub uid: String,
    /// The name shown in sessions.
    pub name: String,
    /// Registered email for self-service unlock.
    #[serde(default)]
    pub email: Option<String>,
    /// Registered mobile number for self-service unlock.
    #[serde(default)]
    pub mobile: Option<String>,
    /// The person's role profiles.
    #[serde(default)]
    pub role_profiles: Vec<RoleProfileConfig>,
    /// When the person's passcode expires (RFC 3339); sessions carry it so the agent can
    /// warn. Absent: the passcode does not expire.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub passcode_expires_at: Option<time::OffsetDateTime>,
}

/// `[[users.role_profiles]]`, the same fields as the wire's [`RoleProfile`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleProfileConfig {
    /// Stable id (unique across the directory).
    pub id: String,
    /// Job role.
    pub job_role: String,
    /// ODS code (`FFFFF` for the locum organisation).
    pub ods_code: String,
    /// Organisation name.
    pub organisation_name: String,
    /// Permitted activities.
    #[serde(default)]
    pub activities: Vec<String>,
}

impl From<&RoleProfileConfig> for RoleProfile {
    fn from(p: &RoleProfileConfig) -> Self {
        RoleProfile {
            id: p.id.clone(),
            job_role: p.job_role.clone(),
            ods_code: p.ods_code.clone(),
            organisation_name: p.organisation_name.clone(),
            activities: p.activities.clone(),
        }
    }
}

/// `[[cards]]`: a card the RA issued, as its systems know it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardConfig {
    /// The card serial (CHUID); beginning 01, 02 or 03 marks an old-generation card.
    pub serial: String,
    /// The holder's UUID.
    pub uid: String,
    /// The card's unlock code (PUK); redacted in `Debug`, released only to authorised resets.
    pub unlock_code: Secret,
}

impl SimConfig {
    /// Reads and checks a configuration file. Relative paths in `[server]` are taken from
    /// the file's own directory, so a lab folder can be moved as a whole.
    pub fn from_file(path: &Path) -> Result<SimConfig, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::ConfigIo {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = SimConfig::from_toml(&text).map_err(|e| match e {
            SimError::ConfigInvalid { reason, .. } => SimError::ConfigInvalid {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })?;
        if let Some(base) = path.parent() {
            let server = &mut config.server;
            for p in [
                &mut server.service_dir,
                &mut server.card_ca_dir,
                &mut server.outbox,
            ] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
            if let Some(p) = server.anchors.as_mut().filter(|p| p.is_relative()) {
                *p = base.join(&*p);
            }
            if let Some(oidc) = config.oidc.as_mut()
                && oidc.signing_key.is_relative()
            {
                oidc.signing_key = base.join(&oidc.signing_key);
            }
        }
        Ok(config)
    }

    /// Parses and checks configuration text (paths are used as given).
    pub fn from_toml(text: &str) -> Result<SimConfig, SimError> {
        let config: SimConfig = toml::from_str(text).map_err(|e| SimError::ConfigInvalid {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// The checks TOML cannot express: ids unique, cards pointing at known users.
    pub fn check(&self) -> Result<(), SimError> {
        let invalid = |reason: String| SimError::ConfigInvalid {
            path: PathBuf::new(),
            reason,
        };
        if self.server.max_idle_time == 0 {
            return Err(invalid(
                "server.max_idle_time must be at least 1 second".into(),
            ));
        }
        let mut uids = BTreeSet::new();
        let mut profiles = BTreeSet::new();
        for user in &self.users {
            if user.uid.len() != 12 || !user.uid.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!(
                    "users.uid {:?} must be exactly 12 digits",
                    user.uid
                )));
            }
            if !uids.insert(user.uid.as_str()) {
                return Err(invalid(format!("users.uid {:?} appears twice", user.uid)));
            }
            for profile in &user.role_profiles {
                if !profiles.insert(profile.id.as_str()) {
                    return Err(invalid(format!(
                        "users.role_profiles.id {:?} appears twice",
                        profile.id
                    )));
                }
            }
        }
        if let Some(oidc) = &self.oidc {
            oidc.check().map_err(invalid)?;
        }
        let mut serials = BTreeSet::new();
        for card in &self.cards {
            if card.serial.is_empty()
                || card.serial.len() > 20
                || !card.serial.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(invalid(format!(
                    "cards.serial {:?} must be 1 to 20 digits",
                    card.serial
                )));
            }
            if !serials.insert(card.serial.as_str()) {
                return Err(invalid(format!(
                    "cards.serial {:?} appears twice",
                    card.serial
                )));
            }
            if !uids.contains(card.uid.as_str()) {
                return Err(invalid(format!(
                    "cards.uid {:?} (card {}) is not one of the users",
                    card.uid, card.serial
                )));
            }
        }
        Ok(())
    }
}

impl OidcConfig {
    /// The checks of `[oidc]`: an issuer that is an HTTPS origin, clients unique, redirect
    /// URIs absolute HTTPS (or loopback HTTP) URLs without fragments.
    fn check(&self) -> Result<(), String> {
        if let Some(issuer) = &self.issuer {
            cardgate_webauth::WebOrigin::parse(issuer, cardgate_webauth::OriginRules::default())
                .map_err(|e| format!("oidc.issuer: {e}"))?;
        }
        if self.token_lifetime == 0 {
            return Err("oidc.token_lifetime must be at least 1 second".into());
        }
        let mut ids = BTreeSet::new();
        for client in &self.clients {
            if client.client_id.is_empty() || client.client_id.len() > 128 {
                return Err("oidc.clients.client_id must be 1 to 128 characters".into());
            }
            if !ids.insert(client.client_id.as_str()) {
                return Err(format!(
                    "oidc.clients.client_id {:?} appears twice",
                    client.client_id
                ));
            }
            if client.redirect_uris.is_empty() {
                return Err(format!(
                    "oidc.clients.redirect_uris of {:?} is empty",
                    client.client_id
                ));
            }
            for uri in &client.redirect_uris {
                let url = url::Url::parse(uri)
                    .map_err(|e| format!("oidc.clients.redirect_uris {uri:?}: {e}"))?;
                if url.fragment().is_some() || !matches!(url.scheme(), "https" | "http") {
                    return Err(format!(
                        "oidc.clients.redirect_uris {uri:?} must be an http(s) URL without a fragment"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
listen_mtls = "127.0.0.1:0"
service_dir = "service"
card_ca_dir = "card-ca"
outbox = "outbox.jsonl"

[[users]]
uid = "555000111222"
name = "Asha Patel"
email = "asha.patel@nhs.example"
[[users.role_profiles]]
id = "RP-1001"
job_role = "Pharmacist"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download"]

[[cards]]
serial = "6516779193"
uid = "555000111222"
unlock_code = "12345678"
"#;

    #[test]
    fn the_doc_example_parses_and_keeps_the_unlock_code_out_of_debug() {
        let config = SimConfig::from_toml(GOOD).unwrap();
        assert_eq!(config.server.max_idle_time, DEFAULT_MAX_IDLE_TIME);
        assert_eq!(config.cards[0].unlock_code.expose(), "12345678");
        assert!(!format!("{config:?}").contains("12345678"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = GOOD
            .replace("max_idle_time", "x")
            .replace("outbox = \"outbox.jsonl\"", "outbox = \"o\"\nmax_idle = 5");
        let err = SimConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("max_idle"), "{err}");
    }

    #[test]
    fn the_oidc_section_is_checked() {
        let oidc = "\n[oidc]\nlisten = \"127.0.0.1:0\"\nsigning_key = \"k.pem\"\n[[oidc.clients]]\nclient_id = \"pmr\"\nname = \"PMR\"\nredirect_uris = [\"https://localhost:8443/callback\"]\nclient_secret = \"s3cret-value\"\n";
        let config = SimConfig::from_toml(&format!("{GOOD}{oidc}")).unwrap();
        let parsed = config.oidc.as_ref().unwrap();
        assert_eq!(parsed.token_lifetime, DEFAULT_TOKEN_LIFETIME);
        assert!(!format!("{config:?}").contains("s3cret-value"));
        let bad = oidc.replace("https://localhost:8443/callback", "https://x/cb#frag");
        let err = SimConfig::from_toml(&format!("{GOOD}{bad}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a fragment"), "{err}");
        let bad = oidc.replace("[oidc]", "[oidc]\nissuer = \"http://idp.example\"");
        let err = SimConfig::from_toml(&format!("{GOOD}{bad}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("oidc.issuer"), "{err}");
    }

    #[test]
    fn cards_of_unknown_users_are_refused() {
        let text = GOOD.replace(
            "uid = \"555000111222\"\nunlock",
            "uid = \"555000999999\"\nunlock",
        );
        let err = SimConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("555000999999"), "{err}");
    }
}
