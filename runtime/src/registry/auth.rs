//! Registry credentials from the containers auth file (`containers-auth.json(5)`).
//!
//! Files are consulted in podman's order, first match wins:
//! 1. `$REGISTRY_AUTH_FILE`
//! 2. `$XDG_RUNTIME_DIR/containers/auth.json`
//! 3. `$XDG_CONFIG_HOME/containers/auth.json` (default `~/.config/containers/auth.json`)
//! 4. `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`)
//!
//! An explicitly configured file (`--authfile`) replaces the list. Within a file the
//! most specific key wins: `reg/ns/repo`, then `reg/ns`, then `reg`. Keys may carry a
//! scheme and a `/v1/` suffix (`https://index.docker.io/v1/`, docker's format).
//! Credential helpers (`credHelpers`, `credsStore`) are not run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::RegistryError;
use crate::reference::{RegistryRef, DEFAULT_REGISTRY};

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token endpoint.
    IdentityToken {
        username: String,
        token: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::IdentityToken { username, .. } => {
                write!(f, "IdentityToken({username}, <redacted>)")
            }
        }
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credentials::IdentityToken { .. } => None,
        }
    }
}

/// The auth files to consult, in order.
pub fn default_auth_files() -> Vec<PathBuf> {
    auth_files_with(|k| std::env::var_os(k))
}

/// [`default_auth_files`] with the environment given as a function.
pub fn auth_files_with(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Vec<PathBuf> {
    let env = |k: &str| get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = env("HOME");
    let mut v = Vec::new();
    if let Some(p) = env("REGISTRY_AUTH_FILE") {
        v.push(p);
    }
    if let Some(r) = env("XDG_RUNTIME_DIR") {
        v.push(r.join("containers/auth.json"));
    }
    if let Some(c) = env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        v.push(c.join("containers/auth.json"));
    }
    if let Some(d) = env("DOCKER_CONFIG") {
        v.push(d.join("config.json"));
    } else if let Some(h) = &home {
        v.push(h.join(".docker/config.json"));
    }
    v
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Normalise an auth file key to `host[/path]` (docker.io for Docker Hub's aliases).
fn normalize_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let (host, path) = match k.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (k, None),
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY,
        h => h,
    };
    match path {
        // Docker's legacy keys: https://index.docker.io/v1/
        None | Some("v1" | "v2") => host.to_owned(),
        Some(p) => format!("{host}/{p}"),
    }
}

/// Look up credentials for `r` in `files` (missing files are skipped, broken ones are
/// errors naming the file).
pub fn lookup(files: &[PathBuf], r: &RegistryRef) -> Result<Option<Credentials>, RegistryError> {
    // Most specific first: registry/a/b/c, registry/a/b, registry/a, registry.
    let full = format!("{}/{}", r.registry, r.repository);
    let mut wanted = vec![full.clone()];
    let mut cur = full.as_str();
    while let Some((head, _)) = cur.rsplit_once('/') {
        wanted.push(head.to_owned());
        cur = head;
    }
    for f in files {
        if let Some(c) = lookup_file(f, &wanted)? {
            tracing::debug!(file = %f.display(), registry = %r.registry, "using credentials from auth file");
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn lookup_file(path: &Path, wanted: &[String]) -> Result<Option<Credentials>, RegistryError> {
    let bad = |reason: String| RegistryError::AuthFile {
        path: path.to_owned(),
        reason,
    };
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let file: AuthFile =
        serde_json::from_slice(&data).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let entries: BTreeMap<String, &AuthEntry> = file
        .auths
        .iter()
        .map(|(k, v)| (normalize_key(k), v))
        .collect();
    for w in wanted {
        if let Some(e) = entries.get(w) {
            return decode(e, w).map(Some).map_err(bad);
        }
        if let Some(h) = file
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_key(k) == *w)
        {
            tracing::warn!(file = %path.display(), registry = %w, helper = %h.1, "credential helpers are not supported; ignoring");
        }
    }
    Ok(None)
}

fn decode(e: &AuthEntry, key: &str) -> Result<Credentials, String> {
    let (username, password) = match &e.auth {
        Some(a) if !a.is_empty() => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|err| format!("entry {key:?}: \"auth\" is not base64: {err}"))?;
            let s = String::from_utf8(raw)
                .map_err(|_| format!("entry {key:?}: \"auth\" is not UTF-8"))?;
            let (u, p) = s
                .split_once(':')
                .ok_or_else(|| format!("entry {key:?}: \"auth\" is not user:password"))?;
            (u.to_owned(), p.to_owned())
        }
        _ => (String::new(), String::new()),
    };
    if let Some(t) = e.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Credentials::IdentityToken {
            username,
            token: t.clone(),
        });
    }
    if username.is_empty() {
        return Err(format!(
            "entry {key:?} has neither \"auth\" nor \"identitytoken\""
        ));
    }
    Ok(Credentials::Basic { username, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn most_specific_key_and_file_order_win() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.json");
        let b = d.path().join("b.json");
        std::fs::write(
            &a,
            format!(
                r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/ns/repo":{{"auth":"{}"}}}}}}"#,
                b64("org:1"),
                b64("repo:2")
            ),
        )
        .unwrap();
        std::fs::write(
            &b,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"reg.example:5000":{{"auth":"{}"}}}}}}"#,
                b64("hub:3"),
                b64("ex:4")
            ),
        )
        .unwrap();
        let files = vec![d.path().join("missing.json"), a.clone(), b.clone()];
        let get = |r: &str| {
            lookup(&files, &RegistryRef::parse(r).unwrap())
                .unwrap()
                .map(|c| c.basic_header().unwrap())
        };
        assert_eq!(
            get("quay.io/ns/repo"),
            Some(format!("Basic {}", b64("repo:2")))
        );
        assert_eq!(
            get("quay.io/ns/other"),
            Some(format!("Basic {}", b64("org:1")))
        );
        assert_eq!(get("busybox"), Some(format!("Basic {}", b64("hub:3"))));
        assert_eq!(
            get("reg.example:5000/x/y"),
            Some(format!("Basic {}", b64("ex:4")))
        );
        assert_eq!(get("ghcr.io/x"), None);
        // The first file with a match wins.
        std::fs::write(
            &a,
            format!(
                r#"{{"auths":{{"reg.example:5000":{{"auth":"{}"}}}}}}"#,
                b64("first:5")
            ),
        )
        .unwrap();
        assert_eq!(
            get("reg.example:5000/x"),
            Some(format!("Basic {}", b64("first:5")))
        );
    }

    #[test]
    fn broken_files_are_errors_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("auth.json");
        std::fs::write(&a, "{not json").unwrap();
        let r = RegistryRef::parse("quay.io/x").unwrap();
        let e = lookup(std::slice::from_ref(&a), &r)
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.json") && e.contains("JSON"), "{e}");
        std::fs::write(&a, r#"{"auths":{"quay.io":{"auth":"!!"}}}"#).unwrap();
        let e = lookup(std::slice::from_ref(&a), &r)
            .unwrap_err()
            .to_string();
        assert!(e.contains("base64"), "{e}");
        std::fs::write(&a, r#"{"auths":{"quay.io":{"identitytoken":"tok"}}}"#).unwrap();
        assert!(matches!(
            lookup(std::slice::from_ref(&a), &r).unwrap(),
            Some(Credentials::IdentityToken { .. })
        ));
    }

    #[test]
    fn default_file_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let all = auth_files_with(env(&[
            ("REGISTRY_AUTH_FILE", "/etc/ka/auth.json"),
            ("XDG_RUNTIME_DIR", "/run/user/4242"),
            ("HOME", "/home/u"),
        ]));
        assert_eq!(
            all,
            [
                "/etc/ka/auth.json",
                "/run/user/4242/containers/auth.json",
                "/home/u/.config/containers/auth.json",
                "/home/u/.docker/config.json"
            ]
            .map(PathBuf::from)
        );
        let some = auth_files_with(env(&[
            ("XDG_CONFIG_HOME", "/cfg"),
            ("DOCKER_CONFIG", "/dc"),
            ("REGISTRY_AUTH_FILE", ""),
        ]));
        assert_eq!(
            some,
            ["/cfg/containers/auth.json", "/dc/config.json"].map(PathBuf::from)
        );
    }
}
