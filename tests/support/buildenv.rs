//! A fake Koji with what builds need: the fake hub with repos ([`FakeRepos`]) and builds
//! ([`FakeBuilds`]), its topdir served as `topurl` ([`TopUrl`]), tags `dist-build`
//! (x86_64, groups `build` and `srpm-build`) and `dist-dest`, target `dist`, and a
//! daemon configured against all of it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use koji_adjutant::daemon::HandlerRegistry;
use koji_adjutant::xmlrpc::{MethodResponse, Value};

use super::fakebuilds::{FakeBuilds, ALICE};
use super::fakehub::{FakeHub, Task, CANCELED, CLOSED, FAILED};
use super::fakerepos::FakeRepos;
use super::topurl::TopUrl;
use super::{config, spawn, wait_until, Running};

pub struct BuildEnv {
    pub hub: FakeHub,
    pub repos: FakeRepos,
    pub builds: FakeBuilds,
    pub topurl: TopUrl,
    pub dir: tempfile::TempDir,
    pub build_tag: i64,
    pub dest_tag: i64,
    pub daemon: Option<Running>,
}

impl BuildEnv {
    /// The fake Koji, without a daemon yet.
    pub async fn new() -> BuildEnv {
        let hub = FakeHub::start(1).await;
        let repos = FakeRepos::install(&hub);
        let builds = FakeBuilds::install(&hub, &repos);
        let topurl = TopUrl::start(hub.topdir()).await;
        let build_tag = repos.add_tag("dist-build", Some("x86_64"));
        let dest_tag = repos.add_tag("dist-dest", None);
        repos.add_group(
            build_tag,
            "build",
            &["bash", "coreutils", "rpm-build", "gcc", "make"],
        );
        repos.add_group(build_tag, "srpm-build", &["bash", "rpm-build"]);
        builds.add_target("dist", build_tag, dest_tag);
        let dir = tempfile::tempdir().unwrap();
        BuildEnv {
            hub,
            repos,
            builds,
            topurl,
            dir,
            build_tag,
            dest_tag,
            daemon: None,
        }
    }

    /// Start the daemon with `handlers` (default: the built-in ones) and `extra`
    /// kojid.conf lines.
    pub async fn start_daemon(&mut self, handlers: Option<HandlerRegistry>, extra: &str) {
        let conf = format!(
            "topurl = {}\ntopdir = {}\n{extra}",
            self.topurl.url(),
            self.hub.topdir().display()
        );
        let cfg = config(&self.hub.url(), 1, self.dir.path(), &conf);
        self.daemon = Some(spawn(cfg, handlers).await);
    }

    /// Put `srpm` where the koji CLI uploads it (`work/cli-build/<n>/`); its path
    /// relative to `work/`.
    pub fn upload_srpm(&self, srpm: &Path) -> String {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let rel = format!(
            "cli-build/{n}.test/{}",
            srpm.file_name().unwrap().to_string_lossy()
        );
        let dst = self.hub.topdir().join("work").join(&rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(srpm, &dst).unwrap();
        rel
    }

    /// A `build` task as `koji build` makes it, owned by alice.
    pub fn submit_build(&self, src: &str, target: &str, opts: &[(&str, Value)]) -> i64 {
        let opts = Value::struct_from(opts.iter().map(|(k, v)| (*k, v.clone())));
        let id = self
            .hub
            .make_task("build", vec![Value::from(src), Value::from(target), opts]);
        self.hub.with(|s| {
            let t = s.tasks.get_mut(&id).unwrap();
            t.owner = ALICE;
            t.arch = "noarch".into();
        });
        id
    }

    /// Wait until `task` is CLOSED, FAILED or CANCELED; its final state.
    pub async fn finish(&self, task: i64) -> i64 {
        wait_until(&format!("task {task} finished"), || {
            matches!(self.hub.task(task).state, CLOSED | FAILED | CANCELED)
        })
        .await;
        self.hub.task(task).state
    }

    /// The task's stored result.
    pub fn result(&self, task: i64) -> MethodResponse {
        self.hub.result(task).expect("task has a result")
    }

    /// The fault string of a failed task.
    pub fn fault(&self, task: i64) -> (i32, String) {
        match self.result(task) {
            MethodResponse::Fault(f) => (f.code, f.string),
            other => panic!("task {task} did not fail: {other:?}"),
        }
    }

    /// Children of `parent`, by id.
    pub fn children(&self, parent: i64) -> Vec<Task> {
        self.hub.with(|s| {
            s.tasks
                .values()
                .filter(|t| t.parent == Some(parent))
                .cloned()
                .collect()
        })
    }

    /// Tasks of `method`.
    pub fn tasks_of(&self, method: &str) -> Vec<Task> {
        self.hub.with(|s| {
            s.tasks
                .values()
                .filter(|t| t.method == method)
                .cloned()
                .collect()
        })
    }

    /// `<topdir>/<rel>`.
    pub fn top(&self, rel: &str) -> PathBuf {
        self.hub.topdir().join(rel)
    }

    pub async fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
    }
}
