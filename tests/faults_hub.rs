//! Hub faults (issue 8, item 1): the hub down when the daemon starts and while a task
//! runs, the hub answering faults, garbage, HTTP errors, or nothing at all. The
//! promise checked: the daemon keeps going, and a task's result reaches the hub once
//! it is back — or the task is freed and run again — never silently lost.
//!
//! The loop runs in-process (`support::spawn`) except where the binary's own start-up
//! is the point (`koji-adjutant daemon` against a hub that is down).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use koji_adjutant::daemon::{
    default_handlers, BoxFuture, Daemon, HandlerRegistry, TaskContext, TaskFailure, TaskHandler,
    TaskParams,
};
use koji_adjutant::registry::{Registry, TaskPhase};
use koji_adjutant::xmlrpc::{MethodResponse, Value};
use support::buildhost::DaemonProc;
use support::fakehub::{fault, Action, FakeHub, CLOSED, FREE, OPEN};
use support::{config, spawn, wait_until};
use tokio_util::sync::CancellationToken;

/// A task that runs until its gate opens, then returns "done".
struct Gated(Arc<AtomicBool>);
impl TaskHandler for Gated {
    fn method(&self) -> &'static str {
        "gated"
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        _p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            while !self.0.load(Ordering::SeqCst) {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Err(TaskFailure::Canceled),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            Ok(Value::from("done"))
        })
    }
}

fn gated() -> (HandlerRegistry, Arc<AtomicBool>) {
    let gate = Arc::new(AtomicBool::new(false));
    let mut h = default_handlers();
    h.register(Arc::new(Gated(gate.clone())));
    (h, gate)
}

fn done(hub: &FakeHub, t: i64) {
    match hub.result(t) {
        Some(MethodResponse::Params(p)) => assert_eq!(p, vec![Value::from("done")]),
        other => panic!("task {t}: {other:?}"),
    }
}

fn phase(reg: &Registry, t: i64) -> Option<TaskPhase> {
    reg.snapshot().tasks.get(&t).map(|r| r.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_binary_waits_for_a_hub_that_is_down_at_start() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    config(
        &hub.url(),
        1,
        dir.path(),
        "retry_interval = 1\nmax_retries = 60\nadjutant.status_bind = ",
    );
    hub.stop();
    let log = dir.path().join("daemon.log");
    let _d = DaemonProc::spawn(&dir.path().join("kojid-1.conf"), &log);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("the daemon says it retries", || {
        text().matches("cannot reach the hub").count() >= 2
    })
    .await;
    assert!(hub.calls_of("login").is_empty());
    hub.restart().await;
    let t = hub.make_task("sleep", vec![Value::Int(0)]);
    wait_until("task closed by the daemon that waited", || {
        hub.task(t).state == CLOSED
    })
    .await;
    assert_eq!(hub.calls_of("login").len(), 1, "{}", text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_binary_gives_up_on_a_hub_that_stays_down() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    config(
        &hub.url(),
        1,
        dir.path(),
        "retry_interval = 1\nmax_retries = 1\nadjutant.status_bind = ",
    );
    hub.stop();
    let log = dir.path().join("daemon.log");
    let mut d = DaemonProc::spawn(&dir.path().join("kojid-1.conf"), &log);
    let mut st = None;
    wait_until("the daemon exits", || {
        st = d.try_exit();
        st.is_some()
    })
    .await;
    assert_eq!(st.unwrap().code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Unable to connect to server"), "{text}");
    assert!(text.contains(&hub.url()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_ends_the_wait_for_the_hub() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&hub.url(), 1, dir.path(), "retry_interval = 3600");
    hub.stop();
    let shutdown = CancellationToken::new();
    let c = tokio::spawn(Daemon::connect(
        cfg,
        default_handlers(),
        Registry::default(),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    let r = tokio::time::timeout(Duration::from_secs(30), c)
        .await
        .expect("the wait did not end")
        .unwrap();
    let e = r.err().expect("connected to a stopped hub");
    assert!(e.to_string().contains("Unable to connect to server"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_reaches_the_hub_after_an_outage() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (h, gate) = gated();
    let d = spawn(
        config(
            &hub.url(),
            1,
            dir.path(),
            "retry_interval = 1\nmax_retries = 60",
        ),
        Some(h),
    )
    .await;
    let t = hub.make_task("gated", vec![]);
    wait_until("open", || hub.task(t).state == OPEN).await;
    hub.stop();
    // the task ends while the hub is away: host.closeTask is retried
    gate.store(true, Ordering::SeqCst);
    // a few of closeTask's retries (every second) go to the closed port
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hub.task(t).state, OPEN);
    hub.restart().await;
    wait_until("closed", || hub.task(t).state == CLOSED).await;
    done(&hub, t);
    assert_eq!(hub.task(t).opened, 1, "run once");
    assert_eq!(hub.calls_of("host.closeTask").len(), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_lost_after_the_retries_is_freed_and_run_again() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (h, gate) = gated();
    let d = spawn(
        config(
            &hub.url(),
            1,
            dir.path(),
            "retry_interval = 1\nmax_retries = 1",
        ),
        Some(h),
    )
    .await;
    let t = hub.make_task("gated", vec![]);
    wait_until("open", || hub.task(t).state == OPEN).await;
    hub.stop();
    gate.store(true, Ordering::SeqCst);
    // closeTask fails for good (1 try + 1 retry): the result is gone with it
    wait_until("the task ended locally", || {
        phase(&d.registry, t) == Some(TaskPhase::Closed)
    })
    .await;
    assert_eq!(hub.task(t).state, OPEN);
    hub.restart().await;
    // back: the hub still lists the task OPEN here, the daemon no longer runs it → freed,
    // assigned again and run again
    wait_until("closed", || hub.task(t).state == CLOSED).await;
    done(&hub, t);
    assert_eq!(hub.task(t).opened, 2);
    let freed = hub.calls_of("host.freeTasks");
    assert!(
        freed
            .iter()
            .any(|c| c.params[0] == Value::Array(vec![Value::Int(t)])),
        "{freed:?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_garbage_http_errors_and_silence_from_the_hub() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (h, gate) = gated();
    // `timeout`: a call the hub does not answer fails after 2 s and is retried
    let d = spawn(
        config(
            &hub.url(),
            1,
            dir.path(),
            "retry_interval = 1\nmax_retries = 10\ntimeout = 2",
        ),
        Some(h),
    )
    .await;
    wait_until("polling", || !hub.calls_of("host.getTasks").is_empty()).await;
    // the loop's own calls: a fault ends an iteration, the rest are retried
    hub.inject(
        "host.getTasks",
        2,
        Action::Fault(fault(1000, "database is on fire")),
    );
    hub.inject("host.updateHost", 2, Action::Garbage);
    hub.inject("host.getHostTasks", 2, Action::HttpStatus(502));
    hub.inject("host.getHost", 1, Action::Hang(Duration::from_secs(30)));
    // a task's result: garbage, then silence, then it goes through
    hub.inject("host.closeTask", 1, Action::Garbage);
    hub.inject("host.closeTask", 1, Action::Hang(Duration::from_secs(30)));
    let t = hub.make_task("gated", vec![]);
    wait_until("open", || hub.task(t).state == OPEN).await;
    gate.store(true, Ordering::SeqCst);
    wait_until("closed", || hub.task(t).state == CLOSED).await;
    done(&hub, t);
    assert_eq!(hub.task(t).opened, 1);
    hub.with(|s| assert!(s.injections.is_empty(), "{:?}", s.injections));
    let close = hub.calls_of("host.closeTask");
    let outcomes: Vec<_> = close.iter().map(|c| c.outcome).collect();
    assert_eq!(outcomes, [Err(-1), Err(-2), Ok(())]);
    // a fault on host.closeTask is final (kojid's rule): the result is lost, the task
    // freed when the hub lists it again and run once more — not forgotten
    hub.inject(
        "host.closeTask",
        1,
        Action::Fault(fault(1000, "transaction aborted")),
    );
    let t2 = hub.make_task("gated", vec![]);
    wait_until("t2 closed", || hub.task(t2).state == CLOSED).await;
    done(&hub, t2);
    assert_eq!(hub.task(t2).opened, 2);
    // still one daemon, still polling
    let polls = hub.with(|s| s.hosts[&1].update_calls);
    wait_until("still polling", || {
        hub.with(|s| s.hosts[&1].update_calls) > polls
    })
    .await;
    assert_eq!(hub.task(t2).state, CLOSED);
    let _ = FREE;
    d.stop().await;
}
