//! The card layer over the in-process virtual backend and the real PIV applet: what a report
//! holds and what it cost, the warnings for the holder, PIN-pad entry on an emulated Omnikey
//! 3821, and the identity cache ending with the insertion.
#![allow(clippy::unwrap_used)]

use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cardgate_card::{
    CardError, CardInspector, Insertion, PasscodeSource, TrustConfig, WarningKind,
};
use cardgate_certs::{
    CheckPolicy, Crl, ExpiryWarning, FindingKind, Severity, TrustAnchors, Verdict,
};
use cardgate_piv::{
    FinalTry, Passcode, PasscodeGuard, PasscodeStatus, PasscodeTriesLeft, PinPadEnd, PivError,
};
use cardgate_reader::{
    MonitorHandle, PadEntry, ReaderBackend, ReaderEvent, ReaderName, VirtualBackend,
    VirtualReaderModel,
};
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::CardFile;
use cardgate_vcard::provision::{CardSpec, RevokedCard, TestCa, Validity, provision};

const PIN: &str = "7391";
const UUID: &str = "555000111222";
const NAME: &str = "Asha Patel";

fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::generate("Cardgate Card Layer Test CA").unwrap())
}

fn card(spec: CardSpec) -> CardFile {
    provision(ca(), &spec.pin(PIN)).unwrap().card
}

fn standard() -> CardFile {
    static CARD: OnceLock<CardFile> = OnceLock::new();
    CARD.get_or_init(|| card(CardSpec::new(NAME, UUID))).clone()
}

fn trust(revoked: &[RevokedCard]) -> TrustConfig {
    let anchors = TrustAnchors::from_der([ca().certificate_der()]).unwrap();
    let crl = Crl::from_der(&ca().crl_der(revoked, 7).unwrap(), &anchors).unwrap();
    TrustConfig {
        anchors,
        crl: Some(crl),
        policy: CheckPolicy::default(),
    }
}

/// A backend, its monitor's events, and an inspector fed by them.
struct Rig {
    backend: VirtualBackend,
    inspector: CardInspector,
    events: Receiver<ReaderEvent>,
    _monitor: MonitorHandle,
}

impl Rig {
    fn new(trust: TrustConfig) -> Rig {
        let backend = VirtualBackend::new();
        let (sender, events) = mpsc::channel();
        let monitor = backend.monitor(Box::new(sender)).unwrap();
        let inspector = CardInspector::new(
            Arc::new(backend.clone()),
            Arc::new(PasscodeGuard::in_memory().unwrap()),
            trust,
        );
        Rig {
            backend,
            inspector,
            events,
            _monitor: monitor,
        }
    }

    fn reader(&self, model: VirtualReaderModel) -> ReaderName {
        self.backend.attach_reader_model("Test Reader 00 00", model)
    }

    /// Inserts `card` and feeds events until the inspector hands out its insertion.
    fn insert(&self, reader: &ReaderName, card: CardFile) -> Insertion {
        self.backend
            .insert(reader, Box::new(PivApplet::new(card)))
            .map_err(|_| "occupied")
            .unwrap();
        loop {
            let event = self.events.recv_timeout(Duration::from_secs(2)).unwrap();
            if let Some(insertion) = self.inspector.track(&event) {
                return insertion;
            }
        }
    }

    /// Feeds every event that arrives within a short quiet window.
    fn settle(&self) {
        while let Ok(event) = self.events.recv_timeout(Duration::from_millis(200)) {
            self.inspector.track(&event);
        }
    }
}

fn host(pin: &str) -> PasscodeSource {
    PasscodeSource::Host(Passcode::new(pin.to_owned()).unwrap())
}

#[test]
fn a_report_holds_the_provisioned_identity_for_six_apdus() {
    let rig = Rig::new(trust(&[]));
    let reader = rig.reader(VirtualReaderModel::plain());
    let insertion = rig.insert(&reader, standard());
    let report = rig.inspector.inspect(&insertion).unwrap();
    assert_eq!(report.identity.holder_uuid.as_str(), UUID);
    assert_eq!(report.identity.holder_name, NAME);
    assert_eq!(
        report.identity.card_serial.as_str(),
        standard().profile.card_serial
    );
    assert_eq!(report.certificate.holder_uuid.as_deref(), Some(UUID));
    assert_eq!(report.certificate.verdict(), Verdict::Usable);
    assert_eq!(
        report.passcode,
        PasscodeStatus::TriesLeft(PasscodeTriesLeft::new(3))
    );
    assert!(!report.pin_pad);
    assert!(!report.from_cache);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // SELECT, CHUID, the 9A certificate (GET DATA + GET RESPONSE rounds), VERIFY status.
    assert_eq!(report.apdus, rig.backend.apdu_count(&reader));
    assert!(report.apdus <= 6, "{} APDUs", report.apdus);
    assert_eq!(report.reader, reader);
}

#[test]
fn certificate_warnings_say_what_to_do() {
    let expiring = card(CardSpec::new(NAME, "555000111301").validity(Validity::ExpiresInDays(20)));
    let expired = card(CardSpec::new(NAME, "555000111302").validity(Validity::Expired));
    let old = card(CardSpec::new(NAME, "555000111303").old_generation());
    let revoked = card(CardSpec::new(NAME, "555000111304"));
    let revocations = RevokedCard::all_of(&revoked, time::OffsetDateTime::now_utc()).unwrap();
    let rig = Rig::new(trust(&revocations));
    let reader = rig.reader(VirtualReaderModel::plain());

    let cases = [
        (
            expiring,
            FindingKind::ExpiresSoon(ExpiryWarning::Within30),
            Severity::Warning,
            "Sponsor",
        ),
        (
            expired,
            FindingKind::Expired,
            Severity::Blocking,
            "Registration Authority",
        ),
        (
            old,
            FindingKind::OldGeneration,
            Severity::Warning,
            "Registration Authority",
        ),
        (
            revoked,
            FindingKind::Revoked,
            Severity::Blocking,
            "Registration Authority",
        ),
    ];
    for (file, kind, severity, who) in cases {
        let insertion = rig.insert(&reader, file);
        let report = rig.inspector.inspect(&insertion).unwrap();
        let warning = report
            .warnings
            .iter()
            .find(|w| w.kind == WarningKind::Certificate(kind))
            .unwrap_or_else(|| panic!("no {kind:?} warning in {:?}", report.warnings));
        assert_eq!(warning.severity, severity);
        assert!(
            warning.next_step.contains(who),
            "{kind:?}: {}",
            warning.next_step
        );
        rig.backend.remove(&reader).unwrap();
        rig.settle();
    }
}

#[test]
fn few_tries_left_and_a_locked_card_are_warned_about() {
    let rig = Rig::new(trust(&[]));
    let reader = rig.reader(VirtualReaderModel::plain());
    let insertion = rig.insert(&reader, standard());
    let e = rig
        .inspector
        .verify_passcode(&insertion, host("1111"), FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(
        matches!(e.piv(), Some(PivError::WrongPasscode { tries_left, .. }) if tries_left.get() == 2),
        "{e:?}"
    );
    let report = rig.inspector.inspect(&insertion).unwrap();
    let few = report
        .warnings
        .iter()
        .find(|w| w.kind == WarningKind::FewPasscodeTries { left: 2 })
        .unwrap_or_else(|| panic!("{:?}", report.warnings));
    assert!(few.message.contains("2 passcode tries"), "{}", few.message);
    assert!(few.next_step.contains("Sponsor"), "{}", few.next_step);

    rig.inspector
        .verify_passcode(&insertion, host("2222"), FinalTry::NotConfirmed)
        .unwrap_err();
    rig.inspector
        .verify_passcode(&insertion, host("3333"), FinalTry::Confirmed)
        .unwrap_err();
    // The fourth attempt, even with the right passcode, sends nothing at all.
    let before = rig.backend.apdu_count(&reader);
    let e = rig
        .inspector
        .verify_passcode(&insertion, host(PIN), FinalTry::Confirmed)
        .unwrap_err();
    assert!(
        matches!(e.piv(), Some(PivError::CardBlocked { .. })),
        "{e:?}"
    );
    assert_eq!(rig.backend.apdu_count(&reader), before);
    let report = rig.inspector.inspect(&insertion).unwrap();
    assert_eq!(report.passcode, PasscodeStatus::Blocked);
    let locked = &report.warnings[0];
    assert_eq!(locked.kind, WarningKind::PasscodeLocked);
    assert_eq!(locked.severity, Severity::Blocking);
    assert!(locked.next_step.contains("Local Smartcard Administrator"));
}

#[test]
fn the_pin_pad_takes_the_passcode_and_the_host_may_not() {
    let rig = Rig::new(trust(&[]));
    let reader = rig.reader(VirtualReaderModel::omnikey_3821());
    let insertion = rig.insert(&reader, standard());
    let report = rig.inspector.inspect(&insertion).unwrap();
    assert!(report.pin_pad);

    // Typing it on the host is refused before anything reaches the card.
    let before = rig.backend.apdu_count(&reader);
    let e = rig
        .inspector
        .verify_passcode(&insertion, host(PIN), FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(matches!(e, CardError::UsePinPad { .. }), "{e:?}");
    assert_eq!(rig.backend.apdu_count(&reader), before);

    // Cancel on the pad costs nothing.
    rig.backend.enter_on_pad(&reader, PadEntry::Cancel).unwrap();
    let e = rig
        .inspector
        .verify_passcode(&insertion, PasscodeSource::PinPad, FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(
        matches!(
            e.piv(),
            Some(PivError::PinPadEntryEnded {
                how: PinPadEnd::Cancelled
            })
        ),
        "{e:?}"
    );

    // A wrong passcode on the pad counts; the right one verifies and resets the count.
    rig.backend
        .enter_on_pad(&reader, PadEntry::pin("999999"))
        .unwrap();
    let e = rig
        .inspector
        .verify_passcode(&insertion, PasscodeSource::PinPad, FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(
        matches!(e.piv(), Some(PivError::WrongPasscode { tries_left, .. }) if tries_left.get() == 2),
        "{e:?}"
    );
    rig.backend
        .enter_on_pad(&reader, PadEntry::pin(PIN))
        .unwrap();
    rig.inspector
        .verify_passcode(&insertion, PasscodeSource::PinPad, FinalTry::NotConfirmed)
        .unwrap();
    let report = rig.inspector.inspect(&insertion).unwrap();
    assert_eq!(report.passcode, PasscodeStatus::Verified);
}

#[test]
fn a_reader_without_a_pad_refuses_pad_entry_and_takes_host_entry() {
    let rig = Rig::new(trust(&[]));
    // An Omnikey 3121 advertises a pad it does not have: treated as none.
    let reader = rig.reader(VirtualReaderModel::omnikey_3121());
    let insertion = rig.insert(&reader, standard());
    let before = rig.backend.apdu_count(&reader);
    let e = rig
        .inspector
        .verify_passcode(&insertion, PasscodeSource::PinPad, FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(matches!(e, CardError::NoPinPad { .. }), "{e:?}");
    assert_eq!(rig.backend.apdu_count(&reader), before);
    rig.inspector
        .verify_passcode(&insertion, host(PIN), FinalTry::NotConfirmed)
        .unwrap();
}

#[test]
fn the_cache_serves_one_insertion_and_ends_with_the_removal() {
    let rig = Rig::new(trust(&[]));
    let reader = rig.reader(VirtualReaderModel::plain());
    let insertion = rig.insert(&reader, standard());
    let first = rig.inspector.inspect(&insertion).unwrap();
    let second = rig.inspector.inspect(&insertion).unwrap();
    assert!(second.from_cache);
    assert_eq!(second.identity, first.identity);
    assert_eq!(second.apdus, 3, "SELECT, CHUID, VERIFY status");
    assert!(rig.inspector.cached_identity(&insertion).is_some());

    rig.backend.remove(&reader).unwrap();
    rig.settle();
    assert!(!rig.inspector.is_current(&insertion));
    assert!(rig.inspector.cached_identity(&insertion).is_none());
    let e = rig.inspector.inspect(&insertion).unwrap_err();
    assert!(matches!(e, CardError::StaleInsertion { .. }), "{e:?}");
    let e = rig
        .inspector
        .verify_passcode(&insertion, host(PIN), FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(e.is_card_gone(), "{e:?}");

    // The same card back in: a new insertion, read afresh.
    let again = rig.insert(&reader, standard());
    assert_ne!(again, insertion);
    let report = rig.inspector.inspect(&again).unwrap();
    assert!(!report.from_cache);
}

#[test]
fn a_brief_removal_seen_only_through_the_counter_ends_the_insertion() {
    let rig = Rig::new(trust(&[]));
    let reader = rig.reader(VirtualReaderModel::plain());
    let insertion = rig.insert(&reader, standard());
    rig.inspector.inspect(&insertion).unwrap();
    assert!(rig.backend.bounce(&reader));
    let mut newer = None;
    while let Ok(event) = rig.events.recv_timeout(Duration::from_millis(300)) {
        newer = rig.inspector.track(&event).or(newer);
    }
    assert!(!rig.inspector.is_current(&insertion));
    let newer = newer.unwrap();
    assert!(!rig.inspector.inspect(&newer).unwrap().from_cache);
}

#[test]
fn a_swapped_card_is_never_reported_with_the_cached_identity() {
    // Even if events have not been fed yet, the CHUID read on every inspection catches a
    // different card.
    let rig = Rig::new(trust(&[]));
    let reader = rig.reader(VirtualReaderModel::plain());
    let insertion = rig.insert(&reader, standard());
    rig.inspector.inspect(&insertion).unwrap();
    let other = card(CardSpec::new("Ben Okafor", "555000111399"));
    rig.backend.remove(&reader).unwrap();
    rig.backend
        .insert(&reader, Box::new(PivApplet::new(other.clone())))
        .map_err(|_| "occupied")
        .unwrap();
    let report = rig.inspector.inspect(&insertion).unwrap();
    assert!(!report.from_cache);
    assert_eq!(report.identity.holder_uuid.as_str(), "555000111399");
}

#[test]
fn a_lost_service_ends_every_insertion() {
    let rig = Rig::new(trust(&[]));
    let reader = rig.reader(VirtualReaderModel::plain());
    let insertion = rig.insert(&reader, standard());
    rig.backend.set_service_available(false);
    rig.settle();
    assert!(!rig.inspector.is_current(&insertion));
    let e = rig.inspector.inspect(&insertion).unwrap_err();
    assert!(matches!(e, CardError::StaleInsertion { .. }), "{e:?}");
}

#[test]
fn a_passcode_source_never_shows_the_passcode() {
    let source = host("7391");
    assert!(!format!("{source:?}").contains("7391"));
}
