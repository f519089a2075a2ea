//! The container's root: an overlay of layer directories (or a bind of a prepared
//! directory) attached at the container's mount point, then `pivot_root` into it.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{umount2, MntFlags};
use nix::sys::stat::Mode;

use crate::sys::{self, Context, FsContext, SysError};

/// Which root to build. Host paths.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum RootSource {
    Overlay {
        /// Lowest first.
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    Dir(PathBuf),
    /// An overlay whose upper and work dirs live in a tmpfs mounted at the mount point
    /// inside the container's mount namespace: nothing is written on the host, and
    /// the writable layer vanishes with the container.
    OverlayInMemory {
        lowers: Vec<PathBuf>,
        /// tmpfs size limit in bytes (default: the kernel's, half of RAM).
        size: Option<u64>,
    },
}

/// Mount the root described by `src` at `mountpoint` and return an `O_PATH` handle on
/// it. Runs inside the container's user and mount namespaces.
pub fn mount_root(src: &RootSource, mountpoint: &Path) -> Result<OwnedFd, SysError> {
    let mnt = match src {
        RootSource::Overlay {
            lowers,
            upper,
            work,
        } => overlay(lowers, upper, work)?,
        RootSource::OverlayInMemory { lowers, size } => {
            let size = size.map(|s| s.to_string());
            let mut opts = vec![("mode", "755")];
            if let Some(s) = &size {
                opts.push(("size", s.as_str()));
            }
            let tmp = crate::container::mounts::make_fs("tmpfs", &opts, 0)?;
            sys::move_mount_path(tmp.as_fd(), mountpoint).sys_at("move_mount", mountpoint)?;
            for d in ["upper", "work", "root"] {
                let p = mountpoint.join(d);
                nix::unistd::mkdir(&p, Mode::from_bits_truncate(0o755)).sys_at("mkdir", &p)?;
            }
            let ov = overlay(lowers, &mountpoint.join("upper"), &mountpoint.join("work"))?;
            let root = mountpoint.join("root");
            sys::move_mount_path(ov.as_fd(), &root).sys_at("move_mount", &root)?;
            let fd = open(
                &root,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .sys_at("open", &root)?;
            // SAFETY: fresh fd from open.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        RootSource::Dir(dir) => sys::open_tree(
            libc::AT_FDCWD,
            Some(dir),
            sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint,
        )
        .map_err(|e| SysError::at("open_tree", dir, e))?,
    };
    sys::move_mount_path(mnt.as_fd(), mountpoint).sys_at("move_mount", mountpoint)?;
    let fd = open(
        mountpoint,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys_at("open", mountpoint)?;
    // SAFETY: fresh fd from open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A detached overlay mount: `lowerdir+` per layer (top first, no page-size limit on
/// the option string), the per-container upper and work dirs, `userxattr` (required
/// in a user namespace; opaque dirs are `user.overlay.opaque`).
fn overlay(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<OwnedFd, SysError> {
    if lowers.is_empty() {
        return Err(SysError::at("overlay", upper, Errno::EINVAL));
    }
    let ctx = FsContext::open("overlay").sys("fsopen overlay")?;
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| SysError::at("overlay", p, Errno::EINVAL))
    };
    let with_log = |call: &'static str, p: &Path, e: Errno, ctx: &FsContext| {
        let log = ctx.error_log();
        if log.is_empty() {
            SysError::at(call, p, e)
        } else {
            SysError::at(call, format!("{} ({log})", p.display()), e)
        }
    };
    for l in lowers.iter().rev() {
        ctx.set_string("lowerdir+", &cstr(l)?)
            .map_err(|e| with_log("fsconfig lowerdir+", l, e, &ctx))?;
    }
    ctx.set_string("upperdir", &cstr(upper)?)
        .map_err(|e| with_log("fsconfig upperdir", upper, e, &ctx))?;
    ctx.set_string("workdir", &cstr(work)?)
        .map_err(|e| with_log("fsconfig workdir", work, e, &ctx))?;
    ctx.set_flag("userxattr")
        .map_err(|e| with_log("fsconfig userxattr", upper, e, &ctx))?;
    ctx.create_and_mount(0)
        .map_err(|e| with_log("fsmount overlay", upper, e, &ctx))
}

/// `pivot_root` into `root` and detach the old root (crun/runc style:
/// `pivot_root(".", ".")` then a lazy unmount of the old root stacked on top).
pub fn pivot(root: &OwnedFd) -> Result<(), SysError> {
    nix::unistd::fchdir(root.as_raw_fd()).sys("fchdir new root")?;
    nix::unistd::pivot_root(".", ".").sys("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).sys("umount old root")?;
    nix::unistd::chdir("/").sys("chdir /")?;
    Ok(())
}
