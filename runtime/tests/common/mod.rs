//! Shared helpers of the container integration tests.
//!
//! Images: until the image store is merged, lower directories are made here from the
//! host's busybox-static (tests only), owned by the host id that container root maps
//! to. Rootless cases re-run one test of this binary as `adjutant-test` through
//! `adjutant_testkit::as_test_user`.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use adjutant_runtime::container::{
    Container, ContainerSpec, ExecSpec, ProcessSpec, Rootfs, Runtime, RuntimeConfig, Sink,
};
use adjutant_runtime::idmap::IdMapping;

pub fn helper_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_adjutant-runtime-helper"))
}

pub use adjutant_testkit::is_root;

/// Run `body` as root (when we are root), then again as `adjutant-test`.
pub fn as_root_and_test_user<F: std::future::Future<Output = ()>>(body: impl Fn() -> F) {
    if is_root() && !adjutant_testkit::is_test_user_child() {
        block_on(body());
    }
    if adjutant_testkit::as_test_user() {
        block_on(body());
    }
}

/// Run `body` only as `adjutant-test` (re-executing when root).
pub fn as_test_user_only<F: std::future::Future<Output = ()>>(body: impl Fn() -> F) {
    if adjutant_testkit::as_test_user() {
        block_on(body());
    }
}

/// A temp dir every uid may traverse (container root is host uid 100000 as root).
pub fn tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("ka-containers-test.")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Which host uid/gid container root is under `mapping`.
pub fn root_owner(mapping: &IdMapping) -> (u32, u32) {
    (mapping.host_uid(0).unwrap(), mapping.host_gid(0).unwrap())
}

/// A busybox root filesystem at `dir` (one "layer"), owned by `owner`, with a
/// `builder` (1000) user and `/lib`, `/lib64` pointing into `/usr` (so the host's
/// `/usr` can be bound in for rpm).
pub fn busybox_lower(dir: &Path, owner: (u32, u32)) {
    for d in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "var/tmp",
        "opt",
        "home/builder",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        let p = dir.join("bin").join(applet);
        if !p.exists() {
            std::os::unix::fs::symlink("busybox", p).unwrap();
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000::/home/builder:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\ntty:x:5:\nbuilder:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("usr/lib", dir.join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib64", dir.join("lib64")).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    chown_tree(dir, owner);
}

pub fn chown_tree(dir: &Path, (uid, gid): (u32, u32)) {
    if (uid, gid)
        == (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    {
        return;
    }
    let st = Command::new("chown")
        .args(["-hR", &format!("{uid}:{gid}")])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A test environment: a store root, a runtime and a busybox lower dir.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub rt: Runtime,
    pub lower: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let cfg = RuntimeConfig::detect(PathBuf::new()).unwrap();
        Env::with_mapping(cfg.mapping, cfg.mapping_warning)
    }

    pub fn with_mapping(mapping: IdMapping, warning: Option<String>) -> Env {
        let dir = tempdir();
        let lower = dir.path().join("layers/busybox");
        std::fs::create_dir_all(&lower).unwrap();
        busybox_lower(&lower, root_owner(&mapping));
        let mut cfg = RuntimeConfig::new(dir.path().join("store"), mapping);
        cfg.mapping_warning = warning;
        cfg.helper_exe = helper_exe();
        cfg.cgroup_parent = PathBuf::from(format!("koji-adjutant-test-{}", std::process::id()));
        let rt = Runtime::new(cfg).unwrap();
        Env { dir, rt, lower }
    }

    pub fn spec(&self) -> ContainerSpec {
        ContainerSpec::new(Rootfs::Overlay {
            lowers: vec![self.lower.clone()],
        })
    }

    pub async fn create(&self) -> Container {
        self.rt.create(self.spec()).await.unwrap()
    }
}

/// Run `sh -c script` in `c`; (exit code, stdout, stderr).
pub async fn sh(c: &Container, script: &str) -> (i32, String, String) {
    sh_with(c, script, |_| {}).await
}

pub async fn sh_with(
    c: &Container,
    script: &str,
    f: impl FnOnce(&mut ExecSpec),
) -> (i32, String, String) {
    let (out, o) = Sink::capture();
    let (err, e) = Sink::capture();
    let mut spec = ExecSpec::new(ProcessSpec::new(["/bin/sh", "-c", script]));
    spec.stdout = out;
    spec.stderr = err;
    f(&mut spec);
    let st = c.run(spec).await.unwrap();
    (st.shell_code(), o.text(), e.text())
}

/// Entries mentioning `needle` in our mountinfo.
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Cgroup directories named `name` anywhere under /sys/fs/cgroup (depth 3).
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().contains(name) {
                out.push(p.clone());
            }
            if depth < 3 {
                stack.push((p, depth + 1));
            }
        }
    }
    out
}

/// Start a multi-threaded tokio runtime for a test body.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
