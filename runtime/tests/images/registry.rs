//! Pulls: an in-process fake registry for auth and faults, the real docker-registry
//! for the plain path.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use adjutant_runtime::digest::Digest;
use adjutant_runtime::layer::Compression;
use adjutant_runtime::platform::Platform;
use adjutant_runtime::registry::retry::RetryPolicy;
use adjutant_runtime::registry::RegistryConfig;
use adjutant_runtime::store::{
    ErrorClass, PullOptions, PullPolicy, Store, StoreError, StoreOptions,
};

use crate::support::fake_registry::{Auth, FakeRegistry};
use crate::support::{self, index_for, Blob, LayerBuilder, TestImage};

fn config(reg: &str, auth_file: &Path) -> RegistryConfig {
    RegistryConfig {
        insecure: vec![reg.to_owned()],
        auth_file: Some(auth_file.to_owned()),
        retry: RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
        },
        ..Default::default()
    }
}

fn open(dir: &Path, cfg: RegistryConfig) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            registry: cfg,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A two-layer image whose content depends on `tag`.
fn image(tag: &str, arch: &str) -> TestImage {
    let l1 = LayerBuilder::new()
        .dir("./", 0o755)
        .file("etc/os-release", format!("ID={tag}\n").as_bytes())
        .file("big", &vec![7u8; 300_000])
        .finish();
    let l2 = LayerBuilder::new()
        .file("etc/arch", arch.as_bytes())
        .finish();
    TestImage::new(&[(l1, Compression::Gzip), (l2, Compression::Zstd)], arch)
}

fn opts() -> PullOptions {
    PullOptions {
        platform: Platform::for_arch("x86_64").unwrap(),
        policy: PullPolicy::Always,
        ..Default::default()
    }
}

fn blob_files(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_anonymously_and_picks_the_platform_from_an_index() {
    let reg = FakeRegistry::start().await;
    let (amd, arm) = (image("x", "amd64"), image("x", "arm64"));
    let idx = index_for(&[(&amd, "amd64", None), (&arm, "arm64", Some("v8"))]);
    reg.push_index("test/multi", "latest", &idx, &[&amd, &arm]);
    let t = support::tempdir();
    let s = open(t.path(), config(&reg.host(), &t.path().join("none.json")));
    let name = format!("{}/test/multi:latest", reg.host());
    let r = s.pull(&name, &opts()).await.unwrap();
    assert_eq!(r.image.manifest_digest, amd.manifest.digest);
    assert_eq!(r.image.config.architecture().to_string(), "amd64");
    assert_eq!((r.blobs_fetched, r.blobs_present), (3, 0));
    let arm_opts = PullOptions {
        platform: Platform::for_arch("aarch64").unwrap(),
        ..opts()
    };
    let r = s.pull(&name, &arm_opts).await.unwrap();
    assert_eq!(r.image.manifest_digest, arm.manifest.digest);
    let e = s
        .pull(
            &name,
            &PullOptions {
                platform: Platform::for_arch("s390x").unwrap(),
                ..opts()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("linux/amd64, linux/arm64/v8"), "{e}");
    // By digest.
    let by_digest = format!("{}/test/multi@{}", reg.host(), amd.manifest.digest);
    let r = s.pull(&by_digest, &opts()).await.unwrap();
    assert_eq!(r.image.name, by_digest);
    assert_eq!(r.blobs_fetched, 0);
    // Unknown tags are NotFound.
    let e = s
        .pull(&format!("{}/test/multi:nope", reg.host()), &opts())
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let reg = FakeRegistry::start().await;
    let good = image("a", "amd64");
    let other = image("b", "amd64");
    reg.push("test/lie", "latest", &good);
    // Serve other's manifest when asked for good's digest.
    let lie = Blob {
        digest: good.manifest.digest.clone(),
        ..other.manifest.clone()
    };
    let fake = TestImage {
        manifest: lie,
        ..other
    };
    reg.push("test/lie2", &good.manifest.digest.to_string(), &fake);
    let t = support::tempdir();
    let s = open(t.path(), config(&reg.host(), &t.path().join("none.json")));
    let e = s
        .pull(
            &format!("{}/test/lie2@{}", reg.host(), good.manifest.digest),
            &opts(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Integrity, "{e}");
    assert!(
        e.to_string().contains(&good.manifest.digest.to_string()),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_credentials_from_the_auth_file() {
    let reg = FakeRegistry::start().await;
    reg.push("test/private", "latest", &image("p", "amd64"));
    reg.set_auth(Auth::Basic {
        user: "testuser".into(),
        pass: "testpass".into(),
    });
    let t = support::tempdir();
    let auth = t.path().join("auth.json");
    let name = format!("{}/test/private:latest", reg.host());
    let s = open(&t.path().join("s1"), config(&reg.host(), &auth));
    let e = s.pull(&name, &opts()).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("username and password") && msg.contains("auth.json"),
        "{msg}"
    );
    assert!(matches!(e.class(), ErrorClass::Registry));
    // podman login writes this.
    let b64 = base64_encode("testuser:testpass");
    std::fs::write(
        &auth,
        format!(r#"{{"auths":{{"{}":{{"auth":"{b64}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let s = open(&t.path().join("s2"), config(&reg.host(), &auth));
    let r = s.pull(&name, &opts()).await.unwrap();
    assert_eq!(r.blobs_fetched, 3);
    // Wrong password: access denied, naming the registry.
    std::fs::write(
        &auth,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.host(),
            base64_encode("testuser:nope")
        ),
    )
    .unwrap();
    let s = open(&t.path().join("s3"), config(&reg.host(), &auth));
    let e = s.pull(&name, &opts()).await.unwrap_err();
    assert!(
        e.to_string().contains(&reg.host()) && e.to_string().contains("denied"),
        "{e}"
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_auth() {
    let reg = FakeRegistry::start().await;
    reg.push("test/tok", "latest", &image("t", "amd64"));
    reg.set_auth(Auth::Bearer {
        creds: Some(("robot".into(), "s3cret".into())),
    });
    let t = support::tempdir();
    let auth = t.path().join("auth.json");
    std::fs::write(
        &auth,
        format!(
            r#"{{"auths":{{"{}/test":{{"auth":"{}"}}}}}}"#,
            reg.host(),
            base64_encode("robot:s3cret")
        ),
    )
    .unwrap();
    let s = open(t.path(), config(&reg.host(), &auth));
    let r = s
        .pull(&format!("{}/test/tok:latest", reg.host()), &opts())
        .await
        .unwrap();
    assert_eq!(r.blobs_fetched, 3);
    let reqs = reg.requests();
    let token_reqs = reqs.iter().filter(|r| r.path == "/token").count();
    assert_eq!(
        token_reqs, 1,
        "the token must be cached for the scope: {reqs:?}"
    );
    assert!(reqs
        .iter()
        .filter(|r| r.path.contains("/blobs/"))
        .all(|r| r.authorization.as_deref() == Some("Bearer fake-token")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_only_for_registries_configured_insecure() {
    let reg = FakeRegistry::start().await;
    reg.push("test/plain", "latest", &image("h", "amd64"));
    let t = support::tempdir();
    let mut cfg = config(&reg.host(), &t.path().join("none.json"));
    cfg.insecure.clear();
    let s = open(&t.path().join("a"), cfg);
    let name = format!("{}/test/plain:latest", reg.host());
    let e = s.pull(&name, &opts()).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("insecure"),
        "the error should say how to allow it: {msg}"
    );
    assert!(
        reg.requests().is_empty(),
        "no HTTP request may reach a registry that is not insecure"
    );
    let s = open(
        &t.path().join("b"),
        config(&reg.host(), &t.path().join("none.json")),
    );
    s.pull(&name, &opts()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_server_errors_are_retried() {
    let reg = FakeRegistry::start().await;
    let img = image("r", "amd64");
    reg.push("test/flaky", "latest", &img);
    reg.faults().fail_503 = 2;
    let t = support::tempdir();
    let s = open(
        &t.path().join("a"),
        config(&reg.host(), &t.path().join("none.json")),
    );
    let name = format!("{}/test/flaky:latest", reg.host());
    s.pull(&name, &opts()).await.unwrap();
    let blob_reqs = reg
        .requests()
        .iter()
        .filter(|r| r.path.contains("/blobs/"))
        .count();
    assert_eq!(blob_reqs, 3 + 2, "two 503s, then each blob once");
    // More failures than attempts: the error says what and how it failed.
    reg.faults().fail_503 = 100;
    let s = open(
        &t.path().join("b"),
        config(&reg.host(), &t.path().join("none.json")),
    );
    let e = s.pull(&name, &opts()).await.unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
    assert!(matches!(s.resolve(&name), Err(StoreError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_connection_resumes_with_range() {
    let reg = FakeRegistry::start().await;
    let img = image("d", "amd64");
    reg.push("test/dies", "latest", &img);
    reg.faults().die_mid_blob = 1;
    let t = support::tempdir();
    let s = open(t.path(), config(&reg.host(), &t.path().join("none.json")));
    let opts = PullOptions {
        parallel: 1,
        ..opts()
    };
    let r = s
        .pull(&format!("{}/test/dies:latest", reg.host()), &opts)
        .await
        .unwrap();
    // The first blob fetched is the config; its second request resumes half-way.
    let cfg = &img.config;
    let ranges: Vec<String> = reg
        .requests()
        .iter()
        .filter(|q| q.path.ends_with(&cfg.digest.to_string()))
        .filter_map(|q| q.range.clone())
        .collect();
    assert_eq!(ranges, [format!("bytes={}-", cfg.data.len() / 2)]);
    assert_eq!(r.blobs_fetched, 3);
    assert_eq!(blob_files(t.path()).len(), 4);
    // A server that always dies: the pull fails after its retries; no blob, no name.
    let img2 = image("d2", "amd64");
    reg.push("test/dies2", "latest", &img2);
    reg.faults().die_mid_blob = 1000;
    let before = blob_files(t.path());
    let e = s
        .pull(&format!("{}/test/dies2:latest", reg.host()), &opts)
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Registry, "{e}");
    assert_eq!(blob_files(t.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_mismatch_leaves_nothing() {
    let reg = FakeRegistry::start().await;
    let img = image("m", "amd64");
    reg.push("test/bad", "latest", &img);
    let bad = img.layers[0].digest.clone();
    reg.faults().corrupt.insert(bad.clone());
    let t = support::tempdir();
    let s = open(t.path(), config(&reg.host(), &t.path().join("none.json")));
    let name = format!("{}/test/bad:latest", reg.host());
    let e = s.pull(&name, &opts()).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Integrity, "{e}");
    assert!(
        e.to_string().contains(&bad.to_string()),
        "the error must name the blob: {e}"
    );
    assert!(!blob_files(t.path()).contains(&bad.hex().to_owned()));
    assert_eq!(
        std::fs::read_dir(t.path().join("ingest")).unwrap().count(),
        0,
        "partial download left behind"
    );
    assert!(matches!(s.resolve(&name), Err(StoreError::NotFound(_))));
    // The index does not mention it either.
    let idx = std::fs::read_to_string(t.path().join("index.json")).unwrap();
    assert!(!idx.contains("test/bad"), "{idx}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_share_one_download() {
    let reg = FakeRegistry::start().await;
    let img = image("c", "amd64");
    reg.push("test/shared", "latest", &img);
    reg.push("test/shared", "other", &img);
    // Slow blobs, so that the pulls overlap.
    reg.faults().blob_delay = Duration::from_millis(300);
    let t = support::tempdir();
    let s = open(t.path(), config(&reg.host(), &t.path().join("none.json")));
    let s2 = Store::open_with(t.path(), s.options().clone()).unwrap(); // a second handle
    let (n1, n2, n3) = (
        format!("{}/test/shared:latest", reg.host()),
        format!("{}/test/shared:other", reg.host()),
        format!("{}/test/shared:latest", reg.host()),
    );
    let o = opts();
    let (a, b, c) = tokio::join!(s.pull(&n1, &o), s.pull(&n2, &o), s2.pull(&n3, &o));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    for blob in img.blobs().into_iter().skip(1) {
        assert_eq!(
            reg.blob_gets(&blob.digest),
            1,
            "blob {} downloaded more than once",
            blob.digest
        );
    }
    assert_eq!(a.blobs_fetched + b.blobs_fetched + c.blobs_fetched, 3);
    assert_eq!(a.image.manifest_digest, b.image.manifest_digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_missing_uses_the_store_without_asking() {
    let reg = FakeRegistry::start().await;
    reg.push("test/pol", "latest", &image("p", "amd64"));
    let t = support::tempdir();
    let s = open(t.path(), config(&reg.host(), &t.path().join("none.json")));
    let name = format!("{}/test/pol:latest", reg.host());
    let never = PullOptions {
        policy: PullPolicy::Never,
        ..opts()
    };
    assert!(matches!(
        s.pull(&name, &never).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(reg.requests().is_empty());
    s.pull(
        &name,
        &PullOptions {
            policy: PullPolicy::Missing,
            ..opts()
        },
    )
    .await
    .unwrap();
    let n = reg.requests().len();
    let r = s
        .pull(
            &name,
            &PullOptions {
                policy: PullPolicy::Missing,
                ..opts()
            },
        )
        .await
        .unwrap();
    assert!(r.from_store);
    assert_eq!(
        reg.requests().len(),
        n,
        "policy missing asked the registry although the image is stored"
    );
    s.pull(&name, &opts()).await.unwrap();
    assert!(
        reg.requests().len() > n,
        "policy always must ask the registry"
    );
}

/// Pull with `unpack`: layers are unpacked before the image gets its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_unpack() {
    let reg = FakeRegistry::start().await;
    let img = image("u", "amd64");
    reg.push("test/unpack", "latest", &img);
    let t = support::tempdir();
    let s = open(t.path(), config(&reg.host(), &t.path().join("none.json")));
    let m = if support::is_root() {
        crate::unpack::root_mapping()
    } else {
        adjutant_runtime::idmap::IdMapping::single(unsafe { libc::geteuid() }, unsafe {
            libc::getegid()
        })
    };
    let o = PullOptions {
        unpack: Some(m.clone()),
        ..opts()
    };
    let r = s
        .pull(&format!("{}/test/unpack:latest", reg.host()), &o)
        .await
        .unwrap();
    let u = r.unpack.unwrap();
    assert_eq!(u.layers_unpacked, 2);
    assert_eq!(std::fs::read(u.dirs[1].join("etc/arch")).unwrap(), b"amd64");
    assert_eq!(
        std::fs::read(u.dirs[0].join("etc/os-release")).unwrap(),
        b"ID=u\n"
    );
}

/// The real docker-registry: `$KOJI_ADJUTANT_TEST_REGISTRY` if set (tests/run.sh),
/// else one started here with the busybox fixture pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_registry_plain_pull_and_skopeo_inspect() {
    let (_guard, host) = real_registry();
    let t = support::tempdir();
    let s = open(t.path(), config(&host, &t.path().join("none.json")));
    let name = format!("{host}/test/busybox:latest");
    let r = s.pull(&name, &opts()).await.unwrap();
    let want = TestImage::from_layout(&support::fixture_oci("busybox"));
    assert_eq!(r.image.manifest_digest, want.manifest.digest);
    assert_eq!(r.image.diff_ids, want.diff_ids);
    let out = Command::new("skopeo")
        .args(["inspect", &format!("oci:{}:{name}", t.path().display())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["Digest"].as_str().unwrap(),
        want.manifest.digest.to_string()
    );
    let d: Vec<Digest> = r.image.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(
        d,
        want.layers
            .iter()
            .map(|l| l.digest.clone())
            .collect::<Vec<_>>()
    );
    // Docker schema 2 media types (skopeo --format v2s2): same content, other digests.
    let v2 = s
        .pull(&format!("{host}/test/busybox-v2s2:latest"), &opts())
        .await
        .unwrap();
    assert_eq!(
        v2.image.manifest_media_type, "application/vnd.oci.image.manifest.v1+json",
        "stored in OCI form, as skopeo copy to an OCI layout does"
    );
    assert_eq!(
        v2.image.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_ne!(v2.source_digest, v2.image.manifest_digest);
    assert_eq!(v2.image.layers[0].digest, want.layers[0].digest);
    assert_eq!(v2.image.diff_ids, want.diff_ids);
    let out = Command::new("skopeo")
        .args([
            "inspect",
            &format!("oci:{}:{}", t.path().display(), v2.image.name),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect v2s2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A multi-arch index pushed with skopeo copy --all.
    let arm = PullOptions {
        platform: Platform::for_arch("aarch64").unwrap(),
        ..opts()
    };
    let m = s
        .pull(&format!("{host}/test/multiarch:latest"), &arm)
        .await
        .unwrap();
    assert_eq!(m.image.config.architecture().to_string(), "arm64");
    let x = s
        .pull(&format!("{host}/test/multiarch:latest"), &opts())
        .await
        .unwrap();
    assert_eq!(x.image.config.architecture().to_string(), "amd64");
    assert_ne!(x.image.manifest_digest, m.image.manifest_digest);
}

struct RegistryGuard(
    Option<std::process::Child>,
    #[allow(dead_code)] Option<tempfile::TempDir>,
);

impl Drop for RegistryGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn real_registry() -> (RegistryGuard, String) {
    if let Ok(h) = std::env::var("KOJI_ADJUTANT_TEST_REGISTRY") {
        return (RegistryGuard(None, None), h);
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = support::tempdir();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}, secret: test}}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker-registry is not installed");
    let host = format!("127.0.0.1:{port}");
    let guard = RegistryGuard(Some(child), Some(dir));
    let mut up = false;
    for _ in 0..500 {
        if std::net::TcpStream::connect(&host).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(up, "docker-registry did not start");
    let st = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!(
            "oci:{}:latest",
            support::fixture_oci("busybox").display()
        ))
        .arg(format!("docker://{host}/test/busybox:latest"))
        .status()
        .unwrap();
    assert!(st.success(), "skopeo copy to the test registry failed");
    // What tests/registry.sh pushes besides: a Docker v2s2 copy and the multi-arch index.
    for (extra, src, dst) in [
        (&["--format", "v2s2"][..], "busybox", "busybox-v2s2"),
        (&["--all"][..], "multiarch", "multiarch"),
    ] {
        let st = Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!(
                "oci:{}:latest",
                support::fixture_oci(src).display()
            ))
            .arg(format!("docker://{host}/test/{dst}:latest"))
            .status()
            .unwrap();
        assert!(
            st.success(),
            "skopeo copy of {src} to the test registry failed"
        );
    }
    (guard, host)
}

/// A registry with a self-signed certificate: refused unless its CA is in certs.d
/// (then verified HTTPS) or the registry is configured insecure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_registry_needs_its_ca_or_insecure() {
    let t = support::tempdir();
    // A CA, and a server certificate for 127.0.0.1 signed by it.
    let p = |n: &str| t.path().join(n);
    std::fs::write(
        p("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ];
    let csr = [
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    ];
    let sign = [
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "tls.crt",
    ];
    for args in [
        [&["req", "-x509"][..], &ec, &ca].concat(),
        [&["req"][..], &ec, &csr].concat(),
        sign.to_vec(),
    ] {
        let st = Command::new("openssl")
            .args(&args)
            .current_dir(t.path())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args:?} failed");
    }
    let (crt, key) = (p("tls.crt"), p("tls.key"));
    let reg =
        FakeRegistry::start_tls(&std::fs::read(&crt).unwrap(), &std::fs::read(&key).unwrap()).await;
    reg.push("test/tls", "latest", &image("tls", "amd64"));
    let name = format!("{}/test/tls:latest", reg.host());
    let none = t.path().join("none.json");
    // Neither trusted nor insecure: refused, with a hint; no request was served.
    let mut cfg = config(&reg.host(), &none);
    cfg.insecure.clear();
    cfg.cert_dirs = vec![t.path().join("certs.d")];
    let e = open(&t.path().join("a"), cfg.clone())
        .pull(&name, &opts())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("insecure"), "{e}");
    assert!(reg.requests().is_empty());
    // Its CA in certs.d/<host:port>/: verified HTTPS.
    let d = t.path().join("certs.d").join(reg.host());
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(p("ca.crt"), d.join("ca.crt")).unwrap();
    open(&t.path().join("b"), cfg)
        .pull(&name, &opts())
        .await
        .unwrap();
    assert!(!reg.requests().is_empty());
    // Insecure: unverified HTTPS (tried before plain HTTP).
    open(&t.path().join("c"), config(&reg.host(), &none))
        .pull(&name, &opts())
        .await
        .unwrap();
}

/// A partial download left by a crashed process is resumed, not restarted (and a
/// partial with wrong content is caught by the digest check and dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_download_from_a_crash_is_resumed() {
    let reg = FakeRegistry::start().await;
    let img = image("crash", "amd64");
    reg.push("test/resume", "latest", &img);
    let t = support::tempdir();
    let s = open(t.path(), config(&reg.host(), &t.path().join("none.json")));
    let big = &img.layers[0];
    let half = big.data.len() / 2;
    std::fs::write(
        t.path()
            .join(format!("ingest/{}.partial", big.digest.hex())),
        &big.data[..half],
    )
    .unwrap();
    let name = format!("{}/test/resume:latest", reg.host());
    s.pull(&name, &opts()).await.unwrap();
    let ranges: Vec<Option<String>> = reg
        .requests()
        .iter()
        .filter(|q| q.path.ends_with(&big.digest.to_string()))
        .map(|q| q.range.clone())
        .collect();
    assert_eq!(ranges, [Some(format!("bytes={half}-"))]);
    // A corrupt partial: the resumed blob fails verification and is fetched again whole.
    let t2 = support::tempdir();
    let s2 = open(t2.path(), config(&reg.host(), &t2.path().join("none.json")));
    let mut junk = big.data[..half].to_vec();
    junk[0] ^= 0xff;
    std::fs::write(
        t2.path()
            .join(format!("ingest/{}.partial", big.digest.hex())),
        &junk,
    )
    .unwrap();
    let before = reg.blob_gets(&big.digest);
    let r = s2.pull(&name, &opts()).await.unwrap();
    assert_eq!(
        reg.blob_gets(&big.digest) - before,
        2,
        "a ranged request, then the whole blob"
    );
    assert_eq!(r.image.layers[0].digest, big.digest);
    assert_eq!(
        std::fs::read_dir(t2.path().join("ingest")).unwrap().count(),
        0
    );
}

/// A registry that keeps cutting the connection in the middle of a blob (issue 8: a
/// registry that dies mid-pull): the pull fails, after its retries, with an error
/// that names the blob; nothing half-written is in the store (no blob, no image
/// name, no partial download); once the registry is healthy a retry succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_dies_mid_pull_fails_clearly_and_a_retry_succeeds() {
    let reg = FakeRegistry::start().await;
    let img = image("dying", "amd64");
    reg.push("test/dying", "latest", &img);
    let t = support::tempdir();
    let s = open(t.path(), config(&reg.host(), &t.path().join("none.json")));
    let opts = PullOptions {
        parallel: 1,
        ..opts()
    };
    let name = format!("{}/test/dying:latest", reg.host());
    reg.faults().die_mid_blob = 1000;
    let e = s.pull(&name, &opts).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Registry, "{e}");
    let msg = e.to_string();
    // the first blob fetched (the config) is the one that could not be had
    assert!(
        msg.contains(&img.config.digest.to_string()),
        "error does not name the blob: {msg}"
    );
    assert!(msg.contains("the connection broke after "), "{msg}");
    assert!(blob_files(t.path()).iter().all(|f| {
        *f != img.config.digest.hex() && img.layers.iter().all(|l| *f != l.digest.hex())
    }));
    assert!(matches!(s.resolve(&name), Err(StoreError::NotFound(_))));
    // a failed pull drops its partial downloads too
    assert_eq!(
        std::fs::read_dir(t.path().join("ingest")).unwrap().count(),
        0
    );
    // the registry recovers: the same pull succeeds
    reg.faults().die_mid_blob = 0;
    let r = s.pull(&name, &opts).await.unwrap();
    assert_eq!(r.image.layers.len(), img.layers.len());
    assert_eq!(r.blobs_fetched, 1 + img.layers.len());
    assert_eq!(
        std::fs::read_dir(t.path().join("ingest")).unwrap().count(),
        0
    );
    assert!(s.resolve(&name).is_ok());
}
