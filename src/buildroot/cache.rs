//! The buildroot cache: what an install step produced, kept as an overlay layer in
//! the image store (the runtime's local layers), so the next buildroot with the same
//! inputs starts from it and runs no package manager at all.
//!
//! Two levels, each a layer on top of the previous one:
//!
//! 1. **install**: image + `dnf install @<group> <packages>`; keyed by the image
//!    manifest digest, the id mapping, every repo's base URLs *and the SHA-256 of its
//!    `repodata/repomd.xml`* (so a local repo that changed under the same URL is a new
//!    key; a Koji repo id never changes content), the arch, the group, the sorted
//!    packages and the package manager options;
//! 2. **builddep**: install layer + an SRPM's BuildRequires; keyed by the install
//!    key and the sorted requirement list (`rpm -qpR`, without `rpmlib()`).
//!
//! The runtime side ([`adjutant_runtime::store::LocalLayer`]) gives the locking
//! (one maker per key, shared leases while containers use a layer, eviction only of
//! unused layers), persistence across restarts and the LRU bound.

use std::time::Duration;

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::request::BuildrootRequest;
use super::BuildrootError;

/// Format version of the keys: bump to invalidate every cached layer.
const KEY_VERSION: u32 = 1;

/// Largest `repomd.xml` accepted.
const MAX_REPOMD: u64 = 4 << 20;

/// A cache key and what it stands for (stored with the layer, shown in logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// `install-<hex>` or `builddep-<hex>` (a file name).
    pub key: String,
    /// Human-readable description of the inputs.
    pub description: String,
}

fn digest(v: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// The key of the install layer of `req` on image `image_digest` for the id mapping
/// `mapping_key`, given each repo's `repomd.xml` digest (`repo_revs`, in repo order).
pub fn install_key(
    req: &BuildrootRequest,
    image_digest: &str,
    mapping_key: &str,
    repo_revs: &[String],
) -> CacheKey {
    let mut packages = req.packages.clone();
    packages.sort();
    packages.dedup();
    let repos: Vec<serde_json::Value> = req
        .repos
        .iter()
        .zip(repo_revs)
        .map(|(r, rev)| json!({"name": r.name, "baseurls": r.baseurls, "repomd": rev}))
        .collect();
    let d = &req.dnf;
    let v = json!({
        "v": KEY_VERSION,
        "level": "install",
        "image": image_digest,
        "mapping": mapping_key,
        "repos": repos,
        "arch": req.arch,
        "group": req.install_group,
        "packages": packages,
        "package_manager": d.package_manager,
        "releasever": d.releasever,
        "module_hotfixes": d.module_hotfixes,
        "best": d.best,
    });
    CacheKey {
        key: format!("install-{}", digest(&v)),
        description: format!(
            "install of {} on {image_digest} ({}; repos {})",
            match (&req.install_group, packages.is_empty()) {
                (Some(g), true) => format!("@{g}"),
                (Some(g), false) => format!("@{g} {}", packages.join(" ")),
                (None, _) => packages.join(" "),
            },
            req.arch,
            req.repos
                .iter()
                .flat_map(|r| r.baseurls.first())
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// The key of the BuildRequires layer on top of the install layer `parent`.
pub fn builddep_key(parent: &CacheKey, requires: &[String]) -> CacheKey {
    let v = json!({
        "v": KEY_VERSION,
        "level": "builddep",
        "parent": parent.key,
        "requires": requires,
    });
    CacheKey {
        key: format!("builddep-{}", digest(&v)),
        description: format!("BuildRequires {} on {}", requires.join(", "), parent.key),
    }
}

/// Fetch a URL (`http(s)://` or `file://`), at most `max` bytes.
pub(crate) async fn fetch(
    client: &reqwest::Client,
    url: &str,
    max: u64,
) -> Result<Vec<u8>, BuildrootError> {
    let fail = |reason: String| BuildrootError::Repo {
        url: url.to_owned(),
        reason,
    };
    if let Some(path) = url.strip_prefix("file://") {
        let path = path.to_owned();
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if meta.len() > max {
            return Err(fail(format!("larger than {max} bytes")));
        }
        return tokio::fs::read(&path)
            .await
            .map_err(|e| fail(e.to_string()));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(fail(
            "only http://, https:// and file:// URLs are supported".into(),
        ));
    }
    let mut resp = client
        .get(url)
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        if out.len() as u64 + chunk.len() as u64 > max {
            return Err(fail(format!("larger than {max} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The SHA-256 of each repo's `repodata/repomd.xml` (first base URL that answers).
pub(crate) async fn repo_revisions(
    client: &reqwest::Client,
    req: &BuildrootRequest,
) -> Result<Vec<String>, BuildrootError> {
    let mut out = Vec::new();
    for r in &req.repos {
        let mut last = None;
        let mut got = None;
        for base in &r.baseurls {
            let url = format!("{}/repodata/repomd.xml", base.trim_end_matches('/'));
            match fetch(client, &url, MAX_REPOMD).await {
                Ok(b) => {
                    got = Some(hex::encode(Sha256::digest(&b)));
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        match (got, last) {
            (Some(g), _) => out.push(g),
            (None, Some(e)) => return Err(e),
            (None, None) => {
                return Err(BuildrootError::Config(format!(
                    "repo {} has no base URL",
                    r.name
                )))
            }
        }
    }
    Ok(out)
}

/// Whether a repo's `repomd.xml` lists group data (comps).
pub(crate) fn repomd_has_groups(repomd: &[u8]) -> bool {
    let text = String::from_utf8_lossy(repomd);
    text.contains("type=\"group\"")
        || text.contains("type=\"group_gz\"")
        || text.contains("type='group'")
}

#[cfg(test)]
mod tests {
    use super::super::request::{DnfOptions, RepoSource};
    use super::*;
    use crate::policy::{ImageSource, Resolution};

    fn req() -> BuildrootRequest {
        BuildrootRequest {
            name: "t".into(),
            image: Resolution {
                image: "i".into(),
                source: ImageSource::Default,
                tag: "t".into(),
            },
            repos: vec![RepoSource {
                name: "build".into(),
                baseurls: vec!["file:///r".into()],
            }],
            koji: None,
            arch: "x86_64".into(),
            target_arch: "x86_64".into(),
            install_group: Some("build".into()),
            packages: vec!["b".into(), "a".into()],
            macros: Default::default(),
            env: Default::default(),
            dnf: DnfOptions::default(),
            build_network: false,
            seccomp: true,
            mounts: vec![],
            limits: Default::default(),
            build_timeout: Duration::from_secs(1),
            max_log_size: None,
            logdir: "/l".into(),
            workdir: "/w".into(),
            resultdir: None,
            hostname: None,
        }
    }

    #[test]
    fn keys_change_with_every_input_and_only_then() {
        let r = req();
        let revs = vec!["rev1".to_string()];
        let k = install_key(&r, "sha256:aa", "root-100000-65536", &revs);
        assert!(k.key.starts_with("install-"));
        assert_eq!(k, install_key(&r, "sha256:aa", "root-100000-65536", &revs));
        let mut r2 = r.clone();
        r2.packages = vec!["a".into(), "b".into(), "a".into()];
        r2.logdir = "/elsewhere".into();
        r2.name = "other".into();
        assert_eq!(
            k.key,
            install_key(&r2, "sha256:aa", "root-100000-65536", &revs).key,
            "order, dups, logdir and name do not matter"
        );
        let variants: Vec<String> = vec![
            install_key(&r, "sha256:bb", "root-100000-65536", &revs).key,
            install_key(&r, "sha256:aa", "rootless-1000", &revs).key,
            install_key(&r, "sha256:aa", "root-100000-65536", &["rev2".to_string()]).key,
            {
                let mut x = r.clone();
                x.arch = "aarch64".into();
                install_key(&x, "sha256:aa", "root-100000-65536", &revs).key
            },
            {
                let mut x = r.clone();
                x.install_group = Some("srpm-build".into());
                install_key(&x, "sha256:aa", "root-100000-65536", &revs).key
            },
            {
                let mut x = r.clone();
                x.packages.push("c".into());
                install_key(&x, "sha256:aa", "root-100000-65536", &revs).key
            },
            {
                let mut x = r.clone();
                x.repos[0].baseurls = vec!["file:///other".into()];
                install_key(&x, "sha256:aa", "root-100000-65536", &revs).key
            },
            {
                let mut x = r.clone();
                x.dnf.releasever = Some("40".into());
                install_key(&x, "sha256:aa", "root-100000-65536", &revs).key
            },
        ];
        for v in &variants {
            assert_ne!(v, &k.key);
        }
        let b1 = builddep_key(&k, &["gcc".into(), "make".into()]);
        assert!(b1.key.starts_with("builddep-"));
        assert_ne!(b1.key, builddep_key(&k, &["gcc".into()]).key);
        let k2 = install_key(&r, "sha256:bb", "root-100000-65536", &revs);
        assert_ne!(
            b1.key,
            builddep_key(&k2, &["gcc".into(), "make".into()]).key
        );
        assert!(b1.description.contains("gcc, make"));
    }

    #[tokio::test]
    async fn revisions_from_file_repos() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("repodata")).unwrap();
        std::fs::write(
            d.path().join("repodata/repomd.xml"),
            "<repomd><data type=\"group\"/></repomd>",
        )
        .unwrap();
        let mut r = req();
        r.repos[0].baseurls = vec![
            "file:///nonexistent-mirror".into(),
            format!("file://{}", d.path().display()),
        ];
        let c = reqwest::Client::new();
        let revs = repo_revisions(&c, &r).await.unwrap();
        assert_eq!(revs.len(), 1);
        assert_eq!(revs[0].len(), 64);
        std::fs::write(d.path().join("repodata/repomd.xml"), "<repomd/>").unwrap();
        assert_ne!(
            repo_revisions(&c, &r).await.unwrap(),
            revs,
            "new content, new revision"
        );
        r.repos[0].baseurls = vec!["file:///nonexistent".into()];
        let e = repo_revisions(&c, &r).await.unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/repodata/repomd.xml"),
            "{e}"
        );
        r.repos[0].baseurls = vec!["ftp://x".into()];
        assert!(repo_revisions(&c, &r).await.is_err());
        assert!(repomd_has_groups(b"<data type=\"group\">"));
        assert!(!repomd_has_groups(b"<data type=\"primary\">"));
    }
}
