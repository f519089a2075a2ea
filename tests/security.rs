//! Hostile spec files through the real build path: the buildroot layer with the
//! rpmroot image (as the task handlers use it), run as root. Each test makes the
//! attack from inside a build (`%build`/`%install` of a spec) and asserts that it
//! fails and is reported. The container-level attacks, as root and rootless, are in
//! runtime/tests/security.rs; docs/security.md maps the promises to the tests.

mod buildroot_common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adjutant_runtime::container::{ExecSpec, Limits, ProcessSpec, Sink};
use adjutant_testkit::is_root;
use buildroot_common::*;
use koji_adjutant::buildroot::{Buildroot, BuildrootError, StepOutcome};

fn need_root() {
    assert!(
        is_root(),
        "the buildroot security tests run as root (tests/run.sh); the rootless \
         container-level ones are in runtime/tests/security.rs"
    );
}

/// Output of a command run as container root in the buildroot's current container.
async fn sh(br: &Buildroot, script: &str) -> String {
    let (out, cap) = Sink::capture();
    let mut e = ExecSpec::new(ProcessSpec::new(["/bin/sh", "-c", script]));
    e.stdout = out;
    e.stderr = Sink::Null;
    let st = br.container().run(e).await.unwrap();
    assert!(st.success(), "{script}: {st}");
    cap.text()
}

/// A spec directory `name` whose `%build` runs `build` and `%install` runs
/// `install`, with `attack.sh` as Source0 (run it with `sh %{SOURCE0}`).
fn spec_dir(base: &Path, name: &str, build: &str, install: &str, script: &str) -> PathBuf {
    let d = base.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join(format!("{name}.spec")),
        format!(
            "Name: {name}\nVersion: 1\nRelease: 1\nSummary: x\nLicense: MIT\nBuildArch: noarch\n\
             Source0: attack.sh\n%description\nx\n%build\n{build}\n%install\n{install}\n\
             %files\n%changelog\n* Mon Jan 01 2024 t <t@example.invalid> - 1-1\n- x\n"
        ),
    )
    .unwrap();
    std::fs::write(d.join("attack.sh"), script).unwrap();
    let st = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&d)
        .status()
        .unwrap();
    assert!(st.success());
    d
}

/// Make the SRPM of `dir/name.spec` in `br` and rebuild it there.
async fn build_spec(
    br: &mut Buildroot,
    dir: &Path,
    name: &str,
) -> Result<StepOutcome, BuildrootError> {
    let out = br
        .build_srpm(&dir.join(format!("{name}.spec")), dir)
        .await
        .unwrap();
    assert_eq!(out, StepOutcome::Ok, "srpm of {name}");
    let srpm = br.resultdir().join(format!("{name}-1-1.src.rpm"));
    assert!(srpm.is_file());
    br.rebuild(&srpm, None).await
}

/// A TCP server on the host's loopback that counts connections.
fn counting_server() -> (u16, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            h.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut s) = s {
                let _ = s.write_all(b"pong\n");
            }
        }
    });
    (port, hits)
}

/// An abstract unix socket server on the host that counts connections.
fn abstract_server(name: &str) -> Arc<AtomicUsize> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let l = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for _ in l.incoming() {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    hits
}

/// The attack script: every attempt prints `blocked: NAME` or `ESCAPED: NAME`.
const ATTEMPT: &str = r#"attempt() { name=$1; shift; if ( eval "$*" ) >/dev/null 2>&1; then echo "ESCAPED: $name"; else echo "blocked: $name"; fi; }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_build_is_contained() {
    need_root();
    hostile_build_body().await;
}

/// The same, with the daemon running as the unprivileged `adjutant-test` (rootless
/// buildroot on subordinate ids, no cgroup limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_build_is_contained_rootless() {
    if !adjutant_testkit::as_test_user() {
        return;
    }
    hostile_build_body().await;
}

async fn hostile_build_body() {
    let env = Env::new(false);
    let mapping = adjutant_runtime::container::RuntimeConfig::detect(&env.store_root)
        .unwrap()
        .mapping;
    let base = env.dir.path().to_owned();
    // What a build host holds: kojid.conf with the hub credentials, the store, the
    // daemon's work dir. Made here with the test's paths (the real /etc/kojid is
    // tried too).
    let kojid = base.join("etc/kojid");
    std::fs::create_dir_all(kojid.join("pki")).unwrap();
    std::fs::write(
        kojid.join("kojid.conf"),
        "[kojid]\nuser = builder\npassword = hub-secret\ncert = pki/host.pem\n",
    )
    .unwrap();
    std::fs::write(
        kojid.join("pki/host.pem"),
        "-----BEGIN PRIVATE KEY-----\nsecret\n",
    )
    .unwrap();
    std::fs::set_permissions(&kojid, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (port, hits) = counting_server();
    // An abstract unix socket on the host (these are scoped by network namespace).
    let abstract_name = format!("ka-security-{}", std::process::id());
    let abstract_hits = abstract_server(&abstract_name);

    // A neighbour buildroot, running at the same time, with a marker in its /builddir.
    let neighbour_req = env.request("neighbour");
    let neighbour_work = neighbour_req.workdir.clone();
    let neighbour = env.b.create(neighbour_req).await.unwrap();
    let marker = format!("ka-neighbour-{}", std::process::id());
    sh(
        &neighbour,
        &format!("echo secret > /builddir/{marker}; echo secret > /tmp/{marker}"),
    )
    .await;
    let neighbour_upper = neighbour.container().dir().join("upper");

    let me = std::process::id();
    let store = env.store_root.display().to_string();
    let script = format!(
        "{ATTEMPT}\
         echo \"whoami: $(id -u):$(id -g)\"\n\
         grep -E '^(Cap(Eff|Prm|Bnd)|NoNewPrivs):' /proc/self/status\n\
         echo \"pids: $(ls /proc | grep -cE '^[0-9]+$')\"\n\
         attempt neighbour-files \"find / -name '{marker}*' 2>/dev/null | grep -q .\"\n\
         attempt neighbour-upper \"ls {upper}\"\n\
         attempt neighbour-work \"ls {nwork}\"\n\
         attempt host-pid \"test -e /proc/{me}/status\"\n\
         attempt kojid-conf \"cat {kojid}/kojid.conf\"\n\
         attempt kojid-key \"cat {kojid}/pki/host.pem\"\n\
         attempt etc-kojid \"cat /etc/kojid/kojid.conf\"\n\
         attempt store \"ls {store}\"\n\
         attempt proc1-root \"ls /proc/1/root/\"\n\
         attempt proc1-environ \"cat /proc/1/environ\"\n\
         attempt proc1-exe \"head -c 4 /proc/1/exe\"\n\
         attempt proc-sys-write \"echo 1 > /proc/sys/kernel/sysrq\"\n\
         attempt core-pattern \"echo '|/bin/sh' > /proc/sys/kernel/core_pattern\"\n\
         attempt sysrq-trigger \"echo h > /proc/sysrq-trigger\"\n\
         attempt sys-write \"echo 1 > /sys/kernel/profiling\"\n\
         attempt mount \"mkdir -p /tmp/m && mount -t tmpfs none /tmp/m\"\n\
         attempt setuid-mount \"test -u /bin/mount && /bin/mount -t tmpfs none /tmp/m\"\n\
         attempt become-root \"test \\$(setpriv --reuid=0 id -u) = 0\"\n\
         attempt host-loopback \"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'\"\n\
         attempt dns \"getent hosts koji.fedoraproject.org\"\n\
         attempt nameserver \"grep -q nameserver /etc/resolv.conf\"\n\
         printf 'import socket\\ns = socket.socket(socket.AF_UNIX)\\ns.connect(b\"\\\\0{abstract_name}\")\\n' > /tmp/abstract.py\n\
         attempt abstract-socket \"python3 /tmp/abstract.py\"\n\
         attempt abstract-socket-refused \"! python3 /tmp/abstract.py 2>&1 | grep -q 'Connection refused'\"\n\
         attempt chown-host-root \"touch /builddir/mine && chown 0 /builddir/mine\"\n\
         echo attack-done\n",
        upper = neighbour_upper.display(),
        nwork = neighbour_work.display(),
        kojid = kojid.display(),
    );
    let dir = spec_dir(&base.join("specs"), "hostile", "sh %{SOURCE0}", "", &script);
    let req = env.request("hostile");
    let (logs, work) = (req.logdir.clone(), req.workdir.clone());
    let mut br = env.b.create(req).await.unwrap();
    let out = build_spec(&mut br, &dir, "hostile").await.unwrap();
    assert_eq!(out, StepOutcome::Ok);
    let builddir_owner = {
        use std::os::unix::fs::MetadataExt;
        // The file the build made in /builddir, seen from the host.
        let found: Vec<_> = walk(&work)
            .into_iter()
            .filter(|p| p.ends_with("mine"))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        let m = std::fs::metadata(&found[0]).unwrap();
        (m.uid(), m.gid())
    };
    br.destroy().await;
    neighbour.destroy().await;

    let build = read(&logs.join("build.log"));
    assert!(build.contains("attack-done"), "{build}");
    let escaped: Vec<&str> = build
        .lines()
        .filter(|l| l.starts_with("ESCAPED:"))
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}\n{build}");
    for name in [
        "neighbour-files",
        "neighbour-upper",
        "neighbour-work",
        "host-pid",
        "kojid-conf",
        "kojid-key",
        "etc-kojid",
        "store",
        "proc1-root",
        "proc1-environ",
        "proc1-exe",
        "proc-sys-write",
        "core-pattern",
        "sysrq-trigger",
        "sys-write",
        "mount",
        "setuid-mount",
        "become-root",
        "host-loopback",
        "dns",
        "nameserver",
        "abstract-socket",
        "abstract-socket-refused",
        "chown-host-root",
    ] {
        assert!(
            build.contains(&format!("blocked: {name}\n")),
            "{name} not tried:\n{build}"
        );
    }
    assert!(build.contains("whoami: 1000:135\n"), "{build}");
    for l in [
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(build.contains(l), "{l} missing:\n{build}");
    }
    let pids: u32 = build
        .lines()
        .find_map(|l| l.strip_prefix("pids: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(pids < 20, "{pids} processes visible to the build");
    assert_eq!(
        abstract_hits.load(Ordering::SeqCst),
        0,
        "the build reached an abstract unix socket of the host"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the build reached the host's loopback"
    );
    // Files the build made are owned, on the host, by the mapped mockbuild ids.
    assert_eq!(
        builddir_owner,
        (
            mapping.host_uid(1000).unwrap(),
            mapping.host_gid(135).unwrap()
        )
    );
    assert_ne!(builddir_owner.0, 0);
    assert_clean(&env, &work);
    assert_clean(&env, &neighbour_work);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Symlinks in the result directories pointing at host files: the daemon must not
/// follow them when it collects the results (as root it reads every file of the host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_symlinks_are_refused() {
    need_root();
    result_symlinks_are_refused_body().await;
}

/// The same with the daemon running as `adjutant-test` (rootless).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_symlinks_are_refused_rootless() {
    if !adjutant_testkit::as_test_user() {
        return;
    }
    result_symlinks_are_refused_body().await;
}

async fn result_symlinks_are_refused_body() {
    let env = Env::new(false);
    let base = env.dir.path().to_owned();
    let secret = base.join("host-secret.key");
    std::fs::write(&secret, "HOST-SECRET-KEY").unwrap();
    // A host directory with an .rpm in it, which SRPMS is pointed at.
    let hostdir = base.join("hostdir");
    std::fs::create_dir_all(&hostdir).unwrap();
    std::fs::write(hostdir.join("stolen-1-1.src.rpm"), "HOST-SECRET-RPM").unwrap();
    let install = format!(
        "mkdir -p %{{_topdir}}/RPMS/noarch\n\
         ln -s {secret} %{{_topdir}}/RPMS/noarch/evil-1-1.noarch.rpm\n\
         ln -s /etc/shadow %{{_topdir}}/RPMS/shadow.rpm\n\
         mkdir -p {hostdir}\n\
         rm -rf %{{_topdir}}/SRPMS && ln -s {hostdir} %{{_topdir}}/SRPMS\n",
        secret = secret.display(),
        hostdir = hostdir.display(),
    );
    let dir = spec_dir(&base.join("specs"), "symlinks", "true", &install, "");
    let req = env.request("symlinks");
    let work = req.workdir.clone();
    let logs = req.logdir.clone();
    let mut br = env.b.create(req).await.unwrap();
    let e = build_spec(&mut br, &dir, "symlinks").await.unwrap_err();
    let msg = e.to_string();
    for want in [
        "refusing the build's results",
        "/builddir/build/RPMS/noarch/evil-1-1.noarch.rpm is a symlink",
        "/builddir/build/RPMS/shadow.rpm is a symlink",
        "/builddir/build/SRPMS is not a plain directory",
    ] {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
    // Nothing of the host reached the result dir (which the task would upload).
    for p in walk(br.resultdir()) {
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(!m.file_type().is_symlink(), "{} is a symlink", p.display());
        if m.is_file() {
            let mut s = Vec::new();
            std::fs::File::open(&p)
                .unwrap()
                .read_to_end(&mut s)
                .unwrap();
            let s = String::from_utf8_lossy(&s);
            assert!(
                !s.contains("HOST-SECRET") && !s.contains("root:"),
                "{} has host data",
                p.display()
            );
        }
    }
    br.destroy().await;
    assert!(read(&logs.join("mock_output.log")).contains("ERROR: refusing the build's results"));
    assert_eq!(read(&hostdir.join("stolen-1-1.src.rpm")), "HOST-SECRET-RPM");
    assert_eq!(std::fs::read_dir(&hostdir).unwrap().count(), 1);
    assert_clean(&env, &work);
}

/// dnf's logs are copied out of the buildroot after each install: a package
/// scriptlet (container root) that turned one into a symlink to a host file does
/// not get that file into the uploaded logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnf_log_symlinks_are_not_followed() {
    need_root();
    dnf_log_symlinks_are_not_followed_body().await;
}

/// The same with the daemon running as `adjutant-test` (rootless).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnf_log_symlinks_are_not_followed_rootless() {
    if !adjutant_testkit::as_test_user() {
        return;
    }
    dnf_log_symlinks_are_not_followed_body().await;
}

async fn dnf_log_symlinks_are_not_followed_body() {
    let env = Env::new(false);
    let repo = make_repo(env.dir.path());
    let secret = env.dir.path().join("kojid-host.key");
    std::fs::write(&secret, "HOST-SECRET-KEY\n").unwrap();
    let mut req = env.request("dnflogs");
    req.repos = vec![repo_source(format!("file://{}", repo.display()))];
    let (logs, work) = (req.logdir.clone(), req.workdir.clone());
    let mut br = env.b.create(req).await.unwrap();
    sh(
        &br,
        &format!(
            "mkdir -p /tmp/koji-adjutant-dnf/log && ln -sf {} /tmp/koji-adjutant-dnf/log/dnf.evil.log && \
             ln -sf /etc/shadow /tmp/koji-adjutant-dnf/log/hawkey.log",
            secret.display()
        ),
    )
    .await;
    assert_eq!(
        br.rebuild(&srpm("needs-dep"), None).await.unwrap(),
        StepOutcome::Ok
    );
    br.destroy().await;
    for e in std::fs::read_dir(&logs).unwrap().flatten() {
        let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
        assert!(
            !text.contains("HOST-SECRET"),
            "{:?} has the host's key",
            e.file_name()
        );
        assert!(
            !text.contains("root:*:") && !text.contains("root:!"),
            "{:?} has /etc/shadow",
            e.file_name()
        );
    }
    let out = read(&logs.join("mock_output.log"));
    assert!(out.contains("dnf log not kept: refusing"), "{out}");
    assert!(out.contains("dnf.evil.log"), "{out}");
    assert!(
        logs.join("dnf.log").is_file(),
        "dnf's real log is still kept"
    );
    assert_clean(&env, &work);
}

/// A build printing without end: build.log stops at max_log_size with a note, the
/// rest is discarded (the disk is not filled), and the build itself goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_build_log_is_capped() {
    need_root();
    let env = Env::new(false);
    let base = env.dir.path().to_owned();
    // 200 MB of output on stdout and stderr both.
    let dir = spec_dir(
        &base.join("specs"),
        "chatty",
        "sh %{SOURCE0}",
        "",
        "head -c 100000000 /dev/zero | tr '\\0' 'x' | fold -w 99\n\
         head -c 100000000 /dev/zero | tr '\\0' 'y' | fold -w 99 >&2\n\
         echo still-running-after-the-cap\n",
    );
    let mut req = env.request("chatty");
    const CAP: u64 = 4 << 20;
    req.max_log_size = Some(CAP);
    let (logs, work) = (req.logdir.clone(), req.workdir.clone());
    let mut br = env.b.create(req).await.unwrap();
    let out = build_spec(&mut br, &dir, "chatty").await.unwrap();
    assert_eq!(out, StepOutcome::Ok, "the build itself must go on");
    assert!(br.resultdir().join("chatty-1-1.noarch.rpm").is_file());
    br.destroy().await;
    let size = std::fs::metadata(logs.join("build.log")).unwrap().len();
    assert!(
        size <= CAP + (64 << 10),
        "build.log is {size} bytes, cap {CAP}"
    );
    let build = read(&logs.join("build.log"));
    assert!(
        build.contains(&format!("build.log reached max_log_size ({CAP} bytes)")),
        "no note in build.log"
    );
    assert!(!build.contains("still-running-after-the-cap"));
    let out = read(&logs.join("mock_output.log"));
    assert!(
        out.contains("bytes of output of rpmbuild discarded beyond max_log_size"),
        "{out}"
    );
    assert_clean(&env, &work);
}

/// An inode bomb in /builddir: the build runs to its end (or its timeout), and
/// destroying the buildroot removes every file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inode_bomb_is_cleaned_up() {
    need_root();
    let env = Env::new(false);
    let base = env.dir.path().to_owned();
    let dir = spec_dir(
        &base.join("specs"),
        "inodes",
        "sh %{SOURCE0}",
        "",
        "mkdir -p /builddir/bomb && cd /builddir/bomb && \
         for d in $(seq 1 100); do mkdir $d && (cd $d && seq 1 2000 | xargs touch); done\n\
         echo files: $(find /builddir/bomb | wc -l)\n",
    );
    let mut req = env.request("inodes");
    req.limits = Limits {
        memory: Some(1 << 30),
        pids: Some(256),
        cpus: None,
    };
    req.build_timeout = Duration::from_secs(1800);
    let (logs, work) = (req.logdir.clone(), req.workdir.clone());
    let mut br = env.b.create(req).await.unwrap();
    let out = build_spec(&mut br, &dir, "inodes").await.unwrap();
    assert_eq!(out, StepOutcome::Ok);
    let build = read(&logs.join("build.log"));
    assert!(build.contains("files: 200101"), "{build}");
    // Not asserted (no timed assertions): printed for docs/security.md.
    let t0 = std::time::Instant::now();
    br.destroy().await;
    println!(
        "destroying the buildroot with 200101 files took {:?}",
        t0.elapsed()
    );
    assert_clean(&env, &work);
    assert!(walk(&work)
        .iter()
        .all(|p| !p.to_string_lossy().contains("bomb")));
}
