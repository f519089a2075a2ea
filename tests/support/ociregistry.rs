//! A minimal registry (distribution API v2, pull side, plain HTTP) serving one OCI
//! image layout as `<repo>:latest`, that can be told to cut every blob response in the
//! middle (a registry dying mid-pull). One request per connection.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct OciRegistry {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    layout: PathBuf,
    repo: String,
    manifest_digest: String,
    manifest_type: String,
    dying: AtomicBool,
    blob_gets: AtomicUsize,
    cut: AtomicUsize,
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OciRegistry {
    /// Serve the image tagged first in `layout`'s index.json as `repo:latest`.
    pub async fn start(layout: &Path, repo: &str) -> OciRegistry {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let m = &index["manifests"][0];
        let shared = Arc::new(Shared {
            layout: layout.to_owned(),
            repo: repo.to_owned(),
            manifest_digest: m["digest"].as_str().unwrap().to_owned(),
            manifest_type: m["mediaType"].as_str().unwrap().to_owned(),
            dying: AtomicBool::new(false),
            blob_gets: AtomicUsize::new(0),
            cut: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sh = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let sh = sh.clone();
                tokio::spawn(async move {
                    let _ = serve(&sh, s).await;
                });
            }
        });
        OciRegistry { addr, shared, task }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Cut every blob response after half its bytes (true) or serve normally.
    pub fn set_dying(&self, on: bool) {
        self.shared.dying.store(on, Ordering::SeqCst);
    }

    /// Blob requests so far, and how many of them were cut.
    pub fn blob_stats(&self) -> (usize, usize) {
        (
            self.shared.blob_gets.load(Ordering::SeqCst),
            self.shared.cut.load(Ordering::SeqCst),
        )
    }
}

async fn serve(sh: &Shared, mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let range: Option<u64> = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("range"))
        .and_then(|(_, v)| {
            v.trim()
                .strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse()
                .ok()
        });
    let head_only = method == "HEAD";
    let prefix = format!("/v2/{}/", sh.repo);
    if path == "/v2/" || path == "/v2" {
        return respond(&mut s, "200 OK", "application/json", &[], b"{}", head_only).await;
    }
    let Some(rest) = path.strip_prefix(&prefix) else {
        return respond(&mut s, "404 Not Found", "text/plain", &[], b"", head_only).await;
    };
    if let Some(reference) = rest.strip_prefix("manifests/") {
        if reference != "latest" && reference != sh.manifest_digest {
            return respond(&mut s, "404 Not Found", "text/plain", &[], b"", head_only).await;
        }
        let data = std::fs::read(blob_path(&sh.layout, &sh.manifest_digest))?;
        let dig = format!("Docker-Content-Digest: {}", sh.manifest_digest);
        return respond(
            &mut s,
            "200 OK",
            &sh.manifest_type,
            &[&dig],
            &data,
            head_only,
        )
        .await;
    }
    if let Some(digest) = rest.strip_prefix("blobs/") {
        let Ok(data) = std::fs::read(blob_path(&sh.layout, digest)) else {
            return respond(&mut s, "404 Not Found", "text/plain", &[], b"", head_only).await;
        };
        if head_only {
            return respond(
                &mut s,
                "200 OK",
                "application/octet-stream",
                &[],
                &data,
                true,
            )
            .await;
        }
        sh.blob_gets.fetch_add(1, Ordering::SeqCst);
        let total = data.len();
        let (status, body, extra) = match range {
            Some(r) if (r as usize) < total => (
                "206 Partial Content",
                &data[r as usize..],
                vec![format!("Content-Range: bytes {r}-{}/{total}", total - 1)],
            ),
            _ => ("200 OK", &data[..], vec![]),
        };
        if sh.dying.load(Ordering::SeqCst) {
            sh.cut.fetch_add(1, Ordering::SeqCst);
            let hdr = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
                body.len(),
                extra.iter().map(|e| format!("{e}\r\n")).collect::<String>()
            );
            s.write_all(hdr.as_bytes()).await?;
            s.write_all(&body[..body.len() / 2]).await?;
            s.flush().await?;
            // the registry dies: the connection closes with half the blob sent
            return Ok(());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        return respond(
            &mut s,
            status,
            "application/octet-stream",
            &extra,
            body,
            false,
        )
        .await;
    }
    respond(&mut s, "404 Not Found", "text/plain", &[], b"", head_only).await
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    // a digest from the request: hex only, no path tricks
    let hex: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    layout.join("blobs/sha256").join(hex)
}

async fn respond(
    s: &mut TcpStream,
    status: &str,
    ctype: &str,
    extra: &[&str],
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut hdr = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for e in extra {
        hdr.push_str(e);
        hdr.push_str("\r\n");
    }
    hdr.push_str("\r\n");
    s.write_all(hdr.as_bytes()).await?;
    if !head_only {
        s.write_all(body).await?;
    }
    s.flush().await?;
    s.shutdown().await
}
