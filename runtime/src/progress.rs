//! Progress reporting for pulls, imports and unpacks.
//!
//! The store emits [`Event`]s to a [`Progress`] sink; the CLI draws bars on a terminal
//! or prints plain lines, the daemon logs. Sinks must be cheap: `BlobBytes` arrives
//! for every network chunk.

use std::sync::Arc;

use crate::digest::Digest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobKind {
    Manifest,
    Config,
    Layer,
}

#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// A blob is about to be copied or downloaded.
    BlobStart {
        digest: &'a Digest,
        size: u64,
        kind: BlobKind,
    },
    /// `bytes` more bytes of the blob arrived (a restart after an error may send
    /// `BlobStart` again).
    BlobBytes { digest: &'a Digest, bytes: u64 },
    /// The blob is in the store, verified. `fetched` is false when it was already
    /// there (or another pull fetched it).
    BlobDone { digest: &'a Digest, fetched: bool },
    /// A transient error; the operation is retried after `delay_ms`.
    Retry {
        what: &'a str,
        attempt: u32,
        delay_ms: u64,
        error: &'a str,
    },
    /// A layer is being unpacked.
    LayerStart { diff_id: &'a Digest, size: u64 },
    /// A layer is ready (`unpacked` false: it was already there).
    LayerDone { diff_id: &'a Digest, unpacked: bool },
}

pub trait Progress: Send + Sync {
    fn event(&self, e: &Event<'_>);
}

/// A sink that drops everything.
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: &Event<'_>) {}
}

/// The default sink.
pub fn silent() -> Arc<dyn Progress> {
    Arc::new(Silent)
}
