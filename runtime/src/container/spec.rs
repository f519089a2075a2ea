//! What callers ask for: containers ([`ContainerSpec`]), steps run in them
//! ([`ExecSpec`], [`ProcessSpec`]) and what they get back ([`ExitStatus`], [`Usage`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default `PATH` when neither the image nor the caller sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The root filesystem of a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rootfs {
    /// An overlay of unpacked layer directories, LOWEST layer first (the order
    /// `Store::layer_dirs` returns), plus a per-container upper directory that is
    /// thrown away with the container. The layers are never written.
    Overlay { lowers: Vec<PathBuf> },
    /// A prepared directory used as-is and writable (changes persist in it).
    Dir(PathBuf),
}

/// A bind mount from the host into the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path (file or directory). Bound recursively.
    pub src: PathBuf,
    /// Absolute path inside the container, resolved inside the container's root
    /// (symlinks in the image cannot point it outside). Created if missing.
    pub dst: PathBuf,
    pub readonly: bool,
}

impl BindMount {
    pub fn new(src: impl Into<PathBuf>, dst: impl Into<PathBuf>, readonly: bool) -> Self {
        BindMount {
            src: src.into(),
            dst: dst.into(),
            readonly,
        }
    }
}

/// Network of a container or of one step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A private network namespace with only `lo` (up), a localhost-only
    /// `/etc/hosts` and an empty `/etc/resolv.conf`.
    #[default]
    None,
    /// The host's network namespace, with the host's `/etc/hosts` and `/etc/resolv.conf`.
    Host,
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            _ => Err(format!("unknown network {s:?} (want none or host)")),
        }
    }
}

/// cgroup limits. `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (cgroup v1 `memory.limit_in_bytes`, v2 `memory.max`).
    pub memory: Option<u64>,
    /// Maximum number of tasks (`pids.max`).
    pub pids: Option<u64>,
    /// CPU bandwidth in CPUs (quota = cpus × 100 ms per 100 ms period).
    pub cpus: Option<f64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.pids.is_none() && self.cpus.is_none()
    }
}

/// A container to create.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub rootfs: Rootfs,
    /// Hostname in the container's UTS namespace (default: the container id's first 12 chars).
    pub hostname: Option<String>,
    pub mounts: Vec<BindMount>,
    /// The container's own network. Steps may choose differently (see [`ExecSpec::network`]).
    pub network: Network,
    pub limits: Limits,
    /// Default environment of steps (`K=V`), e.g. from the image config.
    pub env: Vec<String>,
    /// Default working directory of steps (default `/`).
    pub cwd: Option<String>,
    /// Size limit of the tmpfs on `/tmp` in bytes (default: the kernel's, half of RAM).
    pub tmp_size: Option<u64>,
}

impl ContainerSpec {
    pub fn new(rootfs: Rootfs) -> Self {
        ContainerSpec {
            rootfs,
            hostname: None,
            mounts: Vec::new(),
            network: Network::None,
            limits: Limits::default(),
            env: Vec::new(),
            cwd: None,
            tmp_size: None,
        }
    }
}

/// Who a step runs as, in container ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (needs a mapping that allows `setgroups`, i.e. not the
    /// degraded single-id one).
    pub groups: Vec<u32>,
}

impl User {
    pub const ROOT: User = User {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    };
}

/// One resource limit (`setrlimit`) applied to a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: RlimitResource,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RlimitResource {
    Core,
    Cpu,
    Data,
    Fsize,
    Nofile,
    Nproc,
    Stack,
    As,
    Memlock,
}

impl RlimitResource {
    pub(crate) fn to_nix(self) -> nix::sys::resource::Resource {
        use nix::sys::resource::Resource as R;
        match self {
            RlimitResource::Core => R::RLIMIT_CORE,
            RlimitResource::Cpu => R::RLIMIT_CPU,
            RlimitResource::Data => R::RLIMIT_DATA,
            RlimitResource::Fsize => R::RLIMIT_FSIZE,
            RlimitResource::Nofile => R::RLIMIT_NOFILE,
            RlimitResource::Nproc => R::RLIMIT_NPROC,
            RlimitResource::Stack => R::RLIMIT_STACK,
            RlimitResource::As => R::RLIMIT_AS,
            RlimitResource::Memlock => R::RLIMIT_MEMLOCK,
        }
    }
}

/// The process of a step: everything `execve` and the credentials need.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// `argv[0]` without a `/` is looked up in the `PATH` of `env`.
    pub argv: Vec<String>,
    /// The complete environment (`K=V`); `PATH` defaults to [`DEFAULT_PATH`].
    pub env: Vec<String>,
    /// Working directory inside the container (must exist). Empty: the container's
    /// default ([`ContainerSpec::cwd`], else `/`).
    pub cwd: String,
    pub user: User,
    pub umask: u32,
    pub rlimits: Vec<Rlimit>,
    /// Capability names (`CAP_CHOWN` or `chown`) the step keeps; `None` is the
    /// documented default set ([`crate::caps::DEFAULT_CAPS`]).
    pub capabilities: Option<Vec<String>>,
    /// The default seccomp filter ([`crate::seccomp`]), or none.
    #[serde(default)]
    pub seccomp: crate::seccomp::Seccomp,
}

impl ProcessSpec {
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        ProcessSpec {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: String::new(),
            user: User::ROOT,
            umask: 0o022,
            rlimits: Vec::new(),
            capabilities: None,
            seccomp: crate::seccomp::Seccomp::Default,
        }
    }
}

/// Where a step's standard input comes from.
#[derive(Default)]
pub enum Stdin {
    #[default]
    Null,
    Bytes(Vec<u8>),
    File(PathBuf),
    Reader(Box<dyn tokio::io::AsyncRead + Send + Unpin>),
}

/// Where a step's standard output or error goes.
#[derive(Default)]
pub enum Sink {
    #[default]
    Null,
    /// Created or truncated.
    File(PathBuf),
    /// Appended to (created if missing).
    Append(PathBuf),
    /// Any async writer (a log uploader, a socket...).
    Writer(Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
    /// Kept in memory; read it from the [`Captured`] handle.
    Capture(Captured),
    /// For stderr only: the same file or pipe as stdout (`2>&1`), so the two streams
    /// keep their order wherever stdout goes. As stdout it is an error.
    Stdout,
}

impl Sink {
    /// A sink that keeps the output in memory, and the handle to read it.
    pub fn capture() -> (Sink, Captured) {
        let c = Captured::default();
        (Sink::Capture(c.clone()), c)
    }
}

/// Output kept in memory by [`Sink::Capture`].
#[derive(Clone, Default, Debug)]
pub struct Captured(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// A step to run in a running container.
pub struct ExecSpec {
    pub process: ProcessSpec,
    pub stdin: Stdin,
    pub stdout: Sink,
    pub stderr: Sink,
    /// `None`: the container's private network namespace (loopback only).
    /// `Host`: the host's (the step does not join the container's netns).
    pub network: Network,
    /// Kill the step (its whole process group) after this long.
    pub timeout: Option<Duration>,
}

impl ExecSpec {
    pub fn new(process: ProcessSpec) -> Self {
        ExecSpec {
            process,
            stdin: Stdin::Null,
            stdout: Sink::Null,
            stderr: Sink::Null,
            network: Network::None,
            timeout: None,
        }
    }
}

/// How a step ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Terminating signal, if killed.
    pub signal: Option<i32>,
    /// Killed by the kernel OOM killer (the container's memory cgroup counted an OOM
    /// kill while the step ran and the step died of SIGKILL).
    pub oom_killed: bool,
    /// Killed because its timeout expired.
    pub timed_out: bool,
    /// Killed on request ([`crate::container::ExecHandle::kill`]).
    pub killed: bool,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// Shell-style code: the exit code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}")?,
            (None, Some(s)) => write!(f, "killed by signal {s}")?,
            (None, None) => write!(f, "unknown status")?,
        }
        if self.oom_killed {
            write!(f, " (out of memory)")?;
        }
        if self.timed_out {
            write!(f, " (timed out)")?;
        }
        if self.killed {
            write!(f, " (killed)")?;
        }
        Ok(())
    }
}

/// Resource usage of a container, read back from its cgroup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Whether the container has a cgroup at all. When false every other field is
    /// zero and `unavailable_reason` says why: nothing here is estimated.
    pub limits_available: bool,
    pub unavailable_reason: Option<String>,
    /// CPU time consumed (user + system).
    pub cpu: Duration,
    /// Peak memory usage in bytes (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
    pub peak_memory: u64,
    /// Current memory usage in bytes.
    pub memory: u64,
    /// Number of OOM kills in the container's memory cgroup.
    pub oom_kills: u64,
    /// Tasks now in the container.
    pub pids: u64,
    /// Times a fork failed because of the pids limit.
    pub pids_limit_hits: u64,
}
