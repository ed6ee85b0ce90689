//! Command APDUs (ISO 7816-4 §5.1): the header, optional data and optional Le, parsed from and
//! encoded to all seven cases (1, 2S, 3S, 4S, 2E, 3E, 4E).

use std::fmt;

use crate::Error;
use crate::hexfmt::Hex;

/// The most command data a short APDU carries (one-byte Lc).
pub const MAX_SHORT_DATA: usize = 255;
/// The most command data an extended APDU carries (two-byte Lc).
pub const MAX_EXTENDED_DATA: usize = 65535;
/// The largest Le a short APDU asks for (Le byte 00).
pub const MAX_SHORT_LE: usize = 256;
/// The largest Le an extended APDU asks for (Le bytes 0000).
pub const MAX_EXTENDED_LE: usize = 65536;

/// CLA bit that says "more commands of this chain follow" (ISO 7816-4 §5.4.2).
pub const CLA_CHAINING: u8 = 0x10;

/// Instructions whose data is a passcode, unlock code or new reference data: VERIFY (20),
/// CHANGE REFERENCE DATA (24), RESET RETRY COUNTER (2C). Their data is never shown in `Debug`.
const SECRET_BEARING_INS: [u8; 3] = [0x20, 0x24, 0x2C];

/// A command APDU as the card sees it.
///
/// `le` is `None` when the command expects no response data, `Some(n)` for "up to n bytes"
/// (1 to 65536; the wire's short `00` is 256 and extended `0000` is 65536).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CommandApdu {
    /// Class byte: channel, secure messaging and the chaining bit.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// First parameter.
    pub p1: u8,
    /// Second parameter.
    pub p2: u8,
    /// Command data (Lc is its length); empty when there is none.
    pub data: Vec<u8>,
    /// Expected response length, if any.
    pub le: Option<usize>,
}

impl CommandApdu {
    /// A case 1 command (header only); add data and Le with the `with_` methods.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        CommandApdu {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
        }
    }

    /// The same command carrying `data`.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    /// The same command expecting up to `le` bytes back (256 for "short maximum").
    pub fn with_le(mut self, le: usize) -> Self {
        self.le = Some(le);
        self
    }

    /// Parses a command APDU in any of the seven ISO 7816-4 cases.
    ///
    /// Bytes that fit no case (a body whose length disagrees with Lc, an extended marker with
    /// nothing after it) are an error, never a guess.
    pub fn parse(bytes: &[u8]) -> Result<CommandApdu, Error> {
        let (header, body) = match bytes.split_first_chunk::<4>() {
            Some((header, body)) => (header, body),
            None => {
                return Err(Error::Truncated {
                    what: "command APDU header",
                    offset: 0,
                    needed: 4,
                    available: bytes.len(),
                });
            }
        };
        let [cla, ins, p1, p2] = *header;
        let mut command = CommandApdu::new(cla, ins, p1, p2);
        match body {
            // Case 1.
            [] => {}
            // Case 2S.
            [le] => command.le = Some(short_le(*le)),
            // Extended: a zero first byte followed by at least two more.
            [0, rest @ ..] if rest.len() >= 2 => {
                let (lc_or_le, after) = (u16::from_be_bytes([rest[0], rest[1]]), &rest[2..]);
                if after.is_empty() {
                    // Case 2E.
                    command.le = Some(extended_le(lc_or_le));
                } else if lc_or_le == 0 {
                    return Err(Error::ExtendedLcZero { offset: 5 });
                } else {
                    let lc = usize::from(lc_or_le);
                    if after.len() == lc {
                        // Case 3E.
                        command.data = after.to_vec();
                    } else if after.len() == lc + 2 {
                        // Case 4E.
                        command.data = after[..lc].to_vec();
                        command.le =
                            Some(extended_le(u16::from_be_bytes([after[lc], after[lc + 1]])));
                    } else {
                        return Err(Error::LcMismatch {
                            offset: 5,
                            lc,
                            remaining: after.len(),
                            le_size: 2,
                        });
                    }
                }
            }
            [0, _] => {
                return Err(Error::Truncated {
                    what: "extended length field",
                    offset: 5,
                    needed: 2,
                    available: 1,
                });
            }
            [lc, after @ ..] => {
                let lc = usize::from(*lc);
                if after.len() == lc {
                    // Case 3S.
                    command.data = after.to_vec();
                } else if after.len() == lc + 1 {
                    // Case 4S.
                    command.data = after[..lc].to_vec();
                    command.le = Some(short_le(after[lc]));
                } else {
                    return Err(Error::LcMismatch {
                        offset: 4,
                        lc,
                        remaining: after.len(),
                        le_size: 1,
                    });
                }
            }
        }
        Ok(command)
    }

    /// Encodes the command in short form when data and Le fit (≤ 255 bytes, Le ≤ 256),
    /// otherwise in extended form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        if self.fits_short() {
            self.to_bytes_short()
        } else {
            self.to_bytes_extended()
        }
    }

    /// Whether the command can be sent as a short APDU, which every reader accepts.
    pub fn fits_short(&self) -> bool {
        self.data.len() <= MAX_SHORT_DATA && self.le.is_none_or(|le| le <= MAX_SHORT_LE)
    }

    /// Encodes the command in short form, or says why it does not fit.
    pub fn to_bytes_short(&self) -> Result<Vec<u8>, Error> {
        if self.data.len() > MAX_SHORT_DATA {
            return Err(Error::DataTooLong {
                len: self.data.len(),
                max: MAX_SHORT_DATA,
                form: "short",
            });
        }
        let le = self.le.map(|le| encode_le(le, MAX_SHORT_LE)).transpose()?;
        let mut out = Vec::with_capacity(6 + self.data.len());
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if !self.data.is_empty() {
            // Checked above: at most 255.
            out.push(self.data.len() as u8);
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = le {
            // 256 encodes as 00 (the low byte).
            out.push(le as u8);
        }
        Ok(out)
    }

    /// Encodes the command in extended form (two-byte Lc and Le), for readers and cards that
    /// announce extended length support. A case 1 command has no extended form: its four
    /// header bytes come back.
    pub fn to_bytes_extended(&self) -> Result<Vec<u8>, Error> {
        if self.data.len() > MAX_EXTENDED_DATA {
            return Err(Error::DataTooLong {
                len: self.data.len(),
                max: MAX_EXTENDED_DATA,
                form: "extended",
            });
        }
        let le = self
            .le
            .map(|le| encode_le(le, MAX_EXTENDED_LE))
            .transpose()?;
        let mut out = Vec::with_capacity(9 + self.data.len());
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if self.data.is_empty() && le.is_none() {
            return Ok(out);
        }
        out.push(0);
        if !self.data.is_empty() {
            // Checked above: at most 65535.
            out.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = le {
            // 65536 encodes as 0000 (the low two bytes).
            out.extend_from_slice(&(le as u16).to_be_bytes());
        }
        Ok(out)
    }

    /// Whether the CLA chaining bit (0x10) says more commands of this chain follow.
    pub fn is_chained(&self) -> bool {
        self.cla & CLA_CHAINING != 0
    }

    /// Whether the data is a passcode, unlock code or new reference data (VERIFY, CHANGE
    /// REFERENCE DATA, RESET RETRY COUNTER), so that loggers can leave it out.
    pub fn carries_secret(&self) -> bool {
        SECRET_BEARING_INS.contains(&self.ins) && !self.data.is_empty()
    }
}

impl fmt::Debug for CommandApdu {
    /// Shows the header and data in hex, except passcode-bearing data, which is redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("CommandApdu");
        s.field("cla", &format_args!("{:02X}", self.cla))
            .field("ins", &format_args!("{:02X}", self.ins))
            .field("p1", &format_args!("{:02X}", self.p1))
            .field("p2", &format_args!("{:02X}", self.p2));
        if self.carries_secret() {
            s.field(
                "data",
                &format_args!("<{} bytes redacted>", self.data.len()),
            );
        } else {
            s.field("data", &Hex(&self.data));
        }
        s.field("le", &self.le).finish()
    }
}

/// Short Le byte to length: 00 means 256.
fn short_le(byte: u8) -> usize {
    if byte == 0 { 256 } else { usize::from(byte) }
}

/// Extended Le to length: 0000 means 65536.
fn extended_le(value: u16) -> usize {
    if value == 0 {
        65536
    } else {
        usize::from(value)
    }
}

/// Checks an Le against the form's maximum; 0 has no encoding.
fn encode_le(le: usize, max: usize) -> Result<usize, Error> {
    if le == 0 || le > max {
        Err(Error::LeOutOfRange { le, max })
    } else {
        Ok(le)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn parses_piv_select_without_and_with_le() {
        let select = CommandApdu::parse(&bytes("00A4040009A00000030800001000")).unwrap();
        let expected =
            CommandApdu::new(0x00, 0xA4, 0x04, 0x00).with_data(bytes("A00000030800001000"));
        assert_eq!(select, expected);
        assert_eq!(
            select.to_bytes().unwrap(),
            bytes("00A4040009A00000030800001000")
        );
        // OpenSC sends it as case 4S with Le 00.
        let select = CommandApdu::parse(&bytes("00A4040009A0000003080000100000")).unwrap();
        assert_eq!(select, expected.with_le(256));
        assert_eq!(
            select.to_bytes().unwrap(),
            bytes("00A4040009A0000003080000100000")
        );
    }

    #[test]
    fn parses_get_data_for_the_chuid() {
        let get_data = CommandApdu::parse(&bytes("00CB3FFF055C035FC10200")).unwrap();
        assert_eq!(get_data.ins, 0xCB);
        assert_eq!((get_data.p1, get_data.p2), (0x3F, 0xFF));
        assert_eq!(get_data.data, bytes("5C035FC102"));
        assert_eq!(get_data.le, Some(256));
    }

    #[test]
    fn parses_verify_as_case_3s_and_hides_the_passcode() {
        let verify = CommandApdu::parse(&bytes("002000800831323334FFFFFFFF")).unwrap();
        assert_eq!(verify.ins, 0x20);
        assert_eq!(verify.p2, 0x80);
        assert_eq!(verify.data, bytes("31323334FFFFFFFF"));
        assert_eq!(verify.le, None);
        assert!(verify.carries_secret());
        let debug = format!("{verify:?}");
        assert!(!debug.contains("31323334"), "{debug}");
        assert!(debug.contains("<8 bytes redacted>"), "{debug}");
    }

    #[test]
    fn parses_cases_1_and_2s() {
        assert_eq!(
            CommandApdu::parse(&bytes("00200080")).unwrap(),
            CommandApdu::new(0, 0x20, 0, 0x80)
        );
        assert_eq!(
            CommandApdu::parse(&bytes("00C0000008")).unwrap(),
            CommandApdu::new(0, 0xC0, 0, 0).with_le(8)
        );
        assert_eq!(
            CommandApdu::parse(&bytes("00C0000000")).unwrap().le,
            Some(256)
        );
    }

    #[test]
    fn parses_extended_cases() {
        // Case 4E: GENERAL AUTHENTICATE with 300 bytes of data, Le 0000 (65536).
        let mut raw = bytes("0087079A00012C");
        raw.extend(std::iter::repeat_n(0xAB, 300));
        raw.extend(bytes("0000"));
        let ga = CommandApdu::parse(&raw).unwrap();
        assert_eq!(ga.data.len(), 300);
        assert_eq!(ga.le, Some(65536));
        assert_eq!(ga.to_bytes().unwrap(), raw);

        // Case 2E: Le 0400.
        let read = CommandApdu::parse(&bytes("00B0000000 0400".replace(' ', "").as_str()));
        assert_eq!(read.unwrap().le, Some(1024));
        // Case 3E.
        let put = CommandApdu::parse(&bytes("00DB3FFF000003010203")).unwrap();
        assert_eq!((put.data.clone(), put.le), (bytes("010203"), None));
        // Extended input that fits short re-encodes short, extended on request.
        assert_eq!(put.to_bytes().unwrap(), bytes("00DB3FFF03010203"));
        assert_eq!(
            put.to_bytes_extended().unwrap(),
            bytes("00DB3FFF000003010203")
        );
    }

    #[test]
    fn le_of_256_is_short_and_257_is_extended() {
        let c = CommandApdu::new(0, 0xCB, 0x3F, 0xFF).with_le(256);
        assert_eq!(c.to_bytes().unwrap(), bytes("00CB3FFF00"));
        let c = c.with_le(257);
        assert_eq!(c.to_bytes().unwrap(), bytes("00CB3FFF000101"));
        let c = c.with_le(65536);
        assert_eq!(c.to_bytes().unwrap(), bytes("00CB3FFF000000"));
    }

    #[test]
    fn malformed_commands_are_errors() {
        assert!(matches!(
            CommandApdu::parse(&[]),
            Err(Error::Truncated { available: 0, .. })
        ));
        assert!(matches!(
            CommandApdu::parse(&bytes("00A404")),
            Err(Error::Truncated {
                needed: 4,
                available: 3,
                ..
            })
        ));
        // Lc says 9 but only 2 bytes follow.
        assert_eq!(
            CommandApdu::parse(&bytes("00A4040009A000")),
            Err(Error::LcMismatch {
                offset: 4,
                lc: 9,
                remaining: 2,
                le_size: 1
            })
        );
        // Lc says 2 but 4 follow.
        assert!(matches!(
            CommandApdu::parse(&bytes("00A4040002A0000000")),
            Err(Error::LcMismatch { .. })
        ));
        // Extended marker with one byte after it.
        assert!(matches!(
            CommandApdu::parse(&bytes("00A404000001")),
            Err(Error::Truncated { offset: 5, .. })
        ));
        // Extended Lc 0000 followed by data.
        assert_eq!(
            CommandApdu::parse(&bytes("00A40400000000AA")),
            Err(Error::ExtendedLcZero { offset: 5 })
        );
        // Extended Lc past the buffer.
        assert!(matches!(
            CommandApdu::parse(&bytes("00A404000001FFAA")),
            Err(Error::LcMismatch { le_size: 2, .. })
        ));
    }

    #[test]
    fn unencodable_commands_are_errors() {
        let c = CommandApdu::new(0, 0xDB, 0x3F, 0xFF).with_le(0);
        assert_eq!(c.to_bytes(), Err(Error::LeOutOfRange { le: 0, max: 256 }));
        let c = CommandApdu::new(0, 0xCB, 0x3F, 0xFF).with_le(65537);
        assert_eq!(
            c.to_bytes(),
            Err(Error::LeOutOfRange {
                le: 65537,
                max: 65536
            })
        );
        let c = CommandApdu::new(0, 0xDB, 0x3F, 0xFF).with_data(vec![0; 65536]);
        assert!(matches!(
            c.to_bytes(),
            Err(Error::DataTooLong { max: 65535, .. })
        ));
        let c = CommandApdu::new(0, 0xDB, 0x3F, 0xFF).with_data(vec![0; 256]);
        assert!(matches!(
            c.to_bytes_short(),
            Err(Error::DataTooLong { max: 255, .. })
        ));
    }

    #[test]
    fn chaining_bit_is_cla_0x10() {
        assert!(CommandApdu::new(0x10, 0xDB, 0x3F, 0xFF).is_chained());
        assert!(!CommandApdu::new(0x00, 0xDB, 0x3F, 0xFF).is_chained());
    }
}
