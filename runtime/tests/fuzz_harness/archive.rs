//! The checks of the `oci_archive` fuzz target, shared with the regression tests.
//!
//! Included by path from `fuzz/fuzz_targets/oci_archive.rs` and from
//! `runtime/tests/fuzz_regressions.rs`. See docs/fuzzing.md.
//!
//! The input is written to a file and opened as `oci-archive:FILE`; then, as `image
//! import` does, `index.json` is read and parsed, and every blob it leads to (image
//! manifests, their configs and layers) is opened and read, at most 1 MiB each.

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

use adjutant_runtime::archive::{BlobSource, OciArchive};
use adjutant_runtime::digest::Digest;
use adjutant_runtime::manifest::{parse_document, Document};

const MAX_READ: u64 = 1 << 20;

pub struct Archives {
    file: PathBuf,
}

impl Default for Archives {
    fn default() -> Self {
        Self::new()
    }
}

impl Archives {
    pub fn new() -> Archives {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        // One file per process and harness (tests run several harnesses in parallel).
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = dir.join(format!("ka-fuzz-archive-{}-{n}.tar", std::process::id()));
        Archives { file }
    }

    /// Read `d` from `src`: whatever its size claims, never more than is there, and
    /// never a panic.
    fn read_blob(src: &OciArchive, d: &Digest) -> Option<Vec<u8>> {
        let (r, size) = src.open_blob(d).ok()?;
        let mut v = Vec::new();
        match r.take(MAX_READ).read_to_end(&mut v) {
            Ok(n) => {
                assert!(n as u64 <= size, "read {n} bytes of a {size}-byte member");
                Some(v)
            }
            Err(e) => {
                drop(e.to_string());
                None
            }
        }
    }

    pub fn check(&mut self, data: &[u8]) {
        std::fs::write(&self.file, data).unwrap();
        let result = OciArchive::open(&self.file);
        let src = match result {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("oci-archive:"), "{msg}");
                return;
            }
        };
        let Ok(index) = src.index() else {
            return;
        };
        let Ok(doc) = parse_document(&index, None) else {
            return;
        };
        let mut todo: Vec<Digest> = match doc {
            Document::Index(i) => i.manifests.iter().map(|d| d.digest.clone()).collect(),
            Document::Manifest(m) => vec![m.config.digest.clone()],
        };
        // Manifests lead to configs and layers; bounded so a cyclic index ends.
        let mut seen = 0;
        while let Some(d) = todo.pop() {
            seen += 1;
            if seen > 64 {
                break;
            }
            let Some(bytes) = Self::read_blob(&src, &d) else {
                continue;
            };
            match parse_document(&bytes, None) {
                Ok(Document::Manifest(m)) => {
                    todo.push(m.config.digest.clone());
                    todo.extend(m.layers.iter().map(|l| l.digest.clone()));
                }
                Ok(Document::Index(i)) => todo.extend(i.manifests.iter().map(|d| d.digest.clone())),
                Err(_) => {}
            }
        }
    }
}

impl Drop for Archives {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}
