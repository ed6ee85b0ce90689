//! End-to-end tests of the lab itself: a private pcscd lists the two vpcd readers, cards go in
//! and out of each reader independently, a plain PC/SC client sees what pcscd reports, and
//! the readers come back after pcscd is killed and restarted.

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cardgate_e2e::{PcscClient, SELECT_PIV, check, lab_trial, run_lab_suite, transmit};
use cardgate_lab::{Lab, LabOptions, ProbeCard, ReaderSlot};
use libtest_mimic::{Failed, Trial};

/// pcscd polls vpcd about every 400 ms; a removal must be seen well inside this.
const REMOVAL_DEADLINE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    run_lab_suite(vec![
        lab_trial("pcscd_lists_exactly_the_two_vpcd_readers", |_lab| {
            let client = PcscClient::new()?;
            let readers = client
                .readers()
                .map_err(|e| format!("SCardListReaders: {e}"))?;
            check(
                readers == ["Virtual PCD 00 00", "Virtual PCD 00 01"],
                || format!("readers listed: {readers:?}"),
            )
        }),
        // Its own lab, so not `lab_trial` (which starts the two readers).
        Trial::test("a_lab_with_no_readers_runs_pcscd_listing_none", || {
            let lab = Lab::start_with(LabOptions {
                no_readers: true,
                ..LabOptions::default()
            })
            .map_err(|e| format!("starting the lab: {e}"))?;
            let client = PcscClient::new()?;
            let readers = client
                .readers()
                .map_err(|e| format!("SCardListReaders: {e}"))?;
            check(readers.is_empty(), || {
                format!("readers listed: {readers:?}")
            })?;
            check(lab.pcscd_pid().is_some(), || "pcscd is not running".into())
        }),
        lab_trial(
            "inserted_card_is_present_with_its_atr_and_answers_apdus_through_pcscd",
            |lab| {
                let atr = vec![0x3B, 0x80, 0x80, 0x01, 0x01];
                let inserted = lab.insert(
                    ReaderSlot::First,
                    Box::new(ProbeCard::with_atr(atr.clone())),
                )?;
                let client = PcscClient::new()?;
                let (state, seen_atr) = client.reader_state(ReaderSlot::First)?;
                check(state.contains(pcsc::State::PRESENT), || {
                    format!("state {state:?}")
                })?;
                check(seen_atr == atr, || {
                    format!("ATR seen {}", hex::encode(&seen_atr))
                })?;

                let card = client.connect(ReaderSlot::First)?;
                let before = inserted.apdu_count();
                let select = transmit(&card, &SELECT_PIV)?;
                check(select == [0x90, 0x00], || {
                    format!("SELECT answered {}", hex::encode(&select))
                })?;
                // The probe refuses other instructions: the answer comes from the card, not pcscd.
                let get_data = transmit(&card, &[0x00, 0xCB, 0x3F, 0xFF])?;
                check(get_data == [0x6D, 0x00], || {
                    format!("GET DATA answered {}", hex::encode(&get_data))
                })?;
                check(inserted.apdu_count() == before + 2, || {
                    format!(
                        "card served {} APDUs, expected {}",
                        inserted.apdu_count(),
                        before + 2
                    )
                })?;
                inserted.remove()?;
                Ok(())
            },
        ),
        lab_trial(
            "removed_card_is_seen_as_an_empty_reader_within_two_seconds",
            |lab| {
                let inserted = lab.insert(ReaderSlot::First, Box::new(ProbeCard::new()))?;
                let removed_at = Instant::now();
                inserted.remove()?;
                lab.wait_until_empty(ReaderSlot::First, REMOVAL_DEADLINE)?;
                let latency = removed_at.elapsed();
                let (state, _) = PcscClient::new()?.reader_state(ReaderSlot::First)?;
                check(state.contains(pcsc::State::EMPTY), || {
                    format!("state {state:?}")
                })?;
                eprintln!("removal seen by PC/SC after {latency:?}");
                Ok(())
            },
        ),
        lab_trial("second_reader_works_independently_of_the_first", |lab| {
            let first_atr = vec![0x3B, 0x80, 0x80, 0x01, 0x01];
            let second_atr = vec![0x3B, 0x81, 0x80, 0x01, 0x80, 0x80];
            let client = PcscClient::new()?;

            let second = lab.insert(
                ReaderSlot::Second,
                Box::new(ProbeCard::with_atr(second_atr.clone())),
            )?;
            let (first_state, _) = client.reader_state(ReaderSlot::First)?;
            check(first_state.contains(pcsc::State::EMPTY), || {
                format!("first reader should stay empty, state {first_state:?}")
            })?;
            let first = lab.insert(
                ReaderSlot::First,
                Box::new(ProbeCard::with_atr(first_atr.clone())),
            )?;
            for (slot, atr) in [
                (ReaderSlot::First, &first_atr),
                (ReaderSlot::Second, &second_atr),
            ] {
                let (_, seen) = client.reader_state(slot)?;
                check(&seen == atr, || {
                    format!("{slot}: ATR {}", hex::encode(&seen))
                })?;
            }

            let first_card = client.connect(ReaderSlot::First)?;
            second.remove()?;
            lab.wait_until_empty(ReaderSlot::Second, REMOVAL_DEADLINE)?;
            let (first_state, _) = client.reader_state(ReaderSlot::First)?;
            check(first_state.contains(pcsc::State::PRESENT), || {
                format!("removing the second card disturbed the first: {first_state:?}")
            })?;
            let select = transmit(&first_card, &SELECT_PIV)?;
            check(select == [0x90, 0x00], || {
                format!("SELECT answered {}", hex::encode(&select))
            })?;
            check(first.apdu_count() == 1, || {
                format!("first card served {}", first.apdu_count())
            })?;
            Ok(())
        }),
        lab_trial(
            "readers_come_back_after_pcscd_is_killed_and_restarted",
            |lab| {
                let inserted = lab.insert(ReaderSlot::First, Box::new(ProbeCard::new()))?;
                lab.kill_pcscd()?;
                // The card must notice its reader went away rather than hang.
                let (sender, receiver) = mpsc::channel();
                std::thread::spawn(move || {
                    let _ = sender.send(inserted.wait().map_err(|e| e.to_string()));
                });
                let card = receiver.recv_timeout(Duration::from_secs(5)).map_err(
                    |_| "the card did not see its connection close after pcscd was killed",
                )??;

                lab.restart_pcscd()?;
                let client = PcscClient::new()?;
                let readers = client
                    .readers()
                    .map_err(|e| format!("SCardListReaders: {e}"))?;
                check(readers.len() == 2, || {
                    format!("readers after restart: {readers:?}")
                })?;
                let reinserted = lab.insert(ReaderSlot::First, card)?;
                let select = transmit(&client.connect(ReaderSlot::First)?, &SELECT_PIV)?;
                check(select == [0x90, 0x00], || {
                    format!("SELECT answered {}", hex::encode(&select))
                })?;
                reinserted.remove()?;
                Ok(())
            },
        ),
        lab_trial(
            "inserting_with_pcscd_stopped_fails_with_a_clear_error",
            |lab| {
                lab.kill_pcscd()?;
                let err = match lab.insert(ReaderSlot::First, Box::new(ProbeCard::new())) {
                    Ok(_) => return Err(Failed::from("insert succeeded with pcscd stopped")),
                    Err(e) => e.to_string(),
                };
                check(err.contains("restart_pcscd"), || format!("error: {err}"))?;
                // No vpcd listens either: a card connecting by hand gets the vpcd error.
                let addr = lab.vpcd_addr(ReaderSlot::First);
                let err = match cardgate_vcard::vpcd::insert(addr, Box::new(ProbeCard::new())) {
                    Ok(_) => return Err(Failed::from("vpcd insert succeeded with pcscd stopped")),
                    Err(e) => e.to_string(),
                };
                check(err.contains("no vpcd reader listens on"), || {
                    format!("error: {err}")
                })
            },
        ),
    ])
}
