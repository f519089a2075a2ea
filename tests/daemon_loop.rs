//! End-to-end tests of the daemon loop against the fake hub.

mod support;

use std::sync::Arc;

use koji_adjutant::daemon::{
    default_handlers, BoxFuture, DaemonExit, TaskContext, TaskFailure, TaskHandler, TaskParams,
};
use koji_adjutant::xmlrpc::{MethodResponse, Value};
use support::fakehub::{self, FakeHub, ASSIGNED, CANCELED, CLOSED, FAILED, FREE, OPEN};
use support::{config, spawn, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_task_is_run_and_closed_with_xml_text() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(config(&hub.url(), 1, dir.path(), ""), None).await;
    let t = hub.make_task("sleep", vec![Value::Int(0)]);
    let some = hub.make_task("someMethod", vec![]);
    wait_until("tasks closed", || {
        hub.task(t).state == CLOSED && hub.task(some).state == CLOSED
    })
    .await;
    // results are stored as the XML text kojid sends
    let text = hub.task(t).result.unwrap();
    assert_eq!(
        text,
        "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><nil/></value></param>\n</params>\n</methodResponse>\n"
    );
    assert_eq!(
        hub.result(some),
        Some(MethodResponse::Params(vec![Value::Int(42)]))
    );
    // the weight of sleep was set
    assert_eq!(hub.task(t).weight, 0.25);
    // the host checked in with its methods and maxjobs
    let data = hub.with(|s| s.hosts[&1].data.clone());
    let methods = data
        .get("methods")
        .and_then(Value::as_array)
        .unwrap()
        .to_vec();
    assert!(methods.contains(&Value::from("sleep")));
    assert_eq!(data.get("maxjobs"), Some(&Value::Int(10)));
    assert_eq!(d.stop().await, DaemonExit::Stopped);
    // after a stop the host is not ready and the session is closed
    hub.with(|s| {
        assert!(!s.hosts[&1].ready);
        assert!(s.sessions.values().all(|x| x.closed));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_are_refused_so_the_queue_moves() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(config(&hub.url(), 1, dir.path(), ""), None).await;
    let bad = hub.make_task("buildMaven", vec![Value::from("x")]);
    let good = hub.make_task("sleep", vec![Value::Int(0)]);
    wait_until("good task closed", || hub.task(good).state == CLOSED).await;
    wait_until("refusal recorded", || hub.with(|s| !s.refusals.is_empty())).await;
    let refusals = hub.with(|s| s.refusals.clone());
    assert_eq!(
        refusals[0],
        (bad, 1, false, "no handler for method".to_string())
    );
    assert_eq!(hub.task(bad).state, FREE);
    assert_eq!(hub.task(bad).opened, 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_sent_as_fault_text() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(config(&hub.url(), 1, dir.path(), ""), None).await;
    let bad_arg = hub.make_task("sleep", vec![Value::from("BAD_ARG")]);
    let default = hub.make_task("default", vec![Value::Int(1)]);
    let too_many = hub.make_task("sleep", vec![Value::Int(1), Value::Int(2)]);
    wait_until("all failed", || {
        [bad_arg, default, too_many]
            .iter()
            .all(|t| hub.task(*t).state == FAILED)
    })
    .await;
    let f = |t| match hub.result(t) {
        Some(MethodResponse::Fault(f)) => f,
        other => panic!("not a fault: {other:?}"),
    };
    assert_eq!(f(bad_arg).code, 1);
    assert!(
        f(bad_arg).string.contains("TypeError"),
        "{}",
        f(bad_arg).string
    );
    assert_eq!(f(default).code, 1000);
    assert_eq!(f(default).string, "Invalid method: default");
    assert_eq!(f(too_many).code, 1019);
    assert!(hub
        .task(bad_arg)
        .result
        .unwrap()
        .starts_with("<?xml version='1.0'?>\n<methodResponse>\n<fault>\n"));
    d.stop().await;
}

/// A handler whose host check always fails.
struct Picky;
impl TaskHandler for Picky {
    fn method(&self) -> &'static str {
        "picky"
    }
    fn host_check<'a>(
        &'a self,
        _ctx: &'a koji_adjutant::daemon::HostCheckContext,
        _params: &'a TaskParams,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async { Ok(false) })
    }
    fn run<'a>(
        &'a self,
        _ctx: TaskContext,
        _p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async { Ok(Value::Nil) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_host_check_refuses_hard() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut handlers = default_handlers();
    handlers.register(Arc::new(Picky));
    let d = spawn(config(&hub.url(), 1, dir.path(), ""), Some(handlers)).await;
    let t = hub.make_task("picky", vec![]);
    wait_until("refused", || hub.with(|s| !s.refusals.is_empty())).await;
    let r = hub.with(|s| s.refusals[0].clone());
    assert_eq!(r, (t, 1, false, "failed host check".to_string()));
    assert_eq!(hub.task(t).opened, 0);
    d.stop().await;
}

/// A handler that panics.
struct Panicky;
impl TaskHandler for Panicky {
    fn method(&self) -> &'static str {
        "panicky"
    }
    fn run<'a>(
        &'a self,
        _ctx: TaskContext,
        _p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async { panic!("handler bug") })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_task() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut handlers = default_handlers();
    handlers.register(Arc::new(Panicky));
    let d = spawn(config(&hub.url(), 1, dir.path(), ""), Some(handlers)).await;
    let t = hub.make_task("panicky", vec![]);
    wait_until("failed", || hub.task(t).state == FAILED).await;
    match hub.result(t) {
        Some(MethodResponse::Fault(f)) => {
            assert_eq!(f.code, 1);
            assert!(f.string.contains("handler bug"), "{}", f.string);
        }
        other => panic!("{other:?}"),
    }
    // and the daemon goes on
    let t2 = hub.make_task("sleep", vec![Value::Int(0)]);
    wait_until("next task closed", || hub.task(t2).state == CLOSED).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_concurrently_up_to_capacity_and_maxjobs() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(config(&hub.url(), 1, dir.path(), "maxjobs = 3"), None).await;
    let ids: Vec<i64> = (0..5)
        .map(|_| hub.make_task("sleep", vec![Value::Int(2)]))
        .collect();
    wait_until("all closed", || {
        ids.iter().all(|t| hub.task(*t).state == CLOSED)
    })
    .await;
    let max = hub.with(|s| s.max_open.get(&1).copied().unwrap_or(0));
    assert!(max >= 2, "tasks did not overlap (max open {max})");
    assert!(max <= 3, "maxjobs exceeded (max open {max})");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_tasks_and_dead_buildroots_are_cleaned_at_start() {
    let hub = FakeHub::start(1).await;
    // a task left OPEN by a previous daemon, and its buildroot
    let stale = hub.make_task("sleep", vec![Value::Int(100)]);
    hub.with(|s| {
        let t = s.tasks.get_mut(&stale).unwrap();
        t.state = OPEN;
        t.host_id = Some(1);
        s.buildroots.insert(
            7,
            fakehub::Buildroot {
                id: 7,
                host_id: 1,
                task_id: Some(stale),
                state: 2,
            },
        );
        s.buildroots.insert(
            8,
            fakehub::Buildroot {
                id: 8,
                host_id: 1,
                task_id: None,
                state: 0,
            },
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(config(&hub.url(), 1, dir.path(), ""), None).await;
    wait_until("buildroots expired", || {
        hub.with(|s| s.buildroots.values().all(|b| b.state == 3))
    })
    .await;
    // freed, then (as nothing else is queued) scheduled and run again by us
    wait_until("stale task freed", || {
        hub.calls_of("host.freeTasks")
            .iter()
            .any(|c| c.params.first() == Some(&Value::Array(vec![Value::Int(stale)])))
    })
    .await;
    hub.cancel(stale);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceled_task_is_killed_within_a_loop() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(config(&hub.url(), 1, dir.path(), ""), None).await;
    let t = hub.make_task("fork", vec![Value::Int(2), Value::Int(300)]);
    wait_until("fork running", || {
        d.registry
            .snapshot()
            .tasks
            .get(&t)
            .is_some_and(|r| r.summary.as_deref().is_some_and(|s| s.starts_with("pids")))
    })
    .await;
    let pids: Vec<i32> = {
        let s = d.registry.snapshot().tasks[&t].summary.clone().unwrap();
        s.trim_start_matches("pids [")
            .trim_end_matches(']')
            .split(", ")
            .map(|p| p.parse().unwrap())
            .collect()
    };
    assert_eq!(pids.len(), 2);
    for p in &pids {
        assert!(std::path::Path::new(&format!("/proc/{p}")).exists());
    }
    hub.cancel(t);
    wait_until("task killed", || {
        d.registry.snapshot().tasks[&t].phase == koji_adjutant::registry::TaskPhase::Canceled
    })
    .await;
    for p in &pids {
        // gone or a zombie being reaped
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "process {p} still alive: {stat}"
        );
    }
    assert_eq!(hub.task(t).state, CANCELED);
    assert!(
        hub.task(t).result.is_none(),
        "a canceled task must not be closed"
    );
    // its subsession was closed
    wait_until("subsessions closed", || {
        hub.with(|s| {
            s.sessions
                .values()
                .filter(|x| x.master.is_some())
                .all(|x| x.closed)
        })
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_frees_running_tasks_and_logs_out() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(config(&hub.url(), 1, dir.path(), ""), None).await;
    let t = hub.make_task("sleep", vec![Value::Int(300)]);
    wait_until("task open", || hub.task(t).state == OPEN).await;
    assert_eq!(d.stop().await, DaemonExit::Stopped);
    let task = hub.task(t);
    assert_eq!(task.state, FREE, "unfinished task given back");
    assert!(task.result.is_none());
    hub.with(|s| {
        assert!(!s.hosts[&1].ready);
        assert_eq!(s.hosts[&1].task_load, 0.0);
        assert!(s.sessions.values().all(|x| x.closed));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_shutdown_task_stops_the_daemon() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(config(&hub.url(), 1, dir.path(), ""), None).await;
    let t = hub.make_task("shutdown", vec![]);
    assert_eq!(d.join().await, DaemonExit::Stopped);
    // as kojid: the task is given back (freed) by the shutdown
    assert_eq!(hub.task(t).state, FREE);
    hub.cancel(t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtasks_and_waiting() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(config(&hub.url(), 1, dir.path(), ""), None).await;
    let chain = hub.make_task("subtask", vec![Value::Int(1)]);
    let wt = hub.make_task("waittest", vec![Value::Int(2), Value::Int(0)]);
    wait_until("waittest closed", || hub.task(wt).state == CLOSED).await;
    // the BAD_ARG child failed, which waittest allows
    let kids: Vec<fakehub::Task> = hub.with(|s| {
        s.tasks
            .values()
            .filter(|t| t.parent == Some(wt))
            .cloned()
            .collect()
    });
    assert_eq!(kids.len(), 3);
    assert_eq!(kids.iter().filter(|k| k.state == FAILED).count(), 1);
    assert_eq!(kids.iter().filter(|k| k.state == CLOSED).count(), 2);
    // subtask(1) → subtask(0) → sleep 15: cancel it once the leaf runs
    wait_until("leaf sleep open", || {
        hub.with(|s| {
            s.tasks.values().any(|t| {
                t.method == "sleep" && t.label.as_deref() == Some("bar") && t.state == OPEN
            })
        })
    })
    .await;
    hub.cancel(chain);
    wait_until("nothing running", || {
        d.registry
            .snapshot()
            .tasks
            .values()
            .all(|t| t.finished.is_some())
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_task_restarts_once_idle() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&hub.url(), 1, dir.path(), "");
    let d = spawn(cfg.clone(), None).await;
    let busy = hub.make_task("sleep", vec![Value::Int(2)]);
    wait_until("busy open", || hub.task(busy).state == OPEN).await;
    let host = Value::struct_from([("id", Value::Int(1)), ("name", Value::from("builder1"))]);
    let r = hub.make_task("restart", vec![host]);
    // restart runs, then the daemon waits for the running task before restarting
    assert_eq!(d.join().await, DaemonExit::Restart);
    assert_eq!(hub.task(r).state, CLOSED);
    assert_eq!(
        hub.task(busy).state,
        CLOSED,
        "running work finished before the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_hosts_completes_across_a_restart() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&hub.url(), 1, dir.path(), "");
    let d = spawn(cfg.clone(), None).await;
    let rh = hub.make_task("restartHosts", vec![]);
    assert_eq!(d.join().await, DaemonExit::Restart);
    // what kojid's execv does: a new process logs in and goes on
    let d2 = spawn(cfg, None).await;
    wait_until("restartHosts closed", || hub.task(rh).state == CLOSED).await;
    let kids: Vec<fakehub::Task> = hub.with(|s| {
        s.tasks
            .values()
            .filter(|t| t.parent == Some(rh))
            .cloned()
            .collect()
    });
    assert_eq!(kids.len(), 2);
    assert!(kids.iter().all(|k| k.state == CLOSED), "{kids:?}");
    d2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_daemons_share_the_queue() {
    let hub = FakeHub::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let d1 = spawn(config(&hub.url(), 1, dir.path(), ""), None).await;
    let d2 = spawn(config(&hub.url(), 2, dir.path(), ""), None).await;
    let ids: Vec<i64> = (0..12)
        .map(|_| hub.make_task("sleep", vec![Value::Int(1)]))
        .collect();
    wait_until("all closed", || {
        ids.iter().all(|t| hub.task(*t).state == CLOSED)
    })
    .await;
    let hosts: Vec<i64> = ids.iter().map(|t| hub.task(*t).host_id.unwrap()).collect();
    assert!(hosts.contains(&1) && hosts.contains(&2), "{hosts:?}");
    // every task ran exactly once
    assert!(ids.iter().all(|t| hub.task(*t).opened == 1));
    d1.stop().await;
    d2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_tasks_are_opened_in_the_next_poll() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(config(&hub.url(), 1, dir.path(), "sleeptime = 5"), None).await;
    wait_until("first check-in", || {
        hub.with(|s| s.hosts[&1].update_calls >= 1)
    })
    .await;
    let t = hub.make_task("sleep", vec![Value::Int(0)]);
    // assign it (as the scheduler would) and remember where we are in the call log
    let mark = hub.with(|s| {
        let x = s.tasks.get_mut(&t).unwrap();
        x.state = ASSIGNED;
        x.host_id = Some(1);
        s.calls.len()
    });
    wait_until("opened", || hub.task(t).opened == 1).await;
    let calls = hub.with(|s| s.calls[mark..].to_vec());
    let open_at = calls
        .iter()
        .position(|c| c.method == "host.openTask" && c.params.first() == Some(&Value::Int(t)))
        .unwrap();
    let polls = calls[..open_at]
        .iter()
        .filter(|c| c.method == "host.getTasks")
        .count();
    assert_eq!(
        polls,
        1,
        "opened after {polls} polls: {:?}",
        calls[..open_at]
            .iter()
            .map(|c| &c.method)
            .collect::<Vec<_>>()
    );
    d.stop().await;
}
