//! The JSON views of the status API (docs/status-api.md). Field names follow the
//! Python prototype's monitoring API (prototype notes §7.2) where it had them; the
//! rest is added. Times are ISO 8601 UTC strings (`…Z`), durations seconds. Free
//! text passes the [`Redactor`](super::redact::Redactor).

use serde_json::{json, Map, Value};

use super::ServerInfo;
use crate::registry::{
    ContainerRecord, ContainerState, SessionState, Snapshot, TaskPhase, TaskRecord,
};

/// What a view is made from.
#[derive(Debug, Clone, Copy)]
pub struct ViewCtx<'a> {
    /// The registry's state.
    pub snap: &'a Snapshot,
    /// What the server knows besides.
    pub info: &'a ServerInfo,
    /// Now (seconds since the epoch).
    pub now: f64,
}

/// An ISO 8601 UTC time (`2025-01-02T03:04:05.678Z`).
pub fn iso(t: f64) -> String {
    let secs = t.floor();
    let nanos = ((t - secs) * 1e9).round().clamp(0.0, 999_999_999.0) as u32;
    chrono::DateTime::from_timestamp(secs as i64, nanos)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn iso_opt(t: Option<f64>) -> Value {
    t.map_or(Value::Null, |t| Value::String(iso(t)))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The prototype's word for a task's state.
pub fn task_status(p: TaskPhase) -> &'static str {
    match p {
        TaskPhase::Running => "running",
        TaskPhase::Closed => "completed",
        TaskPhase::Failed => "failed",
        TaskPhase::Canceled => "canceled",
        TaskPhase::Refused => "refused",
        TaskPhase::Freed => "freed",
    }
}

/// The container state's name.
pub fn container_status(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
        ContainerState::Removed => "removed",
    }
}

fn session_name(s: SessionState) -> &'static str {
    match s {
        SessionState::LoggedOut => "logged_out",
        SessionState::LoggedIn => "logged_in",
        SessionState::Exclusive => "exclusive",
    }
}

/// Healthy, or why not. Health is the hub connection's: logged in with the
/// exclusive host session, a recent check-in, and no hub error since it.
pub fn health(ctx: &ViewCtx<'_>) -> Vec<String> {
    let h = &ctx.snap.host;
    let r = &ctx.info.redactor;
    let mut why = Vec::new();
    if h.shutting_down {
        why.push("shutting down".to_owned());
    }
    match h.session {
        SessionState::LoggedOut => why.push("not logged in to the hub".to_owned()),
        SessionState::LoggedIn => why.push("no exclusive host session".to_owned()),
        SessionState::Exclusive => {}
    }
    let stale = ctx.info.stale_after.as_secs_f64();
    match h.last_poll {
        None => why.push("no check-in with the hub yet".to_owned()),
        Some(t) if ctx.now - t > stale => why.push(format!(
            "last check-in with the hub {:.0} s ago",
            ctx.now - t
        )),
        Some(_) => {}
    }
    if let Some((t, msg)) = &h.last_hub_error {
        if h.last_poll.is_none_or(|p| *t > p) {
            why.push(format!("hub error: {}", r.text(msg)));
        }
    }
    why
}

fn running_containers(snap: &Snapshot) -> usize {
    snap.containers
        .values()
        .filter(|c| c.state == ContainerState::Running)
        .count()
}

/// `GET /api/v1/status`.
pub fn status(ctx: &ViewCtx<'_>) -> Value {
    let snap = ctx.snap;
    let h = &snap.host;
    let r = &ctx.info.redactor;
    let reasons = health(ctx);
    let worker_id = h
        .host_name
        .clone()
        .or_else(|| ctx.info.system_hostname.clone())
        .unwrap_or_default();
    let active = snap
        .tasks
        .values()
        .filter(|t| t.phase == TaskPhase::Running)
        .count();
    let today = (ctx.now / 86400.0).floor() as i64;
    let completed_today = if snap.counts.today == today {
        snap.counts.closed_today
    } else {
        0
    };
    let mut counts: Map<String, Value> = snap
        .counts
        .finished
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    counts.insert("taken".into(), json!(snap.counts.taken));
    counts.insert("running".into(), json!(active));
    counts.insert(
        "containers_started".into(),
        json!(snap.counts.containers_started),
    );
    json!({
        "worker_id": worker_id,
        "host_id": h.host_id,
        "host_name": h.host_name,
        "status": if reasons.is_empty() { "healthy" } else { "degraded" },
        "status_reasons": reasons,
        "uptime_seconds": round3((ctx.now - h.start_time).max(0.0)),
        "started_at": iso(h.start_time),
        "hub": {
            "url": r.text(&h.hub_url),
            "version": h.hub_version,
            "session": session_name(h.session),
            "session_id": h.session_id,
            "last_poll": iso_opt(h.last_poll),
            "last_error": h.last_hub_error.as_ref().map(|(t, m)| json!({
                "time": iso(*t),
                "message": r.text(m),
            })),
        },
        "ready": h.ready,
        "not_ready_reason": r.opt(h.not_ready_reason.as_deref()),
        "restart_pending": h.restart_pending,
        "shutting_down": h.shutting_down,
        "capacity": h.capacity,
        "task_load": h.task_load,
        "maxjobs": h.maxjobs,
        "active_tasks": active,
        "containers_active": running_containers(snap),
        "tasks_completed_today": completed_today,
        "last_task_time": iso_opt(snap.counts.last_task_time),
        "counts": counts,
        "versions": {
            "koji_adjutant": env!("CARGO_PKG_VERSION"),
            "hub": h.hub_version,
            "kernel": ctx.info.kernel,
        },
        "podman": {
            "status": "unknown",
            "message": "podman is not used: koji-adjutant runs its containers itself",
        },
    })
}

fn current_step(t: &TaskRecord) -> Option<&str> {
    t.steps
        .iter()
        .rev()
        .find(|s| s.end.is_none())
        .map(|s| s.name.as_str())
}

/// The task's main log: `build.log` if it has one, else the first by name.
pub fn main_log(t: &TaskRecord) -> Option<(&str, &str)> {
    t.logs
        .get_key_value("build.log")
        .or_else(|| t.logs.iter().next())
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

fn task_common(ctx: &ViewCtx<'_>, t: &TaskRecord) -> Map<String, Value> {
    let r = &ctx.info.redactor;
    let end = t.finished.unwrap_or(ctx.now);
    let digest = t
        .container_id
        .as_ref()
        .and_then(|c| ctx.snap.containers.get(c))
        .and_then(|c| c.image_digest.clone());
    let (result, message) = match t.phase {
        TaskPhase::Closed => (r.opt(t.summary.as_deref()), None),
        TaskPhase::Running => (None, None),
        _ => (None, r.opt(t.summary.as_deref())),
    };
    let v = json!({
        "task_id": t.id,
        "type": t.method,
        "method": t.method,
        "status": task_status(t.phase),
        "waiting": t.waiting,
        "arch": t.arch,
        "tag": t.tag,
        "weight": t.weight,
        "srpm": t.srpm,
        "started_at": iso(t.started),
        "finished_at": iso_opt(t.finished),
        "duration_seconds": round3((end - t.started).max(0.0)),
        "current_step": current_step(t),
        "progress": current_step(t),
        "image": t.image,
        "image_digest": digest,
        "policy_rule": t.policy_rule,
        "buildroot_id": t.buildroot_id,
        "container_id": t.container_id,
        "usage": t.usage.map(|u| json!({
            "cpu_seconds": round3(u.cpu_seconds),
            "peak_memory_bytes": u.peak_memory,
            "oom_killed": u.oom_killed,
        })),
        "result": result,
        "fault": t.fault.as_ref().map(|f| json!({
            "code": f.code,
            "name": f.name,
            "message": r.text(&f.message),
        })),
        "message": message,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// One entry of `GET /api/v1/tasks`.
pub fn task_summary(ctx: &ViewCtx<'_>, t: &TaskRecord) -> Value {
    Value::Object(task_common(ctx, t))
}

/// `GET /api/v1/tasks/<id>`.
pub fn task_detail(ctx: &ViewCtx<'_>, t: &TaskRecord) -> Value {
    let r = &ctx.info.redactor;
    let mut m = task_common(ctx, t);
    let steps: Vec<Value> = t
        .steps
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "started_at": iso(s.start),
                "finished_at": iso_opt(s.end),
                "duration_seconds": round3((s.end.unwrap_or(ctx.now) - s.start).max(0.0)),
                "status": r.opt(s.status.as_deref()),
            })
        })
        .collect();
    m.insert("steps".into(), Value::Array(steps));
    m.insert("log_path".into(), json!(main_log(t).map(|(_, path)| path)));
    let logs: Vec<Value> = t
        .logs
        .iter()
        .map(|(name, path)| {
            json!({
                "name": name,
                "path": path,
                "url": ctx.info.log_url(t.id, name).map(|u| r.text(&u)),
                "kept_tail": t.log_tails.contains_key(name),
            })
        })
        .collect();
    m.insert("logs".into(), Value::Array(logs));
    let containers: Vec<&str> = ctx
        .snap
        .containers
        .values()
        .filter(|c| c.task_id == Some(t.id))
        .map(|c| c.id.as_str())
        .collect();
    m.insert("containers".into(), json!(containers));
    Value::Object(m)
}

/// Which tasks `GET /api/v1/tasks?status=` lists.
pub fn task_matches(t: &TaskRecord, status: Option<&str>) -> bool {
    match status {
        None | Some("") | Some("all") => true,
        Some(s) => task_status(t.phase) == s || t.phase.name() == s,
    }
}

/// `GET /api/v1/tasks`: running tasks first, then the others, newest first.
pub fn tasks(ctx: &ViewCtx<'_>, status: Option<&str>) -> Value {
    let mut list: Vec<&TaskRecord> = ctx
        .snap
        .tasks
        .values()
        .filter(|t| task_matches(t, status))
        .collect();
    list.sort_by(|a, b| {
        (b.phase == TaskPhase::Running)
            .cmp(&(a.phase == TaskPhase::Running))
            .then(b.started.total_cmp(&a.started))
            .then(b.id.cmp(&a.id))
    });
    let running = list
        .iter()
        .filter(|t| t.phase == TaskPhase::Running)
        .count();
    let tasks: Vec<Value> = list.iter().map(|t| task_summary(ctx, t)).collect();
    json!({"tasks": tasks, "total": tasks.len(), "running": running})
}

fn container_common(ctx: &ViewCtx<'_>, c: &ContainerRecord) -> Map<String, Value> {
    let r = &ctx.info.redactor;
    let v = json!({
        "container_id": c.id,
        "task_id": c.task_id,
        "image": r.text(&c.image),
        "image_digest": c.image_digest,
        "status": container_status(c.state),
        "pid": c.pid,
        "network_mode": c.network,
        "created_at": iso(c.started),
        "started_at": iso(c.started),
        "finished_at": iso_opt(c.finished),
        "removed_at": iso_opt(c.removed),
        "exit_code": c.exit_code,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `GET /api/v1/containers`: running containers, or also exited and removed ones
/// (kept for the container TTL) with `all`.
pub fn containers(ctx: &ViewCtx<'_>, all: bool) -> Value {
    let mut list: Vec<&ContainerRecord> = ctx
        .snap
        .containers
        .values()
        .filter(|c| all || c.state != ContainerState::Removed)
        .collect();
    list.sort_by(|a, b| b.started.total_cmp(&a.started).then(a.id.cmp(&b.id)));
    let containers: Vec<Value> = list
        .iter()
        .map(|c| Value::Object(container_common(ctx, c)))
        .collect();
    json!({"containers": containers, "total": containers.len()})
}

/// `GET /api/v1/containers/<id>`.
pub fn container_detail(ctx: &ViewCtx<'_>, c: &ContainerRecord) -> Value {
    let r = &ctx.info.redactor;
    let mut m = container_common(ctx, c);
    let mounts: Vec<Value> = c
        .mounts
        .iter()
        .map(|m| json!({"source": m.source, "target": m.target, "read_only": m.read_only}))
        .collect();
    m.insert("mounts".into(), Value::Array(mounts));
    m.insert(
        "resource_limits".into(),
        json!({
            "memory_bytes": c.limits.memory_bytes,
            "cpus": c.limits.cpus,
            "pids": c.limits.pids,
        }),
    );
    m.insert("limits_available".into(), json!(c.limits_available));
    m.insert(
        "spec".into(),
        json!({
            "command": c.command.iter().map(|a| r.text(a)).collect::<Vec<_>>(),
            "workdir": c.workdir,
            "user": c.user,
        }),
    );
    m.insert(
        "usage".into(),
        c.usage.map_or(Value::Null, |u| {
            json!({
                "cpu_seconds": round3(u.cpu_seconds),
                "memory_bytes": u.memory_bytes,
                "memory_peak_bytes": u.peak_memory,
                "pids": u.pids,
                "oom_kills": u.oom_kills,
                "read_at": iso_opt(c.usage_time),
            })
        }),
    );
    Value::Object(m)
}

/// The prototype's error body.
pub fn error(title: &str, code: &str, message: &str) -> Value {
    json!({"error": title, "error_code": code, "message": message})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_700_000_000.25), "2023-11-14T22:13:20.250Z");
    }
}
