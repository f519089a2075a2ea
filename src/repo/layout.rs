//! Where repos live under `topdir` and what `host.repoInit` writes there (notes §4.2):
//!
//! ```text
//! <topdir>/repos/<tag>/<repo_id>/repo.json
//!                                groups/comps.xml
//!                                <arch>/{pkglist, blocklist, rpmlist.jsonl, toplink -> <topdir>}
//!                                <arch>/repodata/        (filled by host.repoDone)
//! ```
//!
//! Names that become path components (tag names, arches, repodata file names) come from
//! the hub or from the shared filesystem: [`check_component`] rejects anything that could
//! leave the directory it is joined to.

use std::path::{Path, PathBuf};

use super::RepoError;

/// `<topdir>/repos`: newRepo and createrepo refuse the task when it is not a directory
/// (a missing or wrong mount: another host may have it).
pub fn repos_dir(topdir: &Path) -> PathBuf {
    topdir.join("repos")
}

/// `koji.pathinfo.repo(repo_id, tag_name)`: `<topdir>/repos/<tag_name>/<repo_id>`.
pub fn repo_dir(topdir: &Path, repo_id: i64, tag_name: &str) -> Result<PathBuf, RepoError> {
    check_component("tag name", tag_name)?;
    Ok(repos_dir(topdir).join(tag_name).join(repo_id.to_string()))
}

/// A name that must be a single, plain path component: not empty, not `.` or `..`, no
/// `/` and no NUL.
pub fn check_component(what: &str, name: &str) -> Result<(), RepoError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(RepoError::Invalid(format!(
            "invalid {what} {name:?}: it must be a single path component"
        )));
    }
    Ok(())
}

/// The arches of a repo skeleton, as kojid finds them: entries of the repo directory,
/// other than `groups`, holding a regular file `pkglist`. Sorted (kojid takes directory
/// order, which the hub does not depend on).
pub fn repo_arches(repo_dir: &Path) -> Result<Vec<String>, RepoError> {
    let rd = std::fs::read_dir(repo_dir).map_err(|e| RepoError::io("list", repo_dir, e))?;
    let mut arches = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| RepoError::io("list", repo_dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name == "groups" {
            continue;
        }
        // os.path.isfile follows symlinks, as does metadata()
        if repo_dir.join(&name).join("pkglist").is_file() {
            arches.push(name);
        }
    }
    arches.sort();
    Ok(arches)
}

/// The regular files of a directory (not recursive), sorted by name.
pub fn list_files(dir: &Path) -> Result<Vec<String>, RepoError> {
    let rd = std::fs::read_dir(dir).map_err(|e| RepoError::io("list", dir, e))?;
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| RepoError::io("list", dir, e))?;
        let name = entry.file_name().into_string().map_err(|n| {
            RepoError::Invalid(format!(
                "file name {:?} in {} is not UTF-8",
                n,
                dir.display()
            ))
        })?;
        let ft = entry
            .file_type()
            .map_err(|e| RepoError::io("stat", entry.path(), e))?;
        if ft.is_file() {
            files.push(name);
        } else {
            return Err(RepoError::Invalid(format!(
                "{} is not a regular file; a repodata directory holds only files",
                entry.path().display()
            )));
        }
    }
    files.sort();
    Ok(files)
}

/// `shutil.copytree(src, dst)` for a repodata directory: `dst` must not exist; files are
/// copied (symlinks followed, as copytree does by default), subdirectories recursively.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), RepoError> {
    std::fs::create_dir(dst).map_err(|e| RepoError::io("create directory", dst, e))?;
    let rd = std::fs::read_dir(src).map_err(|e| RepoError::io("list", src, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| RepoError::io("list", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::metadata(&from).map_err(|e| RepoError::io("stat", &from, e))?;
        if meta.is_dir() {
            copy_tree(&from, &to)?;
        } else {
            std::fs::copy(&from, &to).map_err(|e| RepoError::io("copy", &from, e))?;
        }
    }
    Ok(())
}

/// Remove a directory tree; a missing one is fine.
pub fn remove_tree(dir: &Path) -> Result<(), RepoError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RepoError::io("remove", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_paths_like_koji_pathinfo() {
        let p = repo_dir(Path::new("/mnt/koji"), 42, "f40-build").unwrap();
        assert_eq!(p, Path::new("/mnt/koji/repos/f40-build/42"));
        for bad in ["", ".", "..", "a/b", "../x", "x\0"] {
            assert!(repo_dir(Path::new("/mnt/koji"), 1, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn arches_are_dirs_with_a_pkglist() {
        let t = tempfile::tempdir().unwrap();
        for d in ["x86_64", "aarch64", "groups", "src", "empty"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
        }
        for d in ["x86_64", "aarch64", "groups", "src"] {
            std::fs::write(t.path().join(d).join("pkglist"), "").unwrap();
        }
        std::fs::write(t.path().join("repo.json"), "{}").unwrap();
        // a pkglist that is a directory does not count
        std::fs::create_dir_all(t.path().join("ppc64le/pkglist")).unwrap();
        assert_eq!(
            repo_arches(t.path()).unwrap(),
            vec!["aarch64", "src", "x86_64"]
        );
    }

    #[test]
    fn copy_tree_and_list() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("repomd.xml"), "x").unwrap();
        std::fs::write(src.join("a-primary.xml.gz"), "y").unwrap();
        let dst = t.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert_eq!(
            list_files(&dst).unwrap(),
            vec!["a-primary.xml.gz", "repomd.xml"]
        );
        // the destination must not exist (copytree semantics)
        assert!(copy_tree(&src, &dst).is_err());
        std::fs::create_dir(dst.join("sub")).unwrap();
        let e = list_files(&dst).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        remove_tree(&dst).unwrap();
        remove_tree(&dst).unwrap();
        assert!(!dst.exists());
    }
}
