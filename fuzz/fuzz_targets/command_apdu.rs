//! Fuzz target: any bytes through `CommandApdu::parse`; whatever parses must encode again and
//! parse back equal.
#![no_main]

use cardgate_apdu::CommandApdu;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(command) = CommandApdu::parse(data) {
        let again = command.to_bytes().expect("a parsed command encodes");
        assert_eq!(CommandApdu::parse(&again).expect("re-encoded parses"), command);
    }
});
