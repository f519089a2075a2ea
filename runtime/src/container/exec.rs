//! The exec pattern: run a step inside a running container.
//!
//! Once per container the daemon re-executes its binary as `__adjutant-helper exec`
//! (the container's *zygote*), handing it the container's namespace fds. The zygote
//! (single-threaded) joins the container's cgroup, then `setns` into its user, mount,
//! ipc, uts and cgroup namespaces, keeping the pid and network namespaces as fds, and
//! waits on its control socket for fork requests, each carrying a fresh socket for one
//! step. It forks a *step helper* per request and replies with the step helper's pidfd.
//! The step helper joins the pid namespace (for its children: it stays outside, like
//! the zygote) and waits for its step on its socket. A step arrives with its
//! stdin/stdout/stderr fds; the step helper starts a child (the child lands in the pid
//! namespace) that starts a new session, joins the container's network namespace
//! unless the step wants the host's (or gets a fresh one), fixes `/etc/hosts` and
//! `/etc/resolv.conf` if needed, and runs the program (or a copy action). The step
//! helper reports exit code or signal on its socket; `SIGTERM` to it kills the step's
//! process group. The zygote reaps step helpers, and exits when the daemon closes the
//! control socket.
//!
//! So a step costs a fork of a small single-threaded process, not an `execve` of the
//! daemon's binary, `setns` calls and a cgroup migration (on cgroup v1 the first
//! migration in a while waits for an RCU grace period, ~15 ms here). The container
//! also keeps one step helper forked ahead of time: `exec` hands the step to it and
//! has the next one forked in the background. See docs/adr/0007-exec-zygote.md.
//!
//! Zygote fds: 0-2 `/dev/null`, 3 the control socket (`SOCK_SEQPACKET`), 4.. the
//! namespace fds.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::unistd::{fork, setsid, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::container::copy;
use crate::container::network::{self, NetFiles};
use crate::container::process;
use crate::container::spec::ProcessSpec;
use crate::namespaces::{self, NsKind};
use crate::sys;

pub(crate) const FD_CONTROL: RawFd = 3;
pub(crate) const FD_NS_BASE: RawFd = 4;

/// What the helper's child does once inside.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Action {
    Run(ProcessSpec),
    /// Unpack the tar on stdin into `dir`, owned by `uid:gid`.
    TarIn {
        dir: PathBuf,
        uid: u32,
        gid: u32,
    },
    /// Write `src` as a tar on stdout.
    TarOut {
        src: PathBuf,
    },
}

/// First message to a helper: what to join.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Prepare {
    /// Namespace kinds, in the order of the fds from [`FD_NS_BASE`]. `Net` is kept as an
    /// fd, not joined.
    pub ns: Vec<NsKind>,
    /// `cgroup.procs` files to join.
    pub cgroup_procs: Vec<PathBuf>,
    pub can_setgroups: bool,
}

/// The network a step's child ends up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StepNet {
    /// The helper's own (the host's).
    Host,
    /// The container's network namespace.
    Container,
    /// A fresh one with only `lo` (the container itself uses the host's network).
    Fresh,
}

/// Second message: the step (with its stdin, stdout, stderr as SCM_RIGHTS).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Step {
    pub action: Action,
    pub net: StepNet,
    /// Rewrite `/etc/hosts` and `/etc/resolv.conf` before starting.
    pub net_files: Option<NetFiles>,
}

/// What the helper reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Outcome {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Killed on request (SIGTERM to the helper).
    pub killed: bool,
    /// The step could not be started (or the copy failed): message and shell code.
    pub failed: Option<(String, i32)>,
}

const MAX_MSG: usize = 256 * 1024;

fn send(sock: BorrowedFd<'_>, json: &[u8], fds: &[RawFd]) -> nix::Result<()> {
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(json)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            r => return r.map(|_| ()),
        }
    }
}

/// One message and its fds; `Ok(None)` at end-of-file.
fn recv(sock: BorrowedFd<'_>, flags: MsgFlags) -> nix::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    // Learn the message's size first (SOCK_SEQPACKET keeps boundaries): no large
    // buffer to clear for the usual small message.
    let size = loop {
        let mut probe = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut probe)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            None,
            flags | MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
        ) {
            Ok(m) => break m.bytes,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    };
    if size == 0 {
        return Ok(None);
    }
    if size > MAX_MSG {
        return Err(Errno::EMSGSIZE);
    }
    let mut buf = vec![0u8; size];
    let mut cspace = nix::cmsg_space!([RawFd; 4]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cspace),
            flags | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(r) = c {
                            // SAFETY: received fds are ours.
                            fds.extend(r.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                        }
                    }
                }
                let n = msg.bytes;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                return Ok(Some((buf, fds)));
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A fork request to the zygote: the step's socket comes as SCM_RIGHTS.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ForkRequest {}

/// The zygote's answer to a [`ForkRequest`]: the step helper's pidfd as SCM_RIGHTS,
/// or why there is none.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ForkReply {
    pub error: Option<String>,
}

/// Signals a step helper reads from a signalfd (kill requests). Blocked from the
/// zygote's start on, so step helpers inherit them blocked and none is lost before a
/// step runs.
fn kill_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// Main of the exec helper (the container's zygote). Returns the process exit code.
pub(crate) fn helper_main() -> i32 {
    let mut blocked = kill_signals();
    blocked.add(Signal::SIGCHLD);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None);
    // SAFETY: the daemon passes the control socket at FD_CONTROL.
    let sock = unsafe { OwnedFd::from_raw_fd(FD_CONTROL) };
    let _ = sys::cloexec_from(3);
    let prep: Result<Prepare, String> = match recv(sock.as_fd(), MsgFlags::empty()) {
        Ok(Some((b, _))) => {
            serde_json::from_slice(&b).map_err(|e| format!("bad exec helper preparation: {e}"))
        }
        Ok(None) => return 0,
        Err(e) => Err(format!("reading the exec helper preparation: {e}")),
    };
    // A zygote that cannot enter the container still answers: each step it forks
    // reports why.
    let entered = prep.and_then(|prep| {
        // SAFETY: fds FD_NS_BASE.. were placed by the daemon, one per kind.
        let ns: Vec<(NsKind, OwnedFd)> = prep
            .ns
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, unsafe { OwnedFd::from_raw_fd(FD_NS_BASE + i as RawFd) }))
            .collect();
        enter(&prep, ns).map(|kept| (prep, kept))
    });
    let sigchld = {
        let mut s = SigSet::empty();
        s.add(Signal::SIGCHLD);
        s
    };
    let sfd = match SignalFd::with_flags(&sigchld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("exec helper: signalfd: {e}");
            return 1;
        }
    };
    loop {
        let mut fds = [
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return 1,
        }
        let reap = fds[1].revents().is_some_and(|r| !r.is_empty());
        let request = fds[0].revents().is_some_and(|r| !r.is_empty());
        if reap {
            while let Ok(Some(_)) = sfd.read_signal() {}
            while let Ok(st) =
                nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
            {
                if st == nix::sys::wait::WaitStatus::StillAlive {
                    break;
                }
            }
        }
        if !request {
            continue;
        }
        let step_sock = match recv(sock.as_fd(), MsgFlags::MSG_DONTWAIT) {
            // The daemon closed its end (container destroyed, or the daemon is gone).
            Ok(None) => return 0,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(_) => return 1,
            Ok(Some((_, mut fds))) if fds.len() == 1 => match fds.pop() {
                Some(s) => s,
                None => continue,
            },
            Ok(Some(_)) => {
                let r = ForkReply {
                    error: Some("fork request without exactly one socket".into()),
                };
                let _ = send(
                    sock.as_fd(),
                    &serde_json::to_vec(&r).unwrap_or_default(),
                    &[],
                );
                continue;
            }
        };
        // SAFETY: single-threaded; the child ends in `_exit`.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop(sock);
                drop(sfd);
                let code = step_helper(step_sock, &entered);
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => {
                drop(step_sock);
                let (r, pidfd) = match sys::pidfd_open(child) {
                    Ok(p) => (ForkReply::default(), Some(p)),
                    Err(e) => {
                        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                        (
                            ForkReply {
                                error: Some(format!("pidfd_open: {e}")),
                            },
                            None,
                        )
                    }
                };
                let fds: Vec<RawFd> = pidfd.iter().map(|p| p.as_raw_fd()).collect();
                let _ = send(
                    sock.as_fd(),
                    &serde_json::to_vec(&r).unwrap_or_default(),
                    &fds,
                );
            }
            Err(e) => {
                drop(step_sock);
                let r = ForkReply {
                    error: Some(format!("fork: {e}")),
                };
                let _ = send(
                    sock.as_fd(),
                    &serde_json::to_vec(&r).unwrap_or_default(),
                    &[],
                );
            }
        }
    }
}

/// What the zygote keeps after entering: the preparation, the container's network
/// namespace (joined per step) and its pid namespace (joined by each step helper, so
/// that the zygote and the step helpers stay outside it and only steps are inside).
type Entered = Result<(Prepare, Kept), String>;

struct Kept {
    netns: Option<OwnedFd>,
    pidns: Option<OwnedFd>,
}

/// A step helper, forked by the zygote: wait for one step on `sock`, run it, report.
fn step_helper(sock: OwnedFd, entered: &Entered) -> i32 {
    let report = |o: &Outcome| {
        let _ = send(
            sock.as_fd(),
            &serde_json::to_vec(o).unwrap_or_default(),
            &[],
        );
    };
    let failed = |msg: String| Outcome {
        failed: Some((msg, 125)),
        ..Default::default()
    };
    let (prep, kept) = match entered {
        Ok(e) => e,
        Err(msg) => {
            report(&failed(msg.clone()));
            return 0;
        }
    };
    if let Some(p) = &kept.pidns {
        if let Err(e) = nix::sched::setns(p, nix::sched::CloneFlags::CLONE_NEWPID) {
            report(&failed(format!("setns pid namespace: {e}")));
            return 0;
        }
        let _ = nix::unistd::close(p.as_raw_fd());
    }
    // Prepared: wait for the step (or for the daemon to drop us).
    let (step, fds) = match recv(sock.as_fd(), MsgFlags::empty()) {
        Ok(Some((b, fds))) => match serde_json::from_slice::<Step>(&b) {
            Ok(s) => (s, fds),
            Err(e) => {
                report(&failed(format!("bad step: {e}")));
                return 1;
            }
        },
        Ok(None) => return 0,
        Err(e) => {
            report(&failed(format!("reading the step: {e}")));
            return 1;
        }
    };
    if fds.len() != 3 {
        report(&failed(format!("step came with {} fds, not 3", fds.len())));
        return 1;
    }
    match run_step(prep, &step, fds, kept.netns.as_ref()) {
        Ok(o) => report(&o),
        Err(msg) => report(&failed(msg)),
    }
    0
}

/// Join the container's cgroup and its namespaces except network and pid; return
/// those two.
fn enter(prep: &Prepare, ns: Vec<(NsKind, OwnedFd)>) -> Result<Kept, String> {
    // Processes of the container must not be able to ptrace us or reach our (host)
    // executable through /proc.
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE): {e}"))?;
    let me = std::process::id().to_string();
    for f in &prep.cgroup_procs {
        std::fs::write(f, &me).map_err(|e| format!("joining cgroup {}: {e}", f.display()))?;
    }
    namespaces::join(&ns, &[NsKind::Net, NsKind::Pid]).map_err(|e| e.to_string())?;
    let mut kept = Kept {
        netns: None,
        pidns: None,
    };
    for (k, f) in ns {
        match k {
            NsKind::Net => kept.netns = Some(f),
            NsKind::Pid => kept.pidns = Some(f),
            _ => {}
        }
    }
    Ok(kept)
}

fn run_step(
    prep: &Prepare,
    step: &Step,
    stdio: Vec<OwnedFd>,
    netns: Option<&OwnedFd>,
) -> Result<Outcome, String> {
    // Blocked since the zygote started (inherited): a kill request that came early
    // is pending and read now.
    let set = kill_signals();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| format!("sigprocmask: {e}"))?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;
    let (err_r, err_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    if step.net == StepNet::Container && netns.is_none() {
        return Err("the container has no network namespace of its own".into());
    }

    let mut keep = vec![err_w.as_raw_fd()];
    if let Some(n) = netns {
        keep.push(n.as_raw_fd());
    }
    // In the child: stdio in place, every other fd closed (err_r too), then the step.
    let start = || -> ! {
        for (i, fd) in stdio.iter().enumerate() {
            if nix::unistd::dup2(fd.as_raw_fd(), i as RawFd).is_err() {
                unsafe { libc::_exit(125) };
            }
        }
        let _ = sys::close_from_except(3, &keep);
        child_main(prep, step, netns, err_w.as_fd())
    };
    let child = match &step.action {
        // posix_spawn-style: the child shares our memory until its execve (no page
        // tables copied, no copy-on-write faults), and we sleep until then.
        Action::Run(_) => {
            let mut run = || {
                start();
            };
            // SAFETY: single-threaded; `run` ends in execve or _exit and only changes
            // its own fd table, signal state and credentials.
            unsafe { sys::vfork_exec(&mut run) }.map_err(|e| format!("clone(CLONE_VFORK): {e}"))?
        }
        // Copies run our own code to the end: a real fork.
        _ => {
            // SAFETY: single-threaded process.
            match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
                ForkResult::Child => start(),
                ForkResult::Parent { child } => child,
            }
        }
    };
    drop(err_w);
    // The step's stdio must only be held by the step, or readers never see EOF.
    drop(stdio);
    let pidfd = sys::pidfd_open(child).map_err(|e| format!("pidfd_open: {e}"))?;
    let mut out = Outcome::default();
    loop {
        let mut fds = [
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        if fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            while let Ok(Some(_)) = sfd.read_signal() {
                out.killed = true;
                // The child itself first: it may not have called setsid yet, and then
                // its process group does not exist.
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = killpg(child, Signal::SIGKILL);
            }
        }
        // Exited (a zombie keeps the process group id reserved): kill what is left of
        // the step's process group, then reap.
        if let Ok(Some(_)) = sys::waitid_pidfd(pidfd.as_fd(), libc::WNOHANG | libc::WNOWAIT) {
            let _ = killpg(child, Signal::SIGKILL);
            match sys::waitid_pidfd(pidfd.as_fd(), 0) {
                Ok(Some(sys::Exit::Code(c))) => out.code = Some(c),
                Ok(Some(sys::Exit::Signal(s))) => out.signal = Some(s),
                Ok(None) => continue,
                Err(e) => return Err(format!("waitid: {e}")),
            }
            break;
        }
    }
    let msg = sys::read_to_end_fd(err_r.as_fd()).unwrap_or_default();
    if !msg.is_empty() {
        out.failed = Some((
            String::from_utf8_lossy(&msg).into_owned(),
            out.code.unwrap_or(125),
        ));
    }
    Ok(out)
}

fn child_main(prep: &Prepare, step: &Step, netns: Option<&OwnedFd>, err: BorrowedFd<'_>) -> ! {
    let fail = |msg: String, code: i32| -> ! {
        process::exit_with(&process::StartFailure { message: msg, code }, Some(err))
    };
    // Die with the helper (which dies with the daemon or on request).
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if let Err(e) = setsid() {
        fail(format!("setsid: {e}"), 125);
    }
    match (step.net, netns) {
        (StepNet::Container, Some(fd)) => {
            if let Err(e) = nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET) {
                fail(format!("setns network namespace: {e}"), 125);
            }
        }
        (StepNet::Fresh, _) => {
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                fail(format!("unshare(CLONE_NEWNET): {e}"), 125);
            }
            if let Err(e) = network::loopback_up() {
                fail(e.to_string(), 125);
            }
        }
        _ => {}
    }
    if let Some(n) = netns {
        let _ = nix::unistd::close(n.as_raw_fd());
    }
    if let Some(files) = &step.net_files {
        if let Err(e) = files.write_in_current_root() {
            fail(format!("writing /etc/hosts and /etc/resolv.conf: {e}"), 125);
        }
    }
    if !matches!(step.action, Action::Run(_)) {
        // Copies run as container root (files created get mapped owners).
        use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
        let root = (Gid::from_raw(0), Uid::from_raw(0));
        if prep.can_setgroups {
            if let Err(e) = setgroups(&[]) {
                fail(format!("setgroups: {e}"), 125);
            }
        }
        if let Err(e) =
            setresgid(root.0, root.0, root.0).and_then(|_| setresuid(root.1, root.1, root.1))
        {
            fail(format!("becoming container root: {e}"), 125);
        }
    }
    match &step.action {
        Action::Run(spec) => match process::exec(spec, prep.can_setgroups) {
            Err(f) => process::exit_with(&f, Some(err)),
            Ok(never) => match never {},
        },
        Action::TarIn { dir, uid, gid } => {
            let stdin = std::io::stdin().lock();
            match copy::tar_in(dir, *uid, *gid, stdin) {
                Ok(()) => unsafe { libc::_exit(0) },
                Err(e) => fail(e.to_string(), 1),
            }
        }
        Action::TarOut { src } => {
            let stdout = std::io::stdout().lock();
            match copy::tar_out(src, stdout) {
                Ok(()) => unsafe { libc::_exit(0) },
                Err(e) => fail(e.to_string(), 1),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Daemon side.

/// How long the daemon waits for the zygote to fork a step helper (the first fork
/// waits until the zygote has joined the container's cgroup and namespaces).
const FORK_TIMEOUT: Duration = Duration::from_secs(30);

/// A container's zygote: an exec helper that has joined (or is joining) the container
/// and forks step helpers on request.
pub(crate) struct Zygote {
    child: tokio::process::Child,
    pidfd: OwnedFd,
    sock: OwnedFd,
}

/// A step helper forked by the zygote, waiting for its step.
pub(crate) struct Prepared {
    pidfd: OwnedFd,
    sock: OwnedFd,
}

/// A step helper running a step.
pub(crate) struct Running {
    pub pidfd: OwnedFd,
    sock: OwnedFd,
}

impl Zygote {
    /// Start `exe` as the zygote of container `id` whose namespaces are `ns` (the id
    /// is its last argument, for `ps`). Must be called inside a tokio runtime.
    pub fn spawn(
        exe: &std::path::Path,
        id: &str,
        prep: &Prepare,
        ns: &[(NsKind, &OwnedFd)],
    ) -> Result<Zygote, String> {
        let json =
            serde_json::to_vec(prep).map_err(|e| format!("encoding exec preparation: {e}"))?;
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        let mut moves = vec![(theirs.as_raw_fd(), FD_CONTROL)];
        for (i, (_, fd)) in ns.iter().enumerate() {
            moves.push((fd.as_raw_fd(), FD_NS_BASE + i as RawFd));
        }
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg(crate::helper::HELPER_ARG)
            .arg("exec")
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        // SAFETY: the hook only calls async-signal-safe functions.
        unsafe {
            cmd.pre_exec(crate::container::launch::fd_mover(moves));
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawning exec helper {}: {e}", exe.display()))?;
        drop(theirs);
        let pid = child
            .id()
            .ok_or_else(|| "exec helper exited immediately".to_string())?;
        // Our unreaped child: the pid cannot have been reused.
        let pidfd =
            sys::pidfd_open(Pid::from_raw(pid as i32)).map_err(|e| format!("pidfd_open: {e}"))?;
        send(mine.as_fd(), &json, &[]).map_err(|e| format!("sending exec preparation: {e}"))?;
        Ok(Zygote {
            child,
            pidfd,
            sock: mine,
        })
    }

    /// Have the zygote fork a step helper (blocks until it has).
    pub fn fork(&self) -> Result<Prepared, String> {
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        let req = serde_json::to_vec(&ForkRequest {}).map_err(|e| format!("encoding: {e}"))?;
        send(self.sock.as_fd(), &req, &[theirs.as_raw_fd()])
            .map_err(|e| format!("asking the exec helper for a step helper: {e}"))?;
        drop(theirs);
        let deadline = std::time::Instant::now() + FORK_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            if ms == 0 {
                return Err(format!(
                    "the exec helper did not fork a step helper within {FORK_TIMEOUT:?}"
                ));
            }
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => break,
                Err(e) => return Err(format!("waiting for the exec helper: {e}")),
            }
        }
        match recv(self.sock.as_fd(), MsgFlags::MSG_DONTWAIT) {
            Ok(Some((b, mut fds))) => {
                let reply: ForkReply = serde_json::from_slice(&b)
                    .map_err(|e| format!("bad reply from the exec helper: {e}"))?;
                if let Some(e) = reply.error {
                    return Err(format!("exec helper: {e}"));
                }
                let pidfd = fds
                    .pop()
                    .ok_or_else(|| "exec helper replied without a pidfd".to_string())?;
                Ok(Prepared { pidfd, sock: mine })
            }
            Ok(None) => Err("the exec helper exited".into()),
            Err(e) => Err(format!("reading the exec helper's reply: {e}")),
        }
    }

    /// Kill the zygote (it is in the container's cgroup) and wait until it is dead.
    pub fn kill_blocking(self) {
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        // Dead but not reaped (the pid stays ours): tokio reaps it when `child` drops.
        let _ = sys::waitid_pidfd(self.pidfd.as_fd(), libc::WNOWAIT);
        drop(self.child);
    }
}

impl Prepared {
    /// Hand the step and its stdio to the helper.
    pub fn start(self, step: &Step, stdio: [OwnedFd; 3]) -> Result<Running, String> {
        let json = serde_json::to_vec(step).map_err(|e| format!("encoding step: {e}"))?;
        if json.len() > MAX_MSG {
            return Err(format!("step too large ({} bytes)", json.len()));
        }
        let fds: Vec<RawFd> = stdio.iter().map(|f| f.as_raw_fd()).collect();
        // If the helper already failed (and said why), the send fails; the reason is
        // read from the socket by `wait`.
        let _ = send(self.sock.as_fd(), &json, &fds);
        drop(stdio);
        Ok(Running {
            pidfd: self.pidfd,
            sock: self.sock,
        })
    }

    /// Kill a prepared helper that will not be used (it is in the container's cgroup;
    /// the zygote reaps it).
    pub fn discard(self) {
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
    }
}

impl Running {
    /// Ask the helper to kill the step (its process group gets SIGKILL).
    pub fn killer(&self) -> std::io::Result<OwnedFd> {
        self.pidfd.try_clone()
    }

    /// Wait for the helper's report (it sends it just before exiting; the zygote
    /// reaps it).
    pub async fn wait(self) -> Result<Outcome, String> {
        let Running { sock, .. } = self;
        nix::fcntl::fcntl(
            sock.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| format!("exec helper socket: {e}"))?;
        // SAFETY: the OwnedFd is moved into the AsyncFd and stays open and unchanged
        // for its whole life.
        let afd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(sock, tokio::io::Interest::READABLE)
        }
        .map_err(|e| format!("exec helper socket: {e}"))?;
        loop {
            let mut guard = afd
                .readable()
                .await
                .map_err(|e| format!("exec helper socket: {e}"))?;
            match recv(afd.get_ref().as_fd(), MsgFlags::MSG_DONTWAIT) {
                Ok(Some((b, _))) => {
                    return serde_json::from_slice(&b)
                        .map_err(|e| format!("bad status from the exec helper: {e}"))
                }
                // Every copy of the helper's end is closed without a report: it died.
                Ok(None) => return Err("exec helper exited without a status".into()),
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(e) => return Err(format!("reading the exec helper's status: {e}")),
            }
        }
    }
}

/// How long output pipes may stay open after the step ended (held by a process that
/// left the step's process group) before they are abandoned.
pub(crate) const OUTPUT_GRACE: Duration = Duration::from_secs(2);
