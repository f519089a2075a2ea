//! A container in the foreground (`koji-adjutant run`): the calling process is
//! single-threaded, so it clones pid 1 itself (no helper re-exec); pid 1 runs the
//! command as its child and exits with its status; signals sent to the caller are
//! forwarded; everything is cleaned up when it ends.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tracing::{debug, warn};

use crate::cgroups::{self, Cgroup, Support};
use crate::container::rootfs::RootSource;
use crate::container::state::{self, ProcId, State};
use crate::container::{
    destroy, launch, launch_config, new_id, prepare, ContainerSpec, CreateError, ProcessSpec,
    Rootfs, RuntimeConfig,
};
use crate::sys;

/// Signals the caller forwards to the container (and pid 1 to the command).
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error(transparent)]
    Runtime(#[from] crate::container::RuntimeError),
    #[error("container {id}: {source}")]
    Launch {
        id: String,
        source: launch::LaunchError,
    },
    #[error("container {id}: waiting for pid 1: {errno}")]
    Wait { id: String, errno: Errno },
}

/// How a foreground run ended.
#[derive(Debug)]
pub struct RunOutcome {
    pub id: String,
    /// The command's exit status (pid 1 exits with it; a signal becomes 128 + n).
    pub exit: sys::Exit,
    /// Without `remove`: the container directory, kept with its upper dir.
    pub kept: Option<PathBuf>,
    /// Why limits were not applied, if they were asked for and cannot be.
    pub limits_unavailable: Option<String>,
}

/// Run `process` in a new container described by `spec` and wait for it. Must be
/// called from a single-threaded process (checked). With `remove`, the container's
/// directory goes too; otherwise its upper directory stays until the next sweep.
pub fn run_foreground(
    rcfg: &RuntimeConfig,
    spec: &ContainerSpec,
    process: ProcessSpec,
    remove: bool,
) -> Result<RunOutcome, RunError> {
    let containers_dir = crate::container::ensure_containers_dir(rcfg)?;
    let id = new_id();
    let dir = containers_dir.join(&id);
    // cgroups only when limits are asked for: a plain run stays as cheap as bwrap.
    let mut limits_unavailable = None;
    let cgroup_path = if spec.limits.is_empty() || !rcfg.use_cgroups {
        None
    } else {
        match cgroups::probe(&rcfg.cgroup_parent) {
            Support::Available(_) => Some(rcfg.cgroup_parent.join(&id)),
            Support::Unavailable(why) => {
                warn!("limits {:?} not applied: {why}", spec.limits);
                limits_unavailable = Some(why);
                None
            }
        }
    };
    // With `remove`, an overlay root keeps its writable layer in memory (a tmpfs in
    // the container's own mount namespace, bounded by the memory limit): nothing is
    // written on the host. A directory (with the state) is only needed to find a
    // cgroup again if we die.
    let in_memory = remove && matches!(spec.rootfs, Rootfs::Overlay { .. });
    let needs_dir = !in_memory || cgroup_path.is_some();
    let st = State {
        id: id.clone(),
        owner: if needs_dir { ProcId::current() } else { None },
        init: None,
        cgroup: cgroup_path.clone(),
        mapping: rcfg.mapping.clone(),
        created: state::now(),
    };
    if needs_dir {
        std::fs::create_dir(&dir).map_err(|source| CreateError::Io {
            id: id.clone(),
            what: "creating",
            path: dir.clone(),
            source,
        })?;
    }
    let cfg = if in_memory {
        let lowers = match &spec.rootfs {
            Rootfs::Overlay { lowers } => lowers.clone(),
            Rootfs::Dir(_) => unreachable!("in_memory implies an overlay"),
        };
        let mountpoint = containers_dir.join(MEMORY_MOUNTPOINT);
        let made = match std::fs::create_dir(&mountpoint) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        };
        let made = made.and_then(|()| {
            if needs_dir {
                state::write(&dir, &st)
            } else {
                Ok(())
            }
        });
        made.map_err(|source| CreateError::Io {
            id: id.clone(),
            what: "preparing",
            path: mountpoint.clone(),
            source,
        })
        .map(|()| {
            let mut c = launch_config(rcfg, &id, spec, mountpoint, cgroup_path.clone());
            c.root = RootSource::OverlayInMemory {
                lowers,
                size: spec.limits.memory,
            };
            c
        })
    } else {
        prepare(rcfg, &id, &dir, spec, &st, cgroup_path.clone())
    };
    let result = cfg.map_err(RunError::from).and_then(|mut cfg| {
        cfg.clone_parent = false;
        cfg.open_ns = false;
        cfg.process = Some(process);
        run_launched(&id, &cfg, needs_dir || cgroup_path.is_some())
    });
    // Cleanup, whatever happened.
    if let Some(p) = &cgroup_path {
        match Cgroup::new(p) {
            Ok(cg) => {
                if let Err(e) = destroy::remove_cgroup(&id, &cg) {
                    warn!("{e}");
                }
            }
            Err(e) => warn!("{e}"),
        }
    }
    let kept = if needs_dir && (remove || result.is_err()) {
        if let Err(e) = destroy::remove_dir(&id, &rcfg.helper_exe, &rcfg.mapping, &dir) {
            warn!("{e}");
        }
        None
    } else if needs_dir {
        Some(dir)
    } else {
        None
    };
    let exit = result?;
    Ok(RunOutcome {
        id,
        exit,
        kept,
        limits_unavailable,
    })
}

/// Where in-memory roots are mounted (in each container's own mount namespace; the
/// directory itself stays empty on the host).
pub const MEMORY_MOUNTPOINT: &str = ".mnt";

/// Run pid 1 and wait for the command. With `wait_for_teardown`, also wait until pid 1
/// is gone (before removing its cgroup or directory); otherwise return as soon as pid 1
/// reports the command's status (its namespaces are torn down after we exit, and its
/// lifeline — us — is gone then anyway).
fn run_launched(
    id: &str,
    cfg: &launch::LaunchConfig,
    wait_for_teardown: bool,
) -> Result<sys::Exit, RunError> {
    let (lifeline_r, lifeline_w) = sys::pipe().map_err(|e| RunError::Wait {
        id: id.to_owned(),
        errno: e,
    })?;
    // Block the forwarded signals before pid 1 exists, read them from a signalfd.
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    let mut old = SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old));
    let restore = Restore(old);
    let launched = launch::launch(cfg, lifeline_r.as_fd()).map_err(|source| RunError::Launch {
        id: id.to_owned(),
        source,
    })?;
    drop(lifeline_r);
    debug!(
        pid = launched.pid.as_raw(),
        "container pid 1 running the command"
    );
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(
        |e| RunError::Wait {
            id: id.to_owned(),
            errno: e,
        },
    )?;
    let mut status = launched.status;
    let exit = loop {
        let mut fds = vec![
            PollFd::new(launched.pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(s) = &status {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(RunError::Wait {
                    id: id.to_owned(),
                    errno: e,
                })
            }
        }
        let status_ready = fds
            .get(2)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        drop(fds);
        while let Ok(Some(info)) = sfd.read_signal() {
            let _ = sys::pidfd_send_signal(launched.pidfd.as_fd(), info.ssi_signo as i32);
        }
        if status_ready {
            // The command's status, sent by pid 1 before it tears the namespaces down.
            let mut b = [0u8; 4];
            if let Some(s) = &status {
                if matches!(nix::unistd::read(s.as_raw_fd(), &mut b), Ok(4)) {
                    let code = i32::from_le_bytes(b);
                    if !wait_for_teardown {
                        break sys::Exit::Code(code);
                    }
                }
            }
            // Read (or end-of-file): from now on only pid 1's exit matters.
            status = None;
        }
        match sys::waitid_pidfd(launched.pidfd.as_fd(), libc::WNOHANG) {
            Ok(Some(e)) => break e,
            Ok(None) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(RunError::Wait {
                    id: id.to_owned(),
                    errno: e,
                })
            }
        }
    };
    drop(lifeline_w);
    drop(restore);
    Ok(exit)
}

struct Restore(SigSet);
impl Drop for Restore {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}
