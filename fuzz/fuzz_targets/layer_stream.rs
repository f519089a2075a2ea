//! A layer blob (gzip, zstd or plain, chosen by the first byte) through the unpacker's
//! decompression pipeline, compared with the reference decoders.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;

#[path = "../../runtime/tests/fuzz_harness/stream.rs"]
mod harness;

thread_local! {
    static STREAMS: RefCell<harness::Streams> = RefCell::new(harness::Streams::new());
}

fuzz_target!(|data: &[u8]| {
    STREAMS.with(|s| s.borrow_mut().check(data));
});
