//! Reading repodata in tests: `repomd.xml` records and the packages of `primary.xml.gz`,
//! with a real XML parser, so a test sees what dnf would.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use quick_xml::events::Event;
use quick_xml::Reader;

/// One `<data type=…>` of repomd.xml.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: String,
    pub href: String,
}

/// One package of primary.xml.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub arch: String,
    pub version: String,
    pub href: String,
}

/// The records of `<repo>/repodata/repomd.xml`.
pub fn repomd(repo: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(repo.join("repodata/repomd.xml"))
        .unwrap_or_else(|e| panic!("{}/repodata/repomd.xml: {e}", repo.display()));
    let mut r = Reader::from_str(&text);
    let mut out = Vec::new();
    let mut kind: Option<String> = None;
    loop {
        match r.read_event().expect("repomd.xml parses") {
            Event::Start(e) if e.name().as_ref() == b"data" => {
                kind = e
                    .try_get_attribute("type")
                    .unwrap()
                    .map(|a| String::from_utf8(a.value.to_vec()).unwrap());
            }
            Event::Empty(e) | Event::Start(e) if e.name().as_ref() == b"location" => {
                let href = e
                    .try_get_attribute("href")
                    .unwrap()
                    .map(|a| String::from_utf8(a.value.to_vec()).unwrap())
                    .unwrap_or_default();
                if let Some(k) = kind.take() {
                    out.push(Record { kind: k, href });
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// The packages of the repo's primary metadata, sorted.
pub fn packages(repo: &Path) -> Vec<Package> {
    let rec = repomd(repo)
        .into_iter()
        .find(|r| r.kind == "primary")
        .expect("repomd.xml has no primary record");
    let gz = std::fs::read(repo.join(&rec.href)).unwrap();
    let mut xml = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut xml)
        .unwrap();
    let mut r = Reader::from_str(&xml);
    let mut out = Vec::new();
    let mut cur: Option<Package> = None;
    let mut field: Option<String> = None;
    let mut depth = 0;
    loop {
        match r.read_event().expect("primary.xml parses") {
            Event::Start(e) => {
                depth += 1;
                let n = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                if n == "package" {
                    cur = Some(Package {
                        name: String::new(),
                        arch: String::new(),
                        version: String::new(),
                        href: String::new(),
                    });
                } else if depth == 3 {
                    field = Some(n);
                }
            }
            Event::Empty(e) => {
                let n = e.name().as_ref().to_vec();
                if let Some(p) = cur.as_mut() {
                    if n == b"location" {
                        p.href = e
                            .try_get_attribute("href")
                            .unwrap()
                            .map(|a| String::from_utf8(a.value.to_vec()).unwrap())
                            .unwrap_or_default();
                    } else if n == b"version" {
                        p.version = e
                            .try_get_attribute("ver")
                            .unwrap()
                            .map(|a| String::from_utf8(a.value.to_vec()).unwrap())
                            .unwrap_or_default();
                    }
                }
            }
            Event::Text(t) => {
                if let (Some(p), Some(f)) = (cur.as_mut(), field.as_deref()) {
                    let s = t.decode().unwrap().into_owned();
                    match f {
                        "name" => p.name = s,
                        "arch" => p.arch = s,
                        _ => {}
                    }
                }
            }
            Event::End(e) => {
                depth -= 1;
                field = None;
                if e.name().as_ref() == b"package" {
                    out.extend(cur.take());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out.sort();
    out
}

/// `name.arch` of each package.
pub fn nas(repo: &Path) -> Vec<String> {
    packages(repo)
        .into_iter()
        .map(|p| format!("{}.{}", p.name, p.arch))
        .collect()
}

/// Build a tiny rpm with rpmbuild (noarch or for `--target arch`), into `out`.
pub fn build_rpm(out: &Path, name: &str, version: &str, arch: &str) -> PathBuf {
    let top = out.join(format!(".rpmbuild-{name}-{version}-{arch}"));
    std::fs::create_dir_all(&top).unwrap();
    let spec = top.join(format!("{name}.spec"));
    let buildarch = if arch == "noarch" {
        "BuildArch: noarch\n"
    } else {
        ""
    };
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: {version}\nRelease: 1\nSummary: koji-adjutant repo test package\n\
             License: MIT\n{buildarch}%global debug_package %{{nil}}\n%description\n{name}\n\
             %install\nmkdir -p %{{buildroot}}/usr/share/{name}\n\
             echo {name}-{version} > %{{buildroot}}/usr/share/{name}/marker\n\
             %files\n/usr/share/{name}/marker\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new("rpmbuild");
    cmd.arg("--quiet")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("--define")
        .arg("_build_id_links none");
    if arch != "noarch" {
        cmd.args(["--target", arch]);
    }
    let o = cmd
        .arg("-bb")
        .arg(&spec)
        .output()
        .expect("rpmbuild must be installed");
    assert!(o.status.success(), "rpmbuild {name}: {o:?}");
    let file = format!("{name}-{version}-1.{arch}.rpm");
    let built = top.join("RPMS").join(arch).join(&file);
    let dst = out.join(&file);
    std::fs::rename(&built, &dst).unwrap();
    std::fs::remove_dir_all(&top).unwrap();
    dst
}

/// Run createrepo_c on a directory (an "external" repo for merge tests).
pub fn plain_repo(dir: &Path) {
    let o = Command::new("createrepo_c")
        .arg("-q")
        .arg(dir)
        .output()
        .expect("createrepo_c must be installed");
    assert!(o.status.success(), "createrepo_c {}: {o:?}", dir.display());
}
