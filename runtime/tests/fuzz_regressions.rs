//! Inputs the fuzzers found (runtime/tests/data/fuzz-regressions/<target>/), replayed
//! through the same checks the fuzz targets run (tests/fuzz_harness/). See
//! docs/fuzzing.md: a new crash is added by copying its artifact into the directory of
//! its target.

use std::path::Path;

#[path = "fuzz_harness/archive.rs"]
mod archive;
#[path = "fuzz_harness/manifest.rs"]
mod manifest;
#[path = "fuzz_harness/reference.rs"]
mod reference;
#[path = "fuzz_harness/stream.rs"]
mod stream;
#[path = "fuzz_harness/unpack.rs"]
mod unpack;

/// Run `check` on every committed input of `target`, naming the one that fails.
fn replay(target: &str, check: impl FnMut(&[u8])) -> usize {
    adjutant_testkit::replay_fuzz_regressions(Path::new(env!("CARGO_MANIFEST_DIR")), target, check)
}

#[test]
fn layer_unpack_regressions() {
    let mut u = unpack::Unpacker::new();
    replay("layer_unpack", |d| u.check(d));
}

#[test]
fn layer_stream_regressions() {
    let mut s = stream::Streams::new();
    replay("layer_stream", |d| s.check(d));
}

#[test]
fn image_manifest_regressions() {
    replay("image_manifest", manifest::check_manifest);
}

#[test]
fn oci_archive_regressions() {
    let mut a = archive::Archives::new();
    replay("oci_archive", |d| a.check(d));
}

#[test]
fn image_reference_regressions() {
    replay("image_reference", reference::check_reference);
}
