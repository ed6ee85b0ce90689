//! End-to-end tests of `cardgate-reader`'s PC/SC backend through a real pcscd and the vpcd
//! readers: insertion and removal events on two readers, a card pulled in the middle of a
//! transaction, pcscd killed and restarted, a brief removal, and a prompt shutdown.

use std::ffi::CString;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use cardgate_e2e::{SELECT_PIV, check, lab_trial, run_lab_suite};
use cardgate_lab::{Lab, ProbeCard, ReaderSlot};
use cardgate_reader::{
    MonitorHandle, MonitorHealth, PcscBackend, ReaderBackend, ReaderError, ReaderEvent,
    ReaderEventKind, ReaderName,
};
use libtest_mimic::Failed;

/// pcscd polls vpcd about every 400 ms; an event must arrive well inside this.
const EVENT_DEADLINE: Duration = Duration::from_secs(3);
const FIRST_ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];
const SECOND_ATR: [u8; 6] = [0x3B, 0x81, 0x80, 0x01, 0x80, 0x80];

fn main() -> ExitCode {
    run_lab_suite(vec![
        lab_trial(
            "monitor_reports_insertions_and_removals_on_two_readers_in_order",
            two_readers_in_order,
        ),
        lab_trial(
            "card_pulled_mid_transaction_gives_card_removed_and_a_removal_event",
            card_pulled_mid_transaction,
        ),
        lab_trial(
            "pcscd_killed_and_restarted_is_recovered_and_reconciled",
            pcscd_restart_recovery,
        ),
        lab_trial(
            "monitor_started_without_pcscd_reports_it_lost_then_restored",
            started_without_pcscd,
        ),
        lab_trial(
            "shutdown_cancels_the_blocking_wait_promptly",
            shutdown_is_prompt,
        ),
        lab_trial(
            "brief_removal_and_reinsertion_through_vpcd",
            brief_removal_through_vpcd,
        ),
        lab_trial("vpcd_offers_no_part10_features", vpcd_has_no_features),
    ])
}

/// Events from a monitor, with everything seen kept for failure messages.
struct Events {
    receiver: Receiver<ReaderEvent>,
    seen: Vec<ReaderEvent>,
    started: Instant,
}

impl Events {
    fn start(backend: &PcscBackend) -> Result<(MonitorHandle, Events), Failed> {
        let (sender, receiver) = mpsc::channel();
        let handle = backend
            .monitor(Box::new(sender))
            .map_err(|e| format!("monitor: {e}"))?;
        Ok((
            handle,
            Events {
                receiver,
                seen: Vec::new(),
                started: Instant::now(),
            },
        ))
    }

    /// Waits for the next event matching `wanted`, keeping the ones before it.
    fn expect(
        &mut self,
        what: &str,
        wanted: impl Fn(&ReaderEvent) -> bool,
    ) -> Result<ReaderEvent, Failed> {
        let deadline = Instant::now() + EVENT_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if wanted(&event) {
                        return Ok(event);
                    }
                }
                Err(_) => {
                    return Err(Failed::from(format!(
                        "no {what} within {EVENT_DEADLINE:?}; events so far:\n{}",
                        self.log()
                    )));
                }
            }
        }
    }

    /// Collects whatever arrives within `window`.
    fn drain_for(&mut self, window: Duration) {
        let deadline = Instant::now() + window;
        while let Ok(event) = self
            .receiver
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(event);
        }
    }

    fn log(&self) -> String {
        cardgate_e2e::reader_events::event_log(&self.seen, self.started)
    }

    /// The card and service events seen for `reader` (service events included), in order.
    fn card_story(&self, reader: &ReaderName) -> Vec<&'static str> {
        cardgate_e2e::reader_events::card_story(&self.seen, reader)
    }
}

fn name(slot: ReaderSlot) -> ReaderName {
    ReaderName::new(slot.to_string())
}

fn inserted_in(slot: ReaderSlot) -> impl Fn(&ReaderEvent) -> bool {
    let reader = name(slot);
    move |e| e.reader == reader && matches!(e.kind, ReaderEventKind::CardInserted { .. })
}

fn removed_from(slot: ReaderSlot) -> impl Fn(&ReaderEvent) -> bool {
    let reader = name(slot);
    move |e| e.reader == reader && matches!(e.kind, ReaderEventKind::CardRemoved { .. })
}

fn kind_is(kind: ReaderEventKind) -> impl Fn(&ReaderEvent) -> bool {
    move |e| e.kind == kind
}

/// A plain PC/SC client blocking until `slot` is empty, on its own thread and context: the
/// reference the monitor's removal time is measured against (LAB.md).
fn watch_for_empty(slot: ReaderSlot) -> Result<Receiver<Result<Instant, String>>, Failed> {
    let context = pcsc::Context::establish(pcsc::Scope::User)
        .map_err(|e| format!("SCardEstablishContext: {e}"))?;
    let reader = CString::new(slot.to_string()).map_err(|e| e.to_string())?;
    let mut states = [pcsc::ReaderState::new(reader, pcsc::State::UNAWARE)];
    context
        .get_status_change(Duration::ZERO, &mut states)
        .map_err(|e| format!("SCardGetStatusChange: {e}"))?;
    states[0].sync_current_state();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = loop {
            if let Err(e) = context.get_status_change(EVENT_DEADLINE, &mut states) {
                break Err(format!("SCardGetStatusChange: {e}"));
            }
            if states[0].event_state().contains(pcsc::State::EMPTY) {
                break Ok(Instant::now());
            }
            states[0].sync_current_state();
        };
        let _ = sender.send(outcome);
    });
    Ok(receiver)
}

fn two_readers_in_order(lab: &mut Lab) -> Result<(), Failed> {
    let backend = PcscBackend::new();
    let (monitor, mut events) = Events::start(&backend)?;
    let (first, second) = (name(ReaderSlot::First), name(ReaderSlot::Second));
    for slot in ReaderSlot::ALL {
        let reader = name(slot);
        events.expect(&format!("{slot} attached"), move |e| {
            e.reader == reader && e.kind == ReaderEventKind::ReaderAttached
        })?;
    }
    let readers = backend.list_readers()?;
    check(readers == [first.clone(), second.clone()], || {
        format!("readers: {readers:?}")
    })?;

    // Quiet readers: the monitor must not wake up at all (no polling). pcscd's first look at
    // each vpcd reader (its state going from unknown to empty, up to a poll after the reader
    // is listed) may still reach the monitor, so wait until half a second passes without a
    // wake-up (a polling monitor never gets there), then watch a whole second.
    let settle_by = Instant::now() + Duration::from_secs(5);
    let mut wakeups = monitor.wakeups();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = monitor.wakeups();
        if now == wakeups || Instant::now() > settle_by {
            break;
        }
        wakeups = now;
    }
    let wakeups = monitor.wakeups();
    std::thread::sleep(Duration::from_millis(1000));
    check(monitor.wakeups() == wakeups, || {
        format!(
            "the monitor woke {} times in a quiet second",
            monitor.wakeups() - wakeups
        )
    })?;

    let first_card = lab.insert(
        ReaderSlot::First,
        Box::new(ProbeCard::with_atr(FIRST_ATR.to_vec())),
    )?;
    let e1 = events.expect(
        "insertion in the first reader",
        inserted_in(ReaderSlot::First),
    )?;
    check(
        matches!(&e1.kind, ReaderEventKind::CardInserted { atr, .. } if atr == &FIRST_ATR),
        || format!("first insertion: {e1:?}"),
    )?;
    let second_card = lab.insert(
        ReaderSlot::Second,
        Box::new(ProbeCard::with_atr(SECOND_ATR.to_vec())),
    )?;
    let e2 = events.expect(
        "insertion in the second reader",
        inserted_in(ReaderSlot::Second),
    )?;
    check(
        matches!(&e2.kind, ReaderEventKind::CardInserted { atr, .. } if atr == &SECOND_ATR),
        || format!("second insertion: {e2:?}"),
    )?;

    // Each reader's card answers through its own connection.
    for reader in [&first, &second] {
        let mut connection = backend.connect(reader)?;
        let mut transaction = connection.transaction()?;
        let answer = transaction.transmit(&SELECT_PIV)?;
        check(answer == [0x90, 0x00], || {
            format!("{reader}: SELECT answered {answer:02X?}")
        })?;
    }

    let watcher = watch_for_empty(ReaderSlot::First)?;
    let pulled = Instant::now();
    first_card.remove()?;
    let e3 = events.expect(
        "removal from the first reader",
        removed_from(ReaderSlot::First),
    )?;
    let plain = watcher
        .recv_timeout(EVENT_DEADLINE)
        .map_err(|_| "the plain PC/SC client never saw the first reader empty")??;
    second_card.remove()?;
    let e4 = events.expect(
        "removal from the second reader",
        removed_from(ReaderSlot::Second),
    )?;

    let stamps = [e1.at, e2.at, e3.at, e4.at];
    check(stamps.windows(2).all(|w| w[0] <= w[1]), || {
        format!("timestamps out of order:\n{}", events.log())
    })?;
    let monitor_latency = e3.at.duration_since(pulled);
    let plain_latency = plain.duration_since(pulled);
    eprintln!(
        "removal after the card closed its socket: monitor {monitor_latency:?}, plain PC/SC \
         client {plain_latency:?} (difference {:?})",
        monitor_latency.abs_diff(plain_latency)
    );
    check(
        monitor_latency.abs_diff(plain_latency) < Duration::from_millis(100),
        || "the monitor saw the removal much later than a plain PC/SC client".into(),
    )?;
    check(
        events.card_story(&first) == ["inserted", "removed"]
            && events.card_story(&second) == ["inserted", "removed"],
        || format!("events:\n{}", events.log()),
    )?;
    check(monitor.health() == MonitorHealth::Running, || {
        format!("health {:?}", monitor.health())
    })?;
    monitor.shutdown();
    Ok(())
}

fn card_pulled_mid_transaction(lab: &mut Lab) -> Result<(), Failed> {
    let backend = PcscBackend::new();
    let (monitor, mut events) = Events::start(&backend)?;
    let first = name(ReaderSlot::First);
    let card = lab.insert(ReaderSlot::First, Box::new(ProbeCard::new()))?;
    events.expect("insertion", inserted_in(ReaderSlot::First))?;

    let mut connection = backend.connect(&first)?;
    let mut transaction = connection.transaction()?;
    let answer = transaction.transmit(&SELECT_PIV)?;
    check(answer == [0x90, 0x00], || {
        format!("SELECT answered {answer:02X?}")
    })?;
    // The holder pulls the card between two APDUs of one operation.
    card.remove()?;
    let immediate = transaction.transmit(&[0x00, 0xCB, 0x3F, 0xFF, 0x00]);
    events.expect("removal", removed_from(ReaderSlot::First))?;
    let later = transaction.transmit(&[0x00, 0xCB, 0x3F, 0xFF, 0x00]);
    eprintln!("APDU right after the pull: {immediate:?}; after the removal event: {later:?}");
    for (when, outcome) in [
        ("right after the pull", &immediate),
        ("after the event", &later),
    ] {
        match outcome {
            Err(e) if e.is_card_gone() => {}
            other => {
                return Err(Failed::from(format!(
                    "APDU {when}: expected a card-gone error, got {other:?}"
                )));
            }
        }
    }
    check(
        matches!(later, Err(ReaderError::CardRemoved { .. })),
        || format!("after the removal event: {later:?}"),
    )?;
    drop(transaction);
    // A new connection finds the reader empty.
    match backend.connect(&first) {
        Err(ReaderError::NoCard { .. }) => {}
        other => return Err(Failed::from(format!("connect after removal: {other:?}"))),
    }
    monitor.shutdown();
    Ok(())
}

fn pcscd_restart_recovery(lab: &mut Lab) -> Result<(), Failed> {
    let backend = PcscBackend::new();
    // Cache the backend's context before the crash: the pcsc-rust#21 trap.
    backend.list_readers()?;
    let (monitor, mut events) = Events::start(&backend)?;
    let first = name(ReaderSlot::First);
    let card = lab.insert(ReaderSlot::First, Box::new(ProbeCard::new()))?;
    events.expect("insertion", inserted_in(ReaderSlot::First))?;

    let killed = Instant::now();
    lab.kill_pcscd()?;
    events.expect("service lost", kind_is(ReaderEventKind::ServiceLost))?;
    eprintln!(
        "service loss reported {:?} after the kill",
        killed.elapsed()
    );
    check(
        matches!(monitor.health(), MonitorHealth::Reconnecting { .. }),
        || format!("health while pcscd is down: {:?}", monitor.health()),
    )?;
    match backend.list_readers() {
        Err(e) if e.is_service_lost() => {}
        other => return Err(Failed::from(format!("list with pcscd down: {other:?}"))),
    }
    // The vpcd connection closed with pcscd; the card is still "physically" there, so it
    // goes back in as soon as the reader is.
    let card = card.wait()?;
    std::thread::sleep(Duration::from_millis(600));
    let attempts = match monitor.health() {
        MonitorHealth::Reconnecting { attempts, .. } => attempts,
        other => return Err(Failed::from(format!("health: {other:?}"))),
    };
    check(attempts >= 2, || {
        format!("only {attempts} reconnection attempts in 600 ms")
    })?;
    let restarted = Instant::now();
    lab.restart_pcscd()?;
    let card = lab.insert(ReaderSlot::First, card)?;
    events.expect(
        "service restored",
        kind_is(ReaderEventKind::ServiceRestored),
    )?;
    eprintln!(
        "service restoration reported {:?} after pcscd was started",
        restarted.elapsed()
    );
    events.expect("reinsertion", inserted_in(ReaderSlot::First))?;
    check(monitor.health() == MonitorHealth::Running, || {
        format!("health after restart: {:?}", monitor.health())
    })?;
    // The backend's own context was dead; it must have replaced it.
    let mut connection = backend.connect(&first)?;
    let answer = connection.transaction()?.transmit(&SELECT_PIV)?;
    check(answer == [0x90, 0x00], || {
        format!("SELECT answered {answer:02X?}")
    })?;
    drop(connection);

    card.remove()?;
    events.expect("final removal", removed_from(ReaderSlot::First))?;
    events.drain_for(Duration::from_millis(800));
    let story = events.card_story(&first);
    check(
        story == cardgate_e2e::reader_events::STORY_ACROSS_A_PCSCD_RESTART,
        || format!("events:\n{}", events.log()),
    )?;
    eprintln!("events:\n{}", events.log());
    monitor.shutdown();
    Ok(())
}

fn started_without_pcscd(lab: &mut Lab) -> Result<(), Failed> {
    lab.kill_pcscd()?;
    let backend = PcscBackend::new();
    let (monitor, mut events) = Events::start(&backend)?;
    events.expect("service lost", kind_is(ReaderEventKind::ServiceLost))?;
    lab.restart_pcscd()?;
    events.expect(
        "service restored",
        kind_is(ReaderEventKind::ServiceRestored),
    )?;
    for slot in ReaderSlot::ALL {
        let reader = name(slot);
        events.expect(&format!("{slot} attached"), move |e| {
            e.reader == reader && e.kind == ReaderEventKind::ReaderAttached
        })?;
    }
    // Shutdown while reconnecting is prompt too.
    lab.kill_pcscd()?;
    events.expect("service lost again", kind_is(ReaderEventKind::ServiceLost))?;
    let asked = Instant::now();
    monitor.shutdown();
    let took = asked.elapsed();
    eprintln!("shutdown while reconnecting took {took:?}");
    check(took < Duration::from_millis(500), || {
        format!("shutdown while reconnecting took {took:?}")
    })
}

fn shutdown_is_prompt(_lab: &mut Lab) -> Result<(), Failed> {
    let backend = PcscBackend::new();
    let (monitor, mut events) = Events::start(&backend)?;
    events.expect("first reader attached", |e| {
        e.kind == ReaderEventKind::ReaderAttached
    })?;
    // Let the thread settle into its infinite wait.
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    monitor.shutdown();
    let took = asked.elapsed();
    eprintln!("shutdown from an infinite SCardGetStatusChange took {took:?}");
    check(took < Duration::from_millis(500), || {
        format!("shutdown took {took:?}")
    })?;
    // The consumer learns the monitor ended: after the events already queued, the sender
    // was dropped with the thread.
    loop {
        match events.receiver.recv_timeout(Duration::from_millis(100)) {
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(Failed::from("the event channel stayed open after shutdown"));
            }
        }
    }
}

/// The reader's state and event counter as a plain PC/SC client sees them now.
fn pcscd_view(slot: ReaderSlot) -> Result<(pcsc::State, u32), Failed> {
    let context = pcsc::Context::establish(pcsc::Scope::User)
        .map_err(|e| format!("SCardEstablishContext: {e}"))?;
    let reader = CString::new(slot.to_string()).map_err(|e| e.to_string())?;
    let mut states = [pcsc::ReaderState::new(reader, pcsc::State::UNAWARE)];
    context
        .get_status_change(Duration::ZERO, &mut states)
        .map_err(|e| format!("SCardGetStatusChange: {e}"))?;
    Ok((states[0].event_state(), states[0].event_count()))
}

/// What pcscd reports for a card pulled and pushed back within ~100 ms through vpcd. The
/// monitor's events must agree with pcscd's own event counter, whatever pcscd saw: a counter
/// that moved by two while the reader stayed "present" must come out as removal +
/// insertion; an unmoved counter means pcscd itself never saw the card leave.
fn brief_removal_through_vpcd(lab: &mut Lab) -> Result<(), Failed> {
    let backend = PcscBackend::new();
    let (monitor, mut events) = Events::start(&backend)?;
    let card = lab.insert(ReaderSlot::First, Box::new(ProbeCard::new()))?;
    events.expect("insertion", inserted_in(ReaderSlot::First))?;
    let (_, count_before) = pcscd_view(ReaderSlot::First)?;
    let card = card.remove()?;
    let gap = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    let addr = lab.vpcd_addr(ReaderSlot::First);
    let reinserted = cardgate_vcard::vpcd::insert(addr, card)?;
    eprintln!("card out for {:?}", gap.elapsed());
    events.drain_for(Duration::from_millis(2000));
    lab.wait_until_present(ReaderSlot::First, EVENT_DEADLINE)?;
    let (state_after, count_after) = pcscd_view(ReaderSlot::First)?;
    let story = events.card_story(&name(ReaderSlot::First));
    eprintln!(
        "brief removal through vpcd: pcscd counter {count_before} -> {count_after}, state \
         now {state_after:?}; monitor events:\n{}",
        events.log()
    );
    let expected: &[&str] = match count_after.wrapping_sub(count_before) {
        0 => &["inserted"],
        _ => &["inserted", "removed", "inserted"],
    };
    check(story == expected, || {
        format!(
            "pcscd counter {count_before} -> {count_after} but events:\n{}",
            events.log()
        )
    })?;
    reinserted.remove()?;
    monitor.shutdown();
    Ok(())
}

fn vpcd_has_no_features(lab: &mut Lab) -> Result<(), Failed> {
    let backend = PcscBackend::new();
    let _card = lab.insert(ReaderSlot::First, Box::new(ProbeCard::new()))?;
    let mut connection = backend.connect(&name(ReaderSlot::First))?;
    let features = connection.features()?;
    check(!features.pin_pad().is_usable(), || {
        format!("features: {features:?}")
    })?;
    let atr = connection.atr()?;
    check(atr == FIRST_ATR, || format!("ATR {atr:02X?}"))?;
    // No PIN pad: a pad verification is refused before anything reaches the card.
    let request = cardgate_reader::PinVerifyRequest::piv_verify(0x80);
    match connection.transaction()?.verify_pin_on_pad(&request) {
        Err(ReaderError::NoPinPad { .. }) => Ok(()),
        other => Err(Failed::from(format!("verify on pad: {other:?}"))),
    }
}
