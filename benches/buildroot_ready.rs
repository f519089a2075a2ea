//! Buildroot ready: `Buildroots::create` of a Koji-style buildroot — image in the store,
//! a repo with a `build` group, one package to install — when the install is served
//! from the buildroot cache: container up on the cached install layer, repo config,
//! macros, mockbuild user, the installed-package list (`rpm -qa`), the mock logs.
//! Issue 5's target: ≤ 1 s. `cargo bench --bench buildroot_ready` (as root; the
//! rpmroot fixture is built on demand). The cold install (dnf) is timed once for
//! comparison and printed, not benchmarked.
//!
//! The peer comparison for the build step itself (rpmbuild in the container vs on the
//! host) is benches/peers/rpmbuild.sh.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use koji_adjutant::buildroot::{BuildrootRequest, DnfOptions, RepoSource, TOPDIR};
use koji_adjutant::policy::{ImageSource, Resolution};

use buildroot_common::IMAGE;

/// The store with the rpmroot image and the buildroot factory of the buildroot tests.
#[path = "../tests/buildroot_common/mod.rs"]
mod buildroot_common;

struct Env {
    common: buildroot_common::Env,
    repo_url: String,
}

impl std::ops::Deref for Env {
    type Target = buildroot_common::Env;
    fn deref(&self) -> &buildroot_common::Env {
        &self.common
    }
}

impl Env {
    fn new() -> Env {
        let common = buildroot_common::Env::new(true);
        let repo = buildroot_common::make_repo(common.dir.path());
        Env {
            repo_url: format!("file://{}", repo.display()),
            common,
        }
    }

    fn request(&self, name: &str) -> BuildrootRequest {
        let base = self.dir.path().join(name);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut macros = BTreeMap::new();
        macros.insert("_topdir".to_string(), TOPDIR.to_string());
        macros.insert("dist".to_string(), ".bench".to_string());
        BuildrootRequest {
            name: name.into(),
            image: Resolution {
                image: IMAGE.into(),
                source: ImageSource::Default,
                tag: "bench".into(),
            },
            repos: vec![RepoSource {
                name: "build".into(),
                baseurls: vec![self.repo_url.clone()],
            }],
            koji: None,
            arch: "x86_64".into(),
            target_arch: "x86_64".into(),
            install_group: Some("build".into()),
            packages: vec!["koji-only-dep".into()],
            macros,
            env: BTreeMap::new(),
            dnf: DnfOptions::default(),
            build_network: false,
            seccomp: true,
            mounts: vec![],
            limits: Default::default(),
            build_timeout: Duration::from_secs(600),
            max_log_size: None,
            logdir: base.join("logs"),
            workdir: base.join("work"),
            resultdir: Some(base.join("result")),
            hostname: None,
        }
    }
}

fn bench(c: &mut Criterion) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "run the buildroot benchmark as root"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = Env::new();
    // Fill the cache: the one cold install (dnf), timed for the record.
    let t0 = Instant::now();
    let br = rt.block_on(env.b.create(env.request("cold"))).unwrap();
    let cold = t0.elapsed();
    assert!(!br.info().cache_hit);
    rt.block_on(br.destroy());
    eprintln!("buildroot_ready: cold (dnf install, cache filled): {cold:.2?}");

    let mut g = c.benchmark_group("buildroot_ready");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(2));
    g.measurement_time(Duration::from_secs(15));
    let mut n = 0u64;
    g.bench_function("cached_install", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let req = env.request(&format!("warm-{n}"));
                let base = env.dir.path().join(format!("warm-{n}"));
                let t0 = Instant::now();
                let br = rt.block_on(env.b.create(req)).unwrap();
                total += t0.elapsed();
                assert!(
                    br.info().cache_hit,
                    "the install was not served from the cache"
                );
                rt.block_on(br.destroy());
                let _ = std::fs::remove_dir_all(base);
            }
            total
        })
    });
    g.finish();
    let (hits, misses) = env.b.cache_counters().get();
    eprintln!("buildroot_ready: cache hits {hits}, misses {misses}");
    assert_eq!(misses, 1);
}

criterion_group!(benches, bench);
criterion_main!(benches);
