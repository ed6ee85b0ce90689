//! What the card keeps between insertions: counters, passcodes, objects and keys are in the
//! card file before the answer that reflects them leaves the card, and survive opening the
//! file again (removal and reinsertion).
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod applet_support;

use applet_support::{AES_MANAGEMENT_KEY, PIN, PUK, padded, send, test_card, verify};
use cardgate_apdu::tlv::{Tag, Tlv};
use cardgate_vcard::Card;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::{CardFile, ObjectTag, Slot};

fn stored_card(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("card.json");
    test_card().0.save(&path).unwrap();
    path
}

fn insert(path: &std::path::Path) -> PivApplet {
    let mut card = PivApplet::open(path).unwrap();
    card.power_on();
    card
}

/// AES-128 mutual authentication with the test card's management key.
fn authenticate(card: &mut PivApplet) {
    use aes::cipher::generic_array::GenericArray;
    use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
    let cipher = aes::Aes128::new_from_slice(&AES_MANAGEMENT_KEY).unwrap();
    let (data, sw) = send(card, "0087089B 04 7C028000 00");
    assert_eq!(sw, 0x9000);
    let mut witness = data[4..20].to_vec();
    cipher.decrypt_block(GenericArray::from_mut_slice(&mut witness));
    let challenge = [0x33u8; 16];
    let (data, sw) = send(
        card,
        &format!(
            "0087089B 26 7C24 8010 {} 8110 {} 00",
            hex::encode(&witness),
            hex::encode(challenge)
        ),
    );
    assert_eq!(sw, 0x9000);
    let mut expected = challenge;
    cipher.encrypt_block(GenericArray::from_mut_slice(&mut expected));
    assert_eq!(&data[4..], &expected);
}

#[test]
fn blocked_passcode_survives_removal_and_reinsertion() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_card(&dir);
    let mut card = insert(&path);
    assert_eq!(verify(&mut card, "0000"), 0x63C2);
    assert_eq!(verify(&mut card, "0000"), 0x63C1);
    assert_eq!(verify(&mut card, "0000"), 0x63C0);
    drop(card);

    let mut card = insert(&path);
    assert_eq!(verify(&mut card, PIN), 0x6983);
    assert_eq!(send(&mut card, "00200080").1, 0x6983);
    assert_eq!(CardFile::load(&path).unwrap().pin.tries_left, 0);

    // The unlock code resets it, and that too is on disk.
    let command = format!("002C0080 10 {} {}", padded(PUK), padded("2468"));
    assert_eq!(send(&mut card, &command).1, 0x9000);
    drop(card);
    let mut card = insert(&path);
    assert_eq!(send(&mut card, "00200080").1, 0x63C3);
    assert_eq!(verify(&mut card, "2468"), 0x9000);
}

#[test]
fn a_wrong_try_is_on_disk_before_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_card(&dir);
    let mut card = insert(&path);
    assert_eq!(verify(&mut card, "0000"), 0x63C2);
    // The applet is still alive: what is on disk was written before the answer.
    assert_eq!(CardFile::load(&path).unwrap().pin.tries_left, 2);
    assert_eq!(verify(&mut card, PIN), 0x9000);
    assert_eq!(CardFile::load(&path).unwrap().pin.tries_left, 3);
    // A failed unlock-code change counts on the unlock code.
    let command = format!("00240081 10 {} {}", padded("11111111"), padded("22222222"));
    assert_eq!(send(&mut card, &command).1, 0x63C2);
    assert_eq!(CardFile::load(&path).unwrap().puk.tries_left, 2);
}

#[test]
fn verified_state_is_not_carried_across_reinsertion() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_card(&dir);
    let mut card = insert(&path);
    assert_eq!(verify(&mut card, PIN), 0x9000);
    assert_eq!(send(&mut card, "00200080").1, 0x9000);
    drop(card);
    let mut card = insert(&path);
    assert_eq!(send(&mut card, "00200080").1, 0x63C3);
}

#[test]
fn objects_and_generated_keys_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_card(&dir);
    let mut card = insert(&path);
    authenticate(&mut card);
    assert_eq!(send(&mut card, "00DB3FFF 09 5C035FC107 5302F000").1, 0x9000);
    // Empty content deletes.
    assert_eq!(send(&mut card, "00DB3FFF 07 5C035FC102 5300").1, 0x9000);
    let (data, sw) = send(&mut card, "0047009E 05 AC03800111 00");
    assert_eq!(sw, 0x9000);
    let (template, _) = Tlv::parse_one(&data).unwrap();
    let point = template.children().unwrap()[0].value.to_vec();
    drop(card);

    let stored = CardFile::load(&path).unwrap();
    assert_eq!(stored.objects[&ObjectTag::CCC].0, vec![0xF0, 0x00]);
    assert!(!stored.objects.contains_key(&ObjectTag::CHUID));
    let mut card = insert(&path);
    assert_eq!(
        send(&mut card, "00CB3FFF 05 5C035FC107 00"),
        (vec![0x53, 0x02, 0xF0, 0x00], 0x9000)
    );
    assert_eq!(send(&mut card, "00CB3FFF 05 5C035FC102 00").1, 0x6A82);
    // 9E (PIN never) signs with the generated key after reinsertion.
    let digest = [9u8; 32];
    let (data, sw) = send(
        &mut card,
        &format!("0087119E 26 7C24 8200 8120 {} 00", hex::encode(digest)),
    );
    assert_eq!(sw, 0x9000);
    let (outer, _) = Tlv::parse_one(&data).unwrap();
    let inner = outer.children().unwrap();
    assert_eq!(inner[0].tag, Tag(0x82));
    let signature = p256::ecdsa::Signature::from_der(inner[0].value).unwrap();
    use ecdsa::signature::hazmat::PrehashVerifier;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
        .unwrap()
        .verify_prehash(&digest, &signature)
        .unwrap();
    assert_eq!(
        card.card_file().slots[&Slot::CardAuthentication].pin_policy,
        cardgate_vcard::card_file::PinPolicy::Never
    );
}

#[test]
fn a_card_that_cannot_save_answers_memory_failure_and_still_counts_the_try() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_card(&dir);
    let mut card = insert(&path);
    // The card file's folder disappears: the temporary file cannot be written.
    drop(dir);
    assert_eq!(verify(&mut card, "0000"), 0x6581);
    assert_eq!(card.card_file().pin.tries_left, 2);
    assert_eq!(send(&mut card, "00200080").1, 0x63C2);
    // Reading needs no save and still works.
    assert_eq!(send(&mut card, "00CB3FFF 03 5C017E 00").1, 0x9000);
}

#[test]
fn an_in_memory_card_changes_but_writes_nothing() {
    let (card_file, _) = test_card();
    let mut card = PivApplet::new(card_file.clone());
    card.power_on();
    assert_eq!(verify(&mut card, "0000"), 0x63C2);
    assert_eq!(card.card_file().pin.tries_left, 2);
    assert_eq!(card.atr(), card_file.atr);
}
