//! PC/SC part 10 (v2.02) reader features: the feature list a reader answers to
//! `CM_IOCTL_GET_FEATURE_REQUEST`, its TLV properties (vendor and product ids, PIN sizes), a
//! quirk table of models that advertise a PIN pad they do not have (and what the real pads
//! need: short APDUs, their display's messages, the new PIN confirmed), the
//! `PIN_VERIFY_STRUCTURE` that makes a PIN-pad reader collect the passcode itself, and the
//! `PIN_MODIFY_STRUCTURE` that has it collect an old (or unlock) code and a new passcode.
//!
//! Pure bytes in and out, so it is tested with fixtures; vpcd offers no features.

use std::collections::BTreeMap;

/// Part 10 feature tag: verify a PIN entered on the reader's pad.
pub const FEATURE_VERIFY_PIN_DIRECT: u8 = 0x06;
/// Part 10 feature tag: change a PIN entered on the reader's pad.
pub const FEATURE_MODIFY_PIN_DIRECT: u8 = 0x07;
/// Part 10 feature tag: the reader's properties as TLVs.
pub const FEATURE_GET_TLV_PROPERTIES: u8 = 0x12;

/// `CM_IOCTL_GET_FEATURE_REQUEST` = `SCARD_CTL_CODE(3400)`: asks a reader for its features.
pub fn get_feature_request_code() -> u32 {
    ctl_code(3400)
}

/// `SCARD_CTL_CODE(code)` as a 32-bit control code (what part 10 feature TLVs carry), whatever
/// width the platform's `DWORD` has.
pub fn ctl_code(code: u32) -> u32 {
    u32::try_from(pcsc::ctl_code(code.into())).unwrap_or(u32::MAX)
}

const PROPERTY_LCD_LAYOUT: u8 = 0x01;
const PROPERTY_ENTRY_VALIDATION: u8 = 0x02;
const PROPERTY_MIN_PIN_SIZE: u8 = 0x06;
const PROPERTY_MAX_PIN_SIZE: u8 = 0x07;
const PROPERTY_FIRMWARE_ID: u8 = 0x08;
const PROPERTY_MAX_APDU_DATA: u8 = 0x0A;
const PROPERTY_VENDOR_ID: u8 = 0x0B;
const PROPERTY_PRODUCT_ID: u8 = 0x0C;

/// Why part 10 bytes did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Part10Error {
    /// A TLV ran past the end of the buffer.
    #[error("a TLV runs past the end of the answer")]
    Truncated,
    /// A feature TLV whose length is not 4 (a control code is a 4-byte big-endian value).
    #[error("a feature TLV has length {0}, not 4")]
    BadFeatureLength(u8),
    /// A property with the wrong length for its type.
    #[error("property {tag:#04x} has length {len}")]
    BadPropertyLength {
        /// The property tag.
        tag: u8,
        /// Its length.
        len: u8,
    },
    /// A `PIN_VERIFY_STRUCTURE` that does not describe a usable verification.
    #[error("PIN_VERIFY_STRUCTURE: {0}")]
    BadVerifyStructure(&'static str),
    /// A `PIN_MODIFY_STRUCTURE` that does not describe a usable change.
    #[error("PIN_MODIFY_STRUCTURE: {0}")]
    BadModifyStructure(&'static str),
}

/// A reader's part 10 features: which control codes it offers, and its TLV properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderFeatures {
    codes: BTreeMap<u8, u32>,
    properties: Option<TlvProperties>,
}

impl ReaderFeatures {
    /// A reader that offers nothing (vpcd, or a reader refusing the feature request).
    pub fn none() -> Self {
        ReaderFeatures::default()
    }

    /// Parses the answer to `CM_IOCTL_GET_FEATURE_REQUEST`: a sequence of tag, length 4,
    /// control code (big-endian).
    pub fn parse(answer: &[u8]) -> Result<Self, Part10Error> {
        let mut codes = BTreeMap::new();
        for (tag, value) in tlvs(answer)? {
            let code: [u8; 4] = value
                .try_into()
                .map_err(|_| Part10Error::BadFeatureLength(value.len() as u8))?;
            codes.insert(tag, u32::from_be_bytes(code));
        }
        Ok(ReaderFeatures {
            codes,
            properties: None,
        })
    }

    /// Attaches the parsed answer to `FEATURE_GET_TLV_PROPERTIES`.
    pub fn with_properties(mut self, properties: TlvProperties) -> Self {
        self.properties = Some(properties);
        self
    }

    /// The control code for `feature`, if the reader offers it.
    pub fn control_code(&self, feature: u8) -> Option<u32> {
        self.codes.get(&feature).copied()
    }

    /// The reader's TLV properties, if it offers them.
    pub fn properties(&self) -> Option<&TlvProperties> {
        self.properties.as_ref()
    }

    /// The known model, recognised by vendor and product id (never by name).
    pub fn model(&self) -> Option<&'static ReaderModel> {
        let p = self.properties.as_ref()?;
        let (vendor, product) = (p.vendor_id?, p.product_id?);
        READER_MODELS
            .iter()
            .find(|m| m.vendor_id == vendor && m.product_id == product)
    }

    /// How the pad prompts during a change (`PIN_MODIFY_STRUCTURE`): messages on its display
    /// when the model has one (the quirk table, else a non-zero `wLcdLayout` property), and
    /// the new passcode keyed twice unless the model is known not to ask for it.
    pub fn pad_prompts(&self) -> PadPrompts {
        let lcd = self
            .properties
            .as_ref()
            .and_then(|p| p.lcd_layout)
            .is_some_and(|layout| layout != 0);
        match self.model() {
            Some(model) => PadPrompts {
                display: model.display || lcd,
                confirm_new: model.confirm_new_pin,
            },
            None => PadPrompts {
                display: lcd,
                confirm_new: true,
            },
        }
    }

    /// Whether the reader takes short APDUs only (the quirk table, or `dwMaxAPDUDataSize` 0):
    /// a PIN-pad request must then carry a short APDU, which every request built here does.
    pub fn short_apdus_only(&self) -> bool {
        self.model().is_some_and(|m| m.short_apdus_only)
            || self
                .properties
                .as_ref()
                .is_some_and(|p| p.max_apdu_data_size == Some(0))
    }

    /// Whether passcodes go to the reader's PIN pad, and with which control code.
    pub fn pin_pad(&self) -> PinPad {
        let Some(verify) = self.control_code(FEATURE_VERIFY_PIN_DIRECT) else {
            return PinPad::Absent;
        };
        match self.model() {
            Some(model) if !model.pin_pad_works => PinPad::Disabled { model },
            _ => PinPad::Usable {
                verify,
                modify: self.control_code(FEATURE_MODIFY_PIN_DIRECT),
            },
        }
    }
}

/// Whether a reader's PIN pad is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinPad {
    /// No PIN pad advertised: the passcode is typed on the host.
    Absent,
    /// The reader advertises one, but the model is known not to have one (the CCID driver and
    /// OpenSC switch it off too): treated as absent.
    Disabled {
        /// The model recognised.
        model: &'static ReaderModel,
    },
    /// A PIN pad to use: the passcode must never be asked for on the host.
    Usable {
        /// Control code for `FEATURE_VERIFY_PIN_DIRECT`.
        verify: u32,
        /// Control code for `FEATURE_MODIFY_PIN_DIRECT`, if offered.
        modify: Option<u32>,
    },
}

impl PinPad {
    /// Whether the passcode goes to the pad.
    pub fn is_usable(&self) -> bool {
        matches!(self, PinPad::Usable { .. })
    }

    /// Whether a passcode change (or an unlock) goes to the pad: a usable pad that offers
    /// `FEATURE_MODIFY_PIN_DIRECT`. A pad that only verifies cannot take a new passcode, so
    /// the holder types that on the host as on a reader without a pad.
    pub fn can_modify(&self) -> bool {
        matches!(
            self,
            PinPad::Usable {
                modify: Some(_),
                ..
            }
        )
    }
}

/// How a PIN pad prompts the holder during a change: what the `bNumberMessage`,
/// `bMsgIndex1..3` and `bConfirmPIN` fields of a `PIN_MODIFY_STRUCTURE` say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadPrompts {
    /// The reader has a display: three messages (enter current, enter new, confirm new; the
    /// reader's own texts 0, 1, 2). Without one, no messages (`bNumberMessage` 0), as
    /// OpenSC sends: some display-less firmware rejects message indexes it cannot show.
    pub display: bool,
    /// The reader asks for the new passcode twice and refuses a mismatch itself (`64 02`)
    /// before anything reaches the card.
    pub confirm_new: bool,
}

/// A reader model the agent knows something about.
#[derive(Debug, PartialEq, Eq)]
pub struct ReaderModel {
    /// USB vendor id.
    pub vendor_id: u16,
    /// USB product id.
    pub product_id: u16,
    /// The model's name, for diagnostics.
    pub name: &'static str,
    /// Whether its advertised PIN pad exists and keeps the PIN off the host.
    pub pin_pad_works: bool,
    /// Whether it has a display for the pad's prompts (`bNumberMessage` 3 with messages 0, 1,
    /// 2 in a change; 0 without a display).
    pub display: bool,
    /// Whether it takes short APDUs only (`dwMaxAPDUDataSize` 0): a PIN-pad request with an
    /// extended APDU would be refused by the firmware.
    pub short_apdus_only: bool,
    /// Whether its pad asks for the new PIN twice in a change (`bConfirmPIN` bit 0).
    pub confirm_new_pin: bool,
}

/// Models recognised by vendor and product id (the CCID driver's own list, `ccid.h` and
/// `ccid_usb.c`): readers that advertise a PIN pad they do not have, keyboards whose pad also
/// sends the PIN to the host, and the Omnikey 3821, whose pad is real.
///
/// The Omnikey 3821 (CCID `HID_OMNIKEY_3821`, 076B:3821): a real numeric pad with a 2x16
/// display (so a change shows its three prompts, as OpenSC's `part10_build_modify_pin_block`
/// asks of a reader with a display); short APDUs only (the driver reports `dwMaxAPDUDataSize`
/// 0 for it), so a VERIFY, CHANGE REFERENCE DATA or RESET RETRY COUNTER on its pad must be a
/// short APDU (they are: 8 or 16 data bytes); PINs of 1 to 31 digits (`ifdhandler.c`), which
/// the 4-to-8 range asked for fits; the new PIN confirmed on the pad. The readers without a
/// working pad leave the other fields off: nothing is ever sent to their pads.
pub static READER_MODELS: &[ReaderModel] = &[
    ReaderModel {
        vendor_id: 0x076B,
        product_id: 0x3821,
        name: "HID Omnikey 3821",
        pin_pad_works: true,
        display: true,
        short_apdus_only: true,
        confirm_new_pin: true,
    },
    ReaderModel {
        vendor_id: 0x076B,
        product_id: 0x3031,
        name: "HID Omnikey 3021/3121/1021",
        pin_pad_works: false,
        display: false,
        short_apdus_only: false,
        confirm_new_pin: false,
    },
    ReaderModel {
        vendor_id: 0x076B,
        product_id: 0x6632,
        name: "HID Omnikey 6121",
        pin_pad_works: false,
        display: false,
        short_apdus_only: false,
        confirm_new_pin: false,
    },
    ReaderModel {
        vendor_id: 0x076B,
        product_id: 0x3A21,
        name: "HID Omnikey AViatoR 3021",
        pin_pad_works: false,
        display: false,
        short_apdus_only: false,
        confirm_new_pin: false,
    },
    ReaderModel {
        vendor_id: 0x046A,
        product_id: 0x00A7,
        name: "Cherry Smart Terminal xx44",
        pin_pad_works: false,
        display: false,
        short_apdus_only: false,
        confirm_new_pin: false,
    },
    ReaderModel {
        vendor_id: 0x0BF8,
        product_id: 0x1024,
        name: "Fujitsu D323",
        pin_pad_works: false,
        display: false,
        short_apdus_only: false,
        confirm_new_pin: false,
    },
    ReaderModel {
        vendor_id: 0x03F0,
        product_id: 0x1024,
        name: "HP smart card keyboard (PIN also reaches the host)",
        pin_pad_works: false,
        display: false,
        short_apdus_only: false,
        confirm_new_pin: false,
    },
    ReaderModel {
        vendor_id: 0x03F0,
        product_id: 0x0036,
        name: "HP CCID smart card keyboard (PIN also reaches the host)",
        pin_pad_works: false,
        display: false,
        short_apdus_only: false,
        confirm_new_pin: false,
    },
    ReaderModel {
        vendor_id: 0x0BF8,
        product_id: 0x1017,
        name: "Fujitsu smart card keyboard (PIN also reaches the host)",
        pin_pad_works: false,
        display: false,
        short_apdus_only: false,
        confirm_new_pin: false,
    },
];

/// The answer to `FEATURE_GET_TLV_PROPERTIES` (tag, length, little-endian value); unknown
/// tags are skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlvProperties {
    /// `wIdVendor`: USB vendor id, what models are recognised by.
    pub vendor_id: Option<u16>,
    /// `wIdProduct`: USB product id.
    pub product_id: Option<u16>,
    /// `bMinPINSize`: the shortest PIN the pad accepts.
    pub min_pin_size: Option<u8>,
    /// `bMaxPINSize`: the longest PIN the pad accepts.
    pub max_pin_size: Option<u8>,
    /// `bEntryValidationCondition`: how the pad ends an entry.
    pub entry_validation: Option<u8>,
    /// `dwMaxAPDUDataSize`: 0 means short APDUs only (the 3821).
    pub max_apdu_data_size: Option<u32>,
    /// `wLcdLayout`: rows and columns of the reader's display, 0 (or absent) without one.
    pub lcd_layout: Option<u16>,
    /// `sFirmwareID`, for diagnostics.
    pub firmware_id: Option<String>,
}

impl TlvProperties {
    /// Parses the answer to `FEATURE_GET_TLV_PROPERTIES`.
    pub fn parse(answer: &[u8]) -> Result<Self, Part10Error> {
        let mut p = TlvProperties::default();
        for (tag, value) in tlvs(answer)? {
            let bad = || Part10Error::BadPropertyLength {
                tag,
                len: value.len() as u8,
            };
            let u8v = || match value {
                [b] => Ok(*b),
                _ => Err(bad()),
            };
            let u16v = || match value {
                [lo, hi] => Ok(u16::from_le_bytes([*lo, *hi])),
                _ => Err(bad()),
            };
            match tag {
                PROPERTY_VENDOR_ID => p.vendor_id = Some(u16v()?),
                PROPERTY_PRODUCT_ID => p.product_id = Some(u16v()?),
                PROPERTY_MIN_PIN_SIZE => p.min_pin_size = Some(u8v()?),
                PROPERTY_MAX_PIN_SIZE => p.max_pin_size = Some(u8v()?),
                PROPERTY_ENTRY_VALIDATION => p.entry_validation = Some(u8v()?),
                PROPERTY_LCD_LAYOUT => p.lcd_layout = Some(u16v()?),
                PROPERTY_MAX_APDU_DATA => {
                    let v: [u8; 4] = value.try_into().map_err(|_| bad())?;
                    p.max_apdu_data_size = Some(u32::from_le_bytes(v));
                }
                PROPERTY_FIRMWARE_ID => {
                    p.firmware_id = Some(String::from_utf8_lossy(value).into_owned())
                }
                _ => {}
            }
        }
        Ok(p)
    }
}

/// Splits `bytes` into (tag, value) pairs with one-byte lengths.
fn tlvs(bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, Part10Error> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let [tag, len, tail @ ..] = rest {
        let len = usize::from(*len);
        if tail.len() < len {
            return Err(Part10Error::Truncated);
        }
        out.push((*tag, &tail[..len]));
        rest = &tail[len..];
    }
    if rest.is_empty() {
        Ok(out)
    } else {
        Err(Part10Error::Truncated)
    }
}

/// The fixed part of a `PIN_VERIFY_STRUCTURE`, before the APDU.
const VERIFY_HEADER_LEN: usize = 19;
/// bmFormatString bit 7: positions are in bytes, not bits.
const FORMAT_UNITS_BYTES: u8 = 0x80;
/// bmFormatString bits 1-0: the PIN is ASCII.
const FORMAT_ASCII: u8 = 0x02;
/// bEntryValidationCondition: entry ends when the holder presses OK.
const VALIDATE_ON_KEY: u8 = 0x02;
/// wLangId: English (United States), what readers have messages for.
const LANG_EN_US: u16 = 0x0409;

/// A `PIN_VERIFY_STRUCTURE` (PC/SC part 10 §2.5.2, CCID `PC_to_RDR_Secure`): the VERIFY
/// APDU with a blank PIN block and how the reader fills it with the digits keyed on its pad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinVerifyRequest {
    /// `bTimerOut`: seconds the pad waits for entry (0: the reader's default).
    pub timeout_secs: u8,
    /// `bTimerOut2`: seconds after the first key.
    pub timeout_after_first_key_secs: u8,
    /// `bmFormatString`.
    pub format: u8,
    /// `bmPINBlockString`: high nibble, bits of PIN length field; low nibble, block bytes.
    pub pin_block: u8,
    /// `bmPINLengthFormat`.
    pub pin_length_format: u8,
    /// Shortest PIN accepted (high byte of `wPINMaxExtraDigit`).
    pub min_pin_len: u8,
    /// Longest PIN accepted (low byte of `wPINMaxExtraDigit`).
    pub max_pin_len: u8,
    /// `bEntryValidationCondition`.
    pub entry_validation: u8,
    /// `bNumberMessage`.
    pub number_message: u8,
    /// `wLangId`.
    pub lang_id: u16,
    /// `bMsgIndex`.
    pub msg_index: u8,
    /// The APDU with the blank PIN block (`abData`).
    pub apdu: Vec<u8>,
}

impl PinVerifyRequest {
    /// PIV VERIFY (NIST SP 800-73-4 §3.2.1) of `key_reference` (0x80 the card application
    /// PIN): `00 20 00 kr 08` with an 8-byte block, the passcode in ASCII from the first byte,
    /// the rest left `FF`, as the card expects; 4 to 8 characters, as the NHS passcode rules
    /// allow; the holder confirms with OK.
    pub fn piv_verify(key_reference: u8) -> Self {
        let mut apdu = vec![0x00, 0x20, 0x00, key_reference, 0x08];
        apdu.extend_from_slice(&[0xFF; 8]);
        PinVerifyRequest {
            timeout_secs: 30,
            timeout_after_first_key_secs: 15,
            format: FORMAT_UNITS_BYTES | FORMAT_ASCII,
            pin_block: 0x08,
            pin_length_format: 0x00,
            min_pin_len: 4,
            max_pin_len: 8,
            entry_validation: VALIDATE_ON_KEY,
            number_message: 0x01,
            lang_id: LANG_EN_US,
            msg_index: 0x00,
            apdu,
        }
    }

    /// The structure's bytes, to send with `SCardControl(FEATURE_VERIFY_PIN_DIRECT)`.
    /// Multi-byte fields are little-endian (CCID byte order, which pcsc-lite's CCID driver
    /// reads in host order on the little-endian machines this runs on).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(VERIFY_HEADER_LEN + self.apdu.len());
        b.extend_from_slice(&[
            self.timeout_secs,
            self.timeout_after_first_key_secs,
            self.format,
            self.pin_block,
            self.pin_length_format,
        ]);
        b.extend_from_slice(&[self.max_pin_len, self.min_pin_len]);
        b.extend_from_slice(&[self.entry_validation, self.number_message]);
        b.extend_from_slice(&self.lang_id.to_le_bytes());
        b.push(self.msg_index);
        b.extend_from_slice(&[0, 0, 0]);
        b.extend_from_slice(&(self.apdu.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.apdu);
        b
    }

    /// Parses a structure, as reader firmware does (the virtual PIN pad uses it, so what the
    /// agent sends is checked by an independent reading of the bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, Part10Error> {
        let bad = Part10Error::BadVerifyStructure;
        if bytes.len() < VERIFY_HEADER_LEN {
            return Err(bad("shorter than its fixed header"));
        }
        let (h, apdu) = bytes.split_at(VERIFY_HEADER_LEN);
        let data_len = u32::from_le_bytes([h[15], h[16], h[17], h[18]]);
        if usize::try_from(data_len).ok() != Some(apdu.len()) {
            return Err(bad("ulDataLength does not match the APDU"));
        }
        let request = PinVerifyRequest {
            timeout_secs: h[0],
            timeout_after_first_key_secs: h[1],
            format: h[2],
            pin_block: h[3],
            pin_length_format: h[4],
            max_pin_len: h[5],
            min_pin_len: h[6],
            entry_validation: h[7],
            number_message: h[8],
            lang_id: u16::from_le_bytes([h[9], h[10]]),
            msg_index: h[11],
            apdu: apdu.to_vec(),
        };
        request.check()?;
        Ok(request)
    }

    /// The APDU the reader sends after the holder keyed `pin` on its pad: the PIN written into
    /// the block in the encoding `format` asks for. Only what PIV needs is supported (byte
    /// units, ASCII, left-justified, no length field); anything else is refused rather than
    /// guessed.
    pub fn apdu_with_pin(&self, pin: &[u8]) -> Result<Vec<u8>, Part10Error> {
        let bad = Part10Error::BadVerifyStructure;
        self.check()?;
        if pin.len() < usize::from(self.min_pin_len) || pin.len() > usize::from(self.max_pin_len) {
            return Err(bad("PIN length outside wPINMaxExtraDigit"));
        }
        let position = usize::from((self.format >> 3) & 0x0F);
        let start = 5 + position;
        let block = usize::from(self.pin_block & 0x0F);
        if pin.len() > block {
            return Err(bad("PIN longer than its block"));
        }
        let mut apdu = self.apdu.clone();
        apdu[start..start + pin.len()].copy_from_slice(pin);
        Ok(apdu)
    }

    fn check(&self) -> Result<(), Part10Error> {
        let bad = Part10Error::BadVerifyStructure;
        if self.format & FORMAT_UNITS_BYTES == 0 || self.format & 0x03 != FORMAT_ASCII {
            return Err(bad("only byte units and ASCII PINs are supported"));
        }
        if self.format & 0x04 != 0 || self.pin_block & 0xF0 != 0 || self.pin_length_format != 0 {
            return Err(bad(
                "only left-justified PINs without a length field are supported",
            ));
        }
        if self.min_pin_len == 0 || self.min_pin_len > self.max_pin_len {
            return Err(bad("minimum PIN length is 0 or above the maximum"));
        }
        let position = usize::from((self.format >> 3) & 0x0F);
        let block = usize::from(self.pin_block & 0x0F);
        if self.apdu.len() < 5 || usize::from(self.apdu[4]) != self.apdu.len() - 5 {
            return Err(bad("abData is not a short APDU with its data"));
        }
        if 5 + position + block > self.apdu.len() {
            return Err(bad("the PIN block runs past the APDU"));
        }
        if usize::from(self.max_pin_len) > block {
            return Err(bad("maximum PIN length exceeds the block"));
        }
        Ok(())
    }
}

/// The fixed part of a `PIN_MODIFY_STRUCTURE`, before the APDU.
const MODIFY_HEADER_LEN: usize = 24;
/// bConfirmPIN bit 0: the new PIN is keyed twice.
const CONFIRM_NEW: u8 = 0x01;
/// bConfirmPIN bit 1: the current PIN (or the unlock code) is keyed first.
const ENTER_CURRENT: u8 = 0x02;
/// PIV CHANGE REFERENCE DATA and RESET RETRY COUNTER carry two 8-byte blocks.
const PIV_BLOCK: u8 = 8;

/// Which PIV command a PIN-pad change builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PivModify {
    /// CHANGE REFERENCE DATA of the passcode (INS 24, P2 80): the current passcode, then the
    /// new one.
    ChangePasscode,
    /// RESET RETRY COUNTER of the passcode (INS 2C, P2 80): the unlock code (PIV PUK, 8
    /// characters), then the new passcode.
    ResetRetryCounter,
}

/// A `PIN_MODIFY_STRUCTURE` (PC/SC part 10 v2.02.09 §2.5.3, CCID `PC_to_RDR_Secure` with
/// `bPINOperation` 1, pcsc-lite's `reader.h`): the APDU with two blank blocks and how the
/// reader fills them with what the holder keys on its pad: the current value (passcode, or
/// the unlock code) at `bInsertionOffsetOld`, the new passcode at `bInsertionOffsetNew`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinModifyRequest {
    /// `bTimerOut`: seconds the pad waits for entry (0: the reader's default).
    pub timeout_secs: u8,
    /// `bTimerOut2`: seconds after the first key.
    pub timeout_after_first_key_secs: u8,
    /// `bmFormatString` (PIN position bits 6-3 must be 0: the offsets place the blocks).
    pub format: u8,
    /// `bmPINBlockString`: low nibble, bytes of each block.
    pub pin_block: u8,
    /// `bmPINLengthFormat`.
    pub pin_length_format: u8,
    /// `bInsertionOffsetOld`: where the current value goes, in bytes from the APDU's data.
    pub offset_old: u8,
    /// `bInsertionOffsetNew`: where the new passcode goes, in bytes from the APDU's data.
    pub offset_new: u8,
    /// Shortest PIN accepted (high byte of `wPINMaxExtraDigit`).
    pub min_pin_len: u8,
    /// Longest PIN accepted (low byte of `wPINMaxExtraDigit`).
    pub max_pin_len: u8,
    /// `bConfirmPIN`: bit 0 the new PIN keyed twice, bit 1 the current one keyed first.
    pub confirm: u8,
    /// `bEntryValidationCondition`.
    pub entry_validation: u8,
    /// `bNumberMessage`: 0 (no display) or 3 (current, new, confirm).
    pub number_message: u8,
    /// `wLangId`.
    pub lang_id: u16,
    /// `bMsgIndex1..3`: the reader's messages for each prompt.
    pub msg_index: [u8; 3],
    /// The APDU with the blank blocks (`abData`).
    pub apdu: Vec<u8>,
}

impl PinModifyRequest {
    /// A PIV change of the passcode (key reference 80) on the pad, as `command` says: `00 24
    /// 00 80 10` or `00 2C 00 80 10` with two 8-byte blocks left `FF`, the current value at
    /// offset 0 and the new passcode at offset 8, each ASCII from its block's first byte
    /// (the card's padding); 4 to 8 characters (the unlock code is 8, which the range holds);
    /// the holder confirms each with OK; prompts as the reader's model needs (`prompts`).
    /// Always a short APDU, which the Omnikey 3821 requires.
    pub fn piv(command: PivModify, prompts: PadPrompts) -> Self {
        let ins = match command {
            PivModify::ChangePasscode => 0x24,
            PivModify::ResetRetryCounter => 0x2C,
        };
        let mut apdu = vec![0x00, ins, 0x00, 0x80, 2 * PIV_BLOCK];
        apdu.extend_from_slice(&[0xFF; 2 * PIV_BLOCK as usize]);
        let confirm = ENTER_CURRENT | if prompts.confirm_new { CONFIRM_NEW } else { 0 };
        PinModifyRequest {
            timeout_secs: 30,
            timeout_after_first_key_secs: 15,
            format: FORMAT_UNITS_BYTES | FORMAT_ASCII,
            pin_block: PIV_BLOCK,
            pin_length_format: 0x00,
            offset_old: 0,
            offset_new: PIV_BLOCK,
            min_pin_len: 4,
            max_pin_len: 8,
            confirm,
            entry_validation: VALIDATE_ON_KEY,
            number_message: if prompts.display { 3 } else { 0 },
            lang_id: LANG_EN_US,
            msg_index: [0x00, 0x01, 0x02],
            apdu,
        }
    }

    /// Whether the reader asks for the current value (bit 1 of `bConfirmPIN`).
    pub fn enters_current(&self) -> bool {
        self.confirm & ENTER_CURRENT != 0
    }

    /// Whether the reader asks for the new passcode twice (bit 0 of `bConfirmPIN`).
    pub fn confirms_new(&self) -> bool {
        self.confirm & CONFIRM_NEW != 0
    }

    /// The structure's bytes, to send with `SCardControl(FEATURE_MODIFY_PIN_DIRECT)`;
    /// multi-byte fields little-endian, as for [`PinVerifyRequest::to_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MODIFY_HEADER_LEN + self.apdu.len());
        b.extend_from_slice(&[
            self.timeout_secs,
            self.timeout_after_first_key_secs,
            self.format,
            self.pin_block,
            self.pin_length_format,
            self.offset_old,
            self.offset_new,
        ]);
        b.extend_from_slice(&[self.max_pin_len, self.min_pin_len]);
        b.extend_from_slice(&[self.confirm, self.entry_validation, self.number_message]);
        b.extend_from_slice(&self.lang_id.to_le_bytes());
        b.extend_from_slice(&self.msg_index);
        b.extend_from_slice(&[0, 0, 0]);
        b.extend_from_slice(&(self.apdu.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.apdu);
        b
    }

    /// Parses a structure, as reader firmware does (the virtual PIN pad uses it, so the
    /// agent's bytes are checked by an independent reading).
    pub fn parse(bytes: &[u8]) -> Result<Self, Part10Error> {
        let bad = Part10Error::BadModifyStructure;
        if bytes.len() < MODIFY_HEADER_LEN {
            return Err(bad("shorter than its fixed header"));
        }
        let (h, apdu) = bytes.split_at(MODIFY_HEADER_LEN);
        let data_len = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
        if usize::try_from(data_len).ok() != Some(apdu.len()) {
            return Err(bad("ulDataLength does not match the APDU"));
        }
        let request = PinModifyRequest {
            timeout_secs: h[0],
            timeout_after_first_key_secs: h[1],
            format: h[2],
            pin_block: h[3],
            pin_length_format: h[4],
            offset_old: h[5],
            offset_new: h[6],
            max_pin_len: h[7],
            min_pin_len: h[8],
            confirm: h[9],
            entry_validation: h[10],
            number_message: h[11],
            lang_id: u16::from_le_bytes([h[12], h[13]]),
            msg_index: [h[14], h[15], h[16]],
            apdu: apdu.to_vec(),
        };
        request.check()?;
        Ok(request)
    }

    /// The APDU the reader sends once the holder keyed `current` (when the structure asks
    /// for it) and `new` on its pad: each written into its block, left-justified ASCII.
    /// Only what PIV needs is supported; anything else is refused rather than guessed.
    pub fn apdu_with_pins(
        &self,
        current: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Vec<u8>, Part10Error> {
        let bad = Part10Error::BadModifyStructure;
        self.check()?;
        if self.enters_current() != current.is_some() {
            return Err(bad(
                "the current PIN is keyed exactly when bConfirmPIN bit 1 says",
            ));
        }
        let in_range = |pin: &[u8]| {
            pin.len() >= usize::from(self.min_pin_len) && pin.len() <= usize::from(self.max_pin_len)
        };
        let mut apdu = self.apdu.clone();
        let mut place = |offset: u8, pin: &[u8]| -> Result<(), Part10Error> {
            if !in_range(pin) {
                return Err(bad("PIN length outside wPINMaxExtraDigit"));
            }
            let start = 5 + usize::from(offset);
            apdu[start..start + pin.len()].copy_from_slice(pin);
            Ok(())
        };
        if let Some(current) = current {
            place(self.offset_old, current)?;
        }
        place(self.offset_new, new)?;
        Ok(apdu)
    }

    fn check(&self) -> Result<(), Part10Error> {
        let bad = Part10Error::BadModifyStructure;
        if self.format & FORMAT_UNITS_BYTES == 0 || self.format & 0x03 != FORMAT_ASCII {
            return Err(bad("only byte units and ASCII PINs are supported"));
        }
        if self.format & 0x7C != 0 || self.pin_block & 0xF0 != 0 || self.pin_length_format != 0 {
            return Err(bad(
                "only left-justified PINs at their insertion offsets, without a length field, are supported",
            ));
        }
        if self.confirm & !(CONFIRM_NEW | ENTER_CURRENT) != 0 {
            return Err(bad("bConfirmPIN has bits other than 0 and 1 set"));
        }
        if self.number_message > 3 && self.number_message != 0xFF {
            return Err(bad("bNumberMessage is above 3"));
        }
        if self.min_pin_len == 0 || self.min_pin_len > self.max_pin_len {
            return Err(bad("minimum PIN length is 0 or above the maximum"));
        }
        if self.apdu.len() < 5 || usize::from(self.apdu[4]) != self.apdu.len() - 5 {
            return Err(bad("abData is not a short APDU with its data"));
        }
        let block = usize::from(self.pin_block & 0x0F);
        if usize::from(self.max_pin_len) > block {
            return Err(bad("maximum PIN length exceeds the block"));
        }
        let data = self.apdu.len() - 5;
        let (old, new) = (usize::from(self.offset_old), usize::from(self.offset_new));
        if new + block > data || (self.enters_current() && old + block > data) {
            return Err(bad("a PIN block runs past the APDU"));
        }
        if self.enters_current() && old < new + block && new < old + block {
            return Err(bad("the two PIN blocks overlap"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feature list laid out as pcsc-lite's CCID driver builds it for a PIN-pad reader
    /// (codes are `SCARD_CTL_CODE(0x330000 + tag)` = 0x4233_00tt): VERIFY/MODIFY direct, IFD
    /// PIN properties, MCT reader direct and universal, TLV properties. Built from the
    /// driver's encoding, not captured from a device.
    const OMNIKEY_3821_FEATURES: [u8; 36] = [
        0x06, 0x04, 0x42, 0x33, 0x00, 0x06, //
        0x07, 0x04, 0x42, 0x33, 0x00, 0x07, //
        0x0A, 0x04, 0x42, 0x33, 0x00, 0x0A, //
        0x08, 0x04, 0x42, 0x33, 0x00, 0x08, //
        0x09, 0x04, 0x42, 0x33, 0x00, 0x09, //
        0x12, 0x04, 0x42, 0x33, 0x00, 0x12, //
    ];

    /// TLV properties as the CCID driver encodes them for an Omnikey 3821: LCD layout 2x16,
    /// validation 02, timeout 00, min 1, max 31 (0x1F), max APDU data 0 (short APDUs only),
    /// vendor 076B, product 3821, bPPDUSupport 00.
    const OMNIKEY_3821_PROPERTIES: [u8; 33] = [
        0x01, 0x02, 0x10, 0x02, //
        0x02, 0x01, 0x02, //
        0x03, 0x01, 0x00, //
        0x06, 0x01, 0x01, //
        0x07, 0x01, 0x1F, //
        0x0A, 0x04, 0x00, 0x00, 0x00, 0x00, //
        0x0B, 0x02, 0x6B, 0x07, //
        0x0C, 0x02, 0x21, 0x38, //
        0x09, 0x01, 0x00,
    ];

    #[test]
    fn parses_the_feature_list_with_big_endian_control_codes() {
        let f = ReaderFeatures::parse(&OMNIKEY_3821_FEATURES).unwrap();
        assert_eq!(f.control_code(FEATURE_VERIFY_PIN_DIRECT), Some(0x4233_0006));
        assert_eq!(f.control_code(FEATURE_MODIFY_PIN_DIRECT), Some(0x4233_0007));
        assert_eq!(
            f.control_code(FEATURE_GET_TLV_PROPERTIES),
            Some(0x4233_0012)
        );
        assert_eq!(f.control_code(0x01), None);
    }

    #[test]
    fn empty_answer_means_no_features_and_no_pin_pad() {
        let f = ReaderFeatures::parse(&[]).unwrap();
        assert_eq!(f, ReaderFeatures::none());
        assert_eq!(f.pin_pad(), PinPad::Absent);
    }

    #[test]
    fn malformed_feature_lists_are_errors_not_panics() {
        assert_eq!(
            ReaderFeatures::parse(&[0x06, 0x04, 0x42]),
            Err(Part10Error::Truncated)
        );
        assert_eq!(ReaderFeatures::parse(&[0x06]), Err(Part10Error::Truncated));
        assert_eq!(
            ReaderFeatures::parse(&[0x06, 0x02, 0x42, 0x33]),
            Err(Part10Error::BadFeatureLength(2))
        );
    }

    #[test]
    fn parses_tlv_properties_little_endian() {
        let p = TlvProperties::parse(&OMNIKEY_3821_PROPERTIES).unwrap();
        assert_eq!(p.vendor_id, Some(0x076B));
        assert_eq!(p.product_id, Some(0x3821));
        assert_eq!(p.min_pin_size, Some(1));
        assert_eq!(p.max_pin_size, Some(31));
        assert_eq!(p.entry_validation, Some(2));
        assert_eq!(p.max_apdu_data_size, Some(0));
        // A property with a wrong length for its type is refused.
        assert_eq!(
            TlvProperties::parse(&[0x0B, 0x01, 0x6B]),
            Err(Part10Error::BadPropertyLength { tag: 0x0B, len: 1 })
        );
        // A trailing tag without its length is refused, not skipped.
        let mut trailing = OMNIKEY_3821_PROPERTIES.to_vec();
        trailing.push(0x0D);
        assert_eq!(TlvProperties::parse(&trailing), Err(Part10Error::Truncated));
    }

    fn features_of(vendor: u16, product: u16) -> ReaderFeatures {
        ReaderFeatures::parse(&OMNIKEY_3821_FEATURES)
            .unwrap()
            .with_properties(TlvProperties {
                vendor_id: Some(vendor),
                product_id: Some(product),
                ..TlvProperties::default()
            })
    }

    #[test]
    fn omnikey_3821_pin_pad_is_used() {
        let f = features_of(0x076B, 0x3821);
        assert_eq!(f.model().map(|m| m.name), Some("HID Omnikey 3821"));
        assert_eq!(
            f.pin_pad(),
            PinPad::Usable {
                verify: 0x4233_0006,
                modify: Some(0x4233_0007)
            }
        );
    }

    #[test]
    fn readers_advertising_a_pin_pad_they_lack_are_treated_as_without_one() {
        for (vendor, product) in [(0x076B, 0x3031), (0x076B, 0x6632), (0x076B, 0x3A21)] {
            let pad = features_of(vendor, product).pin_pad();
            assert!(
                matches!(pad, PinPad::Disabled { .. }),
                "{vendor:04X}:{product:04X} gave {pad:?}"
            );
            assert!(!pad.is_usable());
        }
    }

    #[test]
    fn an_unknown_model_advertising_a_pin_pad_is_trusted() {
        assert!(features_of(0x1234, 0x5678).pin_pad().is_usable());
    }

    #[test]
    fn piv_verify_structure_bytes() {
        let bytes = PinVerifyRequest::piv_verify(0x80).to_bytes();
        assert_eq!(
            bytes,
            [
                30, 15,   // timeouts
                0x82, // bytes, position 0, left, ASCII
                0x08, // no length field, 8-byte block
                0x00, // no PIN length in the APDU
                0x08, 0x04, // wPINMaxExtraDigit = 0x0408 (min 4, max 8), little-endian
                0x02, // validate on OK key
                0x01, // one message
                0x09, 0x04, // wLangId 0x0409
                0x00, // bMsgIndex
                0x00, 0x00, 0x00, // bTeoPrologue
                13, 0, 0, 0, // ulDataLength
                0x00, 0x20, 0x00, 0x80, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            ]
        );
    }

    #[test]
    fn reader_side_parse_round_trips_and_fills_the_pin() {
        let request = PinVerifyRequest::piv_verify(0x80);
        let parsed = PinVerifyRequest::parse(&request.to_bytes()).unwrap();
        assert_eq!(parsed, request);
        assert_eq!(
            parsed.apdu_with_pin(b"123456").unwrap(),
            [
                0x00, 0x20, 0x00, 0x80, 0x08, b'1', b'2', b'3', b'4', b'5', b'6', 0xFF, 0xFF
            ]
        );
        assert!(parsed.apdu_with_pin(b"123").is_err());
        assert!(parsed.apdu_with_pin(b"123456789").is_err());
    }

    #[test]
    fn malformed_verify_structures_are_refused() {
        let good = PinVerifyRequest::piv_verify(0x80).to_bytes();
        assert!(PinVerifyRequest::parse(&good[..10]).is_err());
        let mut wrong_len = good.clone();
        wrong_len[15] = 12;
        assert!(PinVerifyRequest::parse(&wrong_len).is_err());
        let mut bcd = good.clone();
        bcd[2] = 0x81;
        assert!(PinVerifyRequest::parse(&bcd).is_err());
        let mut min_above_max = good;
        min_above_max[6] = 9;
        assert!(PinVerifyRequest::parse(&min_above_max).is_err());
    }
    const OMNIKEY_PROMPTS: PadPrompts = PadPrompts {
        display: true,
        confirm_new: true,
    };

    #[test]
    fn omnikey_3821_prompts_are_three_messages_and_a_confirmed_new_passcode() {
        let f = features_of(0x076B, 0x3821);
        assert_eq!(f.pad_prompts(), OMNIKEY_PROMPTS);
        assert!(f.short_apdus_only());
        assert!(f.pin_pad().can_modify());
        // An unknown pad: no display unless its properties say so, the new PIN confirmed.
        let unknown = features_of(0x1234, 0x5678);
        assert_eq!(
            unknown.pad_prompts(),
            PadPrompts {
                display: false,
                confirm_new: true
            }
        );
        let with_lcd = ReaderFeatures::parse(&OMNIKEY_3821_FEATURES)
            .unwrap()
            .with_properties(TlvProperties::parse(&[0x01, 0x02, 0x10, 0x02]).unwrap());
        assert!(with_lcd.pad_prompts().display);
        // A pad without FEATURE_MODIFY_PIN_DIRECT verifies but cannot change.
        let verify_only = ReaderFeatures::parse(&OMNIKEY_3821_FEATURES[..6]).unwrap();
        assert!(verify_only.pin_pad().is_usable());
        assert!(!verify_only.pin_pad().can_modify());
    }

    #[test]
    fn piv_change_structure_bytes_for_the_omnikey_3821() {
        let bytes = PinModifyRequest::piv(PivModify::ChangePasscode, OMNIKEY_PROMPTS).to_bytes();
        assert_eq!(
            bytes,
            [
                30, 15,   // timeouts
                0x82, // bytes, position 0, left, ASCII
                0x08, // no length field, 8-byte blocks
                0x00, // no PIN length in the APDU
                0x00, // bInsertionOffsetOld: the current passcode in the first block
                0x08, // bInsertionOffsetNew: the new one in the second
                0x08, 0x04, // wPINMaxExtraDigit = 0x0408 (min 4, max 8), little-endian
                0x03, // bConfirmPIN: current keyed, new keyed twice
                0x02, // validate on OK key
                0x03, // three messages on the display
                0x09, 0x04, // wLangId 0x0409
                0x00, 0x01, 0x02, // bMsgIndex1..3: enter current, enter new, confirm new
                0x00, 0x00, 0x00, // bTeoPrologue
                21, 0, 0, 0, // ulDataLength
                0x00, 0x24, 0x00, 0x80, 0x10, // CHANGE REFERENCE DATA, passcode, Lc 16
                0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // current
                0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // new
            ]
        );
    }

    #[test]
    fn piv_reset_retry_counter_structure_bytes_without_a_display() {
        let prompts = PadPrompts {
            display: false,
            confirm_new: false,
        };
        let bytes = PinModifyRequest::piv(PivModify::ResetRetryCounter, prompts).to_bytes();
        assert_eq!(bytes.len(), 24 + 21);
        assert_eq!(
            &bytes[..24],
            &[
                30, 15, 0x82, 0x08, 0x00, 0x00, 0x08, 0x08, 0x04, //
                0x02, // bConfirmPIN: the unlock code keyed, the new passcode once
                0x02, 0x00, // validate on OK, no messages
                0x09, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 21, 0, 0, 0,
            ]
        );
        assert_eq!(&bytes[24..29], &[0x00, 0x2C, 0x00, 0x80, 0x10]);
        assert!(bytes[29..].iter().all(|b| *b == 0xFF));
    }

    #[test]
    fn reader_side_modify_parse_round_trips_and_fills_both_blocks() {
        let request = PinModifyRequest::piv(PivModify::ChangePasscode, OMNIKEY_PROMPTS);
        let parsed = PinModifyRequest::parse(&request.to_bytes()).unwrap();
        assert_eq!(parsed, request);
        assert!(parsed.enters_current() && parsed.confirms_new());
        let apdu = parsed.apdu_with_pins(Some(b"1234"), b"87654321").unwrap();
        assert_eq!(
            apdu,
            [
                0x00, 0x24, 0x00, 0x80, 0x10, b'1', b'2', b'3', b'4', 0xFF, 0xFF, 0xFF, 0xFF, b'8',
                b'7', b'6', b'5', b'4', b'3', b'2', b'1'
            ]
        );
        assert!(parsed.apdu_with_pins(Some(b"123"), b"87654321").is_err());
        assert!(parsed.apdu_with_pins(Some(b"1234"), b"123456789").is_err());
        assert!(parsed.apdu_with_pins(None, b"87654321").is_err());
    }

    #[test]
    fn malformed_modify_structures_are_refused() {
        let good = PinModifyRequest::piv(PivModify::ChangePasscode, OMNIKEY_PROMPTS).to_bytes();
        assert!(PinModifyRequest::parse(&good[..20]).is_err());
        let mut wrong_len = good.clone();
        wrong_len[20] = 20;
        assert!(PinModifyRequest::parse(&wrong_len).is_err());
        let mut overlap = good.clone();
        overlap[6] = 4;
        assert!(PinModifyRequest::parse(&overlap).is_err());
        let mut past_end = good.clone();
        past_end[6] = 9;
        assert!(PinModifyRequest::parse(&past_end).is_err());
        let mut messages = good.clone();
        messages[11] = 4;
        assert!(PinModifyRequest::parse(&messages).is_err());
        let mut positioned = good;
        positioned[2] = 0x82 | (1 << 3);
        assert!(PinModifyRequest::parse(&positioned).is_err());
    }
}
