//! [`CardInspector`]: what the daemon's per-reader card actor calls. It turns the monitor's
//! events into [`Insertion`]s, reads and checks the card of an insertion in one short
//! shared-mode transaction ([`CardInspector::inspect`] → [`CardReport`]), verifies the
//! passcode on the reader's PIN pad or from the host ([`CardInspector::verify_passcode`]),
//! and keeps the identity cache.
//!
//! # The identity cache
//!
//! Entries are keyed by card serial and the SHA-256 of the authentication certificate and
//! bound to the [`Insertion`] they were read in. An `Insertion` comes only from
//! [`CardInspector::track`], which sees the removal events of the same stream: a removal,
//! a detached reader or a lost service ends the insertion and drops its entries, so nothing
//! read from a card is trusted after it left (OpenSC#2536). A repeated inspection within one
//! insertion still SELECTs and reads the CHUID, and uses the cache only if the serial is the
//! cached one: three APDUs instead of six.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use cardgate_certs::{CertificateReport, CheckPolicy, Crl, TrustAnchors, check_card_certificate};
use cardgate_piv::{
    AGENT_MAX_CONSECUTIVE_FAILURES, CardIdentity, CardSerial, FinalTry, Passcode, PasscodeGuard,
    PasscodeStatus, PivClient, PivError,
};
use cardgate_reader::{ReaderBackend, ReaderEvent, ReaderEventKind, ReaderName};
use time::OffsetDateTime;

use crate::channel::TransactionChannel;
use crate::error::CardError;
use crate::warnings::{HolderWarning, holder_warnings};

/// One card insertion as the monitor reported it. Everything the inspector learns about a
/// card is bound to one; only [`CardInspector::track`] makes them, and a removal in the same
/// event stream ends them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insertion {
    reader: ReaderName,
    generation: u64,
    event_count: Option<u16>,
    seen_at: Instant,
}

impl Insertion {
    /// The reader the card is in.
    pub fn reader(&self) -> &ReaderName {
        &self.reader
    }

    /// When the monitor saw the card arrive (the start of "time to a checked identity").
    pub fn seen_at(&self) -> Instant {
        self.seen_at
    }

    /// The reader's PC/SC event counter at the insertion, when known (for diagnostics).
    pub fn event_count(&self) -> Option<u16> {
        self.event_count
    }
}

/// Whom the agent trusts: the issuing CAs, the newest CRL, and the policy for what the NHS
/// rules leave open (CRL grace, unknown revocation).
#[derive(Clone, Debug)]
pub struct TrustConfig {
    /// The issuing CA certificates a card must chain to.
    pub anchors: TrustAnchors,
    /// The newest CRL (the daemon fetches and replaces it); `None` means revocation is
    /// unknown, which the policy decides about.
    pub crl: Option<Crl>,
    /// The check policy.
    pub policy: CheckPolicy,
}

/// Where the passcode comes from.
pub enum PasscodeSource {
    /// Typed on this computer (a reader without a usable PIN pad).
    Host(Passcode),
    /// Keyed on the reader's own PIN pad: it never passes through this computer.
    PinPad,
}

impl std::fmt::Debug for PasscodeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasscodeSource::Host(_) => f.write_str("Host(<redacted>)"),
            PasscodeSource::PinPad => f.write_str("PinPad"),
        }
    }
}

/// Everything the agent knows about the card of one insertion after reading only what login
/// needs (SELECT, CHUID, the 9A certificate, the passcode's status without spending a try).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CardReport {
    /// The reader.
    pub reader: ReaderName,
    /// The insertion this report is about (pass it back for passcode entry).
    pub insertion: Insertion,
    /// Card serial, holder UUID and name, the authentication certificate.
    pub identity: CardIdentity,
    /// The checks of the authentication certificate, with findings for staff.
    pub certificate: CertificateReport,
    /// The passcode's status, capped by the agent's three-attempt limit.
    pub passcode: PasscodeStatus,
    /// Whether the passcode is to be keyed on the reader's PIN pad.
    pub pin_pad: bool,
    /// APDUs exchanged with the card for this report.
    pub apdus: u64,
    /// Whether the identity came from the cache (read earlier in this same insertion).
    pub from_cache: bool,
    /// From the start of [`CardInspector::inspect`] to the finished report.
    pub elapsed: Duration,
    /// What the holder must be told at this insertion, most severe first.
    pub warnings: Vec<HolderWarning>,
}

/// Cache key: the card serial and the SHA-256 of its authentication certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    serial: CardSerial,
    certificate_sha256: [u8; 32],
}

#[derive(Debug)]
struct CacheEntry {
    reader: ReaderName,
    generation: u64,
    identity: CardIdentity,
}

#[derive(Debug, Default)]
struct Tracking {
    next_generation: u64,
    /// The insertion generation of the card in each reader, while one is in.
    current: HashMap<ReaderName, u64>,
    cache: HashMap<CacheKey, CacheEntry>,
}

impl Tracking {
    fn is_current(&self, insertion: &Insertion) -> bool {
        self.current.get(&insertion.reader) == Some(&insertion.generation)
    }

    fn end(&mut self, reader: &ReaderName) {
        self.current.remove(reader);
        self.cache.retain(|_, entry| &entry.reader != reader);
    }
}

/// A card-layer failure inside a transaction, before it is tied to its reader.
enum Failure {
    Piv(PivError),
    Card(CardError),
}

impl From<PivError> for Failure {
    fn from(e: PivError) -> Self {
        Failure::Piv(e)
    }
}

impl From<CardError> for Failure {
    fn from(e: CardError) -> Self {
        Failure::Card(e)
    }
}

type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Reads, checks and unlocks the cards of one reader backend. Shared (`Arc`) by the
/// daemon's per-reader actors; every method takes `&self`.
pub struct CardInspector {
    backend: Arc<dyn ReaderBackend>,
    guard: Arc<PasscodeGuard>,
    trust: RwLock<TrustConfig>,
    clock: Clock,
    tracking: Mutex<Tracking>,
}

impl std::fmt::Debug for CardInspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tracking = self.lock();
        f.debug_struct("CardInspector")
            .field("cards_in", &tracking.current.len())
            .field("cached_identities", &tracking.cache.len())
            .finish_non_exhaustive()
    }
}

impl CardInspector {
    /// An inspector over `backend`, counting passcode failures in `guard` (one per process,
    /// shared with anything else that sends passcodes), checking certificates with `trust`.
    pub fn new(
        backend: Arc<dyn ReaderBackend>,
        guard: Arc<PasscodeGuard>,
        trust: TrustConfig,
    ) -> Self {
        CardInspector {
            backend,
            guard,
            trust: RwLock::new(trust),
            clock: Arc::new(OffsetDateTime::now_utc),
            tracking: Mutex::new(Tracking::default()),
        }
    }

    /// Replaces the clock certificate checks use (tests, or a trusted time source).
    pub fn with_clock(
        mut self,
        clock: impl Fn() -> OffsetDateTime + Send + Sync + 'static,
    ) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Installs a newer CRL (or none); the next inspection uses it.
    pub fn set_crl(&self, crl: Option<Crl>) {
        self.trust
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .crl = crl;
    }

    /// The passcode guard, e.g. for the daemon to forget failures after an unlock elsewhere.
    pub fn guard(&self) -> &Arc<PasscodeGuard> {
        &self.guard
    }

    /// Feeds one monitor event. Returns the new [`Insertion`] for a card insertion; a
    /// removal, a detached reader or a lost service ends the reader's insertion and drops
    /// what was cached from its card. Every event of the monitor must come through here.
    pub fn track(&self, event: &ReaderEvent) -> Option<Insertion> {
        let mut tracking = self.lock();
        match &event.kind {
            ReaderEventKind::CardInserted { event_count, .. } => {
                tracking.end(&event.reader);
                tracking.next_generation += 1;
                let generation = tracking.next_generation;
                tracking.current.insert(event.reader.clone(), generation);
                Some(Insertion {
                    reader: event.reader.clone(),
                    generation,
                    event_count: *event_count,
                    seen_at: event.at,
                })
            }
            ReaderEventKind::CardRemoved { .. } | ReaderEventKind::ReaderDetached => {
                tracking.end(&event.reader);
                None
            }
            ReaderEventKind::ServiceLost => {
                tracking.current.clear();
                tracking.cache.clear();
                None
            }
            _ => None,
        }
    }

    /// Whether `insertion` is still the card in its reader.
    pub fn is_current(&self, insertion: &Insertion) -> bool {
        self.lock().is_current(insertion)
    }

    /// Drops what was cached from the card of `insertion`, so the next
    /// [`CardInspector::inspect`] reads it in full: for the agent after it wrote a new
    /// certificate to the card (renewal), which the card serial alone would not reveal.
    pub fn forget_identity(&self, insertion: &Insertion) {
        self.lock()
            .cache
            .retain(|_, e| !(e.reader == insertion.reader && e.generation == insertion.generation));
    }

    /// The identity read earlier in this insertion, without touching the card; `None` once
    /// the card was removed (or if it was never read).
    pub fn cached_identity(&self, insertion: &Insertion) -> Option<CardIdentity> {
        let tracking = self.lock();
        if !tracking.is_current(insertion) {
            return None;
        }
        tracking
            .cache
            .values()
            .find(|e| e.reader == insertion.reader && e.generation == insertion.generation)
            .map(|e| e.identity.clone())
    }

    /// Reads and checks the card of `insertion` in one transaction: the identity (from the
    /// cache if read earlier in this insertion and the CHUID's serial still matches), the
    /// passcode's status (no try spent), whether the reader has a PIN pad; then the
    /// certificate checks and the warnings for the holder.
    pub fn inspect(&self, insertion: &Insertion) -> Result<CardReport, CardError> {
        let started = Instant::now();
        let cached = self.cached_identity(insertion);
        let ((identity, from_cache, passcode), apdus, pin_pad) =
            self.with_card(insertion, |client, _| {
                let (identity, from_cache) = match cached {
                    Some(identity) => {
                        client.select()?;
                        if client.card_serial()? == identity.card_serial {
                            (identity, true)
                        } else {
                            (client.read_identity()?, false)
                        }
                    }
                    None => (client.read_identity()?, false),
                };
                let passcode = client.passcode_status()?;
                Ok((identity, from_cache, passcode))
            })?;

        let certificate = {
            let trust = self.trust.read().unwrap_or_else(PoisonError::into_inner);
            check_card_certificate(
                &identity.auth_certificate_der,
                &trust.anchors,
                trust.crl.as_ref(),
                identity.card_serial.as_str(),
                (self.clock)(),
                &trust.policy,
            )
            .map_err(|source| CardError::Certificate {
                reader: insertion.reader.clone(),
                source,
            })?
        };

        self.remember(insertion, &identity);
        let warnings = holder_warnings(&certificate, passcode);
        Ok(CardReport {
            reader: insertion.reader.clone(),
            insertion: insertion.clone(),
            identity,
            certificate,
            passcode,
            pin_pad,
            apdus,
            from_cache,
            elapsed: started.elapsed(),
            warnings,
        })
    }

    /// Verifies the holder's passcode on the card of `insertion`, under the PIV client's
    /// policy (three-attempt ledger, tries read first, final try only when confirmed, a
    /// value that just failed never re-sent). Once the agent counts the card as locked and
    /// its serial is known from this insertion, nothing at all is sent to it.
    ///
    /// On a reader with a usable PIN pad only [`PasscodeSource::PinPad`] is accepted (the
    /// passcode must never be typed on the host there): [`CardError::UsePinPad`]. On one
    /// without, [`PasscodeSource::PinPad`] gives [`CardError::NoPinPad`]. Neither sends
    /// anything to the card.
    pub fn verify_passcode(
        &self,
        insertion: &Insertion,
        source: PasscodeSource,
        final_try: FinalTry,
    ) -> Result<(), CardError> {
        let reader = insertion.reader.clone();
        // A card this agent counts as locked is not touched at all when its serial is known
        // from this insertion: not even SELECT goes out.
        if let Some(identity) = self.cached_identity(insertion)
            && self.guard.consecutive_failures(&identity.card_serial)
                >= AGENT_MAX_CONSECUTIVE_FAILURES
        {
            return Err(CardError::Card {
                reader,
                source: PivError::CardBlocked {
                    by_agent: true,
                    status: None,
                },
            });
        }
        self.with_card(insertion, |client, pin_pad| match (source, pin_pad) {
            (PasscodeSource::Host(_), true) => Err(CardError::UsePinPad { reader }.into()),
            (PasscodeSource::PinPad, false) => Err(CardError::NoPinPad { reader }.into()),
            (PasscodeSource::Host(passcode), false) => {
                Ok(client.verify_passcode(&passcode, final_try)?)
            }
            (PasscodeSource::PinPad, true) => Ok(client
                .verify_passcode_on_reader(final_try, TransactionChannel::verify_on_pin_pad)?),
        })
        .map(|((), _, _)| ())
    }

    /// Connects (shared mode) to the card of `insertion`, reads the reader's PIN-pad
    /// support, opens one transaction and runs `f` with a PIV client over it. Returns `f`'s
    /// result, the APDUs it cost and whether the pad is usable.
    fn with_card<T>(
        &self,
        insertion: &Insertion,
        f: impl FnOnce(&mut PivClient<TransactionChannel<'_>>, bool) -> Result<T, Failure>,
    ) -> Result<(T, u64, bool), CardError> {
        let reader = &insertion.reader;
        if !self.is_current(insertion) {
            return Err(CardError::StaleInsertion {
                reader: reader.clone(),
            });
        }
        let reader_error = |e| CardError::from_reader(reader, e);
        let mut connection = self.backend.connect(reader).map_err(reader_error)?;
        let pin_pad = connection
            .features()
            .map_err(reader_error)?
            .pin_pad()
            .is_usable();
        let transaction = connection.transaction().map_err(reader_error)?;
        let mut client = PivClient::new(
            TransactionChannel::new(transaction),
            Arc::clone(&self.guard),
        );
        let outcome = f(&mut client, pin_pad);
        let mut channel = client.into_channel();
        let apdus = channel.apdus();
        match outcome {
            Ok(value) => Ok((value, apdus, pin_pad)),
            Err(Failure::Card(e)) => Err(e),
            Err(Failure::Piv(e @ PivError::Channel(_))) => match channel.take_last_error() {
                Some(reader_failure) => Err(CardError::from_reader(reader, reader_failure)),
                None => Err(CardError::Card {
                    reader: reader.clone(),
                    source: e,
                }),
            },
            Err(Failure::Piv(e)) => Err(CardError::Card {
                reader: reader.clone(),
                source: e,
            }),
        }
    }

    /// Caches `identity` for `insertion`, unless the card left meanwhile.
    fn remember(&self, insertion: &Insertion, identity: &CardIdentity) {
        let digest = ring::digest::digest(&ring::digest::SHA256, &identity.auth_certificate_der);
        let mut certificate_sha256 = [0u8; 32];
        certificate_sha256.copy_from_slice(digest.as_ref());
        let mut tracking = self.lock();
        if !tracking.is_current(insertion) {
            return;
        }
        tracking.cache.retain(|_, e| e.reader != insertion.reader);
        tracking.cache.insert(
            CacheKey {
                serial: identity.card_serial.clone(),
                certificate_sha256,
            },
            CacheEntry {
                reader: insertion.reader.clone(),
                generation: insertion.generation,
                identity: identity.clone(),
            },
        );
    }

    fn lock(&self) -> MutexGuard<'_, Tracking> {
        self.tracking.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
