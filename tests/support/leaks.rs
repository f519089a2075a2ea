//! What a daemon or a build may leave behind on the host: mounts, cgroups, processes,
//! container directories, files, and a process's fds, threads and memory.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Mount points in the host's (this process's) mount namespace at or under `path`.
pub fn mounts_under(path: &Path) -> Vec<String> {
    let p = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| *mp == p || mp.starts_with(&format!("{p}/")))
        .map(str::to_owned)
        .collect()
}

/// Number of mounts in this process's mount namespace.
pub fn mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .count()
}

/// The mount points of the cgroup hierarchies (v1 controllers and the v2 root).
pub fn cgroup_roots() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mp = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mp))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Cgroup directories named after one of `ids` anywhere under the runtime's parent
/// (`koji-adjutant`) in any hierarchy.
pub fn cgroups_of(ids: &BTreeSet<String>) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for root in cgroup_roots() {
        let parent = root.join("koji-adjutant");
        let Ok(rd) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in rd.flatten() {
            if ids.contains(&e.file_name().to_string_lossy().into_owned()) {
                found.push(e.path());
            }
        }
    }
    found
}

/// Pids of processes whose command line contains `marker`.
pub fn procs_with(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(marker) {
            v.push(pid);
        }
    }
    v
}

/// Container directories of the store at `root` (`<root>/containers/*`).
pub fn containers(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("containers"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Files and directories under `dir` (recursive, not following symlinks), and their
/// total apparent size in bytes.
pub fn tree_usage(dir: &Path) -> (u64, u64) {
    fn walk(d: &Path, n: &mut u64, bytes: &mut u64) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            *n += 1;
            if md.is_dir() {
                walk(&e.path(), n, bytes);
            } else {
                *bytes += md.len();
            }
        }
    }
    let (mut n, mut bytes) = (0, 0);
    walk(dir, &mut n, &mut bytes);
    (n, bytes)
}

/// Files (everything but directories) under `dir`, recursively, and their bytes.
pub fn file_usage(dir: &Path) -> (u64, u64) {
    fn walk(d: &Path, n: &mut u64, bytes: &mut u64) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                walk(&e.path(), n, bytes);
            } else {
                *n += 1;
                *bytes += md.len();
            }
        }
    }
    let (mut n, mut bytes) = (0, 0);
    walk(dir, &mut n, &mut bytes);
    (n, bytes)
}

/// Entries of `dir` (names), sorted; empty when it does not exist.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Open fds of process `pid`.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// Threads of process `pid`.
pub fn thread_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// Resident set size of process `pid`, KiB.
pub fn rss_kib(pid: i32) -> u64 {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Child processes of `pid` (direct).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return v;
    };
    for t in rd.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            v.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
        }
    }
    v
}

/// Records every container directory that appears in a store while it runs, so a
/// test can check afterwards that none of them left a cgroup or a directory.
pub struct ContainerWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeSet<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ContainerWatch {
    pub fn start(store: &Path) -> ContainerWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let (stop2, seen2, store) = (stop.clone(), seen.clone(), store.to_owned());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let now = containers(&store);
                seen2.lock().unwrap().extend(now);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        ContainerWatch {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// The ids seen so far.
    pub fn seen(&self) -> BTreeSet<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ContainerWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Everything a finished build must have cleaned up in a store and workdir: no
/// container directory, no cgroup of the containers seen, no process with `marker`,
/// no mount under either directory, no task directory left in the workdir. Returns
/// what is left (empty when clean).
pub fn leftovers(
    store: &Path,
    workdir: &Path,
    seen: &BTreeSet<String>,
    marker: Option<&str>,
) -> Vec<String> {
    let mut left = Vec::new();
    for c in containers(store) {
        left.push(format!("container directory {}", c));
    }
    for c in cgroups_of(seen) {
        left.push(format!("cgroup {}", c.display()));
    }
    if let Some(m) = marker {
        for p in procs_with(m) {
            left.push(format!("process {p} ({m})"));
        }
    }
    // mounts below them (a test may mount a small filesystem on the workdir itself)
    let below = |d: &Path| {
        let top = d.display().to_string();
        mounts_under(d).into_iter().filter(move |m| *m != top)
    };
    for m in below(store).chain(below(workdir)) {
        left.push(format!("mount {m}"));
    }
    let tasks = workdir.join("tasks");
    let (n, _) = tree_usage(&tasks);
    if n > 0 {
        // task directories are `tasks/<id%10000>/<id>`; the bucket directories may stay
        let deep: Vec<String> = entries(&tasks)
            .into_iter()
            .flat_map(|b| {
                entries(&tasks.join(&b))
                    .into_iter()
                    .map(move |t| format!("{b}/{t}"))
            })
            .collect();
        for d in deep {
            left.push(format!("task directory {}", tasks.join(d).display()));
        }
    }
    left
}
