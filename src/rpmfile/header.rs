//! The rpm file format's headers (lead, signature header, main header), read with
//! every offset and size checked: an rpm from a hub, a repo or a build is input
//! like any other. Limits are librpm's (`hdrchkTags`, `hdrchkData`): at most 65535
//! index entries and 256 MiB of data per header.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Lead size (rpm v3 lead).
const LEAD_SIZE: usize = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 3] = [0x8e, 0xad, 0xe8];
/// librpm `hdrchkTags`: more index entries than this is a corrupt header.
const MAX_ENTRIES: u32 = 0xffff;
/// librpm `hdrchkData` (`HEADER_DATA_MAX`).
const MAX_DATA: u32 = 0x0fff_ffff;

/// Tag numbers used by koji-adjutant (`rpmtag.h`).
#[allow(missing_docs)]
pub mod tag {
    pub const NAME: u32 = 1000;
    pub const VERSION: u32 = 1001;
    pub const RELEASE: u32 = 1002;
    pub const EPOCH: u32 = 1003;
    pub const SUMMARY: u32 = 1004;
    pub const DESCRIPTION: u32 = 1005;
    pub const BUILDTIME: u32 = 1006;
    pub const SIZE: u32 = 1009;
    pub const DISTRIBUTION: u32 = 1010;
    pub const VENDOR: u32 = 1011;
    pub const LICENSE: u32 = 1014;
    pub const PACKAGER: u32 = 1015;
    pub const GROUP: u32 = 1016;
    pub const URL: u32 = 1020;
    pub const ARCH: u32 = 1022;
    pub const PREIN: u32 = 1023;
    pub const POSTIN: u32 = 1024;
    pub const PREUN: u32 = 1025;
    pub const POSTUN: u32 = 1026;
    pub const FILESIZES: u32 = 1028;
    pub const FILESTATES: u32 = 1029;
    pub const FILEMODES: u32 = 1030;
    pub const FILERDEVS: u32 = 1033;
    pub const FILEMTIMES: u32 = 1034;
    pub const FILEDIGESTS: u32 = 1035;
    pub const FILEFLAGS: u32 = 1037;
    pub const FILEUSERNAME: u32 = 1039;
    pub const FILEGROUPNAME: u32 = 1040;
    pub const SOURCERPM: u32 = 1044;
    pub const FILEVERIFYFLAGS: u32 = 1045;
    pub const PROVIDENAME: u32 = 1047;
    pub const REQUIREFLAGS: u32 = 1048;
    pub const REQUIRENAME: u32 = 1049;
    pub const REQUIREVERSION: u32 = 1050;
    pub const CONFLICTFLAGS: u32 = 1053;
    pub const CONFLICTNAME: u32 = 1054;
    pub const CONFLICTVERSION: u32 = 1055;
    pub const EXCLUDEARCH: u32 = 1059;
    pub const EXCLUSIVEARCH: u32 = 1061;
    pub const FILEINODES: u32 = 1096;
    pub const SOURCEPACKAGE: u32 = 1106;
    pub const PROVIDEFLAGS: u32 = 1112;
    pub const PROVIDEVERSION: u32 = 1113;
    pub const OBSOLETENAME: u32 = 1090;
    pub const OBSOLETEFLAGS: u32 = 1114;
    pub const OBSOLETEVERSION: u32 = 1115;
    pub const BUILDARCHS: u32 = 1089;
    pub const DIRINDEXES: u32 = 1116;
    pub const BASENAMES: u32 = 1117;
    pub const DIRNAMES: u32 = 1118;
    pub const LONGFILESIZES: u32 = 5008;
    /// In the signature header: MD5 of header+payload (koji's `sigmd5`, the
    /// `payloadhash`).
    pub const SIG_MD5: u32 = 1004;
}

/// Data types of index entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RPM_NULL_TYPE
    Null,
    /// RPM_CHAR_TYPE
    Char,
    /// RPM_INT8_TYPE
    Int8,
    /// RPM_INT16_TYPE
    Int16,
    /// RPM_INT32_TYPE
    Int32,
    /// RPM_INT64_TYPE
    Int64,
    /// RPM_STRING_TYPE
    String,
    /// RPM_BIN_TYPE
    Bin,
    /// RPM_STRING_ARRAY_TYPE
    StringArray,
    /// RPM_I18NSTRING_TYPE
    I18nString,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            0 => Kind::Null,
            1 => Kind::Char,
            2 => Kind::Int8,
            3 => Kind::Int16,
            4 => Kind::Int32,
            5 => Kind::Int64,
            6 => Kind::String,
            7 => Kind::Bin,
            8 => Kind::StringArray,
            9 => Kind::I18nString,
            _ => return None,
        })
    }

    fn width(self) -> usize {
        match self {
            Kind::Int16 => 2,
            Kind::Int32 => 4,
            Kind::Int64 => 8,
            _ => 1,
        }
    }
}

/// Why an rpm could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RpmError {
    /// Reading the file failed.
    #[error("read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a well-formed rpm.
    #[error("{}: not a valid rpm: {msg}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: Kind,
    offset: usize,
    count: usize,
    /// Bytes the data takes in the store (checked at parse time).
    len: usize,
}

/// One header: index entries by tag and the data store.
#[derive(Debug, Clone, Default)]
pub struct Header {
    entries: BTreeMap<u32, Entry>,
    store: Vec<u8>,
}

fn nul_strings(data: &[u8], count: usize) -> Option<usize> {
    // length in bytes of `count` NUL-terminated strings at the start of `data`
    let mut pos = 0;
    for _ in 0..count {
        let end = data.get(pos..)?.iter().position(|b| *b == 0)?;
        pos += end + 1;
    }
    Some(pos)
}

impl Header {
    /// Parse a header (magic, index, store) from `r`; `what` names it in errors.
    fn read(r: &mut impl Read, path: &Path, what: &str) -> Result<(Header, usize), RpmError> {
        let bad = |msg: String| RpmError::Invalid {
            path: path.to_owned(),
            msg: format!("{what}: {msg}"),
        };
        let mut intro = [0u8; 16];
        read_exact(r, &mut intro, path, what)?;
        if intro[..3] != HEADER_MAGIC || intro[3] != 1 {
            return Err(bad("bad header magic".into()));
        }
        let nindex = u32::from_be_bytes([intro[8], intro[9], intro[10], intro[11]]);
        let hsize = u32::from_be_bytes([intro[12], intro[13], intro[14], intro[15]]);
        if nindex == 0 || nindex > MAX_ENTRIES {
            return Err(bad(format!("{nindex} index entries")));
        }
        if hsize > MAX_DATA {
            return Err(bad(format!("{hsize} bytes of header data")));
        }
        let mut index = vec![0u8; nindex as usize * 16];
        read_exact(r, &mut index, path, what)?;
        let mut store = vec![0u8; hsize as usize];
        read_exact(r, &mut store, path, what)?;
        let mut entries = BTreeMap::new();
        for e in index.chunks_exact(16) {
            let t = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let ty = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            let off = i32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            let count = u32::from_be_bytes([e[12], e[13], e[14], e[15]]);
            // region tags (HEADERSIGNATURES 62, HEADERIMMUTABLE 63, HEADERI18NTABLE is
            // data) describe the header itself; their trailers are not needed here
            if (61..=63).contains(&t) {
                continue;
            }
            let kind = Kind::from_u32(ty).ok_or_else(|| bad(format!("tag {t}: type {ty}")))?;
            let offset = usize::try_from(off)
                .ok()
                .filter(|o| *o <= store.len())
                .ok_or_else(|| bad(format!("tag {t}: offset {off} outside the store")))?;
            let count = count as usize;
            if count == 0 || count > store.len().max(1) {
                return Err(bad(format!("tag {t}: count {count}")));
            }
            if offset % kind.width() != 0 {
                return Err(bad(format!("tag {t}: misaligned offset {offset}")));
            }
            let len = match kind {
                Kind::Null => 0,
                Kind::String => nul_strings(&store[offset..], 1)
                    .filter(|_| count == 1)
                    .ok_or_else(|| bad(format!("tag {t}: unterminated string")))?,
                Kind::StringArray | Kind::I18nString => nul_strings(&store[offset..], count)
                    .ok_or_else(|| bad(format!("tag {t}: unterminated strings")))?,
                k => count
                    .checked_mul(k.width())
                    .filter(|l| offset + l <= store.len())
                    .ok_or_else(|| bad(format!("tag {t}: data past the store")))?,
            };
            entries.insert(
                t,
                Entry {
                    kind,
                    offset,
                    count,
                    len,
                },
            );
        }
        Ok((Header { entries, store }, 16 + index.len() + hsize as usize))
    }

    /// Is `tag` present?
    pub fn has(&self, tag: u32) -> bool {
        self.entries.contains_key(&tag)
    }

    fn data(&self, e: &Entry) -> &[u8] {
        &self.store[e.offset..e.offset + e.len]
    }

    /// The raw strings of a STRING, STRING_ARRAY or I18NSTRING tag.
    pub fn raw_strings(&self, tag: u32) -> Option<Vec<&[u8]>> {
        let e = self.entries.get(&tag)?;
        match e.kind {
            Kind::String | Kind::StringArray | Kind::I18nString => {
                Some(self.data(e).split(|b| *b == 0).take(e.count).collect())
            }
            _ => None,
        }
    }

    /// A string tag (the first string of an I18NSTRING: the C locale's).
    pub fn string(&self, tag: u32) -> Option<String> {
        self.raw_strings(tag)
            .and_then(|v| v.first().map(|s| String::from_utf8_lossy(s).into_owned()))
    }

    /// A string-array tag (empty when absent).
    pub fn strings(&self, tag: u32) -> Vec<String> {
        self.raw_strings(tag)
            .unwrap_or_default()
            .into_iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    /// An integer tag of any width, as unsigned values (librpm's `rpmtdGetNumber`);
    /// empty when absent.
    pub fn ints(&self, tag: u32) -> Vec<u64> {
        let Some(e) = self.entries.get(&tag) else {
            return Vec::new();
        };
        let d = self.data(e);
        match e.kind {
            Kind::Char | Kind::Int8 => d.iter().map(|b| u64::from(*b)).collect(),
            Kind::Int16 => d
                .chunks_exact(2)
                .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
                .collect(),
            Kind::Int32 => d
                .chunks_exact(4)
                .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            Kind::Int64 => d
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The first value of an integer tag.
    pub fn int(&self, tag: u32) -> Option<u64> {
        self.ints(tag).first().copied()
    }

    /// A BIN tag.
    pub fn bin(&self, tag: u32) -> Option<&[u8]> {
        let e = self.entries.get(&tag)?;
        (e.kind == Kind::Bin).then(|| self.data(e))
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], path: &Path, what: &str) -> Result<(), RpmError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            RpmError::Invalid {
                path: path.to_owned(),
                msg: format!("{what}: truncated"),
            }
        } else {
            RpmError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    })
}

/// An rpm's headers (the payload is not read).
#[derive(Debug, Clone)]
pub struct RpmHeaders {
    /// The signature header.
    pub signature: Header,
    /// The main header.
    pub main: Header,
}

impl RpmHeaders {
    /// Read the headers of the rpm at `path`.
    pub fn open(path: &Path) -> Result<RpmHeaders, RpmError> {
        let f = std::fs::File::open(path).map_err(|e| RpmError::Io {
            path: path.to_owned(),
            source: e,
        })?;
        RpmHeaders::read(&mut std::io::BufReader::new(f), path)
    }

    /// Read from `r`; `path` names the source in errors.
    pub fn read(r: &mut impl Read, path: &Path) -> Result<RpmHeaders, RpmError> {
        let mut lead = [0u8; LEAD_SIZE];
        read_exact(r, &mut lead, path, "lead")?;
        if lead[..4] != LEAD_MAGIC {
            return Err(RpmError::Invalid {
                path: path.to_owned(),
                msg: "no rpm lead magic".into(),
            });
        }
        let (signature, sig_len) = Header::read(r, path, "signature header")?;
        let pad = (8 - sig_len % 8) % 8;
        let mut skip = [0u8; 8];
        read_exact(r, &mut skip[..pad], path, "signature padding")?;
        let (main, _) = Header::read(r, path, "header")?;
        Ok(RpmHeaders { signature, main })
    }

    /// `name`.
    pub fn name(&self) -> String {
        self.main.string(tag::NAME).unwrap_or_default()
    }

    /// `version`.
    pub fn version(&self) -> String {
        self.main.string(tag::VERSION).unwrap_or_default()
    }

    /// `release`.
    pub fn release(&self) -> String {
        self.main.string(tag::RELEASE).unwrap_or_default()
    }

    /// `epoch` (None when unset, as koji's `get_header_field`).
    pub fn epoch(&self) -> Option<i64> {
        self.main.int(tag::EPOCH).map(|e| e as i64)
    }

    /// The arch koji uses: `src` for a source package (`import_rpm`), else the ARCH
    /// tag.
    pub fn arch(&self) -> String {
        if self.is_source() {
            "src".into()
        } else {
            self.main.string(tag::ARCH).unwrap_or_default()
        }
    }

    /// koji's `sourcepackage` field: the SOURCEPACKAGE tag is set, or (old srpms) there
    /// is no SOURCERPM.
    pub fn is_source(&self) -> bool {
        self.main.has(tag::SOURCEPACKAGE) || !self.main.has(tag::SOURCERPM)
    }

    /// `SOURCERPM`.
    pub fn sourcerpm(&self) -> Option<String> {
        self.main.string(tag::SOURCERPM)
    }

    /// `N-V-R`.
    pub fn nvr(&self) -> String {
        format!("{}-{}-{}", self.name(), self.version(), self.release())
    }

    /// The file name koji expects: `N-V-R.<arch>.rpm` (`import_rpm`'s check).
    pub fn expected_filename(&self) -> String {
        format!("{}.{}.rpm", self.nvr(), self.arch())
    }

    /// The signature header's MD5 (koji's `sigmd5`) as hex: the `payloadhash`.
    pub fn payloadhash(&self) -> Option<String> {
        self.signature.bin(tag::SIG_MD5).map(hex::encode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a header by hand: (tag, type, count, data) entries.
    fn header(entries: &[(u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut store: Vec<u8> = Vec::new();
        for (t, ty, count, data) in entries {
            let w = match ty {
                3 => 2,
                4 => 4,
                5 => 8,
                _ => 1,
            };
            while store.len() % w != 0 {
                store.push(0);
            }
            index.extend_from_slice(&t.to_be_bytes());
            index.extend_from_slice(&ty.to_be_bytes());
            index.extend_from_slice(&(store.len() as u32).to_be_bytes());
            index.extend_from_slice(&count.to_be_bytes());
            store.extend_from_slice(data);
        }
        let mut out = vec![0x8e, 0xad, 0xe8, 1, 0, 0, 0, 0];
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(store.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(store);
        out
    }

    fn rpm(sig: Vec<u8>, main: Vec<u8>) -> Vec<u8> {
        let mut out = LEAD_MAGIC.to_vec();
        out.resize(LEAD_SIZE, 0);
        let pad = (8 - (sig.len()) % 8) % 8;
        out.extend(sig);
        out.extend(std::iter::repeat_n(0, pad));
        out.extend(main);
        out
    }

    #[test]
    fn reads_tags() {
        let sig = header(&[(1004, 7, 16, (0u8..16).collect())]);
        let main = header(&[
            (tag::NAME, 6, 1, b"hello\0".to_vec()),
            (tag::VERSION, 6, 1, b"1.0\0".to_vec()),
            (tag::RELEASE, 6, 1, b"1\0".to_vec()),
            (tag::EPOCH, 4, 1, 3u32.to_be_bytes().to_vec()),
            (tag::EXCLUSIVEARCH, 8, 2, b"x86_64\0noarch\0".to_vec()),
            (tag::FILEMODES, 3, 2, vec![0x81, 0xa4, 0x41, 0xed]),
            (tag::SOURCEPACKAGE, 4, 1, 1u32.to_be_bytes().to_vec()),
        ]);
        let bytes = rpm(sig, main);
        let h = RpmHeaders::read(&mut &bytes[..], Path::new("x.rpm")).unwrap();
        assert_eq!(h.nvr(), "hello-1.0-1");
        assert_eq!(h.epoch(), Some(3));
        assert!(h.is_source());
        assert_eq!(h.arch(), "src");
        assert_eq!(h.main.strings(tag::EXCLUSIVEARCH), ["x86_64", "noarch"]);
        assert_eq!(h.main.ints(tag::FILEMODES), [0o100644, 0o40755]);
        assert_eq!(h.payloadhash().unwrap(), "000102030405060708090a0b0c0d0e0f");
        assert!(h.main.strings(tag::BUILDARCHS).is_empty());
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        let good_sig = header(&[(1004, 7, 16, vec![0; 16])]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            // offset past the store
            ("offset", {
                let mut h = header(&[(tag::NAME, 6, 1, b"x\0".to_vec())]);
                h[16 + 8..16 + 12].copy_from_slice(&1000i32.to_be_bytes());
                h
            }),
            // negative offset
            ("negative", {
                let mut h = header(&[(tag::NAME, 6, 1, b"x\0".to_vec())]);
                h[16 + 8..16 + 12].copy_from_slice(&(-5i32).to_be_bytes());
                h
            }),
            // unterminated string
            ("unterminated", header(&[(tag::NAME, 6, 1, b"xy".to_vec())])),
            // array count past the data
            ("count", header(&[(tag::FILEMODES, 3, 1000, vec![0, 1])])),
            // unknown type
            ("type", header(&[(tag::NAME, 99, 1, b"x\0".to_vec())])),
            // absurd entry count
            ("entries", {
                let mut h = header(&[(tag::NAME, 6, 1, b"x\0".to_vec())]);
                h[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
                h
            }),
            // absurd data size
            ("size", {
                let mut h = header(&[(tag::NAME, 6, 1, b"x\0".to_vec())]);
                h[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
                h
            }),
            // truncated
            ("truncated", {
                let h = header(&[(tag::NAME, 6, 1, b"x\0".to_vec())]);
                h[..h.len() - 1].to_vec()
            }),
        ];
        for (what, main) in cases {
            let bytes = rpm(good_sig.clone(), main);
            let e = RpmHeaders::read(&mut &bytes[..], Path::new("bad.rpm")).expect_err(what);
            assert!(
                e.to_string().starts_with("bad.rpm: not a valid rpm"),
                "{what}: {e}"
            );
        }
        let e = RpmHeaders::read(&mut &b"not an rpm at all"[..], Path::new("t.txt")).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut junk = [0u8; 200];
        junk[..4].copy_from_slice(b"\x7fELF");
        let e = RpmHeaders::read(&mut &junk[..], Path::new("t.bin")).unwrap_err();
        assert!(e.to_string().contains("no rpm lead magic"), "{e}");
    }
}
