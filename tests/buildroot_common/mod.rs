//! Shared by the buildroot tests: a private store with the rpmroot fixture imported as
//! `localhost/buildroot:latest`, a buildroot factory on it (the runtime's helper is the
//! koji-adjutant binary), a fixture repo (createrepo_c with a `build` group) and a tiny
//! HTTP server for it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use adjutant_runtime::container::{Runtime, RuntimeConfig};
use adjutant_runtime::idmap::MappingMode;
use adjutant_runtime::store::{ImportOptions, PullPolicy, Store};
use adjutant_runtime::userns;
use adjutant_testkit::{fixtures_dir, rpmroot_dir};
use koji_adjutant::buildroot::{
    BuildrootRequest, Buildroots, DnfOptions, RepoSource, Settings, TOPDIR,
};
use koji_adjutant::policy::{ImagePolicy, ImageSource, PolicySettings, Resolution};
use koji_adjutant::registry::Registry;

pub const BIN: &str = env!("CARGO_BIN_EXE_koji-adjutant");
pub const IMAGE: &str = "localhost/buildroot:latest";

/// A temporary directory under /var/tmp (the store's filesystem), traversable by
/// container root; removed when dropped.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

pub fn srpm(name: &str) -> PathBuf {
    let p = fixtures_dir()
        .join("srpms")
        .join(format!("{name}-1.0-1.src.rpm"));
    assert!(p.is_file(), "fixture {} missing", p.display());
    p
}

/// A store with the rpmroot image and buildroots made on it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub store_root: PathBuf,
    pub b: Buildroots,
    pub registry: Registry,
}

impl Env {
    pub fn new(cache: bool) -> Env {
        let dir = tempdir("ka-broot-test.");
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
            enabled: true,
            default_image: IMAGE.into(),
            ttl: Duration::from_secs(60),
            file: None,
        })
        .unwrap();
        let settings = Settings {
            pull_policy: PullPolicy::Never,
            pull_timeout: Duration::from_secs(60),
            cache,
            cache_max_bytes: 10 << 30,
            cache_ttl: Duration::from_secs(3600),
        };
        let registry = Registry::new(Duration::from_secs(3600));
        let b = Buildroots::from_parts(runtime, store, settings, policy, Some(registry.clone()));
        Env {
            dir,
            store_root,
            b,
            registry,
        }
    }

    /// A request with no repos, its own log, work and result dirs under `name`.
    pub fn request(&self, name: &str) -> BuildrootRequest {
        let base = self.dir.path().join(name);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut macros = BTreeMap::new();
        macros.insert("_topdir".to_string(), TOPDIR.to_string());
        BuildrootRequest {
            name: name.into(),
            image: Resolution {
                image: IMAGE.into(),
                source: ImageSource::Default,
                tag: "test".into(),
            },
            repos: vec![],
            koji: None,
            arch: "x86_64".into(),
            target_arch: "x86_64".into(),
            install_group: Some("build".into()),
            packages: vec![],
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

/// A repo with koji-only-dep and a `build` group (as a Koji repo has: comps from the
/// tag's groups); its rpmlist.jsonl names the rpm with id 4242.
pub fn make_repo(dir: &Path) -> PathBuf {
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
    let q = Command::new("rpm")
        .args([
            "-qp",
            "--nosignature",
            "--qf",
            "%{NAME}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SIGMD5}\\t%{SIZE}\\t%{BUILDTIME}",
        ])
        .arg(repo.join("koji-only-dep-1.0-1.noarch.rpm"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&q.stdout).to_string();
    let f: Vec<&str> = out.trim().split('\t').collect();
    assert_eq!(f.len(), 7, "rpm -qp: {out}");
    let line = serde_json::json!({
        "name": f[0], "version": f[1], "release": f[2], "arch": f[3], "id": 4242,
        "epoch": null, "draft": false, "payloadhash": f[4],
        "size": f[5].parse::<i64>().unwrap(), "buildtime": f[6].parse::<i64>().unwrap(),
        "buildroot_id": 1, "build_id": 7, "metadata_only": false
    });
    std::fs::write(repo.join("rpmlist.jsonl"), format!("{line}\n")).unwrap();
    let st = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    repo
}

pub fn repo_source(url: String) -> RepoSource {
    RepoSource {
        name: "build".into(),
        baseurls: vec![url],
    }
}

/// Serve `root` over HTTP/1.1 on 127.0.0.1 (GET only, symlinks followed, no `..`);
/// returns the base URL. Runs until the runtime stops.
pub async fn serve(root: PathBuf) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let root = root.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&buf).to_string();
                let path = req
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .to_string();
                let body = if path.contains("..") {
                    None
                } else {
                    std::fs::read(root.join(path.trim_start_matches('/'))).ok()
                };
                let resp = match body {
                    Some(b) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            b.len()
                        )
                        .into_bytes();
                        r.extend(b);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = s.write_all(&resp).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `rpm -qp --qf` on the host.
pub fn rpm_q(p: &Path, qf: &str) -> String {
    let o = Command::new("rpm")
        .args(["-qp", "--nosignature", "--qf", qf])
        .arg(p)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rpm -qp {}: {}",
        p.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Nothing of the buildroots left: no containers, no private dirs under `work`.
pub fn assert_clean(env: &Env, work: &Path) {
    let containers: Vec<_> = std::fs::read_dir(env.store_root.join("containers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name())
                .filter(|n| n != ".mnt")
                .collect()
        })
        .unwrap_or_default();
    assert!(containers.is_empty(), "containers left: {containers:?}");
    if let Ok(rd) = std::fs::read_dir(work) {
        let left: Vec<_> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".buildroot-"))
            .collect();
        assert!(
            left.is_empty(),
            "buildroot dirs left in {}: {left:?}",
            work.display()
        );
    }
}
