//! Fuzz target: any bytes through `ResponseApdu::parse`; whatever parses must encode back to
//! the same bytes.
#![no_main]

use cardgate_apdu::ResponseApdu;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = ResponseApdu::parse(data) {
        assert_eq!(response.to_bytes(), data);
    }
});
