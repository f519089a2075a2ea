//! Container integration tests. Each `both!` test runs as root, then again as the
//! unprivileged `adjutant-test` user (rootless, subordinate id ranges).

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use adjutant_runtime::container::*;
use adjutant_runtime::idmap::{IdMapping, MappingMode};
use common::*;

macro_rules! both {
    ($name:ident, $body:ident) => {
        #[test]
        fn $name() {
            as_root_and_test_user($body);
        }
    };
}

fn process(argv: &[&str]) -> ProcessSpec {
    ProcessSpec::new(argv.iter().copied())
}

// ---------------------------------------------------------------------------------------

async fn exec_process_settings_body() {
    // Ignored dispositions survive execve; the helpers inherit these and steps must
    // not (SIGPIPE is ignored by every Rust program).
    // SAFETY: setting a disposition; nothing in the tests uses these signals.
    unsafe {
        libc::signal(libc::SIGUSR2, libc::SIG_IGN);
        libc::signal(libc::SIGRTMIN() + 5, libc::SIG_IGN);
    }
    let env = Env::new();
    let mut spec = env.spec();
    spec.env = vec!["FROMSPEC=1".into(), "PATH=/bin".into()];
    spec.cwd = Some("/etc".into());
    let c = env.rt.create(spec).await.unwrap();

    // Exit codes, stdout and stderr kept apart, container defaults for env and cwd.
    let (code, out, err) = sh(&c, "echo $FROMSPEC $PATH; pwd; echo oops >&2; exit 3").await;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (3, "1 /bin\n/etc\n", "oops\n")
    );

    // Per-step env, cwd, user, groups, umask, rlimits, stdin.
    let (code, out, _) = sh_with(
        &c,
        "echo $FOO; pwd; id -u; id -g; id -G; umask; ulimit -n; cat",
        |s| {
            s.process.env = vec!["FOO=bar".into()];
            s.process.cwd = "/tmp".into();
            s.process.user = User {
                uid: 1000,
                gid: 1000,
                groups: vec![5, 1000],
            };
            s.process.umask = 0o027;
            s.process.rlimits = vec![Rlimit {
                resource: RlimitResource::Nofile,
                soft: 100,
                hard: 100,
            }];
            s.stdin = Stdin::Bytes(b"from stdin\n".to_vec());
        },
    )
    .await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0..5], ["bar", "/tmp", "1000", "1000", "1000 5"]);
    assert_eq!(lines[5..], ["0027", "100", "from stdin"]);

    // Signals: none ignored or blocked.
    let (code, out, _) = sh(&c, "exec grep -E '^Sig(Ign|Blk)' /proc/self/status").await;
    assert_eq!(code, 0);
    assert_eq!(
        out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
        "{out}"
    );
    let st = c
        .run(ExecSpec::new(process(&["/bin/sh", "-c", "kill -9 $$"])))
        .await
        .unwrap();
    assert_eq!((st.code, st.signal), (None, Some(9)));

    // A program that does not exist is a start error, not an exit status.
    match c.run(ExecSpec::new(process(&["no-such-program"]))).await {
        Err(ExecError::Start { code, message, .. }) => {
            assert_eq!(code, 127);
            assert!(message.contains("no-such-program"), "{message}");
        }
        other => panic!("expected a start error, got {other:?}"),
    }
    // File sinks: created, or appended to.
    let log = env.dir.path().join("step.log");
    for _ in 0..2 {
        let mut spec = ExecSpec::new(process(&["echo", "line"]));
        spec.stdout = Sink::Append(log.clone());
        c.run(spec).await.unwrap();
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "line\nline\n");
    let mut spec = ExecSpec::new(process(&["/bin/sh", "-c", "echo err >&2"]));
    spec.stderr = Sink::File(log.clone());
    c.run(spec).await.unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "err\n");

    // The default hostname is the id's prefix.
    let (_, out, _) = sh(&c, "hostname").await;
    assert_eq!(out.trim(), &c.id()[..12]);
    c.destroy().await.unwrap();
}
both!(exec_process_settings, exec_process_settings_body);

async fn standard_mounts_body() {
    let env = Env::new();
    let mut spec = env.spec();
    spec.hostname = Some("buildhost".into());
    let c = env.rt.create(spec).await.unwrap();
    let (code, out, err) = sh(
        &c,
        "hostname; ls /dev | tr '\\n' ' '; echo; \
         grep -E ' /(proc|dev|dev/pts|dev/shm|sys|tmp) ' /proc/self/mounts | cut -d' ' -f2,3,4 | cut -d, -f1; \
         echo x > /dev/null && head -c 4 /dev/urandom | wc -c; \
         test -w /tmp && stat -c %a /tmp",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "buildhost");
    for d in [
        "full", "null", "ptmx", "pts", "random", "shm", "tty", "urandom", "zero", "fd", "stdin",
    ] {
        assert!(
            lines[1].split(' ').any(|x| x == d),
            "/dev lacks {d}: {}",
            lines[1]
        );
    }
    let mounts = &lines[2..lines.len() - 2];
    for want in [
        "/proc proc rw",
        "/dev tmpfs rw",
        "/dev/pts devpts rw",
        "/dev/shm tmpfs rw",
        "/sys sysfs ro",
        "/tmp tmpfs rw",
    ] {
        assert!(mounts.contains(&want), "missing {want:?} in {mounts:?}");
    }
    assert_eq!(lines[lines.len() - 2], "4");
    assert_eq!(lines[lines.len() - 1], "1777");
    c.destroy().await.unwrap();
}
both!(standard_mounts, standard_mounts_body);

async fn host_processes_invisible_body() {
    let env = Env::new();
    let c = env.create().await;
    let (code, out, _) = sh(&c, "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '").await;
    assert_eq!(code, 0);
    let pids: Vec<u32> = out.split_whitespace().map(|p| p.parse().unwrap()).collect();
    // pid 1, the shell, ls, grep, sort, tr: nothing from the host.
    assert_eq!(pids[0], 1, "{pids:?}");
    assert!(pids.len() <= 6 && pids.iter().all(|&p| p < 20), "{pids:?}");
    let me = std::process::id();
    let (_, out, _) = sh(&c, &format!("cat /proc/{me}/cmdline 2>&1 || echo absent")).await;
    assert!(!out.contains("containers"), "host process visible: {out}");
    c.destroy().await.unwrap();
}
both!(host_processes_invisible, host_processes_invisible_body);

fn serve_once() -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(b"pong\n");
        }
    });
    (port, t)
}

async fn network_none_and_host_body() {
    let env = Env::new();
    let c = env.create().await;
    let (port, server) = serve_once();
    let probe = format!("nc 127.0.0.1 {port} </dev/null");

    // Network none: the host's loopback is another namespace.
    let (code, out, _) = sh(&c, &probe).await;
    assert_ne!(
        code, 0,
        "reached the host's loopback with network none: {out}"
    );
    let (_, out, _) = sh(
        &c,
        "cat /etc/resolv.conf | wc -c; cat /etc/hosts; ip -o link | cut -d: -f2,3",
    )
    .await;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"));
    let rest: Vec<&str> = lines.collect();
    assert!(
        rest.iter().filter(|l| l.contains("localhost")).count() == 2,
        "{rest:?}"
    );
    let links: Vec<&&str> = rest.iter().filter(|l| l.contains('<')).collect();
    assert_eq!(links.len(), 1, "only lo expected: {rest:?}");
    assert!(
        links[0].contains("lo") && links[0].contains("UP"),
        "{rest:?}"
    );

    // Network host for one step: the server answers, and the host's resolver files
    // are in place for that step.
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (code, out, err) = sh_with(&c, &format!("{probe}; cat /etc/resolv.conf"), |s| {
        s.network = Network::Host
    })
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("pong\n{host_resolv}"));
    server.join().unwrap();

    // Back to none: empty resolv.conf again.
    let (_, out, _) = sh(&c, "wc -c < /etc/resolv.conf").await;
    assert_eq!(out.trim(), "0");
    c.destroy().await.unwrap();
}
both!(network_none_and_host, network_none_and_host_body);

async fn writes_stay_inside_body() {
    let env = Env::new();
    let ro = env.dir.path().join("ro");
    let rw = env.dir.path().join("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("keep"), "original").unwrap();
    chown_tree(&rw, root_owner(&env.rt.config().mapping));
    // An image symlink that points "outside": binds must still land inside.
    std::os::unix::fs::symlink("../../../../../../tmp", env.lower.join("escape")).unwrap();
    let marker = format!("ka-bind-escape-{}", std::process::id());
    let mut spec = env.spec();
    spec.mounts = vec![
        BindMount::new(&ro, "/ro", true),
        BindMount::new(&rw, "/rw", false),
        BindMount::new(&ro, format!("/escape/{marker}"), true),
    ];
    let c = env.rt.create(spec).await.unwrap();

    let (code, _, err) = sh(&c, "echo x > /ro/new").await;
    assert_ne!(code, 0);
    assert!(err.contains("Read-only"), "{err}");
    let (code, _, _) = sh(&c, "echo y > /ro/keep").await;
    assert_ne!(code, 0);
    let (code, _, err) = sh(
        &c,
        "echo hello > /rw/new && echo z > /newfile && rm /bin/ls && echo x >> /etc/passwd",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(rw.join("new")).unwrap(), "hello\n");
    assert!(
        env.lower.join("bin/ls").exists(),
        "a lower layer was modified"
    );
    assert!(!env.lower.join("newfile").exists());
    assert!(!std::fs::read_to_string(env.lower.join("etc/passwd"))
        .unwrap()
        .ends_with("x\n"));
    assert!(c.dir().join("upper/newfile").exists());
    // The escaping bind landed on the container's /tmp, not the host's.
    let (code, out, _) = sh(&c, &format!("cat /tmp/{marker}/keep")).await;
    assert_eq!((code, out.as_str()), (0, "original"));
    assert!(!Path::new("/tmp").join(&marker).exists());
    // Kernel interfaces are read-only.
    for w in [
        "echo 1 > /proc/sys/kernel/ns_last_pid",
        "echo x > /sys/kernel/uevent_helper",
        "echo h > /proc/sysrq-trigger",
    ] {
        let (code, _, _) = sh(&c, w).await;
        assert_ne!(code, 0, "{w} succeeded");
    }
    c.destroy().await.unwrap();
    assert_eq!(
        std::fs::read_to_string(ro.join("keep")).unwrap(),
        "original"
    );
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 1);
}
both!(writes_stay_inside, writes_stay_inside_body);

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .unwrap_or_else(|| panic!("{key} missing in {status}"))
}

async fn capabilities_and_no_new_privs_body() {
    let env = Env::new();
    let c = env.create().await;
    let (_, root, _) = sh(&c, "cat /proc/self/status").await;
    let default = format!(
        "{:016x}",
        adjutant_runtime::caps::mask(&adjutant_runtime::caps::resolve(None).unwrap())
    );
    assert_eq!(default, "00000000800405fb");
    for k in ["CapBnd:", "CapEff:", "CapPrm:"] {
        assert_eq!(status_field(&root, k), default, "{k}");
    }
    assert_eq!(status_field(&root, "CapInh:"), "0000000000000000");
    assert_eq!(status_field(&root, "CapAmb:"), "0000000000000000");
    assert_eq!(status_field(&root, "NoNewPrivs:"), "1");

    let (_, user, _) = sh_with(&c, "cat /proc/self/status", |s| {
        s.process.user = User {
            uid: 1000,
            gid: 1000,
            groups: vec![],
        }
    })
    .await;
    assert_eq!(status_field(&user, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(&user, "CapPrm:"), "0000000000000000");
    assert_eq!(status_field(&user, "CapBnd:"), default);
    assert_eq!(status_field(&user, "NoNewPrivs:"), "1");

    let (_, narrow, _) = sh_with(&c, "cat /proc/self/status", |s| {
        s.process.capabilities = Some(vec!["chown".into()])
    })
    .await;
    assert_eq!(status_field(&narrow, "CapBnd:"), "0000000000000001");
    // Without CAP_FOWNER root cannot chmod a file it does not own.
    let (code, _, _) = sh_with(
        &c,
        "touch /tmp/f && chown 1000 /tmp/f && chmod 600 /tmp/f",
        |s| s.process.capabilities = Some(vec!["chown".into()]),
    )
    .await;
    assert_ne!(code, 0);
    c.destroy().await.unwrap();
}
both!(
    capabilities_and_no_new_privs,
    capabilities_and_no_new_privs_body
);

/// Exec zygotes of container `id` (`<exe> __adjutant-helper exec <id>`) that are
/// children of this process.
fn zygotes(id: &str) -> Vec<i32> {
    let me = std::process::id().to_string();
    let tail = format!("\0__adjutant-helper\0exec\0{id}\0");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == me && cmdline.ends_with(tail.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

async fn exec_zygote_body() {
    let env = Env::new();
    let c = env.create().await;
    // The exec helpers stay outside the container's pid namespace (pid 1 is the
    // launch helper's clone).
    let (code, out, _) = sh(&c, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").await;
    assert_eq!(code, 0);
    assert!(!out.contains("__adjutant-helper exec"), "{out}");

    // Concurrent steps, one step helper each.
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { sh(&c, &format!("sleep 0.2; echo {i}")).await })
        })
        .collect();
    for (i, r) in runs.into_iter().enumerate() {
        let (code, out, _) = r.await.unwrap();
        assert_eq!((code, out), (0, format!("{i}\n")));
    }

    // One zygote per container; when it dies, the next steps start another.
    let before = zygotes(c.id());
    assert_eq!(before.len(), 1, "{before:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for i in 0..3 {
        let (code, out, _) = sh(&c, &format!("echo again {i}")).await;
        assert_eq!((code, out), (0, format!("again {i}\n")));
    }
    let after = zygotes(c.id());
    assert!(
        after.len() == 1 && after[0] != before[0],
        "{before:?} -> {after:?}"
    );
    c.destroy().await.unwrap();
    // Destroy ends the zygote.
    assert!(zygotes(c.id()).is_empty());
}
both!(exec_zygote, exec_zygote_body);

async fn timeout_kill_and_leftovers_body() {
    let env = Env::new();
    let c = env.create().await;
    let mut spec = ExecSpec::new(process(&["sleep", "1000"]));
    spec.timeout = Some(Duration::from_millis(300));
    let st = c.run(spec).await.unwrap();
    assert!(st.timed_out && st.signal == Some(9), "{st:?}");

    let h = c.exec(ExecSpec::new(process(&["sleep", "1000"]))).unwrap();
    h.kill();
    let st = h.wait().await.unwrap();
    assert!(st.killed && !st.timed_out, "{st:?}");

    // Background processes of a step die with it.
    let (code, _, _) = sh(&c, "sleep 1000 & echo started").await;
    assert_eq!(code, 0);
    let (_, out, _) = sh(&c, "ps -o comm | grep -c sleep || true").await;
    assert_eq!(out.trim(), "0");
    c.destroy().await.unwrap();
}
both!(timeout_kill_and_leftovers, timeout_kill_and_leftovers_body);

async fn copy_never_leaves_the_root_body() {
    let env = Env::new();
    std::os::unix::fs::symlink("/", env.lower.join("evil")).unwrap();
    let c = env.create().await;
    let host = env.dir.path();
    let payload = host.join("payload");
    std::fs::write(&payload, "payload").unwrap();
    let marker = format!("ka-copy-escape-{}", std::process::id());

    // Into the container through a symlink to "/": lands in the container's /tmp.
    c.copy_to(&payload, &Path::new("/evil/tmp").join(&marker))
        .await
        .unwrap();
    assert!(!Path::new("/tmp").join(&marker).exists());
    let (_, out, _) = sh(&c, &format!("cat /tmp/{marker}; stat -c %u /tmp/{marker}")).await;
    assert_eq!(out, "payload0\n");

    // A tree, owned by another container user.
    let tree = host.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/f"), "f").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", tree.join("link")).unwrap();
    c.copy_to_as(&tree, Path::new("/data"), 1000, 1000)
        .await
        .unwrap();
    let (_, out, _) = sh(
        &c,
        "cat /data/sub/f; stat -c '%u %g' /data/sub/f; readlink /data/link",
    )
    .await;
    assert_eq!(out, "f1000 1000\n/etc/shadow\n");

    // Out of the container: paths resolve in the container's root, whatever the
    // symlinks inside say.
    let got = host.join("passwd");
    c.copy_from(Path::new("/evil/etc/passwd"), &got)
        .await
        .unwrap();
    assert!(std::fs::read_to_string(&got)
        .unwrap()
        .contains("builder:x:1000"));
    let (code, _, _) = sh(
        &c,
        "mkdir -p /out/d && ln -s / /out/root && ln -s /etc /out/etc && echo v > /out/d/v",
    )
    .await;
    assert_eq!(code, 0);
    let out_dir = host.join("out");
    c.copy_from(Path::new("/out"), &out_dir).await.unwrap();
    assert_eq!(std::fs::read_to_string(out_dir.join("d/v")).unwrap(), "v\n");
    assert_eq!(
        std::fs::read_link(out_dir.join("root")).unwrap(),
        Path::new("/")
    );
    assert!(std::fs::symlink_metadata(out_dir.join("etc"))
        .unwrap()
        .file_type()
        .is_symlink());
    // A missing source is an error naming it.
    let e = c
        .copy_from(Path::new("/nope"), &host.join("nope"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/nope"), "{e}");
    c.destroy().await.unwrap();
}
both!(copy_never_leaves_the_root, copy_never_leaves_the_root_body);

async fn destroy_cleans_up_body() {
    let env = Env::new();
    let mut spec = env.spec();
    spec.limits = Limits {
        memory: Some(256 << 20),
        pids: Some(100),
        cpus: None,
    };
    let c = env.rt.create(spec).await.unwrap();
    let (code, _, _) = sh(&c, "echo data > /file && sleep 1000 &").await;
    assert_eq!(code, 0);
    let id = c.id().to_string();
    let pid = c.pid();
    let dir = c.dir().to_owned();
    assert!(c.is_running());
    assert_eq!(env.rt.list().iter().filter(|i| i.live).count(), 1);
    if is_root() {
        assert!(!cgroup_dirs_named(&id).is_empty());
    }
    c.destroy().await.unwrap();
    assert!(!c.is_running());
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(
        cgroup_dirs_named(&id).is_empty(),
        "{:?}",
        cgroup_dirs_named(&id)
    );
    assert!(mounts_mentioning(&id).is_empty());
    c.destroy().await.unwrap();
    assert!(matches!(
        c.run(ExecSpec::new(process(&["true"]))).await,
        Err(ExecError::Destroyed(_))
    ));
    assert!(env.rt.list().is_empty());
    // The shared cgroup parent goes with the last container.
    let parent = env.rt.config().cgroup_parent.to_string_lossy().into_owned();
    assert!(
        cgroup_dirs_named(&parent).is_empty(),
        "{:?}",
        cgroup_dirs_named(&parent)
    );
}
both!(destroy_cleans_up, destroy_cleans_up_body);

// ---------------------------------------------------------------------------------------
// Limits (root: v1 cgroups on this host; rootless: reported unavailable).

async fn limits_body() {
    let env = Env::new();
    let mut spec = env.spec();
    spec.limits = Limits {
        memory: Some(64 << 20),
        pids: Some(40),
        cpus: Some(0.5),
    };
    let c = env.rt.create(spec).await.unwrap();
    let usage = c.usage();
    if !is_root() {
        assert!(!usage.limits_available);
        let why = usage.unavailable_reason.unwrap();
        assert!(why.contains("cgroup"), "{why}");
        assert!(!env.rt.status().cgroups_available);
        assert_eq!(usage.peak_memory, 0);
        c.destroy().await.unwrap();
        return;
    }
    assert!(usage.limits_available, "{usage:?}");
    let cg = c.cgroup_path().unwrap().to_owned();
    let read = |ctrl: &str, file: &str| {
        std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(ctrl).join(&cg).join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(read("pids", "pids.max"), "40");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");

    // CPU time is accounted.
    let (code, _, _) = sh(&c, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done").await;
    assert_eq!(code, 0);
    assert!(c.usage().cpu > Duration::ZERO);

    // A fork bomb hits the pids limit and is stopped; the container survives.
    let mut bomb = ExecSpec::new(process(&[
        "/bin/sh",
        "-c",
        "b() { b | b & }; b; sleep 1000",
    ]));
    bomb.timeout = Some(Duration::from_secs(3));
    // Killed by its timeout, or the shell itself could no longer fork `sleep`.
    let st = c.run(bomb).await.unwrap();
    assert!(st.timed_out || st.code.is_some_and(|c| c != 0), "{st:?}");
    let u = c.usage();
    assert!(u.pids_limit_hits > 0, "{u:?}");
    // Left in the cgroup: pid 1, the exec zygote and the step helper it forked for
    // the next step.
    let mut pids = u.pids;
    for _ in 0..200 {
        if pids <= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
        pids = c.usage().pids;
    }
    assert!(pids <= 3, "bomb processes left: {pids}");
    let (code, out, _) = sh(&c, "echo alive").await;
    assert_eq!((code, out.as_str()), (0, "alive\n"));

    // A memory hog is OOM-killed and reported as such.
    let st = c
        .run(ExecSpec::new(process(&[
            "awk",
            "BEGIN { s = \"x\"; while (1) s = s s }",
        ])))
        .await
        .unwrap();
    assert_eq!(st.signal, Some(9), "{st:?}");
    assert!(st.oom_killed, "{st:?}");
    let u = c.usage();
    assert!(u.oom_kills >= 1 && u.peak_memory >= 32 << 20, "{u:?}");
    c.destroy().await.unwrap();
}
both!(limits, limits_body);

// ---------------------------------------------------------------------------------------
// rpm can install files owned by other users (root and rootless ranges), not with a
// single-id mapping.

fn build_owned_rpm(dir: &Path) -> PathBuf {
    let spec = dir.join("owned.spec");
    std::fs::write(
        &spec,
        "Name: owned\nVersion: 1\nRelease: 1\nSummary: files owned by another user\nLicense: MIT\n\
         BuildArch: noarch\n%description\ntest\n%install\nmkdir -p %{buildroot}/opt/owned/dir\n\
         echo data > %{buildroot}/opt/owned/file\n%files\n%attr(0644,builder,builder) /opt/owned/file\n\
         %attr(0755,builder,tty) %dir /opt/owned/dir\n",
    )
    .unwrap();
    let top = dir.join("rpmtop");
    let out = std::process::Command::new("rpmbuild")
        .args(["-bb", "--quiet", "--define"])
        .arg(format!("_topdir {}", top.display()))
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rpmbuild: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    top.join("RPMS/noarch/owned-1-1.noarch.rpm")
}

async fn rpm_install(env: &Env) -> (i32, String, String, Container) {
    let rpm = build_owned_rpm(env.dir.path());
    let mut spec = env.spec();
    // The host's rpm, read-only, over the busybox image.
    spec.mounts = vec![BindMount::new("/usr", "/usr", true)];
    let c = env.rt.create(spec).await.unwrap();
    c.copy_to(&rpm, Path::new("/tmp/owned.rpm")).await.unwrap();
    let (code, out, err) = sh(
        &c,
        "mkdir -p /var/lib/testdb && /usr/bin/rpm -i --nodeps --nosignature --dbpath /var/lib/testdb /tmp/owned.rpm \
         && stat -c '%u:%g %a %n' /opt/owned/file /opt/owned/dir",
    )
    .await;
    (code, out, err, c)
}

async fn rpm_owns_files_for_other_users_body() {
    let env = Env::new();
    let mapping = env.rt.config().mapping.clone();
    assert_ne!(mapping.mode, MappingMode::Single);
    let (code, out, err, c) = rpm_install(&env).await;
    assert_eq!(code, 0, "rpm failed: {err}");
    assert_eq!(
        out,
        "1000:1000 644 /opt/owned/file\n1000:5 755 /opt/owned/dir\n"
    );
    // On the host, the upper layer holds them under the mapped ids.
    let m = std::fs::metadata(c.dir().join("upper/opt/owned/file")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (
            mapping.host_uid(1000).unwrap(),
            mapping.host_gid(1000).unwrap()
        )
    );
    c.destroy().await.unwrap();
}
both!(
    rpm_owns_files_for_other_users,
    rpm_owns_files_for_other_users_body
);

#[test]
fn single_id_mapping_is_degraded() {
    as_test_user_only(|| async {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let env = Env::with_mapping(
            IdMapping::single(uid, gid),
            Some("single by request".into()),
        );
        let st = env.rt.status();
        assert!(
            st.mapping_degraded && st.mapping_warning.is_some(),
            "{st:?}"
        );
        let (code, _, err, c) = rpm_install(&env).await;
        assert_ne!(code, 0, "rpm could chown with a single-id mapping");
        assert!(
            err.contains("chown") || err.contains("Invalid argument"),
            "{err}"
        );
        // Supplementary groups are refused with a clear message.
        let r = c
            .run({
                let mut s = ExecSpec::new(process(&["true"]));
                s.process.user.groups = vec![0];
                s
            })
            .await;
        assert!(
            matches!(r, Err(ExecError::Start { ref message, .. }) if message.contains("single-id")),
            "{r:?}"
        );
        c.destroy().await.unwrap();
    });
}

#[test]
fn newuidmap_failure_is_reported() {
    as_test_user_only(|| async {
        // A range that is not ours in /etc/subuid: newuidmap refuses, and create says so
        // (its exit status is checked, and nothing is left behind).
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let bogus = IdMapping::rootless(uid, gid, (500_000, 65_536), (500_000, 65_536));
        let env = Env::with_mapping(bogus, None);
        let err = env.rt.create(env.spec()).await.unwrap_err().to_string();
        assert!(
            err.contains("newgidmap") || err.contains("newuidmap"),
            "{err}"
        );
        let store = env.dir.path().join("store/containers");
        assert_eq!(std::fs::read_dir(store).unwrap().count(), 0);
    });
}

// ---------------------------------------------------------------------------------------
// Containers die with the process holding them; the next runtime sweeps the rest.

const HOLDER_ENV: &str = "KA_TEST_HOLDER_ROOT";

async fn daemon_death_body() {
    if let Some(root) = std::env::var_os(HOLDER_ENV) {
        // Holder role: start containers, record them, wait to be killed.
        let root = PathBuf::from(root);
        let lower = root.join("lower");
        let mut cfg = RuntimeConfig::detect(root.join("store")).unwrap();
        cfg.helper_exe = helper_exe();
        cfg.cgroup_parent = PathBuf::from(std::fs::read_to_string(root.join("cgparent")).unwrap());
        let rt = Runtime::new(cfg).unwrap();
        let mut lines = String::new();
        let mut keep = Vec::new();
        for _ in 0..2 {
            let mut spec = ContainerSpec::new(Rootfs::Overlay {
                lowers: vec![lower.clone()],
            });
            spec.limits.pids = Some(50);
            let c = rt.create(spec).await.unwrap();
            let (code, _, _) = sh(&c, "sleep 1000 & echo upper > /upperfile").await;
            assert_eq!(code, 0);
            lines.push_str(&format!("{} {}\n", c.id(), c.pid()));
            keep.push(c);
        }
        std::fs::write(root.join("ready.tmp"), lines).unwrap();
        std::fs::rename(root.join("ready.tmp"), root.join("ready")).unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    // Orchestrator role.
    let dir = tempdir();
    let root = dir.path().to_owned();
    let mapping = RuntimeConfig::detect(PathBuf::new()).unwrap().mapping;
    busybox_lower(&root.join("lower"), root_owner(&mapping));
    let parent = format!("koji-adjutant-test-death-{}", std::process::id());
    std::fs::write(root.join("cgparent"), &parent).unwrap();
    let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "daemon_death_kills_containers_and_sweep_cleans",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, &root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ready = root.join("ready");
    for _ in 0..600 {
        if ready.exists() || holder.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !ready.exists() {
        let _ = holder.kill();
        let mut err = String::new();
        holder
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("holder never got ready: {err}");
    }
    let text = std::fs::read_to_string(&ready).unwrap();
    let started: Vec<(String, i32)> = text
        .lines()
        .map(|l| {
            let mut it = l.split(' ');
            (
                it.next().unwrap().to_owned(),
                it.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(started.len(), 2);
    for (_, pid) in &started {
        assert!(Path::new(&format!("/proc/{pid}")).exists());
    }
    // SIGKILL: no destructor, no cleanup code runs in the holder.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    holder.wait().unwrap();
    for (_, pid) in &started {
        let mut gone = false;
        for _ in 0..400 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        assert!(gone, "container pid 1 {pid} survived its holder");
    }
    // Left behind: container dirs (and, as root, cgroups). A new runtime sweeps them.
    let store = root.join("store");
    for (id, _) in &started {
        assert!(store.join("containers").join(id).exists());
        if is_root() {
            assert!(!cgroup_dirs_named(id).is_empty());
        }
    }
    let mut cfg = RuntimeConfig::new(&store, mapping);
    cfg.helper_exe = helper_exe();
    cfg.cgroup_parent = PathBuf::from(&parent);
    let rt = Runtime::new(cfg).unwrap();
    let report = rt.sweep().await;
    assert!(report.errors.is_empty(), "{report:?}");
    let mut removed = report.removed.clone();
    removed.sort();
    let mut want: Vec<String> = started.iter().map(|(id, _)| id.clone()).collect();
    want.sort();
    assert_eq!(removed, want);
    assert_eq!(
        std::fs::read_dir(store.join("containers")).unwrap().count(),
        0
    );
    for (id, _) in &started {
        assert!(cgroup_dirs_named(id).is_empty());
        assert!(mounts_mentioning(id).is_empty());
    }
    assert!(cgroup_dirs_named(&parent).is_empty());
    // A second sweep finds nothing.
    let again = rt.sweep().await;
    assert!(
        again.removed.is_empty() && again.errors.is_empty(),
        "{again:?}"
    );
}
both!(
    daemon_death_kills_containers_and_sweep_cleans,
    daemon_death_body
);

// ---------------------------------------------------------------------------------------
// The default seccomp filter: keyctl (the kernel keyring is not namespaced) is refused
// with EPERM; `Seccomp::Unconfined` lifts it.

async fn seccomp_default_filter_body() {
    let env = Env::new();
    let mut spec = env.spec();
    // The host's perl, read-only, over the busybox image: it can make any system call.
    spec.mounts = vec![BindMount::new("/usr", "/usr", true)];
    let c = env.rt.create(spec).await.unwrap();
    // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, create=0)
    let script = format!(
        "/usr/bin/perl -e 'my $r = syscall({}, 0, -3, 0); print $r, \" \", $!+0, \"\\n\"'",
        libc::SYS_keyctl
    );
    let (code, out, err) = sh(&c, &script).await;
    assert_eq!((code, out.as_str()), (0, "-1 1\n"), "filtered: {err}");
    let (code, out, err) = sh_with(&c, &script, |s| {
        s.process.seccomp = adjutant_runtime::seccomp::Seccomp::Unconfined
    })
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.ends_with(" 1\n"),
        "keyctl refused without the filter: {out:?}"
    );
    // an ordinary program is unaffected
    let (code, out, _) = sh(&c, "/usr/bin/perl -e 'print $$ > 0 ? \"ok\" : \"no\"'").await;
    assert_eq!((code, out.as_str()), (0, "ok"));
    c.destroy().await.unwrap();
}
both!(seccomp_default_filter, seccomp_default_filter_body);
