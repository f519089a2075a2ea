//! The exec pattern: run a step inside a running container.
//!
//! The daemon re-executes its binary as `__adjutant-helper exec` with the container's
//! namespace fds; the helper (single-threaded) joins the container's cgroup, then
//! `setns` into its user, mount, pid, ipc, uts and cgroup namespaces (and its network
//! namespace unless the step asked for the host's), forks (the child lands in the pid
//! namespace) and waits. The child starts a new session, fixes `/etc/hosts` and
//! `/etc/resolv.conf` for the step's network if needed, and runs the program (or a
//! copy action). The helper reports exit code or signal on a status pipe; `SIGTERM`
//! to the helper kills the step's whole process group.
//!
//! Helper fds: 0-2 stdio, 3 config (JSON), 4 status (JSON out), 5.. namespace fds.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{fork, setsid, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::container::copy;
use crate::container::network::{self, NetFiles};
use crate::container::process;
use crate::container::spec::ProcessSpec;
use crate::namespaces::{self, NsKind};
use crate::sys;

pub(crate) const FD_CONFIG: RawFd = 3;
pub(crate) const FD_STATUS: RawFd = 4;
pub(crate) const FD_NS_BASE: RawFd = 5;

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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ExecConfig {
    pub action: Action,
    /// Namespace kinds, in the order of the fds from [`FD_NS_BASE`].
    pub ns: Vec<NsKind>,
    /// Join the container's network namespace (else stay in the helper's).
    pub join_net: bool,
    /// Give the step a fresh network namespace with only `lo` (the container itself
    /// uses the host network, the step asked for none).
    pub new_net: bool,
    /// `cgroup.procs` files to join before entering.
    pub cgroup_procs: Vec<PathBuf>,
    /// Rewrite `/etc/hosts` and `/etc/resolv.conf` before starting.
    pub net_files: Option<NetFiles>,
    pub can_setgroups: bool,
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

/// Main of the exec helper. Returns the process exit code.
pub(crate) fn helper_main() -> i32 {
    // A kill request may come at once: hold it until we can act on it.
    let mut early = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        early.add(s);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&early), None);
    // SAFETY: the daemon passes these fds.
    let (config, status) = unsafe {
        (
            OwnedFd::from_raw_fd(FD_CONFIG),
            OwnedFd::from_raw_fd(FD_STATUS),
        )
    };
    let _ = sys::cloexec_from(3);
    let report = |o: &Outcome| {
        let _ = sys::write_all_fd(status.as_fd(), &serde_json::to_vec(o).unwrap_or_default());
    };
    let failed = |msg: String| Outcome {
        failed: Some((msg, 125)),
        ..Default::default()
    };
    let cfg: ExecConfig = match sys::read_to_end_fd(config.as_fd())
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            report(&failed(format!("reading the exec config: {e}")));
            return 1;
        }
    };
    drop(config);
    // SAFETY: fds FD_NS_BASE.. were placed by the daemon, one per kind.
    let ns: Vec<(NsKind, OwnedFd)> = cfg
        .ns
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, unsafe { OwnedFd::from_raw_fd(FD_NS_BASE + i as RawFd) }))
        .collect();
    match enter_and_run(&cfg, ns, status.as_raw_fd()) {
        Ok(o) => report(&o),
        Err(msg) => report(&failed(msg)),
    }
    0
}

fn enter_and_run(
    cfg: &ExecConfig,
    ns: Vec<(NsKind, OwnedFd)>,
    status_fd: RawFd,
) -> Result<Outcome, String> {
    // Processes of the container must not be able to ptrace us or reach our (host)
    // executable through /proc.
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE): {e}"))?;
    let me = std::process::id().to_string();
    for f in &cfg.cgroup_procs {
        std::fs::write(f, &me).map_err(|e| format!("joining cgroup {}: {e}", f.display()))?;
    }
    let skip: &[NsKind] = if cfg.join_net { &[] } else { &[NsKind::Net] };
    namespaces::join(&ns, skip).map_err(|e| e.to_string())?;
    drop(ns);

    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| format!("sigprocmask: {e}"))?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;
    let (err_r, err_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;

    // SAFETY: single-threaded process.
    let child = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(err_r);
            let _ = sys::close_from_except(3, &[err_w.as_raw_fd()]);
            let _ = status_fd;
            child_main(cfg, err_w.as_fd())
        }
        ForkResult::Parent { child } => child,
    };
    drop(err_w);
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

fn child_main(cfg: &ExecConfig, err: BorrowedFd<'_>) -> ! {
    let fail = |msg: String, code: i32| -> ! {
        process::exit_with(&process::StartFailure { message: msg, code }, Some(err))
    };
    // Die with the helper (which dies with the daemon or on request).
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if let Err(e) = setsid() {
        fail(format!("setsid: {e}"), 125);
    }
    if cfg.new_net {
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
            fail(format!("unshare(CLONE_NEWNET): {e}"), 125);
        }
        if let Err(e) = network::loopback_up() {
            fail(e.to_string(), 125);
        }
    }
    if let Some(files) = &cfg.net_files {
        if let Err(e) = files.write_in_current_root() {
            fail(format!("writing /etc/hosts and /etc/resolv.conf: {e}"), 125);
        }
    }
    if !matches!(cfg.action, Action::Run(_)) {
        // Copies run as container root (files created get mapped owners).
        use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
        let root = (Gid::from_raw(0), Uid::from_raw(0));
        if cfg.can_setgroups {
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
    match &cfg.action {
        Action::Run(spec) => match process::exec(spec, cfg.can_setgroups) {
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

/// A running helper: its process, a pidfd for signalling it, and the status pipe.
pub(crate) struct Spawned {
    pub child: tokio::process::Child,
    pub pidfd: OwnedFd,
    status: OwnedFd,
}

impl Spawned {
    /// Wait for the helper and read its report.
    pub async fn wait(mut self) -> Result<Outcome, String> {
        let st = self
            .child
            .wait()
            .await
            .map_err(|e| format!("waiting for the exec helper: {e}"))?;
        // The helper has exited, so the pipe's only writer is gone: this read is
        // immediate.
        let mut buf = Vec::new();
        std::fs::File::from(self.status)
            .read_to_end(&mut buf)
            .map_err(|e| format!("reading the exec helper's status: {e}"))?;
        if buf.is_empty() {
            // A kill request that arrived before the helper blocked SIGTERM: the
            // step never started.
            if std::os::unix::process::ExitStatusExt::signal(&st) == Some(libc::SIGTERM) {
                return Ok(Outcome {
                    killed: true,
                    ..Default::default()
                });
            }
            return Err(format!("exec helper exited without a status ({st})"));
        }
        serde_json::from_slice(&buf).map_err(|e| format!("bad status from the exec helper: {e}"))
    }
}

/// Start the exec helper `exe` with this config, namespace fds and stdio.
pub(crate) fn spawn(
    exe: &std::path::Path,
    cfg: &ExecConfig,
    ns: &[(NsKind, &OwnedFd)],
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<Spawned, String> {
    let json = serde_json::to_vec(cfg).map_err(|e| format!("encoding exec config: {e}"))?;
    let (cfg_r, cfg_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    // The config is small; it fits the pipe buffer, so write it before spawning.
    if json.len() > 60 * 1024 {
        return Err(format!("exec config too large ({} bytes)", json.len()));
    }
    sys::write_all_fd(cfg_w.as_fd(), &json).map_err(|e| format!("writing exec config: {e}"))?;
    drop(cfg_w);
    let (status_r, status_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    let mut moves = vec![
        (cfg_r.as_raw_fd(), FD_CONFIG),
        (status_w.as_raw_fd(), FD_STATUS),
    ];
    for (i, (_, fd)) in ns.iter().enumerate() {
        moves.push((fd.as_raw_fd(), FD_NS_BASE + i as RawFd));
    }
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(crate::helper::HELPER_ARG)
        .arg("exec")
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(false);
    // SAFETY: the hook only calls async-signal-safe functions.
    unsafe {
        cmd.pre_exec(crate::container::launch::fd_mover(moves));
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("spawning exec helper {}: {e}", exe.display()))?;
    drop(cfg_r);
    drop(status_w);
    let pid = child
        .id()
        .ok_or_else(|| "exec helper exited immediately".to_string())?;
    // Our unreaped child: the pid cannot have been reused.
    let pidfd =
        sys::pidfd_open(Pid::from_raw(pid as i32)).map_err(|e| format!("pidfd_open: {e}"))?;
    Ok(Spawned {
        child,
        pidfd,
        status: status_r,
    })
}

/// How long output pipes may stay open after the step ended (held by a process that
/// left the step's process group) before they are abandoned.
pub(crate) const OUTPUT_GRACE: Duration = Duration::from_secs(2);
