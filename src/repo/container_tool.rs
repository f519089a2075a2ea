//! [`ContainerRepoTool`]: `createrepo_c`/`mergerepo_c` from an image, for hosts of the
//! `createrepo` channel that do not have them installed.
//!
//! Each run is a fresh container of the image (the `[adjutant]` default image unless
//! configured otherwise) with every [`ToolCommand::read_only`] path bound read-only
//! and every [`ToolCommand::writable`] path bound read-write *at the same location*,
//! so the command line and the repodata (relative `toplink/packages/…` hrefs) are
//! exactly what the host's binaries would produce. `createrepo_c` runs without a
//! network; `mergerepo_c` gets the host's (external repos are usually http URLs). As
//! root, the writable paths are handed to the container's root (its mapped host id)
//! first, so that it can write there; the daemon, as root, still reads and removes
//! them afterwards.

use std::path::{Path, PathBuf};

use adjutant_runtime::container::{BindMount, ExecSpec, Network, ProcessSpec, Sink};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info_span, Instrument};

use super::tool::{parse_mergerepo_version, RepoTool, Tool, ToolCommand, ToolStatus};
use super::RepoError;
use crate::buildroot::Buildroots;
use crate::daemon::BoxFuture;

/// Where the programs are inside the image.
const BIN_DIR: &str = "/usr/bin";

/// Runs the repo programs in containers of an image (see the module docs).
#[derive(Debug, Clone)]
pub struct ContainerRepoTool {
    buildroots: Buildroots,
    image: String,
    arch: String,
}

impl ContainerRepoTool {
    /// Containers of `image` (for the host's arch) made by `buildroots`.
    pub fn new(buildroots: Buildroots, image: impl Into<String>) -> ContainerRepoTool {
        ContainerRepoTool {
            buildroots,
            image: image.into(),
            arch: std::env::consts::ARCH.to_owned(),
        }
    }

    fn program_path(tool: Tool) -> String {
        format!("{BIN_DIR}/{}", tool.name())
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> RepoError {
        RepoError::Generic(format!("{what} in a container of {}: {e}", self.image))
    }

    /// Run `spec` in a fresh container with `mounts`.
    async fn run_in_container(
        &self,
        spec: ExecSpec,
        mounts: Vec<BindMount>,
        logdir: &Path,
    ) -> Result<ToolStatus, RepoError> {
        let tc = self
            .buildroots
            .tool_container(&self.image, &self.arch, mounts, logdir)
            .await
            .map_err(|e| self.failed("starting", e))?;
        let result = tc.container().run(spec).await;
        tc.destroy().await;
        let st = result.map_err(|e| self.failed("running", e))?;
        Ok(match (st.code, st.signal) {
            (Some(c), _) => ToolStatus::Exited(c),
            (None, Some(s)) => ToolStatus::Signaled(s),
            (None, None) => ToolStatus::Exited(-1),
        })
    }
}

/// As root with a mapped range, give `dir` (recursively, links not followed) to the
/// container's root so that it can write there.
fn hand_to_container_root(buildroots: &Buildroots, dir: &Path) -> Result<(), RepoError> {
    let mapping = &buildroots.runtime().config().mapping;
    let (uid, gid) = (mapping.host_uid(0), mapping.host_gid(0));
    if !nix::unistd::geteuid().is_root() || uid == Some(0) {
        return Ok(());
    }
    let mut todo = vec![dir.to_owned()];
    while let Some(p) = todo.pop() {
        std::os::unix::fs::lchown(&p, uid, gid).map_err(|e| RepoError::io("chown", &p, e))?;
        let m = std::fs::symlink_metadata(&p).map_err(|e| RepoError::io("stat", &p, e))?;
        if m.is_dir() {
            let rd = std::fs::read_dir(&p).map_err(|e| RepoError::io("read", &p, e))?;
            todo.extend(rd.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}

/// Existing host directories named by `file://` URLs among `args` (`$arch` expanded
/// URLs are already expanded by the callers).
fn file_url_dirs(args: &[String]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = args
        .iter()
        .filter_map(|a| a.strip_prefix("file://"))
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .collect();
    v.sort();
    v.dedup();
    v
}

impl RepoTool for ContainerRepoTool {
    fn program(&self, tool: Tool) -> Result<String, RepoError> {
        Ok(Self::program_path(tool))
    }

    fn run<'a>(&'a self, cmd: &'a ToolCommand) -> BoxFuture<'a, Result<ToolStatus, RepoError>> {
        let span = info_span!("repo_tool", tool = cmd.tool.name(), image = %self.image);
        Box::pin(
            async move {
                let mut argv = vec![Self::program_path(cmd.tool)];
                argv.extend(cmd.args.iter().cloned());
                let mut log = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&cmd.log)
                    .await
                    .map_err(|e| RepoError::io("open log", &cmd.log, e))?;
                log.write_all(format!("$ {}\n", argv.join(" ")).as_bytes())
                    .await
                    .map_err(|e| RepoError::io("write", &cmd.log, e))?;
                log.flush()
                    .await
                    .map_err(|e| RepoError::io("write", &cmd.log, e))?;
                drop(log);
                let mut mounts = Vec::new();
                for p in &cmd.read_only {
                    mounts.push(BindMount::new(p.clone(), p.clone(), true));
                }
                for p in &cmd.writable {
                    let (b, p2) = (self.buildroots.clone(), p.clone());
                    tokio::task::spawn_blocking(move || hand_to_container_root(&b, &p2))
                        .await
                        .map_err(|e| self.failed("preparing", e))??;
                    mounts.push(BindMount::new(p.clone(), p.clone(), false));
                }
                // `file://` repos of mergerepo_c outside the bound paths, read-only at
                // the same place (so the URLs mean the same inside).
                for dir in file_url_dirs(&cmd.args) {
                    if !mounts.iter().any(|m| dir.starts_with(&m.dst)) {
                        mounts.push(BindMount::new(dir.clone(), dir, true));
                    }
                }
                let logdir = cmd
                    .log
                    .parent()
                    .map(|d| d.join(".repo-tool"))
                    .unwrap_or_else(|| PathBuf::from(".repo-tool"));
                let network = match cmd.tool {
                    Tool::Createrepo => Network::None,
                    Tool::Mergerepo => Network::Host,
                };
                debug!(argv = ?argv, "running in a container");
                let mut process = ProcessSpec::new(argv);
                process.env = cmd.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let mut spec = ExecSpec::new(process);
                spec.stdout = Sink::Append(cmd.log.clone());
                spec.stderr = Sink::Append(cmd.log.clone());
                spec.network = network;
                let st = self.run_in_container(spec, mounts, &logdir).await;
                let _ = std::fs::remove_dir_all(&logdir);
                st
            }
            .instrument(span),
        )
    }

    fn mergerepo_version(&self) -> BoxFuture<'_, Option<(u32, u32, u32)>> {
        Box::pin(async move {
            let logdir = std::env::temp_dir().join(format!(
                "koji-adjutant-mergerepo-version-{}",
                std::process::id()
            ));
            let (out, text) = Sink::capture();
            let mut spec = ExecSpec::new(ProcessSpec::new([
                Self::program_path(Tool::Mergerepo),
                "--version".into(),
            ]));
            spec.stdout = out;
            let st = self.run_in_container(spec, vec![], &logdir).await;
            let _ = std::fs::remove_dir_all(&logdir);
            match st {
                Ok(s) if s.success() => {
                    let v = parse_mergerepo_version(&text.text());
                    if v.is_none() {
                        tracing::warn!("Unable to parse mergerepo_c version");
                    }
                    v
                }
                _ => {
                    tracing::warn!("Unable to detect mergerepo_c version");
                    None
                }
            }
        })
    }

    fn describe(&self) -> String {
        format!("container {}", self.image)
    }
}
