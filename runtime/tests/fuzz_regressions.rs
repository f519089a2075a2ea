//! Inputs the fuzzers found (runtime/tests/data/fuzz-regressions/<target>/), replayed
//! through the same checks the fuzz targets run (tests/fuzz_harness/). See
//! docs/fuzzing.md: a new crash is added by copying its artifact into the directory of
//! its target.

use std::path::PathBuf;

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

/// The committed inputs of one target, by name.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz-regressions")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != ".gitkeep"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Run `check` on every committed input of `target`, naming the one that fails.
fn replay(target: &str, mut check: impl FnMut(&[u8])) -> usize {
    let all = inputs(target);
    for (name, data) in &all {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(data)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}/{name}: {msg}");
        }
    }
    all.len()
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
