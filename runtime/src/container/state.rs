//! On-disk state of a container: `<root>/containers/<id>/state.json`, enough for a
//! restarted daemon to recognise and sweep what a crashed one left behind.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::idmap::IdMapping;
use crate::sys;

pub const STATE_FILE: &str = "state.json";

/// A process recognised across restarts: pid plus start time (pids are reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcId {
    pub fn of(pid: i32) -> Option<ProcId> {
        Some(ProcId {
            pid,
            start_time: sys::process_start_time(pid)?,
        })
    }
    pub fn current() -> Option<ProcId> {
        ProcId::of(std::process::id() as i32)
    }
    pub fn is_alive(&self) -> bool {
        sys::process_matches(self.pid, self.start_time)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    /// The process holding the container (it dies with it).
    pub owner: Option<ProcId>,
    /// The container's pid 1, once started.
    pub init: Option<ProcId>,
    /// cgroup path relative to each hierarchy root.
    pub cgroup: Option<PathBuf>,
    pub mapping: IdMapping,
    /// Seconds since the epoch.
    pub created: u64,
}

/// Write atomically (temp file + rename).
pub fn write(dir: &Path, st: &State) -> std::io::Result<()> {
    let tmp = dir.join(".state.json.tmp");
    let json = serde_json::to_vec_pretty(st).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, dir.join(STATE_FILE))
}

/// Read, or `None` if missing or unreadable (a half-created container).
pub fn read(dir: &Path) -> Option<State> {
    let b = std::fs::read(dir.join(STATE_FILE)).ok()?;
    serde_json::from_slice(&b).ok()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
