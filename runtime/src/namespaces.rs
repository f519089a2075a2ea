//! The namespaces a container is made of, and joining them (`setns`).

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::sys::{Context, SysError};

/// One kind of namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsKind {
    User,
    Mount,
    Pid,
    Net,
    Uts,
    Ipc,
    Cgroup,
}

impl NsKind {
    /// Join order: the user namespace first (it grants the capabilities needed for
    /// the others), the mount namespace before those whose files live in it.
    pub const JOIN_ORDER: [NsKind; 7] = [
        NsKind::User,
        NsKind::Mount,
        NsKind::Pid,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Cgroup,
        NsKind::Net,
    ];

    pub fn flag(self) -> CloneFlags {
        match self {
            NsKind::User => CloneFlags::CLONE_NEWUSER,
            NsKind::Mount => CloneFlags::CLONE_NEWNS,
            NsKind::Pid => CloneFlags::CLONE_NEWPID,
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        }
    }

    /// Name under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::User => "user",
            NsKind::Mount => "mnt",
            NsKind::Pid => "pid",
            NsKind::Net => "net",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::Cgroup => "cgroup",
        }
    }
}

/// Open namespace files of a process, in join order.
#[derive(Debug, Default)]
pub struct NsFds {
    pub fds: Vec<(NsKind, OwnedFd)>,
}

impl NsFds {
    /// Open `/proc/<pid>/ns/<kind>` for each kind (the caller needs ptrace access to
    /// `pid`, i.e. the process is still dumpable or the caller is privileged).
    pub fn open(pid: Pid, kinds: &[NsKind]) -> Result<NsFds, SysError> {
        let mut fds = Vec::with_capacity(kinds.len());
        for &k in kinds {
            let path = format!("/proc/{}/ns/{}", pid.as_raw(), k.proc_name());
            let fd = open(
                path.as_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .sys_at("open", &path)?;
            // SAFETY: open returned a fresh fd that we now own.
            fds.push((k, unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }));
        }
        Ok(NsFds { fds })
    }

    pub fn get(&self, kind: NsKind) -> Option<&OwnedFd> {
        self.fds.iter().find(|(k, _)| *k == kind).map(|(_, f)| f)
    }

    pub fn kinds(&self) -> Vec<NsKind> {
        self.fds.iter().map(|(k, _)| *k).collect()
    }
}

/// `setns` into each namespace of `fds` (in [`NsKind::JOIN_ORDER`]) except `skip`.
/// The process must be single-threaded (a requirement of joining a user namespace).
pub fn join(fds: &[(NsKind, OwnedFd)], skip: &[NsKind]) -> Result<(), SysError> {
    for kind in NsKind::JOIN_ORDER {
        if skip.contains(&kind) {
            continue;
        }
        if let Some((_, fd)) = fds.iter().find(|(k, _)| *k == kind) {
            nix::sched::setns(fd.as_fd(), kind.flag()).map_err(|e| SysError {
                call: "setns",
                path: Some(format!("{} namespace", kind.proc_name()).into()),
                errno: e,
            })?;
        }
    }
    Ok(())
}
