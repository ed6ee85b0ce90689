//! Command chaining in both directions: incoming chains (CLA `10`) reassembled into one
//! command, and long responses served in parts through `61xx` and GET RESPONSE.

use cardgate_apdu::{CommandApdu, StatusWord};

use super::command::MAX_SHORT_LE;

/// The most command data a chain may accumulate. A certificate with its container fits
/// several times over; a host streaming without end gets 6700 instead of the card's memory.
pub(crate) const MAX_CHAINED_DATA: usize = 8 * 1024;

/// A chain being received: the header it started with and the data so far.
#[derive(Debug, Default)]
pub(crate) struct IncomingChain {
    pending: Option<(u8, u8, u8, Vec<u8>)>,
}

impl IncomingChain {
    /// Takes one command of a possible chain.
    ///
    /// Returns `Ok(None)` when the command was a link of a chain (the card answers 9000 and
    /// waits), `Ok(Some(command))` with the whole command (data of every link, CLA without
    /// the chaining bit) when it completes one or stands alone. A command with another
    /// INS/P1/P2 than the chain in progress abandons that chain and starts over, as a
    /// YubiKey does; a chain longer than [`MAX_CHAINED_DATA`] is dropped with 6700.
    pub(crate) fn accept(
        &mut self,
        mut command: CommandApdu,
    ) -> Result<Option<CommandApdu>, StatusWord> {
        let header = (command.ins, command.p1, command.p2);
        let mut data = match self.pending.take() {
            Some((ins, p1, p2, data)) if (ins, p1, p2) == header => data,
            _ => Vec::new(),
        };
        if data.len() + command.data.len() > MAX_CHAINED_DATA {
            return Err(StatusWord::WrongLength);
        }
        data.extend_from_slice(&command.data);
        if command.is_chained() {
            self.pending = Some((command.ins, command.p1, command.p2, data));
            return Ok(None);
        }
        command.cla &= !CLA_CHAINING;
        command.data = data;
        Ok(Some(command))
    }

    /// Forgets a chain in progress (power off, reset, malformed command).
    pub(crate) fn clear(&mut self) {
        self.pending = None;
    }
}

/// The CLA chaining bit (ISO 7816-4 §5.4.2).
pub(crate) const CLA_CHAINING: u8 = 0x10;

/// Response data not yet fetched with GET RESPONSE.
#[derive(Debug, Default)]
pub(crate) struct OutgoingResponse {
    rest: Vec<u8>,
}

impl OutgoingResponse {
    /// The answer to a command whose response is `data`: all of it when it fits the host's
    /// Le (at most 256 bytes for a short Le, the whole Le for an extended one), otherwise the
    /// first part and `61xx`, keeping the rest for GET RESPONSE. A missing Le is treated as
    /// 256, as cards answering T=1 do.
    pub(crate) fn start(&mut self, mut data: Vec<u8>, le: Option<usize>) -> (Vec<u8>, StatusWord) {
        self.rest.clear();
        let limit = le.unwrap_or(MAX_SHORT_LE);
        if data.len() <= limit {
            return (data, StatusWord::Success);
        }
        self.rest = data.split_off(limit);
        (data, self.more_status())
    }

    /// The next part for GET RESPONSE with `le`; 6985 when nothing is waiting.
    pub(crate) fn next(&mut self, le: usize) -> (Vec<u8>, StatusWord) {
        if self.rest.is_empty() {
            return (Vec::new(), StatusWord::ConditionsNotSatisfied);
        }
        let take = le.min(self.rest.len());
        let part: Vec<u8> = self.rest.drain(..take).collect();
        if self.rest.is_empty() {
            (part, StatusWord::Success)
        } else {
            (part, self.more_status())
        }
    }

    /// Discards waiting data: any command other than GET RESPONSE does.
    pub(crate) fn clear(&mut self) {
        self.rest = Vec::new();
    }

    /// `61xx` for what is left; `6100` says 256 or more.
    fn more_status(&self) -> StatusWord {
        // At most 255 after the min; 256 and above encode as 00.
        let left = if self.rest.len() >= MAX_SHORT_LE {
            0
        } else {
            self.rest.len() as u8
        };
        StatusWord::MoreData(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(cla: u8, data: &[u8]) -> CommandApdu {
        CommandApdu::new(cla, 0xDB, 0x3F, 0xFF).with_data(data.to_vec())
    }

    #[test]
    fn chains_reassemble_into_one_command() {
        let mut chain = IncomingChain::default();
        assert_eq!(chain.accept(link(0x10, &[1, 2])), Ok(None));
        assert_eq!(chain.accept(link(0x10, &[3])), Ok(None));
        let whole = chain.accept(link(0x00, &[4])).unwrap().unwrap();
        assert_eq!(whole.cla, 0x00);
        assert_eq!(whole.data, vec![1, 2, 3, 4]);
        // The chain is gone: the next command stands alone.
        assert_eq!(
            chain.accept(link(0x00, &[9])).unwrap().unwrap().data,
            vec![9]
        );
    }

    #[test]
    fn another_command_abandons_the_chain() {
        let mut chain = IncomingChain::default();
        assert_eq!(chain.accept(link(0x10, &[1, 2])), Ok(None));
        let other = CommandApdu::new(0x00, 0xCB, 0x3F, 0xFF).with_data(vec![7]);
        assert_eq!(chain.accept(other).unwrap().unwrap().data, vec![7]);
        assert_eq!(
            chain.accept(link(0x00, &[4])).unwrap().unwrap().data,
            vec![4]
        );
    }

    #[test]
    fn overlong_chains_are_refused() {
        let mut chain = IncomingChain::default();
        let chunk = vec![0u8; 255];
        let mut refused = false;
        for _ in 0..(MAX_CHAINED_DATA / 255 + 2) {
            match chain.accept(link(0x10, &chunk)) {
                Ok(None) => {}
                Err(StatusWord::WrongLength) => {
                    refused = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(refused);
        // The chain was dropped, so a final link is a command of its own.
        assert_eq!(
            chain.accept(link(0x00, &[1])).unwrap().unwrap().data,
            vec![1]
        );
    }

    #[test]
    fn long_responses_come_in_parts() {
        let mut out = OutgoingResponse::default();
        let data: Vec<u8> = (0..600u16).map(|i| i as u8).collect();
        let (first, sw) = out.start(data.clone(), Some(256));
        assert_eq!((first.len(), sw), (256, StatusWord::MoreData(0)));
        let (second, sw) = out.next(256);
        assert_eq!((second.len(), sw), (256, StatusWord::MoreData(88)));
        let (third, sw) = out.next(256);
        assert_eq!((third.len(), sw), (88, StatusWord::Success));
        assert_eq!([first, second, third].concat(), data);
        assert_eq!(out.next(256), (vec![], StatusWord::ConditionsNotSatisfied));
    }

    #[test]
    fn le_decides_the_first_part() {
        let mut out = OutgoingResponse::default();
        let data = vec![0xAB; 300];
        // A short Le of 8 (the length probe OpenSC sends) gets 8 bytes and 61xx.
        let (part, sw) = out.start(data.clone(), Some(8));
        assert_eq!((part.len(), sw), (8, StatusWord::MoreData(0)));
        // An extended Le gets everything at once.
        let (part, sw) = out.start(data.clone(), Some(65536));
        assert_eq!((part.len(), sw), (300, StatusWord::Success));
        assert_eq!(out.next(256).1, StatusWord::ConditionsNotSatisfied);
        // No Le: up to 256.
        let (part, sw) = out.start(data, None);
        assert_eq!((part.len(), sw), (256, StatusWord::MoreData(44)));
        out.clear();
        assert_eq!(out.next(256).1, StatusWord::ConditionsNotSatisfied);
    }
}
