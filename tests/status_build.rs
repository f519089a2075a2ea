//! The status endpoint of the real daemon binary while it builds in containers (the
//! fake hub, the rpmroot image): what a build records reaches the JSON API, the
//! dashboard and the metrics — image and policy rule, buildroot, container with its
//! mounts and network, usage, steps, the buildroot cache, container starts, unpacking.
//!
//! Needs root (container buildroots) and the rpmroot fixture, as tests/tasks_build.rs.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use adjutant_runtime::store::{ImportOptions, Store};
use koji_adjutant::xmlrpc::{encode_args, Struct, Value};
use support::buildenv::BuildEnv;
use support::fakehub::CLOSED;

/// The daemon binary; SIGTERM and wait when dropped.
struct DaemonProc(Child);

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn json(url: &str) -> serde_json::Value {
    let (code, body) = get(url).await;
    assert_eq!(code, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The value of a Prometheus sample `name{labels}` (labels as written), 0 if absent.
fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == name_and_labels).then(|| v.parse().unwrap())
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_build_shows_in_the_status_api_dashboard_and_metrics() {
    let e = BuildEnv::new().await;
    e.repos.set_extra(
        e.build_tag,
        "adjutant.image",
        Value::from("localhost/buildroot:latest"),
    );
    let port = free_port();
    let conf_extra = format!(
        "topurl = {}\ntopdir = {}\nadjutant.status_bind = 127.0.0.1:{port}\n",
        e.topurl.url(),
        e.hub.topdir().display()
    );
    let cfg = support::config(&e.hub.url(), 1, e.dir.path(), &conf_extra);
    Store::open(&cfg.store_root())
        .unwrap()
        .import(
            &format!("oci:{}:latest", adjutant_testkit::rpmroot_dir().display()),
            Some("localhost/buildroot:latest"),
            &ImportOptions::default(),
        )
        .unwrap();
    let log = e.dir.path().join("daemon.log");
    let _d = DaemonProc(
        Command::new(env!("CARGO_BIN_EXE_koji-adjutant"))
            .arg("daemon")
            .arg("-c")
            .arg(e.dir.path().join("kojid-1.conf"))
            .args(["--fg", "--force-lock"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");

    // a repo (the daemon's own newRepo), then a buildArch of hello on it
    let mut kw = Struct::new();
    kw.insert("opts".into(), Value::new_struct());
    let nr = e.hub.make_task(
        "newRepo",
        encode_args(
            vec![Value::struct_from([
                ("id", Value::Int(e.build_tag)),
                ("name", Value::from("dist-build")),
            ])],
            kw,
        ),
    );
    assert_eq!(
        e.finish(nr).await,
        CLOSED,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let repo = e.repos.repos_of(e.build_tag).last().unwrap().id;
    let srpm: PathBuf = adjutant_testkit::fixtures_dir().join("srpms/hello-1.0-1.src.rpm");
    let src = e.upload_srpm(&srpm);
    let t = e.hub.make_task(
        "buildArch",
        vec![
            Value::from(src.as_str()),
            Value::from("dist-build"),
            Value::from("x86_64"),
            Value::Bool(true),
            Value::struct_from([("repo_id", Value::Int(repo))]),
        ],
    );
    // as the build parent creates it: the hub task's arch is the build arch
    e.hub
        .with(|s| s.tasks.get_mut(&t).unwrap().arch = "x86_64".into());
    assert_eq!(
        e.finish(t).await,
        CLOSED,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // the finished task, as the API keeps it
    let task = json(&format!("{base}/api/v1/tasks/{t}")).await;
    assert_eq!(task["method"], "buildArch", "{task}");
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["arch"], "x86_64", "{task}");
    assert_eq!(task["tag"], "dist-build", "{task}");
    assert!(
        task["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("localhost/buildroot:latest")),
        "{task}"
    );
    let rule = task["policy_rule"].as_str().unwrap_or_default();
    assert!(rule.contains("adjutant.image"), "rule {rule:?}: {task}");
    assert!(
        task["image_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{task}"
    );
    let br = task["buildroot_id"].as_i64().expect("buildroot_id");
    assert!(br > 0, "{task}");
    let cid = task["container_id"]
        .as_str()
        .expect("container_id")
        .to_owned();
    assert!(
        task["usage"]["cpu_seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "{task}"
    );
    let steps: Vec<&str> = task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(!steps.is_empty(), "{task}");
    // every step of a task that closed ended ok (none left open or interrupted)
    for want in ["download", "buildroot", "build", "upload"] {
        assert!(steps.contains(&want), "no {want} step: {task}");
    }
    assert!(
        task["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["finished_at"].is_string() && s["status"] == "ok"),
        "{task}"
    );

    // its container, kept after removal with its mounts and network
    let c = json(&format!("{base}/api/v1/containers/{cid}")).await;
    assert_eq!(c["task_id"], t, "{c}");
    assert!(
        c["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("localhost/buildroot:latest")),
        "{c}"
    );
    assert_eq!(c["status"], "removed", "{c}");
    assert!(
        c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["target"] == "/builddir"),
        "{c}"
    );
    // the build step had no network (the container's default)
    assert_eq!(c["network_mode"], "none", "{c}");

    // the dashboard lists it among the finished tasks
    let (code, html) = get(&format!("{base}/")).await;
    assert_eq!(code, 200);
    assert!(html.contains(&format!("/tasks/{t}")), "{html}");

    // the metrics of a real build
    let (code, m) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    assert_eq!(
        sample(
            &m,
            "koji_adjutant_tasks_total{method=\"buildArch\",outcome=\"closed\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "koji_adjutant_buildroot_cache_lookups_total{result=\"miss\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        sample(&m, "koji_adjutant_container_start_duration_seconds_count") >= 1.0,
        "{m}"
    );
    assert!(sample(&m, "koji_adjutant_unpack_bytes_total") > 0.0, "{m}");
    let health = json(&format!("{base}/api/v1/status")).await;
    assert_eq!(health["ready"], true, "{health}");
}
