//! `koji-adjutant rebuild`, end to end through the binary: the README's main job. The
//! rpmroot fixture is imported into a private store as `localhost/buildroot:latest`
//! (the default image) with `koji-adjutant image import`, then SRPMs and a spec
//! directory are rebuilt with no hub. As root, and as `adjutant-test` (rootless).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use adjutant_testkit::{as_test_user, fixtures_dir, is_root, rpmroot_dir};

const BIN: &str = env!("CARGO_BIN_EXE_koji-adjutant");

/// A private store, config and TMPDIR; removed (through a user namespace when
/// rootless) when dropped.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("ka-rebuild-test.")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // No /etc/kojid/kojid.conf of the machine: an empty config, defaults only.
        std::fs::write(dir.path().join("kojid.conf"), "").unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        std::fs::set_permissions(
            dir.path().join("tmp"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        Env { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root")
            .arg(self.store())
            .args(args)
            .env("TMPDIR", self.dir.path().join("tmp"))
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    fn import(&self) {
        let o = self
            .cmd(&["image", "import", "--quiet"])
            .arg(format!("oci:{}:latest", rpmroot_dir().display()))
            .arg("localhost/buildroot:latest")
            .output()
            .unwrap();
        assert!(o.status.success(), "image import: {}", text(&o.stderr));
    }

    /// `koji-adjutant rebuild -c <empty conf> ARGS`.
    fn rebuild(&self, args: &[&str]) -> Output {
        let conf = self.dir.path().join("kojid.conf");
        let mut c = self.cmd(&["rebuild", "-c", conf.to_str().unwrap()]);
        c.args(args);
        c.output().unwrap()
    }

    /// Nothing left behind: no containers in the store, no work dirs in TMPDIR.
    fn assert_clean(&self) {
        let containers: Vec<String> = std::fs::read_dir(self.store().join("containers"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != ".mnt")
                    .collect()
            })
            .unwrap_or_default();
        assert!(containers.is_empty(), "containers left: {containers:?}");
        let tmp: Vec<String> = std::fs::read_dir(self.dir.path().join("tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(tmp.is_empty(), "left in TMPDIR: {tmp:?}");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // A rootless store holds files of subordinate ids that only a user namespace with
        // the same mapping can remove.
        if let Ok(cfg) = adjutant_runtime::container::RuntimeConfig::detect(self.dir.path()) {
            if let Err(e) =
                adjutant_runtime::userns::remove_tree(Path::new(BIN), &cfg.mapping, self.dir.path())
            {
                eprintln!("cleaning up {}: {e}", self.dir.path().display());
            }
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn srpm(name: &str) -> String {
    let p = fixtures_dir()
        .join("srpms")
        .join(format!("{name}-1.0-1.src.rpm"));
    assert!(p.is_file(), "fixture {} missing", p.display());
    p.display().to_string()
}

fn rpm_q(p: &Path, qf: &str) -> String {
    let o = Command::new("rpm")
        .args(["-qp", "--nosignature", "--qf", qf])
        .arg(p)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rpm -qp {}: {}",
        p.display(),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Rebuild hello's SRPM into `out`; check the binary rpm, the logs and the output.
fn rebuild_hello(env: &Env, out: &Path) {
    let o = env.rebuild(&["--resultdir", out.to_str().unwrap(), &srpm("hello")]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "rebuild failed:\n{stderr}");
    let rpm = out.join("hello-1.0-1.x86_64.rpm");
    // stdout: one line per rpm, the path (what scripts/try-rebuild.sh prints)
    let printed: Vec<&str> = stdout.lines().collect();
    assert!(
        printed.contains(&rpm.to_str().unwrap()),
        "stdout {stdout:?}"
    );
    assert!(printed.iter().all(|l| l.ends_with(".rpm")), "{stdout}");
    assert_eq!(rpm_q(&rpm, "%{NEVRA}"), "hello-1.0-1.x86_64");
    assert!(rpm_q(&rpm, "[%{FILENAMES}\n]").contains("/usr/bin/hello"));
    assert!(out.join("hello-1.0-1.src.rpm").is_file());
    for l in [
        "build.log",
        "root.log",
        "state.log",
        "hw_info.log",
        "mock_config.log",
    ] {
        assert!(out.join(l).is_file(), "{l} missing in {}", out.display());
    }
    let build = std::fs::read_to_string(out.join("build.log")).unwrap();
    assert!(build.contains("Child return code was: 0"), "{build}");
    assert!(stderr.contains("Built 2 package(s)"), "{stderr}");
    env.assert_clean();
}

#[test]
fn local_rebuild_of_an_srpm_and_a_spec_dir() {
    assert!(
        is_root(),
        "run as root (tests/run.sh); the rootless case is rootless_local_rebuild"
    );
    let env = Env::new();
    env.import();
    rebuild_hello(&env, &env.dir.path().join("out-srpm"));

    // A directory with a spec and its sources: the SRPM is built first, in the same
    // buildroot; results default to ./results/<nvr>/ under the working directory.
    let src = env.dir.path().join("hello-src");
    std::fs::create_dir(&src).unwrap();
    for f in ["hello.spec", "hello-1.0.tar.gz"] {
        std::fs::copy(fixtures_dir().join("src").join(f), src.join(f)).unwrap();
    }
    let conf = env.dir.path().join("kojid.conf");
    let o = env
        .cmd(&[
            "rebuild",
            "-c",
            conf.to_str().unwrap(),
            src.to_str().unwrap(),
        ])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let res = env.dir.path().join("results/hello-1.0-1");
    assert_eq!(
        rpm_q(&res.join("hello-1.0-1.x86_64.rpm"), "%{NEVRA}"),
        "hello-1.0-1.x86_64"
    );
    assert!(res.join("hello-1.0-1.src.rpm").is_file());
    env.assert_clean();
}

#[test]
fn a_failed_local_rebuild_exits_1_with_the_end_of_build_log() {
    assert!(is_root(), "run as root (tests/run.sh)");
    let env = Env::new();
    env.import();
    let out = env.dir.path().join("out");
    let o = env.rebuild(&["--resultdir", out.to_str().unwrap(), &srpm("fails-build")]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("rpmbuild exited with status 1; see build.log for more information"),
        "{stderr}"
    );
    assert!(
        stderr.contains("this %build step fails on purpose"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("Logs are in {}", out.display())),
        "{stderr}"
    );
    assert!(std::fs::read_to_string(out.join("build.log"))
        .unwrap()
        .contains("fails on purpose"));
    assert!(text(&o.stdout).is_empty(), "no rpms printed");
    env.assert_clean();
}

#[test]
fn a_missing_default_image_names_image_import() {
    let env = Env::new();
    let o = env.rebuild(&[&srpm("hello")]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("localhost/buildroot:latest"), "{stderr}");
    assert!(stderr.contains("koji-adjutant image import"), "{stderr}");
    assert!(
        !env.dir.path().join("results").exists(),
        "nothing ran: no results directory"
    );
    // Usage errors are exit 2 and name the argument.
    let o = env.rebuild(&["/nonexistent/x.src.rpm"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("/nonexistent/x.src.rpm"));
    env.assert_clean();
}

#[test]
fn rootless_local_rebuild() {
    if !as_test_user() {
        return; // root: the body ran, and passed, as adjutant-test
    }
    let env = Env::new();
    env.import();
    rebuild_hello(&env, &env.dir.path().join("out"));
}
