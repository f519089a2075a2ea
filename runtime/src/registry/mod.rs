//! A client for the OCI distribution API v2 (pull side), on reqwest.
//!
//! - Anonymous, bearer-token ([`token`]) and basic auth, credentials from the
//!   containers auth file ([`auth`]); tokens cached per (registry, scope).
//! - HTTPS with the system roots plus `certs.d/<host>/*.crt`; plain HTTP (or
//!   unverified TLS) only for registries configured as insecure.
//! - Manifests are hashed as received and checked against the digest asked for and
//!   `Docker-Content-Digest`; blobs are hashed while they stream to disk, resumed with
//!   `Range` after a broken connection, and checked for size and digest at the end.
//! - Transient failures are retried with backoff ([`retry`]).
//!
//! Why not `oci-client`: see docs/adr/0001-registry-client.md.

pub mod auth;
pub mod retry;
mod sink;
pub mod token;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE,
};
use reqwest::StatusCode;
use tracing::{debug, info, warn};

use crate::digest::Digest;
use crate::manifest::{media, MAX_MANIFEST};
use crate::progress::{Event, Progress};
use crate::reference::RegistryRef;
use auth::Credentials;
use retry::{is_tls_error, retry_after, retryable_error, retryable_status, RetryPolicy};
use sink::BlobSink;

/// How to reach registries.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Registries (`host` or `host:port`) that may be reached over plain HTTP or with
    /// unverified TLS. Nothing else ever is.
    pub insecure: Vec<String>,
    /// Use only this auth file instead of the default lookup order.
    pub auth_file: Option<PathBuf>,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response.
    pub read_timeout: Duration,
    /// Directories holding `<host[:port]>/*.crt` CA certificates (podman's certs.d).
    pub cert_dirs: Vec<PathBuf>,
    pub user_agent: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        let mut cert_dirs = vec![
            PathBuf::from("/etc/containers/certs.d"),
            PathBuf::from("/etc/docker/certs.d"),
        ];
        if let Some(h) = std::env::var_os("HOME") {
            cert_dirs.push(PathBuf::from(h).join(".config/containers/certs.d"));
        }
        RegistryConfig {
            insecure: Vec::new(),
            auth_file: None,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            cert_dirs,
            user_agent: concat!("adjutant-runtime/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{registry}: {what}: {source}{hint}")]
    Http {
        registry: String,
        what: String,
        source: reqwest::Error,
        hint: &'static str,
    },
    #[error("{registry}: {what}: HTTP {status}{detail}")]
    Status {
        registry: String,
        what: String,
        status: u16,
        detail: String,
    },
    #[error("{registry}: {what}: not found{detail}")]
    NotFound {
        registry: String,
        what: String,
        detail: String,
    },
    #[error("{registry}: {what}: access denied (HTTP {status}){detail}")]
    Unauthorized {
        registry: String,
        what: String,
        status: u16,
        detail: String,
    },
    #[error("{registry}: {what}: {reason}")]
    Protocol {
        registry: String,
        what: String,
        reason: String,
    },
    #[error("blob {blob} from {registry}: content hashes to {actual} ({size} bytes); refused")]
    DigestMismatch {
        registry: String,
        blob: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("blob {blob} from {registry}: {reason}")]
    Size {
        registry: String,
        blob: Digest,
        reason: String,
    },
    #[error("auth file {path}: {reason}")]
    AuthFile { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RegistryError {
    /// Whether the thing asked for does not exist (tag, repository).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }
    /// Whether the content failed verification.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            RegistryError::DigestMismatch { .. } | RegistryError::Size { .. }
        )
    }
}

const TLS_HINT: &str =
    " (TLS failed; if this registry serves plain HTTP or a self-signed certificate, configure it as insecure)";

/// A manifest as received.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
    pub digest: Digest,
}

#[derive(Clone)]
struct Endpoint {
    http: reqwest::Client,
    base: String,
    insecure: bool,
}

#[derive(Clone)]
struct AuthValue {
    header: String,
    expires: Option<Instant>,
}

/// A failed attempt: worth retrying or not.
enum Fail {
    Retry {
        err: RegistryError,
        after: Option<Duration>,
    },
    Final(RegistryError),
}

/// The registry client. Cheap to share (`&Client` across tasks).
pub struct Client {
    cfg: RegistryConfig,
    auth_files: Vec<PathBuf>,
    secure: Mutex<HashMap<String, reqwest::Client>>,
    insecure_http: reqwest::Client,
    schemes: Mutex<HashMap<String, &'static str>>,
    auth: Mutex<HashMap<(String, String), AuthValue>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    pub fn new(cfg: RegistryConfig) -> Result<Client, RegistryError> {
        let auth_files = match &cfg.auth_file {
            Some(f) => vec![f.clone()],
            None => auth::default_auth_files(),
        };
        let insecure_http = Self::builder(&cfg)
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| RegistryError::Protocol {
                registry: "(client)".into(),
                what: "creating the HTTP client".into(),
                reason: e.to_string(),
            })?;
        Ok(Client {
            cfg,
            auth_files,
            secure: Mutex::new(HashMap::new()),
            insecure_http,
            schemes: Mutex::new(HashMap::new()),
            auth: Mutex::new(HashMap::new()),
        })
    }

    fn builder(cfg: &RegistryConfig) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .user_agent(cfg.user_agent.clone())
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
    }

    /// Whether `registry` is configured as insecure.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        self.cfg
            .insecure
            .iter()
            .any(|i| i == registry || (!i.contains(':') && i == host))
    }

    /// The verifying client for `host`, with its certs.d CAs added.
    fn secure_client(&self, registry: &str) -> Result<reqwest::Client, RegistryError> {
        if let Some(c) = lock(&self.secure).get(registry) {
            return Ok(c.clone());
        }
        let mut b = Self::builder(&self.cfg);
        for dir in &self.cfg.cert_dirs {
            let d = dir.join(registry);
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for ent in rd.flatten() {
                let p = ent.path();
                if p.extension().is_some_and(|e| e == "crt") {
                    let pem = std::fs::read(&p).map_err(|source| RegistryError::Io {
                        path: p.clone(),
                        source,
                    })?;
                    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                        RegistryError::Protocol {
                            registry: registry.into(),
                            what: format!("CA certificate {}", p.display()),
                            reason: e.to_string(),
                        }
                    })?;
                    debug!(registry, ca = %p.display(), "trusting extra CA");
                    for c in certs {
                        b = b.add_root_certificate(c);
                    }
                }
            }
        }
        let c = b.build().map_err(|e| RegistryError::Protocol {
            registry: registry.into(),
            what: "creating the HTTP client".into(),
            reason: e.to_string(),
        })?;
        lock(&self.secure).insert(registry.to_owned(), c.clone());
        Ok(c)
    }

    async fn endpoint(&self, r: &RegistryRef) -> Result<Endpoint, RegistryError> {
        let host = r.api_host();
        if !self.is_insecure(&r.registry) {
            return Ok(Endpoint {
                http: self.secure_client(&r.registry)?,
                base: format!("https://{host}"),
                insecure: false,
            });
        }
        let cached = lock(&self.schemes).get(&r.registry).copied();
        let scheme = match cached {
            Some(s) => s,
            None => {
                // Like podman: try HTTPS (unverified) first, fall back to plain HTTP.
                let url = format!("https://{host}/v2/");
                match self.insecure_http.get(&url).send().await {
                    Ok(_) => {
                        lock(&self.schemes).insert(r.registry.clone(), "https");
                        "https"
                    }
                    Err(e) if is_tls_error(&e) => {
                        debug!(registry = %r.registry, error = %e, "TLS failed on an insecure registry; using plain HTTP");
                        lock(&self.schemes).insert(r.registry.clone(), "http");
                        "http"
                    }
                    Err(e) => {
                        // Down or unreachable: decide later, the request itself will
                        // fail (and be retried) with the real error.
                        debug!(registry = %r.registry, error = %e, "insecure registry not reachable over HTTPS; trying plain HTTP");
                        "http"
                    }
                }
            }
        };
        Ok(Endpoint {
            http: self.insecure_http.clone(),
            base: format!("{scheme}://{host}"),
            insecure: true,
        })
    }

    fn transport_fail(&self, r: &RegistryRef, what: &str, e: reqwest::Error) -> Fail {
        let retry = retryable_error(&e);
        let hint = if is_tls_error(&e) && !self.is_insecure(&r.registry) {
            TLS_HINT
        } else {
            ""
        };
        let err = RegistryError::Http {
            registry: r.registry.clone(),
            what: what.to_owned(),
            source: e,
            hint,
        };
        if retry {
            Fail::Retry { err, after: None }
        } else {
            Fail::Final(err)
        }
    }

    /// Run `op` with retries and backoff, reporting retries to `progress`.
    async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        progress: &dyn Progress,
        mut op: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, Fail>>,
    {
        let policy = self.cfg.retry;
        let mut attempt = 1;
        loop {
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(Fail::Final(e)) => return Err(e),
                Err(Fail::Retry { err, after }) => {
                    if attempt >= policy.attempts.max(1) {
                        return Err(err);
                    }
                    let delay = policy.delay(attempt, after);
                    let msg = err.to_string();
                    warn!(what, attempt, delay_ms = delay.as_millis() as u64, error = %msg, "transient registry error; retrying");
                    progress.event(&Event::Retry {
                        what,
                        attempt,
                        delay_ms: delay.as_millis() as u64,
                        error: &msg,
                    });
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    fn cached_auth(&self, registry: &str, scope: &str) -> Option<String> {
        let key = (registry.to_owned(), scope.to_owned());
        let mut m = lock(&self.auth);
        match m.get(&key) {
            Some(a) if a.expires.is_none_or(|e| Instant::now() < e) => Some(a.header.clone()),
            Some(_) => {
                m.remove(&key);
                None
            }
            None => None,
        }
    }

    /// One GET with auth: on a 401, answer the challenge and try once more.
    async fn get_once(
        &self,
        ep: &Endpoint,
        r: &RegistryRef,
        url: &str,
        headers: &HeaderMap,
        what: &str,
    ) -> Result<reqwest::Response, Fail> {
        let scope = format!("repository:{}:pull", r.repository);
        let send = |auth: Option<String>| {
            let mut req = ep.http.get(url).headers(headers.clone());
            if let Some(a) = auth {
                req = req.header(AUTHORIZATION, a);
            }
            req.send()
        };
        let resp = send(self.cached_auth(&r.registry, &scope))
            .await
            .map_err(|e| self.transport_fail(r, what, e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenges: Vec<token::Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(token::parse_challenges)
            .collect();
        let header = self.authenticate(ep, r, &scope, &challenges).await?;
        let resp = send(Some(header))
            .await
            .map_err(|e| self.transport_fail(r, what, e))?;
        Ok(resp)
    }

    fn credentials(&self, r: &RegistryRef) -> Result<Option<Credentials>, Fail> {
        auth::lookup(&self.auth_files, r).map_err(Fail::Final)
    }

    /// Answer a 401 challenge; returns the `Authorization` header to use.
    async fn authenticate(
        &self,
        ep: &Endpoint,
        r: &RegistryRef,
        scope: &str,
        challenges: &[token::Challenge],
    ) -> Result<String, Fail> {
        let unauthorized = |detail: String| {
            Fail::Final(RegistryError::Unauthorized {
                registry: r.registry.clone(),
                what: format!("pulling {}", r.repository),
                status: 401,
                detail,
            })
        };
        let creds = self.credentials(r)?;
        let key = (r.registry.clone(), scope.to_owned());
        if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            let tok = self.fetch_token(ep, r, c, scope, creds.as_ref()).await?;
            let header = format!("Bearer {}", tok.value);
            lock(&self.auth).insert(
                key,
                AuthValue {
                    header: header.clone(),
                    expires: Some(tok.expires),
                },
            );
            return Ok(header);
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(header) = creds.as_ref().and_then(Credentials::basic_header) else {
                return Err(unauthorized(format!(
                    ": the registry wants a username and password and none was found in {}",
                    self.auth_files_text()
                )));
            };
            if !ep.base.starts_with("https://") && !ep.insecure {
                return Err(unauthorized(
                    ": refusing to send a password over plain HTTP".into(),
                ));
            }
            lock(&self.auth).insert(
                key,
                AuthValue {
                    header: header.clone(),
                    expires: None,
                },
            );
            return Ok(header);
        }
        Err(unauthorized(
            ": no supported WWW-Authenticate challenge (want Bearer or Basic)".into(),
        ))
    }

    fn auth_files_text(&self) -> String {
        if self.auth_files.is_empty() {
            return "(no auth files)".into();
        }
        self.auth_files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn fetch_token(
        &self,
        ep: &Endpoint,
        r: &RegistryRef,
        c: &token::Challenge,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<token::Token, Fail> {
        let proto = |reason: String| {
            Fail::Final(RegistryError::Protocol {
                registry: r.registry.clone(),
                what: "token authentication".into(),
                reason,
            })
        };
        let Some(realm) = c.params.get("realm") else {
            return Err(proto("Bearer challenge without a realm".into()));
        };
        let realm_url =
            reqwest::Url::parse(realm).map_err(|e| proto(format!("bad realm {realm:?}: {e}")))?;
        match realm_url.scheme() {
            "https" => {}
            "http" if ep.insecure => {}
            "http" => {
                return Err(proto(format!(
                    "token realm {realm} is plain HTTP; refusing (configure the registry as insecure to allow it)"
                )))
            }
            s => return Err(proto(format!("token realm has unsupported scheme {s:?}"))),
        }
        let scope = c.params.get("scope").map_or(scope, String::as_str);
        let service = c.params.get("service");
        let what = "fetching an auth token";
        let req = match creds {
            Some(Credentials::IdentityToken { token, .. }) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", "adjutant-runtime"),
                    ("scope", scope),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                ep.http.post(realm_url).form(&form)
            }
            other => {
                let mut q: Vec<(&str, &str)> = vec![("scope", scope)];
                if let Some(s) = service {
                    q.push(("service", s));
                }
                let mut req = ep.http.get(realm_url).query(&q);
                if let Some(h) = other.and_then(Credentials::basic_header) {
                    req = req.header(AUTHORIZATION, h);
                }
                req
            }
        };
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport_fail(r, what, e))?;
        let status = resp.status();
        if retryable_status(status) {
            let after = retry_after(resp.headers());
            return Err(Fail::Retry {
                err: status_error(r, what, status, ""),
                after,
            });
        }
        let body = read_capped(resp, 1 << 20)
            .await
            .map_err(|e| self.transport_fail(r, what, e))?;
        if !status.is_success() {
            return Err(Fail::Final(RegistryError::Unauthorized {
                registry: r.registry.clone(),
                what: what.into(),
                status: status.as_u16(),
                detail: error_detail(&body),
            }));
        }
        token::parse_token_response(&body).map_err(proto)
    }

    /// GET a manifest (by tag or digest) and verify it.
    pub async fn manifest(
        &self,
        r: &RegistryRef,
        reference: &str,
        progress: &dyn Progress,
    ) -> Result<FetchedManifest, RegistryError> {
        let ep = self.endpoint(r).await?;
        let url = format!("{}/v2/{}/manifests/{}", ep.base, r.repository, reference);
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(media::ACCEPT));
        let what = format!("manifest {}:{reference}", r.repo_name());
        let (ep, url, headers, what_ref) = (&ep, &url, &headers, &what);
        let (bytes, ct, dcd) = self
            .with_retries(&what, progress, move |_| async move {
                let what = what_ref;
                let resp = self.get_once(ep, r, url, headers, what).await?;
                if !resp.status().is_success() {
                    let status_resp = (resp.status(), resp.headers().clone());
                    let body = read_capped(resp, 64 << 10).await.unwrap_or_default();
                    return Err(self.response_fail_parts(r, what, status_resp, &body));
                }
                if let Some(len) = resp.content_length() {
                    if len > MAX_MANIFEST {
                        return Err(Fail::Final(RegistryError::Protocol {
                            registry: r.registry.clone(),
                            what: what.clone(),
                            reason: format!(
                                "manifest of {len} bytes is larger than the 4 MiB limit"
                            ),
                        }));
                    }
                }
                let ct = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
                let dcd = resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = read_capped(resp, MAX_MANIFEST + 1)
                    .await
                    .map_err(|e| self.transport_fail(r, what, e))?;
                if body.len() as u64 > MAX_MANIFEST {
                    return Err(Fail::Final(RegistryError::Protocol {
                        registry: r.registry.clone(),
                        what: what.clone(),
                        reason: "manifest is larger than the 4 MiB limit".into(),
                    }));
                }
                Ok((body, ct, dcd))
            })
            .await?;
        let digest = Digest::of(&bytes);
        if let Ok(want) = Digest::parse(reference) {
            if want != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: r.registry.clone(),
                    blob: want,
                    actual: digest,
                    size: bytes.len() as u64,
                });
            }
        }
        if let Some(Ok(claimed)) = dcd.as_deref().map(Digest::parse) {
            if claimed != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: r.registry.clone(),
                    blob: claimed,
                    actual: digest,
                    size: bytes.len() as u64,
                });
            }
        }
        debug!(registry = %r.registry, repo = %r.repository, reference, %digest, "manifest fetched");
        Ok(FetchedManifest {
            bytes,
            media_type: ct,
            digest,
        })
    }

    fn response_fail_parts(
        &self,
        r: &RegistryRef,
        what: &str,
        (status, headers): (StatusCode, HeaderMap),
        body: &[u8],
    ) -> Fail {
        if retryable_status(status) {
            return Fail::Retry {
                err: status_error(r, what, status, &error_detail(body)),
                after: retry_after(&headers),
            };
        }
        Fail::Final(status_error(r, what, status, &error_detail(body)))
    }

    /// Download blob `d` (of `size` bytes) to `dest`, resuming a partial file already
    /// there (left by a crash), verifying size and digest. If a resumed download fails
    /// verification the partial file was bad: it is dropped and the blob downloaded
    /// once more from the start. On a verification failure `dest` is removed.
    /// Returns the number of bytes transferred over the network.
    pub async fn fetch_blob(
        &self,
        r: &RegistryRef,
        d: &Digest,
        size: u64,
        dest: &Path,
        progress: &dyn Progress,
    ) -> Result<u64, RegistryError> {
        let resumed = tokio::fs::metadata(dest)
            .await
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        match self.fetch_blob_once(r, d, size, dest, progress).await {
            Err(e) if resumed && e.is_integrity() => {
                warn!(blob = %d, error = %e, "a resumed download failed verification; downloading it again");
                let _ = tokio::fs::remove_file(dest).await;
                self.fetch_blob_once(r, d, size, dest, progress).await
            }
            other => other,
        }
    }

    async fn fetch_blob_once(
        &self,
        r: &RegistryRef,
        d: &Digest,
        size: u64,
        dest: &Path,
        progress: &dyn Progress,
    ) -> Result<u64, RegistryError> {
        let ep = self.endpoint(r).await?;
        let url = format!("{}/v2/{}/blobs/{}", ep.base, r.repository, d);
        let what = format!("blob {d}");
        let sink = BlobSink::open(dest.to_owned(), size).await?;
        let have = sink.len;
        if have > 0 {
            info!(blob = %d, have, "resuming a partial download");
        }
        let sink = tokio::sync::Mutex::new(sink);
        let transferred = std::sync::atomic::AtomicU64::new(0);
        let (sink_ref, transferred_ref, url_ref, what_ref, ep_ref) =
            (&sink, &transferred, &url, &what, &ep);
        let result = self
            .with_retries(&what, progress, move |_| {
                let (sink, transferred, url, what, ep) = (sink_ref, transferred_ref, url_ref, what_ref, ep_ref);
                async move {
                    let mut sink = sink.lock().await;
                    let mut headers = HeaderMap::new();
                    if sink.len > 0 && sink.len < size {
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes={}-", sink.len)) {
                            headers.insert(RANGE, v);
                        }
                    }
                    if sink.len == size && size > 0 {
                        return Ok(());
                    }
                    let mut resp = self.get_once(ep, r, url, &headers, what).await?;
                    match resp.status() {
                        StatusCode::OK => {
                            if sink.len > 0 {
                                debug!(blob = %d, "server ignored Range; starting over");
                                sink.reset().await.map_err(Fail::Final)?;
                            }
                        }
                        StatusCode::PARTIAL_CONTENT => {
                            let start = content_range_start(resp.headers());
                            if start != Some(sink.len) {
                                sink.reset().await.map_err(Fail::Final)?;
                                return Err(Fail::Retry {
                                    err: RegistryError::Protocol {
                                        registry: r.registry.clone(),
                                        what: what.clone(),
                                        reason: format!("server answered Range with start {start:?}"),
                                    },
                                    after: None,
                                });
                            }
                        }
                        StatusCode::RANGE_NOT_SATISFIABLE => {
                            sink.reset().await.map_err(Fail::Final)?;
                            return Err(Fail::Retry {
                                err: status_error(r, what, StatusCode::RANGE_NOT_SATISFIABLE, ""),
                                after: Some(Duration::ZERO),
                            });
                        }
                        _ => {
                            let parts = (resp.status(), resp.headers().clone());
                            let body = read_capped(resp, 64 << 10).await.unwrap_or_default();
                            return Err(self.response_fail_parts(r, what, parts, &body));
                        }
                    }
                    progress.event(&Event::BlobBytes {
                        digest: d,
                        bytes: 0,
                    });
                    loop {
                        match resp.chunk().await {
                            Ok(Some(chunk)) => {
                                if sink.len + chunk.len() as u64 > size {
                                    return Err(Fail::Final(RegistryError::Size {
                                        registry: r.registry.clone(),
                                        blob: d.clone(),
                                        reason: format!("the server sent more than the {size} bytes the manifest declares"),
                                    }));
                                }
                                let n = chunk.len() as u64;
                                sink.write(chunk).await.map_err(Fail::Final)?;
                                transferred.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                                progress.event(&Event::BlobBytes { digest: d, bytes: n });
                            }
                            Ok(None) => break,
                            // say how far it got: reqwest only says "error decoding
                            // response body" when a registry cuts a blob short
                            Err(e) => {
                                let what = format!(
                                    "{what} (the connection broke after {} of {size} bytes)",
                                    sink.len
                                );
                                return Err(self.transport_fail(r, &what, e));
                            }
                        }
                    }
                    if sink.len < size {
                        return Err(Fail::Retry {
                            err: RegistryError::Size {
                                registry: r.registry.clone(),
                                blob: d.clone(),
                                reason: format!("the connection ended after {} of {size} bytes", sink.len),
                            },
                            after: None,
                        });
                    }
                    Ok(())
                }
            })
            .await;
        let sink = sink.into_inner();
        if let Err(e) = result {
            let keep = !e.is_integrity();
            sink.abandon(keep).await;
            return Err(e);
        }
        let (actual, len) = sink.finish().await?;
        if len != size || actual != *d {
            let _ = tokio::fs::remove_file(dest).await;
            return Err(RegistryError::DigestMismatch {
                registry: r.registry.clone(),
                blob: d.clone(),
                actual,
                size: len,
            });
        }
        Ok(transferred.into_inner())
    }
}

fn status_error(r: &RegistryRef, what: &str, status: StatusCode, detail: &str) -> RegistryError {
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    match status.as_u16() {
        404 => RegistryError::NotFound {
            registry: r.registry.clone(),
            what: what.to_owned(),
            detail,
        },
        401 | 403 => RegistryError::Unauthorized {
            registry: r.registry.clone(),
            what: what.to_owned(),
            status: status.as_u16(),
            detail,
        },
        s => RegistryError::Status {
            registry: r.registry.clone(),
            what: what.to_owned(),
            status: s,
            detail,
        },
    }
}

/// `{"errors":[{"code":..,"message":..}]}` → "CODE: message; ...".
fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    #[derive(serde::Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errs>(body) {
        Ok(e) => e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    }
}

async fn read_capped(mut resp: reqwest::Response, cap: u64) -> Result<Vec<u8>, reqwest::Error> {
    let mut v = Vec::new();
    while let Some(c) = resp.chunk().await? {
        v.extend_from_slice(&c);
        if v.len() as u64 >= cap {
            v.truncate(cap as usize);
            break;
        }
    }
    Ok(v)
}

fn content_range_start(h: &HeaderMap) -> Option<u64> {
    // Content-Range: bytes START-END/TOTAL
    let v = h.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let v = v.trim().strip_prefix("bytes")?.trim();
    v.split('-').next()?.trim().parse().ok()
}
