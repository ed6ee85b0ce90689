//! The backend trait the daemon programs against, the connection and transaction traits, and
//! the monitor handle both backends return. Object-safe on purpose: the daemon picks the PC/SC
//! or the virtual backend at run time (`Box<dyn ReaderBackend>`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use cardgate_apdu::Transmit;

use crate::{
    EventSink, MonitorHealth, PinModifyRequest, PinVerifyRequest, ReaderError, ReaderFeatures,
    ReaderName,
};

/// A source of readers and cards: pcscd ([`crate::PcscBackend`]) or in-process virtual readers
/// (`VirtualBackend`, with the `virtual` feature).
pub trait ReaderBackend: Send + Sync {
    /// The readers attached now, in the service's order.
    fn list_readers(&self) -> Result<Vec<ReaderName>, ReaderError>;

    /// Connects to the card in `reader` in shared mode, so other programs (OpenSC, a browser's
    /// middleware) can use the card between our transactions.
    fn connect(&self, reader: &ReaderName) -> Result<Box<dyn CardConnection>, ReaderError>;

    /// Starts watching all readers on a thread of its own and delivers every event to `sink`.
    /// It first reports each attached reader and each card already present.
    fn monitor(&self, sink: Box<dyn EventSink>) -> Result<MonitorHandle, ReaderError>;
}

/// A shared-mode connection to the card in one reader.
pub trait CardConnection: Send + std::fmt::Debug {
    /// The reader this connection is to.
    fn reader(&self) -> &ReaderName;

    /// The card's ATR as the reader reports it now; fails once the card is gone.
    fn atr(&mut self) -> Result<Vec<u8>, ReaderError>;

    /// The reader's PC/SC part 10 features (read once per connection, then cached).
    fn features(&mut self) -> Result<ReaderFeatures, ReaderError>;

    /// Starts a transaction: until the returned guard is dropped no other program can send
    /// APDUs to the card, so a multi-APDU operation (SELECT + VERIFY + GENERAL AUTHENTICATE)
    /// cannot be interleaved. The borrow makes a second one at a time impossible.
    fn transaction(&mut self) -> Result<Box<dyn CardTransaction + '_>, ReaderError>;

    /// Disconnects and resets the card (`SCARD_RESET_CARD`): its security state (a verified
    /// passcode) is gone for every program sharing it, which each learns at its next call
    /// (`SCARD_W_RESET_CARD`). For a card that refuses to forget a verified passcode when
    /// asked (PIV VERIFY with P1 = FF); every other disconnect leaves the card as it is.
    fn disconnect_resetting(self: Box<Self>) -> Result<(), ReaderError>;
}

/// An open transaction: raw APDU exchange ([`Transmit`]) and PIN-pad entry.
pub trait CardTransaction: Transmit<Error = ReaderError> {
    /// Has the reader collect the passcode on its own PIN pad and send the VERIFY described
    /// by `request` to the card; the passcode never passes through this host. Returns the
    /// card's raw response (data, SW1, SW2); a PC/SC part 10 reader answers `64 00` when
    /// entry timed out and `64 01` when the holder cancelled.
    ///
    /// Fails with [`ReaderError::NoPinPad`] when the reader has no usable PIN pad.
    fn verify_pin_on_pad(&mut self, request: &PinVerifyRequest) -> Result<Vec<u8>, ReaderError>;

    /// Has the reader collect the current value (passcode or unlock code) and the new
    /// passcode on its PIN pad and send the CHANGE REFERENCE DATA or RESET RETRY COUNTER
    /// described by `request`; neither passes through this host. Returns the card's raw
    /// response; besides `64 00` and `64 01`, a reader answers `64 02` when the new passcode
    /// and its confirmation differ and `64 03` for a value of the wrong length.
    ///
    /// Fails with [`ReaderError::NoPinPad`] when the reader has no usable PIN pad offering
    /// `FEATURE_MODIFY_PIN_DIRECT`.
    fn modify_pin_on_pad(&mut self, request: &PinModifyRequest) -> Result<Vec<u8>, ReaderError>;
}

impl std::fmt::Debug for dyn CardTransaction + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardTransaction")
    }
}

/// A stop flag that sleeping threads can wait on, so shutdown never waits out a backoff.
#[derive(Debug, Default)]
pub(crate) struct StopSignal {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl StopSignal {
    pub fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps up to `timeout`; returns whether stop was requested.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

/// What a monitor thread shares with its handle.
#[derive(Debug)]
pub(crate) struct MonitorShared {
    pub stop: StopSignal,
    pub health: Mutex<MonitorHealth>,
    pub wakeups: AtomicU64,
}

impl MonitorShared {
    pub fn new(initial: MonitorHealth) -> Arc<Self> {
        Arc::new(MonitorShared {
            stop: StopSignal::default(),
            health: Mutex::new(initial),
            wakeups: AtomicU64::new(0),
        })
    }

    pub fn set_health(&self, health: MonitorHealth) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = health;
    }

    pub fn woke(&self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running monitor. [`MonitorHandle::shutdown`] (or dropping it) stops the thread and
/// waits for it: a blocked wait is cancelled, never waited out.
pub struct MonitorHandle {
    shared: Arc<MonitorShared>,
    /// Wakes the thread out of a blocking wait (PC/SC: `SCardCancel`).
    waker: Box<dyn Fn() + Send + Sync>,
    exited: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MonitorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorHandle")
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl MonitorHandle {
    pub(crate) fn new(
        shared: Arc<MonitorShared>,
        waker: Box<dyn Fn() + Send + Sync>,
        exited: Receiver<()>,
        thread: JoinHandle<()>,
    ) -> Self {
        MonitorHandle {
            shared,
            waker,
            exited,
            thread: Some(thread),
        }
    }

    /// How the monitor is doing now.
    pub fn health(&self) -> MonitorHealth {
        *self.shared.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many times the monitor's blocking wait has returned; a quiet reader must leave it
    /// unchanged (the proof that nothing polls).
    pub fn wakeups(&self) -> u64 {
        self.shared.wakeups.load(Ordering::Relaxed)
    }

    /// Stops the monitor and waits for its thread to end.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stop.stop();
        // A cancel can land just before the thread enters its wait and be lost, so repeat it
        // until the thread says it has left.
        loop {
            (self.waker)();
            match self.exited.recv_timeout(Duration::from_millis(20)) {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if thread.join().is_err() {
            tracing::error!("the reader monitor thread panicked");
        }
        self.shared.set_health(MonitorHealth::Stopped);
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
