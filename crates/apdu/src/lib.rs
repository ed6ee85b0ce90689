//! ISO 7816-4 command and response APDUs, status words, command chaining, GET RESPONSE
//! handling and BER-TLV. Pure: no I/O, no PC/SC, no async runtime.
