//! Arbitrary bytes as an uncompressed layer, unpacked by the real unpacker into a fresh
//! directory on tmpfs; invariants in runtime/tests/fuzz_harness/unpack.rs (nothing
//! written outside the target, no escaping links, no devices, ownership in range).
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;

#[path = "../../runtime/tests/fuzz_harness/unpack.rs"]
mod harness;

thread_local! {
    static UNPACKER: RefCell<harness::Unpacker> = RefCell::new(harness::Unpacker::new());
}

fuzz_target!(|data: &[u8]| {
    UNPACKER.with(|u| u.borrow_mut().check(data));
});
