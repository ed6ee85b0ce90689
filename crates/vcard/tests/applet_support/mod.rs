//! Test cards for the applet tests, built directly (no CA, no provisioning): fresh keys in
//! the slots, a short CHUID and a long certificate object that needs GET RESPONSE.
#![allow(dead_code)] // Each test binary uses its own part of the helpers.
#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is the failure report.

use std::collections::BTreeMap;

use cardgate_vcard::Card;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::{
    CARD_FILE_FORMAT, CardFile, CardKind, CardProfile, HexBytes, KeyAlgorithm, ManagementKey,
    ManagementKeyAlgorithm, ObjectTag, PinPolicy, ReferenceData, Slot, SlotKey,
};
use p256::pkcs8::EncodePrivateKey;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

/// The test card's passcode.
pub const PIN: &str = "7391";
/// The test card's unlock code.
pub const PUK: &str = "80264513";
/// The test card's AES-128 management key.
pub const AES_MANAGEMENT_KEY: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
];
/// Yubico's default 3DES management key.
pub const TDES_MANAGEMENT_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];
/// The test card's ATR.
pub const ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];
/// The CHUID content: `30 <FASC-N placeholder 4 bytes> 34 <GUID 16 bytes> FE 00`.
pub const CHUID: &str = "3004D4E73910 3410000102030405060708090A0B0C0D0E0F FE00";

/// The certificate object of slot 9A: `70 82 03E8 <1000 bytes 00 01 02 …> 71 01 00 FE 00`,
/// 1009 bytes, so the GET DATA answer (1013 bytes) needs three GET RESPONSEs.
pub fn long_certificate_object() -> Vec<u8> {
    let mut object = vec![0x70, 0x82, 0x03, 0xE8];
    object.extend((0..1000u32).map(|i| (i % 256) as u8));
    object.extend([0x71, 0x01, 0x00, 0xFE, 0x00]);
    object
}

/// Bytes from hex with spaces.
pub fn hex(text: &str) -> Vec<u8> {
    hex::decode(text.replace(' ', "")).unwrap()
}

/// A slot key holding a fresh P-256 key; returns the secret for verifying.
pub fn ec_slot_key(policy: PinPolicy) -> (SlotKey, p256::SecretKey) {
    let secret = p256::SecretKey::random(&mut OsRng);
    let key = SlotKey {
        algorithm: KeyAlgorithm::EccP256,
        private_key_pkcs8: Zeroizing::new(secret.to_pkcs8_der().unwrap().as_bytes().to_vec()),
        pin_policy: policy,
    };
    (key, secret)
}

/// A slot key holding a fresh RSA-2048 key; returns the key for verifying.
pub fn rsa_slot_key(policy: PinPolicy) -> (SlotKey, rsa::RsaPrivateKey) {
    let secret = rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let key = SlotKey {
        algorithm: KeyAlgorithm::Rsa2048,
        private_key_pkcs8: Zeroizing::new(secret.to_pkcs8_der().unwrap().as_bytes().to_vec()),
        pin_policy: policy,
    };
    (key, secret)
}

/// The keys a test card holds, to check what it signs.
pub struct TestKeys {
    /// 9A, PIN once.
    pub authentication: p256::SecretKey,
    /// 9C, PIN always.
    pub signature: p256::SecretKey,
    /// 9E, no PIN.
    pub card_authentication: p256::SecretKey,
}

/// The standard test card: PIN 7391 and PUK 80264513 with 3 tries each, an AES-128
/// management key, P-256 keys in 9A (once), 9C (always) and 9E (never), 9D empty, a CHUID,
/// a long 9A certificate and Printed Information.
pub fn test_card() -> (CardFile, TestKeys) {
    let (authentication_key, authentication) = ec_slot_key(PinPolicy::Once);
    let (signature_key, signature) = ec_slot_key(PinPolicy::Always);
    let (card_authentication_key, card_authentication) = ec_slot_key(PinPolicy::Never);
    let card = CardFile {
        format: CARD_FILE_FORMAT,
        profile: CardProfile {
            holder_name: "Asha Patel".into(),
            holder_uuid: "555000111222".into(),
            card_serial: "0412345678".into(),
            kind: CardKind::Permanent,
            notes: vec![],
        },
        atr: ATR.to_vec(),
        pin: ReferenceData {
            value: Zeroizing::new(PIN.into()),
            max_tries: 3,
            tries_left: 3,
        },
        puk: ReferenceData {
            value: Zeroizing::new(PUK.into()),
            max_tries: 3,
            tries_left: 3,
        },
        management_key: ManagementKey {
            algorithm: ManagementKeyAlgorithm::Aes128,
            key: Zeroizing::new(AES_MANAGEMENT_KEY.to_vec()),
        },
        slots: BTreeMap::from([
            (Slot::Authentication, authentication_key),
            (Slot::Signature, signature_key),
            (Slot::CardAuthentication, card_authentication_key),
        ]),
        objects: BTreeMap::from([
            (ObjectTag::CHUID, HexBytes(hex(CHUID))),
            (
                ObjectTag::CERT_AUTHENTICATION,
                HexBytes(long_certificate_object()),
            ),
            (
                ObjectTag::PRINTED_INFORMATION,
                HexBytes(hex("0105 4153484120")),
            ),
        ]),
        quirks: Default::default(),
    };
    (
        card,
        TestKeys {
            authentication,
            signature,
            card_authentication,
        },
    )
}

/// A powered-on applet over the standard test card, in memory.
pub fn powered_applet() -> (PivApplet, TestKeys) {
    let (card, keys) = test_card();
    let mut applet = PivApplet::new(card);
    applet.power_on();
    (applet, keys)
}

/// Sends hex, returns `(data, sw)`.
pub fn send(card: &mut impl Card, apdu: &str) -> (Vec<u8>, u16) {
    send_bytes(card, &hex(apdu))
}

/// Sends bytes, returns `(data, sw)`.
pub fn send_bytes(card: &mut impl Card, apdu: &[u8]) -> (Vec<u8>, u16) {
    let mut response = card.transmit(apdu);
    assert!(response.len() >= 2, "response shorter than a status word");
    let sw = response.split_off(response.len() - 2);
    (response, u16::from_be_bytes([sw[0], sw[1]]))
}

/// A passcode padded with FF to eight bytes, as hex.
pub fn padded(passcode: &str) -> String {
    let mut block = passcode.as_bytes().to_vec();
    block.resize(8, 0xFF);
    hex::encode(block)
}

/// VERIFY with the passcode; returns the status word.
pub fn verify(card: &mut impl Card, passcode: &str) -> u16 {
    send(card, &format!("00200080 08 {}", padded(passcode))).1
}
