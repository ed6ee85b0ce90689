//! What the audit trail records: [`AuditEvent`], one variant per kind of fact the issue lists
//! (card events, passcode attempts, lockouts, sessions, role selection, authorisation
//! decisions, unlocks, renewals, TAC use, daemon life cycle, faults, support notes).
//!
//! No type here has a field that could carry a passcode, PUK or unlock code: passcode attempts
//! record the outcome and the tries left, nothing else. The schema test at the end of this
//! file serializes every variant and fails if any key looks like one.

use cardgate_piv::{CardSerial, HolderUuid};
use serde::{Deserialize, Serialize};

/// One auditable fact. Serialized with a `"kind"` tag (`"card_inserted"`, ...), field names in
/// snake case.
///
/// Every variant that happens while a card is known carries the holder's UUID (`holder`), so
/// every transaction is attributable to the card holder (the brief); [`AuditEvent::holder`]
/// returns it uniformly for the CLI and support bundles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// A card was seen in a reader. `holder` and `card_serial` are `None` when the card could
    /// not be read (the fault is then recorded separately).
    CardInserted {
        /// The PC/SC reader name.
        reader: String,
        /// The card serial from the CHUID, when read.
        #[serde(with = "ids::opt")]
        card_serial: Option<CardSerial>,
        /// The holder's UUID from the authentication certificate, when read.
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
    },

    /// A card left its reader: every session on it ends, every gate turns to "no".
    CardRemoved {
        /// The PC/SC reader name.
        reader: String,
        /// The card serial, when it had been read.
        #[serde(with = "ids::opt")]
        card_serial: Option<CardSerial>,
        /// The holder, when known.
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
    },

    /// A passcode verification was attempted or refused by the agent. Records the outcome and
    /// the tries left, never the value typed.
    PasscodeAttempt {
        /// The process whose method call did this (from the bus daemon's credentials);
        /// `None` when the card, a timer or the agent itself did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<CallerIdentity>,
        /// The PC/SC reader name.
        reader: String,
        /// The card serial: the agent counts failures per card.
        #[serde(with = "ids::opt")]
        card_serial: Option<CardSerial>,
        /// The holder, when known.
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
        /// How the value was entered: a reader's keypad keeps it off the host entirely.
        entry_method: EntryMethod,
        /// What happened.
        outcome: PasscodeOutcome,
        /// Tries left after the attempt, as the card reported them (`None` when unknown).
        tries_left: Option<u8>,
    },

    /// The card is locked: the holder needs an unlock path (self-service, sponsor, RA).
    Lockout {
        /// The PC/SC reader name.
        reader: String,
        /// The card serial.
        #[serde(with = "ids::opt")]
        card_serial: Option<CardSerial>,
        /// The holder, when known.
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
        /// Why the card is locked.
        cause: LockoutCause,
    },

    /// An authenticated session began (card + passcode + national endpoint).
    SessionStarted {
        /// The process whose method call did this (from the bus daemon's credentials);
        /// `None` when the card, a timer or the agent itself did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<CallerIdentity>,
        /// The card serial.
        #[serde(with = "ids::req")]
        card_serial: CardSerial,
        /// The holder: a session always has one.
        #[serde(with = "ids::req")]
        holder: HolderUuid,
        /// The session generation: gate decisions quote it so a decision can be tied to the
        /// session that allowed it, and a stale generation is visible.
        session_generation: u64,
    },

    /// A session ended.
    SessionEnded {
        /// The process whose method call did this (from the bus daemon's credentials);
        /// `None` when the card, a timer or the agent itself did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<CallerIdentity>,
        /// The card serial.
        #[serde(with = "ids::req")]
        card_serial: CardSerial,
        /// The holder.
        #[serde(with = "ids::req")]
        holder: HolderUuid,
        /// The generation that ended.
        session_generation: u64,
        /// Why it ended.
        reason: SessionEndReason,
    },

    /// The holder chose a role profile, at login or by switching within a session.
    RoleSelected {
        /// The process whose method call did this (from the bus daemon's credentials);
        /// `None` when the card, a timer or the agent itself did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<CallerIdentity>,
        /// The holder.
        #[serde(with = "ids::req")]
        holder: HolderUuid,
        /// The session the selection belongs to.
        session_generation: u64,
        /// The profile now in force.
        profile: RoleProfile,
        /// The profile it replaced, for a switch within a session.
        previous: Option<RoleProfile>,
    },

    /// A gate decision: may this caller perform this action, for this pharmacy, now? Recorded
    /// for every decision, allowed or not, with who asked.
    AuthorisationDecision {
        /// The holder whose session the decision was taken under (`None`: no card).
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
        /// The process that asked, from the D-Bus message sender's credentials.
        caller: CallerIdentity,
        /// The action's stable name as the policy crate spells it (e.g. `eps.download`).
        action: String,
        /// The ODS code the action is for, when the request named one.
        ods: Option<String>,
        /// The answer.
        allowed: bool,
        /// The policy's reason code (stable, machine-readable: `no_card`, `role_missing`, ...).
        reason_code: String,
        /// The session generation the decision was taken under.
        session_generation: Option<u64>,
        /// The web page's origin when the question came from a browser through the web
        /// bridge (`org.cardgate.Web1`, docs/web.md); absent for a desktop PMR.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
    },

    /// A web page asked for a card-signed sign-in token (`org.cardgate.Web1.Authenticate`,
    /// docs/web.md): recorded for every request, refused or not, with the origin the browser
    /// reported and the process that relayed it. Never the passcode, nor the nonce.
    WebSignIn {
        /// The process that relayed the request (the web bridge), from the bus.
        caller: CallerIdentity,
        /// The page's origin as the browser reported it (`https://pmr.example.nhs.uk`).
        origin: String,
        /// The holder whose card signed or was asked (`None`: no card was read).
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
        /// The outcome: `signed`, or the refusal's name (`OriginNotAllowed`,
        /// `NonceReplayed`, `Cancelled`, `WrongPasscode`, ...).
        outcome: String,
    },

    /// An unlock of a locked card was requested.
    UnlockRequested {
        /// The process whose method call did this (from the bus daemon's credentials);
        /// `None` when the card, a timer or the agent itself did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<CallerIdentity>,
        /// The card serial.
        #[serde(with = "ids::opt")]
        card_serial: Option<CardSerial>,
        /// The card's holder.
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
        /// Which unlock path.
        path: UnlockPath,
        /// The sponsor or LSA acting, for the sponsor path (an LSA cannot unlock their own card:
        /// this field makes a violation visible).
        #[serde(with = "ids::opt")]
        by: Option<HolderUuid>,
    },

    /// An unlock finished.
    UnlockCompleted {
        /// The process whose method call did this (from the bus daemon's credentials);
        /// `None` when the card, a timer or the agent itself did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<CallerIdentity>,
        /// The card serial.
        #[serde(with = "ids::opt")]
        card_serial: Option<CardSerial>,
        /// The card's holder.
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
        /// Which unlock path.
        path: UnlockPath,
        /// The sponsor or LSA who acted.
        #[serde(with = "ids::opt")]
        by: Option<HolderUuid>,
        /// What happened.
        outcome: Outcome,
        /// Why, for a refusal or failure (`old_generation_card`, `own_card`, ...).
        reason_code: Option<String>,
    },

    /// A certificate or passcode renewal.
    Renewal {
        /// The process whose method call did this (from the bus daemon's credentials);
        /// `None` when the card, a timer or the agent itself did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<CallerIdentity>,
        /// The card serial.
        #[serde(with = "ids::opt")]
        card_serial: Option<CardSerial>,
        /// The card's holder.
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
        /// What was renewed.
        subject: RenewalSubject,
        /// The sponsor who renewed it, when not the holder.
        #[serde(with = "ids::opt")]
        by: Option<HolderUuid>,
        /// What happened.
        outcome: Outcome,
        /// Why, for a refusal or failure.
        reason_code: Option<String>,
    },

    /// A Temporary Access Card was activated for a team member, by a sponsor, with them.
    TacActivated {
        /// The process whose method call did this (from the bus daemon's credentials);
        /// `None` when the card, a timer or the agent itself did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<CallerIdentity>,
        /// The TAC's card serial.
        #[serde(with = "ids::req")]
        tac_serial: CardSerial,
        /// The team member it was activated for: the TAC's holder while in use.
        #[serde(with = "ids::req")]
        holder: HolderUuid,
        /// The sponsor or LSA who activated it.
        #[serde(with = "ids::req")]
        sponsor: HolderUuid,
    },

    /// A TAC was used: the custodian's record of who used it.
    TacUsed {
        /// The process whose method call did this (from the bus daemon's credentials);
        /// `None` when the card, a timer or the agent itself did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<CallerIdentity>,
        /// The TAC's card serial.
        #[serde(with = "ids::req")]
        tac_serial: CardSerial,
        /// Who used it.
        #[serde(with = "ids::req")]
        holder: HolderUuid,
        /// The ODS code of the pharmacy where it was used, when known.
        ods: Option<String>,
    },

    /// A TAC was returned to blank (the permanent card arrived).
    TacReturned {
        /// The process whose method call did this (from the bus daemon's credentials);
        /// `None` when the card, a timer or the agent itself did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<CallerIdentity>,
        /// The TAC's card serial.
        #[serde(with = "ids::req")]
        tac_serial: CardSerial,
        /// The last team member it was activated for.
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
        /// The sponsor or LSA who returned it.
        #[serde(with = "ids::opt")]
        sponsor: Option<HolderUuid>,
    },

    /// The agent started.
    DaemonStarted {
        /// The agent's version.
        version: String,
    },

    /// The agent stopped in an orderly way (a SIGKILL leaves no such entry: its absence before
    /// the next `DaemonStarted` is itself evidence).
    DaemonStopped {
        /// Why (`shutdown`, `restart`, `upgrade`).
        reason: String,
    },

    /// The log discarded a torn final line on open (a write interrupted by a crash, never
    /// acknowledged). The bytes are kept in the sidecar file `<log>.torn`.
    TornTailDiscarded {
        /// Where the torn bytes started in the log.
        offset: u64,
        /// How many bytes were discarded.
        length: u64,
        /// SHA-256 of the discarded bytes, hex, matching the sidecar's copy.
        sha256: String,
    },

    /// Retention is about to remove the oldest sealed segments: every entry up to and
    /// including `through_seq`. Written (and synced) before the files go, so a trail that
    /// starts after seq 1 is explained on the chain itself; the verifier accepts a late start
    /// only with such an entry.
    SegmentsRemoved {
        /// The last sequence number removed.
        through_seq: u64,
        /// That entry's hash, hex: where the kept trail's first `prev` points.
        through_hash: String,
        /// How many segment files are removed.
        segments: u64,
        /// The retention rule: segments whose last entry is older than this many days.
        keep_days: u32,
    },

    /// A fault, with what the service desk asks for: who, which reader, and the error message.
    Fault {
        /// The holder, when known.
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
        /// The card serial, when known.
        #[serde(with = "ids::opt")]
        card_serial: Option<CardSerial>,
        /// The reader, when the fault concerns one.
        reader: Option<String>,
        /// The component (`reader`, `card`, `endpoint`, `policy`, `audit`).
        component: String,
        /// A stable error code (a status word, an error variant name).
        code: String,
        /// The message the user saw.
        message: String,
    },

    /// A free-text note for support ("steps taken"). Free text cannot be policed: callers must
    /// never put a passcode in one.
    Note {
        /// The holder it concerns, when any.
        #[serde(with = "ids::opt")]
        holder: Option<HolderUuid>,
        /// Who wrote it (an operator account, a tool name).
        author: Option<String>,
        /// The note.
        text: String,
    },
}

impl AuditEvent {
    /// The card holder this entry is attributable to, when known. For TAC events, the team
    /// member using the TAC.
    pub fn holder(&self) -> Option<&HolderUuid> {
        match self {
            AuditEvent::CardInserted { holder, .. }
            | AuditEvent::CardRemoved { holder, .. }
            | AuditEvent::PasscodeAttempt { holder, .. }
            | AuditEvent::Lockout { holder, .. }
            | AuditEvent::AuthorisationDecision { holder, .. }
            | AuditEvent::WebSignIn { holder, .. }
            | AuditEvent::UnlockRequested { holder, .. }
            | AuditEvent::UnlockCompleted { holder, .. }
            | AuditEvent::Renewal { holder, .. }
            | AuditEvent::TacReturned { holder, .. }
            | AuditEvent::Fault { holder, .. }
            | AuditEvent::Note { holder, .. } => holder.as_ref(),
            AuditEvent::SessionStarted { holder, .. }
            | AuditEvent::SessionEnded { holder, .. }
            | AuditEvent::RoleSelected { holder, .. }
            | AuditEvent::TacActivated { holder, .. }
            | AuditEvent::TacUsed { holder, .. } => Some(holder),
            AuditEvent::DaemonStarted { .. }
            | AuditEvent::DaemonStopped { .. }
            | AuditEvent::TornTailDiscarded { .. }
            | AuditEvent::SegmentsRemoved { .. } => None,
        }
    }

    /// The `"kind"` tag this event is written with, for filters and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::CardInserted { .. } => "card_inserted",
            AuditEvent::CardRemoved { .. } => "card_removed",
            AuditEvent::PasscodeAttempt { .. } => "passcode_attempt",
            AuditEvent::Lockout { .. } => "lockout",
            AuditEvent::SessionStarted { .. } => "session_started",
            AuditEvent::SessionEnded { .. } => "session_ended",
            AuditEvent::RoleSelected { .. } => "role_selected",
            AuditEvent::AuthorisationDecision { .. } => "authorisation_decision",
            AuditEvent::WebSignIn { .. } => "web_sign_in",
            AuditEvent::UnlockRequested { .. } => "unlock_requested",
            AuditEvent::UnlockCompleted { .. } => "unlock_completed",
            AuditEvent::Renewal { .. } => "renewal",
            AuditEvent::TacActivated { .. } => "tac_activated",
            AuditEvent::TacUsed { .. } => "tac_used",
            AuditEvent::TacReturned { .. } => "tac_returned",
            AuditEvent::DaemonStarted { .. } => "daemon_started",
            AuditEvent::DaemonStopped { .. } => "daemon_stopped",
            AuditEvent::TornTailDiscarded { .. } => "torn_tail_discarded",
            AuditEvent::SegmentsRemoved { .. } => "segments_removed",
            AuditEvent::Fault { .. } => "fault",
            AuditEvent::Note { .. } => "note",
        }
    }
}

/// Who asked for a gate decision: the credentials of the D-Bus message's sender (from the bus,
/// `GetConnectionCredentials`), never the agent's own process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerIdentity {
    /// The caller's Unix user id.
    pub uid: u32,
    /// The caller's process id at the time of the call.
    pub pid: u32,
    /// The caller's executable (`/proc/<pid>/exe`), when it could be read; `None` if the
    /// process had already gone.
    pub executable: Option<String>,
}

/// How a passcode reached the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntryMethod {
    /// Typed on the workstation and sent by the agent.
    HostKeyboard,
    /// Typed on the reader's own keypad (PC/SC part 10 verify): the host never saw it.
    ReaderKeypad,
}

/// What became of a passcode attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PasscodeOutcome {
    /// The card accepted it.
    Accepted,
    /// The card rejected it and counted a try.
    Wrong,
    /// The card answered that it is blocked.
    CardBlocked,
    /// The agent refused to send it: wrong shape (not 4 to 8 characters). No try used.
    RefusedShape,
    /// The agent refused to re-send the value that just failed. No try used.
    RefusedRepeat,
    /// The agent refused to spend the final try without the holder's explicit choice.
    RefusedFinalTry,
    /// The holder cancelled (on a keypad or in the prompt).
    Cancelled,
    /// The reader's keypad timed out.
    TimedOut,
}

/// Why a card is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LockoutCause {
    /// The third consecutive wrong passcode blocked it here.
    WrongPasscodes,
    /// It was already blocked when inserted.
    FoundBlocked,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionEndReason {
    /// The card left the reader.
    CardRemoved,
    /// The holder logged out.
    Logout,
    /// The workstation was idle too long.
    IdleTimeout,
    /// The session ticket expired.
    TicketExpired,
    /// The certificate was found revoked.
    Revoked,
    /// The endpoint ended it.
    EndpointEnded,
    /// The agent is stopping.
    AgentStopping,
    /// An error (recorded separately as a `Fault`).
    Error,
    /// Another card was read while the session's card was away (`session-lock`,
    /// `mobility`): a swapped card never inherits a session.
    CardSwapped,
    /// The workstation was idle with the card left in the reader, and the configuration ends
    /// the session then.
    CardLeftInReader,
    /// `mobility`: the time allowed without the card ran out.
    ReauthenticationDue,
}

/// A role profile: the role and the organisation (ODS code) it is held at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleProfile {
    /// The role code or name as the session ticket carries it.
    pub role: String,
    /// The ODS code (`FFFFF` for the generic locum organisation).
    pub ods: String,
}

/// The unlock paths, in the order the brief lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UnlockPath {
    /// Self-service (the holder registered an email, mobile or photo beforehand).
    SelfService,
    /// A Sponsor or Local Smartcard Administrator at the pharmacy.
    Sponsor,
    /// The Registration Authority.
    RegistrationAuthority,
}

/// The end of an unlock or renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Done.
    Succeeded,
    /// Not allowed (a rule refused it; `reason_code` says which).
    Refused,
    /// Tried and failed (card, endpoint or reader error).
    Failed,
}

/// What a renewal renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RenewalSubject {
    /// The card's certificates.
    Certificates,
    /// The holder's passcode (changed after an expiry prompt). The values are never recorded.
    Passcode,
}

/// Serde for the PIV crate's validated identifiers, which have no serde of their own: written
/// as plain strings, checked again on reading so a tampered value cannot pass for a UUID.
mod ids {
    use super::{CardSerial, HolderUuid};

    /// A validated textual identifier.
    pub(super) trait TextId: Sized {
        fn text(&self) -> &str;
        fn parse(text: &str) -> Result<Self, String>;
    }

    impl TextId for HolderUuid {
        fn text(&self) -> &str {
            self.as_str()
        }
        fn parse(text: &str) -> Result<Self, String> {
            HolderUuid::new(text).map_err(|e| e.to_string())
        }
    }

    impl TextId for CardSerial {
        fn text(&self) -> &str {
            self.as_str()
        }
        fn parse(text: &str) -> Result<Self, String> {
            CardSerial::new(text).map_err(|e| e.to_string())
        }
    }

    /// A required identifier.
    pub(super) mod req {
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        use super::TextId;

        pub(crate) fn serialize<T: TextId, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(v.text())
        }

        pub(crate) fn deserialize<'de, T: TextId, D: Deserializer<'de>>(
            d: D,
        ) -> Result<T, D::Error> {
            let text = String::deserialize(d)?;
            T::parse(&text).map_err(D::Error::custom)
        }
    }

    /// An optional identifier (`null` when unknown).
    pub(super) mod opt {
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        use super::TextId;

        pub(crate) fn serialize<T: TextId, S: Serializer>(
            v: &Option<T>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(v.text()),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, T: TextId, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<T>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(text) => T::parse(&text).map(Some).map_err(D::Error::custom),
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn uuid(s: &str) -> HolderUuid {
        HolderUuid::new(s).expect("uuid")
    }

    fn serial(s: &str) -> CardSerial {
        CardSerial::new(s).expect("serial")
    }

    /// One of every variant, every optional field filled (so every key is serialized).
    pub(crate) fn every_kind() -> Vec<AuditEvent> {
        let h = || Some(uuid("123456789012"));
        let s = || Some(serial("0412345678"));
        let r = || "HID Global OMNIKEY 3x21 Smart Card Reader 00 00".to_owned();
        let c = || {
            Some(CallerIdentity {
                uid: 1000,
                pid: 4242,
                executable: Some("/opt/pmr/bin/pmr".into()),
            })
        };
        vec![
            AuditEvent::CardInserted {
                reader: r(),
                card_serial: s(),
                holder: h(),
            },
            AuditEvent::CardRemoved {
                reader: r(),
                card_serial: s(),
                holder: h(),
            },
            AuditEvent::PasscodeAttempt {
                caller: c(),
                reader: r(),
                card_serial: s(),
                holder: h(),
                entry_method: EntryMethod::ReaderKeypad,
                outcome: PasscodeOutcome::Wrong,
                tries_left: Some(2),
            },
            AuditEvent::Lockout {
                reader: r(),
                card_serial: s(),
                holder: h(),
                cause: LockoutCause::WrongPasscodes,
            },
            AuditEvent::SessionStarted {
                caller: c(),
                card_serial: serial("0412345678"),
                holder: uuid("123456789012"),
                session_generation: 7,
            },
            AuditEvent::SessionEnded {
                caller: c(),
                card_serial: serial("0412345678"),
                holder: uuid("123456789012"),
                session_generation: 7,
                reason: SessionEndReason::CardRemoved,
            },
            AuditEvent::RoleSelected {
                caller: c(),
                holder: uuid("123456789012"),
                session_generation: 7,
                profile: RoleProfile {
                    role: "R8000".into(),
                    ods: "FA123".into(),
                },
                previous: Some(RoleProfile {
                    role: "R8003".into(),
                    ods: "FFFFF".into(),
                }),
            },
            AuditEvent::AuthorisationDecision {
                holder: h(),
                caller: CallerIdentity {
                    uid: 1000,
                    pid: 4242,
                    executable: Some("/opt/pmr/bin/pmr".into()),
                },
                action: "eps.download".into(),
                ods: Some("FA123".into()),
                allowed: true,
                reason_code: "allowed".into(),
                session_generation: Some(7),
                origin: Some("https://pmr.example.nhs.uk".into()),
            },
            AuditEvent::WebSignIn {
                caller: CallerIdentity {
                    uid: 1000,
                    pid: 4243,
                    executable: Some("/usr/bin/cardgate-web-bridge".into()),
                },
                origin: "https://pmr.example.nhs.uk".into(),
                holder: h(),
                outcome: "signed".into(),
            },
            AuditEvent::UnlockRequested {
                caller: c(),
                card_serial: s(),
                holder: h(),
                path: UnlockPath::Sponsor,
                by: Some(uuid("999999999999")),
            },
            AuditEvent::UnlockCompleted {
                caller: c(),
                card_serial: s(),
                holder: h(),
                path: UnlockPath::Sponsor,
                by: Some(uuid("999999999999")),
                outcome: Outcome::Succeeded,
                reason_code: Some("ok".into()),
            },
            AuditEvent::Renewal {
                caller: c(),
                card_serial: s(),
                holder: h(),
                subject: RenewalSubject::Passcode,
                by: Some(uuid("999999999999")),
                outcome: Outcome::Succeeded,
                reason_code: Some("ok".into()),
            },
            AuditEvent::TacActivated {
                caller: c(),
                tac_serial: serial("0799999999"),
                holder: uuid("123456789012"),
                sponsor: uuid("999999999999"),
            },
            AuditEvent::TacUsed {
                caller: c(),
                tac_serial: serial("0799999999"),
                holder: uuid("123456789012"),
                ods: Some("FA123".into()),
            },
            AuditEvent::TacReturned {
                caller: c(),
                tac_serial: serial("0799999999"),
                holder: h(),
                sponsor: Some(uuid("999999999999")),
            },
            AuditEvent::DaemonStarted {
                version: "0.1.0".into(),
            },
            AuditEvent::DaemonStopped {
                reason: "shutdown".into(),
            },
            AuditEvent::TornTailDiscarded {
                offset: 10,
                length: 5,
                sha256: "00".repeat(32),
            },
            AuditEvent::SegmentsRemoved {
                through_seq: 9,
                through_hash: "00".repeat(32),
                segments: 1,
                keep_days: 400,
            },
            AuditEvent::Fault {
                holder: h(),
                card_serial: s(),
                reader: Some(r()),
                component: "card".into(),
                code: "6983".into(),
                message: "The card is locked.".into(),
            },
            AuditEvent::Note {
                holder: h(),
                author: Some("servicedesk".into()),
                text: "reseated reader".into(),
            },
        ]
    }

    /// Compile-time reminder: a new variant fails to build here until it is added to
    /// [`every_kind`] (the match has no wildcard).
    fn variant_index(e: &AuditEvent) -> usize {
        match e {
            AuditEvent::CardInserted { .. } => 0,
            AuditEvent::CardRemoved { .. } => 1,
            AuditEvent::PasscodeAttempt { .. } => 2,
            AuditEvent::Lockout { .. } => 3,
            AuditEvent::SessionStarted { .. } => 4,
            AuditEvent::SessionEnded { .. } => 5,
            AuditEvent::RoleSelected { .. } => 6,
            AuditEvent::AuthorisationDecision { .. } => 7,
            AuditEvent::UnlockRequested { .. } => 8,
            AuditEvent::UnlockCompleted { .. } => 9,
            AuditEvent::Renewal { .. } => 10,
            AuditEvent::TacActivated { .. } => 11,
            AuditEvent::TacUsed { .. } => 12,
            AuditEvent::TacReturned { .. } => 13,
            AuditEvent::DaemonStarted { .. } => 14,
            AuditEvent::DaemonStopped { .. } => 15,
            AuditEvent::TornTailDiscarded { .. } => 16,
            AuditEvent::Fault { .. } => 17,
            AuditEvent::Note { .. } => 18,
            AuditEvent::SegmentsRemoved { .. } => 19,
            AuditEvent::WebSignIn { .. } => 20,
        }
    }
    const VARIANTS: usize = 21;

    /// Keys that look like they could carry a secret typed by the holder.
    fn secret_looking(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        ["pin", "passcode", "puk", "unlock_code"]
            .iter()
            .any(|bad| k.contains(bad))
    }

    fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    out.push(k.clone());
                    keys(v, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_caller_is_recorded_when_a_method_acted_and_older_entries_still_read() {
        let by_card = AuditEvent::SessionEnded {
            caller: None,
            card_serial: serial("0412345678"),
            holder: uuid("123456789012"),
            session_generation: 7,
            reason: SessionEndReason::CardRemoved,
        };
        let json = serde_json::to_string(&by_card).unwrap();
        // An entry written before callers were recorded has the same form and reads the same.
        assert!(!json.contains("caller"), "{json}");
        assert_eq!(serde_json::from_str::<AuditEvent>(&json).unwrap(), by_card);
        let logged_out = AuditEvent::SessionEnded {
            caller: Some(CallerIdentity {
                uid: 1000,
                pid: 4242,
                executable: Some("/opt/pmr/bin/pmr".into()),
            }),
            card_serial: serial("0412345678"),
            holder: uuid("123456789012"),
            session_generation: 7,
            reason: SessionEndReason::Logout,
        };
        let json = serde_json::to_string(&logged_out).unwrap();
        assert!(
            json.contains(r#""caller":{"uid":1000,"pid":4242"#),
            "{json}"
        );
    }

    #[test]
    fn every_kind_is_covered() {
        let mut seen = [false; VARIANTS];
        for e in every_kind() {
            seen[variant_index(&e)] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }

    #[test]
    fn no_key_could_hold_a_passcode() {
        for event in every_kind() {
            let value = serde_json::to_value(&event).expect("serialize");
            let mut found = Vec::new();
            keys(&value, &mut found);
            assert!(found.len() > 1, "{event:?}");
            let bad: Vec<_> = found.iter().filter(|k| secret_looking(k)).collect();
            assert!(bad.is_empty(), "{}: {bad:?}", event.kind());
        }
    }

    #[test]
    fn the_key_check_itself_catches_bad_keys() {
        for bad in [
            "pin",
            "PIN_pad",
            "newPasscode",
            "puk",
            "Unlock_Code",
            "spine_pin",
        ] {
            assert!(secret_looking(bad), "{bad}");
        }
        let mut found = Vec::new();
        keys(
            &serde_json::json!({"a": {"b": [{"old_pin": 1}]}}),
            &mut found,
        );
        assert!(found.iter().any(|k| secret_looking(k)));
    }

    #[test]
    fn round_trips_and_kind_tag_matches() {
        for event in every_kind() {
            let json = serde_json::to_string(&event).expect("serialize");
            let value: serde_json::Value = serde_json::from_str(&json).expect("json");
            assert_eq!(value["kind"], event.kind(), "{json}");
            let back: AuditEvent = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, event);
        }
    }

    #[test]
    fn every_card_time_event_names_the_holder() {
        for event in every_kind() {
            let expect_holder = !matches!(
                event,
                AuditEvent::DaemonStarted { .. }
                    | AuditEvent::DaemonStopped { .. }
                    | AuditEvent::TornTailDiscarded { .. }
                    | AuditEvent::SegmentsRemoved { .. }
            );
            assert_eq!(event.holder().is_some(), expect_holder, "{}", event.kind());
        }
    }

    #[test]
    fn a_tampered_holder_uuid_does_not_deserialize() {
        let json = r#"{"kind":"tac_used","tac_serial":"0799999999","holder":"12345","ods":null}"#;
        assert!(serde_json::from_str::<AuditEvent>(json).is_err());
        let json =
            r#"{"kind":"tac_used","tac_serial":"0799999999","holder":"123456789012","ods":null}"#;
        assert!(serde_json::from_str::<AuditEvent>(json).is_ok());
    }
}
