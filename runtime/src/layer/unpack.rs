//! The unpacker: tar headers parsed with the `tar` crate (only as a parser), entries
//! applied with dirfd-based syscalls, directory metadata deferred to the end.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use tar::EntryType;
use tracing::{debug, warn};

use super::compression::{ChunkStream, LIMIT_MSG};
use super::safe::{self, Create, LayerRoot, ResolveError};
use super::whiteout::{self, Whiteout};
use super::{sys, LayerError, Ownership, UnpackJob, UnpackStats};

const BLOCK: u64 = 512;
/// Longest GNU long name / long link we accept.
const MAX_LONG_NAME: u64 = 64 << 10;
/// Largest PAX extended header we accept.
const MAX_PAX: u64 = 1 << 20;

/// Unpack `job.blob` into the (existing, empty) directory `job.target`.
pub fn unpack(job: &UnpackJob) -> Result<UnpackStats, LayerError> {
    let layer = job.label.clone();
    let target_err = |what, source| LayerError::Target {
        layer: layer.clone(),
        what,
        path: job.target.clone(),
        source,
    };
    let file = File::open(&job.blob).map_err(|e| LayerError::Target {
        layer: layer.clone(),
        what: "opening layer blob",
        path: job.blob.clone(),
        source: e,
    })?;
    let root = LayerRoot::open(&job.target).map_err(|e| target_err("opening target", e))?;
    if !sys::read_dir_names(root.fd())
        .map_err(|e| target_err("reading target", e))?
        .is_empty()
    {
        return Err(target_err(
            "target is not empty",
            io::Error::from_raw_os_error(libc::ENOTEMPTY),
        ));
    }
    let stream_err = |what: &str, e: io::Error| LayerError::Stream {
        layer: layer.clone(),
        what: what.to_owned(),
        source: e,
    };
    let mut stream = ChunkStream::spawn(file, job.compression, job.limits.max_bytes)
        .map_err(|e| stream_err("starting the decompression thread", e))?;
    let mut a = Applier {
        root,
        job,
        stats: UnpackStats::default(),
        seen: HashSet::new(),
        dirs: Vec::new(),
        opaque: HashSet::new(),
        cache: None,
    };
    // The root directory belongs to container root until the layer says otherwise.
    if let Some((u, g)) = a.owner_of(0, 0, "./")? {
        sys::fchown(a.root.fd(), u, g).map_err(|e| target_err("chown of target", e))?;
    }
    a.run(&mut stream)?;
    let (actual, total) = stream
        .finish()
        .map_err(|e| stream_err("reading the end of the layer", e))?;
    a.stats.tar_bytes = total;
    if actual != job.diff_id {
        return Err(LayerError::DiffIdMismatch {
            layer,
            expected: job.diff_id.clone(),
            actual,
        });
    }
    a.finish_dirs()?;
    debug!(layer = %job.label, stats = ?a.stats, "layer unpacked");
    Ok(a.stats)
}

/// One tar entry, with GNU long names and PAX records folded in.
struct Entry {
    kind: EntryType,
    path: Vec<u8>,
    link: Option<Vec<u8>>,
    size: u64,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, u32),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Metadata of a directory, applied after all entries.
struct DirMeta {
    path: Vec<u8>,
    owner: Option<(u32, u32)>,
    mode: u32,
    mtime: (i64, u32),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Applier<'a> {
    root: LayerRoot,
    job: &'a UnpackJob,
    stats: UnpackStats,
    /// Normalised names seen so far (duplicates are refused).
    seen: HashSet<Vec<u8>>,
    dirs: Vec<DirMeta>,
    /// Directories made opaque by this layer.
    opaque: HashSet<Vec<u8>>,
    /// The last parent directory opened.
    cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

impl Applier<'_> {
    fn refused(&self, entry: &[u8], reason: impl Into<String>) -> LayerError {
        LayerError::Refused {
            layer: self.job.label.clone(),
            entry: lossy(entry),
            reason: reason.into(),
        }
    }

    fn apply_err(&self, entry: &[u8], op: &'static str) -> impl Fn(io::Error) -> LayerError + '_ {
        let entry = lossy(entry);
        move |source| LayerError::Apply {
            layer: self.job.label.clone(),
            entry: entry.clone(),
            op,
            source,
        }
    }

    fn stream_err(&self, entry: Option<&[u8]>, e: io::Error) -> LayerError {
        if e.to_string().contains(LIMIT_MSG) {
            return self.refused(entry.unwrap_or(b"(stream)"), e.to_string());
        }
        LayerError::Stream {
            layer: self.job.label.clone(),
            what: match entry {
                Some(p) => format!("reading entry {:?}", lossy(p)),
                None => "reading the tar stream".into(),
            },
            source: e,
        }
    }

    /// Host owner of an entry with tar ids `uid`/`gid`, per the ownership mode.
    fn owner_of(&self, uid: u64, gid: u64, entry: &str) -> Result<Option<(u32, u32)>, LayerError> {
        let refuse = |what: &str, id: u64| LayerError::Refused {
            layer: self.job.label.clone(),
            entry: entry.to_owned(),
            reason: format!("{what} {id} is not mapped into the container's id range"),
        };
        let (Ok(u), Ok(g)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(refuse("owner id", uid.max(gid)));
        };
        Ok(match &self.job.ownership {
            Ownership::Shift(m) => Some((
                m.host_uid(u).ok_or_else(|| refuse("uid", uid))?,
                m.host_gid(g).ok_or_else(|| refuse("gid", gid))?,
            )),
            Ownership::Verbatim => Some((u, g)),
            Ownership::Ignore => None,
        })
    }

    /// Owner of directories the layer does not describe (implicit parents).
    fn implicit_owner(&self) -> Option<(u32, u32)> {
        match &self.job.ownership {
            Ownership::Shift(m) => m.host_uid(0).zip(m.host_gid(0)),
            Ownership::Verbatim => Some((0, 0)),
            Ownership::Ignore => None,
        }
    }

    fn run(&mut self, s: &mut ChunkStream) -> Result<(), LayerError> {
        let mut block = [0u8; BLOCK as usize];
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Vec<u8>> = None;
        loop {
            let at = long_name.as_deref();
            if !s
                .read_block(&mut block)
                .map_err(|e| self.stream_err(at, e))?
            {
                break; // end of stream without an end-of-archive marker
            }
            if block.iter().all(|&b| b == 0) {
                break; // end-of-archive marker; the rest is drained and hashed
            }
            let h = tar::Header::from_byte_slice(&block);
            let sum: u32 = block[..148]
                .iter()
                .chain(&block[156..])
                .map(|&b| b as u32)
                .sum::<u32>()
                + 8 * 32;
            let name_now = long_name
                .clone()
                .unwrap_or_else(|| h.path_bytes().into_owned());
            if h.cksum().ok() != Some(sum) {
                return Err(self.refused(&name_now, "tar header checksum mismatch"));
            }
            let hsize = h
                .entry_size()
                .map_err(|e| self.refused(&name_now, format!("bad size field: {e}")))?;
            let kind = h.entry_type();
            match kind {
                EntryType::GNULongName | EntryType::GNULongLink | EntryType::XHeader => {
                    let (cap, slot, what) = match kind {
                        EntryType::GNULongName => (MAX_LONG_NAME, &mut long_name, "GNU long name"),
                        EntryType::GNULongLink => (MAX_LONG_NAME, &mut long_link, "GNU long link"),
                        _ => (MAX_PAX, &mut pax, "PAX header"),
                    };
                    if hsize > cap {
                        return Err(self.refused(
                            &name_now,
                            format!("{what} of {hsize} bytes exceeds the cap of {cap}"),
                        ));
                    }
                    if slot.is_some() {
                        return Err(self.refused(&name_now, format!("two {what} records in a row")));
                    }
                    let mut v = s.read_vec(hsize).map_err(|e| self.stream_err(None, e))?;
                    s.skip(padding(hsize))
                        .map_err(|e| self.stream_err(None, e))?;
                    if kind != EntryType::XHeader {
                        while v.last() == Some(&0) {
                            v.pop();
                        }
                    }
                    match kind {
                        EntryType::GNULongName => long_name = Some(v),
                        EntryType::GNULongLink => long_link = Some(v),
                        _ => pax = Some(v),
                    }
                    continue;
                }
                EntryType::XGlobalHeader => {
                    if hsize > MAX_PAX {
                        return Err(self.refused(&name_now, "PAX global header too large"));
                    }
                    s.skip(hsize + padding(hsize))
                        .map_err(|e| self.stream_err(None, e))?;
                    continue;
                }
                _ => {}
            }
            let e = self.entry(
                h,
                kind,
                hsize,
                long_name.take(),
                long_link.take(),
                pax.take(),
            )?;
            if e.size > self.job.limits.max_bytes {
                return Err(self.refused(
                    &e.path,
                    format!(
                        "entry of {} bytes exceeds the layer size limit of {}",
                        e.size, self.job.limits.max_bytes
                    ),
                ));
            }
            let consumed = self.apply(&e, s)?;
            let rest = if consumed { 0 } else { e.size };
            s.skip(rest + padding(e.size))
                .map_err(|err| self.stream_err(Some(&e.path), err))?;
        }
        if long_name.is_some() || long_link.is_some() || pax.is_some() {
            return Err(self.refused(
                long_name.as_deref().unwrap_or(b"(end)"),
                "extension header at the end of the archive describes no entry",
            ));
        }
        Ok(())
    }

    /// Fold a header and its extension records into an [`Entry`].
    fn entry(
        &self,
        h: &tar::Header,
        kind: EntryType,
        hsize: u64,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        pax: Option<Vec<u8>>,
    ) -> Result<Entry, LayerError> {
        let mut e = Entry {
            kind,
            path: long_name.unwrap_or_else(|| h.path_bytes().into_owned()),
            link: long_link.or_else(|| h.link_name_bytes().map(|c| c.into_owned())),
            size: hsize,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
            xattrs: Vec::new(),
        };
        let bad =
            |what: &str, err: io::Error| self.refused(&e.path, format!("bad {what} field: {err}"));
        e.mode = h.mode().map_err(|err| bad("mode", err))? & 0o7777;
        e.uid = h.uid().map_err(|err| bad("uid", err))?;
        e.gid = h.gid().map_err(|err| bad("gid", err))?;
        e.mtime = (h.mtime().map_err(|err| bad("mtime", err))? as i64, 0);
        if let Some(pax) = pax {
            for rec in tar::PaxExtensions::new(&pax) {
                let rec = rec
                    .map_err(|err| self.refused(&e.path, format!("malformed PAX record: {err}")))?;
                let key = rec.key_bytes();
                let val = rec.value_bytes();
                let num = |what: &str| -> Result<u64, LayerError> {
                    std::str::from_utf8(val)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| {
                            self.refused(&e.path, format!("bad PAX {what} {:?}", lossy(val)))
                        })
                };
                match key {
                    b"path" => e.path = val.to_vec(),
                    b"linkpath" => e.link = Some(val.to_vec()),
                    b"size" => e.size = num("size")?,
                    b"uid" => e.uid = num("uid")?,
                    b"gid" => e.gid = num("gid")?,
                    b"mtime" => {
                        e.mtime = parse_pax_time(val).ok_or_else(|| {
                            self.refused(&e.path, format!("bad PAX mtime {:?}", lossy(val)))
                        })?
                    }
                    k if k.starts_with(b"SCHILY.xattr.") => e
                        .xattrs
                        .push((k[b"SCHILY.xattr.".len()..].to_vec(), val.to_vec())),
                    k if k.starts_with(b"GNU.sparse.") => {
                        return Err(self.refused(&e.path, "sparse files are not supported"))
                    }
                    _ => {}
                }
            }
        }
        Ok(e)
    }

    /// Open the parent directory `comps`, through a one-entry cache.
    fn dir(&mut self, comps: &[&[u8]], create: Create) -> Result<Rc<OwnedFd>, ResolveError> {
        let key = safe::join(comps);
        if let Some((k, fd)) = &self.cache {
            if *k == key {
                return Ok(fd.clone());
            }
        }
        let fd = Rc::new(self.root.dir(comps, create)?);
        self.cache = Some((key, fd.clone()));
        Ok(fd)
    }

    /// Remove whatever is at `name` in `dir`; returns what was there.
    fn clear_slot(&mut self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<libc::stat>> {
        let st = sys::lstatat(dir, name)?;
        if let Some(st) = &st {
            if sys::is_dir(st) {
                self.cache = None;
                sys::remove_tree_at(dir, name)?;
            } else {
                sys::unlinkat(dir, name, false)?;
            }
        }
        Ok(st)
    }

    /// Apply one entry. Returns whether its data was consumed from the stream.
    fn apply(&mut self, e: &Entry, s: &mut ChunkStream) -> Result<bool, LayerError> {
        self.stats.entries += 1;
        if self.stats.entries > self.job.limits.max_entries {
            return Err(self.refused(
                &e.path,
                format!(
                    "layer has more than {} entries (the configured cap)",
                    self.job.limits.max_entries
                ),
            ));
        }
        let comps =
            safe::normalize(&e.path).map_err(|err| self.refused(&e.path, err.to_string()))?;
        let norm = safe::join(&comps);
        if !self.seen.insert(norm.clone()) {
            return Err(self.refused(
                &e.path,
                "duplicate entry (the same path appears twice in the layer)",
            ));
        }
        let Some((name, parent)) = comps.split_last() else {
            // The root directory itself.
            if e.kind != EntryType::Directory {
                return Err(self.refused(&e.path, "the root entry is not a directory"));
            }
            let owner = self.owner_of(e.uid, e.gid, &lossy(&e.path))?;
            self.dirs.push(DirMeta {
                path: Vec::new(),
                owner,
                mode: e.mode,
                mtime: e.mtime,
                xattrs: e.xattrs.clone(),
            });
            self.stats.dirs += 1;
            return Ok(false);
        };
        match whiteout::classify(name).map_err(|r| self.refused(&e.path, r))? {
            None => {}
            Some(w) => {
                self.whiteout(e, parent, w)?;
                return Ok(false);
            }
        }
        if matches!(e.kind, EntryType::Char | EntryType::Block) {
            self.stats.devices_skipped += 1;
            warn!(layer = %self.job.label, entry = %lossy(&e.path), "device node not created (build roots get /dev from a tmpfs)");
            return Ok(false);
        }
        let create = Create::Yes(self.implicit_owner());
        let dir = self.parent_dir(&e.path, parent, create)?;
        let dir = dir.as_fd();
        let owner = self.owner_of(e.uid, e.gid, &lossy(&e.path))?;
        match e.kind {
            EntryType::Directory => {
                let prev = sys::lstatat(dir, name).map_err(self.apply_err(&e.path, "stat"))?;
                match prev {
                    Some(st) if sys::is_dir(&st) => {}
                    Some(st) => {
                        let was_whiteout = sys::is_whiteout(&st);
                        sys::unlinkat(dir, name, false)
                            .map_err(self.apply_err(&e.path, "unlink"))?;
                        self.mkdir(dir, name, &e.path)?;
                        if was_whiteout {
                            // Deleted from below and recreated here: hide the lower one.
                            self.opaque_dir(dir, name, &e.path)?;
                        }
                    }
                    None => self.mkdir(dir, name, &e.path)?,
                }
                self.dirs.push(DirMeta {
                    path: norm,
                    owner,
                    mode: e.mode,
                    mtime: e.mtime,
                    xattrs: e.xattrs.clone(),
                });
                self.stats.dirs += 1;
                Ok(false)
            }
            EntryType::Regular | EntryType::Continuous => {
                self.clear_slot(dir, name)
                    .map_err(self.apply_err(&e.path, "replace"))?;
                let fd = sys::openat(
                    dir,
                    name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )
                .map_err(self.apply_err(&e.path, "create"))?;
                let mut wrote = 0u64;
                let path = &e.path;
                s.for_each_slice(e.size, |chunk| {
                    wrote += chunk.len() as u64;
                    sys::write_all(fd.as_fd(), chunk)
                })
                .map_err(|err| match err.kind() {
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => {
                        self.stream_err(Some(path), err)
                    }
                    _ if err.to_string().contains(LIMIT_MSG) => self.stream_err(Some(path), err),
                    _ => self.apply_err(path, "write")(err),
                })?;
                self.stats.file_bytes += wrote;
                self.stats.files += 1;
                if let Some((u, g)) = owner {
                    sys::fchown(fd.as_fd(), u, g).map_err(self.apply_err(&e.path, "chown"))?;
                }
                sys::fchmod(fd.as_fd(), e.mode).map_err(self.apply_err(&e.path, "chmod"))?;
                self.set_xattrs(&e.path, &e.xattrs, |k, v| sys::fsetxattr(fd.as_fd(), k, v))?;
                sys::futimens(fd.as_fd(), e.mtime.0, e.mtime.1)
                    .map_err(self.apply_err(&e.path, "utimens"))?;
                Ok(true)
            }
            EntryType::Symlink => {
                let Some(target) = e.link.as_deref().filter(|t| !t.is_empty()) else {
                    return Err(self.refused(&e.path, "symlink without a target"));
                };
                if target.contains(&0) {
                    return Err(self.refused(&e.path, "symlink target contains a NUL byte"));
                }
                self.clear_slot(dir, name)
                    .map_err(self.apply_err(&e.path, "replace"))?;
                // The target is stored verbatim: it is content, never followed here.
                sys::symlinkat(target, dir, name).map_err(self.apply_err(&e.path, "symlink"))?;
                self.stats.symlinks += 1;
                if let Some((u, g)) = owner {
                    sys::lchownat(dir, name, u, g).map_err(self.apply_err(&e.path, "lchown"))?;
                }
                self.set_xattrs(&e.path, &e.xattrs, |k, v| sys::lsetxattrat(dir, name, k, v))?;
                sys::lutimensat(dir, name, e.mtime.0, e.mtime.1)
                    .map_err(self.apply_err(&e.path, "utimens"))?;
                Ok(false)
            }
            EntryType::Link => {
                let Some(target) = e.link.as_deref() else {
                    return Err(self.refused(&e.path, "hardlink without a target"));
                };
                let tcomps = safe::normalize(target).map_err(|err| {
                    self.refused(
                        &e.path,
                        format!(
                            "hardlink target {:?} points outside the layer root: {err}",
                            lossy(target)
                        ),
                    )
                })?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(self.refused(&e.path, "hardlink to the root directory"));
                };
                if safe::join(&tcomps) == norm {
                    return Err(self.refused(&e.path, "hardlink to itself"));
                }
                let tdir = self.root.dir(tparent, Create::No).map_err(|r| match r {
                    ResolveError::Missing(_) => self.refused(
                        &e.path,
                        format!("hardlink target {:?} is not in this layer", lossy(target)),
                    ),
                    r => self.refused(&e.path, format!("hardlink target {:?}: {r}", lossy(target))),
                })?;
                match sys::lstatat(tdir.as_fd(), tname)
                    .map_err(self.apply_err(&e.path, "stat hardlink target"))?
                {
                    None => {
                        return Err(self.refused(
                            &e.path,
                            format!("hardlink target {:?} is not in this layer", lossy(target)),
                        ))
                    }
                    Some(st) if sys::is_dir(&st) => {
                        return Err(self.refused(&e.path, "hardlink to a directory"));
                    }
                    Some(_) => {}
                }
                self.clear_slot(dir, name)
                    .map_err(self.apply_err(&e.path, "replace"))?;
                sys::linkat(tdir.as_fd(), tname, dir, name)
                    .map_err(self.apply_err(&e.path, "link"))?;
                self.stats.hardlinks += 1;
                Ok(false)
            }
            EntryType::Fifo => {
                self.clear_slot(dir, name)
                    .map_err(self.apply_err(&e.path, "replace"))?;
                sys::mknodat(dir, name, libc::S_IFIFO | 0o600, 0)
                    .map_err(self.apply_err(&e.path, "mkfifo"))?;
                if let Some((u, g)) = owner {
                    sys::lchownat(dir, name, u, g).map_err(self.apply_err(&e.path, "lchown"))?;
                }
                sys::fchmodat(dir, name, e.mode).map_err(self.apply_err(&e.path, "chmod"))?;
                sys::lutimensat(dir, name, e.mtime.0, e.mtime.1)
                    .map_err(self.apply_err(&e.path, "utimens"))?;
                self.stats.fifos += 1;
                Ok(false)
            }
            EntryType::GNUSparse => Err(self.refused(&e.path, "sparse files are not supported")),
            other => Err(self.refused(
                &e.path,
                format!("unsupported tar entry type {:?}", other.as_byte() as char),
            )),
        }
    }

    /// The parent directory of an entry. A parent this layer whited out earlier
    /// (`.wh.foo`, then `foo/bar` without a `foo/` entry) becomes an opaque directory:
    /// the lower `foo` is deleted and this layer's `foo` holds only what it adds.
    fn parent_dir(
        &mut self,
        entry: &[u8],
        parent: &[&[u8]],
        create: Create,
    ) -> Result<Rc<OwnedFd>, LayerError> {
        match self.dir(parent, create) {
            Ok(d) => Ok(d),
            Err(ResolveError::NotDir(at)) => {
                let comps =
                    safe::normalize(&at).map_err(|err| self.refused(entry, err.to_string()))?;
                let Some((name, up)) = comps.split_last() else {
                    return Err(self.refused(entry, "the layer root is not a directory"));
                };
                let updir = self
                    .root
                    .dir(up, Create::No)
                    .map_err(|r| self.resolve_err(entry, r))?;
                let st =
                    sys::lstatat(updir.as_fd(), name).map_err(self.apply_err(entry, "stat"))?;
                if !st.is_some_and(|st| sys::is_whiteout(&st)) {
                    return Err(self.resolve_err(entry, ResolveError::NotDir(at)));
                }
                sys::unlinkat(updir.as_fd(), name, false)
                    .map_err(self.apply_err(entry, "unlink whiteout"))?;
                self.mkdir(updir.as_fd(), name, entry)?;
                self.opaque_dir(updir.as_fd(), name, &at)?;
                self.cache = None;
                self.dir(parent, create)
                    .map_err(|r| self.resolve_err(entry, r))
            }
            Err(r) => Err(self.resolve_err(entry, r)),
        }
    }

    fn resolve_err(&self, entry: &[u8], r: ResolveError) -> LayerError {
        match r {
            ResolveError::Io(e) => self.apply_err(entry, "open parent directory")(e),
            other => self.refused(entry, other.to_string()),
        }
    }

    fn mkdir(&mut self, dir: BorrowedFd<'_>, name: &[u8], entry: &[u8]) -> Result<(), LayerError> {
        sys::mkdirat(dir, name, 0o755).map_err(self.apply_err(entry, "mkdir"))?;
        if let Some((u, g)) = self.implicit_owner() {
            sys::lchownat(dir, name, u, g).map_err(self.apply_err(entry, "chown"))?;
        }
        Ok(())
    }

    fn opaque_dir(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        entry: &[u8],
    ) -> Result<(), LayerError> {
        let fd = sys::openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(self.apply_err(entry, "open directory"))?;
        whiteout::mark_opaque(fd.as_fd())
            .map_err(self.apply_err(entry, "setxattr user.overlay.opaque"))?;
        let comps = safe::normalize(entry).map_err(|err| self.refused(entry, err.to_string()))?;
        self.opaque.insert(safe::join(&comps));
        self.stats.opaque_dirs += 1;
        Ok(())
    }

    fn whiteout(&mut self, e: &Entry, parent: &[&[u8]], w: Whiteout<'_>) -> Result<(), LayerError> {
        let pkey = safe::join(parent);
        match w {
            Whiteout::Meta => {
                debug!(layer = %self.job.label, entry = %lossy(&e.path), "aufs metadata entry ignored");
                Ok(())
            }
            Whiteout::Opaque => {
                let dir = match self.dir(parent, Create::Yes(self.implicit_owner())) {
                    Ok(d) => d,
                    // The parent itself was whited out by this layer: nothing to hide.
                    Err(ResolveError::NotDir(_)) => return Ok(()),
                    Err(r) => return Err(self.resolve_err(&e.path, r)),
                };
                whiteout::mark_opaque(dir.as_fd())
                    .map_err(self.apply_err(&e.path, "setxattr user.overlay.opaque"))?;
                whiteout::clear_in(dir.as_fd())
                    .map_err(self.apply_err(&e.path, "remove whiteouts in opaque directory"))?;
                if self.opaque.insert(pkey) {
                    self.stats.opaque_dirs += 1;
                }
                Ok(())
            }
            Whiteout::Remove(target) => {
                if self.opaque.contains(&pkey) {
                    return Ok(()); // the whole lower directory is hidden already
                }
                let dir = match self.dir(parent, Create::Yes(self.implicit_owner())) {
                    Ok(d) => d,
                    Err(ResolveError::NotDir(_)) => return Ok(()),
                    Err(r) => return Err(self.resolve_err(&e.path, r)),
                };
                let dir = dir.as_fd();
                if sys::lstatat(dir, target)
                    .map_err(self.apply_err(&e.path, "stat"))?
                    .is_some()
                {
                    // Added by this same layer: whiteouts only delete from lower layers.
                    return Ok(());
                }
                whiteout::create(dir, target).map_err(self.apply_err(&e.path, "mknod whiteout"))?;
                if let Some((u, g)) = self.owner_of(e.uid, e.gid, &lossy(&e.path))? {
                    sys::lchownat(dir, target, u, g)
                        .map_err(self.apply_err(&e.path, "chown whiteout"))?;
                }
                self.stats.whiteouts += 1;
                Ok(())
            }
        }
    }

    /// Decide what a failed setxattr means. Some names are never applied: SELinux
    /// labels (the host's policy decides) and overlay's own `*.overlay.*` (a layer
    /// must not steer overlayfs).
    fn xattr_result(
        &mut self,
        entry: &[u8],
        name: &[u8],
        r: io::Result<()>,
    ) -> Result<(), LayerError> {
        match r {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM | libc::EOPNOTSUPP | libc::EACCES | libc::EINVAL)
                ) =>
            {
                self.stats.xattrs_skipped += 1;
                warn!(layer = %self.job.label, entry = %lossy(entry), xattr = %lossy(name), error = %e, "xattr not applied");
                Ok(())
            }
            Err(e) => Err(self.apply_err(entry, "setxattr")(e)),
        }
    }

    /// Apply directory metadata, deepest first (a 0555 parent must not stop its
    /// children, and children change their parent's mtime).
    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by(|a, b| b.path.cmp(&a.path));
        self.cache = None;
        for d in &dirs {
            let fd = if d.path.is_empty() {
                sys::openat(self.root.fd(), b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
                    .map_err(self.apply_err(b"./", "open root"))?
            } else {
                let comps = safe::normalize(&d.path)
                    .map_err(|err| self.refused(&d.path, err.to_string()))?;
                match self.root.dir(&comps, Create::No) {
                    Ok(fd) => fd,
                    // Replaced by a later entry of this layer: nothing to apply.
                    Err(ResolveError::NotDir(_) | ResolveError::Missing(_)) => continue,
                    Err(r) => return Err(self.resolve_err(&d.path, r)),
                }
            };
            if let Some((u, g)) = d.owner {
                sys::fchown(fd.as_fd(), u, g).map_err(self.apply_err(&d.path, "chown"))?;
            }
            sys::fchmod(fd.as_fd(), d.mode).map_err(self.apply_err(&d.path, "chmod"))?;
            self.set_xattrs(&d.path, &d.xattrs, |k, v| sys::fsetxattr(fd.as_fd(), k, v))?;
            sys::futimens(fd.as_fd(), d.mtime.0, d.mtime.1)
                .map_err(self.apply_err(&d.path, "utimens"))?;
        }
        Ok(())
    }

    /// Apply an entry's xattrs with `set`, except refused names (counted and logged).
    fn set_xattrs(
        &mut self,
        entry: &[u8],
        xattrs: &[(Vec<u8>, Vec<u8>)],
        set: impl Fn(&[u8], &[u8]) -> io::Result<()>,
    ) -> Result<(), LayerError> {
        for (k, v) in xattrs {
            if refused_xattr(k) {
                self.stats.xattrs_skipped += 1;
                warn!(layer = %self.job.label, entry = %lossy(entry), xattr = %lossy(k), "xattr refused");
                continue;
            }
            if k == b"security.capability" {
                let v = match self.file_caps(entry, v)? {
                    Some(v) => v,
                    None => continue,
                };
                let r = set(k, &v);
                self.xattr_result(entry, k, r)?;
                continue;
            }
            let r = set(k, v);
            self.xattr_result(entry, k, r)?;
        }
        Ok(())
    }

    /// File capabilities (`security.capability`) as they may be written here. Written
    /// by host root as they are, a layer's capabilities would be *host* capabilities
    /// of that file (any host user reaching it in the store could run it with, say,
    /// `cap_setuid`). So when ids are shifted they are rewritten as namespaced
    /// (revision 3) capabilities whose root is the host id of container root: they
    /// count only in user namespaces rooted there. Inside a user namespace
    /// (`Verbatim`) the kernel does that itself; `Ignore` cannot set them at all.
    /// `None`: the value is malformed; it is dropped, counted and logged.
    fn file_caps(&mut self, entry: &[u8], v: &[u8]) -> Result<Option<Vec<u8>>, LayerError> {
        let Ownership::Shift(m) = &self.job.ownership else {
            return Ok(Some(v.to_vec()));
        };
        let Some(caps) = FileCaps::parse(v) else {
            self.stats.xattrs_skipped += 1;
            warn!(layer = %self.job.label, entry = %lossy(entry), "malformed security.capability dropped");
            return Ok(None);
        };
        let rootid = caps.rootid.unwrap_or(0);
        let host = m.host_uid(rootid).ok_or_else(|| {
            self.refused(
                entry,
                format!("file capabilities for root uid {rootid}, which is not mapped"),
            )
        })?;
        Ok(Some(caps.to_v3(host)))
    }
}

/// A `security.capability` value (`struct vfs_cap_data`, little endian).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCaps {
    /// `VFS_CAP_FLAGS_EFFECTIVE`.
    pub effective: bool,
    /// Permitted and inheritable, low and high words.
    pub data: [(u32, u32); 2],
    /// The root uid of a revision 3 value.
    pub rootid: Option<u32>,
}

const VFS_CAP_REVISION_MASK: u32 = 0xFF00_0000;
const VFS_CAP_REVISION_1: u32 = 0x0100_0000;
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;

impl FileCaps {
    /// Parse revisions 1 (12 bytes), 2 (20) and 3 (24).
    pub fn parse(v: &[u8]) -> Option<FileCaps> {
        let word = |i: usize| -> Option<u32> {
            v.get(i * 4..i * 4 + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let magic = word(0)?;
        if magic & !(VFS_CAP_REVISION_MASK | VFS_CAP_FLAGS_EFFECTIVE) != 0 {
            return None;
        }
        let effective = magic & VFS_CAP_FLAGS_EFFECTIVE != 0;
        let (words, rootid) = match (magic & VFS_CAP_REVISION_MASK, v.len()) {
            (VFS_CAP_REVISION_1, 12) => (1, None),
            (VFS_CAP_REVISION_2, 20) => (2, None),
            (VFS_CAP_REVISION_3, 24) => (2, Some(word(5)?)),
            _ => return None,
        };
        let mut data = [(0, 0); 2];
        for (i, d) in data.iter_mut().enumerate().take(words) {
            *d = (word(1 + 2 * i)?, word(2 + 2 * i)?);
        }
        Some(FileCaps {
            effective,
            data,
            rootid,
        })
    }

    /// The revision 3 value with root uid `rootid`.
    pub fn to_v3(&self, rootid: u32) -> Vec<u8> {
        let magic = VFS_CAP_REVISION_3
            | if self.effective {
                VFS_CAP_FLAGS_EFFECTIVE
            } else {
                0
            };
        let mut out = Vec::with_capacity(24);
        for w in [
            magic,
            self.data[0].0,
            self.data[0].1,
            self.data[1].0,
            self.data[1].1,
            rootid,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// xattrs a layer may not set.
pub fn refused_xattr(name: &[u8]) -> bool {
    name == b"security.selinux"
        || name.starts_with(b"user.overlay.")
        || name.starts_with(b"trusted.overlay.")
}

/// Parse a PAX time (`secs[.frac]`, possibly negative).
fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = int.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().ok()?;
    if s.starts_with('-') && nsec > 0 {
        // -1.5 is 1.5 s before the epoch: secs -2, nsec 0.5e9.
        return Some((secs.checked_sub(1)?, 1_000_000_000 - nsec));
    }
    Some((secs, nsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1700000000, 0)));
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some((1700000000, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"x"), None);
        assert_eq!(parse_pax_time(b"1.x"), None);
        // The earliest representable time, and one half second before it (found while
        // fuzzing the unpacker: the borrow overflowed).
        assert_eq!(parse_pax_time(b"-9223372036854775808"), Some((i64::MIN, 0)));
        assert_eq!(parse_pax_time(b"-9223372036854775808.5"), None);
        assert_eq!(
            parse_pax_time(b"-9223372036854775807.5"),
            Some((i64::MIN, 500_000_000))
        );
    }

    #[test]
    fn file_caps_revisions() {
        // cap_net_raw+ep, revision 2 (what setcap writes as real root).
        let mut v2 = Vec::new();
        for w in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
            v2.extend_from_slice(&w.to_le_bytes());
        }
        let c = FileCaps::parse(&v2).unwrap();
        assert!(c.effective);
        assert_eq!(c.data, [(1 << 13, 0), (0, 0)]);
        assert_eq!(c.rootid, None);
        let v3 = c.to_v3(100000);
        assert_eq!(v3.len(), 24);
        assert_eq!(&v3[..4], &0x0300_0001u32.to_le_bytes());
        assert_eq!(&v3[20..], &100000u32.to_le_bytes());
        let back = FileCaps::parse(&v3).unwrap();
        assert_eq!((back.data, back.rootid), (c.data, Some(100000)));
        // Revision 1 is 12 bytes; wrong sizes, revisions and flags are malformed.
        let mut v1 = Vec::new();
        for w in [0x0100_0000u32, 7, 0] {
            v1.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(FileCaps::parse(&v1).unwrap().data, [(7, 0), (0, 0)]);
        assert!(FileCaps::parse(&v2[..19]).is_none());
        assert!(FileCaps::parse(&v1[..8]).is_none());
        let mut bad = v2.clone();
        bad[3] = 9;
        assert!(FileCaps::parse(&bad).is_none());
        bad = v2.clone();
        bad[1] = 1;
        assert!(FileCaps::parse(&bad).is_none());
        assert!(FileCaps::parse(b"").is_none());
    }

    #[test]
    fn refused_xattrs() {
        assert!(refused_xattr(b"security.selinux"));
        assert!(refused_xattr(b"user.overlay.opaque"));
        assert!(refused_xattr(b"trusted.overlay.redirect"));
        assert!(!refused_xattr(b"security.capability"));
        assert!(!refused_xattr(b"user.foo"));
    }
}
