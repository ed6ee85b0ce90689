//! Response APDUs (ISO 7816-4 §5.1): response data followed by the status word.

use std::fmt;

use crate::hexfmt::Hex;
use crate::{Error, StatusWord};

/// A response APDU: what the card answered to one command.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResponseApdu {
    /// Response data (empty when the card sent only a status word).
    pub data: Vec<u8>,
    /// The card's verdict.
    pub status: StatusWord,
}

impl ResponseApdu {
    /// Builds a response, as a card (real or virtual) would send it.
    pub fn new(data: impl Into<Vec<u8>>, status: StatusWord) -> Self {
        ResponseApdu {
            data: data.into(),
            status,
        }
    }

    /// Parses response bytes: everything before the last two bytes is data, the last two are
    /// SW1 SW2. Fewer than two bytes is an error.
    pub fn parse(bytes: &[u8]) -> Result<ResponseApdu, Error> {
        match bytes.split_last_chunk::<2>() {
            Some((data, [sw1, sw2])) => Ok(ResponseApdu {
                data: data.to_vec(),
                status: StatusWord::from((*sw1, *sw2)),
            }),
            None => Err(Error::Truncated {
                what: "response APDU status word",
                offset: 0,
                needed: 2,
                available: bytes.len(),
            }),
        }
    }

    /// The response as it goes on the wire: data then SW1 SW2.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.status.to_bytes());
        out
    }

    /// Whether the status word is 9000.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

impl From<StatusWord> for ResponseApdu {
    /// A response without data: the usual answer to VERIFY, PUT DATA or an error.
    fn from(status: StatusWord) -> Self {
        ResponseApdu::new(Vec::new(), status)
    }
}

impl fmt::Debug for ResponseApdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseApdu")
            .field("data", &Hex(&self.data))
            .field("status", &format_args!("{:04X}", self.status.to_u16()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_data_from_the_status_word() {
        let r =
            ResponseApdu::parse(&hex::decode("53029000_9000".replace('_', "")).unwrap()).unwrap();
        assert_eq!(r.data, vec![0x53, 0x02, 0x90, 0x00]);
        assert_eq!(r.status, StatusWord::Success);
        let r = ResponseApdu::parse(&[0x63, 0xC2]).unwrap();
        assert!(r.data.is_empty());
        assert_eq!(r.status, StatusWord::VerificationFailed { tries_left: 2 });
        assert_eq!(r.to_bytes(), vec![0x63, 0xC2]);
    }

    #[test]
    fn fewer_than_two_bytes_is_an_error() {
        assert!(matches!(
            ResponseApdu::parse(&[]),
            Err(Error::Truncated { available: 0, .. })
        ));
        assert!(matches!(
            ResponseApdu::parse(&[0x90]),
            Err(Error::Truncated { available: 1, .. })
        ));
    }

    #[test]
    fn debug_is_hex() {
        let r = ResponseApdu::new(vec![0xAB, 0x01], StatusWord::MoreData(0x10));
        assert_eq!(
            format!("{r:?}"),
            "ResponseApdu { data: AB01, status: 6110 }"
        );
    }
}
