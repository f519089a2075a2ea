//! Advisory file locks (`flock`) that keep several processes sharing one store safe.
//!
//! Lock files live in `<store>/locks/`. `flock` locks belong to the open file
//! description, so two locks taken in the same process on separate opens also exclude
//! each other; they vanish when the process dies, so a crash never leaves a store
//! locked.
//!
//! - `store.lock` (exclusive): read-modify-write of `index.json`;
//! - `gc.lock`: pulls, imports and unpacks hold it shared, `prune` exclusive, so
//!   prune never deletes a blob a running pull has fetched but not yet referenced;
//! - `blob-<hex>.lock` (exclusive): one download of a blob at a time, store-wide;
//! - `layer-<key>-<hex>.lock`: exclusive while a layer is unpacked; containers may
//!   hold it shared ([`super::LayerLease`]) so prune leaves their layers alone;
//! - `local-<mapping>-<key>.lock`: shared while a container uses a local layer
//!   ([`super::LocalLayer`]), exclusive while it is evicted;
//!   `local-<mapping>-<key>.make.lock`: exclusive while it is made (or evicted).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)
    }

    /// `flock(op)`, retried on EINTR. `Ok(false)` if non-blocking and held elsewhere.
    fn flock(file: &File, op: libc::c_int) -> io::Result<bool> {
        loop {
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
                _ => return Err(e),
            }
        }
    }

    fn wait(path: &Path, op: libc::c_int) -> io::Result<FileLock> {
        let file = Self::open(path)?;
        Self::flock(&file, op)?;
        Ok(FileLock {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// Wait for an exclusive lock.
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        Self::wait(path, libc::LOCK_EX)
    }

    /// Wait for a shared lock.
    pub fn shared(path: &Path) -> io::Result<FileLock> {
        Self::wait(path, libc::LOCK_SH)
    }

    /// An exclusive lock if nobody holds the file locked, else `None`.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<FileLock>> {
        let file = Self::open(path)?;
        Ok(
            Self::flock(&file, libc::LOCK_EX | libc::LOCK_NB)?.then(|| FileLock {
                _file: file,
                path: path.to_owned(),
            }),
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_exclude_each_other_within_a_process() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let a = FileLock::exclusive(&p).unwrap();
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        drop(a);
        let s1 = FileLock::shared(&p).unwrap();
        let s2 = FileLock::shared(&p).unwrap();
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        drop((s1, s2));
        assert!(FileLock::try_exclusive(&p).unwrap().is_some());
    }
}
