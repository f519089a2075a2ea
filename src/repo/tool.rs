//! The seam between the repo tasks and the programs that write repodata.
//!
//! A [`RepoTool`] runs `createrepo_c` or `mergerepo_c` with a given argument list,
//! writing what the program prints (stdout and stderr) to a log file that starts with
//! `$ <argv>`, exactly as kojid's `log_output` does, and reports how it ended.
//!
//! Where the programs run:
//!
//! - [`HostRepoTool`]: the host's binaries (`createrepo_c` and `mergerepo_c` on `PATH`,
//!   else `/usr/bin`). This is what kojid does, it is the fastest, and the paths the
//!   commands name (`<topdir>/repos/…`, the task workdir, `file://` repo URLs) are the
//!   host's own. It is the default whenever `createrepo_c` is installed.
//! - [`super::ContainerRepoTool`]: the same argv in a container of the configured
//!   default image, with every path of [`ToolCommand::read_only`] bind mounted
//!   read-only and every path of [`ToolCommand::writable`] read-write *at the same
//!   location*, so the command line and the repodata (which records
//!   `toplink/packages/…` hrefs, not absolute paths) are the same as on the host.
//!
//! [`select_tool`] picks one as `repo_tool` says.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tracing::debug;

use super::RepoError;
use crate::config::RepoToolSetting;
use crate::daemon::BoxFuture;

/// Which program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `createrepo_c`.
    Createrepo,
    /// `mergerepo_c`.
    Mergerepo,
}

impl Tool {
    /// The program's name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Createrepo => "createrepo_c",
            Tool::Mergerepo => "mergerepo_c",
        }
    }
}

/// One run of a tool.
#[derive(Debug, Clone)]
pub struct ToolCommand {
    /// The program.
    pub tool: Tool,
    /// Its arguments (without the program).
    pub args: Vec<String>,
    /// Extra environment (kojid sets `TMPDIR` for mergerepo_c).
    pub env: Vec<(String, String)>,
    /// The log file: created, starting with `$ <argv>\n`, then the program's output.
    pub log: PathBuf,
    /// Paths the program reads (a container tool mounts them read-only).
    pub read_only: Vec<PathBuf>,
    /// Paths the program writes (a container tool mounts them read-write).
    pub writable: Vec<PathBuf>,
}

/// How a tool ended (an `os.waitpid` status, as kojid's `parseStatus` reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl ToolStatus {
    /// Exit status 0.
    pub fn success(self) -> bool {
        self == ToolStatus::Exited(0)
    }

    fn from_std(s: std::process::ExitStatus) -> ToolStatus {
        use std::os::unix::process::ExitStatusExt;
        match (s.code(), s.signal()) {
            (Some(c), _) => ToolStatus::Exited(c),
            (None, Some(sig)) => ToolStatus::Signaled(sig),
            (None, None) => ToolStatus::Exited(-1),
        }
    }

    /// `koji.util.parseStatus(rv, prefix)`.
    pub fn describe(self, prefix: &str) -> String {
        match self {
            ToolStatus::Exited(c) => format!("{prefix} exited with status {c}"),
            ToolStatus::Signaled(s) => format!("{prefix} was killed by signal {s}"),
        }
    }
}

/// `koji.util.format_shell_cmd(cmd)`: the argv wrapped at 78 columns with ` \` line
/// continuations, as kojid puts it in "failed to create repo" errors.
pub fn format_shell_cmd(cmd: &[String]) -> String {
    let width = 80 - 2;
    let mut lines = Vec::new();
    let mut line = String::new();
    for bit in cmd {
        if line.len() + bit.len() > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(bit);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join(" \\\n")
}

/// Runs `createrepo_c`/`mergerepo_c` (see the module docs).
pub trait RepoTool: Send + Sync + std::fmt::Debug {
    /// How the program is named in argv[0] (kojid: `/usr/bin/createrepo_c`); it appears
    /// in the log's `$ …` line and in error messages.
    fn program(&self, tool: Tool) -> Result<String, RepoError>;

    /// Run a command to the end. Dropping the future kills the program.
    fn run<'a>(&'a self, cmd: &'a ToolCommand) -> BoxFuture<'a, Result<ToolStatus, RepoError>>;

    /// `mergerepo_c --version` as (major, minor, patch), or None when it cannot be
    /// told (kojid logs a warning and goes on).
    fn mergerepo_version(&self) -> BoxFuture<'_, Option<(u32, u32, u32)>>;

    /// Where the programs run, for logs (`host`, `container <image>`).
    fn describe(&self) -> String;
}

/// Parse `Version: 0.15.11 (Features: …)` as kojid's `re.match(r'Version: (\d+).(\d+).(\d+).*')`
/// does (on the stripped output; each `.` between the numbers is any one character).
pub fn parse_mergerepo_version(out: &str) -> Option<(u32, u32, u32)> {
    let mut rest = out.trim().strip_prefix("Version: ")?;
    let mut nums = [0u32; 3];
    for (i, n) in nums.iter_mut().enumerate() {
        if i > 0 {
            let mut chars = rest.chars();
            chars.next()?;
            rest = chars.as_str();
        }
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        *n = rest[..end].parse().ok()?;
        rest = &rest[end..];
    }
    Some((nums[0], nums[1], nums[2]))
}

/// The host's `createrepo_c` and `mergerepo_c`.
#[derive(Debug, Clone)]
pub struct HostRepoTool {
    createrepo: PathBuf,
    mergerepo: Option<PathBuf>,
}

impl HostRepoTool {
    /// Find the binaries on `PATH`, then in `/usr/bin`. None without `createrepo_c`.
    pub fn find() -> Option<HostRepoTool> {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.push(PathBuf::from("/usr/bin"));
        HostRepoTool::find_in(&dirs)
    }

    /// Find the binaries in these directories (first match wins).
    pub fn find_in(dirs: &[PathBuf]) -> Option<HostRepoTool> {
        let find = |name: &str| {
            dirs.iter()
                .filter(|d| d.is_absolute())
                .map(|d| d.join(name))
                .find(|p| is_executable(p))
        };
        Some(HostRepoTool {
            createrepo: find(Tool::Createrepo.name())?,
            mergerepo: find(Tool::Mergerepo.name()),
        })
    }

    /// Use these binaries.
    pub fn with_paths(createrepo: PathBuf, mergerepo: Option<PathBuf>) -> HostRepoTool {
        HostRepoTool {
            createrepo,
            mergerepo,
        }
    }

    fn path(&self, tool: Tool) -> Result<&Path, RepoError> {
        match tool {
            Tool::Createrepo => Ok(&self.createrepo),
            Tool::Mergerepo => self.mergerepo.as_deref().ok_or_else(|| {
                RepoError::Refuse(format!(
                    "mergerepo_c is not installed on this host (createrepo_c is {}); \
                     it is needed to merge external repos",
                    self.createrepo.display()
                ))
            }),
        }
    }
}

/// A regular file with an execute bit.
pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl RepoTool for HostRepoTool {
    fn program(&self, tool: Tool) -> Result<String, RepoError> {
        Ok(self.path(tool)?.display().to_string())
    }

    fn run<'a>(&'a self, cmd: &'a ToolCommand) -> BoxFuture<'a, Result<ToolStatus, RepoError>> {
        Box::pin(async move {
            let program = self.path(cmd.tool)?;
            let mut argv = vec![program.display().to_string()];
            argv.extend(cmd.args.iter().cloned());
            let mut log = tokio::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&cmd.log)
                .await
                .map_err(|e| RepoError::io("open log", &cmd.log, e))?;
            log.write_all(format!("$ {}\n", argv.join(" ")).as_bytes())
                .await
                .map_err(|e| RepoError::io("write", &cmd.log, e))?;
            log.flush()
                .await
                .map_err(|e| RepoError::io("write", &cmd.log, e))?;
            let log = log.into_std().await;
            let err_log = log
                .try_clone()
                .map_err(|e| RepoError::io("dup", &cmd.log, e))?;
            debug!(argv = ?argv, "running");
            let mut child = tokio::process::Command::new(program)
                .args(&cmd.args)
                .envs(cmd.env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .stdout(log)
                .stderr(err_log)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| RepoError::io("run", program, e))?;
            let status = child
                .wait()
                .await
                .map_err(|e| RepoError::io("wait for", program, e))?;
            Ok(ToolStatus::from_std(status))
        })
    }

    fn mergerepo_version(&self) -> BoxFuture<'_, Option<(u32, u32, u32)>> {
        Box::pin(async move {
            let program = self.mergerepo.as_ref()?;
            let out = tokio::process::Command::new(program)
                .arg("--version")
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .ok()?;
            if !out.status.success() {
                tracing::warn!("Unable to detect mergerepo_c version");
                return None;
            }
            let v = parse_mergerepo_version(&String::from_utf8_lossy(&out.stdout));
            if v.is_none() {
                tracing::warn!("Unable to parse mergerepo_c version");
            }
            v
        })
    }

    fn describe(&self) -> String {
        format!("host ({})", self.createrepo.display())
    }
}

/// The tool the repo tasks use on this host (`repo_tool`): with `auto`, the host's
/// binaries when `createrepo_c` is installed, else `container` (a
/// [`super::ContainerRepoTool`] of the default image, when the daemon's buildroots
/// opened). Without either the task is refused softly ([`RepoError::Refuse`]), so it
/// goes to another host of the channel.
pub fn select_tool(
    setting: RepoToolSetting,
    container: Option<&Arc<dyn RepoTool>>,
) -> Result<Arc<dyn RepoTool>, RepoError> {
    let host = || HostRepoTool::find().map(|t| Arc::new(t) as Arc<dyn RepoTool>);
    let no_containers = "containers are unavailable on this host (the buildroot layer did not \
                         open: see the daemon's log at start)";
    match setting {
        RepoToolSetting::Host => host().ok_or_else(|| {
            RepoError::Refuse(
                "createrepo_c is not installed on this host (searched PATH and /usr/bin) and \
                 repo_tool = host; install createrepo_c (Debian/Ubuntu: createrepo-c), set \
                 repo_tool = auto, or remove this host from the createrepo channel"
                    .into(),
            )
        }),
        RepoToolSetting::Container => container.cloned().ok_or_else(|| {
            RepoError::Refuse(format!("repo_tool = container, but {no_containers}"))
        }),
        RepoToolSetting::Auto => host().or_else(|| container.cloned()).ok_or_else(|| {
            RepoError::Refuse(format!(
                "createrepo_c is not installed on this host (searched PATH and /usr/bin) and \
                 {no_containers}; install createrepo_c (Debian/Ubuntu: createrepo-c) or remove \
                 this host from the createrepo channel"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mergerepo_versions() {
        assert_eq!(
            parse_mergerepo_version("Version: 0.17.3 (Features: DeltaRPM LegacyWeakdeps )\n"),
            Some((0, 17, 3))
        );
        assert_eq!(parse_mergerepo_version("Version: 1.2.3"), Some((1, 2, 3)));
        assert_eq!(
            parse_mergerepo_version("Version: 0.15.11"),
            Some((0, 15, 11))
        );
        assert_eq!(parse_mergerepo_version("version 1.2.3"), None);
        assert_eq!(parse_mergerepo_version("Version: 1.2"), None);
        assert_eq!(parse_mergerepo_version(""), None);
    }

    #[test]
    fn shell_cmd_wrapping_like_koji() {
        let cmd: Vec<String> = ["/usr/bin/createrepo_c", "--error-exit-val", "-vd", "-o"]
            .iter()
            .map(|s| s.to_string())
            .chain(std::iter::once("/x".repeat(40)))
            .chain(["-i".to_string(), "/p".to_string()])
            .collect();
        // expected strings from koji.util.format_shell_cmd
        let s = format_shell_cmd(&cmd);
        assert_eq!(
            s,
            format!(
                "/usr/bin/createrepo_c --error-exit-val -vd -o \\\n{} \\\n-i /p",
                "/x".repeat(40)
            )
        );
        // an over-long word stands alone on its line
        let long = vec!["a".to_string(), "b".repeat(100), "c".to_string()];
        assert_eq!(
            format_shell_cmd(&long),
            format!("a \\\n{} \\\nc", "b".repeat(100))
        );
        assert_eq!(
            ToolStatus::Exited(2).describe("x"),
            "x exited with status 2"
        );
        assert_eq!(
            ToolStatus::Signaled(9).describe("x"),
            "x was killed by signal 9"
        );
    }

    #[test]
    fn find_in_needs_createrepo() {
        let t = tempfile::tempdir().unwrap();
        assert!(HostRepoTool::find_in(&[t.path().to_owned()]).is_none());
        let p = t.path().join("createrepo_c");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        // not executable: not found
        assert!(HostRepoTool::find_in(&[t.path().to_owned()]).is_none());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tool = HostRepoTool::find_in(&[t.path().to_owned()]).unwrap();
        assert_eq!(
            tool.program(Tool::Createrepo).unwrap(),
            p.display().to_string()
        );
        let e = tool.program(Tool::Mergerepo).unwrap_err();
        assert!(matches!(e, RepoError::Refuse(_)), "{e}");
    }

    #[tokio::test]
    async fn runs_and_logs_like_log_output() {
        let t = tempfile::tempdir().unwrap();
        let script = t.path().join("createrepo_c");
        std::fs::write(
            &script,
            "#!/bin/sh\necho out \"$@\"\necho err >&2\nexit 3\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tool = HostRepoTool::with_paths(script.clone(), None);
        let log = t.path().join("createrepo.log");
        let cmd = ToolCommand {
            tool: Tool::Createrepo,
            args: vec!["-a".into(), "b c".into()],
            env: vec![],
            log: log.clone(),
            read_only: vec![],
            writable: vec![],
        };
        let st = tool.run(&cmd).await.unwrap();
        assert_eq!(st, ToolStatus::Exited(3));
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text,
            format!("$ {} -a b c\nout -a b c\nerr\n", script.display())
        );
    }

    #[tokio::test]
    async fn dropping_the_run_kills_the_program() {
        let t = tempfile::tempdir().unwrap();
        let script = t.path().join("createrepo_c");
        let pidfile = t.path().join("pid");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
                pidfile.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tool = HostRepoTool::with_paths(script, None);
        let cmd = ToolCommand {
            tool: Tool::Createrepo,
            args: vec![],
            env: vec![],
            log: t.path().join("log"),
            read_only: vec![],
            writable: vec![],
        };
        let mut run = tool.run(&cmd);
        // run until the program has started, then drop the future (a canceled task)
        let pid: i32 = loop {
            tokio::select! {
                r = &mut run => panic!("ended early: {r:?}"),
                _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            }
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break p;
            }
        };
        drop(run);
        let proc = PathBuf::from(format!("/proc/{pid}"));
        for _ in 0..500 {
            // gone, or a zombie not yet reaped by tokio's orphan reaper
            let state = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z ") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let state = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
        panic!("createrepo_c (pid {pid}) still runs after its task was dropped: {state}");
    }
}
