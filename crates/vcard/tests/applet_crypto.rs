//! The applet's cryptography checked from outside: ECDSA signatures verify under the slot's
//! public key, the raw RSA operation inverts under the public exponent, generated keys sign,
//! and the management key authenticates (AES-128 and 3DES, mutual and external, right and
//! wrong).
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod applet_support;

use aes::Aes128;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use applet_support::{
    AES_MANAGEMENT_KEY, TDES_MANAGEMENT_KEY, hex, powered_applet, rsa_slot_key, send, send_bytes,
    test_card, verify,
};
use cardgate_apdu::tlv::{Tag, Tlv};
use cardgate_vcard::Card;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::{ManagementKeyAlgorithm, PinPolicy, Slot};
use des::TdesEde3;
use ecdsa::signature::hazmat::PrehashVerifier;
use rsa::BigUint;
use rsa::traits::PublicKeyParts;
use sha2::Digest;

/// The value of the single child `tag` inside a `7C` answer.
fn dynamic_authentication_value(data: &[u8], tag: u32) -> Vec<u8> {
    let (outer, rest) = Tlv::parse_one(data).unwrap();
    assert!(rest.is_empty());
    assert_eq!(outer.tag, Tag(0x7C));
    let children = outer.children().unwrap();
    assert_eq!(children.len(), 1, "{data:02X?}");
    assert_eq!(children[0].tag, Tag(tag));
    children[0].value.to_vec()
}

/// GENERAL AUTHENTICATE `7C { 82 00, 81 <input> }` as an APDU (extended when long, so the
/// RSA block fits one command).
fn sign_apdu(algorithm: u8, slot: u8, input: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x82, 0x00];
    inner.extend(cardgate_apdu::tlv::encode(Tag(0x81), input));
    let template = cardgate_apdu::tlv::encode(Tag(0x7C), &inner);
    cardgate_apdu::CommandApdu::new(0x00, 0x87, algorithm, slot)
        .with_data(template)
        .with_le(256)
        .to_bytes()
        .unwrap()
}

fn verify_ecdsa(public: &p256::PublicKey, digest: &[u8; 32], der: &[u8]) {
    let signature = p256::ecdsa::Signature::from_der(der).unwrap();
    p256::ecdsa::VerifyingKey::from(public)
        .verify_prehash(digest, &signature)
        .unwrap();
}

#[test]
fn ecdsa_signature_verifies_under_the_slot_public_key() {
    let (mut card, keys) = powered_applet();
    assert_eq!(verify(&mut card, applet_support::PIN), 0x9000);
    let digest: [u8; 32] = sha2::Sha256::digest(b"prescription 1234").into();
    let (data, sw) = send_bytes(&mut card, &sign_apdu(0x11, 0x9A, &digest));
    assert_eq!(sw, 0x9000);
    let der = dynamic_authentication_value(&data, 0x82);
    verify_ecdsa(&keys.authentication.public_key(), &digest, &der);
    // Not under another slot's key.
    let signature = p256::ecdsa::Signature::from_der(&der).unwrap();
    assert!(
        p256::ecdsa::VerifyingKey::from(keys.card_authentication.public_key())
            .verify_prehash(&digest, &signature)
            .is_err()
    );
}

#[test]
fn raw_rsa_operation_inverts_under_the_public_key_and_arrives_through_a_chain() {
    let (mut card_file, _) = test_card();
    let (rsa_key, secret) = rsa_slot_key(PinPolicy::Once);
    card_file.slots.insert(Slot::KeyManagement, rsa_key);
    let mut card = PivApplet::new(card_file);
    card.power_on();
    assert_eq!(verify(&mut card, applet_support::PIN), 0x9000);

    // A PKCS#1 v1.5 type 1 block as a host builds it: 00 01 FF.. 00 <payload>.
    let mut block = vec![0xFFu8; 256];
    block[0] = 0x00;
    block[1] = 0x01;
    block[200] = 0x00;
    for (i, b) in block[201..].iter_mut().enumerate() {
        *b = i as u8;
    }
    // The 7C template is 264 bytes: send it as a short-APDU chain, as OpenSC does.
    let mut inner = vec![0x82, 0x00];
    inner.extend(cardgate_apdu::tlv::encode(Tag(0x81), &block));
    let template = cardgate_apdu::tlv::encode(Tag(0x7C), &inner);
    let (first, second) = template.split_at(200);
    let mut link = vec![0x10, 0x87, 0x07, 0x9D, first.len() as u8];
    link.extend_from_slice(first);
    assert_eq!(send_bytes(&mut card, &link), (vec![], 0x9000));
    let mut last = vec![0x00, 0x87, 0x07, 0x9D, second.len() as u8];
    last.extend_from_slice(second);
    last.push(0x00);
    let (mut data, mut sw) = send_bytes(&mut card, &last);
    // 7C 82 0104 82 82 0100 <256> is 264 bytes: the rest comes through GET RESPONSE.
    assert_eq!(sw, 0x6108);
    let (rest, final_sw) = send(&mut card, "00C00000 08");
    data.extend(rest);
    sw = final_sw;
    assert_eq!(sw, 0x9000);
    let output = dynamic_authentication_value(&data, 0x82);
    assert_eq!(output.len(), 256);
    let back = BigUint::from_bytes_be(&output).modpow(secret.e(), secret.n());
    assert_eq!(back, BigUint::from_bytes_be(&block));

    // Wrong input lengths are refused.
    let (_, sw) = send_bytes(&mut card, &sign_apdu(0x07, 0x9D, &block[..255]));
    assert_eq!(sw, 0x6A80);
    // An input not below the modulus is not an RSA block.
    let (_, sw) = send_bytes(&mut card, &sign_apdu(0x07, 0x9D, &[0xFF; 256]));
    assert_eq!(sw, 0x6A80);
}

/// Encrypts or decrypts one block with a management key, as the host does.
fn host_cipher(
    algorithm: ManagementKeyAlgorithm,
    key: &[u8],
    block: &[u8],
    encrypt: bool,
) -> Vec<u8> {
    let mut out = block.to_vec();
    match algorithm {
        ManagementKeyAlgorithm::Aes128 => {
            let c = Aes128::new_from_slice(key).unwrap();
            let b = GenericArray::from_mut_slice(&mut out);
            if encrypt {
                c.encrypt_block(b)
            } else {
                c.decrypt_block(b)
            }
        }
        ManagementKeyAlgorithm::Tdes => {
            let c = TdesEde3::new_from_slice(key).unwrap();
            let b = GenericArray::from_mut_slice(&mut out);
            if encrypt {
                c.encrypt_block(b)
            } else {
                c.decrypt_block(b)
            }
        }
    }
    out
}

fn card_with_management_key(algorithm: ManagementKeyAlgorithm) -> (PivApplet, Vec<u8>, u8) {
    let (mut card_file, _) = test_card();
    let (key, id) = match algorithm {
        ManagementKeyAlgorithm::Aes128 => (AES_MANAGEMENT_KEY.to_vec(), 0x08),
        _ => (TDES_MANAGEMENT_KEY.to_vec(), 0x03),
    };
    card_file.management_key.algorithm = algorithm;
    card_file.management_key.key = zeroize::Zeroizing::new(key.clone());
    let mut card = PivApplet::new(card_file);
    card.power_on();
    (card, key, id)
}

/// Runs mutual authentication; `tamper` corrupts the decrypted witness.
fn mutual_authentication(
    card: &mut PivApplet,
    algorithm: ManagementKeyAlgorithm,
    key: &[u8],
    id: u8,
    tamper: bool,
) -> u16 {
    let (data, sw) = send(card, &format!("0087{id:02X}9B 04 7C028000 00"));
    assert_eq!(sw, 0x9000);
    let encrypted_witness = dynamic_authentication_value(&data, 0x80);
    let mut witness = host_cipher(algorithm, key, &encrypted_witness, false);
    if tamper {
        witness[0] ^= 1;
    }
    let challenge: Vec<u8> = (0..witness.len() as u8).collect();
    let mut inner = cardgate_apdu::tlv::encode(Tag(0x80), &witness);
    inner.extend(cardgate_apdu::tlv::encode(Tag(0x81), &challenge));
    let command = cardgate_apdu::CommandApdu::new(0x00, 0x87, id, 0x9B)
        .with_data(cardgate_apdu::tlv::encode(Tag(0x7C), &inner))
        .with_le(256);
    let (data, sw) = send_bytes(card, &command.to_bytes().unwrap());
    if sw == 0x9000 {
        let answer = dynamic_authentication_value(&data, 0x82);
        assert_eq!(answer, host_cipher(algorithm, key, &challenge, true));
    }
    sw
}

/// PUT DATA of Printed Information: 9000 only with the management key proven.
fn put_printed_information(card: &mut PivApplet) -> u16 {
    send(card, "00DB3FFF 09 5C035FC109 5302AABB").1
}

#[test]
fn management_key_mutual_authentication_with_aes_and_3des() {
    for algorithm in [ManagementKeyAlgorithm::Aes128, ManagementKeyAlgorithm::Tdes] {
        let (mut card, key, id) = card_with_management_key(algorithm);
        assert_eq!(put_printed_information(&mut card), 0x6982, "{algorithm:?}");
        // A wrong witness: 6982, and the card is still not authenticated.
        assert_eq!(
            mutual_authentication(&mut card, algorithm, &key, id, true),
            0x6982
        );
        assert_eq!(put_printed_information(&mut card), 0x6982, "{algorithm:?}");
        // Right: PUT DATA works, and the object reads back.
        assert_eq!(
            mutual_authentication(&mut card, algorithm, &key, id, false),
            0x9000
        );
        assert_eq!(put_printed_information(&mut card), 0x9000, "{algorithm:?}");
        assert_eq!(verify(&mut card, applet_support::PIN), 0x9000);
        assert_eq!(
            send(&mut card, "00CB3FFF 05 5C035FC109 00"),
            (hex("5302AABB"), 0x9000)
        );
        // A failed attempt afterwards drops the authentication.
        assert_eq!(
            mutual_authentication(&mut card, algorithm, &key, id, true),
            0x6982
        );
        assert_eq!(put_printed_information(&mut card), 0x6982, "{algorithm:?}");
        // So does power-off.
        assert_eq!(
            mutual_authentication(&mut card, algorithm, &key, id, false),
            0x9000
        );
        card.power_off();
        card.power_on();
        assert_eq!(put_printed_information(&mut card), 0x6982, "{algorithm:?}");
    }
}

#[test]
fn management_key_external_authentication_right_and_wrong() {
    for algorithm in [ManagementKeyAlgorithm::Aes128, ManagementKeyAlgorithm::Tdes] {
        let (mut card, key, id) = card_with_management_key(algorithm);
        for right in [false, true] {
            let (data, sw) = send(&mut card, &format!("0087{id:02X}9B 04 7C028100 00"));
            assert_eq!(sw, 0x9000);
            let challenge = dynamic_authentication_value(&data, 0x81);
            let mut response = host_cipher(algorithm, &key, &challenge, true);
            if !right {
                response[3] ^= 0x80;
            }
            let command = cardgate_apdu::CommandApdu::new(0x00, 0x87, id, 0x9B).with_data(
                cardgate_apdu::tlv::encode(
                    Tag(0x7C),
                    &cardgate_apdu::tlv::encode(Tag(0x82), &response),
                ),
            );
            let (_, sw) = send_bytes(&mut card, &command.to_bytes().unwrap());
            assert_eq!(sw, if right { 0x9000 } else { 0x6982 }, "{algorithm:?}");
            assert_eq!(
                put_printed_information(&mut card),
                if right { 0x9000 } else { 0x6982 }
            );
            // The challenge is single-use: replaying the response finds nothing pending.
            let (_, sw) = send_bytes(&mut card, &command.to_bytes().unwrap());
            assert_eq!(sw, 0x6985);
        }
    }
}

/// OpenSC's `C_GenerateRandom` asks the 9B key for a challenge with P1 `00`, the deprecated
/// SP 800-78-4 identifier of 3DES: a 3DES card answers an 8-byte challenge that completes
/// external authentication as usual; an AES card refuses `00` (6A80), as real AES cards do.
#[test]
fn legacy_3des_algorithm_id_00_is_accepted_only_for_a_3des_management_key() {
    let (mut card, key, _) = card_with_management_key(ManagementKeyAlgorithm::Tdes);
    let (data, sw) = send(&mut card, "0087009B 04 7C028100 00");
    assert_eq!(sw, 0x9000);
    let challenge = dynamic_authentication_value(&data, 0x81);
    assert_eq!(challenge.len(), 8);
    let response = host_cipher(ManagementKeyAlgorithm::Tdes, &key, &challenge, true);
    let command = cardgate_apdu::CommandApdu::new(0x00, 0x87, 0x00, 0x9B).with_data(
        cardgate_apdu::tlv::encode(Tag(0x7C), &cardgate_apdu::tlv::encode(Tag(0x82), &response)),
    );
    assert_eq!(
        send_bytes(&mut card, &command.to_bytes().unwrap()).1,
        0x9000
    );
    assert_eq!(put_printed_information(&mut card), 0x9000);

    let (mut card, _, _) = card_with_management_key(ManagementKeyAlgorithm::Aes128);
    assert_eq!(send(&mut card, "0087009B 04 7C028100 00").1, 0x6A80);
}

#[test]
fn another_command_between_the_steps_cancels_the_authentication() {
    let algorithm = ManagementKeyAlgorithm::Aes128;
    let (mut card, key, id) = card_with_management_key(algorithm);
    let (data, _) = send(&mut card, "0087089B 04 7C028000 00");
    let witness = host_cipher(
        algorithm,
        &key,
        &dynamic_authentication_value(&data, 0x80),
        false,
    );
    send(&mut card, "00CB3FFF 03 5C017E 00");
    let mut inner = cardgate_apdu::tlv::encode(Tag(0x80), &witness);
    inner.extend(cardgate_apdu::tlv::encode(Tag(0x81), &[7u8; 16]));
    let command = cardgate_apdu::CommandApdu::new(0x00, 0x87, id, 0x9B)
        .with_data(cardgate_apdu::tlv::encode(Tag(0x7C), &inner));
    assert_eq!(
        send_bytes(&mut card, &command.to_bytes().unwrap()).1,
        0x6985
    );
}

fn authenticate(card: &mut PivApplet) {
    let key = AES_MANAGEMENT_KEY;
    assert_eq!(
        mutual_authentication(card, ManagementKeyAlgorithm::Aes128, &key, 0x08, false),
        0x9000
    );
}

#[test]
fn generated_ec_key_signs_verifiably_and_keeps_the_slot_pin_policy() {
    let (mut card, _) = powered_applet();
    authenticate(&mut card);
    let (data, sw) = send(&mut card, "0047009C 05 AC03800111 00");
    assert_eq!(sw, 0x9000);
    let (template, _) = Tlv::parse_one(&data).unwrap();
    assert_eq!(template.tag, Tag(0x7F49));
    let children = template.children().unwrap();
    assert_eq!(children[0].tag, Tag(0x86));
    let public = p256::PublicKey::from_sec1_bytes(children[0].value).unwrap();
    assert_eq!(
        card.card_file().slots[&Slot::Signature].pin_policy,
        PinPolicy::Always
    );

    let digest = [0x42u8; 32];
    assert_eq!(verify(&mut card, applet_support::PIN), 0x9000);
    let (data, sw) = send_bytes(&mut card, &sign_apdu(0x11, 0x9C, &digest));
    assert_eq!(sw, 0x9000);
    verify_ecdsa(&public, &digest, &dynamic_authentication_value(&data, 0x82));
    // PIN always still holds for the new key.
    assert_eq!(
        send_bytes(&mut card, &sign_apdu(0x11, 0x9C, &digest)).1,
        0x6982
    );
}

#[test]
fn generated_rsa_key_answers_modulus_and_exponent_and_its_operation_inverts() {
    let (mut card, _) = powered_applet();
    authenticate(&mut card);
    // Into the empty 9D slot, with a Yubico PIN policy "never".
    let (mut data, sw) = send(&mut card, "0047009D 08 AC06 800107 AA0101 00");
    assert_eq!(
        sw >> 8,
        0x61,
        "the public key template is longer than 256 bytes"
    );
    let (rest, sw) = send(&mut card, &format!("00C00000 {:02X}", sw & 0xFF));
    assert_eq!(sw, 0x9000);
    data.extend(rest);
    let (template, _) = Tlv::parse_one(&data).unwrap();
    assert_eq!(template.tag, Tag(0x7F49));
    let children = template.children().unwrap();
    assert_eq!(children[0].tag, Tag(0x81));
    assert_eq!(children[1].tag, Tag(0x82));
    let n = BigUint::from_bytes_be(children[0].value);
    let e = BigUint::from_bytes_be(children[1].value);
    assert_eq!(children[0].value.len(), 256);
    assert_eq!(children[1].value, &[0x01, 0x00, 0x01]);
    assert_eq!(
        card.card_file().slots[&Slot::KeyManagement].pin_policy,
        PinPolicy::Never
    );

    let mut block = vec![0x00, 0x02];
    block.extend([0x5Au8; 254]);
    let (data, sw) = send_bytes(&mut card, &sign_apdu(0x07, 0x9D, &block));
    let mut data = data;
    if sw >> 8 == 0x61 {
        let (rest, last) = send(&mut card, &format!("00C00000 {:02X}", sw & 0xFF));
        assert_eq!(last, 0x9000);
        data.extend(rest);
    } else {
        assert_eq!(sw, 0x9000);
    }
    let output = dynamic_authentication_value(&data, 0x82);
    assert_eq!(
        BigUint::from_bytes_be(&output).modpow(&e, &n),
        BigUint::from_bytes_be(&block)
    );
}

#[test]
fn key_generation_refuses_unknown_algorithms_and_slots() {
    let (mut card, _) = powered_applet();
    authenticate(&mut card);
    assert_eq!(send(&mut card, "0047009A 05 AC03800114 00").1, 0x6A80);
    assert_eq!(send(&mut card, "0047009B 05 AC03800111 00").1, 0x6A86);
    assert_eq!(send(&mut card, "0047019A 05 AC03800111 00").1, 0x6A86);
}

#[test]
fn ecdh_with_the_key_management_slot() {
    let (mut card_file, _) = test_card();
    let (key, secret) = applet_support::ec_slot_key(PinPolicy::Once);
    card_file.slots.insert(Slot::KeyManagement, key);
    let mut card = PivApplet::new(card_file);
    card.power_on();
    assert_eq!(verify(&mut card, applet_support::PIN), 0x9000);
    let peer = p256::SecretKey::random(&mut rand::rngs::OsRng);
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let point = peer.public_key().to_encoded_point(false);
    let mut inner = vec![0x82, 0x00];
    inner.extend(cardgate_apdu::tlv::encode(Tag(0x85), point.as_bytes()));
    let command = cardgate_apdu::CommandApdu::new(0x00, 0x87, 0x11, 0x9D)
        .with_data(cardgate_apdu::tlv::encode(Tag(0x7C), &inner))
        .with_le(256);
    let (data, sw) = send_bytes(&mut card, &command.to_bytes().unwrap());
    assert_eq!(sw, 0x9000);
    let shared = dynamic_authentication_value(&data, 0x82);
    use p256::elliptic_curve::point::AffineCoordinates;
    let expected = (secret.public_key().to_projective() * *peer.to_nonzero_scalar()).to_affine();
    assert_eq!(shared, expected.x().to_vec());
}
