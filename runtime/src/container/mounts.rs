//! Mounts under the new root: `/proc`, a minimal `/dev`, `/sys`, `/tmp`, user binds,
//! and the post-pivot masking of sensitive `/proc` and `/sys` paths.
//!
//! Every destination is resolved with `openat2(RESOLVE_IN_ROOT)` against the new
//! root's fd, so symlinks in an image cannot send a mount outside it. Filesystems are
//! made with the new mount API (`fsopen`/`fsmount`, `open_tree`, `mount_setattr`,
//! `move_mount` onto an fd): no path is ever resolved twice.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

use crate::container::spec::BindMount;
use crate::sys::{self, FsContext, SysError};

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: callers pass fds freshly returned by the kernel.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Open `path` inside `root` (an `O_PATH` handle), following symlinks only within it.
pub fn resolve(root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> Result<OwnedFd, SysError> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    openat2(root.as_raw_fd(), &rel, how(OFlag::O_PATH | flags))
        .map(owned)
        .map_err(|e| SysError::at("openat2", path, e))
}

/// `mkdir -p` of `path` inside `root`; returns an `O_PATH` handle on the directory.
pub fn ensure_dir(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, SysError> {
    match resolve(root, path, OFlag::O_DIRECTORY) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.errno != Errno::ENOENT => return Err(e),
        Err(_) => {}
    }
    let rel = relative(path);
    let mut cur = PathBuf::new();
    let mut fd = resolve(root, Path::new("/"), OFlag::O_DIRECTORY)?;
    for comp in rel.components() {
        let next = cur.join(comp);
        match resolve(root, &next, OFlag::O_DIRECTORY) {
            Ok(f) => fd = f,
            Err(e) if e.errno == Errno::ENOENT => {
                match mkdirat(
                    Some(fd.as_raw_fd()),
                    comp.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(SysError::at("mkdirat", &next, e)),
                }
                fd = resolve(root, &next, OFlag::O_DIRECTORY)?;
            }
            Err(e) => return Err(e),
        }
        cur = next;
    }
    Ok(fd)
}

/// Ensure a regular file (mount point for a file bind) exists at `path` inside `root`.
pub fn ensure_file(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, SysError> {
    match resolve(root, path, OFlag::empty()) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.errno != Errno::ENOENT => return Err(e),
        Err(_) => {}
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| SysError::at("create", path, Errno::EINVAL))?;
    let dir = ensure_dir(root, parent)?;
    match openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(fd) => drop(owned(fd)),
        Err(Errno::EEXIST) => {}
        Err(e) => return Err(SysError::at("openat(O_CREAT)", path, e)),
    }
    resolve(root, path, OFlag::empty())
}

/// Make a new filesystem (`fsopen`…`fsmount`) with string options and mount flags.
pub fn make_fs(
    fstype: &'static str,
    opts: &[(&str, &str)],
    attrs: u64,
) -> Result<OwnedFd, SysError> {
    let ctx = FsContext::open(fstype).map_err(|e| SysError::at("fsopen", fstype, e))?;
    for (k, v) in opts {
        let v = CString::new(*v).map_err(|_| SysError::at("fsconfig", fstype, Errno::EINVAL))?;
        ctx.set_string(k, &v).map_err(|e| {
            SysError::at(
                "fsconfig",
                format!("{fstype} {k}={}", v.to_string_lossy()),
                e,
            )
        })?;
    }
    ctx.create_and_mount(attrs).map_err(|e| {
        let log = ctx.error_log();
        SysError::at(
            "fsmount",
            if log.is_empty() {
                fstype.to_string()
            } else {
                format!("{fstype} ({log})")
            },
            e,
        )
    })
}

/// Attach a detached mount onto `target` (an fd from [`resolve`]/[`ensure_dir`]).
pub fn attach(mnt: &OwnedFd, target: &OwnedFd, what: &Path) -> Result<(), SysError> {
    sys::move_mount_fd(mnt.as_fd(), target.as_fd()).map_err(|e| SysError::at("move_mount", what, e))
}

/// A detached recursive copy of the host path `src`, optionally read-only.
pub fn clone_tree(src: &Path, attrs: u64) -> Result<OwnedFd, SysError> {
    let fd = sys::open_tree(
        libc::AT_FDCWD,
        Some(src),
        sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint,
    )
    .map_err(|e| SysError::at("open_tree", src, e))?;
    if attrs != 0 {
        sys::mount_setattr(fd.as_fd(), true, attrs, 0)
            .map_err(|e| SysError::at("mount_setattr", src, e))?;
    }
    Ok(fd)
}

/// Options of the standard mounts.
pub struct Standard {
    /// The container owns its network namespace (a fresh sysfs is then allowed).
    pub own_netns: bool,
    /// gid 5 (tty) is mapped, so devpts may use `gid=5`.
    pub tty_gid: bool,
    pub tmp_size: Option<u64>,
}

/// `/proc`, `/dev` (+ `pts`, `shm`) and `/tmp` under `root` (`/sys` is [`sysfs`]).
pub fn standard(root: BorrowedFd<'_>, opts: &Standard) -> Result<(), SysError> {
    use sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID};

    // /proc: a fresh procfs of the new pid namespace.
    let target = ensure_dir(root, Path::new("/proc"))?;
    let proc = make_fs(
        "proc",
        &[],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    )?;
    attach(&proc, &target, Path::new("/proc"))?;

    // /dev: a tmpfs with the host's harmless device nodes bound in (mknod is not
    // allowed in a user namespace), a private devpts and a /dev/shm tmpfs.
    let target = ensure_dir(root, Path::new("/dev"))?;
    let dev = make_fs(
        "tmpfs",
        &[("mode", "755"), ("size", "1m")],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
    )?;
    attach(&dev, &target, Path::new("/dev"))?;
    let devfd = dev.as_fd();
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = PathBuf::from("/dev").join(node);
        // The new (empty) file in our fresh tmpfs is the mount point; its fd is the
        // target.
        let at = openat(
            Some(devfd.as_raw_fd()),
            node,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        )
        .map(owned)
        .map_err(|e| SysError::at("create", &host, e))?;
        let tree = sys::open_tree(
            libc::AT_FDCWD,
            Some(&host),
            sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC,
        )
        .map_err(|e| SysError::at("open_tree", &host, e))?;
        attach(&tree, &at, &host)?;
    }
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        nix::unistd::symlinkat(target, Some(devfd.as_raw_fd()), name)
            .map_err(|e| SysError::at("symlinkat", format!("/dev/{name}"), e))?;
    }
    for d in ["pts", "shm"] {
        mkdirat(Some(devfd.as_raw_fd()), d, Mode::from_bits_truncate(0o755))
            .map_err(|e| SysError::at("mkdirat", format!("/dev/{d}"), e))?;
    }
    let pts_at = openat(
        Some(devfd.as_raw_fd()),
        "pts",
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(owned)
    .map_err(|e| SysError::at("openat", "/dev/pts", e))?;
    // Every devpts mount is a new instance (Linux >= 4.7). gid=5 only when mapped:
    // it is EINVAL otherwise.
    let mut pts_opts = vec![("ptmxmode", "0666"), ("mode", "620")];
    if opts.tty_gid {
        pts_opts.push(("gid", "5"));
    }
    let pts = make_fs("devpts", &pts_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)?;
    attach(&pts, &pts_at, Path::new("/dev/pts"))?;
    let shm_at = openat(
        Some(devfd.as_raw_fd()),
        "shm",
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(owned)
    .map_err(|e| SysError::at("openat", "/dev/shm", e))?;
    let shm = make_fs(
        "tmpfs",
        &[("mode", "1777")],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )?;
    attach(&shm, &shm_at, Path::new("/dev/shm"))?;

    // /tmp: a private tmpfs.
    let target = ensure_dir(root, Path::new("/tmp"))?;
    let size = opts.tmp_size.map(|s| s.to_string());
    let mut tmp_opts = vec![("mode", "1777")];
    if let Some(s) = &size {
        tmp_opts.push(("size", s.as_str()));
    }
    let tmp = make_fs("tmpfs", &tmp_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)?;
    attach(&tmp, &target, Path::new("/tmp"))?;
    Ok(())
}

/// `/sys` under `root`, read-only. With `own_netns`, the caller must already be in
/// the container's network namespace (a fresh sysfs shows the caller's).
pub fn sysfs(root: BorrowedFd<'_>, opts: &Standard) -> Result<(), SysError> {
    use sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    // /sys read-only: a fresh sysfs needs our own network namespace; otherwise a
    // read-only recursive bind of the host's (as runc's rootless spec and crun do).
    let target = ensure_dir(root, Path::new("/sys"))?;
    let ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    let sysfs = if opts.own_netns {
        match make_fs("sysfs", &[], ro) {
            Ok(fd) => fd,
            Err(e) if matches!(e.errno, Errno::EPERM | Errno::EACCES) => {
                clone_tree(Path::new("/sys"), ro)?
            }
            Err(e) => return Err(e),
        }
    } else {
        clone_tree(Path::new("/sys"), ro)?
    };
    attach(&sysfs, &target, Path::new("/sys"))?;
    Ok(())
}

/// Bind mounts requested by the caller (host `src` → `dst` inside `root`), recursive,
/// `nosuid,nodev`, read-only when asked.
pub fn binds(root: BorrowedFd<'_>, binds: &[BindMount]) -> Result<(), SysError> {
    use sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    for b in binds {
        if !b.dst.is_absolute() {
            return Err(SysError::at("bind", &b.dst, Errno::EINVAL));
        }
        let meta = std::fs::metadata(&b.src).map_err(|e| {
            SysError::at(
                "stat",
                &b.src,
                Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            )
        })?;
        let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if b.readonly {
            attrs |= MOUNT_ATTR_RDONLY;
        }
        let tree = clone_tree(&b.src, attrs)?;
        let target = if meta.is_dir() {
            ensure_dir(root, &b.dst)?
        } else {
            ensure_file(root, &b.dst)?
        };
        attach(&tree, &target, &b.dst)?;
    }
    Ok(())
}

/// After `pivot_root`: hide kernel interfaces a container has no business with (runc's
/// default masked and read-only paths). Missing paths are skipped.
pub fn mask() -> Result<(), SysError> {
    use sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    let ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    for p in [
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/irq",
        "/proc/bus",
        "/proc/fs",
    ] {
        let path = Path::new(p);
        let tree = match sys::open_tree(
            libc::AT_FDCWD,
            Some(path),
            sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint,
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(SysError::at("open_tree", path, e)),
        };
        sys::mount_setattr(tree.as_fd(), true, ro, 0)
            .map_err(|e| SysError::at("mount_setattr", path, e))?;
        sys::move_mount_path(tree.as_fd(), path)
            .map_err(|e| SysError::at("move_mount", path, e))?;
    }
    let null = Path::new("/dev/null");
    for p in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/latency_stats",
    ] {
        let path = Path::new(p);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => {}
            _ => continue,
        }
        let tree = sys::open_tree(
            libc::AT_FDCWD,
            Some(null),
            sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC,
        )
        .map_err(|e| SysError::at("open_tree", null, e))?;
        sys::move_mount_path(tree.as_fd(), path)
            .map_err(|e| SysError::at("move_mount", path, e))?;
    }
    for p in ["/proc/acpi", "/proc/scsi", "/sys/firmware"] {
        let path = Path::new(p);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {}
            _ => continue,
        }
        let fs = make_fs("tmpfs", &[], ro)?;
        sys::move_mount_path(fs.as_fd(), path).map_err(|e| SysError::at("move_mount", path, e))?;
    }
    Ok(())
}
