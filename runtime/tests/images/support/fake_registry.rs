//! An in-process fake registry (distribution API v2, pull side) on 127.0.0.1:0, with
//! switchable auth and faults, and a log of what it was asked.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};

use super::{Blob, TestImage};
use adjutant_runtime::digest::Digest;

#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    None,
    Basic {
        user: String,
        pass: String,
    },
    /// Token auth; the token endpoint wants these credentials (None: anonymous tokens).
    Bearer {
        creds: Option<(String, String)>,
    },
}

#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The next N blob requests get 503.
    pub fail_503: u32,
    /// The next N blob responses stop after half the data (connection dropped).
    pub die_mid_blob: u32,
    /// Serve these blobs with one byte flipped.
    pub corrupt: HashSet<Digest>,
    /// Wait this long before answering a blob request.
    pub blob_delay: Duration,
}

#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
pub struct State {
    manifests: Mutex<HashMap<(String, String), Blob>>,
    blobs: Mutex<HashMap<Digest, Vec<u8>>>,
    pub auth: Mutex<Auth>,
    pub faults: Mutex<Faults>,
    log: Mutex<Vec<Req>>,
    addr: Mutex<Option<SocketAddr>>,
}

pub struct FakeRegistry {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

fn error(status: StatusCode, code: &str) -> Response<Body> {
    full(
        status,
        format!(r#"{{"errors":[{{"code":"{code}","message":"fake registry says {code}"}}]}}"#),
    )
}

impl FakeRegistry {
    /// A plain-HTTP fake registry.
    pub async fn start() -> FakeRegistry {
        Self::start_with(None).await
    }

    /// A fake registry serving HTTPS with this certificate chain and key (PEM).
    pub async fn start_tls(cert_pem: &[u8], key_pem: &[u8]) -> FakeRegistry {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> FakeRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        *state.addr.lock().unwrap() = Some(addr);
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let io = hyper_util::rt::TokioIo::new(sock);
                            let _ = http.serve_connection(io, svc).await;
                        }
                        Some(acc) => {
                            // A failed handshake (a client refusing our certificate) just ends.
                            if let Ok(s) = acc.accept(sock).await {
                                let io = hyper_util::rt::TokioIo::new(s);
                                let _ = http.serve_connection(io, svc).await;
                            }
                        }
                    }
                });
            }
        });
        FakeRegistry { addr, state, task }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn push(&self, repo: &str, tag: &str, img: &TestImage) {
        let mut m = self.state.manifests.lock().unwrap();
        m.insert((repo.into(), tag.into()), img.manifest.clone());
        m.insert(
            (repo.into(), img.manifest.digest.to_string()),
            img.manifest.clone(),
        );
        let mut b = self.state.blobs.lock().unwrap();
        for blob in img.blobs() {
            b.insert(blob.digest.clone(), blob.data.clone());
        }
    }

    pub fn push_index(&self, repo: &str, tag: &str, index: &Blob, images: &[&TestImage]) {
        for (i, img) in images.iter().enumerate() {
            self.push(repo, &format!("{tag}-part{i}"), img);
        }
        let mut m = self.state.manifests.lock().unwrap();
        m.insert((repo.into(), tag.into()), index.clone());
        m.insert((repo.into(), index.digest.to_string()), index.clone());
    }

    pub fn set_auth(&self, a: Auth) {
        *self.state.auth.lock().unwrap() = a;
    }

    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.state.faults.lock().unwrap()
    }

    pub fn requests(&self) -> Vec<Req> {
        self.state.log.lock().unwrap().clone()
    }

    /// GET requests for blob `d`.
    pub fn blob_gets(&self, d: &Digest) -> usize {
        let p = format!("/blobs/{d}");
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(&p))
            .count()
    }
}

async fn handle(st: &State, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let hdr = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    st.log.lock().unwrap().push(Req {
        method: req.method().to_string(),
        path: path.clone(),
        range: hdr("range"),
        authorization: hdr("authorization"),
    });
    let auth = st.auth.lock().unwrap().clone();
    let addr = st.addr.lock().unwrap().unwrap();
    let b64 =
        |u: &str, p: &str| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));

    if path == "/token" {
        let Auth::Bearer { creds } = &auth else {
            return error(StatusCode::NOT_FOUND, "NOT_FOUND");
        };
        if let Some((u, p)) = creds {
            if hdr("authorization") != Some(format!("Basic {}", b64(u, p))) {
                return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
            }
        }
        return full(StatusCode::OK, r#"{"token":"fake-token","expires_in":300}"#);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND");
    };
    // Auth.
    let repo_of = |r: &str| {
        r.rfind("/manifests/")
            .or_else(|| r.rfind("/blobs/"))
            .map(|i| r[..i].to_owned())
            .unwrap_or_default()
    };
    let denied = match &auth {
        Auth::None => None,
        Auth::Basic { user, pass } => (hdr("authorization") != Some(format!("Basic {}", b64(user, pass))))
            .then(|| r#"Basic realm="fake registry""#.to_owned()),
        Auth::Bearer { .. } => (hdr("authorization").as_deref() != Some("Bearer fake-token")).then(|| {
            format!(
                r#"Bearer realm="http://{addr}/token",service="fake",scope="repository:{}:pull""#,
                repo_of(rest)
            )
        }),
    };
    if let Some(challenge) = denied {
        let mut r = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        r.headers_mut()
            .insert("www-authenticate", challenge.parse().unwrap());
        return r;
    }
    if rest.is_empty() {
        return full(StatusCode::OK, "{}");
    }
    if let Some(i) = rest.rfind("/manifests/") {
        let (repo, reference) = (&rest[..i], &rest[i + "/manifests/".len()..]);
        let m = st
            .manifests
            .lock()
            .unwrap()
            .get(&(repo.to_owned(), reference.to_owned()))
            .cloned();
        let Some(m) = m else {
            return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
        };
        let mut r = full(StatusCode::OK, m.data.clone());
        r.headers_mut()
            .insert("content-type", m.media_type.parse().unwrap());
        r.headers_mut().insert(
            "docker-content-digest",
            m.digest.to_string().parse().unwrap(),
        );
        return r;
    }
    if let Some(i) = rest.rfind("/blobs/") {
        let Ok(d) = Digest::parse(&rest[i + "/blobs/".len()..]) else {
            return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
        };
        let data = st.blobs.lock().unwrap().get(&d).cloned();
        let Some(mut data) = data else {
            return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
        };
        let (delay, fail, die, corrupt) = {
            let mut f = st.faults.lock().unwrap();
            let fail = f.fail_503 > 0;
            if fail {
                f.fail_503 -= 1;
            }
            let die = !fail && f.die_mid_blob > 0;
            if die {
                f.die_mid_blob -= 1;
            }
            (f.blob_delay, fail, die, f.corrupt.contains(&d))
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if fail {
            return error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
        }
        if corrupt {
            if let Some(b) = data.last_mut() {
                *b ^= 0xff;
            }
        }
        let total = data.len();
        let start = hdr("range")
            .and_then(|r| {
                r.strip_prefix("bytes=")
                    .and_then(|r| r.strip_suffix('-'))
                    .map(str::to_owned)
            })
            .and_then(|s| s.parse::<usize>().ok());
        let (status, body) = match start {
            Some(s) if s < total => (StatusCode::PARTIAL_CONTENT, data[s..].to_vec()),
            Some(_) => return error(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
            None => (StatusCode::OK, data),
        };
        let len = body.len();
        let mut r = if die {
            let half = Bytes::from(body[..len / 2].to_vec());
            // Send half, give it time to reach the client, then drop the connection.
            let frames = futures_util::stream::unfold(0u8, move |step| {
                let half = half.clone();
                async move {
                    match step {
                        0 => Some((Ok(Frame::data(half)), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Some((
                                Err(std::io::Error::other("fake registry drops the connection")),
                                2,
                            ))
                        }
                        _ => None,
                    }
                }
            });
            let mut r = Response::new(StreamBody::new(frames).boxed());
            r.headers_mut()
                .insert("content-length", len.to_string().parse().unwrap());
            r
        } else {
            full(StatusCode::OK, body)
        };
        *r.status_mut() = status;
        if status == StatusCode::PARTIAL_CONTENT {
            let s = start.unwrap_or(0);
            r.headers_mut().insert(
                "content-range",
                format!("bytes {s}-{}/{total}", total - 1).parse().unwrap(),
            );
        }
        r.headers_mut()
            .insert("content-type", "application/octet-stream".parse().unwrap());
        return r;
    }
    error(StatusCode::NOT_FOUND, "NOT_FOUND")
}
