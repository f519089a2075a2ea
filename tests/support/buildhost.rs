//! The daemon binary (`koji-adjutant daemon --fg --force-lock`) against the fake Koji
//! ([`BuildEnv`]), with the rpmroot fixture image imported into its store as the
//! build tag's image, and test SRPMs made on the fly from spec text.
//!
//! Needs root (container buildroots with the root id mapping) and the rpmroot fixture.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;

use adjutant_runtime::store::{ImportOptions, Store};
use koji_adjutant::config::Config;
use koji_adjutant::hub::taskrelpath;
use koji_adjutant::xmlrpc::{encode_args, Struct, Value};

use super::buildenv::BuildEnv;
use super::fakehub::CLOSED;

/// A fixture file.
pub fn fixture(rel: &str) -> PathBuf {
    adjutant_testkit::fixtures_dir().join(rel)
}

/// A running daemon process; SIGTERMed and waited for when dropped.
pub struct DaemonProc {
    child: Option<Child>,
}

impl DaemonProc {
    /// Start `koji-adjutant daemon -c CONF --fg --force-lock --verbose`, output
    /// appended to `log`.
    pub fn spawn(conf: &Path, log: &Path) -> DaemonProc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_koji-adjutant"))
            .arg("daemon")
            .arg("-c")
            .arg(conf)
            .args(["--fg", "--force-lock", "--verbose"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        DaemonProc { child: Some(child) }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGKILL it and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM it; its exit status.
    pub fn term(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        c.wait().ok()
    }

    /// Its exit status if it has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        self.term();
    }
}

/// The fake Koji, a daemon configuration, its store with the image, and the daemon.
pub struct BuildHost {
    pub e: BuildEnv,
    pub cfg: Arc<Config>,
    pub conf: PathBuf,
    pub log: PathBuf,
    pub d: Option<DaemonProc>,
}

impl BuildHost {
    /// The fake Koji (koji-only-dep in the build tag, the tag's `adjutant.image`),
    /// a configuration with `extra` lines (`adjutant.key = v` for [adjutant]) and
    /// the rpmroot image imported. The daemon is not started.
    pub async fn new(extra: &str) -> BuildHost {
        BuildHost::with_image(extra, None).await
    }

    /// The same with the build tag's image `image` (pulled by the daemon) instead of
    /// the imported rpmroot (`None`).
    pub async fn with_image(extra: &str, image: Option<&str>) -> BuildHost {
        let e = BuildEnv::new().await;
        e.repos.set_extra(
            e.build_tag,
            "adjutant.image",
            Value::from(image.unwrap_or("localhost/buildroot:latest")),
        );
        e.repos.tag_rpms(
            e.build_tag,
            &[fixture("rpms/koji-only-dep-1.0-1.noarch.rpm")],
        );
        let conf_extra = format!(
            "topurl = {}\ntopdir = {}\nadjutant.status_bind = \n{extra}",
            e.topurl.url(),
            e.hub.topdir().display()
        );
        let cfg = super::config(&e.hub.url(), 1, e.dir.path(), &conf_extra);
        if image.is_none() {
            import_image(&cfg.store_root());
        }
        let conf = e.dir.path().join("kojid-1.conf");
        let log = e.dir.path().join("daemon.log");
        BuildHost {
            e,
            cfg,
            conf,
            log,
            d: None,
        }
    }

    /// Start the daemon binary.
    pub fn start(&mut self) {
        assert!(self.d.is_none(), "daemon already running");
        self.d = Some(DaemonProc::spawn(&self.conf, &self.log));
    }

    pub fn daemon(&mut self) -> &mut DaemonProc {
        self.d.as_mut().expect("daemon not running")
    }

    pub fn store(&self) -> PathBuf {
        self.cfg.store_root()
    }

    pub fn workdir(&self) -> PathBuf {
        self.cfg.kojid.workdir.clone()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait for the task to end; print the daemon's log when it did not close.
    pub async fn finish(&self, t: i64) -> i64 {
        use super::fakehub::{CANCELED, FAILED};
        // builds under load (a cold pull, two busy cores) can take minutes; the
        // bound only stops a hang
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        while !matches!(self.e.hub.task(t).state, CLOSED | FAILED | CANCELED) {
            if std::time::Instant::now() > deadline {
                panic!(
                    "task {t} did not finish\n--- daemon log ---\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let st = self.e.hub.task(t).state;
        if st != CLOSED {
            eprintln!(
                "task {t} ended {st}: {:?}\n--- daemon log ---\n{}",
                self.e.hub.result(t),
                self.log_text()
            );
        }
        st
    }

    /// A READY repo of the build tag, made by the daemon's newRepo task.
    pub async fn repo(&self) -> i64 {
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

    /// A `buildArch` task (noarch, keep_srpm) of an uploaded SRPM on `repo`.
    pub fn build_arch(&self, srpm_rel: &str, repo: i64) -> i64 {
        self.e.hub.make_task(
            "buildArch",
            vec![
                Value::from(srpm_rel),
                Value::from("dist-build"),
                Value::from("noarch"),
                Value::Bool(true),
                Value::struct_from([("repo_id", Value::Int(repo))]),
            ],
        )
    }

    /// A file the task uploaded (`work/tasks/N/ID/<name>`), or "".
    pub fn uploaded(&self, task: i64, name: &str) -> String {
        std::fs::read_to_string(self.e.top(&format!("work/{}/{name}", taskrelpath(task))))
            .unwrap_or_default()
    }
}

/// Import the rpmroot fixture as `localhost/buildroot:latest` into the store at `root`.
pub fn import_image(root: &Path) {
    let store = Store::open(root).unwrap();
    store
        .import(
            &format!("oci:{}:latest", adjutant_testkit::rpmroot_dir().display()),
            Some("localhost/buildroot:latest"),
            &ImportOptions::default(),
        )
        .unwrap();
}

/// A noarch SRPM `NAME-1.0-1.src.rpm` whose `%build` section is `build` (rpmbuild on
/// the host), written into `dir`.
pub fn make_srpm(dir: &Path, name: &str, build: &str) -> PathBuf {
    let spec = format!(
        "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: koji-adjutant fault test package\n\
         License: MIT\nBuildArch: noarch\n\n%description\nA koji-adjutant fault test package.\n\n\
         %prep\n\n%build\n{build}\necho built > out.txt\n\n%install\n\
         install -D -m 0644 out.txt %{{buildroot}}/usr/share/{name}/out.txt\n\n\
         %files\n/usr/share/{name}/out.txt\n\n%changelog\n\
         * Mon Jan 01 2024 koji-adjutant tests <tests@example.invalid> - 1.0-1\n- test\n"
    );
    let top = dir.join(format!("rpmbuild-{name}"));
    std::fs::create_dir_all(&top).unwrap();
    let specfile = top.join(format!("{name}.spec"));
    std::fs::write(&specfile, spec).unwrap();
    let out = Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("--define")
        .arg(format!("_sourcedir {}", top.display()))
        .arg("--define")
        .arg(format!("_srcrpmdir {}", dir.display()))
        .arg("-bs")
        .arg(&specfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "rpmbuild -bs: {out:?}");
    let srpm = dir.join(format!("{name}-1.0-1.src.rpm"));
    assert!(srpm.is_file(), "{out:?}");
    srpm
}
