//! The PC/SC lab: a private `pcscd` with the two vsmartcard `vpcd` readers, inside its own
//! mount, network and pid namespaces, so every test binary gets a real PC/SC stack that
//! nothing else on the machine can see and that dies with the binary, even when a test panics
//! or the binary is killed.
//!
//! A lab test binary calls [`enter_lab_namespace`] first thing in `main`, then
//! [`Lab::start`] in each test; [`Lab::insert`] puts any [`cardgate_vcard::Card`] into a
//! reader and returns once pcscd reports it present.

#![forbid(unsafe_code)]

mod error;
mod lab;
mod namespace;
mod packages;
mod probe;

pub use error::LabError;
pub use lab::{Lab, LabOptions, ReaderSlot};
pub use namespace::{LAB_NAMESPACE_ENV, enter_lab_namespace, in_lab_namespace};
pub use packages::{ensure_lab_packages, setup_script};
pub use probe::ProbeCard;
