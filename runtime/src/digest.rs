//! Content digests (`sha256:<64 hex>`), the identity of every blob in the store.
//!
//! Only sha256 is accepted: it is what every registry and image builder produces, and
//! the OCI image-spec makes it the one algorithm implementations MUST support.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A validated `sha256:` digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest {0:?} has no algorithm prefix (want sha256:<64 hex digits>)")]
    NoAlgorithm(String),
    #[error("digest {0:?} uses an unsupported algorithm (only sha256 is supported)")]
    Algorithm(String),
    #[error("digest {0:?} is malformed (want sha256:<64 lowercase hex digits>)")]
    Malformed(String),
}

impl Digest {
    /// Parse `sha256:<hex>`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::NoAlgorithm(s.to_owned()));
        };
        if alg != "sha256" {
            return Err(DigestError::Algorithm(s.to_owned()));
        }
        Digest::from_hex(hex).map_err(|_| DigestError::Malformed(s.to_owned()))
    }

    /// From the 64 lowercase hex digits of a sha256 sum.
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Malformed(format!("sha256:{hex}")));
        }
        Ok(Digest {
            hex: hex.to_owned(),
        })
    }

    /// The sha256 of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(data))
    }

    /// Finish a running sha256.
    pub fn from_hasher(h: Sha256) -> Digest {
        Digest {
            hex: hex::encode(h.finalize()),
        }
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, for messages and listings.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// ChainID of a layer stack (image-spec `config.md`):
/// `ChainID(L0) = DiffID(L0)`, `ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))`.
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    let mut it = diff_ids.iter();
    let mut chain = it.next()?.clone();
    for d in it {
        chain = Digest::of(format!("{chain} {d}").as_bytes());
    }
    Some(chain)
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// The digest of everything read, and the inner reader.
    pub fn finish(self) -> (Digest, u64, R) {
        (Digest::from_hasher(self.hasher), self.count, self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest::from_hasher(self.hasher), self.count, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_rejects() {
        let d = Digest::parse(&format!("sha256:{EMPTY}")).unwrap();
        assert_eq!(d.hex(), EMPTY);
        assert_eq!(d.to_string(), format!("sha256:{EMPTY}"));
        assert_eq!(d, Digest::of(b""));
        assert!(matches!(
            Digest::parse(EMPTY),
            Err(DigestError::NoAlgorithm(_))
        ));
        assert!(matches!(
            Digest::parse(&format!("sha512:{EMPTY}")),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(
            Digest::parse(&format!("sha256:{}", EMPTY.to_uppercase())),
            Err(DigestError::Malformed(_))
        ));
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse("sha256:../../../../etc/passwd").is_err());
    }

    #[test]
    fn chain_id_follows_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let ab = Digest::of(format!("{a} {b}").as_bytes());
        assert_eq!(chain_id(&[a, b]), Some(ab));
    }

    #[test]
    fn hashing_reader_and_writer_agree() {
        let data = vec![7u8; 100_000];
        let mut r = HashingReader::new(&data[..]);
        let mut w = HashingWriter::new(Vec::new());
        std::io::copy(&mut r, &mut w).unwrap();
        let (dr, nr, _) = r.finish();
        let (dw, nw, out) = w.finish();
        assert_eq!((dr.clone(), nr), (dw, nw));
        assert_eq!(dr, Digest::of(&data));
        assert_eq!(out, data);
    }
}
