//! End-to-end tests of the card layer (`cardgate-card`) through a real pcscd and the vpcd
//! readers, the "Done when" of issue 3: insertion and removal on two readers, the identity
//! read, the three-attempt lockout counted in APDUs the card answered and in the card file's
//! own counter, a card pulled mid-operation, pcscd killed and restarted with a card in, and
//! revoked, expired, expiring and old-generation cards reported with what to do.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cardgate_card::{
    CardError, CardInspector, Insertion, PasscodeSource, TrustConfig, WarningKind,
};
use cardgate_certs::{CheckPolicy, Crl, ExpiryWarning, FindingKind, Severity, TrustAnchors};
use cardgate_e2e::{check, lab_trial, run_lab_suite};
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_piv::{FinalTry, Passcode, PasscodeGuard, PasscodeStatus, PivError};
use cardgate_reader::{
    MonitorHandle, PcscBackend, ReaderBackend, ReaderEvent, ReaderEventKind, ReaderName,
};
use cardgate_vcard::Card;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::{CardFile, Slot};
use cardgate_vcard::provision::{CardSpec, RevokedCard, TestCa, Validity, provision};
use cardgate_vcard::vpcd::InsertedCard;
use libtest_mimic::Failed;

/// pcscd polls vpcd about every 400 ms; an event must arrive well inside this.
const EVENT_DEADLINE: Duration = Duration::from_secs(3);
const PASSCODE: &str = cardgate_e2e::TEST_PASSCODE;

fn main() -> ExitCode {
    run_lab_suite(vec![
        lab_trial(
            "two_readers_each_with_its_own_card_are_followed_and_read_separately",
            two_readers,
        ),
        lab_trial(
            "the_identity_read_matches_what_was_provisioned",
            identity_matches_provisioning,
        ),
        lab_trial(
            "three_wrong_passcodes_block_the_card_and_the_fourth_attempt_sends_nothing",
            three_wrong_passcodes,
        ),
        lab_trial(
            "a_right_passcode_after_two_wrong_ones_resets_the_count",
            right_after_two_wrong,
        ),
        lab_trial("a_malformed_passcode_costs_no_try", malformed_passcode),
        lab_trial(
            "a_five_try_card_is_locked_by_the_agent_after_three",
            five_try_card,
        ),
        lab_trial(
            "a_card_pulled_mid_operation_gives_a_clean_error_and_a_removal_event",
            card_pulled_mid_operation,
        ),
        lab_trial(
            "pcscd_killed_and_restarted_with_a_card_in_then_the_removal_is_followed",
            pcscd_restart,
        ),
        lab_trial(
            "revoked_expired_expiring_and_old_generation_cards_are_reported_with_what_to_do",
            certificate_cases,
        ),
    ])
}

// ----- equipment -----

/// The test CA of this binary (key generation is slow; one is enough).
fn ca() -> Result<&'static TestCa, Failed> {
    static CA: OnceLock<Result<TestCa, String>> = OnceLock::new();
    CA.get_or_init(|| TestCa::generate("Cardgate Card Layer E2E CA").map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Failed::from(format!("generating the test CA: {e}")))
}

/// What the agent trusts: the test CA and a fresh CRL listing `revoked`.
fn trust(revoked: &[RevokedCard]) -> Result<TrustConfig, Failed> {
    let ca = ca()?;
    let anchors = TrustAnchors::from_der([ca.certificate_der()]).map_err(|e| e.to_string())?;
    let crl_der = ca.crl_der(revoked, 7).map_err(|e| e.to_string())?;
    let crl = Crl::from_der(&crl_der, &anchors).map_err(|e| e.to_string())?;
    Ok(TrustConfig {
        anchors,
        crl: Some(crl),
        policy: CheckPolicy::default(),
    })
}

/// A provisioned card file on disk: the applet writes its counters back to it, as a real
/// card keeps them, so the tests read the card's own counter from the file.
struct LabCard {
    _dir: tempfile::TempDir,
    path: PathBuf,
    provisioned: CardFile,
    auth_certificate: Vec<u8>,
}

impl LabCard {
    fn provision(spec: CardSpec) -> Result<LabCard, Failed> {
        let provisioned = provision(ca()?, &spec.pin(PASSCODE)).map_err(|e| e.to_string())?;
        let dir = tempfile::Builder::new()
            .prefix("cardgate-card-layer-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let path = dir.path().join("card.json");
        provisioned.card.save(&path).map_err(|e| e.to_string())?;
        let auth_certificate = provisioned
            .certificates
            .get(&Slot::Authentication)
            .cloned()
            .ok_or("no authentication certificate was provisioned")?;
        Ok(LabCard {
            _dir: dir,
            path,
            provisioned: provisioned.card,
            auth_certificate,
        })
    }

    fn applet(&self) -> Result<PivApplet, Failed> {
        PivApplet::open(&self.path).map_err(|e| Failed::from(format!("opening the card: {e}")))
    }

    fn insert(&self, lab: &Lab, slot: ReaderSlot) -> Result<InsertedCard, Failed> {
        lab.insert(slot, Box::new(self.applet()?))
            .map_err(|e| Failed::from(format!("inserting into {slot}: {e}")))
    }

    /// The card's own passcode counter, from its file.
    fn pin_tries(&self) -> Result<u8, Failed> {
        CardFile::load(&self.path)
            .map(|f| f.pin.tries_left)
            .map_err(|e| Failed::from(format!("reading the card file: {e}")))
    }

    fn serial(&self) -> &str {
        &self.provisioned.profile.card_serial
    }
}

/// The agent's card layer as the daemon will run it: the PC/SC backend, its monitor, and a
/// [`CardInspector`] fed every event.
struct Agent {
    inspector: CardInspector,
    events: Receiver<ReaderEvent>,
    seen: Vec<ReaderEvent>,
    started: Instant,
    monitor: MonitorHandle,
}

impl Agent {
    fn start(trust: TrustConfig) -> Result<Agent, Failed> {
        let backend = Arc::new(PcscBackend::new());
        let (sender, events) = mpsc::channel();
        let monitor = backend
            .monitor(Box::new(sender))
            .map_err(|e| format!("monitor: {e}"))?;
        let guard = PasscodeGuard::in_memory().map_err(|e| e.to_string())?;
        let inspector = CardInspector::new(backend, Arc::new(guard), trust);
        Ok(Agent {
            inspector,
            events,
            seen: Vec::new(),
            started: Instant::now(),
            monitor,
        })
    }

    /// Feeds events to the inspector until one matches `wanted`; returns it and the
    /// insertion the inspector made of it, if any.
    fn expect(
        &mut self,
        what: &str,
        wanted: impl Fn(&ReaderEvent) -> bool,
    ) -> Result<(ReaderEvent, Option<Insertion>), Failed> {
        let deadline = Instant::now() + EVENT_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(event) = self.events.recv_timeout(left) else {
                return Err(Failed::from(format!(
                    "no {what} within {EVENT_DEADLINE:?}; events so far:\n{}",
                    self.log()
                )));
            };
            let insertion = self.inspector.track(&event);
            self.seen.push(event.clone());
            if wanted(&event) {
                return Ok((event, insertion));
            }
        }
    }

    fn inserted(&mut self, slot: ReaderSlot) -> Result<Insertion, Failed> {
        let reader = name(slot);
        let (_, insertion) = self.expect(&format!("insertion in {slot}"), |e| {
            e.reader == reader && matches!(e.kind, ReaderEventKind::CardInserted { .. })
        })?;
        insertion.ok_or_else(|| Failed::from("the inspector made no insertion of it"))
    }

    fn removed(&mut self, slot: ReaderSlot) -> Result<(), Failed> {
        let reader = name(slot);
        self.expect(&format!("removal from {slot}"), |e| {
            e.reader == reader && matches!(e.kind, ReaderEventKind::CardRemoved { .. })
        })
        .map(drop)
    }

    fn log(&self) -> String {
        cardgate_e2e::reader_events::event_log(&self.seen, self.started)
    }

    /// Card and service events for `reader`, in order.
    fn story(&self, reader: &ReaderName) -> Vec<&'static str> {
        cardgate_e2e::reader_events::card_story(&self.seen, reader)
    }

    fn verify(
        &self,
        insertion: &Insertion,
        passcode: &str,
        final_try: FinalTry,
    ) -> Result<Result<(), CardError>, Failed> {
        let passcode = Passcode::new(passcode.to_owned()).map_err(|e| e.to_string())?;
        Ok(self
            .inspector
            .verify_passcode(insertion, PasscodeSource::Host(passcode), final_try))
    }

    /// A wrong passcode: returns the tries left the agent reported.
    fn wrong(
        &self,
        insertion: &Insertion,
        passcode: &str,
        final_try: FinalTry,
    ) -> Result<u8, Failed> {
        match self.verify(insertion, passcode, final_try)? {
            Err(CardError::Card {
                source: PivError::WrongPasscode { tries_left, .. },
                ..
            }) => Ok(tries_left.get()),
            other => Err(Failed::from(format!(
                "expected a wrong passcode, got {other:?}"
            ))),
        }
    }
}

fn name(slot: ReaderSlot) -> ReaderName {
    ReaderName::new(slot.to_string())
}

fn is_blocked(outcome: &Result<(), CardError>) -> bool {
    matches!(
        outcome,
        Err(CardError::Card {
            source: PivError::CardBlocked { .. },
            ..
        })
    )
}

// ----- the tests -----

fn two_readers(lab: &mut Lab) -> Result<(), Failed> {
    let first_card = LabCard::provision(CardSpec::new("Asha Patel", "555000222001"))?;
    let second_card = LabCard::provision(CardSpec::new("Ben Okafor", "555000222002"))?;
    let mut agent = Agent::start(trust(&[])?)?;
    let first_in = first_card.insert(lab, ReaderSlot::First)?;
    let first = agent.inserted(ReaderSlot::First)?;
    let second_in = second_card.insert(lab, ReaderSlot::Second)?;
    let second = agent.inserted(ReaderSlot::Second)?;

    for (insertion, card, uuid) in [
        (&first, &first_card, "555000222001"),
        (&second, &second_card, "555000222002"),
    ] {
        let report = agent
            .inspector
            .inspect(insertion)
            .map_err(|e| e.to_string())?;
        check(
            report.identity.holder_uuid.as_str() == uuid
                && report.identity.card_serial.as_str() == card.serial()
                && &report.reader == insertion.reader(),
            || format!("{}: read {:?}", insertion.reader(), report.identity),
        )?;
    }

    first_in.remove()?;
    agent.removed(ReaderSlot::First)?;
    check(!agent.inspector.is_current(&first), || {
        "the first insertion outlived its removal".into()
    })?;
    match agent.inspector.inspect(&first) {
        Err(CardError::StaleInsertion { .. }) => {}
        other => return Err(Failed::from(format!("inspect after removal: {other:?}"))),
    }
    // The other reader is untouched.
    let report = agent
        .inspector
        .inspect(&second)
        .map_err(|e| e.to_string())?;
    check(report.from_cache, || {
        "the second card's cache was dropped".into()
    })?;
    second_in.remove()?;
    agent.removed(ReaderSlot::Second)?;
    check(
        agent.story(&name(ReaderSlot::First)) == ["inserted", "removed"]
            && agent.story(&name(ReaderSlot::Second)) == ["inserted", "removed"],
        || format!("events:\n{}", agent.log()),
    )?;
    agent.monitor.shutdown();
    Ok(())
}

fn identity_matches_provisioning(lab: &mut Lab) -> Result<(), Failed> {
    let card = LabCard::provision(CardSpec::new("Asha Patel", "555000222003"))?;
    let mut agent = Agent::start(trust(&[])?)?;
    let inserted = card.insert(lab, ReaderSlot::First)?;
    let insertion = agent.inserted(ReaderSlot::First)?;
    let report = agent
        .inspector
        .inspect(&insertion)
        .map_err(|e| e.to_string())?;
    let id = &report.identity;
    check(id.holder_uuid.as_str() == "555000222003", || {
        format!("UUID {}", id.holder_uuid)
    })?;
    check(id.holder_name == "Asha Patel", || {
        format!("name {}", id.holder_name)
    })?;
    check(id.card_serial.as_str() == card.serial(), || {
        format!("serial {} vs {}", id.card_serial, card.serial())
    })?;
    check(id.auth_certificate_der == card.auth_certificate, || {
        "the certificate read is not the one issued".into()
    })?;
    check(report.warnings.is_empty(), || {
        format!("warnings {:?}", report.warnings)
    })?;
    check(report.apdus == inserted.apdu_count(), || {
        format!(
            "the report counts {} APDUs, the card answered {}",
            report.apdus,
            inserted.apdu_count()
        )
    })?;
    eprintln!(
        "identity read and checked in {:?} with {} APDUs",
        report.elapsed, report.apdus
    );
    Ok(())
}

fn three_wrong_passcodes(lab: &mut Lab) -> Result<(), Failed> {
    let card = LabCard::provision(CardSpec::new("Asha Patel", "555000222004"))?;
    let mut agent = Agent::start(trust(&[])?)?;
    let inserted = card.insert(lab, ReaderSlot::First)?;
    let insertion = agent.inserted(ReaderSlot::First)?;
    agent
        .inspector
        .inspect(&insertion)
        .map_err(|e| e.to_string())?;

    check(
        agent.wrong(&insertion, "111111", FinalTry::NotConfirmed)? == 2,
        || "first".into(),
    )?;
    check(
        agent.wrong(&insertion, "222222", FinalTry::NotConfirmed)? == 1,
        || "second".into(),
    )?;
    // The last try is not spent without the holder's explicit choice.
    let before = inserted.apdu_count();
    match agent.verify(&insertion, "333333", FinalTry::NotConfirmed)? {
        Err(CardError::Card {
            source: PivError::FinalTryNotConfirmed { .. },
            ..
        }) => {}
        other => return Err(Failed::from(format!("unconfirmed final try: {other:?}"))),
    }
    check(card.pin_tries()? == 1, || {
        "the unconfirmed final try cost a try".into()
    })?;
    eprintln!(
        "the refused final try sent {} APDUs (SELECT, CHUID, status; no VERIFY with data)",
        inserted.apdu_count() - before
    );
    check(
        agent.wrong(&insertion, "333333", FinalTry::Confirmed)? == 0,
        || "third".into(),
    )?;
    check(card.pin_tries()? == 0, || {
        "the card's own counter is not at 0".into()
    })?;

    let before = inserted.apdu_count();
    let fourth = agent.verify(&insertion, PASSCODE, FinalTry::Confirmed)?;
    check(is_blocked(&fourth), || {
        format!("fourth attempt: {fourth:?}")
    })?;
    check(inserted.apdu_count() == before, || {
        format!(
            "the fourth attempt sent {} APDUs to the card",
            inserted.apdu_count() - before
        )
    })?;
    if let Err(e) = &fourth {
        check(e.to_string().contains("Sponsor"), || {
            format!("message: {e}")
        })?;
    }
    let report = agent
        .inspector
        .inspect(&insertion)
        .map_err(|e| e.to_string())?;
    check(report.passcode == PasscodeStatus::Blocked, || {
        format!("status {:?}", report.passcode)
    })?;
    check(
        report
            .warnings
            .iter()
            .any(|w| w.kind == WarningKind::PasscodeLocked),
        || format!("warnings {:?}", report.warnings),
    )
}

fn right_after_two_wrong(lab: &mut Lab) -> Result<(), Failed> {
    let card = LabCard::provision(CardSpec::new("Asha Patel", "555000222005"))?;
    let mut agent = Agent::start(trust(&[])?)?;
    let _inserted = card.insert(lab, ReaderSlot::First)?;
    let insertion = agent.inserted(ReaderSlot::First)?;
    agent.wrong(&insertion, "111111", FinalTry::NotConfirmed)?;
    agent.wrong(&insertion, "222222", FinalTry::NotConfirmed)?;
    check(card.pin_tries()? == 1, || {
        "two wrong should leave one".into()
    })?;
    // One try left: the right passcode too is the holder's explicit choice.
    agent
        .verify(&insertion, PASSCODE, FinalTry::Confirmed)?
        .map_err(|e| format!("the right passcode: {e}"))?;
    check(card.pin_tries()? == 3, || {
        "the card's counter was not reset".into()
    })?;
    let report = agent
        .inspector
        .inspect(&insertion)
        .map_err(|e| e.to_string())?;
    check(report.passcode == PasscodeStatus::Verified, || {
        format!("status {:?}", report.passcode)
    })?;
    // The agent's count restarted too: the next wrong one leaves two.
    check(
        agent.wrong(&insertion, "444444", FinalTry::NotConfirmed)? == 2,
        || "the agent's count was not reset".into(),
    )
}

fn malformed_passcode(lab: &mut Lab) -> Result<(), Failed> {
    let card = LabCard::provision(CardSpec::new("Asha Patel", "555000222006"))?;
    let mut agent = Agent::start(trust(&[])?)?;
    let inserted = card.insert(lab, ReaderSlot::First)?;
    let insertion = agent.inserted(ReaderSlot::First)?;
    agent
        .inspector
        .inspect(&insertion)
        .map_err(|e| e.to_string())?;
    let before = inserted.apdu_count();
    for bad in ["123", "123456789", "12 456", "7391-4", "pässe1"] {
        match Passcode::new(bad.to_owned()) {
            Err(e @ PivError::InvalidPasscode { .. }) => {
                check(e.to_string().contains("no try was used"), || format!("{e}"))?;
                check(!e.to_string().contains(bad), || {
                    format!("the message echoes it: {e}")
                })?;
            }
            other => return Err(Failed::from(format!("{bad:?} was accepted: {other:?}"))),
        }
    }
    check(inserted.apdu_count() == before, || {
        "a malformed passcode reached the card".into()
    })?;
    check(card.pin_tries()? == 3, || {
        "a malformed passcode cost a try".into()
    })?;
    let report = agent
        .inspector
        .inspect(&insertion)
        .map_err(|e| e.to_string())?;
    check(report.warnings.is_empty(), || {
        format!("warnings {:?}", report.warnings)
    })
}

fn five_try_card(lab: &mut Lab) -> Result<(), Failed> {
    let card = LabCard::provision(CardSpec::new("Asha Patel", "555000222007").pin_tries(5))?;
    let mut agent = Agent::start(trust(&[])?)?;
    let inserted = card.insert(lab, ReaderSlot::First)?;
    let insertion = agent.inserted(ReaderSlot::First)?;
    let report = agent
        .inspector
        .inspect(&insertion)
        .map_err(|e| e.to_string())?;
    check(
        report.passcode == PasscodeStatus::TriesLeft(cardgate_piv::PasscodeTriesLeft::new(3)),
        || {
            format!(
                "a 5-try card must show the agent's 3: {:?}",
                report.passcode
            )
        },
    )?;
    agent.wrong(&insertion, "111111", FinalTry::NotConfirmed)?;
    agent.wrong(&insertion, "222222", FinalTry::NotConfirmed)?;
    let left = agent.wrong(&insertion, "333333", FinalTry::Confirmed)?;
    check(left == 0, || {
        format!("after three the agent reports {left} left")
    })?;
    check(card.pin_tries()? == 2, || {
        "the card itself should still allow 2".into()
    })?;
    let before = inserted.apdu_count();
    let fourth = agent.verify(&insertion, PASSCODE, FinalTry::Confirmed)?;
    check(
        matches!(
            fourth,
            Err(CardError::Card {
                source: PivError::CardBlocked { by_agent: true, .. },
                ..
            })
        ),
        || format!("fourth attempt: {fourth:?}"),
    )?;
    check(inserted.apdu_count() == before, || {
        "the fourth attempt reached the card".into()
    })?;
    check(card.pin_tries()? == 2, || "the card's counter moved".into())
}

/// The virtual card, which at its `pull_at`-th APDU tells the test (which pulls the card)
/// and holds its answer long enough for the pull to land first.
struct PulledMidway {
    inner: PivApplet,
    seen: u64,
    pull_at: u64,
    pull: Sender<()>,
}

impl Card for PulledMidway {
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn power_on(&mut self) {
        self.inner.power_on();
    }
    fn power_off(&mut self) {
        self.inner.power_off();
    }
    fn reset(&mut self) {
        self.inner.reset();
    }
    fn transmit(&mut self, command: &[u8]) -> Vec<u8> {
        self.seen += 1;
        if self.seen == self.pull_at {
            let _ = self.pull.send(());
            std::thread::sleep(Duration::from_millis(300));
        }
        self.inner.transmit(command)
    }
}

fn card_pulled_mid_operation(lab: &mut Lab) -> Result<(), Failed> {
    let card = LabCard::provision(CardSpec::new("Asha Patel", "555000222008"))?;
    let mut agent = Agent::start(trust(&[])?)?;
    let (pull, pull_now) = mpsc::channel();
    // The third APDU is the certificate's GET DATA: mid identity read.
    let midway = PulledMidway {
        inner: card.applet()?,
        seen: 0,
        pull_at: 3,
        pull,
    };
    let inserted = lab.insert(ReaderSlot::First, Box::new(midway))?;
    let insertion = agent.inserted(ReaderSlot::First)?;
    let outcome = std::thread::scope(|scope| {
        let reading = scope.spawn(|| agent.inspector.inspect(&insertion));
        let pulled = pull_now.recv_timeout(EVENT_DEADLINE).is_ok();
        let removed = inserted.remove().map_err(|e| e.to_string());
        (pulled, removed, reading.join())
    });
    let (pulled, removed, reading) = outcome;
    check(pulled, || "the card never got its third APDU".into())?;
    removed?;
    let started = Instant::now();
    let result = reading.map_err(|_| "the inspection panicked")?;
    match &result {
        Err(e @ CardError::CardRemoved { .. }) => {
            check(e.to_string().contains("removed"), || {
                format!("message: {e}")
            })?;
            eprintln!(
                "mid-operation pull: {e} (source: {:?})",
                std::error::Error::source(e)
            );
        }
        other => return Err(Failed::from(format!("expected CardRemoved, got {other:?}"))),
    }
    agent.removed(ReaderSlot::First)?;
    eprintln!("removal event {:?} after the error", started.elapsed());
    check(!agent.inspector.is_current(&insertion), || {
        "insertion still current".into()
    })?;
    check(
        agent.inspector.cached_identity(&insertion).is_none(),
        || "a half-read card left an identity behind".into(),
    )
}

fn pcscd_restart(lab: &mut Lab) -> Result<(), Failed> {
    let card = LabCard::provision(CardSpec::new("Asha Patel", "555000222009"))?;
    let mut agent = Agent::start(trust(&[])?)?;
    let reader = name(ReaderSlot::First);
    let inserted = card.insert(lab, ReaderSlot::First)?;
    let before = agent.inserted(ReaderSlot::First)?;
    agent
        .inspector
        .inspect(&before)
        .map_err(|e| e.to_string())?;

    lab.kill_pcscd()?;
    agent.expect("service lost", |e| e.kind == ReaderEventKind::ServiceLost)?;
    check(!agent.inspector.is_current(&before), || {
        "insertion survived the crash".into()
    })?;
    match agent.inspector.inspect(&before) {
        Err(CardError::StaleInsertion { .. }) => {}
        other => return Err(Failed::from(format!("inspect with pcscd down: {other:?}"))),
    }
    // The card is still physically there: back in as soon as the reader is.
    let applet = inserted.wait()?;
    lab.restart_pcscd()?;
    let inserted = lab.insert(ReaderSlot::First, applet)?;
    agent.expect("service restored", |e| {
        e.kind == ReaderEventKind::ServiceRestored
    })?;
    let after = agent.inserted(ReaderSlot::First)?;
    check(after != before, || {
        "the same insertion after a restart".into()
    })?;
    let report = agent
        .inspector
        .inspect(&after)
        .map_err(|e| format!("after restart: {e}"))?;
    check(!report.from_cache, || {
        "the identity came from before the crash".into()
    })?;
    check(
        report.identity.card_serial.as_str() == card.serial(),
        || "serial".into(),
    )?;

    inserted.remove()?;
    agent.removed(ReaderSlot::First)?;
    match agent.inspector.inspect(&after) {
        Err(CardError::StaleInsertion { .. }) => {}
        other => return Err(Failed::from(format!("inspect after removal: {other:?}"))),
    }
    let story = agent.story(&reader);
    check(
        story == cardgate_e2e::reader_events::STORY_ACROSS_A_PCSCD_RESTART,
        || format!("events:\n{}", agent.log()),
    )?;
    agent.monitor.shutdown();
    Ok(())
}

fn certificate_cases(lab: &mut Lab) -> Result<(), Failed> {
    let revoked = LabCard::provision(CardSpec::new("Asha Patel", "555000222010"))?;
    let expired = LabCard::provision(
        CardSpec::new("Asha Patel", "555000222011").validity(Validity::Expired),
    )?;
    let expiring = LabCard::provision(
        CardSpec::new("Asha Patel", "555000222012").validity(Validity::ExpiresInDays(20)),
    )?;
    let old = LabCard::provision(CardSpec::new("Asha Patel", "555000222013").old_generation())?;
    let revocations = RevokedCard::all_of(&revoked.provisioned, time::OffsetDateTime::now_utc())
        .map_err(|e| e.to_string())?;
    let mut agent = Agent::start(trust(&revocations)?)?;

    let cases = [
        (
            &revoked,
            FindingKind::Revoked,
            Severity::Blocking,
            "Registration Authority",
        ),
        (
            &expired,
            FindingKind::Expired,
            Severity::Blocking,
            "Registration Authority",
        ),
        (
            &expiring,
            FindingKind::ExpiresSoon(ExpiryWarning::Within30),
            Severity::Warning,
            "Sponsor",
        ),
        (
            &old,
            FindingKind::OldGeneration,
            Severity::Warning,
            "Registration Authority",
        ),
    ];
    for (card, kind, severity, who) in cases {
        let inserted = card.insert(lab, ReaderSlot::First)?;
        let insertion = agent.inserted(ReaderSlot::First)?;
        let report = agent
            .inspector
            .inspect(&insertion)
            .map_err(|e| format!("{kind:?}: {e}"))?;
        let finding = report
            .certificate
            .finding(kind)
            .ok_or_else(|| format!("no {kind:?} finding: {:?}", report.certificate.findings))?;
        check(finding.severity == severity, || {
            format!("{kind:?}: {finding:?}")
        })?;
        let warning = report
            .warnings
            .iter()
            .find(|w| w.kind == WarningKind::Certificate(kind))
            .ok_or_else(|| format!("no {kind:?} warning for the holder: {:?}", report.warnings))?;
        check(warning.next_step.contains(who), || {
            format!(
                "{kind:?}: the next step does not name the {who}: {}",
                warning.next_step
            )
        })?;
        eprintln!("{kind:?}: {} {}", warning.message, warning.next_step);
        inserted.remove()?;
        agent.removed(ReaderSlot::First)?;
    }
    Ok(())
}
