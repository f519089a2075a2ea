//! Safe path resolution inside a layer directory.
//!
//! Entry names are first normalised lexically ([`normalize`]: no absolute paths, no
//! `..`, no NUL). Parent directories are then opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, so a symlink planted
//! by an earlier entry can never redirect a write, and all further work happens through
//! the returned directory fd with `*at` calls that do not follow the final component.
//! Kernels without openat2 (< 5.6) get an equivalent component-by-component walk with
//! `O_NOFOLLOW | O_DIRECTORY`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::sys;

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Why an entry name was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum NameError {
    Absolute,
    DotDot,
    Nul,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameError::Absolute => "absolute path refused (layer entries must be relative)",
            NameError::DotDot => "path contains `..` (traversal refused)",
            NameError::Nul => "path contains a NUL byte",
        })
    }
}

/// Normalise an entry name: drop `.` components, empty components and a trailing
/// `/`; refuse absolute names, `..` anywhere and NUL bytes. The root is `[]`.
pub fn normalize(name: &[u8]) -> Result<Vec<&[u8]>, NameError> {
    if name.contains(&0) {
        return Err(NameError::Nul);
    }
    if name.first() == Some(&b'/') {
        return Err(NameError::Absolute);
    }
    let mut comps = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(NameError::DotDot),
            c => comps.push(c),
        }
    }
    Ok(comps)
}

/// Join components with `/`.
pub fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

/// Why a parent directory could not be opened.
#[derive(Debug)]
pub enum ResolveError {
    /// A component (given as the path up to it) is a symlink.
    Symlink(Vec<u8>),
    /// A component is not a directory.
    NotDir(Vec<u8>),
    /// A component does not exist (and creation was not asked for).
    Missing(Vec<u8>),
    Io(io::Error),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |p: &Vec<u8>| String::from_utf8_lossy(p).into_owned();
        match self {
            ResolveError::Symlink(p) => write!(
                f,
                "parent {:?} is a symlink (writing through symlinks is refused)",
                s(p)
            ),
            ResolveError::NotDir(p) => write!(f, "parent {:?} is not a directory", s(p)),
            ResolveError::Missing(p) => write!(f, "{:?} does not exist in this layer", s(p)),
            ResolveError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Create missing directories, owned by `owner` (None: leave the creator's ids).
#[derive(Clone, Copy, Debug)]
pub enum Create {
    No,
    Yes(Option<(u32, u32)>),
}

/// The root directory of a layer being unpacked.
pub struct LayerRoot {
    fd: OwnedFd,
}

impl LayerRoot {
    pub fn open(path: &Path) -> io::Result<LayerRoot> {
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        Ok(LayerRoot { fd: fd.into() })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Open the directory `comps` beneath the root.
    pub fn dir(&self, comps: &[&[u8]], create: Create) -> Result<OwnedFd, ResolveError> {
        if comps.is_empty() {
            return sys::openat(self.fd(), b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
                .map_err(ResolveError::Io);
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            match sys::openat2_dir(self.fd(), &join(comps)) {
                Ok(fd) => return Ok(fd),
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR | libc::EXDEV)
                    ) =>
                {
                    // Walk to find out which component, and create what is missing.
                }
                Err(e) => return Err(ResolveError::Io(e)),
            }
        }
        self.walk(comps, create)
    }

    fn walk(&self, comps: &[&[u8]], create: Create) -> Result<OwnedFd, ResolveError> {
        let mut cur = sys::openat(self.fd(), b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(ResolveError::Io)?;
        for (i, c) in comps.iter().enumerate() {
            let here = || join(&comps[..=i]);
            let open =
                |d: &OwnedFd| sys::openat(d.as_fd(), c, libc::O_RDONLY | libc::O_DIRECTORY, 0);
            let next = match open(&cur) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => match create {
                    Create::No => return Err(ResolveError::Missing(here())),
                    Create::Yes(owner) => {
                        match sys::mkdirat(cur.as_fd(), c, 0o755) {
                            Ok(()) => {}
                            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                            Err(e) => return Err(ResolveError::Io(e)),
                        }
                        let fd = open(&cur).map_err(|e| classify(e, here()))?;
                        if let Some((u, g)) = owner {
                            sys::fchown(fd.as_fd(), u, g).map_err(ResolveError::Io)?;
                        }
                        fd
                    }
                },
                Err(e) => {
                    // ELOOP: a symlink (O_NOFOLLOW). ENOTDIR: something else.
                    let st = sys::lstatat(cur.as_fd(), c).map_err(ResolveError::Io)?;
                    return Err(match st {
                        Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                            ResolveError::Symlink(here())
                        }
                        Some(st) if !sys::is_dir(&st) => ResolveError::NotDir(here()),
                        _ => classify(e, here()),
                    });
                }
            };
            cur = next;
        }
        Ok(cur)
    }
}

fn classify(e: io::Error, at: Vec<u8>) -> ResolveError {
    match e.raw_os_error() {
        Some(libc::ELOOP) => ResolveError::Symlink(at),
        Some(libc::ENOTDIR) => ResolveError::NotDir(at),
        _ => ResolveError::Io(e),
    }
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let n = |s: &str| normalize(s.as_bytes()).map(|v| join(&v));
        assert_eq!(n("./a/b/").unwrap(), b"a/b");
        assert_eq!(n("a//./b").unwrap(), b"a/b");
        assert_eq!(n("./").unwrap(), b"");
        assert_eq!(n(".").unwrap(), b"");
        assert_eq!(n("/etc/passwd"), Err(NameError::Absolute));
        assert_eq!(n("../x"), Err(NameError::DotDot));
        assert_eq!(n("a/../../x"), Err(NameError::DotDot));
        assert_eq!(n("a/..b").unwrap(), b"a/..b");
        assert_eq!(normalize(b"a\0b"), Err(NameError::Nul));
    }

    #[test]
    fn resolver_refuses_symlinks_and_creates_dirs() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("a/link")).unwrap();
        std::os::unix::fs::symlink("b", t.path().join("a/rel")).unwrap();
        std::fs::write(t.path().join("a/file"), b"x").unwrap();
        let root = LayerRoot::open(t.path()).unwrap();
        assert!(root.dir(&[b"a", b"b"], Create::No).is_ok());
        for (p, want) in [
            (&[&b"a"[..], b"link", b"x"][..], "Symlink"),
            (&[&b"a"[..], b"rel"][..], "Symlink"),
            (&[&b"a"[..], b"file", b"x"][..], "NotDir"),
            (&[&b"a"[..], b"nope"][..], "Missing"),
        ] {
            let e = root.dir(p, Create::No).unwrap_err();
            assert!(format!("{e:?}").starts_with(want), "{p:?}: {e:?}");
            let e = root.dir(p, Create::Yes(None));
            if want == "Missing" {
                assert!(e.is_ok());
            } else {
                assert!(format!("{:?}", e.unwrap_err()).starts_with(want));
            }
        }
        assert!(t.path().join("a/nope").is_dir());
        root.dir(&[b"x", b"y", b"z"], Create::Yes(None)).unwrap();
        assert!(t.path().join("x/y/z").is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // The fallback walk behaves the same.
        NO_OPENAT2.store(true, Ordering::Relaxed);
        let e = root
            .dir(&[b"a", b"link", b"x"], Create::Yes(None))
            .unwrap_err();
        assert!(
            matches!(e, ResolveError::Symlink(ref p) if p == b"a/link"),
            "{e:?}"
        );
        assert!(root.dir(&[b"a", b"b"], Create::No).is_ok());
        NO_OPENAT2.store(false, Ordering::Relaxed);
    }
}
