//! A manifest or index document (with the content type a server claims, and an image
//! configuration) through the store's parsers: `parse_document`, `check_image`,
//! `oci_form`, `Index::select`, `info_from`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../runtime/tests/fuzz_harness/manifest.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::check_manifest(data));
