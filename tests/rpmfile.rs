//! The rpm header reader and koji's kojihash against librpm: every fixture rpm and srpm
//! is read by our code and by the rpm Python bindings (tests/data/kojihash.py, which
//! computes koji's Rpmdiff data the way koji/rpmdiff.py does), and the two must agree
//! to the byte.

use std::path::Path;
use std::process::Command;

use koji_adjutant::rpmfile::{kojihash, kojihash_json, tag, RpmHeaders};

fn oracle(path: &Path) -> (String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kojihash.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(path)
        .output()
        .expect("/usr/bin/python3 with python3-rpm (tests/setup-host.sh installs it)");
    assert!(out.status.success(), "{}: {:?}", script.display(), out);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap().to_owned(),
    )
}

fn rpm_qf(path: &Path, qf: &str) -> String {
    let out = Command::new("rpm")
        .args(["-qp", "--nosignature", "--nodigest", "--qf", qf])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn headers_and_kojihash_match_librpm() {
    let dir = adjutant_testkit::fixtures_dir();
    let mut files: Vec<_> = ["rpms", "srpms"]
        .iter()
        .flat_map(|d| std::fs::read_dir(dir.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "fixture rpms: {files:?}");
    for f in &files {
        let h = RpmHeaders::open(f).unwrap();
        let want = rpm_qf(
            f,
            "%{NAME}|%{VERSION}|%{RELEASE}|%{EPOCH}|%{SOURCEPACKAGE}|%{SIGMD5}|[%{EXCLUSIVEARCH} ]|[%{BUILDARCHS} ]",
        );
        let got = format!(
            "{}|{}|{}|{}|{}|{}|{}|{}",
            h.name(),
            h.version(),
            h.release(),
            h.epoch().map_or("(none)".into(), |e| e.to_string()),
            if h.is_source() { "1" } else { "(none)" },
            h.payloadhash().unwrap(),
            h.main
                .strings(tag::EXCLUSIVEARCH)
                .iter()
                .map(|a| format!("{a} "))
                .collect::<String>(),
            h.main
                .strings(tag::BUILDARCHS)
                .iter()
                .map(|a| format!("{a} "))
                .collect::<String>(),
        );
        assert_eq!(got, want, "{}", f.display());
        assert_eq!(
            f.file_name().unwrap().to_str().unwrap(),
            h.expected_filename()
        );
        let (json, hash) = oracle(f);
        assert_eq!(kojihash_json(&h), json, "{}", f.display());
        assert_eq!(kojihash(&h), hash, "{}", f.display());
    }
}
