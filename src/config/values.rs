//! Typed config values: how each type is parsed from its text, and how it is named in
//! docs/config.md.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::kojid::{parse_bool, parse_int};

/// A type a config key can have.
pub trait ConfValue: Sized {
    /// Parse the text of a value (already stripped) or say why not.
    fn parse_conf(s: &str) -> Result<Self, String>;
    /// The type as docs/config.md names it.
    fn type_name() -> &'static str;
}

impl ConfValue for i64 {
    fn parse_conf(s: &str) -> Result<Self, String> {
        parse_int(s).ok_or_else(|| format!("{s:?} is not a valid integer"))
    }
    fn type_name() -> &'static str {
        "int"
    }
}

impl ConfValue for u64 {
    fn parse_conf(s: &str) -> Result<Self, String> {
        let v = parse_int(s).ok_or_else(|| format!("{s:?} is not a valid integer"))?;
        u64::try_from(v).map_err(|_| format!("{s:?} must not be negative"))
    }
    fn type_name() -> &'static str {
        "int ≥ 0"
    }
}

impl ConfValue for bool {
    fn parse_conf(s: &str) -> Result<Self, String> {
        parse_bool(s)
            .ok_or_else(|| format!("{s:?} is not a boolean (use 1/yes/true/on or 0/no/false/off)"))
    }
    fn type_name() -> &'static str {
        "bool"
    }
}

impl ConfValue for f64 {
    fn parse_conf(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{s:?} is not a number"))
    }
    fn type_name() -> &'static str {
        "float"
    }
}

impl ConfValue for String {
    fn parse_conf(s: &str) -> Result<Self, String> {
        Ok(s.to_owned())
    }
    fn type_name() -> &'static str {
        "str"
    }
}

impl ConfValue for PathBuf {
    fn parse_conf(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a path must not be empty".into());
        }
        Ok(PathBuf::from(s))
    }
    fn type_name() -> &'static str {
        "path"
    }
}

impl ConfValue for SocketAddr {
    fn parse_conf(s: &str) -> Result<Self, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address:port such as 127.0.0.1:8080"))
    }
    fn type_name() -> &'static str {
        "host:port"
    }
}

/// Where the status server listens: `address:port`, or empty for no server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusBind(pub Option<SocketAddr>);

impl StatusBind {
    /// The address, unless disabled.
    pub fn addr(self) -> Option<SocketAddr> {
        self.0
    }
}

impl ConfValue for StatusBind {
    fn parse_conf(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(StatusBind(None));
        }
        // `localhost:PORT` as well as IP literals (`[::1]:PORT` for IPv6)
        if let Some(port) = s.strip_prefix("localhost:") {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
            return Ok(StatusBind(Some(SocketAddr::from(([127, 0, 0, 1], port)))));
        }
        SocketAddr::parse_conf(s).map(|a| StatusBind(Some(a)))
    }
    fn type_name() -> &'static str {
        "host:port or empty"
    }
}

impl<T: ConfValue> ConfValue for Option<T> {
    fn parse_conf(s: &str) -> Result<Self, String> {
        T::parse_conf(s).map(Some)
    }
    fn type_name() -> &'static str {
        T::type_name()
    }
}

/// A whitespace- or comma-separated list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List(pub Vec<String>);

impl ConfValue for List {
    fn parse_conf(s: &str) -> Result<Self, String> {
        Ok(List(
            s.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }
    fn type_name() -> &'static str {
        "list"
    }
}

/// A whitespace-separated list (kojid's `plugin(s)`, `topurl`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Words(pub Vec<String>);

impl ConfValue for Words {
    fn parse_conf(s: &str) -> Result<Self, String> {
        Ok(Words(s.split_whitespace().map(str::to_owned).collect()))
    }
    fn type_name() -> &'static str {
        "space-separated list"
    }
}

/// `k=v` pairs separated by commas or whitespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(pub Vec<(String, String)>);

impl ConfValue for Pairs {
    fn parse_conf(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for item in s
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|x| !x.is_empty())
        {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not a key=value pair"))?;
            if k.is_empty() {
                return Err(format!("{item:?} has an empty key"));
            }
            out.push((k.to_owned(), v.to_owned()));
        }
        Ok(Pairs(out))
    }
    fn type_name() -> &'static str {
        "k=v list"
    }
}

/// Image pull policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull only when the image is not in the store (`missing`, `if-not-present`).
    #[default]
    Missing,
    /// Always ask the registry for the current manifest.
    Always,
    /// Never pull: the image must be in the store.
    Never,
}

impl ConfValue for PullPolicy {
    fn parse_conf(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "missing" | "if-not-present" | "ifnotpresent" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            _ => Err(format!(
                "{s:?} is not a pull policy (missing, if-not-present, always, never)"
            )),
        }
    }
    fn type_name() -> &'static str {
        "missing|always|never"
    }
}

/// Where the repo programs (`createrepo_c`, `mergerepo_c`) run (`repo_tool`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RepoToolSetting {
    /// The host's binaries when `createrepo_c` is installed, else a container.
    #[default]
    Auto,
    /// Only the host's binaries (a host without them refuses repo tasks).
    Host,
    /// Always a container of `default_image`.
    Container,
}

impl ConfValue for RepoToolSetting {
    fn parse_conf(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(RepoToolSetting::Auto),
            "host" => Ok(RepoToolSetting::Host),
            "container" => Ok(RepoToolSetting::Container),
            _ => Err(format!("{s:?} is not auto, host or container")),
        }
    }
    fn type_name() -> &'static str {
        "auto|host|container"
    }
}

/// Default network of build steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkDefault {
    /// Build steps get a private network namespace with only loopback; steps that must
    /// fetch packages (buildroot install) still use the host network.
    #[default]
    None,
    /// Every step uses the host network.
    Host,
}

impl ConfValue for NetworkDefault {
    fn parse_conf(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "private" | "loopback" => Ok(NetworkDefault::None),
            "host" => Ok(NetworkDefault::Host),
            _ => Err(format!("{s:?} is not a network mode (none, host)")),
        }
    }
    fn type_name() -> &'static str {
        "none|host"
    }
}

/// Which subordinate id range containers use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdMappingSetting {
    /// Root: container ids 0..65536 → host 100000..165536; rootless: the invoking
    /// user's /etc/subuid and /etc/subgid ranges.
    #[default]
    Auto,
    /// Root mode with an explicit range `BASE:COUNT` (container 0..COUNT → host
    /// BASE..BASE+COUNT).
    Range {
        /// First host id.
        base: u32,
        /// Number of ids.
        count: u32,
    },
}

impl ConfValue for IdMappingSetting {
    fn parse_conf(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(IdMappingSetting::Auto);
        }
        let (b, c) = t
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not `auto` or BASE:COUNT"))?;
        let base: u32 = b.trim().parse().map_err(|_| format!("bad base in {s:?}"))?;
        let count: u32 = c
            .trim()
            .parse()
            .map_err(|_| format!("bad count in {s:?}"))?;
        adjutant_runtime::idmap::IdMapping::root(base, count).map_err(|e| e.to_string())?;
        Ok(IdMappingSetting::Range { base, count })
    }
    fn type_name() -> &'static str {
        "auto|BASE:COUNT"
    }
}

/// A size in bytes with an optional K/M/G/T suffix (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl ConfValue for Bytes {
    fn parse_conf(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, suffix) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a size such as 4G or 512M"))?;
        let mult: u64 = match suffix
            .trim()
            .to_ascii_uppercase()
            .trim_end_matches(['B', 'I'])
        {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            _ => return Err(format!("{s:?} has an unknown size suffix (K, M, G, T)")),
        };
        n.checked_mul(mult)
            .map(Bytes)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
    fn type_name() -> &'static str {
        "size (bytes, K/M/G/T)"
    }
}

/// A bind mount `host:container[:ro|rw[:label]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Host path.
    pub source: PathBuf,
    /// Path inside the container.
    pub target: PathBuf,
    /// Read-only.
    pub read_only: bool,
}

/// A list of [`MountSpec`]s (whitespace or comma separated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts(pub Vec<MountSpec>);

impl ConfValue for Mounts {
    fn parse_conf(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for item in s
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|x| !x.is_empty())
        {
            let parts: Vec<&str> = item.split(':').collect();
            if parts.len() < 2 || parts.len() > 4 {
                return Err(format!("{item:?} is not host:container[:ro|rw]"));
            }
            let (src, dst) = (parts[0], parts[1]);
            if !src.starts_with('/') || !dst.starts_with('/') {
                return Err(format!("{item:?}: both paths must be absolute"));
            }
            let read_only = match parts.get(2).copied().unwrap_or("rw") {
                "ro" => true,
                "rw" | "" => false,
                m => return Err(format!("{item:?}: mode {m:?} is not ro or rw")),
            };
            // A 4th field is the prototype's SELinux relabel flag (z/Z); we never relabel.
            out.push(MountSpec {
                source: src.into(),
                target: dst.into(),
                read_only,
            });
        }
        Ok(Mounts(out))
    }
    fn type_name() -> &'static str {
        "mount list"
    }
}
