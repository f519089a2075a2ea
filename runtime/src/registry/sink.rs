//! Where a blob download goes: `ingest/<hex>.partial`, written and hashed on a
//! blocking thread fed through a channel, so the network side never waits on the disk.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::RegistryError;
use crate::digest::Digest;

/// Where a download goes: hashing and writing happen in a blocking thread fed
/// through a channel, so the network side never waits on the disk.
pub(super) struct BlobSink {
    tx: Option<tokio::sync::mpsc::Sender<SinkMsg>>,
    worker: Option<tokio::task::JoinHandle<Result<(Sha256, u64), RegistryError>>>,
    path: PathBuf,
    pub(super) len: u64,
}

enum SinkMsg {
    Data(bytes::Bytes),
    Reset,
}

impl BlobSink {
    /// Open `path` for appending; an existing partial file is re-hashed so the
    /// download can resume after it.
    pub(super) async fn open(path: PathBuf, size: u64) -> Result<BlobSink, RegistryError> {
        let p = path.clone();
        let (file, hasher, len) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)?;
            let mut h = Sha256::new();
            let mut len = f.metadata()?.len();
            if len > size {
                f.set_len(0)?;
                len = 0;
            } else if len > 0 {
                let mut buf = vec![0u8; 1 << 20];
                let mut r = &f;
                loop {
                    let n = r.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
            f.seek(SeekFrom::End(0))?;
            Ok((f, h, len))
        })
        .await
        .map_err(|e| RegistryError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| RegistryError::Io {
            path: path.clone(),
            source,
        })?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<SinkMsg>(64);
        let wpath = path.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let mut f = file;
            let mut h = hasher;
            let mut n = len;
            let io = |source| RegistryError::Io {
                path: wpath.clone(),
                source,
            };
            while let Some(m) = rx.blocking_recv() {
                match m {
                    SinkMsg::Data(b) => {
                        h.update(&b);
                        f.write_all(&b).map_err(io)?;
                        n += b.len() as u64;
                    }
                    SinkMsg::Reset => {
                        f.set_len(0).map_err(io)?;
                        f.seek(SeekFrom::Start(0)).map_err(io)?;
                        h = Sha256::new();
                        n = 0;
                    }
                }
            }
            Ok((h, n))
        });
        Ok(BlobSink {
            tx: Some(tx),
            worker: Some(worker),
            path,
            len,
        })
    }

    async fn send(&mut self, m: SinkMsg) -> Result<(), RegistryError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(m).await.is_ok(),
            None => false,
        };
        if !sent {
            // The writer stopped: collect its error.
            self.tx = None;
            return match self.worker.take() {
                Some(w) => match w.await {
                    Ok(Err(e)) => Err(e),
                    _ => Err(RegistryError::Io {
                        path: self.path.clone(),
                        source: std::io::Error::other("the blob writer stopped"),
                    }),
                },
                None => Err(RegistryError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other("the blob writer stopped"),
                }),
            };
        }
        Ok(())
    }

    pub(super) async fn write(&mut self, b: bytes::Bytes) -> Result<(), RegistryError> {
        let n = b.len() as u64;
        self.send(SinkMsg::Data(b)).await?;
        self.len += n;
        Ok(())
    }

    pub(super) async fn reset(&mut self) -> Result<(), RegistryError> {
        self.send(SinkMsg::Reset).await?;
        self.len = 0;
        Ok(())
    }

    pub(super) async fn finish(mut self) -> Result<(Digest, u64), RegistryError> {
        self.tx = None;
        let w = self.worker.take();
        let (h, n) = match w {
            Some(w) => w.await.map_err(|e| RegistryError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })??,
            None => {
                return Err(RegistryError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other("the blob writer stopped"),
                })
            }
        };
        Ok((Digest::from_hasher(h), n))
    }

    /// Stop; keep the partial file for a later resume, or remove it.
    pub(super) async fn abandon(mut self, keep: bool) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.await;
        }
        if !keep {
            let _ = tokio::fs::remove_file(&self.path).await;
        }
    }
}
