//! Local layers: overlay layers made on this host — a container's writable layer kept
//! with [`crate::container::Container::commit_upper`] — stored next to the unpacked
//! image layers and named by an opaque key chosen by the caller (the worker's
//! buildroot cache uses a hash of everything that went into the layer).
//!
//! ```text
//! <root>/local-layers/<mapping>/<key>/layer/      the layer (overlay format, mapped ids)
//!                                    /meta.json   {key, size, created, description}
//!                                    /used        its mtime is the last use (LRU)
//! <root>/locks/local-<mapping>-<key>.lock         lease: shared while in use,
//!                                                 exclusive while evicted
//! <root>/locks/local-<mapping>-<key>.make.lock    exclusive while being made (or
//!                                                 evicted)
//! ```
//!
//! Makers wait only for other makers of the same key, never for its users.
//!
//! A layer is moved in (renamed, never copied) inside a temporary directory that is
//! renamed to `<key>` only when complete, so a crash never leaves a half-made layer
//! under its name; leftovers are removed by [`Store::evict_local_layers`]. Layers are
//! bounded by size and age: [`Store::evict_local_layers`] removes the least recently
//! used ones that no container holds.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::lock::FileLock;
use super::{layout, Store, StoreError};
use crate::idmap::IdMapping;

/// A local layer in use: while this value lives, eviction leaves the layer alone.
#[derive(Debug)]
pub struct LocalLayer {
    /// Its key.
    pub key: String,
    /// The layer directory (an overlay lower).
    pub dir: PathBuf,
    /// Its size on disk in bytes (as measured when it was stored).
    pub size: u64,
    _lease: FileLock,
}

/// The exclusive right to make the layer `key` (see [`Store::claim_local_layer`]).
#[derive(Debug)]
pub struct LocalLayerSlot {
    key: String,
    base: PathBuf,
    /// The make lock (exclusive), held until the slot is dropped.
    _make: FileLock,
    /// Path of the key's lease lock.
    lease: PathBuf,
}

impl LocalLayerSlot {
    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the layer exists (someone made it while we waited for the slot). Use
    /// [`LocalLayerSlot::into_layer`] then.
    pub fn exists(&self) -> bool {
        complete(&self.base.join(&self.key))
    }

    /// A fresh path (not created) next to the layers, on the store's filesystem and
    /// covered by this slot: the place to put the directory to store (e.g. the
    /// destination of `commit_upper`). A crash leaves it as a leftover that
    /// [`Store::evict_local_layers`] removes.
    pub fn staging_path(&self) -> PathBuf {
        self.base.join(format!(
            ".{}",
            layout::tmp_name(&format!("tmp-{}", self.key))
        ))
    }

    /// Turn the slot into a lease on the existing layer (None if it does not exist).
    pub fn into_layer(self) -> Result<Option<LocalLayer>, StoreError> {
        let dir = self.base.join(&self.key);
        if !complete(&dir) {
            return Ok(None);
        }
        let lease = FileLock::shared(&self.lease).map_err(|source| StoreError::Io {
            path: self.lease.clone(),
            source,
        })?;
        touch_used(&dir);
        let size = read_meta(&dir).map(|m| m.size).unwrap_or(0);
        Ok(Some(LocalLayer {
            key: self.key,
            dir: dir.join("layer"),
            size,
            _lease: lease,
        }))
    }
}

/// What `meta.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    key: String,
    size: u64,
    created: u64,
    description: String,
}

/// One local layer as listed by [`Store::local_layers`].
#[derive(Clone, Debug, Serialize)]
pub struct LocalLayerInfo {
    /// Mapping cache key (`layers/<mapping>`).
    pub mapping: String,
    /// Its key.
    pub key: String,
    /// Size on disk in bytes.
    pub size: u64,
    /// Creation time (seconds since the epoch).
    pub created: u64,
    /// Last use (seconds since the epoch).
    pub last_used: u64,
    /// What the maker said it is.
    pub description: String,
}

/// What [`Store::evict_local_layers`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EvictReport {
    /// Layers removed.
    pub removed: usize,
    /// Bytes they held.
    pub bytes_freed: u64,
    /// Layers that should have gone but are in use.
    pub kept_in_use: usize,
    /// Bytes left in local layers.
    pub remaining_bytes: u64,
    /// Crash leftovers removed.
    pub leftovers_removed: usize,
}

fn complete(dir: &Path) -> bool {
    dir.join("meta.json").is_file() && dir.join("layer").is_dir()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn touch_used(dir: &Path) {
    let p = dir.join("used");
    let r = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = r {
        warn!(path = %p.display(), error = %e, "cannot record the use of a local layer");
    }
}

fn last_used(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("used"))
        .or_else(|_| std::fs::metadata(dir.join("meta.json")))
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn read_meta(dir: &Path) -> Option<Meta> {
    let b = std::fs::read(dir.join("meta.json")).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Keys are file names: `[A-Za-z0-9._-]`, 1..=128 chars, not starting with `.`.
fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Task(format!("invalid local layer key {key:?}")))
    }
}

/// Disk usage of a tree (blocks actually allocated; hard links counted once;
/// unreadable directories count as their own size).
pub fn disk_usage(root: &Path) -> u64 {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = 0u64;
    let mut todo = vec![root.to_owned()];
    while let Some(p) = todo.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        total += m.blocks() * 512;
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                todo.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

impl Store {
    fn local_base(&self, mapping: &IdMapping) -> PathBuf {
        self.root().join("local-layers").join(mapping.cache_key())
    }

    fn local_lock(&self, mapping_key: &str, key: &str) -> PathBuf {
        self.lock_path(&format!("local-{mapping_key}-{key}.lock"))
    }

    fn local_make_lock(&self, mapping_key: &str, key: &str) -> PathBuf {
        self.lock_path(&format!("local-{mapping_key}-{key}.make.lock"))
    }

    /// The local layer `key` for `mapping`, leased (None if there is none). Blocks
    /// while the layer is being made or evicted. Records the use (LRU).
    pub fn local_layer(
        &self,
        mapping: &IdMapping,
        key: &str,
    ) -> Result<Option<LocalLayer>, StoreError> {
        check_key(key)?;
        let dir = self.local_base(mapping).join(key);
        if !complete(&dir) {
            return Ok(None);
        }
        let lp = self.local_lock(&mapping.cache_key(), key);
        let lease = FileLock::shared(&lp).map_err(self.lock_err(&lp))?;
        // It may have been evicted while we waited.
        if !complete(&dir) {
            return Ok(None);
        }
        touch_used(&dir);
        Ok(Some(LocalLayer {
            key: key.to_owned(),
            dir: dir.join("layer"),
            size: read_meta(&dir).map(|m| m.size).unwrap_or(0),
            _lease: lease,
        }))
    }

    /// Take the exclusive right to make the layer `key` (blocking while another
    /// maker of the same key works; users of the layer do not block it). Check
    /// [`LocalLayerSlot::exists`] after: someone may have made it while we waited.
    pub fn claim_local_layer(
        &self,
        mapping: &IdMapping,
        key: &str,
    ) -> Result<LocalLayerSlot, StoreError> {
        check_key(key)?;
        let base = self.local_base(mapping);
        layout::make_dir(&base)?;
        let mp = self.local_make_lock(&mapping.cache_key(), key);
        let lock = FileLock::exclusive(&mp).map_err(self.lock_err(&mp))?;
        Ok(LocalLayerSlot {
            key: key.to_owned(),
            base,
            _make: lock,
            lease: self.local_lock(&mapping.cache_key(), key),
        })
    }

    /// Store the directory `src` (moved, not copied: it must be on the store's
    /// filesystem, e.g. a container's upper dir kept by `commit_upper`) as the layer
    /// of `slot`, and return it leased. If the layer already exists, `src` is removed
    /// and the existing one returned.
    pub fn put_local_layer(
        &self,
        slot: LocalLayerSlot,
        mapping: &IdMapping,
        src: &Path,
        description: &str,
    ) -> Result<LocalLayer, StoreError> {
        let runner = self.runner();
        if slot.exists() {
            self.remove_dir(src, mapping, runner.as_ref())?;
            return slot
                .into_layer()?
                .ok_or_else(|| StoreError::Task("local layer vanished".into()));
        }
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| StoreError::Io { path: p, source }
        };
        let tmp = slot.base.join(format!(
            ".{}",
            layout::tmp_name(&format!("tmp-{}", slot.key))
        ));
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io(&tmp))?;
        let layer = tmp.join("layer");
        if let Err(e) = std::fs::rename(src, &layer) {
            let _ = std::fs::remove_dir(&tmp);
            return Err(io(src)(e));
        }
        let finish = || -> Result<u64, StoreError> {
            let size = disk_usage(&layer);
            let meta = Meta {
                key: slot.key.clone(),
                size,
                created: now(),
                description: description.to_owned(),
            };
            let mj =
                serde_json::to_vec_pretty(&meta).map_err(|e| StoreError::Task(e.to_string()))?;
            std::fs::write(tmp.join("meta.json"), mj).map_err(io(&tmp.join("meta.json")))?;
            touch_used(&tmp);
            let dst = slot.base.join(&slot.key);
            std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
            Ok(size)
        };
        let size = match finish() {
            Ok(s) => s,
            Err(e) => {
                if let Err(rm) = self.remove_dir(&tmp, mapping, runner.as_ref()) {
                    warn!(path = %tmp.display(), error = %rm, "could not remove a failed local layer");
                }
                return Err(e);
            }
        };
        info!(key = %slot.key, mb = size as f64 / 1e6, "local layer stored");
        let key = slot.key.clone();
        let dir = slot.base.join(&slot.key).join("layer");
        // Leased before the make lock goes, so eviction cannot slip in between.
        let lease = FileLock::shared(&slot.lease).map_err(|source| StoreError::Io {
            path: slot.lease.clone(),
            source,
        })?;
        drop(slot);
        Ok(LocalLayer {
            key,
            dir,
            size,
            _lease: lease,
        })
    }

    /// Every local layer, all mappings.
    pub fn local_layers(&self) -> Result<Vec<LocalLayerInfo>, StoreError> {
        let mut out = Vec::new();
        let top = self.root().join("local-layers");
        for m in read_dir(&top)? {
            let mapping = m.file_name().to_string_lossy().into_owned();
            for e in read_dir(&m.path())? {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !complete(&e.path()) {
                    continue;
                }
                let meta = read_meta(&e.path());
                out.push(LocalLayerInfo {
                    mapping: mapping.clone(),
                    size: meta.as_ref().map(|m| m.size).unwrap_or(0),
                    created: meta.as_ref().map(|m| m.created).unwrap_or(0),
                    description: meta.map(|m| m.description).unwrap_or_default(),
                    last_used: last_used(&e.path()),
                    key: name,
                });
            }
        }
        out.sort_by_key(|l| l.last_used);
        Ok(out)
    }

    /// Evict local layers, least recently used first, until they take at most
    /// `max_bytes` (None: no bound), and every layer unused for longer than `max_age`
    /// (None: no bound). Layers in use are kept. Crash leftovers (`.tmp-*`) are
    /// removed. Blocking.
    pub fn evict_local_layers(
        &self,
        max_bytes: Option<u64>,
        max_age: Option<Duration>,
    ) -> Result<EvictReport, StoreError> {
        let mut rep = EvictReport::default();
        let top = self.root().join("local-layers");
        let runner = self.runner();
        let mappings = read_dir(&top)?;
        // Leftovers: a `.tmp-<key>-…` whose key lock nobody holds is dead.
        for m in &mappings {
            let mkey = m.file_name().to_string_lossy().into_owned();
            let mapping = self.mapping_of(&mkey);
            for e in read_dir(&m.path())? {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix(".tmp-") else {
                    if !name.starts_with('.') && !complete(&e.path()) && e.path().is_dir() {
                        // A layer dir without meta.json (cannot happen through
                        // put_local_layer; a damaged store). Remove it if unused.
                        if let Some(_l) = self.try_local_lock(&mkey, &name)? {
                            self.remove_local_dir(&e.path(), mapping.as_ref(), &runner)?;
                            rep.leftovers_removed += 1;
                        }
                    }
                    continue;
                };
                // tmp names are tmp-<key>-<pid>-<seq>-<rand>
                let key = rest.rsplitn(4, '-').nth(3).unwrap_or(rest);
                if let Some(_l) = self.try_local_lock(&mkey, key)? {
                    self.remove_local_dir(&e.path(), mapping.as_ref(), &runner)?;
                    rep.leftovers_removed += 1;
                }
            }
        }
        let layers = self.local_layers()?;
        let mut total: u64 = layers.iter().map(|l| l.size).sum();
        let now = now();
        for l in &layers {
            let too_old = max_age.is_some_and(|a| now.saturating_sub(l.last_used) > a.as_secs());
            let too_big = max_bytes.is_some_and(|m| total > m);
            if !too_old && !too_big {
                continue;
            }
            match self.try_local_lock(&l.mapping, &l.key)? {
                None => {
                    rep.kept_in_use += 1;
                    debug!(key = %l.key, "local layer in use; not evicted");
                }
                Some(_lock) => {
                    let dir = top.join(&l.mapping).join(&l.key);
                    // Out of its name first (atomic), then removed.
                    let doomed = top
                        .join(&l.mapping)
                        .join(format!(".{}", layout::tmp_name(&format!("tmp-{}", l.key))));
                    std::fs::rename(&dir, &doomed).map_err(|source| StoreError::Io {
                        path: dir.clone(),
                        source,
                    })?;
                    let mapping = self.mapping_of(&l.mapping);
                    self.remove_local_dir(&doomed, mapping.as_ref(), &runner)?;
                    total = total.saturating_sub(l.size);
                    rep.removed += 1;
                    rep.bytes_freed += l.size;
                    info!(key = %l.key, mb = l.size as f64 / 1e6, too_old, "local layer evicted");
                }
            }
        }
        rep.remaining_bytes = total;
        Ok(rep)
    }

    /// Both locks of a key, exclusively, if nobody makes or uses it.
    fn try_local_lock(
        &self,
        mapping_key: &str,
        key: &str,
    ) -> Result<Option<(FileLock, FileLock)>, StoreError> {
        let mp = self.local_make_lock(mapping_key, key);
        let Some(make) = FileLock::try_exclusive(&mp).map_err(self.lock_err(&mp))? else {
            return Ok(None);
        };
        let lp = self.local_lock(mapping_key, key);
        Ok(FileLock::try_exclusive(&lp)
            .map_err(self.lock_err(&lp))?
            .map(|lease| (make, lease)))
    }

    /// The mapping a `layers/<key>` (or `local-layers/<key>`) directory was made for.
    fn mapping_of(&self, mapping_key: &str) -> Option<IdMapping> {
        let p = self
            .root()
            .join("layers")
            .join(mapping_key)
            .join("mapping.json");
        std::fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    fn remove_local_dir(
        &self,
        p: &Path,
        mapping: Option<&IdMapping>,
        runner: &Option<super::UsernsRunner>,
    ) -> Result<(), StoreError> {
        match mapping {
            Some(m) => self.remove_dir(p, m, runner.as_ref()),
            None => super::remove_tree(p),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store, IdMapping) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        (d, s, IdMapping::single(uid, gid))
    }

    fn layer_src(d: &Path, name: &str, bytes: usize) -> PathBuf {
        let p = d.join(name);
        std::fs::create_dir_all(p.join("etc")).unwrap();
        std::fs::write(p.join("etc/data"), vec![7u8; bytes]).unwrap();
        p
    }

    #[test]
    fn put_lookup_and_lease() {
        let (d, s, m) = store();
        assert!(s.local_layer(&m, "k1").unwrap().is_none());
        let slot = s.claim_local_layer(&m, "k1").unwrap();
        assert!(!slot.exists());
        let src = layer_src(d.path(), "upper", 10000);
        let l = s.put_local_layer(slot, &m, &src, "test layer").unwrap();
        assert!(!src.exists(), "moved, not copied");
        assert_eq!(std::fs::read(l.dir.join("etc/data")).unwrap().len(), 10000);
        assert!(l.size >= 10000);
        // Another user can share it while we hold it.
        let again = s.local_layer(&m, "k1").unwrap().unwrap();
        assert_eq!(again.dir, l.dir);
        let list = s.local_layers().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].description, "test layer");
        // In use: not evicted even with a zero budget.
        drop(again);
        let rep = s.evict_local_layers(Some(0), None).unwrap();
        assert_eq!((rep.removed, rep.kept_in_use), (0, 1));
        drop(l);
        let rep = s.evict_local_layers(Some(0), None).unwrap();
        assert_eq!(rep.removed, 1);
        assert!(rep.bytes_freed >= 10000);
        assert!(s.local_layer(&m, "k1").unwrap().is_none());
        assert!(s.local_layers().unwrap().is_empty());
    }

    #[test]
    fn lru_and_age() {
        let (d, s, m) = store();
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            let slot = s.claim_local_layer(&m, k).unwrap();
            let src = layer_src(d.path(), &format!("u{i}"), 40960);
            drop(s.put_local_layer(slot, &m, &src, k).unwrap());
            // Distinct last-use times, oldest first: a, b, c.
            let used = s
                .root()
                .join("local-layers")
                .join(m.cache_key())
                .join(k)
                .join("used");
            let t = SystemTime::now() - Duration::from_secs(1000 - 100 * i as u64);
            std::fs::File::options()
                .write(true)
                .open(&used)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        // Using "a" makes it the most recent.
        drop(s.local_layer(&m, "a").unwrap().unwrap());
        let sizes: u64 = s.local_layers().unwrap().iter().map(|l| l.size).sum();
        let one = sizes / 3;
        let rep = s.evict_local_layers(Some(one * 2), None).unwrap();
        assert_eq!(rep.removed, 1);
        let keys: Vec<String> = s
            .local_layers()
            .unwrap()
            .into_iter()
            .map(|l| l.key)
            .collect();
        assert_eq!(
            keys,
            vec!["c".to_string(), "a".to_string()],
            "b was least recently used"
        );
        // Age: c was used 800 s ago, a just now.
        let rep = s
            .evict_local_layers(None, Some(Duration::from_secs(500)))
            .unwrap();
        assert_eq!(rep.removed, 1);
        let keys: Vec<String> = s
            .local_layers()
            .unwrap()
            .into_iter()
            .map(|l| l.key)
            .collect();
        assert_eq!(keys, vec!["a".to_string()]);
    }

    #[test]
    fn a_second_maker_finds_the_layer_and_leftovers_go() {
        let (d, s, m) = store();
        let slot = s.claim_local_layer(&m, "k").unwrap();
        let src = layer_src(d.path(), "u1", 100);
        let l = s.put_local_layer(slot, &m, &src, "first").unwrap();
        // A racing maker that got the slot after: its own result is dropped. A user of
        // the layer (`l`) does not make it wait.
        let slot = s.claim_local_layer(&m, "k").unwrap();
        assert!(slot.exists());
        let src2 = layer_src(d.path(), "u2", 100);
        let l2 = s.put_local_layer(slot, &m, &src2, "second").unwrap();
        assert!(!src2.exists());
        assert_eq!(s.local_layers().unwrap()[0].description, "first");
        drop((l, l2));
        // A crash leftover.
        let base = s.root().join("local-layers").join(m.cache_key());
        let junk = base.join(".tmp-k-1-2-deadbeef");
        std::fs::create_dir_all(junk.join("layer/x")).unwrap();
        let rep = s.evict_local_layers(None, None).unwrap();
        assert_eq!(rep.leftovers_removed, 1);
        assert!(!junk.exists());
        assert_eq!(s.local_layers().unwrap().len(), 1);
    }

    #[test]
    fn keys_are_file_names() {
        let (_d, s, m) = store();
        for bad in ["", "../x", ".hidden", "a/b", &"x".repeat(129)] {
            assert!(s.local_layer(&m, bad).is_err(), "{bad:?}");
            assert!(s.claim_local_layer(&m, bad).is_err(), "{bad:?}");
        }
    }
}
