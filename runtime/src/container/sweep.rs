//! Sweeping what a crashed daemon left: container directories whose holder is dead
//! (their pid 1 died with it through the lifeline; killed here if somehow alive), their
//! cgroups, stray mounts, and empty cgroups under the parent with no container.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{info, warn};

use crate::cgroups::{self, Cgroup};
use crate::container::destroy;
use crate::container::state::{self, ProcId};
use crate::idmap::IdMapping;

/// What a sweep did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepReport {
    /// Container ids removed.
    pub removed: Vec<String>,
    /// Container ids left alone: their holder is a live process.
    pub kept: Vec<String>,
    /// Orphan cgroups removed (relative paths).
    pub cgroups_removed: Vec<PathBuf>,
    /// Problems, each naming the container or path.
    pub errors: Vec<String>,
}

pub(crate) struct SweepCtx<'a> {
    pub containers_dir: &'a Path,
    pub cgroup_parent: Option<&'a Path>,
    pub helper_exe: &'a Path,
    pub mapping: &'a IdMapping,
    pub me: Option<ProcId>,
    /// Ids of containers this runtime holds (never swept).
    pub live: Vec<String>,
}

pub(crate) fn sweep(ctx: &SweepCtx<'_>) -> SweepReport {
    let mut rep = SweepReport::default();
    let entries = match std::fs::read_dir(ctx.containers_dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            rep.errors
                .push(format!("reading {}: {e}", ctx.containers_dir.display()));
            Vec::new()
        }
    };
    for e in entries {
        let Ok(id) = e.file_name().into_string() else {
            continue;
        };
        if id.starts_with('.') || ctx.live.contains(&id) {
            continue;
        }
        let dir = e.path();
        let st = state::read(&dir);
        if let Some(owner) = st.as_ref().and_then(|s| s.owner) {
            if owner.is_alive() && Some(owner) != ctx.me {
                rep.kept.push(id);
                continue;
            }
        }
        match sweep_one(ctx, &id, &dir, st.as_ref()) {
            Ok(()) => {
                info!(container = %id, "swept a container left by a dead daemon");
                rep.removed.push(id);
            }
            Err(msg) => rep.errors.push(msg),
        }
    }
    if let Some(parent) = ctx.cgroup_parent {
        for name in cgroups::children(parent) {
            if ctx.live.contains(&name) || ctx.containers_dir.join(&name).exists() {
                continue;
            }
            let rel = parent.join(&name);
            let Ok(cg) = Cgroup::new(&rel) else { continue };
            // Only empty ones: a populated cgroup may belong to another daemon using
            // a different store with the same parent.
            if cg.is_populated() {
                continue;
            }
            match cg.remove() {
                Ok(()) => rep.cgroups_removed.push(rel),
                Err(e) => rep.errors.push(e.to_string()),
            }
        }
        cgroups::remove_parent_if_empty(parent);
    }
    if !rep.errors.is_empty() {
        warn!(errors = ?rep.errors, "sweep incomplete");
    }
    rep
}

fn sweep_one(
    ctx: &SweepCtx<'_>,
    id: &str,
    dir: &Path,
    st: Option<&state::State>,
) -> Result<(), String> {
    if let Some(init) = st.and_then(|s| s.init) {
        destroy::kill_stale(id, &init).map_err(|e| e.to_string())?;
    }
    if let Some(path) = st.and_then(|s| s.cgroup.as_ref()) {
        let cg = Cgroup::new(path).map_err(|e| e.to_string())?;
        destroy::remove_cgroup(id, &cg).map_err(|e| e.to_string())?;
    }
    destroy::unmount_under(id, dir).map_err(|e| e.to_string())?;
    let mapping = st.map(|s| &s.mapping).unwrap_or(ctx.mapping);
    destroy::remove_dir(id, ctx.helper_exe, mapping, dir).map_err(|e| e.to_string())
}
