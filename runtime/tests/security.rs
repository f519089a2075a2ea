//! Containment of what runs in a container, as root and again as the unprivileged
//! `adjutant-test` user (rootless, subordinate id ranges). Each test makes the attack
//! and asserts that it fails and how (docs/security.md lists the promises and these
//! tests). The build-level attacks (hostile spec files through the buildroot) are in
//! the root package's tests/security.rs.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use adjutant_runtime::container::*;
use common::*;

macro_rules! both {
    ($name:ident, $body:ident) => {
        #[test]
        fn $name() {
            as_root_and_test_user($body);
        }
    };
}

/// `sh -c script` as the unprivileged build user (1000), as build steps run.
async fn as_builder(c: &Container, script: &str) -> (i32, String, String) {
    sh_with(c, script, |s| {
        s.process.user = User {
            uid: 1000,
            gid: 1000,
            groups: vec![],
        }
    })
    .await
}

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .unwrap_or_else(|| panic!("{key} missing in {status}"))
}

// ---------------------------------------------------------------------------------------

/// Two containers at once: neither sees the other's files, processes or writable layer.
async fn neighbours_are_invisible_body() {
    let env = Env::new();
    let a = env.create().await;
    let b = env.create().await;
    let marker = format!("ka-neighbour-{}", std::process::id());
    let (code, _, err) = sh(
        &a,
        // the files are written before the step returns; only the sleep stays behind
        &format!(
            "echo secret > /{marker} && echo secret > /tmp/{marker} && \
             {{ sleep 1000 >/dev/null 2>&1 & }}"
        ),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    if is_root() {
        assert!(a.dir().join("upper").join(&marker).exists());
    }

    // B searches its whole tree (incl. /tmp and /proc) for A's marker.
    let (_, found, _) = sh(&b, &format!("find / -name '{marker}*' 2>/dev/null")).await;
    assert_eq!(found, "", "B found A's files");
    // A's writable layer, by its host path: not there.
    let upper = a.dir().join("upper").join(&marker);
    let (code, out, _) = sh(&b, &format!("cat {} 2>&1", upper.display())).await;
    assert_ne!(code, 0, "B read A's upper dir: {out}");
    assert!(out.contains("No such file"), "{out}");
    // A's processes: B's pid namespace holds only its own (A's sleep is not there).
    let (_, procs, _) = sh(&b, "ps -o comm | grep -c '^sleep' || true").await;
    assert_eq!(procs.trim(), "0", "B sees A's processes");
    let (_, pids, _) = sh(&b, "ls /proc | grep -cE '^[0-9]+$'").await;
    let n: u32 = pids.trim().parse().unwrap();
    assert!(n <= 5, "B sees {n} processes");
    a.destroy().await.unwrap();
    b.destroy().await.unwrap();
}
both!(neighbours_are_invisible, neighbours_are_invisible_body);

/// The daemon's environment and files: nothing of the holder's environment reaches a
/// step, pid 1 (the host's binary, started from the daemon) cannot be inspected or
/// written through /proc, and the host's /proc entries are absent.
async fn daemon_environment_and_files_unreachable_body() {
    let env = Env::new();
    let c = env.create().await;
    let mine: Vec<String> = std::env::vars()
        .filter(|(k, v)| {
            v.len() >= 4
                && ![
                    "PATH", "HOME", "TERM", "LANG", "PWD", "SHLVL", "USER", "LOGNAME", "SHELL",
                    "OLDPWD", "HOSTNAME", "LC_ALL", "TMPDIR",
                ]
                .contains(&k.as_str())
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert!(
        !mine.is_empty(),
        "the test process has no environment to leak"
    );
    let (_, out, _) = sh(
        &c,
        "env; echo ---; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'",
    )
    .await;
    for kv in &mine {
        assert!(
            !out.contains(kv.as_str()),
            "{kv} visible in the container:\n{out}"
        );
    }
    for (what, script) in [
        ("read pid 1's environment", "cat /proc/1/environ"),
        ("list pid 1's root", "ls /proc/1/root/"),
        ("read pid 1's executable", "head -c 4 /proc/1/exe"),
        ("overwrite pid 1's executable", "echo x >> /proc/1/exe"),
        ("open pid 1's fds", "ls -l /proc/1/fd/"),
        ("read pid 1's memory", "head -c 1 /proc/1/mem"),
    ] {
        let (code, out, err) = sh(&c, script).await;
        assert_ne!(code, 0, "could {what}: {out}");
        assert!(
            err.contains("Permission denied") || err.contains("Operation not permitted"),
            "{what}: {err}"
        );
    }
    // The holder's own /proc entry (its pid on the host) is not in the pid namespace.
    let me = std::process::id();
    let (code, _, _) = sh(
        &c,
        &format!("test -e /proc/{me}/environ || test -e /proc/{me}/root/etc"),
    )
    .await;
    assert!(me < 20 || code != 0, "the holder's /proc entry is visible");
    // Nor is the store that holds the container, by its host path.
    let (code, out, _) = sh(&c, &format!("ls {} 2>&1", env.rt.config().root.display())).await;
    assert_ne!(code, 0, "the store is visible: {out}");
    c.destroy().await.unwrap();
}
both!(
    daemon_environment_and_files_unreachable,
    daemon_environment_and_files_unreachable_body
);

/// Ids: container root is not host root; a set-user-id root binary run by the build
/// user gains nothing (no_new_privs); files land on the host under mapped ids.
async fn setuid_stays_inside_the_mapped_range_body() {
    let env = Env::new();
    let mapping = env.rt.config().mapping.clone();
    let c = env.create().await;
    let (code, out, err) = sh(
        &c,
        "mkdir -p /opt/s /opt/b && chown 1000:1000 /opt/b && cp /bin/busybox /opt/s/busybox && chown 0:0 /opt/s/busybox && chmod 4755 /opt/s/busybox \
         && stat -c '%a %u' /opt/s/busybox && cat /proc/self/uid_map && touch /opt/by-root",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("4755 0"));
    // The map: container 0 is the mapping's host id, never host root (unless the
    // rootless user itself is root, which as_test_user excludes).
    let first: Vec<u64> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(first[0], 0);
    assert_eq!(first[1], u64::from(mapping.host_uid(0).unwrap()));
    assert_ne!(first[1], 0, "container root is host root");

    // Run by the build user, the set-uid binary does not raise its ids.
    let (code, out, err) = as_builder(
        &c,
        "/opt/s/busybox id -u; /opt/s/busybox sh -c 'cat /proc/self/status'; touch /opt/b/f",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("1000\n"), "set-uid root took effect: {out}");
    assert_eq!(
        status_field(&out, "Uid:")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4]
    );
    assert_eq!(status_field(&out, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(&out, "NoNewPrivs:"), "1");

    // On the host: the set-uid file and the files made are owned by mapped ids.
    let upper = c.dir().join("upper");
    let m = std::fs::metadata(upper.join("opt/s/busybox")).unwrap();
    assert_eq!(m.uid(), mapping.host_uid(0).unwrap());
    assert_ne!(m.uid(), 0, "a set-uid file owned by host root");
    let m = std::fs::metadata(upper.join("opt/b/f")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (
            mapping.host_uid(1000).unwrap(),
            mapping.host_gid(1000).unwrap()
        )
    );

    // Privileged operations of the kernel are refused to container root.
    for (what, script) in [
        (
            "mount a filesystem",
            "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t",
        ),
        ("create a device node", "mknod /opt/mem c 1 1"),
        ("change the hostname", "hostname pwned"),
        // busybox prints the date and exits 0 even when setting it failed.
        (
            "change the clock",
            "date -s '2000-01-01 00:00' >/dev/null 2>&1; test $(date +%Y) = 2000",
        ),
        ("add a network link", "ip link add dummy0 type dummy"),
    ] {
        let (code, out, _) = sh(&c, script).await;
        assert_ne!(code, 0, "container root could {what}: {out}");
    }
    let (_, host, _) = sh(&c, "hostname").await;
    assert_eq!(host.trim(), &c.id()[..12]);
    c.destroy().await.unwrap();
}
both!(
    setuid_stays_inside_the_mapped_range,
    setuid_stays_inside_the_mapped_range_body
);

/// Escapes through /proc and /sys, as root of the container.
async fn proc_and_sys_escapes_fail_body() {
    let env = Env::new();
    let c = env.create().await;
    for (what, script) in [
        ("write a sysctl", "echo 1 > /proc/sys/kernel/sysrq"),
        (
            "write the core pattern",
            "echo '|/tmp/x' > /proc/sys/kernel/core_pattern",
        ),
        ("trigger sysrq", "echo b > /proc/sysrq-trigger"),
        (
            "write a kernel parameter",
            "echo 1 > /proc/sys/vm/drop_caches",
        ),
        ("write sysfs", "echo 1 > /sys/kernel/profiling"),
        ("remount /proc writable", "mount -o remount,rw /proc/sys"),
        ("unmount a mask", "umount /proc/kcore"),
        (
            "bind-mount the root",
            "mkdir -p /mnt/b && mount --bind / /mnt/b",
        ),
    ] {
        let (code, out, _) = sh(&c, script).await;
        assert_ne!(code, 0, "container root could {what}: {out}");
    }
    // Masked: reading these gives nothing.
    let (_, out, _) = sh(
        &c,
        "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do \
         echo $f $(cat $f 2>/dev/null | wc -c); done; echo acpi $(ls /proc/acpi 2>/dev/null | wc -l)",
    )
    .await;
    assert_eq!(out.lines().count(), 5, "{out}");
    for l in out.lines() {
        assert!(l.ends_with(" 0"), "{l} is readable:\n{out}");
    }
    // /proc/self/root and /proc/1/root lead back into the container, not to the host.
    let marker = format!("ka-proc-root-{}", std::process::id());
    std::fs::write(env.dir.path().join(&marker), "host").unwrap();
    let (_, out, _) = sh(
        &c,
        &format!(
            "ls /proc/self/root/ | tr '\\n' ' '; cat /proc/self/root{}/{marker} 2>&1",
            env.dir.path().display()
        ),
    )
    .await;
    assert!(out.contains("bin") && !out.contains("host"), "{out}");
    // The mount table shows no host mount but the ones the container was given.
    let (_, mounts, _) = sh(&c, "cut -d' ' -f2 /proc/self/mounts").await;
    for m in mounts.lines() {
        assert!(
            m == "/"
                || ["/proc", "/dev", "/sys", "/tmp"]
                    .iter()
                    .any(|p| m.starts_with(p)),
            "unexpected mount {m} in\n{mounts}"
        );
    }
    c.destroy().await.unwrap();
    assert!(Path::new("/proc/sys/kernel/core_pattern").exists());
    assert!(!std::fs::read_to_string("/proc/sys/kernel/core_pattern")
        .unwrap()
        .contains("/tmp/x"));
}
both!(proc_and_sys_escapes_fail, proc_and_sys_escapes_fail_body);
