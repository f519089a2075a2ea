//! The default seccomp filter of container processes: a short deny list, answered with
//! `EPERM`, of system calls a build has no use for and that reach kernel code not
//! confined by namespaces — the kernel keyring (not namespaced), BPF, perf events,
//! userfaultfd, io_uring, kexec, modules, swap, accounting, the clock, quotas,
//! `open_by_handle_at`, port I/O. Everything else is allowed: most of these are
//! already refused for want of a capability; the filter keeps them refused if a step
//! is given more capabilities, and closes the few that need none (keyring, io_uring,
//! userfaultfd, perf, BPF where the host's sysctls allow them). Nested user namespaces
//! stay allowed (some packages' tests use them); docs/security.md.
//!
//! Compiled with `seccompiler` (pure Rust, from Firecracker); applied last before
//! `execve`, after `no_new_privs`.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use serde::{Deserialize, Serialize};

/// Whether a process gets the filter (`podman run --security-opt seccomp=unconfined`
/// is [`Seccomp::Unconfined`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seccomp {
    #[default]
    Default,
    Unconfined,
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("building the seccomp filter: {0}")]
    Build(String),
    #[error("installing the seccomp filter: {0}")]
    Install(String),
}

/// The denied system calls, by name (as docs/security.md lists them) and number.
pub fn denied() -> Vec<(&'static str, i64)> {
    let mut v = vec![
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("acct", libc::SYS_acct),
        ("reboot", libc::SYS_reboot),
        ("settimeofday", libc::SYS_settimeofday),
        ("clock_settime", libc::SYS_clock_settime),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("adjtimex", libc::SYS_adjtimex),
        ("quotactl", libc::SYS_quotactl),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        ("iopl", libc::SYS_iopl),
        ("ioperm", libc::SYS_ioperm),
        ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ]);
    v
}

/// The compiled default filter.
pub fn default_filter() -> Result<BpfProgram, SeccompError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SeccompError::Build(format!("{e:?}")))?;
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = denied()
        .into_iter()
        .map(|(_, nr)| (nr, Vec::new()))
        .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| SeccompError::Build(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| SeccompError::Build(e.to_string()))
}

/// Write the default filter as raw BPF (an array of `struct sock_filter`, native
/// endian) to `out`; the exit code of the `seccomp-bpf` helper.
pub fn write_default_bpf(out: &mut impl std::io::Write) -> i32 {
    let prog = match default_filter() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut bytes = Vec::with_capacity(prog.len() * 8);
    for insn in &prog {
        bytes.extend_from_slice(&insn.code.to_ne_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend_from_slice(&insn.k.to_ne_bytes());
    }
    match out.write_all(&bytes).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("writing the seccomp filter: {e}");
            1
        }
    }
}

/// Compile and install the default filter on the calling thread (see [`install`]).
pub fn install_default() -> Result<(), SeccompError> {
    install(&default_filter()?)
}

/// Install `prog` on the calling thread (`no_new_privs` must be set, or the thread
/// hold `CAP_SYS_ADMIN`).
pub fn install(prog: &BpfProgram) -> Result<(), SeccompError> {
    seccompiler::apply_filter(prog).map_err(|e| SeccompError::Install(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_compiles_and_lists_distinct_calls() {
        let prog = default_filter().unwrap();
        assert!(!prog.is_empty());
        let d = denied();
        let mut nrs: Vec<i64> = d.iter().map(|(_, n)| *n).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), d.len(), "a number listed twice");
        assert!(d.iter().any(|(n, _)| *n == "keyctl"));
    }

    #[test]
    fn the_raw_bpf_is_the_program() {
        let mut out = Vec::new();
        assert_eq!(write_default_bpf(&mut out), 0);
        let prog = default_filter().unwrap();
        assert_eq!(out.len(), prog.len() * 8);
        // the last instruction returns ALLOW or ERRNO: a `ret` (BPF_RET | BPF_K = 0x06)
        let last = &out[out.len() - 8..];
        assert_eq!(u16::from_ne_bytes([last[0], last[1]]), 0x06);
    }

    #[test]
    fn an_installed_filter_refuses_keyctl_with_eperm() {
        // In a child: a filter cannot be removed from this test thread. The program is
        // built before the fork (the child of a threaded process must not allocate).
        let prog = default_filter().unwrap();
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| {
                    nix::sys::prctl::set_no_new_privs().ok()?;
                    // before: the session keyring's id (or ENOKEY etc., never EPERM)
                    let before = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) };
                    let before_errno = nix::errno::Errno::last_raw();
                    if before < 0 && before_errno == libc::EPERM {
                        return Some(3);
                    }
                    install(&prog).ok()?;
                    let after = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) };
                    let errno = nix::errno::Errno::last_raw();
                    // and an allowed call still works
                    let pid = unsafe { libc::syscall(libc::SYS_getpid) };
                    Some(if after == -1 && errno == libc::EPERM && pid > 0 {
                        0
                    } else {
                        4
                    })
                })()
                .unwrap_or(2);
                unsafe { libc::_exit(code) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
