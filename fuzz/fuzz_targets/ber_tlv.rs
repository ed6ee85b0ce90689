//! Fuzz target: any bytes through the BER-TLV parsers (`parse_all`, `children()` of each, and
//! the depth-bounded `parse_tree` that recurses into constructed values); a tree that parsed
//! must re-encode to bytes that parse back to an equal tree.
#![no_main]

use cardgate_apdu::tlv::{self, Tlv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = Tlv::parse_all(data) {
        list.iter().for_each(|t| drop(t.children()));
    }
    if let Ok(tree) = tlv::parse_tree(data) {
        let again = tlv::encode_tree(&tree);
        assert_eq!(tlv::parse_tree(&again).expect("re-encoded parses"), tree);
    }
});
