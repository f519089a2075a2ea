//! How a buildroot is made and how its steps run (the implementation behind
//! [`super::Buildroots`] and [`super::Buildroot`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use adjutant_runtime::container::{
    BindMount, Container, ContainerSpec, ExecSpec, ExitStatus, Network, ProcessSpec, Rootfs,
    Runtime, RuntimeConfig, Sink, Stdin, User,
};
use adjutant_runtime::idmap::{IdMapping, MappingMode};
use adjutant_runtime::platform::Platform;
use adjutant_runtime::registry::RegistryConfig;
use adjutant_runtime::store::{
    ImageInfo, LayerLease, LocalLayer, PullOptions, PullPolicy, Store, StoreError, StoreOptions,
};
use adjutant_runtime::userns;
use tracing::{debug, info, info_span, warn, Instrument};

use super::cache::{self, CacheKey};
use super::hostfs;
use super::logs::{self, CappedLog, Logs};
use super::pkglist::{self, InstalledRpm};
use super::request::{BuildrootRequest, BUILDDIR, MOCKBUILD_UID, MOCK_GID, TOPDIR};
use super::{
    describe, dnf, BuildrootError, BuildrootInfo, Buildroots, Settings, StepFailure, StepOutcome,
    TAIL_LINES,
};
use crate::config::{Config, IdMappingSetting};
use crate::policy::{ImagePolicy, PolicySettings};
use crate::registry::{ContainerStart, ContainerUsage, LimitsRecord, MountRecord, Registry};
use crate::xmlrpc::Value;

/// Where the buildroot's own files (configuration, scripts) are bound, read-only,
/// inside every container: under the container's `/tmp` tmpfs, so the mount point
/// never lands in a cached layer.
const CONF_DIR: &str = "/tmp/.koji-adjutant";
/// kojid's SCM checkout directory inside the buildroot (`<chroot_tmpdir>/scmroot`).
pub(crate) const SCM_DIR: &str = "/chroot_tmpdir/scmroot";
/// The environment PATH of steps (mock's).
const STEP_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";
/// Largest `rpmlist.jsonl` read.
const MAX_RPMLIST: u64 = 1 << 30;

/// Run by root in every new container: the build user, `/builddir`, the package
/// manager's configuration and the macros file. Arguments: the package manager
/// configuration path.
const PREP_SH: &str = r#"set -e
conf=/tmp/.koji-adjutant
grep -q '^mock:' /etc/group || echo 'mock:x:135:' >> /etc/group
grep -q '^mockbuild:' /etc/passwd || echo 'mockbuild:x:1000:135:Mock Build User:/builddir:/bin/sh' >> /etc/passwd
chown 1000:135 /builddir
chmod 0755 /builddir
mkdir -p "$(dirname "$1")" /etc/rpm
cat "$conf/pm.conf" > "$1"
cat "$conf/macros.koji" > /etc/rpm/macros.koji
chmod 0644 "$1" /etc/rpm/macros.koji
"#;

/// Run by root before each build: a fresh `%_topdir` owned by mockbuild.
const RESET_SH: &str = r#"set -e
rm -rf --one-file-system /builddir/build
mkdir -p /builddir/build
cd /builddir/build
mkdir -p originals SPECS SOURCES BUILD BUILDROOT RPMS SRPMS
chown -R 1000:135 /builddir/build
chmod 0755 /builddir/build originals SPECS SOURCES BUILD BUILDROOT RPMS SRPMS
"#;

/// Who a step runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum As {
    Root,
    Mockbuild,
}

/// Open the buildroot factory from the daemon's configuration.
pub(crate) fn open(cfg: &Config, registry: Option<Registry>) -> Result<Buildroots, BuildrootError> {
    let root = cfg.store_root();
    let store = Store::open_with(
        &root,
        StoreOptions {
            registry: RegistryConfig {
                insecure: cfg.adjutant.insecure_registries.0.clone(),
                auth_file: cfg.adjutant.registry_auth_file.clone(),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .map_err(|e| BuildrootError::Image {
        image: String::new(),
        reason: format!("opening the store {}: {e}", root.display()),
    })?;
    let mut rcfg = match cfg.adjutant.id_mapping {
        IdMappingSetting::Auto => RuntimeConfig::detect(&root)
            .map_err(|e| BuildrootError::Config(format!("choosing the id mapping: {e}")))?,
        IdMappingSetting::Range { base, count } => RuntimeConfig::new(
            &root,
            IdMapping::root(base, count)
                .map_err(|e| BuildrootError::Config(format!("id_mapping: {e}")))?,
        ),
    };
    rcfg.helper_exe = PathBuf::from("/proc/self/exe");
    let runtime = Runtime::new(rcfg).map_err(|e| BuildrootError::Config(e.to_string()))?;
    let swept = runtime.sweep_blocking();
    debug!(?swept, "swept containers left by a previous run");
    if runtime.config().mapping.mode == MappingMode::RootlessRanges {
        store.set_userns_runner(userns::store_runner(PathBuf::from("/proc/self/exe")));
    }
    let policy = ImagePolicy::new(PolicySettings::from_config(cfg))?;
    let b = Buildroots::from_parts(runtime, store, Settings::from_config(cfg), policy, registry);
    b.evict_blocking();
    Ok(b)
}

impl Buildroots {
    /// Evict cached buildroots beyond the size bound or older than the TTL (blocking).
    pub fn evict_blocking(&self) {
        let s = &self.shared.settings;
        let age = (!s.cache_ttl.is_zero()).then_some(s.cache_ttl);
        match self
            .shared
            .store
            .evict_local_layers(Some(s.cache_max_bytes), age)
        {
            Ok(r) if r.removed > 0 || r.leftovers_removed > 0 => {
                info!(?r, "buildroot cache evicted")
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "buildroot cache eviction failed"),
        }
    }

    fn mapping(&self) -> &IdMapping {
        &self.shared.runtime.config().mapping
    }

    fn http(&self) -> reqwest::Client {
        self.shared.http.clone()
    }

    fn cache_event(&self, hit: bool) {
        let c = &self.shared.counters;
        if hit {
            c.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            c.misses.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(r) = &self.shared.registry {
            r.metrics().buildroot_cache(hit);
        }
    }
}

fn check_request(req: &BuildrootRequest) -> Result<(), BuildrootError> {
    let bad = |m: String| Err(BuildrootError::Config(m));
    if req.name.is_empty() || req.name.contains(['/', '\n']) {
        return bad(format!("bad buildroot name {:?}", req.name));
    }
    for r in &req.repos {
        if r.baseurls.is_empty() {
            return bad(format!("repo {} has no base URL", r.name));
        }
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return bad(format!("bad repo name {:?}", r.name));
        }
        for u in &r.baseurls {
            if !(u.starts_with("http://") || u.starts_with("https://") || u.starts_with("file://"))
            {
                return bad(format!(
                    "repo {}: {u:?} is not an http(s):// or file:// URL",
                    r.name
                ));
            }
        }
    }
    for p in &req.packages {
        if p.is_empty() || p.starts_with('-') {
            return bad(format!("bad package name {p:?}"));
        }
    }
    if let Some(g) = &req.install_group {
        if g.is_empty() || g.starts_with('-') || g.contains(char::is_whitespace) {
            return bad(format!("bad install group {g:?}"));
        }
    }
    if req.arch.is_empty() || req.target_arch.is_empty() {
        return bad("the buildroot needs an arch".into());
    }
    Ok(())
}

/// The image in the store (pulled as the pull policy says), its layer directories
/// (unpacked for our mapping), and a lease on them.
async fn ensure_image(
    b: &Buildroots,
    req: &BuildrootRequest,
    logs: &Logs,
) -> Result<(ImageInfo, Vec<PathBuf>, LayerLease), BuildrootError> {
    ensure_image_named(b, &req.image.image, &req.arch, logs).await
}

/// [`ensure_image`] for an image named directly (tool containers).
pub(crate) async fn ensure_image_named(
    b: &Buildroots,
    image: &str,
    arch: &str,
    logs: &Logs,
) -> Result<(ImageInfo, Vec<PathBuf>, LayerLease), BuildrootError> {
    let image = image.to_owned();
    let store = b.shared.store.clone();
    let err = |reason: String| BuildrootError::Image {
        image: image.clone(),
        reason,
    };
    let policy = b.shared.settings.pull_policy;
    let is_local = image.starts_with("localhost/")
        || adjutant_runtime::reference::RegistryRef::parse(&image)
            .is_ok_and(|r| r.name().starts_with("localhost/"));
    let found = store.resolve(&image);
    let info = match (found, policy) {
        (Ok(i), PullPolicy::Missing | PullPolicy::Never) => i,
        // Nothing to ask: localhost/ names never come from a registry.
        (Ok(i), PullPolicy::Always) if is_local => i,
        (Err(e), _) if is_local || policy == PullPolicy::Never => {
            return Err(err(format!(
                "{e}; import it with `koji-adjutant image import oci:DIR {image}` (or \
                 oci-archive:FILE){}",
                if is_local {
                    String::new()
                } else {
                    format!(" or pull it with `koji-adjutant image pull {image}` (pull_policy is never)")
                }
            )))
        }
        _ => {
            let platform = Platform::for_arch(arch).map_err(|e| err(e.to_string()))?;
            logs.info(&format!("pulling image {image} for {arch}"));
            let t0 = Instant::now();
            let opts = PullOptions {
                platform,
                policy,
                ..Default::default()
            };
            let pulled =
                tokio::time::timeout(b.shared.settings.pull_timeout, store.pull(&image, &opts))
                    .await
                    .map_err(|_| {
                        err(format!(
                            "pull timed out after {} s (pull_timeout)",
                            b.shared.settings.pull_timeout.as_secs()
                        ))
                    })?
                    .map_err(|e| {
                        err(match e.class() {
                            adjutant_runtime::store::ErrorClass::NotFound => format!(
                            "{e}; pull it into the store (`koji-adjutant image pull {image}`) or \
                             import it (`koji-adjutant image import oci:DIR {image}`)"
                        ),
                            _ => format!("pulling: {e}"),
                        })
                    })?;
            if let Some(r) = &b.shared.registry {
                if !pulled.from_store {
                    r.metrics()
                        .image_pull(pulled.bytes_fetched, t0.elapsed().as_secs_f64());
                }
            }
            pulled.image
        }
    };
    let mapping = b.mapping().clone();
    let t0 = Instant::now();
    let (info, dirs, lease) = tokio::task::spawn_blocking(move || {
        let rep = store.unpack(&info, &mapping, &*adjutant_runtime::progress::silent())?;
        let lease = store.lease_layers(&info, &mapping)?;
        Ok::<_, StoreError>((info, rep, lease))
    })
    .await
    .map_err(|e| err(format!("unpack task: {e}")))?
    .map(|(i, rep, l)| {
        if rep.layers_unpacked > 0 {
            if let Some(r) = &b.shared.registry {
                let bytes: u64 = rep.stats.iter().map(|s| s.tar_bytes).sum();
                r.metrics().unpack(bytes, t0.elapsed().as_secs_f64());
            }
            logs.info(&format!(
                "unpacked {} layers of {} in {:.1} s",
                rep.layers_unpacked,
                i.name,
                t0.elapsed().as_secs_f64()
            ));
        }
        (i, rep.dirs, l)
    })
    .map_err(|e| err(format!("unpacking: {e}")))?;
    Ok((info, dirs, lease))
}

/// The buildroot itself.
pub(crate) struct Inner {
    pub(crate) b: Buildroots,
    pub(crate) req: BuildrootRequest,
    pub(crate) container: Container,
    pub(crate) resultdir: PathBuf,
    image: ImageInfo,
    image_lowers: Vec<PathBuf>,
    _image_lease: LayerLease,
    /// Cached layers under the container (install, builddep), lowest first.
    layers: Vec<LocalLayer>,
    install_key: Option<CacheKey>,
    private: PathBuf,
    builddir: PathBuf,
    scmroot: PathBuf,
    confdir: PathBuf,
    logs: Logs,
    cache_hit: bool,
    has_builddep: Option<bool>,
    destroyed: bool,
}

/// The private host directories of a buildroot.
struct Dirs {
    private: PathBuf,
    builddir: PathBuf,
    scmroot: PathBuf,
    confdir: PathBuf,
}

fn make_dirs(req: &BuildrootRequest, mapping: &IdMapping) -> Result<Dirs, BuildrootError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(&req.workdir).map_err(BuildrootError::io("creating", &req.workdir))?;
    let suffix: String = (0..8)
        .map(|_| format!("{:x}", rand::random::<u8>() & 15))
        .collect();
    let private = req.workdir.join(format!(".buildroot-{suffix}"));
    let d = Dirs {
        builddir: private.join("builddir"),
        scmroot: private.join("scmroot"),
        confdir: private.join("conf"),
        private,
    };
    for p in [&d.private, &d.builddir, &d.scmroot, &d.confdir] {
        std::fs::create_dir(p).map_err(BuildrootError::io("creating", p))?;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
            .map_err(BuildrootError::io("chmod", p))?;
    }
    // As real root, host files belong to ids the containers do not map: hand
    // /builddir to mockbuild's host ids here (rootless, the user is container root,
    // and the container's prep step does it).
    if mapping.mode == MappingMode::Root {
        let (u, g) = (mapping.host_uid(MOCKBUILD_UID), mapping.host_gid(MOCK_GID));
        std::os::unix::fs::chown(&d.builddir, u, g)
            .map_err(BuildrootError::io("chown", &d.builddir))?;
        let (u0, g0) = (mapping.host_uid(0), mapping.host_gid(0));
        std::os::unix::fs::chown(&d.scmroot, u0, g0)
            .map_err(BuildrootError::io("chown", &d.scmroot))?;
    }
    let pm_conf = dnf::dnf_conf(&req.dnf, &req.repos);
    for (name, text) in [
        ("pm.conf", pm_conf.as_str()),
        ("macros.koji", &dnf::macros_file(&req.macros)),
        ("prep.sh", PREP_SH),
        ("reset.sh", RESET_SH),
    ] {
        let p = d.confdir.join(name);
        std::fs::write(&p, text).map_err(BuildrootError::io("writing", &p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
            .map_err(BuildrootError::io("chmod", &p))?;
    }
    Ok(d)
}

/// Remove a buildroot's private directory (files owned by container ids: in rootless
/// mode through a helper in a user namespace with the mapping).
fn remove_private(runtime: &Runtime, dir: &Path) {
    if !dir.exists() {
        return;
    }
    let cfg = runtime.config();
    let r = match cfg.mapping.mode {
        MappingMode::RootlessRanges => {
            userns::remove_tree(&cfg.helper_exe, &cfg.mapping, dir).map_err(|e| e.to_string())
        }
        _ => std::fs::remove_dir_all(dir).map_err(|e| e.to_string()),
    };
    if let Err(e) = r {
        warn!(path = %dir.display(), error = %e, "could not remove a buildroot directory");
    }
}

fn exit_words(st: &ExitStatus, timeout: Duration) -> String {
    if st.timed_out {
        format!("timed out after {} s", timeout.as_secs())
    } else if st.oom_killed {
        match st.code {
            Some(c) => format!("exited with status {c} (a process was killed: out of memory)"),
            None => "was killed: out of memory".into(),
        }
    } else if st.killed {
        "was killed".into()
    } else if let Some(s) = st.signal {
        format!("was killed by signal {s}")
    } else {
        format!("exited with status {}", st.code.unwrap_or(-1))
    }
}

/// What a new container of this buildroot looks like.
fn container_spec(
    req: &BuildrootRequest,
    lowers: Vec<PathBuf>,
    dirs: (&Path, &Path, &Path),
    network: Network,
    with_scm: bool,
) -> ContainerSpec {
    let (builddir, confdir, scmroot) = dirs;
    let mut spec = ContainerSpec::new(Rootfs::Overlay { lowers });
    spec.hostname = Some(req.hostname.clone().unwrap_or_else(host_name));
    spec.network = network;
    spec.limits = req.limits.clone();
    spec.cwd = Some(BUILDDIR.into());
    spec.mounts.push(BindMount::new(builddir, BUILDDIR, false));
    spec.mounts.push(BindMount::new(confdir, CONF_DIR, true));
    if with_scm {
        spec.mounts.push(BindMount::new(scmroot, SCM_DIR, false));
    }
    spec.mounts.extend(req.mounts.iter().cloned());
    for dir in file_repo_dirs(req) {
        if !spec
            .mounts
            .iter()
            .any(|m| dir.starts_with(&m.dst) && m.src == m.dst)
        {
            spec.mounts.push(BindMount::new(dir.clone(), dir, true));
        }
    }
    spec
}

/// Host directories of `file://` repos: bound read-only at the same path, so the
/// URLs mean the same inside.
fn file_repo_dirs(req: &BuildrootRequest) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = req
        .repos
        .iter()
        .flat_map(|r| r.baseurls.iter())
        .filter_map(|u| u.strip_prefix("file://"))
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn step_env(req: &BuildrootRequest, who: As, hostname: &str) -> Vec<String> {
    let home = match who {
        As::Root => "/root",
        As::Mockbuild => BUILDDIR,
    };
    let mut env: std::collections::BTreeMap<String, String> = [
        ("TERM", "vt100"),
        ("SHELL", "/bin/bash"),
        ("HOME", home),
        ("HOSTNAME", hostname),
        ("PATH", STEP_PATH),
        ("LANG", "C.UTF-8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in &req.env {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Start a container and record it in the status registry.
async fn start_container(
    b: &Buildroots,
    req: &BuildrootRequest,
    image: &ImageInfo,
    spec: ContainerSpec,
    logs: &Logs,
) -> Result<Container, BuildrootError> {
    let t0 = Instant::now();
    let mounts: Vec<MountRecord> = spec
        .mounts
        .iter()
        .map(|m| MountRecord {
            source: m.src.display().to_string(),
            target: m.dst.display().to_string(),
            read_only: m.readonly,
        })
        .collect();
    let network = spec.network;
    let layers = match &spec.rootfs {
        Rootfs::Overlay { lowers } => lowers.len(),
        Rootfs::Dir(_) => 1,
    };
    let c = b.shared.runtime.create(spec).await?;
    let secs = t0.elapsed().as_secs_f64();
    logs.info(&format!(
        "container {} started in {:.0} ms ({layers} layers, network {})",
        c.id(),
        secs * 1000.0,
        if network == Network::Host {
            "host"
        } else {
            "none"
        }
    ));
    if let Some(r) = &b.shared.registry {
        r.metrics().container_start(secs);
        let usage = c.usage();
        r.container_started(ContainerStart {
            id: c.id().to_owned(),
            task_id: req.koji.as_ref().and_then(|k| k.task_id),
            image: req.image.image.clone(),
            image_digest: Some(image.manifest_digest.to_string()),
            pid: Some(c.pid()),
            mounts,
            network: if network == Network::Host {
                "host"
            } else {
                "none"
            }
            .into(),
            limits: LimitsRecord {
                memory_bytes: req.limits.memory,
                cpus: req.limits.cpus,
                pids: req.limits.pids,
            },
            limits_available: usage.limits_available,
            command: Vec::new(),
            workdir: Some(BUILDDIR.into()),
            user: Some("mockbuild".into()),
        });
    }
    Ok(c)
}

fn record_gone(b: &Buildroots, c: &Container) {
    if let Some(r) = &b.shared.registry {
        let u = c.usage();
        if u.limits_available {
            r.container_usage(
                c.id(),
                ContainerUsage {
                    cpu_seconds: u.cpu.as_secs_f64(),
                    memory_bytes: u.memory,
                    peak_memory: u.peak_memory,
                    pids: u.pids,
                    oom_kills: u.oom_kills,
                },
            );
        }
        r.container_finished(c.id());
    }
}

/// One step in a container: argv as `who`, output appended to `log`.
struct Step<'a> {
    log: &'a str,
    argv: Vec<String>,
    who: As,
    cwd: &'a str,
    network: Network,
    timeout: Option<Duration>,
    stdout: Option<Sink>,
}

async fn run_step(
    c: &Container,
    req: &BuildrootRequest,
    logs: &Logs,
    s: Step<'_>,
) -> Result<ExitStatus, BuildrootError> {
    let who = match s.who {
        As::Root => "root",
        As::Mockbuild => "mockbuild",
    };
    let net = if s.network == Network::Host {
        "host"
    } else {
        "none"
    };
    logs.command(s.log, &s.argv, who, net);
    let mut p = ProcessSpec::new(s.argv.clone());
    if !req.seccomp {
        p.seccomp = adjutant_runtime::seccomp::Seccomp::Unconfined;
    }
    p.env = step_env(req, s.who, c.hostname());
    p.cwd = s.cwd.to_owned();
    if s.who == As::Mockbuild {
        p.user = User {
            uid: MOCKBUILD_UID,
            gid: MOCK_GID,
            groups: vec![MOCK_GID],
        };
    }
    let mut e = ExecSpec::new(p);
    // Output goes through a pipe into the log, capped at max_log_size: a build that
    // prints without end must not fill the disk (stderr shares stdout's pipe unless
    // stdout is captured, so the two keep their order, as in mock's logs).
    let path = logs.path(s.log);
    let (log, discarded) = CappedLog::open(&path, req.max_log_size)?;
    match s.stdout {
        Some(out) => {
            e.stdout = out;
            e.stderr = Sink::Writer(Box::new(log));
        }
        None => {
            e.stdout = Sink::Writer(Box::new(log));
            e.stderr = Sink::Stdout;
        }
    }
    e.stdin = Stdin::Null;
    e.network = s.network;
    e.timeout = s.timeout;
    let oom_before = c.usage().oom_kills;
    let mut st = match c.run(e).await {
        Ok(st) => st,
        Err(adjutant_runtime::container::ExecError::Start {
            message,
            code,
            argv0,
            ..
        }) => {
            // Not found / not executable: the command's fault, reported like a failed
            // step (mock would print the same into the log).
            let _ = logs.append(s.log, &format!("{argv0}: {message}\n"));
            ExitStatus {
                code: Some(code),
                ..Default::default()
            }
        }
        Err(e) => return Err(e.into()),
    };
    // The runtime flags an OOM kill of the step's own process; a build usually loses
    // a child (cc1, a test) and exits 1: the cgroup's count says so.
    if !st.success() && c.usage().oom_kills > oom_before {
        st.oom_killed = true;
        let _ = logs.append(
            s.log,
            "koji-adjutant: a process of this step was killed by the kernel: out of memory\n",
        );
    }
    let lost = discarded.load(Ordering::Relaxed);
    if lost > 0 {
        logs.warn(&format!(
            "{}: {lost} bytes of output of {} discarded beyond max_log_size ({} bytes)",
            s.log,
            s.argv.first().map(String::as_str).unwrap_or(""),
            req.max_log_size.unwrap_or(0)
        ));
    }
    logs.returned(s.log, st.shell_code());
    Ok(st)
}

pub(crate) async fn create(
    b: &Buildroots,
    req: BuildrootRequest,
) -> Result<super::Buildroot, BuildrootError> {
    check_request(&req)?;
    let span = info_span!("buildroot", name = %req.name);
    async move {
        let logs = Logs::open(&req.logdir)?;
        logs.start("init");
        logs.info(&format!(
            "koji-adjutant {} buildroot {}; times in state.log are UTC",
            env!("CARGO_PKG_VERSION"),
            req.name
        ));
        logs.info(&format!(
            "image {} (rule: {})",
            req.image.image,
            req.image.rule()
        ));
        let dirs = make_dirs(&req, b.mapping())?;
        let resultdir = req
            .resultdir
            .clone()
            .unwrap_or_else(|| req.workdir.join("result"));
        let res = build_up(b, req, logs, dirs, resultdir).await;
        if let Err(e) = &res {
            debug!(error = %e, "buildroot not created");
        }
        res
    }
    .instrument(span)
    .await
}

async fn build_up(
    b: &Buildroots,
    mut req: BuildrootRequest,
    logs: Logs,
    dirs: Dirs,
    resultdir: PathBuf,
) -> Result<super::Buildroot, BuildrootError> {
    let cleanup = |logs: &Logs, e: BuildrootError| {
        remove_private(&b.shared.runtime, &dirs.private);
        logs.error(&e.to_string());
        logs.finish("init");
        e
    };
    if let Err(e) = std::fs::create_dir_all(&resultdir) {
        return Err(cleanup(
            &logs,
            BuildrootError::io("creating", &resultdir)(e),
        ));
    }
    logs.start("image");
    let (image, lowers, lease) = match ensure_image(b, &req, &logs).await {
        Ok(x) => x,
        Err(e) => return Err(cleanup(&logs, e)),
    };
    logs.finish("image");
    logs.info(&format!(
        "image {} is {}",
        req.image.image, image.manifest_digest
    ));
    let mapping = b.mapping().clone();
    let cache_on = b.shared.settings.cache;
    let _ = logs.write(
        "mock_config.log",
        &describe::mock_config(&req, &image.manifest_digest.to_string(), &mapping, cache_on),
    );
    let _ = logs.write(
        "hw_info.log",
        &logs::hw_info(b.shared.store.root(), &req.workdir),
    );

    // The repos' revisions key the cache; local repos without group data get no group.
    let mut install_key = None;
    if !req.repos.is_empty() {
        let client = b.http();
        let revs = match cache::repo_revisions(&client, &req).await {
            Ok(r) => r,
            Err(e) => return Err(cleanup(&logs, e)),
        };
        if req.koji.is_none() {
            if let Some(g) = req.install_group.clone() {
                let mut groups = false;
                for r in &req.repos {
                    let url = format!(
                        "{}/repodata/repomd.xml",
                        r.baseurls[0].trim_end_matches('/')
                    );
                    if let Ok(x) = cache::fetch(&client, &url, 4 << 20).await {
                        groups |= cache::repomd_has_groups(&x);
                    }
                }
                if !groups {
                    logs.warn(&format!(
                        "the repos have no group data: group {g} is not installed (the image provides the build tools)"
                    ));
                    req.install_group = None;
                }
            }
        }
        install_key = Some(cache::install_key(
            &req,
            &image.manifest_digest.to_string(),
            &mapping.cache_key(),
            &revs,
        ));
    }
    let needs_install =
        install_key.is_some() && (req.install_group.is_some() || !req.packages.is_empty());
    let mut layers: Vec<LocalLayer> = Vec::new();
    let mut cache_hit = false;
    let dirs3 = (
        dirs.builddir.as_path(),
        dirs.confdir.as_path(),
        dirs.scmroot.as_path(),
    );
    if let (true, Some(key)) = (needs_install && cache_on, install_key.clone()) {
        match cached_layer(b, &key, &logs, || {
            install_layer(b, &req, &image, &lowers, dirs3, &logs)
        })
        .await
        {
            Ok((layer, hit)) => {
                cache_hit = hit;
                layers.push(layer);
            }
            Err(BuildrootError::InitFailed { failure, .. }) => {
                return Err(cleanup(
                    &logs,
                    BuildrootError::InitFailed {
                        name: req.name.clone(),
                        failure,
                    },
                ))
            }
            Err(e) => return Err(cleanup(&logs, e)),
        }
    }
    let mut all = lowers.clone();
    all.extend(layers.iter().map(|l| l.dir.clone()));
    let container = match start_container(
        b,
        &req,
        &image,
        container_spec(&req, all, dirs3, Network::None, true),
        &logs,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return Err(cleanup(&logs, e)),
    };
    let mut inner = Inner {
        b: b.clone(),
        container,
        resultdir,
        image,
        image_lowers: lowers,
        _image_lease: lease,
        layers,
        install_key,
        private: dirs.private.clone(),
        builddir: dirs.builddir.clone(),
        scmroot: dirs.scmroot.clone(),
        confdir: dirs.confdir.clone(),
        logs,
        cache_hit,
        has_builddep: None,
        destroyed: false,
        req,
    };
    if let Err(e) = inner.prep().await {
        inner.logs.error(&e.to_string());
        inner.destroy_now().await;
        return Err(e);
    }
    if needs_install && !cache_on {
        b.cache_event(false);
        match inner.install_here().await {
            Ok(StepOutcome::Ok) => {}
            Ok(StepOutcome::Failed(f)) => {
                let name = inner.req.name.clone();
                inner.destroy_now().await;
                return Err(BuildrootError::InitFailed {
                    name,
                    failure: Box::new(f),
                });
            }
            Err(e) => {
                inner.destroy_now().await;
                return Err(e);
            }
        }
    }
    if let Err(e) = inner.installed().await {
        inner.logs.warn(&format!("listing installed packages: {e}"));
    }
    inner.logs.finish("init");
    Ok(super::Buildroot { inner })
}

/// The cached layer `key`, or make it with `make` (which returns the directory to
/// store, on the store's filesystem) while holding the key's slot. (layer, hit).
async fn cached_layer<F, Fut>(
    b: &Buildroots,
    key: &CacheKey,
    logs: &Logs,
    make: F,
) -> Result<(LocalLayer, bool), BuildrootError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<MadeLayer, BuildrootError>>,
{
    let store = b.shared.store.clone();
    let mapping = b.mapping().clone();
    let k = key.key.clone();
    let found = {
        let (store, mapping, k) = (store.clone(), mapping.clone(), k.clone());
        tokio::task::spawn_blocking(move || store.local_layer(&mapping, &k))
            .await
            .map_err(|e| BuildrootError::Config(format!("cache task: {e}")))??
    };
    if let Some(l) = found {
        b.cache_event(true);
        logs.info(&format!(
            "buildroot cache hit: {} ({})",
            key.key, key.description
        ));
        return Ok((l, true));
    }
    let slot = {
        let (store, mapping, k) = (store.clone(), mapping.clone(), k.clone());
        tokio::task::spawn_blocking(move || store.claim_local_layer(&mapping, &k))
            .await
            .map_err(|e| BuildrootError::Config(format!("cache task: {e}")))??
    };
    if slot.exists() {
        let l = tokio::task::spawn_blocking(move || slot.into_layer())
            .await
            .map_err(|e| BuildrootError::Config(format!("cache task: {e}")))??;
        if let Some(l) = l {
            b.cache_event(true);
            logs.info(&format!(
                "buildroot cache hit after waiting for another maker: {}",
                key.key
            ));
            return Ok((l, true));
        }
        return Err(BuildrootError::Config(format!(
            "cached layer {} vanished",
            key.key
        )));
    }
    b.cache_event(false);
    logs.info(&format!(
        "buildroot cache miss: {} ({})",
        key.key, key.description
    ));
    let staging = slot.staging_path();
    let made = make().await?;
    match made {
        MadeLayer::Failed(f) => Err(BuildrootError::InitFailed {
            name: String::new(),
            failure: Box::new(f),
        }),
        MadeLayer::Commit(c) => {
            c.commit_upper(&staging).await.map_err(|e| {
                BuildrootError::Config(format!("keeping the install as a layer: {e}"))
            })?;
            let desc = key.description.clone();
            let l = tokio::task::spawn_blocking(move || {
                store.put_local_layer(slot, &mapping, &staging, &desc)
            })
            .await
            .map_err(|e| BuildrootError::Config(format!("cache task: {e}")))??;
            logs.info(&format!(
                "buildroot cache: stored {} ({:.1} MB)",
                key.key,
                l.size as f64 / 1e6
            ));
            let b2 = b.clone();
            tokio::task::spawn_blocking(move || b2.evict_blocking());
            Ok((l, false))
        }
    }
}

/// What a layer maker produced: a container to commit, or a failed step.
enum MadeLayer {
    Commit(Container),
    Failed(StepFailure),
}

/// The install step in a container of its own, to be kept as the install layer.
async fn install_layer(
    b: &Buildroots,
    req: &BuildrootRequest,
    image: &ImageInfo,
    lowers: &[PathBuf],
    dirs: (&Path, &Path, &Path),
    logs: &Logs,
) -> Result<MadeLayer, BuildrootError> {
    let c = start_container(
        b,
        req,
        image,
        container_spec(req, lowers.to_vec(), dirs, Network::Host, false),
        logs,
    )
    .await?;
    let res = async {
        prep_container(&c, req, logs).await?;
        install_in(&c, req, logs).await
    }
    .await;
    match res {
        Ok(StepOutcome::Ok) => {
            record_gone(b, &c);
            Ok(MadeLayer::Commit(c))
        }
        Ok(StepOutcome::Failed(mut f)) => {
            record_gone(b, &c);
            let _ = c.destroy().await;
            f.step = "install".into();
            Ok(MadeLayer::Failed(f))
        }
        Err(e) => {
            record_gone(b, &c);
            let _ = c.destroy().await;
            Err(e)
        }
    }
}

async fn prep_container(
    c: &Container,
    req: &BuildrootRequest,
    logs: &Logs,
) -> Result<(), BuildrootError> {
    let (sink, out) = Sink::capture();
    let st = run_step(
        c,
        req,
        logs,
        Step {
            log: "root.log",
            argv: vec![
                "/bin/sh".into(),
                format!("{CONF_DIR}/prep.sh"),
                dnf::conf_path(&req.dnf).into(),
            ],
            who: As::Root,
            cwd: "/",
            network: Network::None,
            timeout: Some(Duration::from_secs(120)),
            stdout: Some(sink),
        },
    )
    .await?;
    if !st.success() {
        return Err(BuildrootError::Config(format!(
            "preparing the buildroot (build user, /builddir, configuration) {}: {}; see root.log",
            exit_words(&st, Duration::from_secs(120)),
            out.text().trim()
        )));
    }
    Ok(())
}

/// `dnf install @group packages` in `c` (host network), into root.log.
async fn install_in(
    c: &Container,
    req: &BuildrootRequest,
    logs: &Logs,
) -> Result<StepOutcome, BuildrootError> {
    logs.start("dnf install");
    let st = run_step(
        c,
        req,
        logs,
        Step {
            log: "root.log",
            argv: dnf::install_cmd(req),
            who: As::Root,
            cwd: "/",
            network: Network::Host,
            timeout: Some(req.build_timeout),
            stdout: None,
        },
    )
    .await?;
    logs.finish("dnf install");
    copy_dnf_logs(c, logs, req.max_log_size).await;
    Ok(outcome("install", "root.log", &st, req.build_timeout, logs))
}

fn outcome(step: &str, log: &str, st: &ExitStatus, timeout: Duration, logs: &Logs) -> StepOutcome {
    if st.success() {
        return StepOutcome::Ok;
    }
    let f = StepFailure {
        step: step.to_owned(),
        log: log.to_owned(),
        exit: *st,
        status: exit_words(st, timeout),
        tail: logs.tail(log, TAIL_LINES),
    };
    logs.error(&format!("{step} {}; see {log}", f.status));
    StepOutcome::Failed(f)
}

/// dnf's own logs (`dnf.log`, `dnf.rpm.log`, `dnf.librepo.log`, `hawkey.log`) next to
/// root.log, as kojid uploads `<root>/var/log/dnf*.log`.
async fn copy_dnf_logs(c: &Container, logs: &Logs, max_log: Option<u64>) {
    let max_log = max_log.unwrap_or(u64::MAX);
    let tmp = logs.path(".dnf-logs");
    let _ = std::fs::remove_dir_all(&tmp);
    if c.copy_from(Path::new(dnf::DNF_LOGDIR), &tmp).await.is_ok() {
        // The copy keeps symlinks as symlinks: a package's scriptlet could have made
        // `dnf.x.log -> /etc/pki/koji/host.key`, which must not be read on the host.
        if let (Ok(rd), Ok(tree)) = (std::fs::read_dir(&tmp), hostfs::Tree::open(&tmp)) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.ends_with(".log") && (n.starts_with("dnf") || n == "hawkey.log") {
                    match tree.read_capped(Path::new(&e.file_name()), max_log) {
                        // Appended: a buildroot may run several installs.
                        Ok((text, cut)) => {
                            let _ = logs.append(&n, &String::from_utf8_lossy(&text));
                            if cut {
                                logs.warn(&format!("{n}: cut at max_log_size ({max_log} bytes)"));
                            }
                        }
                        Err(e) => logs.warn(&format!("dnf log not kept: {e}")),
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

impl Inner {
    pub(crate) fn info(&self) -> BuildrootInfo {
        BuildrootInfo {
            image: self.req.image.image.clone(),
            image_digest: self.image.manifest_digest.to_string(),
            policy_rule: self.req.image.rule(),
            container_id: self.container.id().to_owned(),
            cache_hit: self.cache_hit,
        }
    }

    pub(crate) fn scm_dir(&self) -> PathBuf {
        self.scmroot.clone()
    }

    pub(crate) fn container_path(&self, host: &Path) -> Result<PathBuf, BuildrootError> {
        let map = |base: &Path, inside: &str| {
            host.strip_prefix(base)
                .ok()
                .map(|rel| Path::new(inside).join(rel))
        };
        map(&self.scmroot, SCM_DIR)
            .or_else(|| map(&self.builddir, BUILDDIR))
            .filter(|p| !p.components().any(|c| c == std::path::Component::ParentDir))
            .ok_or_else(|| {
                BuildrootError::Config(format!(
                    "{} is not inside the buildroot's scm dir or /builddir",
                    host.display()
                ))
            })
    }

    async fn prep(&mut self) -> Result<(), BuildrootError> {
        prep_container(&self.container, &self.req, &self.logs).await
    }

    async fn install_here(&mut self) -> Result<StepOutcome, BuildrootError> {
        install_in(&self.container, &self.req, &self.logs).await
    }

    async fn step(&self, s: Step<'_>) -> Result<ExitStatus, BuildrootError> {
        run_step(&self.container, &self.req, &self.logs, s).await
    }

    fn build_network(&self) -> Network {
        if self.req.build_network {
            Network::Host
        } else {
            Network::None
        }
    }

    pub(crate) async fn installed(&mut self) -> Result<Vec<InstalledRpm>, BuildrootError> {
        let (sink, out) = Sink::capture();
        let st = self
            .step(Step {
                log: "root.log",
                argv: vec![
                    "rpm".into(),
                    "-qa".into(),
                    "--qf".into(),
                    pkglist::QUERY_FORMAT
                        .replace("\\t", "\t")
                        .replace("\\n", "\n"),
                ],
                who: As::Root,
                cwd: "/",
                network: Network::None,
                timeout: Some(Duration::from_secs(300)),
                stdout: Some(sink),
            })
            .await?;
        if !st.success() {
            return Err(BuildrootError::PackageList(format!(
                "rpm -qa in the buildroot {}; see root.log",
                exit_words(&st, Duration::from_secs(300))
            )));
        }
        let pkgs = pkglist::parse_query(&out.text()).map_err(BuildrootError::PackageList)?;
        let _ = self
            .logs
            .write("installed_pkgs.log", &pkglist::installed_pkgs_log(&pkgs));
        Ok(pkgs)
    }

    pub(crate) async fn hub_package_list(&mut self) -> Result<Vec<Value>, BuildrootError> {
        let pkgs = self.installed().await?;
        let Some(k) = self.req.koji.clone() else {
            return Ok(pkglist::plain_list(&pkgs));
        };
        let data = cache::fetch(&self.b.http(), &k.rpmlist_url, MAX_RPMLIST).await?;
        let text = String::from_utf8_lossy(&data);
        let (list, rep) = pkglist::hub_list(&pkgs, &text).map_err(BuildrootError::PackageList)?;
        if !rep.not_in_repo.is_empty() {
            self.logs.info(&format!(
                "{} installed packages are not in the Koji repo (they came with the image) and are not \
                 reported to the hub: {}",
                rep.not_in_repo.len(),
                rep.not_in_repo.join(" ")
            ));
        }
        Ok(list)
    }

    /// A fresh `%_topdir`.
    async fn reset_topdir(&mut self) -> Result<(), BuildrootError> {
        self.root_step(
            "build.log",
            vec!["/bin/sh".into(), format!("{CONF_DIR}/reset.sh")],
            "resetting /builddir/build",
        )
        .await
    }

    /// A maintenance command as root without network (ten minutes at most) that must
    /// succeed: a failure is a buildroot error naming `what` and the log to read.
    async fn root_step(
        &self,
        log: &str,
        argv: Vec<String>,
        what: &str,
    ) -> Result<(), BuildrootError> {
        const LIMIT: Duration = Duration::from_secs(600);
        let st = self
            .step(Step {
                log,
                argv,
                who: As::Root,
                cwd: "/",
                network: Network::None,
                timeout: Some(LIMIT),
                stdout: None,
            })
            .await?;
        if !st.success() {
            return Err(BuildrootError::Config(format!(
                "{what} {}; see {log}",
                exit_words(&st, LIMIT)
            )));
        }
        Ok(())
    }

    /// Copy a host file into `/builddir/build/<sub>/` owned by mockbuild; its
    /// container path.
    async fn copy_in(&self, host: &Path, sub: &str) -> Result<String, BuildrootError> {
        let name = host
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty() && !n.starts_with('.'))
            .ok_or_else(|| BuildrootError::Config(format!("bad file name {}", host.display())))?;
        let dst = format!("{TOPDIR}/{sub}/{name}");
        self.container
            .copy_to_as(host, Path::new(&dst), MOCKBUILD_UID, MOCK_GID)
            .await?;
        Ok(dst)
    }

    /// The one spec in `%_topdir/SPECS` (container path), or a failed step.
    fn find_spec(&self, step: &str) -> Result<String, StepFailure> {
        // Listed without following a symlink the build may have put there.
        let specs: Vec<String> = hostfs::Tree::open(&self.builddir)
            .map(|t| t.file_names("build/SPECS", ".spec"))
            .unwrap_or_default();
        let fail = |status: String| StepFailure {
            step: step.to_owned(),
            log: "build.log".into(),
            exit: ExitStatus::default(),
            status,
            tail: self.logs.tail("build.log", TAIL_LINES),
        };
        match specs.len() {
            1 => Ok(format!("{TOPDIR}/SPECS/{}", specs[0])),
            0 => Err(fail("found no spec file".into())),
            _ => Err(fail(format!(
                "found multiple spec files: {}",
                specs.join(", ")
            ))),
        }
    }

    /// The SRPM's requirements (`rpm -qpR`), without rpmlib().
    async fn requires(
        &self,
        srpm_in: &str,
    ) -> Result<Result<Vec<String>, StepFailure>, BuildrootError> {
        let (sink, out) = Sink::capture();
        let st = self
            .step(Step {
                log: "root.log",
                argv: vec![
                    "rpm".into(),
                    "-qpR".into(),
                    "--nosignature".into(),
                    srpm_in.into(),
                ],
                who: As::Mockbuild,
                cwd: BUILDDIR,
                network: Network::None,
                timeout: Some(Duration::from_secs(300)),
                stdout: Some(sink),
            })
            .await?;
        match outcome(
            "rpm -qpR",
            "root.log",
            &st,
            Duration::from_secs(300),
            &self.logs,
        ) {
            StepOutcome::Ok => Ok(Ok(dnf::parse_requires(&out.text()))),
            StepOutcome::Failed(f) => Ok(Err(f)),
        }
    }

    /// Install BuildRequires in the current container (host network).
    async fn builddep_here(
        &mut self,
        srpm_in: &str,
        reqs: &[String],
    ) -> Result<StepOutcome, BuildrootError> {
        if self.has_builddep.is_none() {
            let st = self
                .step(Step {
                    log: "root.log",
                    argv: dnf::has_builddep_cmd(&self.req),
                    who: As::Root,
                    cwd: "/",
                    network: Network::None,
                    timeout: Some(Duration::from_secs(120)),
                    stdout: Some(Sink::Null),
                })
                .await?;
            self.has_builddep = Some(st.success());
            if !st.success() {
                self.logs
                    .info("no builddep command in the image: installing rpm -qpR's list instead");
            }
        }
        let argv = if self.has_builddep == Some(true) {
            dnf::builddep_cmd(&self.req, srpm_in)
        } else {
            dnf::install_reqs_cmd(&self.req, reqs)
        };
        self.logs.start("dnf builddep");
        let st = self
            .step(Step {
                log: "root.log",
                argv,
                who: As::Root,
                cwd: "/",
                network: Network::Host,
                timeout: Some(self.req.build_timeout),
                stdout: None,
            })
            .await?;
        self.logs.finish("dnf builddep");
        copy_dnf_logs(&self.container, &self.logs, self.req.max_log_size).await;
        Ok(outcome(
            "builddep",
            "root.log",
            &st,
            self.req.build_timeout,
            &self.logs,
        ))
    }

    /// Move to a new container on top of the current layers (after the cache gave
    /// or took a layer).
    async fn restart_on_layers(&mut self) -> Result<(), BuildrootError> {
        let mut all = self.image_lowers.clone();
        all.extend(self.layers.iter().map(|l| l.dir.clone()));
        let spec = container_spec(
            &self.req,
            all,
            (&self.builddir, &self.confdir, &self.scmroot),
            Network::None,
            true,
        );
        let c = start_container(&self.b, &self.req, &self.image, spec, &self.logs).await?;
        let old = std::mem::replace(&mut self.container, c);
        record_gone(&self.b, &old);
        if let Err(e) = old.destroy().await {
            warn!(error = %e, "destroying the previous container");
        }
        self.prep().await
    }

    /// BuildRequires of `srpm_in`: from the cache, or installed (and cached).
    async fn install_buildrequires(
        &mut self,
        srpm_in: &str,
    ) -> Result<StepOutcome, BuildrootError> {
        if self.req.repos.is_empty() {
            self.logs
                .info("no repositories: BuildRequires are not installed (rpmbuild checks them)");
            return Ok(StepOutcome::Ok);
        }
        let reqs = match self.requires(srpm_in).await? {
            Ok(r) => r,
            Err(f) => return Ok(StepOutcome::Failed(f)),
        };
        if reqs.is_empty() {
            return Ok(StepOutcome::Ok);
        }
        let parent = match (&self.install_key, self.b.shared.settings.cache) {
            (Some(k), true) => k.clone(),
            _ => {
                self.b.cache_event(false);
                return self.builddep_here(srpm_in, &reqs).await;
            }
        };
        let key = cache::builddep_key(&parent, &reqs);
        // Making the layer: builddep in the current container, whose upper dir then
        // becomes the layer (it holds only the prep and the BuildRequires).
        let b = self.b.clone();
        let store = b.shared.store.clone();
        let mapping = b.mapping().clone();
        let k = key.key.clone();
        let found = tokio::task::spawn_blocking({
            let (store, mapping, k) = (store.clone(), mapping.clone(), k.clone());
            move || store.local_layer(&mapping, &k)
        })
        .await
        .map_err(|e| BuildrootError::Config(format!("cache task: {e}")))??;
        if let Some(l) = found {
            b.cache_event(true);
            self.logs.info(&format!(
                "buildroot cache hit: {} ({})",
                key.key, key.description
            ));
            self.layers.push(l);
            self.cache_hit = true;
            self.restart_on_layers().await?;
            return Ok(StepOutcome::Ok);
        }
        let slot = tokio::task::spawn_blocking({
            let (store, mapping, k) = (store.clone(), mapping.clone(), k.clone());
            move || store.claim_local_layer(&mapping, &k)
        })
        .await
        .map_err(|e| BuildrootError::Config(format!("cache task: {e}")))??;
        if slot.exists() {
            if let Some(l) = tokio::task::spawn_blocking(move || slot.into_layer())
                .await
                .map_err(|e| BuildrootError::Config(format!("cache task: {e}")))??
            {
                b.cache_event(true);
                self.logs
                    .info(&format!("buildroot cache hit after waiting: {}", key.key));
                self.layers.push(l);
                self.cache_hit = true;
                self.restart_on_layers().await?;
                return Ok(StepOutcome::Ok);
            }
            return Err(BuildrootError::Config(format!(
                "cached layer {} vanished",
                key.key
            )));
        }
        b.cache_event(false);
        self.logs.info(&format!(
            "buildroot cache miss: {} ({})",
            key.key, key.description
        ));
        self.cache_hit = false;
        // A container of its own for the install, so its upper holds nothing but it.
        let spec = {
            let mut all = self.image_lowers.clone();
            all.extend(self.layers.iter().map(|l| l.dir.clone()));
            container_spec(
                &self.req,
                all,
                (&self.builddir, &self.confdir, &self.scmroot),
                Network::Host,
                false,
            )
        };
        let c = start_container(&b, &self.req, &self.image, spec, &self.logs).await?;
        let old = std::mem::replace(&mut self.container, c);
        record_gone(&b, &old);
        let _ = old.destroy().await;
        self.prep().await?;
        let out = self.builddep_here(srpm_in, &reqs).await?;
        if !out.is_ok() {
            return Ok(out);
        }
        let staging = slot.staging_path();
        self.container.commit_upper(&staging).await.map_err(|e| {
            BuildrootError::Config(format!("keeping BuildRequires as a layer: {e}"))
        })?;
        record_gone(&b, &self.container);
        let desc = key.description.clone();
        let l = tokio::task::spawn_blocking(move || {
            store.put_local_layer(slot, &mapping, &staging, &desc)
        })
        .await
        .map_err(|e| BuildrootError::Config(format!("cache task: {e}")))??;
        self.logs.info(&format!(
            "buildroot cache: stored {} ({:.1} MB)",
            key.key,
            l.size as f64 / 1e6
        ));
        self.layers.push(l);
        // The committed container is gone; a fresh one on the new layer takes over.
        let spec = {
            let mut all = self.image_lowers.clone();
            all.extend(self.layers.iter().map(|l| l.dir.clone()));
            container_spec(
                &self.req,
                all,
                (&self.builddir, &self.confdir, &self.scmroot),
                Network::None,
                true,
            )
        };
        self.container = start_container(&b, &self.req, &self.image, spec, &self.logs).await?;
        self.prep().await?;
        let b2 = b.clone();
        tokio::task::spawn_blocking(move || b2.evict_blocking());
        Ok(StepOutcome::Ok)
    }

    /// Copy results from `%_topdir/RPMS` and `SRPMS` to the result dir; their names.
    /// The build owns those directories: nothing there is followed if it is a
    /// symlink (an `x.rpm -> /etc/shadow`, or `RPMS -> /etc/pki/koji`, would otherwise
    /// be read by the daemon on the host and uploaded). Such entries fail the step.
    fn collect(&self, rpms: bool) -> Result<Vec<String>, BuildrootError> {
        let tree = hostfs::Tree::open(&self.builddir)?;
        let top = Path::new("build");
        let roots = if rpms {
            vec!["build/SRPMS", "build/RPMS"]
        } else {
            vec!["build/SRPMS"]
        };
        let (found, refused) = tree.find_files(&roots, ".rpm")?;
        if !refused.is_empty() {
            let what: Vec<String> = refused
                .iter()
                .map(|r| {
                    let inside = Path::new(TOPDIR).join(r.rel.strip_prefix(top).unwrap_or(&r.rel));
                    format!("{} is {}", inside.display(), r.kind)
                })
                .collect();
            let msg = format!("refusing the build's results: {}", what.join(", "));
            self.logs.error(&msg);
            return Err(BuildrootError::Config(msg));
        }
        let mut names = Vec::new();
        for rel in found {
            let name = rel
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            let dst = self.resultdir.join(&name);
            tree.copy_file(&rel, &dst)?;
            names.push(name.to_string_lossy().into_owned());
        }
        names.sort();
        self.logs.info(&format!("results: {}", names.join(" ")));
        Ok(names)
    }

    pub(crate) async fn rebuild(
        &mut self,
        srpm: &Path,
        target_arch: Option<&str>,
    ) -> Result<StepOutcome, BuildrootError> {
        let target = target_arch.unwrap_or(&self.req.target_arch).to_owned();
        let what = format!(
            "rpmbuild {}",
            srpm.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        self.logs.start(&what);
        let r = self.rebuild_inner(srpm, &target).await;
        self.logs.finish(&what);
        r
    }

    /// `rpm -iv` of the SRPM (its path inside) into the topdir as mockbuild, logged to
    /// build.log, then its spec: the spec's path, or the failure (`what` names the
    /// step in a failed `rpm -i`, `spec_for` in a missing spec).
    async fn install_srpm(
        &mut self,
        srpm_in: String,
        what: &str,
        spec_for: &str,
    ) -> Result<Result<String, StepFailure>, BuildrootError> {
        let st = self
            .step(Step {
                log: "build.log",
                argv: vec![
                    "rpm".into(),
                    "-iv".into(),
                    "--nosignature".into(),
                    "--define".into(),
                    format!("_topdir {TOPDIR}"),
                    srpm_in,
                ],
                who: As::Mockbuild,
                cwd: BUILDDIR,
                network: Network::None,
                timeout: Some(Duration::from_secs(600)),
                stdout: None,
            })
            .await?;
        if let StepOutcome::Failed(f) =
            outcome(what, "build.log", &st, Duration::from_secs(600), &self.logs)
        {
            return Ok(Err(f));
        }
        Ok(self.find_spec(spec_for))
    }

    async fn rebuild_inner(
        &mut self,
        srpm: &Path,
        target: &str,
    ) -> Result<StepOutcome, BuildrootError> {
        self.reset_topdir().await?;
        let srpm_in = self.copy_in(srpm, "originals").await?;
        match self.install_buildrequires(&srpm_in).await? {
            StepOutcome::Ok => {}
            failed => return Ok(failed),
        }
        if let Err(e) = self.installed().await {
            self.logs.warn(&format!("listing installed packages: {e}"));
        }
        let spec = match self.install_srpm(srpm_in, "rpm -i", "rpmbuild").await? {
            Ok(s) => s,
            Err(f) => return Ok(StepOutcome::Failed(f)),
        };
        let timeout = self.req.build_timeout;
        let st = self
            .step(Step {
                log: "build.log",
                argv: vec![
                    "rpmbuild".into(),
                    "-ba".into(),
                    "--target".into(),
                    target.to_owned(),
                    "--define".into(),
                    format!("_topdir {TOPDIR}"),
                    spec,
                ],
                who: As::Mockbuild,
                cwd: BUILDDIR,
                network: self.build_network(),
                timeout: Some(timeout),
                stdout: None,
            })
            .await?;
        let out = outcome("rpmbuild", "build.log", &st, timeout, &self.logs);
        if out.is_ok() {
            self.collect(true)?;
        }
        Ok(out)
    }

    pub(crate) async fn rebuild_srpm(
        &mut self,
        srpm: &Path,
    ) -> Result<StepOutcome, BuildrootError> {
        self.logs.start("rebuild srpm");
        let r = async {
            self.reset_topdir().await?;
            let srpm_in = self.copy_in(srpm, "originals").await?;
            let spec = match self
                .install_srpm(srpm_in, "rebuild_srpm", "rebuild_srpm")
                .await?
            {
                Ok(s) => s,
                Err(f) => return Ok(StepOutcome::Failed(f)),
            };
            self.rpmbuild_bs(&spec, "rebuild_srpm").await
        }
        .await;
        self.logs.finish("rebuild srpm");
        r
    }

    async fn rpmbuild_bs(&mut self, spec: &str, step: &str) -> Result<StepOutcome, BuildrootError> {
        let timeout = self.req.build_timeout;
        let st = self
            .step(Step {
                log: "build.log",
                argv: vec![
                    "rpmbuild".into(),
                    "-bs".into(),
                    "--nodeps".into(),
                    "--target".into(),
                    "noarch".into(),
                    "--define".into(),
                    format!("_topdir {TOPDIR}"),
                    spec.to_owned(),
                ],
                who: As::Mockbuild,
                cwd: BUILDDIR,
                network: Network::None,
                timeout: Some(timeout),
                stdout: None,
            })
            .await?;
        let out = outcome(step, "build.log", &st, timeout, &self.logs);
        if out.is_ok() {
            self.collect(false)?;
        }
        Ok(out)
    }

    pub(crate) async fn source_cmd(
        &mut self,
        sourcedir: &Path,
        cmd: &[String],
    ) -> Result<StepOutcome, BuildrootError> {
        if cmd.is_empty() {
            return Ok(StepOutcome::Ok);
        }
        let cwd = self.container_path(sourcedir)?.display().to_string();
        self.logs.start("source command");
        let timeout = self.req.build_timeout;
        let st = self
            .step(Step {
                log: "build.log",
                argv: cmd.to_vec(),
                who: As::Mockbuild,
                cwd: &cwd,
                network: self.build_network(),
                timeout: Some(timeout),
                stdout: None,
            })
            .await?;
        self.logs.finish("source command");
        Ok(outcome("source_cmd", "build.log", &st, timeout, &self.logs))
    }

    pub(crate) async fn build_srpm(
        &mut self,
        spec: &Path,
        sources: &Path,
    ) -> Result<StepOutcome, BuildrootError> {
        self.logs.start("build srpm");
        let r = async {
            self.reset_topdir().await?;
            let spec_in = self.copy_in(spec, "SPECS").await?;
            if sources.is_dir() {
                self.container
                    .copy_to_as(
                        sources,
                        Path::new(&format!("{TOPDIR}/SOURCES")),
                        MOCKBUILD_UID,
                        MOCK_GID,
                    )
                    .await?;
            }
            self.rpmbuild_bs(&spec_in, "build_srpm").await
        }
        .await;
        self.logs.finish("build srpm");
        r
    }

    pub(crate) async fn hand_over(&mut self, dir: &Path) -> Result<(), BuildrootError> {
        let inside = self.container_path(dir)?.display().to_string();
        let mapping = self.b.mapping().clone();
        if mapping.mode == MappingMode::Root {
            // Files the daemon (real root) wrote belong to an id the container does not
            // map: change them from the host, never following symlinks.
            let (u, g) = (mapping.host_uid(MOCKBUILD_UID), mapping.host_gid(MOCK_GID));
            let dir = dir.to_owned();
            return tokio::task::spawn_blocking(move || hostfs::Tree::open(&dir)?.lchown_all(u, g))
                .await
                .map_err(|e| BuildrootError::Config(format!("chown task: {e}")))?;
        }
        self.root_step(
            "root.log",
            vec![
                "chown".into(),
                "-R".into(),
                "-h".into(),
                format!("{MOCKBUILD_UID}:{MOCK_GID}"),
                inside.clone(),
            ],
            &format!("chown of {inside} to mockbuild"),
        )
        .await
    }

    async fn destroy_now(&mut self) {
        if self.destroyed {
            return;
        }
        self.destroyed = true;
        record_gone(&self.b, &self.container);
        if let Err(e) = self.container.destroy().await {
            warn!(error = %e, "destroying the buildroot container");
            self.logs.warn(&format!(
                "destroying container {}: {e}",
                self.container.id()
            ));
        }
        self.layers.clear();
        let rt = self.b.shared.runtime.clone();
        let private = self.private.clone();
        let _ = tokio::task::spawn_blocking(move || remove_private(&rt, &private)).await;
        self.logs.info("buildroot removed");
    }

    pub(crate) async fn destroy(mut self) {
        self.destroy_now().await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.destroyed {
            return;
        }
        // Dropped without destroy (a canceled task): the container kills itself when
        // its last handle goes; the files are removed on a thread.
        record_gone(&self.b, &self.container);
        let rt = self.b.shared.runtime.clone();
        let private = self.private.clone();
        let c = self.container.clone();
        let layers = std::mem::take(&mut self.layers);
        super::PENDING_CLEANUPS.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            let _ = c.destroy_blocking();
            drop(layers);
            remove_private(&rt, &private);
            super::PENDING_CLEANUPS.fetch_sub(1, Ordering::SeqCst);
        });
    }
}
