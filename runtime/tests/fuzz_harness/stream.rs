//! The checks of the `layer_stream` fuzz target, shared with the regression tests.
//!
//! Included by path from `fuzz/fuzz_targets/layer_stream.rs` and from
//! `runtime/tests/fuzz_regressions.rs`. See docs/fuzzing.md.
//!
//! Input: one byte choosing the compression (gzip, zstd, none), then the layer blob. The
//! blob goes through the unpacker's decompression pipeline (`layer::compression`:
//! multi-member gzip with tolerated NUL padding, zstd, the size cap) and the result is
//! compared with the reference decoders of the same crates.

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

use adjutant_runtime::digest::Digest;
use adjutant_runtime::layer::compression::ChunkStream;
use adjutant_runtime::layer::Compression;

/// Uncompressed size cap (a bomb stops here).
const LIMIT: u64 = 8 << 20;

pub struct Streams {
    file: PathBuf,
}

impl Default for Streams {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// What the reference decoder makes of `blob`, or None if it refuses it or it exceeds
/// the cap.
fn reference(c: Compression, blob: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let r: Box<dyn Read> = match c {
        Compression::None => Box::new(blob),
        // Our reader also accepts NUL padding after the last member; the reference
        // is only consulted for blobs without it.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(blob).ok()?),
    };
    r.take(LIMIT + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= LIMIT).then_some(out)
}

impl Streams {
    pub fn new() -> Streams {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = dir.join(format!("ka-fuzz-stream-{}-{n}", std::process::id()));
        Streams { file }
    }

    pub fn check(&mut self, data: &[u8]) {
        let Some((&sel, blob)) = data.split_first() else {
            return;
        };
        let c = match sel % 3 {
            0 => Compression::Gzip,
            1 => Compression::Zstd,
            _ => Compression::None,
        };
        std::fs::write(&self.file, blob).unwrap();
        let file = std::fs::File::open(&self.file).unwrap();
        let ours = (|| -> std::io::Result<(Vec<u8>, Digest, u64)> {
            let mut s = ChunkStream::spawn(file, c, LIMIT)?;
            // Tar-sized pieces until the stream ends inside one (its bytes are hashed
            // but not returned), then the rest as the unpacker drains it.
            let mut out = Vec::new();
            loop {
                match s.read_vec(512) {
                    Ok(v) => out.extend_from_slice(&v),
                    // The stream's own "ends inside an entry" (a decoder's
                    // UnexpectedEof, e.g. a truncated zstd frame, is an error).
                    Err(e) if e.to_string().contains("stream ends inside") => break,
                    Err(e) => return Err(e),
                }
            }
            let (d, total) = s.finish()?;
            Ok((out, d, total))
        })();
        let padded = c == Compression::Gzip && blob.last() == Some(&0);
        match (&ours, reference(c, blob)) {
            (Ok((out, d, total)), r) => {
                assert!(*total <= LIMIT, "{total} bytes passed the cap of {LIMIT}");
                // The partial tail (under 512 bytes) is hashed but not returned.
                assert!(out.len() as u64 <= *total);
                if let Some(r) = r {
                    assert_eq!(
                        *total,
                        r.len() as u64,
                        "{c:?}: length differs from the reference"
                    );
                    assert_eq!(
                        *d,
                        Digest::of(&r),
                        "{c:?}: content differs from the reference"
                    );
                    assert_eq!(out[..], r[..out.len()]);
                } else {
                    // Only NUL padding after the last gzip member is accepted beyond
                    // what the reference decoder takes.
                    assert!(padded, "{c:?}: accepted what the reference decoder refuses");
                }
            }
            (Err(e), Some(r)) => {
                // The reference accepts: so must we, except an empty gzip blob.
                assert!(
                    c == Compression::Gzip && blob.is_empty(),
                    "{c:?}: refused ({e}) what the reference decodes to {} bytes",
                    r.len()
                );
            }
            (Err(_), None) => {}
        }
    }
}
