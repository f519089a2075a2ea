//! A daemon whose buildroot tasks build with the host's `rpmbuild --nodeps` instead of
//! containers: the test double of tests/support/hostbroot.rs. Used by
//! tests/realhub/build-check.sh to check the build tasks' protocol (buildroot records,
//! uploads, results, import, scratch, tagging) against a real hub while the container
//! buildroot layer is not wired in; never a way to build packages for real.
//!
//! `hostbuild_daemon -c kojid.conf`: logs in as kojid would, runs until SIGINT/SIGTERM.

#[path = "../tests/support/hostbroot.rs"]
mod hostbroot;

use std::sync::Arc;
use std::time::Duration;

use koji_adjutant::config::{Config, DaemonArgs};
use koji_adjutant::daemon::{default_handlers, Daemon};
use koji_adjutant::registry::Registry;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 || args[1] != "-c" {
        eprintln!("usage: hostbuild_daemon -c kojid.conf");
        std::process::exit(2);
    }
    tracing_subscriber::fmt()
        .with_env_filter("warn,koji_adjutant=info")
        .with_target(false)
        .init();
    let da = DaemonArgs {
        config: Some(args[2].clone().into()),
        force_lock: true,
        fg: true,
        ..Default::default()
    };
    let cfg = match Config::load(&da, std::env::vars()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("hostbuild_daemon: {e}");
            std::process::exit(1);
        }
    };
    let mut h = default_handlers();
    koji_adjutant::tasks::register_buildroot_tasks(
        &mut h,
        Arc::new(hostbroot::HostFactory::new(cfg.kojid.topdir.clone())),
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
    });
    let d = match Daemon::connect(cfg, h, Registry::new(Duration::from_secs(3600)), shutdown).await
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("hostbuild_daemon: {e}");
            std::process::exit(1);
        }
    };
    let exit = d.run().await;
    eprintln!("hostbuild_daemon: {exit:?}");
}
