//! The task manager (kojid `koji.daemon.TaskManager`): which tasks run here, their
//! weights and the host's load, readiness, taking and refusing tasks, cancellation,
//! stale tasks and buildroots, and shutdown.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::handlers::{
    DaemonControl, HandlerRegistry, HostCheckContext, TaskContext, TaskFailure, TaskHandler,
    TaskParams,
};
use crate::config::Config;
use crate::hub::calls::BR_EXPIRED;
use crate::hub::{
    taskrelpath, AssignedTask, HostInfo, HubError, HubSession, TaskState, UploadOptions, Uploader,
};
use crate::registry::{Registry, TaskPhase};
use crate::xmlrpc::{decode_call, encode_fault_response, encode_response, Fault, Struct, Value};

/// How long a canceled task gets to stop by itself before it is aborted.
pub const CANCEL_GRACE: Duration = Duration::from_secs(3);
/// How long a shutdown waits for the stopped tasks' buildroots to be expired on the hub.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(15);

/// Why the loop must stop.
#[derive(Debug)]
pub enum LoopExit {
    /// Stop (SIGTERM, foreground `shutdown`).
    Exit,
    /// Restart (kojid `ServerRestart`): re-execute once idle.
    Restart,
}

/// An error of one loop iteration.
#[derive(Debug)]
pub enum LoopError {
    /// The loop must stop.
    Stop(LoopExit),
    /// A hub call failed.
    Hub(HubError),
}

impl From<HubError> for LoopError {
    fn from(e: HubError) -> LoopError {
        LoopError::Hub(e)
    }
}

struct Running {
    method: String,
    handle: JoinHandle<()>,
    cancel: CancellationToken,
    subsession_id: Option<i64>,
    wake: Arc<Notify>,
}

/// kojid's TaskManager.
pub struct TaskManager {
    session: HubSession,
    config: Arc<Config>,
    handlers: Arc<HandlerRegistry>,
    registry: Registry,
    control: Arc<DaemonControl>,
    host_id: i64,
    running: HashMap<i64, Running>,
    /// OPEN tasks the hub lists for us (kojid `self.tasks`), by id → waiting.
    hub_tasks: HashMap<i64, bool>,
    task_load: f64,
    hostdata: Option<HostInfo>,
    upload: UploadOptions,
    /// Set when a task finishes, so the loop can poll at once.
    pub finished: Arc<Notify>,
    /// Tasks taken since start.
    pub taken_count: u64,
    shutdown: CancellationToken,
}

impl TaskManager {
    /// A manager for host `host_id` logged in as `session`.
    pub fn new(
        session: HubSession,
        config: Arc<Config>,
        handlers: Arc<HandlerRegistry>,
        registry: Registry,
        control: Arc<DaemonControl>,
        shutdown: CancellationToken,
    ) -> TaskManager {
        let upload = UploadOptions {
            blocksize: usize::try_from(config.adjutant.upload_blocksize).unwrap_or(1 << 20),
            ..UploadOptions::default()
        };
        TaskManager {
            host_id: control.host_id,
            session,
            config,
            handlers,
            registry,
            control,
            running: HashMap::new(),
            hub_tasks: HashMap::new(),
            task_load: 0.0,
            hostdata: None,
            upload,
            finished: Arc::new(Notify::new()),
            taken_count: 0,
            shutdown,
        }
    }

    /// Tasks running here.
    pub fn running_ids(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.running.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Current load.
    pub fn task_load(&self) -> f64 {
        self.task_load
    }

    /// Expire buildroots of tasks that no longer run here (kojid
    /// `updateBuildroots`, steps 1-2).
    pub async fn update_buildroots(&mut self) -> Result<(), HubError> {
        let brs = self
            .session
            .list_buildroots(self.host_id, &[0, 1, 2])
            .await?;
        for br in brs {
            let Some(id) = br.get("id").and_then(Value::as_i64) else {
                continue;
            };
            let task = br.get("task_id").and_then(Value::as_i64);
            let live = task
                .is_some_and(|t| self.running.contains_key(&t) || self.hub_tasks.contains_key(&t));
            if !live {
                match task {
                    None => warn!(buildroot = id, "expiring taskless buildroot"),
                    Some(t) => info!(
                        buildroot = id,
                        task = t,
                        "expiring buildroot of a task not running here"
                    ),
                }
                self.session
                    .host_set_buildroot_state(id, BR_EXPIRED)
                    .await?;
            }
        }
        Ok(())
    }

    /// Reconcile with the hub's list of our OPEN tasks (kojid `updateTasks`): free
    /// stale ones, wake waiting ones, compute the load, reap finished ones, kill
    /// canceled or reassigned ones.
    pub async fn update_tasks(&mut self) -> Result<(), HubError> {
        let open = self.session.host_get_host_tasks().await?;
        let mut tasks = HashMap::new();
        let mut stale = Vec::new();
        let mut load = 0.0;
        for t in &open {
            let Some(r) = self.running.get(&t.id) else {
                stale.push(t.id);
                continue;
            };
            tasks.insert(t.id, t.waiting);
            if t.alert {
                debug!(task = t.id, "waking task");
                r.wake.notify_one();
            }
            if !t.waiting {
                load += t.weight;
            }
            self.registry.update_task(t.id, |rec| {
                rec.waiting = t.waiting;
                rec.weight = t.weight;
            });
        }
        self.task_load = load;
        self.hub_tasks = tasks;
        if !stale.is_empty() {
            info!(?stale, "freeing stale tasks");
            self.session.host_free_tasks(&stale).await?;
            self.remove_stale_workdirs(&stale).await;
        }
        // reap finished tasks
        let done: Vec<i64> = self
            .running
            .iter()
            .filter(|(_, r)| r.handle.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(r) = self.running.remove(&id) {
                self.hub_tasks.remove(&id);
                self.logout_child(id, r.subsession_id).await;
            }
        }
        // tasks that dropped out of the hub's list: canceled, reassigned, or lingering
        let gone: Vec<i64> = self
            .running
            .keys()
            .filter(|id| !self.hub_tasks.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            let info = self.session.get_task_info(id, false).await?;
            let state = info
                .as_ref()
                .and_then(|i| i.get("state"))
                .and_then(Value::as_i64)
                .and_then(TaskState::from_i64);
            let host = info
                .as_ref()
                .and_then(|i| i.get("host_id"))
                .and_then(Value::as_i64);
            if info.is_none() || state == Some(TaskState::Canceled) || host != Some(self.host_id) {
                let why = if state == Some(TaskState::Canceled) {
                    "canceled"
                } else {
                    "reassigned"
                };
                info!(task = id, why, "killing task");
                self.kill_task(id, TaskPhase::Canceled, why).await;
            } else {
                debug!(task = id, "lingering task");
            }
        }
        let running = self.running.len();
        let load = self.task_load;
        self.registry.update_host(|h| {
            h.running = running;
            h.task_load = load;
        });
        Ok(())
    }

    /// The workdirs of stale tasks (left by a daemon that was killed while they ran:
    /// sources, results, the buildroot's build directory): nothing here runs them, and
    /// a freed task may never come back to this host.
    async fn remove_stale_workdirs(&self, stale: &[i64]) {
        let dirs: Vec<PathBuf> = stale
            .iter()
            .map(|id| self.config.kojid.workdir.join(taskrelpath(*id)))
            .filter(|d| d.exists())
            .collect();
        if dirs.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for d in dirs {
                match std::fs::remove_dir_all(&d) {
                    Ok(()) => info!(path = %d.display(), "removed the workdir of a stale task"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        warn!(path = %d.display(), error = %e, "cannot remove the workdir of a stale task")
                    }
                }
            }
        })
        .await;
    }

    async fn logout_child(&self, task_id: i64, sub: Option<i64>) {
        if let Some(sid) = sub {
            debug!(task = task_id, session = sid, "expiring subsession");
            if let Err(e) = self.session.logout_child(sid).await {
                // the task logs its own subsession out; this is the safety net
                debug!(task = task_id, error = %e, "logoutChild");
            }
        }
    }

    /// Stop a task: cancel its token, give it [`CANCEL_GRACE`] to stop (handlers
    /// kill their processes and containers), then abort it; close its subsession.
    pub async fn kill_task(&mut self, id: i64, phase: TaskPhase, why: &str) {
        if let Some(sub) = self.stop_task(id, phase, why).await {
            self.logout_child(id, sub).await;
        }
    }

    /// [`Self::kill_task`] without closing the subsession: returns it (`Some(None)`
    /// for a task without one; `None` when the task was not running).
    async fn stop_task(&mut self, id: i64, phase: TaskPhase, why: &str) -> Option<Option<i64>> {
        let mut r = self.running.remove(&id)?;
        // recorded first, so the status says why rather than the handler's "canceled"
        self.registry.task_finished(id, phase, Some(why.to_owned()));
        r.cancel.cancel();
        if tokio::time::timeout(CANCEL_GRACE, &mut r.handle)
            .await
            .is_err()
        {
            warn!(
                task = id,
                method = r.method,
                "task did not stop in time; aborting it"
            );
            r.handle.abort();
            let _ = r.handle.await;
        }
        self.hub_tasks.remove(&id);
        Some(r.subsession_id)
    }

    /// kojid checks `minspace` on `mockdir`, where mock keeps its buildroots. Ours
    /// are split: image layers and container upper directories in the store root,
    /// the build directory, sources and results in the workdir — so both are
    /// checked (once when they share a filesystem).
    fn check_space(&self) -> Result<(), String> {
        let need = u64::try_from(self.config.kojid.minspace).unwrap_or(0);
        if need == 0 {
            return Ok(());
        }
        let mut seen = Vec::new();
        for path in [self.config.store_root(), self.config.kojid.workdir.clone()] {
            let st = nix::sys::statvfs::statvfs(&path)
                .map_err(|e| format!("cannot check free space of {}: {e}", path.display()))?;
            let dev = std::os::unix::fs::MetadataExt::dev(
                &std::fs::metadata(&path)
                    .map_err(|e| format!("cannot check free space of {}: {e}", path.display()))?,
            );
            if seen.contains(&dev) {
                continue;
            }
            seen.push(dev);
            let avail_mb = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64)
                / 1024
                / 1024;
            if avail_mb < need {
                return Err(format!(
                    "Insufficient disk space at {}: {avail_mb} MB, {need} MB required",
                    path.display()
                ));
            }
        }
        Ok(())
    }

    /// kojid `readyForTask`: Ok(None) when ready, Ok(Some(reason)) when not.
    pub async fn ready_for_task(&mut self) -> Result<Option<String>, LoopError> {
        let pending = self.control.is_restart_pending();
        self.registry.update_host(|h| h.restart_pending = pending);
        if pending {
            if !self.running.is_empty() {
                return Ok(Some("Pending restart".into()));
            }
            return Err(LoopError::Stop(LoopExit::Restart));
        }
        let host = self.session.host_get_host().await?;
        self.registry.update_host(|h| {
            h.capacity = host.capacity;
            h.host_name = Some(host.name.clone());
        });
        let enabled = host.enabled;
        let capacity = host.capacity;
        self.hostdata = Some(host);
        if !enabled {
            return Ok(Some("Host is disabled".into()));
        }
        if self.task_load > capacity {
            return Ok(Some(format!(
                "Over capacity: task load ({:.2}) exceeds capacity ({capacity:.2})",
                self.task_load
            )));
        }
        if self.running.len() as i64 >= self.config.kojid.maxjobs {
            return Ok(Some("Full queue".into()));
        }
        if let Err(msg) = self.check_space() {
            return Ok(Some(msg));
        }
        let per_cpu = self.config.adjutant.max_load_per_cpu;
        if per_cpu <= 0.0 {
            return Ok(None);
        }
        if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
            let one: f64 = load
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0.0);
            let cpus = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1) as f64;
            if one > per_cpu * cpus {
                return Ok(Some(format!(
                    "Load average {one:.2} > {:.2}",
                    per_cpu * cpus
                )));
            }
        }
        Ok(None)
    }

    fn host_data(&self) -> Struct {
        let mut d = Struct::new();
        d.insert(
            "methods".into(),
            Value::Array(
                self.handlers
                    .methods()
                    .into_iter()
                    .map(Value::from)
                    .collect(),
            ),
        );
        d.insert("maxjobs".into(), Value::Int(self.config.kojid.maxjobs));
        d
    }

    /// kojid `getNextTask`: check in, and take the first assigned task we can.
    /// Ok(true) when a task was taken.
    pub async fn get_next_task(&mut self) -> Result<bool, LoopError> {
        let not_ready = self.ready_for_task().await?;
        let ready = not_ready.is_none();
        self.session
            .host_update_host(self.task_load, ready, Some(self.host_data()))
            .await?;
        self.registry.update_host(|h| {
            h.ready = ready;
            h.not_ready_reason.clone_from(&not_ready);
            h.last_poll = Some(crate::registry::now());
        });
        if let Some(reason) = not_ready {
            info!(reason, "not ready for a task");
            return Ok(false);
        }
        let tasks = self.session.host_get_tasks().await?;
        for task in tasks {
            if self.running.contains_key(&task.id) {
                info!(task = task.id, "task reassigned while running here");
                continue;
            }
            if task.state != Some(TaskState::Assigned) {
                error!(task = task.id, state = ?task.state, "received task is not assigned");
                continue;
            }
            if task.host_id != Some(self.host_id) {
                error!(task = task.id, host = ?task.host_id, "received task is not ours");
                continue;
            }
            if self.take_task(&task).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// kojid `takeTask`: refuse what we cannot handle, check the host, open, weigh,
    /// and run (in the loop for foreground handlers, else concurrently on a
    /// subsession).
    pub async fn take_task(&mut self, task: &AssignedTask) -> Result<bool, LoopError> {
        let id = task.id;
        info!(task = id, method = task.method, "attempting to take task");
        let Some(handler) = self.handlers.get(&task.method) else {
            warn!(
                task = id,
                method = task.method,
                "refusing task: no handler for method"
            );
            self.session
                .host_refuse_task(id, false, "no handler for method")
                .await?;
            return Ok(false);
        };
        let Some(info) = self.session.get_task_info(id, true).await? else {
            warn!(task = id, "task vanished");
            return Ok(false);
        };
        let request = match info.get("request") {
            Some(Value::Array(a)) => a.clone(),
            _ => {
                warn!(task = id, "task has no request");
                return Ok(false);
            }
        };
        let params = TaskParams::from_request(request);
        let hctx = HostCheckContext {
            session: self.session.clone(),
            host: self.hostdata.clone(),
            config: self.config.clone(),
            task: info.clone(),
        };
        let valid = match handler.host_check(&hctx, &params).await {
            Ok(v) => v,
            Err(e) => {
                warn!(task = id, error = e, "error during host check");
                false
            }
        };
        if !valid {
            info!(
                task = id,
                method = task.method,
                "skipping task due to host check"
            );
            if task.state == Some(TaskState::Assigned) {
                self.session
                    .host_refuse_task(id, false, "failed host check")
                    .await?;
            }
            return Ok(false);
        }
        let data = match self.session.host_open_task(id).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                warn!(task = id, "could not open task");
                return Ok(false);
            }
            // the task was opened but the answer was lost: it is ours if the hub says so
            Err(HubError::TookEffect { .. }) => {
                let now = self.session.get_task_info(id, false).await?;
                let ours = now.as_ref().is_some_and(|i| {
                    i.get("state").and_then(Value::as_i64) == Some(TaskState::Open.as_i64())
                        && i.get("host_id").and_then(Value::as_i64) == Some(self.host_id)
                });
                match now {
                    Some(i) if ours => i,
                    _ => return Ok(false),
                }
            }
            Err(e) => return Err(e.into()),
        };
        // The request as opened (authoritative; getTaskInfo's is the same call).
        let params = match data.get("request").and_then(Value::as_str) {
            Some(xml) => match decode_call(xml.as_bytes()) {
                Ok(call) => TaskParams::from_request(call.params),
                Err(e) => {
                    warn!(task = id, error = %e, "unreadable request from openTask; using getTaskInfo's");
                    params
                }
            },
            None => params,
        };
        self.hub_tasks.insert(id, false);
        let weight = handler.weight();
        if let Err(e) = self.session.host_set_task_weight(id, weight).await {
            if e.is_fault(crate::xmlrpc::FaultKind::ActionNotAllowed) {
                let info2 = self.session.get_task_info(id, false).await?;
                let host = info2
                    .as_ref()
                    .and_then(|i| i.get("host_id"))
                    .and_then(Value::as_i64);
                let state = info2
                    .as_ref()
                    .and_then(|i| i.get("state"))
                    .and_then(Value::as_i64);
                if host != Some(self.host_id) || state != Some(TaskState::Open.as_i64()) {
                    warn!(
                        task = id,
                        "task was reassigned or changed state before it started"
                    );
                    self.hub_tasks.remove(&id);
                    return Ok(false);
                }
            }
            return Err(e.into());
        }
        self.taken_count += 1;
        let arch = data
            .get("arch")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.registry.task_started(id, &task.method, &arch, weight);
        let workdir = self.config.kojid.workdir.join(taskrelpath(id));
        let cancel = self.shutdown.child_token();
        let wake = Arc::new(Notify::new());
        if handler.foreground() {
            info!(task = id, "running task in the foreground");
            let ctx = self.context(
                id,
                &task.method,
                data,
                self.session.clone(),
                workdir,
                cancel,
                wake,
            );
            let session = self.session.clone();
            let outcome = run_task(handler, ctx, params, session, self.registry.clone()).await;
            match outcome {
                // as kojid: the task stays in our list, so the shutdown frees it
                Outcome::Exit => return Err(LoopError::Stop(LoopExit::Exit)),
                Outcome::Done => {
                    self.hub_tasks.remove(&id);
                }
            }
        } else {
            let sub = self.session.subsession().await?;
            let sub_id = sub.session_id();
            let ctx = self.context(
                id,
                &task.method,
                data,
                sub.clone(),
                workdir,
                cancel.clone(),
                wake.clone(),
            );
            let registry = self.registry.clone();
            let finished = self.finished.clone();
            let span = info_span!("task", id, method = %task.method);
            let handle = tokio::spawn(
                async move {
                    let _ = run_task(handler, ctx, params, sub.clone(), registry).await;
                    if let Err(e) = sub.logout().await {
                        debug!(error = %e, "subsession logout");
                    }
                    finished.notify_one();
                }
                .instrument(span),
            );
            self.running.insert(
                id,
                Running {
                    method: task.method.clone(),
                    handle,
                    cancel,
                    subsession_id: sub_id,
                    wake,
                },
            );
            let n = self.running.len();
            self.registry.update_host(|h| h.running = n);
        }
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn context(
        &self,
        id: i64,
        method: &str,
        info: Value,
        session: HubSession,
        workdir: PathBuf,
        cancel: CancellationToken,
        wake: Arc<Notify>,
    ) -> TaskContext {
        TaskContext {
            task_id: id,
            method: method.to_owned(),
            info,
            uploader: Uploader::new(session.clone(), taskrelpath(id), self.upload),
            session,
            config: self.config.clone(),
            cancel,
            workdir,
            registry: self.registry.clone(),
            host_id: self.host_id,
            control: self.control.clone(),
            wake,
        }
    }

    /// kojid `shutdown`: kill our tasks, free them, report not ready.
    pub async fn shutdown(&mut self) {
        let ids = self.running_ids();
        let mut subsessions = Vec::new();
        for id in &ids {
            if let Some(sub) = self
                .stop_task(*id, TaskPhase::Freed, "daemon shutting down")
                .await
            {
                subsessions.push((*id, sub));
            }
        }
        // The stopped tasks' buildroots are being expired in the background, with the
        // tasks' subsessions: let that reach the hub before they are closed.
        let expiries = crate::tasks::broot::pending_expiries();
        expiries.close();
        if tokio::time::timeout(EXPIRY_GRACE, expiries.wait())
            .await
            .is_err()
        {
            warn!(
                pending = expiries.len(),
                "buildroots not expired on the hub in time (the next start expires them)"
            );
        }
        expiries.reopen();
        for (id, sub) in subsessions {
            self.logout_child(id, sub).await;
        }
        let mut free: Vec<i64> = ids;
        free.extend(self.hub_tasks.keys().copied());
        free.sort_unstable();
        free.dedup();
        if !free.is_empty() {
            info!(?free, "freeing tasks");
            if let Err(e) = self.session.host_free_tasks(&free).await {
                warn!(error = %e, "freeTasks at shutdown");
            }
        }
        if let Err(e) = self.session.host_update_host(0.0, false, None).await {
            warn!(error = %e, "updateHost at shutdown");
        }
    }

    /// Wait until every running task has finished (used by `--single`).
    pub fn all_finished(&self) -> bool {
        self.running.values().all(|r| r.handle.is_finished())
    }
}

enum Outcome {
    Done,
    Exit,
}

/// kojid `runTask`: run the handler in a fresh workdir and report the outcome.
async fn run_task(
    handler: Arc<dyn TaskHandler>,
    ctx: TaskContext,
    params: TaskParams,
    session: HubSession,
    registry: Registry,
) -> Outcome {
    let id = ctx.task_id;
    let workdir = ctx.workdir.clone();
    let cancel = ctx.cancel.clone();
    let prepared = prepare_workdir(&workdir).await;
    let result = match prepared {
        Err(e) => Err(TaskFailure::internal(format!(
            "cannot create workdir {}: {e}",
            workdir.display()
        ))),
        Ok(()) => {
            // The handler runs as its own tokio task so that a panic fails the task
            // (fault code 1, as kojid reports an uncaught exception) instead of
            // leaving it OPEN, and so that cancellation can abort it.
            let mut h = tokio::spawn(async move { handler.run(ctx, params).await });
            tokio::select! {
                r = &mut h => match r {
                    Ok(r) => r,
                    Err(e) if e.is_panic() => {
                        let msg = e
                            .into_panic()
                            .downcast::<String>()
                            .map(|s| *s)
                            .or_else(|p| p.downcast::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|_| "unknown panic".into());
                        error!(task = id, msg, "task handler panicked");
                        Err(TaskFailure::internal(format!("task handler panicked: {msg}")))
                    }
                    Err(_) => Err(TaskFailure::Canceled),
                },
                _ = cancel.cancelled() => {
                    h.abort();
                    let _ = h.await;
                    Err(TaskFailure::Canceled)
                }
            }
        }
    };
    let wd = workdir.clone();
    let keep_logs = result.is_err().then(|| registry.clone());
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(r) = keep_logs {
            // the status can still show why it failed
            r.keep_log_tails(id);
        }
        match std::fs::remove_dir_all(&wd) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %wd.display(), error = %e, "cannot remove task workdir"),
        }
    })
    .await;
    let report = match result {
        Ok(v) => {
            let summary = summarize(&v);
            info!(task = id, result = %summary, "task closed");
            let r = session.host_close_task(id, encode_response(&v)).await;
            registry.task_finished(id, TaskPhase::Closed, Some(summary));
            r
        }
        Err(TaskFailure::Fault(f)) => {
            warn!(task = id, fault = %f, "task failed");
            let r = session.host_fail_task(id, encode_fault_response(&f)).await;
            registry.task_failed(id, &f);
            r
        }
        Err(TaskFailure::Refuse(msg)) => {
            info!(task = id, msg, "task refused");
            let r = session.host_refuse_task(id, true, &msg).await;
            registry.task_finished(id, TaskPhase::Refused, Some(msg));
            r
        }
        Err(TaskFailure::Restart) => {
            info!(task = id, "freeing task for a pending restart");
            let r = session.host_free_tasks(&[id]).await;
            registry.task_finished(id, TaskPhase::Freed, Some("restart".into()));
            r
        }
        Err(TaskFailure::Exit) => {
            registry.task_finished(id, TaskPhase::Freed, Some("shutdown".into()));
            return Outcome::Exit;
        }
        Err(TaskFailure::Canceled) => {
            registry.task_finished(id, TaskPhase::Canceled, Some("canceled".into()));
            Ok(())
        }
    };
    if let Err(e) = report {
        error!(task = id, error = %e, "cannot report the task's outcome to the hub");
        registry.hub_call_failed(&e);
    }
    Outcome::Done
}

async fn prepare_workdir(dir: &std::path::Path) -> std::io::Result<()> {
    let d = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&d)
    })
    .await
    .map_err(std::io::Error::other)?
}

fn summarize(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// A fault for an error the loop reports.
pub fn fault_of(e: &HubError) -> Fault {
    e.fault()
        .cloned()
        .unwrap_or_else(|| Fault::new(1, e.to_string()))
}
