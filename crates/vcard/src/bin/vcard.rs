//! `vcard`: provision, insert, remove and inspect virtual PIV cards.
fn main() {}
