//! The gate policy of the cardgate agent: the pure answer to "may this workstation do X, for
//! this pharmacy, right now?", which PMR software asks over D-Bus before every EPS or SCR
//! action.
//!
//! Pure: no I/O, no clock, no async. The daemon passes a [`SessionView`] (a snapshot of the
//! card, certificate, login, session and selected role), the [`PolicyConfig`] from its
//! configuration file, the [`Action`] and the requested [`OdsCode`]; [`decide`] returns a
//! [`Decision`]: allowed or not, a [`Reason`] with a stable machine-readable code and a
//! sentence for staff, and the [`Generation`] it was made under. When the card leaves the
//! reader the daemon bumps the generation, and every earlier decision stops being
//! [current](Decision::is_current).
//!
//! # Reference for the daemon and PMR integrators
//!
//! **Actions** (kebab-case on D-Bus and in configuration) and the activity each needs by
//! default (`docs/spine-protocol.md`):
//!
//! | Action | Default activity |
//! | --- | --- |
//! | `nominate-set` | `eps.nominate` |
//! | `nominate-change` | `eps.nominate` |
//! | `nominate-delete` | `eps.nominate` |
//! | `download` | `eps.download` |
//! | `return` | `eps.return` |
//! | `dispense-notification` | `eps.dispense-notify` |
//! | `claim` | `eps.claim` |
//! | `view-scr` | `scr.view` |
//!
//! **Reasons**, in the order they are checked (see [`decide`] for why this order):
//! `no-card`, `card-locked`, `certificate-revoked`, `certificate-expired`,
//! `certificate-not-yet-valid`, `certificate-untrusted`, `certificate-revocation-unknown`,
//! `certificate-unchecked`, `not-logged-in`, `session-expired`, `ods-not-configured`,
//! `no-role-selected`, `locum-not-accepted`, `wrong-organisation`, `missing-activity`,
//! `endpoint-unavailable`; and `allowed`. A client meeting a code it does not know must treat
//! it as a refusal.
//!
//! **ODS rules**: the requested code must be one of `workstation_ods_codes` (a pharmacy in the
//! middle of an ODS code change lists both, and requests for either are served) *and* the
//! selected role profile must be at that code, or be a locum profile at `FFFFF` while
//! `accept_locum_profiles` is on. The configuration format is on [`PolicyConfig`].
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeSet;
//! use cardgate_policy::{
//!     Action, Activity, CardState, CertificateStatus, Generation, HolderUuid, OdsCode,
//!     PolicyConfig, Reason, RoleProfileId, RoleProfileView, SessionView, decide,
//! };
//!
//! # fn main() -> Result<(), cardgate_policy::PolicyError> {
//! let pharmacy = OdsCode::new("FA123")?;
//! let config = PolicyConfig::new([pharmacy.clone()], true)?;
//!
//! let mut view = SessionView {
//!     card: CardState::Present,
//!     certificate: CertificateStatus::Usable,
//!     logged_in: true,
//!     session_expired: false,
//!     endpoint_reachable: true,
//!     selected_role: Some(RoleProfileView {
//!         id: RoleProfileId::new("RP-1001")?,
//!         ods_code: pharmacy.clone(),
//!         activities: BTreeSet::from([Activity::EPS_DOWNLOAD, Activity::EPS_CLAIM]),
//!     }),
//!     holder: Some(HolderUuid::new("555000111222")?),
//!     generation: Generation::new(7),
//! };
//!
//! let action: Action = "download".parse()?;
//! let yes = decide(&config, &view, action, &pharmacy);
//! assert!(yes.is_allowed());
//! assert_eq!(yes.reason().code(), "allowed");
//!
//! // The role cannot view the Summary Care Record.
//! let no = decide(&config, &view, Action::ViewScr, &pharmacy);
//! assert_eq!(no.reason(), Reason::MissingActivity);
//!
//! // The card leaves the reader: the daemon bumps the generation, the earlier "yes" is void,
//! // and asking again gives "no-card" whatever else the snapshot still says.
//! view.card = CardState::Absent;
//! view.generation = view.generation.next();
//! assert!(!yes.is_current(view.generation));
//! let gone = decide(&config, &view, action, &pharmacy);
//! assert_eq!(gone.reason().code(), "no-card");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod action;
mod config;
mod decide;
mod error;
mod ids;
mod view;

pub use action::Action;
pub use config::PolicyConfig;
pub use decide::{Decision, Reason, decide};
pub use error::PolicyError;
pub use ids::{Activity, Generation, HolderUuid, OdsCode, RoleProfileId};
pub use view::{CardState, CertificateStatus, RoleProfileView, SessionView};
