//! `build(src, target, opts=None)` (weight 0.2): kojid's `BuildTask` (notes §5.1), the
//! parent of an rpm build. It mostly waits:
//!
//! 1. the repo: `opts.repo_id` (READY or EXPIRED), else `RepoWatcher` (`repo.request`),
//!    else a `waitrepo` subtask;
//! 2. the target (`getBuildTarget`), or with `repo_id` a destination tag or none
//!    (skip-tag); the hub policies `build_from_srpm`, `build_from_repo_id`, `build_rpm`;
//! 3. the SRPM: a `buildSRPMFromSCM` subtask for an SCM URL, a `rebuildSRPM` subtask for
//!    an uploaded SRPM (tag extra `rebuild_srpm`, default on; scratch builds may say
//!    otherwise), or the upload as is; its header read from `<topurl>/work/…`;
//! 4. the package list check (`getPackageConfig`, not for scratch or skip-tag), the arch
//!    list (tag arches, package `extra_arches`, BuildArch/ExclusiveArch/ExcludeArch,
//!    `arch_override` for scratch), `host.initBuild` (not scratch);
//! 5. one `buildArch` subtask per arch (the first keeps the SRPM), waited for with
//!    failany unless `build_arch_can_fail` (or despite it with `fail_fast`);
//! 6. `host.moveBuildToScratch` or `host.completeBuild` with the brmap of real buildroot
//!    ids; on any error after initBuild, `host.failBuild`;
//! 7. unless scratch or skip-tag, a `tagBuild` subtask. The result is None.

use tracing::{info, warn};

use crate::daemon::{BoxFuture, TaskContext, TaskFailure, TaskHandler, TaskParams, WaitSpec};
use crate::scm::is_scm_url;
use crate::xmlrpc::{Struct, Value};

use super::common::{arch_list, choose_taskarch, local_path, SrpmInfo};
use super::repo_watcher::{MinEvent, RepoWatcher};

/// `koji.REPO_STATES`.
pub fn repo_state_name(state: i64) -> &'static str {
    match state {
        0 => "INIT",
        1 => "READY",
        2 => "EXPIRED",
        3 => "DELETED",
        4 => "PROBLEM",
        _ => "UNKNOWN",
    }
}

/// The `build` handler.
pub struct Build;

impl TaskHandler for Build {
    fn method(&self) -> &'static str {
        "build"
    }

    fn weight(&self) -> f64 {
        0.2
    }

    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        params: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = params.bind("build", &["src", "target", "opts"])?;
            let src = b.require("src")?.clone();
            let target = b.require("target")?.clone();
            let opts = match b.get("opts") {
                None | Some(Value::Nil) => Struct::new(),
                Some(Value::Struct(s)) => s.clone(),
                Some(other) => {
                    return Err(TaskFailure::parameter(format!(
                        "build(): opts must be a dict, not {other}"
                    )))
                }
            };
            BuildRun::new(ctx, opts).run(src, target).await
        })
    }
}

/// Wait for one subtask and return its result (`self.wait(task_id)[task_id]`).
pub async fn wait_one(ctx: &TaskContext, task_id: i64) -> Result<Value, TaskFailure> {
    let mut r = ctx
        .wait(WaitSpec {
            subtasks: Some(vec![task_id]),
            ..Default::default()
        })
        .await?;
    r.shift_remove(&task_id)
        .ok_or_else(|| TaskFailure::generic(format!("no result for subtask {task_id}")))
}

fn kw<const N: usize>(items: [(&str, Value); N]) -> Struct {
    items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

struct BuildRun {
    ctx: TaskContext,
    opts: Struct,
    event_id: Option<i64>,
    source: Option<Value>,
}

impl BuildRun {
    fn new(ctx: TaskContext, opts: Struct) -> BuildRun {
        BuildRun {
            ctx,
            opts,
            event_id: None,
            source: None,
        }
    }

    fn opt(&self, k: &str) -> Option<&Value> {
        self.opts.get(k).filter(|v| !v.is_nil())
    }

    fn flag(&self, k: &str) -> bool {
        self.opt(k).is_some_and(Value::truthy)
    }

    async fn build_config(&self, build_tag: &Value) -> Result<Value, TaskFailure> {
        self.ctx
            .session
            .get_build_config(build_tag.clone(), self.event_id)
            .await?
            .ok_or_else(|| TaskFailure::generic(format!("No such tagInfo: {build_tag}")))
    }

    async fn run(mut self, src: Value, target: Value) -> Result<Value, TaskFailure> {
        let s = self.ctx.session.clone();
        let scratch = self.flag("scratch");
        if self.flag("arch_override") && !scratch {
            return Err(TaskFailure::build(
                "arch_override is only allowed for scratch builds",
            ));
        }
        let mut repo_info: Option<Value> = None;
        if let Some(rid) = self.opt("repo_id").cloned() {
            let rid = rid
                .as_i64()
                .ok_or_else(|| TaskFailure::build(format!("No such repo: {rid}")))?;
            let info = s
                .repo_info(rid, false)
                .await?
                .ok_or_else(|| TaskFailure::build(format!("No such repo: {rid}")))?;
            let state = info.get("state").and_then(Value::as_i64).unwrap_or(-1);
            let name = repo_state_name(state);
            if name != "READY" && name != "EXPIRED" {
                return Err(TaskFailure::build(format!("Bad repo: {rid} ({name})")));
            }
            self.event_id = info.get("create_event").and_then(Value::as_i64);
            repo_info = Some(info);
        }
        if let Some(m) = self.opt("custom_user_metadata") {
            if m.as_struct().is_none() {
                return Err(TaskFailure::build(
                    "custom_user_metadata must be serializable to a JSON object",
                ));
            }
        }
        let task_info = s
            .get_task_info(self.ctx.task_id, false)
            .await?
            .ok_or_else(|| TaskFailure::generic(format!("No such task: {}", self.ctx.task_id)))?;
        let owner = task_info.get("owner").cloned().unwrap_or(Value::Nil);
        let target_info = match &target {
            Value::Nil => None,
            Value::String(t) if t.is_empty() => None,
            t => s.get_build_target(t.clone(), self.event_id).await?,
        };
        let (dest_tag, build_tag, dest_tag_name) = match &target_info {
            Some(ti) => {
                let bt = ti.get("build_tag").cloned().unwrap_or(Value::Nil);
                if let Some(r) = &repo_info {
                    if r.get("tag_id") != Some(&bt) {
                        return Err(TaskFailure::build(format!(
                            "Repo/Target mismatch: {}/{}",
                            r.get("tag_name")
                                .and_then(Value::as_str)
                                .unwrap_or_default(),
                            ti.get("build_tag_name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                        )));
                    }
                }
                (
                    ti.get("dest_tag").cloned().unwrap_or(Value::Nil),
                    bt,
                    ti.get("dest_tag_name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                )
            }
            None => {
                let Some(r) = &repo_info else {
                    return Err(TaskFailure::generic(format!(
                        "unknown build target: {}",
                        py_str(&target)
                    )));
                };
                let bt = r.get("tag_id").cloned().unwrap_or(Value::Nil);
                if target.is_nil() {
                    self.opts.insert("skip_tag".into(), Value::Bool(true));
                    let name = r
                        .get("tag_name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    (bt.clone(), bt, name)
                } else {
                    let mut k = Struct::new();
                    if let Some(e) = self.event_id {
                        k.insert("event".into(), Value::Int(e));
                    }
                    let t = s.get_tag(target.clone(), k).await?.ok_or_else(|| {
                        TaskFailure::generic(format!("neither tag nor target: {}", py_str(&target)))
                    })?;
                    (
                        t.get("id").cloned().unwrap_or(Value::Nil),
                        bt,
                        t.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    )
                }
            }
        };
        let skip_tag = self.flag("skip_tag");
        let src_str = src.as_str().map(str::to_owned);
        let from_scm = src_str.as_deref().is_some_and(is_scm_url);
        // policy checks
        let mut policy = kw([
            ("user_id", owner.clone()),
            ("source", src.clone()),
            ("task_id", Value::Int(self.ctx.task_id)),
            ("build_tag", build_tag.clone()),
            ("skip_tag", Value::Bool(skip_tag)),
            (
                "scratch",
                self.opt("scratch").cloned().unwrap_or(Value::Nil),
            ),
            ("draft", self.opt("draft").cloned().unwrap_or(Value::Nil)),
            ("from_scm", Value::Bool(from_scm)),
            (
                "repo_id",
                self.opt("repo_id").cloned().unwrap_or(Value::Nil),
            ),
        ]);
        if let Some(ti) = &target_info {
            policy.insert(
                "target".into(),
                ti.get("name").cloned().unwrap_or(Value::Nil),
            );
        }
        if !skip_tag {
            policy.insert("tag".into(), dest_tag.clone());
        }
        {
            let step = self.ctx.step("policy");
            if !from_scm && !scratch {
                s.host_assert_policy("build_from_srpm", policy.clone())
                    .await?;
            }
            if self.opt("repo_id").is_some() {
                s.host_assert_policy("build_from_repo_id", policy.clone())
                    .await?;
            }
            s.host_assert_policy("build_rpm", policy).await?;
            step.end("ok");
        }
        let repo_info = match repo_info {
            Some(r) => r,
            None => {
                let r = self.get_repo(&build_tag).await?;
                self.event_id = Some(s.get_last_event().await?);
                r
            }
        };
        let repo_id = repo_info
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| TaskFailure::generic(format!("repo without an id: {repo_info}")))?;
        let Some(src_str) = src_str else {
            return Err(TaskFailure::build(format!(
                "Invalid source specification: {src}"
            )));
        };
        let srpm = self.get_srpm(&src_str, &build_tag, repo_id).await?;
        self.ctx
            .registry
            .update_task(self.ctx.task_id, |t| t.srpm = Some(srpm.clone()));
        let h = self.read_srpm_header(&srpm).await?;
        let mut data = kw([
            ("name", Value::from(h.name.as_str())),
            ("version", Value::from(h.version.as_str())),
            ("release", Value::from(h.release.as_str())),
            ("epoch", h.epoch.map_or(Value::Nil, Value::Int)),
            ("task_id", Value::Int(self.ctx.task_id)),
        ]);
        let mut extra = Struct::new();
        if let Some(source) = &self.source {
            data.insert(
                "source".into(),
                source.get("source").cloned().unwrap_or(Value::Nil),
            );
            extra.insert(
                "source".into(),
                Value::struct_from([(
                    "original_url",
                    source.get("url").cloned().unwrap_or(Value::Nil),
                )]),
            );
        }
        if let Some(m) = self.opt("custom_user_metadata").filter(|m| m.truthy()) {
            extra.insert("custom_user_metadata".into(), m.clone());
        }
        if !extra.is_empty() {
            data.insert("extra".into(), Value::Struct(extra));
        }
        info!(package = h.name, "reading package config");
        let pkg_cfg = s
            .get_package_config(dest_tag.clone(), &h.name, self.event_id)
            .await?;
        let extra_arches = pkg_cfg
            .as_ref()
            .and_then(|p| p.get("extra_arches"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if !skip_tag && !scratch {
            match &pkg_cfg {
                None => {
                    return Err(TaskFailure::build(format!(
                        "package {} not in list for tag {dest_tag_name}",
                        h.name
                    )))
                }
                Some(p) if p.get("blocked").is_some_and(Value::truthy) => {
                    return Err(TaskFailure::build(format!(
                        "package {} is blocked for tag {dest_tag_name}",
                        h.name
                    )))
                }
                _ => {}
            }
        }
        let bcfg = self.build_config(&build_tag).await?;
        let arch_override = self
            .opt("arch_override")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let archlist = arch_list(
            &bcfg,
            &h,
            extra_arches.as_deref(),
            scratch,
            arch_override.as_deref(),
        )?;
        if let Some(d) = self.opt("draft").filter(|d| d.truthy()) {
            data.insert("draft".into(), d.clone());
        }
        let build_id = if scratch {
            None
        } else {
            Some(s.host_init_build(data).await?)
        };
        let failany = self.flag("fail_fast") || !self.ctx.config.kojid.build_arch_can_fail;
        let outcome = async {
            let (srpm, rpms, brmap, logs) = self
                .run_builds(&srpm, &h, &build_tag, &bcfg, &archlist, repo_id, failany)
                .await?;
            match build_id {
                None => {
                    s.host_move_build_to_scratch(self.ctx.task_id, &srpm, rpms, logs)
                        .await?
                }
                Some(id) => {
                    s.host_complete_build(self.ctx.task_id, id, &srpm, rpms, brmap, logs)
                        .await?;
                }
            }
            Ok::<(), TaskFailure>(())
        }
        .await;
        if let Err(e) = outcome {
            if let Some(id) = build_id {
                if !matches!(e, TaskFailure::Canceled | TaskFailure::Exit) {
                    if let Err(fe) = s.host_fail_build(self.ctx.task_id, id).await {
                        warn!(build = id, error = %fe, "failBuild");
                    }
                }
            }
            return Err(e);
        }
        if let Some(id) = build_id.filter(|_| !skip_tag) {
            let step = self.ctx.step("tag");
            let t = self
                .ctx
                .subtask(
                    "tagBuild",
                    vec![
                        dest_tag,
                        Value::Int(id),
                        Value::Bool(false),
                        Value::Nil,
                        Value::Bool(true),
                    ],
                    kw([
                        ("label", Value::from("tag")),
                        ("arch", Value::from("noarch")),
                    ]),
                )
                .await?;
            step.finish(wait_one(&self.ctx, t).await)?;
        }
        Ok(Value::Nil)
    }

    /// `BaseTaskHandler.getRepo`.
    async fn get_repo(&self, build_tag: &Value) -> Result<Value, TaskFailure> {
        let step = self.ctx.step("repo");
        let nvrs: Vec<String> = self
            .opt("wait_builds")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let min = if self.flag("wait_repo") {
            MinEvent::Last
        } else {
            MinEvent::None
        };
        let mut w = RepoWatcher::new(&self.ctx.session, build_tag.clone(), nvrs, min).await?;
        if let Some(r) = w.get_repo().await? {
            step.end("ok");
            return Ok(r);
        }
        let t = self
            .ctx
            .subtask("waitrepo", w.task_args(), Struct::new())
            .await?;
        step.finish(wait_one(&self.ctx, t).await)
    }

    /// `getSRPM`: the SRPM to build, relative to `work/`.
    async fn get_srpm(
        &mut self,
        src: &str,
        build_tag: &Value,
        repo_id: i64,
    ) -> Result<String, TaskFailure> {
        let method = if is_scm_url(src) {
            "buildSRPMFromSCM"
        } else {
            let cfg = self.build_config(build_tag).await?;
            let mut rebuild = cfg
                .get("extra")
                .and_then(|e| e.get("rebuild_srpm"))
                .is_none_or(Value::truthy);
            if self.flag("scratch") {
                if let Some(r) = self.opt("rebuild_srpm") {
                    rebuild = r.truthy();
                }
            }
            if !rebuild {
                return Ok(src.to_owned());
            }
            "rebuildSRPM"
        };
        let step = self.ctx.step("srpm");
        let cfg = self.build_config(build_tag).await?;
        let taskarch = choose_taskarch(
            "noarch",
            None,
            &cfg,
            &self.ctx.config.kojid.literal_task_arches,
        )?;
        let t = self
            .ctx
            .subtask(
                method,
                vec![
                    Value::from(src),
                    build_tag.clone(),
                    Value::struct_from([
                        ("repo_id", Value::Int(repo_id)),
                        (
                            "scratch",
                            self.opt("scratch").cloned().unwrap_or(Value::Nil),
                        ),
                    ]),
                ],
                kw([
                    ("label", Value::from("srpm")),
                    ("arch", Value::from(taskarch)),
                ]),
            )
            .await?;
        let result = wait_one(&self.ctx, t).await?;
        match result.get("source") {
            Some(s) => self.source = Some(s.clone()),
            None => warn!("subtask did not provide source data"),
        }
        step.finish(
            result
                .get("srpm")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    TaskFailure::build(format!("{method} result has no srpm: {result}"))
                }),
        )
    }

    /// `readSRPMHeader`.
    async fn read_srpm_header(&self, srpm: &str) -> Result<SrpmInfo, TaskFailure> {
        let path = local_path(&self.ctx.config, &self.ctx.workdir, &format!("work/{srpm}")).await?;
        SrpmInfo::read(&path, &format!("{srpm} is not a source package")).await
    }

    /// `runBuilds`: one buildArch per arch; the merged srpm, rpms, brmap and logs.
    #[allow(clippy::too_many_arguments)]
    async fn run_builds(
        &self,
        srpm: &str,
        h: &SrpmInfo,
        build_tag: &Value,
        bcfg: &Value,
        archlist: &[String],
        repo_id: i64,
        failany: bool,
    ) -> Result<(String, Vec<Value>, Struct, Struct), TaskFailure> {
        let step = self.ctx.step("buildArch");
        let mut subtasks: Vec<(String, i64)> = Vec::new();
        let mut keep_srpm = true;
        for arch in archlist {
            let taskarch = choose_taskarch(
                arch,
                Some(h),
                bcfg,
                &self.ctx.config.kojid.literal_task_arches,
            )?;
            let id = self
                .ctx
                .subtask(
                    "buildArch",
                    vec![
                        Value::from(srpm),
                        build_tag.clone(),
                        Value::from(arch.as_str()),
                        Value::Bool(keep_srpm),
                        Value::struct_from([("repo_id", Value::Int(repo_id))]),
                    ],
                    kw([
                        ("label", Value::from(arch.as_str())),
                        ("arch", Value::from(taskarch)),
                    ]),
                )
                .await?;
            subtasks.push((arch.clone(), id));
            keep_srpm = false;
        }
        let results = self
            .ctx
            .wait(WaitSpec {
                subtasks: Some(subtasks.iter().map(|(_, id)| *id).collect()),
                all: true,
                failany,
                ..Default::default()
            })
            .await?;
        let mut rpms: Vec<Value> = Vec::new();
        let mut brmap = Struct::new();
        let mut logs = Struct::new();
        let mut built_srpm: Option<String> = None;
        for (arch, id) in &subtasks {
            let r = results
                .get(id)
                .ok_or_else(|| TaskFailure::generic(format!("no result for subtask {id}")))?;
            let brootid = r.get("brootid").cloned().unwrap_or(Value::Nil);
            let strs = |k: &str| -> Vec<String> {
                r.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for f in strs("rpms") {
                brmap.insert(f.clone(), brootid.clone());
                rpms.push(Value::String(f));
            }
            let l = strs("logs");
            if !l.is_empty() {
                let entry = logs
                    .entry(arch.clone())
                    .or_insert_with(|| Value::Array(vec![]));
                if let Value::Array(a) = entry {
                    a.extend(l.into_iter().map(Value::String));
                }
            }
            if let Some(first) = strs("srpms").into_iter().next() {
                if built_srpm.is_some() {
                    return Err(TaskFailure::build(format!(
                        "multiple builds returned a srpm.  task {}",
                        self.ctx.task_id
                    )));
                }
                brmap.insert(first.clone(), brootid.clone());
                built_srpm = Some(first);
            }
        }
        let srpm = built_srpm.ok_or_else(|| TaskFailure::build("could not find a built srpm"))?;
        step.end("ok");
        Ok((srpm, rpms, brmap, logs))
    }
}

/// How Python prints a value in `%s`: strings bare, None as `None`.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Nil => "None".into(),
        other => other.to_string(),
    }
}
