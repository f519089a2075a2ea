//! The buildroot as the build tasks see it: kojid's `BuildRoot` split in two.
//!
//! - [`HubBuildroot`] (here): the buildroot's record on the hub, in kojid's order —
//!   `repoInfo` (READY, or EXPIRED with a note), `getBuildConfig(tag,
//!   event=create_event)` (its id must be the repo's tag), `host.newBuildRoot(repo,
//!   canonArch(arch), task_id)`, `setBuildRootList` while INIT, `setBuildRootState
//!   BUILDING` before the work, `updateBuildRootList` after it, and `EXPIRED` at the end
//!   or on any failure (also when the task is dropped: [`HubBuildroot::expire`] is
//!   idempotent and a guard expires it in the background);
//! - a [`Buildroot`] from a [`BuildrootFactory`] (the buildroot layer, `crate::buildroot`):
//!   the container from the image policy, the repo config, the install group, the
//!   rpmbuild steps, the installed package list in the hub's format. It writes its logs
//!   (`root.log`, `build.log`, `mock_config.log`, …) into [`BuildrootSpec::logdir`];
//!   [`LogDir`] uploads every `*.log` there while the task runs, as kojid's
//!   `BuildRootLogs` syncs `<resultdir>/*.log`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::daemon::{BoxFuture, TaskContext, TaskFailure};
use crate::hub::{HubSession, LogSync, UploadError};
use crate::xmlrpc::{FaultKind, Value};

use super::build::repo_state_name;
use super::common::canon_arch;

/// What a buildroot is made for (kojid's `BuildRoot(…)` arguments and the data it
/// reads from the hub).
#[derive(Debug, Clone)]
pub struct BuildrootSpec {
    /// The task.
    pub task_id: i64,
    /// `host.newBuildRoot`'s id.
    pub brootid: i64,
    /// `getBuildConfig(tag, event=repo.create_event)`: `name`, `arches`, `extra`
    /// (image policy keys, `rpm.macro.*`, `rpm.env.*`, `mock.*`).
    pub tag: Value,
    /// `repoInfo(repo_id)`: `id`, `tag_name`, `create_event`, …
    pub repo: Value,
    /// The canonical arch of the buildroot (`canonArch(arch)`); the repo URL is
    /// `<topurl>/repos/<tag_name>/<repo_id>/<br_arch>`.
    pub br_arch: String,
    /// The arch rpmbuild targets (`armhfp` → `armv7hl`).
    pub target_arch: String,
    /// The comps group installed first: `build` or `srpm-build`.
    pub install_group: String,
    /// Network for the build steps (kojid's `setup_dns`, SCM SRPM builds).
    pub network: bool,
    /// Host directories to bind into the buildroot: (host path, container path)
    /// (`scm_credentials_dir` → `/credentials`).
    pub bind_dirs: Vec<(PathBuf, String)>,
    /// Where the buildroot writes its logs (uploaded by the task as they grow).
    pub logdir: PathBuf,
    /// The task's scratch directory.
    pub workdir: PathBuf,
    /// The Koji method (`buildArch`, `rebuildSRPM`, `buildSRPMFromSCM`) for the image
    /// policy.
    pub method: String,
}

/// How a buildroot step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepStatus {
    /// Exit status 0.
    Ok,
    /// It failed: `status` as kojid's `parseStatus` words it (`exited with status 1`,
    /// `was killed by signal 9`, `timed out after 86400 s`, `was killed: out of
    /// memory`), and the log that tells why (`build.log`, `root.log`).
    Failed {
        /// What happened to the step.
        status: String,
        /// The log to read.
        log: String,
    },
}

/// What the status registry shows about a buildroot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildrootInfo {
    /// The image reference.
    pub image: Option<String>,
    /// The image policy rule that chose it.
    pub policy_rule: Option<String>,
    /// The container id.
    pub container_id: Option<String>,
}

/// A running buildroot (one container, steps run in it).
pub trait Buildroot: Send {
    /// Installed packages in the hub's rpmlist format (notes §4.1).
    fn package_list(&mut self) -> BoxFuture<'_, Result<Vec<Value>, TaskFailure>>;

    /// `mock --rebuild SRPM [--target ARCH]`: BuildRequires, then `rpmbuild --rebuild`;
    /// results (rpms and the rebuilt srpm) in [`Buildroot::resultdir`].
    fn rebuild<'a>(
        &'a mut self,
        srpm: &'a Path,
        target_arch: Option<&'a str>,
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>>;

    /// kojid's `rebuild_srpm`: unpack SRPM and `rpmbuild -bs --nodeps` its spec
    /// (target noarch); the srpm in [`Buildroot::resultdir`].
    fn rebuild_srpm<'a>(
        &'a mut self,
        srpm: &'a Path,
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>>;

    /// kojid's `build_srpm`, first half: run `cmd` (e.g. `make sources`) as the build
    /// user in `sourcedir` (a host path under [`Buildroot::scm_dir`]), network allowed
    /// as the buildroot was made.
    fn source_cmd<'a>(
        &'a mut self,
        sourcedir: &'a Path,
        cmd: &'a [String],
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>>;

    /// kojid's `build_srpm`, second half: `rpmbuild -bs` of `spec` (target noarch) with
    /// its sources in `sources` (host paths under [`Buildroot::scm_dir`]); the srpm in
    /// [`Buildroot::resultdir`].
    fn build_srpm<'a>(
        &'a mut self,
        spec: &'a Path,
        sources: &'a Path,
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>>;

    /// A host directory visible inside the buildroot (kojid: `<chroot_tmpdir>/scmroot`),
    /// for SCM checkouts made on the host.
    fn scm_dir(&self) -> PathBuf;

    /// Give everything under `dir` (in [`Buildroot::scm_dir`]) to the build user, as
    /// kojid's `chownTree(scmdir, mockuser, mock)`.
    fn hand_over<'a>(&'a mut self, dir: &'a Path) -> BoxFuture<'a, Result<(), TaskFailure>>;

    /// Where results land (host path).
    fn resultdir(&self) -> PathBuf;

    /// For the status registry.
    fn info(&self) -> BuildrootInfo;

    /// Stop and remove the container; nothing is left behind.
    fn destroy(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Makes buildroots (the buildroot layer).
pub trait BuildrootFactory: Send + Sync {
    /// Create the container and install the group (kojid's `mock --init`). A failure
    /// is reported as a [`StepStatus::Failed`] of the init (kojid: `could not init mock
    /// buildroot`), or as an error (image policy, image pull, ...).
    fn create<'a>(
        &'a self,
        ctx: &'a TaskContext,
        spec: BuildrootSpec,
    ) -> BoxFuture<'a, Result<Created, TaskFailure>>;
}

/// The result of [`BuildrootFactory::create`].
pub enum Created {
    /// Ready.
    Ready(Box<dyn Buildroot>),
    /// The install failed (`mock --init` failed).
    InitFailed(StepStatus),
}

/// The buildroot's hub record.
pub struct HubBuildroot {
    session: HubSession,
    /// Buildroot id.
    pub id: i64,
    task_id: i64,
    /// `repoInfo`.
    pub repo: Value,
    /// `getBuildConfig(tag, event=create_event)`.
    pub config: Value,
    /// Canonical arch.
    pub br_arch: String,
    /// rpmbuild's target arch.
    pub target_arch: String,
    expired: bool,
}

impl HubBuildroot {
    /// kojid's `BuildRoot._new` up to `newBuildRoot`.
    pub async fn new(
        ctx: &TaskContext,
        tag: &Value,
        arch: &str,
        repo_id: i64,
    ) -> Result<HubBuildroot, TaskFailure> {
        let s = &ctx.session;
        let repo = s.repo_info(repo_id, true).await?.ok_or_else(|| {
            TaskFailure::of(FaultKind::Buildroot, format!("No such repo: {repo_id}"))
        })?;
        let event = repo.get("create_event").and_then(Value::as_i64);
        let config = s
            .get_build_config(super::common::tag_ref(tag), event)
            .await?
            .ok_or_else(|| {
                TaskFailure::of(
                    FaultKind::Buildroot,
                    format!("Could not get config info for tag: {tag}"),
                )
            })?;
        if config.get("id") != repo.get("tag_id") {
            return Err(TaskFailure::of(
                FaultKind::Buildroot,
                format!(
                    "tag/repo mismatch: {} vs {}",
                    config
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    repo.get("tag_name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                ),
            ));
        }
        let state = repo_state_name(repo.get("state").and_then(Value::as_i64).unwrap_or(-1));
        match state {
            "READY" => {}
            "EXPIRED" => info!(repo = repo_id, "requested repo is no longer current"),
            other => {
                return Err(TaskFailure::of(
                    FaultKind::Buildroot,
                    format!("Requested repo ({repo_id}) is {other}"),
                ))
            }
        }
        let br_arch = canon_arch(arch);
        let target_arch = if arch == "armhfp" {
            "armv7hl".to_owned()
        } else {
            arch.to_owned()
        };
        let id = s.host_new_buildroot(repo_id, &br_arch, ctx.task_id).await?;
        ctx.registry
            .update_task(ctx.task_id, |t| t.buildroot_id = Some(id));
        Ok(HubBuildroot {
            session: s.clone(),
            id,
            task_id: ctx.task_id,
            repo,
            config,
            br_arch,
            target_arch,
            expired: false,
        })
    }

    /// `host.setBuildRootList` (INIT).
    pub async fn set_list(&self, list: Vec<Value>) -> Result<(), TaskFailure> {
        Ok(self
            .session
            .host_set_buildroot_list(self.id, list, self.task_id)
            .await?)
    }

    /// `host.updateBuildRootList` (BUILDING).
    pub async fn update_list(&self, list: Vec<Value>) -> Result<(), TaskFailure> {
        Ok(self
            .session
            .host_update_buildroot_list(self.id, list, self.task_id)
            .await?)
    }

    /// `setBuildRootState(id, 'BUILDING')`.
    pub async fn building(&self) -> Result<(), TaskFailure> {
        Ok(self
            .session
            .host_set_buildroot_state_named(self.id, "BUILDING", self.task_id)
            .await?)
    }

    /// `setBuildRootState(id, 'EXPIRED')` (once).
    pub async fn expire(&mut self) -> Result<(), TaskFailure> {
        if !self.expired {
            self.session
                .host_set_buildroot_state_named(self.id, "EXPIRED", self.task_id)
                .await?;
            self.expired = true;
        }
        Ok(())
    }
}

impl Drop for HubBuildroot {
    /// A buildroot whose task ended without expiring it (an error path, or the task
    /// future dropped on cancellation) is expired in the background, tracked by
    /// [`pending_expiries`] so that a daemon shutting down waits for it; the daemon's
    /// `update_buildroots` catches any that this misses.
    fn drop(&mut self) {
        if self.expired {
            return;
        }
        let (s, id, task) = (self.session.clone(), self.id, self.task_id);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            pending_expiries().spawn_on(
                async move {
                    if let Err(e) = s.host_set_buildroot_state_named(id, "EXPIRED", task).await {
                        warn!(buildroot = id, error = %e, "could not expire the buildroot");
                    }
                },
                &rt,
            );
        }
    }
}

/// Buildroot expiries running in the background (see `Drop for HubBuildroot`): the
/// daemon's shutdown waits for them (bounded) after stopping its tasks, so a SIGTERM
/// leaves no buildroot of this host open on the hub.
pub fn pending_expiries() -> &'static tokio_util::task::TaskTracker {
    static TRACKER: std::sync::OnceLock<tokio_util::task::TaskTracker> = std::sync::OnceLock::new();
    TRACKER.get_or_init(tokio_util::task::TaskTracker::new)
}

/// Uploads every `*.log` of a directory while it grows (kojid's `BuildRootLogs`):
/// checked every second, finished with a last sync.
pub struct LogDir {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<Vec<String>, UploadError>>,
}

impl LogDir {
    /// Start syncing `dir` into the task's upload directory.
    pub fn start(ctx: &TaskContext, dir: PathBuf) -> LogDir {
        let stop = CancellationToken::new();
        let stop2 = stop.clone();
        let uploader = ctx.uploader.clone();
        let registry = ctx.registry.clone();
        let task_id = ctx.task_id;
        let handle = tokio::spawn(async move {
            let mut syncs: BTreeMap<String, LogSync> = BTreeMap::new();
            loop {
                let last = stop2.is_cancelled();
                if let Ok(rd) = std::fs::read_dir(&dir) {
                    let mut names: Vec<(String, PathBuf)> = rd
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                        .filter_map(|e| {
                            let n = e.file_name().to_string_lossy().into_owned();
                            n.ends_with(".log").then(|| (n, e.path()))
                        })
                        .collect();
                    names.sort();
                    for (n, p) in names {
                        if !syncs.contains_key(&n) {
                            registry.update_task(task_id, |t| {
                                t.logs.insert(n.clone(), p.display().to_string());
                            });
                            syncs.insert(n.clone(), uploader.log_sync(p, n.as_str()));
                        }
                    }
                }
                for (n, s) in syncs.iter_mut() {
                    if let Err(e) = s.sync().await {
                        if last {
                            return Err(e);
                        }
                        warn!(log = n, error = %e, "log upload failed");
                    }
                }
                if last {
                    return Ok(syncs.into_keys().collect());
                }
                tokio::select! {
                    _ = stop2.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        LogDir { stop, handle }
    }

    /// Final sync; the names of the logs uploaded.
    pub async fn finish(mut self) -> Result<Vec<String>, TaskFailure> {
        self.stop.cancel();
        match (&mut self.handle).await {
            Ok(Ok(names)) => Ok(names),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(TaskFailure::internal(format!("log upload task: {e}"))),
        }
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The last `lines` lines of a log (at most 8 KiB), for fault messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(data) = std::fs::read(path) else {
        return String::new();
    };
    let start = data.len().saturating_sub(8192);
    let text = String::from_utf8_lossy(&data[start..]);
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

/// kojid's `_mockResult` text plus, for a failed build, the tail of the log it names.
pub fn failure_message(status: &str, log: &str, logdir: &Path) -> String {
    let mut msg = format!("{status}; see {log} for more information");
    let tail = log_tail(&logdir.join(log), 20);
    if !tail.is_empty() {
        msg.push_str(&format!("\nLast lines of {log}:\n{tail}"));
    }
    msg
}

/// The status registry's view of a buildroot.
pub fn record_info(ctx: &TaskContext, info: &BuildrootInfo) {
    let info = info.clone();
    ctx.registry.update_task(ctx.task_id, |t| {
        if info.image.is_some() {
            t.image = info.image.clone();
        }
        if info.policy_rule.is_some() {
            t.policy_rule = info.policy_rule.clone();
        }
        if info.container_id.is_some() {
            t.container_id = info.container_id.clone();
        }
    });
}

/// A factory shared by the handlers.
pub type SharedFactory = Arc<dyn BuildrootFactory>;

/// The start of kojid's `rebuildSRPM` and `buildSRPMFromSCM`: `repoInfo`, `getTag(tag,
/// strict, event)`, a noarch buildroot arch (`find_arch`), the hub record, the
/// buildroot with the `srpm-build` group, `setBuildRootList`. On success the caller
/// owns the hub record, the buildroot and the log sync.
pub async fn srpm_buildroot(
    factory: &SharedFactory,
    ctx: &TaskContext,
    build_tag: &Value,
    repo_id: i64,
    network: bool,
    bind_dirs: Vec<(PathBuf, String)>,
) -> Result<(HubBuildroot, Box<dyn Buildroot>, LogDir, PathBuf), TaskFailure> {
    let s = &ctx.session;
    let repo = s
        .repo_info(repo_id, true)
        .await?
        .ok_or_else(|| TaskFailure::generic(format!("No such repo: {repo_id}")))?;
    let event = repo.get("create_event").and_then(Value::as_i64);
    let mut k = crate::xmlrpc::Struct::new();
    k.insert("strict".into(), Value::Bool(true));
    if let Some(e) = event {
        k.insert("event".into(), Value::Int(e));
    }
    let tag = s
        .get_tag(build_tag.clone(), k)
        .await?
        .ok_or_else(|| TaskFailure::generic(format!("No such tagInfo: {build_tag}")))?;
    let tag_id = tag.get("id").cloned().unwrap_or(Value::Nil);
    ctx.registry.update_task(ctx.task_id, |t| {
        t.tag = tag.get("name").and_then(Value::as_str).map(str::to_owned)
    });
    let host = s.host_get_host().await?;
    let cfg = s
        .get_build_config(tag_id.clone(), event)
        .await?
        .ok_or_else(|| TaskFailure::generic(format!("No such tagInfo: {tag_id}")))?;
    let br_arch = super::common::find_arch("noarch", &host, &cfg, None)?;
    let mut hb = HubBuildroot::new(ctx, &tag_id, &br_arch, repo_id).await?;
    let logdir = ctx.work_path("logs");
    if let Err(e) = std::fs::create_dir_all(&logdir) {
        let _ = hb.expire().await;
        return Err(TaskFailure::generic(format!(
            "create {}: {e}",
            logdir.display()
        )));
    }
    let logs = LogDir::start(ctx, logdir.clone());
    let spec = BuildrootSpec {
        task_id: ctx.task_id,
        brootid: hb.id,
        tag: hb.config.clone(),
        repo: hb.repo.clone(),
        br_arch: hb.br_arch.clone(),
        target_arch: hb.target_arch.clone(),
        install_group: "srpm-build".into(),
        network,
        bind_dirs,
        logdir: logdir.clone(),
        workdir: ctx.workdir.clone(),
        method: ctx.method.clone(),
    };
    let init = ctx.step("buildroot");
    let created = match factory.create(ctx, spec).await {
        Ok(c) => c,
        Err(e) => {
            init.end("failed");
            let _ = logs.finish().await;
            let _ = hb.expire().await;
            return Err(e);
        }
    };
    let mut broot = match created {
        Created::Ready(b) => b,
        Created::InitFailed(st) => {
            init.end("failed");
            let _ = logs.finish().await;
            let _ = hb.expire().await;
            let msg = match st {
                StepStatus::Failed { status, log } => failure_message(&status, &log, &logdir),
                StepStatus::Ok => "mock exited with status 0".into(),
            };
            return Err(TaskFailure::of(
                FaultKind::Buildroot,
                format!("could not init mock buildroot, {msg}"),
            ));
        }
    };
    init.end("ok");
    record_info(ctx, &broot.info());
    let listed = match broot.package_list().await {
        Ok(l) => hb.set_list(l).await,
        Err(e) => Err(e),
    };
    if let Err(e) = listed {
        broot.destroy().await;
        let _ = logs.finish().await;
        let _ = hb.expire().await;
        return Err(e);
    }
    Ok((hb, broot, logs, logdir))
}

/// The end of the SRPM tasks: exactly one `N-V-R.src.rpm` in the result directory,
/// uploaded; its name. `where_` names the directory in kojid's messages.
pub async fn take_srpm(
    ctx: &TaskContext,
    resultdir: &Path,
    where_: &Path,
) -> Result<String, TaskFailure> {
    let mut srpms: Vec<PathBuf> = std::fs::read_dir(resultdir)
        .map_err(|e| TaskFailure::generic(format!("read {}: {e}", resultdir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".src.rpm"))
        .collect();
    srpms.sort();
    let srpm = match srpms.len() {
        0 => {
            return Err(TaskFailure::build(format!(
                "No srpms found in {}",
                where_.display()
            )))
        }
        1 => srpms.remove(0),
        _ => {
            return Err(TaskFailure::build(format!(
                "Multiple srpms found in {}: {}",
                where_.display(),
                srpms
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let h = super::common::read_headers(&srpm).await?;
    let want = format!("{}.src.rpm", h.nvr());
    let base = srpm
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if want != base {
        return Err(TaskFailure::build(format!(
            "srpm name mismatch: {want} != {base}"
        )));
    }
    ctx.uploader.upload_file(&srpm, None).await?;
    Ok(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_message() {
        let d = tempfile::tempdir().unwrap();
        let lines: Vec<String> = (1..=50).map(|i| format!("line {i}")).collect();
        std::fs::write(d.path().join("build.log"), lines.join("\n")).unwrap();
        let m = failure_message("mock exited with status 1", "build.log", d.path());
        assert!(m.starts_with(
            "mock exited with status 1; see build.log for more information\nLast lines of build.log:\nline 31\n"
        ));
        assert!(m.ends_with("line 50"));
        let m = failure_message("mock exited with status 1", "root.log", d.path());
        assert_eq!(
            m,
            "mock exited with status 1; see root.log for more information"
        );
    }
}
