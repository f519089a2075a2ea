//! Layer unpacking: one OCI layer blob into one overlay layer directory.
//!
//! The output is in overlayfs format (whiteouts as 0:0 character devices, opaque
//! directories as `user.overlay.opaque=y`), owned as [`Ownership`] says, with
//! hardlinks, symlinks, xattrs, file capabilities, setuid bits and mtimes preserved.
//! Hostile input is refused with an error naming the layer and the entry (see
//! [`safe`] and docs/images.md): traversal, absolute names, writes through symlinks,
//! hardlinks outside the layer, duplicate entries, size and entry-count caps. Device
//! nodes are never created: they are skipped with a warning and counted (build roots
//! get `/dev` from a tmpfs).
//!
//! The uncompressed stream is hashed while it is applied and checked against the
//! layer's diff_id; on any error the caller throws the target directory away.

pub mod compression;
pub mod safe;
pub mod sys;
mod unpack;
pub mod whiteout;

use std::path::PathBuf;

pub use compression::Compression;
pub use unpack::unpack;

use crate::digest::Digest;
use crate::idmap::IdMapping;

/// Who owns the unpacked files.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ownership {
    /// Real root: `lchown` every entry to `mapping.host_uid/gid(id)`. An entry whose id
    /// is not mapped is an error naming the entry.
    Shift(IdMapping),
    /// Already inside a user namespace with the target mapping: `lchown` to the ids in
    /// the tar as they are.
    Verbatim,
    /// No `chown` at all (the single-id degraded mapping: everything belongs to the
    /// caller, who is root in the container).
    Ignore,
}

impl Ownership {
    /// The ownership to unpack with for a mapping, as seen from the calling process.
    /// `RootlessRanges` needs [`Ownership::Verbatim`] inside a user namespace with
    /// that mapping, which only a helper process can set up.
    pub fn for_mapping(mapping: &IdMapping) -> Ownership {
        match mapping.mode {
            crate::idmap::MappingMode::Root => Ownership::Shift(mapping.clone()),
            crate::idmap::MappingMode::RootlessRanges => Ownership::Verbatim,
            crate::idmap::MappingMode::Single => Ownership::Ignore,
        }
    }
}

/// Caps that stop absurd or hostile layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Most tar entries per layer.
    pub max_entries: u64,
    /// Largest uncompressed layer (the whole tar stream, headers included).
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 2_000_000,
            max_bytes: 64 << 30,
        }
    }
}

/// Everything needed to unpack one layer; serialisable so that a helper process in
/// another user namespace can run it (see `Store::set_userns_runner`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct UnpackJob {
    /// The layer blob (compressed as `compression` says).
    pub blob: PathBuf,
    pub compression: Compression,
    /// Expected sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// An existing, empty directory to unpack into.
    pub target: PathBuf,
    pub ownership: Ownership,
    pub limits: Limits,
    /// How the layer is named in errors and logs (its blob digest).
    pub label: String,
}

/// What an unpack did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnpackStats {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub fifos: u64,
    /// Whiteouts written (`.wh.` entries whose target a lower layer may hold).
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    /// Device nodes not created.
    pub devices_skipped: u64,
    /// xattrs not applied (refused names, or not permitted here).
    pub xattrs_skipped: u64,
    /// Bytes of regular file data written.
    pub file_bytes: u64,
    /// Size of the uncompressed tar stream.
    pub tar_bytes: u64,
}

/// Why a layer could not be unpacked. Every variant names the layer (its blob digest).
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The layer is malformed or hostile; names the entry.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Refused {
        layer: String,
        entry: String,
        reason: String,
    },
    /// A syscall failed while applying an entry.
    #[error("layer {layer}: entry {entry:?}: {op}: {source}")]
    Apply {
        layer: String,
        entry: String,
        op: &'static str,
        source: std::io::Error,
    },
    /// Reading, decompressing or parsing the stream failed.
    #[error("layer {layer}: {what}: {source}")]
    Stream {
        layer: String,
        what: String,
        source: std::io::Error,
    },
    /// The uncompressed stream does not hash to the diff_id in the image config.
    #[error(
        "layer {layer}: uncompressed content is {actual}, but the image config says {expected} \
         (diff_id mismatch: the image is corrupt or was tampered with)"
    )]
    DiffIdMismatch {
        layer: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {layer}: {what} {path}: {source}")]
    Target {
        layer: String,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}
