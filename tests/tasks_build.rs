//! End to end: rpm builds against the fake hub, run by the real daemon binary
//! (`koji-adjutant daemon`) in container buildroots from the rpmroot fixture image
//! (imported into the daemon's store as `localhost/buildroot:latest`, the tag's
//! `adjutant.image`). The Koji repo is made by the daemon's own newRepo/createrepo
//! tasks from the fake hub's tag contents and served over HTTP from the fake hub's
//! topdir (topurl), so a BuildRequires that only the Koji repo provides
//! (needs-dep → koji-only-dep) proves the buildroot installs from it.
//!
//! Needs root (container buildroots with the root id mapping) and the rpmroot fixture
//! (tests/fixtures/make-fixtures.sh --rpmroot; tests/run.sh builds it).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use adjutant_runtime::store::{ImportOptions, Store};
use koji_adjutant::hub::taskrelpath;
use koji_adjutant::xmlrpc::{encode_args, MethodResponse, Struct, Value};
use support::buildenv::BuildEnv;
use support::fakebuilds::{BR_BUILDING, BR_EXPIRED, BUILD_FAILED, COMPLETE};
use support::fakehub::{CLOSED, FAILED};

fn fixture(rel: &str) -> PathBuf {
    adjutant_testkit::fixtures_dir().join(rel)
}

/// A daemon process; killed (SIGTERM, then waited for) when dropped.
struct DaemonProc {
    child: Child,
    log: PathBuf,
}

impl DaemonProc {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

struct Env {
    e: BuildEnv,
    d: Option<DaemonProc>,
}

impl Env {
    /// The fake Koji with koji-only-dep in the build tag, the image imported, and the
    /// daemon binary running.
    async fn start() -> Env {
        let e = BuildEnv::new().await;
        e.repos.set_extra(
            e.build_tag,
            "adjutant.image",
            Value::from("localhost/buildroot:latest"),
        );
        e.repos.tag_rpms(
            e.build_tag,
            &[fixture("rpms/koji-only-dep-1.0-1.noarch.rpm")],
        );
        let conf_extra = format!(
            "topurl = {}\ntopdir = {}\nadjutant_status_bind = \n",
            e.topurl.url(),
            e.hub.topdir().display()
        );
        let cfg = support::config(&e.hub.url(), 1, e.dir.path(), &conf_extra);
        // the image, as `koji-adjutant image import oci:DIR localhost/buildroot:latest`
        let store = Store::open(&cfg.store_root()).unwrap();
        let layout = adjutant_testkit::rpmroot_dir();
        store
            .import(
                &format!("oci:{}:latest", layout.display()),
                Some("localhost/buildroot:latest"),
                &ImportOptions::default(),
            )
            .unwrap();
        let log = e.dir.path().join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_koji-adjutant"))
            .arg("daemon")
            .arg("-c")
            .arg(e.dir.path().join("kojid-1.conf"))
            .args(["--fg", "--force-lock", "--verbose"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(e.dir.path().join("daemon.err")).unwrap())
            .spawn()
            .unwrap();
        Env {
            e,
            d: Some(DaemonProc { child, log }),
        }
    }

    fn daemon_log(&self) -> String {
        let mut s = self.d.as_ref().map(|d| d.log_text()).unwrap_or_default();
        s.push_str(
            &std::fs::read_to_string(self.e.dir.path().join("daemon.err")).unwrap_or_default(),
        );
        s
    }

    async fn finish(&self, t: i64) -> i64 {
        let st = self.e.finish(t).await;
        if st != CLOSED {
            eprintln!(
                "task {t} ended {st}: {:?}\n{}",
                self.e.hub.result(t),
                self.daemon_log()
            );
        }
        st
    }

    /// A READY repo of the build tag, made by the daemon's newRepo task.
    async fn repo(&self) -> i64 {
        let mut kw = Struct::new();
        kw.insert("opts".into(), Value::new_struct());
        let t = self.e.hub.make_task(
            "newRepo",
            encode_args(
                vec![Value::struct_from([
                    ("id", Value::Int(self.e.build_tag)),
                    ("name", Value::from("dist-build")),
                ])],
                kw,
            ),
        );
        assert_eq!(self.finish(t).await, CLOSED);
        self.e.repos.repos_of(self.e.build_tag).last().unwrap().id
    }

    fn uploaded(&self, task: i64, name: &str) -> String {
        std::fs::read_to_string(self.e.top(&format!("work/{}/{name}", taskrelpath(task))))
            .unwrap_or_default()
    }
}

fn result_struct(e: &BuildEnv, t: i64) -> Struct {
    match e.result(t) {
        MethodResponse::Params(p) => p[0].as_struct().unwrap().clone(),
        other => panic!("{other:?}"),
    }
}

fn rpm_q(path: &Path, qf: &str) -> String {
    let out = Command::new("rpm")
        .args(["-qp", "--nosignature", "--nodigest", "--qf", qf])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_in_containers_from_the_koji_repo_with_the_buildroot_cache() {
    let env = Env::start().await;
    let e = &env.e;
    e.builds.add_package(e.dest_tag, "needs-dep", false);

    // 1. non-scratch needs-dep through `build`: the repo comes through the request
    //    queue, BuildRequires koji-only-dep is installed from it
    let src = e.upload_srpm(&fixture("srpms/needs-dep-1.0-1.src.rpm"));
    let t = e.submit_build(&src, "dist", &[]);
    assert_eq!(env.finish(t).await, CLOSED);
    let b = e.builds.builds()[0].clone();
    assert_eq!((b.nvr().as_str(), b.state), ("needs-dep-1.0-1", COMPLETE));
    let arch_task = e
        .children(t)
        .into_iter()
        .find(|k| k.method == "buildArch")
        .unwrap();
    let r = result_struct(e, arch_task.id);
    let br = r["brootid"].as_i64().unwrap();
    // completeBuild's brmap: the rpm and the srpm → this real buildroot
    let calls = e.hub.calls_of("host.completeBuild");
    let brmap = calls[0].params[4].as_struct().unwrap().clone();
    assert_eq!(brmap.len(), 2, "{brmap:?}");
    assert!(brmap.values().all(|v| *v == Value::Int(br)));
    // the buildroot listed koji-only-dep with its Koji rpm id, BUILDING then EXPIRED
    let info = e.builds.brinfo(br);
    let dep_id = e.repos.with_db(|db| {
        db.tags[&e.build_tag]
            .rpms
            .iter()
            .find(|r| r.name == "koji-only-dep")
            .unwrap()
            .id
    });
    assert!(
        info.list.contains(&dep_id) || info.updates.contains(&dep_id),
        "{info:?}"
    );
    assert_eq!(info.states, [BR_BUILDING, BR_EXPIRED]);
    // the built rpm has the marker copied from koji-only-dep's file, and the srpm
    // kojid's vendor/packager/distribution
    let rpm = e.top(&b.rpms.iter().find(|r| r.arch == "noarch").unwrap().relpath);
    assert!(rpm_q(&rpm, "[%{FILENAMES}\n]").contains("/usr/share/needs-dep/needs-dep.txt"));
    let srpm = e.top(&b.rpms.iter().find(|r| r.arch == "src").unwrap().relpath);
    assert_eq!(
        rpm_q(&srpm, "%{VENDOR}|%{PACKAGER}|%{DISTRIBUTION}"),
        "Koji|Koji|Koji"
    );
    // logs with kojid's names, uploaded; the root.log shows the install from the repo
    let logs: Vec<String> = r["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        .collect();
    for want in [
        "build.log",
        "root.log",
        "mock_config.log",
        "noarch_rpmdiff.json",
    ] {
        assert!(logs.iter().any(|l| l == want), "{want} in {logs:?}");
    }
    assert!(
        env.uploaded(arch_task.id, "root.log")
            .contains("koji-only-dep"),
        "root.log:\n{}",
        env.uploaded(arch_task.id, "root.log")
    );
    let first_output = env.uploaded(arch_task.id, "mock_output.log");
    assert!(
        !first_output.contains("buildroot cache hit"),
        "{first_output}"
    );
    // tagged
    assert_eq!(e.tasks_of("tagBuild")[0].state, CLOSED);

    // 2. a second build on the same repo: its buildroot comes from the cache
    let repo = e.repos.repos_of(e.build_tag).last().unwrap().id;
    let src2 = e.upload_srpm(&fixture("srpms/hello-data-1.0-1.src.rpm"));
    let t2 = e.hub.make_task(
        "buildArch",
        vec![
            Value::from(src2.as_str()),
            Value::from("dist-build"),
            Value::from("noarch"),
            Value::Bool(true),
            Value::struct_from([("repo_id", Value::Int(repo))]),
        ],
    );
    assert_eq!(env.finish(t2).await, CLOSED);
    let out2 = env.uploaded(t2, "mock_output.log");
    assert!(out2.contains("buildroot cache hit"), "{out2}");
    let r2 = result_struct(e, t2);
    assert_eq!(
        r2["rpms"],
        Value::Array(vec![Value::from(format!(
            "{}/hello-data-1.0-1.noarch.rpm",
            taskrelpath(t2)
        ))])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_build_in_a_container_fails_with_its_log() {
    let env = Env::start().await;
    let e = &env.e;
    e.builds.add_package(e.dest_tag, "fails-build", false);
    let repo = env.repo().await;
    assert!(repo > 0);
    let src = e.upload_srpm(&fixture("srpms/fails-build-1.0-1.src.rpm"));
    let t = e.submit_build(&src, "dist", &[]);
    assert_eq!(e.finish(t).await, FAILED);
    let (code, msg) = e.fault(t);
    assert_eq!(code, 1005, "{msg}");
    assert!(
        msg.starts_with("error building package (arch noarch), "),
        "{msg}"
    );
    assert!(msg.contains("see build.log for more information"), "{msg}");
    assert!(msg.contains("this %build step fails on purpose"), "{msg}");
    let arch_task = e
        .children(t)
        .into_iter()
        .find(|k| k.method == "buildArch")
        .unwrap();
    assert!(env
        .uploaded(arch_task.id, "build.log")
        .contains("fails on purpose"));
    let b = &e.builds.builds()[0];
    assert_eq!(b.state, BUILD_FAILED);
    let br = e.hub.with(|s| {
        s.buildroots
            .values()
            .find(|b| b.task_id == Some(arch_task.id))
            .unwrap()
            .id
    });
    assert_eq!(e.builds.brinfo(br).states, [BR_BUILDING, BR_EXPIRED]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scratch_build_in_containers_moves_to_scratch() {
    let env = Env::start().await;
    let e = &env.e;
    let src = e.upload_srpm(&fixture("srpms/hello-data-1.0-1.src.rpm"));
    let t = e.submit_build(&src, "dist", &[("scratch", Value::Bool(true))]);
    assert_eq!(env.finish(t).await, CLOSED);
    let kids = e.children(t);
    let methods: Vec<&str> = kids.iter().map(|k| k.method.as_str()).collect();
    assert_eq!(methods, ["waitrepo", "rebuildSRPM", "buildArch"]);
    let calls = e.hub.calls_of("host.moveBuildToScratch");
    assert_eq!(calls.len(), 1);
    let up = taskrelpath(kids[2].id);
    assert_eq!(
        calls[0].params[1],
        Value::from(format!("{up}/hello-data-1.0-1.src.rpm"))
    );
    assert_eq!(
        calls[0].params[2],
        Value::Array(vec![Value::from(format!(
            "{up}/hello-data-1.0-1.noarch.rpm"
        ))])
    );
    let dir = e.top(&format!("scratch/alice/task_{t}"));
    assert!(dir.join("hello-data-1.0-1.noarch.rpm").is_file());
    assert!(dir.join("logs/noarch/build.log").is_file());
    // the rebuildSRPM ran in a srpm-build buildroot: its result srpm is a source rpm
    let r = result_struct(e, kids[1].id);
    let srpm = e.top(&format!("work/{}", r["srpm"].as_str().unwrap()));
    assert_eq!(rpm_q(&srpm, "%{NAME}-%{VERSION}"), "hello-data-1.0");
}
