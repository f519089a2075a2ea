//! `koji-adjutant check`: can this host run builds?
//!
//! Every line is tried for real where it can be (a user namespace entered, an overlay
//! mounted in it, a container started and a command run in it, the hub logged in to,
//! the registry asked for the default image's manifest) and reported as OK, WARN
//! (builds run, with a caveat) or FAIL (builds will fail), with the fix when it is not
//! OK. Exit status 1 when anything failed. docs/operator-guide.md walks through the
//! lines; docs/troubleshooting.md lists the messages.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adjutant_runtime::container::{
    BindMount, ContainerSpec, ExecSpec, Limits, ProcessSpec, Rootfs, Runtime, RuntimeConfig, Sink,
};
use adjutant_runtime::idmap::{find_subordinate, IdMapping, MappingMode, MIN_RANGE};
use adjutant_runtime::platform::Platform;
use adjutant_runtime::reference::ImageSource;
use adjutant_runtime::registry::RegistryConfig;
use adjutant_runtime::store::{ErrorClass, Store, StoreError, StoreOptions};
use adjutant_runtime::{probe, userns};
use serde::Serialize;

use crate::config::{Config, DaemonArgs, IdMappingSetting, PullPolicy, RepoToolSetting};
use crate::hub::{AuthMethod, HubSession, HubTransport, RetryPolicy, TransportOptions};
use crate::xmlrpc::{FaultKind, Struct, Value};

use super::exit;

/// `koji-adjutant check [-c FILE] [--no-hub] [--no-pull] [--json]`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(
    about = "Check whether this host can run builds",
    long_about = "Check whether this host can run builds: the configuration, user namespaces and \
                  subordinate ids, overlayfs in a user namespace, cgroups, a real container start, \
                  free disk space, the hub (reachable, login, host record), the topurl, the default \
                  image and createrepo_c. Each line is OK, WARN or FAIL, with the fix when it is not \
                  OK. Exit status 1 if any line is FAIL."
)]
pub struct CheckArgs {
    /// kojid.conf to check (file or directory of *.conf files).
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = crate::config::DEFAULT_CONFIG
    )]
    pub config: PathBuf,
    /// Do not contact the hub or the topurl (no reachability or login check).
    #[arg(long)]
    pub no_hub: bool,
    /// Do not contact registries: the default image is only looked up in the store.
    #[arg(long)]
    pub no_pull: bool,
    /// Print the results as JSON (one object: ok, counts, checks).
    #[arg(long)]
    pub json: bool,
}

/// The outcome of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Not checked (a previous line failed, or an option skipped it).
    Skip,
    /// Builds run, with a caveat.
    Warn,
    /// Builds will fail (or the daemon will not start).
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Skip => "SKIP",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// What was checked (stable: `config`, `kernel`, `userns`, `subids`, `overlay`,
    /// `cgroups`, `container`, `store-disk`, `workdir`, `hub`, `topurl`, `image`,
    /// `image-policy`, `status`, `createrepo`).
    pub check: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub message: String,
    /// How to fix it (WARN and FAIL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The whole report.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// No line failed.
    pub ok: bool,
    /// Lines per status.
    pub counts: Counts,
    /// Every line, in order.
    pub checks: Vec<Line>,
}

/// Lines per status.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// OK lines.
    pub ok: usize,
    /// WARN lines.
    pub warn: usize,
    /// FAIL lines.
    pub fail: usize,
    /// SKIP lines.
    pub skip: usize,
}

impl Report {
    fn push(&mut self, check: &'static str, status: Status, message: impl Into<String>) {
        self.checks.push(Line {
            check,
            status,
            message: message.into(),
            fix: None,
        });
    }

    fn push_fix(
        &mut self,
        check: &'static str,
        status: Status,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Line {
            check,
            status,
            message: message.into(),
            fix: Some(fix.into()),
        });
    }

    fn finish(&mut self) {
        let mut c = Counts::default();
        for l in &self.checks {
            match l.status {
                Status::Ok => c.ok += 1,
                Status::Warn => c.warn += 1,
                Status::Fail => c.fail += 1,
                Status::Skip => c.skip += 1,
            }
        }
        self.ok = c.fail == 0;
        self.counts = c;
    }

    fn status_of(&self, check: &str) -> Option<Status> {
        self.checks
            .iter()
            .filter(|l| l.check == check)
            .map(|l| l.status)
            .max()
    }

    /// The report as text, one line per check, fixes indented below.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for l in &self.checks {
            let _ = writeln!(s, "{:<5} {:<12} {}", l.status.label(), l.check, l.message);
            if let Some(f) = &l.fix {
                let _ = writeln!(s, "{:<18} fix: {f}", "");
            }
        }
        let c = &self.counts;
        let _ = writeln!(
            s,
            "\n{} OK, {} WARN, {} FAIL, {} SKIP: {}",
            c.ok,
            c.warn,
            c.fail,
            c.skip,
            if self.ok {
                "this host can run builds"
            } else {
                "this host cannot run builds until the FAIL lines are fixed"
            }
        );
        s
    }
}

/// Entry point of `koji-adjutant check`.
pub fn main(root: Option<PathBuf>, log: Option<String>, args: CheckArgs) -> ExitCode {
    if let Some(filter) = log {
        // Only with --log: the report already says what the runtime would warn about.
        let filter = tracing_subscriber::EnvFilter::try_new(&filter)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .without_time()
            .try_init();
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("koji-adjutant check: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let report = rt.block_on(run(root, &args));
    let out = if args.json {
        serde_json::to_string_pretty(&report).map(|s| s + "\n")
    } else {
        Ok(report.text())
    };
    match out {
        Ok(s) => {
            let _ = std::io::stdout().write_all(s.as_bytes());
        }
        Err(e) => {
            eprintln!("koji-adjutant check: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    }
    ExitCode::from(if report.ok { exit::OK } else { exit::FAILURE })
}

/// What the checks share.
struct Ctx {
    cfg: Config,
    /// The configuration loaded (otherwise `cfg` is the defaults).
    cfg_ok: bool,
    store_root: PathBuf,
    root: bool,
    user: String,
    exe: PathBuf,
    /// The mapping containers get, when one could be chosen.
    mapping: Option<IdMapping>,
    runtime: Option<Runtime>,
    /// Channels of this host on the hub, when the hub told.
    channels: Option<Vec<String>>,
}

/// Run every check.
pub async fn run(root: Option<PathBuf>, args: &CheckArgs) -> Report {
    let mut r = Report::default();
    let uid = nix::unistd::geteuid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let (cfg, cfg_ok) = check_config(&mut r, args);
    let mut cfg = cfg;
    if let Some(root) = root {
        cfg.adjutant.store_root = Some(root);
    }
    let store_root = cfg.store_root();
    let mut ctx = Ctx {
        cfg,
        cfg_ok,
        store_root,
        root: uid.is_root(),
        user,
        exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
        mapping: None,
        runtime: None,
        channels: None,
    };
    check_kernel(&mut r);
    check_userns(&mut r, &mut ctx);
    check_subids(&mut r, &ctx);
    check_runtime(&mut r, &mut ctx);
    check_overlay(&mut r, &ctx);
    check_cgroups(&mut r, &ctx);
    check_container(&mut r, &ctx).await;
    check_disk(&mut r, &ctx);
    if args.no_hub {
        r.push("hub", Status::Skip, "not contacted (--no-hub)");
    } else if !ctx.cfg_ok {
        r.push(
            "hub",
            Status::Skip,
            "not contacted: the configuration did not load",
        );
    } else {
        check_hub(&mut r, &mut ctx).await;
        check_topurl(&mut r, &ctx).await;
    }
    check_image(&mut r, &ctx, args.no_pull).await;
    check_image_policy(&mut r, &ctx);
    check_status_bind(&mut r, &ctx);
    check_createrepo(&mut r, &ctx);
    r.finish();
    r
}

// ---------------------------------------------------------------------------------------
// config

fn check_config(r: &mut Report, args: &CheckArgs) -> (Config, bool) {
    let dargs = DaemonArgs {
        config: Some(args.config.clone()),
        ..DaemonArgs::default()
    };
    match Config::load(&dargs, std::env::vars()) {
        Ok(cfg) => {
            r.push(
                "config",
                Status::Ok,
                format!(
                    "{}: hub {}, topurl {}",
                    args.config.display(),
                    cfg.server(),
                    cfg.topurls().join(" ")
                ),
            );
            for w in &cfg.warnings {
                r.push_fix(
                    "config",
                    Status::Warn,
                    w.clone(),
                    "see docs/config.md for the keys koji-adjutant reads",
                );
            }
            (cfg, true)
        }
        Err(e) => {
            let fix = if !args.config.exists() {
                format!(
                    "create {} from the sample (/usr/share/doc/koji-adjutant/kojid.conf): set \
                     server, topurl and the login (cert, or user and password)",
                    args.config.display()
                )
            } else {
                "correct that setting (docs/config.md lists every key, its type and default)"
                    .to_owned()
            };
            r.push_fix("config", Status::Fail, e.to_string(), fix);
            (Config::defaults(), false)
        }
    }
}

// ---------------------------------------------------------------------------------------
// kernel, user namespaces, subordinate ids

/// The kernel release as (major, minor).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn check_kernel(r: &mut Report) {
    let u = nix::sys::utsname::uname();
    let (release, machine) = match &u {
        Ok(u) => (
            u.release().to_string_lossy().into_owned(),
            u.machine().to_string_lossy().into_owned(),
        ),
        Err(e) => {
            r.push("kernel", Status::Warn, format!("uname: {e}"));
            return;
        }
    };
    match kernel_version(&release) {
        Some(v) if v >= (6, 8) => {
            r.push("kernel", Status::Ok, format!("Linux {release} ({machine})"))
        }
        Some(v) if v >= (5, 11) => r.push(
            "kernel",
            Status::Ok,
            format!(
                "Linux {release} ({machine}): older than 6.8, so image layers are stacked with \
                 mount(2) and a `lowerdir=` option, which must fit a page (a few hundred \
                 layers; 6.8's `lowerdir+` has no limit)"
            ),
        ),
        _ => r.push_fix(
            "kernel",
            Status::Fail,
            format!(
                "Linux {release} ({machine}) is older than 5.11: overlayfs cannot be mounted in \
                 a user namespace (nor with `userxattr`)"
            ),
            "run a kernel ≥ 5.11 (≥ 6.8 recommended; EL9's 5.14 and Debian 12's 6.1 work)",
        ),
    }
}

fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn check_userns(r: &mut Report, ctx: &mut Ctx) {
    let mut hints = Vec::new();
    let max = read_sysctl("/proc/sys/user/max_user_namespaces");
    if max.as_deref() == Some("0") {
        hints.push(
            "user namespaces are disabled: `sysctl -w user.max_user_namespaces=15000` and the \
             same in /etc/sysctl.d/90-koji-adjutant.conf"
                .to_owned(),
        );
    }
    if !ctx.root {
        if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
            hints.push(
                "unprivileged user namespaces are disabled: `sysctl -w \
                 kernel.unprivileged_userns_clone=1` (and in /etc/sysctl.d/)"
                    .to_owned(),
            );
        }
        if read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref()
            == Some("1")
        {
            hints.push(format!(
                "AppArmor restricts unprivileged user namespaces: give {} a profile with \
                 `userns,` (docs/operator-guide.md, \"Host set-up, rootless\")",
                ctx.exe.display()
            ));
        }
    }
    let mapping = match chosen_mapping(ctx) {
        Ok(m) => m,
        Err(e) => {
            r.push_fix(
                "userns",
                Status::Fail,
                e,
                "fix id_mapping in [adjutant] (auto, or BASE:COUNT as root)",
            );
            return;
        }
    };
    match probe::identity(&ctx.exe, &mapping) {
        Ok(id) => {
            let mode = match mapping.mode {
                MappingMode::Root => "root mode".to_owned(),
                MappingMode::RootlessRanges => format!("rootless as {}", ctx.user),
                MappingMode::Single => format!("rootless as {}, single id (degraded)", ctx.user),
            };
            r.push(
                "userns",
                Status::Ok,
                format!(
                    "entered a user namespace ({mode}): uid_map {}; gid_map {}",
                    id.uid_map, id.gid_map
                ),
            );
            ctx.mapping = Some(mapping);
        }
        Err(e) => {
            let fix = if hints.is_empty() {
                match mapping.mode {
                    MappingMode::RootlessRanges => {
                        "newuidmap/newgidmap refused the mapping: check the subids line below"
                            .to_owned()
                    }
                    _ => "the kernel refused a user namespace: check the sysctls \
                          user.max_user_namespaces, kernel.unprivileged_userns_clone, \
                          kernel.apparmor_restrict_unprivileged_userns and any seccomp or LSM \
                          policy of this service"
                        .to_owned(),
                }
            } else {
                hints.join("; ")
            };
            r.push_fix(
                "userns",
                Status::Fail,
                format!("cannot enter a user namespace: {e}"),
                fix,
            );
        }
    }
}

/// The mapping the daemon would give containers (as the buildroot layer chooses it).
fn chosen_mapping(ctx: &Ctx) -> Result<IdMapping, String> {
    match ctx.cfg.adjutant.id_mapping {
        IdMappingSetting::Auto => userns::detect((100_000, 65_536))
            .map(|d| d.mapping)
            .map_err(|e| format!("choosing the id mapping: {e}")),
        IdMappingSetting::Range { base, count } => {
            if !ctx.root {
                return Err(format!(
                    "id_mapping = {base}:{count} needs root; rootless containers use the \
                     user's /etc/subuid and /etc/subgid ranges (id_mapping = auto)"
                ));
            }
            IdMapping::root(base, count).map_err(|e| format!("id_mapping: {e}"))
        }
    }
}

/// One `/etc/subuid` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRange {
    /// User name or uid.
    pub owner: String,
    /// First id.
    pub start: u64,
    /// Number of ids.
    pub count: u64,
}

/// Parse `/etc/subuid` or `/etc/subgid` text (malformed lines are skipped: the
/// runtime's own reader reports them).
pub fn parse_subids(text: &str) -> Vec<SubRange> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut it = l.split(':');
            let owner = it.next()?.to_owned();
            let start = it.next()?.trim().parse().ok()?;
            let count = it.next()?.trim().parse().ok()?;
            Some(SubRange {
                owner,
                start,
                count,
            })
        })
        .collect()
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

/// A free range of 65536 ids after every range in `files`, and after the root-mode
/// default range, for the fix text.
fn free_range(entries: &[SubRange]) -> u64 {
    let end = entries
        .iter()
        .map(|e| e.start + e.count)
        .chain([165_536])
        .max()
        .unwrap_or(165_536);
    end.div_ceil(65_536) * 65_536
}

fn check_subids(r: &mut Report, ctx: &Ctx) {
    let files = ["/etc/subuid", "/etc/subgid"];
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let entries: Vec<(String, Vec<SubRange>)> = files
        .iter()
        .map(|f| (f.to_string(), parse_subids(&read(f))))
        .collect();
    if ctx.root {
        let (base, count) = match ctx.cfg.adjutant.id_mapping {
            IdMappingSetting::Range { base, count } => (u64::from(base), u64::from(count)),
            IdMappingSetting::Auto => (100_000, 65_536),
        };
        let range = format!("{base}..{}", base + count - 1);
        let mut clashes = Vec::new();
        let mut reserved = 0;
        for (file, es) in &entries {
            for e in es {
                if !overlaps((base, count), (e.start, e.count)) {
                    continue;
                }
                if e.owner == "root" || e.owner == "0" {
                    if e.start <= base && e.start + e.count >= base + count {
                        reserved += 1;
                    }
                } else {
                    clashes.push(format!("{}:{}:{} in {file}", e.owner, e.start, e.count));
                }
            }
        }
        if !clashes.is_empty() {
            let all: Vec<SubRange> = entries.iter().flat_map(|(_, e)| e.clone()).collect();
            let free = free_range(&all);
            r.push_fix(
                "subids",
                Status::Warn,
                format!(
                    "containers use host ids {range}, which overlap {}: that user's own \
                     containers could share ids with build roots",
                    clashes.join(", ")
                ),
                format!(
                    "give build roots a range nobody has: id_mapping = {free}:65536 in \
                     [adjutant], recorded as root:{free}:65536 in /etc/subuid and /etc/subgid"
                ),
            );
        } else if reserved < files.len() {
            r.push_fix(
                "subids",
                Status::Warn,
                format!(
                    "containers use host ids {range}; the range is not reserved for root in \
                     /etc/subuid and /etc/subgid, so useradd may give it to a new user"
                ),
                format!(
                    "usermod --add-subuids {base}-{end} --add-subgids {base}-{end} root",
                    end = base + count - 1
                ),
            );
        } else {
            r.push(
                "subids",
                Status::Ok,
                format!("containers use host ids {range}, reserved for root in /etc/subuid and /etc/subgid"),
            );
        }
        return;
    }
    // rootless
    let uid = nix::unistd::geteuid().as_raw();
    let mut failed = false;
    let all: Vec<SubRange> = entries.iter().flat_map(|(_, e)| e.clone()).collect();
    let suggestion = free_range(&all);
    let add = format!(
        "usermod --add-subuids {suggestion}-{end} --add-subgids {suggestion}-{end} {user} \
         (a range no other user has; then restart the daemon)",
        end = suggestion + 65_535,
        user = ctx.user
    );
    for f in files {
        match find_subordinate(Path::new(f), &ctx.user, uid) {
            Ok(Some((start, count))) if count < MIN_RANGE - 1 => r.push_fix(
                "subids",
                Status::Warn,
                format!(
                    "{f}: {} has only {count} ids from {start}; packages owning files of ids \
                     above that cannot be installed",
                    ctx.user
                ),
                add.clone(),
            ),
            Ok(Some((start, count))) => r.push(
                "subids",
                Status::Ok,
                format!("{f}: {} has {count} ids from {start}", ctx.user),
            ),
            Ok(None) => {
                failed = true;
                r.push_fix(
                    "subids",
                    Status::Fail,
                    format!(
                        "no entry for {} in {f}: containers would map one id only, and rpm \
                         cannot install packages owning files of other users",
                        ctx.user
                    ),
                    add.clone(),
                );
            }
            Err(e) => {
                failed = true;
                r.push_fix(
                    "subids",
                    Status::Fail,
                    e.to_string(),
                    format!("correct {f}"),
                );
            }
        }
    }
    if failed {
        return;
    }
    for tool in ["newuidmap", "newgidmap"] {
        let Some(path) = find_tool(tool) else {
            r.push_fix(
                "subids",
                Status::Fail,
                format!("{tool} not found"),
                "install it: `apt-get install uidmap` (Debian, Ubuntu) or `dnf install \
                 shadow-utils` (Fedora, EL)",
            );
            continue;
        };
        let meta = std::fs::metadata(&path);
        let setuid_root = meta
            .as_ref()
            .is_ok_and(|m| m.uid() == 0 && m.permissions().mode() & 0o4000 != 0);
        let caps = has_xattr(&path, "security.capability");
        if setuid_root || caps {
            r.push(
                "subids",
                Status::Ok,
                format!(
                    "{} is {}",
                    path.display(),
                    if setuid_root {
                        "setuid root"
                    } else {
                        "given file capabilities"
                    }
                ),
            );
        } else {
            r.push_fix(
                "subids",
                Status::Fail,
                format!(
                    "{} is neither setuid root nor given file capabilities: it cannot write \
                     id maps",
                    path.display()
                ),
                format!(
                    "reinstall it, or `chmod u+s {p}` (or `setcap cap_setuid+ep {p}` for \
                     newuidmap, cap_setgid for newgidmap)",
                    p = path.display()
                ),
            );
        }
    }
    if no_new_privs() {
        r.push_fix(
            "subids",
            Status::Fail,
            "this process runs with no_new_privs: setuid newuidmap/newgidmap cannot work",
            "do not set NoNewPrivileges=yes in a unit that runs koji-adjutant rootless",
        );
    }
}

fn no_new_privs() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NoNewPrivs:").map(|v| v.trim() == "1"))
        })
        .unwrap_or(false)
}

fn has_xattr(path: &Path, name: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(path.as_os_str().as_bytes()),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    // SAFETY: valid C strings; a zero-length query only returns the size.
    unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) > 0 }
}

/// A program on PATH, then in /usr/sbin, /usr/bin.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------
// runtime: overlay, cgroups, a container

fn check_runtime(r: &mut Report, ctx: &mut Ctx) {
    let Some(mapping) = ctx.mapping.clone() else {
        return;
    };
    let mut cfg = RuntimeConfig::new(&ctx.store_root, mapping);
    cfg.helper_exe = ctx.exe.clone();
    if let Err(e) = std::fs::create_dir_all(&ctx.store_root) {
        r.push_fix(
            "container",
            Status::Fail,
            format!(
                "cannot create the store root {}: {e}",
                ctx.store_root.display()
            ),
            "create it, owned by the user the daemon runs as, or set store_root in [adjutant]",
        );
        return;
    }
    match Runtime::new(cfg) {
        Ok(rt) => ctx.runtime = Some(rt),
        Err(e) => {
            let fix = match &e {
                adjutant_runtime::container::RuntimeError::NotTraversable { path, .. } => {
                    format!(
                        "chmod o+x {} (or choose another store_root)",
                        path.display()
                    )
                }
                _ => {
                    "check the store root's permissions, or set store_root in [adjutant]".to_owned()
                }
            };
            r.push_fix("container", Status::Fail, e.to_string(), fix);
        }
    }
}

fn probe_dir(ctx: &Ctx, what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Dot entries in containers/ are never swept as containers.
    ctx.store_root
        .join("containers")
        .join(format!(".check-{what}-{}-{nanos}", std::process::id()))
}

fn check_overlay(r: &mut Report, ctx: &Ctx) {
    let (Some(mapping), Some(_)) = (&ctx.mapping, &ctx.runtime) else {
        r.push(
            "overlay",
            Status::Skip,
            "not tried: needs a user namespace and a store",
        );
        return;
    };
    let dir = probe_dir(ctx, "overlay");
    match probe::overlay(&ctx.exe, mapping, &dir) {
        Ok(rep) => r.push(
            "overlay",
            Status::Ok,
            format!(
                "overlayfs in a user namespace (userxattr) on {} ({}): writes, \
                 whiteouts and opaque directories work",
                ctx.store_root.display(),
                rep.upper_fs
            ),
        ),
        Err(e) => {
            let msg = e.to_string();
            let fs = probe::fs_name(&ctx.store_root);
            let fix = if msg.contains("too many layers") || msg.contains("do not fit a page") {
                "this kernel's overlayfs takes its layers in one page-sized option: run Linux ≥ \
                 6.8 (`lowerdir+`)"
                    .to_owned()
            } else if msg.contains("opaque") || msg.contains("xattr") {
                format!(
                    "the store's filesystem ({fs}) must support user.* xattrs for overlay's \
                     upper directories (ext4, xfs, btrfs; tmpfs from Linux 6.6): move \
                     store_root"
                )
            } else if fs == "overlay" || fs == "nfs" || fs == "cifs" || fs == "fuse" {
                format!("the store is on {fs}, which cannot hold overlay upper directories: move store_root to a local ext4, xfs or btrfs filesystem")
            } else {
                "overlayfs must be mountable in a user namespace (Linux ≥ 5.11; the overlay \
                 module loaded or loadable): check `modprobe overlay` and dmesg"
                    .to_owned()
            };
            r.push_fix("overlay", Status::Fail, msg, fix);
        }
    }
}

fn check_cgroups(r: &mut Report, ctx: &Ctx) {
    let Some(rt) = &ctx.runtime else {
        r.push("cgroups", Status::Skip, "not checked: no container runtime");
        return;
    };
    let st = rt.status();
    if st.cgroups_available {
        let missing = adjutant_runtime::cgroups::missing_controllers();
        if missing.is_empty() {
            let parent = &rt.config().cgroup_parent;
            let dirs = adjutant_runtime::cgroups::hierarchy_dirs(parent);
            let place = match dirs.as_slice() {
                [one] => format!("cgroup v2: {}/<id>", one.display()),
                many => format!(
                    "cgroup v1: {}/<id> in {} hierarchies",
                    parent.display(),
                    many.len()
                ),
            };
            r.push(
                "cgroups",
                Status::Ok,
                format!("containers get cgroups with memory, pids and cpu limits ({place})"),
            );
        } else {
            r.push_fix(
                "cgroups",
                Status::Warn,
                format!(
                    "controllers missing: {}; memory_limit, pids_limit or cpu_limit needing \
                     them fail",
                    missing.join(", ")
                ),
                "enable the controllers (cgroup v2: in the parent's cgroup.subtree_control; \
                 v1: mount them)",
            );
        }
    } else {
        let why = st
            .cgroups_unavailable_reason
            .unwrap_or_else(|| "unknown".into());
        r.push_fix(
            "cgroups",
            Status::Warn,
            format!("builds run without memory/pids/cpu limits: {why}"),
            if ctx.root {
                "mount the cgroup filesystem (v2 at /sys/fs/cgroup, or the v1 controllers)"
            } else {
                "run the daemon as root, or on cgroup v2 give it a delegated subtree \
                 (docs/operator-guide.md, \"Root or rootless\")"
            },
        );
    }
}

/// A root filesystem for the container check: empty, with the host's /usr (and
/// /bin, /lib… as they are on the host) bound read-only, so host tools run inside.
fn probe_rootfs(dir: &Path) -> std::io::Result<Vec<BindMount>> {
    std::fs::create_dir(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::create_dir(dir.join("usr"))?;
    let mut mounts = vec![BindMount::new("/usr", "/usr", true)];
    for d in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
        let host = Path::new("/").join(d);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                std::os::unix::fs::symlink(std::fs::read_link(&host)?, dir.join(d))?;
            }
            Ok(m) if m.is_dir() => {
                std::fs::create_dir(dir.join(d))?;
                mounts.push(BindMount::new(&host, format!("/{d}"), true));
            }
            _ => {}
        }
    }
    Ok(mounts)
}

async fn check_container(r: &mut Report, ctx: &Ctx) {
    let Some(rt) = &ctx.runtime else {
        r.push("container", Status::Skip, "not tried: no container runtime");
        return;
    };
    if r.status_of("overlay") == Some(Status::Fail) {
        r.push("container", Status::Skip, "not tried: overlayfs failed");
        return;
    }
    let dir = probe_dir(ctx, "rootfs");
    let res = container_probe(rt, &dir).await;
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            r.push(
                "container",
                Status::Warn,
                format!("could not remove {}: {e}", dir.display()),
            );
        }
    }
    match res {
        Ok((ms, limits)) => r.push(
            "container",
            Status::Ok,
            format!(
                "started a container (user, mount, pid, net, uts, ipc, cgroup namespaces; \
                 overlay root), ran `id -u` as its root, destroyed it: {ms} ms; {limits}"
            ),
        ),
        Err((msg, fix)) => r.push_fix("container", Status::Fail, msg, fix),
    }
}

async fn container_probe(rt: &Runtime, dir: &Path) -> Result<(u128, String), (String, String)> {
    let generic = "docs/troubleshooting.md lists the runtime's error messages; \
                   `koji-adjutant --log debug check` shows each step";
    let mounts = probe_rootfs(dir).map_err(|e| {
        (
            format!("preparing {}: {e}", dir.display()),
            "the store root must be writable".to_owned(),
        )
    })?;
    let with_limits = rt.status().cgroups_available;
    let mut spec = ContainerSpec::new(Rootfs::Overlay {
        lowers: vec![dir.to_owned()],
    });
    spec.mounts = mounts;
    if with_limits {
        spec.limits = Limits {
            memory: Some(256 << 20),
            pids: Some(64),
            cpus: Some(1.0),
        };
    }
    let t0 = Instant::now();
    let rt2 = rt.clone();
    let c = tokio::task::spawn_blocking(move || rt2.create_blocking(spec))
        .await
        .map_err(|e| (format!("container start: {e}"), generic.to_owned()))?
        .map_err(|e| (e.to_string(), generic.to_owned()))?;
    let (out, captured) = Sink::capture();
    let mut exec = ExecSpec::new(ProcessSpec::new(["id", "-u"]));
    exec.stdout = out;
    exec.timeout = Some(Duration::from_secs(60));
    let status = c.run(exec).await;
    let usage = c.usage();
    let destroyed = c.destroy().await;
    let ms = t0.elapsed().as_millis();
    let status = status.map_err(|e| (e.to_string(), generic.to_owned()))?;
    let text = captured.text();
    if !status.success() || text.trim() != "0" {
        return Err((
            format!(
                "`id -u` in the container: exit {:?}, output {:?} (expected 0)",
                status.code,
                text.trim()
            ),
            generic.to_owned(),
        ));
    }
    destroyed.map_err(|e| (format!("destroying the container: {e}"), generic.to_owned()))?;
    let limits = if usage.limits_available {
        "limits applied (memory 256 MiB, 64 pids, 1 CPU)".to_owned()
    } else {
        format!(
            "no limits: {}",
            usage
                .unavailable_reason
                .unwrap_or_else(|| "cgroups unavailable".into())
        )
    };
    Ok((ms, limits))
}

// ---------------------------------------------------------------------------------------
// disk

fn nearest_existing(p: &Path) -> &Path {
    p.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"))
}

fn free_mib(p: &Path) -> Result<u64, String> {
    let s = nix::sys::statvfs::statvfs(p).map_err(|e| format!("statvfs {}: {e}", p.display()))?;
    Ok((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64) >> 20)
}

fn writable(p: &Path) -> Result<(), String> {
    let d = nearest_existing(p);
    nix::unistd::access(
        d,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(|e| format!("{} is not writable by {}: {e}", d.display(), whoami()))
}

fn whoami() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn check_disk(r: &mut Report, ctx: &Ctx) {
    let minspace = u64::try_from(ctx.cfg.kojid.minspace).unwrap_or(0);
    for (check, what, path) in [
        ("store-disk", "store", ctx.store_root.clone()),
        ("workdir", "workdir", ctx.cfg.kojid.workdir.clone()),
    ] {
        if let Err(e) = writable(&path) {
            r.push_fix(
                check,
                Status::Fail,
                e,
                format!(
                    "make {} writable by the daemon's user, or set {} in the config",
                    path.display(),
                    if what == "store" {
                        "store_root ([adjutant])"
                    } else {
                        "workdir ([kojid])"
                    }
                ),
            );
            continue;
        }
        let at = nearest_existing(&path);
        let fs = probe::fs_name(at);
        match free_mib(at) {
            Ok(free) if free < minspace => r.push_fix(
                check,
                if what == "store" {
                    Status::Fail
                } else {
                    Status::Warn
                },
                format!(
                    "{what} {} ({fs}): {free} MiB free, below minspace = {minspace} MiB{}",
                    path.display(),
                    if what == "store" {
                        ": the daemon takes no task (\"Insufficient disk space\")"
                    } else {
                        ""
                    }
                ),
                format!(
                    "free space on {} (`koji-adjutant image prune` removes unused image data), \
                     or lower minspace",
                    at.display()
                ),
            ),
            Ok(free) => r.push(
                check,
                Status::Ok,
                format!(
                    "{what} {} ({fs}): {free} MiB free (minspace {minspace} MiB)",
                    path.display()
                ),
            ),
            Err(e) => r.push(check, Status::Warn, e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// hub and topurl

/// Koji arch names this machine builds natively.
fn host_arches() -> Vec<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => vec!["x86_64", "i686", "i586", "i486", "i386"],
        "aarch64" => vec!["aarch64"],
        "powerpc64" => vec!["ppc64le", "ppc64"],
        "s390x" => vec!["s390x"],
        "riscv64" => vec!["riscv64"],
        "x86" => vec!["i686", "i586", "i486", "i386"],
        _ => vec![],
    }
}

async fn check_hub(r: &mut Report, ctx: &mut Ctx) {
    let cfg = &ctx.cfg;
    let server = cfg.server().to_owned();
    let mut topts = match TransportOptions::from_config(cfg) {
        Ok(t) => t,
        Err(e) => {
            r.push_fix(
                "hub",
                Status::Fail,
                e.to_string(),
                "check server, cert and serverca in [kojid]",
            );
            return;
        }
    };
    topts.timeout = topts.timeout.min(Duration::from_secs(30));
    topts.auth_timeout = topts.auth_timeout.min(Duration::from_secs(30));
    let transport = match HubTransport::new(topts) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            r.push_fix(
                "hub",
                Status::Fail,
                e.to_string(),
                "cert must be a PEM file holding the certificate and its key; serverca a PEM \
                 CA bundle",
            );
            return;
        }
    };
    let anon = HubSession::new(
        transport.clone(),
        AuthMethod::None,
        RetryPolicy::none(),
        cfg.adjutant.hub_callnum_check,
    );
    let version = match anon.get_koji_version().await {
        Ok(v) => v,
        Err(e) => {
            let cert_problem = e.to_string().to_ascii_lowercase().contains("certificate");
            r.push_fix(
                "hub",
                Status::Fail,
                format!("cannot reach the hub at {server}: {e}"),
                if cert_problem {
                    "the hub's TLS certificate is not trusted: set serverca to the CA that \
                     signed it"
                } else {
                    "check server in [kojid] (the hub's XML-RPC URL, e.g. \
                     https://koji.example.com/kojihub), DNS and firewalls between this host \
                     and the hub"
                },
            );
            return;
        }
    };
    let old = kernel_version(&version).is_some_and(|v| v < (1, 35));
    let auth = match crate::daemon::auth_method(cfg) {
        Ok(a) => a,
        Err(e) => {
            r.push_fix(
                "hub",
                Status::Fail,
                format!("hub {server} (Koji {version}) reachable; {e}"),
                "set cert (and serverca) or user and password in [kojid]",
            );
            return;
        }
    };
    let who = match &auth {
        AuthMethod::Password { user, .. } => format!("user {user}"),
        AuthMethod::Certificate => format!(
            "certificate {}",
            cfg.kojid
                .cert
                .as_deref()
                .unwrap_or(Path::new("?"))
                .display()
        ),
        AuthMethod::None => "anonymous".into(),
    };
    let session = HubSession::new(
        transport,
        auth,
        RetryPolicy::none(),
        cfg.adjutant.hub_callnum_check,
    );
    if let Err(e) = session.login().await {
        let fix = if e.fault().is_some() {
            "the hub refused the credentials: check user and password (or the certificate; its \
             CN is the login name), and that the build host exists (`koji add-host NAME ARCH…`, \
             run by an admin; NAME is the login name)"
        } else {
            "check cert (a PEM file with the certificate and its key) and serverca; a client \
             certificate login is posted to <server>/ssllogin over https"
        };
        r.push_fix(
            "hub",
            Status::Fail,
            format!("hub {server} (Koji {version}) reachable, but login as {who} failed: {e}"),
            fix,
        );
        return;
    }
    let detail = host_detail(&session, &server, &version, &who).await;
    let _ = session.logout().await;
    match detail {
        Err((msg, fix)) => r.push_fix("hub", Status::Fail, msg, fix),
        Ok(None) => r.push(
            "hub",
            Status::Ok,
            format!(
                "hub {server} (Koji {version}): logged in as {who}; another session holds \
                 this host's exclusive lock (a daemon is running with these credentials), so \
                 the host record was not read"
            ),
        ),
        Ok(Some(h)) => {
            r.push(
                "hub",
                Status::Ok,
                format!(
                    "hub {server} (Koji {version}): logged in as {who}; host {} (id {}), \
                     arches {}, capacity {}, channels {}",
                    h.name,
                    h.id,
                    h.arches.join(" "),
                    h.capacity,
                    h.channels
                        .as_ref()
                        .map(|c| if c.is_empty() {
                            "none".to_owned()
                        } else {
                            c.join(" ")
                        })
                        .unwrap_or_else(|| "(not listed)".into())
                ),
            );
            if !h.enabled {
                r.push_fix(
                    "hub",
                    Status::Warn,
                    format!("host {} is disabled on the hub: it gets no tasks", h.name),
                    format!("koji enable-host {}", h.name),
                );
            }
            let mine = host_arches();
            if !mine.is_empty() && !h.arches.iter().any(|a| mine.contains(&a.as_str())) {
                r.push_fix(
                    "hub",
                    Status::Warn,
                    format!(
                        "host {} has arches {} on the hub, none of which this {} machine \
                         builds natively",
                        h.name,
                        h.arches.join(" "),
                        std::env::consts::ARCH
                    ),
                    format!("koji edit-host --arches \"{}\" {}", mine[0], h.name),
                );
            }
            if let Some(ch) = &h.channels {
                if ch.is_empty() {
                    r.push_fix(
                        "hub",
                        Status::Warn,
                        format!("host {} is in no channel: it gets no tasks", h.name),
                        format!("koji add-host-to-channel {} default", h.name),
                    );
                }
                ctx.channels = Some(ch.clone());
            }
        }
    }
    if old {
        r.push_fix(
            "hub",
            Status::Warn,
            format!(
                "the hub runs Koji {version}; koji-adjutant speaks the 1.35 protocol (tasks \
                 assigned by the hub's scheduler)"
            ),
            "upgrade the hub to Koji ≥ 1.35",
        );
    }
}

struct HostDetail {
    id: i64,
    name: String,
    arches: Vec<String>,
    capacity: f64,
    enabled: bool,
    channels: Option<Vec<String>>,
}

/// After login: the exclusive session (never forced), the host record and its
/// channels. `Ok(None)` when a running daemon holds the lock.
async fn host_detail(
    session: &HubSession,
    server: &str,
    version: &str,
    who: &str,
) -> Result<Option<HostDetail>, (String, String)> {
    match session.exclusive_session(false).await {
        Ok(()) => {}
        Err(e) if e.is_fault(FaultKind::AuthLock) => return Ok(None),
        Err(e) => {
            return Err((
                format!(
                "hub {server} (Koji {version}): logged in as {who}; exclusiveSession failed: {e}"
            ),
                "docs/troubleshooting.md".into(),
            ))
        }
    }
    let id = session.host_get_id().await.map_err(|e| {
        (
            format!(
                "hub {server} (Koji {version}): logged in as {who}, which is not a build host: {e}"
            ),
            "an admin creates the host: `koji add-host NAME ARCH…` with NAME the login name \
             (user, or the certificate's CN), then `koji add-host-to-channel NAME CHANNEL`"
                .into(),
        )
    })?;
    let host = session.host_get_host().await.map_err(|e| {
        (
            format!("hub {server}: host.getHost failed: {e}"),
            "docs/troubleshooting.md".into(),
        )
    })?;
    let mut kw = Struct::new();
    kw.insert("hostID".into(), Value::Int(id));
    let channels = session
        .call_kw("listChannels", vec![], kw)
        .await
        .ok()
        .and_then(|v| match v {
            Value::Array(a) => Some(
                a.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        });
    Ok(Some(HostDetail {
        id,
        name: host.name,
        arches: host.arches,
        capacity: host.capacity,
        enabled: host.enabled,
        channels,
    }))
}

async fn check_topurl(r: &mut Report, ctx: &Ctx) {
    let Some(url) = ctx.cfg.topurls().first().cloned() else {
        return;
    };
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .danger_accept_invalid_certs(ctx.cfg.kojid.no_ssl_verify);
    if let Some(ca) = &ctx.cfg.kojid.serverca {
        if let Ok(pem) = std::fs::read(ca) {
            for c in reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default() {
                b = b.add_root_certificate(c);
            }
        }
    }
    let client = match b.build() {
        Ok(c) => c,
        Err(e) => {
            r.push("topurl", Status::Warn, format!("HTTP client: {e}"));
            return;
        }
    };
    match client.get(&url).send().await {
        Ok(resp) => r.push(
            "topurl",
            Status::Ok,
            format!("{url} answers (HTTP {})", resp.status().as_u16()),
        ),
        Err(e) => r.push_fix(
            "topurl",
            Status::Fail,
            format!("cannot reach topurl {url}: {e}"),
            "topurl must be the URL of the hub's file tree (e.g. \
             https://koji.example.com/kojifiles): builds download repos and sources from it",
        ),
    }
}

// ---------------------------------------------------------------------------------------
// images, createrepo

async fn check_image(r: &mut Report, ctx: &Ctx, no_pull: bool) {
    let image = ctx.cfg.adjutant.default_image.clone();
    let opts = StoreOptions {
        registry: RegistryConfig {
            insecure: ctx.cfg.adjutant.insecure_registries.0.clone(),
            auth_file: ctx.cfg.adjutant.registry_auth_file.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    let store = match Store::open_with(&ctx.store_root, opts) {
        Ok(s) => s,
        Err(e) => {
            r.push_fix(
                "image",
                Status::Fail,
                format!("cannot open the store {}: {e}", ctx.store_root.display()),
                "check store_root and its permissions",
            );
            return;
        }
    };
    match store.resolve(&image) {
        Ok(info) => {
            r.push(
                "image",
                Status::Ok,
                format!(
                    "default image {image} is in the store ({}, {} layers, {} MB)",
                    info.manifest_digest,
                    info.layers.len(),
                    info.size >> 20
                ),
            );
            return;
        }
        Err(StoreError::NotFound(_)) => {}
        Err(e) => {
            r.push_fix(
                "image",
                Status::Fail,
                format!("default image {image}: {e}"),
                "check default_image in [adjutant]",
            );
            return;
        }
    }
    let local_only = matches!(
        ImageSource::parse(&image),
        Ok(ImageSource::Registry(reg)) if reg.registry == adjutant_runtime::reference::LOCAL_REGISTRY
    );
    if local_only {
        r.push_fix(
            "image",
            Status::Fail,
            format!(
                "default image {image} is not in the store, and `localhost/` images exist \
                 only in the store (no registry has them)"
            ),
            format!(
                "koji-adjutant image import oci:DIR {image} (from an OCI layout), or set \
                 default_image in [adjutant] to an image in a registry"
            ),
        );
        return;
    }
    let pull_fix = format!(
        "koji-adjutant image pull {image} (or `image import` from an OCI layout or archive)"
    );
    if ctx.cfg.adjutant.pull_policy == PullPolicy::Never {
        r.push_fix(
            "image",
            Status::Fail,
            format!("default image {image} is not in the store and pull_policy = never"),
            pull_fix,
        );
        return;
    }
    if no_pull {
        r.push_fix(
            "image",
            Status::Warn,
            format!(
                "default image {image} is not in the store; its registry was not asked \
                 (--no-pull): the first build pulls it"
            ),
            pull_fix,
        );
        return;
    }
    match ImageSource::parse(&image) {
        Ok(ImageSource::Registry(_)) => {}
        Ok(_) => {
            r.push_fix(
                "image",
                Status::Warn,
                format!(
                    "default image {image} is not in the store yet; it is imported on first use"
                ),
                pull_fix,
            );
            return;
        }
        Err(e) => {
            r.push_fix(
                "image",
                Status::Fail,
                format!("default image {image:?}: {e}"),
                "default_image must be a reference such as registry.example.com/buildroot:el9",
            );
            return;
        }
    }
    match store.remote_manifest(&image, &Platform::host()).await {
        Ok(m) => r.push(
            "image",
            Status::Ok,
            format!(
                "default image {image} is not in the store yet; the registry has it for this \
                 platform ({}, {} layers, {} MB to pull)",
                m.digest,
                m.layers,
                m.size >> 20
            ),
        ),
        Err(e) => {
            let fix = match e.class() {
                ErrorClass::NotFound => {
                    "the registry has no such repository, tag or platform: check default_image"
                        .to_owned()
                }
                _ => format!(
                    "check the name, the registry's credentials (registry_auth_file, or \
                     `podman login`'s auth.json) and insecure_registries; or {pull_fix}"
                ),
            };
            r.push_fix(
                "image",
                Status::Fail,
                format!("default image {image} cannot be pulled: {e}"),
                fix,
            );
        }
    }
}

/// Check the image policy file, when one is configured, exactly as the daemon loads it
/// at start-up ([`crate::policy::ImagePolicy::new`]).
fn check_image_policy(r: &mut Report, ctx: &Ctx) {
    let Some(path) = &ctx.cfg.adjutant.image_policy else {
        return;
    };
    if !ctx.cfg.adjutant.policy_enabled {
        r.push(
            "image-policy",
            Status::Ok,
            format!(
                "{} not read: policy_enabled = false (every build uses default_image)",
                path.display()
            ),
        );
        return;
    }
    let settings = crate::policy::PolicySettings::from_config(&ctx.cfg);
    match crate::policy::ImagePolicy::new(settings) {
        Ok(_) => {
            let n = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| crate::policy::RuleSet::parse(&v).ok())
                .map_or(0, |s| s.rules.len());
            r.push(
                "image-policy",
                Status::Ok,
                format!("{}: {n} rules", path.display()),
            )
        }
        Err(e) => r.push_fix(
            "image-policy",
            Status::Fail,
            e.to_string(),
            "with it the daemon takes no build tasks: docs/operator-guide.md, \"Image \
             policies\", shows the format (config/image-policy.json is an example)",
        ),
    }
}

/// The status endpoint's address: free to listen on (the daemon runs without its status
/// endpoint otherwise).
fn check_status_bind(r: &mut Report, ctx: &Ctx) {
    let a = &ctx.cfg.adjutant;
    let Some(addr) = a.status_bind.addr().filter(|_| a.status_enabled) else {
        r.push("status", Status::Ok, "status endpoint disabled");
        return;
    };
    match std::net::TcpListener::bind(addr) {
        Ok(_) => r.push(
            "status",
            Status::Ok,
            format!("status endpoint address {addr} is free"),
        ),
        Err(e) => r.push_fix(
            "status",
            Status::Warn,
            format!(
                "cannot listen on {addr} (status_bind): {e}; the daemon would run without its \
                 status endpoint (a daemon already running here holds it, or another service)"
            ),
            "give each builder on a machine its own status_bind port, or status_bind = (empty) \
             to disable the endpoint",
        ),
    }
}

fn tool_version(tool: &Path) -> Option<String> {
    let out = std::process::Command::new(tool)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let first = s.lines().next()?.trim();
    // createrepo_c: "Version: 0.17.3 (Features: …)"
    let v = first
        .strip_prefix("Version:")
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or(first);
    let name = tool.file_name()?.to_string_lossy();
    Some(format!("{name} {v}"))
}

fn check_createrepo(r: &mut Report, ctx: &Ctx) {
    let in_channel = ctx
        .channels
        .as_ref()
        .map(|c| c.iter().any(|x| x == "createrepo"));
    let needed = in_channel == Some(true);
    let missing_status = if needed { Status::Fail } else { Status::Warn };
    let why = match in_channel {
        Some(true) => "this host is in the createrepo channel",
        Some(false) => "needed only in the createrepo channel, which this host is not in",
        None => "needed by hosts in the createrepo channel",
    };
    let image = &ctx.cfg.adjutant.default_image;
    let install = "`apt-get install createrepo-c` (Debian, Ubuntu) or `dnf install \
                   createrepo_c` (Fedora, EL)";
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for tool in ["createrepo_c", "mergerepo_c"] {
        match find_tool(tool) {
            Some(p) => found.push(
                tool_version(&p).unwrap_or_else(|| format!("{} (version unknown)", p.display())),
            ),
            None => missing.push(tool),
        }
    }
    match ctx.cfg.adjutant.repo_tool {
        RepoToolSetting::Container => r.push(
            "createrepo",
            Status::Ok,
            format!(
                "repo_tool = container: createrepo tasks run createrepo_c and mergerepo_c in a \
                 container of {image}"
            ),
        ),
        RepoToolSetting::Host => {
            for tool in &missing {
                r.push_fix(
                    "createrepo",
                    missing_status,
                    format!("{tool} not found on the host and repo_tool = host ({why})"),
                    format!("{install}, or repo_tool = auto to run it in a container of {image}"),
                );
            }
        }
        RepoToolSetting::Auto if !missing.is_empty() && found.is_empty() => r.push_fix(
            "createrepo",
            if needed { Status::Warn } else { Status::Ok },
            format!(
                "createrepo_c is not on the host: createrepo tasks run it in a container of \
                 {image}, which must have createrepo_c and mergerepo_c ({why})"
            ),
            format!("{install}, or an image with createrepo_c as default_image"),
        ),
        RepoToolSetting::Auto => {
            for tool in &missing {
                r.push_fix(
                    "createrepo",
                    missing_status,
                    format!("{tool} not found ({why}; createrepo_c is on the host, so it is used)"),
                    install,
                );
            }
        }
    }
    if !found.is_empty() && ctx.cfg.adjutant.repo_tool != RepoToolSetting::Container {
        r.push("createrepo", Status::Ok, found.join("; "));
    }
    if needed {
        let repos = ctx.cfg.kojid.topdir.join("repos");
        if repos.is_dir() {
            r.push(
                "createrepo",
                Status::Ok,
                format!("{} is there (newRepo reads repos from it)", repos.display()),
            );
        } else {
            r.push_fix(
                "createrepo",
                Status::Fail,
                format!(
                    "{} is not a directory: newRepo and createrepo tasks are refused",
                    repos.display()
                ),
                "mount the Koji volume (the hub's KojiDir) at topdir, read-only is enough",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_version("5.14.0-427.el9.x86_64"), Some((5, 14)));
        assert_eq!(kernel_version("1.35.3"), Some((1, 35)));
        assert_eq!(kernel_version("garbage"), None);
    }

    #[test]
    fn subid_files_and_free_ranges() {
        let e = parse_subids(
            "# comment\nalice:100000:65536\n\nbob:165536:65536\nbroken line\n1000:300000:10\n",
        );
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].owner, "alice");
        assert_eq!(e[2].start, 300000);
        assert!(overlaps((100000, 65536), (e[0].start, e[0].count)));
        assert!(!overlaps((165536, 65536), (e[0].start, e[0].count)));
        assert_eq!(free_range(&e), 327680);
        assert_eq!(free_range(&[]), 196608);
    }

    #[test]
    fn the_sample_image_policy_is_valid() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/image-policy.json"
        ))
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let set = crate::policy::RuleSet::parse(&v).unwrap();
        assert!(set.rules.len() >= 4);
        let q = crate::policy::Query {
            tag: "f41-build",
            arch: "aarch64",
            method: "buildArch",
        };
        assert_eq!(
            set.select(&q).unwrap().image,
            "registry.example.com/koji/fedora-41-aarch64:latest"
        );
    }

    #[test]
    fn report_text_and_exit_state() {
        let mut r = Report::default();
        r.push("kernel", Status::Ok, "Linux 6.18");
        r.push_fix("hub", Status::Fail, "cannot reach", "check server");
        r.finish();
        assert!(!r.ok);
        assert_eq!(r.counts.fail, 1);
        let t = r.text();
        assert!(
            t.contains("FAIL  hub") && t.contains("fix: check server"),
            "{t}"
        );
        assert!(t.contains("cannot run builds"), "{t}");
    }
}
