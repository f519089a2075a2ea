//! The container's pid 1, from the moment it is cloned into its new namespaces.
//!
//! Read top to bottom, this is the whole in-container start sequence:
//! `lo` up → wait for the parent (maps written, cgroup joined) → become root of the user
//! namespace → new cgroup namespace → `/` rslave → root (overlay) → `/proc`, `/dev`,
//! `/tmp` → `/sys`, binds → `/etc/hosts`, `/etc/resolv.conf` → hostname →
//! `pivot_root` → mask `/proc` and `/sys` paths → not dumpable → signals → fd sweep →
//! (run mode: fork the command) → report ready → reap children until the command
//! exits or the holder of the lifeline goes away.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{
    kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Pid, Uid};

use crate::container::launch::LaunchConfig;
use crate::container::{mounts, network, process, rootfs};
use crate::seccomp::{self, Seccomp};
use crate::sys;
use crate::userns;

/// Signals pid 1 forwards to the command in `run` mode.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Exit code of pid 1 when the lifeline holder went away.
pub const LIFELINE_EXIT: i32 = 137;

/// Entry point of the cloned child. Never returns.
pub fn main(cfg: &LaunchConfig, go: OwnedFd, ready: OwnedFd, lifeline: BorrowedFd<'_>) -> ! {
    // `lo` needs no id maps (we hold every capability in our user namespace, which owns
    // the network namespace), so it comes up while the parent writes them. A failure is
    // reported after `go`, as every setup error.
    let lo = if cfg.own_netns {
        network::loopback_up()
    } else {
        Ok(())
    };
    // Run mode: the command's seccomp filter is installed here, on pid 1 (which needs
    // none of the calls it denies), while the parent writes the maps; the command
    // inherits it. Installing a filter costs ~0.1 ms of kernel time (the JIT) on this
    // path, the critical one. Allowed without no_new_privs: we hold CAP_SYS_ADMIN in
    // our user namespace.
    let filtered = match &cfg.process {
        Some(p) if p.seccomp == Seccomp::Default => {
            Some(seccomp::install_default().map_err(|e| e.to_string()))
        }
        _ => None,
    };
    // Wait until the parent has written the id maps and placed us in the cgroup.
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(go.as_raw_fd(), &mut b) {
            Ok(1) => break,
            Err(Errno::EINTR) => continue,
            // The parent gave up (and reports its own error).
            _ => unsafe { libc::_exit(125) },
        }
    }
    match lo
        .map_err(|e| format!("bringing up lo: {e}"))
        .and_then(|()| filtered.transpose().map(|_| ()))
        .and_then(|()| setup(cfg, lifeline, &ready, &go))
    {
        Ok((sfd, main_child)) => {
            let _ = sys::write_all_fd(ready.as_fd(), b"OK");
            let ready = main_child.is_some().then_some(ready);
            let code = reap(main_child, lifeline, &sfd);
            // Run mode: the command's status goes to the parent before the namespaces
            // are torn down (which our exit then does), as bwrap's pid 1 does.
            if let Some(r) = &ready {
                let _ = sys::write_all_fd(r.as_fd(), &code.to_le_bytes());
            }
            unsafe { libc::_exit(code) }
        }
        Err(msg) => {
            let mut m = b"ER".to_vec();
            m.extend_from_slice(msg.as_bytes());
            let _ = sys::write_all_fd(ready.as_fd(), &m);
            unsafe { libc::_exit(125) }
        }
    }
}

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn setup(
    cfg: &LaunchConfig,
    lifeline: BorrowedFd<'_>,
    ready: &OwnedFd,
    go: &OwnedFd,
) -> Result<(SignalFd, Option<Pid>), String> {
    // Root of the user namespace. With a range mapping, drop the supplementary groups
    // inherited from the host (they show up as the overflow gid).
    let setgroups_ok = userns::can_setgroups(&cfg.mapping);
    if setgroups_ok {
        ctx(setgroups(&[]), "setgroups []")?;
    }
    ctx(
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)),
        "setresgid 0",
    )?;
    ctx(
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)),
        "setresuid 0",
    )?;

    // A cgroup namespace rooted at the container's cgroup (we were moved into it
    // before being released). Kernels without cgroup namespaces: skip.
    match unshare(CloneFlags::CLONE_NEWCGROUP) {
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(e) => return Err(format!("unshare(CLONE_NEWCGROUP): {e}")),
    }
    // All namespaces exist now: let the parent open them (we are still dumpable) and
    // wait until it has.
    if cfg.open_ns {
        ctx(sys::write_all_fd(ready.as_fd(), b"NS"), "handshake")?;
        let mut b = [0u8; 1];
        loop {
            match nix::unistd::read(go.as_raw_fd(), &mut b) {
                Ok(1) => break,
                Err(Errno::EINTR) => continue,
                _ => unsafe { libc::_exit(125) },
            }
        }
    }

    // Nothing we mount propagates to the host; host unmounts still reach us.
    ctx(
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        ),
        "making / a recursive slave",
    )?;

    let root = ctx(
        rootfs::mount_root(&cfg.root, &cfg.mountpoint),
        "mounting the root filesystem",
    )?;
    let std_opts = mounts::Standard {
        own_netns: cfg.own_netns,
        tty_gid: cfg.mapping.host_gid(5).is_some(),
        tmp_size: cfg.tmp_size,
    };
    ctx(
        mounts::standard(root.as_fd(), &std_opts),
        "mounting /proc, /dev, /tmp",
    )?;
    ctx(mounts::sysfs(root.as_fd(), &std_opts), "mounting /sys")?;
    ctx(mounts::binds(root.as_fd(), &cfg.mounts), "bind mount")?;
    let etc = ctx(mounts::ensure_dir(root.as_fd(), Path::new("/etc")), "/etc")?;
    ctx(
        cfg.net_files.write_at(&etc),
        "writing /etc/hosts and /etc/resolv.conf",
    )?;
    drop(etc);
    ctx(nix::unistd::sethostname(&cfg.hostname), "sethostname")?;
    ctx(rootfs::pivot(&root), "pivot_root")?;
    drop(root);
    ctx(mounts::mask(), "masking /proc and /sys paths")?;

    // From here on, processes of the container (same uid) cannot ptrace us or open our
    // /proc entries (our executable is the host's binary).
    ctx(
        nix::sys::prctl::set_dumpable(false),
        "prctl(PR_SET_DUMPABLE)",
    )?;

    if cfg.process.is_none() {
        // Daemon mode: pid 1 talks to nobody; its stdio must not pin the caller's pipes.
        let null = ctx(
            nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDWR,
                nix::sys::stat::Mode::empty(),
            ),
            "open /dev/null",
        )?;
        for fd in 0..3 {
            ctx(nix::unistd::dup2(null, fd), "dup2 /dev/null")?;
        }
        if null > 2 {
            let _ = nix::unistd::close(null);
        }
    }

    // Signals: real (no-op) handlers so pid 1 does not drop them, blocked, read from a
    // signalfd.
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(s);
    }
    let act = SigAction::new(
        SigHandler::Handler(noop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in set.iter() {
        // SAFETY: installing a handler that does nothing.
        ctx(unsafe { sigaction(s, &act) }, "sigaction")?;
    }
    ctx(
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None),
        "sigprocmask",
    )?;
    let sfd = ctx(
        SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK),
        "signalfd",
    )?;

    // Keep only stdio, the lifeline, the ready pipe and the signalfd.
    let _ = go;
    ctx(
        sys::close_from_except(
            3,
            &[
                lifeline.as_raw_fd(),
                ready.as_raw_fd(),
                sfd.as_fd().as_raw_fd(),
            ],
        ),
        "close_range",
    )?;

    let main_child = match &cfg.process {
        None => None,
        Some(spec) => {
            // posix_spawn-style: the command's process shares our memory until its
            // execve (no page tables copied, no copy-on-write faults).
            // The filter installed above is inherited: not a second one.
            let mut spec = spec.clone();
            spec.seccomp = Seccomp::Unconfined;
            let mut run = || match process::exec(&spec, setgroups_ok) {
                Err(f) => process::exit_with(&f, None),
                Ok(never) => match never {},
            };
            // SAFETY: single-threaded; `run` ends in execve or _exit; our signal
            // handlers are no-ops.
            Some(ctx(
                unsafe { sys::vfork_exec(&mut run) },
                "clone(CLONE_VFORK)",
            )?)
        }
    };
    Ok((sfd, main_child))
}

extern "C" fn noop(_: libc::c_int) {}

/// Reap every child; forward signals to the command; return its status when it exits
/// (or [`LIFELINE_EXIT`] when the lifeline's writer is gone).
fn reap(main: Option<Pid>, lifeline: BorrowedFd<'_>, sfd: &SignalFd) -> i32 {
    loop {
        if let Some(code) = reap_all(main) {
            return code;
        }
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(lifeline, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return LIFELINE_EXIT,
        }
        let life = fds[1].revents().unwrap_or(PollFlags::empty());
        let sig = fds[0].revents().unwrap_or(PollFlags::empty());
        if life.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLIN) {
            let mut b = [0u8; 16];
            match nix::unistd::read(lifeline.as_raw_fd(), &mut b) {
                Ok(n) if n > 0 => {} // nobody writes, but tolerate it
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                _ => return LIFELINE_EXIT,
            }
        }
        if sig.contains(PollFlags::POLLIN) {
            while let Ok(Some(info)) = sfd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGCHLD {
                    continue;
                }
                if let (Some(m), Ok(s)) = (main, Signal::try_from(signo)) {
                    let _ = kill(m, s);
                }
            }
        }
    }
}

fn reap_all(main: Option<Pid>) -> Option<i32> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, c)) if Some(p) == main => return Some(c),
            Ok(WaitStatus::Signaled(p, s, _)) if Some(p) == main => return Some(128 + s as i32),
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => return None, // ECHILD: nothing to reap
        }
    }
}
