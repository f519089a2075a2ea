//! OCI whiteouts and their overlayfs form.
//!
//! - `.wh.<name>` deletes `<name>` from the layers below. In an overlay layer
//!   directory it becomes a character device 0:0 named `<name>` (unprivileged users may
//!   create exactly this device).
//! - `.wh..wh..opq` hides everything the lower layers have in its directory. Overlay
//!   reads that from the xattr `user.overlay.opaque=y` when mounted with `userxattr`,
//!   which containers do inside their user namespace, so we always write the `user.`
//!   form.
//! - Other `.wh..wh.` names are aufs metadata (hardlink directories) and are ignored.

use std::io;
use std::os::fd::BorrowedFd;

use super::sys;

pub const PREFIX: &[u8] = b".wh.";
pub const OPAQUE: &[u8] = b".wh..wh..opq";
pub const META_PREFIX: &[u8] = b".wh..wh.";
/// The xattr overlayfs reads (with `userxattr`) to make a directory opaque.
pub const OPAQUE_XATTR: &[u8] = b"user.overlay.opaque";

/// What a whiteout-looking entry name means.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
    /// `.wh.<name>`: delete `<name>` from lower layers.
    Remove(&'a [u8]),
    /// `.wh..wh.<other>`: aufs metadata, ignored.
    Meta,
}

/// Classify the last component of an entry name. `Ok(None)` for ordinary names.
pub fn classify(name: &[u8]) -> Result<Option<Whiteout<'_>>, &'static str> {
    if name == OPAQUE {
        return Ok(Some(Whiteout::Opaque));
    }
    if name.starts_with(META_PREFIX) {
        return Ok(Some(Whiteout::Meta));
    }
    match name.strip_prefix(PREFIX) {
        None => Ok(None),
        Some(b"") => Err("whiteout with an empty name"),
        Some(b"." | b"..") => Err("whiteout of `.` or `..`"),
        Some(target) => Ok(Some(Whiteout::Remove(target))),
    }
}

/// Create the overlay whiteout `name` in `dir`.
pub fn create(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    sys::mknodat(dir, name, libc::S_IFCHR, libc::makedev(0, 0))
}

/// Mark the directory open at `dir` opaque.
pub fn mark_opaque(dir: BorrowedFd<'_>) -> io::Result<()> {
    sys::fsetxattr(dir, OPAQUE_XATTR, b"y")
}

/// Remove the whiteouts directly inside `dir` (an opaque directory hides the lower
/// layers entirely, so whiteouts in it only make `readdir` show ghosts).
pub fn clear_in(dir: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n = 0;
    for name in sys::read_dir_names(dir)? {
        if let Some(st) = sys::lstatat(dir, &name)? {
            if sys::is_whiteout(&st) {
                sys::unlinkat(dir, &name, false)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(b"motd"), Ok(None));
        assert_eq!(classify(b".whatever"), Ok(None));
        assert_eq!(classify(b".wh.motd"), Ok(Some(Whiteout::Remove(b"motd"))));
        assert_eq!(classify(b".wh..wh..opq"), Ok(Some(Whiteout::Opaque)));
        assert_eq!(classify(b".wh..wh.plnk"), Ok(Some(Whiteout::Meta)));
        assert!(classify(b".wh.").is_err());
        assert!(classify(b".wh...").is_err());
    }
}
