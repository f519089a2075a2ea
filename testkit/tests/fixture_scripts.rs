//! make-fixtures.sh is idempotent, reproducible and atomic: a failed or interrupted build
//! leaves nothing that looks complete, and the next build cleans up after it.
//!
//! These run the tier-0 build (no network, a few seconds) into private temporary roots.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use adjutant_testkit::{fixtures_dir, fixtures_script};

fn run(root: &Path, path_prefix: Option<&Path>) -> Output {
    let mut cmd = Command::new(fixtures_script());
    cmd.env("KOJI_ADJUTANT_FIXTURES_ROOT", root);
    if let Some(p) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", p.display()));
    }
    cmd.output().expect("run make-fixtures.sh")
}

fn stdout_dir(out: &Output) -> PathBuf {
    assert!(
        out.status.success(),
        "make-fixtures.sh failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout.clone()).expect("utf-8").trim())
}

/// Names in `root`, except the lock files.
fn listing(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .expect("read root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".lock-"))
        .collect();
    names.sort();
    names
}

/// A directory holding a fake `skopeo` with the given body (the script's last step before
/// the rename is `skopeo inspect` of every image).
fn fake_skopeo(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("skopeo");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write fake skopeo");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn index_digest(layout: &Path) -> String {
    std::fs::read_to_string(layout.join("index.json")).expect("index.json")
}

#[test]
fn cold_then_warm_build_is_idempotent_and_reproducible() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = stdout_dir(&run(root.path(), None));
    assert!(
        dir.starts_with(root.path()),
        "{} is under the root",
        dir.display()
    );
    assert_eq!(
        dir.file_name().map(|n| n.len()),
        Some(16),
        "named by a 16-hex-digit content hash"
    );
    let before = std::fs::metadata(dir.join("oci/busybox/index.json")).expect("index.json");

    let warm = run(root.path(), None);
    assert_eq!(
        stdout_dir(&warm),
        dir,
        "a warm run prints the same directory"
    );
    assert!(
        warm.stderr.is_empty(),
        "a warm run builds nothing: {}",
        String::from_utf8_lossy(&warm.stderr)
    );
    let after = std::fs::metadata(dir.join("oci/busybox/index.json")).expect("index.json");
    assert_eq!(before.modified().ok(), after.modified().ok());
    assert_eq!(
        listing(root.path()),
        [dir.file_name().expect("name").to_string_lossy()]
    );

    // Reproducible: the same recipes give the same images as the shared fixtures.
    assert_eq!(
        dir.file_name(),
        fixtures_dir().file_name(),
        "same recipes, same hash"
    );
    for image in [
        "busybox",
        "busybox-uncompressed",
        "multilayer",
        "multilayer-zstd",
        "multiarch",
        "devnodes",
    ] {
        assert_eq!(
            index_digest(&dir.join("oci").join(image)),
            index_digest(&fixtures_dir().join("oci").join(image)),
            "{image} is bit-for-bit reproducible"
        );
    }
}

#[test]
fn a_failed_build_leaves_nothing_behind() {
    let root = tempfile::tempdir().expect("tempdir");
    let fake = fake_skopeo("echo 'fake skopeo: cannot parse' >&2; exit 1");
    let out = run(root.path(), Some(fake.path()));
    assert!(
        !out.status.success(),
        "the build must fail when skopeo rejects an image"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skopeo cannot inspect") && stderr.contains("fake skopeo: cannot parse"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing printed on stdout");
    assert_eq!(
        listing(root.path()),
        Vec::<String>::new(),
        "no product, no temporary dir"
    );
}

#[test]
fn an_interrupted_build_leaves_nothing_complete_and_the_next_build_cleans_up() {
    let root = tempfile::tempdir().expect("tempdir");
    let marks = tempfile::tempdir().expect("tempdir");
    let marker = marks.path().join("skopeo-reached");
    let fake = fake_skopeo(&format!("touch '{}'; exec sleep 600", marker.display()));

    // SIGTERM (the whole process group): the script's traps remove its temporary dir.
    let (status, names) = interrupt(
        root.path(),
        fake.path(),
        &marker,
        nix::sys::signal::Signal::SIGTERM,
    );
    assert!(!status.success());
    assert_eq!(names, Vec::<String>::new(), "after SIGTERM nothing is left");

    // SIGKILL: no trap runs; the temporary dir stays but does not look complete.
    std::fs::remove_file(&marker).ok();
    let (status, names) = interrupt(
        root.path(),
        fake.path(),
        &marker,
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(!status.success());
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with(".tmp-"),
        "only a .tmp-* dir remains: {names:?}"
    );

    // The next build removes the stale dir and completes.
    let dir = stdout_dir(&run(root.path(), None));
    assert_eq!(
        listing(root.path()),
        [dir.file_name().expect("name").to_string_lossy()]
    );
}

/// Start a build whose skopeo step hangs, wait until it got there, signal its process group.
fn interrupt(
    root: &Path,
    fake: &Path,
    marker: &Path,
    signal: nix::sys::signal::Signal,
) -> (std::process::ExitStatus, Vec<String>) {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut child = Command::new(fixtures_script())
        .env("KOJI_ADJUTANT_FIXTURES_ROOT", root)
        .env("PATH", format!("{}:{path}", fake.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn make-fixtures.sh");
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Not a timing assertion: a generous bound so a broken script cannot hang the suite.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !marker.exists() {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("make-fixtures.sh exited ({status}) before reaching skopeo");
        }
        assert!(
            Instant::now() < deadline,
            "make-fixtures.sh never reached skopeo"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::killpg(pgid, signal).expect("killpg");
    let status = child.wait().expect("wait");
    if signal == nix::sys::signal::Signal::SIGKILL {
        // The fake skopeo's sleep was in the group too; nothing of ours keeps running.
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    }
    (status, listing(root))
}
