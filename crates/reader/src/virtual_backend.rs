//! The in-process virtual backend: readers holding [`cardgate_icc::Card`]s (the `virtual` feature), for the demo
//! and for unit tests of everything above the reader layer. It behaves as pcscd does where it
//! matters: shared connections that fail once their card is gone, transactions that exclude
//! other connections, an event counter per reader, a service that can go away, a reset on
//! disconnect (`SCARD_RESET_CARD`) that clears the card's security state and fails every other
//! connection to it with [`ReaderError::CardReset`], and readers with an emulated PIN pad
//! (verify and modify) whose keypad entry a test scripts, one [`PadEntry`] per value keyed.
//!
//! Its monitor feeds the same tracker as the PC/SC monitor from snapshots of the readers, so
//! brief removals ([`VirtualBackend::bounce`]) are found through the event counter exactly as
//! with pcscd.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use cardgate_apdu::Transmit;
use cardgate_icc::Card;
use zeroize::Zeroizing;

use crate::backend::MonitorShared;
use crate::event::{Observation, Tracker, service_event};
use crate::part10::{PinModifyRequest, PinVerifyRequest, ReaderFeatures, TlvProperties};
use crate::{
    CardConnection, CardTransaction, EventSink, MonitorHandle, MonitorHealth, ReaderBackend,
    ReaderError, ReaderEventKind, ReaderName,
};

/// How long the emulated pad waits when the request names no timeout (`bTimerOut` 0).
const DEFAULT_PAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the holder does at an emulated PIN pad, scripted by a test: one entry per prompt. A
/// change takes two or three in order (the current passcode or the unlock code, the new
/// passcode, and its confirmation when the reader asks for one).
pub enum PadEntry {
    /// Keys these characters and presses OK.
    Pin(Zeroizing<Vec<u8>>),
    /// Presses Cancel (the reader answers `64 01`).
    Cancel,
    /// Walks away (the reader answers `64 00`).
    Timeout,
}

impl std::fmt::Debug for PadEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PadEntry::Pin(pin) => write!(f, "Pin(<{} characters>)", pin.len()),
            PadEntry::Cancel => f.write_str("Cancel"),
            PadEntry::Timeout => f.write_str("Timeout"),
        }
    }
}

impl PadEntry {
    /// The holder keys `pin` and presses OK.
    pub fn pin(pin: &str) -> Self {
        PadEntry::Pin(Zeroizing::new(pin.as_bytes().to_vec()))
    }
}

/// The part 10 identity a virtual reader answers with: the raw feature and TLV property
/// answers, parsed by the same code as a real reader's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtualReaderModel {
    /// The answer to `CM_IOCTL_GET_FEATURE_REQUEST`.
    pub feature_answer: Vec<u8>,
    /// The answer to `FEATURE_GET_TLV_PROPERTIES`.
    pub properties_answer: Vec<u8>,
}

impl VirtualReaderModel {
    /// A reader with no part 10 features (like vpcd).
    pub fn plain() -> Self {
        VirtualReaderModel::default()
    }

    /// A reader advertising VERIFY/MODIFY PIN direct and TLV properties with this USB
    /// identity and PIN size range.
    pub fn pin_pad(vendor_id: u16, product_id: u16, min_pin: u8, max_pin: u8) -> Self {
        let feature = |tag: u8| {
            let mut tlv = vec![tag, 4];
            tlv.extend_from_slice(
                &crate::part10::ctl_code(0x0033_0000 + u32::from(tag)).to_be_bytes(),
            );
            tlv
        };
        let mut feature_answer = Vec::new();
        for tag in [0x06, 0x07, 0x12] {
            feature_answer.extend(feature(tag));
        }
        let mut properties_answer = vec![0x0B, 2];
        properties_answer.extend_from_slice(&vendor_id.to_le_bytes());
        properties_answer.extend_from_slice(&[0x0C, 2]);
        properties_answer.extend_from_slice(&product_id.to_le_bytes());
        properties_answer.extend_from_slice(&[0x06, 1, min_pin, 0x07, 1, max_pin, 0x02, 1, 0x02]);
        VirtualReaderModel {
            feature_answer,
            properties_answer,
        }
    }

    /// An Omnikey 3821: a real PIN pad (076B:3821, PINs of 1 to 31 digits).
    pub fn omnikey_3821() -> Self {
        VirtualReaderModel::pin_pad(0x076B, 0x3821, 1, 31)
    }

    /// An Omnikey 3121 (076B:3031): advertises a PIN pad it does not have.
    pub fn omnikey_3121() -> Self {
        VirtualReaderModel::pin_pad(0x076B, 0x3031, 1, 31)
    }

    fn features(&self) -> Result<ReaderFeatures, crate::Part10Error> {
        let features = ReaderFeatures::parse(&self.feature_answer)?;
        if self.properties_answer.is_empty() {
            return Ok(features);
        }
        Ok(features.with_properties(TlvProperties::parse(&self.properties_answer)?))
    }
}

struct VirtualReader {
    name: ReaderName,
    model: VirtualReaderModel,
    card: Option<Box<dyn Card>>,
    /// Bumped on every insertion (and power cycle), so connections to an earlier card fail.
    insertion: u64,
    /// The PC/SC event counter: one per insertion and per removal.
    event_count: u16,
    /// The connection holding a transaction, if any.
    transaction_owner: Option<u64>,
    /// What the holder will do at the pad, in order.
    pad_entries: VecDeque<PadEntry>,
    /// APDUs the card answered (for tests: a pad verification must reach the card).
    apdus: u64,
    /// Resets by a disconnect with `SCARD_RESET_CARD`: a connection made before the last one
    /// fails with [`ReaderError::CardReset`].
    resets: u64,
}

struct State {
    service_up: bool,
    /// Bumped when the service comes back: connections from before fail, as with pcscd.
    service_epoch: u64,
    /// Bumped on every change a monitor should look at.
    version: u64,
    readers: Vec<VirtualReader>,
}

impl State {
    fn reader_mut(&mut self, name: &ReaderName) -> Result<&mut VirtualReader, ReaderError> {
        self.readers
            .iter_mut()
            .find(|r| &r.name == name)
            .ok_or_else(|| ReaderError::ReaderGone {
                reader: name.clone(),
            })
    }

    fn changed(&mut self) {
        self.version = self.version.wrapping_add(1);
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    next_connection: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// In-process virtual readers. Clones share the same readers.
#[derive(Clone)]
pub struct VirtualBackend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for VirtualBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        let readers: Vec<(&str, bool)> = state
            .readers
            .iter()
            .map(|r| (r.name.as_str(), r.card.is_some()))
            .collect();
        f.debug_struct("VirtualBackend")
            .field("service_up", &state.service_up)
            .field("readers", &readers)
            .finish()
    }
}

impl Default for VirtualBackend {
    fn default() -> Self {
        VirtualBackend::new()
    }
}

const SERVICE_DOWN: pcsc::Error = pcsc::Error::NoService;

impl VirtualBackend {
    /// A backend with no readers and the service up.
    pub fn new() -> Self {
        VirtualBackend {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    service_up: true,
                    service_epoch: 0,
                    version: 0,
                    readers: Vec::new(),
                }),
                changed: Condvar::new(),
                next_connection: AtomicU64::new(1),
            }),
        }
    }

    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.shared.lock();
        let out = f(&mut state);
        state.changed();
        drop(state);
        self.shared.changed.notify_all();
        out
    }

    /// Attaches a reader without part 10 features.
    pub fn attach_reader(&self, name: &str) -> ReaderName {
        self.attach_reader_model(name, VirtualReaderModel::plain())
    }

    /// Attaches a reader answering part 10 requests as `model` does (e.g. a PIN pad).
    pub fn attach_reader_model(&self, name: &str, model: VirtualReaderModel) -> ReaderName {
        let name = ReaderName::new(name);
        let reader = VirtualReader {
            name: name.clone(),
            model,
            card: None,
            insertion: 0,
            event_count: 0,
            transaction_owner: None,
            pad_entries: VecDeque::new(),
            apdus: 0,
            resets: 0,
        };
        self.update(|s| s.readers.push(reader));
        name
    }

    /// Unplugs a reader (with its card, which is returned).
    pub fn detach_reader(&self, name: &ReaderName) -> Option<Box<dyn Card>> {
        self.update(|s| {
            let index = s.readers.iter().position(|r| &r.name == name)?;
            s.readers.remove(index).card
        })
    }

    /// Inserts `card` into `reader` (powering it on). Fails if the reader is unknown or
    /// already holds a card (the card is handed back then).
    pub fn insert(
        &self,
        reader: &ReaderName,
        mut card: Box<dyn Card>,
    ) -> Result<(), Box<dyn Card>> {
        self.update(|s| {
            let Ok(slot) = s.reader_mut(reader) else {
                return Err(card);
            };
            if slot.card.is_some() {
                return Err(card);
            }
            card.power_on();
            slot.card = Some(card);
            slot.insertion += 1;
            slot.event_count = slot.event_count.wrapping_add(1);
            Ok(())
        })
    }

    /// Takes the card out of `reader` (powering it off) and returns it.
    pub fn remove(&self, reader: &ReaderName) -> Option<Box<dyn Card>> {
        self.update(|s| {
            let slot = s.reader_mut(reader).ok()?;
            let mut card = slot.card.take()?;
            card.power_off();
            slot.event_count = slot.event_count.wrapping_add(1);
            slot.transaction_owner = None;
            Some(card)
        })
    }

    /// Pulls the card and pushes it back in faster than the monitor can look: the reader's
    /// state stays "present" and only its event counter (two more) shows what happened. The
    /// card is power-cycled, so its PIN state is gone. Returns whether a card was there.
    pub fn bounce(&self, reader: &ReaderName) -> bool {
        self.update(|s| {
            let Ok(slot) = s.reader_mut(reader) else {
                return false;
            };
            let Some(card) = slot.card.as_mut() else {
                return false;
            };
            card.power_off();
            card.power_on();
            slot.insertion += 1;
            slot.event_count = slot.event_count.wrapping_add(2);
            slot.transaction_owner = None;
            true
        })
    }

    /// Stops or restarts the "service" (as pcscd being killed and started): while down every
    /// call fails with [`ReaderError::ServiceUnavailable`]; connections from before a restart
    /// stay dead and cards are power-cycled, as with a real pcscd restart.
    pub fn set_service_available(&self, up: bool) {
        self.update(|s| {
            if up && !s.service_up {
                s.service_epoch += 1;
                for reader in &mut s.readers {
                    reader.transaction_owner = None;
                    if let Some(card) = reader.card.as_mut() {
                        card.power_off();
                        card.power_on();
                        reader.insertion += 1;
                    }
                    // A restarted pcscd counts from zero again.
                    reader.event_count = u16::from(reader.card.is_some());
                }
            }
            s.service_up = up;
        })
    }

    /// Queues what the holder does at `reader`'s PIN pad the next time it asks for entry.
    pub fn enter_on_pad(&self, reader: &ReaderName, entry: PadEntry) -> Result<(), ReaderError> {
        self.update(|s| s.reader_mut(reader).map(|r| r.pad_entries.push_back(entry)))
    }

    /// APDUs the card in `reader` has answered through this backend, since the reader was
    /// attached.
    pub fn apdu_count(&self, reader: &ReaderName) -> u64 {
        let mut state = self.shared.lock();
        state.reader_mut(reader).map(|r| r.apdus).unwrap_or(0)
    }

    /// How often the card in `reader` was reset by a disconnect with `SCARD_RESET_CARD`,
    /// since the reader was attached.
    pub fn reset_count(&self, reader: &ReaderName) -> u64 {
        let mut state = self.shared.lock();
        state.reader_mut(reader).map(|r| r.resets).unwrap_or(0)
    }

    fn service_check(state: &State) -> Result<(), ReaderError> {
        if state.service_up {
            Ok(())
        } else {
            Err(ReaderError::ServiceUnavailable {
                call: "SCardEstablishContext",
                source: SERVICE_DOWN,
            })
        }
    }
}

impl ReaderBackend for VirtualBackend {
    fn list_readers(&self) -> Result<Vec<ReaderName>, ReaderError> {
        let state = self.shared.lock();
        Self::service_check(&state)?;
        Ok(state.readers.iter().map(|r| r.name.clone()).collect())
    }

    fn connect(&self, reader: &ReaderName) -> Result<Box<dyn CardConnection>, ReaderError> {
        let mut state = self.shared.lock();
        Self::service_check(&state)?;
        let epoch = state.service_epoch;
        let slot = state.reader_mut(reader)?;
        if slot.card.is_none() {
            return Err(ReaderError::NoCard {
                reader: reader.clone(),
            });
        }
        Ok(Box::new(VirtualConnection {
            shared: Arc::clone(&self.shared),
            reader: reader.clone(),
            id: self.shared.next_connection.fetch_add(1, Ordering::Relaxed),
            insertion: slot.insertion,
            resets: slot.resets,
            epoch,
            features: None,
        }))
    }

    fn monitor(&self, sink: Box<dyn EventSink>) -> Result<MonitorHandle, ReaderError> {
        let shared = MonitorShared::new(MonitorHealth::Running);
        let (exited_tx, exited_rx) = mpsc::channel();
        let mut monitor = VirtualMonitor {
            backend: Arc::clone(&self.shared),
            monitor: Arc::clone(&shared),
            sink,
            tracker: Tracker::default(),
            lost: false,
        };
        let thread = std::thread::Builder::new()
            .name("cardgate-virtual-monitor".into())
            .spawn(move || {
                monitor.run();
                monitor.shared_health_stopped();
                let _ = exited_tx.send(());
            })
            .map_err(ReaderError::Thread)?;
        let backend = Arc::clone(&self.shared);
        let waker = Box::new(move || {
            // Taking the lock orders this notify after the monitor's check of the stop flag.
            drop(backend.lock());
            backend.changed.notify_all();
        });
        Ok(MonitorHandle::new(shared, waker, exited_rx, thread))
    }
}

/// One reader as a monitor snapshot sees it.
struct Snapshot {
    service_up: bool,
    readers: Vec<(ReaderName, Observation)>,
}

struct VirtualMonitor {
    backend: Arc<Shared>,
    monitor: Arc<MonitorShared>,
    sink: Box<dyn EventSink>,
    tracker: Tracker,
    lost: bool,
}

impl VirtualMonitor {
    fn shared_health_stopped(&self) {
        self.monitor.set_health(MonitorHealth::Stopped);
    }

    fn run(&mut self) {
        let mut seen_version = None;
        loop {
            let snapshot = {
                let mut state = self.backend.lock();
                while Some(state.version) == seen_version && !self.monitor.stop.is_stopped() {
                    state = self
                        .backend
                        .changed
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
                if self.monitor.stop.is_stopped() {
                    return;
                }
                self.monitor.woke();
                seen_version = Some(state.version);
                Snapshot {
                    service_up: state.service_up,
                    readers: state
                        .readers
                        .iter()
                        .map(|r| {
                            let observation = Observation {
                                present: r.card.is_some(),
                                atr: r.card.as_ref().map(|c| c.atr()).unwrap_or_default(),
                                event_count: Some(r.event_count),
                            };
                            (r.name.clone(), observation)
                        })
                        .collect(),
                }
            };
            if !self.apply(snapshot) {
                return;
            }
        }
    }

    fn apply(&mut self, snapshot: Snapshot) -> bool {
        let at = Instant::now();
        let mut events = Vec::new();
        if !snapshot.service_up {
            if !self.lost {
                self.lost = true;
                events.extend(self.tracker.service_lost(at));
                self.monitor.set_health(MonitorHealth::Reconnecting {
                    attempts: 0,
                    since: at,
                });
            }
        } else {
            if self.lost {
                self.lost = false;
                events.push(service_event(at, ReaderEventKind::ServiceRestored));
                self.monitor.set_health(MonitorHealth::Running);
            }
            let names: Vec<ReaderName> = snapshot.readers.iter().map(|(n, _)| n.clone()).collect();
            events.extend(self.tracker.readers_listed(&names, at));
            for (name, observation) in snapshot.readers {
                events.extend(self.tracker.observe(&name, observation, at));
            }
        }
        for event in events {
            if !self.sink.deliver(event) {
                return false;
            }
        }
        true
    }
}

/// A shared connection to a virtual reader's card.
struct VirtualConnection {
    shared: Arc<Shared>,
    reader: ReaderName,
    id: u64,
    /// The insertion this connection was made to; a later card is another card.
    insertion: u64,
    /// The reader's reset count when this connection was made.
    resets: u64,
    epoch: u64,
    features: Option<ReaderFeatures>,
}

impl std::fmt::Debug for VirtualConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualConnection")
            .field("reader", &self.reader)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl VirtualConnection {
    /// The reader, if this connection's card is still the one in it.
    fn live<'s>(&self, state: &'s mut State) -> Result<&'s mut VirtualReader, ReaderError> {
        VirtualBackend::service_check(state)?;
        if state.service_epoch != self.epoch {
            return Err(ReaderError::ServiceUnavailable {
                call: "SCardTransmit",
                source: pcsc::Error::InvalidHandle,
            });
        }
        let slot = state.reader_mut(&self.reader)?;
        if slot.card.is_none() || slot.insertion != self.insertion {
            return Err(ReaderError::CardRemoved {
                reader: self.reader.clone(),
            });
        }
        if slot.resets != self.resets {
            return Err(ReaderError::CardReset {
                reader: self.reader.clone(),
            });
        }
        Ok(slot)
    }

    fn read_features(&mut self) -> Result<ReaderFeatures, ReaderError> {
        if let Some(f) = &self.features {
            return Ok(f.clone());
        }
        let mut state = self.shared.lock();
        let model = self.live(&mut state)?.model.clone();
        drop(state);
        let features = model
            .features()
            .map_err(|source| ReaderError::MalformedFeatures {
                reader: self.reader.clone(),
                source,
            })?;
        self.features = Some(features.clone());
        Ok(features)
    }
}

impl CardConnection for VirtualConnection {
    fn reader(&self) -> &ReaderName {
        &self.reader
    }

    fn atr(&mut self) -> Result<Vec<u8>, ReaderError> {
        let mut state = self.shared.lock();
        let slot = self.live(&mut state)?;
        Ok(slot.card.as_ref().map(|c| c.atr()).unwrap_or_default())
    }

    fn features(&mut self) -> Result<ReaderFeatures, ReaderError> {
        self.read_features()
    }

    fn transaction(&mut self) -> Result<Box<dyn CardTransaction + '_>, ReaderError> {
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        loop {
            let id = self.id;
            let slot = self.live(&mut state)?;
            match slot.transaction_owner {
                None => {
                    slot.transaction_owner = Some(id);
                    break;
                }
                Some(owner) if owner == id => break,
                Some(_) => {
                    state = shared
                        .changed
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
            }
        }
        drop(state);
        Ok(Box::new(VirtualTransaction { connection: self }))
    }

    fn disconnect_resetting(self: Box<Self>) -> Result<(), ReaderError> {
        let mut state = self.shared.lock();
        let slot = self.live(&mut state)?;
        if let Some(card) = slot.card.as_mut() {
            card.reset();
        }
        slot.resets += 1;
        if slot.transaction_owner == Some(self.id) {
            slot.transaction_owner = None;
        }
        drop(state);
        self.shared.changed.notify_all();
        Ok(())
    }
}

/// A transaction on a virtual card: other connections wait until it is dropped.
struct VirtualTransaction<'c> {
    connection: &'c mut VirtualConnection,
}

impl Drop for VirtualTransaction<'_> {
    fn drop(&mut self) {
        let c = &self.connection;
        let mut state = c.shared.lock();
        if let Ok(slot) = state.reader_mut(&c.reader) {
            if slot.transaction_owner == Some(c.id) {
                slot.transaction_owner = None;
            }
        }
        drop(state);
        c.shared.changed.notify_all();
    }
}

impl Transmit for VirtualTransaction<'_> {
    type Error = ReaderError;

    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let c = &self.connection;
        let mut state = c.shared.lock();
        let slot = c.live(&mut state)?;
        let card = slot.card.as_mut().ok_or_else(|| ReaderError::CardRemoved {
            reader: c.reader.clone(),
        })?;
        let response = card.transmit(command);
        slot.apdus += 1;
        Ok(response)
    }
}

impl VirtualTransaction<'_> {
    /// Fails unless the reader's pad is usable (and, for a change, offers MODIFY).
    fn require_pad(&mut self, modify: bool) -> Result<(), ReaderError> {
        let pad = self.connection.read_features()?.pin_pad();
        let ok = if modify {
            pad.can_modify()
        } else {
            pad.is_usable()
        };
        if ok {
            Ok(())
        } else {
            Err(ReaderError::NoPinPad {
                reader: self.connection.reader.clone(),
            })
        }
    }

    /// What the holder keys at the next prompt, waiting for a test to script it until
    /// `deadline` (then the holder walked away).
    fn next_entry(&self, deadline: Instant) -> Result<PadEntry, ReaderError> {
        let c = &self.connection;
        let mut state = c.shared.lock();
        loop {
            let slot = c.live(&mut state)?;
            if let Some(entry) = slot.pad_entries.pop_front() {
                return Ok(entry);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(PadEntry::Timeout);
            }
            state = c
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// One keyed value, or the reader's own answer when entry ended without one.
    fn keyed(&self, deadline: Instant) -> Result<Result<Zeroizing<Vec<u8>>, Vec<u8>>, ReaderError> {
        Ok(match self.next_entry(deadline)? {
            PadEntry::Timeout => Err(vec![0x64, 0x00]),
            PadEntry::Cancel => Err(vec![0x64, 0x01]),
            PadEntry::Pin(pin) => Ok(pin),
        })
    }

    /// Sends the APDU the pad built to the card.
    fn send_built(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let c = &self.connection;
        let mut state = c.shared.lock();
        let slot = c.live(&mut state)?;
        let card = slot.card.as_mut().ok_or_else(|| ReaderError::CardRemoved {
            reader: c.reader.clone(),
        })?;
        let response = card.transmit(apdu);
        slot.apdus += 1;
        Ok(response)
    }
}

fn pad_deadline(timeout_secs: u8) -> Instant {
    let timeout = match timeout_secs {
        0 => DEFAULT_PAD_TIMEOUT,
        secs => Duration::from_secs(u64::from(secs)),
    };
    Instant::now() + timeout
}

impl CardTransaction for VirtualTransaction<'_> {
    fn verify_pin_on_pad(&mut self, request: &PinVerifyRequest) -> Result<Vec<u8>, ReaderError> {
        self.require_pad(false)?;
        // From here on this is the reader's firmware: it gets only the structure's bytes.
        let request = PinVerifyRequest::parse(&request.to_bytes())
            .map_err(ReaderError::InvalidPinPadRequest)?;
        let deadline = pad_deadline(request.timeout_secs);
        let pin = match self.keyed(deadline)? {
            Ok(pin) => pin,
            Err(reader_answer) => return Ok(reader_answer),
        };
        let Ok(apdu) = request.apdu_with_pin(&pin).map(Zeroizing::new) else {
            // What pcsc-lite's CCID driver reports for a PIN of the wrong length.
            return Ok(vec![0x64, 0x03]);
        };
        self.send_built(&apdu)
    }

    fn modify_pin_on_pad(&mut self, request: &PinModifyRequest) -> Result<Vec<u8>, ReaderError> {
        self.require_pad(true)?;
        // The reader's firmware again: only the structure's bytes.
        let request = PinModifyRequest::parse(&request.to_bytes())
            .map_err(ReaderError::InvalidPinPadRequest)?;
        let deadline = pad_deadline(request.timeout_secs);
        let current = if request.enters_current() {
            match self.keyed(deadline)? {
                Ok(pin) => Some(pin),
                Err(reader_answer) => return Ok(reader_answer),
            }
        } else {
            None
        };
        let new = match self.keyed(deadline)? {
            Ok(pin) => pin,
            Err(reader_answer) => return Ok(reader_answer),
        };
        if request.confirms_new() {
            match self.keyed(deadline)? {
                // The reader compares the two itself; nothing reaches the card.
                Ok(again) if *again != *new => return Ok(vec![0x64, 0x02]),
                Ok(_) => {}
                Err(reader_answer) => return Ok(reader_answer),
            }
        }
        let Ok(apdu) = request
            .apdu_with_pins(current.as_ref().map(|c| c.as_slice()), &new)
            .map(Zeroizing::new)
        else {
            return Ok(vec![0x64, 0x03]);
        };
        self.send_built(&apdu)
    }
}
