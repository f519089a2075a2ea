//! The image store: content-addressed blobs in an OCI image layout, image names in
//! its `index.json`, and layers unpacked once per (id mapping, diff_id).
//!
//! - [`Store::pull`] fetches from a registry (or imports `oci:`/`oci-archive:`),
//!   verifying every blob while it streams; names are recorded only after every blob
//!   is in place, so a failed pull leaves no image and no half-written blob.
//! - [`Store::import`] copies an OCI layout (directory or archive) under a name.
//! - [`Store::layer_dirs`] unpacks what is missing (blocking; call it from
//!   `spawn_blocking`) and returns the layer directories, lowest first.
//! - [`Store::prune`] removes blobs and unpacked layers no image references.
//!
//! Two processes may share one store: see [`lock`] for the locking protocol. A crash
//! leaves at most temporary files (`ingest/`, `layers/*/.tmp-*`), which are never
//! mistaken for complete ones and are removed by the next prune or unpack.

mod gc;
mod import;
mod layers;
pub mod layout;
mod local;
pub mod lock;
mod pull;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use oci_spec::image::ImageConfiguration;
use tracing::info;

pub use gc::PruneReport;
pub use import::{default_name, ImportOptions};
use layout::Layout;
pub use local::{disk_usage, EvictReport, LocalLayer, LocalLayerInfo, LocalLayerSlot};
use lock::FileLock;
pub use pull::RemoteManifest;

use crate::archive::SourceError;
use crate::digest::{chain_id, Digest};
use crate::idmap::IdMapping;
use crate::layer::{self, Compression, LayerError, Limits, UnpackJob, UnpackStats};
use crate::manifest::{self, Descriptor, Document, Index, Manifest, REF_NAME};
use crate::platform::Platform;
use crate::progress::{self, Progress};
use crate::reference::{ImageSource, ReferenceError, RegistryRef};
use crate::registry::{Client, RegistryConfig, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image {0:?} is not in the store")]
    NotFound(String),
    #[error("{0:?} matches several images ({1}); use a longer id or a name")]
    Ambiguous(String, String),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store file {path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("blob {0} is missing from the store")]
    MissingBlob(Digest),
    #[error("blob {blob}: content hashes to {actual} ({size} bytes); refused")]
    DigestMismatch {
        blob: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("blob {blob}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        blob: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("{image}: {reason}")]
    Invalid { image: String, reason: String },
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    SourceError(#[from] SourceError),
    #[error("{0}")]
    Source(String),
    #[error(
        "unpacking layers for the rootless mapping {0} needs a user-namespace helper, and none \
         is configured (Store::set_userns_runner)"
    )]
    NoUsernsRunner(String),
    #[error("layer {layer}: the user-namespace helper failed: {message}")]
    Userns { layer: String, message: String },
    #[error("unpacking with the root id mapping needs real root (euid 0)")]
    NeedsRoot,
    #[error("{0}")]
    Task(String),
}

/// Broad classes of failure, for exit codes and retry decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The image (or tag, repository) does not exist.
    NotFound,
    /// The reference or name is malformed.
    Usage,
    /// Content failed verification (digest, size, diff_id) or is malformed/hostile.
    Integrity,
    /// Network, auth or registry failure.
    Registry,
    Other,
}

impl StoreError {
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::NotFound(_) | StoreError::Ambiguous(..) => ErrorClass::NotFound,
            StoreError::Registry(e) if e.is_not_found() => ErrorClass::NotFound,
            StoreError::Reference(_) => ErrorClass::Usage,
            StoreError::DigestMismatch { .. }
            | StoreError::SizeMismatch { .. }
            | StoreError::Invalid { .. }
            | StoreError::Layer(_) => ErrorClass::Integrity,
            StoreError::Registry(e) if e.is_integrity() => ErrorClass::Integrity,
            StoreError::Registry(_) => ErrorClass::Registry,
            _ => ErrorClass::Other,
        }
    }
}

/// When to contact a registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always ask the registry (the tag may have moved).
    Always,
    /// Use the stored image if the name is present; pull otherwise.
    #[default]
    Missing,
    /// Never contact a registry.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(PullPolicy::Always),
            "missing" => Ok(PullPolicy::Missing),
            "never" => Ok(PullPolicy::Never),
            o => Err(format!(
                "unknown pull policy {o:?} (always, missing, never)"
            )),
        }
    }
}

/// Options of one pull.
#[derive(Clone)]
pub struct PullOptions {
    pub platform: Platform,
    pub policy: PullPolicy,
    /// Also unpack the layers for this mapping before the image gets its name.
    pub unpack: Option<IdMapping>,
    pub progress: Arc<dyn Progress>,
    /// Layers downloaded at once.
    pub parallel: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            policy: PullPolicy::Missing,
            unpack: None,
            progress: progress::silent(),
            parallel: 3,
        }
    }
}

/// Store-wide configuration.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    pub registry: RegistryConfig,
    pub limits: Limits,
}

/// A layer of an image.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerInfo {
    pub digest: Digest,
    pub media_type: String,
    pub compression: Compression,
    pub size: u64,
    pub diff_id: Digest,
}

/// An image in the store.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageInfo {
    /// The name it is stored under (`registry/repo:tag`).
    pub name: String,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config_digest: Digest,
    pub config: ImageConfiguration,
    /// Lowest first.
    pub layers: Vec<LayerInfo>,
    pub diff_ids: Vec<Digest>,
    /// ChainID of the whole stack (image-spec config.md).
    pub chain_id: Digest,
    /// Compressed size of manifest, config and layers.
    pub size: u64,
}

/// What a pull or import did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PullReport {
    pub image: ImageInfo,
    /// The policy found the name in the store; no registry was asked.
    pub from_store: bool,
    /// The manifest digest at the source (the registry's; differs from
    /// `image.manifest_digest` for Docker schema-2 images, stored in OCI form).
    pub source_digest: Digest,
    /// Blobs fetched or copied into the store.
    pub blobs_fetched: usize,
    /// Blobs that were already present (or fetched by a concurrent pull).
    pub blobs_present: usize,
    pub bytes_fetched: u64,
    pub unpack: Option<UnpackReport>,
}

/// What an unpack did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct UnpackReport {
    /// Layer directories, lowest first.
    pub dirs: Vec<PathBuf>,
    /// Layers unpacked now.
    pub layers_unpacked: usize,
    /// Layers that were already unpacked (no layer data written).
    pub layers_present: usize,
    pub stats: Vec<UnpackStats>,
}

/// Work for a helper process inside a user namespace (rootless mappings with
/// subordinate ids: files owned by those ids can only be made, and removed, from
/// inside). The helper calls [`run_userns_job`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum UsernsJob {
    Unpack(UnpackJob),
    RemoveTree(PathBuf),
}

/// Runs a [`UsernsJob`] inside a user namespace with the given mapping (provided by
/// the container runtime, which owns the re-exec helper).
pub type UsernsRunner =
    Arc<dyn Fn(&IdMapping, &UsernsJob) -> Result<Option<UnpackStats>, String> + Send + Sync>;

/// Execute a [`UsernsJob`] in the current process (the helper's side).
pub fn run_userns_job(job: &UsernsJob) -> Result<Option<UnpackStats>, String> {
    match job {
        UsernsJob::Unpack(j) => layer::unpack(j).map(Some).map_err(|e| e.to_string()),
        UsernsJob::RemoveTree(p) => remove_tree(p).map(|()| None).map_err(|e| e.to_string()),
    }
}

/// Remove a directory tree without following symlinks.
pub fn remove_tree(p: &Path) -> Result<(), StoreError> {
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return Err(StoreError::Io {
            path: p.to_owned(),
            source: std::io::Error::other("refusing to remove a root directory"),
        });
    };
    let dir = std::fs::File::open(parent).map_err(|source| StoreError::Io {
        path: parent.to_owned(),
        source,
    })?;
    use std::os::unix::ffi::OsStrExt;
    layer::sys::remove_tree_at(std::os::fd::AsFd::as_fd(&dir), name.as_bytes()).map_err(|source| {
        StoreError::Io {
            path: p.to_owned(),
            source,
        }
    })
}

/// Shared locks on an image's unpacked layers: while held, prune leaves them alone.
#[derive(Debug)]
pub struct LayerLease {
    _locks: Vec<FileLock>,
}

/// The image store. Cloning is cheap and clones share everything (registry client,
/// token cache, in-flight downloads).
#[derive(Clone)]
pub struct Store {
    layout: Layout,
    opts: StoreOptions,
    client: Arc<Mutex<Option<Arc<Client>>>>,
    /// Blob downloads in progress in this process (digest → its gate).
    inflight: Arc<Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>>,
    userns_runner: Arc<RwLock<Option<UsernsRunner>>>,
}

fn lock_poisoned<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Open (creating if needed) the store at `root` with default options.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Store::open_with(root, StoreOptions::default())
    }

    pub fn open_with(root: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let layout = Layout::init(root)?;
        Ok(Store {
            layout,
            opts,
            client: Arc::new(Mutex::new(None)),
            inflight: Arc::new(Mutex::new(HashMap::new())),
            userns_runner: Arc::new(RwLock::new(None)),
        })
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Plug in the helper that runs unpacks inside a user namespace (needed for
    /// [`crate::idmap::MappingMode::RootlessRanges`]).
    pub fn set_userns_runner(&self, runner: UsernsRunner) {
        *self
            .userns_runner
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(runner);
    }

    fn runner(&self) -> Option<UsernsRunner> {
        self.userns_runner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut c = lock_poisoned(&self.client);
        if let Some(c) = &*c {
            return Ok(c.clone());
        }
        let n = Arc::new(Client::new(self.opts.registry.clone())?);
        *c = Some(n.clone());
        Ok(n)
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.layout.locks_dir().join(name)
    }

    fn lock_err(&self, p: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        let p = p.to_owned();
        move |source| StoreError::Io { path: p, source }
    }

    /// Exclusive lock for `index.json` updates.
    fn index_lock(&self) -> Result<FileLock, StoreError> {
        let p = self.lock_path("store.lock");
        FileLock::exclusive(&p).map_err(self.lock_err(&p))
    }

    /// Shared lock that keeps prune away.
    fn gc_shared(&self) -> Result<FileLock, StoreError> {
        let p = self.lock_path("gc.lock");
        FileLock::shared(&p).map_err(self.lock_err(&p))
    }

    // ---------------------------------------------------------------- names

    /// Resolve a name, a short name (`busybox`, `buildroot` for
    /// `localhost/buildroot:latest`), a manifest digest (`sha256:…`) or an id prefix
    /// (≥ 12 hex digits of the manifest digest). Never touches the network.
    pub fn resolve(&self, reference: &str) -> Result<ImageInfo, StoreError> {
        let idx = self.layout.read_index()?;
        let d = self.find(&idx, reference)?;
        let name = d
            .annotation(REF_NAME)
            .map(str::to_owned)
            .unwrap_or_else(|| d.digest.to_string());
        self.image_info(&name, d)
    }

    fn find<'a>(&self, idx: &'a Index, reference: &str) -> Result<&'a Descriptor, StoreError> {
        let by_name = |n: &str| {
            idx.manifests
                .iter()
                .find(|d| d.annotation(REF_NAME) == Some(n))
        };
        if let Some(d) = by_name(reference) {
            return Ok(d);
        }
        let mut candidates = Vec::new();
        if let Ok(r) = RegistryRef::parse(reference) {
            candidates.push(r.name());
        }
        if let Ok(r) = RegistryRef::parse_local_name(reference) {
            candidates.push(r.name());
        }
        for c in &candidates {
            if let Some(d) = by_name(c) {
                return Ok(d);
            }
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hex = hex.to_ascii_lowercase();
            let hits: Vec<&Descriptor> = idx
                .manifests
                .iter()
                .filter(|d| d.digest.hex().starts_with(&hex))
                .collect();
            let distinct: std::collections::BTreeSet<&Digest> =
                hits.iter().map(|d| &d.digest).collect();
            match distinct.len() {
                0 => {}
                1 => return Ok(hits[0]),
                _ => {
                    return Err(StoreError::Ambiguous(
                        reference.to_owned(),
                        distinct
                            .iter()
                            .map(|d| d.short())
                            .collect::<Vec<_>>()
                            .join(", "),
                    ))
                }
            }
        }
        Err(StoreError::NotFound(reference.to_owned()))
    }

    /// Build an [`ImageInfo`] from an index descriptor (re-verifying manifest and config).
    fn image_info(&self, name: &str, d: &Descriptor) -> Result<ImageInfo, StoreError> {
        let bytes = self.layout.read_blob(&d.digest, manifest::MAX_MANIFEST)?;
        let m = match manifest::parse_document(&bytes, Some(&d.media_type)) {
            Ok(Document::Manifest(m)) => m,
            Ok(Document::Index(_)) => {
                return Err(StoreError::Invalid {
                    image: name.into(),
                    reason: "the stored descriptor points at an index, not an image".into(),
                })
            }
            Err(reason) => {
                return Err(StoreError::Invalid {
                    image: name.into(),
                    reason,
                })
            }
        };
        let cfg_bytes = self
            .layout
            .read_blob(&m.config.digest, manifest::MAX_CONFIG)?;
        info_from(
            name,
            &d.digest,
            &d.media_type,
            bytes.len() as u64,
            &m,
            &cfg_bytes,
        )
    }

    /// All images, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageInfo>, StoreError> {
        let idx = self.layout.read_index()?;
        let mut out = Vec::new();
        for d in &idx.manifests {
            let name = d
                .annotation(REF_NAME)
                .map(str::to_owned)
                .unwrap_or_else(|| d.digest.to_string());
            out.push(self.image_info(&name, d)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Record `name` → manifest (replacing what the name pointed at).
    fn set_name(&self, name: &str, manifest: Descriptor) -> Result<(), StoreError> {
        let _l = self.index_lock()?;
        let mut idx = self.layout.read_index()?;
        idx.manifests
            .retain(|d| d.annotation(REF_NAME) != Some(name));
        let mut d = manifest;
        d.annotations
            .get_or_insert_with(Default::default)
            .insert(REF_NAME.into(), name.into());
        idx.manifests.push(d);
        self.layout.write_index(&idx)
    }

    /// Remove an image name (or, for a digest or id, every name of that image).
    /// Blobs and layers stay until [`Store::prune`]. Returns the names removed.
    pub fn remove(&self, reference: &str) -> Result<Vec<String>, StoreError> {
        let _gc = self.gc_shared()?;
        let _l = self.index_lock()?;
        let mut idx = self.layout.read_index()?;
        let target = self.find(&idx, reference)?.clone();
        let mut names = vec![reference.to_owned()];
        names.extend(RegistryRef::parse(reference).map(|r| r.name()));
        names.extend(RegistryRef::parse_local_name(reference).map(|r| r.name()));
        let by_digest = !target
            .annotation(REF_NAME)
            .is_some_and(|n| names.iter().any(|c| c == n));
        let mut removed = Vec::new();
        idx.manifests.retain(|d| {
            let hit = if by_digest {
                d.digest == target.digest
            } else {
                d.annotation(REF_NAME) == target.annotation(REF_NAME)
            };
            if hit {
                removed.push(d.annotation(REF_NAME).unwrap_or_default().to_owned());
            }
            !hit
        });
        self.layout.write_index(&idx)?;
        info!(names = ?removed, "image removed");
        Ok(removed)
    }

    // ---------------------------------------------------------------- pulls

    /// Make `reference` available in the store according to `opts.policy`: a
    /// registry reference is pulled, `oci:`/`oci-archive:` imported (under
    /// `localhost/<dir>:<tag>`). With `opts.unpack` the layers are unpacked before
    /// the image gets its name.
    pub async fn pull(
        &self,
        reference: &str,
        opts: &PullOptions,
    ) -> Result<PullReport, StoreError> {
        match ImageSource::parse(reference)? {
            ImageSource::Registry(r) => self.pull_registry(&r, opts).await,
            _ => {
                let src = reference.to_owned();
                let iopts = ImportOptions {
                    platform: opts.platform.clone(),
                    unpack: opts.unpack.clone(),
                    progress: opts.progress.clone(),
                };
                self.import_blocking(src, None, iopts).await
            }
        }
    }
}

/// Parse an image configuration. `history` is OPTIONAL in the image-spec (images built
/// with `buildah --omit-history`, `umoci --no-history`, ko or apko have none) but
/// oci-spec 0.7 requires it (youki-dev/oci-spec-rs#287, fixed in 0.8): a missing or
/// null `history` reads as empty.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfiguration, serde_json::Error> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
    if let Some(obj) = v.as_object_mut() {
        let h = obj.entry("history").or_insert(serde_json::Value::Null);
        if h.is_null() {
            *h = serde_json::Value::Array(Vec::new());
        }
    }
    serde_json::from_value(v)
}

/// Assemble an [`ImageInfo`], checking that manifest and config agree. Public so that
/// the fuzz targets (fuzz/, docs/fuzzing.md) can feed it hostile manifests and configs.
pub fn info_from(
    name: &str,
    manifest_digest: &Digest,
    manifest_media_type: &str,
    manifest_size: u64,
    m: &Manifest,
    cfg_bytes: &[u8],
) -> Result<ImageInfo, StoreError> {
    let invalid = |reason: String| StoreError::Invalid {
        image: name.to_owned(),
        reason,
    };
    m.check_image().map_err(invalid)?;
    let config = parse_config(cfg_bytes).map_err(|e| {
        invalid(format!(
            "config {} is not an image configuration: {e}",
            m.config.digest
        ))
    })?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|s| Digest::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("config rootfs.diff_ids: {e}")))?;
    if diff_ids.len() != m.layers.len() {
        return Err(invalid(format!(
            "the manifest has {} layers but the config lists {} diff_ids",
            m.layers.len(),
            diff_ids.len()
        )));
    }
    if diff_ids.is_empty() {
        return Err(invalid("the image has no layers".into()));
    }
    let layers = m
        .layers
        .iter()
        .zip(&diff_ids)
        .map(|(l, d)| LayerInfo {
            digest: l.digest.clone(),
            media_type: l.media_type.clone(),
            // check_image() has accepted every media type.
            compression: Compression::from_media_type(&l.media_type).unwrap_or(Compression::None),
            size: l.size,
            diff_id: d.clone(),
        })
        .collect();
    // Sizes are the manifest's claims (checked when the blobs arrive): add them without
    // wrapping.
    let size = m
        .layers
        .iter()
        .try_fold(manifest_size.checked_add(m.config.size), |acc, l| {
            acc.map(|a| a.checked_add(l.size))
        })
        .flatten()
        .ok_or_else(|| invalid("the sizes of its blobs add up to more than 2^64 bytes".into()))?;
    Ok(ImageInfo {
        name: name.to_owned(),
        manifest_digest: manifest_digest.clone(),
        manifest_media_type: manifest_media_type.to_owned(),
        config_digest: m.config.digest.clone(),
        config,
        layers,
        chain_id: chain_id(&diff_ids).unwrap_or_else(|| Digest::of(b"")),
        diff_ids,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest(layer_sizes: &[u64]) -> Manifest {
        let layers: Vec<String> = layer_sizes
            .iter()
            .map(|s| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":{s}}}"#
                )
            })
            .collect();
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{D1}","size":2}},"layers":[{}]}}"#,
            manifest::media::OCI_CONFIG,
            layers.join(",")
        );
        match manifest::parse_document(m.as_bytes(), Some(manifest::media::OCI_MANIFEST)) {
            Ok(Document::Manifest(m)) => *m,
            other => panic!("{other:?}"),
        }
    }

    fn config(layers: usize, history: &str) -> String {
        let ids = vec![format!("{D2:?}"); layers].join(",");
        format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{ids}]}}{history}}}"#
        )
    }

    #[test]
    fn config_history_is_optional() {
        let m = manifest(&[10]);
        let d = Digest::of(b"m");
        for history in ["", r#","history":null"#, r#","history":[]"#] {
            let cfg = config(1, history);
            let info = info_from("x", &d, "m", 5, &m, cfg.as_bytes())
                .unwrap_or_else(|e| panic!("{cfg}: {e}"));
            assert!(info.config.history().is_empty());
            assert_eq!(info.size, 5 + 2 + 10);
        }
        let cfg = config(1, r#","history":[{"created_by":"x","empty_layer":true}]"#);
        let info = info_from("x", &d, "m", 5, &m, cfg.as_bytes()).unwrap();
        assert_eq!(info.config.history().len(), 1);
        let cfg = config(1, r#","history":7"#);
        assert!(info_from("x", &d, "m", 5, &m, cfg.as_bytes()).is_err());
    }

    /// Found by the image_manifest fuzz harness (a hostile seed): layer sizes whose sum
    /// overflows u64 panicked (debug builds) or wrapped (release).
    #[test]
    fn blob_sizes_that_overflow_are_an_error() {
        let d = Digest::of(b"m");
        let m = manifest(&[u64::MAX, 1]);
        let e = info_from("x", &d, "m", 5, &m, config(2, "").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("more than 2^64"), "{e}");
        let m = manifest(&[u64::MAX - 7]);
        let e = info_from("x", &d, "m", 6, &m, config(1, "").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("more than 2^64"), "{e}");
        let m = manifest(&[u64::MAX - 7]);
        let info = info_from("x", &d, "m", 5, &m, config(1, "").as_bytes()).unwrap();
        assert_eq!(info.size, u64::MAX);
    }
}
