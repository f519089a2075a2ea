//! Request routing: read-only (`GET`/`HEAD`), no request bodies, JSON errors in the
//! prototype's shape for everything unknown.
//!
//! ```text
//! /                                  HTML dashboard
//! /tasks/<id>   /containers/<id>     HTML detail pages
//! /api/v1/status                     host, hub, load, health
//! /api/v1/tasks[?status=S]           running and kept tasks
//! /api/v1/tasks/<id>                 one task, with steps
//! /api/v1/tasks/<id>/logs?tail=N[&name=LOG]   end of a task log (text/plain)
//! /api/v1/containers[?all=1]         running (all: also exited/removed) containers
//! /api/v1/containers/<id>            one container
//! /metrics                           Prometheus text (OpenMetrics on request)
//! /healthz                           liveness probe
//! ```

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use super::api::{self, ViewCtx};
use super::dashboard;
use super::metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
use super::StatusState;
use crate::registry::{now, Snapshot};

/// The response body type.
pub type Body = Full<Bytes>;

/// Default lines of `…/logs`.
pub const DEFAULT_TAIL: usize = 100;
/// Lines of the main log shown on a task page.
const PAGE_TAIL: usize = 100;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn base(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A JSON response (pretty-printed, as the prototype's), readable from any origin.
pub fn json(status: StatusCode, v: &Value) -> Response<Body> {
    let mut text = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    let mut r = base(status, "application/json; charset=utf-8", text);
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// A JSON error: `{"error", "error_code", "message"}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let title = status.canonical_reason().unwrap_or("Error");
    json(status, &api::error(title, code, message))
}

fn not_found(message: &str) -> Response<Body> {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", message)
}

fn html(body: String) -> Response<Body> {
    let mut r = base(StatusCode::OK, "text/html; charset=utf-8", body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn text(body: String) -> Response<Body> {
    base(StatusCode::OK, "text/plain; charset=utf-8", body)
}

fn query(req: &Request<impl hyper::body::Body>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn has_body(req: &Request<impl hyper::body::Body>) -> bool {
    let h = req.headers();
    if h.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    match h.get(header::CONTENT_LENGTH) {
        Some(v) => v.to_str().map_or(true, |v| v.trim() != "0"),
        None => false,
    }
}

/// Answer one request.
pub async fn handle<B: hyper::body::Body>(
    state: Arc<StatusState>,
    req: Request<B>,
) -> Result<Response<Body>, Infallible> {
    Ok(route(&state, &req).await)
}

async fn route<B: hyper::body::Body>(state: &Arc<StatusState>, req: &Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "the status server is read-only: use GET",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if has_body(req) {
        let mut r = error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BODY_NOT_ACCEPTED",
            "requests to the status server have no body",
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let path = req.uri().path();
    let path = if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    let q = query(req);
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    // the frequent polls (probes, scrapes, status) do not copy the task history
    let live = matches!(
        segs.as_slice(),
        ["healthz"] | ["metrics"] | ["api", "v1", "status"]
    );
    let snap = if live {
        state.registry.live_snapshot()
    } else {
        state.registry.snapshot()
    };
    let ctx = ViewCtx {
        snap: &snap,
        info: &state.info,
        now: now(),
    };
    match segs.as_slice() {
        [""] => html(dashboard::dashboard(&ctx)),
        ["healthz"] => healthz(&snap),
        ["metrics"] => metrics(state, &snap, req),
        ["tasks", id] => match task_of(&snap, id) {
            Some(t) => {
                let tail = match api::main_log(t) {
                    Some((name, p)) => read_tail(state, p, PAGE_TAIL, t.log_tails.get(name))
                        .await
                        .ok(),
                    None => None,
                };
                html(dashboard::task_page(&ctx, t, tail.as_deref()))
            }
            None => not_found(&format!("no task {id} here")),
        },
        ["containers", id] => match snap.containers.get(*id) {
            Some(c) => html(dashboard::container_page(&ctx, c)),
            None => not_found(&format!("no container {id} here")),
        },
        ["api", "v1", "status"] => json(StatusCode::OK, &api::status(&ctx)),
        ["api", "v1", "tasks"] => json(StatusCode::OK, &api::tasks(&ctx, param(&q, "status"))),
        ["api", "v1", "tasks", id] => match task_of(&snap, id) {
            Some(t) => json(StatusCode::OK, &api::task_detail(&ctx, t)),
            None => not_found(&format!("no task {id} here")),
        },
        ["api", "v1", "tasks", id, "logs"] => task_log(state, &snap, id, &q).await,
        ["api", "v1", "containers"] => {
            let all = param(&q, "all").is_some_and(|v| matches!(v, "1" | "true" | "yes"));
            json(StatusCode::OK, &api::containers(&ctx, all))
        }
        ["api", "v1", "containers", id] => match snap.containers.get(*id) {
            Some(c) => json(StatusCode::OK, &api::container_detail(&ctx, c)),
            None => not_found(&format!("no container {id} here")),
        },
        _ => not_found(&format!("no such resource: {path}")),
    }
}

fn task_of<'a>(snap: &'a Snapshot, id: &str) -> Option<&'a crate::registry::TaskRecord> {
    id.parse::<i64>().ok().and_then(|id| snap.tasks.get(&id))
}

fn healthz(snap: &Snapshot) -> Response<Body> {
    if snap.host.shutting_down {
        let mut r = base(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "shutting down\n",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    }
    text("ok\n".into())
}

fn metrics<B>(state: &StatusState, snap: &Snapshot, req: &Request<B>) -> Response<Body> {
    let openmetrics = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    match state.registry.metrics().encode(snap, openmetrics) {
        Ok(body) => base(
            StatusCode::OK,
            if openmetrics {
                OPENMETRICS_CONTENT_TYPE
            } else {
                PROMETHEUS_CONTENT_TYPE
            },
            body,
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            &format!("cannot encode the metrics: {e}"),
        ),
    }
}

async fn task_log(
    state: &Arc<StatusState>,
    snap: &Snapshot,
    id: &str,
    q: &[(String, String)],
) -> Response<Body> {
    let Some(t) = task_of(snap, id) else {
        return not_found(&format!("no task {id} here"));
    };
    let tail = match param(q, "tail") {
        None | Some("") => DEFAULT_TAIL,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => n.min(state.limits.max_tail_lines),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    &format!("tail must be a number of lines, not {v:?}"),
                )
            }
        },
    };
    let (name, path) = match param(q, "name") {
        Some(n) => match t.logs.get_key_value(n) {
            Some((k, v)) => (k.as_str(), v.as_str()),
            None => return not_found(&format!("task {} has no log {n:?}", t.id)),
        },
        None => match api::main_log(t) {
            Some(x) => x,
            None => return not_found(&format!("task {} has no log", t.id)),
        },
    };
    match read_tail(state, path, tail, t.log_tails.get(name)).await {
        Ok(body) => {
            let mut r = text(body);
            if let Ok(v) = HeaderValue::from_str(name) {
                r.headers_mut().insert("x-log-name", v);
            }
            r
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => not_found(&format!(
            "log {name} of task {} is no longer on this host{}",
            t.id,
            state
                .info
                .log_url(t.id, name)
                .map(|u| format!("; the hub has it: {u}"))
                .unwrap_or_default()
        )),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            &format!("cannot read log {name} of task {}: {e}", t.id),
        ),
    }
}

/// The last `lines` lines of the log at `path`, redacted; once the file is gone,
/// of the end kept in `archived` (failed tasks).
async fn read_tail(
    state: &Arc<StatusState>,
    path: &str,
    lines: usize,
    archived: Option<&String>,
) -> std::io::Result<String> {
    let path = path.to_owned();
    let max = state.limits.max_tail_bytes;
    let st = state.clone();
    let archived = archived.cloned();
    tokio::task::spawn_blocking(move || {
        let text = match tail_file(Path::new(&path), lines, max) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match archived {
                Some(a) => tail_lines(a.as_bytes(), false, lines),
                None => return Err(e),
            },
            r => r?,
        };
        Ok(st.info.redactor.text(&text))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The last `lines` lines of a regular file, reading at most `max_bytes` from its
/// end. The file is opened without following a symlink (a log is a file the daemon
/// writes; a link put in its place must not expose another file).
pub fn tail_file(path: &Path, lines: usize, max_bytes: u64) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    if lines == 0 {
        return Ok(String::new());
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let len = meta.len();
    let start = len.saturating_sub(max_bytes);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.take(max_bytes).read_to_end(&mut buf)?;
    Ok(tail_lines(&buf, start > 0, lines))
}

/// The last `lines` lines of `text` (lossy UTF-8, ending in a newline). With
/// `partial`, `text` starts mid-file and its first, partial line is dropped.
pub fn tail_lines(text: &[u8], partial: bool, lines: usize) -> String {
    if lines == 0 {
        return String::new();
    }
    let mut text = text;
    if partial {
        match text.iter().position(|&b| b == b'\n') {
            Some(i) => text = &text[i + 1..],
            None => text = &[],
        }
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut cut = 0;
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == lines {
                cut = i + 1;
                break;
            }
        }
    }
    let mut out = String::from_utf8_lossy(&text[cut..]).into_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_of_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("build.log");
        let body: String = (1..=500).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, &body).unwrap();
        assert_eq!(tail_file(&p, 2, 1 << 20).unwrap(), "line 499\nline 500\n");
        assert_eq!(tail_file(&p, 1000, 1 << 20).unwrap(), body);
        assert_eq!(tail_file(&p, 0, 1 << 20).unwrap(), "");
        // bounded bytes: only whole lines from the last 30 bytes
        assert_eq!(
            tail_file(&p, 1000, 30).unwrap(),
            "line 498\nline 499\nline 500\n"
        );
        // no trailing newline
        std::fs::write(&p, "a\nb\nc").unwrap();
        assert_eq!(tail_file(&p, 2, 1 << 20).unwrap(), "b\nc\n");
        // a symlink in the log's place is not followed
        let secret = d.path().join("secret");
        std::fs::write(&secret, "top secret\n").unwrap();
        let link = d.path().join("link.log");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(tail_file(&link, 10, 1 << 20).is_err());
        // nor is a directory or fifo read
        assert!(tail_file(d.path(), 10, 1 << 20).is_err());
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(tail_file(&fifo, 10, 1 << 20).is_err());
    }
}
