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
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use adjutant_runtime::container::{Runtime, RuntimeConfig};
use adjutant_runtime::idmap::MappingMode;
use adjutant_runtime::store::{ImportOptions, PullPolicy, Store};
use adjutant_runtime::userns;
use adjutant_testkit::{fixtures_dir, rpmroot_dir};
use criterion::{criterion_group, criterion_main, Criterion};
use koji_adjutant::buildroot::{
    BuildrootRequest, Buildroots, DnfOptions, RepoSource, Settings, TOPDIR,
};
use koji_adjutant::policy::{ImagePolicy, ImageSource, PolicySettings, Resolution};

const BIN: &str = env!("CARGO_BIN_EXE_koji-adjutant");
const IMAGE: &str = "localhost/buildroot:latest";

/// A repo of the fixture rpms with a `build` group, as a Koji repo has.
fn make_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for e in std::fs::read_dir(fixtures_dir().join("rpms"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(e.path(), repo.join(e.file_name())).unwrap();
    }
    let comps = dir.join("comps.xml");
    std::fs::write(
        &comps,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">
<comps>
  <group>
    <id>build</id><name>build</name><description/><default>false</default><uservisible>true</uservisible>
    <packagelist>
      <packagereq type="mandatory">bash</packagereq>
      <packagereq type="mandatory">gcc</packagereq>
      <packagereq type="mandatory">make</packagereq>
      <packagereq type="mandatory">rpm-build</packagereq>
    </packagelist>
  </group>
</comps>
"#,
    )
    .unwrap();
    let st = Command::new("createrepo_c")
        .args(["-q", "-g"])
        .arg(&comps)
        .arg(&repo)
        .status()
        .unwrap();
    assert!(st.success(), "createrepo_c failed");
    let st = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    repo
}

struct Env {
    dir: tempfile::TempDir,
    b: Buildroots,
    repo_url: String,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("ka-bench-broot.")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let store_root = dir.path().join("store");
        let store = Store::open(&store_root).unwrap();
        let mut rcfg = RuntimeConfig::detect(&store_root).unwrap();
        rcfg.helper_exe = PathBuf::from(BIN);
        if rcfg.mapping.mode == MappingMode::RootlessRanges {
            store.set_userns_runner(userns::store_runner(PathBuf::from(BIN)));
        }
        store
            .import(
                &format!("oci:{}:latest", rpmroot_dir().display()),
                Some(IMAGE),
                &ImportOptions::default(),
            )
            .unwrap();
        let runtime = Runtime::new(rcfg).unwrap();
        let policy = ImagePolicy::new(PolicySettings {
            enabled: false,
            default_image: IMAGE.into(),
            ttl: Duration::from_secs(60),
            file: None,
        })
        .unwrap();
        let settings = Settings {
            pull_policy: PullPolicy::Never,
            pull_timeout: Duration::from_secs(60),
            cache: true,
            cache_max_bytes: 10 << 30,
            cache_ttl: Duration::from_secs(3600),
        };
        let b = Buildroots::from_parts(runtime, store, settings, policy, None);
        let repo = make_repo(dir.path());
        Env {
            repo_url: format!("file://{}", repo.display()),
            dir,
            b,
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
