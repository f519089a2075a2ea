//! What a status request costs with a busy registry (1000 kept tasks, 8 running):
//! rendering each view, and a whole HTTP request over a kept-alive connection.
//!
//! `cargo bench --bench status`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use koji_adjutant::registry::now;
use koji_adjutant::status::api::{self, ViewCtx};
use koji_adjutant::status::{dashboard, Limits, ServerInfo, StatusServer, StatusState};

#[path = "support/status_data.rs"]
mod status_data;

fn views(c: &mut Criterion) {
    let reg = status_data::busy_registry(1000, 8);
    let info = ServerInfo::default();
    let mut g = c.benchmark_group("status_view");
    g.bench_function("snapshot", |b| b.iter(|| reg.snapshot()));
    let snap = reg.snapshot();
    let ctx = ViewCtx {
        snap: &snap,
        info: &info,
        now: now(),
    };
    g.bench_function("status_json", |b| {
        b.iter(|| serde_json::to_string_pretty(&api::status(&ctx)).unwrap())
    });
    g.bench_function("tasks_json", |b| {
        b.iter(|| serde_json::to_string_pretty(&api::tasks(&ctx, None)).unwrap())
    });
    g.bench_function("dashboard_html", |b| b.iter(|| dashboard::dashboard(&ctx)));
    g.bench_function("metrics_text", |b| {
        b.iter(|| reg.metrics().encode(&snap, false).unwrap())
    });
    g.finish();
}

fn http(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let reg = status_data::busy_registry(1000, 8);
    let server = rt.block_on(async {
        StatusServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(StatusState {
                registry: reg,
                info: ServerInfo::default(),
                limits: Limits::default(),
            }),
        )
        .await
        .unwrap()
    });
    let base = format!("http://{}", server.local_addr());
    let client = reqwest::Client::new();
    let mut g = c.benchmark_group("status_http");
    for path in [
        "/api/v1/status",
        "/api/v1/tasks",
        "/",
        "/metrics",
        "/healthz",
    ] {
        g.bench_function(path, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let r = client.get(format!("{base}{path}")).send().await.unwrap();
                    assert!(r.status().is_success());
                    r.bytes().await.unwrap()
                })
            })
        });
    }
    g.finish();
    rt.block_on(server.stop());
}

criterion_group!(benches, views, http);
criterion_main!(benches);
