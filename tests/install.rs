//! `make install` / `make uninstall`: the tree a distribution package would hold, the
//! kojid symlink, the sample configuration only when there is none, and the systemd,
//! sysusers and tmpfiles snippets valid for the tools that read them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_koji-adjutant");
const FULL_BIN: &str = env!("CARGO_BIN_EXE_koji-adjutant-full");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn make(args: &[&str], vars: &[(&str, &Path)]) -> std::process::Output {
    let mut c = Command::new("make");
    c.arg("-C").arg(ROOT).arg("--no-print-directory").args(args);
    c.arg(format!("BIN={BIN}"));
    c.arg(format!("FULL_BIN={FULL_BIN}"));
    for (k, v) in vars {
        c.arg(format!("{k}={}", v.display()));
    }
    let out = c.output().expect("make (Debian: apt-get install make)");
    assert!(
        out.status.success(),
        "make {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file and symlink under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out.sort();
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn make_install_into_destdir_and_uninstall() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("pkgroot");
    let vars = [("DESTDIR", dest.as_path()), ("PREFIX", Path::new("/usr"))];
    make(&["install"], &vars);

    let files = tree(&dest);
    for f in [
        "usr/bin/koji-adjutant",
        "usr/libexec/koji-adjutant/koji-adjutant-full",
        "usr/sbin/kojid",
        "usr/lib/systemd/system/koji-adjutant.service",
        "usr/lib/sysusers.d/koji-adjutant.conf",
        "usr/lib/tmpfiles.d/koji-adjutant.conf",
        "etc/kojid/kojid.conf",
        "usr/share/doc/koji-adjutant/README.md",
        "usr/share/doc/koji-adjutant/operator-guide.md",
        "usr/share/doc/koji-adjutant/troubleshooting.md",
        "usr/share/doc/koji-adjutant/config.md",
        "usr/share/doc/koji-adjutant/kojid.conf",
        "usr/share/doc/koji-adjutant/image-policy.json",
    ] {
        assert!(
            files.iter().any(|x| x == f),
            "{f} not installed: {files:#?}"
        );
    }
    // nothing outside the package's places
    for f in &files {
        assert!(
            [
                "usr/bin/",
                "usr/sbin/",
                "usr/libexec/koji-adjutant/",
                "usr/lib/",
                "usr/share/doc/koji-adjutant/",
                "etc/kojid/"
            ]
            .iter()
            .any(|p| f.starts_with(p)),
            "unexpected {f}"
        );
    }

    // Both binaries, executable, as built.
    let [bin, full] = [
        ("usr/bin/koji-adjutant", BIN),
        ("usr/libexec/koji-adjutant/koji-adjutant-full", FULL_BIN),
    ]
    .map(|(installed, built)| {
        let p = dest.join(installed);
        assert_eq!(mode(&p), 0o755, "{installed}");
        assert!(
            std::fs::read(&p).unwrap() == std::fs::read(built).unwrap(),
            "{installed} is not the binary built ({built})"
        );
        p
    });
    // --version is the full program's: the installed front finds it in ../libexec
    let out = Command::new(&bin)
        .arg("--version")
        .env_remove("KOJI_ADJUTANT_FULL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("koji-adjutant "));
    // and without it, the front says what is missing and where it looked
    std::fs::rename(&full, full.with_extension("moved")).unwrap();
    let out = Command::new(&bin).arg("image").arg("ls").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("koji-adjutant-full is missing") && err.contains("libexec/koji-adjutant"),
        "{err}"
    );
    std::fs::rename(full.with_extension("moved"), &full).unwrap();
    // kojid: a symlink to the binary's final place (not into DESTDIR)
    assert_eq!(
        std::fs::read_link(dest.join("usr/sbin/kojid")).unwrap(),
        PathBuf::from("/usr/bin/koji-adjutant")
    );
    let unit =
        std::fs::read_to_string(dest.join("usr/lib/systemd/system/koji-adjutant.service")).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/bin/koji-adjutant daemon --fg"),
        "{unit}"
    );
    assert!(unit.contains("\nType=notify\n") && unit.contains("\nDelegate=yes\n"));
    assert_eq!(mode(&dest.join("etc/kojid/kojid.conf")), 0o640);
    assert_eq!(
        std::fs::read(dest.join("etc/kojid/kojid.conf")).unwrap(),
        std::fs::read(Path::new(ROOT).join("config/kojid.conf")).unwrap()
    );

    // A second install keeps an existing (changed) kojid.conf, and so does uninstall.
    let conf = dest.join("etc/kojid/kojid.conf");
    std::fs::write(
        &conf,
        "[kojid]\nserver = https://mine.example.com/kojihub\n",
    )
    .unwrap();
    let out = make(&["install"], &vars);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keeping the existing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&conf)
        .unwrap()
        .contains("mine.example.com"));

    make(&["uninstall"], &vars);
    assert_eq!(tree(&dest), ["etc/kojid/kojid.conf"]);

    // An unchanged sample goes with uninstall; nothing is left.
    std::fs::remove_file(&conf).unwrap();
    make(&["install"], &vars);
    make(&["uninstall"], &vars);
    assert_eq!(tree(&dest), Vec::<String>::new());
}

#[test]
fn a_real_kojid_is_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("root");
    let sbin = dest.join("usr/sbin");
    std::fs::create_dir_all(&sbin).unwrap();
    std::fs::write(sbin.join("kojid"), "#!/usr/bin/python3\n# kojid\n").unwrap();
    let vars = [("DESTDIR", dest.as_path()), ("PREFIX", Path::new("/usr"))];
    let out = make(&["install"], &vars);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keeping"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(sbin.join("kojid"))
        .unwrap()
        .contains("# kojid"));
    make(&["uninstall"], &vars);
    assert!(
        sbin.join("kojid").exists(),
        "uninstall removed a kojid that was not ours"
    );
}

/// The snippets as the tools read them: the unit verified by systemd-analyze (installed
/// under a prefix where ExecStart exists), the user created by systemd-sysusers and
/// the directories by systemd-tmpfiles, both in a scratch root.
#[test]
fn the_systemd_files_are_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("usr");
    let etc = tmp.path().join("etc");
    make(
        &["install"],
        &[("PREFIX", prefix.as_path()), ("SYSCONFDIR", etc.as_path())],
    );
    let unit = prefix.join("lib/systemd/system/koji-adjutant.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains(&format!(
            "ExecStart={}/bin/koji-adjutant daemon",
            prefix.display()
        )),
        "{text}"
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("systemd-analyze (Debian: the systemd package)");
    let err = String::from_utf8_lossy(&out.stderr);
    // verify reports unknown keys and bad values on stderr (and still exits 0)
    assert!(out.status.success() && err.trim().is_empty(), "{err}");

    let root = tmp.path().join("sysroot");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let st = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg(prefix.join("lib/sysusers.d/koji-adjutant.conf"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("koji-adjutant:"))
        .unwrap_or_else(|| panic!("no koji-adjutant user: {passwd}"));
    assert!(
        line.ends_with(":/var/lib/koji-adjutant:/usr/sbin/nologin"),
        "{line}"
    );
    let uid: u32 = line.split(':').nth(2).unwrap().parse().unwrap();

    let st = Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(format!("--root={}", root.display()))
        .arg(prefix.join("lib/tmpfiles.d/koji-adjutant.conf"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    use std::os::unix::fs::MetadataExt;
    let store = std::fs::metadata(root.join("var/lib/koji-adjutant")).unwrap();
    assert_eq!((store.uid(), store.mode() & 0o7777), (uid, 0o755));
    let etc_kojid = std::fs::metadata(root.join("etc/kojid")).unwrap();
    assert_eq!((etc_kojid.uid(), etc_kojid.mode() & 0o7777), (0, 0o750));

    make(
        &["uninstall"],
        &[("PREFIX", prefix.as_path()), ("SYSCONFDIR", etc.as_path())],
    );
    assert_eq!(tree(&prefix), Vec::<String>::new());
}
