//! Tearing a container down: kill its pid namespace, remove its cgroup, its upper
//! directory and its state. Each step tolerates "already gone", so destroy is
//! idempotent and the sweep can reuse it for containers a crashed daemon left.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use tracing::{debug, warn};

use crate::cgroups::{Cgroup, CgroupError};
use crate::container::state::ProcId;
use crate::idmap::IdMapping;
use crate::sys;
use crate::userns::{self, JobError};

#[derive(Debug, thiserror::Error)]
pub enum DestroyError {
    #[error("container {id}: killing pid 1 ({pid}): {errno}")]
    Kill { id: String, pid: i32, errno: Errno },
    #[error("container {id}: {source}")]
    Cgroup { id: String, source: CgroupError },
    #[error("container {id}: removing {path}: {source}")]
    Remove {
        id: String,
        path: PathBuf,
        source: JobError,
    },
    #[error("container {id}: unmounting {path}: {errno}")]
    Unmount {
        id: String,
        path: PathBuf,
        errno: Errno,
    },
    #[error("container {id}: keeping the writable layer as {path}: {message}")]
    Keep {
        id: String,
        path: PathBuf,
        message: String,
    },
}

/// How long to wait for the processes of a killed container to leave its cgroup.
const CGROUP_DRAIN: Duration = Duration::from_secs(10);

/// SIGKILL pid 1 (the kernel then kills the whole pid namespace) and wait for it.
/// `reap`: pid 1 is our child (it is reaped here).
pub fn kill_init(id: &str, pidfd: &OwnedFd, reap: bool) -> Result<(), DestroyError> {
    match sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => {
            return Err(DestroyError::Kill {
                id: id.to_owned(),
                pid: -1,
                errno,
            })
        }
    }
    if reap {
        match sys::waitid_pidfd(pidfd.as_fd(), 0) {
            Ok(_) | Err(Errno::ECHILD) => return Ok(()),
            Err(errno) => {
                return Err(DestroyError::Kill {
                    id: id.to_owned(),
                    pid: -1,
                    errno,
                })
            }
        }
    }
    wait_pidfd_exit(pidfd);
    Ok(())
}

/// Block until the process behind `pidfd` has exited (pidfds poll readable then).
fn wait_pidfd_exit(pidfd: &OwnedFd) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// Kill a pid 1 known only by pid and start time (sweep): only if it is still that
/// process.
pub fn kill_stale(id: &str, init: &ProcId) -> Result<(), DestroyError> {
    if !init.is_alive() {
        return Ok(());
    }
    let pidfd = match sys::pidfd_open(nix::unistd::Pid::from_raw(init.pid)) {
        Ok(fd) => fd,
        Err(Errno::ESRCH) => return Ok(()),
        Err(errno) => {
            return Err(DestroyError::Kill {
                id: id.to_owned(),
                pid: init.pid,
                errno,
            })
        }
    };
    // Re-check after opening the pidfd: the pid may have been reused in between.
    if !init.is_alive() {
        return Ok(());
    }
    kill_init(id, &pidfd, false)
}

/// Wait until the cgroup is empty (the kernel tears the pid namespace down
/// asynchronously; exec helpers exit after their step), then remove it.
pub fn remove_cgroup(id: &str, cg: &Cgroup) -> Result<(), DestroyError> {
    let start = Instant::now();
    while cg.is_populated() && start.elapsed() < CGROUP_DRAIN {
        std::thread::sleep(Duration::from_millis(5));
    }
    cg.remove().map_err(|source| DestroyError::Cgroup {
        id: id.to_owned(),
        source,
    })
}

/// Unmount anything still mounted under `dir` in our mount namespace (nothing is,
/// normally: container mounts live in the container's own mount namespace).
pub fn unmount_under(id: &str, dir: &Path) -> Result<(), DestroyError> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Ok(());
    };
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        warn!(container = id, mount = %p.display(), "unmounting a leftover mount");
        match nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(errno) => {
                return Err(DestroyError::Unmount {
                    id: id.to_owned(),
                    path: p,
                    errno,
                })
            }
        }
    }
    Ok(())
}

fn unescape_mountinfo(s: &str) -> PathBuf {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// Remove the container directory (upper dir included).
pub fn remove_dir(
    id: &str,
    exe: &Path,
    mapping: &IdMapping,
    dir: &Path,
) -> Result<(), DestroyError> {
    debug!(container = id, dir = %dir.display(), "removing container directory");
    userns::remove_tree(exe, mapping, dir).map_err(|source| DestroyError::Remove {
        id: id.to_owned(),
        path: dir.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape_mountinfo("/plain"), PathBuf::from("/plain"));
    }
}
