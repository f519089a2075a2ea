//! kojid's command-line flags (builder/kojid `get_options`), accepted by
//! `koji-adjutant daemon` and by the binary when it is invoked as `kojid`.

use std::path::PathBuf;

use clap::Args;

use super::values::{ConfValue, Words};
use super::{Config, ConfigError, Origin};

/// `koji-adjutant daemon [flags]` — the same flags as kojid.
#[derive(Debug, Clone, Default, Args, PartialEq, Eq)]
pub struct DaemonArgs {
    /// Use an alternate configuration file (or directory of *.conf files).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// User for password login.
    #[arg(long)]
    pub user: Option<String>,
    /// Password for password login.
    #[arg(long)]
    pub password: Option<String>,
    /// Run in the foreground (otherwise detach, as kojid does).
    #[arg(short = 'f', long = "fg")]
    pub fg: bool,
    /// Force the exclusive session lock (close another session holding it).
    #[arg(long = "force-lock")]
    pub force_lock: bool,
    /// Show verbose output (INFO).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Show debug output.
    #[arg(short = 'd', long)]
    pub debug: bool,
    /// Enable debug output for tasks.
    #[arg(long = "debug-task")]
    pub debug_task: bool,
    /// Log every XML-RPC request and response.
    #[arg(long = "debug-xmlrpc")]
    pub debug_xmlrpc: bool,
    /// Obsolete kojid option (accepted, warned).
    #[arg(long = "debug-mock", hide = true)]
    pub debug_mock: bool,
    /// Log in and check the hub, then exit without running the loop.
    #[arg(long = "skip-main")]
    pub skip_main: bool,
    /// Maximum number of concurrent tasks.
    #[arg(long)]
    pub maxjobs: Option<i64>,
    /// MiB of free space needed to take a task.
    #[arg(long)]
    pub minspace: Option<i64>,
    /// Seconds between polls when idle.
    #[arg(long)]
    pub sleeptime: Option<i64>,
    /// Comma-separated addresses to send error notices to.
    #[arg(long = "admin-emails", value_name = "EMAILS")]
    pub admin_emails: Option<String>,
    /// Local path of the Koji file tree.
    #[arg(long)]
    pub topdir: Option<PathBuf>,
    /// URL of the Koji file tree.
    #[arg(long)]
    pub topurl: Option<String>,
    /// Local scratch directory.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Temporary directory inside buildroots.
    #[arg(long = "chroot-tmpdir")]
    pub chroot_tmpdir: Option<String>,
    /// kojid plugin search path (accepted).
    #[arg(long)]
    pub pluginpath: Option<String>,
    /// Load the named plugin (repeatable; kojid's Python plugins cannot be loaded).
    #[arg(long)]
    pub plugin: Vec<String>,
    /// kojid's buildroot directory.
    #[arg(long)]
    pub mockdir: Option<PathBuf>,
    /// User to run builds as.
    #[arg(long)]
    pub mockuser: Option<String>,
    /// URL of the hub XML-RPC server.
    #[arg(short = 's', long)]
    pub server: Option<String>,
    /// Obsolete kojid option (accepted, warned).
    #[arg(long, hide = true)]
    pub pkgurl: Option<String>,
    /// Exit after the first task taken has finished (implies --fg).
    #[arg(long)]
    pub single: bool,
}

/// Flags override the file and the environment.
pub fn apply_flags(cfg: &mut Config, a: &DaemonArgs) -> Result<(), ConfigError> {
    let k = &mut cfg.kojid;
    macro_rules! set {
        ($field:ident, $val:expr) => {
            if let Some(v) = $val {
                k.$field = v;
            }
        };
    }
    if let Some(u) = &a.user {
        k.user = Some(u.clone());
    }
    if let Some(p) = &a.password {
        k.password = Some(p.clone());
    }
    set!(maxjobs, a.maxjobs);
    set!(minspace, a.minspace);
    set!(sleeptime, a.sleeptime);
    if a.admin_emails.is_some() {
        k.admin_emails = a.admin_emails.clone();
    }
    set!(topdir, a.topdir.clone());
    if let Some(t) = &a.topurl {
        k.topurl = Some(Words::parse_conf(t).map_err(|reason| ConfigError::Value {
            origin: Origin::Flag("topurl".into()),
            key: "topurl".into(),
            reason,
        })?);
    }
    set!(workdir, a.workdir.clone());
    set!(chroot_tmpdir, a.chroot_tmpdir.clone());
    set!(pluginpath, a.pluginpath.clone());
    if !a.plugin.is_empty() {
        k.plugin = Words(a.plugin.clone());
    }
    set!(mockdir, a.mockdir.clone());
    set!(mockuser, a.mockuser.clone());
    if a.server.is_some() {
        k.server = a.server.clone();
    }
    if a.pkgurl.is_some() {
        k.pkgurl = a.pkgurl.clone();
    }
    if a.debug_mock {
        cfg.warnings
            .push("the debug-mock option is obsolete".into());
    }
    cfg.flags.foreground = a.fg || a.single;
    cfg.flags.force_lock = a.force_lock;
    cfg.flags.verbose = a.verbose;
    cfg.flags.debug = a.debug;
    cfg.flags.debug_task = a.debug_task;
    cfg.flags.debug_xmlrpc = a.debug_xmlrpc;
    cfg.flags.skip_main = a.skip_main;
    cfg.flags.single = a.single;
    Ok(())
}
