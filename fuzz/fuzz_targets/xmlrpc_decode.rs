//! Arbitrary bytes into the XML-RPC decoders (`decode_response`, `decode_call`,
//! `decode_value`): no panic, and whatever they accept survives encoding again.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_harness/xmlrpc.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::check_decode(data));
