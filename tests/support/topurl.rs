//! The fake hub's `topurl`: its temp topdir served read-only over HTTP, as Apache serves
//! `/mnt/koji` at `/kojifiles` (GET and HEAD, Content-Length, symlinks followed — repos
//! reach `packages/` through `toplink` — but nothing outside the topdir). Files are
//! served with their bytes as they are, so a bare git repository in the topdir is
//! cloneable over git's "dumb" HTTP protocol after `git update-server-info`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A running file server.
pub struct TopUrl {
    addr: SocketAddr,
    /// Paths requested (for tests that check what was downloaded).
    pub requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TopUrl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let rel = url_path.trim_start_matches('/');
    let rel = rel.strip_prefix("kojifiles/").unwrap_or(rel);
    let decoded = percent_decode(rel)?;
    if decoded.split('/').any(|c| c == "..") {
        return None;
    }
    let p = root.join(decoded);
    let real = p.canonicalize().ok()?;
    let root = root.canonicalize().ok()?;
    (real.starts_with(&root) && real.is_file()).then_some(real)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl TopUrl {
    /// Serve `root` on an ephemeral loopback port.
    pub async fn start(root: PathBuf) -> TopUrl {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let root = root.clone();
                let reqs = reqs.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let root = root.clone();
                            let reqs = reqs.clone();
                            async move {
                                let path = req.uri().path().to_owned();
                                reqs.lock().unwrap().push(path.clone());
                                let head = req.method() == hyper::Method::HEAD;
                                if req.method() != hyper::Method::GET && !head {
                                    return Ok::<_, std::convert::Infallible>(
                                        Response::builder()
                                            .status(StatusCode::METHOD_NOT_ALLOWED)
                                            .body(Full::new(Bytes::new()))
                                            .unwrap(),
                                    );
                                }
                                let resp = match resolve(&root, &path)
                                    .and_then(|p| std::fs::read(p).ok())
                                {
                                    Some(data) => {
                                        let len = data.len();
                                        Response::builder()
                                            .header("Content-Length", len)
                                            .body(Full::new(if head {
                                                Bytes::new()
                                            } else {
                                                Bytes::from(data)
                                            }))
                                            .unwrap()
                                    }
                                    None => Response::builder()
                                        .status(StatusCode::NOT_FOUND)
                                        .body(Full::new(Bytes::from_static(b"not found")))
                                        .unwrap(),
                                };
                                Ok(resp)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TopUrl {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:<port>/kojifiles` (the `topurl` to configure).
    pub fn url(&self) -> String {
        format!("http://{}/kojifiles", self.addr)
    }

    /// Requests seen for paths containing `needle`.
    pub fn requested(&self, needle: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.contains(needle))
            .count()
    }
}
