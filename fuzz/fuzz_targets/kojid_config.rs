//! Arbitrary text as kojid.conf: the ConfigParser-compatible reader, every typed key
//! of `[kojid]` and `[adjutant]`, and the cross-key checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_harness/kojid_conf.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::check_config(data));
