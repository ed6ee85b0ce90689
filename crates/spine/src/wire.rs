//! The wire types of the Spine-like protocol (`docs/spine-protocol.md`, version 1): every
//! request and response body, the error body and its codes, and the paths.
//!
//! Both sides use these types (the agent's client and `spine-sim`), so the JSON they produce
//! is the contract; the tests at the bottom pin it to the document's examples. Secrets on the
//! wire (bearer tokens, unlock codes, one-time codes) are [`Secret`]s: zeroized on drop and
//! redacted in `Debug`, so a `tracing::debug!(?session)` can never leak one.
//!
//! Binary values (challenges, CMS, CSRs, certificates) are standard base64 with padding;
//! times are RFC 3339 in UTC.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Paths of the protocol. Templates use axum 0.8's `{name}` syntax so the server can route on
/// them as they are; the client fills them with the `*_path` functions.
pub mod paths {
    /// Mode A, step 1: get a challenge (`POST`, body `{}`).
    pub const AUTH_ACTIVATE: &str = "/login/authactivate";
    /// Mode A, step 2: send the card's CMS signature over the challenge (`POST`).
    pub const AUTH_VALIDATE: &str = "/login/authvalidate";
    /// Mode B login on the mTLS listener (`POST`, body `{}`).
    pub const SESSIONS: &str = "/v1/sessions";
    /// One session: `GET` (read), `DELETE` (logout). Template.
    pub const SESSION: &str = "/v1/sessions/{id}";
    /// Select the session's role profile (`PUT`). Template.
    pub const SESSION_ROLE: &str = "/v1/sessions/{id}/role";
    /// The workstation's audit chain head at this log-in (`PUT`, `204`). Template.
    pub const SESSION_AUDIT_ANCHOR: &str = "/v1/sessions/{id}/audit-anchor";
    /// "Is this token active?" for applications (`POST`, no bearer).
    pub const INTROSPECT: &str = "/v1/tokens/introspect";
    /// The card CA's current CRL (`GET`, DER).
    pub const CRL: &str = "/v1/crl";
    /// Certificate renewal from a CSR made on the card (`POST`, bearer).
    pub const RENEW: &str = "/v1/certificates/renew";
    /// Self-service unlock, step 1 (`POST`, no bearer: the holder's card is blocked).
    pub const SELF_SERVICE_UNLOCK: &str = "/v1/unlock/self-service";
    /// Self-service unlock, step 2 (`POST`). Template.
    pub const SELF_SERVICE_CONFIRM: &str = "/v1/unlock/self-service/{request_id}/confirm";
    /// Sponsor/LSA unlock of someone else's card (`POST`, bearer with `admin.unlock`).
    pub const SPONSOR_UNLOCK: &str = "/v1/unlock/sponsor";
    /// A TAC's record (`GET`, bearer with `admin.tac`). Template.
    pub const TAC: &str = "/v1/tac/{tac_serial}";
    /// Activate a blank TAC for a holder (`POST`). Template.
    pub const TAC_ACTIVATE: &str = "/v1/tac/{tac_serial}/activate";
    /// Record who used a TAC and when (`POST`). Template.
    pub const TAC_USAGE: &str = "/v1/tac/{tac_serial}/usage";
    /// Return a TAC to blank (`POST`). Template.
    pub const TAC_RETURN: &str = "/v1/tac/{tac_serial}/return";

    /// [`SESSION`] for one session id.
    pub fn session_path(id: &str) -> String {
        format!("/v1/sessions/{id}")
    }
    /// [`SESSION_ROLE`] for one session id.
    pub fn session_role_path(id: &str) -> String {
        format!("/v1/sessions/{id}/role")
    }
    /// [`SESSION_AUDIT_ANCHOR`] for one session id.
    pub fn session_audit_anchor_path(id: &str) -> String {
        format!("/v1/sessions/{id}/audit-anchor")
    }
    /// [`SELF_SERVICE_CONFIRM`] for one request id.
    pub fn self_service_confirm_path(request_id: &str) -> String {
        format!("/v1/unlock/self-service/{request_id}/confirm")
    }
    /// [`TAC`] for one TAC serial.
    pub fn tac_path(tac_serial: &str) -> String {
        format!("/v1/tac/{tac_serial}")
    }
    /// [`TAC_ACTIVATE`] for one TAC serial.
    pub fn tac_activate_path(tac_serial: &str) -> String {
        format!("/v1/tac/{tac_serial}/activate")
    }
    /// [`TAC_USAGE`] for one TAC serial.
    pub fn tac_usage_path(tac_serial: &str) -> String {
        format!("/v1/tac/{tac_serial}/usage")
    }
    /// [`TAC_RETURN`] for one TAC serial.
    pub fn tac_return_path(tac_serial: &str) -> String {
        format!("/v1/tac/{tac_serial}/return")
    }
}

// Activity names carried in role profiles are strings on the wire, so a newer server can add
// activities an older agent simply does not grant; the ones version 1 defines are
// `cardgate_policy::Activity::KNOWN` (one list, held to docs/spine-protocol.md by the policy
// crate's contract tests).

/// The ODS code of the generic locum organisation: a profile there works at any pharmacy.
pub const LOCUM_ODS_CODE: &str = "FFFFF";

/// The largest request body either side accepts (64 KiB); larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A secret string on the wire: a bearer token, an unlock code or a one-time code.
///
/// Serialises as a plain JSON string (the protocol needs the value), but `Debug` prints
/// `<redacted>` and the memory is zeroized on drop, so logging a request or response struct
/// never leaks it. Read it with [`Secret::expose`], at the one place that needs it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The value, for the one place that must use it (a header, the card's RESET RETRY
    /// COUNTER). Never pass it to a log macro.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

/// Standard base64 (with padding) for `Vec<u8>` fields.
mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("not standard base64: {e}")))
    }
}

/// An empty JSON object `{}`: the body of `POST /login/authactivate` and `POST /v1/sessions`.
/// Unknown fields are ignored, so a later version can add options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Mode A, step 1 answer: a fresh challenge the card must sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateResponse {
    /// Names the challenge in the validate call.
    pub challenge_id: String,
    /// 32 random bytes (base64 on the wire): the CMS encapsulated content must equal them.
    #[serde(with = "b64")]
    pub challenge: Vec<u8>,
    /// After this the challenge is refused (`challenge_expired`); it lives 60 s.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Mode A, step 2: the card's signature over the challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateRequest {
    /// The id from [`ActivateResponse::challenge_id`].
    pub challenge_id: String,
    /// DER of a CMS `ContentInfo` with attached `SignedData` (base64 on the wire).
    #[serde(with = "b64")]
    pub signed_data: Vec<u8>,
}

/// The head of the workstation's audit chain when the session started (the `session_started`
/// entry's sequence number and hash). The endpoint keeps it, off the workstation, so a trail
/// rewritten there afterwards no longer matches what the endpoint holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditAnchor {
    /// The entry's sequence number.
    pub seq: u64,
    /// The entry's hash, 64 lowercase hex digits.
    pub hash: String,
}

/// One role profile of the holder: a job role at an organisation, with what it permits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleProfile {
    /// Stable id, used to select the profile.
    pub id: String,
    /// The job role, e.g. "Pharmacist", "Dispenser", "Locum Pharmacist".
    pub job_role: String,
    /// ODS code of the organisation (`FFFFF` for the generic locum organisation).
    pub ods_code: String,
    /// The organisation's name, for people choosing a profile.
    pub organisation_name: String,
    /// Activities this profile permits (version 1 defines `cardgate_policy::Activity::KNOWN`).
    pub activities: Vec<String>,
}

/// An authenticated session: the answer to both logins, to role selection and to reading it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session's id (`s-…`), used in paths.
    pub session_id: String,
    /// Opaque bearer token for `Authorization: Bearer`; redacted in `Debug`.
    pub token: Secret,
    /// The holder's 12-digit UUID.
    pub uid: String,
    /// The holder's name, for the screen.
    pub name: String,
    /// Seconds without an authorised call after which the session ends (`session_expired`).
    pub max_idle_time: u64,
    /// Where to `DELETE` to log out.
    pub logout_url: String,
    /// The authenticating certificate's notAfter, so the agent can prompt for renewal.
    #[serde(with = "time::serde::rfc3339")]
    pub certificate_not_after: OffsetDateTime,
    /// Every role profile the holder has.
    pub role_profiles: Vec<RoleProfile>,
    /// The id of the selected role profile, `null` until one is selected.
    pub selected_role_profile: Option<String>,
    /// When the holder's passcode expires, where the directory sets one; absent otherwise.
    /// The agent warns before it (`PasscodeExpiring`) so the holder changes it in time.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub passcode_expires_at: Option<OffsetDateTime>,
}

/// Body of `PUT /v1/sessions/{id}/role`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectRoleRequest {
    /// One of [`Session::role_profiles`]' ids; else `unknown_role_profile`.
    pub role_profile_id: String,
}

/// Body of `POST /v1/tokens/introspect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntrospectRequest {
    /// The token asked about; redacted in `Debug`.
    pub token: Secret,
}

/// Answer of `POST /v1/tokens/introspect`.
///
/// An enum rather than a struct of options so an inactive answer can carry no holder data:
/// `{"active": false}` says nothing about whose token it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawIntrospect", into = "RawIntrospect")]
pub enum IntrospectResponse {
    /// The token belongs to a live session.
    Active {
        /// The holder's UUID.
        uid: String,
        /// The selected role profile, if any.
        role_profile_id: Option<String>,
        /// The selected role profile's ODS code, if any.
        ods_code: Option<String>,
        /// When the session ends without further activity (introspection is not activity).
        idle_expires_at: OffsetDateTime,
    },
    /// Unknown, logged out or expired: the application must not act on it.
    Inactive,
}

/// The flat JSON shape of [`IntrospectResponse`].
#[derive(Clone, Serialize, Deserialize)]
struct RawIntrospect {
    active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    // Outer `None`: absent (inactive); `Some(None)`: an explicit `null` (active, no profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role_profile_id: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ods_code: Option<Option<String>>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    idle_expires_at: Option<OffsetDateTime>,
}

impl From<IntrospectResponse> for RawIntrospect {
    fn from(value: IntrospectResponse) -> Self {
        match value {
            IntrospectResponse::Active {
                uid,
                role_profile_id,
                ods_code,
                idle_expires_at,
            } => RawIntrospect {
                active: true,
                uid: Some(uid),
                role_profile_id: Some(role_profile_id),
                ods_code: Some(ods_code),
                idle_expires_at: Some(idle_expires_at),
            },
            IntrospectResponse::Inactive => RawIntrospect {
                active: false,
                uid: None,
                role_profile_id: None,
                ods_code: None,
                idle_expires_at: None,
            },
        }
    }
}

impl TryFrom<RawIntrospect> for IntrospectResponse {
    type Error = String;

    fn try_from(raw: RawIntrospect) -> Result<Self, Self::Error> {
        if !raw.active {
            return Ok(IntrospectResponse::Inactive);
        }
        Ok(IntrospectResponse::Active {
            uid: raw.uid.ok_or("an active token's answer has no uid")?,
            role_profile_id: raw.role_profile_id.flatten(),
            ods_code: raw.ods_code.flatten(),
            idle_expires_at: raw
                .idle_expires_at
                .ok_or("an active token's answer has no idle_expires_at")?,
        })
    }
}

/// Body of `POST /v1/certificates/renew`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// DER PKCS#10 CSR signed by the new key (base64 on the wire).
    #[serde(with = "b64")]
    pub csr: Vec<u8>,
}

/// Answer of `POST /v1/certificates/renew`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    /// The new certificate (DER, base64 on the wire), same subject as the old one.
    #[serde(with = "b64")]
    pub certificate: Vec<u8>,
}

/// Body of `POST /v1/unlock/self-service`: which blocked card, by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfServiceUnlockRequest {
    /// The holder's UUID (read from the card's certificate).
    pub uid: String,
    /// The card's serial number (from the CHUID).
    pub card_serial: String,
}

/// Answer of `POST /v1/unlock/self-service` (202): a one-time code is on its way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfServiceUnlockStarted {
    /// Names the request in the confirm call.
    pub request_id: String,
    /// Where the code went, masked (`a***@nhs.example`), so the holder knows where to look.
    pub sent_to: String,
}

/// Body of `POST /v1/unlock/self-service/{request_id}/confirm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfServiceUnlockConfirm {
    /// The code the holder received; redacted in `Debug`.
    pub one_time_code: Secret,
}

/// Body of `POST /v1/unlock/sponsor`: the card a Sponsor/LSA unlocks for someone else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SponsorUnlockRequest {
    /// The card holder's UUID; the sponsor's own is refused (`own_card`).
    pub uid: String,
    /// The card's serial number.
    pub card_serial: String,
}

/// The card's unlock code (PUK), released to an authorised reset; redacted in `Debug`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockCodeResponse {
    /// Use at once with RESET RETRY COUNTER; never store or log.
    pub unlock_code: Secret,
}

/// One line of the spine-sim outbox file: the "email or text" carrying a one-time code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// The registered contact it went to (unmasked: this is the holder's inbox).
    pub to: String,
    /// The holder's UUID.
    pub uid: String,
    /// The one-time code; redacted in `Debug`.
    pub one_time_code: Secret,
    /// When it was sent.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Body of `POST /v1/tac/{tac_serial}/activate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TacActivateRequest {
    /// The team member who will use the TAC.
    pub holder_uid: String,
    /// Who keeps the TAC and its register (a name or UUID).
    pub custodian: String,
}

/// Body of `POST /v1/tac/{tac_serial}/usage`, and one entry of [`TacRecord::usage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TacUsageRequest {
    /// Who used the card.
    pub used_by: String,
    /// From when.
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// Until when (not before `from`).
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// A TAC's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TacState {
    /// No holder: it grants nothing.
    Blank,
    /// Activated for a holder.
    Active,
}

/// What happened to a TAC, for [`TacRecord::history`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TacAction {
    /// Activated for a holder.
    Activated,
    /// A usage entry was recorded.
    UsageRecorded,
    /// Returned to blank.
    Returned,
}

/// One audit entry of a TAC: who (the sponsor) did what, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TacEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What.
    pub action: TacAction,
    /// The UUID of the Sponsor/LSA whose session did it.
    pub by: String,
    /// The holder at the time, if any.
    pub holder_uid: Option<String>,
}

/// A Temporary Access Card's record: its state, holder, custodian's register and history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TacRecord {
    /// The TAC's card serial.
    pub tac_serial: String,
    /// Blank or active.
    pub state: TacState,
    /// The current holder (active only).
    pub holder_uid: Option<String>,
    /// The current custodian (active only).
    pub custodian: Option<String>,
    /// The custodian's register of who used it since activation.
    pub usage: Vec<TacUsageRequest>,
    /// Everything done to the card, oldest first; kept across returns.
    pub history: Vec<TacEvent>,
}

/// Error codes of the protocol. Each maps to one HTTP status ([`ErrorCode::http_status`]).
///
/// `Other` keeps an older agent working against a newer server that adds codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The body is not the JSON the endpoint expects (or a path value is malformed).
    MalformedRequest,
    /// The body is larger than [`MAX_BODY_BYTES`].
    BodyTooLarge,
    /// The challenge id was never issued, or was already used.
    UnknownChallenge,
    /// The challenge is older than 60 s.
    ChallengeExpired,
    /// The CMS or CSR signature does not verify, or signs something else.
    BadSignature,
    /// The certificate does not chain to the card CA.
    CertificateUntrusted,
    /// The card was cancelled (on the CRL).
    CertificateRevoked,
    /// The certificate is past its notAfter.
    CertificateExpired,
    /// The certificate is before its notBefore.
    CertificateNotYetValid,
    /// No such holder in the directory.
    UnknownUser,
    /// No such card, or the card is not the named holder's.
    UnknownCard,
    /// Mode B call without a client certificate.
    NoClientCertificate,
    /// Missing, unknown or logged-out bearer token, or another holder's session.
    Unauthorised,
    /// The session ended through inactivity.
    SessionExpired,
    /// The role profile id is not one of the session's.
    UnknownRoleProfile,
    /// The selected role profile does not permit this.
    ForbiddenActivity,
    /// A Sponsor/LSA tried to unlock their own card.
    OwnCard,
    /// Self-service unlock without a registered email, mobile or photo.
    NoRegisteredContact,
    /// Serial beginning 01, 02 or 03: cannot be renewed or unlocked; get a new card.
    OldGenerationCard,
    /// More than 90 days of validity left.
    RenewalNotDue,
    /// Wrong one-time code (three void the request).
    WrongOneTimeCode,
    /// The TAC is blank.
    TacNotActive,
    /// The TAC is already active.
    TacInUse,
    /// The server failed; not the client's fault.
    Internal,
    /// A code this version does not know.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The HTTP status the server answers with this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MalformedRequest => 400,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::UnknownChallenge
            | ErrorCode::ChallengeExpired
            | ErrorCode::BadSignature
            | ErrorCode::CertificateUntrusted
            | ErrorCode::CertificateRevoked
            | ErrorCode::CertificateExpired
            | ErrorCode::CertificateNotYetValid
            | ErrorCode::NoClientCertificate
            | ErrorCode::Unauthorised
            | ErrorCode::SessionExpired
            | ErrorCode::WrongOneTimeCode => 401,
            ErrorCode::ForbiddenActivity | ErrorCode::OwnCard => 403,
            ErrorCode::UnknownUser | ErrorCode::UnknownCard => 404,
            ErrorCode::UnknownRoleProfile
            | ErrorCode::NoRegisteredContact
            | ErrorCode::OldGenerationCard
            | ErrorCode::RenewalNotDue
            | ErrorCode::TacNotActive
            | ErrorCode::TacInUse => 409,
            ErrorCode::Internal | ErrorCode::Other => 500,
        }
    }

    /// The code as it appears on the wire (`"certificate_revoked"`), for logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::UnknownChallenge => "unknown_challenge",
            ErrorCode::ChallengeExpired => "challenge_expired",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::CertificateUntrusted => "certificate_untrusted",
            ErrorCode::CertificateRevoked => "certificate_revoked",
            ErrorCode::CertificateExpired => "certificate_expired",
            ErrorCode::CertificateNotYetValid => "certificate_not_yet_valid",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::UnknownCard => "unknown_card",
            ErrorCode::NoClientCertificate => "no_client_certificate",
            ErrorCode::Unauthorised => "unauthorised",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::UnknownRoleProfile => "unknown_role_profile",
            ErrorCode::ForbiddenActivity => "forbidden_activity",
            ErrorCode::OwnCard => "own_card",
            ErrorCode::NoRegisteredContact => "no_registered_contact",
            ErrorCode::OldGenerationCard => "old_generation_card",
            ErrorCode::RenewalNotDue => "renewal_not_due",
            ErrorCode::WrongOneTimeCode => "wrong_one_time_code",
            ErrorCode::TacNotActive => "tac_not_active",
            ErrorCode::TacInUse => "tac_in_use",
            ErrorCode::Internal => "internal",
            ErrorCode::Other => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for the program.
    pub error: ErrorCode,
    /// What went wrong, for a person (never contains a secret).
    pub message: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use time::macros::datetime;

    /// Serialises `value`, compares it with `expected`, and parses `expected` back to `value`.
    fn round_trip<T>(value: &T, expected: Value)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug,
    {
        assert_eq!(serde_json::to_value(value).unwrap(), expected);
        let back: T = serde_json::from_value(expected).unwrap();
        assert_eq!(&back, value);
    }

    fn profile() -> RoleProfile {
        RoleProfile {
            id: "RP-1001".into(),
            job_role: "Pharmacist".into(),
            ods_code: "FA123".into(),
            organisation_name: "High Street Pharmacy".into(),
            activities: vec!["eps.download".into(), "eps.claim".into()],
        }
    }

    #[test]
    fn activate_response_matches_the_doc() {
        let value = ActivateResponse {
            challenge_id: "c-1".into(),
            challenge: vec![0u8; 32],
            expires_at: datetime!(2026-01-02 03:04:05 UTC),
        };
        round_trip(
            &value,
            json!({"challenge_id": "c-1",
                   "challenge": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                   "expires_at": "2026-01-02T03:04:05Z"}),
        );
    }

    #[test]
    fn validate_request_is_base64_der() {
        round_trip(
            &ValidateRequest {
                challenge_id: "c-1".into(),
                signed_data: vec![0x30, 0x03, 0x02, 0x01, 0x01],
            },
            json!({"challenge_id": "c-1", "signed_data": "MAMCAQE="}),
        );
        let bad = serde_json::from_value::<ValidateRequest>(
            json!({"challenge_id": "c", "signed_data": "!!"}),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn session_matches_the_doc() {
        let session = Session {
            session_id: "s-1".into(),
            token: Secret::new("tok"),
            uid: "555000111222".into(),
            name: "Asha Patel".into(),
            max_idle_time: 900,
            logout_url: "/v1/sessions/s-1".into(),
            certificate_not_after: datetime!(2028-11-22 09:00:00 UTC),
            role_profiles: vec![profile()],
            selected_role_profile: None,
            passcode_expires_at: None,
        };
        round_trip(
            &session,
            json!({
                "session_id": "s-1",
                "token": "tok",
                "uid": "555000111222",
                "name": "Asha Patel",
                "max_idle_time": 900,
                "logout_url": "/v1/sessions/s-1",
                "certificate_not_after": "2028-11-22T09:00:00Z",
                "role_profiles": [
                    {"id": "RP-1001", "job_role": "Pharmacist", "ods_code": "FA123",
                     "organisation_name": "High Street Pharmacy",
                     "activities": ["eps.download", "eps.claim"]}
                ],
                "selected_role_profile": null
            }),
        );
        assert!(!format!("{session:?}").contains("tok\""));
        assert!(format!("{session:?}").contains("<redacted>"));

        // Where the directory sets a passcode expiry, it is one more field.
        let expiring = Session {
            passcode_expires_at: Some(datetime!(2027-01-05 00:00:00 UTC)),
            ..session
        };
        let json = serde_json::to_value(&expiring).unwrap();
        assert_eq!(json["passcode_expires_at"], "2027-01-05T00:00:00Z");
        let back: Session = serde_json::from_value(json).unwrap();
        assert_eq!(back, expiring);
    }

    #[test]
    fn introspect_active_and_inactive_match_the_doc() {
        round_trip(&IntrospectResponse::Inactive, json!({"active": false}));
        round_trip(
            &IntrospectResponse::Active {
                uid: "555000111222".into(),
                role_profile_id: None,
                ods_code: None,
                idle_expires_at: datetime!(2026-01-02 03:04:05 UTC),
            },
            json!({"active": true, "uid": "555000111222", "role_profile_id": null,
                   "ods_code": null, "idle_expires_at": "2026-01-02T03:04:05Z"}),
        );
        round_trip(
            &IntrospectResponse::Active {
                uid: "555000111222".into(),
                role_profile_id: Some("RP-1001".into()),
                ods_code: Some("FA123".into()),
                idle_expires_at: datetime!(2026-01-02 03:04:05 UTC),
            },
            json!({"active": true, "uid": "555000111222", "role_profile_id": "RP-1001",
                   "ods_code": "FA123", "idle_expires_at": "2026-01-02T03:04:05Z"}),
        );
        assert!(serde_json::from_value::<IntrospectResponse>(json!({"active": true})).is_err());
        round_trip(
            &IntrospectRequest {
                token: Secret::new("t"),
            },
            json!({"token": "t"}),
        );
    }

    #[test]
    fn small_bodies_match_the_doc() {
        round_trip(
            &SelectRoleRequest {
                role_profile_id: "RP-1001".into(),
            },
            json!({"role_profile_id": "RP-1001"}),
        );
        round_trip(&RenewRequest { csr: vec![1, 2, 3] }, json!({"csr": "AQID"}));
        round_trip(
            &RenewResponse {
                certificate: vec![1, 2, 3],
            },
            json!({"certificate": "AQID"}),
        );
        round_trip(
            &SelfServiceUnlockRequest {
                uid: "555000111222".into(),
                card_serial: "6516779193".into(),
            },
            json!({"uid": "555000111222", "card_serial": "6516779193"}),
        );
        round_trip(
            &SelfServiceUnlockStarted {
                request_id: "u-1".into(),
                sent_to: "a***@nhs.example".into(),
            },
            json!({"request_id": "u-1", "sent_to": "a***@nhs.example"}),
        );
        round_trip(
            &SelfServiceUnlockConfirm {
                one_time_code: Secret::new("123456"),
            },
            json!({"one_time_code": "123456"}),
        );
        round_trip(
            &SponsorUnlockRequest {
                uid: "555000111222".into(),
                card_serial: "6516779193".into(),
            },
            json!({"uid": "555000111222", "card_serial": "6516779193"}),
        );
        let code = UnlockCodeResponse {
            unlock_code: Secret::new("12345678"),
        };
        round_trip(&code, json!({"unlock_code": "12345678"}));
        assert!(!format!("{code:?}").contains("12345678"));
        round_trip(
            &OutboxMessage {
                to: "asha.patel@nhs.example".into(),
                uid: "555000111222".into(),
                one_time_code: Secret::new("654321"),
                at: datetime!(2026-01-02 03:04:05 UTC),
            },
            json!({"to": "asha.patel@nhs.example", "uid": "555000111222",
                   "one_time_code": "654321", "at": "2026-01-02T03:04:05Z"}),
        );
        round_trip(&Empty {}, json!({}));
    }

    #[test]
    fn tac_bodies_match_the_doc() {
        round_trip(
            &TacActivateRequest {
                holder_uid: "555000333444".into(),
                custodian: "Ben Okafor".into(),
            },
            json!({"holder_uid": "555000333444", "custodian": "Ben Okafor"}),
        );
        let usage = TacUsageRequest {
            used_by: "555000333444".into(),
            from: datetime!(2026-01-02 09:00:00 UTC),
            until: datetime!(2026-01-02 17:30:00 UTC),
        };
        round_trip(
            &usage,
            json!({"used_by": "555000333444", "from": "2026-01-02T09:00:00Z",
                   "until": "2026-01-02T17:30:00Z"}),
        );
        round_trip(
            &TacRecord {
                tac_serial: "9000000001".into(),
                state: TacState::Active,
                holder_uid: Some("555000333444".into()),
                custodian: Some("Ben Okafor".into()),
                usage: vec![usage],
                history: vec![TacEvent {
                    at: datetime!(2026-01-02 08:55:00 UTC),
                    action: TacAction::Activated,
                    by: "555000111222".into(),
                    holder_uid: Some("555000333444".into()),
                }],
            },
            json!({
                "tac_serial": "9000000001", "state": "active",
                "holder_uid": "555000333444", "custodian": "Ben Okafor",
                "usage": [{"used_by": "555000333444", "from": "2026-01-02T09:00:00Z",
                           "until": "2026-01-02T17:30:00Z"}],
                "history": [{"at": "2026-01-02T08:55:00Z", "action": "activated",
                             "by": "555000111222", "holder_uid": "555000333444"}]
            }),
        );
    }

    #[test]
    fn error_codes_are_snake_case_and_unknown_ones_survive() {
        round_trip(
            &ErrorBody {
                error: ErrorCode::CertificateNotYetValid,
                message: "m".into(),
            },
            json!({"error": "certificate_not_yet_valid", "message": "m"}),
        );
        let all = [
            "malformed_request",
            "body_too_large",
            "unknown_challenge",
            "challenge_expired",
            "bad_signature",
            "certificate_untrusted",
            "certificate_revoked",
            "certificate_expired",
            "certificate_not_yet_valid",
            "unknown_user",
            "unknown_card",
            "no_client_certificate",
            "unauthorised",
            "session_expired",
            "unknown_role_profile",
            "forbidden_activity",
            "own_card",
            "no_registered_contact",
            "old_generation_card",
            "renewal_not_due",
            "wrong_one_time_code",
            "tac_not_active",
            "tac_in_use",
            "internal",
        ];
        for name in all {
            let code: ErrorCode = serde_json::from_value(json!(name)).unwrap();
            assert_ne!(code, ErrorCode::Other, "{name}");
            assert_eq!(code.as_str(), name);
            assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
        }
        let future: ErrorCode = serde_json::from_value(json!("quota_exceeded")).unwrap();
        assert_eq!(future, ErrorCode::Other);
        assert_eq!(ErrorCode::BodyTooLarge.http_status(), 413);
        assert_eq!(ErrorCode::MalformedRequest.http_status(), 400);
    }

    #[test]
    fn paths_fill_their_templates() {
        assert_eq!(paths::session_path("s-1"), "/v1/sessions/s-1");
        assert_eq!(
            paths::SESSION.replace("{id}", "s-1"),
            paths::session_path("s-1")
        );
        assert_eq!(
            paths::SELF_SERVICE_CONFIRM.replace("{request_id}", "u"),
            paths::self_service_confirm_path("u")
        );
        assert_eq!(
            paths::TAC_RETURN.replace("{tac_serial}", "9"),
            paths::tac_return_path("9")
        );
    }
}
