//! Serve the status pages of a made-up busy builder (1000 kept tasks, 8 running),
//! to look at the dashboard or load-test the server (e.g. with `ab`):
//!
//! `cargo run --release --example status_demo -- 127.0.0.1:8080`

use std::sync::Arc;

use koji_adjutant::status::{Limits, ServerInfo, StatusServer, StatusState};

#[path = "../benches/support/status_data.rs"]
mod status_data;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let Ok(bind) = bind.parse() else {
        eprintln!("usage: status_demo [ADDRESS:PORT]");
        std::process::exit(2);
    };
    let server = match StatusServer::start(
        bind,
        Arc::new(StatusState {
            registry: status_data::busy_registry(1000, 8),
            info: ServerInfo::default(),
            limits: Limits::default(),
        }),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("status_demo: {e}");
            std::process::exit(1);
        }
    };
    println!("serving on http://{}/ (Ctrl-C stops)", server.local_addr());
    let _ = tokio::signal::ctrl_c().await;
    server.stop().await;
}
