//! Container start and exec latency through the runtime API (the daemon's path).
//!
//! - `create_exec_destroy`: `Runtime::create` (re-exec helper, clone, overlay, mounts,
//!   pivot) + `exec /bin/true` + `destroy` of a busybox container.
//! - `exec_true`: `exec /bin/true` into a running container (helper re-exec, setns into
//!   its namespaces, fork, exec, wait).
//!
//! The helper binary is the runtime's small `adjutant-runtime-helper`, or
//! `$KA_BENCH_HELPER` (benches/peers/start.sh points it at the release `koji-adjutant`,
//! which is what the daemon re-executes). The rootfs is the fixture busybox layer.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use adjutant_runtime::container::{
    ContainerSpec, ExecSpec, ProcessSpec, Rootfs, Runtime, RuntimeConfig,
};
use criterion::{criterion_group, criterion_main, Criterion};

fn setup() -> (tempfile::TempDir, Runtime, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("ka-bench.")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let lower = dir.path().join("busybox");
    std::fs::create_dir(&lower).unwrap();
    let tar = adjutant_testkit::fixtures_dir().join("layers/busybox.tar");
    assert!(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&lower)
        .arg("--no-same-owner")
        .status()
        .unwrap()
        .success());
    let mut cfg = RuntimeConfig::detect(dir.path().join("store")).unwrap();
    if let (Some(u), Some(g)) = (cfg.mapping.host_uid(0), cfg.mapping.host_gid(0)) {
        if (u, g)
            != (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            )
        {
            assert!(Command::new("chown")
                .arg("-hR")
                .arg(format!("{u}:{g}"))
                .arg(&lower)
                .status()
                .unwrap()
                .success());
        }
    }
    cfg.helper_exe = std::env::var_os("KA_BENCH_HELPER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_adjutant-runtime-helper")));
    cfg.cgroup_parent = PathBuf::from("koji-adjutant-bench");
    let rt = Runtime::new(cfg).unwrap();
    (dir, rt, lower)
}

fn benches(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_dir, rt, lower) = setup();
    let spec = ContainerSpec::new(Rootfs::Overlay {
        lowers: vec![lower.clone()],
    });
    let truth = || ExecSpec::new(ProcessSpec::new(["/bin/true"]));

    let mut g = c.benchmark_group("container");
    g.sample_size(100);
    g.bench_function("create_exec_destroy", |b| {
        b.iter(|| {
            tokio.block_on(async {
                let c = rt.create(spec.clone()).await.unwrap();
                let st = c.run(truth()).await.unwrap();
                assert!(st.success());
                c.destroy().await.unwrap();
            })
        })
    });
    let running = tokio.block_on(rt.create(spec.clone())).unwrap();
    g.bench_function("exec_true", |b| {
        b.iter(|| {
            tokio.block_on(async {
                let st = running.run(truth()).await.unwrap();
                assert!(st.success());
            })
        })
    });
    g.finish();
    tokio.block_on(running.destroy()).unwrap();
}

criterion_group!(container, benches);
criterion_main!(container);
