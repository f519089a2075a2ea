//! Starting a container's pid 1: one `clone3` into new user, mount, pid, uts, ipc and
//! (unless it shares the host's) network namespaces from a single-threaded process, the
//! parent side of the handshake
//! (id maps, cgroup, namespace fds), and the re-exec helper that does this on behalf
//! of a multi-threaded daemon.
//!
//! Handshake: the child blocks on `go` until the parent has written its maps and put
//! it in its cgroup; it then sets itself up (see [`super::init`]) and writes `OK` or
//! `ER<message>` on `ready`.

use std::io::{IoSlice, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::cgroups::{Cgroup, CgroupError};
use crate::container::init;
use crate::container::network::NetFiles;
use crate::container::rootfs::RootSource;
use crate::container::spec::{BindMount, Limits, ProcessSpec};
use crate::idmap::IdMapping;
use crate::namespaces::{NsFds, NsKind};
use crate::sys::{self, Context, SysError};
use crate::userns::{self, UsernsError};

/// Everything pid 1 needs, computed by the caller (no I/O on the hot path inside).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LaunchConfig {
    pub id: String,
    pub root: RootSource,
    /// Where the root is mounted (inside the container's mount namespace only).
    pub mountpoint: PathBuf,
    pub hostname: String,
    pub mounts: Vec<BindMount>,
    pub mapping: IdMapping,
    /// A private network namespace (else the host's).
    pub own_netns: bool,
    pub net_files: NetFiles,
    pub tmp_size: Option<u64>,
    /// Put pid 1 in this cgroup (relative path) with these limits.
    pub cgroup: Option<CgroupRequest>,
    /// Clone pid 1 as a sibling (`CLONE_PARENT`), so that it is the child of the
    /// process that started the helper.
    pub clone_parent: bool,
    /// Open pid 1's namespace files for later `exec`s.
    pub open_ns: bool,
    /// `run` mode: pid 1 runs this as its child and exits with its status.
    pub process: Option<ProcessSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CgroupRequest {
    pub path: PathBuf,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("containers must be started from a single-threaded process (this one has {0} threads); use the re-exec helper")]
    NotSingleThreaded(u64),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("user namespace: {0}")]
    Userns(#[from] UsernsError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("container setup failed: {0}")]
    Init(String),
    #[error("container pid 1 exited during setup")]
    InitDied,
    #[error("helper {exe}: {message}")]
    Helper { exe: PathBuf, message: String },
    /// An error reported by the launch helper (already worded).
    #[error("{0}")]
    Remote(String),
}

/// A started pid 1.
#[derive(Debug)]
pub struct Launched {
    pub pid: Pid,
    pub pidfd: OwnedFd,
    pub ns: NsFds,
    /// Run mode: where pid 1 writes the command's exit status (an `i32`, little
    /// endian) before it exits.
    pub status: Option<OwnedFd>,
}

/// Namespaces every container has; `Net` is added when it owns one.
pub fn ns_kinds(own_netns: bool) -> Vec<NsKind> {
    let mut k = vec![
        NsKind::User,
        NsKind::Mount,
        NsKind::Pid,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Cgroup,
    ];
    if own_netns {
        k.push(NsKind::Net);
    }
    k
}

/// Clone pid 1 from this (single-threaded) process and complete the handshake.
pub fn launch(cfg: &LaunchConfig, lifeline: BorrowedFd<'_>) -> Result<Launched, LaunchError> {
    launch_inner(cfg, lifeline).map_err(|(e, _)| e)
}

/// As [`launch`]; on failure also the pid of a killed pid 1 that the caller must reap
/// (with `clone_parent`, it is the caller's caller's child).
fn launch_inner(
    cfg: &LaunchConfig,
    lifeline: BorrowedFd<'_>,
) -> Result<Launched, (LaunchError, Option<Pid>)> {
    let launched = |e: LaunchError| (e, None);
    match sys::thread_count() {
        Some(1) => {}
        Some(n) => return Err(launched(LaunchError::NotSingleThreaded(n))),
        None => {}
    }
    let (go_r, go_w) = sys::pipe().sys("pipe").map_err(|e| launched(e.into()))?;
    let (ready_r, ready_w) = sys::pipe().sys("pipe").map_err(|e| launched(e.into()))?;
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC;
    // A new network namespace is owned by the new user namespace (the kernel makes the
    // user namespace first); pid 1 brings its `lo` up.
    if cfg.own_netns {
        flags |= libc::CLONE_NEWNET;
    }
    if cfg.clone_parent {
        flags |= libc::CLONE_PARENT;
    }
    // With CLONE_PARENT clone3 wants exit_signal 0: the kernel then uses ours (SIGCHLD).
    let exit_signal = if cfg.clone_parent { 0 } else { libc::SIGCHLD };
    // SAFETY: single-threaded (checked above); the child never returns.
    let forked = unsafe { sys::clone3(flags as u64, exit_signal) }
        .sys("clone3")
        .map_err(|e| launched(e.into()))?;
    let (pid, pidfd) = match forked {
        sys::Forked::Child => {
            drop(go_w);
            drop(ready_r);
            init::main(cfg, go_r, ready_w, lifeline)
        }
        sys::Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(go_r);
    drop(ready_w);
    debug!(pid = pid.as_raw(), id = %cfg.id, "cloned container pid 1");

    let abort = |e: LaunchError| {
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        if cfg.clone_parent {
            (e, Some(pid))
        } else {
            let _ = sys::waitpid_exit(pid);
            (e, None)
        }
    };
    if let Err(e) = userns::write_maps(pid, &cfg.mapping) {
        return Err(abort(e.into()));
    }
    if let Some(cg) = &cfg.cgroup {
        if let Err(e) = Cgroup::new(&cg.path).and_then(|c| c.attach(pid, &cg.limits)) {
            return Err(abort(e.into()));
        }
    }
    if let Err(e) = sys::write_all_fd(go_w.as_fd(), b"g") {
        return Err(abort(SysError::new("write go", e).into()));
    }
    let mut ns = NsFds::default();
    if cfg.open_ns {
        // Pid 1 reports "NS" once its cgroup namespace exists (it unshares it after
        // joining its cgroup), and waits for us to open its namespaces.
        let mut hs = [0u8; 2];
        match nix::unistd::read(ready_r.as_raw_fd(), &mut hs) {
            Ok(2) if &hs == b"NS" => {}
            Ok(n) => {
                let mut rest = hs[..n].to_vec();
                rest.extend(sys::read_to_end_fd(ready_r.as_fd()).unwrap_or_default());
                return Err(abort(init_error(&rest)));
            }
            Err(e) => return Err(abort(SysError::new("read ready", e).into())),
        }
        ns = match NsFds::open(pid, &ns_kinds(cfg.own_netns)) {
            Ok(n) => n,
            Err(e) => return Err(abort(e.into())),
        };
        if let Err(e) = sys::write_all_fd(go_w.as_fd(), b"g") {
            return Err(abort(SysError::new("write go", e).into()));
        }
    }
    drop(go_w);
    // "OK" (in run mode the pipe then carries the command's status), or "ER" and a
    // message up to end-of-file.
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match nix::unistd::read(ready_r.as_raw_fd(), &mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(abort(SysError::new("read ready", e).into())),
        }
    }
    if &head[..got] == b"OK" {
        let status = cfg.process.is_some().then_some(ready_r);
        return Ok(Launched {
            pid,
            pidfd,
            ns,
            status,
        });
    }
    let mut msg = head[..got].to_vec();
    msg.extend(sys::read_to_end_fd(ready_r.as_fd()).unwrap_or_default());
    Err(abort(init_error(&msg)))
}

fn init_error(msg: &[u8]) -> LaunchError {
    match msg.get(..2) {
        Some(b"ER") => LaunchError::Init(String::from_utf8_lossy(&msg[2..]).into_owned()),
        _ => LaunchError::InitDied,
    }
}

// ---------------------------------------------------------------------------------------
// The helper: `<exe> __adjutant-helper launch`, fds 3 (config in), 4 (reply socket),
// 5 (lifeline).

const FD_CONFIG: RawFd = 3;
const FD_REPLY: RawFd = 4;
const FD_LIFELINE: RawFd = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    pid: Option<i32>,
    error: Option<String>,
    ns: Vec<NsKind>,
}

/// Main of the launch helper. Returns the process exit code.
pub(crate) fn helper_main() -> i32 {
    // SAFETY: the daemon passes these fds; we own them from here on.
    let (config, reply, lifeline) = unsafe {
        (
            OwnedFd::from_raw_fd(FD_CONFIG),
            OwnedFd::from_raw_fd(FD_REPLY),
            OwnedFd::from_raw_fd(FD_LIFELINE),
        )
    };
    for fd in [&config, &reply, &lifeline] {
        let _ = nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    let send = |r: &Reply, fds: &[RawFd]| {
        let json = serde_json::to_vec(r).unwrap_or_default();
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        let _ = sendmsg::<()>(
            reply.as_raw_fd(),
            &[IoSlice::new(&json)],
            cmsgs,
            MsgFlags::empty(),
            None,
        );
    };
    let cfg: LaunchConfig = match sys::read_to_end_fd(config.as_fd())
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            send(
                &Reply {
                    pid: None,
                    error: Some(format!("reading the launch config: {e}")),
                    ns: vec![],
                },
                &[],
            );
            return 1;
        }
    };
    drop(config);
    match launch_inner(&cfg, lifeline.as_fd()) {
        Ok(l) => {
            let fds: Vec<RawFd> = l.ns.fds.iter().map(|(_, f)| f.as_raw_fd()).collect();
            send(
                &Reply {
                    pid: Some(l.pid.as_raw()),
                    error: None,
                    ns: l.ns.kinds(),
                },
                &fds,
            );
            0
        }
        Err((e, orphan)) => {
            send(
                &Reply {
                    pid: orphan.map(|p| p.as_raw()),
                    error: Some(e.to_string()),
                    ns: vec![],
                },
                &[],
            );
            1
        }
    }
}

/// A `pre_exec` hook that places `moves` (`(source, target)`) at their target fd
/// numbers without close-on-exec. Allocation-free; sources may collide with targets.
pub(crate) fn fd_mover(
    moves: Vec<(RawFd, RawFd)>,
) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
    move || {
        let mut tmp = [-1 as RawFd; 16];
        if moves.len() > tmp.len() {
            return Err(std::io::Error::from_raw_os_error(libc::E2BIG));
        }
        for (i, (src, _)) in moves.iter().enumerate() {
            // SAFETY: fcntl/dup2 are async-signal-safe.
            let r = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 64) };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            tmp[i] = r;
        }
        for (i, (_, dst)) in moves.iter().enumerate() {
            if unsafe { libc::dup2(tmp[i], *dst) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Start pid 1 through the re-exec helper `exe` (from any process, threads or not).
/// Pid 1 becomes a child of this process. With `cgroup`, the helper itself is put in
/// it (before it reads its config, so before it clones): pid 1 is born there, and the
/// helper needs no cgroup code of its own.
pub fn spawn(
    exe: &Path,
    cfg: &LaunchConfig,
    lifeline: BorrowedFd<'_>,
    cgroup: Option<(&Cgroup, &Limits)>,
) -> Result<Launched, LaunchError> {
    let herr = |message: String| LaunchError::Helper {
        exe: exe.to_owned(),
        message,
    };
    let (cfg_r, cfg_w) = sys::pipe().sys("pipe")?;
    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .sys("socketpair")?;
    let mut cmd = Command::new(exe);
    cmd.arg(crate::helper::HELPER_ARG)
        .arg("launch")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let moves = vec![
        (cfg_r.as_raw_fd(), FD_CONFIG),
        (theirs.as_raw_fd(), FD_REPLY),
        (lifeline.as_raw_fd(), FD_LIFELINE),
    ];
    // SAFETY: the hook only calls async-signal-safe functions.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, fd_mover(moves));
    }
    let mut child = cmd.spawn().map_err(|e| herr(format!("spawn: {e}")))?;
    drop(cfg_r);
    drop(theirs);
    if let Some((cg, limits)) = cgroup {
        if let Err(e) = cg.attach(Pid::from_raw(child.id() as i32), limits) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.into());
        }
    }
    let json = serde_json::to_vec(cfg).map_err(|e| herr(format!("encoding config: {e}")))?;
    let mut w = std::fs::File::from(cfg_w);
    if let Err(e) = w.write_all(&json) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(herr(format!("writing config: {e}")));
    }
    drop(w);

    let mut buf = vec![0u8; 64 * 1024];
    let mut cspace = nix::cmsg_space!([RawFd; 8]);
    let (n, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            mine.as_raw_fd(),
            &mut iov,
            Some(&mut cspace),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds: Vec<OwnedFd> = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(r) = c {
                            // SAFETY: received fds are ours.
                            fds.extend(r.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                        }
                    }
                }
                break (msg.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(herr(format!("receiving reply: {e}")));
            }
        }
    };
    let status = child.wait().map_err(|e| herr(format!("wait: {e}")))?;
    if n == 0 {
        return Err(herr(format!("exited without a reply ({status})")));
    }
    let reply: Reply =
        serde_json::from_slice(&buf[..n]).map_err(|e| herr(format!("bad reply: {e}")))?;
    if let Some(e) = reply.error {
        if let Some(p) = reply.pid {
            // A killed pid 1 that was cloned as our child: reap it.
            let _ = sys::waitpid_exit(Pid::from_raw(p));
        }
        return Err(LaunchError::Remote(e));
    }
    let pid = Pid::from_raw(reply.pid.ok_or_else(|| herr("reply without pid".into()))?);
    if fds.len() != reply.ns.len() {
        return Err(herr(format!(
            "got {} namespace fds for {} namespaces",
            fds.len(),
            reply.ns.len()
        )));
    }
    // Pid 1 is our child (CLONE_PARENT) and cannot be reaped by anyone else, so the
    // pid cannot have been reused.
    let pidfd = sys::pidfd_open(pid).sys("pidfd_open")?;
    Ok(Launched {
        pid,
        pidfd,
        ns: NsFds {
            fds: reply.ns.into_iter().zip(fds).collect(),
        },
        status: None,
    })
}
