//! Image references (`registry/repo:tag@digest`, `oci:DIR:tag`, `oci-archive:FILE`),
//! digests and layout ref names: no panic, normal forms are fixed points.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../runtime/tests/fuzz_harness/reference.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::check_reference(data));
