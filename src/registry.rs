//! The one source of truth for the daemon's status: the host (hub, session,
//! readiness, load) and the tasks it runs or ran (kept for `task_history_ttl` after
//! they finish). Handlers and the loop update it; the status server reads cheap
//! snapshots. Timestamps are seconds since the epoch.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

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
}

/// A snapshot of everything.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Snapshot {
    /// The host.
    pub host: HostStatus,
    /// Tasks by id.
    pub tasks: BTreeMap<i64, TaskRecord>,
}

#[derive(Debug, Default)]
struct State {
    snap: Snapshot,
    task_ttl: Duration,
}

/// Shared status registry. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<State>>,
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

    /// A copy of the current state (finished tasks past their TTL dropped first).
    pub fn snapshot(&self) -> Snapshot {
        self.prune(now());
        self.inner
            .read()
            .map(|s| s.snap.clone())
            .unwrap_or_default()
    }

    /// Change the host status.
    pub fn update_host(&self, f: impl FnOnce(&mut HostStatus)) {
        if let Ok(mut st) = self.inner.write() {
            f(&mut st.snap.host);
        }
    }

    /// Record a hub error.
    pub fn hub_error(&self, msg: impl Into<String>) {
        let msg = msg.into();
        self.update_host(|h| h.last_hub_error = Some((now(), msg)));
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
                },
            );
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

    /// A task ended.
    pub fn task_finished(&self, id: i64, phase: TaskPhase, summary: Option<String>) {
        self.update_task(id, |t| {
            t.phase = phase;
            t.finished = Some(now());
            t.summary = summary;
            let end = now();
            for s in t.steps.iter_mut().filter(|s| s.end.is_none()) {
                s.end = Some(end);
                s.status.get_or_insert_with(|| "interrupted".into());
            }
        });
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

    /// End the last open step called `name`.
    pub fn step_end(&self, id: i64, name: &str, status: &str) {
        self.update_task(id, |t| {
            if let Some(s) = t
                .steps
                .iter_mut()
                .rev()
                .find(|s| s.name == name && s.end.is_none())
            {
                s.end = Some(now());
                s.status = Some(status.to_owned());
            }
        });
    }

    /// Drop finished tasks older than the TTL.
    pub fn prune(&self, at: f64) {
        if let Ok(mut st) = self.inner.write() {
            let ttl = st.task_ttl.as_secs_f64();
            st.snap
                .tasks
                .retain(|_, t| t.finished.is_none_or(|f| at - f <= ttl));
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
}
