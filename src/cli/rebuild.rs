//! `koji-adjutant rebuild`: a local, mock-style rebuild with the daemon's buildroot code
//! and no hub.
//!
//! ```text
//! koji-adjutant rebuild PKG.src.rpm|DIR [--image REF] [--arch A] [--repo URL]...
//!     [--resultdir DIR] [--define 'NAME VALUE']... [--no-cache] [-c kojid.conf]
//! ```
//!
//! A DIR holds a spec (or `SPECS/*.spec`) and its sources (or `SOURCES/`): the SRPM is
//! built first, then rebuilt, in the same buildroot. Results (rpms, the srpm) and the
//! logs (`build.log`, `root.log`, `state.log`, …) go to `--resultdir`, by default
//! `./results/<nvr>/`. With `--repo` URLs the build group (when the repos have group
//! data) and the BuildRequires are installed from them, and the install is cached like
//! the daemon's; without, the image must hold everything and rpmbuild checks the
//! BuildRequires. Exit status: 0 built; 1 the build failed (the end of build.log is
//! printed); 2 usage; 3 the image is not in the store; 125 other errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use adjutant_runtime::container::{Runtime, RuntimeConfig};
use adjutant_runtime::idmap::{IdMapping, MappingMode};
use adjutant_runtime::store::{Store, StoreOptions};
use adjutant_runtime::userns;

use super::exit;
use crate::buildroot::{
    tail_of, BuildrootError, BuildrootRequest, Buildroots, DnfOptions, RepoSource, Settings,
    StepOutcome, LOG_NAMES, TAIL_LINES, TOPDIR,
};
use crate::config::{Config, IdMappingSetting};
use crate::policy::{ImagePolicy, ImageSource, PolicySettings, Resolution};

#[derive(Debug, clap::Args)]
#[command(
    about = "Rebuild an SRPM (or a spec directory) locally in a buildroot container",
    long_about = "Rebuild PKG.src.rpm, or build a DIR holding a spec and its sources, in a \
                  buildroot container made from an image in the store — the daemon's buildroot \
                  code without a hub (like `mock --rebuild`). Results and logs go to \
                  --resultdir (default ./results/<nvr>/)."
)]
pub struct RebuildArgs {
    /// The buildroot image (default: `[adjutant] default_image`, localhost/buildroot:latest).
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// Koji arch to build for (default: the host's).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// A package repository (http(s)://, file:// or a directory) to install the build
    /// group and BuildRequires from; repeatable.
    #[arg(long = "repo", value_name = "URL")]
    pub repos: Vec<String>,
    /// The comps group installed from the repos (when they have group data).
    #[arg(long, default_value = "build", value_name = "GROUP")]
    pub group: String,
    /// Where results and logs go (default ./results/<nvr>/).
    #[arg(long, value_name = "DIR")]
    pub resultdir: Option<PathBuf>,
    /// An rpm macro for the build, `NAME VALUE` (repeatable).
    #[arg(long = "define", value_name = "'NAME VALUE'")]
    pub defines: Vec<String>,
    /// Do not use or fill the buildroot cache.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Let the build step use the host network (also `[adjutant] network_default = host`).
    #[arg(long = "network")]
    pub network: bool,
    /// kojid.conf to read `[adjutant]` settings from (default /etc/kojid/kojid.conf if it
    /// exists).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The SRPM, or a directory with a spec file and its sources.
    #[arg(value_name = "PKG.src.rpm|DIR")]
    pub source: PathBuf,
}

/// Koji's name of the host arch.
fn host_arch() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "x86_64".into())
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("koji-adjutant rebuild: {msg}");
    ExitCode::from(exit::USAGE)
}

/// Entry point.
pub fn main(root: PathBuf, args: RebuildArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("koji-adjutant rebuild: starting the async runtime: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    let code = rt.block_on(async move {
        tokio::select! {
            c = run(root, args) => c,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("koji-adjutant rebuild: interrupted; removing the buildroot");
                ExitCode::from(130)
            }
        }
    });
    // Buildroots dropped by an interruption clean up on threads: let them finish.
    crate::buildroot::wait_for_cleanup(Duration::from_secs(60));
    drop(rt);
    code
}

/// `[adjutant]`/`[kojid]` settings from the config file (if any) and the environment;
/// a rebuild needs no hub, so nothing is required.
fn load_config(args: &RebuildArgs) -> Result<Config, String> {
    let mut cfg = Config::defaults();
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG));
    if args.config.is_some() && !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    if path.exists() {
        cfg.apply_file(&path)
            .map_err(|e| format!("configuration: {e}"))?;
    }
    crate::config::env::apply_env(&mut cfg, std::env::vars())
        .map_err(|e| format!("configuration: {e}"))?;
    Ok(cfg)
}

fn repo_url(s: &str) -> Result<String, String> {
    if s.starts_with("http://") || s.starts_with("https://") || s.starts_with("file://") {
        return Ok(s.trim_end_matches('/').to_owned());
    }
    let p = std::fs::canonicalize(s).map_err(|e| format!("--repo {s}: {e}"))?;
    Ok(format!("file://{}", p.display()))
}

/// The spec and sources of a DIR (kojid's layouts: a spec at the top, or
/// `SPECS/` + `SOURCES/`).
fn spec_of(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let specs = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "spec"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let top = specs(dir);
    let (list, sources) = if top.is_empty() {
        (specs(&dir.join("SPECS")), dir.join("SOURCES"))
    } else {
        (top, dir.to_owned())
    };
    match list.len() {
        1 => Ok((list[0].clone(), sources)),
        0 => Err(format!(
            "{}: no spec file (nor SPECS/*.spec)",
            dir.display()
        )),
        _ => Err(format!(
            "{}: several spec files: {}",
            dir.display(),
            list.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn buildroots(
    root: &Path,
    cfg: &Config,
    image: &str,
    no_cache: bool,
) -> Result<Buildroots, String> {
    let store = Store::open_with(root, StoreOptions::default())
        .map_err(|e| format!("opening the store {}: {e}", root.display()))?;
    let mut rcfg = match cfg.adjutant.id_mapping {
        IdMappingSetting::Auto => {
            RuntimeConfig::detect(root).map_err(|e| format!("choosing the id mapping: {e}"))?
        }
        IdMappingSetting::Range { base, count } => RuntimeConfig::new(
            root,
            IdMapping::root(base, count).map_err(|e| format!("id_mapping: {e}"))?,
        ),
    };
    rcfg.helper_exe = PathBuf::from("/proc/self/exe");
    if rcfg.mapping.is_degraded() {
        eprintln!(
            "Warning: {}",
            rcfg.mapping_warning.clone().unwrap_or_else(|| {
                "single-id mapping: rpm cannot install files owned by other users".into()
            })
        );
    }
    let runtime = Runtime::new(rcfg).map_err(|e| e.to_string())?;
    if runtime.config().mapping.mode == MappingMode::RootlessRanges {
        store.set_userns_runner(userns::store_runner(PathBuf::from("/proc/self/exe")));
    }
    let policy = ImagePolicy::new(PolicySettings {
        enabled: false,
        default_image: image.to_owned(),
        ttl: Duration::ZERO,
        file: None,
    })
    .map_err(|e| e.to_string())?;
    let mut settings = Settings::from_config(cfg);
    if no_cache {
        settings.cache = false;
    }
    Ok(Buildroots::from_parts(
        runtime, store, settings, policy, None,
    ))
}

async fn run(root: PathBuf, args: RebuildArgs) -> ExitCode {
    let cfg = match load_config(&args) {
        Ok(c) => c,
        Err(e) => return usage(&e),
    };
    let source = match std::fs::canonicalize(&args.source) {
        Ok(p) => p,
        Err(e) => return usage(&format!("{}: {e}", args.source.display())),
    };
    let dir_mode = source.is_dir();
    let srpm_name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !dir_mode && !srpm_name.ends_with(".src.rpm") {
        return usage(&format!(
            "{} is neither a .src.rpm nor a directory",
            source.display()
        ));
    }
    let spec = if dir_mode {
        match spec_of(&source) {
            Ok(s) => Some(s),
            Err(e) => return usage(&e),
        }
    } else {
        None
    };
    let mut repos = Vec::new();
    for (i, r) in args.repos.iter().enumerate() {
        match repo_url(r) {
            Ok(u) => repos.push(RepoSource {
                name: format!("repo{}", i + 1),
                baseurls: vec![u],
            }),
            Err(e) => return usage(&e),
        }
    }
    let mut macros = BTreeMap::new();
    for d in &args.defines {
        let Some((k, v)) = d
            .trim()
            .trim_start_matches('%')
            .split_once(char::is_whitespace)
        else {
            return usage(&format!("--define {d:?}: want 'NAME VALUE'"));
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return usage(&format!("--define {d:?}: {k:?} is not a macro name"));
        }
        macros.insert(k.to_owned(), v.trim().to_owned());
    }
    let arch = args.arch.clone().unwrap_or_else(host_arch);
    macros.insert("_topdir".into(), TOPDIR.into());
    let image = args
        .image
        .clone()
        .unwrap_or_else(|| cfg.adjutant.default_image.clone());
    let b = match buildroots(&root, &cfg, &image, args.no_cache) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("koji-adjutant rebuild: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    let work = match make_workdir() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("koji-adjutant rebuild: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    let req = BuildrootRequest {
        name: format!(
            "rebuild-{}",
            srpm_name
                .trim_end_matches(".src.rpm")
                .replace(|c: char| c == '/' || c.is_whitespace(), "_")
        ),
        image: Resolution {
            image: image.clone(),
            source: if args.image.is_some() {
                ImageSource::Given("--image".into())
            } else {
                ImageSource::Default
            },
            tag: "(local rebuild)".into(),
        },
        repos,
        koji: None,
        arch: arch.clone(),
        target_arch: arch.clone(),
        install_group: Some(args.group.clone()),
        packages: Vec::new(),
        macros,
        env: BTreeMap::new(),
        dnf: DnfOptions::default(),
        build_network: args.network
            || cfg.adjutant.network_default == crate::config::NetworkDefault::Host,
        seccomp: cfg.adjutant.seccomp,
        mounts: Vec::new(),
        limits: adjutant_runtime::container::Limits {
            memory: cfg.adjutant.memory_limit.map(|b| b.0),
            pids: cfg.adjutant.pids_limit,
            cpus: cfg.adjutant.cpu_limit,
        },
        build_timeout: Duration::from_secs(
            u64::try_from(cfg.kojid.rpmbuild_timeout)
                .unwrap_or(86400)
                .max(1),
        ),
        max_log_size: match cfg.adjutant.max_log_size.0 {
            0 => None,
            n => Some(n),
        },
        logdir: work.join("logs"),
        workdir: work.clone(),
        resultdir: Some(work.join("result")),
        hostname: None,
    };
    let code = build(&b, req, &source, spec, args.resultdir.clone()).await;
    let _ = std::fs::remove_dir_all(&work);
    code
}

fn make_workdir() -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let suffix: String = (0..10)
        .map(|_| format!("{:x}", rand::random::<u8>() & 15))
        .collect();
    let p = base.join(format!("koji-adjutant-rebuild.{suffix}"));
    std::fs::create_dir(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
    // Container root (another uid in root mode) must reach the buildroot's directories.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", p.display()))?;
    Ok(p)
}

/// Copy results and logs to their final place; print where.
fn deliver(logdir: &Path, result: &Path, dst: &Path) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dst).map_err(|e| format!("creating {}: {e}", dst.display()))?;
    let mut names = Vec::new();
    for d in [result, logdir] {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') || !e.path().is_file() {
                continue;
            }
            std::fs::copy(e.path(), dst.join(&n))
                .map_err(|err| format!("copying {} to {}: {err}", n, dst.display()))?;
            names.push(n);
        }
    }
    names.sort();
    Ok(names)
}

async fn build(
    b: &Buildroots,
    req: BuildrootRequest,
    source: &Path,
    spec: Option<(PathBuf, PathBuf)>,
    resultdir: Option<PathBuf>,
) -> ExitCode {
    let logdir = req.logdir.clone();
    let result = req.resultdir.clone().unwrap_or_default();
    let default_dst = |nvr: &str| PathBuf::from("results").join(nvr);
    let nvr_of = |srpm: &str| srpm.trim_end_matches(".src.rpm").to_owned();
    eprintln!(
        "Preparing the buildroot from {} ({})…",
        req.image.image, req.arch
    );
    let mut br = match b.create(req).await {
        Ok(br) => br,
        Err(e @ BuildrootError::Image { .. }) => {
            // Nothing ran: no logs worth a directory.
            return report_error(&e, Path::new("."));
        }
        Err(e) => {
            let dst = resultdir
                .clone()
                .unwrap_or_else(|| default_dst("failed-buildroot"));
            let _ = deliver(&logdir, &result, &dst);
            return report_error(&e, &dst);
        }
    };
    if br.info().cache_hit {
        eprintln!("Buildroot ready (install served from the buildroot cache).");
    } else {
        eprintln!("Buildroot ready.");
    }
    let srpm = match spec {
        None => source.to_owned(),
        Some((spec, sources)) => {
            eprintln!("Building the SRPM from {}…", spec.display());
            match br.build_srpm(&spec, &sources).await {
                Ok(StepOutcome::Ok) => {}
                Ok(StepOutcome::Failed(f)) => {
                    br.destroy().await;
                    let dst = resultdir
                        .clone()
                        .unwrap_or_else(|| default_dst("failed-srpm"));
                    let _ = deliver(&logdir, &result, &dst);
                    eprintln!("koji-adjutant rebuild: {}", f.message());
                    eprintln!("Logs are in {}", dst.display());
                    return ExitCode::from(exit::FAILURE);
                }
                Err(e) => {
                    br.destroy().await;
                    let dst = resultdir
                        .clone()
                        .unwrap_or_else(|| default_dst("failed-srpm"));
                    let _ = deliver(&logdir, &result, &dst);
                    return report_error(&e, &dst);
                }
            }
            let found: Vec<PathBuf> = std::fs::read_dir(&result)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.to_string_lossy().ends_with(".src.rpm"))
                        .collect()
                })
                .unwrap_or_default();
            match found.as_slice() {
                [one] => one.clone(),
                _ => {
                    br.destroy().await;
                    eprintln!(
                        "koji-adjutant rebuild: building the SRPM gave {} srpms",
                        found.len()
                    );
                    return ExitCode::from(exit::FAILURE);
                }
            }
        }
    };
    let name = srpm
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dst = resultdir.unwrap_or_else(|| default_dst(&nvr_of(&name)));
    eprintln!("Rebuilding {name}…");
    let out = br.rebuild(&srpm, None).await;
    br.destroy().await;
    let delivered = deliver(&logdir, &result, &dst);
    match out {
        Ok(StepOutcome::Ok) => match delivered {
            Ok(names) => {
                let rpms: Vec<&String> = names.iter().filter(|n| n.ends_with(".rpm")).collect();
                for r in &rpms {
                    println!("{}", dst.join(r).display());
                }
                eprintln!(
                    "Built {} package(s); results and logs ({}) are in {}",
                    rpms.len(),
                    LOG_NAMES
                        .iter()
                        .filter(|l| names.iter().any(|n| n == *l))
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", "),
                    dst.display()
                );
                ExitCode::from(exit::OK)
            }
            Err(e) => {
                eprintln!("koji-adjutant rebuild: {e}");
                ExitCode::from(exit::RUNTIME)
            }
        },
        Ok(StepOutcome::Failed(f)) => {
            eprintln!("koji-adjutant rebuild: {}", f.message());
            eprintln!("Logs are in {}", dst.display());
            ExitCode::from(exit::FAILURE)
        }
        Err(e) => report_error(&e, &dst),
    }
}

fn report_error(e: &BuildrootError, logs: &Path) -> ExitCode {
    match e {
        BuildrootError::InitFailed { failure, .. } => {
            eprintln!(
                "koji-adjutant rebuild: the buildroot install failed: {}",
                failure.message()
            );
            eprintln!("Logs are in {}", logs.display());
            ExitCode::from(exit::FAILURE)
        }
        BuildrootError::Image { .. } => {
            eprintln!("koji-adjutant rebuild: {e}");
            ExitCode::from(exit::NOT_FOUND)
        }
        _ => {
            eprintln!("koji-adjutant rebuild: {e}");
            let root = logs.join("root.log");
            let t = tail_of(&root, TAIL_LINES);
            if !t.is_empty() {
                eprintln!("Last lines of root.log:\n{t}");
            }
            ExitCode::from(exit::RUNTIME)
        }
    }
}
