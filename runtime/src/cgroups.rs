//! cgroups for containers, through `libcgroups` (youki).
//!
//! Each container gets `<parent>/<id>` (relative to each hierarchy's root; `parent`
//! defaults to `koji-adjutant`). `libcgroups` picks the v1 manager on legacy and
//! hybrid hosts (this one: v1 memory/pids/cpu, a cgroup2 mount with only hugetlb) and
//! the v2 manager on unified hosts. Limits: memory, pids, cpu bandwidth. Usage is read
//! back from the same files (`Container::usage`), OOM kills from `memory.oom_control`
//! (v1) or `memory.events` (v2), which `libcgroups`' stats do not carry.
//!
//! Unprivileged callers get no cgroup on v1 (it cannot be delegated) and on v2 only
//! when the parent is writable; [`probe`] says which, and the container reports the
//! limits as unavailable rather than pretending.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libcgroups::common::{
    create_cgroup_manager, get_cgroup_setup, AnyCgroupManager, CgroupConfig, CgroupManager,
    CgroupSetup, ControllerOpt,
};
use nix::unistd::Pid;
use oci_spec_runtime::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};
use tracing::debug;

use crate::container::spec::{Limits, Usage};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {message}")]
    Manager { path: PathBuf, message: String },
    #[error("cgroup {path}: invalid limit: {message}")]
    Limit { path: PathBuf, message: String },
    #[error("cgroup {path}: reading {file}: {source}")]
    Read {
        path: PathBuf,
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup {path}: still has processes after killing them")]
    Busy { path: PathBuf },
}

/// Whether this process can give containers cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Support {
    Available(Flavour),
    /// Why not, for logs and status.
    Unavailable(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// v1 controllers (legacy or hybrid host).
    V1,
    /// cgroup2 only.
    V2,
}

/// Detect the cgroup layout and whether we may create cgroups under `parent`
/// (relative to the hierarchy root). Unprivileged on cgroup v2 this needs a delegated
/// subtree: configure `parent` to point into it (docs/runtime.md).
pub fn probe(parent: &Path) -> Support {
    let setup = match get_cgroup_setup() {
        Ok(s) => s,
        Err(e) => return Support::Unavailable(format!("cannot detect the cgroup layout: {e}")),
    };
    let root = nix::unistd::geteuid().is_root();
    match setup {
        CgroupSetup::Legacy | CgroupSetup::Hybrid if root => Support::Available(Flavour::V1),
        CgroupSetup::Legacy | CgroupSetup::Hybrid => Support::Unavailable(
            "cgroup v1 controllers cannot be delegated to an unprivileged user; \
             containers run without memory/pids/cpu limits"
                .into(),
        ),
        CgroupSetup::Unified if root => Support::Available(Flavour::V2),
        CgroupSetup::Unified => {
            // The parent, or the nearest existing ancestor that creating it would write.
            let full = Path::new(CGROUP_ROOT).join(parent.strip_prefix("/").unwrap_or(parent));
            let p = full
                .ancestors()
                .find(|a| a.is_dir())
                .unwrap_or(Path::new(CGROUP_ROOT));
            if nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok() {
                Support::Available(Flavour::V2)
            } else {
                Support::Unavailable(format!(
                    "{} is not writable (no delegated cgroup for {}); containers run without limits",
                    p.display(),
                    full.display()
                ))
            }
        }
    }
}

/// One container's cgroup.
pub struct Cgroup {
    /// Relative to each hierarchy root, e.g. `koji-adjutant/3f2a…`.
    path: PathBuf,
    manager: AnyCgroupManager,
    /// Its directory in each hierarchy (computed once: finding the mount points means
    /// parsing mountinfo once per controller).
    dirs: Vec<PathBuf>,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup").field("path", &self.path).finish()
    }
}

impl Cgroup {
    /// A handle on `path` (nothing is created until [`Cgroup::attach`]).
    pub fn new(path: &Path) -> Result<Cgroup, CgroupError> {
        let manager = create_cgroup_manager(CgroupConfig {
            cgroup_path: path.to_owned(),
            systemd_cgroup: false,
            container_name: String::new(),
        })
        .map_err(|e| CgroupError::Manager {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Cgroup {
            path: path.to_owned(),
            manager,
            dirs: hierarchy_dirs(path),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create the cgroup (every hierarchy), move `pid` into it and apply `limits`.
    pub fn attach(&self, pid: Pid, limits: &Limits) -> Result<(), CgroupError> {
        let res = resources(limits).map_err(|message| CgroupError::Limit {
            path: self.path.clone(),
            message,
        })?;
        let mut tries = 0;
        loop {
            match self.manager.add_task(pid) {
                Ok(()) => break,
                // The shared parent may be removed by a concurrent destroy; retry once.
                Err(_) if tries == 0 => tries += 1,
                Err(e) => return Err(self.err(e)),
            }
        }
        let opt = ControllerOpt {
            resources: &res,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        self.manager.apply(&opt).map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> CgroupError {
        CgroupError::Manager {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The directories of this cgroup, one per mounted hierarchy (v1) or one (v2).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The `cgroup.procs` files a process writes its pid into to join this cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|d| d.join("cgroup.procs"))
            .filter(|p| p.exists())
            .collect()
    }

    /// Read usage. OOM kills and pids-limit hits come from the event files.
    pub fn usage(&self) -> Result<Usage, CgroupError> {
        let stats = self.manager.stats().map_err(|e| self.err(e))?;
        let mut u = Usage {
            limits_available: true,
            unavailable_reason: None,
            cpu: Duration::from_nanos(stats.cpu.usage.usage_total),
            peak_memory: stats.memory.memory.max_usage,
            memory: stats.memory.memory.usage,
            oom_kills: 0,
            pids: stats.pids.current,
            pids_limit_hits: 0,
        };
        for d in &self.dirs {
            if let Some(n) = keyed_value(&d.join("memory.oom_control"), "oom_kill") {
                u.oom_kills = n;
            }
            if let Some(n) = keyed_value(&d.join("memory.events"), "oom_kill") {
                u.oom_kills = n;
            }
            if let Some(n) = keyed_value(&d.join("pids.events"), "max") {
                u.pids_limit_hits = n;
            }
        }
        Ok(u)
    }

    /// The OOM kill counter alone (cheap; read before and after a step).
    pub fn oom_kills(&self) -> u64 {
        self.dirs()
            .iter()
            .find_map(|d| {
                keyed_value(&d.join("memory.oom_control"), "oom_kill")
                    .or_else(|| keyed_value(&d.join("memory.events"), "oom_kill"))
            })
            .unwrap_or(0)
    }

    /// Whether any process is left in the cgroup.
    pub fn is_populated(&self) -> bool {
        self.dirs().iter().any(|d| {
            std::fs::read_to_string(d.join("cgroup.procs"))
                .map(|s| !s.trim().is_empty())
                .unwrap_or(false)
        })
    }

    /// Kill what is left, remove the cgroup, then the parent if it became empty.
    /// Idempotent: a cgroup that is already gone is fine.
    pub fn remove(&self) -> Result<(), CgroupError> {
        if self.dirs().iter().any(|d| d.exists()) {
            self.manager.remove().map_err(|e| self.err(e))?;
        }
        if self.dirs().iter().any(|d| d.exists()) {
            return Err(CgroupError::Busy {
                path: self.path.clone(),
            });
        }
        if let Some(parent) = self.path.parent() {
            remove_parent_if_empty(parent);
        }
        Ok(())
    }
}

/// Remove `parent` (relative to each hierarchy root) where it is empty. Races with a
/// concurrent create are harmless: rmdir of a non-empty cgroup fails with EBUSY.
pub fn remove_parent_if_empty(parent: &Path) {
    if parent.as_os_str().is_empty() {
        return;
    }
    for d in hierarchy_dirs(parent) {
        match std::fs::remove_dir(&d) {
            Ok(()) => debug!(dir = %d.display(), "removed empty cgroup parent"),
            Err(_) => continue,
        }
    }
}

/// `<mount>/<rel>` for each cgroup hierarchy `libcgroups` manages (v1: each supported
/// controller's mount point, deduplicated; v2: the unified root).
pub fn hierarchy_dirs(rel: &Path) -> Vec<PathBuf> {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    match get_cgroup_setup() {
        Ok(CgroupSetup::Unified) => vec![Path::new(CGROUP_ROOT).join(rel)],
        Ok(_) => {
            let mut mps: Vec<PathBuf> = libcgroups::v1::util::list_supported_mount_points()
                .map(|m| m.into_values().collect())
                .unwrap_or_default();
            mps.sort();
            mps.dedup();
            mps.into_iter().map(|m| m.join(rel)).collect()
        }
        Err(_) => Vec::new(),
    }
}

/// The controllers limits use (`memory`, `pids`, `cpu`) that the host does not offer:
/// on v1 not mounted, on v2 not in the root's `cgroup.controllers`. Empty when all are
/// there (or the layout cannot be read: [`probe`] says that).
pub fn missing_controllers() -> Vec<&'static str> {
    const WANTED: [&str; 3] = ["memory", "pids", "cpu"];
    let have: Vec<String> = match get_cgroup_setup() {
        Ok(CgroupSetup::Unified) => {
            std::fs::read_to_string(Path::new(CGROUP_ROOT).join("cgroup.controllers"))
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        }
        Ok(_) => libcgroups::v1::util::list_supported_mount_points()
            .map(|m| m.keys().map(|c| c.to_string()).collect())
            .unwrap_or_default(),
        Err(_) => return Vec::new(),
    };
    WANTED
        .into_iter()
        .filter(|w| !have.iter().any(|h| h == w))
        .collect()
}

/// Child cgroup names under `parent` in every hierarchy (for the sweep).
pub fn children(parent: &Path) -> Vec<String> {
    let mut names: Vec<String> = hierarchy_dirs(parent)
        .into_iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok()))
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn resources(l: &Limits) -> Result<LinuxResources, String> {
    let mut b = LinuxResourcesBuilder::default();
    if let Some(m) = l.memory {
        let m = i64::try_from(m).map_err(|_| format!("memory limit {m} too large"))?;
        b = b.memory(
            LinuxMemoryBuilder::default()
                .limit(m)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(p) = l.pids {
        let p = i64::try_from(p).map_err(|_| format!("pids limit {p} too large"))?;
        b = b.pids(
            LinuxPidsBuilder::default()
                .limit(p)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(c) = l.cpus {
        if !(c.is_finite() && c > 0.0) {
            return Err(format!("cpus must be a positive number, not {c}"));
        }
        let period: u64 = 100_000;
        let quota = (c * period as f64).round().max(1000.0) as i64;
        b = b.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(period)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    b.build().map_err(|e| e.to_string())
}

fn keyed_value(file: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then_some(())?;
        it.next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_parse() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("memory.oom_control");
        std::fs::write(&f, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").unwrap();
        assert_eq!(keyed_value(&f, "oom_kill"), Some(3));
        assert_eq!(keyed_value(&f, "missing"), None);
    }

    #[test]
    fn limits_translate() {
        let r = resources(&Limits {
            memory: Some(64 << 20),
            pids: Some(20),
            cpus: Some(1.5),
        })
        .unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 20);
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(150_000));
        assert!(resources(&Limits {
            cpus: Some(-1.0),
            ..Default::default()
        })
        .is_err());
    }
}
