//! The `[adjutant]` section: koji-adjutant's own settings, and the Python
//! prototype's settings under their old names (prototype notes §6.2) so its
//! deployments' configs carry over.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::values::{
    Bytes, ConfValue, IdMappingSetting, List, Mounts, NetworkDefault, Pairs, PullPolicy,
    RepoToolSetting, StatusBind,
};
use super::{config_keys, Config, ConfigError, Origin};

config_keys! {
    /// `[adjutant]`: settings kojid does not have.
    pub struct AdjutantConfig;
    pub const ADJUTANT_KEYS; {
        default_image: String = "localhost/buildroot:latest".into(), "localhost/buildroot:latest", "Buildroot image when neither the tag nor the image policy names one (prototype: `task_image_default`); docs/operator-guide.md, section Image policies.";
        image_policy: Option<PathBuf> = None, "None", "JSON image policy file (rules by tag/arch/method) used when the tag has no `adjutant_image_policy` extra.";
        policy_enabled: bool = true, "True", "Consult tag extras and the image policy; off → always `default_image`.";
        policy_cache_ttl: u64 = 300, "300", "Seconds a tag's image policy is cached.";
        pull_policy: PullPolicy = PullPolicy::Missing, "missing", "When to pull images: `missing` (also `if-not-present`), `always`, `never` (prototype: `image_pull_policy`).";
        store_root: Option<PathBuf> = None, "/var/lib/koji-adjutant (root), $XDG_DATA_HOME/koji-adjutant", "Image and container store (also `--root`, `KOJI_ADJUTANT_ROOT`).";
        id_mapping: IdMappingSetting = IdMappingSetting::Auto, "auto", "Subordinate ids of containers: `auto` (root: 0..65536 → 100000..165536; rootless: /etc/subuid) or `BASE:COUNT`.";
        network_default: NetworkDefault = NetworkDefault::None, "none", "Network of build steps: `none` (loopback only; installs still use the host network) or `host` (prototype: `network_enabled`).";
        seccomp: bool = true, "True", "Give buildroot steps the default seccomp deny list (kernel keyring, BPF, perf events, userfaultfd, io_uring, …; docs/security.md); False: none, for packages whose tests need those calls.";
        memory_limit: Option<Bytes> = None, "None", "Memory limit per buildroot, e.g. `8G`.";
        max_log_size: Bytes = Bytes(1 << 30), "1G", "Most bytes a buildroot log (`build.log`, `root.log`) may hold; a build's output beyond it is discarded, with a note at the end of the log and in `mock_output.log` (0: no limit).";
        pids_limit: Option<u64> = None, "None", "Process limit per buildroot.";
        cpu_limit: Option<f64> = None, "None", "CPU limit per buildroot, in CPUs (e.g. `2.5`).";
        status_enabled: bool = true, "True", "Serve the status endpoint (prototype: `monitoring_enabled`).";
        status_bind: StatusBind = StatusBind(Some(SocketAddr::from(([127, 0, 0, 1], 8080)))), "127.0.0.1:8080", "Address of the status endpoint (JSON API, metrics, dashboard; docs/status-api.md); empty: no status server (prototype: `monitoring_bind`).";
        task_history_ttl: u64 = 86400, "86400", "Seconds finished tasks stay in the status registry (prototype: `monitoring_task_history_ttl`).";
        container_history_ttl: u64 = 3600, "3600", "Seconds removed containers stay in the status registry (prototype: `monitoring_container_history_ttl`).";
        buildroot_cache: bool = true, "True", "Keep the result of buildroot installs (group, BuildRequires) as layers for reuse.";
        buildroot_cache_size: Bytes = Bytes(20 << 30), "20G", "Disk space the buildroot cache may use; least recently used entries are evicted beyond it.";
        buildroot_cache_ttl: u64 = 604800, "604800", "Seconds an unused cached buildroot is kept (0: no age limit).";
        registry_auth_file: Option<PathBuf> = None, "None (containers auth.json search)", "Registry credentials file (containers `auth.json` format).";
        insecure_registries: List = List::default(), "\"\"", "Registries reached over plain HTTP or without TLS verification (comma/space list of host[:port]).";
        mounts: Mounts = Mounts::default(), "\"\"", "Extra bind mounts `host:container[:ro|rw]` for every buildroot (prototype: `container_mounts`; its SELinux flag is ignored).";
        labels: Pairs = Pairs::default(), "\"\"", "`k=v` labels recorded on containers (prototype: `container_labels`).";
        host_mount_map: Pairs = Pairs::default(), "\"\"", "`container_path=host_path` pairs telling where paths seen in containers live on the host (prototype: `KOJI_ADJUTANT_HOST_MOUNT_MAP`, `ctr:host`).";
        pull_timeout: u64 = 300, "300", "Seconds an image pull may take (prototype: `container_timeouts` `pull=`).";
        start_timeout: u64 = 60, "60", "Seconds a container may take to start (prototype: `container_timeouts` `start=`).";
        stop_grace: u64 = 20, "20", "Seconds between SIGTERM and SIGKILL when stopping a container (prototype: `container_timeouts` `stop_grace=`).";
        max_load_per_cpu: f64 = 4.0, "4.0", "Not ready while the 1-minute load average exceeds this many times the CPU count (kojid's fixed rule is 4.0); 0 disables the check.";
        upload_blocksize: u64 = 1048576, "1048576", "Bytes per raw upload chunk (koji's `upload_blocksize`).";
        auth_timeout: u64 = 60, "60", "HTTP timeout of login calls, seconds.";
        hub_callnum_check: bool = true, "True", "Also send the call number in the header the 1.35 hub reads (`Koji-Callnum`), so it refuses to replay a call that already took effect.";
        log_file: Option<PathBuf> = None, "None (stderr; /var/log/kojid.log when detached)", "Log file.";
        repo_tool: RepoToolSetting = RepoToolSetting::Auto, "auto", "Where `createrepo_c`/`mergerepo_c` run for createrepo tasks: `auto` (the host's when installed, else a container of `default_image`), `host`, `container` (docs/repos.md).";
        allow_file_scm: bool = false, "False", "Accept `git+file:///path#rev` SCM URLs (repositories on the builder's filesystem; still checked against `allowed_scms` with an empty host, e.g. `:/srv/git/*:no`).";
    }
}

/// What a prototype key means to us.
enum Alias {
    /// Same meaning under another name.
    Rename(&'static str),
    /// `network_enabled`: bool → `network_default`.
    NetworkEnabled,
    /// `container_timeouts`: `pull=…,start=…,stop_grace=…`.
    Timeouts,
    /// `host_mount_map` in the prototype's `ctr:host,…` form.
    HostMountMap,
    /// Podman-only or obsolete: accepted and ignored, with this reason.
    Ignored(&'static str),
}

fn alias(key: &str) -> Option<Alias> {
    Some(match key {
        "task_image_default" => Alias::Rename("default_image"),
        "image_pull_policy" => Alias::Rename("pull_policy"),
        "monitoring_enabled" => Alias::Rename("status_enabled"),
        "monitoring_bind" => Alias::Rename("status_bind"),
        "monitoring_task_history_ttl" => Alias::Rename("task_history_ttl"),
        "monitoring_container_history_ttl" => Alias::Rename("container_history_ttl"),
        "container_mounts" => Alias::Rename("mounts"),
        "container_labels" => Alias::Rename("labels"),
        "network_enabled" => Alias::NetworkEnabled,
        "container_timeouts" => Alias::Timeouts,
        "host_mount_map" => Alias::HostMountMap,
        "podman_socket" => {
            Alias::Ignored("podman is not used: koji-adjutant runs containers itself")
        }
        "buildroot_enabled" => Alias::Ignored("buildroots are always prepared by koji-adjutant"),
        _ => return None,
    })
}

/// The prototype key names we accept (for docs/config.md).
pub const PROTOTYPE_KEYS: &[&str] = &[
    "task_image_default",
    "image_pull_policy",
    "network_enabled",
    "policy_enabled",
    "policy_cache_ttl",
    "buildroot_enabled",
    "monitoring_enabled",
    "monitoring_bind",
    "container_mounts",
    "container_timeouts",
    "monitoring_container_history_ttl",
    "monitoring_task_history_ttl",
    "podman_socket",
    "container_labels",
    "host_mount_map",
];

/// Set an `[adjutant]` key (or a prototype alias). Ok(false) when unknown.
pub fn set_adjutant_key(
    cfg: &mut Config,
    key: &str,
    raw: &str,
    origin: &Origin,
) -> Result<bool, ConfigError> {
    let key = key.to_ascii_lowercase();
    let bad = |key: &str, reason: String| ConfigError::Value {
        origin: origin.clone(),
        key: key.to_owned(),
        reason,
    };
    if key != "host_mount_map" {
        if let Some(r) = cfg.adjutant.set_key(&key, raw) {
            r.map_err(|e| bad(&key, e))?;
            return Ok(true);
        }
    }
    match alias(&key) {
        None => Ok(false),
        Some(Alias::Rename(to)) => {
            if let Some(r) = cfg.adjutant.set_key(to, raw) {
                r.map_err(|e| bad(&key, e))?;
            }
            Ok(true)
        }
        Some(Alias::NetworkEnabled) => {
            let on = bool::parse_conf(raw).map_err(|e| bad(&key, e))?;
            cfg.adjutant.network_default = if on {
                NetworkDefault::Host
            } else {
                NetworkDefault::None
            };
            Ok(true)
        }
        Some(Alias::Timeouts) => {
            let pairs = Pairs::parse_conf(raw).map_err(|e| bad(&key, e))?;
            for (k, v) in pairs.0 {
                let secs = u64::parse_conf(&v).map_err(|e| bad(&key, format!("{k}: {e}")))?;
                match k.as_str() {
                    "pull" => cfg.adjutant.pull_timeout = secs,
                    "start" => cfg.adjutant.start_timeout = secs,
                    "stop_grace" => cfg.adjutant.stop_grace = secs,
                    other => cfg.warnings.push(format!(
                        "{origin}: {key}: unknown timeout {other:?} ignored"
                    )),
                }
            }
            Ok(true)
        }
        Some(Alias::HostMountMap) => {
            // ours is `ctr=host`; the prototype's is `ctr:host`
            let mut out = Vec::new();
            for item in raw
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|x| !x.is_empty())
            {
                let (c, h) = item
                    .split_once('=')
                    .or_else(|| item.split_once(':'))
                    .ok_or_else(|| {
                        bad(&key, format!("{item:?} is not container_path=host_path"))
                    })?;
                out.push((c.to_owned(), h.to_owned()));
            }
            cfg.adjutant.host_mount_map = Pairs(out);
            Ok(true)
        }
        Some(Alias::Ignored(why)) => {
            cfg.warnings.push(format!("{origin}: {key} ignored: {why}"));
            Ok(true)
        }
    }
}
