//! HTTP(S) POSTs to the hub with reqwest on rustls: the hub's CA (`serverca`) or the
//! system roots, an optional client certificate (`cert`, PEM holding certificate and
//! key — attached to every request, as koji's client does), `no_ssl_verify`,
//! kojid's timeouts, and a cap on response size.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tracing::debug;
use url::Url;

use crate::config::Config;

/// The largest response body accepted (a hostile or broken hub must not exhaust memory).
pub const MAX_RESPONSE: usize = 256 << 20;

/// kojid's default request timeout when `timeout` is not set (12 h).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(43200);

/// How to reach the hub.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// The hub XML-RPC URL (`server`).
    pub server: Url,
    /// CA bundle for the hub's certificate (`serverca`).
    pub serverca: Option<PathBuf>,
    /// Client certificate + key, PEM (`cert`).
    pub cert: Option<PathBuf>,
    /// Skip TLS verification (`no_ssl_verify`).
    pub no_ssl_verify: bool,
    /// Timeout of a call (`timeout`).
    pub timeout: Duration,
    /// Timeout of login calls (`auth_timeout`).
    pub auth_timeout: Duration,
    /// Log request and response bodies (`--debug-xmlrpc`).
    pub debug_xmlrpc: bool,
}

impl TransportOptions {
    /// From the daemon configuration.
    pub fn from_config(cfg: &Config) -> Result<TransportOptions, TransportError> {
        let server = Url::parse(cfg.server())
            .map_err(|e| TransportError::Setup(format!("server {:?}: {e}", cfg.server())))?;
        let cert = cfg.kojid.cert.clone().filter(|c| c.is_file());
        Ok(TransportOptions {
            server,
            serverca: cfg.kojid.serverca.clone(),
            cert,
            no_ssl_verify: cfg.kojid.no_ssl_verify,
            timeout: cfg
                .kojid
                .timeout
                .and_then(|t| u64::try_from(t).ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_TIMEOUT),
            auth_timeout: Duration::from_secs(cfg.adjutant.auth_timeout),
            debug_xmlrpc: cfg.flags.debug_xmlrpc,
        })
    }

    /// Plain options for a URL (tests, tools).
    pub fn new(server: Url) -> TransportOptions {
        TransportOptions {
            server,
            serverca: None,
            cert: None,
            no_ssl_verify: false,
            timeout: DEFAULT_TIMEOUT,
            auth_timeout: Duration::from_secs(60),
            debug_xmlrpc: false,
        }
    }
}

/// A failed HTTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The client could not be set up (bad certificate file, bad URL...).
    #[error("{0}")]
    Setup(String),
    /// No connection could be made: the request was certainly not delivered.
    #[error("cannot connect to {url}: {msg}")]
    Connect {
        /// The URL.
        url: String,
        /// Details.
        msg: String,
    },
    /// The connection broke (reset, closed early): the request may have been processed.
    #[error("connection to {url} failed: {msg}")]
    Broken {
        /// The URL.
        url: String,
        /// Details.
        msg: String,
    },
    /// No answer in time.
    #[error("no answer from {url} within {secs} s")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        secs: u64,
    },
    /// A TLS certificate problem (never retried).
    #[error("TLS certificate problem talking to {url}: {msg}")]
    Certificate {
        /// The URL.
        url: String,
        /// Details.
        msg: String,
    },
    /// The hub answered with an HTTP error status.
    #[error("HTTP {status} from {url}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer was larger than [`MAX_RESPONSE`].
    #[error("response from {url} is larger than {MAX_RESPONSE} bytes")]
    TooLarge {
        /// The URL.
        url: String,
    },
}

impl TransportError {
    /// A certificate error: kojid never retries these.
    pub fn is_certificate(&self) -> bool {
        matches!(
            self,
            TransportError::Certificate { .. } | TransportError::Setup(_)
        )
    }

    /// A broken keep-alive connection, retried once at once on a fresh connection.
    pub fn is_connection_reset(&self) -> bool {
        matches!(self, TransportError::Broken { .. })
    }
}

/// The shared HTTP client of a daemon (all sessions use its connection pool).
#[derive(Debug)]
pub struct HubTransport {
    client: reqwest::Client,
    opts: TransportOptions,
    hub_version: Mutex<Option<String>>,
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl HubTransport {
    /// Build the client: CA bundle, client certificate, verification.
    pub fn new(opts: TransportOptions) -> Result<HubTransport, TransportError> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent("koji/1")
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(60));
        if let Some(ca) = &opts.serverca {
            let pem = std::fs::read(ca)
                .map_err(|e| TransportError::Setup(format!("serverca {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| TransportError::Setup(format!("serverca {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(TransportError::Setup(format!(
                    "serverca {}: no PEM certificate in the file",
                    ca.display()
                )));
            }
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let Some(cert) = &opts.cert {
            let pem = std::fs::read(cert)
                .map_err(|e| TransportError::Setup(format!("cert {}: {e}", cert.display())))?;
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                TransportError::Setup(format!(
                    "cert {}: not a PEM file holding a certificate and its private key: {}",
                    cert.display(),
                    chain(&e)
                ))
            })?;
            b = b.identity(id);
        }
        if opts.no_ssl_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        let client = b
            .build()
            .map_err(|e| TransportError::Setup(format!("HTTP client: {}", chain(&e))))?;
        Ok(HubTransport {
            client,
            opts,
            hub_version: Mutex::new(None),
        })
    }

    /// The options this transport was built with.
    pub fn options(&self) -> &TransportOptions {
        &self.opts
    }

    /// The hub URL.
    pub fn server(&self) -> &Url {
        &self.opts.server
    }

    /// The hub's version from its last `Koji-Version` header.
    pub fn hub_version(&self) -> Option<String> {
        self.hub_version.lock().ok().and_then(|v| v.clone())
    }

    /// POST `body` to `url` with `headers`; the body of a 2xx answer.
    pub async fn post(
        &self,
        url: &Url,
        headers: &[(&'static str, String)],
        content_type: &'static str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        // errors name the URL without the session key (hubs < 1.30 take it in the query)
        let u = redact(url);
        if self.opts.debug_xmlrpc {
            let shown = String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned();
            debug!(url = %redact(url), body = %shown, "xmlrpc request");
        }
        let mut req = self
            .client
            .post(url.clone())
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| self.classify(&u, e, timeout))?;
        if let Some(v) = resp
            .headers()
            .get("Koji-Version")
            .and_then(|v| v.to_str().ok())
        {
            if let Ok(mut g) = self.hub_version.lock() {
                if g.as_deref() != Some(v) {
                    *g = Some(v.to_owned());
                }
            }
        }
        let status = resp.status();
        if let Some(len) = resp.content_length() {
            if len > MAX_RESPONSE as u64 {
                return Err(TransportError::TooLarge { url: u });
            }
        }
        let mut resp = resp;
        let mut out = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if out.len() + c.len() > MAX_RESPONSE {
                        return Err(TransportError::TooLarge { url: u });
                    }
                    out.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(self.classify(&u, e, timeout)),
            }
        }
        if !status.is_success() {
            let body = String::from_utf8_lossy(&out[..out.len().min(300)])
                .trim()
                .to_owned();
            return Err(TransportError::Status {
                url: u,
                status: status.as_u16(),
                body,
            });
        }
        if self.opts.debug_xmlrpc {
            let shown = String::from_utf8_lossy(&out[..out.len().min(1024)]).into_owned();
            debug!(body = %shown, "xmlrpc response");
        }
        Ok(Bytes::from(out))
    }

    fn classify(&self, url: &str, e: reqwest::Error, timeout: Duration) -> TransportError {
        // `url` (redacted) names the URL; reqwest's own text would repeat it whole
        let e = e.without_url();
        let msg = chain(&e);
        let lower = msg.to_ascii_lowercase();
        if lower.contains("certificate")
            || lower.contains("invalidcertificate")
            || lower.contains("unknownissuer")
        {
            return TransportError::Certificate {
                url: url.to_owned(),
                msg,
            };
        }
        if e.is_timeout() {
            return TransportError::Timeout {
                url: url.to_owned(),
                secs: timeout.as_secs(),
            };
        }
        if e.is_connect() {
            return TransportError::Connect {
                url: url.to_owned(),
                msg,
            };
        }
        TransportError::Broken {
            url: url.to_owned(),
            msg,
        }
    }
}

/// A URL with any session key in its query masked, for logs.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    if u.query().is_some_and(|q| q.contains("session-key")) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "session-key" {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_do_not_show_the_session_key() {
        // nothing listens on port 1
        let t = HubTransport::new(TransportOptions::new(
            Url::parse("http://127.0.0.1:1/kojihub").unwrap(),
        ))
        .unwrap();
        let url =
            Url::parse("http://127.0.0.1:1/kojihub?session-id=5&session-key=5-secretkey&callnum=3")
                .unwrap();
        let e = t
            .post(
                &url,
                &[],
                "text/xml",
                Bytes::from_static(b"x"),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("secretkey") && e.contains("session-key=***"),
            "{e}"
        );
    }
}
