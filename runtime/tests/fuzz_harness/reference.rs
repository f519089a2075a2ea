//! The checks of the `image_reference` fuzz target, shared with the regression tests.
//!
//! Included by path from `fuzz/fuzz_targets/image_reference.rs` and from
//! `runtime/tests/fuzz_regressions.rs`. See docs/fuzzing.md.

#![allow(dead_code)]

use adjutant_runtime::digest::Digest;
use adjutant_runtime::reference::{is_layout_ref_name, ImageSource, RegistryRef};

/// Image references as users (and image policies from the hub) write them: no parser
/// may panic, and a parsed reference's normal form must be a fixed point (parsing
/// `r.name()` gives `r` again), since the store keys images by it.
pub fn check_reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        // Digests are also parsed from registry headers, which may be any bytes.
        let _ = Digest::parse(&String::from_utf8_lossy(data));
        return;
    };
    let _ = is_layout_ref_name(s);
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.to_string(), s);
    }
    match RegistryRef::parse(s) {
        Ok(r) => {
            let name = r.name();
            assert_eq!(
                RegistryRef::parse(&name).as_ref(),
                Ok(&r),
                "{s:?} normalises to {name:?}, which parses differently"
            );
            assert!(!r.registry.is_empty() && !r.repository.is_empty());
            assert!(r.tag.is_some() || r.digest.is_some());
            let _ = (r.repo_name(), r.manifest_reference(), r.api_host());
        }
        Err(e) => drop(e.to_string()),
    }
    match RegistryRef::parse_local_name(s) {
        Ok(r) => {
            let name = r.name();
            assert_eq!(
                RegistryRef::parse(&name).as_ref(),
                Ok(&r),
                "{s:?} → {name:?}"
            );
        }
        Err(e) => drop(e.to_string()),
    }
    match ImageSource::parse(s) {
        Ok(src @ (ImageSource::OciDir { .. } | ImageSource::OciArchive { .. })) => {
            let text = src.to_string();
            assert_eq!(
                ImageSource::parse(&text).as_ref(),
                Ok(&src),
                "{s:?} → {text:?}"
            );
        }
        Ok(ImageSource::Registry(_)) => {}
        Err(e) => drop(e.to_string()),
    }
}
