//! The daemon binary: invoked as `kojid` (a symlink, as kojid.service runs it) with
//! kojid's flags against the fake hub; SIGUSR1 restarts it in place (same pid, new
//! login), SIGTERM stops it cleanly; bad configs are refused with file, key and reason.

mod support;

use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};

use koji_adjutant::xmlrpc::Value;
use support::fakehub::{FakeHub, CLOSED, FREE, OPEN};
use support::wait_until;

fn write_conf(dir: &std::path::Path, hub: &FakeHub, extra: &str) -> std::path::PathBuf {
    let p = dir.join("kojid.conf");
    std::fs::write(
        &p,
        format!(
            "[kojid]\nserver = {}\ntopurl = http://127.0.0.1:1/kojifiles\nuser = builder1\npassword = builder1-pw\n\
             sleeptime = 1\nminspace = 0\nworkdir = {}\n{extra}\n[adjutant]\nmax_load_per_cpu = 0\nstore_root = {}\n",
            hub.url(),
            dir.join("work").display(),
            dir.join("store").display()
        ),
    )
    .unwrap();
    p
}

fn kojid(dir: &std::path::Path) -> std::path::PathBuf {
    let link = dir.join("kojid");
    symlink(env!("CARGO_BIN_EXE_koji-adjutant"), &link).unwrap();
    link
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kojid_symlink_with_kojid_flags_restart_and_sigterm() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(dir.path(), &hub, "");
    let mut child = Command::new(kojid(dir.path()))
        .args([
            "-c",
            conf.to_str().unwrap(),
            "--fg",
            "--force-lock",
            "--verbose",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let t = hub.make_task("sleep", vec![Value::Int(0)]);
    wait_until("task closed by the kojid binary", || {
        hub.task(t).state == CLOSED
    })
    .await;
    let logins = hub.calls_of("login").len();
    // SIGUSR1: graceful restart — the same process re-executes and logs in again
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    wait_until("logged in again after the restart", || {
        hub.calls_of("login").len() > logins
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process exited instead of re-executing"
    );
    let t2 = hub.make_task("sleep", vec![Value::Int(300)]);
    wait_until("second task open", || hub.task(t2).state == OPEN).await;
    // SIGTERM: the running task is given back and the daemon exits 0
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(hub.task(t2).state, FREE);
    hub.with(|s| assert!(s.sessions.values().all(|x| x.closed)));
}

#[test]
fn bad_config_is_refused_with_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("kojid.conf");
    std::fs::write(
        &p,
        "[kojid]\nserver = http://127.0.0.1:1/kojihub\ntopurl = http://x/\nmaxjobs = many\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_koji-adjutant"))
        .args(["daemon", "-c", p.to_str().unwrap(), "--fg"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kojid.conf:4")
            && err.contains("maxjobs")
            && err.contains("not a valid integer"),
        "{err}"
    );
}

#[test]
fn no_credentials_names_the_alternatives_to_gssapi() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("kojid.conf");
    std::fs::write(
        &p,
        format!(
            "[kojid]\nserver = http://127.0.0.1:1/kojihub\ntopurl = http://x/\nworkdir = {}\n[adjutant]\nstore_root = {}\n",
            dir.path().join("w").display(),
            dir.path().join("s").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_koji-adjutant"))
        .args(["daemon", "-c", p.to_str().unwrap(), "--fg"])
        .env_remove("KOJI_ADJUTANT_KOJID_CERT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GSSAPI") && err.contains("cert") && err.contains("password"),
        "{err}"
    );
}

/// Receive one notification datagram (blocking on a thread; the read timeout only
/// keeps a broken daemon from hanging the test).
async fn next_notification(sock: &std::sync::Arc<std::os::unix::net::UnixDatagram>) -> String {
    let sock = sock.clone();
    tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 4096];
        let n = sock
            .recv(&mut buf)
            .expect("no notification from the daemon within 300 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_ready_reloading_and_stopping() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(dir.path(), &hub, "");
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(300)))
        .unwrap();
    let sock = std::sync::Arc::new(sock);
    let mut child = Command::new(env!("CARGO_BIN_EXE_koji-adjutant"))
        .args([
            "daemon",
            "-c",
            conf.to_str().unwrap(),
            "--fg",
            "--force-lock",
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);

    let m = next_notification(&sock).await;
    assert!(m.starts_with("READY=1\n"), "{m:?}");
    assert!(
        m.contains(&format!("STATUS=connected to {}", hub.url())),
        "{m:?}"
    );
    assert!(
        !hub.calls_of("login").is_empty(),
        "READY=1 before the login"
    );

    // SIGUSR1: RELOADING=1, then the re-executed process is READY again
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    let m = next_notification(&sock).await;
    assert!(m.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{m:?}");
    let m = next_notification(&sock).await;
    assert!(m.starts_with("READY=1\n"), "{m:?}");
    assert_eq!(hub.calls_of("login").len(), 2);

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let m = next_notification(&sock).await;
    assert!(m.starts_with("STOPPING=1\nSTATUS=SIGTERM"), "{m:?}");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    hub.with(|s| assert!(s.sessions.values().all(|x| x.closed)));
}
