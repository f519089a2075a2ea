//! Raw uploads into the hub's work directory (`koji ClientSession.fastUpload`):
//! `upload_blocksize` chunks POSTed as `application/octet-stream` with `filename`,
//! `filepath`, `fileverify` (`adler32`, koji's choice, or `sha256`), `offset` and
//! `overwrite=1`, each answer checked (size and per-chunk digest), finished with
//! `checkUpload`.
//!
//! A chunk whose connection drops is re-sent at the same offset by the session's
//! retry rules (the hub truncates to the offset before writing, so a re-send is
//! harmless). If a chunk still fails, the upload resumes: `checkUpload(…,
//! verify='adler32')` tells how much of the file the hub has and its checksum; when
//! that prefix matches ours we continue after it, otherwise we start over.
//!
//! [`LogSync`] uploads a growing log incrementally while a task runs (koji
//! `incremental_upload`): 64 KiB chunks from the last offset, a file that shrank or
//! was replaced is re-sent from 0.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tracing::{debug, warn};

use super::session::{is_unreachable, HubSession};
use super::HubError;
use crate::xmlrpc::Value;

/// Chunk size of incremental log uploads (koji: 64 KiB).
pub const LOG_CHUNK: usize = 65536;

/// The checksum the hub computes of each chunk (`fileverify`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verify {
    /// `adler32` (koji's default for raw uploads).
    #[default]
    Adler32,
    /// `sha256`.
    Sha256,
}

impl Verify {
    /// The `fileverify` value.
    pub fn name(self) -> &'static str {
        match self {
            Verify::Adler32 => "adler32",
            Verify::Sha256 => "sha256",
        }
    }

    /// Hex digest of `data`, as the hub writes it.
    pub fn digest(self, data: &[u8]) -> String {
        match self {
            Verify::Adler32 => adler32_hex(data),
            Verify::Sha256 => {
                use sha2::Digest as _;
                hex::encode(sha2::Sha256::digest(data))
            }
        }
    }
}

/// A running digest of either kind.
enum Hasher {
    Adler(adler2::Adler32),
    Sha(sha2::Sha256),
}

impl Hasher {
    fn new(v: Verify) -> Hasher {
        match v {
            Verify::Adler32 => Hasher::Adler(adler2::Adler32::new()),
            Verify::Sha256 => {
                use sha2::Digest as _;
                Hasher::Sha(sha2::Sha256::new())
            }
        }
    }
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Adler(a) => a.write_slice(data),
            Hasher::Sha(h) => {
                use sha2::Digest as _;
                h.update(data)
            }
        }
    }
    fn hex(self) -> String {
        match self {
            Hasher::Adler(a) => format!("{:08x}", a.checksum()),
            Hasher::Sha(h) => {
                use sha2::Digest as _;
                hex::encode(h.finalize())
            }
        }
    }
}

/// Upload settings.
#[derive(Debug, Clone, Copy)]
pub struct UploadOptions {
    /// Checksum of each chunk (`fileverify`).
    pub verify: Verify,
    /// Bytes per chunk (`upload_blocksize`, koji default 1 MiB).
    pub blocksize: usize,
    /// How often an upload resumes after a chunk failed for good.
    pub resume_attempts: u32,
    /// Pause before re-sending a log chunk whose checksum did not match (koji: 10 s).
    pub log_retry_pause: Duration,
    /// Re-sends of a mismatching log chunk (koji: 5).
    pub log_retries: u32,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            verify: Verify::Adler32,
            blocksize: 1 << 20,
            resume_attempts: 3,
            log_retry_pause: Duration::from_secs(10),
            log_retries: 5,
        }
    }
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Reading the local file failed.
    #[error("upload of {}: {source}", path.display())]
    Io {
        /// The local file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The hub call failed.
    #[error("upload of {remote}: {source}")]
    Hub {
        /// `dir/name` on the hub.
        remote: String,
        /// The error.
        source: HubError,
    },
    /// The hub's answer does not match what we sent.
    #[error("upload of {remote}: {msg}")]
    Verify {
        /// `dir/name` on the hub.
        remote: String,
        /// What did not match.
        msg: String,
    },
}

/// The adler32 of `data` as the hub writes it (`%08x`).
pub fn adler32_hex(data: &[u8]) -> String {
    format!("{:08x}", adler2::adler32_slice(data))
}

/// What was uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSummary {
    /// Path relative to the hub's `work/` directory (`dir/name`).
    pub relpath: String,
    /// Bytes.
    pub size: u64,
    /// Times the upload resumed after a failed chunk.
    pub resumes: u32,
}

/// Uploads files into one hub directory (for a task: `tasks/<id%10000>/<id>`).
#[derive(Debug, Clone)]
pub struct Uploader {
    session: HubSession,
    dir: String,
    opts: UploadOptions,
}

impl Uploader {
    /// An uploader into `dir` (relative to the hub's `work/`).
    pub fn new(session: HubSession, dir: impl Into<String>, opts: UploadOptions) -> Uploader {
        Uploader {
            session,
            dir: dir.into(),
            opts,
        }
    }

    /// The hub directory.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The same uploader for a subdirectory (`dir/sub`).
    pub fn subdir(&self, sub: &str) -> Uploader {
        let sub = sub.trim_matches('/');
        Uploader {
            session: self.session.clone(),
            dir: if sub.is_empty() {
                self.dir.clone()
            } else {
                format!("{}/{sub}", self.dir)
            },
            opts: self.opts,
        }
    }

    fn check_name(&self, name: &str) -> Result<(), UploadError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(UploadError::Verify {
                remote: format!("{}/{name}", self.dir),
                msg: "upload names must be non-empty, without '/', not starting with '.'".into(),
            });
        }
        Ok(())
    }

    /// Upload a local file as `name` (default: its base name).
    pub async fn upload_file(
        &self,
        local: &Path,
        name: Option<&str>,
    ) -> Result<UploadSummary, UploadError> {
        let name = match name {
            Some(n) => n.to_owned(),
            None => local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        self.check_name(&name)?;
        let remote = format!("{}/{name}", self.dir);
        let io = |source| UploadError::Io {
            path: local.to_owned(),
            source,
        };
        let mut f = tokio::fs::File::open(local).await.map_err(io)?;
        let size = f.metadata().await.map_err(io)?.len();
        let mut offset: u64 = 0;
        let mut resumes = 0u32;
        let mut buf = vec![0u8; self.opts.blocksize.max(1)];
        let mut first = true;
        loop {
            let n = read_full(&mut f, &mut buf).await.map_err(io)?;
            if n == 0 && !first {
                break;
            }
            first = false;
            let chunk = Bytes::copy_from_slice(&buf[..n]);
            match self.send_chunk(&remote, &name, chunk, offset).await {
                Ok(()) => offset += n as u64,
                Err(UploadError::Hub { source, .. })
                    if is_unreachable(&source) && resumes < self.opts.resume_attempts =>
                {
                    resumes += 1;
                    offset = self.resume_point(local, &name, &remote).await?;
                    warn!(remote, offset, "upload interrupted; resuming");
                    f.seek(std::io::SeekFrom::Start(offset)).await.map_err(io)?;
                    first = offset == 0;
                }
                Err(e) => return Err(e),
            }
        }
        if offset != size {
            warn!(path = %local.display(), size, uploaded = offset, "local file changed size during upload");
        }
        let verify = if resumes > 0 {
            Some(self.opts.verify.name())
        } else {
            None
        };
        let info = self
            .session
            .check_upload(&self.dir, &name, verify)
            .await
            .map_err(|source| UploadError::Hub {
                remote: remote.clone(),
                source,
            })?
            .ok_or_else(|| UploadError::Verify {
                remote: remote.clone(),
                msg: "checkUpload: the file is missing on the hub".into(),
            })?;
        let hub_size = info.get("size").and_then(value_u64);
        if hub_size != Some(offset) {
            return Err(UploadError::Verify {
                remote,
                msg: format!("uploaded file is wrong length: {hub_size:?} != {offset}"),
            });
        }
        if resumes > 0 {
            let local_sum = file_digest(local, offset, self.opts.verify)
                .await
                .map_err(io)?;
            let hub_sum = info
                .get("hexdigest")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if hub_sum != local_sum {
                return Err(UploadError::Verify {
                    remote,
                    msg: format!("uploaded file has wrong checksum: {hub_sum} != {local_sum}"),
                });
            }
        }
        debug!(remote, size = offset, resumes, "upload complete");
        Ok(UploadSummary {
            relpath: remote,
            size: offset,
            resumes,
        })
    }

    /// Upload bytes held in memory as `name`.
    pub async fn upload_bytes(
        &self,
        data: &[u8],
        name: &str,
    ) -> Result<UploadSummary, UploadError> {
        self.check_name(name)?;
        let remote = format!("{}/{name}", self.dir);
        let mut offset = 0usize;
        let bs = self.opts.blocksize.max(1);
        loop {
            let end = (offset + bs).min(data.len());
            self.send_chunk(
                &remote,
                name,
                Bytes::copy_from_slice(&data[offset..end]),
                offset as u64,
            )
            .await?;
            offset = end;
            if offset >= data.len() {
                break;
            }
        }
        let info = self
            .session
            .check_upload(&self.dir, name, None)
            .await
            .map_err(|source| UploadError::Hub {
                remote: remote.clone(),
                source,
            })?;
        let hub_size = info
            .as_ref()
            .and_then(|i| i.get("size"))
            .and_then(value_u64);
        if hub_size != Some(data.len() as u64) {
            return Err(UploadError::Verify {
                remote,
                msg: format!(
                    "uploaded file is wrong length: {hub_size:?} != {}",
                    data.len()
                ),
            });
        }
        Ok(UploadSummary {
            relpath: remote,
            size: data.len() as u64,
            resumes: 0,
        })
    }

    async fn send_chunk(
        &self,
        remote: &str,
        name: &str,
        chunk: Bytes,
        offset: u64,
    ) -> Result<(), UploadError> {
        let len = chunk.len();
        let digest = self.opts.verify.digest(&chunk);
        let r = self
            .session
            .raw_upload(
                chunk,
                offset as i64,
                &self.dir,
                name,
                self.opts.verify.name(),
                true,
            )
            .await
            .map_err(|source| UploadError::Hub {
                remote: remote.to_owned(),
                source,
            })?;
        let size = r.get("size").and_then(value_u64);
        if size != Some(len as u64) {
            return Err(UploadError::Verify {
                remote: remote.to_owned(),
                msg: format!(
                    "server returned wrong chunk size at offset {offset}: {size:?} != {len}"
                ),
            });
        }
        let hex = r
            .get("hexdigest")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if hex != digest {
            return Err(UploadError::Verify {
                remote: remote.to_owned(),
                msg: format!("upload checksum failed at offset {offset}: {hex} != {digest}"),
            });
        }
        Ok(())
    }

    /// Where to continue after an interrupted upload: the hub's size when its
    /// checksum matches our prefix, else 0.
    async fn resume_point(
        &self,
        local: &Path,
        name: &str,
        remote: &str,
    ) -> Result<u64, UploadError> {
        let info = self
            .session
            .check_upload(&self.dir, name, Some(self.opts.verify.name()))
            .await
            .map_err(|source| UploadError::Hub {
                remote: remote.to_owned(),
                source,
            })?;
        let Some(info) = info else { return Ok(0) };
        let Some(hub_size) = info.get("size").and_then(value_u64) else {
            return Ok(0);
        };
        let local_len = tokio::fs::metadata(local)
            .await
            .map_err(|source| UploadError::Io {
                path: local.to_owned(),
                source,
            })?
            .len();
        if hub_size > local_len {
            return Ok(0);
        }
        let ours = file_digest(local, hub_size, self.opts.verify)
            .await
            .map_err(|source| UploadError::Io {
                path: local.to_owned(),
                source,
            })?;
        let theirs = info
            .get("hexdigest")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(if ours == theirs { hub_size } else { 0 })
    }

    /// Incremental upload state for a log file.
    pub fn log_sync(&self, local: impl Into<PathBuf>, name: impl Into<String>) -> LogSync {
        LogSync {
            uploader: self.clone(),
            local: local.into(),
            name: name.into(),
            offset: 0,
            inode: None,
        }
    }
}

fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        // checkUpload sizes may come as strings on some hubs (koji.encode_int)
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

async fn read_full(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..]).await?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}

/// Digest of the first `len` bytes of a file.
async fn file_digest(path: &Path, len: u64, verify: Verify) -> std::io::Result<String> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut a = Hasher::new(verify);
    let mut left = len;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = f.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        a.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(a.hex())
}

/// Incremental upload of a growing log (koji `incremental_upload`).
#[derive(Debug)]
pub struct LogSync {
    uploader: Uploader,
    local: PathBuf,
    name: String,
    offset: u64,
    inode: Option<u64>,
}

impl LogSync {
    /// Bytes uploaded so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Upload what was appended since the last call (everything again when the
    /// file shrank or was replaced). A missing file is not an error (not yet written).
    pub async fn sync(&mut self) -> Result<(), UploadError> {
        use std::os::unix::fs::MetadataExt;
        let io = |source| UploadError::Io {
            path: self.local.clone(),
            source,
        };
        let meta = match tokio::fs::metadata(&self.local).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        if self.inode.is_some_and(|i| i != meta.ino()) || meta.len() < self.offset {
            self.offset = 0;
        }
        self.inode = Some(meta.ino());
        if meta.len() == self.offset {
            return Ok(());
        }
        let mut f = tokio::fs::File::open(&self.local).await.map_err(io)?;
        f.seek(std::io::SeekFrom::Start(self.offset))
            .await
            .map_err(io)?;
        let mut buf = vec![0u8; LOG_CHUNK];
        let remote = format!("{}/{}", self.uploader.dir, self.name);
        loop {
            let n = read_full(&mut f, &mut buf).await.map_err(io)?;
            if n == 0 {
                return Ok(());
            }
            let chunk = Bytes::copy_from_slice(&buf[..n]);
            let mut tries = 0;
            loop {
                match self
                    .uploader
                    .send_chunk(&remote, &self.name, chunk.clone(), self.offset)
                    .await
                {
                    Ok(()) => break,
                    Err(UploadError::Verify { msg, .. })
                        if tries < self.uploader.opts.log_retries =>
                    {
                        tries += 1;
                        warn!(remote, msg, "log chunk did not verify; retrying");
                        tokio::time::sleep(self.uploader.opts.log_retry_pause).await;
                    }
                    Err(UploadError::Verify { msg, .. }) => {
                        // koji logs and moves on, leaving a hole rather than stalling the task
                        warn!(
                            remote,
                            offset = self.offset,
                            msg,
                            "giving up on a log chunk"
                        );
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            self.offset += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_digest() {
        assert_eq!(
            super::Verify::Sha256.digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn adler32_like_koji() {
        // zlib.adler32(b"hello") == 0x062c0215
        assert_eq!(super::adler32_hex(b"hello"), "062c0215");
        assert_eq!(super::adler32_hex(b""), "00000001");
    }
}
