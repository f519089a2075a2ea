//! koji's `Rpmdiff(f, f, ignore='S5TN').kojihash()` (koji/rpmdiff.py): the sha256 of a
//! JSON description of an rpm — a few header tags, its dependencies and its files —
//! that kojid's buildArch puts in `noarch_rpmdiff.json` for each noarch rpm. The hub
//! compares the hashes of a noarch rpm built on several arches and runs a full rpmdiff
//! only when they differ (kojihub `rpmdiff`).
//!
//! The JSON is the one Python writes: `json.dumps(data, sort_keys=True)` with its
//! default `", "`/`": "` separators and `ensure_ascii`, values as the rpm Python
//! bindings return them (strings, unsigned integers, None for a missing tag, file
//! state -1 for a package file). Ignored file fields (size, digest, mtime, nlink) are
//! None.

use sha2::{Digest, Sha256};

use super::header::{tag, Header, RpmHeaders};

/// A JSON value as Python's json module writes it.
enum Py {
    Null,
    Int(i64),
    Str(Vec<u8>),
    List(Vec<Py>),
    /// Keys already in output order.
    Dict(Vec<(String, Py)>),
}

fn write_str(out: &mut String, raw: &[u8]) {
    // the rpm bindings decode strings as UTF-8 with surrogateescape; json's
    // ensure_ascii then writes every non-ASCII code point as \uXXXX
    out.push('"');
    let mut units: Vec<u16> = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                units.extend(s.encode_utf16());
                rest = &[];
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                units.extend(std::str::from_utf8(good).unwrap_or_default().encode_utf16());
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    units.push(0xdc00 | u16::from(*b));
                }
                rest = &bad[n..];
            }
        }
    }
    for u in units {
        match u {
            0x22 => out.push_str("\\\""),
            0x5c => out.push_str("\\\\"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            0x09 => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            0x20..=0x7e => out.push(char::from(u as u8)),
            _ => out.push_str(&format!("\\u{u:04x}")),
        }
    }
    out.push('"');
}

impl Py {
    fn write(&self, out: &mut String) {
        match self {
            Py::Null => out.push_str("null"),
            Py::Int(i) => out.push_str(&i.to_string()),
            Py::Str(s) => write_str(out, s),
            Py::List(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    x.write(out);
                }
                out.push(']');
            }
            Py::Dict(v) => {
                out.push('{');
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_str(out, k.as_bytes());
                    out.push_str(": ");
                    x.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn opt_str(h: &Header, t: u32) -> Py {
    match h.raw_strings(t).and_then(|v| v.first().map(|s| s.to_vec())) {
        Some(s) => Py::Str(s),
        None => Py::Null,
    }
}

fn bytes_list(h: &Header, t: u32) -> Vec<Vec<u8>> {
    h.raw_strings(t)
        .unwrap_or_default()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

/// RPMSENSE_EQUAL
const SENSE_EQUAL: u64 = 8;

/// `(name, flags, version)` triples of one dependency kind, sorted as Python sorts
/// tuples; the package's own `name = version-release` provide left out of PROVIDES.
fn prco(h: &Header, names: u32, flags: u32, versions: u32, own: Option<&[u8]>) -> Py {
    let n = bytes_list(h, names);
    let f = h.ints(flags);
    let v = bytes_list(h, versions);
    let own_name = h
        .raw_strings(tag::NAME)
        .and_then(|x| x.first().map(|s| s.to_vec()))
        .unwrap_or_default();
    let mut rows: Vec<(Vec<u8>, u64, Vec<u8>)> = n
        .into_iter()
        .zip(f)
        .zip(v)
        .map(|((a, b), c)| (a, b, c))
        .filter(|(a, b, c)| match own {
            Some(evr) => !(a == &own_name && *b == SENSE_EQUAL && c.as_slice() == evr),
            None => true,
        })
        .collect();
    // Python compares str by code point; for UTF-8 that is byte order
    rows.sort();
    Py::List(
        rows.into_iter()
            .map(|(a, b, c)| Py::List(vec![Py::Str(a), Py::Int(b as i64), Py::Str(c)]))
            .collect(),
    )
}

fn files(h: &Header) -> Py {
    let basenames = bytes_list(h, tag::BASENAMES);
    let dirnames = bytes_list(h, tag::DIRNAMES);
    let dirindexes = h.ints(tag::DIRINDEXES);
    let modes = h.ints(tag::FILEMODES);
    let flags = h.ints(tag::FILEFLAGS);
    let rdevs = h.ints(tag::FILERDEVS);
    let inodes = h.ints(tag::FILEINODES);
    let states = h.ints(tag::FILESTATES);
    let vflags = h.ints(tag::FILEVERIFYFLAGS);
    let users = bytes_list(h, tag::FILEUSERNAME);
    let groups = bytes_list(h, tag::FILEGROUPNAME);
    let int_at = |v: &[u64], i: usize| {
        v.get(i)
            .map_or(Py::Int(0), |x| Py::Int(i64::from(*x as u32 as i32)))
    };
    let str_at = |v: &[Vec<u8>], i: usize| v.get(i).map_or(Py::Null, |x| Py::Str(x.clone()));
    let mut out: Vec<(Vec<u8>, Py)> = Vec::new();
    for (i, base) in basenames.iter().enumerate() {
        let dir = dirindexes
            .get(i)
            .and_then(|d| dirnames.get(*d as usize))
            .cloned()
            .unwrap_or_default();
        let mut name = dir;
        name.extend_from_slice(base);
        // (size, mode, mtime, fflags, rdev, inode, nlink, state, vflags, user,
        //  group, digest) with S, T, N and 5 ignored
        let state = match states.get(i) {
            // a signed char in librpm
            Some(s) => Py::Int(i64::from(*s as u8 as i8)),
            None => Py::Int(-1),
        };
        let vflag = match vflags.get(i) {
            Some(v) => Py::Int(i64::from(*v as u32 as i32)),
            None => Py::Int(0),
        };
        out.push((
            name,
            Py::List(vec![
                Py::Null,
                int_at(&modes, i),
                Py::Null,
                int_at(&flags, i),
                int_at(&rdevs, i),
                int_at(&inodes, i),
                Py::Null,
                state,
                vflag,
                str_at(&users, i),
                str_at(&groups, i),
                Py::Null,
            ]),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    Py::Dict(
        out.into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
            .collect(),
    )
}

/// The JSON text koji hashes (exposed for tests and debugging).
pub fn kojihash_json(rpm: &RpmHeaders) -> String {
    let h = &rpm.main;
    let tags = [
        tag::NAME,
        tag::SUMMARY,
        tag::DESCRIPTION,
        tag::LICENSE,
        tag::GROUP,
        tag::URL,
        tag::PREIN,
        tag::POSTIN,
        tag::PREUN,
        tag::POSTUN,
    ];
    let evr = format!("{}-{}", rpm.version(), rpm.release()).into_bytes();
    let data = Py::Dict(vec![
        (
            "CONFLICTS".into(),
            prco(
                h,
                tag::CONFLICTNAME,
                tag::CONFLICTFLAGS,
                tag::CONFLICTVERSION,
                None,
            ),
        ),
        (
            "OBSOLETES".into(),
            prco(
                h,
                tag::OBSOLETENAME,
                tag::OBSOLETEFLAGS,
                tag::OBSOLETEVERSION,
                None,
            ),
        ),
        (
            "PROVIDES".into(),
            prco(
                h,
                tag::PROVIDENAME,
                tag::PROVIDEFLAGS,
                tag::PROVIDEVERSION,
                Some(&evr),
            ),
        ),
        (
            "REQUIRES".into(),
            prco(
                h,
                tag::REQUIRENAME,
                tag::REQUIREFLAGS,
                tag::REQUIREVERSION,
                None,
            ),
        ),
        ("files".into(), files(h)),
        ("ignore".into(), Py::Str(b"S5TN".to_vec())),
        (
            "tags".into(),
            Py::Dict(
                tags.iter()
                    .map(|t| (t.to_string(), opt_str(h, *t)))
                    .collect(),
            ),
        ),
    ]);
    let mut s = String::new();
    data.write(&mut s);
    s
}

/// `kojihash()` of an rpm: hex sha256 of [`kojihash_json`].
pub fn kojihash(rpm: &RpmHeaders) -> String {
    hex::encode(Sha256::digest(kojihash_json(rpm).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_json_strings() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\nd\u{7f}é€😀".as_bytes());
        assert_eq!(s, r#""a\"b\\c\nd\u007f\u00e9\u20ac\ud83d\ude00""#);
        let mut s = String::new();
        write_str(&mut s, b"x\xffy");
        assert_eq!(s, r#""x\udcffy""#);
        let d = Py::Dict(vec![
            ("a".into(), Py::List(vec![Py::Int(1), Py::Null])),
            ("b".into(), Py::Dict(vec![])),
        ]);
        let mut s = String::new();
        d.write(&mut s);
        assert_eq!(s, r#"{"a": [1, null], "b": {}}"#);
    }
}
