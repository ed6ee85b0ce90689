//! The D-Bus interface `org.cardgate.Agent1` (`docs/ipc.md`), shared by the daemon that
//! serves it and by every client (the `cardgate` CLI, the PAM module, pharmacy software
//! written in Rust): the bus names, the argument and return types, the named errors and the
//! client proxy [`AgentProxy`].
//!
//! Why a crate of its own: the contract must be one piece of code, so a client and the daemon
//! can never disagree on a signature or an error name (pop-os/system76-power's `zbus/`).
//!
//! ```no_run
//! # async fn demo() -> zbus::Result<()> {
//! let bus = zbus::Connection::system().await?;
//! let agent = cardgate_ipc::AgentProxy::new(&bus).await?;
//! let answer = agent.authorise("download", "FA123").await?;
//! if !answer.allowed {
//!     println!("{}: {}", answer.reason, answer.message);
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod demo;
mod error;
mod login;
mod proxy;
mod staff;
mod types;
mod web;
mod workstation;

pub use demo::{DEMO_OBJECT_PATH, DEMO1_XML, DemoProxy};
pub use error::AgentError;
pub use login::*;
pub use proxy::*;
pub use staff::*;
pub use types::{
    AgentState, AuthoriseAnswer, ReaderInfo, RoleProfileInfo, SelectedRoleProfile,
    SessionEndReason, Ticket, property,
};
pub use web::*;
pub use workstation::*;

/// The actions `Authorise` knows, from the policy crate, which defines them once:
/// `Action::ALL` lists them and [`Action::name`] is each one's spelling on the bus.
pub use cardgate_policy::Action;

/// The introspection XML of `org.cardgate.Agent1`: the contract, as installed in
/// `/usr/share/dbus-1/interfaces/`. The e2e suite fails when the running daemon's
/// introspection differs from it.
pub const AGENT1_XML: &str = include_str!("../interfaces/org.cardgate.Agent1.xml");
/// The introspection XML of `org.cardgate.Workstation1` (for the PAM module).
pub const WORKSTATION1_XML: &str = include_str!("../interfaces/org.cardgate.Workstation1.xml");

/// The well-known bus name the daemon owns.
pub const BUS_NAME: &str = "org.cardgate.Agent";
/// The object path of the one agent object.
pub const OBJECT_PATH: &str = "/org/cardgate/Agent";
/// The interface name; an incompatible change gets `Agent2`, never a silent change here.
pub const INTERFACE: &str = "org.cardgate.Agent1";
/// The prefix of every error name the daemon replies with (`org.cardgate.Agent1.Error.NoCard`).
pub const ERROR_PREFIX: &str = "org.cardgate.Agent1.Error";
/// The Unix group whose members may call the restricted methods (`Login`, `LoginWithPinPad`,
/// `ChangePasscode`, `GetTicket`); the shipped bus policy says the same.
pub const RESTRICTED_GROUP: &str = "cardgate";
