//! The last steps before a container process runs its program: signals, umask,
//! rlimits, capabilities, groups, uid/gid, `no_new_privs`, the seccomp filter, cwd,
//! environment, `execve`.
//!
//! Runs in a freshly forked child that is already inside the container (pid 1's child
//! in `run` mode, the exec helper's child for steps).

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::sys::resource::setrlimit;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use crate::caps;
use crate::container::spec::{ProcessSpec, DEFAULT_PATH};
use crate::seccomp::{self, Seccomp};

/// Why the program could not be started, with the exit code a shell would use.
#[derive(Debug, Clone)]
pub struct StartFailure {
    pub message: String,
    /// 127: not found; 126: found but not executable; 125: setup failed.
    pub code: i32,
}

fn fail(code: i32, message: impl Into<String>) -> StartFailure {
    StartFailure {
        message: message.into(),
        code,
    }
}

/// Set everything up and `execve`. Only returns on failure.
pub fn exec(spec: &ProcessSpec, can_setgroups: bool) -> Result<Infallible, StartFailure> {
    if spec.argv.is_empty() {
        return Err(fail(125, "empty command"));
    }
    reset_signals();
    umask(Mode::from_bits_truncate(spec.umask & 0o777));
    for r in &spec.rlimits {
        setrlimit(r.resource.to_nix(), r.soft, r.hard).map_err(|e| {
            fail(
                125,
                format!("setrlimit {:?} {}:{}: {e}", r.resource, r.soft, r.hard),
            )
        })?;
    }
    let keep = caps::resolve(spec.capabilities.as_deref()).map_err(|e| fail(125, e.to_string()))?;
    caps::limit_bounding(&keep).map_err(|e| fail(125, e.to_string()))?;

    let u = &spec.user;
    if can_setgroups {
        let groups: Vec<Gid> = u.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        setgroups(&groups).map_err(|e| fail(125, format!("setgroups {:?}: {e}", u.groups)))?;
    } else if !u.groups.is_empty() {
        return Err(fail(
            125,
            "supplementary groups need a user namespace mapping with ranges (this one is single-id)",
        ));
    }
    setresgid(
        Gid::from_raw(u.gid),
        Gid::from_raw(u.gid),
        Gid::from_raw(u.gid),
    )
    .map_err(|e| {
        fail(
            125,
            format!("setresgid {}: {e} (is gid {} mapped?)", u.gid, u.gid),
        )
    })?;
    setresuid(
        Uid::from_raw(u.uid),
        Uid::from_raw(u.uid),
        Uid::from_raw(u.uid),
    )
    .map_err(|e| {
        fail(
            125,
            format!("setresuid {}: {e} (is uid {} mapped?)", u.uid, u.uid),
        )
    })?;
    caps::finish(&keep).map_err(|e| fail(125, e.to_string()))?;
    // Last: after no_new_privs (set by caps::finish), before execve.
    if spec.seccomp == Seccomp::Default {
        seccomp::install_default().map_err(|e| fail(125, e.to_string()))?;
    }

    let cwd = if spec.cwd.is_empty() {
        "/"
    } else {
        spec.cwd.as_str()
    };
    nix::unistd::chdir(cwd).map_err(|e| fail(125, format!("chdir {cwd}: {e}")))?;

    let mut env: Vec<CString> = Vec::with_capacity(spec.env.len() + 1);
    let mut path_var: Option<&str> = None;
    for kv in &spec.env {
        if let Some(v) = kv.strip_prefix("PATH=") {
            path_var = Some(v);
        }
        env.push(
            CString::new(kv.as_str())
                .map_err(|_| fail(125, format!("NUL byte in environment entry {kv:?}")))?,
        );
    }
    if path_var.is_none() {
        env.push(CString::new(format!("PATH={DEFAULT_PATH}")).expect("no NUL in constant"));
    }
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| {
            CString::new(a.as_str()).map_err(|_| fail(125, format!("NUL byte in argument {a:?}")))
        })
        .collect::<Result<_, _>>()?;

    let prog = &spec.argv[0];
    if prog.contains('/') {
        let e = nix::unistd::execve(&argv[0], &argv, &env).unwrap_err();
        return Err(exec_failure(prog, e));
    }
    // execvp-style search in the step's PATH (not the helper's).
    let mut last = Errno::ENOENT;
    for dir in path_var.unwrap_or(DEFAULT_PATH).split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let Ok(full) = CString::new(format!("{dir}/{prog}")) else {
            continue;
        };
        match nix::unistd::execve(&full, &argv, &env) {
            Err(e @ (Errno::EACCES | Errno::EPERM)) => last = e,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::ENAMETOOLONG) => {}
            Err(e) => return Err(exec_failure(prog, e)),
            Ok(never) => match never {},
        }
    }
    if last == Errno::ENOENT {
        Err(fail(
            127,
            format!("{prog}: executable file not found in $PATH"),
        ))
    } else {
        Err(exec_failure(prog, last))
    }
}

fn exec_failure(prog: &str, e: Errno) -> StartFailure {
    let code = if e == Errno::ENOENT { 127 } else { 126 };
    fail(code, format!("exec {prog}: {}", e.desc()))
}

/// Default dispositions and an empty mask: the helper (a Rust program) ignores
/// SIGPIPE and pid 1 blocks signals; programs must not inherit either. Handled signals
/// are reset by `execve` itself; only ignored ones survive it, so only those (read
/// from `/proc/thread-self/status`) are reset, one `sigaction` each.
pub fn reset_signals() {
    let ignored = ignored_signals().unwrap_or(u64::MAX);
    for n in 1..=64u32 {
        if n == libc::SIGKILL as u32 || n == libc::SIGSTOP as u32 {
            continue;
        }
        if ignored & (1u64 << (n - 1)) != 0 {
            set_default(n as libc::c_int);
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// `rt_sigaction(sig, SIG_DFL)` as a raw system call: glibc refuses the signals it
/// uses internally (32 and 33), which can still arrive ignored from our own parent.
fn set_default(sig: libc::c_int) {
    /// The kernel's `struct sigaction` on x86_64 and aarch64.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let act = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: a valid kernel sigaction with the default handler; no old action asked.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        );
    }
}

/// The `SigIgn` mask of this thread (bit n-1 for signal n), or `None` if unknown.
fn ignored_signals() -> Option<u64> {
    let fd = nix::fcntl::open(
        "/proc/thread-self/status",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    // SAFETY: fresh fd from open.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
    parse_sig_ign(&buf[..len])
}

fn parse_sig_ign(status: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(status).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// Report a start failure on `fd` (the helper's error pipe) or stderr, then `_exit`.
pub fn exit_with(failure: &StartFailure, fd: Option<BorrowedFd<'_>>) -> ! {
    let msg = failure.message.as_bytes();
    match fd {
        Some(fd) => {
            let _ = crate::sys::write_all_fd(fd, msg);
        }
        None => {
            let line = format!("koji-adjutant: {}\n", failure.message);
            let _ = crate::sys::write_all_fd(
                // SAFETY: fd 2 is open for the lifetime of the process (or the write fails).
                unsafe { BorrowedFd::borrow_raw(2) },
                line.as_bytes(),
            );
        }
    }
    // SAFETY: terminate without running the parent's destructors or atexit handlers.
    unsafe { libc::_exit(failure.code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sig_ign_is_parsed() {
        let status =
            b"Name:\tx\nSigBlk:\t0000000000010000\nSigIgn:\t0000000000001000\nSigCgt:\t0\n";
        assert_eq!(parse_sig_ign(status), Some(1 << (libc::SIGPIPE - 1)));
        assert_eq!(parse_sig_ign(b"Name:\tx\n"), None);
        // This test process (Rust) ignores SIGPIPE.
        let m = ignored_signals().unwrap();
        assert_ne!(m & (1 << (libc::SIGPIPE - 1)), 0);
    }
}
