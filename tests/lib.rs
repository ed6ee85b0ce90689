//! Shared helpers for the end-to-end suites: running a test body against a fresh [`Lab`]
//! (with pcscd's log attached to any failure) and a plain PC/SC client, the kind of program
//! the agent competes with for the card, to check what pcscd really reports.

pub mod bench_table;
pub mod cli_process;
pub mod daemon_harness;
pub mod daemon_process;
pub mod login_requests;
pub mod logind;
pub mod memory_image;
pub mod reader_events;
pub mod tools;

use std::ffi::CString;
use std::process::ExitCode;
use std::time::Duration;

use cardgate_lab::{Lab, ReaderSlot};
use libtest_mimic::{Arguments, Failed, Trial};

/// Every lab suite's `main`: enters the lab's namespace (root, own pcscd) before anything
/// else, then runs `trials` with libtest-mimic, so `cargo test` arguments work as usual.
pub fn run_lab_suite(trials: Vec<Trial>) -> ExitCode {
    cardgate_lab::enter_lab_namespace();
    let args = Arguments::from_args();
    libtest_mimic::run(&args, trials).exit_code()
}

/// The `main` of a suite whose binary is also re-executed as the CLI
/// ([`cli_process::run_if_cli`]): the CLI when it is that, else the suite.
pub fn run_cli_or_lab_suite(trials: impl FnOnce() -> Vec<Trial>) -> ExitCode {
    match cli_process::run_if_cli() {
        Some(code) => code,
        None => run_lab_suite(trials()),
    }
}

/// A multi-threaded tokio runtime (one worker per core) for a test body that talks to the
/// daemon or the bus.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failed> {
    runtime_builder().build().map_err(runtime_failed)
}

/// As [`runtime`] with exactly `workers` worker threads, for the bodies whose timing was
/// measured with a fixed number.
pub fn runtime_with_workers(workers: usize) -> Result<tokio::runtime::Runtime, Failed> {
    runtime_builder()
        .worker_threads(workers)
        .build()
        .map_err(runtime_failed)
}

fn runtime_builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    builder
}

fn runtime_failed(e: std::io::Error) -> Failed {
    Failed::from(format!("runtime: {e}"))
}

/// Runs `body` to its end on a fresh [`runtime`]: a synchronous test body's way into async
/// code.
pub fn block_on(body: impl std::future::Future<Output = Result<(), Failed>>) -> Result<(), Failed> {
    runtime()?.block_on(body)
}

/// A libtest-mimic test whose async body needs no lab (the in-process virtual reader, the
/// demo), on a fresh [`runtime`].
pub fn async_trial(
    name: &str,
    body: impl AsyncFnOnce() -> Result<(), Failed> + Send + 'static,
) -> Trial {
    Trial::test(name, move || runtime()?.block_on(body()))
}

/// A [`lab_trial`] whose body is async: it runs on a fresh [`runtime`] with the lab lent to it.
pub fn async_lab_trial(
    name: &str,
    body: impl AsyncFnOnce(&mut Lab) -> Result<(), Failed> + Send + 'static,
) -> Trial {
    lab_trial(name, move |lab| runtime()?.block_on(body(lab)))
}

/// A libtest-mimic test that gets its own freshly started [`Lab`]; when the body fails,
/// the failure message ends with pcscd's log.
pub fn lab_trial(
    name: &str,
    body: impl FnOnce(&mut Lab) -> Result<(), Failed> + Send + 'static,
) -> Trial {
    Trial::test(name, move || {
        let mut lab = Lab::start().map_err(|e| Failed::from(format!("starting the lab: {e}")))?;
        body(&mut lab).map_err(|failure| {
            let message = failure.message().unwrap_or("test failed");
            Failed::from(format!(
                "{message}\n---- pcscd log ({}) ----\n{}",
                lab.pcscd_log_path().display(),
                lab.pcscd_log()
            ))
        })
    })
}

/// A plain PC/SC client with its own context (`SCardEstablishContext`), as an independent
/// program on the workstation would have.
pub struct PcscClient {
    context: pcsc::Context,
}

impl PcscClient {
    /// Establishes a new context with pcscd.
    pub fn new() -> Result<PcscClient, Failed> {
        let context = pcsc::Context::establish(pcsc::Scope::User)
            .map_err(|e| Failed::from(format!("SCardEstablishContext: {e}")))?;
        Ok(PcscClient { context })
    }

    /// The reader names pcscd lists (`SCardListReaders`); none is an empty list.
    pub fn readers(&self) -> Result<Vec<String>, pcsc::Error> {
        match self.context.list_readers_owned() {
            Ok(names) => Ok(names
                .into_iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect()),
            Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The reader's state and ATR right now (`SCardGetStatusChange` with no wait).
    pub fn reader_state(&self, slot: ReaderSlot) -> Result<(pcsc::State, Vec<u8>), Failed> {
        let name = CString::new(slot.to_string()).map_err(|e| Failed::from(e.to_string()))?;
        let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
        self.context
            .get_status_change(Duration::ZERO, &mut states)
            .map_err(|e| Failed::from(format!("SCardGetStatusChange({slot}): {e}")))?;
        Ok((states[0].event_state(), states[0].atr().to_vec()))
    }

    /// Connects to the card in `slot` in shared mode (`SCardConnect`), as the agent will:
    /// exclusive mode locks other programs out.
    pub fn connect(&self, slot: ReaderSlot) -> Result<pcsc::Card, Failed> {
        let name = CString::new(slot.to_string()).map_err(|e| Failed::from(e.to_string()))?;
        self.context
            .connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
            .map_err(|e| Failed::from(format!("SCardConnect({slot}): {e}")))
    }
}

/// Sends one APDU (`SCardTransmit`) and returns the whole response, status word included.
pub fn transmit(card: &pcsc::Card, command: &[u8]) -> Result<Vec<u8>, Failed> {
    let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
    card.transmit(command, &mut buffer)
        .map(<[u8]>::to_vec)
        .map_err(|e| Failed::from(format!("SCardTransmit {}: {e}", hex::encode(command))))
}

/// SELECT of the PIV card application (NIST SP 800-73-4 AID `A0 00 00 03 08 00 00 10 00`).
pub const SELECT_PIV: [u8; 15] = [
    0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00,
];

/// The passcode (PIV PIN) the suites give the test cards they provision themselves: not the
/// PIV factory default, so that nothing passes by falling back to `123456`.
pub const TEST_PASSCODE: &str = "739146";

/// The reader every test card of the independent-tool suites (OpenSC, yubico-piv-tool) goes
/// into.
pub const TOOL_READER: ReaderSlot = ReaderSlot::First;

/// The unlock code (PIV PUK) the suites give the cards they unlock, as the RA would hand it
/// over.
pub const TEST_UNLOCK_CODE: &str = "80264513";

/// The AES-128 card management key the suites' renewable test cards get, and the agent's
/// `[renewal] management_key` in those suites.
pub const TEST_MANAGEMENT_KEY: [u8; 16] = [
    0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98, 0xA9, 0xBA, 0xCB, 0xDC, 0xED, 0xFE, 0x0F,
];

/// Asserts `condition`, failing the test with `message` otherwise.
pub fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(Failed::from(message()))
    }
}
