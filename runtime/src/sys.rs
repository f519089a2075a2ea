//! Typed wrappers for the Linux syscalls the runtime needs and `nix` 0.29 does not
//! cover: `clone3`, pidfds, the new mount API (`open_tree`, `move_mount`, `fsopen`,
//! `fsconfig`, `fsmount`, `mount_setattr`) and `close_range`.
//!
//! Every wrapper returns [`nix::Result`]; callers attach the syscall name and path
//! through [`SysError`] so that messages say what failed and where.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::Pid;

/// A failed syscall: which call, on which path (if any), and the errno.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}{}: {errno}", fmt_path(.path))]
pub struct SysError {
    pub call: &'static str,
    pub path: Option<PathBuf>,
    pub errno: Errno,
}

fn fmt_path(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => format!(" {}", p.display()),
        None => String::new(),
    }
}

impl SysError {
    pub fn new(call: &'static str, errno: Errno) -> Self {
        SysError {
            call,
            path: None,
            errno,
        }
    }
    pub fn at(call: &'static str, path: impl Into<PathBuf>, errno: Errno) -> Self {
        SysError {
            call,
            path: Some(path.into()),
            errno,
        }
    }
}

/// Attach a call name (and optional path) to a `nix::Result`.
pub trait Context<T> {
    fn sys(self, call: &'static str) -> Result<T, SysError>;
    fn sys_at(self, call: &'static str, path: impl AsRef<Path>) -> Result<T, SysError>;
}

impl<T> Context<T> for nix::Result<T> {
    fn sys(self, call: &'static str) -> Result<T, SysError> {
        self.map_err(|e| SysError::new(call, e))
    }
    fn sys_at(self, call: &'static str, path: impl AsRef<Path>) -> Result<T, SysError> {
        self.map_err(|e| SysError::at(call, path.as_ref(), e))
    }
}

fn check(ret: libc::c_long) -> nix::Result<libc::c_long> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// `Path` → NUL-terminated C string. Paths with an interior NUL cannot reach a syscall.
pub fn cpath(p: &Path) -> nix::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

// ---------------------------------------------------------------------------------------
// clone3 and pidfds

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Result of [`clone3`] as seen by each side.
pub enum Forked {
    /// In the parent: the child's pid (in the caller's pid namespace) and its pidfd.
    Parent { pid: Pid, pidfd: OwnedFd },
    /// In the child.
    Child,
}

/// `clone3` without a new stack (fork semantics) and with `CLONE_PIDFD`.
///
/// Falls back to `clone` on kernels without `clone3` (ENOSYS).
///
/// # Safety
/// Like `fork`: must only be called from a single-threaded process, and the child must
/// end with `_exit` (never return into code that assumes it is the parent).
pub unsafe fn clone3(flags: u64, exit_signal: libc::c_int) -> nix::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: exit_signal as u64,
        ..Default::default()
    };
    let ret = libc::syscall(
        libc::SYS_clone3,
        &mut args as *mut CloneArgs,
        std::mem::size_of::<CloneArgs>(),
    );
    let ret = match check(ret) {
        Err(Errno::ENOSYS) => {
            // Legacy clone: flags | exit signal in one word; with CLONE_PIDFD the fd is
            // stored through the parent_tid argument (x86_64 argument order).
            let r = libc::syscall(
                libc::SYS_clone,
                (flags | libc::CLONE_PIDFD as u64) as libc::c_ulong | exit_signal as libc::c_ulong,
                0usize,
                &mut pidfd as *mut libc::c_int,
                0usize,
                0usize,
            );
            check(r)?
        }
        r => r?,
    };
    if ret == 0 {
        Ok(Forked::Child)
    } else {
        Ok(Forked::Parent {
            pid: Pid::from_raw(ret as libc::pid_t),
            pidfd: OwnedFd::from_raw_fd(pidfd),
        })
    }
}

/// Run `f` in a child made with `clone(CLONE_VM | CLONE_VFORK)` on its own stack (what
/// `posix_spawn` does): no page tables are copied and this process sleeps until the
/// child has called `execve` or `_exit`, which `f` must end with.
///
/// # Safety
/// The child shares this process's memory while it runs: the caller must be
/// single-threaded, `f` must not return or unwind, must not touch state the parent relies
/// on (it may allocate: the parent is suspended, so no allocator lock is held), and
/// signal handlers it could run must be harmless (the child gets a copy of the handler
/// table, not a shared one).
pub unsafe fn vfork_exec(f: &mut dyn FnMut()) -> nix::Result<Pid> {
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&mut &mut dyn FnMut()` below, alive until we exec/exit.
        let f = unsafe { &mut *(arg as *mut &mut dyn FnMut()) };
        f();
        // `f` must not return; if it does, leave without touching shared state.
        unsafe { libc::_exit(127) }
    }
    const STACK: usize = 512 * 1024;
    let mut stack = vec![0u8; STACK];
    // 16-byte aligned top of the stack (it grows down).
    let top = (stack.as_mut_ptr() as usize + STACK) & !15;
    let mut f = f;
    let arg = &mut f as *mut &mut dyn FnMut() as *mut libc::c_void;
    let pid = libc::clone(
        trampoline,
        top as *mut libc::c_void,
        libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
        arg,
    );
    drop(stack);
    if pid < 0 {
        Err(Errno::last())
    } else {
        Ok(Pid::from_raw(pid))
    }
}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: plain syscall; on success the kernel returns a new fd we own.
    let r = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> nix::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// Shell-style status: the code, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// `waitid(P_PIDFD, fd, WEXITED | extra)`; `Ok(None)` with `WNOHANG` if still running.
pub fn waitid_pidfd(pidfd: BorrowedFd<'_>, extra: libc::c_int) -> nix::Result<Option<Exit>> {
    // SAFETY: zeroed siginfo is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | extra,
            )
        };
        if r < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        break;
    }
    // SAFETY: waitid filled the SIGCHLD member.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(if info.si_code == libc::CLD_EXITED {
        Exit::Code(status)
    } else {
        Exit::Signal(status)
    }))
}

/// `waitpid(pid)` for a child, retrying on EINTR.
pub fn waitpid_exit(pid: Pid) -> nix::Result<Exit> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(Exit::Code(c)),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(Exit::Signal(s as i32)),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The new mount API

pub const OPEN_TREE_CLONE: libc::c_uint = 1;
pub const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
pub const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;
pub const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x0000_0040;
pub const FSOPEN_CLOEXEC: libc::c_uint = 1;
pub const FSMOUNT_CLOEXEC: libc::c_uint = 1;
pub const FSCONFIG_SET_FLAG: libc::c_uint = 0;
pub const FSCONFIG_SET_STRING: libc::c_uint = 1;
pub const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn c_or_empty(p: Option<&Path>) -> nix::Result<CString> {
    match p {
        Some(p) => cpath(p),
        None => Ok(CString::default()),
    }
}

/// `open_tree(dirfd, path, flags)`: with [`OPEN_TREE_CLONE`] a detached copy of the
/// mount (tree, with `AT_RECURSIVE`) at `path`.
pub fn open_tree(dirfd: RawFd, path: Option<&Path>, flags: libc::c_uint) -> nix::Result<OwnedFd> {
    let p = c_or_empty(path)?;
    let flags = if path.is_none() {
        flags | libc::AT_EMPTY_PATH as libc::c_uint
    } else {
        flags
    };
    // SAFETY: valid C string; returns a new fd on success.
    let r = check(unsafe { libc::syscall(libc::SYS_open_tree, dirfd, p.as_ptr(), flags) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Attach the detached mount `from` onto the object `to` refers to (an `O_PATH` fd).
pub fn move_mount_fd(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> nix::Result<()> {
    let empty = CString::default();
    // SAFETY: both fds valid; empty paths with the EMPTY_PATH flags.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            to.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// Attach the detached mount `from` at `path` (relative to the cwd or absolute).
pub fn move_mount_path(from: BorrowedFd<'_>, path: &Path) -> nix::Result<()> {
    let empty = CString::default();
    let p = cpath(path)?;
    // SAFETY: valid fd and C strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            p.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE], {set, clr})`.
pub fn mount_setattr(fd: BorrowedFd<'_>, recursive: bool, set: u64, clr: u64) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = CString::default();
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: attr lives across the call; size matches the struct.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// A filesystem context from `fsopen`, configured key by key, then mounted detached.
pub struct FsContext {
    fd: OwnedFd,
    fstype: &'static str,
}

impl FsContext {
    pub fn open(fstype: &'static str) -> nix::Result<Self> {
        let name = CString::new(fstype).map_err(|_| Errno::EINVAL)?;
        // SAFETY: valid C string.
        let r = check(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
        Ok(FsContext {
            fd: unsafe { OwnedFd::from_raw_fd(r as RawFd) },
            fstype,
        })
    }

    pub fn fstype(&self) -> &'static str {
        self.fstype
    }

    /// `fsconfig(FSCONFIG_SET_STRING, key, value)`.
    pub fn set_string(&self, key: &str, value: &CStr) -> nix::Result<()> {
        let k = CString::new(key).map_err(|_| Errno::EINVAL)?;
        // SAFETY: valid fd and C strings.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                value.as_ptr(),
                0,
            )
        })?;
        Ok(())
    }

    /// `fsconfig(FSCONFIG_SET_FLAG, key)`.
    pub fn set_flag(&self, key: &str) -> nix::Result<()> {
        let k = CString::new(key).map_err(|_| Errno::EINVAL)?;
        // SAFETY: valid fd and C string.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                FSCONFIG_SET_FLAG,
                k.as_ptr(),
                std::ptr::null::<libc::c_char>(),
                0,
            )
        })?;
        Ok(())
    }

    /// `FSCONFIG_CMD_CREATE` then `fsmount` with mount attributes; returns the detached mount.
    pub fn create_and_mount(&self, attrs: u64) -> nix::Result<OwnedFd> {
        // SAFETY: valid fd.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_char>(),
                0,
            )
        })?;
        let r = check(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.fd.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs,
            )
        })?;
        Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
    }

    /// Read the kernel's error log for this context (messages like "overlayfs: ...").
    pub fn error_log(&self) -> String {
        let mut out = String::new();
        let mut buf = [0u8; 512];
        loop {
            // SAFETY: buffer valid for its length.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if n <= 0 {
                break;
            }
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(String::from_utf8_lossy(&buf[..n as usize]).trim_end());
        }
        out
    }
}

/// Mark every fd `>= low` close-on-exec (`close_range(low, ~0, CLOSE_RANGE_CLOEXEC)`).
pub fn cloexec_from(low: RawFd) -> nix::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            low as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    })?;
    Ok(())
}

/// Close every fd `>= low` except those in `keep` (at most 16, any order).
/// Allocation-free, so it is safe right after `fork`.
pub fn close_from_except(low: RawFd, keep: &[RawFd]) -> nix::Result<()> {
    let mut buf = [RawFd::MAX; 16];
    let mut n = 0;
    for &k in keep {
        if k >= low {
            if n == buf.len() {
                return Err(Errno::E2BIG);
            }
            buf[n] = k;
            n += 1;
        }
    }
    let keep = &mut buf[..n];
    keep.sort_unstable();
    let mut start = low;
    for &k in keep.iter() {
        if k > start {
            close_range(start, k - 1)?;
        }
        start = start.max(k + 1);
    }
    close_range(start, RawFd::MAX)
}

fn close_range(first: RawFd, last: RawFd) -> nix::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            0,
        )
    })?;
    Ok(())
}

/// Clear `FD_CLOEXEC` on `fd` so it survives `execve`.
pub fn clear_cloexec(fd: RawFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    Ok(())
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/<pid>/stat`),
/// used with the pid to recognise a process across daemon restarts.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0, so field 22 is index 19.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` exists and started at `start_time`.
pub fn process_matches(pid: i32, start_time: u64) -> bool {
    pid > 0 && process_start_time(pid) == Some(start_time)
}

/// Write all of `data` to a raw fd (retrying on EINTR and short writes).
pub fn write_all_fd(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return Err(Errno::EPIPE),
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read from a raw fd until EOF.
pub fn read_to_end_fd(fd: BorrowedFd<'_>) -> nix::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Number of threads of the calling process (field 20 of `/proc/self/stat`).
pub fn thread_count() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(17)?.parse().ok()
}

/// A pipe with both ends close-on-exec: `(read, write)`.
pub fn pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_reads_proc() {
        assert!(thread_count().unwrap() >= 1);
    }

    #[test]
    fn start_time_of_self_is_stable() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).unwrap();
        assert!(process_matches(me, t));
        assert!(!process_matches(me, t + 1));
        assert!(!process_matches(0, t));
    }

    #[test]
    fn close_from_except_keeps_listed_fds() {
        // Run in a forked child so the test harness's fds are untouched.
        let (r, w) = pipe().unwrap();
        let (r2, w2) = pipe().unwrap();
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let keep = [w.as_raw_fd(), r2.as_raw_fd()];
                let ok = close_from_except(3, &keep).is_ok()
                    && nix::fcntl::fcntl(w.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).is_ok()
                    && nix::fcntl::fcntl(r.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD)
                        == Err(Errno::EBADF)
                    && nix::fcntl::fcntl(w2.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD)
                        == Err(Errno::EBADF);
                let _ = nix::unistd::write(&w, if ok { b"y" } else { b"n" });
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                let out = read_to_end_fd(std::os::fd::AsFd::as_fd(&r)).unwrap();
                waitpid_exit(child).unwrap();
                assert_eq!(out, b"y");
            }
        }
        drop((r2, w2));
    }
}
