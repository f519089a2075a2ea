//! kojid's `CreaterepoTask.merge_repos`: a tag's external repos merged into the repo
//! createrepo_c just wrote, with `mergerepo_c`, in the merge mode the tag's external
//! repos ask for (`getExternalRepoList` entries' `merge_mode`):
//!
//! | mode | command |
//! |---|---|
//! | `koji` (default) | `mergerepo_c --koji -b <arch>/blocklist` (first repo wins per package name; blocked names dropped) |
//! | `simple` | `mergerepo_c --koji --simple -b <arch>/blocklist` (needs mergerepo_c ≥ 0.13.0) |
//! | `bare` | `mergerepo_c --pkgorigins --all` (every package of every repo; for modular repos) |
//!
//! then `-a <arch> -o <workdir>/repo [--arch-expand (≥ 0.15.11)] [-g comps.xml]
//! -r file://<workdir>/repo_<id>_premerge/ -r <url with $arch replaced>…`, with
//! `TMPDIR=<workdir>`, logged to `mergerepos.log`. Mixing modes is an error, as in kojid.

use std::path::PathBuf;

use tracing::info;

use super::tool::{format_shell_cmd, RepoTool, Tool, ToolCommand};
use super::RepoError;
use crate::xmlrpc::Value;

/// An external repo as `getExternalRepoList` lists it (the fields kojid uses).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalRepo {
    /// `external_repo_name` (for logs).
    pub name: String,
    /// `url`, possibly with `$arch`.
    pub url: String,
    /// `merge_mode`: `Some("koji")` when the key is absent, None when it is nil.
    pub merge_mode: Option<String>,
    /// `arches`: space-separated; empty or nil means every arch.
    pub arches: Option<String>,
}

impl ExternalRepo {
    /// From one `getExternalRepoList` entry.
    pub fn from_value(v: &Value) -> Result<ExternalRepo, RepoError> {
        let url = v
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| RepoError::Invalid(format!("external repo without a url: {v}")))?
            .to_owned();
        let merge_mode = match v.get("merge_mode") {
            None => Some("koji".to_owned()),
            Some(Value::Nil) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        Ok(ExternalRepo {
            name: v
                .get("external_repo_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            url,
            merge_mode,
            arches: v.get("arches").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Whether this repo is merged for `arch` (kojid: skipped when `arches` is set and
    /// does not list the arch).
    pub fn applies_to(&self, arch: &str) -> bool {
        match self.arches.as_deref() {
            Some(a) if !a.is_empty() => a.split_whitespace().any(|x| x == arch),
            _ => true,
        }
    }

    /// The URL for `arch` (`$arch` replaced).
    pub fn url_for(&self, arch: &str) -> String {
        self.url.replace("$arch", arch)
    }
}

/// The merge mode of a set of external repos (the one mode they share).
pub fn merge_mode(repos: &[ExternalRepo]) -> Result<Option<String>, RepoError> {
    let mut modes: Vec<&Option<String>> = Vec::new();
    for r in repos {
        if !modes.contains(&&r.merge_mode) {
            modes.push(&r.merge_mode);
        }
    }
    match modes.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(RepoError::Invalid("no external repos to merge".into())),
        many => {
            // Python: 'Found multiple merge modes for external repos: %s\n' % d.keys()
            let keys: Vec<String> = many
                .iter()
                .map(|m| match m {
                    Some(s) => format!("'{s}'"),
                    None => "None".to_owned(),
                })
                .collect();
            Err(RepoError::Generic(format!(
                "Found multiple merge modes for external repos: dict_keys([{}])\n",
                keys.join(", ")
            )))
        }
    }
}

/// One arch's merge.
#[derive(Debug, Clone)]
pub struct Merge {
    /// `topdir` (read by mergerepo_c through the blocklist and comps).
    pub topdir: PathBuf,
    /// The task workdir (`TMPDIR`, and where the premerge repo goes).
    pub workdir: PathBuf,
    /// `<workdir>/repo`: createrepo_c's output, which becomes the premerge repo.
    pub outdir: PathBuf,
    /// `<topdir>/repos/<tag>/<repo_id>/<arch>` (its `blocklist`).
    pub repodir: PathBuf,
    /// `groups/comps.xml` (used when it is a file).
    pub groupdata: PathBuf,
    /// The repo id (names the premerge dir).
    pub repo_id: i64,
    /// The arch.
    pub arch: String,
    /// `<workdir>/mergerepos.log`.
    pub log: PathBuf,
}

impl Merge {
    /// `<workdir>/repo_<id>_premerge`.
    pub fn premerge_dir(&self) -> PathBuf {
        self.workdir.join(format!("repo_{}_premerge", self.repo_id))
    }

    /// The repo URLs, local premerge repo first.
    pub fn repo_urls(&self, external: &[ExternalRepo]) -> Vec<String> {
        let mut urls = vec![format!("file://{}/", self.premerge_dir().display())];
        for r in external {
            if !r.applies_to(&self.arch) {
                info!(
                    repo = r.name,
                    arch = self.arch,
                    "external repo skipped for this arch"
                );
                continue;
            }
            urls.push(r.url_for(&self.arch));
        }
        urls
    }

    /// The arguments of mergerepo_c (after the program).
    pub fn args(
        &self,
        mode: Option<&str>,
        version: Option<(u32, u32, u32)>,
        external: &[ExternalRepo],
    ) -> Result<Vec<String>, RepoError> {
        let mut a: Vec<String> = match mode {
            Some("simple") => {
                if version.is_some_and(|v| v >= (0, 13, 0)) {
                    vec!["--koji".into(), "--simple".into()]
                } else {
                    let v = match version {
                        Some((a, b, c)) => format!("{a}.{b}.{c}"),
                        None => "None".into(),
                    };
                    return Err(RepoError::Generic(format!(
                        "mergerepo_c is not installed or has low version: {v} (0.13.0 needed for --simple)"
                    )));
                }
            }
            Some("bare") => vec!["--pkgorigins".into(), "--all".into()],
            _ => vec!["--koji".into()],
        };
        if mode != Some("bare") {
            a.push("-b".into());
            a.push(self.repodir.join("blocklist").display().to_string());
        }
        a.extend([
            "-a".into(),
            self.arch.clone(),
            "-o".into(),
            self.outdir.display().to_string(),
        ]);
        if version.is_some_and(|v| v >= (0, 15, 11)) {
            a.push("--arch-expand".into());
        }
        if self.groupdata.is_file() {
            a.push("-g".into());
            a.push(self.groupdata.display().to_string());
        }
        for url in self.repo_urls(external) {
            a.push("-r".into());
            a.push(url);
        }
        Ok(a)
    }

    /// Move createrepo_c's output aside and merge it with the external repos into a
    /// fresh output directory.
    pub async fn run(
        &self,
        tool: &dyn RepoTool,
        external: &[ExternalRepo],
    ) -> Result<(), RepoError> {
        let mode = merge_mode(external)?;
        let premerge = self.premerge_dir();
        std::fs::rename(&self.outdir, &premerge)
            .map_err(|e| RepoError::io("rename", &self.outdir, e))?;
        std::fs::create_dir_all(&self.outdir)
            .map_err(|e| RepoError::io("create directory", &self.outdir, e))?;
        let version = tool.mergerepo_version().await;
        let args = self.args(mode.as_deref(), version, external)?;
        let cmd = ToolCommand {
            tool: Tool::Mergerepo,
            args,
            env: vec![("TMPDIR".into(), self.workdir.display().to_string())],
            log: self.log.clone(),
            read_only: vec![self.topdir.clone()],
            writable: vec![self.workdir.clone()],
        };
        info!(
            arch = self.arch,
            mode = mode.as_deref().unwrap_or("None"),
            repos = external.len(),
            "merging external repos"
        );
        let status = tool.run(&cmd).await?;
        if !status.success() {
            let mut argv = vec![tool.program(Tool::Mergerepo)?];
            argv.extend(cmd.args);
            return Err(RepoError::Generic(format!(
                "failed to merge repos: {}",
                status.describe(&format_shell_cmd(&argv))
            )));
        }
        Ok(())
    }
}

/// The external repos of a `getExternalRepoList` answer.
pub fn external_repos(list: &[Value]) -> Result<Vec<ExternalRepo>, RepoError> {
    list.iter().map(ExternalRepo::from_value).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn erepo(url: &str, mode: Option<&str>, arches: Option<&str>) -> ExternalRepo {
        ExternalRepo {
            name: "ext".into(),
            url: url.into(),
            merge_mode: mode.map(str::to_owned),
            arches: arches.map(str::to_owned),
        }
    }

    fn merge(t: &Path) -> Merge {
        Merge {
            topdir: t.to_owned(),
            workdir: t.join("w"),
            outdir: t.join("w/repo"),
            repodir: t.join("repos/tag/3/x86_64"),
            groupdata: t.join("repos/tag/3/groups/comps.xml"),
            repo_id: 3,
            arch: "x86_64".into(),
            log: t.join("w/mergerepos.log"),
        }
    }

    #[test]
    fn entries_from_the_hub() {
        let v = Value::struct_from([
            ("external_repo_id", Value::Int(1)),
            ("external_repo_name", Value::from("fedora")),
            ("url", Value::from("https://x/$arch/os/")),
            ("merge_mode", Value::from("bare")),
            ("arches", Value::Nil),
        ]);
        let r = ExternalRepo::from_value(&v).unwrap();
        assert_eq!(r.merge_mode.as_deref(), Some("bare"));
        assert!(r.applies_to("s390x"));
        assert_eq!(r.url_for("aarch64"), "https://x/aarch64/os/");
        let no_mode = Value::struct_from([("url", Value::from("u"))]);
        assert_eq!(
            ExternalRepo::from_value(&no_mode)
                .unwrap()
                .merge_mode
                .as_deref(),
            Some("koji")
        );
        let nil_mode = Value::struct_from([("url", Value::from("u")), ("merge_mode", Value::Nil)]);
        assert_eq!(
            ExternalRepo::from_value(&nil_mode).unwrap().merge_mode,
            None
        );
        assert!(ExternalRepo::from_value(&Value::new_struct()).is_err());
        let r = erepo("u", Some("koji"), Some("x86_64 i686"));
        assert!(r.applies_to("i686") && !r.applies_to("aarch64"));
        assert!(erepo("u", None, Some("")).applies_to("ppc64le"));
    }

    #[test]
    fn one_mode_or_an_error() {
        let a = erepo("a", Some("koji"), None);
        let b = erepo("b", Some("bare"), None);
        assert_eq!(
            merge_mode(&[a.clone(), a.clone()]).unwrap().as_deref(),
            Some("koji")
        );
        let e = merge_mode(&[a.clone(), b, erepo("c", None, None)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Found multiple merge modes for external repos: dict_keys(['koji', 'bare', None])\n"
        );
    }

    #[test]
    fn command_lines_per_mode() {
        let t = tempfile::tempdir().unwrap();
        let m = merge(t.path());
        let ext = vec![
            erepo("http://e/$arch/", Some("koji"), None),
            erepo("http://skip/", Some("koji"), Some("aarch64")),
        ];
        let bl = m.repodir.join("blocklist").display().to_string();
        let out = m.outdir.display().to_string();
        let pre = format!("file://{}/", m.premerge_dir().display());
        assert!(pre.ends_with("/w/repo_3_premerge/"));
        let koji = m.args(Some("koji"), Some((0, 17, 3)), &ext).unwrap();
        assert_eq!(
            koji,
            vec![
                "--koji",
                "-b",
                &bl,
                "-a",
                "x86_64",
                "-o",
                &out,
                "--arch-expand",
                "-r",
                &pre,
                "-r",
                "http://e/x86_64/"
            ]
        );
        // an unknown mode merges like koji; old mergerepo_c gets no --arch-expand
        let other = m.args(Some("weird"), Some((0, 15, 10)), &ext).unwrap();
        assert_eq!(other[..2], ["--koji", "-b"]);
        assert!(!other.contains(&"--arch-expand".to_string()));
        let simple = m.args(Some("simple"), Some((0, 13, 0)), &ext).unwrap();
        assert_eq!(simple[..3], ["--koji", "--simple", "-b"]);
        let e = m.args(Some("simple"), Some((0, 12, 9)), &ext).unwrap_err();
        assert_eq!(
            e.to_string(),
            "mergerepo_c is not installed or has low version: 0.12.9 (0.13.0 needed for --simple)"
        );
        let e = m.args(Some("simple"), None, &ext).unwrap_err();
        assert!(e.to_string().contains("low version: None"), "{e}");
        std::fs::create_dir_all(m.groupdata.parent().unwrap()).unwrap();
        std::fs::write(&m.groupdata, "<comps/>").unwrap();
        let bare = m.args(Some("bare"), None, &ext).unwrap();
        let g = m.groupdata.display().to_string();
        assert_eq!(
            bare,
            vec![
                "--pkgorigins",
                "--all",
                "-a",
                "x86_64",
                "-o",
                &out,
                "-g",
                &g,
                "-r",
                &pre,
                "-r",
                "http://e/x86_64/"
            ]
        );
    }
}
