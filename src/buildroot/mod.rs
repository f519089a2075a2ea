//! Buildroots: a container from the policy's image, the Koji repo configured, the build
//! group and BuildRequires installed, rpm macros and environment as kojid writes them,
//! and build steps run in it with mock's log files. docs/buildroot.md.
//!
//! ```text
//! Buildroots (one per daemon; cheap to clone)           the factory
//!   .create(BuildrootRequest) -> Buildroot              image ensured, container up,
//!                                                       group installed (or cached)
//! Buildroot
//!   .hub_package_list()  -> [rpm entries]               host.setBuildRootList / update…
//!   .rebuild(srpm, target)                              BuildRequires + rpmbuild -ba
//!   .rebuild_srpm(srpm)                                 rpm -i + rpmbuild -bs --nodeps
//!   .source_cmd(dir, cmd) / .build_srpm(spec, sources)  SCM SRPM builds
//!   .resultdir()                                        rpms, srpm (host path)
//!   .destroy()                                          nothing left behind
//! ```
//!
//! Logs (`root.log`, `build.log`, `state.log`, `hw_info.log`, `mock_output.log`,
//! `installed_pkgs.log`, `mock_config.log`) are files in [`BuildrootRequest::logdir`],
//! written while the steps run; tasks upload them as they grow (kojid's
//! `BuildRootLogs`), the `rebuild` command leaves them in its result directory.
//!
//! A step that runs but fails (install, rpmbuild) is a [`StepOutcome::Failed`] /
//! [`BuildrootError::InitFailed`] carrying kojid's wording of the status and the tail of
//! the log that explains it; anything else that goes wrong (image, container, I/O) is a
//! [`BuildrootError`].
//!
//! The buildroot cache ([`cache`]): the state after the install step, keyed by (image
//! manifest digest, id mapping, repo contents, arch, group, packages), is kept as an
//! overlay layer in the store, so the next buildroot on the same repo starts from it
//! without running dnf. Bounded in size, evicted least-recently-used, shared safely by
//! several tasks and daemons.

pub mod cache;
mod describe;
mod dnf;
mod hostfs;
mod logs;
pub mod pkglist;
pub mod request;
mod setup;
mod tool;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adjutant_runtime::container::{
    Container, CopyError, CreateError, ExecError, ExitStatus, Runtime,
};
use adjutant_runtime::store::{PullPolicy, Store, StoreError};

use crate::config::Config;
use crate::policy::{ImagePolicy, PolicyError};
use crate::registry::Registry;
use crate::xmlrpc::Value;

pub use logs::tail_of;
pub use pkglist::InstalledRpm;
pub use request::{
    BuildrootRequest, DnfOptions, KojiInputs, KojiLink, RepoSource, BUILDDIR, BUILD_NETWORK_KEY,
    MOCKBUILD_UID, MOCK_GID, TOPDIR,
};
pub use tool::ToolContainer;

/// Lines of a log quoted in failure messages.
pub const TAIL_LINES: usize = 30;

/// Why a buildroot could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum BuildrootError {
    /// No image could be chosen.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The image is not in the store and may not be pulled, or pulling/unpacking it
    /// failed.
    #[error("image {image}: {reason}")]
    Image {
        /// The reference.
        image: String,
        /// What went wrong, and what to do about it.
        reason: String,
    },
    /// A bad setting (tag extra, request).
    #[error("{0}")]
    Config(String),
    /// The container could not be created.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// A step could not be started (not: the step failed).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// Copying into or out of the container failed.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// A host file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A repository could not be read (its `repomd.xml`, `rpmlist.jsonl`).
    #[error("repository {url}: {reason}")]
    Repo {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The installed packages disagree with the repo's `rpmlist.jsonl` (kojid raises
    /// `BuildrootError` for a payloadhash mismatch).
    #[error("{0}")]
    PackageList(String),
    /// The install step (kojid: `mock --init`) failed.
    #[error("could not init buildroot {name}: {failure}")]
    InitFailed {
        /// The buildroot's name.
        name: String,
        /// The failed step.
        failure: Box<StepFailure>,
    },
    /// The buildroot cache failed (store I/O).
    #[error("buildroot cache: {0}")]
    Cache(#[from] StoreError),
}

impl BuildrootError {
    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| BuildrootError::Io { what, path, source }
    }
}

/// A step that ran and failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// The step (`install`, `builddep`, `rpmbuild`, `rebuild_srpm`, `source_cmd`, …).
    pub step: String,
    /// The log that explains it (`root.log`, `build.log`).
    pub log: String,
    /// How it ended.
    pub exit: ExitStatus,
    /// kojid's wording (`parseStatus`): `exited with status 1`, `was killed by
    /// signal 9`, `timed out after 86400 s`, `was killed: out of memory`, `exited with
    /// status 1 (a process was killed: out of memory)` (the cgroup counted an OOM kill
    /// while the step ran; [`ExitStatus::oom_killed`] is then set too).
    pub status: String,
    /// The last lines of `log`.
    pub tail: String,
}

impl StepFailure {
    /// [`StepFailure::summary`] and the log's tail (for fault messages and the CLI).
    pub fn message(&self) -> String {
        let mut m = self.summary();
        if !self.tail.is_empty() {
            m.push_str(&format!("\nLast lines of {}:\n{}", self.log, self.tail));
        }
        m
    }
}

impl StepFailure {
    /// `"<step> <status>; see <log> for more information"` (what `Display` shows).
    pub fn summary(&self) -> String {
        format!(
            "{} {}; see {} for more information",
            self.step, self.status, self.log
        )
    }
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

/// How a build step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Exit status 0; results (if any) are in [`Buildroot::resultdir`].
    Ok,
    /// It ran and failed.
    Failed(StepFailure),
}

impl StepOutcome {
    /// True for [`StepOutcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, StepOutcome::Ok)
    }
}

/// What the status registry shows about a buildroot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildrootInfo {
    /// The image reference.
    pub image: String,
    /// Its manifest digest.
    pub image_digest: String,
    /// The policy rule that chose it ([`crate::policy::Resolution::rule`]).
    pub policy_rule: String,
    /// The current container's id.
    pub container_id: String,
    /// Whether the install came from the buildroot cache.
    pub cache_hit: bool,
}

/// Buildroot cache counters since start.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Installs served from the cache.
    pub hits: AtomicU64,
    /// Installs that ran dnf (and, with the cache on, stored the result).
    pub misses: AtomicU64,
}

impl CacheCounters {
    /// (hits, misses).
    pub fn get(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// How buildroots are made (from `[kojid]`/`[adjutant]`; [`Settings::from_config`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// When to pull images (`pull_policy`).
    pub pull_policy: PullPolicy,
    /// Seconds a pull may take (`pull_timeout`).
    pub pull_timeout: Duration,
    /// Use the buildroot cache (`buildroot_cache`).
    pub cache: bool,
    /// Size bound of the cache in bytes (`buildroot_cache_size`).
    pub cache_max_bytes: u64,
    /// Unused cached buildroots older than this are evicted (`buildroot_cache_ttl`).
    pub cache_ttl: Duration,
}

impl Settings {
    /// From the configuration.
    pub fn from_config(cfg: &Config) -> Settings {
        let a = &cfg.adjutant;
        Settings {
            pull_policy: match a.pull_policy {
                crate::config::PullPolicy::Missing => PullPolicy::Missing,
                crate::config::PullPolicy::Always => PullPolicy::Always,
                crate::config::PullPolicy::Never => PullPolicy::Never,
            },
            pull_timeout: Duration::from_secs(a.pull_timeout.max(1)),
            cache: a.buildroot_cache,
            cache_max_bytes: a.buildroot_cache_size.0,
            cache_ttl: Duration::from_secs(a.buildroot_cache_ttl),
        }
    }
}

struct Shared {
    runtime: Runtime,
    store: Store,
    settings: Settings,
    policy: ImagePolicy,
    registry: Option<Registry>,
    counters: CacheCounters,
    http: reqwest::Client,
}

/// Makes buildroots. One per daemon (or `rebuild` command); cheap to clone and shared
/// by all tasks: it holds the container runtime, the image store, the image policy
/// (with its cache) and the buildroot cache's counters.
#[derive(Clone)]
pub struct Buildroots {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Buildroots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buildroots")
            .field("store", &self.shared.store.root())
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl Buildroots {
    /// From the daemon's configuration: the store at `store_root`, a runtime with the
    /// configured id mapping (sweeping what a crashed daemon left), the image policy
    /// (checking the `image_policy` file). `registry` receives container records and
    /// metrics (cache hits, pulls, container starts).
    pub fn open(cfg: &Config, registry: Option<Registry>) -> Result<Buildroots, BuildrootError> {
        setup::open(cfg, registry)
    }

    /// From parts (tests, benchmarks, the `rebuild` command).
    pub fn from_parts(
        runtime: Runtime,
        store: Store,
        settings: Settings,
        policy: ImagePolicy,
        registry: Option<Registry>,
    ) -> Buildroots {
        Buildroots {
            shared: Arc::new(Shared {
                runtime,
                store,
                settings,
                policy,
                registry,
                counters: CacheCounters::default(),
                http: reqwest::Client::new(),
            }),
        }
    }

    /// The image policy (resolve the image before [`Buildroots::create`]).
    pub fn policy(&self) -> &ImagePolicy {
        &self.shared.policy
    }

    /// The container runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.shared.runtime
    }

    /// The image store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Buildroot cache hits and misses since start.
    pub fn cache_counters(&self) -> &CacheCounters {
        &self.shared.counters
    }

    /// Make a buildroot (kojid: write the mock config + `mock --init`): ensure the
    /// image (store, pulled per `pull_policy`), write `mock_config.log`,
    /// `hw_info.log`, then either start from the cached post-install layer or run the
    /// install step (`dnf install @<group> <packages>`, host network, into
    /// `root.log`), and leave a container ready for build steps.
    ///
    /// A failed install is [`BuildrootError::InitFailed`] (nothing is left behind).
    pub async fn create(&self, req: BuildrootRequest) -> Result<Buildroot, BuildrootError> {
        setup::create(self, req).await
    }
}

/// A ready buildroot. Steps take `&mut self`: one step at a time. Dropping it without
/// [`Buildroot::destroy`] still kills its container and removes its files (in the
/// background).
pub struct Buildroot {
    pub(crate) inner: setup::Inner,
}

impl std::fmt::Debug for Buildroot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buildroot")
            .field("name", &self.inner.req.name)
            .field("container", &self.inner.container.id())
            .finish()
    }
}

impl Buildroot {
    /// The buildroot's name.
    pub fn name(&self) -> &str {
        &self.inner.req.name
    }

    /// The request it was made from.
    pub fn request(&self) -> &BuildrootRequest {
        &self.inner.req
    }

    /// The container steps run in now (the buildroot may move to a new container when
    /// BuildRequires come from the cache).
    pub fn container(&self) -> &Container {
        &self.inner.container
    }

    /// For the status registry.
    pub fn info(&self) -> BuildrootInfo {
        self.inner.info()
    }

    /// Where results land (host path; kept after destroy).
    pub fn resultdir(&self) -> &Path {
        &self.inner.resultdir
    }

    /// A host directory visible inside the buildroot at `<chroot_tmpdir>/scmroot`
    /// (kojid's SCM checkout directory), writable by the daemon until
    /// [`Buildroot::hand_over`].
    pub fn scm_dir(&self) -> PathBuf {
        self.inner.scm_dir()
    }

    /// The container path of a host path under [`Buildroot::scm_dir`] or the
    /// buildroot's `/builddir`.
    pub fn container_path(&self, host: &Path) -> Result<PathBuf, BuildrootError> {
        self.inner.container_path(host)
    }

    /// Installed packages (`rpm -qa` in the buildroot), also written to
    /// `installed_pkgs.log`.
    pub async fn installed(&mut self) -> Result<Vec<InstalledRpm>, BuildrootError> {
        self.inner.installed().await
    }

    /// The installed packages in the hub's format for `host.setBuildRootList` /
    /// `host.updateBuildRootList` (koji-protocol §4.1): `{name, version, release,
    /// epoch (int|nil), arch, payloadhash, size, buildtime, id}`, `id` from the repo's
    /// `rpmlist.jsonl` (payloadhash checked). Packages that are not in the Koji repo
    /// (they came with the image) are left out: the hub could not register them.
    /// Without a [`KojiLink`], every package, without ids.
    pub async fn hub_package_list(&mut self) -> Result<Vec<Value>, BuildrootError> {
        self.inner.hub_package_list().await
    }

    /// kojid's `mock --rebuild SRPM [--target ARCH]`: install the SRPM's BuildRequires
    /// (`dnf builddep`, or `rpm -qpR` + `dnf install`; served from the cache when this
    /// set was installed before on the same base), then as mockbuild `rpm -i` the SRPM
    /// and `rpmbuild -ba --target ARCH` its spec, into `build.log`, with
    /// `rpmbuild_timeout` and no network (unless the buildroot allows it). The rpms and
    /// the rebuilt srpm are copied to [`Buildroot::resultdir`].
    pub async fn rebuild(
        &mut self,
        srpm: &Path,
        target_arch: Option<&str>,
    ) -> Result<StepOutcome, BuildrootError> {
        self.inner.rebuild(srpm, target_arch).await
    }

    /// kojid's `rebuild_srpm`: unpack the SRPM and `rpmbuild -bs --nodeps` its spec
    /// (target noarch) as mockbuild; the srpm is copied to [`Buildroot::resultdir`].
    pub async fn rebuild_srpm(&mut self, srpm: &Path) -> Result<StepOutcome, BuildrootError> {
        self.inner.rebuild_srpm(srpm).await
    }

    /// kojid's `build_srpm`, first half: run `cmd` (e.g. `make sources`) as mockbuild
    /// in `sourcedir` (a host path under [`Buildroot::scm_dir`]), output to
    /// `build.log`, with the build network setting.
    pub async fn source_cmd(
        &mut self,
        sourcedir: &Path,
        cmd: &[String],
    ) -> Result<StepOutcome, BuildrootError> {
        self.inner.source_cmd(sourcedir, cmd).await
    }

    /// kojid's `build_srpm`, second half (mock `--buildsrpm --spec … --sources …`):
    /// `rpmbuild -bs --nodeps --target noarch` of `spec` with sources from `sources`
    /// (host paths under [`Buildroot::scm_dir`] or anywhere on the host: they are copied
    /// in); the srpm is copied to [`Buildroot::resultdir`].
    pub async fn build_srpm(
        &mut self,
        spec: &Path,
        sources: &Path,
    ) -> Result<StepOutcome, BuildrootError> {
        self.inner.build_srpm(spec, sources).await
    }

    /// Give everything under `dir` (under [`Buildroot::scm_dir`]) to mockbuild (kojid:
    /// `chownTree(scmdir, mockuser, mock)`).
    pub async fn hand_over(&mut self, dir: &Path) -> Result<(), BuildrootError> {
        self.inner.hand_over(dir).await
    }

    /// Stop and remove the container and the buildroot's private files (results and
    /// logs stay). Errors are logged, never returned: nothing more can be done.
    pub async fn destroy(self) {
        self.inner.destroy().await
    }
}

/// The mock-style log names a buildroot writes, in the order they appear.
pub const LOG_NAMES: &[&str] = &[
    "mock_config.log",
    "hw_info.log",
    "state.log",
    "root.log",
    "build.log",
    "installed_pkgs.log",
    "mock_output.log",
];

/// Buildroots being removed on background threads (dropped without destroy).
pub(crate) static PENDING_CLEANUPS: AtomicU64 = AtomicU64::new(0);

/// Wait (at most `max`) until buildroots dropped without [`Buildroot::destroy`] are
/// removed: a command that is about to exit calls this so nothing is left behind.
pub fn wait_for_cleanup(max: Duration) {
    let t0 = std::time::Instant::now();
    while PENDING_CLEANUPS.load(Ordering::SeqCst) > 0 && t0.elapsed() < max {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(unused)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Buildroot>();
    is_send::<Buildroots>();
}
