//! The daemon: log in like kojid, then run kojid's main loop (notes §2.2) against the
//! 1.35 hub scheduler until told to stop, restart or a fatal hub error.
//!
//! ```text
//! login (cert → sslLogin, else user/password) → exclusiveSession(force=--force-lock)
//!   → echo("OK") → host.getID() → getSessionInfo()
//! loop:
//!   if no task was taken last time: expire buildroots of tasks not running here
//!   update tasks (getHostTasks: stale → freeTasks, alerts, load, reap, kill canceled)
//!   take a task (getHost → ready? → updateHost → getTasks → open or refuse)
//!   sleep `sleeptime` unless a task was just taken
//! on stop: kill and free running tasks, updateHost(0, False), logout
//! ```

pub mod fg_handlers;
pub mod handlers;
pub mod manager;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use handlers::{
    BoxFuture, DaemonControl, HandlerRegistry, HostCheckContext, TaskContext, TaskFailure,
    TaskHandler, TaskParams, WaitSpec,
};
pub use manager::{LoopError, LoopExit, TaskManager};

use crate::config::Config;
use crate::hub::{AuthMethod, HubError, HubSession, HubTransport, RetryPolicy, TransportOptions};
use crate::registry::{Registry, SessionState};
use crate::xmlrpc::{FaultKind, Value};

/// Why the daemon could not start (kojid's `quit(...)` messages).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration problem.
    #[error("{0}")]
    Config(String),
    /// Login failed.
    #[error("Unable to log in: {0}")]
    Login(HubError),
    /// The hub could not be reached.
    #[error("Unable to connect to server {server}: {source}")]
    Connect {
        /// The hub URL.
        server: String,
        /// The error.
        source: HubError,
    },
    /// Another session holds the lock.
    #[error("Unable to get lock ({0}). Try using --force-lock")]
    Lock(HubError),
    /// Anything else the hub said.
    #[error("{0}")]
    Hub(HubError),
    /// `echo` did not echo.
    #[error("incorrect server response to echo: {0}")]
    Echo(String),
}

/// How the daemon ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonExit {
    /// Stopped on request (exit 0).
    Stopped,
    /// Restart requested and idle: re-execute (kojid `os.execv`).
    Restart,
    /// A fatal error (exit 1): authentication lost, RetryError.
    Fatal(String),
}

/// The authentication kojid would choose: a client certificate if `cert` names an
/// existing file, else user/password, else GSSAPI — which koji-adjutant does not
/// support.
pub fn auth_method(cfg: &Config) -> Result<AuthMethod, StartError> {
    if cfg.kojid.cert.as_ref().is_some_and(|c| c.is_file()) {
        return Ok(AuthMethod::Certificate);
    }
    if let Some(user) = cfg.kojid.user.as_ref().filter(|u| !u.is_empty()) {
        let password =
            cfg.kojid.password.clone().ok_or_else(|| {
                StartError::Config(format!("user {user:?} is set but no password"))
            })?;
        return Ok(AuthMethod::Password {
            user: user.clone(),
            password,
        });
    }
    Err(StartError::Config(
        "No username/password/certificate supplied: GSSAPI (Kerberos) login is not supported by koji-adjutant; \
         set `cert` (a PEM client certificate with its key, as for sslLogin) or `user` and `password` in [kojid]"
            .into(),
    ))
}

/// Log in; while the hub cannot be reached (connection refused or reset, timeout),
/// try again every `retry_interval` seconds, up to `max_retries` times — the policy
/// of a logged-in session's calls. kojid exits at once here and relies on systemd's
/// `Restart=on-failure`; retrying lets a builder that boots before its hub (or
/// during a hub outage) come up by itself. Wrong credentials and other faults are
/// final. A shutdown (SIGTERM) during the wait ends it.
async fn login_retrying(
    session: &HubSession,
    config: &Config,
    registry: &Registry,
    shutdown: &CancellationToken,
) -> Result<(), StartError> {
    let policy = RetryPolicy::from_config(config);
    let mut tries: u32 = 0;
    loop {
        let e = match session.login().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !crate::hub::session::is_unreachable(&e) {
            return Err(StartError::Login(e));
        }
        registry.hub_call_failed(&e);
        if tries >= policy.max_retries || shutdown.is_cancelled() {
            return Err(StartError::Connect {
                server: config.server().to_owned(),
                source: e,
            });
        }
        tries += 1;
        let pause = policy.retry_interval.max(Duration::from_secs(1));
        warn!(
            server = config.server(),
            error = %e,
            attempt = tries,
            of = policy.max_retries,
            "cannot reach the hub; retrying in {}s",
            pause.as_secs()
        );
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => {
                return Err(StartError::Connect {
                    server: config.server().to_owned(),
                    source: e,
                });
            }
        }
    }
}

/// A logged-in daemon, ready to run its loop.
pub struct Daemon {
    session: HubSession,
    config: Arc<Config>,
    manager: TaskManager,
    registry: Registry,
    control: Arc<DaemonControl>,
    shutdown: CancellationToken,
}

impl Daemon {
    /// Log in and check the hub, as kojid's `__main__` does.
    pub async fn connect(
        config: Arc<Config>,
        handlers: HandlerRegistry,
        registry: Registry,
        shutdown: CancellationToken,
    ) -> Result<Daemon, StartError> {
        let auth = auth_method(&config)?;
        let topts = TransportOptions::from_config(&config)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let transport =
            Arc::new(HubTransport::new(topts).map_err(|e| StartError::Config(e.to_string()))?);
        let session = HubSession::new(
            transport.clone(),
            auth,
            RetryPolicy::from_config(&config),
            config.adjutant.hub_callnum_check,
        );
        registry.update_host(|h| {
            h.hub_url = config.server().to_owned();
            h.maxjobs = config.kojid.maxjobs;
        });
        login_retrying(&session, &config, &registry, &shutdown).await?;
        registry.update_host(|h| {
            h.session = SessionState::LoggedIn;
            h.session_id = session.session_id();
        });
        match session.exclusive_session(config.flags.force_lock).await {
            Ok(()) => {}
            Err(e) if e.is_fault(FaultKind::AuthLock) => return Err(StartError::Lock(e)),
            Err(e) => return Err(StartError::Hub(e)),
        }
        registry.update_host(|h| h.session = SessionState::Exclusive);
        let echo = session
            .echo(vec![Value::from("OK")])
            .await
            .map_err(StartError::Hub)?;
        if echo != Value::Array(vec![Value::from("OK")]) {
            return Err(StartError::Echo(echo.to_string()));
        }
        let host_id = session.host_get_id().await.map_err(StartError::Hub)?;
        let sinfo = session.get_session_info().await.map_err(StartError::Hub)?;
        let start_ts = sinfo
            .get("start_ts")
            .and_then(Value::as_f64)
            .or_else(|| sinfo.get("start_time").and_then(Value::as_hub_datetime))
            .unwrap_or_else(crate::registry::now);
        let version = transport.hub_version();
        registry.update_host(|h| {
            h.host_id = Some(host_id);
            h.hub_version = version.clone();
        });
        info!(host_id, hub = config.server(), hub_version = ?version, "connected to the hub");
        let control = Arc::new(DaemonControl::new(host_id, start_ts));
        let manager = TaskManager::new(
            session.clone(),
            config.clone(),
            Arc::new(handlers),
            registry.clone(),
            control.clone(),
            shutdown.clone(),
        );
        Ok(Daemon {
            session,
            config,
            manager,
            registry,
            control,
            shutdown,
        })
    }

    /// The main session.
    pub fn session(&self) -> &HubSession {
        &self.session
    }

    /// The status registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Daemon control (request a graceful restart: SIGUSR1).
    pub fn control(&self) -> Arc<DaemonControl> {
        self.control.clone()
    }

    /// Log out without running the loop (`--skip-main`).
    pub async fn logout(self) -> Result<(), HubError> {
        self.session.logout().await
    }

    /// Run the loop until stopped (the shutdown token), a restart, or a fatal error;
    /// then clean up as kojid does.
    pub async fn run(mut self) -> DaemonExit {
        let shutdown = self.shutdown.clone();
        let sleeptime = Duration::from_secs(
            u64::try_from(self.config.kojid.sleeptime)
                .unwrap_or(15)
                .max(1),
        );
        let single = self.config.flags.single;
        let mut taken = false;
        let exit = loop {
            if shutdown.is_cancelled() {
                break DaemonExit::Stopped;
            }
            let mgr = &mut self.manager;
            let step = async {
                if !taken {
                    mgr.update_buildroots().await?;
                }
                mgr.update_tasks().await?;
                mgr.get_next_task().await
            };
            let r = tokio::select! {
                r = step => r,
                _ = shutdown.cancelled() => break DaemonExit::Stopped,
            };
            match r {
                Ok(t) => taken = t,
                Err(LoopError::Stop(LoopExit::Exit)) => break DaemonExit::Stopped,
                Err(LoopError::Stop(LoopExit::Restart)) => break DaemonExit::Restart,
                Err(LoopError::Hub(e)) => {
                    self.registry.hub_call_failed(&e);
                    if e.fault_kind() == Some(FaultKind::Retry) {
                        break DaemonExit::Fatal(format!("RetryError: {e}"));
                    }
                    if e.is_fault(FaultKind::Auth) {
                        error!(error = %e, "authentication error");
                        break DaemonExit::Fatal(format!("Authentication error: {e}"));
                    }
                    error!(error = %e, "error in the main loop");
                    taken = false;
                }
            }
            if single && self.manager.taken_count > 0 && self.manager.all_finished() {
                // reap and report before leaving
                let _ = self.manager.update_tasks().await;
                break DaemonExit::Stopped;
            }
            if !taken {
                let finished = self.manager.finished.clone();
                tokio::select! {
                    _ = tokio::time::sleep(sleeptime) => {}
                    _ = finished.notified() => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        };
        self.registry.update_host(|h| h.shutting_down = true);
        match &exit {
            DaemonExit::Restart => warn!("restarting"),
            _ => {
                warn!("shutting down, please wait...");
                self.manager.shutdown().await;
            }
        }
        if let Err(e) = self.session.logout().await {
            warn!(error = %e, "logout");
        }
        self.registry.update_host(|h| {
            h.session = SessionState::LoggedOut;
            h.session_id = None;
        });
        exit
    }
}

/// The handlers this build provides: the built-in ones and those of `crate::tasks`.
pub fn default_handlers() -> HandlerRegistry {
    let mut reg = HandlerRegistry::new();
    fg_handlers::register_builtin(&mut reg);
    crate::tasks::register_all(&mut reg);
    reg
}
