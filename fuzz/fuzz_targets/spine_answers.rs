//! Fuzz target: the endpoint's answers as the agent's Spine client decodes them (the session
//! ticket with its role profiles, token introspection, error bodies, renewal, TAC records,
//! unlock codes, the outbox) through `cardgate_spine::fuzzing`, which runs the client's own
//! status check, refusal mapping and JSON decoding. The first two bytes are the HTTP status
//! (taken modulo 600), the third chooses the expected type; the rest is the body. A
//! `Date`-header line, if the body starts with one, goes through the clock-skew parser.
//!
//! Beyond "no panic": a session ticket that decodes re-encodes and decodes to the same value,
//! and an error answer is never taken for a success.
#![no_main]

use cardgate_spine::fuzzing::{decode_answer, decode_empty_answer, http_date};
use cardgate_spine::wire::{
    ActivateResponse, ErrorBody, IntrospectResponse, OutboxMessage, RenewResponse,
    SelfServiceUnlockStarted, Session, TacRecord, UnlockCodeResponse,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [hi, lo, choice, body @ ..] = data else {
        return;
    };
    let status = u16::from_be_bytes([*hi, *lo]) % 600;
    let (date, body) = match body.iter().position(|&b| b == b'\n') {
        Some(at) if body.starts_with(b"Date: ") => {
            (std::str::from_utf8(&body[6..at]).ok(), &body[at + 1..])
        }
        _ => (None, body),
    };
    if let Some(date) = date {
        let _ = http_date(date);
    }
    let expected = if choice & 0x80 != 0 { 201 } else { 200 };
    match choice % 10 {
        0 => {
            if let Ok(session) = decode_answer::<Session>(status, date, body, expected) {
                assert_eq!(status, expected, "a refusal was decoded as a session");
                let again = serde_json::to_vec(&session).expect("a session encodes");
                let back: Session = serde_json::from_slice(&again).expect("re-encoded parses");
                assert_eq!(back, session);
            }
        }
        1 => {
            if let Ok(answer) = decode_answer::<IntrospectResponse>(status, date, body, expected) {
                let again = serde_json::to_vec(&answer).expect("an answer encodes");
                let back: IntrospectResponse =
                    serde_json::from_slice(&again).expect("re-encoded parses");
                assert_eq!(back, answer);
            }
        }
        2 => {
            // Any error answer maps to an error the user can act on, with a message.
            if let Err(e) = decode_answer::<Session>(status, date, body, expected) {
                let _ = e.to_string();
            }
            let _ = serde_json::from_slice::<ErrorBody>(body);
        }
        3 => drop(decode_answer::<RenewResponse>(status, date, body, expected)),
        4 => drop(decode_answer::<TacRecord>(status, date, body, expected)),
        5 => drop(decode_answer::<UnlockCodeResponse>(
            status, date, body, expected,
        )),
        6 => drop(decode_answer::<ActivateResponse>(
            status, date, body, expected,
        )),
        7 => drop(decode_answer::<SelfServiceUnlockStarted>(
            status, date, body, expected,
        )),
        8 => drop(decode_answer::<Vec<OutboxMessage>>(
            status, date, body, expected,
        )),
        _ => {
            if decode_empty_answer(status, body, expected).is_ok() {
                assert_eq!(status, expected);
            }
        }
    }
});
