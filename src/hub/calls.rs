//! Typed wrappers for the hub calls a builder makes (notes §2.4), and the shapes of
//! their answers.

use super::session::HubSession;
use super::HubError;
use crate::xmlrpc::{Struct, Value};

/// `koji.TASK_STATES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// 0
    Free,
    /// 1
    Open,
    /// 2
    Closed,
    /// 3
    Canceled,
    /// 4
    Assigned,
    /// 5
    Failed,
}

impl TaskState {
    /// From the hub's integer.
    pub fn from_i64(v: i64) -> Option<TaskState> {
        Some(match v {
            0 => TaskState::Free,
            1 => TaskState::Open,
            2 => TaskState::Closed,
            3 => TaskState::Canceled,
            4 => TaskState::Assigned,
            5 => TaskState::Failed,
            _ => return None,
        })
    }

    /// The hub's integer.
    pub fn as_i64(self) -> i64 {
        self as i64
    }

    /// Koji's name (`FREE`, `OPEN`, …).
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Free => "FREE",
            TaskState::Open => "OPEN",
            TaskState::Closed => "CLOSED",
            TaskState::Canceled => "CANCELED",
            TaskState::Assigned => "ASSIGNED",
            TaskState::Failed => "FAILED",
        }
    }

    /// CLOSED, CANCELED or FAILED.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Closed | TaskState::Canceled | TaskState::Failed
        )
    }
}

/// `koji.BR_STATES['EXPIRED']`.
pub const BR_EXPIRED: i64 = 3;

fn field_i64(method: &str, v: &Value, key: &str) -> Result<i64, HubError> {
    v.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| HubError::protocol(method, format!("no integer {key:?} in {v}")))
}

fn list(method: &str, v: Value) -> Result<Vec<Value>, HubError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(HubError::protocol(
            method,
            format!("expected a list, got {other}"),
        )),
    }
}

/// For calls that return nothing: a replay refused with RetryError means the earlier
/// attempt ran, which is all the caller wanted.
fn done(r: Result<Value, HubError>) -> Result<(), HubError> {
    match r {
        Ok(_) | Err(HubError::TookEffect { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn ids(v: &[i64]) -> Value {
    Value::Array(v.iter().map(|i| Value::Int(*i)).collect())
}

/// `host.getHost()`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostInfo {
    /// Host id.
    pub id: i64,
    /// Host name.
    pub name: String,
    /// Enabled by the admin.
    pub enabled: bool,
    /// Capacity (sum of task weights it may carry).
    pub capacity: f64,
    /// Arches (space-separated on the hub).
    pub arches: Vec<String>,
    /// What the hub thinks of our readiness.
    pub ready: bool,
    /// Task load the hub has for us.
    pub task_load: f64,
}

impl HostInfo {
    fn from_value(v: &Value) -> Result<HostInfo, HubError> {
        let m = "host.getHost";
        Ok(HostInfo {
            id: field_i64(m, v, "id")?,
            name: v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            enabled: v.get("enabled").is_some_and(Value::truthy),
            capacity: v.get("capacity").and_then(Value::as_f64).unwrap_or(2.0),
            arches: v
                .get("arches")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            ready: v.get("ready").is_some_and(Value::truthy),
            task_load: v.get("task_load").and_then(Value::as_f64).unwrap_or(0.0),
        })
    }
}

/// One entry of `host.getTasks()`: a task the scheduler assigned to us.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignedTask {
    /// Task id.
    pub id: i64,
    /// State (ASSIGNED when it is ours to open).
    pub state: Option<TaskState>,
    /// Host it is assigned to.
    pub host_id: Option<i64>,
    /// Method.
    pub method: String,
    /// Arch.
    pub arch: String,
    /// Priority (lower is more urgent).
    pub priority: i64,
}

impl AssignedTask {
    fn from_value(v: &Value) -> Result<AssignedTask, HubError> {
        let m = "host.getTasks";
        Ok(AssignedTask {
            id: field_i64(m, v, "id")?,
            state: v
                .get("state")
                .and_then(Value::as_i64)
                .and_then(TaskState::from_i64),
            host_id: v.get("host_id").and_then(Value::as_i64),
            method: v
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            arch: v
                .get("arch")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            priority: v.get("priority").and_then(Value::as_i64).unwrap_or(20),
        })
    }
}

/// One entry of `host.getHostTasks()`: an OPEN task of ours.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTask {
    /// Task id.
    pub id: i64,
    /// Waiting for subtasks (its weight does not count).
    pub waiting: bool,
    /// Weight.
    pub weight: f64,
    /// A subtask it waits for has finished.
    pub alert: bool,
}

impl HubSession {
    /// `echo(args…)` → the args as a list.
    pub async fn echo(&self, args: Vec<Value>) -> Result<Value, HubError> {
        self.call("echo", args).await
    }

    /// `getKojiVersion()`.
    pub async fn get_koji_version(&self) -> Result<String, HubError> {
        let v = self.call("getKojiVersion", vec![]).await?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| HubError::protocol("getKojiVersion", format!("not a string: {v}")))
    }

    /// `host.getID()`.
    pub async fn host_get_id(&self) -> Result<i64, HubError> {
        let v = self.call("host.getID", vec![]).await?;
        v.as_i64()
            .ok_or_else(|| HubError::protocol("host.getID", format!("not an int: {v}")))
    }

    /// `getSessionInfo()`.
    pub async fn get_session_info(&self) -> Result<Value, HubError> {
        self.call("getSessionInfo", vec![]).await
    }

    /// `host.getHost()`.
    pub async fn host_get_host(&self) -> Result<HostInfo, HubError> {
        let v = self.call("host.getHost", vec![]).await?;
        HostInfo::from_value(&v)
    }

    /// `host.updateHost(task_load, ready, data=…)`: the heartbeat.
    pub async fn host_update_host(
        &self,
        task_load: f64,
        ready: bool,
        data: Option<Struct>,
    ) -> Result<(), HubError> {
        let mut kw = Struct::new();
        if let Some(d) = data {
            kw.insert("data".into(), Value::Struct(d));
        }
        self.call_kw(
            "host.updateHost",
            vec![Value::Double(task_load), Value::Bool(ready)],
            kw,
        )
        .await
        .map(|_| ())
    }

    /// `host.getTasks()`: the tasks the scheduler assigned to us.
    pub async fn host_get_tasks(&self) -> Result<Vec<AssignedTask>, HubError> {
        let v = self.call("host.getTasks", vec![]).await?;
        list("host.getTasks", v)?
            .iter()
            .map(AssignedTask::from_value)
            .collect()
    }

    /// `host.getHostTasks()`: our OPEN tasks.
    pub async fn host_get_host_tasks(&self) -> Result<Vec<HostTask>, HubError> {
        let m = "host.getHostTasks";
        let v = self.call(m, vec![]).await?;
        list(m, v)?
            .iter()
            .map(|t| {
                Ok(HostTask {
                    id: field_i64(m, t, "id")?,
                    waiting: t.get("waiting").is_some_and(Value::truthy),
                    weight: t.get("weight").and_then(Value::as_f64).unwrap_or(1.0),
                    alert: t.get("alert").is_some_and(Value::truthy),
                })
            })
            .collect()
    }

    /// `getTaskInfo(id, request=…)`: None for an unknown task.
    pub async fn get_task_info(
        &self,
        task_id: i64,
        request: bool,
    ) -> Result<Option<Value>, HubError> {
        let mut kw = Struct::new();
        if request {
            kw.insert("request".into(), Value::Bool(true));
        }
        let v = self
            .call_kw("getTaskInfo", vec![Value::Int(task_id)], kw)
            .await?;
        Ok(if v.is_nil() { None } else { Some(v) })
    }

    /// `host.openTask(id)`: the task (with its raw request XML), or None when the
    /// task could not be locked for us. (A lost answer whose replay was refused comes
    /// back as `HubError::TookEffect`: the task is then open for us, see
    /// `getTaskInfo`.)
    pub async fn host_open_task(&self, task_id: i64) -> Result<Option<Value>, HubError> {
        let v = self
            .call("host.openTask", vec![Value::Int(task_id)])
            .await?;
        Ok(if v.is_nil() { None } else { Some(v) })
    }

    /// `host.closeTask(id, response)`: `response` is a complete methodResponse text.
    pub async fn host_close_task(&self, task_id: i64, response: String) -> Result<(), HubError> {
        done(
            self.call(
                "host.closeTask",
                vec![Value::Int(task_id), Value::String(response)],
            )
            .await,
        )
    }

    /// `host.failTask(id, response)`: `response` is a methodResponse text with a fault.
    pub async fn host_fail_task(&self, task_id: i64, response: String) -> Result<(), HubError> {
        done(
            self.call(
                "host.failTask",
                vec![Value::Int(task_id), Value::String(response)],
            )
            .await,
        )
    }

    /// `host.freeTasks([ids])`.
    pub async fn host_free_tasks(&self, task_ids: &[i64]) -> Result<(), HubError> {
        done(self.call("host.freeTasks", vec![ids(task_ids)]).await)
    }

    /// `host.refuseTask(id, soft=…, msg=…)`.
    pub async fn host_refuse_task(
        &self,
        task_id: i64,
        soft: bool,
        msg: &str,
    ) -> Result<(), HubError> {
        let mut kw = Struct::new();
        kw.insert("soft".into(), Value::Bool(soft));
        kw.insert("msg".into(), Value::from(msg));
        done(
            self.call_kw("host.refuseTask", vec![Value::Int(task_id)], kw)
                .await,
        )
    }

    /// `host.setTaskWeight(id, weight)`.
    pub async fn host_set_task_weight(&self, task_id: i64, weight: f64) -> Result<(), HubError> {
        done(
            self.call(
                "host.setTaskWeight",
                vec![Value::Int(task_id), Value::Double(weight)],
            )
            .await,
        )
    }

    /// `host.subtask(method=…, arglist=…, parent=…, **opts)` → the child's id
    /// (idempotent per `label`).
    pub async fn host_subtask(
        &self,
        method: &str,
        arglist: Vec<Value>,
        parent: i64,
        opts: Struct,
    ) -> Result<i64, HubError> {
        let mut kw = Struct::new();
        kw.insert("method".into(), Value::from(method));
        kw.insert("arglist".into(), Value::Array(arglist));
        kw.insert("parent".into(), Value::Int(parent));
        for (k, v) in opts {
            kw.insert(k, v);
        }
        let labeled = kw.contains_key("label");
        let v = match self.call_kw("host.subtask", vec![], kw.clone()).await {
            // The child was made but the answer lost; subtasks are idempotent per
            // label, so asking again (a new call number) returns its id.
            Err(HubError::TookEffect { .. }) if labeled => {
                self.call_kw("host.subtask", vec![], kw).await?
            }
            r => r?,
        };
        v.as_i64()
            .ok_or_else(|| HubError::protocol("host.subtask", format!("not a task id: {v}")))
    }

    /// `host.taskSetWait(parent, tasks)` (None: all children).
    pub async fn host_task_set_wait(
        &self,
        parent: i64,
        tasks: Option<&[i64]>,
    ) -> Result<(), HubError> {
        self.call(
            "host.taskSetWait",
            vec![Value::Int(parent), tasks.map_or(Value::Nil, ids)],
        )
        .await
        .map(|_| ())
    }

    /// `host.taskWait(parent)` → (finished, unfinished).
    pub async fn host_task_wait(&self, parent: i64) -> Result<(Vec<i64>, Vec<i64>), HubError> {
        let m = "host.taskWait";
        let v = self.call(m, vec![Value::Int(parent)]).await?;
        let parts = list(m, v)?;
        if parts.len() != 2 {
            return Err(HubError::protocol(m, "expected [finished, unfinished]"));
        }
        let conv = |x: &Value| -> Result<Vec<i64>, HubError> {
            x.as_array()
                .ok_or_else(|| HubError::protocol(m, "expected lists"))?
                .iter()
                .map(|i| {
                    i.as_i64()
                        .ok_or_else(|| HubError::protocol(m, "expected task ids"))
                })
                .collect()
        };
        Ok((conv(&parts[0])?, conv(&parts[1])?))
    }

    /// `host.taskWaitResults(parent, tasks, canfail=…)` → `[(id, result)]`; a failed
    /// child not in `canfail` comes back as its fault.
    pub async fn host_task_wait_results(
        &self,
        parent: i64,
        tasks: Option<&[i64]>,
        canfail: Option<&[i64]>,
    ) -> Result<Vec<(i64, Value)>, HubError> {
        let m = "host.taskWaitResults";
        let mut kw = Struct::new();
        if let Some(c) = canfail {
            kw.insert("canfail".into(), ids(c));
        }
        let v = self
            .call_kw(
                m,
                vec![Value::Int(parent), tasks.map_or(Value::Nil, ids)],
                kw,
            )
            .await?;
        list(m, v)?
            .into_iter()
            .map(|pair| match pair {
                Value::Array(mut p) if p.len() == 2 => {
                    let r = p.pop().unwrap_or_default();
                    let id = p[0]
                        .as_i64()
                        .ok_or_else(|| HubError::protocol(m, "bad task id"))?;
                    Ok((id, r))
                }
                other => Err(HubError::protocol(
                    m,
                    format!("expected [id, result], got {other}"),
                )),
            })
            .collect()
    }

    /// `getTaskResult(id)`: the result, or the task's fault as an error.
    pub async fn get_task_result(&self, task_id: i64) -> Result<Value, HubError> {
        self.call("getTaskResult", vec![Value::Int(task_id)]).await
    }

    /// `taskFinished(id)`.
    pub async fn task_finished(&self, task_id: i64) -> Result<bool, HubError> {
        Ok(self
            .call("taskFinished", vec![Value::Int(task_id)])
            .await?
            .truthy())
    }

    /// `cancelTaskChildren(id)`.
    pub async fn cancel_task_children(&self, task_id: i64) -> Result<(), HubError> {
        self.call("cancelTaskChildren", vec![Value::Int(task_id)])
            .await
            .map(|_| ())
    }

    /// `listBuildroots(hostID=…, state=[…])`.
    pub async fn list_buildroots(
        &self,
        host_id: i64,
        states: &[i64],
    ) -> Result<Vec<Value>, HubError> {
        let mut kw = Struct::new();
        kw.insert("hostID".into(), Value::Int(host_id));
        kw.insert("state".into(), ids(states));
        let v = self.call_kw("listBuildroots", vec![], kw).await?;
        list("listBuildroots", v)
    }

    /// `host.setBuildRootState(id, state)`.
    pub async fn host_set_buildroot_state(&self, brootid: i64, state: i64) -> Result<(), HubError> {
        self.call(
            "host.setBuildRootState",
            vec![Value::Int(brootid), Value::Int(state)],
        )
        .await
        .map(|_| ())
    }

    /// `checkUpload(path, name, verify=…)` → `{size, mtime[, hexdigest]}` or None.
    pub async fn check_upload(
        &self,
        path: &str,
        name: &str,
        verify: Option<&str>,
    ) -> Result<Option<Value>, HubError> {
        let mut kw = Struct::new();
        if let Some(v) = verify {
            kw.insert("verify".into(), Value::from(v));
        }
        let v = self
            .call_kw(
                "checkUpload",
                vec![Value::from(path), Value::from(name)],
                kw,
            )
            .await?;
        Ok(if v.is_nil() { None } else { Some(v) })
    }

    /// `listHosts(**query)`.
    pub async fn list_hosts(&self, query: Struct) -> Result<Vec<Value>, HubError> {
        let v = self.call_kw("listHosts", vec![], query).await?;
        list("listHosts", v)
    }

    /// `getChannel(name, strict=True)`.
    pub async fn get_channel(&self, channel: Value) -> Result<Value, HubError> {
        let mut kw = Struct::new();
        kw.insert("strict".into(), Value::Bool(true));
        self.call_kw("getChannel", vec![channel], kw).await
    }
}
