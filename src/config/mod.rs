//! Configuration: kojid.conf (`[kojid]` exactly as kojid reads it, plus our
//! `[adjutant]` section), `KOJI_ADJUTANT_*` environment overrides and kojid's
//! command-line flags, in that order of precedence (flags win). Every key is listed in
//! docs/config.md (a test checks that against [`KOJID_KEYS`] and [`ADJUTANT_KEYS`]).

pub mod adjutant;
pub mod env;
pub mod flags;
pub mod kojid;
pub mod values;

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

pub use adjutant::{AdjutantConfig, ADJUTANT_KEYS};
pub use flags::DaemonArgs;
use values::ConfValue;
pub use values::{
    Bytes, IdMappingSetting, List, MountSpec, Mounts, NetworkDefault, Pairs, PullPolicy,
    RepoToolSetting, StatusBind, Words,
};

/// Where kojid reads its configuration by default.
pub const DEFAULT_CONFIG: &str = "/etc/kojid/kojid.conf";

/// One documented key: name, type, default and meaning (feeds docs/config.md).
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// The key.
    pub name: &'static str,
    /// Its type, as docs/config.md names it.
    pub type_name: fn() -> &'static str,
    /// Its default, as text.
    pub default: &'static str,
    /// What it means.
    pub help: &'static str,
}

/// Declares a config struct, its `Default`, its key table and a setter by key name.
macro_rules! config_keys {
    ($(#[$m:meta])* pub struct $name:ident; pub const $table:ident; {
        $( $field:ident : $ty:ty = $default:expr, $ddoc:literal, $help:literal; )*
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( #[doc = $help] pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        /// Every key of this section, for docs and checks.
        pub const $table: &[$crate::config::KeyDoc] = &[
            $( $crate::config::KeyDoc {
                name: stringify!($field),
                type_name: <$ty as $crate::config::values::ConfValue>::type_name,
                default: $ddoc,
                help: $help,
            }, )*
        ];

        impl $name {
            /// Set a key from its text. None when the key is not one of ours.
            pub fn set_key(&mut self, key: &str, raw: &str) -> Option<Result<(), String>> {
                match key {
                    $( stringify!($field) => Some(
                        <$ty as $crate::config::values::ConfValue>::parse_conf(raw).map(|v| self.$field = v)
                    ), )*
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use config_keys;

config_keys! {
    /// The `[kojid]` section: every key kojid 1.35.3 reads (`get_options`), with its
    /// types and defaults.
    pub struct KojidConfig;
    pub const KOJID_KEYS; {
        server: Option<String> = None, "(required)", "Hub XML-RPC URL, e.g. `https://hub.example.com/kojihub`.";
        topurl: Option<Words> = None, "(required)", "Root URL(s) of the Koji file tree, space-separated; the first is used for downloads, all as repo base URLs.";
        topdir: PathBuf = PathBuf::from("/mnt/koji"), "/mnt/koji", "Local path of the Koji file tree (newRepo/createrepo read repos from it).";
        workdir: PathBuf = PathBuf::from("/var/tmp/koji"), "/var/tmp/koji", "Local scratch directory; a task works in `<workdir>/tasks/<id%10000>/<id>`.";
        mockdir: PathBuf = PathBuf::from("/var/lib/mock"), "/var/lib/mock", "kojid's buildroot directory. koji-adjutant checks free space (`minspace`) on the store root instead and otherwise ignores this.";
        mockuser: String = "kojibuilder".into(), "kojibuilder", "User builds run as inside buildroots (kojid: the mock user).";
        chroot_tmpdir: String = "/chroot_tmpdir".into(), "/chroot_tmpdir", "Persistent temporary directory inside buildroots.";
        sleeptime: i64 = 15, "15", "Seconds between polls of the hub when idle.";
        maxjobs: i64 = 10, "10", "Maximum number of concurrent tasks (reported to the hub scheduler as `maxjobs`).";
        minspace: i64 = 8192, "8192", "MiB of free space needed to take a task.";
        buildroot_basic_cleanup_delay: i64 = 120, "120", "Seconds after a buildroot expires before its root is emptied.";
        buildroot_final_cleanup_delay: i64 = 86400, "86400", "Seconds after a buildroot expires before it is removed entirely.";
        failed_buildroot_lifetime: i64 = 14400, "14400", "Seconds a failed task's buildroot is kept (space permitting).";
        literal_task_arches: String = String::new(), "\"\"", "fnmatch patterns of arches not canonicalised for subtasks.";
        packager: String = "Koji".into(), "Koji", "`%packager` of built rpms.";
        vendor: String = "Koji".into(), "Koji", "`%vendor` of built rpms.";
        distribution: String = "Koji".into(), "Koji", "`%distribution` of built rpms.";
        mockhost: String = "koji-linux-gnu".into(), "koji-linux-gnu", "Suffix of `%_host` in buildroots.";
        rpmbuild_timeout: i64 = 86400, "86400", "Seconds a build step may run.";
        oz_install_timeout: i64 = 0, "0", "Image builds (not supported by koji-adjutant; accepted).";
        xz_options: String = "-z6T0".into(), "-z6T0", "Image builds (accepted, unused).";
        yum_proxy: Option<String> = None, "None", "Proxy for package downloads in buildroots.";
        use_createrepo_c: bool = true, "True", "Use createrepo_c (the only implementation koji-adjutant supports).";
        createrepo_update: bool = true, "True", "Reuse the previous repodata (`--update`).";
        createrepo_skip_stat: bool = true, "True", "Add `--skip-stat` to updates.";
        copy_old_repodata: bool = false, "False", "Copy identical old repodata instead of running createrepo.";
        distrepo_skip_stat: bool = false, "False", "distRepo tasks (accepted).";
        mock_bootstrap_image: bool = false, "False", "Allow the tag extra `mock.bootstrap_image` (parsed as a boolean; kojid takes the raw string).";
        support_rpm_source_layout: bool = true, "True", "Accept the `SPECS/` + `SOURCES/` checkout layout.";
        allowed_scms: String = String::new(), "\"\"", "SCMs builds may check out from: `host:repo[:use_common[:source_cmd]]` or `!host:repo`, space-separated.";
        allowed_scms_use_config: bool = true, "True", "Check SCM URLs against `allowed_scms`.";
        allowed_scms_use_policy: bool = false, "False", "Check SCM URLs against the hub policy `build_from_scm`.";
        allow_password_in_scm_url: bool = false, "False", "Accept `user:password@` in SCM URLs.";
        scm_credentials_dir: Option<String> = None, "None", "Directory mounted at `/credentials` for SCM source builds.";
        build_arch_can_fail: bool = false, "False", "A failing buildArch does not cancel its siblings.";
        maven_repo_ignore: String = "*.md5 *.sha1 maven-metadata*.xml _maven.repositories _remote.repositories resolver-status.properties *.lastUpdated".into(), "(kojid's list)", "Maven builds (accepted, unused).";
        allow_noverifyssl: bool = false, "False", "Image builds (accepted, unused).";
        log_timestamps: bool = false, "False", "Also upload `<log>-ts.log` files of `<epoch> <offset>` lines.";
        task_avail_delay: i64 = 300, "300", "Parsed and unused, as in kojid 1.35.";
        user: Option<String> = None, "None", "User for password login.";
        password: Option<String> = None, "None", "Password for password login.";
        cert: Option<PathBuf> = None, "/etc/kojid/client.crt if it exists", "Client certificate (PEM with its key) for `sslLogin`.";
        serverca: Option<PathBuf> = None, "/etc/kojid/serverca.crt if it exists", "CA bundle that signed the hub's certificate (otherwise the system roots).";
        no_ssl_verify: bool = false, "False", "Do not verify the hub's TLS certificate.";
        krb_principal: Option<String> = None, "None", "GSSAPI principal (GSSAPI login is not supported; see docs/hub.md).";
        host_principal_format: String = "compile/%s@EXAMPLE.COM".into(), "compile/%s@EXAMPLE.COM", "GSSAPI principal format (unsupported; accepted).";
        keytab: PathBuf = PathBuf::from("/etc/kojid/kojid.keytab"), "/etc/kojid/kojid.keytab", "GSSAPI keytab (unsupported; accepted).";
        ccache: PathBuf = PathBuf::from("/var/tmp/kojid.ccache"), "/var/tmp/kojid.ccache", "GSSAPI credential cache (unsupported; accepted).";
        retry_interval: i64 = 60, "60", "Seconds between retries of a failed hub call (the first retry is immediate).";
        max_retries: i64 = 120, "120", "Retries of a failed hub call.";
        offline_retry: bool = true, "True", "Retry forever while the hub answers ServerOffline.";
        offline_retry_interval: i64 = 120, "120", "Seconds between retries while the hub is offline.";
        timeout: Option<i64> = None, "None (43200)", "HTTP timeout of a hub call, seconds.";
        use_fast_upload: bool = true, "True", "Raw (octet-stream) uploads; koji-adjutant always uses them and warns when this is off.";
        smtphost: String = "example.com".into(), "example.com", "SMTP host for notification tasks.";
        smtp_user: Option<String> = None, "None", "SMTP user.";
        smtp_pass: Option<String> = None, "None", "SMTP password.";
        from_addr: String = "Koji Build System <buildsys@example.com>".into(), "Koji Build System <buildsys@example.com>", "From address of notification e-mails.";
        admin_emails: Option<String> = None, "None", "Comma-separated addresses kojid mails errors to (koji-adjutant logs a warning instead).";
        log_level: Option<String> = None, "None (WARNING)", "Log level: DEBUG, INFO, WARNING, ERROR, CRITICAL; `--verbose`/`--debug` override.";
        pluginpath: String = "/usr/lib/koji-builder-plugins".into(), "/usr/lib/koji-builder-plugins", "kojid Python plugin path (accepted; Python plugins cannot be loaded).";
        plugin: Words = Words::default(), "\"\"", "Plugins to load (also `plugins`); koji-adjutant warns about each one it cannot provide.";
        pkgurl: Option<String> = None, "None", "Obsolete; warned about, as kojid does.";
    }
}

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A config file line.
    File {
        /// The file.
        file: PathBuf,
        /// The 1-based line.
        line: usize,
    },
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
    /// Derived while validating.
    Check,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { file, line } => write!(f, "{}:{line}", file.display()),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::Flag(n) => write!(f, "option --{n}"),
            Origin::Check => f.write_str("configuration"),
        }
    }
}

/// A configuration error, naming where, which key and why.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be parsed.
    #[error("{0}")]
    Syntax(#[from] kojid::IniError),
    /// A bad value.
    #[error("{origin}: {key}: {reason}")]
    Value {
        /// Where it was set.
        origin: Origin,
        /// The key.
        key: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Flags and modes that come only from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFlags {
    /// `--fg`: stay in the foreground (otherwise detach like kojid).
    pub foreground: bool,
    /// `--force-lock`: take the exclusive session even if another session holds it.
    pub force_lock: bool,
    /// `--verbose`.
    pub verbose: bool,
    /// `--debug`.
    pub debug: bool,
    /// `--debug-task`.
    pub debug_task: bool,
    /// `--debug-xmlrpc`: log every request and response body.
    pub debug_xmlrpc: bool,
    /// `--skip-main`: log in, check, and exit without running the loop.
    pub skip_main: bool,
    /// `--single` (prototype): exit after the first task taken has finished.
    pub single: bool,
}

/// The whole configuration of a daemon.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[kojid]`.
    pub kojid: KojidConfig,
    /// `[adjutant]` (and the prototype's `adjutant_*` keys).
    pub adjutant: AdjutantConfig,
    /// kojid's `RLIMIT_*` keys (upper-cased name → value text).
    pub rlimits: IndexMap<String, String>,
    /// Command-line-only flags.
    pub flags: RunFlags,
    /// The config path read (file or directory).
    pub config_path: PathBuf,
    /// Warnings to log at start-up (unknown keys, ignored settings...).
    pub warnings: Vec<String>,
}

impl Config {
    /// Defaults only (used by tests and as the base of [`Config::load`]).
    pub fn defaults() -> Config {
        Config {
            kojid: KojidConfig::default(),
            adjutant: AdjutantConfig::default(),
            rlimits: IndexMap::new(),
            flags: RunFlags::default(),
            config_path: PathBuf::from(DEFAULT_CONFIG),
            warnings: Vec::new(),
        }
    }

    /// Load from the file named by `args` (default /etc/kojid/kojid.conf), then the
    /// environment (`env` lists the variables, e.g. `std::env::vars()`), then the flags.
    pub fn load<I>(args: &DaemonArgs, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut cfg = Config::defaults();
        cfg.config_path = args
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        cfg.apply_file(&cfg.config_path.clone())?;
        env::apply_env(&mut cfg, env)?;
        flags::apply_flags(&mut cfg, args)?;
        cfg.finish()?;
        Ok(cfg)
    }

    /// Read a kojid.conf (file or directory) into this config.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let ini = kojid::IniFile::read_path(path)?;
        self.apply_ini(&ini, path)
    }

    /// Apply what was read from kojid.conf (`path` is the file or directory it came
    /// from, for messages).
    pub fn apply_ini(&mut self, ini: &kojid::IniFile, path: &Path) -> Result<(), ConfigError> {
        if ini.files.is_empty() {
            self.warnings.push(format!(
                "config file {} not found; using defaults, environment and options",
                path.display()
            ));
        }
        for (name, (file, line)) in &ini.section_lines {
            if name != "kojid" && name != "adjutant" {
                self.warnings.push(format!(
                    "{}:{line}: unknown section [{name}] ignored",
                    file.display()
                ));
            }
        }
        if ini.sections.contains_key("kojid") {
            for (key, e) in ini.items("kojid") {
                let origin = Origin::File {
                    file: e.file.clone(),
                    line: e.line,
                };
                self.set_kojid_key(&key, &e.value, origin)?;
            }
        }
        if let Some(sect) = ini.sections.get("adjutant") {
            for (key, e) in sect {
                let origin = Origin::File {
                    file: e.file.clone(),
                    line: e.line,
                };
                if !adjutant::set_adjutant_key(self, key, &e.value, &origin)? {
                    self.warnings.push(format!(
                        "{origin}: unknown key {key:?} in [adjutant] ignored"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Set one `[kojid]` key as kojid's `get_options` would, plus the prototype's
    /// `adjutant_<key>` spelling.
    pub fn set_kojid_key(
        &mut self,
        key: &str,
        raw: &str,
        origin: Origin,
    ) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::Value {
            origin: origin.clone(),
            key: key.to_owned(),
            reason,
        };
        if key == "plugin" || key == "plugins" {
            self.kojid.plugin = Words::parse_conf(raw).map_err(bad)?;
            return Ok(());
        }
        if key.to_ascii_uppercase().starts_with("RLIMIT_") {
            let name = key.to_ascii_uppercase();
            if rlimit_resource(&name).is_none() {
                self.warnings
                    .push(format!("{origin}: unknown resource limit {name} ignored"));
            }
            self.rlimits.insert(name, raw.to_owned());
            return Ok(());
        }
        if let Some(r) = self.kojid.set_key(key, raw) {
            return r.map_err(bad);
        }
        if let Some(akey) = key.strip_prefix("adjutant_") {
            if adjutant::set_adjutant_key(self, akey, raw, &origin)? {
                return Ok(());
            }
        }
        self.warnings
            .push(format!("{origin}: unknown config option {key:?} ignored"));
        Ok(())
    }

    /// Defaults that depend on the system, and cross-key checks.
    pub fn finish(&mut self) -> Result<(), ConfigError> {
        let check = |key: &str, reason: String| ConfigError::Value {
            origin: Origin::Check,
            key: key.to_owned(),
            reason,
        };
        if self.kojid.cert.is_none() && Path::new("/etc/kojid/client.crt").exists() {
            self.kojid.cert = Some(PathBuf::from("/etc/kojid/client.crt"));
        }
        if self.kojid.serverca.is_none() && Path::new("/etc/kojid/serverca.crt").exists() {
            self.kojid.serverca = Some(PathBuf::from("/etc/kojid/serverca.crt"));
        }
        let server = self
            .kojid
            .server
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| check("server", "the server option is required".into()))?;
        url::Url::parse(server.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| check("server", format!("{server:?} is not an http(s) URL")))?;
        let topurl = self
            .kojid
            .topurl
            .clone()
            .filter(|t| !t.0.is_empty())
            .ok_or_else(|| check("topurl", "the topurl option is required".into()))?;
        for u in &topurl.0 {
            url::Url::parse(u).map_err(|e| check("topurl", format!("{u:?} is not a URL: {e}")))?;
        }
        for (key, v, min) in [
            ("sleeptime", self.kojid.sleeptime, 1),
            ("maxjobs", self.kojid.maxjobs, 1),
            ("minspace", self.kojid.minspace, 0),
            ("retry_interval", self.kojid.retry_interval, 0),
            ("max_retries", self.kojid.max_retries, 0),
            (
                "offline_retry_interval",
                self.kojid.offline_retry_interval,
                0,
            ),
            ("timeout", self.kojid.timeout.unwrap_or(1), 1),
        ] {
            if v < min {
                return Err(check(key, format!("{v} is below the minimum {min}")));
            }
        }
        if let Some(level) = &self.kojid.log_level {
            if !matches!(
                level.to_ascii_uppercase().as_str(),
                "DEBUG" | "INFO" | "WARNING" | "WARN" | "ERROR" | "CRITICAL" | "NOTSET"
            ) {
                return Err(check("log_level", format!("invalid log level: {level}")));
            }
        }
        if self.adjutant.upload_blocksize == 0 {
            return Err(check("upload_blocksize", "must be at least 1".into()));
        }
        if self.kojid.pkgurl.is_some() {
            self.warnings.push("the pkgurl option is obsolete".into());
        }
        if !self.kojid.use_fast_upload {
            self.warnings.push(
                "use_fast_upload = False: koji-adjutant always uses raw uploads (hubs ≥ 1.7.1)"
                    .into(),
            );
        }
        if self.kojid.admin_emails.is_some() {
            self.warnings.push(
                "admin_emails: koji-adjutant does not send error e-mails; errors go to the log"
                    .into(),
            );
        }
        for p in &self.kojid.plugin.0 {
            self.warnings.push(format!(
                "plugin {p:?}: kojid's Python plugins cannot be loaded; only built-in handlers run"
            ));
        }
        Ok(())
    }

    /// The hub URL, trimmed.
    pub fn server(&self) -> &str {
        self.kojid
            .server
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
    }

    /// All top URLs (the first is used for downloads).
    pub fn topurls(&self) -> &[String] {
        self.kojid
            .topurl
            .as_ref()
            .map(|w| w.0.as_slice())
            .unwrap_or_default()
    }

    /// The daemon's log level, as kojid derives it: `--debug` > `--verbose` >
    /// `log_level` > WARNING.
    pub fn log_filter(&self) -> &'static str {
        if self.flags.debug {
            return "warn,koji_adjutant=debug,adjutant_runtime=debug";
        }
        if self.flags.verbose {
            return "warn,koji_adjutant=info,adjutant_runtime=info";
        }
        match self
            .kojid
            .log_level
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("DEBUG") | Some("NOTSET") => "warn,koji_adjutant=debug,adjutant_runtime=debug",
            Some("INFO") => "warn,koji_adjutant=info,adjutant_runtime=info",
            Some("ERROR") | Some("CRITICAL") => "error",
            _ => "warn",
        }
    }

    /// The store root: the configured one, or /var/lib/koji-adjutant as root,
    /// `$XDG_DATA_HOME/koji-adjutant` (or ~/.local/share/koji-adjutant) otherwise.
    pub fn store_root(&self) -> PathBuf {
        if let Some(p) = &self.adjutant.store_root {
            return p.clone();
        }
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/koji-adjutant");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("koji-adjutant");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
        PathBuf::from(home).join(".local/share/koji-adjutant")
    }
}

/// The `setrlimit` resource for an `RLIMIT_*` name.
pub fn rlimit_resource(name: &str) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource as R;
    Some(match name {
        "RLIMIT_AS" => R::RLIMIT_AS,
        "RLIMIT_CORE" => R::RLIMIT_CORE,
        "RLIMIT_CPU" => R::RLIMIT_CPU,
        "RLIMIT_DATA" => R::RLIMIT_DATA,
        "RLIMIT_FSIZE" => R::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => R::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => R::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => R::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => R::RLIMIT_NICE,
        "RLIMIT_NOFILE" => R::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => R::RLIMIT_NPROC,
        "RLIMIT_RSS" => R::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => R::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => R::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => R::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => R::RLIMIT_STACK,
        _ => return None,
    })
}

/// Apply the `RLIMIT_*` keys as kojid's `setup_rlimits` does: `soft [hard]`; a bad
/// value or a refused limit is logged and skipped.
pub fn apply_rlimits(cfg: &Config) -> Vec<String> {
    let mut log = Vec::new();
    for (name, text) in &cfg.rlimits {
        let Some(res) = rlimit_resource(name) else {
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let nums: Result<Vec<u64>, _> = text.split_whitespace().map(str::parse::<u64>).collect();
        let nums = match nums {
            Ok(n) if n.len() == 1 || n.len() == 2 => n,
            _ => {
                log.push(format!("invalid resource limit: {name}={text}"));
                continue;
            }
        };
        let hard = match nums.get(1) {
            Some(h) => *h,
            None => match nix::sys::resource::getrlimit(res) {
                Ok((_, h)) => h,
                Err(e) => {
                    log.push(format!("unable to read {name}: {e}"));
                    continue;
                }
            },
        };
        match nix::sys::resource::setrlimit(res, nums[0], hard) {
            Ok(()) => log.push(format!("set resource limit {name} = [{}, {hard}]", nums[0])),
            Err(e) => log.push(format!("unable to set {name}: {e}")),
        }
    }
    log
}

#[cfg(test)]
mod tests;
