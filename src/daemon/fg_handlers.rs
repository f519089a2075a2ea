//! kojid's built-in tasks (koji/tasks.py): the foreground ones that steer the
//! daemon (`shutdown`, `restart`, `restartVerify`, `someMethod`) and the test and
//! utility tasks (`restartHosts`, `sleep`, `fork`, `waittest`, `subtask`,
//! `dependantTask`, `default`), so `koji restart-hosts` and the hub's test tasks work.

use std::sync::Arc;
use std::time::Duration;

use super::handlers::{
    BoxFuture, HandlerRegistry, TaskContext, TaskFailure, TaskHandler, TaskParams, WaitSpec,
};
use crate::hub::TaskState;
use crate::xmlrpc::{Struct, Value};

/// Register every built-in handler.
pub fn register_builtin(reg: &mut HandlerRegistry) {
    reg.register(Arc::new(Shutdown));
    reg.register(Arc::new(Restart));
    reg.register(Arc::new(RestartVerify));
    reg.register(Arc::new(RestartHosts));
    reg.register(Arc::new(Sleep));
    reg.register(Arc::new(Fork));
    reg.register(Arc::new(WaitTest));
    reg.register(Arc::new(Subtask));
    reg.register(Arc::new(DependantTask));
    reg.register(Arc::new(SomeMethod));
    reg.register(Arc::new(DefaultTask));
}

fn opts<const N: usize>(items: [(&str, Value); N]) -> Struct {
    items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn host_id_of(v: &Value) -> Result<i64, TaskFailure> {
    v.get("id").and_then(Value::as_i64).ok_or_else(|| {
        TaskFailure::internal(format!("TypeError: host must be a host dict, not {v}"))
    })
}

/// `shutdown` (foreground, weight 0): stop the daemon.
pub struct Shutdown;
impl TaskHandler for Shutdown {
    fn method(&self) -> &'static str {
        "shutdown"
    }
    fn weight(&self) -> f64 {
        0.0
    }
    fn foreground(&self) -> bool {
        true
    }
    fn run<'a>(
        &'a self,
        _ctx: TaskContext,
        p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            p.bind("shutdown", &[])?;
            Err(TaskFailure::Exit)
        })
    }
}

/// `restart(host)` (foreground): restart gracefully once idle.
pub struct Restart;
impl TaskHandler for Restart {
    fn method(&self) -> &'static str {
        "restart"
    }
    fn weight(&self) -> f64 {
        0.1
    }
    fn foreground(&self) -> bool {
        true
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = p.bind("restart", &["host"])?;
            let want = host_id_of(b.require("host")?)?;
            if want != ctx.session.host_get_id().await? {
                return Err(TaskFailure::generic("Host mismatch"));
            }
            ctx.control.request_restart();
            ctx.registry.update_host(|h| h.restart_pending = true);
            Ok(Value::from("graceful restart initiated"))
        })
    }
}

/// `restartVerify(task_id, host)` (foreground): the restart task closed before we
/// (re)started.
pub struct RestartVerify;
impl TaskHandler for RestartVerify {
    fn method(&self) -> &'static str {
        "restartVerify"
    }
    fn weight(&self) -> f64 {
        0.1
    }
    fn foreground(&self) -> bool {
        true
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = p.bind("restartVerify", &["task_id", "host"])?;
            let task_id = b.int_or("task_id", 0)?;
            let want = host_id_of(b.require("host")?)?;
            let info = ctx
                .session
                .get_task_info(task_id, false)
                .await?
                .ok_or_else(|| TaskFailure::generic(format!("No such task: {task_id}")))?;
            let state = info
                .get("state")
                .and_then(Value::as_i64)
                .and_then(TaskState::from_i64);
            if state != Some(TaskState::Closed) {
                let name = state.map_or("UNKNOWN", TaskState::name);
                return Err(TaskFailure::generic(format!(
                    "Stage one restart task is {name}"
                )));
            }
            if want != ctx.session.host_get_id().await? {
                return Err(TaskFailure::generic("Host mismatch"));
            }
            let completed = info
                .get("completion_ts")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            if ctx.control.start_ts < completed {
                return Err(TaskFailure::generic(format!(
                    "Restart failed - start time is {}",
                    ctx.control.start_ts
                )));
            }
            Ok(Value::Nil)
        })
    }
}

/// `restartHosts(options=None)`: a restart + restartVerify pair per enabled host.
pub struct RestartHosts;
impl TaskHandler for RestartHosts {
    fn method(&self) -> &'static str {
        "restartHosts"
    }
    fn weight(&self) -> f64 {
        0.1
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = p.bind("restartHosts", &["options"])?;
            let options = b
                .get("options")
                .and_then(Value::as_struct)
                .cloned()
                .unwrap_or_default();
            let mut query = opts([("enabled", Value::Bool(true))]);
            if let Some(ch) = options.get("channel") {
                let chan = ctx.session.get_channel(ch.clone()).await?;
                if let Some(cid) = chan.get("id") {
                    query.insert("channelID".into(), cid.clone());
                }
            }
            if let Some(a) = options.get("arches") {
                query.insert("arches".into(), a.clone());
            }
            let hosts = ctx.session.list_hosts(query).await?;
            if hosts.is_empty() {
                return Err(TaskFailure::generic("No matching hosts"));
            }
            let timeout = options
                .get("timeout")
                .and_then(Value::as_f64)
                .unwrap_or(3600.0 * 24.0)
                .max(0.0);
            let timeout = Duration::from_secs_f64(timeout);
            let this_host = ctx.session.host_get_id().await?;
            let mut subtasks = Vec::new();
            let mut mine = None;
            for host in &hosts {
                let hid = host_id_of(host)?;
                let t1 = ctx
                    .subtask(
                        "restart",
                        vec![host.clone()],
                        opts([
                            ("assign", Value::Int(hid)),
                            ("label", Value::from(format!("restart {hid}"))),
                        ]),
                    )
                    .await?;
                let t2 = ctx
                    .subtask(
                        "restartVerify",
                        vec![Value::Int(t1), host.clone()],
                        opts([
                            ("assign", Value::Int(hid)),
                            ("label", Value::from(format!("sleep {hid}"))),
                        ]),
                    )
                    .await?;
                subtasks.push(t1);
                subtasks.push(t2);
                if hid == this_host {
                    mine = Some((t1, t2));
                }
            }
            if let Some((t1, t2)) = mine {
                ctx.wait(WaitSpec {
                    subtasks: Some(vec![t1]),
                    timeout: Some(timeout),
                    ..Default::default()
                })
                .await?;
                if !ctx.session.task_finished(t2).await? {
                    // we are being restarted: give this task back so the restart can
                    // happen; it is taken again afterwards and finds t2 finished
                    return Err(TaskFailure::Restart);
                }
            }
            ctx.wait(WaitSpec {
                subtasks: Some(subtasks),
                all: true,
                timeout: Some(timeout),
                ..Default::default()
            })
            .await?;
            Ok(Value::Nil)
        })
    }
}

/// `sleep(n)` (weight 0.25).
pub struct Sleep;
impl TaskHandler for Sleep {
    fn method(&self) -> &'static str {
        "sleep"
    }
    fn weight(&self) -> f64 {
        0.25
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = p.bind("sleep", &["n"])?;
            let n = b.number("n")?;
            if !(0.0..=1e9).contains(&n) {
                return Err(TaskFailure::internal(format!(
                    "ValueError: sleep length must be non-negative: {n}"
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(n)) => Ok(Value::Nil),
                _ = ctx.cancel.cancelled() => Err(TaskFailure::Canceled),
            }
        })
    }
}

/// `fork(n=5, m=37)`: `n` processes of `sleep m`. Unlike kojid (which leaves them
/// behind) the task waits for them, and kills them when it is canceled — a test of
/// process cleanup.
pub struct Fork;
impl TaskHandler for Fork {
    fn method(&self) -> &'static str {
        "fork"
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = p.bind("fork", &["n", "m"])?;
            let n = b.int_or("n", 5)?.clamp(0, 1000);
            let m = b.int_or("m", 37)?.max(0);
            let mut children = Vec::new();
            for _ in 0..n {
                let child = tokio::process::Command::new("sleep")
                    .arg(m.to_string())
                    .kill_on_drop(true)
                    .process_group(0)
                    .spawn()
                    .map_err(|e| TaskFailure::internal(format!("cannot run sleep: {e}")))?;
                children.push(child);
            }
            ctx.registry.update_task(ctx.task_id, |t| {
                t.summary = Some(format!(
                    "pids {:?}",
                    children.iter().filter_map(|c| c.id()).collect::<Vec<_>>()
                ))
            });
            let wait_all = async {
                for c in children.iter_mut() {
                    let _ = c.wait().await;
                }
            };
            tokio::select! {
                _ = wait_all => Ok(Value::Nil),
                _ = ctx.cancel.cancelled() => {
                    for c in children.iter_mut() {
                        let _ = c.start_kill();
                    }
                    for c in children.iter_mut() {
                        let _ = c.wait().await;
                    }
                    Err(TaskFailure::Canceled)
                }
            }
        })
    }
}

/// `waittest(count, seconds=10)`: `count` sleep subtasks plus one that fails, all
/// awaited with the failing one in `canfail`.
pub struct WaitTest;
impl TaskHandler for WaitTest {
    fn method(&self) -> &'static str {
        "waittest"
    }
    fn weight(&self) -> f64 {
        0.1
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = p.bind("waittest", &["count", "seconds"])?;
            let count = b.require("count")?.as_i64().unwrap_or(0).clamp(0, 1000);
            let seconds = b.get("seconds").cloned().unwrap_or(Value::Int(10));
            let mut tasks = Vec::new();
            for i in 0..count {
                tasks.push(
                    ctx.subtask(
                        "sleep",
                        vec![seconds.clone()],
                        opts([("label", Value::from(i.to_string()))]),
                    )
                    .await?,
                );
            }
            let bad = ctx
                .subtask(
                    "sleep",
                    vec![Value::from("BAD_ARG")],
                    opts([("label", Value::from("bad"))]),
                )
                .await?;
            tasks.push(bad);
            ctx.wait(WaitSpec {
                subtasks: Some(tasks),
                all: true,
                failany: true,
                canfail: vec![bad],
                ..Default::default()
            })
            .await?;
            Ok(Value::Nil)
        })
    }
}

/// `subtask(n=4)`: a chain of `n` nested subtasks ending in a 15 s sleep.
pub struct Subtask;
impl TaskHandler for Subtask {
    fn method(&self) -> &'static str {
        "subtask"
    }
    fn weight(&self) -> f64 {
        0.1
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = p.bind("subtask", &["n"])?;
            let n = b.int_or("n", 4)?;
            let child = if n > 0 {
                ctx.subtask(
                    "subtask",
                    vec![Value::Int(n - 1)],
                    opts([("label", Value::from("foo"))]),
                )
                .await?
            } else {
                ctx.subtask(
                    "sleep",
                    vec![Value::Int(15)],
                    opts([("label", Value::from("bar"))]),
                )
                .await?
            };
            ctx.wait(WaitSpec {
                subtasks: Some(vec![child]),
                ..Default::default()
            })
            .await?;
            Ok(Value::Nil)
        })
    }
}

/// `dependantTask(wait_list, task_list)`: wait for other tasks, then run subtasks.
pub struct DependantTask;
impl TaskHandler for DependantTask {
    fn method(&self) -> &'static str {
        "dependantTask"
    }
    fn weight(&self) -> f64 {
        0.2
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = p.bind("dependantTask", &["wait_list", "task_list"])?;
            let mut wait_list = Vec::new();
            for t in b.require("wait_list")?.as_array().unwrap_or_default() {
                match t.as_i64() {
                    Some(id) if ctx.session.get_task_info(id, false).await?.is_some() => {
                        wait_list.push(id)
                    }
                    _ => tracing::debug!("invalid task id {t}, removing from wait_list"),
                }
            }
            while !wait_list.is_empty() {
                for id in wait_list.clone() {
                    if ctx.session.task_finished(id).await? {
                        let info = ctx.session.get_task_info(id, false).await?;
                        let state = info
                            .as_ref()
                            .and_then(|i| i.get("state"))
                            .and_then(Value::as_i64)
                            .and_then(TaskState::from_i64);
                        if matches!(state, Some(TaskState::Canceled) | Some(TaskState::Failed)) {
                            return Err(TaskFailure::generic(format!(
                                "Dependency {id} failed to complete."
                            )));
                        }
                        wait_list.retain(|x| *x != id);
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = ctx.cancel.cancelled() => return Err(TaskFailure::Canceled),
                }
            }
            let mut subtasks = Vec::new();
            for t in b.require("task_list")?.as_array().unwrap_or_default() {
                let parts = t.as_array().unwrap_or_default();
                let method = parts.first().and_then(Value::as_str).unwrap_or_default();
                let arglist = parts
                    .get(1)
                    .and_then(Value::as_array)
                    .map(<[Value]>::to_vec)
                    .unwrap_or_default();
                let extra = parts
                    .get(2)
                    .and_then(Value::as_struct)
                    .cloned()
                    .unwrap_or_default();
                subtasks.push(ctx.subtask(method, arglist, extra).await?);
            }
            if !subtasks.is_empty() {
                ctx.wait(WaitSpec {
                    subtasks: Some(subtasks),
                    all: true,
                    ..Default::default()
                })
                .await?;
            }
            Ok(Value::Nil)
        })
    }
}

/// `someMethod(*args)` (foreground): returns 42.
pub struct SomeMethod;
impl TaskHandler for SomeMethod {
    fn method(&self) -> &'static str {
        "someMethod"
    }
    fn foreground(&self) -> bool {
        true
    }
    fn run<'a>(
        &'a self,
        _ctx: TaskContext,
        _p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async { Ok(Value::Int(42)) })
    }
}

/// `default(*args, **opts)`: always fails "Invalid method".
pub struct DefaultTask;
impl TaskHandler for DefaultTask {
    fn method(&self) -> &'static str {
        "default"
    }
    fn weight(&self) -> f64 {
        0.1
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        _p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            Err(TaskFailure::generic(format!(
                "Invalid method: {}",
                ctx.method
            )))
        })
    }
}
