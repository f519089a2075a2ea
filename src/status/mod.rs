//! The status server: a small read-only hyper server on `[adjutant] status_bind`
//! that serves the JSON API, Prometheus metrics and an HTML dashboard from the
//! daemon's status [`Registry`] — the same registry the loop and the task handlers
//! update, so what it shows is what the daemon knows (docs/status-api.md).
//!
//! It runs on its own tokio tasks and only ever takes the registry's lock for a
//! snapshot copy, so a slow or hostile client cannot hold up the task loop. Clients
//! are bounded ([`Limits`]): a connection limit (more are answered 503 at once), a
//! header read timeout, a request head size limit, a lifetime per connection, no
//! request bodies, `GET`/`HEAD` only.

pub mod api;
pub mod dashboard;
pub mod limits;
pub mod metrics;
pub mod redact;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use limits::Limits;
pub use metrics::Metrics;
pub use redact::Redactor;

use crate::config::Config;
use crate::registry::Registry;

/// What the server knows besides the registry.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Masks configured secrets in free text.
    pub redactor: Redactor,
    /// The hub connection counts as unhealthy when the last check-in is older.
    pub stale_after: Duration,
    /// Kernel release (`uname -r`).
    pub kernel: Option<String>,
    /// This machine's host name (the worker id until the hub names the host).
    pub system_hostname: Option<String>,
    /// The hub's file URL (`topurl`), where uploaded task logs can be read.
    pub topurl: Option<String>,
}

impl Default for ServerInfo {
    fn default() -> ServerInfo {
        ServerInfo {
            redactor: Redactor::default(),
            stale_after: Duration::from_secs(60),
            kernel: uname().0,
            system_hostname: uname().1,
            topurl: None,
        }
    }
}

fn uname() -> (Option<String>, Option<String>) {
    match nix::sys::utsname::uname() {
        Ok(u) => (
            Some(u.release().to_string_lossy().into_owned()),
            Some(u.nodename().to_string_lossy().into_owned()),
        ),
        Err(_) => (None, None),
    }
}

impl ServerInfo {
    /// From the configuration: its secrets (hub and SMTP passwords) are masked, and
    /// a check-in older than three poll intervals (at least 60 s) is stale.
    pub fn from_config(cfg: &Config) -> ServerInfo {
        let secrets = [cfg.kojid.password.clone(), cfg.kojid.smtp_pass.clone()]
            .into_iter()
            .flatten();
        let sleeptime = u64::try_from(cfg.kojid.sleeptime).unwrap_or(15);
        ServerInfo {
            redactor: Redactor::new(secrets),
            stale_after: Duration::from_secs((3 * sleeptime).max(60)),
            topurl: cfg.topurls().first().cloned(),
            ..ServerInfo::default()
        }
    }
}

impl ServerInfo {
    /// Where the hub serves task `id`'s uploaded log `name`.
    pub fn log_url(&self, id: i64, name: &str) -> Option<String> {
        let top = self.topurl.as_deref()?;
        let name: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
        Some(format!(
            "{}/work/{}/{name}",
            top.trim_end_matches('/'),
            crate::hub::taskrelpath(id)
        ))
    }
}

/// Everything a request handler reads.
#[derive(Debug)]
pub struct StatusState {
    /// The daemon's registry (and its metrics).
    pub registry: Registry,
    /// What else the server knows.
    pub info: ServerInfo,
    /// Bounds.
    pub limits: Limits,
}

/// The status server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The address could not be bound.
    #[error("cannot listen on {addr} (status_bind): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running status server. Dropping it stops it too (its tasks are aborted);
/// [`StatusServer::stop`] lets open connections finish their request first.
#[derive(Debug)]
pub struct StatusServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl StatusServer {
    /// Listen on `bind` and serve `state` until stopped.
    pub async fn start(
        bind: SocketAddr,
        state: Arc<StatusState>,
    ) -> Result<StatusServer, StatusError> {
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|source| StatusError::Bind { addr: bind, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StatusError::Bind { addr: bind, source })?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, state, stop.clone()));
        info!(%addr, "status server listening");
        Ok(StatusServer {
            addr,
            stop,
            task: Some(task),
        })
    }

    /// The server for `cfg` reading `registry`, if `status_enabled` and
    /// `status_bind` is not empty.
    pub async fn from_config(
        cfg: &Config,
        registry: Registry,
    ) -> Result<Option<StatusServer>, StatusError> {
        let Some(bind) = cfg
            .adjutant
            .status_bind
            .addr()
            .filter(|_| cfg.adjutant.status_enabled)
        else {
            info!("status server disabled");
            return Ok(None);
        };
        let state = Arc::new(StatusState {
            registry,
            info: ServerInfo::from_config(cfg),
            limits: Limits::default(),
        });
        StatusServer::start(bind, state).await.map(Some)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, let requests in progress finish (at most a second), close.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<StatusState>, stop: CancellationToken) {
    let limits = state.limits;
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // out of file descriptors and the like: back off, never spin
                warn!(error = %e, "status server: accept failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "status server: too many connections; refusing");
            // the socket's send buffer is empty: this does not block
            let _ = stream.try_write(limits::BUSY_RESPONSE);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let _permit = permit;
            serve_connection(stream, state, stop).await;
        });
    }
    // let requests in progress finish, briefly
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(1), drain)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    state: Arc<StatusState>,
    stop: CancellationToken,
) {
    let limits = state.limits;
    let svc = hyper::service::service_fn(move |req| routes::handle(state.clone(), req));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes)
        .max_headers(64)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = tokio::time::sleep(limits.connection_lifetime) => None,
        _ = stop.cancelled() => None,
    };
    match ended {
        Some(Err(e)) => debug!(error = %e, "status connection"),
        Some(Ok(())) => {}
        None => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bind_values() {
        use crate::config::values::ConfValue;
        use crate::config::StatusBind;
        let p = |s: &str| StatusBind::parse_conf(s).map(StatusBind::addr);
        assert_eq!(p(""), Ok(None));
        assert_eq!(p("  "), Ok(None));
        assert_eq!(p("0.0.0.0:8080"), Ok(Some("0.0.0.0:8080".parse().unwrap())));
        assert_eq!(p("[::1]:9000"), Ok(Some("[::1]:9000".parse().unwrap())));
        assert_eq!(
            p("localhost:8081"),
            Ok(Some("127.0.0.1:8081".parse().unwrap()))
        );
        assert!(p("localhost:99999").is_err());
        assert!(p("everywhere").is_err());
        assert!(p("8080").is_err());
    }

    #[tokio::test]
    async fn disabled_by_an_empty_bind_or_status_enabled() {
        let mut cfg = Config::defaults();
        cfg.adjutant.status_bind = crate::config::values::ConfValue::parse_conf("").unwrap();
        assert!(StatusServer::from_config(&cfg, Registry::default())
            .await
            .unwrap()
            .is_none());
        cfg.adjutant.status_bind =
            crate::config::values::ConfValue::parse_conf("localhost:0").unwrap();
        let s = StatusServer::from_config(&cfg, Registry::default())
            .await
            .unwrap()
            .expect("enabled");
        assert!(s.local_addr().ip().is_loopback());
        s.stop().await;
        cfg.adjutant.status_enabled = false;
        assert!(StatusServer::from_config(&cfg, Registry::default())
            .await
            .unwrap()
            .is_none());
        // a taken address is an error naming it
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        cfg.adjutant.status_enabled = true;
        cfg.adjutant.status_bind = crate::config::StatusBind(Some(addr));
        let e = StatusServer::from_config(&cfg, Registry::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&addr.to_string()) && e.contains("status_bind"),
            "{e}"
        );
    }
}
