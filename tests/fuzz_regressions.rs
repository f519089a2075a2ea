//! Inputs the fuzzers found (tests/data/fuzz-regressions/<target>/), replayed through
//! the same checks the fuzz targets run (tests/fuzz_harness/). See docs/fuzzing.md: a
//! new crash is added by copying its artifact into the directory of its target.

use std::path::Path;

#[path = "fuzz_harness/kojid_conf.rs"]
mod kojid_conf;
#[path = "fuzz_harness/xmlrpc.rs"]
mod xmlrpc;

/// Run `check` on every committed input of `target`, naming the one that fails.
fn replay(target: &str, check: impl FnMut(&[u8])) -> usize {
    adjutant_testkit::replay_fuzz_regressions(Path::new(env!("CARGO_MANIFEST_DIR")), target, check)
}

#[test]
fn xmlrpc_decode_regressions() {
    replay("xmlrpc_decode", xmlrpc::check_decode);
}

#[test]
fn kojid_config_regressions() {
    replay("kojid_config", kojid_conf::check_config);
}
