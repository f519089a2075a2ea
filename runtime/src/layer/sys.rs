//! Thin typed wrappers over the `*at` syscalls the unpacker uses. Every call works
//! relative to a directory fd and never follows a symlink in the final component.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn cstr(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// `openat(dir, name, flags | O_CLOEXEC | O_NOFOLLOW, mode)`.
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &[u8],
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    let fd = retry(|| {
        check(unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                mode as libc::c_uint,
            )
        })
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open the directory `path` (relative, no `..`) beneath `dir` with `openat2`,
/// refusing symlinks anywhere on the way, magic links and mount crossings. Returns
/// `ENOSYS` on kernels without openat2 (< 5.6).
pub fn openat2_dir(dir: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: open_how is plain data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.resolve = libc::RESOLVE_BENEATH
        | libc::RESOLVE_NO_SYMLINKS
        | libc::RESOLVE_NO_MAGICLINKS
        | libc::RESOLVE_NO_XDEV;
    let fd = retry(|| {
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as RawFd)
        }
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) }).map(drop)
}

pub fn mknodat(dir: BorrowedFd<'_>, name: &[u8], mode: u32, dev: libc::dev_t) -> io::Result<()> {
    let c = cstr(name)?;
    check(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, dev) })
        .map(drop)
}

pub fn symlinkat(target: &[u8], dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let t = cstr(target)?;
    let c = cstr(name)?;
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) }).map(drop)
}

/// `linkat(olddir, oldname, newdir, newname, 0)`: never follows a symlink target.
pub fn linkat(
    olddir: BorrowedFd<'_>,
    oldname: &[u8],
    newdir: BorrowedFd<'_>,
    newname: &[u8],
) -> io::Result<()> {
    let o = cstr(oldname)?;
    let n = cstr(newname)?;
    check(unsafe {
        libc::linkat(
            olddir.as_raw_fd(),
            o.as_ptr(),
            newdir.as_raw_fd(),
            n.as_ptr(),
            0,
        )
    })
    .map(drop)
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &[u8], is_dir: bool) -> io::Result<()> {
    let c = cstr(name)?;
    let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
}

pub fn renameat(
    olddir: BorrowedFd<'_>,
    old: &[u8],
    newdir: BorrowedFd<'_>,
    new: &[u8],
) -> io::Result<()> {
    let o = cstr(old)?;
    let n = cstr(new)?;
    check(unsafe {
        libc::renameat(
            olddir.as_raw_fd(),
            o.as_ptr(),
            newdir.as_raw_fd(),
            n.as_ptr(),
        )
    })
    .map(drop)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `Ok(None)` if it does not exist.
pub fn lstatat(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<libc::stat>> {
    let c = cstr(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(unsafe { st.assume_init() }))
}

pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    check(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    Ok(unsafe { st.assume_init() })
}

pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)` (changes a symlink itself).
pub fn lchownat(dir: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(name)?;
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            c.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

fn timespec(secs: i64, nsec: u32) -> libc::timespec {
    libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nsec as libc::c_long,
    }
}

/// Set atime and mtime of an open file.
pub fn futimens(fd: BorrowedFd<'_>, secs: i64, nsec: u32) -> io::Result<()> {
    let t = [timespec(secs, nsec), timespec(secs, nsec)];
    check(unsafe { libc::futimens(fd.as_raw_fd(), t.as_ptr()) }).map(drop)
}

/// Set atime and mtime of `name` without following a symlink.
pub fn lutimensat(dir: BorrowedFd<'_>, name: &[u8], secs: i64, nsec: u32) -> io::Result<()> {
    let c = cstr(name)?;
    let t = [timespec(secs, nsec), timespec(secs, nsec)];
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            c.as_ptr(),
            t.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn fsetxattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    let n = cstr(name)?;
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// Set an xattr on `name` in `dir` without following it if it is a symlink (through
/// `/proc/self/fd/<dir>/<name>`, the only way to reach a symlink by dirfd).
pub fn lsetxattrat(dir: BorrowedFd<'_>, name: &[u8], xname: &[u8], value: &[u8]) -> io::Result<()> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    let p = cstr(&p)?;
    let n = cstr(xname)?;
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

pub fn fgetxattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    let r = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENODATA) {
            return Ok(None);
        }
        return Err(e);
    }
    buf.truncate(r as usize);
    Ok(Some(buf))
}

/// Write all of `data` to `fd`.
pub fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let r = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
        }
        data = &data[r as usize..];
    }
    Ok(())
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// An overlay whiteout: a character device 0:0.
pub fn is_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Names of the entries of an open directory (without `.` and `..`).
pub fn read_dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    // Re-open "." so the caller's fd offset is untouched.
    let fd = openat(dir, b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut d =
        nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(fd)).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for ent in d.iter() {
        let ent = ent.map_err(io::Error::from)?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

/// Remove `name` in `dir` and everything below it, never following symlinks.
/// Directories we cannot write (mode 0555 in an image, unpacked without privileges)
/// are made writable first.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let Some(st) = lstatat(dir, name)? else {
        return Ok(());
    };
    if !is_dir(&st) {
        return unlinkat(dir, name, false);
    }
    let sub = match openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            let p = openat(dir, name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            chmod_path_fd(&p, 0o700)?;
            openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?
        }
        Err(e) => return Err(e),
    };
    if st.st_mode & 0o300 != 0o300 && unsafe { libc::geteuid() } != 0 {
        fchmod(fd_ref(&sub), 0o700)?;
    }
    for child in read_dir_names(fd_ref(&sub))? {
        remove_tree_at(fd_ref(&sub), &child)?;
    }
    drop(sub);
    unlinkat(dir, name, true)
}

fn chmod_path_fd(fd: &OwnedFd, mode: u32) -> io::Result<()> {
    let p = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::other("bad fd path"))?;
    check(unsafe { libc::chmod(p.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// Borrow an owned fd.
pub fn fd_ref(fd: &OwnedFd) -> BorrowedFd<'_> {
    std::os::fd::AsFd::as_fd(fd)
}

/// `fchmodat(dir, name, mode, 0)`. Only for entries we just created ourselves in a
/// private directory (Linux cannot chmod a symlink, and FIFOs cannot be opened
/// without blocking).
pub fn fchmodat(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, 0) }).map(drop)
}
