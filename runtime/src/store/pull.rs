//! Pulling from a registry into the store.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use tracing::{debug, info, Instrument};

use super::{info_from, lock::FileLock, PullOptions, PullPolicy, PullReport, Store, StoreError};
use crate::digest::Digest;
use crate::manifest::{self, media, Descriptor, Document, PlatformSpec};
use crate::progress::{BlobKind, Event, Progress};
use crate::reference::RegistryRef;
use crate::registry::Client;

/// Outcome of making one blob present.
struct BlobOutcome {
    fetched: bool,
    bytes: u64,
}

impl Store {
    pub(super) async fn pull_registry(
        &self,
        r: &RegistryRef,
        opts: &PullOptions,
    ) -> Result<PullReport, StoreError> {
        let name = r.name();
        if opts.policy != PullPolicy::Always {
            match self.resolve(&name) {
                Ok(image) => {
                    debug!(image = %name, "present in the store; not asking the registry");
                    let unpack = self.unpack_async(&image, opts).await?;
                    return Ok(PullReport {
                        source_digest: image.manifest_digest.clone(),
                        image,
                        from_store: true,
                        blobs_fetched: 0,
                        blobs_present: 0,
                        bytes_fetched: 0,
                        unpack,
                    });
                }
                Err(StoreError::NotFound(_)) if opts.policy == PullPolicy::Never => {
                    return Err(StoreError::NotFound(name));
                }
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let span = tracing::info_span!("pull", image = %name, platform = %opts.platform);
        self.pull_inner(r, &name, opts).instrument(span).await
    }

    async fn pull_inner(
        &self,
        r: &RegistryRef,
        name: &str,
        opts: &PullOptions,
    ) -> Result<PullReport, StoreError> {
        let wanted = std::sync::Mutex::new(Vec::new());
        let res = self.pull_steps(r, name, opts, &wanted).await;
        if res.is_err() {
            // Downloads this pull started and did not finish (cancelled siblings of
            // the failure) leave no partial files behind.
            let wanted = std::mem::take(&mut *super::lock_poisoned(&wanted));
            self.drop_partials(&wanted);
        }
        res
    }

    fn drop_partials(&self, digests: &[Digest]) {
        for d in digests {
            let p = self.layout.partial_path(d);
            if !p.exists() {
                continue;
            }
            let busy = super::lock_poisoned(&self.inflight)
                .get(d)
                .is_some_and(|g| Arc::strong_count(g) > 1);
            let lp = self.lock_path(&format!("blob-{}.lock", d.hex()));
            if let (false, Ok(Some(_l))) = (busy, FileLock::try_exclusive(&lp)) {
                debug!(blob = %d, "removing the partial download of a failed pull");
                let _ = std::fs::remove_file(&p);
            }
        }
    }

    async fn pull_steps(
        &self,
        r: &RegistryRef,
        name: &str,
        opts: &PullOptions,
        wanted: &std::sync::Mutex<Vec<Digest>>,
    ) -> Result<PullReport, StoreError> {
        let t0 = std::time::Instant::now();
        let client = self.client()?;
        let progress = &*opts.progress;
        let gc_path = self.lock_path("gc.lock");
        let _gc = blocking(move || {
            FileLock::shared(&gc_path).map_err(|source| StoreError::Io {
                path: gc_path.clone(),
                source,
            })
        })
        .await?;

        // The manifest (through an index if the reference names one).
        let (mbytes, mdigest, mtype, m) =
            fetch_manifest(&client, r, name, &opts.platform, progress).await?;
        let invalid = |reason: String| StoreError::Invalid {
            image: name.to_owned(),
            reason,
        };
        m.check_image().map_err(invalid)?;
        let source_digest = mdigest.clone();
        let (mbytes, mdigest, mtype, m) = match manifest::oci_form(&m) {
            Some((om, bytes)) => {
                let d = Digest::of(&bytes);
                debug!(docker = %source_digest, oci = %d, "Docker schema-2 manifest stored in its OCI form");
                (bytes, d, media::OCI_MANIFEST.to_owned(), Box::new(om))
            }
            None => (mbytes, mdigest, mtype, m),
        };
        {
            let mut w = super::lock_poisoned(wanted);
            w.push(m.config.digest.clone());
            w.extend(m.layers.iter().map(|l| l.digest.clone()));
        }

        let mut report = Counters::default();
        // Config first: its diff_ids must match the layers before anything big moves.
        let o = self
            .ensure_blob(&client, r, &m.config, BlobKind::Config, progress)
            .await?;
        report.add(&o);
        let cfg = self
            .layout
            .read_blob(&m.config.digest, manifest::MAX_CONFIG)?;
        let info = info_from(name, &mdigest, &mtype, mbytes.len() as u64, &m, &cfg)?;

        let client_ref = &client;
        let outcomes: Vec<BlobOutcome> = futures_util::stream::iter(m.layers.clone())
            .map(|l| async move {
                self.ensure_blob(client_ref, r, &l, BlobKind::Layer, progress)
                    .await
            })
            .buffer_unordered(opts.parallel.max(1))
            .try_collect()
            .await?;
        for o in &outcomes {
            report.add(o);
        }
        progress.event(&Event::BlobStart {
            digest: &mdigest,
            size: mbytes.len() as u64,
            kind: BlobKind::Manifest,
        });
        let wrote = self.layout.put_blob_bytes(&mdigest, &mbytes)?;
        progress.event(&Event::BlobDone {
            digest: &mdigest,
            fetched: wrote,
        });

        let unpack = self.unpack_async(&info, opts).await?;
        let platform = PlatformSpec::from(&opts.platform);
        self.set_name(
            name,
            Descriptor {
                media_type: mtype,
                digest: mdigest.clone(),
                size: mbytes.len() as u64,
                urls: None,
                annotations: None,
                platform: Some(platform),
            },
        )?;
        info!(
            image = %name, digest = %mdigest,
            fetched = report.fetched, present = report.present,
            mb = report.bytes as f64 / 1e6, secs = t0.elapsed().as_secs_f64(),
            "image pulled"
        );
        Ok(PullReport {
            image: info,
            from_store: false,
            source_digest,
            blobs_fetched: report.fetched,
            blobs_present: report.present,
            bytes_fetched: report.bytes,
            unpack,
        })
    }

    /// Unpack for `opts.unpack` in a blocking task.
    pub(super) async fn unpack_async(
        &self,
        image: &super::ImageInfo,
        opts: &PullOptions,
    ) -> Result<Option<super::UnpackReport>, StoreError> {
        let Some(mapping) = opts.unpack.clone() else {
            return Ok(None);
        };
        let (store, image, progress) = (self.clone(), image.clone(), opts.progress.clone());
        blocking(move || store.unpack(&image, &mapping, &*progress))
            .await
            .map(Some)
    }

    /// Make blob `d` present: already there, fetched by a concurrent pull (in this
    /// process or another), or downloaded now.
    async fn ensure_blob(
        &self,
        client: &Arc<Client>,
        r: &RegistryRef,
        desc: &Descriptor,
        kind: BlobKind,
        progress: &dyn Progress,
    ) -> Result<BlobOutcome, StoreError> {
        let d = &desc.digest;
        let present = BlobOutcome {
            fetched: false,
            bytes: 0,
        };
        if self.layout.has_blob(d, Some(desc.size)) {
            progress.event(&Event::BlobDone {
                digest: d,
                fetched: false,
            });
            return Ok(present);
        }
        // One download per blob in this process...
        let gate = {
            let mut m = super::lock_poisoned(&self.inflight);
            m.entry(d.clone()).or_default().clone()
        };
        let _inproc = gate.lock().await;
        let outcome = self.fetch_locked(client, r, desc, kind, progress).await;
        {
            let mut m = super::lock_poisoned(&self.inflight);
            if m.get(d).is_some_and(|g| Arc::ptr_eq(g, &gate)) && Arc::strong_count(&gate) <= 2 {
                m.remove(d);
            }
        }
        outcome
    }

    async fn fetch_locked(
        &self,
        client: &Arc<Client>,
        r: &RegistryRef,
        desc: &Descriptor,
        kind: BlobKind,
        progress: &dyn Progress,
    ) -> Result<BlobOutcome, StoreError> {
        let d = &desc.digest;
        if self.layout.has_blob(d, Some(desc.size)) {
            progress.event(&Event::BlobDone {
                digest: d,
                fetched: false,
            });
            return Ok(BlobOutcome {
                fetched: false,
                bytes: 0,
            });
        }
        // ...and in the whole store.
        let lp = self.lock_path(&format!("blob-{}.lock", d.hex()));
        let _lock = blocking(move || {
            FileLock::exclusive(&lp).map_err(|source| StoreError::Io {
                path: lp.clone(),
                source,
            })
        })
        .await?;
        if self.layout.has_blob(d, Some(desc.size)) {
            progress.event(&Event::BlobDone {
                digest: d,
                fetched: false,
            });
            return Ok(BlobOutcome {
                fetched: false,
                bytes: 0,
            });
        }
        progress.event(&Event::BlobStart {
            digest: d,
            size: desc.size,
            kind,
        });
        let partial = self.layout.partial_path(d);
        let bytes = client
            .fetch_blob(r, d, desc.size, &partial, progress)
            .await?;
        self.layout.commit_blob(&partial, d)?;
        progress.event(&Event::BlobDone {
            digest: d,
            fetched: true,
        });
        Ok(BlobOutcome {
            fetched: true,
            bytes,
        })
    }
}

#[derive(Default)]
struct Counters {
    fetched: usize,
    present: usize,
    bytes: u64,
}

impl Counters {
    fn add(&mut self, o: &BlobOutcome) {
        if o.fetched {
            self.fetched += 1;
        } else {
            self.present += 1;
        }
        self.bytes += o.bytes;
    }
}

/// The manifest `r` names, through an index when it names one (the entry for
/// `platform`): bytes, digest, media type, parsed. Not checked beyond parsing.
async fn fetch_manifest(
    client: &Client,
    r: &RegistryRef,
    name: &str,
    platform: &crate::platform::Platform,
    progress: &dyn Progress,
) -> Result<(Vec<u8>, Digest, String, Box<manifest::Manifest>), StoreError> {
    let invalid = |reason: String| StoreError::Invalid {
        image: name.to_owned(),
        reason,
    };
    let top = client
        .manifest(r, &r.manifest_reference(), progress)
        .await?;
    Ok(
        match manifest::parse_document(&top.bytes, top.media_type.as_deref()).map_err(invalid)? {
            Document::Manifest(m) => {
                let t = m
                    .media_type
                    .clone()
                    .or(top.media_type.clone())
                    .unwrap_or_else(|| media::OCI_MANIFEST.into());
                (top.bytes, top.digest, t, m)
            }
            Document::Index(idx) => {
                let sel = idx.select(platform).map_err(invalid)?.clone();
                debug!(digest = %sel.digest, "index resolved to platform manifest");
                let sub = client
                    .manifest(r, &sel.digest.to_string(), progress)
                    .await?;
                match manifest::parse_document(&sub.bytes, Some(&sel.media_type))
                    .map_err(invalid)?
                {
                    Document::Manifest(m) => (sub.bytes, sub.digest, sel.media_type.clone(), m),
                    Document::Index(_) => {
                        return Err(invalid("an index entry points at another index".into()))
                    }
                }
            }
        },
    )
}

/// What the registry has for a reference, without downloading any blob
/// ([`Store::remote_manifest`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RemoteManifest {
    /// The reference as resolved (`registry/repo:tag`).
    pub name: String,
    /// The digest of the platform manifest at the registry.
    pub digest: Digest,
    pub media_type: String,
    /// Number of layers.
    pub layers: usize,
    /// Compressed size of config and layers, as the manifest declares them.
    pub size: u64,
}

impl Store {
    /// Ask the registry for the manifest of `reference` (through an index, for
    /// `platform`) and check it describes an image we could pull — authentication,
    /// TLS, the tag and the platform included — without downloading config or
    /// layers. Registry references only.
    pub async fn remote_manifest(
        &self,
        reference: &str,
        platform: &crate::platform::Platform,
    ) -> Result<RemoteManifest, StoreError> {
        let r = match crate::reference::ImageSource::parse(reference)? {
            crate::reference::ImageSource::Registry(r) => r,
            _ => {
                return Err(StoreError::Invalid {
                    image: reference.to_owned(),
                    reason: "not a registry reference".into(),
                })
            }
        };
        let name = r.name();
        let client = self.client()?;
        let (_, digest, media_type, m) =
            fetch_manifest(&client, &r, &name, platform, &*crate::progress::silent()).await?;
        m.check_image().map_err(|reason| StoreError::Invalid {
            image: name.clone(),
            reason,
        })?;
        let size = m
            .layers
            .iter()
            .map(|l| l.size)
            .chain([m.config.size])
            .try_fold(0u64, |a, b| a.checked_add(b))
            .unwrap_or(u64::MAX);
        Ok(RemoteManifest {
            name,
            digest,
            media_type,
            layers: m.layers.len(),
            size,
        })
    }
}

/// Run blocking work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(format!("blocking task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon spawns pulls on a multi-threaded runtime: the future must be Send.
    #[test]
    fn pull_future_is_send() {
        fn is_send<T: Send>(_: &T) {}
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let o = PullOptions::default();
        let f = s.pull("busybox", &o);
        is_send(&f);
    }
}
