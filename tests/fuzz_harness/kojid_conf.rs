//! The checks of the kojid.conf fuzz target, shared with the regression tests.
//!
//! Included by path from `fuzz/fuzz_targets/kojid_config.rs` and from
//! `tests/fuzz_regressions.rs`. See docs/fuzzing.md.

#![allow(dead_code)]

use std::path::Path;

use koji_adjutant::config::kojid::IniFile;
use koji_adjutant::config::Config;

/// Arbitrary text as `/etc/kojid/kojid.conf`: the reader and the typed keys must never
/// panic, errors must name a line of the file, and the result must not depend on how
/// often the text is read.
pub fn check_config(data: &[u8]) {
    // kojid.conf is read with read_to_string: text that is not UTF-8 never gets here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/kojid/kojid.conf");
    let mut ini = IniFile::default();
    match ini.read_str(text, path) {
        Err(e) => {
            let lines = text.split('\n').count();
            assert!(
                (1..=lines).contains(&e.line),
                "error names line {} of a {lines}-line file: {e}",
                e.line
            );
            assert_eq!(e.file, path);
        }
        Ok(()) => {
            let mut again = IniFile::default();
            again
                .read_str(text, path)
                .expect("second read of the same text");
            assert_eq!(ini.sections, again.sections);
            assert_eq!(ini.defaults, again.defaults);
            for (name, keys) in &ini.sections {
                for (k, e) in keys {
                    assert_eq!(k, &k.to_lowercase(), "[{name}] key not lower-cased");
                    assert!(e.line >= 1 && e.line <= text.split('\n').count());
                }
            }
            let mut cfg = Config::defaults();
            match cfg.apply_ini(&ini, path) {
                Ok(()) => {
                    if let Err(e) = cfg.finish() {
                        drop(e.to_string());
                    }
                }
                Err(e) => drop(e.to_string()),
            }
        }
    }
}
