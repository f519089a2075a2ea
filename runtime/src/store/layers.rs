//! Unpacked layers: `layers/<mapping>/<diff_id>/`, made once per (mapping, diff_id)
//! under a per-layer lock, in a temporary directory renamed into place when complete.

use std::path::{Path, PathBuf};

use tracing::{debug, info, info_span};

use super::lock::FileLock;
use super::{
    layout, remove_tree, ImageInfo, LayerInfo, LayerLease, Store, StoreError, UnpackReport,
    UsernsJob, UsernsRunner,
};
use crate::digest::Digest;
use crate::idmap::{IdMapping, MappingMode};
use crate::layer::{self, Ownership, UnpackJob, UnpackStats};
use crate::progress::{self, Event, Progress};

impl Store {
    /// Directory of an unpacked layer (whether or not it exists yet).
    pub fn layer_dir(&self, diff_id: &Digest, mapping: &IdMapping) -> PathBuf {
        self.layout
            .layers_dir()
            .join(mapping.cache_key())
            .join(diff_id.hex())
    }

    /// Whether every layer of `image` is unpacked for `mapping`.
    pub fn is_unpacked(&self, image: &ImageInfo, mapping: &IdMapping) -> bool {
        image
            .diff_ids
            .iter()
            .all(|d| self.layer_dir(d, mapping).is_dir())
    }

    /// Ensure every layer of `image` is unpacked for `mapping`; return the layer
    /// directories, LOWEST layer first. Blocking.
    pub fn layer_dirs(
        &self,
        image: &ImageInfo,
        mapping: &IdMapping,
    ) -> Result<Vec<PathBuf>, StoreError> {
        self.unpack(image, mapping, &*progress::silent())
            .map(|r| r.dirs)
    }

    /// Like [`Store::layer_dirs`], with progress and a report. Blocking.
    pub fn unpack(
        &self,
        image: &ImageInfo,
        mapping: &IdMapping,
        progress: &dyn Progress,
    ) -> Result<UnpackReport, StoreError> {
        let mut report = UnpackReport::default();
        // Fast path: all present, no locks, no writes.
        if self.is_unpacked(image, mapping) {
            report.dirs = image
                .diff_ids
                .iter()
                .map(|d| self.layer_dir(d, mapping))
                .collect();
            report.layers_present = report.dirs.len();
            return Ok(report);
        }
        let _span =
            info_span!("unpack", image = %image.name, mapping = %mapping.cache_key()).entered();
        let _gc = self.gc_shared()?;
        let base = self.layout.layers_dir().join(mapping.cache_key());
        if !base.is_dir() {
            layout::make_dir(&base)?;
            let mj = serde_json::to_vec(mapping).map_err(|e| StoreError::Task(e.to_string()))?;
            self.layout.write_atomic(&base.join("mapping.json"), &mj)?;
        }
        for l in &image.layers {
            match self.ensure_layer(l, mapping, &base, progress)? {
                Some(stats) => {
                    report.layers_unpacked += 1;
                    report.stats.push(stats);
                }
                None => report.layers_present += 1,
            }
            report.dirs.push(self.layer_dir(&l.diff_id, mapping));
        }
        Ok(report)
    }

    /// Unpack one layer unless present. `Some(stats)` if it was unpacked now.
    fn ensure_layer(
        &self,
        l: &LayerInfo,
        mapping: &IdMapping,
        base: &Path,
        progress: &dyn Progress,
    ) -> Result<Option<UnpackStats>, StoreError> {
        let dst = base.join(l.diff_id.hex());
        if dst.is_dir() {
            progress.event(&Event::LayerDone {
                diff_id: &l.diff_id,
                unpacked: false,
            });
            return Ok(None);
        }
        // The unpackers' own lock: never the lease lock (`layer-….lock`, shared by
        // containers using the layer), or an unpacker that found the layer missing
        // would wait for the lease of the process that just unpacked it, as long as
        // its containers run.
        let lp = self.lock_path(&format!(
            "layer-{}-{}.unpack.lock",
            mapping.cache_key(),
            l.diff_id.hex()
        ));
        let _lock = FileLock::exclusive(&lp).map_err(self.lock_err(&lp))?;
        if dst.is_dir() {
            // Another process unpacked it while we waited.
            progress.event(&Event::LayerDone {
                diff_id: &l.diff_id,
                unpacked: false,
            });
            return Ok(None);
        }
        let blob = self.layout.blob_path(&l.digest);
        if !self.layout.has_blob(&l.digest, Some(l.size)) {
            return Err(StoreError::MissingBlob(l.digest.clone()));
        }
        let runner = match mapping.mode {
            MappingMode::RootlessRanges => Some(
                self.runner()
                    .ok_or_else(|| StoreError::NoUsernsRunner(mapping.cache_key()))?,
            ),
            MappingMode::Root => {
                if unsafe { libc::geteuid() } != 0 {
                    return Err(StoreError::NeedsRoot);
                }
                None
            }
            MappingMode::Single => None,
        };
        // Leftovers of a crashed unpack of this layer (we hold its lock).
        self.remove_stale_tmp(base, l.diff_id.hex(), mapping, runner.as_ref())?;
        let tmp = base.join(format!(
            ".{}",
            layout::tmp_name(&format!("tmp-{}", l.diff_id.hex()))
        ));
        std::fs::create_dir(&tmp).map_err(|source| StoreError::Io {
            path: tmp.clone(),
            source,
        })?;
        let job = UnpackJob {
            blob,
            compression: l.compression,
            diff_id: l.diff_id.clone(),
            target: tmp.clone(),
            ownership: Ownership::for_mapping(mapping),
            limits: self.opts.limits,
            label: l.digest.to_string(),
        };
        progress.event(&Event::LayerStart {
            diff_id: &l.diff_id,
            size: l.size,
        });
        let t0 = std::time::Instant::now();
        let res = match &runner {
            None => layer::unpack(&job).map_err(StoreError::from),
            Some(run) => run(mapping, &UsernsJob::Unpack(job.clone()))
                .and_then(|s| {
                    s.ok_or_else(|| "the helper returned no unpack statistics".to_owned())
                })
                .map_err(|message| StoreError::Userns {
                    layer: l.digest.to_string(),
                    message,
                }),
        };
        let stats = match res {
            Ok(s) => s,
            Err(e) => {
                if let Err(rm) = self.remove_dir(&tmp, mapping, runner.as_ref()) {
                    tracing::warn!(path = %tmp.display(), error = %rm, "could not remove a failed unpack");
                }
                return Err(e);
            }
        };
        std::fs::rename(&tmp, &dst).map_err(|source| StoreError::Io {
            path: dst.clone(),
            source,
        })?;
        info!(
            layer = %l.digest, diff_id = %l.diff_id,
            mb = stats.tar_bytes as f64 / 1e6,
            secs = t0.elapsed().as_secs_f64(),
            "layer unpacked"
        );
        progress.event(&Event::LayerDone {
            diff_id: &l.diff_id,
            unpacked: true,
        });
        Ok(Some(stats))
    }

    pub(super) fn remove_dir(
        &self,
        p: &Path,
        mapping: &IdMapping,
        runner: Option<&UsernsRunner>,
    ) -> Result<(), StoreError> {
        match runner {
            Some(run) if mapping.mode == MappingMode::RootlessRanges => {
                run(mapping, &UsernsJob::RemoveTree(p.to_owned()))
                    .map(drop)
                    .map_err(|message| StoreError::Userns {
                        layer: p.display().to_string(),
                        message,
                    })
            }
            _ => remove_tree(p),
        }
    }

    fn remove_stale_tmp(
        &self,
        base: &Path,
        hex: &str,
        mapping: &IdMapping,
        runner: Option<&UsernsRunner>,
    ) -> Result<(), StoreError> {
        let prefix = format!(".tmp-{hex}-");
        let rd = match std::fs::read_dir(base) {
            Ok(rd) => rd,
            Err(source) => {
                return Err(StoreError::Io {
                    path: base.to_owned(),
                    source,
                })
            }
        };
        for ent in rd.flatten() {
            if ent.file_name().to_string_lossy().starts_with(&prefix) {
                debug!(path = %ent.path().display(), "removing a stale partial unpack");
                self.remove_dir(&ent.path(), mapping, runner)?;
            }
        }
        Ok(())
    }

    /// Hold shared locks on the image's layers for `mapping` (see [`LayerLease`]).
    pub fn lease_layers(
        &self,
        image: &ImageInfo,
        mapping: &IdMapping,
    ) -> Result<LayerLease, StoreError> {
        let mut locks = Vec::new();
        for d in &image.diff_ids {
            let p = self.lock_path(&format!("layer-{}-{}.lock", mapping.cache_key(), d.hex()));
            locks.push(FileLock::shared(&p).map_err(self.lock_err(&p))?);
        }
        Ok(LayerLease { _locks: locks })
    }
}
