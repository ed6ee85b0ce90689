//! The in-process virtual backend: events from its monitor (the same tracker as PC/SC's),
//! brief removals found through the event counter, service loss and restoration, transaction
//! exclusion, PIN-pad verification and change against the real PIV applet, and a reset on
//! disconnect clearing the card's verified passcode.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use cardgate_lab::ProbeCard;
use cardgate_reader::{
    MonitorHandle, MonitorHealth, PadEntry, PadPrompts, PinModifyRequest, PinPad, PinVerifyRequest,
    PivModify, ReaderBackend, ReaderError, ReaderEvent, ReaderEventKind, ReaderName,
    VirtualBackend, VirtualReaderModel,
};
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::CardFile;
use cardgate_vcard::provision::{CardSpec, TestCa, provision};

const SELECT_PIV: [u8; 15] = [
    0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00,
];
/// VERIFY without data: asks whether the PIN is verified (90 00) or how many tries are left.
const PIN_STATUS: [u8; 4] = [0x00, 0x20, 0x00, 0x80];

/// One provisioned card file for the whole file (key generation is slow).
fn card_file() -> CardFile {
    static CARD: OnceLock<CardFile> = OnceLock::new();
    CARD.get_or_init(|| {
        let ca = TestCa::generate("cardgate-reader test CA").unwrap();
        provision(&ca, &CardSpec::new("Pat Pharmacist", "555000111222"))
            .unwrap()
            .card
    })
    .clone()
}

fn piv_card() -> Box<PivApplet> {
    Box::new(PivApplet::new(card_file()))
}

fn start(backend: &VirtualBackend) -> (MonitorHandle, Receiver<ReaderEvent>) {
    let (sender, receiver) = mpsc::channel();
    let handle = backend.monitor(Box::new(sender)).unwrap();
    (handle, receiver)
}

fn next(events: &Receiver<ReaderEvent>) -> ReaderEvent {
    events.recv_timeout(Duration::from_secs(2)).unwrap()
}

fn kinds_until_quiet(events: &Receiver<ReaderEvent>) -> Vec<(String, ReaderEventKind)> {
    let mut out = Vec::new();
    while let Ok(e) = events.recv_timeout(Duration::from_millis(200)) {
        out.push((e.reader.to_string(), e.kind));
    }
    out
}

fn inserted(atr: &[u8], count: u16) -> ReaderEventKind {
    ReaderEventKind::CardInserted {
        atr: atr.to_vec(),
        event_count: Some(count),
    }
}

#[test]
fn monitor_reports_the_initial_state_then_each_reader_on_its_own() {
    let backend = VirtualBackend::new();
    let a = backend.attach_reader("Reader A");
    let b = backend.attach_reader("Reader B");
    backend
        .insert(&a, Box::new(ProbeCard::with_atr(vec![0x3B, 0x01])))
        .map_err(|_| "occupied")
        .unwrap();
    let (monitor, events) = start(&backend);
    assert_eq!(
        kinds_until_quiet(&events),
        [
            ("Reader A".into(), ReaderEventKind::ReaderAttached),
            ("Reader B".into(), ReaderEventKind::ReaderAttached),
            ("Reader A".into(), inserted(&[0x3B, 0x01], 1)),
        ]
    );
    let before = Instant::now();
    backend
        .insert(&b, Box::new(ProbeCard::with_atr(vec![0x3B, 0x02])))
        .map_err(|_| "occupied")
        .unwrap();
    let e = next(&events);
    assert_eq!(
        (e.reader.clone(), e.kind.clone()),
        (b.clone(), inserted(&[0x3B, 0x02], 1))
    );
    assert!(e.at >= before);
    assert!(backend.remove(&a).is_some());
    let e = next(&events);
    assert_eq!(
        (e.reader, e.kind),
        (
            a,
            ReaderEventKind::CardRemoved {
                event_count: Some(2)
            }
        )
    );
    // Quiet readers: no wake-ups.
    let wakeups = monitor.wakeups();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(monitor.wakeups(), wakeups);
    backend.detach_reader(&b);
    assert_eq!(
        kinds_until_quiet(&events),
        [
            (
                "Reader B".into(),
                ReaderEventKind::CardRemoved { event_count: None }
            ),
            ("Reader B".into(), ReaderEventKind::ReaderDetached),
        ]
    );
    let asked = Instant::now();
    monitor.shutdown();
    assert!(asked.elapsed() < Duration::from_millis(200));
}

#[test]
fn a_removal_too_brief_to_see_is_found_through_the_event_counter() {
    let backend = VirtualBackend::new();
    let a = backend.attach_reader("Reader A");
    backend
        .insert(&a, piv_card())
        .map_err(|_| "occupied")
        .unwrap();
    let (_monitor, events) = start(&backend);
    kinds_until_quiet(&events);

    let mut connection = backend.connect(&a).unwrap();
    let answer = connection
        .transaction()
        .unwrap()
        .transmit(&SELECT_PIV)
        .unwrap();
    assert_eq!(answer[answer.len() - 2..], [0x90, 0x00]);
    assert!(backend.bounce(&a));
    let atr = card_file_atr();
    assert_eq!(
        kinds_until_quiet(&events),
        [
            (
                "Reader A".into(),
                ReaderEventKind::CardRemoved { event_count: None }
            ),
            ("Reader A".into(), inserted(&atr, 3)),
        ]
    );
    // The connection was to the card before the bounce: it must not carry on as if nothing
    // happened (its PIN state is gone).
    match connection.transaction() {
        Err(ReaderError::CardRemoved { .. }) => {}
        other => panic!("old connection after a bounce: {other:?}"),
    }
}

fn card_file_atr() -> Vec<u8> {
    use cardgate_vcard::Card;
    piv_card().atr()
}

#[test]
fn service_loss_removes_cards_and_restoration_reconciles_them() {
    let backend = VirtualBackend::new();
    let a = backend.attach_reader("Reader A");
    let b = backend.attach_reader("Reader B");
    let c = backend.attach_reader("Reader C");
    backend
        .insert(&a, Box::new(ProbeCard::with_atr(vec![0x3B, 0x0A])))
        .map_err(|_| "occupied")
        .unwrap();
    backend
        .insert(&b, Box::new(ProbeCard::with_atr(vec![0x3B, 0x0B])))
        .map_err(|_| "occupied")
        .unwrap();
    let (monitor, events) = start(&backend);
    kinds_until_quiet(&events);
    let mut old = backend.connect(&a).unwrap();

    backend.set_service_available(false);
    assert_eq!(
        kinds_until_quiet(&events),
        [
            (
                "Reader A".into(),
                ReaderEventKind::CardRemoved { event_count: None }
            ),
            (
                "Reader B".into(),
                ReaderEventKind::CardRemoved { event_count: None }
            ),
            ("".into(), ReaderEventKind::ServiceLost),
        ]
    );
    assert!(matches!(
        monitor.health(),
        MonitorHealth::Reconnecting { .. }
    ));
    assert!(backend.list_readers().unwrap_err().is_service_lost());
    // Meanwhile: B's card is pulled, one goes into C; A's stays.
    backend.remove(&b);
    backend
        .insert(&c, Box::new(ProbeCard::with_atr(vec![0x3B, 0x0C])))
        .map_err(|_| "occupied")
        .unwrap();
    assert!(kinds_until_quiet(&events).is_empty());

    backend.set_service_available(true);
    assert_eq!(
        kinds_until_quiet(&events),
        [
            ("".into(), ReaderEventKind::ServiceRestored),
            ("Reader A".into(), inserted(&[0x3B, 0x0A], 1)),
            ("Reader C".into(), inserted(&[0x3B, 0x0C], 1)),
        ]
    );
    assert_eq!(monitor.health(), MonitorHealth::Running);
    // A connection from before the restart is dead, a new one works.
    assert!(old.transaction().unwrap_err().is_service_lost());
    let mut fresh = backend.connect(&a).unwrap();
    assert_eq!(
        fresh.transaction().unwrap().transmit(&SELECT_PIV).unwrap(),
        [0x90, 0x00]
    );
}

#[test]
fn a_transaction_keeps_other_connections_out_until_it_ends() {
    let backend = VirtualBackend::new();
    let a = backend.attach_reader("Reader A");
    backend
        .insert(&a, Box::new(ProbeCard::new()))
        .map_err(|_| "occupied")
        .unwrap();
    let mut first = backend.connect(&a).unwrap();
    let mut second = backend.connect(&a).unwrap();
    let transaction = first.transaction().unwrap();
    let (sender, receiver) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut tx = second.transaction().unwrap();
        sender.send(Instant::now()).unwrap();
        tx.transmit(&SELECT_PIV).unwrap()
    });
    assert!(receiver.recv_timeout(Duration::from_millis(200)).is_err());
    let released = Instant::now();
    drop(transaction);
    let acquired = receiver.recv_timeout(Duration::from_secs(2)).unwrap();
    assert!(acquired >= released);
    assert_eq!(waiter.join().unwrap(), [0x90, 0x00]);
}

#[test]
fn a_card_pulled_mid_transaction_gives_card_removed() {
    let backend = VirtualBackend::new();
    let a = backend.attach_reader("Reader A");
    backend
        .insert(&a, Box::new(ProbeCard::new()))
        .map_err(|_| "occupied")
        .unwrap();
    let mut connection = backend.connect(&a).unwrap();
    let mut tx = connection.transaction().unwrap();
    tx.transmit(&SELECT_PIV).unwrap();
    backend.remove(&a);
    assert!(matches!(
        tx.transmit(&SELECT_PIV),
        Err(ReaderError::CardRemoved { .. })
    ));
    drop(tx);
    assert!(matches!(
        backend.connect(&a),
        Err(ReaderError::NoCard { .. })
    ));
}

fn pin_pad_reader(backend: &VirtualBackend) -> ReaderName {
    let r = backend.attach_reader_model("OMNIKEY 3821 00 00", VirtualReaderModel::omnikey_3821());
    backend
        .insert(&r, piv_card())
        .map_err(|_| "occupied")
        .unwrap();
    r
}

#[test]
fn pin_pad_verification_reaches_the_card_without_the_host_seeing_the_passcode() {
    let backend = VirtualBackend::new();
    let r = pin_pad_reader(&backend);
    let mut connection = backend.connect(&r).unwrap();
    let features = connection.features().unwrap();
    assert!(features.pin_pad().is_usable());
    assert_eq!(features.model().map(|m| m.name), Some("HID Omnikey 3821"));

    let mut tx = connection.transaction().unwrap();
    let answer = tx.transmit(&SELECT_PIV).unwrap();
    assert_eq!(answer[answer.len() - 2..], [0x90, 0x00]);
    let request = PinVerifyRequest::piv_verify(0x80);

    // A wrong passcode keyed on the pad costs a try, as on a real card.
    backend.enter_on_pad(&r, PadEntry::pin("654321")).unwrap();
    assert_eq!(tx.verify_pin_on_pad(&request).unwrap(), [0x63, 0xC2]);
    // Cancel and a too-short entry never reach the card.
    let sent = backend.apdu_count(&r);
    backend.enter_on_pad(&r, PadEntry::Cancel).unwrap();
    assert_eq!(tx.verify_pin_on_pad(&request).unwrap(), [0x64, 0x01]);
    backend.enter_on_pad(&r, PadEntry::pin("123")).unwrap();
    assert_eq!(tx.verify_pin_on_pad(&request).unwrap(), [0x64, 0x03]);
    assert_eq!(backend.apdu_count(&r), sent);
    assert_eq!(tx.transmit(&PIN_STATUS).unwrap(), [0x63, 0xC2]);

    // The holder types while the reader waits (entry scripted from another thread).
    let typist = {
        let backend = backend.clone();
        let r = r.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            backend.enter_on_pad(&r, PadEntry::pin("123456")).unwrap();
        })
    };
    assert_eq!(tx.verify_pin_on_pad(&request).unwrap(), [0x90, 0x00]);
    typist.join().unwrap();
    assert_eq!(tx.transmit(&PIN_STATUS).unwrap(), [0x90, 0x00]);
}

#[test]
fn pin_pad_entry_times_out_with_64_00() {
    let backend = VirtualBackend::new();
    let r = pin_pad_reader(&backend);
    let mut connection = backend.connect(&r).unwrap();
    let mut tx = connection.transaction().unwrap();
    let mut request = PinVerifyRequest::piv_verify(0x80);
    request.timeout_secs = 1;
    let asked = Instant::now();
    assert_eq!(tx.verify_pin_on_pad(&request).unwrap(), [0x64, 0x00]);
    assert!(asked.elapsed() >= Duration::from_secs(1));
}

#[test]
fn readers_without_a_working_pin_pad_refuse_pad_verification() {
    let backend = VirtualBackend::new();
    let fake =
        backend.attach_reader_model("OMNIKEY 3121 00 00", VirtualReaderModel::omnikey_3121());
    let plain = backend.attach_reader("Plain 00 00");
    for r in [&fake, &plain] {
        backend
            .insert(r, piv_card())
            .map_err(|_| "occupied")
            .unwrap();
        let mut connection = backend.connect(r).unwrap();
        let pad = connection.features().unwrap().pin_pad();
        assert!(!pad.is_usable(), "{r}: {pad:?}");
        let mut tx = connection.transaction().unwrap();
        backend.enter_on_pad(r, PadEntry::pin("123456")).unwrap();
        assert!(matches!(
            tx.verify_pin_on_pad(&PinVerifyRequest::piv_verify(0x80)),
            Err(ReaderError::NoPinPad { .. })
        ));
        assert_eq!(backend.apdu_count(r), 0);
    }
    let mut connection = backend.connect(&fake).unwrap();
    assert!(matches!(
        connection.features().unwrap().pin_pad(),
        PinPad::Disabled { .. }
    ));
}

#[test]
fn the_monitor_stops_when_its_consumer_goes_away() {
    let backend = VirtualBackend::new();
    let a = backend.attach_reader("Reader A");
    let (monitor, events) = start(&backend);
    drop(events);
    backend
        .insert(&a, Box::new(ProbeCard::new()))
        .map_err(|_| "occupied")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while monitor.health() != MonitorHealth::Stopped && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(monitor.health(), MonitorHealth::Stopped);
    // The thread ended on its own; shutdown then only joins.
    monitor.shutdown();
}

const OMNIKEY_PROMPTS: PadPrompts = PadPrompts {
    display: true,
    confirm_new: true,
};

#[test]
fn pin_pad_change_and_unlock_reach_the_card_with_values_keyed_on_the_pad() {
    let backend = VirtualBackend::new();
    let r = pin_pad_reader(&backend);
    let mut connection = backend.connect(&r).unwrap();
    let prompts = connection.features().unwrap().pad_prompts();
    assert_eq!(prompts, OMNIKEY_PROMPTS);
    let mut tx = connection.transaction().unwrap();
    tx.transmit(&SELECT_PIV).unwrap();
    let change = PinModifyRequest::piv(PivModify::ChangePasscode, prompts);

    // The confirmation differs: the reader says so itself and nothing reaches the card.
    let sent = backend.apdu_count(&r);
    for value in ["123456", "24680", "24681"] {
        backend.enter_on_pad(&r, PadEntry::pin(value)).unwrap();
    }
    assert_eq!(tx.modify_pin_on_pad(&change).unwrap(), [0x64, 0x02]);
    // Cancel at the second prompt: nothing reaches the card either.
    backend.enter_on_pad(&r, PadEntry::pin("123456")).unwrap();
    backend.enter_on_pad(&r, PadEntry::Cancel).unwrap();
    assert_eq!(tx.modify_pin_on_pad(&change).unwrap(), [0x64, 0x01]);
    assert_eq!(backend.apdu_count(&r), sent);

    // A wrong current passcode costs a try on the card.
    for value in ["999999", "24680", "24680"] {
        backend.enter_on_pad(&r, PadEntry::pin(value)).unwrap();
    }
    assert_eq!(tx.modify_pin_on_pad(&change).unwrap(), [0x63, 0xC2]);
    // The right one changes it: the new passcode verifies.
    for value in ["123456", "24680", "24680"] {
        backend.enter_on_pad(&r, PadEntry::pin(value)).unwrap();
    }
    assert_eq!(tx.modify_pin_on_pad(&change).unwrap(), [0x90, 0x00]);
    let mut verify = vec![0x00, 0x20, 0x00, 0x80, 0x08];
    verify.extend_from_slice(b"24680\xFF\xFF\xFF");
    assert_eq!(tx.transmit(&verify).unwrap(), [0x90, 0x00]);

    // The unlock code and a new passcode keyed on the pad: RESET RETRY COUNTER.
    let reset = PinModifyRequest::piv(PivModify::ResetRetryCounter, prompts);
    for value in ["12345678", "13579", "13579"] {
        backend.enter_on_pad(&r, PadEntry::pin(value)).unwrap();
    }
    assert_eq!(tx.modify_pin_on_pad(&reset).unwrap(), [0x90, 0x00]);
    let mut verify = vec![0x00, 0x20, 0x00, 0x80, 0x08];
    verify.extend_from_slice(b"13579\xFF\xFF\xFF");
    assert_eq!(tx.transmit(&verify).unwrap(), [0x90, 0x00]);
}

#[test]
fn a_pad_without_modify_and_a_plain_reader_refuse_a_change_on_the_pad() {
    let backend = VirtualBackend::new();
    let mut verify_only = VirtualReaderModel::omnikey_3821();
    // Only FEATURE_VERIFY_PIN_DIRECT (the first TLV) and the TLV properties.
    verify_only.feature_answer = [
        &verify_only.feature_answer[..6],
        &verify_only.feature_answer[12..],
    ]
    .concat();
    let pad = backend.attach_reader_model("Verify-only pad 00 00", verify_only);
    let plain = backend.attach_reader("Plain 00 00");
    for r in [&pad, &plain] {
        backend
            .insert(r, piv_card())
            .map_err(|_| "occupied")
            .unwrap();
        let mut connection = backend.connect(r).unwrap();
        assert!(!connection.features().unwrap().pin_pad().can_modify());
        let mut tx = connection.transaction().unwrap();
        let request = PinModifyRequest::piv(PivModify::ChangePasscode, OMNIKEY_PROMPTS);
        assert!(matches!(
            tx.modify_pin_on_pad(&request),
            Err(ReaderError::NoPinPad { .. })
        ));
    }
}

#[test]
fn a_reset_on_disconnect_clears_the_verified_passcode_and_fails_other_connections() {
    let backend = VirtualBackend::new();
    let r = backend.attach_reader("Plain 00 00");
    backend
        .insert(&r, piv_card())
        .map_err(|_| "occupied")
        .unwrap();
    let mut verify = vec![0x00, 0x20, 0x00, 0x80, 0x08];
    verify.extend_from_slice(b"123456\xFF\xFF");
    let mut other = backend.connect(&r).unwrap();
    {
        let mut tx = other.transaction().unwrap();
        tx.transmit(&SELECT_PIV).unwrap();
        assert_eq!(tx.transmit(&verify).unwrap(), [0x90, 0x00]);
    }
    let resetting = backend.connect(&r).unwrap();
    resetting.disconnect_resetting().unwrap();
    assert_eq!(backend.reset_count(&r), 1);
    // The connection from before the reset is told, as pcscd tells it (SCARD_W_RESET_CARD).
    assert!(matches!(
        other.transaction().map(|_| ()),
        Err(ReaderError::CardReset { .. })
    ));
    // A fresh one finds the passcode no longer verified.
    let mut fresh = backend.connect(&r).unwrap();
    let mut tx = fresh.transaction().unwrap();
    tx.transmit(&SELECT_PIV).unwrap();
    assert_eq!(tx.transmit(&PIN_STATUS).unwrap(), [0x63, 0xC3]);
}
