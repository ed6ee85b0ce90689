//! One logical command-response exchange over a raw transport: command chaining for long
//! data, GET RESPONSE for long answers, one retry on 6Cxx, all bounded so a misbehaving card
//! (or reader) produces an error instead of an endless loop or unbounded memory.
//!
//! This is the protocol layer; the transport ([`Transmit`]) only moves bytes.

use crate::command::{CLA_CHAINING, MAX_EXTENDED_DATA, MAX_SHORT_DATA, MAX_SHORT_LE};
use crate::{CommandApdu, Error, ResponseApdu, StatusWord};

/// GET RESPONSE's instruction byte (ISO 7816-4 §7.6.1).
pub const INS_GET_RESPONSE: u8 = 0xC0;

/// Moves one command APDU to the card and its response back, nothing more: a PC/SC
/// `SCardTransmit`, a vpcd socket, or a scripted fake in tests.
pub trait Transmit {
    /// What the transport reports when it fails (reader gone, card removed, no service).
    type Error;
    /// Sends the raw command bytes and returns the raw response bytes (data, SW1, SW2).
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, Self::Error>;
}

impl<T: Transmit + ?Sized> Transmit for &mut T {
    type Error = T::Error;
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, Self::Error> {
        (**self).transmit(command)
    }
}

/// What the reader and card allow, and how much the caller is willing to receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeOptions {
    /// The most data one short command carries before chaining takes over (at most 255;
    /// larger values are capped at 255 unless `extended` is set).
    pub max_command_data: usize,
    /// Send one extended-length APDU (up to 65535 data bytes, Le up to 65536) instead of
    /// chaining short ones. Only for readers and cards that announce extended length support.
    pub extended: bool,
    /// The most response data accepted, summed over all GET RESPONSE rounds.
    pub max_response_len: usize,
    /// The most GET RESPONSE commands one exchange sends before giving up.
    pub max_get_response_rounds: usize,
}

impl Default for ExchangeOptions {
    /// Short APDUs chained at 255 bytes, up to 64 KiB of response (the largest PIV
    /// certificate object fits), in at most 512 GET RESPONSE rounds.
    fn default() -> Self {
        ExchangeOptions {
            max_command_data: MAX_SHORT_DATA,
            extended: false,
            max_response_len: 65536,
            max_get_response_rounds: 512,
        }
    }
}

/// Why an exchange produced no response. A card's error status word is not one of these: it
/// comes back as the [`ResponseApdu`] for the caller to act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError<E> {
    /// The transport failed; the card's state after this is unknown.
    #[error("transport failed: {0}")]
    Transport(#[source] E),
    /// The command could not be encoded, or the card's answer was not a response APDU.
    #[error("malformed APDU: {0}")]
    Malformed(#[source] Error),
    /// The response data grew past [`ExchangeOptions::max_response_len`].
    #[error("response longer than the {limit}-byte limit")]
    ResponseTooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The card kept answering 61xx past [`ExchangeOptions::max_get_response_rounds`].
    #[error("card still had more data after {rounds} GET RESPONSE rounds")]
    TooManyGetResponseRounds {
        /// The number of GET RESPONSE commands sent.
        rounds: usize,
    },
    /// The options cannot work (e.g. a chaining size of zero).
    #[error("invalid exchange options: {reason}")]
    InvalidOptions {
        /// What is wrong with them.
        reason: &'static str,
    },
}

/// Sends `command` and returns the card's complete answer.
///
/// - Data longer than the chunk size is sent as a chain (CLA | 0x10 on all but the last
///   command); if an intermediate command is not answered 9000 (61xx included), that answer
///   is returned and the rest of the chain is not sent.
/// - 61xx is followed by GET RESPONSE (`00 C0 00 00 xx`, on the command's logical channel),
///   accumulating data, at most `max_get_response_rounds` times and `max_response_len` bytes.
/// - 6Cxx makes it resend the command it answered once, with Le = xx.
/// - Without `extended`, Le is capped at 256 (short `00`); longer answers come via 61xx.
pub fn transceive<T: Transmit>(
    transport: &mut T,
    command: &CommandApdu,
    options: &ExchangeOptions,
) -> Result<ResponseApdu, ExchangeError<T::Error>> {
    if options.max_command_data == 0 && !options.extended {
        return Err(ExchangeError::InvalidOptions {
            reason: "max_command_data is 0, so no data could ever be sent",
        });
    }
    let chunk_size = if options.extended {
        MAX_EXTENDED_DATA
    } else {
        options.max_command_data.min(MAX_SHORT_DATA)
    };
    let mut last = command.clone();
    if !options.extended {
        last.le = last.le.map(|le| le.min(MAX_SHORT_LE));
    }
    if command.data.len() > chunk_size {
        let mut chunks = command.data.chunks(chunk_size).peekable();
        while let Some(chunk) = chunks.next() {
            if chunks.peek().is_none() {
                last.data = chunk.to_vec();
                break;
            }
            let link = CommandApdu {
                cla: command.cla | CLA_CHAINING,
                ins: command.ins,
                p1: command.p1,
                p2: command.p2,
                data: chunk.to_vec(),
                le: None,
            };
            let response = send(transport, &link, options)?;
            if !response.status.is_success() {
                return Ok(response);
            }
        }
    }
    let mut response = send(transport, &last, options)?;
    let mut retried_wrong_le = false;
    if let StatusWord::WrongLe(n) = response.status {
        retried_wrong_le = true;
        response = send(transport, &last.clone().with_le(le_from_sw2(n)), options)?;
    }
    let mut data = response.data;
    check_length(data.len(), options)?;
    let mut status = response.status;
    let mut rounds = 0;
    while let StatusWord::MoreData(n) = status {
        if rounds >= options.max_get_response_rounds {
            return Err(ExchangeError::TooManyGetResponseRounds { rounds });
        }
        rounds += 1;
        let get_response = CommandApdu::new(get_response_cla(command.cla), INS_GET_RESPONSE, 0, 0)
            .with_le(le_from_sw2(n));
        let mut next = send(transport, &get_response, options)?;
        if let StatusWord::WrongLe(n) = next.status
            && !retried_wrong_le
        {
            retried_wrong_le = true;
            next = send(transport, &get_response.with_le(le_from_sw2(n)), options)?;
        }
        check_length(data.len() + next.data.len(), options)?;
        data.extend_from_slice(&next.data);
        status = next.status;
    }
    Ok(ResponseApdu { data, status })
}

/// Encodes, transmits and parses one APDU.
fn send<T: Transmit>(
    transport: &mut T,
    command: &CommandApdu,
    options: &ExchangeOptions,
) -> Result<ResponseApdu, ExchangeError<T::Error>> {
    let bytes = if options.extended {
        command.to_bytes()
    } else {
        command.to_bytes_short()
    }
    .map_err(ExchangeError::Malformed)?;
    let raw = transport
        .transmit(&bytes)
        .map_err(ExchangeError::Transport)?;
    ResponseApdu::parse(&raw).map_err(ExchangeError::Malformed)
}

fn check_length<E>(len: usize, options: &ExchangeOptions) -> Result<(), ExchangeError<E>> {
    if len > options.max_response_len {
        Err(ExchangeError::ResponseTooLong {
            limit: options.max_response_len,
        })
    } else {
        Ok(())
    }
}

/// SW2 of 61xx / 6Cxx as a length: 00 means 256.
fn le_from_sw2(sw2: u8) -> usize {
    if sw2 == 0 { 256 } else { usize::from(sw2) }
}

/// GET RESPONSE's class byte: the command's logical channel, without chaining or secure
/// messaging bits. First interindustry class (0x00-0x1F) keeps bits 1-2, further
/// interindustry (0x40-0x7F) keeps its channel nibble; proprietary classes use 00.
fn get_response_cla(cla: u8) -> u8 {
    match cla {
        0x00..=0x1F => cla & 0x03,
        0x40..=0x7F => cla & 0x4F,
        _ => 0x00,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A card that expects exactly the scripted commands, in order, and answers each with
    /// its scripted response.
    #[derive(Debug, Default)]
    struct ScriptedCard {
        script: VecDeque<(Vec<u8>, Vec<u8>)>,
        sent: Vec<Vec<u8>>,
    }

    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    #[error("card removed")]
    struct CardRemoved;

    impl ScriptedCard {
        fn new(script: &[(&str, &str)]) -> Self {
            ScriptedCard {
                script: script
                    .iter()
                    .map(|(c, r)| (hex::decode(c).unwrap(), hex::decode(r).unwrap()))
                    .collect(),
                sent: Vec::new(),
            }
        }

        fn finished(&self) -> bool {
            self.script.is_empty()
        }
    }

    impl Transmit for ScriptedCard {
        type Error = CardRemoved;
        fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardRemoved> {
            self.sent.push(command.to_vec());
            let Some((expected, response)) = self.script.pop_front() else {
                return Err(CardRemoved);
            };
            assert_eq!(
                hex::encode_upper(command),
                hex::encode_upper(&expected),
                "unexpected command"
            );
            Ok(response)
        }
    }

    fn apdu(s: &str) -> CommandApdu {
        CommandApdu::parse(&hex::decode(s).unwrap()).unwrap()
    }

    #[test]
    fn a_simple_command_is_sent_once() {
        let mut card = ScriptedCard::new(&[("00A4040009A00000030800001000", "61114F9000")]);
        let r = transceive(
            &mut card,
            &apdu("00A4040009A00000030800001000"),
            &ExchangeOptions::default(),
        )
        .unwrap();
        assert_eq!(
            r,
            ResponseApdu::new(vec![0x61, 0x11, 0x4F], StatusWord::Success)
        );
        assert!(card.finished());
    }

    #[test]
    fn long_data_is_chained_with_the_cla_bit() {
        let data: Vec<u8> = (0..=255u8).chain(0..10).collect(); // 266 bytes
        let command = CommandApdu::new(0x00, 0xDB, 0x3F, 0xFF).with_data(data.clone());
        let first = format!("10DB3FFF64{}", hex::encode(&data[..100]));
        let second = format!("10DB3FFF64{}", hex::encode(&data[100..200]));
        let third = format!("00DB3FFF42{}", hex::encode(&data[200..]));
        let mut card = ScriptedCard::new(&[(&first, "9000"), (&second, "9000"), (&third, "9000")]);
        let options = ExchangeOptions {
            max_command_data: 100,
            ..ExchangeOptions::default()
        };
        let r = transceive(&mut card, &command, &options).unwrap();
        assert_eq!(r.status, StatusWord::Success);
        assert!(card.finished());
    }

    #[test]
    fn default_chunks_are_255_bytes_and_le_goes_on_the_last() {
        let data = vec![0x5A; 300];
        let command = CommandApdu::new(0x00, 0x87, 0x11, 0x9A)
            .with_data(data.clone())
            .with_le(256);
        let first = format!("1087119AFF{}", hex::encode(&data[..255]));
        let last = format!("0087119A2D{}00", hex::encode(&data[255..]));
        let mut card = ScriptedCard::new(&[(&first, "9000"), (&last, "7C0282009000")]);
        let r = transceive(&mut card, &command, &ExchangeOptions::default()).unwrap();
        assert_eq!(r.data, hex::decode("7C028200").unwrap());
        assert!(card.finished());
    }

    #[test]
    fn an_error_in_the_middle_of_a_chain_is_returned_and_the_chain_stops() {
        let data = vec![0x01; 20];
        let command = CommandApdu::new(0x00, 0xDB, 0x3F, 0xFF).with_data(data);
        let first = format!("10DB3FFF0A{}", "01".repeat(10));
        let mut card = ScriptedCard::new(&[(&first, "6A84")]);
        let options = ExchangeOptions {
            max_command_data: 10,
            ..ExchangeOptions::default()
        };
        let r = transceive(&mut card, &command, &options).unwrap();
        assert_eq!(r.status, StatusWord::NotEnoughMemory);
        assert!(card.finished(), "the second chunk must not be sent");
        assert_eq!(card.sent.len(), 1);
    }

    #[test]
    fn more_data_is_fetched_with_get_response() {
        let mut card = ScriptedCard::new(&[
            ("00CB3FFF055C035FC10200", "AABB6104"),
            ("00C0000004", "CCDDEEFF6102"),
            ("00C0000002", "11229000"),
        ]);
        let r = transceive(
            &mut card,
            &apdu("00CB3FFF055C035FC10200"),
            &ExchangeOptions::default(),
        )
        .unwrap();
        assert_eq!(r.data, hex::decode("AABBCCDDEEFF1122").unwrap());
        assert_eq!(r.status, StatusWord::Success);
        assert!(card.finished());
    }

    #[test]
    fn get_response_61_00_asks_for_256_bytes_on_the_same_channel() {
        let mut card = ScriptedCard::new(&[("01CB3FFF00", "6100"), ("01C0000000", "9000")]);
        let r = transceive(
            &mut card,
            &CommandApdu::new(0x01, 0xCB, 0x3F, 0xFF).with_le(256),
            &ExchangeOptions::default(),
        )
        .unwrap();
        assert!(r.is_success());
        assert!(card.finished());
    }

    #[test]
    fn wrong_le_is_retried_once_with_the_card_s_length() {
        let mut card = ScriptedCard::new(&[
            ("00CB3FFF035C017E08", "6C12"),
            (
                "00CB3FFF035C017E12",
                "7E10000000000000000000000000000000009000",
            ),
        ]);
        let r = transceive(
            &mut card,
            &apdu("00CB3FFF035C017E08"),
            &ExchangeOptions::default(),
        )
        .unwrap();
        assert_eq!(r.data.len(), 18);
        assert!(card.finished());

        // A second 6Cxx is returned, not chased.
        let mut card = ScriptedCard::new(&[("00B0000005", "6C08"), ("00B0000008", "6C09")]);
        let r = transceive(&mut card, &apdu("00B0000005"), &ExchangeOptions::default()).unwrap();
        assert_eq!(r.status, StatusWord::WrongLe(9));
        assert!(card.finished());
    }

    #[test]
    fn response_length_is_bounded() {
        let mut card = ScriptedCard::new(&[
            ("00CB3FFF00", &format!("{}6110", "AA".repeat(10))),
            ("00C0000010", &format!("{}9000", "BB".repeat(16))),
        ]);
        let options = ExchangeOptions {
            max_response_len: 20,
            ..ExchangeOptions::default()
        };
        let err = transceive(
            &mut card,
            &CommandApdu::new(0, 0xCB, 0x3F, 0xFF).with_le(256),
            &options,
        )
        .unwrap_err();
        assert!(matches!(err, ExchangeError::ResponseTooLong { limit: 20 }));

        // A first answer already past the limit is refused too.
        let mut card = ScriptedCard::new(&[("00CB3FFF00", &format!("{}9000", "AA".repeat(21)))]);
        let err = transceive(
            &mut card,
            &CommandApdu::new(0, 0xCB, 0x3F, 0xFF).with_le(256),
            &options,
        )
        .unwrap_err();
        assert!(matches!(err, ExchangeError::ResponseTooLong { limit: 20 }));
    }

    #[test]
    fn get_response_rounds_are_bounded() {
        /// A card that answers 6101 with one byte, forever.
        struct Endless(usize);
        impl Transmit for Endless {
            type Error = CardRemoved;
            fn transmit(&mut self, _: &[u8]) -> Result<Vec<u8>, CardRemoved> {
                self.0 += 1;
                Ok(vec![0xAA, 0x61, 0x01])
            }
        }
        let mut card = Endless(0);
        let options = ExchangeOptions {
            max_get_response_rounds: 7,
            ..ExchangeOptions::default()
        };
        let err = transceive(&mut card, &apdu("00CB3FFF00"), &options).unwrap_err();
        assert!(matches!(
            err,
            ExchangeError::TooManyGetResponseRounds { rounds: 7 }
        ));
        assert_eq!(card.0, 8, "the command plus 7 GET RESPONSE");
    }

    #[test]
    fn transport_and_malformed_answers_are_errors() {
        let mut card = ScriptedCard::new(&[]);
        let err =
            transceive(&mut card, &apdu("00CB3FFF00"), &ExchangeOptions::default()).unwrap_err();
        assert!(matches!(err, ExchangeError::Transport(CardRemoved)));
        assert_eq!(err.to_string(), "transport failed: card removed");

        let mut card = ScriptedCard::new(&[("00CB3FFF00", "90")]);
        let err =
            transceive(&mut card, &apdu("00CB3FFF00"), &ExchangeOptions::default()).unwrap_err();
        assert!(matches!(
            err,
            ExchangeError::Malformed(Error::Truncated { .. })
        ));
    }

    #[test]
    fn extended_mode_sends_one_apdu_and_short_mode_caps_le() {
        let data = vec![0x42; 300];
        let command = CommandApdu::new(0, 0xDB, 0x3F, 0xFF)
            .with_data(data.clone())
            .with_le(1000);
        let extended = format!("00DB3FFF00012C{}03E8", hex::encode(&data));
        let mut card = ScriptedCard::new(&[(&extended, "9000")]);
        let options = ExchangeOptions {
            extended: true,
            ..ExchangeOptions::default()
        };
        assert!(
            transceive(&mut card, &command, &options)
                .unwrap()
                .is_success()
        );
        assert!(card.finished());

        let mut card = ScriptedCard::new(&[("00CB3FFF00", "9000")]);
        let command = CommandApdu::new(0, 0xCB, 0x3F, 0xFF).with_le(4000);
        assert!(
            transceive(&mut card, &command, &ExchangeOptions::default())
                .unwrap()
                .is_success()
        );
        assert!(card.finished());
    }

    #[test]
    fn zero_chunk_size_is_refused_before_sending() {
        let mut card = ScriptedCard::new(&[]);
        let options = ExchangeOptions {
            max_command_data: 0,
            ..ExchangeOptions::default()
        };
        let err = transceive(&mut card, &apdu("00200080"), &options).unwrap_err();
        assert!(matches!(err, ExchangeError::InvalidOptions { .. }));
        assert!(card.sent.is_empty());
    }
}
