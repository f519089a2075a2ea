//! OCI and Docker image documents: descriptors, manifests, indexes.
//!
//! Own serde types (rather than `oci_spec`'s) so that both the OCI and the Docker
//! schema-2 media types parse, unknown fields survive, and errors say what is wrong.
//! The image *configuration* is parsed with `oci_spec::image::ImageConfiguration`.

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::layer::Compression;
use crate::platform::Platform;

pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    /// What we accept from a registry's manifest endpoint.
    pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.docker.distribution.manifest.v2+json";
}

/// The annotation naming an image in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Largest manifest or index we read (the distribution spec's recommended limit).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Largest image configuration we read.
pub const MAX_CONFIG: u64 = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
}

impl Descriptor {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlatformSpec {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl From<&Platform> for PlatformSpec {
    fn from(p: &Platform) -> Self {
        PlatformSpec {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
            extra: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A manifest-endpoint document.
#[derive(Clone, Debug)]
pub enum Document {
    Manifest(Box<Manifest>),
    Index(Index),
}

/// Parse a manifest or index. `content_type` is what the server (or the referring
/// descriptor) said it is; a document whose own `mediaType` disagrees is refused.
pub fn parse_document(bytes: &[u8], content_type: Option<&str>) -> Result<Document, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let own = v.get("mediaType").and_then(|m| m.as_str());
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| is_manifest_type(c));
    if let (Some(own), Some(ct)) = (own, ct) {
        if own != ct {
            return Err(format!(
                "mediaType {own:?} disagrees with the declared type {ct:?}"
            ));
        }
    }
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1)
        || matches!(
            own.or(ct),
            Some(media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED)
        )
    {
        return Err("Docker schema 1 manifests are not supported".into());
    }
    let kind = own.or(ct);
    let is_index = match kind {
        Some(media::OCI_INDEX | media::DOCKER_LIST) => true,
        Some(media::OCI_MANIFEST | media::DOCKER_MANIFEST) => false,
        Some(other) => return Err(format!("unsupported manifest media type {other:?}")),
        None => v.get("manifests").is_some(),
    };
    if is_index {
        serde_json::from_value(v)
            .map(Document::Index)
            .map_err(|e| format!("malformed image index: {e}"))
    } else {
        let m: Manifest =
            serde_json::from_value(v).map_err(|e| format!("malformed image manifest: {e}"))?;
        if m.schema_version != 2 {
            return Err(format!("unsupported schemaVersion {}", m.schema_version));
        }
        Ok(Document::Manifest(Box::new(m)))
    }
}

pub fn is_manifest_type(mt: &str) -> bool {
    matches!(
        mt,
        media::OCI_MANIFEST
            | media::OCI_INDEX
            | media::DOCKER_MANIFEST
            | media::DOCKER_LIST
            | media::DOCKER_SCHEMA1
            | media::DOCKER_SCHEMA1_SIGNED
    )
}

impl Manifest {
    /// Check that this is a container image we can run: a known config type and only
    /// layer types we can apply.
    pub fn check_image(&self) -> Result<(), String> {
        match self.config.media_type.as_str() {
            media::OCI_CONFIG | media::DOCKER_CONFIG => {}
            other => {
                return Err(format!(
                    "config media type {other:?} is not a container image configuration \
                     (an OCI artifact?)"
                ))
            }
        }
        if self.config.size > MAX_CONFIG {
            return Err(format!(
                "config blob of {} bytes is too large",
                self.config.size
            ));
        }
        for l in &self.layers {
            if Compression::from_media_type(&l.media_type).is_none() {
                return Err(format!(
                    "layer {} has unsupported media type {:?}",
                    l.digest, l.media_type
                ));
            }
        }
        Ok(())
    }
}

/// The OCI form of a Docker schema-2 manifest, as `skopeo copy` writes it into an OCI
/// layout: OCI media types for the manifest, the config and the layers (blobs and
/// digests unchanged; the manifest itself gets a new digest). `None` for a manifest
/// that is OCI already. The store keeps only OCI manifests so that OCI tools
/// (skopeo, umoci) can read every image in it.
pub fn oci_form(m: &Manifest) -> Option<(Manifest, Vec<u8>)> {
    let docker = m.media_type.as_deref() == Some(media::DOCKER_MANIFEST)
        || m.config.media_type == media::DOCKER_CONFIG;
    if !docker {
        return None;
    }
    let mut o = m.clone();
    o.media_type = Some(media::OCI_MANIFEST.into());
    if o.config.media_type == media::DOCKER_CONFIG {
        o.config.media_type = media::OCI_CONFIG.into();
    }
    for l in &mut o.layers {
        let mt = match l.media_type.as_str() {
            "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            }
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            }
            "application/vnd.docker.image.rootfs.diff.tar" => {
                "application/vnd.oci.image.layer.v1.tar"
            }
            _ => continue,
        };
        l.media_type = mt.into();
    }
    let bytes = serde_json::to_vec(&o).ok()?;
    Some((o, bytes))
}

impl Index {
    /// The manifest for `platform`; errors list what the index offers.
    pub fn select(&self, platform: &Platform) -> Result<&Descriptor, String> {
        let candidates = self.manifests.iter().filter(|d| {
            matches!(
                d.media_type.as_str(),
                media::OCI_MANIFEST | media::DOCKER_MANIFEST
            )
        });
        let mut seen = Vec::new();
        for d in candidates {
            match &d.platform {
                Some(p) => {
                    if platform.matches(&p.os, &p.architecture, p.variant.as_deref()) {
                        return Ok(d);
                    }
                    seen.push(match &p.variant {
                        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    });
                }
                None => seen.push("(no platform)".into()),
            }
        }
        Err(format!(
            "no manifest for platform {platform} (the index has: {})",
            if seen.is_empty() {
                "no image manifests".to_owned()
            } else {
                seen.join(", ")
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest(mt: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"{}","digest":"{D1}","size":10}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":20,"x-extra":1}}]}}"#,
            media::OCI_CONFIG
        )
    }

    #[test]
    fn parses_manifests_and_checks_types() {
        let m = manifest(media::OCI_MANIFEST);
        let Document::Manifest(doc) =
            parse_document(m.as_bytes(), Some(media::OCI_MANIFEST)).unwrap()
        else {
            panic!("not a manifest")
        };
        doc.check_image().unwrap();
        assert_eq!(doc.layers[0].size, 20);
        let e = parse_document(m.as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap_err();
        assert!(e.contains("disagrees"), "{e}");
        // An unrelated content type (text/plain from a sloppy server) is ignored.
        assert!(parse_document(m.as_bytes(), Some("text/plain")).is_ok());
        let e = parse_document(br#"{"schemaVersion":1,"fsLayers":[]}"#, None).unwrap_err();
        assert!(e.contains("schema 1"), "{e}");
        let e = parse_document(b"{", None).unwrap_err();
        assert!(e.contains("JSON"), "{e}");
        let bad = m.replace(D2, "sha256:abc");
        assert!(parse_document(bad.as_bytes(), None).is_err());
        let artifact = m.replace(
            media::OCI_CONFIG,
            "application/vnd.cncf.helm.config.v1+json",
        );
        let Document::Manifest(doc) = parse_document(artifact.as_bytes(), None).unwrap() else {
            panic!()
        };
        assert!(doc.check_image().unwrap_err().contains("artifact"));
    }

    #[test]
    fn docker_manifests_get_an_oci_form() {
        let d = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D1}","size":10}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{D2}","size":20}}]}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG
        );
        let Document::Manifest(m) =
            parse_document(d.as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap()
        else {
            panic!()
        };
        let (o, bytes) = oci_form(&m).unwrap();
        assert_eq!(o.media_type.as_deref(), Some(media::OCI_MANIFEST));
        assert_eq!(o.config.media_type, media::OCI_CONFIG);
        assert_eq!(
            o.layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            (o.config.digest.clone(), o.layers[0].digest.clone()),
            (m.config.digest.clone(), m.layers[0].digest.clone())
        );
        let Document::Manifest(back) = parse_document(&bytes, Some(media::OCI_MANIFEST)).unwrap()
        else {
            panic!()
        };
        back.check_image().unwrap();
        assert!(oci_form(&back).is_none());
    }

    /// Found by the image_manifest fuzz target: a number in an unknown field changed
    /// when the document was written back (serde_json's fast float parsing is not exact
    /// without its `float_roundtrip` feature).
    #[test]
    fn unknown_numbers_survive_a_rewrite() {
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{D1}","size":1,
            "platform":{{"architecture":"arm64","os":"linux","x":[24e-31,0.1,1e300,123456789012345678901]}}}}]}}"#,
            media::OCI_MANIFEST
        );
        let Document::Index(i) = parse_document(idx.as_bytes(), None).unwrap() else {
            panic!()
        };
        let x = &i.manifests[0].platform.as_ref().unwrap().extra["x"];
        assert_eq!(x[0].as_f64(), Some(2.4e-30));
        let again = serde_json::to_vec(&i).unwrap();
        let Document::Index(j) = parse_document(&again, None).unwrap() else {
            panic!()
        };
        assert_eq!(
            serde_json::to_value(&i).unwrap(),
            serde_json::to_value(&j).unwrap()
        );
    }

    #[test]
    fn index_selects_platform() {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
            {{"mediaType":"{m}","digest":"{D1}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"{m}","digest":"{D2}","size":2,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
            {{"mediaType":"application/vnd.in-toto+json","digest":"{D2}","size":2}}]}}"#,
            media::OCI_INDEX,
            m = media::OCI_MANIFEST
        );
        let Document::Index(i) = parse_document(idx.as_bytes(), None).unwrap() else {
            panic!()
        };
        let x = Platform::for_arch("x86_64").unwrap();
        assert_eq!(i.select(&x).unwrap().digest.to_string(), D1);
        let a = Platform::for_arch("aarch64").unwrap();
        assert_eq!(i.select(&a).unwrap().digest.to_string(), D2);
        let e = i.select(&Platform::for_arch("s390x").unwrap()).unwrap_err();
        assert!(e.contains("linux/amd64, linux/arm64/v8"), "{e}");
    }
}
