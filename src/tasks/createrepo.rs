//! `createrepo(repo_id, arch, oldrepo)` (weight 1.5): kojid's `CreaterepoTask` (notes
//! §5.8, §8.4). One arch of a repo that `host.repoInit` laid out under `topdir`:
//!
//! 1. `repoInfo(repo_id, strict=True)` must be INIT;
//! 2. `<topdir>/repos/<tag>/<id>/<arch>` must exist (else a soft refusal when
//!    `<topdir>/repos` itself is missing: a mount problem another host may not have);
//! 3. createrepo_c into `<workdir>/repo`, updating from the old repo's repodata when
//!    there is one (`createrepo_update`), logged to `createrepo.log`;
//! 4. `getExternalRepoList(tag_id, event=create_event)`: merge with mergerepo_c
//!    (`mergerepos.log`), or mark an empty repo with `repodata/EMPTY_REPO`;
//! 5. `getTag(tag_id, event=create_event, strict=True)` (kojid: for plugin callbacks);
//! 6. upload every file of `repodata/`; result `["tasks/N/ID", [files]]`.

use std::sync::Arc;

use tracing::info;

use crate::daemon::{BoxFuture, TaskContext, TaskFailure, TaskHandler, TaskParams};
use crate::repo::createrepo::{write_empty_marker, LocalRepo};
use crate::repo::layout::{check_component, repo_dir, repos_dir};
use crate::repo::merge::{external_repos, Merge};
use crate::repo::upload::upload_repodata;
use crate::repo::{select_tool, RepoError, RepoTool};
use crate::xmlrpc::{Struct, Value};

/// `koji.REPO_STATES['INIT']`.
pub const REPO_INIT: i64 = 0;

/// The `createrepo` handler.
#[derive(Default)]
pub struct Createrepo {
    /// The container tool, when the daemon's buildroots opened (see
    /// [`crate::repo::select_tool`]).
    pub container: Option<Arc<dyn RepoTool>>,
}

impl TaskHandler for Createrepo {
    fn method(&self) -> &'static str {
        "createrepo"
    }

    fn weight(&self) -> f64 {
        1.5
    }

    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        params: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = params.bind("createrepo", &["repo_id", "arch", "oldrepo"])?;
            let repo_id = b.require("repo_id")?.as_i64().ok_or_else(|| {
                TaskFailure::parameter("createrepo(): repo_id must be an integer")
            })?;
            let arch = b
                .require("arch")?
                .as_str()
                .ok_or_else(|| TaskFailure::parameter("createrepo(): arch must be a string"))?
                .to_owned();
            let oldrepo = b.require("oldrepo")?.clone();
            let tool = select_tool(ctx.config.adjutant.repo_tool, self.container.as_ref())?;
            run(&ctx, tool, repo_id, &arch, &oldrepo).await
        })
    }
}

fn field<'v>(v: &'v Value, key: &str, what: &str) -> Result<&'v Value, RepoError> {
    v.get(key)
        .ok_or_else(|| RepoError::Invalid(format!("{what} has no {key:?}: {v}")))
}

async fn run(
    ctx: &TaskContext,
    tool: Arc<dyn RepoTool>,
    repo_id: i64,
    arch: &str,
    oldrepo: &Value,
) -> Result<Value, TaskFailure> {
    let s = &ctx.session;
    let topdir = ctx.config.kojid.topdir.clone();
    let rinfo = s
        .repo_info(repo_id, true)
        .await?
        .ok_or_else(|| RepoError::Invalid(format!("No such repo: {repo_id}")))?;
    let state = field(&rinfo, "state", "repoInfo")?;
    if state.as_i64() != Some(REPO_INIT) {
        return Err(TaskFailure::generic(format!(
            "Repo {repo_id} not in INIT state (got {state})"
        )));
    }
    let tag_name = field(&rinfo, "tag_name", "repoInfo")?
        .as_str()
        .ok_or_else(|| RepoError::Invalid(format!("repoInfo: tag_name is not a string: {rinfo}")))?
        .to_owned();
    let tag_id = field(&rinfo, "tag_id", "repoInfo")?.clone();
    let create_event = field(&rinfo, "create_event", "repoInfo")?.clone();
    check_component("arch", arch)?;
    let toprepodir = repo_dir(&topdir, repo_id, &tag_name)?;
    let repodir = toprepodir.join(arch);
    if !repodir.is_dir() {
        let top = repos_dir(&topdir);
        if !top.is_dir() {
            return Err(TaskFailure::Refuse(format!(
                "No access to repos dir {}",
                top.display()
            )));
        }
        return Err(TaskFailure::generic(format!(
            "Repo directory missing: {}",
            repodir.display()
        )));
    }
    let mut local = LocalRepo {
        topdir: topdir.clone(),
        repodir: repodir.clone(),
        groupdata: toprepodir.join("groups").join("comps.xml"),
        outdir: ctx.work_path("repo"),
        log: ctx.work_path("createrepo.log"),
        old_repodata: None,
        skip_stat: ctx.config.kojid.createrepo_skip_stat,
    };
    let has_packages = local.pkglist()?.is_some();
    if has_packages && oldrepo.truthy() && ctx.config.kojid.createrepo_update {
        // the old repo may belong to another tag (a parent, a hint): ask for its path
        let old_id = field(oldrepo, "id", "oldrepo")?
            .as_i64()
            .ok_or_else(|| RepoError::Invalid(format!("oldrepo id is not an int: {oldrepo}")))?;
        let old = s
            .repo_info(old_id, true)
            .await?
            .ok_or_else(|| RepoError::Invalid(format!("No such repo: {old_id}")))?;
        let old_tag = field(&old, "tag_name", "repoInfo")?
            .as_str()
            .ok_or_else(|| RepoError::Invalid(format!("repoInfo: bad tag_name: {old}")))?;
        local.old_repodata = Some(
            repo_dir(&topdir, old_id, old_tag)?
                .join(arch)
                .join("repodata"),
        );
    }

    let step = ctx.step("createrepo");
    let log = ctx.stream_log(local.log.clone(), "createrepo.log");
    let created = local.create(tool.as_ref()).await;
    let logged = log.finish().await;
    let empty = created?;
    logged?;
    step.end("done");

    let external = external_repos(
        &s.get_external_repo_list(tag_id.clone(), create_event.clone())
            .await?,
    )?;
    if !external.is_empty() {
        let step = ctx.step("mergerepos");
        let merge = Merge {
            topdir: topdir.clone(),
            workdir: ctx.workdir.clone(),
            outdir: local.outdir.clone(),
            repodir: repodir.clone(),
            groupdata: local.groupdata.clone(),
            repo_id,
            arch: arch.to_owned(),
            log: ctx.work_path("mergerepos.log"),
        };
        let log = ctx.stream_log(merge.log.clone(), "mergerepos.log");
        let merged = merge.run(tool.as_ref(), &external).await;
        let logged = log.finish().await;
        merged?;
        logged?;
        step.end("done");
    } else if empty {
        write_empty_marker(&local.datadir())?;
    }

    let mut kw = Struct::new();
    kw.insert("event".into(), create_event);
    kw.insert("strict".into(), Value::Bool(true));
    s.get_tag(tag_id, kw).await?;

    let step = ctx.step("upload");
    let result = upload_repodata(&ctx.uploader, &local.datadir()).await?;
    step.end("done");
    info!(repo_id, arch, "repodata uploaded");
    Ok(result)
}
