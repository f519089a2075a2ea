//! Koji repositories on the builder side: what kojid's `NewRepoTask` and
//! `CreaterepoTask` do around `createrepo_c` and `mergerepo_c` (notes §4.2, §5.7, §5.8).
//!
//! - [`layout`]: where a repo lives under `topdir` (`koji.pathinfo.repo`), the arches of
//!   a repo skeleton written by `host.repoInit`, and checks on names the hub sends;
//! - [`tool`]: the [`RepoTool`] seam that runs `createrepo_c`/`mergerepo_c` (on the host
//!   today; in a container once the runtime is in), with kojid's `log_output` semantics;
//! - [`createrepo`]: the `createrepo_c` command line, update mode from an old repo's
//!   repodata (dropping its pkgorigins), comps, `EMPTY_REPO`;
//! - [`merge`]: external repos merged with `mergerepo_c` in the tag's merge mode;
//! - [`clone`]: `copy_old_repodata`: is an old repo equivalent, and copying it;
//! - [`upload`]: uploading a repodata directory for `host.repoDone`;
//! - [`calls`]: typed wrappers for the hub calls these tasks make.
//!
//! The task handlers themselves are in `crate::tasks::{new_repo, createrepo}`.

pub mod calls;
pub mod clone;
pub mod container_tool;
pub mod createrepo;
pub mod layout;
pub mod merge;
pub mod tool;
pub mod upload;

use std::path::PathBuf;

pub use container_tool::ContainerRepoTool;
pub use tool::{select_tool, HostRepoTool, RepoTool, Tool, ToolCommand, ToolStatus};

use crate::daemon::TaskFailure;
use crate::hub::{HubError, UploadError};

/// Why a repo step failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `copy`, `create directory`, …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// This host cannot do the work (no createrepo_c and no container runtime, no
    /// `<topdir>/repos` mount): the task is refused softly so another host can take it
    /// (kojid's `RefuseTask`).
    #[error("{0}")]
    Refuse(String),
    /// kojid raises `GenericError` with this message (`failed to create repo: …`,
    /// `Repo 5 not in INIT state (got 1)`, …).
    #[error("{0}")]
    Generic(String),
    /// Something the hub sent or wrote cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// A hub call failed.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// An upload failed.
    #[error(transparent)]
    Upload(#[from] UploadError),
}

impl RepoError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RepoError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<RepoError> for TaskFailure {
    fn from(e: RepoError) -> TaskFailure {
        match e {
            RepoError::Hub(h) => h.into(),
            RepoError::Upload(u) => u.into(),
            RepoError::Refuse(msg) => TaskFailure::Refuse(msg),
            other => TaskFailure::generic(other.to_string()),
        }
    }
}
