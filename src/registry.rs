//! The one source of truth for the daemon's status: the host (hub, session,
//! readiness, load), the tasks it runs or ran (kept for `task_history_ttl` after
//! they finish) and the containers of those tasks (kept for `container_history_ttl`
//! after they are removed). Handlers and the loop update it; the status server reads
//! cheap snapshots. Timestamps are seconds since the epoch.
//!
//! The registry also owns the daemon's Prometheus [`Metrics`]: events that are
//! recorded here (a task finishing, a step ending, a hub error, an OOM kill seen in
//! a container's usage) count in the metrics too, so both views agree; measurements
//! only the caller has (pull, unpack, container start latency, buildroot cache) go
//! to [`Registry::metrics`] directly.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::hub::HubError;
use crate::status::metrics::Metrics;
use crate::xmlrpc::Fault;

/// Seconds since the epoch, now.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Session state as the status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Not logged in (starting, or after logout).
    #[default]
    LoggedOut,
    /// Logged in with an exclusive session.
    Exclusive,
    /// Logged in, not (yet) exclusive.
    LoggedIn,
}

/// The host part of the status.
#[derive(Debug, Clone, Serialize, Default)]
pub struct HostStatus {
    /// Hub URL.
    pub hub_url: String,
    /// Hub version (its `Koji-Version` header).
    pub hub_version: Option<String>,
    /// Our host id.
    pub host_id: Option<i64>,
    /// Our host name.
    pub host_name: Option<String>,
    /// Session state.
    pub session: SessionState,
    /// Session id.
    pub session_id: Option<i64>,
    /// Ready for tasks at the last check.
    pub ready: bool,
    /// Why not ready.
    pub not_ready_reason: Option<String>,
    /// Capacity from the hub.
    pub capacity: f64,
    /// Current task load (sum of weights of non-waiting tasks).
    pub task_load: f64,
    /// `maxjobs`.
    pub maxjobs: i64,
    /// Tasks running now.
    pub running: usize,
    /// Daemon start time.
    pub start_time: f64,
    /// Last poll of the hub.
    pub last_poll: Option<f64>,
    /// Last error talking to the hub, with its time.
    pub last_hub_error: Option<(f64, String)>,
    /// A restart is pending (no new tasks until idle).
    pub restart_pending: bool,
    /// Shutting down.
    pub shutting_down: bool,
}

/// Where a task is in its life here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPhase {
    /// Running.
    Running,
    /// Closed with a result.
    Closed,
    /// Failed with a fault.
    Failed,
    /// Canceled on the hub (or reassigned) and killed here.
    Canceled,
    /// Refused (returned to the hub's queue).
    Refused,
    /// Freed (returned to the hub's queue, e.g. at shutdown or restart).
    Freed,
}

/// A step of a task (pull, install, build, upload...).
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Name.
    pub name: String,
    /// Start.
    pub start: f64,
    /// End, once finished.
    pub end: Option<f64>,
    /// Outcome text (e.g. `ok`, an error).
    pub status: Option<String>,
}

/// Resource usage of a task's containers.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Usage {
    /// CPU time, seconds.
    pub cpu_seconds: f64,
    /// Peak memory, bytes.
    pub peak_memory: u64,
    /// Killed for lack of memory.
    pub oom_killed: bool,
}

/// One task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRecord {
    /// Task id.
    pub id: i64,
    /// Method.
    pub method: String,
    /// Phase.
    pub phase: TaskPhase,
    /// Arch.
    pub arch: String,
    /// Build tag, when known.
    pub tag: Option<String>,
    /// Weight.
    pub weight: f64,
    /// Waiting for subtasks.
    pub waiting: bool,
    /// Opened at.
    pub started: f64,
    /// Finished at.
    pub finished: Option<f64>,
    /// Steps.
    pub steps: Vec<Step>,
    /// Buildroot image.
    pub image: Option<String>,
    /// The policy rule that chose the image.
    pub policy_rule: Option<String>,
    /// Hub buildroot id.
    pub buildroot_id: Option<i64>,
    /// Container id.
    pub container_id: Option<String>,
    /// Resource usage.
    pub usage: Option<Usage>,
    /// Result summary (closed) or fault text (failed/refused).
    pub summary: Option<String>,
    /// Local log files of the task (name → path).
    pub logs: BTreeMap<String, String>,
    /// The fault a failed task was failed with.
    pub fault: Option<FaultRecord>,
    /// The source package the task builds, when it has one (`buildArch`,
    /// `rebuildSRPM`: the SRPM path; `buildSRPMFromSCM`: the SCM URL).
    pub srpm: Option<String>,
    /// The ends of the logs of a task that did not close, kept when its workdir
    /// is removed (name → text), so the status can still show why it failed.
    #[serde(skip)]
    pub log_tails: BTreeMap<String, String>,
}

/// Most bytes kept of the end of each log of a failed task.
pub const KEPT_LOG_TAIL: u64 = 16 * 1024;
/// Most logs of a failed task whose ends are kept.
pub const KEPT_LOGS: usize = 4;

/// The fault of a failed task.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FaultRecord {
    /// `faultCode`.
    pub code: i32,
    /// Koji's class name (`BuildError`...).
    pub name: String,
    /// `faultString`.
    pub message: String,
}

impl From<&Fault> for FaultRecord {
    fn from(f: &Fault) -> FaultRecord {
        FaultRecord {
            code: f.code,
            name: f.kind().name().to_owned(),
            message: f.string.clone(),
        }
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Running (its pid 1 is alive).
    Running,
    /// Its processes ended; not yet removed.
    Exited,
    /// Removed (kept here for `container_history_ttl`).
    Removed,
}

/// A bind mount of a container.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MountRecord {
    /// Host path.
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Resource limits of a container (None: not limited).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LimitsRecord {
    /// Memory limit, bytes.
    pub memory_bytes: Option<u64>,
    /// CPU limit, in CPUs.
    pub cpus: Option<f64>,
    /// Process limit.
    pub pids: Option<u64>,
}

/// Resource usage of a container, as its cgroup reports it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ContainerUsage {
    /// CPU time, seconds.
    pub cpu_seconds: f64,
    /// Memory in use now, bytes.
    pub memory_bytes: u64,
    /// Peak memory, bytes.
    pub peak_memory: u64,
    /// Processes now.
    pub pids: u64,
    /// OOM kills so far (a counter; never goes back).
    pub oom_kills: u64,
}

/// What the task code knows when it has started a container
/// ([`Registry::container_started`]).
#[derive(Debug, Clone, Default)]
pub struct ContainerStart {
    /// Container id.
    pub id: String,
    /// The task it belongs to.
    pub task_id: Option<i64>,
    /// Image reference as written.
    pub image: String,
    /// Image manifest digest (`sha256:…`).
    pub image_digest: Option<String>,
    /// Host pid of its pid 1.
    pub pid: Option<i32>,
    /// Bind mounts.
    pub mounts: Vec<MountRecord>,
    /// Network mode of the container (`none`: loopback only, `host`).
    pub network: String,
    /// Limits asked for.
    pub limits: LimitsRecord,
    /// Whether the limits are enforced (false: no writable cgroup, e.g. rootless
    /// without delegation — the limits are reported, not pretended).
    pub limits_available: bool,
    /// Command of the container's main process, if it has one.
    pub command: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// User (`uid:gid` or a name).
    pub user: Option<String>,
}

/// One container.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerRecord {
    /// Container id.
    pub id: String,
    /// The task it belongs to.
    pub task_id: Option<i64>,
    /// Image reference.
    pub image: String,
    /// Image manifest digest.
    pub image_digest: Option<String>,
    /// Host pid of its pid 1.
    pub pid: Option<i32>,
    /// Bind mounts.
    pub mounts: Vec<MountRecord>,
    /// Network mode.
    pub network: String,
    /// Limits.
    pub limits: LimitsRecord,
    /// Limits enforced.
    pub limits_available: bool,
    /// Command.
    pub command: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// User.
    pub user: Option<String>,
    /// State.
    pub state: ContainerState,
    /// Started at.
    pub started: f64,
    /// Processes ended at.
    pub finished: Option<f64>,
    /// Removed at.
    pub removed: Option<f64>,
    /// Exit status of its main process, when known.
    pub exit_code: Option<i32>,
    /// Last usage reading.
    pub usage: Option<ContainerUsage>,
    /// When `usage` was read.
    pub usage_time: Option<f64>,
}

/// Counters since the daemon started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Tasks taken.
    pub taken: u64,
    /// Tasks ended, by phase (`closed`, `failed`, …).
    pub finished: BTreeMap<String, u64>,
    /// Tasks closed on the current UTC day.
    pub closed_today: u64,
    /// The UTC day `closed_today` counts (days since the epoch).
    pub today: i64,
    /// Last time a task started or ended.
    pub last_task_time: Option<f64>,
    /// Containers started.
    pub containers_started: u64,
}

/// A snapshot of everything.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Snapshot {
    /// The host.
    pub host: HostStatus,
    /// Tasks by id.
    pub tasks: BTreeMap<i64, TaskRecord>,
    /// Containers by id.
    pub containers: BTreeMap<String, ContainerRecord>,
    /// Counters since start.
    pub counts: Counts,
}

/// Default time removed containers are kept (`container_history_ttl`).
pub const DEFAULT_CONTAINER_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug)]
struct State {
    snap: Snapshot,
    task_ttl: Duration,
    container_ttl: Duration,
}

impl Default for State {
    fn default() -> State {
        State {
            snap: Snapshot::default(),
            task_ttl: Duration::ZERO,
            container_ttl: DEFAULT_CONTAINER_TTL,
        }
    }
}

/// Shared status registry. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<State>>,
    metrics: Arc<Metrics>,
}

fn utc_day(t: f64) -> i64 {
    (t / 86400.0).floor() as i64
}

/// The metrics label of a hub error: the fault class, or the kind of failure.
pub fn hub_error_label(e: &HubError) -> &'static str {
    match e {
        HubError::Fault { fault, .. } | HubError::TookEffect { fault, .. } => fault.kind().name(),
        HubError::Transport { .. } => "transport",
        HubError::Decode { .. } => "decode",
        HubError::Protocol { .. } => "protocol",
        HubError::NotLoggedIn { .. } => "not_logged_in",
        HubError::AuthSetup(_) => "auth_setup",
    }
}

impl Registry {
    /// A registry keeping finished tasks for `task_ttl`.
    pub fn new(task_ttl: Duration) -> Registry {
        let r = Registry::default();
        if let Ok(mut st) = r.inner.write() {
            st.task_ttl = task_ttl;
            st.snap.host.start_time = now();
        }
        r
    }

    /// Keep removed containers for `ttl` (default [`DEFAULT_CONTAINER_TTL`]).
    pub fn set_container_ttl(&self, ttl: Duration) {
        if let Ok(mut st) = self.inner.write() {
            st.container_ttl = ttl;
        }
    }

    /// The daemon's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A copy of the current state (finished tasks past their TTL dropped first).
    pub fn snapshot(&self) -> Snapshot {
        self.prune(now());
        self.inner
            .read()
            .map(|s| s.snap.clone())
            .unwrap_or_default()
    }

    /// Like [`Registry::snapshot`], but only the host, the counters, the running
    /// tasks and the containers not yet removed: what the status summary, the
    /// metrics and the health probe need, without copying the task history.
    pub fn live_snapshot(&self) -> Snapshot {
        self.inner
            .read()
            .map(|s| Snapshot {
                host: s.snap.host.clone(),
                tasks: s
                    .snap
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.phase == TaskPhase::Running)
                    .map(|(k, t)| (*k, t.clone()))
                    .collect(),
                containers: s
                    .snap
                    .containers
                    .iter()
                    .filter(|(_, c)| c.state != ContainerState::Removed)
                    .map(|(k, c)| (k.clone(), c.clone()))
                    .collect(),
                counts: s.snap.counts.clone(),
            })
            .unwrap_or_default()
    }

    /// Change the host status.
    pub fn update_host(&self, f: impl FnOnce(&mut HostStatus)) {
        if let Ok(mut st) = self.inner.write() {
            f(&mut st.snap.host);
        }
    }

    /// Record a hub error (as text only; prefer [`Registry::hub_call_failed`], which
    /// also counts it by fault in the metrics).
    pub fn hub_error(&self, msg: impl Into<String>) {
        let msg = msg.into();
        self.update_host(|h| h.last_hub_error = Some((now(), msg)));
    }

    /// A hub call failed: remember it as the last hub error and count it in the
    /// metrics by fault class (or `transport`, `decode`, `protocol`…).
    pub fn hub_call_failed(&self, e: &HubError) {
        self.metrics.hub_error(hub_error_label(e));
        self.hub_error(e.to_string());
    }

    /// A task was opened.
    pub fn task_started(&self, id: i64, method: &str, arch: &str, weight: f64) {
        if let Ok(mut st) = self.inner.write() {
            st.snap.tasks.insert(
                id,
                TaskRecord {
                    id,
                    method: method.to_owned(),
                    phase: TaskPhase::Running,
                    arch: arch.to_owned(),
                    tag: None,
                    weight,
                    waiting: false,
                    started: now(),
                    finished: None,
                    steps: Vec::new(),
                    image: None,
                    policy_rule: None,
                    buildroot_id: None,
                    container_id: None,
                    usage: None,
                    summary: None,
                    logs: BTreeMap::new(),
                    fault: None,
                    srpm: None,
                    log_tails: BTreeMap::new(),
                },
            );
            let c = &mut st.snap.counts;
            c.taken += 1;
            c.last_task_time = Some(now());
        }
    }

    /// Change a task's record (no-op for unknown tasks).
    pub fn update_task(&self, id: i64, f: impl FnOnce(&mut TaskRecord)) {
        if let Ok(mut st) = self.inner.write() {
            if let Some(t) = st.snap.tasks.get_mut(&id) {
                f(t);
            }
        }
    }

    /// A task ended. Counts it (and its open steps, ended "interrupted") in the
    /// metrics.
    pub fn task_finished(&self, id: i64, phase: TaskPhase, summary: Option<String>) {
        self.finish(id, phase, summary, None);
    }

    /// A task failed with `fault` (kept whole, for the status API).
    pub fn task_failed(&self, id: i64, fault: &Fault) {
        self.finish(
            id,
            TaskPhase::Failed,
            Some(fault.to_string()),
            Some(fault.into()),
        );
    }

    fn finish(
        &self,
        id: i64,
        phase: TaskPhase,
        summary: Option<String>,
        fault: Option<FaultRecord>,
    ) {
        let end = now();
        let mut done = None;
        let mut steps = Vec::new();
        if let Ok(mut st) = self.inner.write() {
            let State { snap, .. } = &mut *st;
            let Some(t) = snap.tasks.get_mut(&id) else {
                return;
            };
            if t.finished.is_some() {
                // Reported already. The loop records why it kills a task before it
                // cancels it, so the handler's own "canceled" adds nothing; but an
                // outcome the hub was told (the task ended as it was being killed)
                // replaces the first record.
                if !matches!(
                    phase,
                    TaskPhase::Closed | TaskPhase::Failed | TaskPhase::Refused
                ) || t.phase == phase
                {
                    return;
                }
                let c = &mut snap.counts.finished;
                if let Some(n) = c.get_mut(t.phase.name()) {
                    *n = n.saturating_sub(1);
                }
            }
            t.phase = phase;
            t.finished = Some(end);
            t.summary = summary;
            t.fault = fault;
            t.waiting = false;
            for s in t.steps.iter_mut().filter(|s| s.end.is_none()) {
                s.end = Some(end);
                let status = s.status.get_or_insert_with(|| "interrupted".into());
                let _ = status;
                steps.push((s.name.clone(), end - s.start));
            }
            done = Some((t.method.clone(), end - t.started));
            let c = &mut snap.counts;
            *c.finished.entry(phase.name().to_owned()).or_insert(0) += 1;
            c.last_task_time = Some(end);
            if phase == TaskPhase::Closed {
                let day = utc_day(end);
                if c.today != day {
                    c.today = day;
                    c.closed_today = 0;
                }
                c.closed_today += 1;
            }
        }
        for (name, secs) in steps {
            self.metrics.step(&name, secs);
        }
        if let Some((method, secs)) = done {
            self.metrics.task_finished(&method, phase.name(), secs);
        }
    }

    /// Start a step of a task.
    pub fn step_start(&self, id: i64, name: &str) {
        self.update_task(id, |t| {
            t.steps.push(Step {
                name: name.to_owned(),
                start: now(),
                end: None,
                status: None,
            })
        });
    }

    /// End the last open step called `name` (and count its duration in the
    /// metrics).
    pub fn step_end(&self, id: i64, name: &str, status: &str) {
        let mut secs = None;
        self.update_task(id, |t| {
            if let Some(s) = t
                .steps
                .iter_mut()
                .rev()
                .find(|s| s.name == name && s.end.is_none())
            {
                let end = now();
                s.end = Some(end);
                s.status = Some(status.to_owned());
                secs = Some(end - s.start);
            }
        });
        if let Some(secs) = secs {
            self.metrics.step(name, secs);
        }
    }

    /// Keep the ends of a task's logs (at most [`KEPT_LOGS`] logs, [`KEPT_LOG_TAIL`]
    /// bytes each, `build.log` first) before its workdir goes. Blocking file reads:
    /// call it from blocking code. The loop calls it for tasks that did not close.
    pub fn keep_log_tails(&self, id: i64) {
        let logs: Vec<(String, String)> = match self.inner.read() {
            Ok(st) => match st.snap.tasks.get(&id) {
                Some(t) => {
                    let mut v: Vec<(String, String)> =
                        t.logs.iter().map(|(k, p)| (k.clone(), p.clone())).collect();
                    v.sort_by_key(|(k, _)| k != "build.log");
                    v.truncate(KEPT_LOGS);
                    v
                }
                None => return,
            },
            Err(_) => return,
        };
        let tails: Vec<(String, String)> = logs
            .into_iter()
            .filter_map(|(name, path)| {
                crate::status::routes::tail_file(
                    std::path::Path::new(&path),
                    usize::MAX,
                    KEPT_LOG_TAIL,
                )
                .ok()
                .map(|t| (name, t))
            })
            .collect();
        self.update_task(id, |t| t.log_tails.extend(tails));
    }

    /// A container was started (the task code calls this once its pid 1 runs). The
    /// task's `container_id` and `image` are set from it when still empty.
    pub fn container_started(&self, c: ContainerStart) {
        if let Ok(mut st) = self.inner.write() {
            let State { snap, .. } = &mut *st;
            if let Some(t) = c.task_id.and_then(|id| snap.tasks.get_mut(&id)) {
                t.container_id = Some(c.id.clone());
                if t.image.is_none() {
                    t.image = Some(c.image.clone());
                }
            }
            snap.counts.containers_started += 1;
            snap.containers.insert(
                c.id.clone(),
                ContainerRecord {
                    id: c.id,
                    task_id: c.task_id,
                    image: c.image,
                    image_digest: c.image_digest,
                    pid: c.pid,
                    mounts: c.mounts,
                    network: c.network,
                    limits: c.limits,
                    limits_available: c.limits_available,
                    command: c.command,
                    workdir: c.workdir,
                    user: c.user,
                    state: ContainerState::Running,
                    started: now(),
                    finished: None,
                    removed: None,
                    exit_code: None,
                    usage: None,
                    usage_time: None,
                },
            );
        }
    }

    /// A new reading of a container's cgroup. Its task's usage adds the CPU time
    /// gained since the last reading, keeps the highest peak, and notes OOM kills;
    /// new OOM kills count in the metrics.
    pub fn container_usage(&self, id: &str, usage: ContainerUsage) {
        let mut new_ooms = 0;
        if let Ok(mut st) = self.inner.write() {
            let State { snap, .. } = &mut *st;
            let Some(c) = snap.containers.get_mut(id) else {
                return;
            };
            let old = c.usage.unwrap_or_default();
            let cpu_delta = (usage.cpu_seconds - old.cpu_seconds).max(0.0);
            new_ooms = usage.oom_kills.saturating_sub(old.oom_kills);
            let merged = ContainerUsage {
                cpu_seconds: usage.cpu_seconds.max(old.cpu_seconds),
                peak_memory: usage.peak_memory.max(old.peak_memory),
                oom_kills: usage.oom_kills.max(old.oom_kills),
                ..usage
            };
            c.usage = Some(merged);
            c.usage_time = Some(now());
            if let Some(t) = c.task_id.and_then(|tid| snap.tasks.get_mut(&tid)) {
                let u = t.usage.get_or_insert_with(Usage::default);
                u.cpu_seconds += cpu_delta;
                u.peak_memory = u.peak_memory.max(merged.peak_memory);
                u.oom_killed |= merged.oom_kills > 0;
            }
        }
        for _ in 0..new_ooms {
            self.metrics.oom_kill();
        }
    }

    /// A container's processes ended (`exit_code` of its main process, if known).
    pub fn container_exited(&self, id: &str, exit_code: Option<i32>) {
        if let Ok(mut st) = self.inner.write() {
            if let Some(c) = st.snap.containers.get_mut(id) {
                if c.state == ContainerState::Running {
                    c.state = ContainerState::Exited;
                    c.finished = Some(now());
                }
                if exit_code.is_some() {
                    c.exit_code = exit_code;
                }
            }
        }
    }

    /// A container was destroyed (processes killed, mounts and cgroup removed). It
    /// stays listed for the container TTL.
    pub fn container_finished(&self, id: &str) {
        if let Ok(mut st) = self.inner.write() {
            if let Some(c) = st.snap.containers.get_mut(id) {
                let t = now();
                c.finished.get_or_insert(t);
                c.removed = Some(t);
                c.state = ContainerState::Removed;
            }
        }
    }

    /// Drop finished tasks older than the task TTL and removed containers older than
    /// the container TTL.
    pub fn prune(&self, at: f64) {
        // most calls find nothing to drop: look under the read lock first
        let due = self.inner.read().is_ok_and(|st| {
            let ttl = st.task_ttl.as_secs_f64();
            let cttl = st.container_ttl.as_secs_f64();
            st.snap
                .tasks
                .values()
                .any(|t| t.finished.is_some_and(|f| at - f > ttl))
                || st
                    .snap
                    .containers
                    .values()
                    .any(|c| c.removed.is_some_and(|r| at - r > cttl))
        });
        if !due {
            return;
        }
        if let Ok(mut st) = self.inner.write() {
            let ttl = st.task_ttl.as_secs_f64();
            let cttl = st.container_ttl.as_secs_f64();
            st.snap
                .tasks
                .retain(|_, t| t.finished.is_none_or(|f| at - f <= ttl));
            st.snap
                .containers
                .retain(|_, c| c.removed.is_none_or(|r| at - r <= cttl));
        }
    }
}

impl TaskPhase {
    /// The phase as the status and the metrics name it (`running`, `closed`…).
    pub fn name(self) -> &'static str {
        match self {
            TaskPhase::Running => "running",
            TaskPhase::Closed => "closed",
            TaskPhase::Failed => "failed",
            TaskPhase::Canceled => "canceled",
            TaskPhase::Refused => "refused",
            TaskPhase::Freed => "freed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_live_until_their_ttl() {
        let r = Registry::new(Duration::from_secs(100));
        r.task_started(1, "sleep", "noarch", 0.25);
        r.task_started(2, "sleep", "noarch", 0.25);
        r.step_start(1, "run");
        r.task_finished(1, TaskPhase::Closed, Some("None".into()));
        let s = r.snapshot();
        assert_eq!(s.tasks[&1].phase, TaskPhase::Closed);
        assert_eq!(s.tasks[&1].steps[0].status.as_deref(), Some("interrupted"));
        let fin = s.tasks[&1].finished.unwrap();
        r.prune(fin + 50.0);
        assert!(r.snapshot().tasks.contains_key(&1));
        r.prune(fin + 101.0);
        let s = r.snapshot();
        assert!(!s.tasks.contains_key(&1));
        assert!(s.tasks.contains_key(&2), "running tasks are never pruned");
    }

    #[test]
    fn containers_usage_and_counts() {
        let r = Registry::new(Duration::from_secs(100));
        r.set_container_ttl(Duration::from_secs(10));
        r.task_started(7, "buildArch", "x86_64", 1.5);
        r.container_started(ContainerStart {
            id: "c1".into(),
            task_id: Some(7),
            image: "registry.example/almalinux:9".into(),
            image_digest: Some("sha256:abc".into()),
            pid: Some(4242),
            network: "none".into(),
            limits: LimitsRecord {
                memory_bytes: Some(1 << 30),
                cpus: Some(2.0),
                pids: Some(4096),
            },
            limits_available: true,
            ..Default::default()
        });
        let s = r.snapshot();
        assert_eq!(s.tasks[&7].container_id.as_deref(), Some("c1"));
        assert_eq!(
            s.tasks[&7].image.as_deref(),
            Some("registry.example/almalinux:9")
        );
        assert_eq!(s.containers["c1"].state, ContainerState::Running);
        let u = |cpu, peak, oom| ContainerUsage {
            cpu_seconds: cpu,
            memory_bytes: 10,
            peak_memory: peak,
            pids: 3,
            oom_kills: oom,
        };
        r.container_usage("c1", u(2.0, 100, 0));
        r.container_usage("c1", u(5.0, 50, 2));
        r.container_usage("nope", u(1.0, 1, 1)); // unknown: ignored
        let s = r.snapshot();
        let tu = s.tasks[&7].usage.unwrap();
        assert_eq!(tu.cpu_seconds, 5.0);
        assert_eq!(tu.peak_memory, 100, "the peak never goes down");
        assert!(tu.oom_killed);
        assert_eq!(s.containers["c1"].usage.unwrap().oom_kills, 2);
        r.container_exited("c1", Some(137));
        r.container_finished("c1");
        let c = r.snapshot().containers["c1"].clone();
        assert_eq!((c.state, c.exit_code), (ContainerState::Removed, Some(137)));
        r.prune(c.removed.unwrap() + 11.0);
        assert!(r.snapshot().containers.is_empty());

        r.step_start(7, "build");
        r.task_failed(
            7,
            &Fault::of(crate::xmlrpc::FaultKind::Build, "rpmbuild failed"),
        );
        // the loop's later report of the same end changes nothing
        r.task_finished(7, TaskPhase::Canceled, Some("canceled".into()));
        let s = r.snapshot();
        let t = &s.tasks[&7];
        assert_eq!(t.phase, TaskPhase::Failed);
        assert_eq!(t.fault.as_ref().unwrap().name, "BuildError");
        assert_eq!(s.counts.finished["failed"], 1);
        assert_eq!(s.counts.taken, 1);
        assert_eq!(s.counts.containers_started, 1);

        let text = r.metrics().encode(&s, false).unwrap();
        assert!(text.contains("koji_adjutant_oom_kills_total 2"), "{text}");
        assert!(
            text.contains("koji_adjutant_tasks_total{method=\"buildArch\",outcome=\"failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("koji_adjutant_step_duration_seconds_count{step=\"build\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_kill_reason_stays_unless_the_hub_was_told_otherwise() {
        let r = Registry::new(Duration::from_secs(100));
        r.task_started(1, "sleep", "noarch", 0.25);
        r.task_finished(1, TaskPhase::Freed, Some("daemon shutting down".into()));
        r.task_finished(1, TaskPhase::Canceled, Some("canceled".into()));
        assert_eq!(r.snapshot().tasks[&1].phase, TaskPhase::Freed);
        // it ended by itself as it was being killed: the hub has its result
        r.task_finished(1, TaskPhase::Closed, Some("None".into()));
        let s = r.snapshot();
        assert_eq!(s.tasks[&1].phase, TaskPhase::Closed);
        assert_eq!(s.counts.finished["freed"], 0);
        assert_eq!(s.counts.finished["closed"], 1);
        assert_eq!(s.counts.closed_today, 1);
    }
}
