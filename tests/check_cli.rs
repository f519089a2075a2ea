//! `koji-adjutant check`, end to end through the binary: as root against an unreachable
//! hub and with too little disk (FAIL lines with their fixes, exit status 1), as
//! `adjutant-test` rootless (a host that can build: exit status 0), and with a broken
//! configuration. Every run tries the real thing: a user namespace, an overlay mount in
//! it, a container started and destroyed — and must leave nothing behind in the store.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use adjutant_testkit::{as_test_user, is_root, is_test_user_child, oci_layout};
use koji_adjutant::xmlrpc::Value as XValue;
use serde_json::Value;
use support::fakehub::{FakeHub, TlsSetup};

const BIN: &str = env!("CARGO_BIN_EXE_koji-adjutant");

struct Host {
    dir: tempfile::TempDir,
    store: PathBuf,
}

impl Host {
    /// A scratch directory (0755, so container root can reach the store) with the
    /// fixture busybox image imported as `localhost/busybox:latest`.
    fn new() -> Host {
        let dir = tempfile::Builder::new()
            .prefix("ka-check.")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = dir.path().join("store");
        let out = Command::new(BIN)
            .arg("--root")
            .arg(&store)
            .args(["image", "import", "-q"])
            .arg(format!("oci:{}:latest", oci_layout("busybox").display()))
            .arg("localhost/busybox:latest")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Host { dir, store }
    }

    fn conf(&self, kojid_extra: &str) -> PathBuf {
        self.conf_for("http://127.0.0.1:1", "pw", kojid_extra)
    }

    /// A kojid.conf for hub `base` (`<base>/kojihub`, topurl `<base>/kojifiles`) and
    /// `builder1` with `password`.
    fn conf_for(&self, base: &str, password: &str, kojid_extra: &str) -> PathBuf {
        let p = self.dir.path().join("kojid.conf");
        std::fs::write(
            &p,
            format!(
                "[kojid]\nserver = {base}/kojihub\ntopurl = {base}/kojifiles\n\
                 user = builder1\npassword = {password}\nworkdir = {}\n{kojid_extra}\n\
                 [adjutant]\nstore_root = {}\ndefault_image = localhost/busybox:latest\n",
                self.dir.path().join("work").display(),
                self.store.display()
            ),
        )
        .unwrap();
        p
    }

    fn check(&self, conf: &Path, extra: &[&str]) -> Output {
        // --root: with a config that does not load, the defaults would name the host's store
        Command::new(BIN)
            .arg("--root")
            .arg(&self.store)
            .arg("check")
            .arg("-c")
            .arg(conf)
            .args(extra)
            .output()
            .unwrap()
    }

    /// Container directories left in the store.
    fn leftovers(&self) -> Vec<String> {
        match std::fs::read_dir(self.store.join("containers")) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".mnt")
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The lines of one check, as (status, message, fix).
fn lines<'a>(report: &'a Value, check: &str) -> Vec<(&'a str, &'a str, &'a str)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["check"] == check)
        .map(|l| {
            (
                l["status"].as_str().unwrap(),
                l["message"].as_str().unwrap(),
                l["fix"].as_str().unwrap_or(""),
            )
        })
        .collect()
}

fn status(report: &Value, check: &str) -> String {
    let l = lines(report, check);
    assert!(!l.is_empty(), "no {check} line in {report:#}");
    // the worst of its lines
    ["fail", "warn", "skip", "ok"]
        .into_iter()
        .find(|s| l.iter().any(|(st, _, _)| st == s))
        .unwrap()
        .to_owned()
}

/// What a host that can run containers reports, root or rootless.
fn assert_runtime_ok(r: &Value) {
    for c in [
        "config",
        "kernel",
        "userns",
        "overlay",
        "container",
        "image",
    ] {
        assert_eq!(status(r, c), "ok", "{c}: {:?}", lines(r, c));
    }
    let (_, msg, _) = lines(r, "container")[0];
    assert!(msg.contains("ran `id -u` as its root"), "{msg}");
    let (_, msg, _) = lines(r, "image")[0];
    assert!(
        msg.contains("localhost/busybox:latest is in the store"),
        "{msg}"
    );
    let (_, msg, _) = lines(r, "overlay")[0];
    assert!(
        msg.contains("whiteouts and opaque directories work"),
        "{msg}"
    );
}

#[test]
fn root_unreachable_hub_and_full_disk_fail_with_fixes() {
    if !is_root() || is_test_user_child() {
        return; // the rootless case is the next test
    }
    let h = Host::new();
    let conf = h.conf("minspace = 1000000000");
    let out = h.check(&conf, &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = json(&out);
    assert_eq!(r["ok"], false);
    assert_runtime_ok(&r);
    let (_, msg, _) = lines(&r, "userns")[0];
    assert!(
        msg.contains("root mode") && msg.contains("uid_map 0 100000 65536"),
        "{msg}"
    );

    let hub = lines(&r, "hub");
    assert_eq!(hub.len(), 1, "{hub:?}");
    let (st, msg, fix) = hub[0];
    assert_eq!(st, "fail");
    assert!(
        msg.contains("cannot reach the hub at http://127.0.0.1:1/kojihub"),
        "{msg}"
    );
    assert!(fix.contains("check server in [kojid]"), "{fix}");
    assert_eq!(status(&r, "topurl"), "fail");

    let disk = lines(&r, "store-disk");
    let (st, msg, fix) = disk[0];
    assert_eq!(st, "fail");
    assert!(msg.contains("below minspace = 1000000000 MiB"), "{msg}");
    assert!(fix.contains("koji-adjutant image prune"), "{fix}");
    assert_eq!(r["counts"]["fail"].as_u64(), Some(3), "{r:#}");

    // the text form: one line per check, the fix under it, the verdict last
    let out = h.check(&conf, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\nFAIL  hub "), "{text}");
    assert!(text.contains("fix: check server in [kojid]"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("cannot run builds until the FAIL lines are fixed"),
        "{text}"
    );
    assert_eq!(h.leftovers(), Vec::<String>::new());
}

#[test]
fn rootless_host_that_can_build() {
    if !as_test_user() {
        return; // ran as adjutant-test in a child
    }
    let h = Host::new();
    let conf = h.conf("minspace = 0");
    let out = h.check(&conf, &["--json", "--no-hub"]);
    let r = json(&out);
    assert_runtime_ok(&r);
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    let (_, msg, _) = lines(&r, "userns")[0];
    assert!(msg.contains(&format!("rootless as {user}")), "{msg}");
    assert_eq!(status(&r, "subids"), "ok", "{:?}", lines(&r, "subids"));
    assert_eq!(status(&r, "hub"), "skip");
    // Not root: no cgroup limits on this hybrid host (a warning, never a failure).
    assert_ne!(status(&r, "cgroups"), "fail");
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(h.leftovers(), Vec::<String>::new());
}

#[test]
fn a_broken_config_fails_and_skips_the_hub() {
    if is_test_user_child() {
        return;
    }
    let h = Host::new();
    let conf = h.conf("maxjobs = many");
    let out = h.check(&conf, &["--json", "--no-pull"]);
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    let (st, msg, fix) = lines(&r, "config")[0];
    assert_eq!(st, "fail");
    assert!(
        msg.contains("kojid.conf:7") && msg.contains("maxjobs"),
        "{msg}"
    );
    assert!(fix.contains("docs/config.md"), "{fix}");
    let (st, msg, _) = lines(&r, "hub")[0];
    assert_eq!(
        (st, msg),
        ("skip", "not contacted: the configuration did not load")
    );

    // A localhost/ image that is not in the store cannot be pulled from anywhere; a
    // policy file with a typo is refused naming the rule.
    let policy = h.dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"rules": [{"type": "tagg", "image": "x"}]}"#).unwrap();
    std::fs::write(
        &conf,
        std::fs::read_to_string(&conf)
            .unwrap()
            .replace("maxjobs = many", "")
            .replace("localhost/busybox:latest", "localhost/nothere:latest")
            + &format!("image_policy = {}\n", policy.display()),
    )
    .unwrap();
    let out = h.check(&conf, &["--json", "--no-hub", "--no-pull"]);
    let r = json(&out);
    assert_eq!(status(&r, "config"), "ok");
    let (st, msg, fix) = lines(&r, "image")[0];
    assert_eq!(st, "fail");
    assert!(msg.contains("exist only in the store"), "{msg}");
    assert!(
        fix.contains("koji-adjutant image import oci:DIR localhost/nothere:latest"),
        "{fix}"
    );
    let (st, msg, fix) = lines(&r, "image-policy")[0];
    assert_eq!(st, "fail");
    assert!(
        msg.contains("policy.json") && msg.contains("rule 0"),
        "{msg}"
    );
    assert!(fix.contains("takes no build tasks"), "{fix}");
    assert_eq!(out.status.code(), Some(1));

    // The status endpoint's address taken by someone else: a warning with the fix.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    std::fs::write(
        &conf,
        std::fs::read_to_string(&conf).unwrap() + &format!("status_bind = {addr}\n"),
    )
    .unwrap();
    let out = h.check(&conf, &["--json", "--no-hub", "--no-pull"]);
    let r = json(&out);
    let (st, msg, fix) = lines(&r, "status")[0];
    assert_eq!(st, "warn");
    assert!(
        msg.contains(&format!("cannot listen on {addr} (status_bind)")),
        "{msg}"
    );
    assert!(fix.contains("its own status_bind port"), "{fix}");
    drop(taken);

    // A missing file: the fix says where the sample is.
    let out = h.check(
        &h.dir.path().join("nope.conf"),
        &["--json", "--no-hub", "--no-pull"],
    );
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    let (st, _, fix) = lines(&r, "config")[0];
    assert_eq!(st, "fail");
    assert!(fix.contains("from the sample"), "{fix}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_host_record_against_the_fake_hub() {
    if is_test_user_child() {
        return;
    }
    let hub = FakeHub::start(1).await;
    hub.register("listChannels", |_, _, _, kw| {
        assert!(kw.contains_key("hostID"), "listChannels without hostID");
        let mut c = koji_adjutant::xmlrpc::Struct::new();
        c.insert("id".into(), XValue::Int(1));
        c.insert("name".into(), XValue::from("default"));
        Ok(XValue::Array(vec![XValue::Struct(c)]))
    });
    let base = hub.url().trim_end_matches("/kojihub").to_owned();
    let h = tokio::task::spawn_blocking(Host::new).await.unwrap();
    let run = |h: Host, conf: PathBuf| {
        tokio::task::spawn_blocking(move || {
            let out = h.check(&conf, &["--json", "--no-pull"]);
            (h, out)
        })
    };

    let conf = h.conf_for(&base, "builder1-pw", "minspace = 0");
    let (h, out) = run(h, conf).await.unwrap();
    let r = json(&out);
    let hub_lines = lines(&r, "hub");
    let (st, msg, _) = hub_lines[0];
    assert_eq!(st, "ok", "{hub_lines:?}");
    assert!(
        msg.contains("(Koji 1.35.3): logged in as user builder1; host builder1 (id "),
        "{msg}"
    );
    assert!(msg.contains("channels default"), "{msg}");
    assert_eq!(status(&r, "topurl"), "ok", "{:?}", lines(&r, "topurl"));
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(out.status.code(), Some(0));
    // it logged in, took no lock by force, and logged out again
    assert_eq!(hub.calls_of("login").len(), 1);
    assert_eq!(hub.calls_of("logout").len(), 1);

    // a wrong password: FAIL, with what to check
    let conf = h.conf_for(&base, "wrong", "minspace = 0");
    let (_h, out) = run(h, conf).await.unwrap();
    let r = json(&out);
    let (st, msg, fix) = lines(&r, "hub")[0];
    assert_eq!(st, "fail");
    assert!(msg.contains("login as user builder1 failed"), "{msg}");
    assert!(fix.contains("the hub refused the credentials"), "{fix}");
    assert_eq!(out.status.code(), Some(1));
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, the hub's certificate for 127.0.0.1 and builder1's client certificate
/// (`builder1.pem`: certificate and key, as kojid's `cert`).
fn pki(d: &Path) {
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    std::fs::write(
        d.join("hub.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        d.join("client.ext"),
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    for (name, ext) in [("hub", "hub.ext"), ("builder1", "client.ext")] {
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-sha256",
                "-days",
                "2",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-extfile",
                ext,
            ],
        );
        let pem = [
            std::fs::read(d.join(format!("{name}.crt"))).unwrap(),
            std::fs::read(d.join(format!("{name}.key"))).unwrap(),
        ]
        .concat();
        std::fs::write(d.join(format!("{name}.pem")), pem).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_login_and_an_untrusted_hub_certificate() {
    if is_test_user_child() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    pki(certs.path());
    let p = |f: &str| certs.path().join(f);
    let hub = FakeHub::start_tls(
        1,
        TlsSetup {
            server_cert: p("hub.crt"),
            server_key: p("hub.key"),
            client_ca: p("ca.crt"),
            clients: vec![(p("builder1.pem"), "builder1".into())],
        },
    )
    .await;
    let base = hub.url().trim_end_matches("/kojihub").to_owned();
    let h = tokio::task::spawn_blocking(Host::new).await.unwrap();
    let conf = h.dir.path().join("kojid.conf");
    let (work, store) = (h.dir.path().join("work"), h.store.clone());
    let write = |serverca: Option<&Path>| {
        let mut text = format!(
            "[kojid]\nserver = {base}/kojihub\ntopurl = {base}/kojifiles\ncert = {}\n\
             minspace = 0\nworkdir = {}\n",
            p("builder1.pem").display(),
            work.display()
        );
        if let Some(ca) = serverca {
            text.push_str(&format!("serverca = {}\n", ca.display()));
        }
        text.push_str(&format!(
            "[adjutant]\nstore_root = {}\ndefault_image = localhost/busybox:latest\n",
            store.display()
        ));
        std::fs::write(&conf, text).unwrap();
    };
    let run = |h: Host, conf: PathBuf| {
        tokio::task::spawn_blocking(move || {
            let out = h.check(&conf, &["--json", "--no-pull"]);
            (h, out)
        })
    };

    write(Some(&p("ca.crt")));
    let (h, out) = run(h, conf.clone()).await.unwrap();
    let r = json(&out);
    let (st, msg, _) = lines(&r, "hub")[0];
    assert_eq!(st, "ok", "{:?}", lines(&r, "hub"));
    assert!(
        msg.contains(&format!(
            "logged in as certificate {}",
            p("builder1.pem").display()
        )),
        "{msg}"
    );
    assert!(msg.contains("host builder1"), "{msg}");
    assert_eq!(hub.calls_of("sslLogin").len(), 1);

    // Without serverca the hub's certificate (signed by the test CA) is not trusted.
    write(None);
    let (_h, out) = run(h, conf).await.unwrap();
    let r = json(&out);
    let (st, msg, fix) = lines(&r, "hub")[0];
    assert_eq!(st, "fail", "{msg}");
    assert!(msg.contains("cannot reach the hub"), "{msg}");
    assert!(
        fix.contains("set serverca to the CA that signed it"),
        "{fix}"
    );
    assert_eq!(out.status.code(), Some(1));
}
