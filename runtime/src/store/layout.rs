//! The store on disk, which is itself a valid OCI image layout:
//!
//! ```text
//! <root>/oci-layout              {"imageLayoutVersion":"1.0.0"}
//! <root>/index.json              one descriptor per image name (ref.name annotation)
//! <root>/blobs/sha256/<hex>      content-addressed, verified before they get a name
//! <root>/ingest/                 downloads and copies in progress (<hex>.partial, tmp-*)
//! <root>/layers/<mapping>/<hex>  unpacked layers, by IdMapping::cache_key and diff_id
//! <root>/locks/                  flock files (see lock.rs)
//! ```
//!
//! Blobs and `index.json` are written to a temporary file and renamed into place, so a
//! reader (or skopeo) never sees half a file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::StoreError;
use crate::digest::Digest;
use crate::manifest::{Index, MAX_MANIFEST};

pub const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Create `dir` (and parents) and make it 0755 whatever the umask, so that container
/// root in a user namespace can traverse to the layer directories.
pub fn make_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(io_err(dir))
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A name for a temporary file or directory that no other process picks.
pub fn tmp_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}-{:08x}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

impl Layout {
    /// Open the layout at `root`, creating what is missing.
    pub fn init(root: &Path) -> Result<Layout, StoreError> {
        let l = Layout {
            root: root.to_owned(),
        };
        for d in [
            root.to_owned(),
            l.root.join("blobs/sha256"),
            l.ingest_dir(),
            l.root.join("layers"),
            l.locks_dir(),
        ] {
            make_dir(&d)?;
        }
        let marker = root.join("oci-layout");
        match fs::read(&marker) {
            Ok(b) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                        path: marker.clone(),
                        reason: format!("not JSON: {e}"),
                    })?;
                if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
                    return Err(StoreError::Corrupt {
                        path: marker,
                        reason: "unsupported imageLayoutVersion (want 1.0.0)".into(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                l.write_atomic(&marker, OCI_LAYOUT.as_bytes())?;
            }
            Err(e) => return Err(io_err(&marker)(e)),
        }
        if !l.index_path().exists() {
            l.write_index(&Index {
                schema_version: 2,
                media_type: Some(crate::manifest::media::OCI_INDEX.into()),
                manifests: Vec::new(),
                annotations: None,
            })?;
        }
        Ok(l)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }
    pub fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }
    pub fn partial_path(&self, d: &Digest) -> PathBuf {
        self.ingest_dir().join(format!("{}.partial", d.hex()))
    }

    /// Whether the blob is present (with the expected size, if given).
    pub fn has_blob(&self, d: &Digest, size: Option<u64>) -> bool {
        match fs::symlink_metadata(self.blob_path(d)) {
            Ok(m) => m.is_file() && size.is_none_or(|s| m.len() == s),
            Err(_) => false,
        }
    }

    /// Read a (small) blob and check its digest: manifests and configs are re-verified
    /// on every read, they are the root of trust for everything else.
    pub fn read_blob(&self, d: &Digest, max: u64) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        let f = File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob(d.clone())
            } else {
                io_err(&p)(e)
            }
        })?;
        let mut buf = Vec::new();
        f.take(max + 1).read_to_end(&mut buf).map_err(io_err(&p))?;
        if buf.len() as u64 > max {
            return Err(StoreError::Corrupt {
                path: p,
                reason: format!("larger than {max} bytes"),
            });
        }
        let actual = Digest::of(&buf);
        if actual != *d {
            return Err(StoreError::Corrupt {
                path: p,
                reason: format!("content hashes to {actual}"),
            });
        }
        Ok(buf)
    }

    /// A new temporary file in `ingest/`.
    pub fn tmp_file(&self) -> Result<(File, PathBuf), StoreError> {
        let p = self.ingest_dir().join(tmp_name("tmp"));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&p)
            .map_err(io_err(&p))?;
        Ok((f, p))
    }

    /// Write `data` to `path` atomically: a temporary file in `ingest/` (so a crash
    /// leaves debris only there, where prune looks) renamed into place.
    pub fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), StoreError> {
        let tmp = self.ingest_dir().join(tmp_name("atomic"));
        let res = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_data()?;
            fs::rename(&tmp, path)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(io_err(path))
    }

    /// Store `data` as blob `d`, refusing it if it does not hash to `d`.
    pub fn put_blob_bytes(&self, d: &Digest, data: &[u8]) -> Result<bool, StoreError> {
        if self.has_blob(d, Some(data.len() as u64)) {
            return Ok(false);
        }
        let actual = Digest::of(data);
        if actual != *d {
            return Err(StoreError::DigestMismatch {
                blob: d.clone(),
                actual,
                size: data.len() as u64,
            });
        }
        self.write_atomic(&self.blob_path(d), data)?;
        Ok(true)
    }

    /// Copy a blob from `r`, verifying size and digest while it streams; nothing is
    /// left behind on a mismatch. `on_bytes` sees the progress.
    pub fn put_blob_from(
        &self,
        d: &Digest,
        size: u64,
        mut r: impl Read,
        mut on_bytes: impl FnMut(u64),
    ) -> Result<(), StoreError> {
        let (mut f, tmp) = self.tmp_file()?;
        let res = (|| {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(StoreError::Source(format!("reading blob {d}: {e}"))),
                };
                total += n as u64;
                if total > size {
                    return Err(StoreError::SizeMismatch {
                        blob: d.clone(),
                        expected: size,
                        actual: total,
                    });
                }
                h.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(io_err(&tmp))?;
                on_bytes(n as u64);
            }
            if total != size {
                return Err(StoreError::SizeMismatch {
                    blob: d.clone(),
                    expected: size,
                    actual: total,
                });
            }
            let actual = Digest::from_hasher(h);
            if actual != *d {
                return Err(StoreError::DigestMismatch {
                    blob: d.clone(),
                    actual,
                    size,
                });
            }
            self.commit_blob(&tmp, d)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// Move a verified temporary file into `blobs/`.
    pub fn commit_blob(&self, tmp: &Path, d: &Digest) -> Result<(), StoreError> {
        let dst = self.blob_path(d);
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o644)).map_err(io_err(tmp))?;
        fs::rename(tmp, &dst).map_err(io_err(&dst))
    }

    pub fn read_index(&self) -> Result<Index, StoreError> {
        let p = self.index_path();
        let b = fs::read(&p).map_err(io_err(&p))?;
        if b.len() as u64 > 64 * MAX_MANIFEST {
            return Err(StoreError::Corrupt {
                path: p,
                reason: "index.json is implausibly large".into(),
            });
        }
        serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
            path: p,
            reason: format!("not a valid image index: {e}"),
        })
    }

    /// Replace `index.json`. The caller holds the store lock.
    pub fn write_index(&self, idx: &Index) -> Result<(), StoreError> {
        let data = serde_json::to_vec(idx).map_err(|e| StoreError::Corrupt {
            path: self.index_path(),
            reason: e.to_string(),
        })?;
        self.write_atomic(&self.index_path(), &data)
    }
}
