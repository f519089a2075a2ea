//! `prune`: remove what no image references.
//!
//! Takes `gc.lock` exclusively, so no pull, import or unpack of any process is
//! running: every file in `ingest/` and every `layers/*/.tmp-*` is then a leftover
//! of a crash. Unpacked layers leased by running containers (shared layer lock) are
//! kept.

use std::collections::HashSet;
use std::path::Path;

use tracing::{debug, info, warn};

use super::lock::FileLock;
use super::{remove_tree, Store, StoreError, UsernsJob};
use crate::digest::Digest;
use crate::idmap::{IdMapping, MappingMode};
use crate::manifest::{self, Document};

/// What a prune removed.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PruneReport {
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub layers_removed: usize,
    /// Unreferenced layers kept because a container holds them.
    pub layers_in_use: usize,
    pub temp_removed: usize,
}

impl Store {
    /// Remove unreferenced blobs, unpacked layers and crash leftovers. Blocking.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        let gp = self.lock_path("gc.lock");
        let _gc = FileLock::exclusive(&gp).map_err(|source| StoreError::Io {
            path: gp.clone(),
            source,
        })?;
        let mut rep = PruneReport::default();

        // Everything the images reference.
        let idx = self.layout.read_index()?;
        let mut blobs: HashSet<Digest> = HashSet::new();
        let mut diff_ids: HashSet<String> = HashSet::new();
        let mut todo: Vec<(Digest, String)> = idx
            .manifests
            .iter()
            .map(|d| (d.digest.clone(), d.media_type.clone()))
            .collect();
        while let Some((d, mt)) = todo.pop() {
            if !blobs.insert(d.clone()) {
                continue;
            }
            let bytes = match self.layout.read_blob(&d, manifest::MAX_MANIFEST) {
                Ok(b) => b,
                Err(e) => {
                    warn!(blob = %d, error = %e, "referenced manifest unreadable; keeping what it may reference");
                    return Err(e);
                }
            };
            match manifest::parse_document(&bytes, Some(&mt)) {
                Ok(Document::Index(i)) => todo.extend(
                    i.manifests
                        .iter()
                        .map(|m| (m.digest.clone(), m.media_type.clone())),
                ),
                Ok(Document::Manifest(m)) => {
                    blobs.insert(m.config.digest.clone());
                    blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
                    if let Ok(cfg) = self
                        .layout
                        .read_blob(&m.config.digest, manifest::MAX_CONFIG)
                    {
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&cfg) {
                            if let Some(ids) =
                                v.pointer("/rootfs/diff_ids").and_then(|x| x.as_array())
                            {
                                diff_ids.extend(
                                    ids.iter()
                                        .filter_map(|i| i.as_str())
                                        .filter_map(|s| s.strip_prefix("sha256:"))
                                        .map(str::to_owned),
                                );
                            }
                        }
                    }
                }
                Err(e) => {
                    return Err(StoreError::Corrupt {
                        path: self.layout.blob_path(&d),
                        reason: e,
                    })
                }
            }
        }

        // Blobs.
        let bdir = self.layout.blobs_dir();
        for ent in read_dir(&bdir)? {
            let name = ent.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name)
                .map(|d| blobs.contains(&d))
                .unwrap_or(false);
            if !keep {
                let size = ent.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(ent.path()).map_err(|source| StoreError::Io {
                    path: ent.path(),
                    source,
                })?;
                debug!(blob = %name, "blob removed");
                rep.blobs_removed += 1;
                rep.bytes_freed += size;
            }
        }
        // Crash leftovers of downloads and copies.
        for ent in read_dir(&self.layout.ingest_dir())? {
            let p = ent.path();
            let r = if p.is_dir() {
                remove_tree(&p)
            } else {
                std::fs::remove_file(&p).map_err(|source| StoreError::Io {
                    path: p.clone(),
                    source,
                })
            };
            r?;
            rep.temp_removed += 1;
        }
        // Unpacked layers, per mapping.
        let ldir = self.layout.layers_dir();
        for kdir in read_dir(&ldir)? {
            if !kdir.path().is_dir() {
                continue;
            }
            let key = kdir.file_name().to_string_lossy().into_owned();
            let mapping: Option<IdMapping> = std::fs::read(kdir.path().join("mapping.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let mut left = 0;
            for ent in read_dir(&kdir.path())? {
                let name = ent.file_name().to_string_lossy().into_owned();
                let p = ent.path();
                if name == "mapping.json" {
                    continue;
                }
                if name.starts_with(".tmp-") {
                    self.remove_layer_dir(&p, mapping.as_ref())?;
                    rep.temp_removed += 1;
                    continue;
                }
                if diff_ids.contains(&name) {
                    left += 1;
                    continue;
                }
                let lp = self.lock_path(&format!("layer-{key}-{name}.lock"));
                match FileLock::try_exclusive(&lp).map_err(|source| StoreError::Io {
                    path: lp.clone(),
                    source,
                })? {
                    None => {
                        rep.layers_in_use += 1;
                        left += 1;
                        debug!(layer = %name, "unreferenced layer in use by a container; kept");
                    }
                    Some(_l) => {
                        self.remove_layer_dir(&p, mapping.as_ref())?;
                        let _ = std::fs::remove_file(&lp);
                        rep.layers_removed += 1;
                    }
                }
            }
            if left == 0 {
                let _ = std::fs::remove_file(kdir.path().join("mapping.json"));
                let _ = std::fs::remove_dir(kdir.path());
            }
        }
        // Blob locks of blobs no longer present.
        for ent in read_dir(&self.layout.locks_dir())? {
            let n = ent.file_name().to_string_lossy().into_owned();
            if let Some(hex) = n
                .strip_prefix("blob-")
                .and_then(|s| s.strip_suffix(".lock"))
            {
                if Digest::from_hex(hex)
                    .map(|d| !blobs.contains(&d))
                    .unwrap_or(true)
                {
                    if let Ok(Some(_l)) = FileLock::try_exclusive(&ent.path()) {
                        let _ = std::fs::remove_file(ent.path());
                    }
                }
            }
        }
        info!(?rep, "store pruned");
        Ok(rep)
    }

    fn remove_layer_dir(&self, p: &Path, mapping: Option<&IdMapping>) -> Result<(), StoreError> {
        match (mapping, self.runner()) {
            (Some(m), Some(run)) if m.mode == MappingMode::RootlessRanges => {
                run(m, &UsernsJob::RemoveTree(p.to_owned()))
                    .map(drop)
                    .map_err(|message| StoreError::Userns {
                        layer: p.display().to_string(),
                        message,
                    })
            }
            _ => remove_tree(p),
        }
    }
}

fn read_dir(p: &Path) -> Result<Vec<std::fs::DirEntry>, StoreError> {
    match std::fs::read_dir(p) {
        Ok(rd) => Ok(rd.flatten().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(StoreError::Io {
            path: p.to_owned(),
            source,
        }),
    }
}
