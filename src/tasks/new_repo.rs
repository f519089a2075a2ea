//! `newRepo(tag, event=None, src=None, debuginfo=None, separate_src=None, opts=None)`
//! (weight 0.1): kojid's `NewRepoTask` (notes §5.7, §8.4). kojira files these in the
//! `createrepo` channel; without them no build finds a repo.
//!
//! 1. `getTag(tag, strict=True, event=event)`; the deprecated `src`/`debuginfo`/
//!    `separate_src` become `opts` (and cannot be combined with it);
//! 2. refuse softly when `<topdir>/repos` is not a directory (a mount problem);
//! 3. `host.repoInit(tag_id, opts=…, task_id=…[, event=…])` → `[repo_id, event_id]`; the
//!    hub writes the skeleton; arches = its subdirectories holding a `pkglist`;
//! 4. the old repo to update from (`createrepo_update`): the tag's own newest READY repo,
//!    else one of `extra['repo.oldrepo_hint']`'s tags, else the nearest parent's;
//! 5. with `copy_old_repodata`, arches whose old repodata is equivalent are copied and
//!    uploaded directly (see `crate::repo::clone`);
//! 6. one `createrepo [repo_id, arch, oldrepo]` subtask per other arch (label = arch,
//!    arch `noarch`), awaited with `wait(all=True, failany=True)`;
//! 7. `host.repoDone(repo_id, {arch: [uploadpath, files]}[, repo_json_updates])`;
//!    result `[repo_id, event_id]`.

use std::path::PathBuf;

use indexmap::IndexMap;
use tracing::{info, warn};

use crate::daemon::{BoxFuture, TaskContext, TaskFailure, TaskHandler, TaskParams, WaitSpec};
use crate::hub::HubSession;
use crate::repo::clone::{check_arch_repo, check_repo, copy_arch_repo};
use crate::repo::layout::{repo_arches, repo_dir, repos_dir};
use crate::repo::RepoError;
use crate::xmlrpc::{Struct, Value};

/// The `newRepo` handler.
pub struct NewRepo;

impl TaskHandler for NewRepo {
    fn method(&self) -> &'static str {
        "newRepo"
    }

    fn weight(&self) -> f64 {
        0.1
    }

    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        params: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(run(ctx, params))
    }
}

fn kw<const N: usize>(items: [(&str, Value); N]) -> Struct {
    items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn tag_fields(tinfo: &Value) -> Result<(i64, String), RepoError> {
    let id = tinfo
        .get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| RepoError::Invalid(format!("tag info without an id: {tinfo}")))?;
    let name = tinfo
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RepoError::Invalid(format!("tag info without a name: {tinfo}")))?
        .to_owned();
    Ok((id, name))
}

/// The old repo (a repo dict with `tag_id` set) and its directory.
type OldRepo = Option<(Value, PathBuf)>;

fn with_tag_id(mut repo: Value, tag_id: i64) -> Value {
    if let Value::Struct(s) = &mut repo {
        s.insert("tag_id".into(), Value::Int(tag_id));
    }
    repo
}

fn repo_id_of(repo: &Value) -> Result<i64, RepoError> {
    repo.get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| RepoError::Invalid(format!("repo without an id: {repo}")))
}

/// kojid `get_old_repo`.
async fn get_old_repo(
    s: &HubSession,
    topdir: &std::path::Path,
    tinfo: &Value,
    update: bool,
) -> Result<OldRepo, RepoError> {
    if !update {
        return Ok(None);
    }
    let (tag_id, tag_name) = tag_fields(tinfo)?;
    if let Some(repo) = s.get_repo(Value::Int(tag_id)).await? {
        let path = repo_dir(topdir, repo_id_of(&repo)?, &tag_name)?;
        return Ok(Some((with_tag_id(repo, tag_id), path)));
    }
    // a related tag's repo: the configured hints first (one tag or a list) …
    let hint = tinfo
        .get("extra")
        .and_then(|e| e.get("repo.oldrepo_hint"))
        .cloned();
    let hints: Vec<Value> = match hint {
        None => vec![],
        Some(Value::Array(a)) => a,
        Some(one) => vec![one],
    };
    for h in hints {
        let Some(reftag) = s
            .get_tag(h.clone(), kw([("strict", Value::Bool(false))]))
            .await?
        else {
            warn!("oldrepo_hint refers to invalid tag: {h}");
            continue;
        };
        let (ref_id, ref_name) = tag_fields(&reftag)?;
        if let Some(repo) = s.get_repo(Value::Int(ref_id)).await? {
            let path = repo_dir(topdir, repo_id_of(&repo)?, &ref_name)?;
            return Ok(Some((with_tag_id(repo, ref_id), path)));
        }
    }
    // … then the inheritance, nearest first
    let mut parents = s.get_full_inheritance(tag_id).await?;
    // a stable sort by depth, as Python's sorted()
    parents.sort_by_key(|l| {
        l.get("currdepth")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX)
    });
    for link in parents {
        let Some(parent_id) = link.get("parent_id").and_then(Value::as_i64) else {
            continue;
        };
        if let Some(repo) = s.get_repo(Value::Int(parent_id)).await? {
            let parent = s
                .get_tag(Value::Int(parent_id), Struct::new())
                .await?
                .ok_or_else(|| RepoError::Invalid(format!("No such tag: {parent_id}")))?;
            let (pid, pname) = tag_fields(&parent)?;
            let path = repo_dir(topdir, repo_id_of(&repo)?, &pname)?;
            return Ok(Some((with_tag_id(repo, pid), path)));
        }
    }
    Ok(None)
}

async fn run(ctx: TaskContext, params: TaskParams) -> Result<Value, TaskFailure> {
    let b = params.bind(
        "newRepo",
        &["tag", "event", "src", "debuginfo", "separate_src", "opts"],
    )?;
    let tag = b.require("tag")?.clone();
    let event = b.get("event").cloned().unwrap_or_default();
    let s = &ctx.session;
    let topdir = ctx.config.kojid.topdir.clone();

    let tinfo = s
        .get_tag(
            tag.clone(),
            kw([("strict", Value::Bool(true)), ("event", event.clone())]),
        )
        .await?
        .ok_or_else(|| TaskFailure::generic(format!("No such tagInfo: {tag}")))?;
    let (tag_id, tag_name) = tag_fields(&tinfo)?;

    // deprecated options
    let mut legacy = Struct::new();
    for k in ["src", "debuginfo", "separate_src"] {
        if let Some(v) = b.get(k).filter(|v| !v.is_nil()) {
            legacy.insert(k.to_owned(), Value::Bool(v.truthy()));
        }
    }
    let mut opts = b.get("opts").cloned().unwrap_or_default();
    if !legacy.is_empty() {
        if !opts.is_nil() {
            return Err(TaskFailure::parameter(
                "opts parameter cannot be combined with legacy options",
            ));
        }
        warn!(
            "The src, debuginfo, and separate_src parameters for newRepo tasks are deprecated. \
             Use the opts parameter."
        );
        opts = Value::Struct(legacy);
    }

    // check for fs access before calling repoInit: a missing mount is another host's job
    let top_repos = repos_dir(&topdir);
    if !top_repos.is_dir() {
        return Err(TaskFailure::Refuse(format!(
            "No access to repos dir {}",
            top_repos.display()
        )));
    }

    let step = ctx.step("repoInit");
    let (repo_id, event_id) = s
        .host_repo_init(
            tag_id,
            opts,
            ctx.task_id,
            (!event.is_nil()).then(|| event.clone()),
        )
        .await?;
    step.end("done");
    info!(repo_id, event_id, tag = tag_name, "repo initialized");

    let path = repo_dir(&topdir, repo_id, &tag_name)?;
    if !path.is_dir() {
        return Err(TaskFailure::generic(format!(
            "Repo directory missing: {}",
            path.display()
        )));
    }
    let arches = repo_arches(&path)?;

    let old = get_old_repo(s, &topdir, &tinfo, ctx.config.kojid.createrepo_update).await?;
    let clonable = match (&old, ctx.config.kojid.copy_old_repodata) {
        (Some((repo, old_path)), true) => {
            check_repo(s, old_path, &path, repo, tag_id, event_id).await?
        }
        _ => false,
    };

    let mut data = Struct::new();
    let mut cloned: Vec<String> = Vec::new();
    let mut subtasks: IndexMap<String, i64> = IndexMap::new();
    let oldrepo_arg = old.as_ref().map(|(r, _)| r.clone()).unwrap_or_default();
    for arch in &arches {
        if let (true, Some((repo, old_path))) = (clonable, &old) {
            if check_arch_repo(old_path, &path, arch) {
                let old_id = repo_id_of(repo)?;
                if let Some(r) =
                    copy_arch_repo(&ctx.uploader, old_path, old_id, repo_id, arch, &ctx.workdir)
                        .await
                {
                    info!(arch, old_id, "repodata copied from the old repo");
                    data.insert(arch.clone(), r);
                    cloned.push(arch.clone());
                    continue;
                }
            }
        }
        let mut opts = Struct::new();
        opts.insert("label".into(), Value::from(arch.as_str()));
        opts.insert("arch".into(), Value::from("noarch"));
        let id = ctx
            .subtask(
                "createrepo",
                vec![
                    Value::Int(repo_id),
                    Value::from(arch.as_str()),
                    oldrepo_arg.clone(),
                ],
                opts,
            )
            .await?;
        subtasks.insert(arch.clone(), id);
    }

    if !subtasks.is_empty() {
        let step = ctx.step("wait for createrepo");
        let results = ctx
            .wait(WaitSpec {
                subtasks: Some(subtasks.values().copied().collect()),
                all: true,
                failany: true,
                ..Default::default()
            })
            .await?;
        step.end("done");
        for (arch, id) in &subtasks {
            let r = results.get(id).cloned().ok_or_else(|| {
                TaskFailure::generic(format!("no result for createrepo subtask {id} ({arch})"))
            })?;
            data.insert(arch.clone(), r);
        }
    }

    let updates = match (&old, cloned.is_empty()) {
        (Some((repo, _)), false) => Some(kw([
            ("cloned_from_repo_id", Value::Int(repo_id_of(repo)?)),
            (
                "cloned_archs",
                Value::Array(cloned.into_iter().map(Value::String).collect()),
            ),
        ])),
        _ => None,
    };
    let step = ctx.step("repoDone");
    s.host_repo_done(repo_id, data, updates).await?;
    step.end("done");
    info!(repo_id, event_id, "repo done");
    Ok(Value::Array(vec![
        Value::Int(repo_id),
        Value::Int(event_id),
    ]))
}
