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

use tracing::debug;

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
        } => {
            overlay_at(lowers, upper, work, mountpoint)?;
            return open_dir(mountpoint);
        }
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
            let root = mountpoint.join("root");
            overlay_at(
                lowers,
                &mountpoint.join("upper"),
                &mountpoint.join("work"),
                &root,
            )?;
            return open_dir(&root);
        }
        RootSource::Dir(dir) => sys::open_tree(
            libc::AT_FDCWD,
            Some(dir),
            sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint,
        )
        .map_err(|e| SysError::at("open_tree", dir, e))?,
    };
    sys::move_mount_path(mnt.as_fd(), mountpoint).sys_at("move_mount", mountpoint)?;
    open_dir(mountpoint)
}

fn open_dir(p: &Path) -> Result<OwnedFd, SysError> {
    let fd = open(
        p,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys_at("open", p)?;
    // SAFETY: fresh fd from open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An overlay of `lowers` (lowest first) with `upper` and `work`, mounted at `target`,
/// with `userxattr` (required in a user namespace; opaque dirs are `user.overlay.opaque`).
///
/// Linux >= 6.8: the new mount API with one `lowerdir+` per layer (top first; no limit
/// on the number of layers). Older kernels: `mount(2)` with a `lowerdir=` string, which
/// must fit a page (fsconfig strings are limited to 256 bytes), using names relative to
/// the layers' common directory when absolute ones do not fit.
pub(crate) fn overlay_at(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), SysError> {
    if lowers.is_empty() {
        return Err(SysError::at("overlay", upper, Errno::EINVAL));
    }
    // KOJI_ADJUTANT_OVERLAY_LOWERDIR=legacy forces the older kernels' path (diagnostics
    // and tests on new kernels).
    let legacy = std::env::var_os("KOJI_ADJUTANT_OVERLAY_LOWERDIR").is_some_and(|v| v == "legacy");
    if !legacy {
        match overlay_fsconfig(lowers, upper, work)? {
            Some(mnt) => {
                return sys::move_mount_path(mnt.as_fd(), target).sys_at("move_mount", target);
            }
            None => debug!("no lowerdir+ (Linux < 6.8): mounting overlay with mount(2)"),
        }
    }
    let (lower, cwd) = lowerdir_string(lowers)?;
    let esc = |p: &Path| escape(&p.to_string_lossy());
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={},userxattr",
        esc(upper),
        esc(work)
    );
    if data.len() >= 4096 {
        return Err(SysError::at(
            "overlay: the mount options do not fit a page (Linux >= 6.8 has no limit)",
            &lowers[0],
            Errno::E2BIG,
        ));
    }
    let restore = match &cwd {
        Some(dir) => {
            let here = open_dir(Path::new("."))?;
            nix::unistd::chdir(dir.as_path()).sys_at("chdir", dir)?;
            Some(here)
        }
        None => None,
    };
    let r = nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| SysError::at("mount overlay", target, e));
    if let Some(here) = restore {
        let _ = nix::unistd::fchdir(here.as_raw_fd());
    }
    r
}

/// The detached overlay of the new mount API, or `None` when the kernel has no
/// `lowerdir+`.
fn overlay_fsconfig(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<Option<OwnedFd>, SysError> {
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
    for (i, l) in lowers.iter().rev().enumerate() {
        match ctx.set_string("lowerdir+", &cstr(l)?) {
            Ok(()) => {}
            Err(Errno::EINVAL) if i == 0 => return Ok(None),
            Err(e) => return Err(with_log("fsconfig lowerdir+", l, e, &ctx)),
        }
    }
    ctx.set_string("upperdir", &cstr(upper)?)
        .map_err(|e| with_log("fsconfig upperdir", upper, e, &ctx))?;
    ctx.set_string("workdir", &cstr(work)?)
        .map_err(|e| with_log("fsconfig workdir", work, e, &ctx))?;
    ctx.set_flag("userxattr")
        .map_err(|e| with_log("fsconfig userxattr", upper, e, &ctx))?;
    ctx.create_and_mount(0)
        .map(Some)
        .map_err(|e| with_log("fsmount overlay", upper, e, &ctx))
}

/// Escape overlay's option separators (`\`, `:`, `,`) with a backslash.
fn escape(s: &str) -> String {
    let mut e = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ':' | ',') {
            e.push('\\');
        }
        e.push(c);
    }
    e
}

/// The legacy `lowerdir=` value (top layer first, `:`-separated, `\\ : ,` escaped) and, when
/// absolute paths would not fit the page-sized option string, the directory to resolve
/// the shorter relative names from.
fn lowerdir_string(lowers: &[PathBuf]) -> Result<(String, Option<PathBuf>), SysError> {
    const LIMIT: usize = 3500;
    let join = |paths: Vec<&Path>| -> String {
        paths
            .iter()
            .map(|p| escape(&p.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(":")
    };
    let full = join(lowers.iter().rev().map(PathBuf::as_path).collect());
    if full.len() <= LIMIT {
        return Ok((full, None));
    }
    // Relative to the deepest directory all layers share (the store's layer dir).
    let mut common = lowers[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    while !lowers.iter().all(|l| l.starts_with(&common)) {
        common = match common.parent() {
            Some(p) => p.to_path_buf(),
            None => break,
        };
    }
    let rel = join(
        lowers
            .iter()
            .rev()
            .map(|l| l.strip_prefix(&common).unwrap_or(l))
            .collect(),
    );
    if rel.len() > LIMIT {
        return Err(SysError::at(
            "overlay: too many layers for this kernel's lowerdir option (Linux >= 6.8 has no limit)",
            &lowers[0],
            Errno::E2BIG,
        ));
    }
    Ok((rel, Some(common)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_lowerdir_escapes_and_shortens() {
        let (v, cwd) =
            lowerdir_string(&[PathBuf::from("/l/a"), PathBuf::from("/l/b:c,d")]).unwrap();
        assert_eq!(v, "/l/b\\:c\\,d:/l/a");
        assert!(cwd.is_none());
        let many: Vec<PathBuf> = (0..50)
            .map(|i| {
                PathBuf::from(format!(
                    "/var/lib/koji-adjutant/layers/u0-100000-65536.g0-100000-65536/{i:064}"
                ))
            })
            .collect();
        let (v, cwd) = lowerdir_string(&many).unwrap();
        assert_eq!(
            cwd.unwrap(),
            Path::new("/var/lib/koji-adjutant/layers/u0-100000-65536.g0-100000-65536")
        );
        assert!(v.starts_with(&format!("{:064}:", 49)) && v.len() <= 3500);
        let too_many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/x/{i:064}")))
            .collect();
        assert_eq!(lowerdir_string(&too_many).unwrap_err().errno, Errno::E2BIG);
    }
}
