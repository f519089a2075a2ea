//! Image references as users write them.
//!
//! - `[registry/]repo[:tag][@sha256:…]` — a registry image, normalised as docker and
//!   podman do (`busybox` → `docker.io/library/busybox:latest`);
//! - `oci:DIR[:tag]` — an OCI image layout directory;
//! - `oci-archive:FILE[:tag]` — a tar file holding an OCI image layout.
//!
//! As in containers/image, the path of an `oci:`/`oci-archive:` reference ends at the
//! first `:`; the rest is the tag (the `org.opencontainers.image.ref.name` annotation).

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;

/// The registry assumed when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag assumed when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// The registry of images that exist only in the local store (`image import`).
pub const LOCAL_REGISTRY: &str = "localhost";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("invalid image reference {reference:?}: {reason}")]
    Invalid { reference: String, reason: String },
}

fn invalid(reference: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Invalid {
        reference: reference.to_owned(),
        reason: reason.into(),
    }
}

/// Where an image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    Registry(RegistryRef),
    /// `oci:DIR[:tag]`
    OciDir {
        path: PathBuf,
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:tag]`
    OciArchive {
        path: PathBuf,
        tag: Option<String>,
    },
}

impl ImageSource {
    pub fn parse(s: &str) -> Result<ImageSource, ReferenceError> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, tag) = split_path_tag(s, rest)?;
            return Ok(ImageSource::OciDir { path, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, tag) = split_path_tag(s, rest)?;
            return Ok(ImageSource::OciArchive { path, tag });
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(ImageSource::Registry(RegistryRef::parse(rest)?));
        }
        Ok(ImageSource::Registry(RegistryRef::parse(s)?))
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSource::Registry(r) => write!(f, "{r}"),
            ImageSource::OciDir { path, tag } => {
                write!(f, "oci:{}", path.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
            ImageSource::OciArchive { path, tag } => {
                write!(f, "oci-archive:{}", path.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
        }
    }
}

fn split_path_tag(whole: &str, rest: &str) -> Result<(PathBuf, Option<String>), ReferenceError> {
    let (path, tag) = match rest.split_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(invalid(whole, "the path is empty"));
    }
    if let Some(t) = tag {
        if t.is_empty() {
            return Err(invalid(whole, "the tag after ':' is empty"));
        }
        if !is_layout_ref_name(t) {
            return Err(invalid(
                whole,
                format!("{t:?} is not a valid image layout reference name"),
            ));
        }
    }
    Ok((PathBuf::from(path), tag.map(str::to_owned)))
}

/// Whether `s` is a valid `org.opencontainers.image.ref.name` value (the grammar
/// containers/image checks for `oci:` references: components of alphanumerics joined
/// by `-._:@+` or `--`, separated by `/`).
pub fn is_layout_ref_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('/').all(|comp| {
            let b = comp.as_bytes();
            if b.is_empty()
                || !b[0].is_ascii_alphanumeric()
                || !b[b.len() - 1].is_ascii_alphanumeric()
            {
                return false;
            }
            let mut i = 0;
            while i < b.len() {
                if b[i].is_ascii_alphanumeric() {
                    i += 1;
                    continue;
                }
                // A separator: one of -._:@+ or "--", followed by an alphanumeric.
                let sep_len = if b[i] == b'-' && b.get(i + 1) == Some(&b'-') {
                    2
                } else if b"-._:@+".contains(&b[i]) {
                    1
                } else {
                    return false;
                };
                i += sep_len;
                if !b.get(i).is_some_and(u8::is_ascii_alphanumeric) {
                    return false;
                }
            }
            true
        })
}

/// A registry image reference, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    /// `docker.io`, `quay.io`, `127.0.0.1:5000`, `localhost`...
    pub registry: String,
    /// `library/busybox`, `fedora/fedora`...
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl RegistryRef {
    /// Parse and normalise a reference. A reference with neither tag nor digest gets
    /// the tag `latest`.
    pub fn parse(s: &str) -> Result<RegistryRef, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() > 4096 {
            // Name it by its first 64 bytes, cut at a character boundary.
            let mut end = 64;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            return Err(invalid(&s[..end], "longer than 4096 bytes"));
        }
        let (name_tag, digest) = match s.rsplit_once('@') {
            Some((n, d)) => (
                n,
                Some(Digest::parse(d).map_err(|e| invalid(s, e.to_string()))?),
            ),
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid(
                    s,
                    format!("tag {t:?} is invalid (want [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})"),
                ));
            }
        }
        let (registry, remote) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first, rest)
            }
            _ => (DEFAULT_REGISTRY, name),
        };
        if !valid_domain(registry) {
            return Err(invalid(
                s,
                format!("registry {registry:?} is not a valid host[:port]"),
            ));
        }
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        if remote.is_empty() {
            return Err(invalid(s, "the repository name is empty"));
        }
        for comp in remote.split('/') {
            if !valid_path_component(comp) {
                return Err(invalid(
                    s,
                    format!(
                        "repository component {comp:?} is invalid (lowercase letters, digits and \
                         single separators . _ __ - only)"
                    ),
                ));
            }
        }
        let repository = if registry == DEFAULT_REGISTRY && !remote.contains('/') {
            format!("library/{remote}")
        } else {
            remote.to_owned()
        };
        if registry.len() + 1 + repository.len() > 255 {
            return Err(invalid(
                s,
                "the repository name is longer than 255 characters",
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (t, _) => t.map(str::to_owned),
        };
        Ok(RegistryRef {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// Parse a name given to `image import`: like [`RegistryRef::parse`], except that a
    /// name without a registry gets `localhost/` (the image exists only locally).
    pub fn parse_local_name(s: &str) -> Result<RegistryRef, ReferenceError> {
        let first = s.split('/').next().unwrap_or_default();
        let has_domain = s.contains('/')
            && (first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()));
        if has_domain {
            RegistryRef::parse(s)
        } else {
            RegistryRef::parse(&format!("{LOCAL_REGISTRY}/{s}"))
        }
    }

    /// The full normalised name (`registry/repo:tag`, `registry/repo@digest` or both);
    /// the store keys images by it.
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// `registry/repository`.
    pub fn repo_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry's manifest endpoint for: the digest if given, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The host serving the registry API (Docker Hub's API is not at docker.io).
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

fn valid_path_component(c: &str) -> bool {
    // alpha-numeric [separator alpha-numeric]*, separator = [_.] | __ | [-]+
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !b.get(i).copied().is_some_and(alnum) {
            return false;
        }
    }
    true
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // [IPv6]:port
        let Some((h, after)) = rest.split_once(']') else {
            return false;
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return false,
            },
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(h) => {
            !h.is_empty()
                && h.split('.').all(|label| {
                    let b = label.as_bytes();
                    !b.is_empty()
                        && b[0].is_ascii_alphanumeric()
                        && b[b.len() - 1].is_ascii_alphanumeric()
                        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        RegistryRef::parse(s).unwrap().name()
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(n("fedora/fedora"), "docker.io/fedora/fedora:latest");
        assert_eq!(n("index.docker.io/library/x"), "docker.io/library/x:latest");
        assert_eq!(n("quay.io/fedora/fedora:40"), "quay.io/fedora/fedora:40");
        assert_eq!(
            n("127.0.0.1:5000/test/busybox"),
            "127.0.0.1:5000/test/busybox:latest"
        );
        assert_eq!(n("localhost/buildroot"), "localhost/buildroot:latest");
        assert_eq!(n("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        assert_eq!(
            n(&format!("busybox@{D}")),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(n(&format!("r.io/a:v1@{D}")), format!("r.io/a:v1@{D}"));
        let r = RegistryRef::parse(&format!("r.io/a:v1@{D}")).unwrap();
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(
            RegistryRef::parse("busybox").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert_eq!(n("[::1]:5000/x"), "[::1]:5000/x:latest");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a/-b",
            "a/b-",
            "a..b",
            "a/b@sha256:abc",
            "a/b@md5:abc",
            "registry:port/x",
            "x/../y",
            "r.io/a b",
        ] {
            assert!(RegistryRef::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(300);
        assert!(RegistryRef::parse(&long).is_err());
    }

    /// Found by the image_reference fuzz target: an over-long reference whose 64th byte
    /// is inside a multi-byte character panicked while naming it in the error.
    #[test]
    fn over_long_reference_with_multibyte_characters_is_an_error() {
        for prefix in ["", "a", "ab"] {
            let s = format!("{prefix}{}", "é".repeat(2100));
            let e = RegistryRef::parse(&s).unwrap_err();
            let ReferenceError::Invalid { reference, reason } = &e else {
                panic!("{e:?}")
            };
            assert!(reason.contains("longer than 4096"), "{e}");
            assert!(
                reference.len() <= 64 && s.starts_with(reference.as_str()),
                "{e}"
            );
            assert!(RegistryRef::parse_local_name(&s).is_err());
        }
    }

    #[test]
    fn local_names_default_to_localhost() {
        let r = RegistryRef::parse_local_name("buildroot:latest").unwrap();
        assert_eq!(r.name(), "localhost/buildroot:latest");
        let r = RegistryRef::parse_local_name("localhost/buildroot:f40").unwrap();
        assert_eq!(r.name(), "localhost/buildroot:f40");
        let r = RegistryRef::parse_local_name("quay.io/x/y").unwrap();
        assert_eq!(r.name(), "quay.io/x/y:latest");
        let r = RegistryRef::parse_local_name("koji/buildroot").unwrap();
        assert_eq!(r.name(), "localhost/koji/buildroot:latest");
    }

    #[test]
    fn oci_sources() {
        assert_eq!(
            ImageSource::parse("oci:/tmp/x:latest").unwrap(),
            ImageSource::OciDir {
                path: "/tmp/x".into(),
                tag: Some("latest".into())
            }
        );
        assert_eq!(
            ImageSource::parse("oci-archive:rel/a.tar").unwrap(),
            ImageSource::OciArchive {
                path: "rel/a.tar".into(),
                tag: None
            }
        );
        assert!(ImageSource::parse("oci:").is_err());
        assert!(ImageSource::parse("oci:/x:").is_err());
        assert!(ImageSource::parse("oci:/x:a b").is_err());
        assert!(matches!(
            ImageSource::parse("docker://busybox").unwrap(),
            ImageSource::Registry(_)
        ));
        assert_eq!(
            ImageSource::parse("oci:/x:127.0.0.1:5000/a/b:c")
                .unwrap()
                .to_string(),
            "oci:/x:127.0.0.1:5000/a/b:c"
        );
    }

    #[test]
    fn layout_ref_names() {
        assert!(is_layout_ref_name("latest"));
        assert!(is_layout_ref_name("127.0.0.1:5000/test/busybox:latest"));
        assert!(is_layout_ref_name(&format!("docker.io/library/a@{D}")));
        assert!(!is_layout_ref_name("a//b"));
        assert!(!is_layout_ref_name("-a"));
        assert!(!is_layout_ref_name("a b"));
    }
}
