//! Task handlers plug into the daemon through [`TaskHandler`]; the loop finds them by
//! method name in a [`HandlerRegistry`]. A handler gets a [`TaskContext`] (its task,
//! its own hub subsession, config, an uploader for `tasks/N/ID`, a cancellation token,
//! a scratch workdir, the status registry, and subtask/wait helpers) and returns the
//! task's result value, which the loop sends to the hub as the methodResponse text
//! `host.closeTask` expects — or a [`TaskFailure`].

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Config;
use crate::hub::{HostInfo, HubError, HubSession, LogSync, UploadError, Uploader};
use crate::registry::Registry;
use crate::xmlrpc::{decode_args, Fault, FaultKind, Struct, Value};

/// A boxed future (handlers are stored as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a task did not produce a result.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskFailure {
    /// Fail the task with this fault (`host.failTask`). A fault raised by a subtask or
    /// a hub call passes through unchanged, as in kojid.
    Fault(Fault),
    /// Refuse the task softly (`host.refuseTask(id, soft=True, msg)`); kojid's
    /// `RefuseTask`.
    Refuse(String),
    /// Give the task back (`host.freeTasks([id])`) so a pending restart can happen;
    /// kojid's `ServerRestart`.
    Restart,
    /// Stop the daemon (foreground `shutdown`); kojid's `ServerExit`.
    Exit,
    /// The task was canceled or reassigned on the hub; nothing is reported.
    Canceled,
}

impl TaskFailure {
    /// A fault of Koji class `kind`.
    pub fn of(kind: FaultKind, msg: impl Into<String>) -> TaskFailure {
        TaskFailure::Fault(Fault::of(kind, msg))
    }

    /// `GenericError(msg)`.
    pub fn generic(msg: impl Into<String>) -> TaskFailure {
        TaskFailure::of(FaultKind::Generic, msg)
    }

    /// `BuildError(msg)`.
    pub fn build(msg: impl Into<String>) -> TaskFailure {
        TaskFailure::of(FaultKind::Build, msg)
    }

    /// `ParameterError(msg)` (a request that does not fit the handler's signature).
    pub fn parameter(msg: impl Into<String>) -> TaskFailure {
        TaskFailure::of(FaultKind::Parameter, msg)
    }

    /// A non-Koji error: fault code 1 with the message (kojid sends a traceback).
    pub fn internal(msg: impl Into<String>) -> TaskFailure {
        TaskFailure::Fault(Fault::new(1, msg))
    }
}

impl From<HubError> for TaskFailure {
    fn from(e: HubError) -> TaskFailure {
        match e {
            HubError::Fault { fault, .. } => TaskFailure::Fault(fault),
            other => TaskFailure::internal(other.to_string()),
        }
    }
}

impl From<UploadError> for TaskFailure {
    fn from(e: UploadError) -> TaskFailure {
        match e {
            UploadError::Hub {
                source: HubError::Fault { fault, .. },
                ..
            } => TaskFailure::Fault(fault),
            other => TaskFailure::generic(other.to_string()),
        }
    }
}

/// A task's request: positional args and keyword args (`koji.decode_args`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskParams {
    /// Positional args.
    pub args: Vec<Value>,
    /// Keyword args.
    pub kwargs: Struct,
}

impl TaskParams {
    /// From the decoded request list.
    pub fn from_request(request: Vec<Value>) -> TaskParams {
        let (args, kwargs) = decode_args(request);
        TaskParams { args, kwargs }
    }

    /// Bind to a Python signature `names` (all optional here; check required ones
    /// with [`Bound::require`]). Too many positional args, an unknown keyword or a
    /// name given twice is a `ParameterError`, as `koji.util.call_with_argcheck`.
    pub fn bind(&self, method: &str, names: &[&str]) -> Result<Bound, TaskFailure> {
        if self.args.len() > names.len() {
            return Err(TaskFailure::parameter(format!(
                "{method}() takes at most {} positional arguments ({} given)",
                names.len(),
                self.args.len()
            )));
        }
        let mut vals: Vec<Option<Value>> = names.iter().map(|_| None).collect();
        for (i, a) in self.args.iter().enumerate() {
            vals[i] = Some(a.clone());
        }
        for (k, v) in &self.kwargs {
            let Some(i) = names.iter().position(|n| n == k) else {
                return Err(TaskFailure::parameter(format!(
                    "{method}() got an unexpected keyword argument '{k}'"
                )));
            };
            if vals[i].is_some() {
                return Err(TaskFailure::parameter(format!(
                    "{method}() got multiple values for argument '{k}'"
                )));
            }
            vals[i] = Some(v.clone());
        }
        Ok(Bound {
            method: method.to_owned(),
            names: names.iter().map(|s| s.to_string()).collect(),
            vals,
        })
    }
}

/// Arguments bound to names.
#[derive(Debug, Clone)]
pub struct Bound {
    method: String,
    names: Vec<String>,
    vals: Vec<Option<Value>>,
}

impl Bound {
    fn idx(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .unwrap_or(usize::MAX)
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.vals.get(self.idx(name)).and_then(Option::as_ref)
    }

    /// The value of `name`, or a ParameterError saying it is missing.
    pub fn require(&self, name: &str) -> Result<&Value, TaskFailure> {
        self.get(name).ok_or_else(|| {
            TaskFailure::parameter(format!(
                "{}() missing required argument: '{name}'",
                self.method
            ))
        })
    }

    /// An int argument with a default.
    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, TaskFailure> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.as_i64().ok_or_else(|| {
                TaskFailure::parameter(format!(
                    "{}(): '{name}' must be an integer, not {v}",
                    self.method
                ))
            }),
        }
    }

    /// A number argument (int or double).
    pub fn number(&self, name: &str) -> Result<f64, TaskFailure> {
        let v = self.require(name)?;
        v.as_f64().ok_or_else(|| {
            TaskFailure::internal(format!(
                "TypeError: {}(): '{name}' must be a number, not {}",
                self.method,
                v.type_name()
            ))
        })
    }
}

/// What a host check sees (kojid's `checkHost(hostdata)`).
#[derive(Debug, Clone)]
pub struct HostCheckContext {
    /// The main session.
    pub session: HubSession,
    /// `host.getHost()` from this poll.
    pub host: Option<HostInfo>,
    /// The configuration.
    pub config: Arc<Config>,
    /// The task's info (`getTaskInfo(id, request=True)`).
    pub task: Value,
}

/// A task handler: one per Koji method.
pub trait TaskHandler: Send + Sync + 'static {
    /// The Koji method it handles.
    fn method(&self) -> &'static str;

    /// The task's weight (kojid `_taskWeight`), sent with `host.setTaskWeight`.
    fn weight(&self) -> f64 {
        1.0
    }

    /// Run in the main loop with the main session (kojid `Foreground`).
    fn foreground(&self) -> bool {
        false
    }

    /// kojid's `checkHost`: false (or an error) refuses the task hard
    /// ("failed host check").
    fn host_check<'a>(
        &'a self,
        _ctx: &'a HostCheckContext,
        _params: &'a TaskParams,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async { Ok(true) })
    }

    /// Do the work. The value returned is the task's result.
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        params: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>>;
}

/// Handlers by method.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    map: BTreeMap<&'static str, Arc<dyn TaskHandler>>,
}

impl std::fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl HandlerRegistry {
    /// Empty.
    pub fn new() -> HandlerRegistry {
        HandlerRegistry::default()
    }

    /// Add (or replace) the handler of its method.
    pub fn register(&mut self, h: Arc<dyn TaskHandler>) {
        self.map.insert(h.method(), h);
    }

    /// The handler of `method`.
    pub fn get(&self, method: &str) -> Option<Arc<dyn TaskHandler>> {
        self.map.get(method).cloned()
    }

    /// All methods handled (sent to the hub in `updateHost(data={'methods': …})`).
    pub fn methods(&self) -> Vec<&'static str> {
        self.map.keys().copied().collect()
    }
}

/// Shared daemon state foreground handlers act on.
#[derive(Debug)]
pub struct DaemonControl {
    /// A graceful restart is pending (kojid `restart_pending`).
    pub restart_pending: AtomicBool,
    /// Our session's `start_ts` (restartVerify compares it).
    pub start_ts: f64,
    /// Our host id.
    pub host_id: i64,
}

impl DaemonControl {
    /// New control state.
    pub fn new(host_id: i64, start_ts: f64) -> DaemonControl {
        DaemonControl {
            restart_pending: AtomicBool::new(false),
            start_ts,
            host_id,
        }
    }

    /// Ask for a graceful restart.
    pub fn request_restart(&self) {
        self.restart_pending.store(true, Ordering::SeqCst);
    }

    /// Is a restart pending?
    pub fn is_restart_pending(&self) -> bool {
        self.restart_pending.load(Ordering::SeqCst)
    }
}

/// Everything a running task may use.
#[derive(Clone)]
pub struct TaskContext {
    /// Task id.
    pub task_id: i64,
    /// Method.
    pub method: String,
    /// The task as `host.openTask` returned it (id, arch, priority, owner, …).
    pub info: Value,
    /// The task's session: its own subsession, or the main session for foreground
    /// handlers.
    pub session: HubSession,
    /// Configuration.
    pub config: Arc<Config>,
    /// Uploads into `tasks/<id%10000>/<id>`.
    pub uploader: Uploader,
    /// Fires when the task is canceled or reassigned on the hub, or the daemon stops.
    pub cancel: CancellationToken,
    /// A fresh scratch directory (`<workdir>/tasks/<id%10000>/<id>`), removed after.
    pub workdir: PathBuf,
    /// Status registry.
    pub registry: Registry,
    /// Our host id.
    pub host_id: i64,
    /// Daemon control (restart...).
    pub control: Arc<DaemonControl>,
    /// Woken by the loop when an awaited subtask finished (getHostTasks `alert`).
    pub(crate) wake: Arc<Notify>,
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("task_id", &self.task_id)
            .field("method", &self.method)
            .finish()
    }
}

/// How [`TaskContext::wait`] waits (kojid `BaseTaskHandler.wait`).
#[derive(Debug, Clone, Default)]
pub struct WaitSpec {
    /// Children to wait for; None = all children.
    pub subtasks: Option<Vec<i64>>,
    /// Wait for all of them (else: until any finishes).
    pub all: bool,
    /// With `all`: a failed child cancels the others and fails this task.
    pub failany: bool,
    /// Children allowed to fail.
    pub canfail: Vec<i64>,
    /// Give up (cancelling the children) after this long.
    pub timeout: Option<Duration>,
}

impl TaskContext {
    /// `host.subtask(method, arglist, parent=self, **opts)`.
    pub async fn subtask(
        &self,
        method: &str,
        arglist: Vec<Value>,
        opts: Struct,
    ) -> Result<i64, TaskFailure> {
        Ok(self
            .session
            .host_subtask(method, arglist, self.task_id, opts)
            .await?)
    }

    /// Wait for subtasks and return their results by id (`taskWaitResults`), as
    /// kojid's `BaseTaskHandler.wait` does. Between polls of `host.taskWait` it sleeps
    /// until the loop sees an `alert` for this task, or `sleeptime` passes.
    pub async fn wait(&self, spec: WaitSpec) -> Result<IndexMap<i64, Value>, TaskFailure> {
        let s = &self.session;
        let mut checked: HashSet<i64> = spec.canfail.iter().copied().collect();
        s.host_task_set_wait(self.task_id, spec.subtasks.as_deref())
            .await?;
        self.registry
            .update_task(self.task_id, |t| t.waiting = true);
        let start = Instant::now();
        let poll = Duration::from_secs(
            u64::try_from(self.config.kojid.sleeptime)
                .unwrap_or(15)
                .max(1),
        );
        let finished = loop {
            let (finished, unfinished) = s.host_task_wait(self.task_id).await?;
            if unfinished.is_empty() {
                break finished;
            }
            if !finished.is_empty() {
                if spec.all {
                    if spec.failany {
                        for t in finished
                            .iter()
                            .filter(|t| !checked.contains(t))
                            .copied()
                            .collect::<Vec<_>>()
                        {
                            match s.get_task_result(t).await {
                                Ok(_) => {
                                    checked.insert(t);
                                }
                                Err(e) => {
                                    warn!(
                                        task = self.task_id,
                                        child = t,
                                        "subtask failed or was canceled; cancelling the others"
                                    );
                                    s.cancel_task_children(self.task_id).await?;
                                    return Err(e.into());
                                }
                            }
                        }
                    }
                } else {
                    break finished;
                }
            }
            let sleep_for = match spec.timeout {
                Some(t) => {
                    let elapsed = start.elapsed();
                    if elapsed >= t {
                        s.cancel_task_children(self.task_id).await?;
                        return Err(TaskFailure::generic(format!(
                            "Subtasks timed out after {:.1} seconds",
                            elapsed.as_secs_f64()
                        )));
                    }
                    poll.min(t - elapsed)
                }
                None => poll,
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep_for) => {}
                _ = self.cancel.cancelled() => return Err(TaskFailure::Canceled),
            }
        };
        let which: Option<Vec<i64>> = if spec.all {
            spec.subtasks.clone()
        } else {
            Some(finished)
        };
        let canfail = if spec.canfail.is_empty() {
            None
        } else {
            Some(spec.canfail.as_slice())
        };
        let results = s
            .host_task_wait_results(self.task_id, which.as_deref(), canfail)
            .await?;
        self.registry
            .update_task(self.task_id, |t| t.waiting = false);
        Ok(results.into_iter().collect())
    }

    /// Start incremental upload of a log (synced every second until
    /// [`LogStream::finish`]).
    pub fn stream_log(&self, local: impl Into<PathBuf>, name: &str) -> LogStream {
        let local = local.into();
        let mut sync = self.uploader.log_sync(local.clone(), name);
        self.registry.update_task(self.task_id, |t| {
            t.logs.insert(name.to_owned(), local.display().to_string());
        });
        let stop = CancellationToken::new();
        let stop2 = stop.clone();
        let handle = tokio::spawn(async move {
            loop {
                if let Err(e) = sync.sync().await {
                    warn!(error = %e, "log upload failed");
                }
                tokio::select! {
                    _ = stop2.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            sync.sync().await.map(|_| sync)
        });
        LogStream { stop, handle }
    }

    /// Record the start of a step in the status registry.
    pub fn step(&self, name: &str) -> StepGuard {
        self.registry.step_start(self.task_id, name);
        StepGuard {
            registry: self.registry.clone(),
            task_id: self.task_id,
            name: name.to_owned(),
            done: false,
        }
    }

    /// Path under the workdir.
    pub fn work_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.workdir.join(rel)
    }
}

/// A running incremental log upload.
#[derive(Debug)]
pub struct LogStream {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<LogSync, UploadError>>,
}

impl LogStream {
    /// Final sync; returns the bytes uploaded.
    pub async fn finish(mut self) -> Result<u64, TaskFailure> {
        self.stop.cancel();
        match (&mut self.handle).await {
            Ok(Ok(sync)) => Ok(sync.offset()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(TaskFailure::internal(format!("log upload task: {e}"))),
        }
    }
}

impl Drop for LogStream {
    /// A stream dropped without [`LogStream::finish`] (the task was canceled and its
    /// future dropped) stops syncing instead of polling the hub forever.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Ends a status step when done (or dropped: "interrupted").
#[derive(Debug)]
pub struct StepGuard {
    registry: Registry,
    task_id: i64,
    name: String,
    done: bool,
}

impl StepGuard {
    /// Mark the step finished with `status`.
    pub fn end(mut self, status: &str) {
        self.registry.step_end(self.task_id, &self.name, status);
        self.done = true;
    }

    /// End the step `ok` or `failed` as `r` says, and pass `r` on. (A guard dropped
    /// without [`StepGuard::end`] records `interrupted`: use this around a `?`.)
    pub fn finish<T, E>(self, r: Result<T, E>) -> Result<T, E> {
        self.end(if r.is_ok() { "ok" } else { "failed" });
        r
    }
}

impl Drop for StepGuard {
    fn drop(&mut self) {
        if !self.done {
            self.registry
                .step_end(self.task_id, &self.name, "interrupted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_like_python() {
        let p = TaskParams::from_request(vec![
            Value::Int(3),
            Value::struct_from([("m", Value::Int(4)), ("__starstar", Value::Bool(true))]),
        ]);
        let b = p.bind("fork", &["n", "m"]).unwrap();
        assert_eq!(b.int_or("n", 5).unwrap(), 3);
        assert_eq!(b.int_or("m", 37).unwrap(), 4);
        let e = p.bind("sleep", &["n"]).unwrap_err();
        assert!(
            matches!(e, TaskFailure::Fault(f) if f.code == 1019 && f.string.contains("unexpected keyword"))
        );
        let p = TaskParams::from_request(vec![Value::Int(1), Value::Int(2)]);
        assert!(p.bind("sleep", &["n"]).is_err());
        let p = TaskParams::from_request(vec![
            Value::Int(1),
            Value::struct_from([("n", Value::Int(4)), ("__starstar", Value::Bool(true))]),
        ]);
        assert!(p.bind("sleep", &["n"]).is_err(), "given twice");
        let p = TaskParams::default();
        let b = p.bind("sleep", &["n"]).unwrap();
        assert!(b.require("n").is_err());
    }
}
