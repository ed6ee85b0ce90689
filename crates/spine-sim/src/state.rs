//! What the national service remembers: the directory (users, role profiles, cards and
//! their unlock codes), outstanding challenges, sessions, self-service unlock requests and
//! TAC records, plus the sim's clock.
//!
//! Everything lives behind one `std::sync::Mutex`, held only for map operations (never across
//! an `.await` or file I/O), which is plenty for a simulator and keeps every rule in one place.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cardgate_spine::wire::{RoleProfile, Secret, TacRecord};
use ring::rand::{SecureRandom as _, SystemRandom};
use time::OffsetDateTime;

use crate::config::{CardConfig, SimConfig, UserConfig};

/// How long a mode A challenge lives.
pub(crate) const CHALLENGE_LIFETIME: Duration = Duration::from_secs(60);
/// How long a self-service unlock request waits for its one-time code.
pub(crate) const UNLOCK_REQUEST_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Wrong one-time codes after which the request is void.
pub(crate) const MAX_WRONG_CODES: u8 = 3;
/// Outstanding challenges kept at most; beyond it the oldest go (a flood cannot eat memory).
const MAX_CHALLENGES: usize = 10_000;
/// Outstanding unlock requests kept at most.
const MAX_UNLOCK_REQUESTS: usize = 10_000;

/// The sim's clock: real monotonic and wall time plus an offset tests can advance, so idle
/// timeouts and challenge expiry are tested without sleeping. Certificate validity is
/// always judged on the real wall clock, as the TLS handshake does.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset: Mutex<Duration>,
}

impl Clock {
    fn offset(&self) -> Duration {
        match self.offset.lock() {
            Ok(o) => *o,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Monotonic "now" for timeouts.
    pub fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }

    /// Wall-clock "now" for the times the protocol shows.
    pub fn wall(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.offset()
    }

    /// Moves the sim's time forward.
    pub fn advance(&self, by: Duration) {
        match self.offset.lock() {
            Ok(mut o) => *o += by,
            Err(poisoned) => *poisoned.into_inner() += by,
        }
    }
}

/// A live (or idle-expired) session.
#[derive(Clone, Debug)]
pub(crate) struct SessionRecord {
    pub session_id: String,
    pub token: Secret,
    pub uid: String,
    pub name: String,
    pub certificate_der: Vec<u8>,
    pub certificate_not_after: OffsetDateTime,
    pub role_profiles: Vec<RoleProfile>,
    pub selected: Option<String>,
    pub passcode_expires_at: Option<OffsetDateTime>,
    pub last_activity: Instant,
    /// Set once the idle timeout was noticed: later calls answer `session_expired`.
    pub expired: bool,
}

impl SessionRecord {
    /// The selected role profile, if any.
    pub fn selected_profile(&self) -> Option<&RoleProfile> {
        let id = self.selected.as_deref()?;
        self.role_profiles.iter().find(|p| p.id == id)
    }
}

/// A pending self-service unlock.
#[derive(Debug)]
pub(crate) struct UnlockRequest {
    pub card_serial: String,
    pub code: Secret,
    pub wrong: u8,
    pub expires: Instant,
}

/// The mutable part of the service.
#[derive(Debug, Default)]
pub(crate) struct Inner {
    /// challenge id → (challenge bytes, expiry).
    pub challenges: HashMap<String, (Vec<u8>, Instant)>,
    /// session id → session.
    pub sessions: HashMap<String, SessionRecord>,
    /// SHA-256(token) → session id.
    pub tokens: HashMap<[u8; 32], String>,
    /// request id → pending self-service unlock.
    pub unlock_requests: HashMap<String, UnlockRequest>,
    /// TAC serial → record.
    pub tacs: HashMap<String, TacRecord>,
}

impl Inner {
    /// Stores a challenge, first dropping expired ones (and the oldest if still full).
    pub fn add_challenge(
        &mut self,
        id: String,
        challenge: Vec<u8>,
        expires: Instant,
        now: Instant,
    ) {
        if self.challenges.len() >= MAX_CHALLENGES {
            self.challenges.retain(|_, (_, e)| *e > now);
        }
        if self.challenges.len() >= MAX_CHALLENGES
            && let Some(oldest) = self
                .challenges
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(k, _)| k.clone())
        {
            self.challenges.remove(&oldest);
        }
        self.challenges.insert(id, (challenge, expires));
    }

    /// Stores an unlock request, dropping expired ones when the table is full.
    pub fn add_unlock_request(&mut self, id: String, request: UnlockRequest, now: Instant) {
        if self.unlock_requests.len() >= MAX_UNLOCK_REQUESTS {
            self.unlock_requests.retain(|_, r| r.expires > now);
        }
        if self.unlock_requests.len() < MAX_UNLOCK_REQUESTS {
            self.unlock_requests.insert(id, request);
        }
    }

    /// Drops sessions that ended through inactivity long ago (a day past their timeout).
    pub fn purge_sessions(&mut self, now: Instant, max_idle: Duration) {
        let horizon = max_idle + Duration::from_secs(24 * 3600);
        let stale: Vec<String> = self
            .sessions
            .values()
            .filter(|s| now.saturating_duration_since(s.last_activity) > horizon)
            .map(|s| s.session_id.clone())
            .collect();
        for id in stale {
            self.remove_session(&id);
        }
    }

    /// Removes a session and its token.
    pub fn remove_session(&mut self, id: &str) -> Option<SessionRecord> {
        let record = self.sessions.remove(id)?;
        self.tokens.remove(&token_hash(record.token.expose()));
        Some(record)
    }
}

/// The read-only directory built from the configuration.
#[derive(Debug)]
pub(crate) struct Directory {
    pub users: HashMap<String, UserConfig>,
    pub cards: HashMap<String, CardConfig>,
}

impl Directory {
    pub fn new(config: &SimConfig) -> Directory {
        Directory {
            users: config
                .users
                .iter()
                .map(|u| (u.uid.clone(), u.clone()))
                .collect(),
            cards: config
                .cards
                .iter()
                .map(|c| (c.serial.clone(), c.clone()))
                .collect(),
        }
    }

    /// The card the directory lists for a holder (the first by serial if several): the
    /// authentication certificate does not carry the card number, so this is what the
    /// old-generation rule is judged on.
    pub fn card_of(&self, uid: &str) -> Option<&CardConfig> {
        let mut cards: Vec<&CardConfig> = self.cards.values().filter(|c| c.uid == uid).collect();
        cards.sort_by(|a, b| a.serial.cmp(&b.serial));
        cards.first().copied()
    }
}

/// SHA-256 of a bearer token: the index key, so a token is compared by hash.
pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `n` random bytes from the system RNG.
pub(crate) fn random_bytes(rng: &SystemRandom, n: usize) -> Option<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    rng.fill(&mut bytes).ok()?;
    Some(bytes)
}

/// A random id with a readable prefix (`s-`, `c-`, `u-`): 16 random bytes in hex.
pub(crate) fn random_id(rng: &SystemRandom, prefix: &str) -> Option<String> {
    let bytes = random_bytes(rng, 16)?;
    Some(format!(
        "{prefix}{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Equality in time independent of where the inputs differ (one-time codes).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (
        ring::digest::digest(&ring::digest::SHA256, a),
        ring::digest::digest(&ring::digest::SHA256, b),
    );
    ha.as_ref()
        .iter()
        .zip(hb.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
