//! The status server end to end: the real daemon against the fake hub, with a task
//! handler that does what a build task will (steps, a container, usage, a log), and
//! the JSON API, metrics, dashboard, limits and secrets checked from outside.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use koji_adjutant::daemon::{
    default_handlers, BoxFuture, TaskContext, TaskFailure, TaskHandler, TaskParams,
};
use koji_adjutant::registry::{
    ContainerStart, ContainerUsage, LimitsRecord, MountRecord, Registry,
};
use koji_adjutant::status::{Limits, ServerInfo, StatusServer, StatusState};
use koji_adjutant::xmlrpc::Value;
use serde_json::Value as J;
use support::fakehub::{fault, Action, FakeHub, CLOSED, FAILED};
use support::{config, spawn, wait_until, wait_until_async, Running};
use tokio::sync::Semaphore;

/// The tag the fake build records: hostile markup, which every page must escape.
const TAG: &str = "f40-build<script>document.title='pwned'</script>";
/// The SMTP password configured (a secret the outputs must never show).
const SMTP_PASS: &str = "smtp-very-secret";
/// The hub password of builder1 (support::config).
const HUB_PASS: &str = "builder1-pw";

/// A stand-in for a build task: records what a buildArch handler will (tag,
/// source, image and policy rule, buildroot, steps, a container with limits and
/// usage, a streamed log), then holds until the test releases it.
struct FakeBuild {
    gate: Arc<Semaphore>,
}

impl TaskHandler for FakeBuild {
    fn method(&self) -> &'static str {
        "fakebuild"
    }
    fn weight(&self) -> f64 {
        1.5
    }
    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        p: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = p.bind("fakebuild", &["fail"])?;
            let fail = b.get("fail").is_some_and(Value::truthy);
            let id = ctx.task_id;
            let reg = ctx.registry.clone();
            reg.update_task(id, |t| {
                t.tag = Some(TAG.into());
                t.srpm = Some(format!("work/tasks/{id}/hello-1.0-1.src.rpm"));
                t.image = Some("registry.example/fedora:40".into());
                t.policy_rule = Some("tag_arch f40-build/x86_64".into());
                t.buildroot_id = Some(500 + id);
            });
            let pull = ctx.step("pull");
            reg.metrics().image_pull(1000, 0.5);
            reg.metrics().unpack(4 << 20, 0.25);
            reg.metrics().buildroot_cache(false);
            pull.end("ok");
            let cid = format!("ctr-{id}");
            reg.container_started(ContainerStart {
                id: cid.clone(),
                task_id: Some(id),
                image: "registry.example/fedora:40".into(),
                image_digest: Some("sha256:0123456789abcdef".into()),
                pid: Some(std::process::id() as i32),
                mounts: vec![MountRecord {
                    source: "/mnt/koji".into(),
                    target: "/mnt/koji".into(),
                    read_only: true,
                }],
                network: "none".into(),
                limits: LimitsRecord {
                    memory_bytes: Some(2 << 30),
                    cpus: Some(2.0),
                    pids: Some(4096),
                },
                limits_available: true,
                command: vec!["/usr/bin/rpmbuild".into(), "--rebuild".into()],
                workdir: Some("/builddir".into()),
                user: Some("1000:1000".into()),
            });
            reg.metrics().container_start(0.02);
            reg.container_usage(
                &cid,
                ContainerUsage {
                    cpu_seconds: 1.5,
                    memory_bytes: 1 << 20,
                    peak_memory: 3 << 20,
                    pids: 4,
                    oom_kills: 1,
                },
            );
            let build = ctx.step("build");
            let log = ctx.work_path("build.log");
            let mut text = String::new();
            for i in 1..=300 {
                text.push_str(&format!("build line {i}\n"));
            }
            text.push_str(&format!("login with {HUB_PASS} <b>bold</b>\n"));
            text.push_str("last line\n");
            std::fs::write(&log, text).map_err(|e| TaskFailure::internal(e.to_string()))?;
            let stream = ctx.stream_log(&log, "build.log");
            std::fs::write(ctx.work_path("root.log"), "root log\n")
                .map_err(|e| TaskFailure::internal(e.to_string()))?;
            reg.update_task(id, |t| {
                t.logs.insert(
                    "root.log".into(),
                    ctx.work_path("root.log").display().to_string(),
                );
            });
            tokio::select! {
                p = self.gate.acquire() => { if let Ok(p) = p { p.forget() } }
                _ = ctx.cancel.cancelled() => return Err(TaskFailure::Canceled),
            }
            reg.container_exited(&cid, Some(if fail { 1 } else { 0 }));
            reg.container_finished(&cid);
            stream.finish().await?;
            if fail {
                build.end("rpmbuild exited 1");
                return Err(TaskFailure::build("rpmbuild failed: <b>bad</b>"));
            }
            build.end("ok");
            Ok(Value::from("built"))
        })
    }
}

struct Env {
    hub: FakeHub,
    daemon: Option<Running>,
    server: Option<StatusServer>,
    base: String,
    gate: Arc<Semaphore>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        Env::start_with(Limits::default()).await
    }

    async fn start_with(limits: Limits) -> Env {
        let hub = FakeHub::start(1).await;
        // a real capacity, not the prototype's hard-coded 4
        hub.with(|s| s.hosts.get_mut(&1).unwrap().capacity = 6.5);
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            &hub.url(),
            1,
            dir.path(),
            &format!("smtp_pass = {SMTP_PASS}\nadjutant_monitoring_bind = 127.0.0.1:0"),
        );
        assert_eq!(cfg.adjutant.status_bind.addr().unwrap().port(), 0);
        let gate = Arc::new(Semaphore::new(0));
        let mut handlers = default_handlers();
        handlers.register(Arc::new(FakeBuild { gate: gate.clone() }));
        let daemon = spawn(cfg.clone(), Some(handlers)).await;
        let server = if limits == Limits::default() {
            StatusServer::from_config(&cfg, daemon.registry.clone())
                .await
                .unwrap()
                .expect("status server enabled")
        } else {
            let state = Arc::new(StatusState {
                registry: daemon.registry.clone(),
                info: ServerInfo::from_config(&cfg),
                limits,
            });
            StatusServer::start("127.0.0.1:0".parse().unwrap(), state)
                .await
                .unwrap()
        };
        let base = format!("http://{}", server.local_addr());
        Env {
            hub,
            daemon: Some(daemon),
            server: Some(server),
            base,
            gate,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn registry(&self) -> &Registry {
        &self.daemon.as_ref().unwrap().registry
    }

    fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    async fn json(&self, path: &str) -> J {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/json; charset=utf-8",
            "GET {path}"
        );
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        r.json().await.unwrap()
    }

    async fn text(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.text().await.unwrap()
    }

    fn make(&self, method: &str, args: Vec<Value>) -> i64 {
        self.hub
            .with(|s| s.make_task(method, args, "x86_64", 20, None))
    }

    /// Wait until task `id` is in its build step here.
    async fn building(&self, id: i64) {
        let reg = self.registry().clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let snap = reg.snapshot();
            if snap.tasks.get(&id).is_some_and(|t| {
                t.steps.iter().any(|s| s.name == "build") && t.logs.contains_key("root.log")
            }) {
                return;
            }
            // (kojid's readiness rules apply: e.g. a load average over 4 per CPU
            // keeps the host from taking tasks)
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} never reached its build step; host ready: {}, why not: {:?}",
                snap.host.ready,
                snap.host.not_ready_reason
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn healthy(&self) {
        wait_until_async("status healthy", || async {
            self.json("/api/v1/status").await["status"] == "healthy"
        })
        .await;
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
    }
}

fn keys(v: &J) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

fn has_keys(v: &J, want: &[&str]) {
    let k = keys(v);
    for w in want {
        assert!(k.contains(w), "missing {w:?} in {v:#}");
    }
}

fn iso_ok(v: &J) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_api_shapes_while_a_task_runs_and_after() {
    let env = Env::start().await;
    let id = env.make("fakebuild", vec![]);
    env.building(id).await;
    env.healthy().await;

    // status
    let s = env.json("/api/v1/status").await;
    has_keys(
        &s,
        &[
            "worker_id",
            "host_id",
            "host_name",
            "uptime_seconds",
            "started_at",
            "status",
            "status_reasons",
            "hub",
            "ready",
            "not_ready_reason",
            "capacity",
            "task_load",
            "maxjobs",
            "active_tasks",
            "containers_active",
            "tasks_completed_today",
            "last_task_time",
            "counts",
            "versions",
            "podman",
            "restart_pending",
            "shutting_down",
        ],
    );
    assert_eq!(s["worker_id"], "builder1");
    assert_eq!(s["host_id"], 1);
    assert_eq!(s["status"], "healthy");
    assert_eq!(s["status_reasons"], serde_json::json!([]));
    assert_eq!(s["hub"]["url"], env.hub.url());
    assert_eq!(s["hub"]["session"], "exclusive");
    assert!(s["hub"]["session_id"].is_i64());
    assert!(iso_ok(&s["hub"]["last_poll"]));
    assert_eq!(s["capacity"], 6.5);
    assert_eq!(s["maxjobs"], 10);
    assert_eq!(s["active_tasks"], 1);
    assert_eq!(s["containers_active"], 1);
    assert!(s["uptime_seconds"].as_f64().unwrap() > 0.0, "{s:#}");
    assert!(iso_ok(&s["started_at"]) && iso_ok(&s["last_task_time"]));
    assert_eq!(s["versions"]["koji_adjutant"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["counts"]["taken"], 1);
    assert_eq!(s["counts"]["running"], 1);
    assert_eq!(s["tasks_completed_today"], 0);
    // a later read shows a later uptime: measured from the daemon's start
    let up1 = s["uptime_seconds"].as_f64().unwrap();
    wait_until_async("uptime grows", || async {
        env.json("/api/v1/status").await["uptime_seconds"]
            .as_f64()
            .unwrap()
            > up1
    })
    .await;

    // task list and detail
    let l = env.json("/api/v1/tasks").await;
    assert_eq!(
        (l["total"].as_u64(), l["running"].as_u64()),
        (Some(1), Some(1))
    );
    let t = &l["tasks"][0];
    has_keys(
        t,
        &[
            "task_id",
            "type",
            "method",
            "status",
            "arch",
            "tag",
            "srpm",
            "started_at",
            "finished_at",
            "container_id",
            "image",
            "image_digest",
            "policy_rule",
            "buildroot_id",
            "usage",
            "result",
            "fault",
            "weight",
            "current_step",
            "progress",
        ],
    );
    assert_eq!(t["task_id"], id);
    assert_eq!(
        (t["type"].as_str(), t["status"].as_str()),
        (Some("fakebuild"), Some("running"))
    );
    assert_eq!(t["arch"], "x86_64");
    assert_eq!(t["tag"], TAG);
    assert_eq!(t["weight"], 1.5);
    assert_eq!(t["current_step"], "build");
    assert_eq!(t["finished_at"], J::Null);
    let d = env.json(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(d["image"], "registry.example/fedora:40");
    assert_eq!(d["image_digest"], "sha256:0123456789abcdef");
    assert_eq!(d["policy_rule"], "tag_arch f40-build/x86_64");
    assert_eq!(d["buildroot_id"], 500 + id);
    assert_eq!(d["container_id"], format!("ctr-{id}"));
    assert_eq!(d["containers"], serde_json::json!([format!("ctr-{id}")]));
    assert_eq!(d["usage"]["cpu_seconds"], 1.5);
    assert_eq!(d["usage"]["peak_memory_bytes"], 3 << 20);
    assert_eq!(d["usage"]["oom_killed"], true);
    let steps = d["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (steps[0]["name"].as_str(), steps[0]["status"].as_str()),
        (Some("pull"), Some("ok"))
    );
    assert!(iso_ok(&steps[0]["started_at"]) && iso_ok(&steps[0]["finished_at"]));
    assert_eq!(steps[1]["name"], "build");
    assert_eq!(steps[1]["finished_at"], J::Null);
    assert!(d["log_path"].as_str().unwrap().ends_with("/build.log"));
    assert_eq!(d["logs"].as_array().unwrap().len(), 2);

    // logs: the end of the main log, or of a named one; secrets masked
    let r = env.get(&format!("/api/v1/tasks/{id}/logs?tail=2")).await;
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.headers()["x-log-name"], "build.log");
    assert_eq!(
        r.text().await.unwrap(),
        "login with *** <b>bold</b>\nlast line\n"
    );
    let all = env.text(&format!("/api/v1/tasks/{id}/logs")).await;
    assert_eq!(all.lines().count(), 100, "default tail");
    assert!(all.starts_with("build line 203\n"), "{all}");
    assert_eq!(
        env.text(&format!("/api/v1/tasks/{id}/logs?name=root.log"))
            .await,
        "root log\n"
    );
    let r = env
        .get(&format!("/api/v1/tasks/{id}/logs?name=nope.log"))
        .await;
    assert_eq!(r.status(), 404);
    let r = env.get(&format!("/api/v1/tasks/{id}/logs?tail=many")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<J>().await.unwrap()["error_code"], "BAD_REQUEST");

    // containers
    let c = env.json("/api/v1/containers").await;
    assert_eq!(c["total"], 1);
    has_keys(
        &c["containers"][0],
        &[
            "container_id",
            "task_id",
            "image",
            "status",
            "created_at",
            "started_at",
        ],
    );
    let cd = env.json(&format!("/api/v1/containers/ctr-{id}")).await;
    assert_eq!(cd["task_id"], id);
    assert_eq!(cd["status"], "running");
    assert_eq!(cd["pid"], std::process::id());
    assert_eq!(cd["network_mode"], "none");
    assert_eq!(cd["image_digest"], "sha256:0123456789abcdef");
    assert_eq!(
        cd["mounts"],
        serde_json::json!([{"source": "/mnt/koji", "target": "/mnt/koji", "read_only": true}])
    );
    assert_eq!(
        cd["resource_limits"],
        serde_json::json!({"memory_bytes": 2u64 << 30, "cpus": 2.0, "pids": 4096})
    );
    assert_eq!(cd["limits_available"], true);
    assert_eq!(
        cd["spec"]["command"],
        serde_json::json!(["/usr/bin/rpmbuild", "--rebuild"])
    );
    assert_eq!(cd["usage"]["memory_peak_bytes"], 3 << 20);
    assert_eq!(cd["usage"]["oom_kills"], 1);
    assert!(iso_ok(&cd["usage"]["read_at"]));

    // errors: JSON, the prototype's shape
    for (path, code) in [
        ("/api/v1/tasks/99999".to_string(), 404),
        ("/api/v1/tasks/abc".into(), 404),
        ("/api/v1/tasks/99999/logs".into(), 404),
        ("/api/v1/containers/nope".into(), 404),
        ("/api/v2/status".into(), 404),
        ("/static/app.js".into(), 404),
        ("/tasks/99999".into(), 404),
    ] {
        let r = env.get(&path).await;
        assert_eq!(r.status(), code, "{path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let e: J = r.json().await.unwrap();
        assert_eq!(keys(&e), ["error", "error_code", "message"], "{path}");
        assert_eq!(
            (e["error"].as_str(), e["error_code"].as_str()),
            (Some("Not Found"), Some("NOT_FOUND"))
        );
    }
    let r = env
        .http
        .post(format!("{}/api/v1/status", env.base))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    assert_eq!(
        r.json::<J>().await.unwrap()["error_code"],
        "METHOD_NOT_ALLOWED"
    );
    let r = env
        .http
        .get(format!("{}/api/v1/status", env.base))
        .body("a body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = env
        .http
        .head(format!("{}/api/v1/status", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = env.get("/healthz").await;
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "ok\n".to_string())
    );

    // the task ends: kept, with its result; its container listed with ?all=1
    env.gate.add_permits(1);
    wait_until("task closed", || env.hub.task(id).state == CLOSED).await;
    wait_until_async("status has the end", || async {
        env.json(&format!("/api/v1/tasks/{id}")).await["status"] == "completed"
    })
    .await;
    let d = env.json(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(d["result"], "\"built\"");
    assert_eq!(d["fault"], J::Null);
    assert!(iso_ok(&d["finished_at"]));
    assert_eq!(d["steps"][1]["status"], "ok");
    assert_eq!(env.json("/api/v1/containers").await["total"], 0);
    let c = env.json("/api/v1/containers?all=1").await;
    assert_eq!(c["total"], 1);
    assert_eq!(c["containers"][0]["status"], "removed");
    assert_eq!(c["containers"][0]["exit_code"], 0);
    let s = env.json("/api/v1/status").await;
    assert_eq!(s["tasks_completed_today"], 1);
    assert_eq!(s["counts"]["closed"], 1);
    assert_eq!(s["active_tasks"], 0);
    assert_eq!(env.json("/api/v1/tasks?status=running").await["total"], 0);
    assert_eq!(env.json("/api/v1/tasks?status=completed").await["total"], 1);

    // a failing task: the fault, whole
    let bad = env.make("fakebuild", vec![Value::Bool(true)]);
    env.building(bad).await;
    env.gate.add_permits(1);
    wait_until("task failed", || env.hub.task(bad).state == FAILED).await;
    wait_until_async("status has the fault", || async {
        env.json(&format!("/api/v1/tasks/{bad}")).await["status"] == "failed"
    })
    .await;
    let d = env.json(&format!("/api/v1/tasks/{bad}")).await;
    assert_eq!(
        d["fault"],
        serde_json::json!({"code": 1005, "name": "BuildError", "message": "rpmbuild failed: <b>bad</b>"})
    );
    assert_eq!(d["steps"][1]["status"], "rpmbuild exited 1");
    // its workdir is gone, but the end of its logs was kept, and the hub has them
    assert_eq!(d["logs"][0]["name"], "build.log");
    assert_eq!(d["logs"][0]["kept_tail"], true);
    assert_eq!(
        d["logs"][0]["url"],
        format!(
            "http://127.0.0.1:1/kojifiles/work/tasks/{}/{bad}/build.log",
            bad % 10000
        )
    );
    assert!(!std::path::Path::new(d["log_path"].as_str().unwrap()).exists());
    assert_eq!(
        env.text(&format!("/api/v1/tasks/{bad}/logs?tail=2")).await,
        "login with *** <b>bold</b>\nlast line\n"
    );
    // a closed task's logs are on the hub only
    let r = env.get(&format!("/api/v1/tasks/{id}/logs")).await;
    assert_eq!(r.status(), 404);
    let l = env.json("/api/v1/tasks").await;
    assert_eq!(l["total"], 2);
    assert_eq!(l["tasks"][0]["task_id"], bad, "newest first");
    env.stop().await;
}

/// What the Python parsers make of the metrics (strict OpenMetrics, and Prometheus
/// text): `{family: {sample name + labels: value}}`.
fn python_parse(text: &str, openmetrics: bool) -> BTreeMap<String, BTreeMap<String, f64>> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families as prom
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
parse = om if sys.argv[1] == "om" else prom
out = {}
for fam in parse(sys.stdin.read()):
    d = out.setdefault(fam.name, {})
    for s in fam.samples:
        key = s.name + "{" + ",".join("%s=%s" % kv for kv in sorted(s.labels.items())) + "}"
        d[key] = s.value
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script, if openmetrics { "om" } else { "prom" }])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (tests/setup-host.sh installs python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Python parser rejected the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_and_openmetrics_text() {
    let env = Env::start().await;
    // a hub error the loop sees (a fault on its check-in)
    env.hub.inject(
        "host.updateHost",
        1,
        Action::Fault(fault(1000, "hub is unwell")),
    );
    let id = env.make("fakebuild", vec![]);
    env.building(id).await;
    // while it runs: load and capacity
    let r = env.get("/metrics").await;
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{name}: {other:?}"),
            })
    };
    assert_eq!(value("koji_adjutant_capacity", &[]), Some(6.5));
    assert_eq!(value("koji_adjutant_running_tasks", &[]), Some(1.0));
    assert_eq!(value("koji_adjutant_containers_running", &[]), Some(1.0));
    assert_eq!(value("koji_adjutant_hub_session", &[]), Some(1.0));
    assert!(value("koji_adjutant_start_time_seconds", &[]).unwrap() > 1.6e9);
    // the load is what the hub says the task weighs, once the loop has seen it
    wait_until_async("load seen", || async {
        let t = env.text("/metrics").await;
        t.contains("\nkoji_adjutant_task_load 1.5\n")
    })
    .await;

    env.gate.add_permits(1);
    wait_until("task closed", || env.hub.task(id).state == CLOSED).await;
    let reg = env.registry().clone();
    wait_until("recorded", || {
        reg.snapshot().tasks[&id].finished.is_some() && reg.snapshot().host.last_hub_error.is_some()
    })
    .await;
    let text = env.text("/metrics").await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let counter = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{name}: {other:?}"),
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    let hist_count = |name: &str, labels: &[(&str, &str)]| -> u64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Histogram(b) => {
                    b.last().map(|b| b.count as u64).unwrap_or(0)
                }
                other => panic!("{name}: {other:?}"),
            })
            .unwrap_or_else(|| panic!("no histogram {name} {labels:?} in\n{text}"))
    };
    assert_eq!(
        counter(
            "koji_adjutant_tasks_total",
            &[("method", "fakebuild"), ("outcome", "closed")]
        ),
        1.0
    );
    assert_eq!(
        hist_count(
            "koji_adjutant_task_duration_seconds",
            &[("method", "fakebuild")]
        ),
        1
    );
    assert_eq!(
        hist_count("koji_adjutant_step_duration_seconds", &[("step", "pull")]),
        1
    );
    assert_eq!(
        hist_count("koji_adjutant_step_duration_seconds", &[("step", "build")]),
        1
    );
    assert_eq!(
        counter(
            "koji_adjutant_buildroot_cache_lookups_total",
            &[("result", "miss")]
        ),
        1.0
    );
    assert_eq!(counter("koji_adjutant_image_pull_bytes_total", &[]), 1000.0);
    assert_eq!(
        hist_count("koji_adjutant_image_pull_duration_seconds", &[]),
        1
    );
    assert_eq!(
        counter("koji_adjutant_unpack_bytes_total", &[]),
        (4 << 20) as f64
    );
    assert_eq!(
        hist_count("koji_adjutant_unpack_throughput_bytes_per_second", &[]),
        1
    );
    assert_eq!(
        hist_count("koji_adjutant_container_start_duration_seconds", &[]),
        1
    );
    assert_eq!(counter("koji_adjutant_oom_kills_total", &[]), 1.0);
    assert!(
        counter(
            "koji_adjutant_hub_errors_total",
            &[("fault", "GenericError")]
        ) >= 1.0
    );

    // the same text through the Python Prometheus parser
    let py = python_parse(&text, false);
    assert_eq!(
        py["koji_adjutant_tasks"]["koji_adjutant_tasks_total{method=fakebuild,outcome=closed}"],
        1.0
    );
    assert_eq!(
        py["koji_adjutant_capacity"]["koji_adjutant_capacity{}"],
        6.5
    );

    // OpenMetrics on request, accepted by the strict OpenMetrics parser
    let r = env
        .http
        .get(format!("{}/metrics", env.base))
        .header(
            "accept",
            "application/openmetrics-text; version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = r.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"));
    let py = python_parse(&om, true);
    assert_eq!(
        py["koji_adjutant_oom_kills"]["koji_adjutant_oom_kills_total{}"],
        1.0
    );
    assert_eq!(
        py["koji_adjutant_task_duration_seconds"]
            ["koji_adjutant_task_duration_seconds_count{method=fakebuild}"],
        1.0
    );
    let info = format!(
        "koji_adjutant_build_info{{version={}}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(py["koji_adjutant_build"][&info], 1.0);
    env.stop().await;
}

/// Run headless Chromium with `args`; its standard output.
fn chromium(args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium (tests/setup-host.sh installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The DOM headless Chromium ends up with for `url`.
fn chromium_dom(url: &str) -> String {
    chromium(&["--dump-dom".into(), url.into()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_shows_the_running_task() {
    let env = Env::start().await;
    let done = env.make("sleep", vec![Value::Int(0)]);
    wait_until("sleep closed", || env.hub.task(done).state == CLOSED).await;
    let id = env.make("fakebuild", vec![]);
    env.building(id).await;
    env.healthy().await;

    let base = env.base.clone();
    let dom = tokio::task::spawn_blocking(move || chromium_dom(&format!("{base}/")))
        .await
        .unwrap();
    // the running task's row, with what it is doing
    let row_start = dom
        .find(&format!("<tr id=\"task-{id}\" class=\"task running\">"))
        .unwrap_or_else(|| panic!("no row for task {id} in\n{dom}"));
    let row = &dom[row_start..row_start + dom[row_start..].find("</tr>").unwrap()];
    for want in [
        "fakebuild",
        "x86_64",
        "registry.example/fedora:40",
        "tag_arch f40-build/x86_64",
        &format!("href=\"/tasks/{id}\""),
        &format!("ctr-{id}"),
        "build (",
    ] {
        assert!(row.contains(want), "{want:?} not in {row}");
    }
    // the hostile tag is text, not markup
    assert!(row.contains("f40-build&lt;script&gt;"), "{row}");
    assert!(!dom.contains("<script"), "a script element in the page");
    assert!(
        dom.contains("<title>builder1 — koji-adjutant</title>"),
        "{dom}"
    );
    // the finished task, the container and the host
    assert!(dom.contains(&format!("<tr id=\"task-{done}\" class=\"task completed\">")));
    assert!(dom.contains(&format!(
        "<tr id=\"container-ctr-{id}\" class=\"container running\">"
    )));
    assert!(dom.contains(">healthy<") && dom.contains("capacity 6.50"));
    assert!(dom.contains("<meta http-equiv=\"refresh\" content=\"5\">"));

    // the task page: steps and the end of the log
    let base = env.base.clone();
    let page = tokio::task::spawn_blocking(move || chromium_dom(&format!("{base}/tasks/{id}")))
        .await
        .unwrap();
    assert!(
        page.contains("<td>pull</td>") && page.contains("<td>build</td>"),
        "{page}"
    );
    assert!(page.contains("last line"), "{page}");
    assert!(page.contains("&lt;b&gt;bold&lt;/b&gt;") && !page.contains(HUB_PASS));
    let base = env.base.clone();
    let page =
        tokio::task::spawn_blocking(move || chromium_dom(&format!("{base}/containers/ctr-{id}")))
            .await
            .unwrap();
    assert!(
        page.contains("sha256:0123456789abcdef") && page.contains("mem 2.0 GiB, 2 CPU, 4096 pids"),
        "{page}"
    );

    // for people: KOJI_ADJUTANT_SCREENSHOTS=<dir> saves what the pages look like
    if let Some(dir) = std::env::var_os("KOJI_ADJUTANT_SCREENSHOTS") {
        let base = env.base.clone();
        tokio::task::spawn_blocking(move || {
            for (name, path) in [
                ("dashboard", "/".to_string()),
                ("task", format!("/tasks/{id}")),
                ("container", format!("/containers/ctr-{id}")),
            ] {
                let file = std::path::Path::new(&dir).join(format!("{name}.png"));
                chromium(&[
                    format!("--screenshot={}", file.display()),
                    "--window-size=1400,1100".into(),
                    format!("{base}{path}"),
                ]);
            }
        })
        .await
        .unwrap();
    }

    env.gate.add_permits(1);
    wait_until("task closed", || env.hub.task(id).state == CLOSED).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_while_tasks_run_leave_the_tasks_unaffected() {
    let env = Env::start().await;
    let builds: Vec<i64> = (0..3).map(|_| env.make("fakebuild", vec![])).collect();
    let sleeps: Vec<i64> = (0..3)
        .map(|_| env.make("sleep", vec![Value::Double(0.2)]))
        .collect();
    for id in &builds {
        env.building(*id).await;
    }
    const CLIENTS: usize = 32;
    const REQUESTS: usize = 40;
    let paths: Vec<String> = {
        let mut p: Vec<String> = [
            "/",
            "/api/v1/status",
            "/api/v1/tasks",
            "/api/v1/containers?all=1",
            "/metrics",
            "/healthz",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for id in &builds {
            p.push(format!("/api/v1/tasks/{id}"));
            p.push(format!("/api/v1/tasks/{id}/logs?tail=50"));
            p.push(format!("/tasks/{id}"));
            p.push(format!("/api/v1/containers/ctr-{id}"));
        }
        p
    };
    let paths = Arc::new(paths);
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let paths = paths.clone();
        let base = env.base.clone();
        clients.spawn(async move {
            let http = reqwest::Client::new();
            let mut ok = 0;
            for i in 0..REQUESTS {
                let p = &paths[(c * 7 + i) % paths.len()];
                let r = http
                    .get(format!("{base}{p}"))
                    .send()
                    .await
                    .expect("request");
                if p.contains("/logs") && r.status() == 404 {
                    // the task ended and its workdir went: said so, with the hub's copy
                    let e: serde_json::Value = r.json().await.expect("json error");
                    let msg = e["message"].as_str().unwrap_or_default();
                    assert!(
                        msg.contains("no longer on this host; the hub has it: http://127.0.0.1:1/kojifiles/work/tasks/"),
                        "{msg}"
                    );
                    ok += 1;
                    continue;
                }
                assert_eq!(r.status(), 200, "{p}");
                let body = r.bytes().await.expect("body");
                assert!(!body.is_empty(), "{p}");
                ok += 1;
            }
            ok
        });
    }
    // the tasks go on and end while the clients hammer the server
    env.gate.add_permits(builds.len());
    let mut total = 0;
    while let Some(r) = clients.join_next().await {
        total += r.expect("client panicked");
    }
    assert_eq!(total, CLIENTS * REQUESTS);
    for id in builds.iter().chain(&sleeps) {
        wait_until("task closed", || env.hub.task(*id).state == CLOSED).await;
    }
    for id in &builds {
        assert_eq!(
            env.hub.result(*id),
            Some(koji_adjutant::xmlrpc::MethodResponse::Params(vec![
                Value::from("built")
            ]))
        );
        // the streamed log arrived whole
        let up = support::fakehub::read_uploaded(
            &env.hub,
            &format!("tasks/{}/{id}/build.log", id % 10000),
        )
        .expect("uploaded build.log");
        assert!(String::from_utf8_lossy(&up).ends_with("last line\n"));
    }
    for id in &sleeps {
        assert_eq!(
            env.hub.result(*id),
            Some(koji_adjutant::xmlrpc::MethodResponse::Params(vec![
                Value::Nil
            ]))
        );
    }
    env.stop().await;
}

fn raw_request(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_bounded_and_idle_clients_dropped() {
    let limits = Limits {
        max_connections: 4,
        // long enough that the idle clients below hold their slots
        header_read_timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    let env = Env::start_with(limits).await;
    let addr = env.addr();
    // a second server on the same registry whose clients must hurry
    let quick = StatusServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(StatusState {
            registry: env.registry().clone(),
            info: ServerInfo::default(),
            limits: Limits {
                header_read_timeout: Duration::from_millis(200),
                ..Limits::default()
            },
        }),
    )
    .await
    .unwrap();
    let quick_addr = quick.local_addr();
    tokio::task::spawn_blocking(move || {
        // four clients that send nothing hold every slot...
        let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // ...so a fifth (accepted after them) is told so at once and closed
        let busy = raw_request(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            busy.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{busy}"
        );
        assert!(busy.contains("\"error_code\": \"BUSY\""), "{busy}");
        // when they go, the server serves again
        drop(idle);
        let mut tries = 0;
        loop {
            let r = raw_request(
                addr,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            if r.starts_with("HTTP/1.1 200 OK\r\n") {
                assert!(r.ends_with("ok\n"), "{r}");
                break;
            }
            // a slot frees once the server has noticed the close
            assert!(r.starts_with("HTTP/1.1 503"), "{r}");
            tries += 1;
            assert!(tries < 600, "{r}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // a client that sends nothing, or too slowly, is dropped after the header timeout
        let mut silent = TcpStream::connect(quick_addr).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut out = Vec::new();
        let _ = silent.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
        let mut slow = TcpStream::connect(quick_addr).unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut out = Vec::new();
        let _ = slow.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
        // an oversized request head is refused
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(20 * 1024)
        );
        let r = raw_request(addr, big.as_bytes());
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
        // a request body is refused and the connection closed
        let r = raw_request(
            addr,
            b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        assert!(r.to_ascii_lowercase().contains("connection: close"), "{r}");
    })
    .await
    .unwrap();
    quick.stop().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_output() {
    let env = Env::start().await;
    let id = env.make("fakebuild", vec![]);
    env.building(id).await;
    // a hub error whose text carries the password and a session key
    let leaked_key = env
        .hub
        .with(|s| s.sessions.values().next().unwrap().key.clone());
    env.hub.inject(
        "host.getHost",
        1,
        Action::Fault(fault(
            1000,
            format!(
                "login as builder1/{HUB_PASS} failed; smtp {SMTP_PASS}; see https://u:{HUB_PASS}@hub/?session-key={leaked_key}"
            ),
        )),
    );
    let reg = env.registry().clone();
    wait_until("hub error recorded", || {
        reg.snapshot().host.last_hub_error.is_some()
    })
    .await;
    let status = env.json("/api/v1/status").await;
    let msg = status["hub"]["last_error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("login as builder1/***"), "{msg}");

    let secrets: Vec<String> = env.hub.with(|s| {
        s.sessions
            .values()
            .map(|x| x.key.clone())
            .chain([HUB_PASS.to_string(), SMTP_PASS.to_string()])
            .collect()
    });
    let mut paths = vec![
        "/".to_string(),
        "/healthz".into(),
        "/metrics".into(),
        "/api/v1/status".into(),
        "/api/v1/tasks".into(),
        "/api/v1/containers?all=1".into(),
        format!("/api/v1/tasks/{id}"),
        format!("/api/v1/tasks/{id}/logs?tail=1000"),
        format!("/api/v1/tasks/{id}/logs?name=root.log"),
        format!("/tasks/{id}"),
        format!("/api/v1/containers/ctr-{id}"),
        format!("/containers/ctr-{id}"),
        "/api/v1/nope".into(),
    ];
    paths.sort();
    let mut seen = 0;
    for p in &paths {
        let body = env.get(p).await.text().await.unwrap();
        for s in &secrets {
            assert!(
                !body.contains(s.as_str()),
                "{p} shows the secret {s:?}:\n{body}"
            );
        }
        seen += body.len();
    }
    assert!(seen > 10_000);
    // the raw log itself has the password: the API masked it
    let log =
        std::fs::read_to_string(env.registry().snapshot().tasks[&id].logs["build.log"].clone())
            .unwrap();
    assert!(log.contains(HUB_PASS));
    env.gate.add_permits(1);
    wait_until("task closed", || env.hub.task(id).state == CLOSED).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_command_serves_status_on_status_bind() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    // a free port (bound and released)
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config(
        &hub.url(),
        1,
        dir.path(),
        &format!("adjutant_monitoring_bind = 127.0.0.1:{port}"),
    );
    let conf = dir.path().join("kojid-1.conf");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_koji-adjutant"))
        .args(["daemon", "--fg", "--force-lock", "-c"])
        .arg(&conf)
        .env("KOJI_ADJUTANT_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/status");
    let http = reqwest::Client::new();
    wait_until_async("the daemon's status server answers, logged in", || async {
        match http.get(&url).send().await {
            Ok(r) => r
                .json::<J>()
                .await
                .is_ok_and(|s| s["worker_id"] == "builder1" && s["hub"]["session"] == "exclusive"),
            Err(_) => false,
        }
    })
    .await;
    let t = hub.make_task("sleep", vec![Value::Int(0)]);
    wait_until("task closed", || hub.task(t).state == CLOSED).await;
    wait_until_async("the task shows", || async {
        let l: J = http
            .get(format!("http://127.0.0.1:{port}/api/v1/tasks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        l["tasks"][0]["task_id"] == t && l["tasks"][0]["status"] == "completed"
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("daemon did not stop")
        .unwrap();
    assert!(st.success(), "{st}");
    // the server went with it
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
