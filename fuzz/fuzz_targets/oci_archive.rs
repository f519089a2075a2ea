//! Arbitrary bytes as an `oci-archive:` tar: the table of contents, `index.json`, and
//! every manifest, config and layer blob it leads to.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;

#[path = "../../runtime/tests/fuzz_harness/archive.rs"]
mod harness;

thread_local! {
    static ARCHIVES: RefCell<harness::Archives> = RefCell::new(harness::Archives::new());
}

fuzz_target!(|data: &[u8]| {
    ARCHIVES.with(|a| a.borrow_mut().check(data));
});
