//! `koji-adjutant daemon [kojid flags]` (also the binary invoked as `kojid`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{apply_rlimits, Config, DaemonArgs};
use crate::daemon::{Daemon, DaemonExit};
use crate::registry::Registry;
use crate::status::StatusServer;

use super::exit;

/// Where kojid logs when detached.
const DETACHED_LOG: &str = "/var/log/kojid.log";

fn init_logging(
    cfg: &Config,
    log_override: Option<&str>,
    file: Option<&Path>,
) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let mut filter = log_override
        .map(str::to_owned)
        .unwrap_or_else(|| cfg.log_filter().to_owned());
    if cfg.flags.debug_task {
        filter.push_str(",koji_adjutant::daemon::handlers=debug,koji_adjutant::tasks=debug");
    }
    if cfg.flags.debug_xmlrpc {
        filter.push_str(",koji_adjutant::hub::transport=debug");
    }
    let env = EnvFilter::try_new(&filter).map_err(|e| format!("bad log filter {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_target(false);
    let r = match file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("cannot open log file {}: {e}", p.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init()
        }
        None => {
            use std::io::IsTerminal as _;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .try_init()
        }
    };
    r.map_err(|e| e.to_string())
}

/// Run the daemon command.
pub fn run(args: DaemonArgs, root: Option<PathBuf>, log: Option<String>) -> ExitCode {
    let mut cfg = match Config::load(&args, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "koji-adjutant: configuration error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    if let Some(r) = root {
        cfg.adjutant.store_root = Some(r);
    }
    // Detach like kojid unless --fg; before any thread exists.
    let log_file = if cfg.flags.foreground {
        cfg.adjutant.log_file.clone()
    } else {
        Some(
            cfg.adjutant
                .log_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(DETACHED_LOG)),
        )
    };
    if let Err(e) = init_logging(&cfg, log.as_deref(), log_file.as_deref()) {
        let _ = writeln!(std::io::stderr(), "koji-adjutant: {e}");
        return ExitCode::from(exit::USAGE);
    }
    for w in &cfg.warnings {
        warn!("{w}");
    }
    for line in apply_rlimits(&cfg) {
        warn!("{line}");
    }
    if let Err(e) = std::fs::create_dir_all(&cfg.kojid.workdir) {
        error!(path = %cfg.kojid.workdir.display(), error = %e, "cannot create workdir");
        return ExitCode::from(exit::FAILURE);
    }
    let store = cfg.store_root();
    if let Err(e) = std::fs::create_dir_all(&store) {
        error!(path = %store.display(), error = %e, "cannot create the store root");
        return ExitCode::from(exit::FAILURE);
    }
    if !cfg.flags.foreground {
        if let Err(e) = nix::unistd::daemon(true, false) {
            error!(error = %e, "cannot detach");
            return ExitCode::from(exit::FAILURE);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let cfg = Arc::new(cfg);
    let outcome = rt.block_on(async move {
        let registry = Registry::new(std::time::Duration::from_secs(
            cfg.adjutant.task_history_ttl,
        ));
        registry.set_container_ttl(std::time::Duration::from_secs(
            cfg.adjutant.container_history_ttl,
        ));
        // The status server runs beside the loop, from before the login (so a
        // hub that cannot be reached shows) to the end; it failing to start
        // must not keep the builder from building.
        let status = match StatusServer::from_config(&cfg, registry.clone()).await {
            Ok(s) => s,
            Err(e) => {
                error!("status server not started: {e}");
                None
            }
        };
        let shutdown = CancellationToken::new();
        let outcome = async {
            let daemon = match Daemon::connect(
                cfg.clone(),
                crate::tasks::container::daemon_handlers(&cfg, &registry),
                registry,
                shutdown.clone(),
            )
            .await
            {
                Ok(d) => d,
                Err(e) => {
                    error!("Error: {e}");
                    return Err(());
                }
            };
            if cfg.flags.skip_main {
                let _ = daemon.logout().await;
                return Ok(DaemonExit::Stopped);
            }
            install_signals(shutdown.clone(), daemon.control());
            info!("starting up");
            crate::notify::ready(&format!("connected to {}; taking tasks", cfg.server()));
            let exit = daemon.run().await;
            if exit == DaemonExit::Stopped {
                crate::notify::stopping("stopped");
            }
            Ok(exit)
        }
        .await;
        if let Some(s) = status {
            s.stop().await;
        }
        outcome
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    // Buildroots of tasks killed at shutdown are removed on background threads:
    // let them finish, or their directories stay until the next start's sweep.
    crate::buildroot::wait_for_cleanup(std::time::Duration::from_secs(60));
    match outcome {
        Err(()) => ExitCode::from(exit::FAILURE),
        Ok(DaemonExit::Stopped) => ExitCode::from(exit::OK),
        Ok(DaemonExit::Fatal(msg)) => {
            error!("{msg}");
            ExitCode::from(exit::FAILURE)
        }
        Ok(DaemonExit::Restart) => {
            crate::notify::reloading("restarting in place");
            let e = reexec();
            error!(error = %e, "cannot re-execute for the restart");
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// Handle SIGTERM/SIGINT (shut down) and SIGUSR1 (graceful restart). The handlers are
/// registered before this returns — before `READY=1` tells a service manager it may
/// send signals — so an early signal is never met by its default action (death).
fn install_signals(shutdown: CancellationToken, control: Arc<crate::daemon::DaemonControl>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int, mut usr1) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) {
        (Ok(t), Ok(i), Ok(u)) => (t, i, u),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            error!(error = %e, "cannot install signal handlers");
            return;
        }
    };
    let sd = shutdown.clone();
    tokio::spawn(async move {
        let sig = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        warn!("{sig}: exiting");
        crate::notify::stopping(&format!("{sig}: giving back running tasks and logging out"));
        sd.cancel();
    });
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            warn!("SIGUSR1: initiating graceful restart");
            control.request_restart();
        }
    });
}

/// Replace this process with a fresh copy of itself, same arguments (kojid
/// `os.execv(sys.argv[0], sys.argv)`).
fn reexec() -> std::io::Error {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let exe = std::env::current_exe()
        .unwrap_or_else(|_| PathBuf::from(args.first().cloned().unwrap_or_default()));
    super::exec_with_args(&exe, &args)
}
