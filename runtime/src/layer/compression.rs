//! Layer media types and the decompression pipeline.
//!
//! Decompression (the slowest stage: ~200-300 MB/s for gzip on one core) runs in its
//! own thread and hands large chunks of the uncompressed tar stream to the applier
//! through a bounded channel; buffers are recycled through a second channel. The
//! receiving side ([`ChunkStream`]) hashes every chunk as it arrives, so the diff_id
//! check costs one pass of sha256 over memory that is already hot.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// How a layer blob is compressed; decided by its media type, never by sniffing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression of a layer media type, or `None` if it is not a layer type we
    /// can apply.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        Some(match mt {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
            _ => return None,
        })
    }
}

/// Size of the chunks handed from the decompressor to the applier.
pub const CHUNK: usize = 1 << 20;
/// Chunks in flight between the two threads.
const DEPTH: usize = 8;

/// The receiving end of the pipeline: the uncompressed tar stream, hashed and counted.
pub struct ChunkStream {
    rx: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    hasher: Sha256,
    total: u64,
    limit: u64,
    eof: bool,
    worker: Option<JoinHandle<()>>,
}

/// Error kind used when the uncompressed stream exceeds the configured size cap.
pub const LIMIT_MSG: &str = "uncompressed layer exceeds the size limit";

impl ChunkStream {
    /// Start decompressing `file` in a background thread. `limit` caps the size of the
    /// uncompressed stream (a gzip bomb stops there).
    pub fn spawn(file: File, compression: Compression, limit: u64) -> io::Result<ChunkStream> {
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
        let (recycle, spare) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let worker = std::thread::Builder::new()
            .name("layer-decompress".into())
            .spawn(move || {
                let res = match compression {
                    Compression::None => pump(file, &tx, &spare),
                    Compression::Gzip => {
                        pump_gzip(BufReader::with_capacity(CHUNK, file), &tx, &spare)
                    }
                    Compression::Zstd => {
                        match zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
                            CHUNK, file,
                        )) {
                            Ok(d) => pump(d, &tx, &spare),
                            Err(e) => Err(e),
                        }
                    }
                };
                if let Err(e) = res {
                    let _ = tx.send(Err(e));
                }
            })?;
        Ok(ChunkStream {
            rx,
            recycle,
            cur: Vec::new(),
            pos: 0,
            hasher: Sha256::new(),
            total: 0,
            limit,
            eof: false,
            worker: Some(worker),
        })
    }

    /// Load the next chunk; false at the end of the stream.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        match self.rx.recv() {
            Ok(Ok(chunk)) => {
                self.total += chunk.len() as u64;
                if self.total > self.limit {
                    return Err(io::Error::other(format!(
                        "{LIMIT_MSG} of {} bytes",
                        self.limit
                    )));
                }
                self.hasher.update(&chunk);
                let old = std::mem::replace(&mut self.cur, chunk);
                if old.capacity() >= CHUNK {
                    let _ = self.recycle.try_send(old);
                }
                self.pos = 0;
                Ok(true)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // The worker hung up: the stream ended.
                self.eof = true;
                Ok(false)
            }
        }
    }

    /// The bytes available now (at least one unless at the end of the stream).
    fn available(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.cur.len() {
            if !self.next_chunk()? {
                return Ok(&[]);
            }
        }
        Ok(&self.cur[self.pos..])
    }

    /// Fill `out` completely. Returns false if the stream ended before the first byte;
    /// ending in the middle is an error.
    pub fn read_block(&mut self, out: &mut [u8]) -> io::Result<bool> {
        let mut filled = 0;
        while filled < out.len() {
            let avail = self.available()?;
            if avail.is_empty() {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tar stream ends inside a header",
                ));
            }
            let n = avail.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&avail[..n]);
            self.pos += n;
            filled += n;
        }
        Ok(true)
    }

    /// Pass the next `len` bytes to `f` in slices (no copy).
    pub fn for_each_slice(
        &mut self,
        mut len: u64,
        mut f: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        while len > 0 {
            let avail = self.available()?;
            if avail.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tar stream ends inside an entry's data",
                ));
            }
            let n = (avail.len() as u64).min(len) as usize;
            f(&avail[..n])?;
            self.pos += n;
            len -= n as u64;
        }
        Ok(())
    }

    /// Read the next `len` bytes into a vector.
    pub fn read_vec(&mut self, len: u64) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(len.min(1 << 20) as usize);
        self.for_each_slice(len, |s| {
            v.extend_from_slice(s);
            Ok(())
        })?;
        Ok(v)
    }

    /// Skip `len` bytes.
    pub fn skip(&mut self, len: u64) -> io::Result<()> {
        self.for_each_slice(len, |_| Ok(()))
    }

    /// Consume (and hash) everything left: tar writers pad archives with zero blocks
    /// after the end marker, and the diff_id covers them.
    pub fn drain(&mut self) -> io::Result<()> {
        self.pos = self.cur.len();
        while self.next_chunk()? {
            self.pos = self.cur.len();
        }
        Ok(())
    }

    /// Finish: wait for the decompressor and return the digest and size of the whole
    /// uncompressed stream. Call after [`ChunkStream::drain`].
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        self.drain()?;
        if let Some(w) = self.worker.take() {
            w.join()
                .map_err(|_| io::Error::other("the decompression thread panicked"))?;
        }
        let hasher = std::mem::take(&mut self.hasher);
        Ok((Digest::from_hasher(hasher), self.total))
    }
}

impl Drop for ChunkStream {
    fn drop(&mut self) {
        // Unblock and reap the worker if we stop early (an error in the applier).
        if let Some(w) = self.worker.take() {
            let (_tx, rx) = sync_channel(0);
            drop(std::mem::replace(&mut self.rx, rx));
            let _ = w.join();
        }
    }
}

/// A chunk buffer: a recycled one (its old bytes are overwritten, not zeroed again)
/// or a new one.
fn take_buffer(spare: &Receiver<Vec<u8>>) -> Vec<u8> {
    let mut b = match spare.try_recv() {
        Ok(b) => b,
        Err(TryRecvError::Empty | TryRecvError::Disconnected) => Vec::with_capacity(CHUNK),
    };
    b.resize(CHUNK, 0);
    b
}

/// Read `r` to the end in chunks; stops quietly if the receiver is gone.
fn pump(
    mut r: impl Read,
    tx: &SyncSender<io::Result<Vec<u8>>>,
    spare: &Receiver<Vec<u8>>,
) -> io::Result<()> {
    loop {
        let mut buf = take_buffer(spare);
        let mut filled = 0;
        while filled < CHUNK {
            match r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        let done = filled < CHUNK;
        if filled > 0 && tx.send(Ok(buf)).is_err() {
            return Ok(());
        }
        if done {
            return Ok(());
        }
    }
}

/// Gzip with several members (pigz -i, concatenated files) and tolerated trailing
/// zero padding; anything else after the last member is an error.
fn pump_gzip(
    mut src: BufReader<File>,
    tx: &SyncSender<io::Result<Vec<u8>>>,
    spare: &Receiver<Vec<u8>>,
) -> io::Result<()> {
    let mut first = true;
    loop {
        let head = src.fill_buf()?;
        if head.is_empty() {
            if first {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "gzip layer blob is empty",
                ));
            }
            return Ok(());
        }
        if !first && head[0] == 0 {
            // Trailing NUL padding: must be zeros to the end.
            loop {
                let buf = src.fill_buf()?;
                if buf.is_empty() {
                    return Ok(());
                }
                if buf.iter().any(|&b| b != 0) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "garbage after the end of the gzip stream",
                    ));
                }
                let n = buf.len();
                src.consume(n);
            }
        }
        if !first && head[0] != 0x1f {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "garbage after the end of the gzip stream",
            ));
        }
        first = false;
        let dec = flate2::bufread::GzDecoder::new(&mut src);
        pump(dec, tx, spare)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn stream_of(bytes: &[u8], c: Compression) -> io::Result<(Vec<u8>, Digest)> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        use std::io::Seek;
        f.rewind().unwrap();
        let mut s = ChunkStream::spawn(f, c, u64::MAX)?;
        let mut out = Vec::new();
        let mut block = [0u8; 100];
        loop {
            let avail = s.available()?.len();
            if avail == 0 {
                break;
            }
            let n = avail.min(100);
            s.read_block(&mut block[..n])?;
            out.extend_from_slice(&block[..n]);
        }
        let (d, total) = s.finish()?;
        assert_eq!(total, out.len() as u64);
        Ok((out, d))
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn media_types() {
        use Compression::*;
        let m = Compression::from_media_type;
        assert_eq!(m("application/vnd.oci.image.layer.v1.tar"), Some(None));
        assert_eq!(m("application/vnd.oci.image.layer.v1.tar+gzip"), Some(Gzip));
        assert_eq!(
            m("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Gzip)
        );
        assert_eq!(m("application/vnd.oci.image.layer.v1.tar+zstd"), Some(Zstd));
        assert_eq!(m("application/vnd.oci.image.config.v1+json"), Option::None);
    }

    #[test]
    fn all_three_compressions_round_trip() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let want = Digest::of(&data);
        let (out, d) = stream_of(&data, Compression::None).unwrap();
        assert_eq!((out.len(), &d), (data.len(), &want));
        let (out, d) = stream_of(&gz(&data), Compression::Gzip).unwrap();
        assert_eq!((out.len(), &d), (data.len(), &want));
        let z = zstd::encode_all(&data[..], 3).unwrap();
        let (out, d) = stream_of(&z, Compression::Zstd).unwrap();
        assert_eq!((out, d), (data, want));
    }

    #[test]
    fn gzip_members_and_padding() {
        let mut two = gz(b"hello ");
        two.extend(gz(b"world"));
        two.extend([0u8; 1024]);
        let (out, _) = stream_of(&two, Compression::Gzip).unwrap();
        assert_eq!(out, b"hello world");
        let mut bad = gz(b"hello");
        bad.extend(b"junk");
        let e = stream_of(&bad, Compression::Gzip).unwrap_err();
        assert!(e.to_string().contains("garbage"), "{e}");
        let mut bad = gz(b"hello");
        bad.extend([0, 0, 1]);
        let e = stream_of(&bad, Compression::Gzip).unwrap_err();
        assert!(e.to_string().contains("garbage"), "{e}");
        let e = stream_of(&[], Compression::Gzip).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let corrupt = {
            let mut g = gz(&[5u8; 10000]);
            let n = g.len();
            g[n - 6] ^= 0xff; // CRC
            g
        };
        assert!(stream_of(&corrupt, Compression::Gzip).is_err());
    }

    #[test]
    fn size_limit_stops_bombs() {
        let data = vec![0u8; 4 * CHUNK];
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&gz(&data)).unwrap();
        use std::io::Seek;
        f.rewind().unwrap();
        let mut s = ChunkStream::spawn(f, Compression::Gzip, CHUNK as u64).unwrap();
        let e = s.skip(2 * CHUNK as u64).unwrap_err();
        assert!(e.to_string().contains(LIMIT_MSG), "{e}");
    }
}
