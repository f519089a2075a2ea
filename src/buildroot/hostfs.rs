//! Reading, on the host, files a build wrote into its bind-mounted directories
//! (`/builddir`, the SCM checkout) without ever following a symlink the build made.
//!
//! The daemon runs as (host) root; the build controls everything below `/builddir`.
//! A path such as `<builddir>/build/RPMS/x.rpm` resolved the ordinary way follows
//! `RPMS -> /etc/pki/koji` or `x.rpm -> /etc/shadow` *on the host*, and a process the
//! build left behind can swap a checked file for a symlink between the check and the
//! open. So every path is resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
//! | RESOLVE_NO_XDEV)` from a directory fd opened with `O_NOFOLLOW`, and what is opened
//! is checked with `fstat` on the fd itself.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};

use super::BuildrootError;

fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

fn io(what: &'static str, path: &Path, e: Errno) -> BuildrootError {
    BuildrootError::Io {
        what,
        path: path.to_owned(),
        source: std::io::Error::from(e),
    }
}

/// A directory the daemon made (not the build), opened without following a symlink
/// at its last component; the base for [`Tree`] lookups.
pub(crate) struct Tree {
    base: OwnedFd,
    path: PathBuf,
}

/// An entry found by [`Tree::find_files`] that is not a regular file or directory
/// where a result was looked for (a symlink, device, FIFO…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// The path relative to the tree.
    pub rel: PathBuf,
    /// What it is.
    pub kind: &'static str,
}

fn kind_of(t: nix::dir::Type) -> &'static str {
    use nix::dir::Type;
    match t {
        Type::Symlink => "a symlink",
        Type::Fifo => "a FIFO",
        Type::CharacterDevice => "a character device",
        Type::BlockDevice => "a block device",
        Type::Socket => "a socket",
        Type::Directory => "a directory",
        Type::File => "a regular file",
    }
}

impl Tree {
    pub(crate) fn open(path: &Path) -> Result<Tree, BuildrootError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("opening", path, e))?;
        // SAFETY: open returned a new fd that nothing else owns.
        let base = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Tree {
            base,
            path: path.to_owned(),
        })
    }

    fn open_beneath(&self, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(beneath());
        let fd = nix::fcntl::openat2(self.base.as_raw_fd(), rel, how)?;
        // SAFETY: openat2 returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Every regular file whose name ends with `suffix` under the directories `roots`
    /// (relative to the tree; missing ones are skipped), depth first, and every entry
    /// with that suffix that is not a regular file. A root or subdirectory that is a
    /// symlink is refused too, never entered.
    pub(crate) fn find_files(
        &self,
        roots: &[&str],
        suffix: &str,
    ) -> Result<(Vec<PathBuf>, Vec<Refused>), BuildrootError> {
        let mut found = Vec::new();
        let mut refused = Vec::new();
        for r in roots {
            let (f, x) = self.find_files_in(r, suffix, true)?;
            found.extend(f);
            refused.extend(x);
        }
        found.sort();
        refused.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok((found, refused))
    }

    fn find_files_in(
        &self,
        root: &str,
        suffix: &str,
        recurse: bool,
    ) -> Result<(Vec<PathBuf>, Vec<Refused>), BuildrootError> {
        let mut found = Vec::new();
        let mut refused = Vec::new();
        let mut todo = vec![PathBuf::from(root)];
        while let Some(rel) = todo.pop() {
            let fd = match self.open_beneath(&rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => continue,
                Err(Errno::ELOOP | Errno::EXDEV | Errno::ENOTDIR) => {
                    refused.push(Refused {
                        rel,
                        kind: "not a plain directory (a symlink or mount point)",
                    });
                    continue;
                }
                Err(e) => return Err(io("opening", &self.path.join(&rel), e)),
            };
            let dir = nix::dir::Dir::from_fd(fd.as_raw_fd())
                .map_err(|e| io("reading", &self.path.join(&rel), e))?;
            // Dir owns the fd now.
            std::mem::forget(fd);
            let mut dir = dir;
            for entry in dir.iter() {
                let entry = entry.map_err(|e| io("reading", &self.path.join(&rel), e))?;
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let name = Path::new(std::ffi::OsStr::from_bytes(name)).to_owned();
                let child = rel.join(&name);
                let t = match entry.file_type() {
                    Some(t) => t,
                    None => self.lstat_type(&child)?,
                };
                match t {
                    nix::dir::Type::Directory if recurse => todo.push(child),
                    nix::dir::Type::File if ends_with(&name, suffix) => found.push(child),
                    other if ends_with(&name, suffix) => refused.push(Refused {
                        rel: child,
                        kind: kind_of(other),
                    }),
                    _ => {}
                }
            }
        }
        found.sort();
        Ok((found, refused))
    }

    /// Names of the regular files directly in the directory `rel` whose names end
    /// with `suffix` (sorted); an empty list if it is missing, a symlink or not a
    /// directory.
    pub(crate) fn file_names(&self, rel: &str, suffix: &str) -> Vec<String> {
        let (found, _) = match self.find_files_in(rel, suffix, false) {
            Ok(r) => r,
            Err(_) => return Vec::new(),
        };
        found
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    fn lstat_type(&self, rel: &Path) -> Result<nix::dir::Type, BuildrootError> {
        use nix::dir::Type;
        let st = nix::sys::stat::fstatat(
            Some(self.base.as_raw_fd()),
            rel,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io("stat", &self.path.join(rel), e))?;
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        Ok(match fmt {
            SFlag::S_IFDIR => Type::Directory,
            SFlag::S_IFREG => Type::File,
            SFlag::S_IFLNK => Type::Symlink,
            SFlag::S_IFIFO => Type::Fifo,
            SFlag::S_IFCHR => Type::CharacterDevice,
            SFlag::S_IFBLK => Type::BlockDevice,
            _ => Type::Socket,
        })
    }

    /// Open the regular file `rel` for reading: no symlink anywhere on the way, and
    /// it must still be a regular file once open.
    pub(crate) fn open_file(&self, rel: &Path) -> Result<File, BuildrootError> {
        let path = self.path.join(rel);
        let fd = self
            .open_beneath(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
            .map_err(|e| match e {
                Errno::ELOOP | Errno::EXDEV => BuildrootError::Config(format!(
                    "refusing {}: a symlink or another filesystem on the way",
                    path.display()
                )),
                e => io("opening", &path, e),
            })?;
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| io("stat", &path, e))?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
            return Err(BuildrootError::Config(format!(
                "refusing {}: not a regular file",
                path.display()
            )));
        }
        Ok(File::from(fd))
    }

    /// Copy the regular file `rel` to `dst` (created or truncated; `dst` is the
    /// daemon's own path).
    pub(crate) fn copy_file(&self, rel: &Path, dst: &Path) -> Result<u64, BuildrootError> {
        let mut src = self.open_file(rel)?;
        let mut out = File::create(dst).map_err(BuildrootError::io("creating", dst))?;
        std::io::copy(&mut src, &mut out).map_err(BuildrootError::io("copying result to", dst))
    }

    /// `chown -R -h uid:gid` of the whole tree: every entry changed with
    /// `fchownat(AT_SYMLINK_NOFOLLOW)` relative to its directory's fd, directories
    /// entered only through [`RESOLVE_NO_SYMLINKS`](ResolveFlag) lookups.
    pub(crate) fn lchown_all(
        &self,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(), BuildrootError> {
        let (u, g) = (
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
        );
        nix::unistd::fchown(self.base.as_raw_fd(), u, g).map_err(|e| io("chown", &self.path, e))?;
        let mut todo = vec![PathBuf::from(".")];
        while let Some(rel) = todo.pop() {
            let here = self.path.join(&rel);
            let fd = self
                .open_beneath(&rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(|e| io("opening (no symlinks followed)", &here, e))?;
            let raw = fd.as_raw_fd();
            let mut dir = nix::dir::Dir::from_fd(raw).map_err(|e| io("reading", &here, e))?;
            std::mem::forget(fd);
            for entry in dir.iter() {
                let entry = entry.map_err(|e| io("reading", &here, e))?;
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let name = Path::new(std::ffi::OsStr::from_bytes(name)).to_owned();
                nix::unistd::fchownat(
                    Some(raw),
                    &name,
                    u,
                    g,
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io("chown", &here.join(&name), e))?;
                let child = rel.join(&name);
                let t = match entry.file_type() {
                    Some(t) => t,
                    None => self.lstat_type(&child)?,
                };
                if t == nix::dir::Type::Directory {
                    todo.push(child);
                }
            }
        }
        Ok(())
    }

    /// At most `max` bytes of the regular file `rel` (a log), and whether it was cut.
    pub(crate) fn read_capped(
        &self,
        rel: &Path,
        max: u64,
    ) -> Result<(Vec<u8>, bool), BuildrootError> {
        use std::io::Read;
        let f = self.open_file(rel)?;
        let mut buf = Vec::new();
        f.take(max.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(BuildrootError::io("reading", &self.path.join(rel)))?;
        let cut = buf.len() as u64 > max;
        buf.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        Ok((buf, cut))
    }
}

fn ends_with(name: &Path, suffix: &str) -> bool {
    name.as_os_str()
        .as_encoded_bytes()
        .ends_with(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_are_refused_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret.rpm");
        std::fs::write(&secret, "host secret").unwrap();
        let tree = d.path().join("builddir");
        let top = tree.join("build");
        std::fs::create_dir_all(top.join("RPMS/x86_64")).unwrap();
        std::fs::create_dir_all(top.join("SRPMS")).unwrap();
        std::fs::write(top.join("RPMS/x86_64/good-1-1.x86_64.rpm"), "rpm").unwrap();
        std::fs::write(top.join("RPMS/notes.txt"), "x").unwrap();
        symlink(&secret, top.join("RPMS/x86_64/evil-1-1.x86_64.rpm")).unwrap();
        symlink(d.path(), top.join("RPMS/hostdir")).unwrap();
        symlink(d.path(), top.join("SRPMS/sub.rpm")).unwrap();
        let t = Tree::open(&tree).unwrap();
        let (found, refused) = t
            .find_files(&["build/SRPMS", "build/RPMS"], ".rpm")
            .unwrap();
        assert_eq!(
            found,
            vec![PathBuf::from("build/RPMS/x86_64/good-1-1.x86_64.rpm")]
        );
        assert_eq!(
            refused,
            vec![
                Refused {
                    rel: "build/RPMS/x86_64/evil-1-1.x86_64.rpm".into(),
                    kind: "a symlink"
                },
                Refused {
                    rel: "build/SRPMS/sub.rpm".into(),
                    kind: "a symlink"
                },
            ]
        );
        // A whole results directory replaced by a symlink to a host directory.
        std::fs::remove_dir_all(top.join("SRPMS")).unwrap();
        symlink(d.path(), top.join("SRPMS")).unwrap();
        let (found, refused) = t.find_files(&["build/SRPMS"], ".rpm").unwrap();
        assert!(found.is_empty());
        assert_eq!(refused[0].rel, PathBuf::from("build/SRPMS"));
        // Opening through any symlink fails, whatever the check before said.
        let e = t
            .open_file(Path::new("build/RPMS/x86_64/evil-1-1.x86_64.rpm"))
            .unwrap_err();
        assert!(e.to_string().contains("refusing"), "{e}");
        assert!(t
            .open_file(Path::new("build/RPMS/hostdir/secret.rpm"))
            .is_err());
        assert!(t.open_file(Path::new("../secret.rpm")).is_err());
        assert!(t.open_file(Path::new("build/RPMS")).is_err());
        // A FIFO is not read (opening it would block).
        nix::unistd::mkfifo(&top.join("RPMS/fifo.rpm"), Mode::from_bits_truncate(0o644)).unwrap();
        let e = t.open_file(Path::new("build/RPMS/fifo.rpm")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let dst = d.path().join("out.rpm");
        t.copy_file(Path::new("build/RPMS/x86_64/good-1-1.x86_64.rpm"), &dst)
            .unwrap();
        assert_eq!(std::fs::read_to_string(&dst).unwrap(), "rpm");
        // One directory's names, not following a symlinked directory.
        assert_eq!(
            t.file_names("build/RPMS/x86_64", ".rpm"),
            vec!["good-1-1.x86_64.rpm".to_string()]
        );
        assert!(t.file_names("build/RPMS/hostdir", ".rpm").is_empty());
        assert!(t.file_names("build/SRPMS", ".rpm").is_empty());
        // A base that is itself a symlink is refused.
        symlink(&tree, d.path().join("alias")).unwrap();
        assert!(Tree::open(&d.path().join("alias")).is_err());
    }

    #[test]
    fn lchown_all_changes_links_not_targets() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "chown needs root: run as root (tests/run.sh)"
        );
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::write(&outside, "x").unwrap();
        let tree = d.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/f"), "f").unwrap();
        symlink(&outside, tree.join("a/link")).unwrap();
        symlink(d.path(), tree.join("dirlink")).unwrap();
        Tree::open(&tree)
            .unwrap()
            .lchown_all(Some(4321), Some(4322))
            .unwrap();
        use std::os::unix::fs::MetadataExt;
        for p in ["", "a", "a/b", "a/b/f", "a/link", "dirlink"] {
            let m = std::fs::symlink_metadata(tree.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (4321, 4322), "{p}");
        }
        let m = std::fs::metadata(&outside).unwrap();
        assert_eq!(m.uid(), 0, "a symlink target was changed");
        assert_eq!(std::fs::metadata(d.path()).unwrap().uid(), 0);
    }

    #[test]
    fn read_capped_cuts() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.log"), "0123456789").unwrap();
        let t = Tree::open(d.path()).unwrap();
        assert_eq!(
            t.read_capped(Path::new("a.log"), 4).unwrap(),
            (b"0123".to_vec(), true)
        );
        assert_eq!(
            t.read_capped(Path::new("a.log"), 10).unwrap(),
            (b"0123456789".to_vec(), false)
        );
    }
}
