//! The daemon loop through hub trouble: a hub restart, expired sessions, an offline
//! hub, a connection dropped in the middle of an upload, and a forced takeover.

mod support;

use std::sync::Arc;
use std::time::Duration;

use koji_adjutant::daemon::{
    default_handlers, BoxFuture, DaemonExit, TaskContext, TaskFailure, TaskHandler, TaskParams,
};
use koji_adjutant::xmlrpc::{MethodResponse, Value};
use support::fakehub::{Action, FakeHub, CLOSED};
use support::{config, spawn, wait_until};

/// Writes a file and a log in its workdir and uploads them (as a build task would).
struct Uploading;
impl TaskHandler for Uploading {
    fn method(&self) -> &'static str {
        "uploadTest"
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = p.bind("uploadTest", &["size"])?;
            let size = b.int_or("size", 1000)? as usize;
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let file = ctx.work_path("out.bin");
            tokio::fs::write(&file, &data)
                .await
                .map_err(|e| TaskFailure::internal(e.to_string()))?;
            let log = ctx.work_path("build.log");
            tokio::fs::write(&log, b"building\n")
                .await
                .map_err(|e| TaskFailure::internal(e.to_string()))?;
            let stream = ctx.stream_log(&log, "build.log");
            let step = ctx.step("upload");
            let up = ctx.uploader.upload_file(&file, None).await?;
            step.end("ok");
            tokio::fs::write(&log, b"building\ndone\n")
                .await
                .map_err(|e| TaskFailure::internal(e.to_string()))?;
            stream.finish().await?;
            Ok(Value::struct_from([
                ("files", Value::Array(vec![Value::from(up.relpath)])),
                (
                    "logs",
                    Value::Array(vec![Value::from(format!(
                        "{}/build.log",
                        ctx.uploader.dir()
                    ))]),
                ),
            ]))
        })
    }
}

fn handlers() -> koji_adjutant::daemon::HandlerRegistry {
    let mut h = default_handlers();
    h.register(Arc::new(Uploading));
    h
}

fn files_of(hub: &FakeHub, t: i64) -> (String, String) {
    match hub.result(t) {
        Some(MethodResponse::Params(p)) => (
            p[0].get("files").unwrap().as_array().unwrap()[0]
                .as_str()
                .unwrap()
                .to_owned(),
            p[0].get("logs").unwrap().as_array().unwrap()[0]
                .as_str()
                .unwrap()
                .to_owned(),
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_uploads_survive_a_dropped_connection() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(
        config(&hub.url(), 1, dir.path(), "max_retries = 2"),
        Some(handlers()),
    )
    .await;
    // an upload chunk breaks in the middle three times in a row: the immediate
    // reconnect and the first retry fail too, the second retry (same offset) passes
    hub.inject("rawUpload", 3, Action::DropUploadAfter(30_000));
    let t = hub.make_task("uploadTest", vec![Value::Int(3_000_000)]);
    wait_until("closed", || hub.task(t).state == CLOSED).await;
    let (file, log) = files_of(&hub, t);
    let got = support::fakehub::read_uploaded(&hub, &file).unwrap();
    let want: Vec<u8> = (0..3_000_000).map(|i| (i % 251) as u8).collect();
    assert!(got == want, "uploaded file differs ({} bytes)", got.len());
    assert_eq!(
        support::fakehub::read_uploaded(&hub, &log).unwrap(),
        b"building\ndone\n"
    );
    // the registry saw the step
    let rec = d.registry.snapshot().tasks[&t].clone();
    assert_eq!(rec.steps[0].name, "upload");
    assert_eq!(rec.steps[0].status.as_deref(), Some("ok"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_survives_a_hub_restart() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(
        config(&hub.url(), 1, dir.path(), "retry_interval = 1"),
        Some(handlers()),
    )
    .await;
    let t1 = hub.make_task("sleep", vec![Value::Int(3)]);
    wait_until("t1 open", || hub.task(t1).state == support::fakehub::OPEN).await;
    hub.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    hub.restart().await;
    let t2 = hub.make_task("uploadTest", vec![Value::Int(10)]);
    wait_until("both closed", || {
        hub.task(t1).state == CLOSED && hub.task(t2).state == CLOSED
    })
    .await;
    assert_eq!(
        hub.task(t1).opened,
        1,
        "the task that ran across the restart was not run twice"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_and_an_offline_hub_do_not_stop_the_loop() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(config(&hub.url(), 1, dir.path(), ""), Some(handlers())).await;
    let t1 = hub.make_task("sleep", vec![Value::Int(2)]);
    wait_until("t1 open", || hub.task(t1).state == support::fakehub::OPEN).await;
    hub.expire_sessions();
    wait_until("t1 closed", || hub.task(t1).state == CLOSED).await;
    hub.with(|s| s.offline = true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    hub.with(|s| s.offline = false);
    let t2 = hub.make_task("sleep", vec![Value::Int(0)]);
    wait_until("t2 closed", || hub.task(t2).state == CLOSED).await;
    assert!(!hub.calls_of("login").is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_takeover_ends_the_old_daemon() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let old = spawn(config(&hub.url(), 1, dir.path(), ""), None).await;
    // without --force-lock the newcomer is refused
    let mut cfg = (*config(&hub.url(), 1, dir.path(), "")).clone();
    cfg.flags.force_lock = false;
    let r = koji_adjutant::daemon::Daemon::connect(
        Arc::new(cfg),
        default_handlers(),
        koji_adjutant::registry::Registry::default(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    let e = r.err().expect("connected without the lock");
    assert!(e.to_string().contains("--force-lock"), "{e}");
    // with it, the newcomer wins and the old daemon stops on its auth error
    let new = spawn(config(&hub.url(), 1, dir.path(), ""), None).await;
    match old.join().await {
        DaemonExit::Fatal(msg) => assert!(msg.contains("Authentication"), "{msg}"),
        other => panic!("{other:?}"),
    }
    let t = hub.make_task("sleep", vec![Value::Int(0)]);
    wait_until("closed by the new daemon", || hub.task(t).state == CLOSED).await;
    new.stop().await;
}
