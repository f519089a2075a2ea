//! Image sources on disk: an OCI image layout directory (`oci:DIR`) or a tar file
//! holding one (`oci-archive:FILE`). Both are read-only here; everything taken from
//! them is verified against its digest on the way into the store.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name}: {path}: {error}")]
    Io {
        source_name: String,
        path: String,
        error: io::Error,
    },
    #[error("{source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
}

/// Somewhere to read an OCI layout's `index.json` and blobs from.
pub trait BlobSource: Send + Sync {
    /// How the source is named in messages (`oci:/path`).
    fn name(&self) -> &str;
    /// The bytes of `index.json`.
    fn index(&self) -> Result<Vec<u8>, SourceError>;
    /// A reader over blob `d` and its size on the source.
    fn open_blob(&self, d: &Digest) -> Result<(Box<dyn Read + Send + '_>, u64), SourceError>;
}

fn check_layout(src: &dyn BlobSource, bytes: Option<Vec<u8>>) -> Result<(), SourceError> {
    let Some(b) = bytes else {
        return Err(SourceError::Invalid {
            source_name: src.name().to_owned(),
            reason: "no oci-layout file: not an OCI image layout".into(),
        });
    };
    let v: serde_json::Value = serde_json::from_slice(&b).map_err(|e| SourceError::Invalid {
        source_name: src.name().to_owned(),
        reason: format!("oci-layout is not JSON: {e}"),
    })?;
    if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
        return Err(SourceError::Invalid {
            source_name: src.name().to_owned(),
            reason: "unsupported imageLayoutVersion (want 1.0.0)".into(),
        });
    }
    Ok(())
}

/// `oci:DIR`
pub struct OciDir {
    path: PathBuf,
    name: String,
}

impl OciDir {
    pub fn open(path: &Path) -> Result<OciDir, SourceError> {
        let d = OciDir {
            path: path.to_owned(),
            name: format!("oci:{}", path.display()),
        };
        let layout = match std::fs::read(path.join("oci-layout")) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(d.io("oci-layout", e)),
        };
        check_layout(&d, layout)?;
        Ok(d)
    }

    fn io(&self, path: &str, error: io::Error) -> SourceError {
        SourceError::Io {
            source_name: self.name.clone(),
            path: path.to_owned(),
            error,
        }
    }
}

impl BlobSource for OciDir {
    fn name(&self) -> &str {
        &self.name
    }
    fn index(&self) -> Result<Vec<u8>, SourceError> {
        std::fs::read(self.path.join("index.json")).map_err(|e| self.io("index.json", e))
    }
    fn open_blob(&self, d: &Digest) -> Result<(Box<dyn Read + Send + '_>, u64), SourceError> {
        let rel = format!("blobs/sha256/{}", d.hex());
        let f = File::open(self.path.join(&rel)).map_err(|e| self.io(&rel, e))?;
        let size = f.metadata().map_err(|e| self.io(&rel, e))?.len();
        Ok((Box::new(f), size))
    }
}

/// `oci-archive:FILE`: the layout is read in place from the tar (one scan for the
/// table of contents, then positional reads), never extracted.
pub struct OciArchive {
    file: File,
    name: String,
    /// Member path (without `./`) → (data offset, size).
    members: HashMap<String, (u64, u64)>,
}

impl OciArchive {
    pub fn open(path: &Path) -> Result<OciArchive, SourceError> {
        let name = format!("oci-archive:{}", path.display());
        let io = |p: &str, error| SourceError::Io {
            source_name: name.clone(),
            path: p.to_owned(),
            error,
        };
        let file = File::open(path).map_err(|e| io("", e))?;
        let mut members = HashMap::new();
        {
            let mut ar = tar::Archive::new(&file);
            for entry in ar.entries_with_seek().map_err(|e| io("(tar)", e))? {
                let entry = entry.map_err(|e| io("(tar)", e))?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let p = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                let p = p.trim_start_matches("./").to_owned();
                members.insert(p, (entry.raw_file_position(), entry.size()));
            }
        }
        let a = OciArchive {
            file,
            name,
            members,
        };
        let layout = a.member("oci-layout")?.map(|(mut r, _)| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        });
        let layout = match layout {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => return Err(a.io("oci-layout", e)),
            None => None,
        };
        check_layout(&a, layout)?;
        Ok(a)
    }

    fn io(&self, path: &str, error: io::Error) -> SourceError {
        SourceError::Io {
            source_name: self.name.clone(),
            path: path.to_owned(),
            error,
        }
    }

    #[allow(clippy::type_complexity)]
    fn member(&self, path: &str) -> Result<Option<(Box<dyn Read + Send + '_>, u64)>, SourceError> {
        Ok(self.members.get(path).map(|&(off, size)| {
            let r: Box<dyn Read + Send + '_> = Box::new(PosReader {
                file: &self.file,
                pos: off,
                end: off + size,
            });
            (r, size)
        }))
    }
}

impl BlobSource for OciArchive {
    fn name(&self) -> &str {
        &self.name
    }
    fn index(&self) -> Result<Vec<u8>, SourceError> {
        let Some((mut r, _)) = self.member("index.json")? else {
            return Err(SourceError::Invalid {
                source_name: self.name.clone(),
                reason: "no index.json in the archive".into(),
            });
        };
        let mut v = Vec::new();
        r.read_to_end(&mut v)
            .map_err(|e| self.io("index.json", e))?;
        Ok(v)
    }
    fn open_blob(&self, d: &Digest) -> Result<(Box<dyn Read + Send + '_>, u64), SourceError> {
        let rel = format!("blobs/sha256/{}", d.hex());
        self.member(&rel)?.ok_or_else(|| {
            self.io(
                &rel,
                io::Error::new(io::ErrorKind::NotFound, "not in the archive"),
            )
        })
    }
}

/// Positional reads of a byte range of a file.
struct PosReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for PosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
