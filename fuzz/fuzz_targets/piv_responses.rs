//! Fuzz target: the PIV client's handling of whatever a card (or something posing as one)
//! answers. The input is a script: one byte choosing the operations, then the card's answers,
//! each as a two-byte big-endian length and that many bytes. A scripted channel hands them
//! out in order and reports the card removed when they run out. Every client operation that
//! parses an answer runs over it: SELECT, the CHUID, each certificate object, the passcode
//! status, VERIFY, change, the unlock code's metadata, signing, management-key
//! authentication and key generation.
//!
//! Beyond "no panic", it checks the passcode rule the agent must never break whatever the
//! card says: one `verify_passcode` or `change_passcode` call sends at most one command that
//! carries the passcode (a spent try), and never one when the card is not a valid PIV card.
#![no_main]

use std::sync::Arc;

use cardgate_piv::{
    CardChannel, ChannelError, FinalTry, KeyAlgorithm, ManagementKey, Passcode, PasscodeGuard,
    PivClient, PivError, Sha256Digest, SignInput, Slot,
};
use libfuzzer_sys::fuzz_target;

/// A card that answers from the script, counting the commands that spend a passcode try.
struct Scripted<'a> {
    rest: &'a [u8],
    /// VERIFY (20) or CHANGE REFERENCE DATA (24) with data: each may cost a try.
    try_spending: usize,
}

impl CardChannel for Scripted<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if command.len() > 5 && (command[1] == 0x20 || command[1] == 0x24) {
            self.try_spending += 1;
        }
        if self.rest.len() < 2 {
            return Err(ChannelError::CardRemoved);
        }
        let len = usize::from(u16::from_be_bytes([self.rest[0], self.rest[1]]));
        let len = len.min(self.rest.len() - 2);
        let (answer, rest) = self.rest[2..].split_at(len);
        self.rest = rest;
        Ok(answer.to_vec())
    }

    fn supports_extended_apdus(&self) -> bool {
        false
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&plan, script)) = data.split_first() else {
        return;
    };
    let guard = Arc::new(PasscodeGuard::in_memory().expect("an in-memory ledger"));
    let mut client = PivClient::new(
        Scripted {
            rest: script,
            try_spending: 0,
        },
        guard,
    );
    let passcode = Passcode::new("123456".into()).expect("a well-formed passcode");
    let new_passcode = Passcode::new("654321".into()).expect("a well-formed passcode");
    let final_try = if plan & 0x80 != 0 {
        FinalTry::Confirmed
    } else {
        FinalTry::NotConfirmed
    };
    let spent_before = |c: &PivClient<Scripted<'_>>| c.channel().try_spending;
    match plan & 0x0F {
        0 => drop(client.read_identity()),
        1 => drop(client.passcode_status()),
        2 => {
            let before = spent_before(&client);
            let result = client.verify_passcode(&passcode, final_try);
            let spent = spent_before(&client) - before;
            assert!(spent <= 1, "one verify sent the passcode {spent} times");
            // After the card said "wrong", the same value is never sent again.
            if let Err(PivError::WrongPasscode { .. }) = result {
                let before = spent_before(&client);
                let _ = client.verify_passcode(&passcode, final_try);
                let again = spent_before(&client) - before;
                assert_eq!(again, 0, "a passcode that just failed was sent again");
            }
        }
        3 => {
            let before = spent_before(&client);
            drop(client.change_passcode(&passcode, &new_passcode, final_try));
            assert!(spent_before(&client) - before <= 1);
        }
        4 => drop(client.unlock_code_tries_left()),
        5 => {
            for slot in Slot::ALL {
                drop(client.read_certificate(slot));
            }
        }
        6 => drop(client.sign(
            Slot::Authentication,
            SignInput::EcdsaP256Sha256(Sha256Digest::of(b"challenge")),
        )),
        7 => drop(client.sign(
            Slot::Authentication,
            SignInput::RsaPssSha256(Sha256Digest::of(b"challenge")),
        )),
        8 => {
            let key = ManagementKey::aes128(&[0x01; 16]).expect("a 16-byte AES key");
            drop(client.authenticate_management_key(&key));
        }
        9 => {
            let key = ManagementKey::tdes(&[0x01; 24]).expect("a 24-byte 3DES key");
            drop(client.authenticate_management_key(&key));
        }
        10 => drop(client.generate_key(Slot::Signature, KeyAlgorithm::EccP256)),
        11 => drop(client.generate_key(Slot::Signature, KeyAlgorithm::Rsa2048)),
        12 => drop(client.card_serial()),
        _ => {
            // A login's order: identity, status, then a verify.
            drop(client.read_identity());
            drop(client.passcode_status());
            let before = spent_before(&client);
            drop(client.verify_passcode(&passcode, final_try));
            assert!(spent_before(&client) - before <= 1);
        }
    }
});
