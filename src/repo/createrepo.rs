//! The local part of kojid's `CreaterepoTask.create_local_repo`: one arch of a repo
//! skeleton turned into repodata with `createrepo_c`.
//!
//! ```text
//! createrepo_c --error-exit-val -vd -o <workdir>/repo [-i <arch>/pkglist] [-g groups/comps.xml]
//!              [--update [--skip-stat]]  <repos/<tag>/<id>/<arch> | <workdir>/repo when the pkglist is empty>
//! ```
//!
//! The pkglist holds `toplink/packages/<n>/<v>/<r>/<arch>/<nvra>.rpm` lines relative to
//! the arch directory, so the repodata's hrefs are relative too and the repo can be served
//! from `topurl`. In update mode the old repo's `<arch>/repodata` is copied into the
//! output first and `createrepo_c --update` reuses the entries of unchanged packages.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::layout::{copy_tree, list_files};
use super::tool::{format_shell_cmd, RepoTool, Tool, ToolCommand};
use super::RepoError;

/// What `EMPTY_REPO` says (kojid's text).
pub const EMPTY_REPO_TEXT: &str =
    "This repo is empty because its tag has no content for this arch\n";

/// One arch to run createrepo_c for.
#[derive(Debug, Clone)]
pub struct LocalRepo {
    /// `topdir` (the packages the pkglist names are under it, through `toplink`).
    pub topdir: PathBuf,
    /// `<topdir>/repos/<tag>/<repo_id>/<arch>`.
    pub repodir: PathBuf,
    /// `<topdir>/repos/<tag>/<repo_id>/groups/comps.xml` (used when it is a file).
    pub groupdata: PathBuf,
    /// `<workdir>/repo`: createrepo_c's output (`repodata/` inside).
    pub outdir: PathBuf,
    /// `<workdir>/createrepo.log`.
    pub log: PathBuf,
    /// Old repodata to update from (`<old repo>/<arch>/repodata`); only used when the
    /// pkglist is not empty, as kojid does.
    pub old_repodata: Option<PathBuf>,
    /// `createrepo_skip_stat`: add `--skip-stat` to an update.
    pub skip_stat: bool,
}

impl LocalRepo {
    /// `<outdir>/repodata`.
    pub fn datadir(&self) -> PathBuf {
        self.outdir.join("repodata")
    }

    /// `<repodir>/pkglist`.
    pub fn pkglist_path(&self) -> PathBuf {
        self.repodir.join("pkglist")
    }

    /// The pkglist, or None when it is empty (kojid: `os.path.getsize(pkglist) == 0`).
    /// A missing pkglist is an error.
    pub fn pkglist(&self) -> Result<Option<PathBuf>, RepoError> {
        let p = self.pkglist_path();
        let meta = std::fs::metadata(&p).map_err(|e| RepoError::io("stat", &p, e))?;
        Ok((meta.len() > 0).then_some(p))
    }

    /// The arguments of createrepo_c (after the program).
    pub fn args(&self, pkglist: Option<&Path>, update: bool) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--error-exit-val".into(),
            "-vd".into(),
            "-o".into(),
            self.outdir.display().to_string(),
        ];
        if let Some(p) = pkglist {
            a.push("-i".into());
            a.push(p.display().to_string());
        }
        if self.groupdata.is_file() {
            a.push("-g".into());
            a.push(self.groupdata.display().to_string());
        }
        if update {
            a.push("--update".into());
            if self.skip_stat {
                a.push("--skip-stat".into());
            }
        }
        a.push(match pkglist {
            None => self.outdir.display().to_string(),
            Some(_) => self.repodir.display().to_string(),
        });
        a
    }

    /// Seed the output with the old repodata for `--update`. False (with a warning) when
    /// the old repodata is missing, as kojid. The old repo's origins file is dropped
    /// (mergerepo_c rewrites it if there are external repos to merge), and so is an
    /// `EMPTY_REPO` marker, which a repo with packages must not carry.
    pub fn seed_update(&self, old: &Path) -> Result<bool, RepoError> {
        if !old.is_dir() {
            warn!(path = %old.display(), "old repodata is missing: {}", old.display());
            return Ok(false);
        }
        let datadir = self.datadir();
        copy_tree(old, &datadir)?;
        for f in list_files(&datadir)? {
            if is_pkgorigins(&f) || f == "EMPTY_REPO" {
                let p = datadir.join(&f);
                std::fs::remove_file(&p).map_err(|e| RepoError::io("remove", &p, e))?;
            }
        }
        Ok(true)
    }

    /// Create the output directory and, for an update, seed it with the old repodata.
    /// Returns the pkglist (None when empty) and whether this is an update.
    pub fn prepare(&self) -> Result<(Option<PathBuf>, bool), RepoError> {
        std::fs::create_dir_all(&self.outdir)
            .map_err(|e| RepoError::io("create directory", &self.outdir, e))?;
        let pkglist = self.pkglist()?;
        let update = match (&pkglist, &self.old_repodata) {
            (Some(_), Some(old)) => self.seed_update(old)?,
            _ => false,
        };
        Ok((pkglist, update))
    }

    /// Run createrepo_c. Returns whether the pkglist was empty (then there is nothing to
    /// update and the repo is empty unless external repos are merged in).
    pub async fn create(&self, tool: &dyn RepoTool) -> Result<bool, RepoError> {
        let this = self.clone();
        let (pkglist, update) = tokio::task::spawn_blocking(move || this.prepare())
            .await
            .map_err(|e| {
                RepoError::Invalid(format!("preparing {}: {e}", self.outdir.display()))
            })??;
        let args = self.args(pkglist.as_deref(), update);
        let cmd = ToolCommand {
            tool: Tool::Createrepo,
            args,
            env: vec![],
            log: self.log.clone(),
            read_only: vec![self.topdir.clone()],
            writable: vec![self.outdir.clone()],
        };
        info!(
            repodir = %self.repodir.display(),
            update,
            empty = pkglist.is_none(),
            "running createrepo_c"
        );
        let status = tool.run(&cmd).await?;
        if !status.success() {
            let mut argv = vec![tool.program(Tool::Createrepo)?];
            argv.extend(cmd.args);
            return Err(RepoError::Generic(format!(
                "failed to create repo: {}",
                status.describe(&format_shell_cmd(&argv))
            )));
        }
        Ok(pkglist.is_none())
    }
}

/// An origins file (`pkgorigins.gz`, or `<checksum>-pkgorigins.gz` as mergerepo_c names
/// it with unique metadata file names).
pub fn is_pkgorigins(name: &str) -> bool {
    name == "pkgorigins.gz" || name.ends_with("-pkgorigins.gz")
}

/// Write `repodata/EMPTY_REPO`.
pub fn write_empty_marker(datadir: &Path) -> Result<(), RepoError> {
    let p = datadir.join("EMPTY_REPO");
    std::fs::write(&p, EMPTY_REPO_TEXT).map_err(|e| RepoError::io("write", &p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(t: &Path) -> LocalRepo {
        LocalRepo {
            topdir: t.to_owned(),
            repodir: t.join("repos/tag/7/x86_64"),
            groupdata: t.join("repos/tag/7/groups/comps.xml"),
            outdir: t.join("work/repo"),
            log: t.join("work/createrepo.log"),
            old_repodata: None,
            skip_stat: true,
        }
    }

    #[test]
    fn command_lines_like_kojid() {
        let t = tempfile::tempdir().unwrap();
        let r = spec(t.path());
        let out = r.outdir.display().to_string();
        let rd = r.repodir.display().to_string();
        // empty pkglist, no comps: the output dir is also the input
        assert_eq!(
            r.args(None, false),
            vec!["--error-exit-val", "-vd", "-o", &out, &out]
        );
        std::fs::create_dir_all(r.groupdata.parent().unwrap()).unwrap();
        std::fs::write(&r.groupdata, "<comps/>").unwrap();
        let pl = r.pkglist_path();
        let g = r.groupdata.display().to_string();
        let pls = pl.display().to_string();
        assert_eq!(
            r.args(Some(&pl), true),
            vec![
                "--error-exit-val",
                "-vd",
                "-o",
                &out,
                "-i",
                &pls,
                "-g",
                &g,
                "--update",
                "--skip-stat",
                &rd
            ]
        );
        let r2 = LocalRepo {
            skip_stat: false,
            ..r.clone()
        };
        assert_eq!(
            r2.args(Some(&pl), true),
            vec![
                "--error-exit-val",
                "-vd",
                "-o",
                &out,
                "-i",
                &pls,
                "-g",
                &g,
                "--update",
                &rd
            ]
        );
    }

    #[test]
    fn pkglist_empty_missing_or_not() {
        let t = tempfile::tempdir().unwrap();
        let r = spec(t.path());
        assert!(r.pkglist().is_err(), "missing pkglist is an error");
        std::fs::create_dir_all(&r.repodir).unwrap();
        std::fs::write(r.pkglist_path(), "").unwrap();
        assert_eq!(r.pkglist().unwrap(), None);
        std::fs::write(
            r.pkglist_path(),
            "toplink/packages/a/1/1/noarch/a-1-1.noarch.rpm\n",
        )
        .unwrap();
        assert_eq!(r.pkglist().unwrap(), Some(r.pkglist_path()));
    }

    #[test]
    fn update_seed_drops_origins_and_empty_marker() {
        let t = tempfile::tempdir().unwrap();
        let r = spec(t.path());
        let old = t.path().join("old/x86_64/repodata");
        assert!(
            !r.seed_update(&old).unwrap(),
            "missing old repodata: no update"
        );
        std::fs::create_dir_all(&old).unwrap();
        for f in [
            "repomd.xml",
            "abc-primary.xml.gz",
            "pkgorigins.gz",
            "0123-pkgorigins.gz",
            "EMPTY_REPO",
        ] {
            std::fs::write(old.join(f), f).unwrap();
        }
        std::fs::create_dir_all(&r.outdir).unwrap();
        assert!(r.seed_update(&old).unwrap());
        assert_eq!(
            list_files(&r.datadir()).unwrap(),
            vec!["abc-primary.xml.gz", "repomd.xml"]
        );
        // the old repo is untouched
        assert_eq!(list_files(&old).unwrap().len(), 5);
    }
}
