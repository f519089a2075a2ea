//! Importing images from OCI layouts (`oci:DIR[:tag]`, `oci-archive:FILE[:tag]`).

use std::path::Path;
use std::sync::Arc;

use tracing::info;

use super::pull::blocking;
use super::{info_from, lock::FileLock, PullReport, Store, StoreError};
use crate::archive::{BlobSource, OciArchive, OciDir};
use crate::digest::Digest;
use crate::idmap::IdMapping;
use crate::manifest::{self, Descriptor, Document, Index, PlatformSpec, REF_NAME};
use crate::platform::Platform;
use crate::progress::{self, BlobKind, Event, Progress};
use crate::reference::{ImageSource, RegistryRef};

#[derive(Clone)]
pub struct ImportOptions {
    pub platform: Platform,
    /// Also unpack the layers for this mapping before the image gets its name.
    pub unpack: Option<IdMapping>,
    pub progress: Arc<dyn Progress>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            platform: Platform::host(),
            unpack: None,
            progress: progress::silent(),
        }
    }
}

/// The name an import gets when none is given: `localhost/<dir or file stem>:<tag>`.
pub fn default_name(path: &Path, tag: Option<&str>) -> Result<String, StoreError> {
    if let Some(t) = tag.filter(|t| t.contains('/')) {
        // The layout's ref.name is a full reference (skopeo copy … oci:DIR:registry/repo:tag).
        return Ok(RegistryRef::parse_local_name(t)?.name());
    }
    let stem = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem
        .strip_suffix(".tar")
        .unwrap_or(&stem)
        .to_ascii_lowercase();
    let mut repo: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    while repo.contains("--") {
        repo = repo.replace("--", "-");
    }
    let repo = repo.trim_matches('-');
    let repo = if repo.is_empty() { "image" } else { repo };
    Ok(RegistryRef::parse_local_name(&format!("{repo}:{}", tag.unwrap_or("latest")))?.name())
}

impl Store {
    /// Copy an image from an OCI layout (directory or archive) into the store under
    /// `name` (default: [`default_name`]); names without a registry get `localhost/`.
    /// Every blob is verified on the way in. Blocking.
    pub fn import(
        &self,
        source: &str,
        name: Option<&str>,
        opts: &ImportOptions,
    ) -> Result<PullReport, StoreError> {
        let src = ImageSource::parse(source)?;
        let (bs, path, tag): (Box<dyn BlobSource>, _, _) = match src {
            ImageSource::OciDir { path, tag } => (Box::new(OciDir::open(&path)?), path, tag),
            ImageSource::OciArchive { path, tag } => {
                (Box::new(OciArchive::open(&path)?), path, tag)
            }
            ImageSource::Registry(_) => {
                return Err(StoreError::Source(format!(
                    "{source}: image import takes oci:DIR[:tag] or oci-archive:FILE[:tag]"
                )))
            }
        };
        let name = match name {
            Some(n) => RegistryRef::parse_local_name(n)?.name(),
            None => default_name(&path, tag.as_deref())?,
        };
        let _span = tracing::info_span!("import", image = %name, source).entered();
        let t0 = std::time::Instant::now();
        let gc = self.lock_path("gc.lock");
        let _gc = FileLock::shared(&gc).map_err(|source| StoreError::Io {
            path: gc.clone(),
            source,
        })?;
        let progress = &*opts.progress;
        let invalid = |reason: String| StoreError::Invalid {
            image: bs.name().to_owned(),
            reason,
        };

        let idx: Index = serde_json::from_slice(&bs.index()?)
            .map_err(|e| invalid(format!("index.json is not a valid image index: {e}")))?;
        let desc = select(&idx, tag.as_deref(), &opts.platform).map_err(invalid)?;
        let (mbytes, mdesc, m) = {
            let b = read_small(&*bs, &desc.digest, manifest::MAX_MANIFEST)?;
            match manifest::parse_document(&b, Some(&desc.media_type)).map_err(invalid)? {
                Document::Manifest(m) => (b, desc.clone(), m),
                Document::Index(sub) => {
                    let d = sub.select(&opts.platform).map_err(invalid)?.clone();
                    let b = read_small(&*bs, &d.digest, manifest::MAX_MANIFEST)?;
                    match manifest::parse_document(&b, Some(&d.media_type)).map_err(invalid)? {
                        Document::Manifest(m) => (b, d, m),
                        Document::Index(_) => {
                            return Err(invalid("nested indexes are not supported".into()))
                        }
                    }
                }
            }
        };
        m.check_image().map_err(invalid)?;
        let source_digest = mdesc.digest.clone();
        let (mbytes, mdesc, m) = match manifest::oci_form(&m) {
            Some((om, bytes)) => {
                let mut d = mdesc.clone();
                d.digest = Digest::of(&bytes);
                d.size = bytes.len() as u64;
                d.media_type = manifest::media::OCI_MANIFEST.into();
                (bytes, d, Box::new(om))
            }
            None => (mbytes, mdesc, m),
        };
        let mut fetched = 0;
        let mut present = 0;
        let mut bytes = 0;
        let mut copy = |d: &Descriptor, kind: BlobKind| -> Result<(), StoreError> {
            if self.layout.has_blob(&d.digest, Some(d.size)) {
                present += 1;
                progress.event(&Event::BlobDone {
                    digest: &d.digest,
                    fetched: false,
                });
                return Ok(());
            }
            progress.event(&Event::BlobStart {
                digest: &d.digest,
                size: d.size,
                kind,
            });
            let (r, _) = bs.open_blob(&d.digest)?;
            self.layout.put_blob_from(&d.digest, d.size, r, |n| {
                progress.event(&Event::BlobBytes {
                    digest: &d.digest,
                    bytes: n,
                })
            })?;
            progress.event(&Event::BlobDone {
                digest: &d.digest,
                fetched: true,
            });
            fetched += 1;
            bytes += d.size;
            Ok(())
        };
        copy(&m.config, BlobKind::Config)?;
        let cfg = self
            .layout
            .read_blob(&m.config.digest, manifest::MAX_CONFIG)?;
        let info = info_from(
            &name,
            &mdesc.digest,
            &mdesc.media_type,
            mbytes.len() as u64,
            &m,
            &cfg,
        )?;
        for l in &m.layers {
            copy(l, BlobKind::Layer)?;
        }
        if Digest::of(&mbytes) != mdesc.digest {
            return Err(StoreError::DigestMismatch {
                blob: mdesc.digest.clone(),
                actual: Digest::of(&mbytes),
                size: mbytes.len() as u64,
            });
        }
        self.layout.put_blob_bytes(&mdesc.digest, &mbytes)?;
        let unpack = match &opts.unpack {
            Some(mapping) => Some(self.unpack(&info, mapping, progress)?),
            None => None,
        };
        self.set_name(
            &name,
            Descriptor {
                media_type: mdesc.media_type.clone(),
                digest: mdesc.digest.clone(),
                size: mbytes.len() as u64,
                urls: None,
                annotations: None,
                platform: mdesc
                    .platform
                    .clone()
                    .or_else(|| Some(PlatformSpec::from(&opts.platform))),
            },
        )?;
        info!(image = %name, digest = %mdesc.digest, fetched, present, secs = t0.elapsed().as_secs_f64(), "image imported");
        Ok(PullReport {
            image: info,
            from_store: false,
            source_digest,
            blobs_fetched: fetched,
            blobs_present: present,
            bytes_fetched: bytes,
            unpack,
        })
    }

    /// [`Store::import`] from async code.
    pub async fn import_blocking(
        &self,
        source: String,
        name: Option<String>,
        opts: ImportOptions,
    ) -> Result<PullReport, StoreError> {
        let store = self.clone();
        blocking(move || store.import(&source, name.as_deref(), &opts)).await
    }
}

/// Read a small blob from a source, verifying its digest.
fn read_small(bs: &dyn BlobSource, d: &Digest, max: u64) -> Result<Vec<u8>, StoreError> {
    use std::io::Read;
    let (r, size) = bs.open_blob(d)?;
    if size > max {
        return Err(StoreError::Invalid {
            image: bs.name().to_owned(),
            reason: format!("blob {d} of {size} bytes is larger than the {max}-byte limit"),
        });
    }
    let mut b = Vec::new();
    r.take(max + 1)
        .read_to_end(&mut b)
        .map_err(|e| StoreError::Source(format!("{}: reading blob {d}: {e}", bs.name())))?;
    let actual = Digest::of(&b);
    if actual != *d {
        return Err(StoreError::DigestMismatch {
            blob: d.clone(),
            actual,
            size: b.len() as u64,
        });
    }
    Ok(b)
}

/// Pick the image of a layout: by tag (`ref.name`), or the only one there is; among
/// several descriptors for the same tag, the one for `platform`.
fn select<'a>(
    idx: &'a Index,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<&'a Descriptor, String> {
    let tags = || {
        let t: Vec<&str> = idx
            .manifests
            .iter()
            .filter_map(|d| d.annotation(REF_NAME))
            .collect();
        if t.is_empty() {
            "none".to_owned()
        } else {
            t.join(", ")
        }
    };
    let cands: Vec<&Descriptor> = match tag {
        Some(t) => idx
            .manifests
            .iter()
            .filter(|d| d.annotation(REF_NAME) == Some(t))
            .collect(),
        None => idx.manifests.iter().collect(),
    };
    match cands.len() {
        0 => Err(match tag {
            Some(t) => format!("no image tagged {t:?} (tags: {})", tags()),
            None => "the layout holds no images".into(),
        }),
        1 => Ok(cands[0]),
        _ => {
            let by_platform: Vec<&&Descriptor> = cands
                .iter()
                .filter(|d| {
                    d.platform.as_ref().is_some_and(|p| {
                        platform.matches(&p.os, &p.architecture, p.variant.as_deref())
                    })
                })
                .collect();
            match (by_platform.len(), tag) {
                (1, _) => Ok(by_platform[0]),
                (_, None) => Err(format!(
                    "the layout holds several images; name one with :TAG (tags: {})",
                    tags()
                )),
                (_, Some(t)) => Err(format!(
                    "several images are tagged {t:?}, none uniquely for {platform}"
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names() {
        let n = |p: &str, t: Option<&str>| default_name(Path::new(p), t).unwrap();
        assert_eq!(n("/x/busybox", Some("latest")), "localhost/busybox:latest");
        assert_eq!(n("/x/My_Image.tar", None), "localhost/my-image:latest");
        assert_eq!(n("/x/rpmroot", Some("f40")), "localhost/rpmroot:f40");
        assert_eq!(
            n("/x/a", Some("127.0.0.1:5000/test/busybox:latest")),
            "127.0.0.1:5000/test/busybox:latest"
        );
        assert_eq!(n("/", None), "localhost/image:latest");
    }
}
