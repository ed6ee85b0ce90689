//! The fault suite (issue 8): the agent under card pulls at random points, pcscd crashes,
//! endpoint failures, crowds of D-Bus clients and a full audit disk. Every case checks the
//! same four invariants: no session survives its card; no decision is answered from stale
//! state (an `Authorise` after the card left carries a newer generation and is refused); no
//! passcode try is spent by the agent (the card's own retry counter, read from the card
//! file, is where the test's own attempts left it); no audit entry is lost (the hash chain
//! verifies, and every acknowledged action has its entry).
//!
//! Cases over the in-process virtual reader run in parallel with the lab cases, which take
//! turns on the binary's private pcscd. `FAULTS_SOAK=N` raises the insert/remove cycle count
//! from 1,000 (the pcscd share scales with it); `FAULTS_SEED` repeats a run.
#![allow(clippy::unwrap_used)]

mod bus;
mod clients;
mod crash;
mod cycles;
mod outages;
mod renewal;
mod support;

use std::process::ExitCode;

use cardgate_e2e::{async_lab_trial, async_trial, run_lab_suite};

fn main() -> ExitCode {
    // The SIGKILL case runs the daemon as this binary again, inside the same lab.
    if let Some(code) = crash::daemon_child() {
        return code;
    }
    run_lab_suite(vec![
        async_trial(
            "virtual_reader_card_pulled_at_random_points",
            cycles::virtual_cycles,
        ),
        async_lab_trial("pcscd_card_pulled_mid_apdu", cycles::pcscd_cycles),
        async_lab_trial("pcscd_card_pulled_during_renewal", renewal::renewal_pulls),
        async_lab_trial("pcscd_killed_during_each_operation", outages::pcscd_killed),
        async_lab_trial(
            "daemon_sigkilled_while_auditing_then_restarted",
            crash::sigkill_while_auditing,
        ),
        async_trial(
            "endpoint_down_slow_garbage_wrong_certificate",
            outages::endpoint_faults,
        ),
        async_trial("audit_disk_full_fails_closed", outages::audit_disk_full),
        // The bus restarted: cardgated exits with `BusLost` (systemd restarts it).
        async_trial("dbus_daemon_restarted", bus::dbus_daemon_restarted),
        async_trial(
            "hundred_clients_at_once_and_a_flood",
            clients::crowd_and_flood,
        ),
    ])
}

/// The named D-Bus error of a failed call (`org.cardgate.Agent1.Error.NoCard`), or what
/// succeeded.
pub fn error_name<T: std::fmt::Debug>(result: &zbus::Result<T>) -> String {
    match result {
        Ok(value) => format!("no error (got {value:?})"),
        Err(zbus::Error::MethodError(name, _, _)) => name.to_string(),
        Err(e) => format!("{e}"),
    }
}
