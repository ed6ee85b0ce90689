//! The PC/SC backend: readers and cards through pcscd with the `pcsc` crate.
//!
//! The monitor blocks in `SCardGetStatusChange` with an infinite timeout on its own thread,
//! watching every reader plus the PnP notification pseudo-reader, so it never polls. It
//! treats `SCARD_E_NO_SERVICE` and friends as "pcscd is gone": the `pcsc` context looks valid
//! afterwards but never works again (bluetech/pcsc-rust#21), so the monitor drops it and
//! establishes a new one with backoff, then reconciles readers and cards.

use std::ffi::{CStr, CString};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardgate_apdu::Transmit;

use crate::backend::{MonitorShared, StopSignal};
use crate::event::{Observation, Tracker, service_event};
use crate::part10::{
    FEATURE_GET_TLV_PROPERTIES, PinModifyRequest, PinPad, PinVerifyRequest, ReaderFeatures,
    TlvProperties, get_feature_request_code,
};
use crate::{
    CardConnection, CardTransaction, EventSink, MonitorHandle, MonitorHealth, ReaderBackend,
    ReaderError, ReaderEvent, ReaderEventKind, ReaderName,
};

/// The first wait before re-establishing a lost context; doubled each attempt.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest wait between attempts: pcscd back within this is noticed within this.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Without PnP notification support, how often the reader list is re-read (never the card).
const RELIST_WITHOUT_PNP: Duration = Duration::from_secs(2);

/// Readers and cards through pcscd.
pub struct PcscBackend {
    scope: pcsc::Scope,
    /// The context for `list_readers` and `connect`, replaced when pcscd went away.
    context: Mutex<Option<pcsc::Context>>,
}

impl std::fmt::Debug for PcscBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscBackend")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Default for PcscBackend {
    fn default() -> Self {
        PcscBackend::new()
    }
}

impl PcscBackend {
    /// A backend in user scope (what pcsc-lite supports). No connection to pcscd is made
    /// until first use, so the agent can start before pcscd does.
    pub fn new() -> Self {
        PcscBackend {
            scope: pcsc::Scope::User,
            context: Mutex::new(None),
        }
    }

    /// Runs `f` with a context, establishing one if needed; if pcscd turns out to have
    /// restarted under a cached context, retries once with a fresh one.
    fn with_context<T>(
        &self,
        f: impl Fn(&pcsc::Context) -> Result<T, pcsc::Error>,
    ) -> Result<T, (&'static str, pcsc::Error)> {
        let mut cached = self.context.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            let context = match cached.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = pcsc::Context::establish(self.scope)
                        .map_err(|e| ("SCardEstablishContext", e))?;
                    *cached = Some(c.clone());
                    c
                }
            };
            match f(&context) {
                Err(e) if attempt == 0 && context_is_dead(e) => *cached = None,
                other => return other.map_err(|e| ("", e)),
            }
        }
        Err(("SCardEstablishContext", pcsc::Error::NoService))
    }
}

/// Errors after which a context never works again.
fn context_is_dead(e: pcsc::Error) -> bool {
    matches!(
        e,
        pcsc::Error::NoService
            | pcsc::Error::ServiceStopped
            | pcsc::Error::InvalidHandle
            | pcsc::Error::CommError
    )
}

/// `SCardListReaders`, with "no readers" as an empty list.
fn list(context: &pcsc::Context) -> Result<Vec<ReaderName>, pcsc::Error> {
    match context.list_readers_owned() {
        Ok(names) => Ok(names
            .into_iter()
            .map(|n| ReaderName::new(n.to_string_lossy().into_owned()))
            .collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn c_name(reader: &ReaderName) -> Result<CString, ReaderError> {
    CString::new(reader.as_str()).map_err(|_| ReaderError::ReaderGone {
        reader: reader.clone(),
    })
}

impl ReaderBackend for PcscBackend {
    /// Wraps `SCardListReaders`.
    fn list_readers(&self) -> Result<Vec<ReaderName>, ReaderError> {
        self.with_context(list)
            .map_err(|(call, e)| ReaderError::from_pcsc(or(call, "SCardListReaders"), None, e))
    }

    /// Wraps `SCardConnect` (shared mode, T=0 or T=1).
    fn connect(&self, reader: &ReaderName) -> Result<Box<dyn CardConnection>, ReaderError> {
        let name = c_name(reader)?;
        let (card, context) = self
            .with_context(|c| {
                let card = c.connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)?;
                Ok((card, c.clone()))
            })
            .map_err(|(call, e)| {
                ReaderError::from_pcsc(or(call, "SCardConnect"), Some(reader), e)
            })?;
        let mut watch = pcsc::ReaderState::new(name, pcsc::State::UNAWARE);
        let connected_count = context
            .get_status_change(Duration::ZERO, std::slice::from_mut(&mut watch))
            .ok()
            .map(|()| watch.event_count());
        Ok(Box::new(PcscConnection {
            card: Some(card),
            reader: reader.clone(),
            features: None,
            removal: RemovalCheck {
                context,
                watch,
                connected_count,
            },
        }))
    }

    /// Watches with `SCardGetStatusChange` (infinite timeout) on a thread of its own;
    /// shutdown wakes it with `SCardCancel`.
    fn monitor(&self, sink: Box<dyn EventSink>) -> Result<MonitorHandle, ReaderError> {
        let shared = MonitorShared::new(MonitorHealth::Running);
        let current: Arc<Mutex<Option<pcsc::Context>>> = Arc::new(Mutex::new(None));
        let (exited_tx, exited_rx) = mpsc::channel();
        let mut monitor = PcscMonitor {
            scope: self.scope,
            sink,
            shared: Arc::clone(&shared),
            current: Arc::clone(&current),
            tracker: Tracker::default(),
            lost_since: None,
            attempts: 0,
            pnp: true,
        };
        let thread = std::thread::Builder::new()
            .name("cardgate-pcsc-monitor".into())
            .spawn(move || {
                monitor.run();
                monitor.shared_health_stopped();
                // The handle may already be gone; nothing to tell then.
                let _ = exited_tx.send(());
            })
            .map_err(ReaderError::Thread)?;
        let waker = Box::new(move || {
            if let Some(context) = current.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                // Fails only when no wait is in progress or the context is dead; the handle
                // repeats the cancel until the thread has left.
                let _ = context.cancel();
            }
        });
        Ok(MonitorHandle::new(shared, waker, exited_rx, thread))
    }
}

fn or(call: &'static str, default: &'static str) -> &'static str {
    if call.is_empty() { default } else { call }
}

/// How one watch over a context ended.
enum WatchEnd {
    /// Shutdown was asked for, or the consumer is gone.
    Stopped,
    /// pcscd went away (the failing call and what it said).
    ServiceLost(&'static str, pcsc::Error),
}

/// The monitor thread's state.
struct PcscMonitor {
    scope: pcsc::Scope,
    sink: Box<dyn EventSink>,
    shared: Arc<MonitorShared>,
    /// The context in use, where the handle can reach it to cancel a wait.
    current: Arc<Mutex<Option<pcsc::Context>>>,
    tracker: Tracker,
    /// When the service was found lost, while it is.
    lost_since: Option<Instant>,
    attempts: u32,
    /// Whether pcscd supports the PnP notification reader (pcsc-lite does since 1.6).
    pnp: bool,
}

impl PcscMonitor {
    fn shared_health_stopped(&self) {
        self.shared.set_health(MonitorHealth::Stopped);
    }

    fn stop(&self) -> &StopSignal {
        &self.shared.stop
    }

    fn run(&mut self) {
        while !self.stop().is_stopped() {
            let context = match pcsc::Context::establish(self.scope) {
                Ok(c) => c,
                Err(e) => {
                    if self.service_lost("SCardEstablishContext", e) {
                        return;
                    }
                    continue;
                }
            };
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(context.clone());
            let end = self.watch(&context);
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
            match end {
                WatchEnd::Stopped => return,
                WatchEnd::ServiceLost(call, e) => {
                    if self.service_lost(call, e) {
                        return;
                    }
                }
            }
        }
    }

    /// Reports the loss (once per outage), records health and sleeps the backoff. Returns
    /// whether the monitor should stop.
    fn service_lost(&mut self, call: &'static str, e: pcsc::Error) -> bool {
        let now = Instant::now();
        let since = *self.lost_since.get_or_insert_with(|| {
            tracing::warn!("PC/SC service lost ({call}: {e}); reconnecting");
            now
        });
        let first = self.attempts == 0;
        self.attempts += 1;
        // Health first: whoever reacts to the ServiceLost event below must already read
        // `Reconnecting`, never the `Running` of before the loss.
        self.shared.set_health(MonitorHealth::Reconnecting {
            attempts: self.attempts,
            since,
        });
        if first {
            let events = self.tracker.service_lost(now);
            if !self.deliver(events) {
                return true;
            }
        }
        let backoff = BACKOFF_START
            .saturating_mul(1 << self.attempts.saturating_sub(1).min(5))
            .min(BACKOFF_MAX);
        self.stop().wait(backoff)
    }

    fn deliver(&mut self, events: Vec<ReaderEvent>) -> bool {
        for event in events {
            tracing::debug!(reader = %event.reader, kind = ?event.kind, "reader event");
            if !self.sink.deliver(event) {
                self.shared.stop.stop();
                return false;
            }
        }
        true
    }

    /// Watches with one context until the reader list changes (then re-lists), shutdown, or
    /// the service is lost.
    fn watch(&mut self, context: &pcsc::Context) -> WatchEnd {
        loop {
            if self.stop().is_stopped() {
                return WatchEnd::Stopped;
            }
            let names = match list(context) {
                Ok(n) => n,
                Err(e) => return WatchEnd::ServiceLost("SCardListReaders", e),
            };
            let now = Instant::now();
            if self.lost_since.take().is_some() {
                tracing::info!("PC/SC service restored after {} attempts", self.attempts);
                if !self.deliver(vec![service_event(now, ReaderEventKind::ServiceRestored)]) {
                    return WatchEnd::Stopped;
                }
            }
            self.attempts = 0;
            self.shared.set_health(MonitorHealth::Running);
            let events = self.tracker.readers_listed(&names, now);
            if !self.deliver(events) {
                return WatchEnd::Stopped;
            }
            let mut states = Vec::with_capacity(names.len() + 1);
            for name in &names {
                match CString::new(name.as_str()) {
                    Ok(c) => states.push(pcsc::ReaderState::new(c, pcsc::State::UNAWARE)),
                    Err(_) => tracing::warn!("reader name with a NUL byte ignored: {name}"),
                }
            }
            if self.pnp {
                states.push(pcsc::ReaderState::new(
                    pcsc::PNP_NOTIFICATION(),
                    pcsc::State::UNAWARE,
                ));
            }
            match self.wait_for_changes(context, &mut states) {
                Some(end) => return end,
                None => continue,
            }
        }
    }

    /// Blocks in `SCardGetStatusChange` and reports card changes until the reader list
    /// changes (returns `None`: re-list) or the watch ends.
    fn wait_for_changes(
        &mut self,
        context: &pcsc::Context,
        states: &mut [pcsc::ReaderState],
    ) -> Option<WatchEnd> {
        loop {
            if self.stop().is_stopped() {
                return Some(WatchEnd::Stopped);
            }
            let timeout = if self.pnp {
                None
            } else {
                Some(RELIST_WITHOUT_PNP)
            };
            let outcome = context.get_status_change(timeout, states);
            self.shared.woke();
            match outcome {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => return None,
                Err(pcsc::Error::Cancelled) => continue,
                Err(pcsc::Error::UnknownReader) => return None,
                Err(e) => return Some(WatchEnd::ServiceLost("SCardGetStatusChange", e)),
            }
            let at = Instant::now();
            let mut relist = false;
            let mut events = Vec::new();
            for state in states.iter_mut() {
                let seen = state.event_state();
                if state.name() == pcsc::PNP_NOTIFICATION() {
                    if seen.contains(pcsc::State::UNKNOWN) {
                        tracing::info!("no PnP notification support; re-listing readers");
                        self.pnp = false;
                        relist = true;
                    } else if seen.contains(pcsc::State::CHANGED) {
                        relist = true;
                    }
                } else if seen.contains(pcsc::State::UNKNOWN) {
                    // The reader went away; the new list reports it detached.
                    relist = true;
                } else if seen.contains(pcsc::State::CHANGED) {
                    let reader = ReaderName::new(name_of(state.name()));
                    let observation = Observation {
                        present: seen.contains(pcsc::State::PRESENT),
                        atr: state.atr().to_vec(),
                        event_count: Some(state.event_count() as u16),
                    };
                    events.extend(self.tracker.observe(&reader, observation, at));
                }
                state.sync_current_state();
            }
            if !self.deliver(events) {
                return Some(WatchEnd::Stopped);
            }
            if relist {
                return None;
            }
        }
    }
}

fn name_of(name: &CStr) -> String {
    name.to_string_lossy().into_owned()
}

/// A shared-mode connection through pcscd.
pub struct PcscConnection {
    /// Always `Some` until dropped: taken out only to disconnect it without a reset.
    card: Option<pcsc::Card>,
    reader: ReaderName,
    features: Option<ReaderFeatures>,
    removal: RemovalCheck,
}

/// How long a failed exchange waits for pcscd to say whether the card left: pcscd notices a
/// removal on its next poll of the reader (up to ~400 ms with vpcd; at once on USB CCID).
const REMOVAL_CHECK_WAIT: Duration = Duration::from_millis(1000);

/// Tells "the card was pulled" from other exchange failures. An APDU sent after the card
/// left but before pcscd noticed fails with `SCARD_E_NOT_TRANSACTED`, not
/// `SCARD_W_REMOVED_CARD`; the reader's state and event counter say which it was.
struct RemovalCheck {
    context: pcsc::Context,
    watch: pcsc::ReaderState,
    /// The reader's event counter when the connection was made.
    connected_count: Option<u32>,
}

impl RemovalCheck {
    /// Whether the card this connection was made to has left (or was swapped), asking
    /// pcscd with `SCardGetStatusChange` and waiting up to [`REMOVAL_CHECK_WAIT`] for its
    /// next poll.
    fn card_left(&mut self) -> bool {
        let deadline = Instant::now() + REMOVAL_CHECK_WAIT;
        // Compared against the state at connection time: any change since is answered at once.
        self.watch.sync_current_state();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Timeout (no change while waiting) or a dead service: not a removal.
            if self
                .context
                .get_status_change(left, std::slice::from_mut(&mut self.watch))
                .is_err()
            {
                return false;
            }
            let moved = self
                .connected_count
                .is_some_and(|c| c != self.watch.event_count());
            if self.watch.event_state().contains(pcsc::State::EMPTY) || moved {
                return true;
            }
            if left.is_zero() {
                return false;
            }
            self.watch.sync_current_state();
        }
    }
}

impl std::fmt::Debug for PcscConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscConnection")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

/// Reads the part 10 features with `SCardControl(CM_IOCTL_GET_FEATURE_REQUEST)` and, when
/// offered, `SCardControl(FEATURE_GET_TLV_PROPERTIES)`. A reader that refuses the request
/// (vpcd answers `SCARD_E_UNSUPPORTED_FEATURE`) offers nothing.
fn read_features(card: &pcsc::Card, reader: &ReaderName) -> Result<ReaderFeatures, ReaderError> {
    let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE];
    let answer = match card.control(get_feature_request_code().into(), &[], &mut buffer) {
        Ok(a) => a,
        Err(
            pcsc::Error::UnsupportedFeature
            | pcsc::Error::InvalidParameter
            | pcsc::Error::InvalidValue
            | pcsc::Error::NotTransacted,
        ) => return Ok(ReaderFeatures::none()),
        Err(e) => return Err(ReaderError::from_pcsc("SCardControl", Some(reader), e)),
    };
    let malformed = |source| ReaderError::MalformedFeatures {
        reader: reader.clone(),
        source,
    };
    let features = ReaderFeatures::parse(answer).map_err(malformed)?;
    let Some(code) = features.control_code(FEATURE_GET_TLV_PROPERTIES) else {
        return Ok(features);
    };
    let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE];
    let answer = card
        .control(code.into(), &[], &mut buffer)
        .map_err(|e| ReaderError::from_pcsc("SCardControl", Some(reader), e))?;
    let properties = TlvProperties::parse(answer).map_err(malformed)?;
    Ok(features.with_properties(properties))
}

impl PcscConnection {
    fn card(&self) -> Result<&pcsc::Card, ReaderError> {
        self.card.as_ref().ok_or_else(|| ReaderError::NoCard {
            reader: self.reader.clone(),
        })
    }
}

impl Drop for PcscConnection {
    /// Wraps `SCardDisconnect(SCARD_LEAVE_CARD)`. pcsc-rust's own drop resets the card,
    /// which would log the holder out (the verified passcode gone) and reset the card under
    /// every other program sharing it; leaving it as it is is what shared mode promises.
    fn drop(&mut self) {
        if let Some(card) = self.card.take()
            && let Err((_card, e)) = card.disconnect(pcsc::Disposition::LeaveCard)
        {
            tracing::debug!(reader = %self.reader, "SCardDisconnect failed: {e}");
        }
    }
}

impl CardConnection for PcscConnection {
    fn reader(&self) -> &ReaderName {
        &self.reader
    }

    /// Wraps `SCardStatus`.
    fn atr(&mut self) -> Result<Vec<u8>, ReaderError> {
        self.card()?
            .status2_owned()
            .map(|s| s.atr().to_vec())
            .map_err(|e| ReaderError::from_pcsc("SCardStatus", Some(&self.reader), e))
    }

    /// Wraps `SCardControl` (`CM_IOCTL_GET_FEATURE_REQUEST`, then `FEATURE_GET_TLV_PROPERTIES`);
    /// cached per connection.
    fn features(&mut self) -> Result<ReaderFeatures, ReaderError> {
        if self.features.is_none() {
            self.features = Some(read_features(self.card()?, &self.reader)?);
        }
        Ok(self.features.clone().unwrap_or_default())
    }

    /// Wraps `SCardBeginTransaction`; dropping the guard calls `SCardEndTransaction`
    /// (leaving the card as it is).
    fn transaction(&mut self) -> Result<Box<dyn CardTransaction + '_>, ReaderError> {
        let card = self.card.as_mut().ok_or_else(|| ReaderError::NoCard {
            reader: self.reader.clone(),
        })?;
        let transaction = card
            .transaction()
            .map_err(|e| ReaderError::from_pcsc("SCardBeginTransaction", Some(&self.reader), e))?;
        Ok(Box::new(PcscTransaction {
            transaction,
            reader: &self.reader,
            features: &mut self.features,
            removal: &mut self.removal,
        }))
    }

    /// Wraps `SCardDisconnect(SCARD_RESET_CARD)`.
    fn disconnect_resetting(mut self: Box<Self>) -> Result<(), ReaderError> {
        let card = self.card.take().ok_or_else(|| ReaderError::NoCard {
            reader: self.reader.clone(),
        })?;
        card.disconnect(pcsc::Disposition::ResetCard)
            .map_err(|(_card, e)| ReaderError::from_pcsc("SCardDisconnect", Some(&self.reader), e))
    }
}

/// An open PC/SC transaction (`pcsc::Transaction`).
struct PcscTransaction<'c> {
    transaction: pcsc::Transaction<'c>,
    reader: &'c ReaderName,
    features: &'c mut Option<ReaderFeatures>,
    removal: &'c mut RemovalCheck,
}

impl Transmit for PcscTransaction<'_> {
    type Error = ReaderError;

    /// Wraps `SCardTransmit`.
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let mut buffer = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        match self.transaction.transmit(command, &mut buffer) {
            // vpcd (and a reader losing the card mid-exchange) can complete the call with no
            // status word at all; if the card left, say so rather than hand up a husk.
            Ok(response) if response.len() < 2 && self.removal.card_left() => {
                Err(ReaderError::CardRemoved {
                    reader: self.reader.clone(),
                })
            }
            Ok(response) => Ok(response.to_vec()),
            Err(pcsc::Error::NotTransacted | pcsc::Error::CommError)
                if self.removal.card_left() =>
            {
                Err(ReaderError::CardRemoved {
                    reader: self.reader.clone(),
                })
            }
            Err(e) => Err(ReaderError::from_pcsc(
                "SCardTransmit",
                Some(self.reader),
                e,
            )),
        }
    }
}

impl CardTransaction for PcscTransaction<'_> {
    /// Wraps `SCardControl(FEATURE_VERIFY_PIN_DIRECT)`.
    fn verify_pin_on_pad(&mut self, request: &PinVerifyRequest) -> Result<Vec<u8>, ReaderError> {
        if self.features.is_none() {
            *self.features = Some(read_features(&self.transaction, self.reader)?);
        }
        let pad = self
            .features
            .as_ref()
            .map(ReaderFeatures::pin_pad)
            .unwrap_or(PinPad::Absent);
        let PinPad::Usable { verify, .. } = pad else {
            return Err(ReaderError::NoPinPad {
                reader: self.reader.clone(),
            });
        };
        let bytes = request.to_bytes();
        // Refuse what a reader would have to guess at, before the holder types anything.
        PinVerifyRequest::parse(&bytes).map_err(ReaderError::InvalidPinPadRequest)?;
        let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE];
        let response = self
            .transaction
            .control(verify.into(), &bytes, &mut buffer)
            .map_err(|e| ReaderError::from_pcsc("SCardControl", Some(self.reader), e))?;
        Ok(response.to_vec())
    }

    /// Wraps `SCardControl(FEATURE_MODIFY_PIN_DIRECT)`.
    fn modify_pin_on_pad(&mut self, request: &PinModifyRequest) -> Result<Vec<u8>, ReaderError> {
        if self.features.is_none() {
            *self.features = Some(read_features(&self.transaction, self.reader)?);
        }
        let features = self.features.clone().unwrap_or_default();
        let PinPad::Usable {
            modify: Some(modify),
            ..
        } = features.pin_pad()
        else {
            return Err(ReaderError::NoPinPad {
                reader: self.reader.clone(),
            });
        };
        let bytes = request.to_bytes();
        // Refuse what a reader would have to guess at (or, short APDUs only, would refuse
        // itself) before the holder types anything.
        PinModifyRequest::parse(&bytes).map_err(ReaderError::InvalidPinPadRequest)?;
        let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE];
        let response = self
            .transaction
            .control(modify.into(), &bytes, &mut buffer)
            .map_err(|e| ReaderError::from_pcsc("SCardControl", Some(self.reader), e))?;
        Ok(response.to_vec())
    }
}
