//! `koji-adjutant run`: a container in the foreground, as podman users expect — the
//! command's exit code, stdio attached, network `none` by default.
//!
//! The process stays single-threaded (no tokio) so that it can clone the container
//! itself without re-executing a helper: this is the fast path measured by
//! benches/peers/start.sh.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::process::{Command, Stdio};

use adjutant_runtime::container::run::run_foreground;
use adjutant_runtime::container::{
    BindMount, ContainerSpec, Limits, Network, ProcessSpec, Rootfs, RuntimeConfig, User,
    DEFAULT_PATH,
};
use adjutant_runtime::reference::ImageSource;
use adjutant_runtime::seccomp::Seccomp;
use adjutant_runtime::store::{default_name, ErrorClass, Store};
use adjutant_runtime::userns;
use anyhow::{anyhow, bail, Context, Result};

use super::exit;

#[derive(Debug, clap::Args)]
#[command(
    about = "Run a command in a new container",
    long_about = "Run a command in a new container (user, mount, pid, net, uts, ipc and cgroup \
                  namespaces), attached to this terminal's stdio, and exit with its status."
)]
pub struct RunArgs {
    /// Remove the container's directory (its writable layer) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Bind mount a host path: SRC:DST[:ro|:rw] (SRC absolute or relative to here).
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]")]
    pub volumes: Vec<String>,
    /// Set an environment variable (K=V; a bare K copies it from this environment).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Run as this user: UID[:GID] or NAME[:GROUP] (names from the image's /etc/passwd).
    #[arg(short = 'u', long = "user", value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Network: none (a private loopback only) or host.
    #[arg(long, default_value = "none", value_name = "none|host")]
    pub network: Network,
    /// Memory limit, e.g. 512m, 2g, or bytes.
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<u64>,
    /// CPU limit in CPUs (e.g. 1.5).
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Container hostname (default: the start of the container id).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Security options as podman takes them: only `seccomp=unconfined` (no seccomp
    /// filter; by default a short deny list applies, see docs/security.md).
    #[arg(long = "security-opt", value_name = "seccomp=unconfined")]
    pub security_opt: Vec<String>,
    /// Use a prepared root filesystem directory (kept read-only, as the single layer)
    /// instead of an image; all arguments are then the command.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// IMAGE followed by the command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [COMMAND [ARG...]]"
    )]
    pub args: Vec<String>,
}

/// What an image contributes to a run.
struct ImageDefaults {
    lowers: Vec<PathBuf>,
    env: Vec<String>,
    cmd: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
}

pub fn main(root: PathBuf, args: RunArgs) -> ExitCode {
    match run(root, args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // The chain of causes, without repeating what a message already includes.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let t = cause.to_string();
                if !msg.contains(&t) {
                    msg.push_str(": ");
                    msg.push_str(&t);
                }
            }
            eprintln!("Error: {msg}");
            ExitCode::from(exit::RUNTIME)
        }
    }
}

fn run(root: PathBuf, args: RunArgs) -> Result<u8> {
    let mut cfg = RuntimeConfig::detect(&root).context("choosing the user namespace mapping")?;
    // The helper is only needed to clean up rootless upper dirs.
    cfg.helper_exe = PathBuf::from("/proc/self/exe");

    let (image, command) = match &args.rootfs {
        Some(dir) => {
            let dir = std::fs::canonicalize(dir)
                .with_context(|| format!("--rootfs {}", dir.display()))?;
            (
                ImageDefaults {
                    lowers: vec![dir],
                    env: Vec::new(),
                    cmd: Vec::new(),
                    workdir: None,
                    user: None,
                },
                args.args.clone(),
            )
        }
        None => {
            let Some((image, command)) = args.args.split_first() else {
                bail!("an IMAGE (or --rootfs DIR) is required");
            };
            (resolve_image(&root, &cfg, image)?, command.to_vec())
        }
    };

    let argv = if command.is_empty() {
        image.cmd.clone()
    } else {
        command
    };
    if argv.is_empty() {
        bail!("no command given and the image has no default command");
    }

    let mut mounts = Vec::new();
    for v in &args.volumes {
        mounts.push(parse_volume(v)?);
    }
    let limits = Limits {
        memory: args.memory.as_deref().map(parse_size).transpose()?,
        pids: args.pids_limit,
        cpus: args.cpus,
    };
    let user = resolve_user(
        args.user.as_deref().or(image.user.as_deref()),
        &image.lowers,
    )?;

    let mut env: Vec<String> = image.env.clone();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or_default().to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    if !image.env.iter().any(|e| e.starts_with("PATH=")) {
        set(format!("PATH={DEFAULT_PATH}"));
    }
    set(format!("HOME={}", user.home));
    let mut spec = ContainerSpec::new(Rootfs::Overlay {
        lowers: image.lowers.clone(),
    });
    spec.hostname = args.hostname.clone();
    if let Some(h) = &spec.hostname {
        set(format!("HOSTNAME={h}"));
    }
    if let Ok(term) = std::env::var("TERM") {
        if nix::unistd::isatty(0).unwrap_or(false) {
            set(format!("TERM={term}"));
        }
    }
    for e in &args.env {
        match e.split_once('=') {
            Some(_) => set(e.clone()),
            None => {
                if let Ok(v) = std::env::var(e) {
                    set(format!("{e}={v}"));
                }
            }
        }
    }
    spec.mounts = mounts;
    spec.network = args.network;
    spec.limits = limits;

    let mut process = ProcessSpec::new(argv);
    process.env = env;
    process.cwd = args
        .workdir
        .clone()
        .or(image.workdir.clone())
        .unwrap_or_else(|| "/".into());
    process.user = user.user;
    for o in &args.security_opt {
        match o.as_str() {
            "seccomp=unconfined" => process.seccomp = Seccomp::Unconfined,
            _ => bail!("unsupported --security-opt {o:?} (supported: seccomp=unconfined)"),
        }
    }

    let outcome = run_foreground(&cfg, &spec, process, args.rm)?;
    if let Some(why) = &outcome.limits_unavailable {
        eprintln!("Warning: resource limits not applied: {why}");
    }
    Ok(outcome.exit.shell_code().clamp(0, 255) as u8)
}

/// Find `image` in the store (pulling it first if it is missing, as podman does), make
/// sure its layers are unpacked for our id mapping, and read its config.
fn resolve_image(root: &Path, cfg: &RuntimeConfig, image: &str) -> Result<ImageDefaults> {
    let store =
        Store::open(root).with_context(|| format!("opening the store {}", root.display()))?;
    // Rootless unpacking with subordinate ids happens in a user namespace helper.
    store.set_userns_runner(userns::store_runner(PathBuf::from("/proc/self/exe")));
    // oci:DIR[:tag] and oci-archive:FILE[:tag] are stored under their import name.
    let name = match ImageSource::parse(image) {
        Ok(ImageSource::OciDir { path, tag }) | Ok(ImageSource::OciArchive { path, tag }) => {
            default_name(&path, tag.as_deref())?
        }
        _ => image.to_owned(),
    };
    let info = match store.resolve(&name) {
        Ok(i) => i,
        Err(e) if e.class() == ErrorClass::NotFound => {
            // Pulled by a child process: this one must stay single-threaded (it clones
            // the container itself), and a pull runs an async client.
            let st = Command::new("/proc/self/exe")
                .arg("--root")
                .arg(root)
                .args(["image", "pull", image])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .context("starting `image pull`")?;
            if !st.success() {
                bail!("pulling {image} failed ({st})");
            }
            store.resolve(&name)?
        }
        Err(e) => return Err(e.into()),
    };
    let lowers = store
        .layer_dirs(&info, &cfg.mapping)
        .with_context(|| format!("unpacking {}", info.name))?;
    let c = info.config.config().clone().unwrap_or_default();
    let mut cmd: Vec<String> = c.entrypoint().clone().unwrap_or_default();
    cmd.extend(c.cmd().clone().unwrap_or_default());
    Ok(ImageDefaults {
        lowers,
        env: c.env().clone().unwrap_or_default(),
        cmd,
        workdir: c.working_dir().clone().filter(|w| !w.is_empty()),
        user: c.user().clone().filter(|u| !u.is_empty()),
    })
}

/// `SRC:DST[:ro|:rw]`.
fn parse_volume(v: &str) -> Result<BindMount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => bail!("bad volume {v:?}: want SRC:DST[:ro|:rw]"),
    };
    if !dst.starts_with('/') {
        bail!("bad volume {v:?}: the destination must be absolute");
    }
    let src = std::fs::canonicalize(src).with_context(|| format!("volume source {src}"))?;
    Ok(BindMount::new(src, dst, ro))
}

/// `1024`, `64k`, `512m`, `2g`, `1.5g` (powers of 1024; a trailing `b` is allowed).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("bad size {s:?} (e.g. 512m, 2g)"))?;
    if !(n.is_finite() && n > 0.0) {
        bail!("bad size {s:?}");
    }
    Ok((n * mult as f64) as u64)
}

struct ResolvedUser {
    user: User,
    home: String,
}

/// Look `spec` (UID[:GID] or NAME[:GROUP]) up in the image's /etc/passwd and /etc/group
/// (top-most layer first); numeric ids need no entry.
fn resolve_user(spec: Option<&str>, lowers: &[PathBuf]) -> Result<ResolvedUser> {
    let read = |name: &str| -> String {
        lowers
            .iter()
            .rev()
            .find_map(|l| std::fs::read_to_string(l.join("etc").join(name)).ok())
            .unwrap_or_default()
    };
    let Some(spec) = spec else {
        return Ok(ResolvedUser {
            user: User::ROOT,
            home: "/root".into(),
        });
    };
    let passwd = read("passwd");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && (f[0] == u || f[2] == u));
    let uid: u32 = match (u.parse(), &entry) {
        (Ok(n), _) => n,
        (Err(_), Some(f)) => f[2].parse().context("bad uid in the image's /etc/passwd")?,
        (Err(_), None) => bail!("user {u:?} not found in the image's /etc/passwd"),
    };
    let gid: u32 = match g {
        Some(g) => match g.parse() {
            Ok(n) => n,
            Err(_) => read("group")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| anyhow!("group {g:?} not found in the image's /etc/group"))?,
        },
        None => entry.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let home = entry.as_ref().map(|f| f[5].to_string()).unwrap_or_else(|| {
        if uid == 0 {
            "/root".into()
        } else {
            "/".into()
        }
    });
    Ok(ResolvedUser {
        user: User {
            uid,
            gid,
            groups: Vec::new(),
        },
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5gb").unwrap(), 3 << 29);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1m").is_err());
    }

    #[test]
    fn volumes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().to_str().unwrap();
        let v = parse_volume(&format!("{src}:/data:ro")).unwrap();
        assert_eq!((v.dst.to_str().unwrap(), v.readonly), ("/data", true));
        assert!(!parse_volume(&format!("{src}:/data")).unwrap().readonly);
        assert!(parse_volume(&format!("{src}:rel")).is_err());
        assert!(parse_volume(&format!("{src}:/d:bogus")).is_err());
        assert!(parse_volume("/nonexistent-src:/d").is_err());
    }

    #[test]
    fn users_from_the_image() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nbuilder:x:1000:135::/builddir:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "mock:x:135:\nwheel:x:10:\n").unwrap();
        let l = vec![d.path().to_owned()];
        let r = resolve_user(Some("builder"), &l).unwrap();
        assert_eq!(
            (r.user.uid, r.user.gid, r.home.as_str()),
            (1000, 135, "/builddir")
        );
        let r = resolve_user(Some("1000:wheel"), &l).unwrap();
        assert_eq!((r.user.uid, r.user.gid), (1000, 10));
        let r = resolve_user(Some("4000"), &l).unwrap();
        assert_eq!((r.user.uid, r.user.gid, r.home.as_str()), (4000, 0, "/"));
        assert!(resolve_user(Some("nobody-here"), &l).is_err());
        let r = resolve_user(None, &l).unwrap();
        assert_eq!(r.user, User::ROOT);
    }
}
