//! Faults around real builds (issue 8, item 1): the daemon binary SIGKILLed in the
//! middle of a build and restarted, `koji cancel` while the build step runs, a host
//! short of disk space (minspace) and a build that fills its disk. Each runs the
//! daemon binary against the fake hub with container buildroots from the rpmroot
//! image, and checks afterwards that nothing is left: no build process, container
//! directory, cgroup, mount or task directory.
//!
//! Needs root and the rpmroot fixture (tests/run.sh prepares both).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use koji_adjutant::hub::taskrelpath;
use koji_adjutant::xmlrpc::Value;
use support::buildhost::{fixture, make_srpm, BuildHost};
use support::fakebuilds::BR_EXPIRED;
use support::fakehub::{Action, CANCELED, CLOSED, FAILED, OPEN};
use support::leaks::{containers, leftovers, procs_with, ContainerWatch};
use support::ociregistry::OciRegistry;

/// Poll `cond` for up to `secs` seconds (a bound on a hang, not a timing assertion).
async fn wait_long<F: FnMut() -> bool>(what: &str, secs: u64, mut cond: F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tmpfs mounted over `dir` for the test; unmounted when dropped.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_owned())
    }
    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }
    /// Bytes used.
    fn used(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.0).unwrap();
        (st.blocks() - st.blocks_free()) as u64 * st.fragment_size() as u64
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn assert_clean(h: &BuildHost, seen: &std::collections::BTreeSet<String>, marker: Option<&str>) {
    let left = leftovers(&h.store(), &h.workdir(), seen, marker);
    assert!(
        left.is_empty(),
        "left behind: {left:#?}\n--- daemon log ---\n{}",
        h.log_text()
    );
}

/// Wait (bounded) until a finished build's background cleanup is done.
async fn wait_clean(
    h: &BuildHost,
    seen: &std::collections::BTreeSet<String>,
    marker: Option<&str>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !leftovers(&h.store(), &h.workdir(), seen, marker).is_empty()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_clean(h, seen, marker);
}

/// A started build host whose buildArch of an SRPM with `build` as its `%build` has
/// reached the build step (`procs` processes mention `marker`); the container watch
/// started before it; the task.
async fn a_running_build(
    name: &str,
    build: &str,
    marker: &str,
    procs: usize,
) -> (BuildHost, ContainerWatch, i64) {
    let mut h = BuildHost::new("").await;
    h.start();
    let repo = h.repo().await;
    let srpm = make_srpm(h.e.dir.path(), name, build);
    let rel = h.e.upload_srpm(&srpm);
    let watch = ContainerWatch::start(&h.store());
    let t = h.build_arch(&rel, repo);
    wait_long("the build step runs", 300, || {
        procs_with(marker).len() >= procs
    })
    .await;
    (h, watch, t)
}

/// The hub's buildroot of task `t`.
fn buildroot_of(h: &BuildHost, t: i64) -> i64 {
    h.e.hub.with(|s| {
        s.buildroots
            .values()
            .find(|b| b.task_id == Some(t))
            .map(|b| b.id)
            .expect("the task has a buildroot on the hub")
    })
}

fn exclusive_sessions(h: &BuildHost) -> Vec<(i64, bool)> {
    h.e.hub.with(|s| {
        s.sessions
            .values()
            .filter(|x| x.exclusive && x.master.is_none())
            .map(|x| (x.id, x.closed))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_build_then_restart_frees_sweeps_and_takes_the_lock() {
    let marker = "7.31415";
    let (mut h, watch, t) =
        a_running_build("slow-build", &format!("sleep {marker}"), marker, 1).await;
    let before_kill = containers(&h.store());
    assert!(!before_kill.is_empty());
    let sessions = exclusive_sessions(&h);
    assert_eq!(sessions.len(), 1);
    let old_session = sessions[0].0;

    h.daemon().kill9();
    h.d = None;
    // the containers die with their holder (the lifeline), the task stays OPEN
    wait_long("the build's processes die with the daemon", 30, || {
        procs_with(marker).is_empty()
    })
    .await;
    assert_eq!(h.e.hub.task(t).state, OPEN);
    let first_br = buildroot_of(&h, t);

    // the dead daemon's task directory (sources, buildroot build dir) is still there
    let taskdir = h.workdir().join(taskrelpath(t));
    assert!(taskdir.is_dir());
    // the hub will not hand the freed task back to this host for now, so what the
    // restart cleans up is seen before the task runs here again
    h.e.hub
        .with(|s| s.refusals.push((t, 1, true, "test: keep it away".into())));

    // restarted as systemd would (kojid --fg --force-lock)
    h.start();
    wait_long("stale task freed", 120, || {
        h.e.hub.task(t).state == support::fakehub::FREE
    })
    .await;
    wait_clean(&h, &watch.seen(), Some(marker)).await;
    assert!(!taskdir.exists());
    // now let it come back: it is built again
    h.e.hub.with(|s| s.refusals.retain(|r| r.0 != t));
    assert_eq!(h.finish(t).await, CLOSED);
    assert_eq!(h.e.hub.task(t).opened, 2, "freed and taken again");
    let freed = h.e.hub.calls_of("host.freeTasks");
    assert!(
        freed
            .iter()
            .any(|c| c.params[0] == Value::Array(vec![Value::Int(t)])),
        "stale task not freed: {freed:?}"
    );
    // the lock: the old session was closed by --force-lock, the new one holds it
    assert!(h.e.hub.with(|s| s.sessions[&old_session].closed));
    let holders: Vec<i64> = exclusive_sessions(&h)
        .into_iter()
        .filter(|(_, closed)| !closed)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_ne!(holders[0], old_session);
    // the first run's buildroot was expired by the restarted daemon
    assert_eq!(h.e.hub.with(|s| s.buildroots[&first_br].state), BR_EXPIRED);
    // the old containers were swept: no directory, cgroup or mount left
    for c in &before_kill {
        assert!(!containers(&h.store()).contains(c), "{c} not swept");
    }
    wait_clean(&h, &watch.seen(), Some(marker)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_build_frees_the_task_and_leaves_nothing() {
    let marker = "600.14142";
    let (mut h, watch, t) = a_running_build("stopped", &format!("sleep {marker}"), marker, 1).await;
    let br = buildroot_of(&h, t);
    // A slow hub: the task's own `setBuildRootState(EXPIRED)` hangs past the cancel
    // grace (the task is aborted), and so does the first background retry.
    h.e.hub.inject(
        "host.setBuildRootState",
        2,
        Action::Hang(Duration::from_secs(4)),
    );
    let st = h.daemon().term().expect("daemon exit status");
    h.d = None;
    assert_eq!(st.code(), Some(0), "{}", h.log_text());
    // kojid's shutdown: the task freed, the host not ready, logged out
    assert_eq!(h.e.hub.task(t).state, support::fakehub::FREE);
    assert!(!h.e.hub.with(|s| s.hosts[&1].ready));
    // and its buildroot expired before the daemon exited (not left to the next start)
    assert_eq!(
        h.e.hub.with(|s| s.buildroots[&br].state),
        BR_EXPIRED,
        "{}",
        h.log_text()
    );
    // and nothing left once the process is gone — not even for a sweep to find
    assert_clean(&h, &watch.seen(), Some(marker));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koji_cancel_during_the_build_step_leaves_nothing() {
    let marker = "600.27182";
    let (mut h, watch, t) = a_running_build(
        "never-ends",
        &format!("sleep {marker} & sleep {marker}\nwait"),
        marker,
        2,
    )
    .await;
    let br = buildroot_of(&h, t);
    let t0 = Instant::now();
    h.e.hub.cancel(t);
    assert_eq!(h.e.hub.task(t).state, CANCELED);
    wait_long("the build's processes are gone", 60, || {
        procs_with(marker).is_empty()
    })
    .await;
    let gone_after = t0.elapsed();
    eprintln!("build processes gone {gone_after:?} after the cancel");
    wait_clean(&h, &watch.seen(), Some(marker)).await;
    eprintln!("everything cleaned up {:?} after the cancel", t0.elapsed());
    wait_long("buildroot expired", 60, || {
        h.e.hub.with(|s| s.buildroots[&br].state) == BR_EXPIRED
    })
    .await;
    // the daemon goes on
    let t2 = h.e.hub.make_task("sleep", vec![Value::Int(0)]);
    assert_eq!(h.finish(t2).await, CLOSED);
    assert!(h.daemon().try_exit().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minspace_on_the_workdir_makes_the_host_not_ready() {
    let mut h = BuildHost::new("minspace = 100").await;
    let fs = Tmpfs::mount(&h.workdir(), "48m");
    h.start();
    wait_long("updateHost calls", 60, || {
        h.e.hub.with(|s| s.hosts[&1].update_calls) >= 3
    })
    .await;
    let t = h.e.hub.make_task("sleep", vec![Value::Int(0)]);
    wait_long("more updateHost calls", 60, || {
        h.e.hub.with(|s| s.hosts[&1].update_calls) >= 6
    })
    .await;
    let calls = h.e.hub.calls_of("host.updateHost");
    assert!(
        calls.iter().all(|c| c.params[1] == Value::Bool(false)),
        "{calls:?}"
    );
    assert!(h.e.hub.calls_of("host.getTasks").is_empty());
    assert_eq!(h.e.hub.task(t).state, support::fakehub::FREE);
    let log = h.log_text();
    assert!(
        log.contains(&format!(
            "Insufficient disk space at {}",
            h.workdir().display()
        )),
        "{log}"
    );
    // space comes back: ready again, the task is taken
    fs.resize("256m");
    assert_eq!(h.finish(t).await, CLOSED);
    h.d = None;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_fills_the_disk_fails_cleanly() {
    let mut h = BuildHost::new("").await;
    let fs = Tmpfs::mount(&h.workdir(), "64m");
    h.start();
    let repo = h.repo().await;
    let idle = fs.used();
    let srpm = make_srpm(
        h.e.dir.path(),
        "fills-disk",
        "dd if=/dev/zero of=filler bs=1M count=512",
    );
    let rel = h.e.upload_srpm(&srpm);
    let watch = ContainerWatch::start(&h.store());
    let t = h.build_arch(&rel, repo);
    assert_eq!(h.finish(t).await, FAILED);
    let (code, msg) = h.e.fault(t);
    assert_eq!(code, 1005, "{msg}");
    assert!(
        msg.starts_with("error building package (arch noarch), "),
        "{msg}"
    );
    wait_clean(&h, &watch.seen(), None).await;
    // the space is back (the task directory and the buildroot's are gone)
    let after = fs.used();
    assert!(
        after <= idle + (1 << 20),
        "workdir used {idle} bytes before the build, {after} after"
    );
    // and the host builds again
    let ok = make_srpm(h.e.dir.path(), "small", "true");
    let rel = h.e.upload_srpm(&ok);
    let t2 = h.build_arch(&rel, repo);
    assert_eq!(h.finish(t2).await, CLOSED);
    h.d = None;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_dying_mid_pull_fails_the_build_cleanly_and_the_next_one_pulls() {
    let layout = adjutant_testkit::rpmroot_dir();
    let reg = OciRegistry::start(layout, "test/rpmroot").await;
    let image = format!("{}/test/rpmroot:latest", reg.host());
    let mut h = BuildHost::with_image(
        &format!("adjutant.insecure_registries = {}", reg.host()),
        Some(&image),
    )
    .await;
    h.start();
    let repo = h.repo().await;
    let src = h.e.upload_srpm(&fixture("srpms/hello-data-1.0-1.src.rpm"));
    let watch = ContainerWatch::start(&h.store());
    reg.set_dying(true);
    let t = h.build_arch(&src, repo);
    assert_eq!(h.finish(t).await, FAILED);
    let (code, msg) = h.e.fault(t);
    eprintln!("fault {code}: {msg}");
    // a clear error that names the image and the blob that could not be had
    assert!(msg.contains(&image), "{msg}");
    let blobs: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
        .collect();
    assert!(blobs.iter().any(|b| msg.contains(b.as_str())), "{msg}");
    assert!(msg.contains("the connection broke after "), "{msg}");
    let (gets, cut) = reg.blob_stats();
    // every blob request was cut, and the pull tried more than once
    assert!(
        cut >= 2 && cut == gets,
        "retried: {gets} gets, {cut} cut; {msg}"
    );
    // nothing half-written in the store: no partial download, no image name
    assert_eq!(
        support::leaks::entries(&h.store().join("ingest")),
        Vec::<String>::new()
    );
    let store = adjutant_runtime::store::Store::open(&h.store()).unwrap();
    assert!(store.resolve(&image).is_err());
    wait_clean(&h, &watch.seen(), None).await;
    // the registry is back: the next build pulls and builds
    reg.set_dying(false);
    let t2 = h.build_arch(&src, repo);
    assert_eq!(h.finish(t2).await, CLOSED);
    assert!(store.resolve(&image).is_ok());
    h.d = None;
}
