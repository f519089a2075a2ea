//! `copy_old_repodata` (kojid `NewRepoTask.check_repo`, `check_arch_repo`,
//! `copy_arch_repo`): when the previous repo is equivalent to the new one, its repodata
//! is copied and uploaded as is, with no createrepo subtask.
//!
//! Equivalent means: the old repo directory exists; its `repo.json` has the same
//! `with_debuginfo`/`with_src`/`with_separate_src` as the new one; `groups/comps.xml`
//! exists in both or neither and is identical; neither tag has external repos (at the
//! repos' events); and, per arch, `blocklist` and `pkglist` exist in both and are
//! identical.
//!
//! Two deliberate differences from kojid 1.35.3 (which has the same code at HEAD):
//! - kojid compares the old `repo.json` flags with the task's keyword arguments, which
//!   never carry those keys, so only repos made with all three options off are ever
//!   reused; here they are compared with the new repo's `repo.json`, as intended.
//! - kojid uploads every arch's copy into the same task directory, so with two or more
//!   arches the second arch's `repomd.xml` overwrites the first's and `host.repoDone`
//!   then fails ("uploaded file missing"). Here each arch goes to `tasks/N/ID/<arch>/`.

use std::io::Read;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::layout::{copy_tree, remove_tree};
use super::upload::upload_repodata;
use super::RepoError;
use crate::hub::{HubSession, Uploader};
use crate::xmlrpc::Value;

const FLAGS: [&str; 3] = ["with_debuginfo", "with_src", "with_separate_src"];

/// `filecmp.cmp(a, b, shallow=False)`: same bytes. Errors count as different.
pub fn same_contents(a: &Path, b: &Path) -> bool {
    fn inner(a: &Path, b: &Path) -> std::io::Result<bool> {
        let (ma, mb) = (std::fs::metadata(a)?, std::fs::metadata(b)?);
        if !ma.is_file() || !mb.is_file() || ma.len() != mb.len() {
            return Ok(false);
        }
        let mut fa = std::io::BufReader::new(std::fs::File::open(a)?);
        let mut fb = std::io::BufReader::new(std::fs::File::open(b)?);
        let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
        loop {
            let na = read_full(&mut fa, &mut ba)?;
            let nb = read_full(&mut fb, &mut bb)?;
            if na != nb || ba[..na] != bb[..nb] {
                return Ok(false);
            }
            if na == 0 {
                return Ok(true);
            }
        }
    }
    inner(a, b).unwrap_or(false)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn repo_json_flags(dir: &Path) -> Option<[bool; 3]> {
    let text = std::fs::read_to_string(dir.join("repo.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let flag = |k: &str| {
        v.get(k).is_some_and(|x| match x {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::Null => false,
            serde_json::Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            serde_json::Value::String(s) => !s.is_empty(),
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(o) => !o.is_empty(),
        })
    };
    Some(FLAGS.map(flag))
}

/// The local half of `check_repo`: the old repo exists, same repo.json flags, same comps.
pub fn repos_equivalent(old: &Path, new: &Path) -> bool {
    if !old.is_dir() {
        debug!(path = %old.display(), "old repo doesn't exist");
        return false;
    }
    let Some(old_flags) = repo_json_flags(old) else {
        debug!(path = %old.display(), "can't read the old repo.json");
        return false;
    };
    let Some(new_flags) = repo_json_flags(new) else {
        debug!(path = %new.display(), "can't read the new repo.json");
        return false;
    };
    if old_flags != new_flags {
        debug!("repo options differ");
        return false;
    }
    let (oc, nc) = (old.join("groups/comps.xml"), new.join("groups/comps.xml"));
    if oc.exists() != nc.exists() {
        debug!("comps exists only in one repo");
        return false;
    }
    if oc.exists() && !same_contents(&oc, &nc) {
        debug!("comps differs");
        return false;
    }
    true
}

/// `check_repo`: [`repos_equivalent`], and no external repos on either side (asked at
/// each repo's `create_event`).
pub async fn check_repo(
    session: &HubSession,
    old_path: &Path,
    new_path: &Path,
    old_repo: &Value,
    new_tag_id: i64,
    new_event: i64,
) -> Result<bool, RepoError> {
    let (o, n) = (old_path.to_owned(), new_path.to_owned());
    let local = tokio::task::spawn_blocking(move || repos_equivalent(&o, &n))
        .await
        .unwrap_or(false);
    if !local {
        return Ok(false);
    }
    let old_tag = old_repo.get("tag_id").cloned().unwrap_or_default();
    let old_event = old_repo.get("create_event").cloned().unwrap_or_default();
    if !session
        .get_external_repo_list(old_tag, old_event)
        .await?
        .is_empty()
    {
        debug!("old repo uses external repos");
        return Ok(false);
    }
    if !session
        .get_external_repo_list(Value::Int(new_tag_id), Value::Int(new_event))
        .await?
        .is_empty()
    {
        debug!("new repo uses external repos");
        return Ok(false);
    }
    debug!("repo test passed");
    Ok(true)
}

/// `check_arch_repo`: `blocklist` and `pkglist` exist in both and are identical.
pub fn check_arch_repo(old: &Path, new: &Path, arch: &str) -> bool {
    for f in ["blocklist", "pkglist"] {
        let (a, b) = (old.join(arch).join(f), new.join(arch).join(f));
        if !a.exists() || !b.exists() {
            debug!(file = f, arch, "missing in one of the repos");
            return false;
        }
        if !same_contents(&a, &b) {
            debug!(file = f, arch, "differs");
            return false;
        }
    }
    true
}

/// `copy_arch_repo`: copy `<old>/<arch>/repodata` to `<workdir>/<arch>/repodata` and
/// upload it into `<task dir>/<arch>`. None (with a warning, nothing left behind) when
/// that fails; the caller then runs createrepo for the arch.
pub async fn copy_arch_repo(
    uploader: &Uploader,
    old_path: &Path,
    old_id: i64,
    new_id: i64,
    arch: &str,
    workdir: &Path,
) -> Option<Value> {
    let src: PathBuf = old_path.join(arch).join("repodata");
    let dst: PathBuf = workdir.join(arch).join("repodata");
    let r: Result<Value, RepoError> = async {
        let (s, d) = (src.clone(), dst.clone());
        tokio::task::spawn_blocking(move || {
            if let Some(p) = d.parent() {
                std::fs::create_dir_all(p).map_err(|e| RepoError::io("create directory", p, e))?;
            }
            copy_tree(&s, &d)
        })
        .await
        .map_err(|e| RepoError::Invalid(e.to_string()))??;
        upload_repodata(&uploader.subdir(arch), &dst).await
    }
    .await;
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(arch, error = %e, "Copying repo {old_id} to {new_id} failed");
            if let Err(e) = remove_tree(&dst) {
                warn!(error = %e, "cleaning up the copy");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(dir: &Path, json: &str, comps: Option<&str>, pkglist: &str) {
        std::fs::create_dir_all(dir.join("groups")).unwrap();
        std::fs::create_dir_all(dir.join("x86_64")).unwrap();
        std::fs::write(dir.join("repo.json"), json).unwrap();
        if let Some(c) = comps {
            std::fs::write(dir.join("groups/comps.xml"), c).unwrap();
        }
        std::fs::write(dir.join("x86_64/pkglist"), pkglist).unwrap();
        std::fs::write(dir.join("x86_64/blocklist"), "").unwrap();
    }

    #[test]
    fn equivalence() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let off =
            r#"{"id": 1, "with_src": false, "with_debuginfo": false, "with_separate_src": false}"#;
        repo(&a, off, Some("<comps/>"), "p1\n");
        repo(
            &b,
            off.replace("\"id\": 1", "\"id\": 2").as_str(),
            Some("<comps/>"),
            "p1\n",
        );
        assert!(repos_equivalent(&a, &b));
        assert!(check_arch_repo(&a, &b, "x86_64"));
        assert!(!check_arch_repo(&a, &b, "aarch64"), "arch missing on both");
        std::fs::write(b.join("x86_64/pkglist"), "p2\n").unwrap();
        assert!(!check_arch_repo(&a, &b, "x86_64"));
        // same flags, both on: reusable (kojid would not reuse it; see the module docs)
        let on = r#"{"with_src": true, "with_debuginfo": false}"#;
        std::fs::write(a.join("repo.json"), on).unwrap();
        assert!(!repos_equivalent(&a, &b));
        std::fs::write(b.join("repo.json"), on).unwrap();
        assert!(repos_equivalent(&a, &b));
        std::fs::write(b.join("groups/comps.xml"), "<comps></comps>").unwrap();
        assert!(!repos_equivalent(&a, &b), "comps differ");
        std::fs::remove_file(b.join("groups/comps.xml")).unwrap();
        assert!(!repos_equivalent(&a, &b), "comps only in one");
        std::fs::remove_file(a.join("groups/comps.xml")).unwrap();
        assert!(repos_equivalent(&a, &b), "comps in neither");
        std::fs::write(a.join("repo.json"), "not json").unwrap();
        assert!(!repos_equivalent(&a, &b));
        assert!(!repos_equivalent(&t.path().join("nope"), &b));
    }

    #[test]
    fn contents_compare() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &big).unwrap();
        std::fs::write(&b, &big).unwrap();
        assert!(same_contents(&a, &b));
        let mut other = big.clone();
        other[150_000] ^= 1;
        std::fs::write(&b, &other).unwrap();
        assert!(!same_contents(&a, &b));
        assert!(!same_contents(&a, &t.path().join("missing")));
        assert!(
            !same_contents(t.path(), t.path()),
            "directories are not files"
        );
    }
}
