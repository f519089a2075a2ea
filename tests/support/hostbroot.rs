//! A test double of the buildroot layer for the task handlers' tests: the "buildroot"
//! is a directory on the host and its steps run the host's `rpm`/`rpmbuild` with
//! `--nodeps` (as mock would inside a chroot), writing `root.log`, `build.log` and
//! `mock_config.log` into the task's log directory. The installed-package list is the
//! build tag repo's `rpmlist.jsonl` (what a buildroot installed from that repo would
//! report), so the hub's strict rpm lookups run for real.
//!
//! Knobs (tag extra): `test.init_fail` (the group install fails), `test.no_vendor`
//! (rpmbuild leaves `%vendor` unset).
//!
//! The real buildroot (containers from the image policy) is tested with the rpmroot
//! image in tests/tasks_build.rs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use koji_adjutant::daemon::{BoxFuture, TaskContext, TaskFailure};
use koji_adjutant::tasks::broot::{
    Buildroot, BuildrootFactory, BuildrootInfo, BuildrootSpec, Created, StepStatus,
};
use koji_adjutant::xmlrpc::Value;

/// Makes host "buildroots"; remembers the specs it was given.
#[derive(Default, Clone)]
pub struct HostFactory {
    pub specs: Arc<Mutex<Vec<BuildrootSpec>>>,
    pub topdir: PathBuf,
}

impl HostFactory {
    pub fn new(topdir: PathBuf) -> HostFactory {
        HostFactory {
            specs: Arc::default(),
            topdir,
        }
    }
}

pub struct HostBuildroot {
    spec: BuildrootSpec,
    root: PathBuf,
    topdir: PathBuf,
    vendor: bool,
}

fn append(log: &Path, text: &[u8]) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    f.write_all(text).unwrap();
}

impl HostBuildroot {
    fn run(&self, log: &str, cmd: &mut Command) -> StepStatus {
        let out = cmd.output().unwrap();
        let logp = self.spec.logdir.join(log);
        append(&logp, format!("$ {cmd:?}\n").as_bytes());
        append(&logp, &out.stdout);
        append(&logp, &out.stderr);
        if out.status.success() {
            StepStatus::Ok
        } else {
            StepStatus::Failed {
                status: format!(
                    "mock exited with status {}",
                    out.status.code().unwrap_or(-1)
                ),
                log: log.into(),
            }
        }
    }

    fn rpmbuild(&self, topdir: &Path) -> Command {
        let mut c = Command::new("rpmbuild");
        c.arg("--define")
            .arg(format!("_topdir {}", topdir.display()));
        c.args(["--define", "packager Koji", "--define", "distribution Koji"]);
        if self.vendor {
            c.args(["--define", "vendor Koji"]);
        }
        c.arg("--nodeps");
        c
    }

    fn unpack(&self, srpm: &Path) -> (PathBuf, StepStatus) {
        let top = self.root.join("rpmbuild");
        let st = self.run(
            "build.log",
            Command::new("rpm")
                .arg("--define")
                .arg(format!("_topdir {}", top.display()))
                .args(["--nosignature", "-i"])
                .arg(srpm),
        );
        (top, st)
    }

    fn spec_in(top: &Path) -> PathBuf {
        std::fs::read_dir(top.join("SPECS"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "spec"))
            .unwrap()
    }

    fn collect(&self, dir: &Path) {
        for e in walk(dir) {
            if e.to_string_lossy().ends_with(".rpm") {
                std::fs::copy(&e, self.resultdir().join(e.file_name().unwrap())).unwrap();
            }
        }
    }
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

impl Buildroot for HostBuildroot {
    fn package_list(&mut self) -> BoxFuture<'_, Result<Vec<Value>, TaskFailure>> {
        Box::pin(async move {
            let tag = self
                .spec
                .repo
                .get("tag_name")
                .and_then(Value::as_str)
                .unwrap();
            let id = self.spec.repo.get("id").and_then(Value::as_i64).unwrap();
            let p = self.topdir.join(format!(
                "repos/{tag}/{id}/{}/rpmlist.jsonl",
                self.spec.br_arch
            ));
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let mut out = Vec::new();
            for line in text.lines() {
                let j: serde_json::Value = serde_json::from_str(line).unwrap();
                let s = |k: &str| Value::from(j[k].as_str().unwrap_or_default());
                let i = |k: &str| Value::Int(j[k].as_i64().unwrap_or(0));
                out.push(Value::struct_from([
                    ("name", s("name")),
                    ("version", s("version")),
                    ("release", s("release")),
                    ("epoch", j["epoch"].as_i64().map_or(Value::Nil, Value::Int)),
                    ("arch", s("arch")),
                    ("payloadhash", s("payloadhash")),
                    ("size", i("size")),
                    ("buildtime", i("buildtime")),
                    ("id", i("id")),
                ]));
            }
            Ok(out)
        })
    }

    fn rebuild<'a>(
        &'a mut self,
        srpm: &'a Path,
        _target_arch: Option<&'a str>,
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>> {
        Box::pin(async move {
            let (top, st) = self.unpack(srpm);
            if st != StepStatus::Ok {
                return Ok(st);
            }
            let spec = Self::spec_in(&top);
            let st = self.run("build.log", self.rpmbuild(&top).arg("-ba").arg(&spec));
            self.collect(&top.join("RPMS"));
            self.collect(&top.join("SRPMS"));
            Ok(st)
        })
    }

    fn rebuild_srpm<'a>(
        &'a mut self,
        srpm: &'a Path,
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>> {
        Box::pin(async move {
            let (top, st) = self.unpack(srpm);
            if st != StepStatus::Ok {
                return Ok(st);
            }
            let spec = Self::spec_in(&top);
            let st = self.run("build.log", self.rpmbuild(&top).arg("-bs").arg(&spec));
            self.collect(&top.join("SRPMS"));
            Ok(st)
        })
    }

    fn source_cmd<'a>(
        &'a mut self,
        sourcedir: &'a Path,
        cmd: &'a [String],
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>> {
        Box::pin(async move {
            Ok(self.run(
                "build.log",
                Command::new(&cmd[0]).args(&cmd[1..]).current_dir(sourcedir),
            ))
        })
    }

    fn build_srpm<'a>(
        &'a mut self,
        spec: &'a Path,
        sources: &'a Path,
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>> {
        Box::pin(async move {
            let top = self.root.join("rpmbuild");
            let st = self.run(
                "build.log",
                self.rpmbuild(&top)
                    .arg("--define")
                    .arg(format!("_sourcedir {}", sources.display()))
                    .arg("--define")
                    .arg(format!("_srcrpmdir {}", self.resultdir().display()))
                    .arg("-bs")
                    .arg(spec),
            );
            Ok(st)
        })
    }

    fn scm_dir(&self) -> PathBuf {
        self.root.join("scmroot")
    }

    fn hand_over<'a>(&'a mut self, dir: &'a Path) -> BoxFuture<'a, Result<(), TaskFailure>> {
        Box::pin(async move {
            assert!(dir.starts_with(self.scm_dir()), "hand_over outside scm_dir");
            Ok(())
        })
    }

    fn resultdir(&self) -> PathBuf {
        self.root.join("result")
    }

    fn info(&self) -> BuildrootInfo {
        BuildrootInfo {
            image: Some("host-test-double".into()),
            policy_rule: Some("test".into()),
            container_id: Some(format!("host-{}", self.spec.brootid)),
        }
    }

    fn destroy(self: Box<Self>) -> BoxFuture<'static, ()> {
        let root = self.root.clone();
        Box::pin(async move {
            let _ = std::fs::remove_dir_all(root);
        })
    }
}

impl BuildrootFactory for HostFactory {
    fn create<'a>(
        &'a self,
        _ctx: &'a TaskContext,
        spec: BuildrootSpec,
    ) -> BoxFuture<'a, Result<Created, TaskFailure>> {
        Box::pin(async move {
            self.specs.lock().unwrap().push(spec.clone());
            let extra = spec.tag.get("extra").cloned().unwrap_or_default();
            let root = spec.workdir.join(format!("broot-{}", spec.brootid));
            for d in ["result", "scmroot", "rpmbuild"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            append(
                &spec.logdir.join("mock_config.log"),
                format!(
                    "# test buildroot {} for {} ({})\n",
                    spec.brootid, spec.br_arch, spec.install_group
                )
                .as_bytes(),
            );
            append(
                &spec.logdir.join("root.log"),
                format!("installing group {}\n", spec.install_group).as_bytes(),
            );
            if extra.get("test.init_fail").is_some_and(Value::truthy) {
                append(
                    &spec.logdir.join("root.log"),
                    b"Error: Unable to find a match: no-such-package\n",
                );
                return Ok(Created::InitFailed(StepStatus::Failed {
                    status: "mock exited with status 30".into(),
                    log: "root.log".into(),
                }));
            }
            let vendor = !extra.get("test.no_vendor").is_some_and(Value::truthy);
            Ok(Created::Ready(Box::new(HostBuildroot {
                spec,
                root,
                topdir: self.topdir.clone(),
                vendor,
            })))
        })
    }
}
