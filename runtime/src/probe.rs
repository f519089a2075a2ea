//! Host probes: what containers need, tried for real in a throwaway user namespace
//! (`koji-adjutant check` uses them).
//!
//! Each probe runs through the re-exec helper (`__adjutant-helper userns`, see
//! [`crate::userns::run_job`]), so the caller may be multi-threaded, and with the id
//! mapping containers would get, so it fails exactly where a container start would:
//!
//! - [`identity`]: `clone3(CLONE_NEWUSER)`, the uid/gid maps written (directly as root,
//!   by `newuidmap`/`newgidmap` rootless) and read back, `setresuid(0)` inside;
//! - [`overlay`]: in a new mount namespace of that user namespace, the runtime's own
//!   overlay mount (`fsopen` with `lowerdir+` on Linux ≥ 6.8, `mount(2)` before;
//!   `userxattr`) under a directory of the
//!   caller's choice — pick one on the filesystem of the store, which holds the
//!   containers' upper directories — then a write, a deletion (a whiteout in the upper
//!   directory) and a directory replaced (an opaque directory: the `user.overlay.opaque`
//!   xattr, which the upper filesystem must support).
//!
//! Nothing is left behind: the mount lives in the probe's own mount namespace, and the
//! directory is removed afterwards (through the user namespace when its files belong to
//! subordinate ids).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::idmap::IdMapping;
use crate::userns::{self, Job};

/// A probe to run inside a new user namespace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Probe {
    /// Report the id maps as seen from inside.
    Identity,
    /// The overlay probe in `dir` (which must exist, be empty and be writable by the
    /// namespace's root).
    Overlay { dir: PathBuf },
}

/// What [`identity`] saw inside the namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `/proc/self/uid_map`, one `inside outside count` per line, spaces collapsed.
    pub uid_map: String,
    /// `/proc/self/gid_map`, likewise.
    pub gid_map: String,
    /// `/proc/self/setgroups` (`allow`, or `deny` for the single-id mapping).
    pub setgroups: String,
}

/// What [`overlay`] checked (every field is true on success; kept for the report).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayReport {
    /// The filesystem type of the upper directory (e.g. `ext4`, `xfs`, `tmpfs`).
    pub upper_fs: String,
    /// A deleted lower file became a whiteout (character device 0:0) in the upper dir.
    pub whiteout: bool,
    /// A lower directory removed and created again became an opaque directory
    /// (`user.overlay.opaque`) in the upper dir.
    pub opaque: bool,
}

/// Why a probe failed: the step and what the kernel (or helper) said.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The user namespace could not be set up (clone, maps, helper).
    #[error("{0}")]
    Namespace(#[from] userns::JobError),
    /// A step inside the namespace failed.
    #[error("{step}: {message}")]
    Step { step: String, message: String },
    /// Preparing or removing the probe directory on the host.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a probe job prints on stdout: its result, or the failed step and message.
type JobResult<T> = Result<T, (String, String)>;

fn run<T: serde::de::DeserializeOwned>(
    exe: &Path,
    mapping: &IdMapping,
    probe: Probe,
) -> Result<T, ProbeError> {
    let out = userns::run_job(exe, mapping, &Job::Probe(probe))?;
    let res: JobResult<T> = serde_json::from_slice(&out).map_err(|e| ProbeError::Step {
        step: "reading the probe result".into(),
        message: format!("{e}: {:?}", String::from_utf8_lossy(&out)),
    })?;
    res.map_err(|(step, message)| ProbeError::Step { step, message })
}

/// Enter a new user namespace with `mapping` through the helper `exe` (usually
/// `/proc/self/exe`) and report the maps seen inside. Blocking.
pub fn identity(exe: &Path, mapping: &IdMapping) -> Result<Identity, ProbeError> {
    run(exe, mapping, Probe::Identity)
}

/// Run the overlay probe in a fresh directory `dir` (created here, owned by the
/// namespace's root, removed afterwards whatever happens). `dir` must not exist and its
/// parent must be on the filesystem to test. Blocking.
pub fn overlay(exe: &Path, mapping: &IdMapping, dir: &Path) -> Result<OverlayReport, ProbeError> {
    let io = |what: &'static str| {
        let path = dir.to_owned();
        move |source| ProbeError::Io { what, path, source }
    };
    std::fs::create_dir(dir).map_err(io("creating"))?;
    let res = (|| {
        // The namespace's root must be able to create the probe's directories here.
        if let (Some(uid), Some(gid)) = (mapping.host_uid(0), mapping.host_gid(0)) {
            if nix::unistd::geteuid().is_root() {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io("chown"))?;
            }
        }
        run(
            exe,
            mapping,
            Probe::Overlay {
                dir: dir.to_owned(),
            },
        )
    })();
    let cleanup = userns::remove_tree(exe, mapping, dir);
    let report = res?;
    cleanup?;
    Ok(report)
}

/// Inside the namespace (the helper's child, already root of it): run `probe` and
/// return the JSON for stdout.
pub(crate) fn run_inside(probe: &Probe) -> Vec<u8> {
    let out = match probe {
        Probe::Identity => serde_json::to_vec(&identity_inside()),
        Probe::Overlay { dir } => serde_json::to_vec(&overlay_inside(dir)),
    };
    out.unwrap_or_else(|e| format!("{{\"Err\":[\"encoding\",\"{e}\"]}}").into_bytes())
}

fn step<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> JobResult<T> {
    r.map_err(|e| (what.to_owned(), e.to_string()))
}

fn identity_inside() -> JobResult<Identity> {
    let read = |f: &str| {
        step(
            &format!("reading /proc/self/{f}"),
            std::fs::read_to_string(format!("/proc/self/{f}")),
        )
    };
    let norm = |s: String| {
        s.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(Identity {
        uid_map: norm(read("uid_map")?),
        gid_map: norm(read("gid_map")?),
        setgroups: read("setgroups")?.trim().to_owned(),
    })
}

fn overlay_inside(dir: &Path) -> JobResult<OverlayReport> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    step(
        "unshare(CLONE_NEWNS)",
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS),
    )?;
    step(
        "making / a recursive slave",
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        ),
    )?;
    let (lower, upper, work, merged) = (
        dir.join("lower"),
        dir.join("upper"),
        dir.join("work"),
        dir.join("merged"),
    );
    let mkdir = |p: &Path| step(&format!("mkdir {}", p.display()), std::fs::create_dir(p));
    let write = |p: &Path, s: &str| step(&format!("writing {}", p.display()), std::fs::write(p, s));
    for d in [&lower, &upper, &work, &merged] {
        mkdir(d)?;
    }
    write(&lower.join("keep"), "keep")?;
    write(&lower.join("gone"), "gone")?;
    mkdir(&lower.join("dir"))?;
    write(&lower.join("dir/inner"), "inner")?;

    let upper_fs = fs_name(&upper);
    step(
        "mounting overlay (userxattr)",
        crate::container::rootfs::overlay_at(std::slice::from_ref(&lower), &upper, &work, &merged),
    )?;

    let result = (|| {
        write(&merged.join("new"), "new")?;
        let keep = step(
            "reading a lower file through the overlay",
            std::fs::read_to_string(merged.join("keep")),
        )?;
        if keep != "keep" {
            return Err((
                "reading a lower file through the overlay".into(),
                format!("read {keep:?}"),
            ));
        }
        step(
            "deleting a lower file (whiteout)",
            std::fs::remove_file(merged.join("gone")),
        )?;
        step(
            "deleting a lower directory",
            std::fs::remove_dir_all(merged.join("dir")),
        )?;
        step(
            "creating a directory over a deleted one (opaque directory)",
            std::fs::create_dir(merged.join("dir")),
        )?;
        let listed = step(
            "listing the opaque directory",
            std::fs::read_dir(merged.join("dir")),
        )?
        .count();
        if listed != 0 {
            return Err((
                "opaque directory".into(),
                format!("{listed} lower entries still visible"),
            ));
        }
        Ok(())
    })();
    let _ = umount2(&merged, MntFlags::MNT_DETACH);
    result?;

    let new_ok = std::fs::symlink_metadata(upper.join("new")).is_ok_and(|m| m.is_file());
    if !new_ok {
        return Err((
            "writing through the overlay".into(),
            format!("{} did not receive the new file", upper.display()),
        ));
    }
    let whiteout = std::fs::symlink_metadata(upper.join("gone"))
        .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0);
    if !whiteout {
        return Err((
            "whiteout".into(),
            format!(
                "{} is not a 0:0 character device after deleting it",
                upper.join("gone").display()
            ),
        ));
    }
    let opaque = lgetxattr(&upper.join("dir"), "user.overlay.opaque")
        .map_err(|e| ("opaque directory".to_owned(), e))?;
    if opaque.as_deref() != Some(b"y".as_slice()) {
        return Err((
            "opaque directory".into(),
            format!(
                "{} has user.overlay.opaque = {:?} (the upper filesystem {upper_fs} may not \
                 support user xattrs)",
                upper.join("dir").display(),
                opaque.map(|v| String::from_utf8_lossy(&v).into_owned())
            ),
        ));
    }
    Ok(OverlayReport {
        upper_fs,
        whiteout,
        opaque: true,
    })
}

fn lgetxattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, String> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let n = CString::new(name).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(format!("lgetxattr {} {name}: {e}", path.display())),
        };
    }
    buf.truncate(r as usize);
    Ok(Some(buf))
}

/// The name of the filesystem holding `path` (from `statfs`'s magic number).
pub fn fs_name(path: &Path) -> String {
    match nix::sys::statfs::statfs(path) {
        // c_long: i64 here, i32 on 32-bit targets
        #[allow(clippy::unnecessary_cast)]
        Ok(s) => fs_type_name(s.filesystem_type().0 as i64),
        Err(e) => format!("unknown ({e})"),
    }
}

/// A `statfs` magic number as a name (the filesystems a store is likely to be on).
pub fn fs_type_name(magic: i64) -> String {
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlay".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6969 => "nfs".into(),
        0xFF53_4D42 => "cifs".into(),
        0x6573_5546 => "fuse".into(),
        0xF2F5_2010 => "f2fs".into(),
        0x5346_544E => "ntfs".into(),
        0x4D44 => "vfat".into(),
        0xCA45_1A4E => "bcachefs".into(),
        m => format!("0x{m:x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_names() {
        assert_eq!(fs_type_name(0xEF53), "ext4");
        assert_eq!(fs_type_name(0x794C_7630), "overlay");
        assert_eq!(fs_type_name(0x1234), "0x1234");
        assert_eq!(fs_name(Path::new("/proc")), "0x9fa0");
    }
}
