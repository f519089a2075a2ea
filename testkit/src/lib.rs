//! Test support shared by koji-adjutant's crates (a dev-dependency only; never shipped).
//!
//! - [`fixtures_dir`], [`oci_layout`], [`rpmroot_dir`]: the images and packages built by
//!   `tests/fixtures/make-fixtures.sh` (see docs/testing.md for the layout). Taken from
//!   `KOJI_ADJUTANT_FIXTURES` when set (tests/run.sh sets it), otherwise built or found by
//!   running the script once per process.
//! - [`test_registry`]: the local registry started by `tests/registry.sh` (`host:port`).
//! - [`replay_fuzz_regressions`]: the committed inputs a fuzzer found, through a check.
//! - [`as_test_user`] / [`run_as_test_user`]: run a test's body as the unprivileged
//!   `adjutant-test` user (uid/gid 4242, subordinate ids 300000+65536) by re-executing the test
//!   binary under `setpriv`.
//!
//! Every helper panics with a message that says what is missing and how to get it: a test
//! that cannot get its fixture fails, it never passes silently.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The unprivileged user rootless tests run as (created by `tests/setup-host.sh`).
pub const TEST_USER: &str = "adjutant-test";
/// Its uid; its primary gid is the same number.
pub const TEST_UID: u32 = 4242;
/// Its primary gid.
pub const TEST_GID: u32 = 4242;
/// Its home directory (also `$HOME` of re-executed tests).
pub const TEST_HOME: &str = "/home/adjutant-test";
/// Environment variable holding the fixtures directory.
pub const FIXTURES_ENV: &str = "KOJI_ADJUTANT_FIXTURES";
/// Environment variable holding the test registry's `host:port`.
pub const REGISTRY_ENV: &str = "KOJI_ADJUTANT_TEST_REGISTRY";
/// Set to `1` in the environment of a test re-executed by [`run_as_test_user`].
pub const CHILD_ENV: &str = "ADJUTANT_TESTKIT_AS_TEST_USER";

static FIXTURES: OnceLock<PathBuf> = OnceLock::new();
static RPMROOT: OnceLock<PathBuf> = OnceLock::new();

/// Path of `tests/fixtures/make-fixtures.sh` in this source tree.
pub fn fixtures_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/make-fixtures.sh")
}

/// The fixtures directory (`oci/`, `layers/`, `src/`, `srpms/`, `rpms/`).
///
/// `$KOJI_ADJUTANT_FIXTURES` if set, else the output of `make-fixtures.sh` (tier 0: no
/// network, a few seconds cold, milliseconds warm), run at most once per process.
pub fn fixtures_dir() -> &'static Path {
    FIXTURES.get_or_init(|| {
        if let Some(dir) = std::env::var_os(FIXTURES_ENV).filter(|v| !v.is_empty()) {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("oci/busybox/index.json").is_file(),
                "{FIXTURES_ENV}={} does not hold the test fixtures (no oci/busybox/index.json); \
                 unset it or run tests/fixtures/make-fixtures.sh",
                dir.display()
            );
            return dir;
        }
        run_fixtures_script(&[])
    })
}

/// The OCI image layout `oci/<name>` of the fixtures (tag `latest`), e.g. `busybox`,
/// `multilayer`, `multilayer-zstd`, `multiarch`, `busybox-uncompressed`, `devnodes`.
/// For `rpmroot` use [`rpmroot_dir`], which builds it when needed.
pub fn oci_layout(name: &str) -> PathBuf {
    if name == "rpmroot" {
        return rpmroot_dir().to_path_buf();
    }
    let dir = fixtures_dir().join("oci").join(name);
    assert!(
        dir.join("index.json").is_file(),
        "fixture image {} does not exist (see docs/testing.md for the list)",
        dir.display()
    );
    dir
}

/// The OCI image layout of the rpm build image (`oci/rpmroot`, tag `latest`): Debian bookworm
/// with rpm, rpmbuild, dnf, createrepo_c, gcc, g++, make; its rpmdb lists the Koji build group;
/// user mockbuild (1000) in group mock (135) owns /builddir.
///
/// Built on demand with `make-fixtures.sh --rpmroot` (root and network, about a minute and a
/// half cold; milliseconds warm). Panics if it is missing and cannot be built.
pub fn rpmroot_dir() -> &'static Path {
    RPMROOT.get_or_init(|| {
        let in_fixtures = fixtures_dir().join("oci/rpmroot");
        if in_fixtures.join("index.json").is_file() {
            return in_fixtures;
        }
        assert!(
            is_root(),
            "the rpmroot fixture is missing and only root can build it: run \
             `sudo tests/fixtures/make-fixtures.sh --rpmroot` (or tests/run.sh)"
        );
        run_fixtures_script(&["--rpmroot"]).join("oci/rpmroot")
    })
}

fn run_fixtures_script(args: &[&str]) -> PathBuf {
    let script = fixtures_script();
    let out = Command::new(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n{}{}",
        script.display(),
        args.join(" "),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(stdout.trim());
    assert!(
        dir.is_absolute() && dir.is_dir(),
        "{} printed {stdout:?}, not a directory",
        script.display()
    );
    dir
}

/// The test registry's address (`127.0.0.1:5000`), from `$KOJI_ADJUTANT_TEST_REGISTRY`.
///
/// Panics when it is unset: start one with `eval "$(tests/registry.sh start)"`, or run the
/// suite with tests/run.sh. It serves `test/{busybox,busybox-uncompressed,busybox-v2s2,
/// multilayer,multilayer-zstd,multiarch,devnodes,rpmroot}:latest` over plain HTTP, no auth.
pub fn test_registry() -> String {
    match std::env::var(REGISTRY_ENV) {
        Ok(addr) if !addr.is_empty() => addr,
        _ => panic!(
            "{REGISTRY_ENV} is not set: start the test registry with \
             `eval \"$(tests/registry.sh start)\"` or run the suite with tests/run.sh"
        ),
    }
}

/// True if this process runs with effective uid 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True inside a test re-executed by [`run_as_test_user`].
pub fn is_test_user_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some_and(|v| v == "1")
        && nix::unistd::geteuid().as_raw() == TEST_UID
}

/// Run the calling test's body as `adjutant-test`. Use it as the first statement of a test:
///
/// ```no_run
/// #[test]
/// fn unpack_rootless() {
///     if !adjutant_testkit::as_test_user() {
///         return; // the parent: the body ran (and passed) in the child
///     }
///     // the body, running as an unprivileged user
/// }
/// ```
///
/// As root it re-executes this test (named after the current thread, which is how libtest
/// and nextest name test threads) as `adjutant-test`, asserts that it passed and returns
/// `false`. In that child, and in any process that is not root to begin with, it returns
/// `true`: the body runs as the current (unprivileged) user.
pub fn as_test_user() -> bool {
    if is_test_user_child() || !is_root() {
        return true;
    }
    let name = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "as_test_user: the current thread has no test name; \
                 call run_as_test_user(\"module::test_name\") instead"
            )
        });
    run_as_test_user(&name);
    false
}

/// Re-execute the test `test_name` (its full libtest name, e.g. `layer::tests::unpack`,
/// without the crate name) of the current test binary as `adjutant-test`, and panic unless
/// exactly that one test ran and passed. Needs root.
///
/// The child gets `HOME=/home/adjutant-test`, `USER`/`LOGNAME`, no `XDG_*`/`TMPDIR`, the
/// fixtures directory (if this process knows it), and `ADJUTANT_TESTKIT_AS_TEST_USER=1`. Its
/// output is printed (libtest shows it when the calling test fails).
pub fn run_as_test_user(test_name: &str) {
    assert!(
        is_root(),
        "run_as_test_user needs root (it switches to {TEST_USER}); as an unprivileged user, \
         run the test body directly"
    );
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(TEST_UID)) {
        Ok(Some(u)) if u.name == TEST_USER => {}
        other => panic!(
            "user {TEST_USER} with uid {TEST_UID} does not exist ({other:?}): run tests/setup-host.sh"
        ),
    }
    let exe = std::env::current_exe().expect("current_exe of the test binary");
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={TEST_UID}"))
        .arg(format!("--regid={TEST_GID}"))
        .arg("--init-groups")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(&exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"]);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("XDG_") || k == "TMPDIR" || k == "RUST_TEST_THREADS" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", TEST_HOME)
        .env("USER", TEST_USER)
        .env("LOGNAME", TEST_USER)
        .env(CHILD_ENV, "1");
    // Hand the child the fixtures this process already has (rpmroot's dir holds all of them).
    let known = RPMROOT
        .get()
        .and_then(|d| d.parent()?.parent())
        .or(FIXTURES.get().map(PathBuf::as_path));
    if let Some(dir) = known {
        cmd.env(FIXTURES_ENV, dir);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run setpriv (util-linux) for {}: {e}", exe.display()));
    check_child(test_name, &exe, &out);
}

fn check_child(test_name: &str, exe: &Path, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    let ran_one = stdout.contains("test result: ok. 1 passed;");
    assert!(
        out.status.success() && ran_one,
        "test {test_name} as {TEST_USER} ({} --exact {test_name}) {}; output above",
        exe.file_name().unwrap_or(OsStr::new("?")).to_string_lossy(),
        if out.status.success() {
            "did not run exactly one test (is the name right?)".to_owned()
        } else {
            format!("failed: {}", out.status)
        }
    );
}

/// Run `check` on every committed input of fuzz target `target` (the files of
/// `<crate>/tests/data/fuzz-regressions/<target>/`, in name order; `crate_dir` is the
/// crate's `CARGO_MANIFEST_DIR`), naming the input that fails. Returns how many ran.
pub fn replay_fuzz_regressions(
    crate_dir: &Path,
    target: &str,
    mut check: impl FnMut(&[u8]),
) -> usize {
    let dir = crate_dir.join("tests/data/fuzz-regressions").join(target);
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != ".gitkeep"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    all.sort();
    for (name, data) in &all {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(data)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}/{name}: {msg}");
        }
    }
    all.len()
}
