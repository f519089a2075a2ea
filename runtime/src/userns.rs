//! Writing a new user namespace's uid/gid maps, and choosing a mapping.
//!
//! - [`MappingMode::Root`]: real root writes `/proc/<pid>/{gid,uid}_map` directly
//!   (several lines are fine, `setgroups` stays allowed).
//! - [`MappingMode::RootlessRanges`]: the setuid `newgidmap`/`newuidmap` write them;
//!   their exit status is checked (youki ignores it) and both maps are read back.
//! - [`MappingMode::Single`]: `deny` into `/proc/<pid>/setgroups`, then one line each.
//!   Degraded: nothing but the caller's own id exists in the container.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::Pid;
use tracing::{debug, warn};

use crate::idmap::{find_subordinate, IdMapping, IdRange, MappingMode, MIN_RANGE};

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("running {tool}: {source} (is the uidmap package installed?)")]
    Spawn {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("{tool} {args} failed ({status}): {stderr}")]
    Tool {
        tool: &'static str,
        args: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{path} holds {found:?} after writing {expected:?}")]
    Verify {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

/// Write the maps of the (blocked) child `pid` according to `mapping.mode`, then read
/// them back.
pub fn write_maps(pid: Pid, mapping: &IdMapping) -> Result<(), UsernsError> {
    let proc = PathBuf::from(format!("/proc/{}", pid.as_raw()));
    match mapping.mode {
        MappingMode::Root => {
            write_file(&proc.join("gid_map"), &mapping.gid_map_text())?;
            write_file(&proc.join("uid_map"), &mapping.uid_map_text())?;
        }
        MappingMode::RootlessRanges => {
            // Both tools run at once: they are independent and each costs a fork+exec
            // of a setuid binary.
            let g = spawn_tool("newgidmap", pid, &mapping.gids)?;
            let u = spawn_tool("newuidmap", pid, &mapping.uids)?;
            let rg = finish_tool(g);
            let ru = finish_tool(u);
            rg?;
            ru?;
            // The tools' exit status is all we know of what they wrote.
            verify(&proc.join("uid_map"), &mapping.uids)?;
            verify(&proc.join("gid_map"), &mapping.gids)?;
        }
        MappingMode::Single => {
            write_file(&proc.join("setgroups"), "deny")?;
            write_file(&proc.join("gid_map"), &mapping.gid_map_text())?;
            write_file(&proc.join("uid_map"), &mapping.uid_map_text())?;
        }
    }
    // Our own writes: the kernel takes a map whole or fails the write.
    Ok(())
}

/// Whether processes in a namespace with this mapping may call `setgroups(2)`.
pub fn can_setgroups(mapping: &IdMapping) -> bool {
    mapping.mode != MappingMode::Single
}

fn write_file(path: &Path, text: &str) -> Result<(), UsernsError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| UsernsError::Write {
            path: path.to_owned(),
            source,
        })
}

struct Running {
    tool: &'static str,
    args: String,
    child: std::process::Child,
}

fn spawn_tool(tool: &'static str, pid: Pid, ranges: &[IdRange]) -> Result<Running, UsernsError> {
    let mut args = vec![pid.as_raw().to_string()];
    for r in ranges {
        args.push(r.inside.to_string());
        args.push(r.outside.to_string());
        args.push(r.count.to_string());
    }
    debug!(tool, ?args, "writing id map");
    let child = Command::new(tool)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| UsernsError::Spawn { tool, source })?;
    Ok(Running {
        tool,
        args: args.join(" "),
        child,
    })
}

fn finish_tool(r: Running) -> Result<(), UsernsError> {
    let out = r
        .child
        .wait_with_output()
        .map_err(|source| UsernsError::Spawn {
            tool: r.tool,
            source,
        })?;
    if !out.status.success() {
        return Err(UsernsError::Tool {
            tool: r.tool,
            args: r.args,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

fn verify(path: &Path, expected: &[IdRange]) -> Result<(), UsernsError> {
    let text = std::fs::read_to_string(path).map_err(|source| UsernsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let found = parse_map(&text);
    let mut want = expected.to_vec();
    let mut got = found.clone();
    want.sort_by_key(|r| r.inside);
    got.sort_by_key(|r| r.inside);
    if want != got {
        return Err(UsernsError::Verify {
            path: path.to_owned(),
            expected: map_lines(expected),
            found: map_lines(&found),
        });
    }
    Ok(())
}

fn map_lines(r: &[IdRange]) -> String {
    r.iter()
        .map(|r| format!("{} {} {}", r.inside, r.outside, r.count))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parse a `/proc/<pid>/uid_map` (columns padded with spaces).
pub fn parse_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(|x| x.parse::<u32>());
            match (it.next(), it.next(), it.next()) {
                (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count))) => Some(IdRange {
                    inside,
                    outside,
                    count,
                }),
                _ => None,
            }
        })
        .collect()
}

/// The mapping chosen for the current user, and why a degraded one was chosen.
#[derive(Clone, Debug)]
pub struct Detected {
    pub mapping: IdMapping,
    /// Set when the mapping is degraded (single id) or smaller than [`MIN_RANGE`]:
    /// the reason, for logs and status.
    pub warning: Option<String>,
}

/// Choose a mapping for the current process.
///
/// As real root: `root_range` (`(base, count)`, e.g. `(100000, 65536)`). Otherwise the
/// user's `/etc/subuid` and `/etc/subgid` ranges with `newuidmap`/`newgidmap`, or, when
/// either is missing, the degraded single-id mapping (with a warning).
pub fn detect(root_range: (u32, u32)) -> Result<Detected, crate::idmap::IdMapError> {
    detect_with(
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
        root_range,
        Path::new("/etc/subuid"),
        Path::new("/etc/subgid"),
    )
}

pub(crate) fn detect_with(
    uid: u32,
    gid: u32,
    root_range: (u32, u32),
    subuid: &Path,
    subgid: &Path,
) -> Result<Detected, crate::idmap::IdMapError> {
    if uid == 0 {
        return Ok(Detected {
            mapping: IdMapping::root(root_range.0, root_range.1)?,
            warning: None,
        });
    }
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let su = find_subordinate(subuid, &name, uid)?;
    let sg = find_subordinate(subgid, &name, uid)?;
    let tools = ["newuidmap", "newgidmap"]
        .iter()
        .all(|t| find_in_path(t).is_some());
    let reason = match (su, sg, tools) {
        (Some(u), Some(g), true) => {
            let m = IdMapping::rootless(uid, gid, u, g);
            let small = u.1.min(g.1);
            let warning = (small < MIN_RANGE - 1).then(|| {
                format!(
                    "subordinate id range of {name} has only {small} ids; rpm payloads need {}",
                    MIN_RANGE - 1
                )
            });
            if let Some(w) = &warning {
                warn!("{w}");
            }
            return Ok(Detected {
                mapping: m,
                warning,
            });
        }
        (None, _, _) => format!("no entry for {name} in {}", subuid.display()),
        (_, None, _) => format!("no entry for {name} in {}", subgid.display()),
        (_, _, false) => "newuidmap/newgidmap not found (install the uidmap package)".into(),
    };
    let warning = format!(
        "degraded single-id user namespace mapping: {reason}; files cannot be owned by \
         other users in containers (rpm installs will fail)"
    );
    warn!("{warning}");
    Ok(Detected {
        mapping: IdMapping::single(uid, gid),
        warning: Some(warning),
    })
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------
// Jobs inside a user namespace.

/// Work that must run as root of a user namespace with a given mapping (e.g. removing
/// a tree owned by subordinate ids, which the unprivileged daemon cannot touch).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Job {
    /// `rm -rf` of a path.
    RemoveTree { path: PathBuf },
    /// An image store job (unpacking a layer with its ids as they are, or removing an
    /// unpacked layer); its result goes to the helper's stdout as JSON.
    Store(crate::store::UsernsJob),
    /// A host probe ([`crate::probe`]); its result goes to stdout as JSON.
    Probe(crate::probe::Probe),
}

impl Job {
    /// A short description for errors.
    pub fn describe(&self) -> String {
        match self {
            Job::RemoveTree { path } => format!("removing {}", path.display()),
            Job::Store(crate::store::UsernsJob::RemoveTree(p)) => {
                format!("removing {}", p.display())
            }
            Job::Store(crate::store::UsernsJob::Unpack(j)) => {
                format!("unpacking {} into {}", j.blob.display(), j.target.display())
            }
            Job::Probe(crate::probe::Probe::Identity) => "user namespace probe".into(),
            Job::Probe(crate::probe::Probe::Overlay { dir }) => {
                format!("overlay probe in {}", dir.display())
            }
        }
    }
}

/// What a [`Job::Store`] returns.
pub type StoreJobResult = Result<Option<crate::layer::UnpackStats>, String>;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct JobConfig {
    mapping: IdMapping,
    job: Job,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("user namespace job ({job}) via {exe}: {message}")]
    Failed {
        exe: PathBuf,
        job: String,
        message: String,
    },
}

/// Run `job` as root of a new user namespace mapped by `mapping`, through the
/// re-exec helper `exe` (`__adjutant-helper userns`). Blocking. Returns the helper's
/// stdout (a JSON result for [`Job::Store`], empty otherwise).
pub fn run_job(exe: &Path, mapping: &IdMapping, job: &Job) -> Result<Vec<u8>, JobError> {
    let fail = |message: String| JobError::Failed {
        exe: exe.to_owned(),
        job: job.describe(),
        message,
    };
    let cfg = JobConfig {
        mapping: mapping.clone(),
        job: job.clone(),
    };
    let json = serde_json::to_vec(&cfg).map_err(|e| fail(e.to_string()))?;
    let mut child = Command::new(exe)
        .arg(crate::helper::HELPER_ARG)
        .arg("userns")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("spawn: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&json)
            .map_err(|e| fail(format!("writing config: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("wait: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// A runner for the image store's user-namespace jobs (rootless unpacking with
/// subordinate ids), through the re-exec helper `exe` (usually `/proc/self/exe`):
/// `store.set_userns_runner(userns::store_runner(exe))`.
pub fn store_runner(exe: PathBuf) -> crate::store::UsernsRunner {
    std::sync::Arc::new(move |mapping: &IdMapping, job: &crate::store::UsernsJob| {
        let out = run_job(&exe, mapping, &Job::Store(job.clone())).map_err(|e| e.to_string())?;
        serde_json::from_slice::<StoreJobResult>(&out)
            .map_err(|e| format!("bad result from the user namespace helper: {e}"))?
    })
}

/// Main of the `userns` helper: config JSON on stdin; errors on stderr; exit status.
pub(crate) fn job_main() -> i32 {
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut buf = Vec::new();
    let cfg: JobConfig = match std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice(&buf).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reading the job config: {e}");
            return 2;
        }
    };
    let (go_r, go_w) = match crate::sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pipe: {e}");
            return 1;
        }
    };
    // SAFETY: the helper is single-threaded; the child ends with _exit.
    match unsafe { crate::sys::clone3(libc::CLONE_NEWUSER as u64, libc::SIGCHLD) } {
        Err(e) => {
            eprintln!("clone3(CLONE_NEWUSER): {e}");
            1
        }
        Ok(crate::sys::Forked::Child) => {
            drop(go_w);
            let mut b = [0u8; 1];
            if !matches!(
                nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&go_r), &mut b),
                Ok(1)
            ) {
                unsafe { libc::_exit(1) };
            }
            let code = match run_inside(&cfg) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            };
            unsafe { libc::_exit(code) }
        }
        Ok(crate::sys::Forked::Parent { pid, .. }) => {
            drop(go_r);
            if let Err(e) = write_maps(pid, &cfg.mapping) {
                eprintln!("{e}");
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = crate::sys::waitpid_exit(pid);
                return 1;
            }
            let _ = crate::sys::write_all_fd(go_w.as_fd(), b"g");
            match crate::sys::waitpid_exit(pid) {
                Ok(crate::sys::Exit::Code(c)) => c,
                Ok(crate::sys::Exit::Signal(s)) => 128 + s,
                Err(e) => {
                    eprintln!("waitpid: {e}");
                    1
                }
            }
        }
    }
}

fn run_inside(cfg: &JobConfig) -> Result<(), String> {
    use nix::unistd::{setresgid, setresuid, Gid, Uid};
    if can_setgroups(&cfg.mapping) {
        nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    }
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| format!("setresgid 0: {e}"))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| format!("setresuid 0: {e}"))?;
    match &cfg.job {
        Job::RemoveTree { path } => match std::fs::remove_dir_all(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing {}: {e}", path.display())),
        },
        Job::Store(job) => {
            let res: StoreJobResult = crate::store::run_userns_job(job);
            let json = serde_json::to_vec(&res).map_err(|e| e.to_string())?;
            // Flushed here: the child ends with _exit, which skips std's buffers.
            let mut out = std::io::stdout().lock();
            out.write_all(&json)
                .and_then(|()| out.flush())
                .map_err(|e| format!("writing the job result: {e}"))
        }
        Job::Probe(probe) => {
            let json = crate::probe::run_inside(probe);
            // Flushed here: the child ends with _exit, which skips std's buffers.
            let mut out = std::io::stdout().lock();
            out.write_all(&json)
                .and_then(|()| out.flush())
                .map_err(|e| format!("writing the job result: {e}"))
        }
    }
}

/// Remove `path` recursively; when that fails for lack of permission (files owned by
/// subordinate ids, or mode-000 directories overlay left behind), retry as root of a
/// user namespace with `mapping`.
pub fn remove_tree(exe: &Path, mapping: &IdMapping, path: &Path) -> Result<(), JobError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e)
            if e.kind() == std::io::ErrorKind::PermissionDenied
                && !nix::unistd::geteuid().is_root() =>
        {
            debug!(path = %path.display(), "removal needs the user namespace: {e}");
        }
        Err(e) => {
            return Err(JobError::Failed {
                exe: exe.to_owned(),
                job: format!("removing {}", path.display()),
                message: e.to_string(),
            })
        }
    }
    run_job(
        exe,
        mapping,
        &Job::RemoveTree {
            path: path.to_owned(),
        },
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_padded_map() {
        let m = parse_map("         0     100000      65536\n         1 2 3\n");
        assert_eq!(
            m,
            vec![
                IdRange {
                    inside: 0,
                    outside: 100000,
                    count: 65536
                },
                IdRange {
                    inside: 1,
                    outside: 2,
                    count: 3
                }
            ]
        );
    }

    #[test]
    fn detect_root_and_rootless() {
        let d = tempfile::tempdir().unwrap();
        let su = d.path().join("subuid");
        let sg = d.path().join("subgid");
        let r = detect_with(0, 0, (100000, 65536), &su, &sg).unwrap();
        assert_eq!(r.mapping.mode, MappingMode::Root);
        assert!(r.warning.is_none());

        // No entries: degraded, with a warning naming the file.
        let r = detect_with(4242, 4242, (100000, 65536), &su, &sg).unwrap();
        assert_eq!(r.mapping.mode, MappingMode::Single);
        assert!(r.warning.unwrap().contains("subuid"));

        std::fs::write(&su, "4242:300000:65536\n").unwrap();
        std::fs::write(&sg, "4242:300000:65536\n").unwrap();
        let r = detect_with(4242, 4242, (100000, 65536), &su, &sg).unwrap();
        if find_in_path("newuidmap").is_some() {
            assert_eq!(r.mapping.mode, MappingMode::RootlessRanges);
            assert_eq!(r.mapping.host_uid(0), Some(4242));
            assert_eq!(r.mapping.host_uid(1), Some(300000));
            assert!(r.warning.is_none());
        } else {
            assert_eq!(r.mapping.mode, MappingMode::Single);
        }
    }
}
