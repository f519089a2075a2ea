//! Containers: create from layer directories, run steps in them, copy files in and
//! out, read their resource usage, destroy them. See docs/runtime.md.
//!
//! ```text
//! Runtime::new(RuntimeConfig)            lifeline pipe, cgroup probe
//!   .sweep()                             what a crashed daemon left
//!   .create(ContainerSpec) -> Container  re-exec helper clones pid 1 (launch.rs, init.rs)
//!      .exec(ExecSpec) -> ExecHandle     re-exec helper setns + fork (exec.rs)
//!      .copy_to / .copy_from             same helper, tar streams (copy.rs)
//!      .usage()                          cgroup stats
//!      .destroy()                        kill pid namespace, cgroup, upper dir (destroy.rs)
//! ```
//!
//! Containers die with the process holding the [`Runtime`]: every pid 1 watches the
//! read end of a pipe whose only write end the runtime holds, and exits (taking its
//! pid namespace with it) when that end closes — whichever way the holder dies.

pub mod copy;
pub mod destroy;
pub mod exec;
pub mod init;
pub mod launch;
pub mod mounts;
pub mod network;
pub mod process;
pub mod rootfs;
pub mod run;
pub mod spec;
pub mod state;
pub mod sweep;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::cgroups::{self, Cgroup, Support};
use crate::idmap::{IdMapping, MappingMode};
use crate::namespaces::{NsFds, NsKind};
use crate::sys;

pub use destroy::DestroyError;
pub use network::NetFiles;
pub use spec::*;
pub use sweep::SweepReport;

use launch::{CgroupRequest, LaunchConfig};
use rootfs::RootSource;
use state::{ProcId, State};

/// How a [`Runtime`] is set up.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The store root; containers live under `<root>/containers/<id>/`.
    pub root: PathBuf,
    pub mapping: IdMapping,
    /// Why the mapping is degraded or small (shown in logs and status).
    pub mapping_warning: Option<String>,
    /// cgroup parent, relative to each hierarchy root (default `koji-adjutant`).
    pub cgroup_parent: PathBuf,
    /// Give containers cgroups when possible (usage is then always available).
    pub use_cgroups: bool,
    /// The binary to re-execute as helper (default `/proc/self/exe`; its `main` must
    /// call [`crate::helper::dispatch`] first).
    pub helper_exe: PathBuf,
}

impl RuntimeConfig {
    pub fn new(root: impl Into<PathBuf>, mapping: IdMapping) -> Self {
        RuntimeConfig {
            root: root.into(),
            mapping,
            mapping_warning: None,
            cgroup_parent: PathBuf::from("koji-adjutant"),
            use_cgroups: true,
            helper_exe: PathBuf::from("/proc/self/exe"),
        }
    }

    /// With the mapping chosen for the current user ([`crate::userns::detect`]; as
    /// root the range `100000:65536`).
    pub fn detect(root: impl Into<PathBuf>) -> Result<Self, crate::idmap::IdMapError> {
        let d = crate::userns::detect((100_000, 65_536))?;
        let mut c = RuntimeConfig::new(root, d.mapping);
        c.mapping_warning = d.warning;
        Ok(c)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} (mode {mode:o}) cannot be traversed by container root (host uid {uid}); \
         make it world-searchable (chmod o+x) or choose another root"
    )]
    NotTraversable { path: PathBuf, mode: u32, uid: u32 },
    #[error(transparent)]
    Sys(#[from] sys::SysError),
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("creating container {id}: {what} {path}: {source}")]
    Io {
        id: String,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("creating container {id}: {source}")]
    Launch {
        id: String,
        source: launch::LaunchError,
    },
    #[error("creating container {id}: {source}")]
    Cgroup {
        id: String,
        source: cgroups::CgroupError,
    },
    #[error("creating container: {0}")]
    Invalid(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("container {0} is destroyed")]
    Destroyed(String),
    #[error("container {id}: {argv0}: {message}")]
    Start {
        id: String,
        argv0: String,
        message: String,
        /// Shell code (127 not found, 126 not executable, 125 other).
        code: i32,
    },
    #[error(
        "container {id}: a step with network {running:?} is running; a {wanted:?} step would \
         change /etc/hosts and /etc/resolv.conf under it"
    )]
    NetworkConflict {
        id: String,
        running: Network,
        wanted: Network,
    },
    #[error("container {id}: {what} {path}: {source}")]
    Io {
        id: String,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: {message}")]
    Helper { id: String, message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("container {id}: copy {src} -> {dst}: {message}")]
    Failed {
        id: String,
        src: PathBuf,
        dst: PathBuf,
        message: String,
    },
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// Runtime status for logs and the status endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct RuntimeStatus {
    pub mapping_mode: MappingMode,
    pub mapping_degraded: bool,
    pub mapping_warning: Option<String>,
    pub cgroups_available: bool,
    pub cgroups_unavailable_reason: Option<String>,
    pub containers: usize,
}

/// One container as listed by [`Runtime::list`].
#[derive(Clone, Debug, Serialize)]
pub struct ContainerInfo {
    pub id: String,
    /// Held by this runtime.
    pub live: bool,
    /// Host pid of the container's pid 1.
    pub pid: Option<i32>,
    pub created: u64,
    pub cgroup: Option<PathBuf>,
}

struct Shared {
    cfg: RuntimeConfig,
    containers_dir: PathBuf,
    /// Pid 1 of every container holds a dup of the read end; only we hold the write end.
    lifeline_r: OwnedFd,
    _lifeline_w: OwnedFd,
    cgroups: Support,
    me: Option<ProcId>,
    live: Mutex<HashMap<String, Weak<Inner>>>,
}

/// Creates and tracks containers. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

impl Runtime {
    /// Prepare `<root>/containers`, the lifeline, and probe cgroups. Does not sweep:
    /// call [`Runtime::sweep`] at daemon start.
    pub fn new(cfg: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let containers_dir = ensure_containers_dir(&cfg)?;
        let (lifeline_r, lifeline_w) = sys::pipe().map_err(|e| sys::SysError::new("pipe", e))?;
        let cgroups = if cfg.use_cgroups {
            cgroups::probe(&cfg.cgroup_parent)
        } else {
            Support::Unavailable("cgroups disabled by configuration".into())
        };
        if let Support::Unavailable(why) = &cgroups {
            if cfg.use_cgroups {
                warn!("container limits unavailable: {why}");
            }
        }
        if let Some(w) = &cfg.mapping_warning {
            warn!("{w}");
        }
        info!(
            root = %cfg.root.display(),
            mapping = %cfg.mapping.mode,
            cgroups = matches!(cgroups, Support::Available(_)),
            "container runtime ready"
        );
        Ok(Runtime {
            shared: Arc::new(Shared {
                containers_dir,
                lifeline_r,
                _lifeline_w: lifeline_w,
                cgroups,
                me: ProcId::current(),
                live: Mutex::new(HashMap::new()),
                cfg,
            }),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.cfg
    }

    pub fn status(&self) -> RuntimeStatus {
        let (ok, why) = match &self.shared.cgroups {
            Support::Available(_) => (true, None),
            Support::Unavailable(w) => (false, Some(w.clone())),
        };
        RuntimeStatus {
            mapping_mode: self.shared.cfg.mapping.mode,
            mapping_degraded: self.shared.cfg.mapping.is_degraded(),
            mapping_warning: self.shared.cfg.mapping_warning.clone(),
            cgroups_available: ok,
            cgroups_unavailable_reason: why,
            containers: self.live_ids().len(),
        }
    }

    fn live_ids(&self) -> Vec<String> {
        let mut m = self.shared.live.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, w| w.strong_count() > 0);
        m.keys().cloned().collect()
    }

    /// Containers held by this runtime, and others found on disk.
    pub fn list(&self) -> Vec<ContainerInfo> {
        let live = self.live_ids();
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.shared.containers_dir) {
            for e in rd.filter_map(|e| e.ok()) {
                let Ok(id) = e.file_name().into_string() else {
                    continue;
                };
                let st = state::read(&e.path());
                out.push(ContainerInfo {
                    live: live.contains(&id),
                    pid: st.as_ref().and_then(|s| s.init).map(|p| p.pid),
                    created: st.as_ref().map(|s| s.created).unwrap_or(0),
                    cgroup: st.and_then(|s| s.cgroup),
                    id,
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Remove what a crashed daemon left behind (see [`sweep`]). Blocking work runs
    /// on the blocking pool.
    pub async fn sweep(&self) -> SweepReport {
        let rt = self.clone();
        tokio::task::spawn_blocking(move || rt.sweep_blocking())
            .await
            .unwrap_or_default()
    }

    /// [`Runtime::sweep`] for non-async callers.
    pub fn sweep_blocking(&self) -> SweepReport {
        let s = &self.shared;
        let parent =
            matches!(s.cgroups, Support::Available(_)).then_some(s.cfg.cgroup_parent.as_path());
        sweep::sweep(&sweep::SweepCtx {
            containers_dir: &s.containers_dir,
            cgroup_parent: parent,
            helper_exe: &s.cfg.helper_exe,
            mapping: &s.cfg.mapping,
            me: s.me,
            live: self.live_ids(),
        })
    }

    /// Create and start a container (its pid 1 is up and idle when this returns).
    pub async fn create(&self, spec: ContainerSpec) -> Result<Container, CreateError> {
        let rt = self.clone();
        tokio::task::spawn_blocking(move || rt.create_blocking(spec))
            .await
            .map_err(|e| CreateError::Invalid(format!("create task failed: {e}")))?
    }

    /// [`Runtime::create`] for non-async callers.
    pub fn create_blocking(&self, spec: ContainerSpec) -> Result<Container, CreateError> {
        let id = new_id();
        let span = info_span!("container", id = %id);
        let _g = span.enter();
        let s = &self.shared;
        let dir = s.containers_dir.join(&id);
        let ioe = |what: &'static str, path: &Path| {
            let id = id.clone();
            let path = path.to_owned();
            move |source| CreateError::Io {
                id,
                what,
                path,
                source,
            }
        };
        if let Rootfs::Overlay { lowers } = &spec.rootfs {
            if lowers.is_empty() {
                return Err(CreateError::Invalid(
                    "an overlay root needs at least one layer".into(),
                ));
            }
        }
        std::fs::create_dir(&dir).map_err(ioe("creating", &dir))?;
        let cgroup_path = match (&s.cgroups, s.cfg.use_cgroups) {
            (Support::Available(_), true) => Some(s.cfg.cgroup_parent.join(&id)),
            _ => None,
        };
        let mut st = State {
            id: id.clone(),
            owner: s.me,
            init: None,
            cgroup: cgroup_path.clone(),
            mapping: s.cfg.mapping.clone(),
            created: state::now(),
        };
        let result = self.start_in(&id, &dir, &spec, &mut st, cgroup_path);
        match result {
            Ok(c) => {
                info!(pid = c.inner.pid, "container started");
                Ok(c)
            }
            Err(e) => {
                // Nothing half-made stays behind.
                if let Some(p) = &st.cgroup {
                    if let Ok(cg) = Cgroup::new(p) {
                        let _ = destroy::remove_cgroup(&id, &cg);
                    }
                }
                if let Err(e2) = destroy::remove_dir(&id, &s.cfg.helper_exe, &s.cfg.mapping, &dir) {
                    warn!("cleaning up after a failed create: {e2}");
                }
                Err(e)
            }
        }
    }

    fn start_in(
        &self,
        id: &str,
        dir: &Path,
        spec: &ContainerSpec,
        st: &mut State,
        cgroup_path: Option<PathBuf>,
    ) -> Result<Container, CreateError> {
        let s = &self.shared;
        let cgroup_unavailable = match (&s.cgroups, &cgroup_path) {
            (_, Some(_)) => None,
            (Support::Unavailable(why), None) => {
                if !spec.limits.is_empty() {
                    warn!("limits {:?} requested but unavailable: {why}", spec.limits);
                }
                Some(why.clone())
            }
            (Support::Available(_), None) => Some("cgroups disabled by configuration".to_string()),
        };
        let mut cfg = prepare(&s.cfg, id, dir, spec, st, cgroup_path.clone())?;
        // The launch helper is put in the cgroup by us, not by itself (see spawn).
        cfg.cgroup = None;
        let hostname = cfg.hostname.clone();
        let own_netns = cfg.own_netns;
        let cgroup = match &cgroup_path {
            Some(p) => Some(Cgroup::new(p).map_err(|source| CreateError::Cgroup {
                id: id.to_owned(),
                source,
            })?),
            None => None,
        };
        let launched = launch::spawn(
            &s.cfg.helper_exe,
            &cfg,
            s.lifeline_r.as_fd(),
            cgroup.as_ref().map(|c| (c, &spec.limits)),
        )
        .map_err(|source| CreateError::Launch {
            id: id.to_owned(),
            source,
        })?;
        st.init = ProcId::of(launched.pid.as_raw());
        let inner = Arc::new(Inner {
            id: id.to_owned(),
            dir: dir.to_owned(),
            shared: self.shared.clone(),
            pid: launched.pid.as_raw(),
            cgroup_procs: cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default(),
            cgroup,
            cgroup_unavailable,
            own_netns,
            hostname,
            env: spec.env.clone(),
            cwd: spec.cwd.clone().unwrap_or_else(|| "/".into()),
            net: Mutex::new(NetTracker {
                files: spec.network,
                running: [0, 0],
            }),
            live: Mutex::new(Some(LiveState {
                pidfd: launched.pidfd,
                ns: launched.ns,
            })),
            zygote: Mutex::new(None),
            prepared: Mutex::new(None),
        });
        // A failure to record the pid is not fatal: the container still dies with us.
        if let Err(e) = state::write(dir, st) {
            warn!("writing state of {id}: {e}");
        }
        self.shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), Arc::downgrade(&inner));
        let c = Container { inner };
        // Have the zygote join the container now (joining a cgroup is slow) and fork
        // the first step helper.
        if tokio::runtime::Handle::try_current().is_ok() {
            let me = c.clone();
            tokio::task::spawn_blocking(move || me.refill());
        }
        Ok(c)
    }
}

/// Write the initial state, make the container's directories (mount point; upper and
/// work dirs owned by container root) and compute pid 1's launch config (a daemon
/// container: idle pid 1 cloned as our child, namespace fds opened).
pub(crate) fn prepare(
    rcfg: &RuntimeConfig,
    id: &str,
    dir: &Path,
    spec: &ContainerSpec,
    st: &State,
    cgroup_path: Option<PathBuf>,
) -> Result<LaunchConfig, CreateError> {
    let ioe = |what: &'static str, path: &Path| {
        let id = id.to_owned();
        let path = path.to_owned();
        move |source| CreateError::Io {
            id,
            what,
            path,
            source,
        }
    };
    state::write(dir, st).map_err(ioe("writing state in", dir))?;
    let mountpoint = dir.join("rootfs");
    std::fs::create_dir(&mountpoint).map_err(ioe("creating", &mountpoint))?;
    let root = match &spec.rootfs {
        Rootfs::Overlay { lowers } => {
            let upper = dir.join("upper");
            let work = dir.join("work");
            for d in [&upper, &work] {
                std::fs::create_dir(d).map_err(ioe("creating", d))?;
                if rcfg.mapping.mode == MappingMode::Root {
                    let uid = rcfg.mapping.host_uid(0);
                    let gid = rcfg.mapping.host_gid(0);
                    std::os::unix::fs::chown(d, uid, gid).map_err(ioe("chown", d))?;
                }
            }
            std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o755))
                .map_err(ioe("chmod", &upper))?;
            RootSource::Overlay {
                lowers: lowers.clone(),
                upper,
                work,
            }
        }
        Rootfs::Dir(d) => RootSource::Dir(d.clone()),
    };
    let mut cfg = launch_config(rcfg, id, spec, mountpoint, cgroup_path);
    cfg.root = root;
    Ok(cfg)
}

/// The launch config for `spec` (root to be filled in by the caller).
pub(crate) fn launch_config(
    rcfg: &RuntimeConfig,
    id: &str,
    spec: &ContainerSpec,
    mountpoint: PathBuf,
    cgroup_path: Option<PathBuf>,
) -> LaunchConfig {
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| id.chars().take(12).collect());
    LaunchConfig {
        id: id.to_owned(),
        root: RootSource::Dir(PathBuf::new()),
        mountpoint,
        net_files: NetFiles::for_network(spec.network, &hostname),
        hostname,
        mounts: spec.mounts.clone(),
        mapping: rcfg.mapping.clone(),
        own_netns: spec.network == Network::None,
        tmp_size: spec.tmp_size,
        cgroup: cgroup_path.as_ref().map(|p| CgroupRequest {
            path: p.clone(),
            limits: spec.limits.clone(),
        }),
        clone_parent: true,
        open_ns: true,
        process: None,
    }
}

/// Create `<root>/containers` (mode 0711) and, in root mode, check that container root
/// can traverse to it (overlay's upper dir lives below).
pub(crate) fn ensure_containers_dir(cfg: &RuntimeConfig) -> Result<PathBuf, RuntimeError> {
    let dir = cfg.root.join("containers");
    let io = |what: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| RuntimeError::Io {
            what,
            path: p,
            source,
        }
    };
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .map_err(io("chmod", &dir))?;
    }
    if cfg.mapping.mode == MappingMode::Root {
        check_traversable(&dir, cfg.mapping.host_uid(0).unwrap_or(0))?;
    }
    Ok(dir)
}

fn check_traversable(dir: &Path, uid: u32) -> Result<(), RuntimeError> {
    for p in dir.ancestors() {
        let Ok(m) = std::fs::metadata(p) else {
            continue;
        };
        let mode = m.permissions().mode();
        let owner = std::os::unix::fs::MetadataExt::uid(&m);
        if owner != uid && mode & 0o001 == 0 {
            return Err(RuntimeError::NotTraversable {
                path: p.to_owned(),
                mode: mode & 0o7777,
                uid,
            });
        }
    }
    Ok(())
}

fn new_id() -> String {
    let mut b = [0u8; 8];
    // getrandom never fails for 8 bytes on Linux >= 3.17; fall back to time^pid.
    if nix::errno::Errno::result(unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) })
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b = (t ^ u64::from(std::process::id())).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct NetTracker {
    /// What `/etc/hosts` and `/etc/resolv.conf` currently say.
    files: Network,
    /// Running steps per network (None, Host).
    running: [usize; 2],
}

fn net_index(n: Network) -> usize {
    match n {
        Network::None => 0,
        Network::Host => 1,
    }
}

struct LiveState {
    pidfd: OwnedFd,
    ns: NsFds,
}

struct Inner {
    id: String,
    dir: PathBuf,
    shared: Arc<Shared>,
    pid: i32,
    cgroup: Option<Cgroup>,
    cgroup_procs: Vec<PathBuf>,
    cgroup_unavailable: Option<String>,
    own_netns: bool,
    hostname: String,
    env: Vec<String>,
    cwd: String,
    net: Mutex<NetTracker>,
    /// `None` once destroyed.
    live: Mutex<Option<LiveState>>,
    /// The container's zygote, which forks step helpers (see exec.rs).
    zygote: Mutex<Option<exec::Zygote>>,
    /// A step helper forked ahead of time, waiting for the next step.
    prepared: Mutex<Option<exec::Prepared>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let live = self
            .live
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(l) = live {
            // Dropped without destroy: kill now, clean up on a thread (or at the next
            // sweep if the process exits first).
            warn!(container = %self.id, "container dropped without destroy; destroying");
            let _ = sys::pidfd_send_signal(l.pidfd.as_fd(), libc::SIGKILL);
            let id = self.id.clone();
            let dir = self.dir.clone();
            let cgroup = self.cgroup.take();
            let shared = self.shared.clone();
            std::thread::spawn(move || {
                let _ = destroy::kill_init(&id, &l.pidfd, true);
                drop(l);
                if let Some(cg) = cgroup {
                    let _ = destroy::remove_cgroup(&id, &cg);
                }
                let _ = destroy::remove_dir(&id, &shared.cfg.helper_exe, &shared.cfg.mapping, &dir);
            });
        }
    }
}

/// A running container. Cheap to clone; see [`Container::destroy`].
#[derive(Clone)]
pub struct Container {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.inner.id)
            .field("pid", &self.inner.pid)
            .finish()
    }
}

/// A step started by [`Container::exec`].
pub struct ExecHandle {
    helper: Arc<OwnedFd>,
    task: tokio::task::JoinHandle<Result<ExitStatus, ExecError>>,
}

impl ExecHandle {
    /// Kill the step (its process group gets SIGKILL). The result then has `killed`.
    pub fn kill(&self) {
        let _ = sys::pidfd_send_signal(self.helper.as_fd(), libc::SIGTERM);
    }

    pub async fn wait(self) -> Result<ExitStatus, ExecError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ExecError::Helper {
                id: String::new(),
                message: format!("exec task failed: {e}"),
            }),
        }
    }
}

impl Container {
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Host pid of the container's pid 1.
    pub fn pid(&self) -> i32 {
        self.inner.pid
    }

    pub fn hostname(&self) -> &str {
        &self.inner.hostname
    }

    /// The container's directory (`<root>/containers/<id>`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// cgroup path (relative to each hierarchy root), if the container has one.
    pub fn cgroup_path(&self) -> Option<&Path> {
        self.inner.cgroup.as_ref().map(|c| c.path())
    }

    /// Whether pid 1 is still alive.
    pub fn is_running(&self) -> bool {
        let live = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.as_ref() {
            None => false,
            Some(l) => matches!(
                sys::waitid_pidfd(l.pidfd.as_fd(), libc::WNOHANG | libc::WNOWAIT),
                Ok(None)
            ),
        }
    }

    /// Resource usage from the cgroup; without one, `limits_available: false` and why.
    pub fn usage(&self) -> Usage {
        match &self.inner.cgroup {
            Some(cg) => cg.usage().unwrap_or_else(|e| Usage {
                limits_available: true,
                unavailable_reason: Some(format!("reading usage: {e}")),
                ..Default::default()
            }),
            None => Usage {
                limits_available: false,
                unavailable_reason: self.inner.cgroup_unavailable.clone(),
                ..Default::default()
            },
        }
    }

    /// Decide the step's network and whether the network files must change, and count
    /// the step as running.
    fn begin_step(&self, network: Network) -> Result<(exec::StepNet, Option<NetFiles>), ExecError> {
        let i = &self.inner;
        let net = match (network, i.own_netns) {
            (Network::Host, _) => exec::StepNet::Host,
            (Network::None, true) => exec::StepNet::Container,
            (Network::None, false) => exec::StepNet::Fresh,
        };
        let mut t = i.net.lock().unwrap_or_else(|e| e.into_inner());
        let current = t.files;
        let files = if current != network {
            if t.running[net_index(current)] > 0 {
                return Err(ExecError::NetworkConflict {
                    id: i.id.clone(),
                    running: current,
                    wanted: network,
                });
            }
            t.files = network;
            Some(NetFiles::for_network(network, &i.hostname))
        } else {
            None
        };
        t.running[net_index(network)] += 1;
        Ok((net, files))
    }

    fn step_done(&self, network: Network) {
        let mut t = self.inner.net.lock().unwrap_or_else(|e| e.into_inner());
        let n = &mut t.running[net_index(network)];
        *n = n.saturating_sub(1);
    }

    /// A step helper for this container (the one forked ahead of time, or a new one),
    /// and another one forked in the background for the next step.
    fn take_prepared(&self) -> Result<exec::Prepared, ExecError> {
        let ready = self
            .inner
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let p = match ready {
            Some(p) => p,
            None => self.spawn_prepared()?,
        };
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.refill());
        Ok(p)
    }

    fn spawn_prepared(&self) -> Result<exec::Prepared, ExecError> {
        let i = &self.inner;
        let live = i.live.lock().unwrap_or_else(|e| e.into_inner());
        let Some(l) = live.as_ref() else {
            return Err(ExecError::Destroyed(i.id.clone()));
        };
        self.fork_step_helper(l)
            .map_err(|message| ExecError::Helper {
                id: i.id.clone(),
                message,
            })
    }

    /// Have the zygote fork a step helper; start the zygote first if there is none
    /// (or it died). The caller holds the live lock (`l`).
    fn fork_step_helper(&self, l: &LiveState) -> Result<exec::Prepared, String> {
        let i = &self.inner;
        let mut zygote = i.zygote.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(z) = zygote.as_ref() {
            match z.fork() {
                Ok(p) => return Ok(p),
                Err(e) => {
                    warn!(container = %i.id, "exec helper failed ({e}); starting another");
                    if let Some(z) = zygote.take() {
                        z.kill_blocking();
                    }
                }
            }
        }
        let ns: Vec<(NsKind, &OwnedFd)> = l.ns.fds.iter().map(|(k, f)| (*k, f)).collect();
        let z = exec::Zygote::spawn(&i.shared.cfg.helper_exe, &i.id, &self.prepare_msg(&ns), &ns)?;
        let p = z.fork();
        *zygote = Some(z);
        p
    }

    fn prepare_msg(&self, ns: &[(NsKind, &OwnedFd)]) -> exec::Prepare {
        exec::Prepare {
            ns: ns.iter().map(|(k, _)| *k).collect(),
            cgroup_procs: self.inner.cgroup_procs.clone(),
            can_setgroups: crate::userns::can_setgroups(&self.inner.shared.cfg.mapping),
        }
    }

    /// Fork the next step helper unless one is ready or the container is gone. Holding
    /// the live lock while forking makes a concurrent destroy see (and discard) it.
    /// Blocking (runs on tokio's blocking pool).
    fn refill(&self) {
        let i = &self.inner;
        let live = i.live.lock().unwrap_or_else(|e| e.into_inner());
        let Some(l) = live.as_ref() else { return };
        let mut slot = i.prepared.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return;
        }
        match self.fork_step_helper(l) {
            Ok(p) => *slot = Some(p),
            Err(e) => debug!("preparing a step helper: {e}"),
        }
    }

    /// Start a step. Must be called inside a tokio runtime. Empty `env`/`cwd` in the
    /// spec's process take the container's defaults.
    pub fn exec(&self, mut spec: ExecSpec) -> Result<ExecHandle, ExecError> {
        let i = &self.inner;
        if spec.process.env.is_empty() {
            spec.process.env = i.env.clone();
        }
        if spec.process.cwd.is_empty() {
            spec.process.cwd = i.cwd.clone();
        }
        let argv0 = spec.process.argv.first().cloned().unwrap_or_default();
        let network = spec.network;
        if i.live.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            return Err(ExecError::Destroyed(i.id.clone()));
        }
        let (net, net_files) = self.begin_step(network)?;
        let done = {
            let me = self.clone();
            scopeguard(move || me.step_done(network))
        };
        let ioe = |what: &'static str, path: &Path| {
            let id = i.id.clone();
            let path = path.to_owned();
            move |source| ExecError::Io {
                id,
                what,
                path,
                source,
            }
        };
        let (stdin_fd, stdin_feed) = match spec.stdin {
            Stdin::Null => (
                dev_null(false).map_err(ioe("opening", Path::new("/dev/null")))?,
                None,
            ),
            Stdin::File(p) => (
                OwnedFd::from(std::fs::File::open(&p).map_err(ioe("opening", &p))?),
                None,
            ),
            Stdin::Bytes(b) => {
                let (r, w) = async_pipe_writer().map_err(ioe("pipe", Path::new("stdin")))?;
                (r, Some((w, Feed::Bytes(b))))
            }
            Stdin::Reader(rd) => {
                let (r, w) = async_pipe_writer().map_err(ioe("pipe", Path::new("stdin")))?;
                (r, Some((w, Feed::Reader(rd))))
            }
        };
        let (out_fd, out_sink) = sink_fd(spec.stdout).map_err(|(p, e)| ioe("opening", &p)(e))?;
        let (err_fd, err_sink) = if matches!(spec.stderr, Sink::Stdout) {
            let fd = out_fd
                .try_clone()
                .map_err(ioe("dup", Path::new("stdout")))?;
            (fd, None)
        } else {
            sink_fd(spec.stderr).map_err(|(p, e)| ioe("opening", &p)(e))?
        };
        let oom_before = i.cgroup.as_ref().map(|c| c.oom_kills()).unwrap_or(0);
        let step = exec::Step {
            action: exec::Action::Run(spec.process),
            net,
            net_files,
        };
        let helper_err = |message| ExecError::Helper {
            id: i.id.clone(),
            message,
        };
        let running = self
            .take_prepared()?
            .start(&step, [stdin_fd, out_fd, err_fd])
            .map_err(helper_err)?;
        let helper = Arc::new(running.killer().map_err(ioe("dup", Path::new("pidfd")))?);
        let stdin_task = stdin_feed.map(|(mut w, feed)| {
            tokio::spawn(async move {
                let _ = match feed {
                    Feed::Bytes(b) => w.write_all(&b).await,
                    Feed::Reader(mut r) => tokio::io::copy(&mut r, &mut w).await.map(|_| ()),
                };
                let _ = w.shutdown().await;
            })
        });
        let out_task = copy_out(out_sink);
        let err_task = copy_out(err_sink);
        let timeout = spec.timeout;
        let me = self.clone();
        let killer = helper.clone();
        let span = info_span!("exec", container = %i.id, argv0 = %argv0);
        let task = tokio::spawn(
            async move {
                let _done = done;
                let wait = running.wait();
                tokio::pin!(wait);
                let mut timed_out = false;
                let outcome = match timeout {
                    None => wait.await,
                    Some(t) => tokio::select! {
                        r = &mut wait => r,
                        _ = tokio::time::sleep(t) => {
                            debug!("step timed out after {t:?}; killing it");
                            timed_out = true;
                            let _ = sys::pidfd_send_signal(killer.as_fd(), libc::SIGTERM);
                            wait.await
                        }
                    },
                };
                if let Some(t) = stdin_task {
                    t.abort();
                }
                for t in [out_task, err_task].into_iter().flatten() {
                    if tokio::time::timeout(exec::OUTPUT_GRACE, t).await.is_err() {
                        warn!(
                            "step output still open {:?} after it ended; detaching",
                            exec::OUTPUT_GRACE
                        );
                    }
                }
                let o = outcome.map_err(|message| ExecError::Helper {
                    id: me.inner.id.clone(),
                    message,
                })?;
                if let Some((message, code)) = o.failed {
                    return Err(ExecError::Start {
                        id: me.inner.id.clone(),
                        argv0,
                        message,
                        code,
                    });
                }
                let oom_after = me.inner.cgroup.as_ref().map(|c| c.oom_kills()).unwrap_or(0);
                Ok(ExitStatus {
                    code: o.code,
                    signal: o.signal,
                    oom_killed: o.signal == Some(libc::SIGKILL) && oom_after > oom_before,
                    timed_out,
                    killed: o.killed && !timed_out,
                })
            }
            .instrument(span),
        );
        Ok(ExecHandle { helper, task })
    }

    /// Run a step to completion.
    pub async fn run(&self, spec: ExecSpec) -> Result<ExitStatus, ExecError> {
        self.exec(spec)?.wait().await
    }

    /// Copy the host file or directory `src` to `dst` inside the container (a
    /// directory's contents go into `dst`, created). Files are owned by container
    /// root. Nothing is resolved outside the container's root.
    pub async fn copy_to(&self, src: &Path, dst: &Path) -> Result<(), CopyError> {
        self.copy_to_as(src, dst, 0, 0).await
    }

    /// [`Container::copy_to`] with the files owned by `uid:gid` (container ids).
    pub async fn copy_to_as(
        &self,
        src: &Path,
        dst: &Path,
        uid: u32,
        gid: u32,
    ) -> Result<(), CopyError> {
        let fail = |message: String| CopyError::Failed {
            id: self.inner.id.clone(),
            src: src.to_owned(),
            dst: dst.to_owned(),
            message,
        };
        if !dst.is_absolute() {
            return Err(fail("the destination must be an absolute path".into()));
        }
        let (dir, file_name) = copy::plan_copy_to(src, dst).map_err(|e| fail(e.to_string()))?;
        let (r, w) = sys::pipe().map_err(|e| fail(format!("pipe: {e}")))?;
        let (err_r, err_w) = sys::pipe().map_err(|e| fail(format!("pipe: {e}")))?;
        let null = dev_null(true).map_err(|e| fail(e.to_string()))?;
        let running = self
            .start_copy(exec::Action::TarIn { dir, uid, gid }, [r, null, err_w])
            .map_err(CopyError::Exec)?;
        let src_owned = src.to_owned();
        let writer = tokio::task::spawn_blocking(move || {
            copy::write_host_tar(&src_owned, file_name.as_deref(), std::fs::File::from(w))
        });
        let errs = tokio::task::spawn_blocking(move || {
            sys::read_to_end_fd(err_r.as_fd()).unwrap_or_default()
        });
        let outcome = running.wait().await.map_err(fail)?;
        let wrote = writer.await.map_err(|e| fail(e.to_string()))?;
        let errs = errs.await.unwrap_or_default();
        if let Some((m, _)) = outcome.failed {
            return Err(fail(m));
        }
        if outcome.code != Some(0) {
            return Err(fail(format!(
                "copy helper ended with {outcome:?}: {}",
                String::from_utf8_lossy(&errs)
            )));
        }
        wrote.map_err(|e| fail(e.to_string()))
    }

    /// Copy `src` (a file or directory inside the container) to the host path `dst`
    /// (a directory's contents go into `dst`, created). Symlinks are copied as
    /// symlinks; set-id bits, devices and FIFOs are not copied.
    pub async fn copy_from(&self, src: &Path, dst: &Path) -> Result<(), CopyError> {
        let fail = |message: String| CopyError::Failed {
            id: self.inner.id.clone(),
            src: src.to_owned(),
            dst: dst.to_owned(),
            message,
        };
        if !src.is_absolute() {
            return Err(fail("the source must be an absolute path".into()));
        }
        let (r, w) = sys::pipe().map_err(|e| fail(format!("pipe: {e}")))?;
        let null_in = dev_null(false).map_err(|e| fail(e.to_string()))?;
        let null_err = dev_null(true).map_err(|e| fail(e.to_string()))?;
        let running = self
            .start_copy(
                exec::Action::TarOut {
                    src: src.to_owned(),
                },
                [null_in, w, null_err],
            )
            .map_err(CopyError::Exec)?;
        let dst_owned = dst.to_owned();
        let reader = tokio::task::spawn_blocking(move || {
            copy::read_host_tar(&dst_owned, std::fs::File::from(r))
        });
        let outcome = running.wait().await.map_err(fail)?;
        let read = reader.await.map_err(|e| fail(e.to_string()))?;
        if let Some((m, _)) = outcome.failed {
            return Err(fail(m));
        }
        if outcome.code != Some(0) {
            return Err(fail(format!("copy helper ended with {outcome:?}")));
        }
        read.map_err(|e| fail(e.to_string()))
    }

    fn start_copy(
        &self,
        action: exec::Action,
        stdio: [OwnedFd; 3],
    ) -> Result<exec::Running, ExecError> {
        let network = self.default_net();
        let (net, _) = self.begin_step(network)?;
        let _done = {
            let me = self.clone();
            scopeguard(move || me.step_done(network))
        };
        let step = exec::Step {
            action,
            net,
            net_files: None,
        };
        self.take_prepared()?
            .start(&step, stdio)
            .map_err(|message| ExecError::Helper {
                id: self.inner.id.clone(),
                message,
            })
    }

    fn default_net(&self) -> Network {
        self.inner
            .net
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .files
    }

    /// Kill the pid namespace, remove the cgroup, the upper directory and the state.
    /// Idempotent.
    pub async fn destroy(&self) -> Result<(), DestroyError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.destroy_blocking())
            .await
            .unwrap_or(Ok(()))
    }

    /// [`Container::destroy`] for non-async callers.
    pub fn destroy_blocking(&self) -> Result<(), DestroyError> {
        self.destroy_inner(None).map(drop)
    }

    /// The container's writable layer (`<root>/containers/<id>/upper`), if its root
    /// is an overlay.
    pub fn upper_dir(&self) -> Option<PathBuf> {
        let p = self.inner.dir.join("upper");
        p.is_dir().then_some(p)
    }

    /// Stop the container and keep its writable layer: the upper directory is moved
    /// (renamed, never copied) to `dst`, which must not exist and must be on the same
    /// filesystem as the store; then the rest is destroyed as by
    /// [`Container::destroy`]. The result can be used as an overlay lower layer of
    /// another container on top of the same layers (whiteouts and opaque directories
    /// stay overlay-formatted). Only for overlay roots.
    pub async fn commit_upper(&self, dst: &Path) -> Result<(), DestroyError> {
        let me = self.clone();
        let dst = dst.to_owned();
        tokio::task::spawn_blocking(move || me.commit_upper_blocking(&dst))
            .await
            .unwrap_or_else(|e| {
                Err(DestroyError::Keep {
                    id: String::new(),
                    path: PathBuf::new(),
                    message: format!("commit task failed: {e}"),
                })
            })
    }

    /// [`Container::commit_upper`] for non-async callers.
    pub fn commit_upper_blocking(&self, dst: &Path) -> Result<(), DestroyError> {
        match self.destroy_inner(Some(dst))? {
            true => Ok(()),
            false => Err(DestroyError::Keep {
                id: self.inner.id.clone(),
                path: dst.to_owned(),
                message: "the container has no writable layer left (not an overlay root, \
                          or already destroyed)"
                    .into(),
            }),
        }
    }

    /// Tear down; with `keep`, move the upper dir there once nothing can write to it.
    /// Returns whether the upper dir was kept.
    fn destroy_inner(&self, keep: Option<&Path>) -> Result<bool, DestroyError> {
        let i = &self.inner;
        let _g = info_span!("container", id = %i.id).entered();
        let live = i.live.lock().unwrap_or_else(|e| e.into_inner()).take();
        // After `live` is gone no step helper can be forked any more; the one that is
        // sits in the container's cgroup.
        let prepared = i.prepared.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = prepared {
            p.discard();
        }
        if let Some(l) = live {
            destroy::kill_init(&i.id, &l.pidfd, true)?;
            drop(l);
        }
        // Step helpers end with their steps (killed with the pid namespace); the
        // zygote goes too, before its cgroup does.
        let zygote = i.zygote.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(z) = zygote {
            z.kill_blocking();
        }
        if let Some(cg) = &i.cgroup {
            destroy::remove_cgroup(&i.id, cg)?;
        }
        destroy::unmount_under(&i.id, &i.dir)?;
        let mut kept = false;
        if let Some(dst) = keep {
            let upper = i.dir.join("upper");
            if upper.is_dir() {
                std::fs::rename(&upper, dst).map_err(|e| DestroyError::Keep {
                    id: i.id.clone(),
                    path: dst.to_owned(),
                    message: format!("moving {} there: {e}", upper.display()),
                })?;
                kept = true;
            }
        }
        destroy::remove_dir(
            &i.id,
            &i.shared.cfg.helper_exe,
            &i.shared.cfg.mapping,
            &i.dir,
        )?;
        i.shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&i.id);
        info!(kept_upper = kept, "container destroyed");
        Ok(kept)
    }
}

enum Feed {
    Bytes(Vec<u8>),
    Reader(Box<dyn tokio::io::AsyncRead + Send + Unpin>),
}

enum OutSink {
    Writer(Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
    Capture(Captured),
}

fn dev_null(write: bool) -> std::io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")?;
    Ok(OwnedFd::from(f))
}

/// A pipe whose read end goes to the step and whose write end we feed asynchronously.
fn async_pipe_writer() -> std::io::Result<(OwnedFd, tokio::net::unix::pipe::Sender)> {
    let (r, w) = sys::pipe().map_err(std::io::Error::from)?;
    let w = tokio::net::unix::pipe::Sender::from_owned_fd(w)?;
    Ok((r, w))
}

/// The read end of an output pipe and where to copy it.
type Drain = (tokio::net::unix::pipe::Receiver, OutSink);

/// The fd a step writes to, and where its other end is copied to (for pipes).
fn sink_fd(s: Sink) -> Result<(OwnedFd, Option<Drain>), (PathBuf, std::io::Error)> {
    let pipe = |sink: OutSink| -> Result<_, (PathBuf, std::io::Error)> {
        let (r, w) = sys::pipe().map_err(|e| (PathBuf::from("pipe"), std::io::Error::from(e)))?;
        let r = tokio::net::unix::pipe::Receiver::from_owned_fd(r)
            .map_err(|e| (PathBuf::from("pipe"), e))?;
        Ok((w, Some((r, sink))))
    };
    match s {
        Sink::Null => Ok((
            dev_null(true).map_err(|e| (PathBuf::from("/dev/null"), e))?,
            None,
        )),
        Sink::File(p) => Ok((
            OwnedFd::from(std::fs::File::create(&p).map_err(|e| (p.clone(), e))?),
            None,
        )),
        Sink::Append(p) => Ok((
            OwnedFd::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&p)
                    .map_err(|e| (p.clone(), e))?,
            ),
            None,
        )),
        Sink::Writer(w) => pipe(OutSink::Writer(w)),
        Sink::Capture(c) => pipe(OutSink::Capture(c)),
        Sink::Stdout => Err((
            PathBuf::from("stdout"),
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "Sink::Stdout is only meaningful for stderr",
            ),
        )),
    }
}

fn copy_out(sink: Option<Drain>) -> Option<tokio::task::JoinHandle<()>> {
    let (mut from, to) = sink?;
    Some(tokio::spawn(async move {
        match to {
            OutSink::Writer(mut w) => {
                let _ = tokio::io::copy(&mut from, &mut w).await;
                let _ = w.flush().await;
            }
            OutSink::Capture(c) => {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match from.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Ok(mut v) = c.0.lock() {
                                v.extend_from_slice(&buf[..n]);
                            }
                        }
                    }
                }
            }
        }
    }))
}

/// Run `f` when dropped.
struct Guard<F: FnOnce()>(Option<F>);
impl<F: FnOnce()> Drop for Guard<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f()
        }
    }
}
fn scopeguard<F: FnOnce()>(f: F) -> Guard<F> {
    Guard(Some(f))
}
