//! Test support: the fake hub and helpers to run daemons against it.

#![allow(dead_code)]

pub mod buildenv;
pub mod buildhost;
pub mod fakebuilds;
pub mod fakehub;
pub mod fakerepos;
pub mod hostbroot;
pub mod leaks;
pub mod ociregistry;
pub mod repodata;
pub mod topurl;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use koji_adjutant::config::{Config, DaemonArgs};
use koji_adjutant::daemon::{default_handlers, Daemon, DaemonExit, HandlerRegistry};
use koji_adjutant::registry::Registry;
use tokio_util::sync::CancellationToken;

/// A kojid.conf for builder `n` of the fake hub.
pub fn config(hub_url: &str, n: usize, dir: &Path, extra: &str) -> Arc<Config> {
    let conf = dir.join(format!("kojid-{n}.conf"));
    let mut keys: Vec<(String, String)> = vec![
        ("server".into(), hub_url.to_owned()),
        ("topurl".into(), "http://127.0.0.1:1/kojifiles".into()),
        ("user".into(), format!("builder{n}")),
        ("password".into(), format!("builder{n}-pw")),
        ("sleeptime".into(), "1".into()),
        ("retry_interval".into(), "1".into()),
        ("max_retries".into(), "30".into()),
        ("offline_retry_interval".into(), "1".into()),
        ("minspace".into(), "0".into()),
        (
            "workdir".into(),
            dir.join(format!("work-{n}")).display().to_string(),
        ),
    ];
    let mut adjutant: Vec<(String, String)> = vec![
        // tests share 2 busy cores: kojid's load-average rule would refuse work
        ("max_load_per_cpu".into(), "0".into()),
        (
            "store_root".into(),
            dir.join(format!("store-{n}")).display().to_string(),
        ),
    ];
    // `key = value` lines go to [kojid], `adjutant.key = value` lines to [adjutant]
    for line in extra.lines().filter(|l| l.contains('=')) {
        let (k, v) = line.split_once('=').unwrap();
        let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
        let list = match k.strip_prefix("adjutant.") {
            Some(a) => {
                let a = a.to_owned();
                adjutant.retain(|(x, _)| *x != a);
                adjutant.push((a, v));
                continue;
            }
            None => &mut keys,
        };
        list.retain(|(x, _)| *x != k);
        list.push((k, v));
    }
    let mut text = String::from("[kojid]\n");
    for (k, v) in keys {
        text.push_str(&format!("{k} = {v}\n"));
    }
    text.push_str("[adjutant]\n");
    for (k, v) in adjutant {
        text.push_str(&format!("{k} = {v}\n"));
    }
    std::fs::write(&conf, text).unwrap();
    let args = DaemonArgs {
        config: Some(conf),
        fg: true,
        force_lock: true,
        ..Default::default()
    };
    let cfg = Config::load(&args, Vec::<(String, String)>::new()).unwrap();
    std::fs::create_dir_all(&cfg.kojid.workdir).unwrap();
    std::fs::create_dir_all(cfg.store_root()).unwrap();
    Arc::new(cfg)
}

/// A daemon running in the background.
pub struct Running {
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<DaemonExit>,
    pub registry: Registry,
    pub control: Arc<koji_adjutant::daemon::DaemonControl>,
}

impl Running {
    /// SIGTERM equivalent; waits for the exit.
    pub async fn stop(self) -> DaemonExit {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("daemon did not stop")
            .expect("daemon panicked")
    }

    /// Wait for the daemon to end by itself.
    pub async fn join(self) -> DaemonExit {
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("daemon did not end")
            .expect("daemon panicked")
    }
}

/// Connect and run a daemon with `handlers` (default: the built-in ones).
pub async fn spawn(cfg: Arc<Config>, handlers: Option<HandlerRegistry>) -> Running {
    let registry = Registry::new(Duration::from_secs(3600));
    let shutdown = CancellationToken::new();
    let d = Daemon::connect(
        cfg,
        handlers.unwrap_or_else(default_handlers),
        registry.clone(),
        shutdown.clone(),
    )
    .await
    .expect("daemon failed to start");
    let control = d.control();
    let handle = tokio::spawn(d.run());
    Running {
        shutdown,
        handle,
        registry,
        control,
    }
}

/// Poll `cond` until it holds; panics with `what` after 60 s (a bound on a hang, not a
/// timing assertion).
pub async fn wait_until<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Same, for async conditions.
pub async fn wait_until_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond().await {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
