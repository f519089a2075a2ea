//! `buildArch(pkg, root, arch, keep_srpm, opts=None)` (weight 1.5, raised by the
//! package's average build time): kojid's `BuildArchTask` (notes §5.2, §8.3).
//!
//! `repoInfo`; the SRPM from `<topurl>/work/<pkg>` (a source package); the weight from
//! `getAverageBuildDuration(name, age=6)` (1.5 + min(4.5, avg/4800)); the buildroot arch
//! (`find_arch`; for noarch the task's own arch is preferred); the buildroot: hub record
//! INIT → `setBuildRootList` → BUILDING → `mock --rebuild` → `updateBuildRootList` →
//! EXPIRED (also on failure); the results: `*.src.rpm` → srpms, other `*.rpm` → rpms,
//! a `noarch_rpmdiff.json` of koji's kojihash for each noarch rpm; every rpm uploaded,
//! the srpm only with `keep_srpm` (exactly one, with packager, vendor and distribution
//! set). Result: `{rpms, srpms, logs, brootid}` with paths under `tasks/N/ID`.
//!
//! A failed build is kojid's `BuildError("error building package (arch A), mock exited
//! with status N; see build.log for more information")` followed by the last lines of
//! build.log.

use std::collections::BTreeMap;
use std::path::Path;

use tracing::{debug, info, warn};

use crate::daemon::{
    BoxFuture, HostCheckContext, TaskContext, TaskFailure, TaskHandler, TaskParams,
};
use crate::hub::{taskrelpath, HubError};
use crate::rpmfile::{kojihash, tag, RpmHeaders};
use crate::xmlrpc::{FaultKind, Value};

use super::broot::{
    failure_message, record_info, BuildrootSpec, Created, HubBuildroot, LogDir, SharedFactory,
    StepStatus,
};
use super::common::{check_host_arch, find_arch, local_path, read_headers};

/// The `buildArch` handler.
pub struct BuildArch {
    /// Makes the buildroots.
    pub factory: SharedFactory,
}

/// The base weight of buildArch.
pub const BUILD_ARCH_WEIGHT: f64 = 1.5;

/// kojid 1.35.3's `updateWeight`: the weight for an average build time, if any.
pub fn weight_for(avg: Option<f64>) -> Option<f64> {
    let avg = avg.filter(|a| *a != 0.0)?;
    if avg < 0.0 {
        return None;
    }
    Some(BUILD_ARCH_WEIGHT + (avg / 4800.0).min(4.5))
}

/// What a buildroot run left in its result directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResultFiles {
    /// `*.rpm` but not `*.src.rpm`.
    pub rpms: Vec<String>,
    /// `*.src.rpm`.
    pub srpms: Vec<String>,
    /// Neither a log nor an rpm.
    pub unexpected: Vec<String>,
}

/// Sort a result directory's files as kojid does.
pub fn scan_resultdir(dir: &Path) -> Result<ResultFiles, TaskFailure> {
    let mut r = ResultFiles::default();
    let rd = std::fs::read_dir(dir)
        .map_err(|e| TaskFailure::generic(format!("read {}: {e}", dir.display())))?;
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for f in names {
        if f.ends_with(".log") {
        } else if f.ends_with(".src.rpm") {
            r.srpms.push(f);
        } else if f.ends_with(".rpm") {
            r.rpms.push(f);
        } else {
            r.unexpected.push(f);
        }
    }
    Ok(r)
}

/// `noarch_rpmdiff.json` as koji writes it (`json.dump(indent=2, sort_keys=True)`).
pub fn rpmdiff_json(task_id: i64, hashes: &BTreeMap<String, String>) -> String {
    let mut s = format!("{{\n  \"{task_id}\": {{");
    for (i, (f, h)) in hashes.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "\n    {}: {}",
            serde_json::Value::from(f.as_str()),
            serde_json::Value::from(h.as_str())
        ));
    }
    s.push_str("\n  }\n}");
    s
}

/// `srpm_sanity_checks`: packager, vendor and distribution must be set.
pub fn srpm_sanity_checks(h: &RpmHeaders) -> Result<(), TaskFailure> {
    for (t, what) in [
        (tag::PACKAGER, "packager"),
        (tag::VENDOR, "vendor"),
        (tag::DISTRIBUTION, "distribution"),
    ] {
        if h.main.string(t).is_none_or(|v| v.is_empty()) {
            return Err(TaskFailure::build(format!(
                "The build system failed to set the {what} tag"
            )));
        }
    }
    Ok(())
}

impl TaskHandler for BuildArch {
    fn method(&self) -> &'static str {
        "buildArch"
    }

    fn weight(&self) -> f64 {
        BUILD_ARCH_WEIGHT
    }

    fn host_check<'a>(
        &'a self,
        ctx: &'a HostCheckContext,
        params: &'a TaskParams,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let b = params
                .bind("buildArch", &["pkg", "root", "arch", "keep_srpm", "opts"])
                .map_err(|e| format!("{e:?}"))?;
            let Some(root) = b.get("root") else {
                return Ok(true);
            };
            check_host_arch(&ctx.session, root, ctx.host.as_ref()).await
        })
    }

    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        params: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = params.bind("buildArch", &["pkg", "root", "arch", "keep_srpm", "opts"])?;
            let pkg = b
                .require("pkg")?
                .as_str()
                .ok_or_else(|| TaskFailure::parameter("buildArch(): pkg must be a string"))?
                .to_owned();
            let root = b.require("root")?.clone();
            let arch = b
                .require("arch")?
                .as_str()
                .ok_or_else(|| TaskFailure::parameter("buildArch(): arch must be a string"))?
                .to_owned();
            let keep_srpm = b.require("keep_srpm")?.truthy();
            let opts = b.get("opts").cloned().unwrap_or(Value::Nil);
            run(self, &ctx, &pkg, &root, &arch, keep_srpm, &opts).await
        })
    }
}

async fn update_weight(ctx: &TaskContext, name: &str) -> Result<(), TaskFailure> {
    let s = &ctx.session;
    let avg = match s.get_average_build_duration(name, Some(6)).await {
        Err(HubError::Fault { fault, .. }) if fault.kind() == FaultKind::Parameter => {
            s.get_average_build_duration(name, None).await?
        }
        r => r?,
    };
    if avg.is_some_and(|a| a < 0.0) {
        warn!(package = name, avg, "negative average build duration");
    }
    if let Some(w) = weight_for(avg) {
        s.host_set_task_weight(ctx.task_id, w).await?;
        ctx.registry.update_task(ctx.task_id, |t| t.weight = w);
    }
    Ok(())
}

async fn run(
    me: &BuildArch,
    ctx: &TaskContext,
    pkg: &str,
    root: &Value,
    arch: &str,
    keep_srpm: bool,
    opts: &Value,
) -> Result<Value, TaskFailure> {
    let s = &ctx.session;
    let repo_id = opts
        .get("repo_id")
        .and_then(Value::as_i64)
        .filter(|r| *r != 0)
        .ok_or_else(|| TaskFailure::build("A repo id must be provided"))?;
    let repo = s
        .repo_info(repo_id, true)
        .await?
        .ok_or_else(|| TaskFailure::generic(format!("No such repo: {repo_id}")))?;
    let event = repo.get("create_event").and_then(Value::as_i64);
    let srpm = {
        let step = ctx.step("download");
        step.finish(local_path(&ctx.config, &ctx.workdir, &format!("work/{pkg}")).await)?
    };
    if !srpm.exists() {
        return Err(TaskFailure::build(format!(
            "SRPM file missing: {}",
            srpm.display()
        )));
    }
    let h = read_headers(&srpm).await?;
    if !h.is_source() {
        return Err(TaskFailure::build("not a source package"));
    }
    let name = h.name();
    ctx.registry.update_task(ctx.task_id, |t| {
        t.srpm = Some(pkg.to_owned());
        t.tag = root
            .as_str()
            .map(str::to_owned)
            .or_else(|| root.as_i64().map(|i| i.to_string()));
    });
    update_weight(ctx, &name).await?;
    let preferred = if arch == "noarch" {
        s.get_task_info(ctx.task_id, false)
            .await?
            .and_then(|t| t.get("arch").and_then(Value::as_str).map(str::to_owned))
    } else {
        None
    };
    let host = s.host_get_host().await?;
    let cfg = s
        .get_build_config(super::common::tag_ref(root), event)
        .await?
        .ok_or_else(|| TaskFailure::generic(format!("No such tagInfo: {root}")))?;
    let br_arch = find_arch(arch, &host, &cfg, preferred.as_deref())?;
    let mut hb = HubBuildroot::new(ctx, root, &br_arch, repo_id).await?;
    let out = build(me, ctx, &mut hb, &srpm, arch, keep_srpm).await;
    // kojid: broot.expire() before returning, and on every mock failure
    let expired = hb.expire().await;
    let v = out?;
    expired?;
    Ok(v)
}

async fn build(
    me: &BuildArch,
    ctx: &TaskContext,
    hb: &mut HubBuildroot,
    srpm: &Path,
    arch: &str,
    keep_srpm: bool,
) -> Result<Value, TaskFailure> {
    let logdir = ctx.work_path("logs");
    std::fs::create_dir_all(&logdir)
        .map_err(|e| TaskFailure::generic(format!("create {}: {e}", logdir.display())))?;
    let logs = LogDir::start(ctx, logdir.clone());
    let spec = BuildrootSpec {
        task_id: ctx.task_id,
        brootid: hb.id,
        tag: hb.config.clone(),
        repo: hb.repo.clone(),
        br_arch: hb.br_arch.clone(),
        target_arch: hb.target_arch.clone(),
        install_group: "build".into(),
        network: false,
        bind_dirs: vec![],
        logdir: logdir.clone(),
        workdir: ctx.workdir.clone(),
        method: "buildArch".into(),
    };
    let init = ctx.step("buildroot");
    let broot = match me.factory.create(ctx, spec).await? {
        Created::Ready(b) => b,
        Created::InitFailed(st) => {
            init.end("failed");
            let _ = logs.finish().await;
            let msg = match st {
                StepStatus::Failed { status, log } => failure_message(&status, &log, &logdir),
                StepStatus::Ok => "mock exited with status 0".into(),
            };
            return Err(TaskFailure::of(
                FaultKind::Buildroot,
                format!("could not init mock buildroot, {msg}"),
            ));
        }
    };
    init.end("ok");
    record_info(ctx, &broot.info());
    let mut broot = broot;
    let r = in_buildroot(ctx, hb, broot.as_mut(), srpm, arch, keep_srpm, &logdir).await;
    broot.destroy().await;
    let names = logs.finish().await;
    let (rpms, srpms, extra_logs) = r?;
    let mut log_files = names?;
    log_files.extend(extra_logs);
    let up = taskrelpath(ctx.task_id);
    let paths = |v: &[String]| -> Value {
        Value::Array(v.iter().map(|f| Value::from(format!("{up}/{f}"))).collect())
    };
    Ok(Value::struct_from([
        ("rpms", paths(&rpms)),
        ("srpms", paths(&srpms)),
        ("logs", paths(&log_files)),
        ("brootid", Value::Int(hb.id)),
    ]))
}

type Outputs = (Vec<String>, Vec<String>, Vec<String>);

async fn in_buildroot(
    ctx: &TaskContext,
    hb: &HubBuildroot,
    broot: &mut dyn super::broot::Buildroot,
    srpm: &Path,
    arch: &str,
    keep_srpm: bool,
    logdir: &Path,
) -> Result<Outputs, TaskFailure> {
    hb.set_list(broot.package_list().await?).await?;
    hb.building().await?;
    let step = ctx.step("build");
    let st = broot.rebuild(srpm, Some(arch)).await?;
    hb.update_list(broot.package_list().await?).await?;
    if let StepStatus::Failed { status, log } = st {
        step.end("failed");
        return Err(TaskFailure::build(format!(
            "error building package (arch {arch}), {}",
            failure_message(&status, &log, logdir)
        )));
    }
    step.end("ok");
    let resultdir = broot.resultdir();
    let files = scan_resultdir(&resultdir)?;
    if !files.unexpected.is_empty() {
        debug!(unexpected = ?files.unexpected, "unexpected files in the result directory");
    }
    let up = ctx.step("upload");
    let mut extra_logs = Vec::new();
    let mut hashes = BTreeMap::new();
    for f in files.rpms.iter().filter(|f| f.ends_with(".noarch.rpm")) {
        let h = read_headers(&resultdir.join(f)).await?;
        hashes.insert(f.clone(), kojihash(&h));
    }
    if !hashes.is_empty() {
        let name = "noarch_rpmdiff.json";
        let p = ctx.work_path(name);
        std::fs::write(&p, rpmdiff_json(ctx.task_id, &hashes))
            .map_err(|e| TaskFailure::generic(format!("write {}: {e}", p.display())))?;
        ctx.uploader.upload_file(&p, None).await?;
        extra_logs.push(name.to_owned());
    }
    info!(rpms = ?files.rpms, srpms = ?files.srpms, "uploading results");
    for f in &files.rpms {
        ctx.uploader.upload_file(&resultdir.join(f), None).await?;
    }
    if keep_srpm {
        match files.srpms.len() {
            0 => {
                return Err(TaskFailure::build(format!(
                    "no srpm files found for task {}",
                    ctx.task_id
                )))
            }
            1 => {}
            _ => {
                return Err(TaskFailure::build(format!(
                    "multiple srpm files found for task {}: {}",
                    ctx.task_id,
                    py_list(&files.srpms)
                )))
            }
        }
        let p = resultdir.join(&files.srpms[0]);
        srpm_sanity_checks(&read_headers(&p).await?)?;
        ctx.uploader.upload_file(&p, None).await?;
    }
    let srpms = if keep_srpm { files.srpms } else { vec![] };
    up.end("ok");
    Ok((files.rpms, srpms, extra_logs))
}

/// Python's repr of a list of strings.
pub fn py_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_like_kojid_1_35_3() {
        assert_eq!(weight_for(None), None);
        assert_eq!(weight_for(Some(0.0)), None);
        assert_eq!(weight_for(Some(-5.0)), None);
        assert_eq!(weight_for(Some(4800.0)), Some(2.5));
        assert_eq!(weight_for(Some(1e9)), Some(6.0), "capped at +4.5");
    }

    #[test]
    fn rpmdiff_json_like_python() {
        let mut h = BTreeMap::new();
        h.insert("b-1-1.noarch.rpm".to_owned(), "bb".to_owned());
        h.insert("a-1-1.noarch.rpm".to_owned(), "aa".to_owned());
        // json.dumps({123: {...}}, indent=2, sort_keys=True)
        assert_eq!(
            rpmdiff_json(123, &h),
            "{\n  \"123\": {\n    \"a-1-1.noarch.rpm\": \"aa\",\n    \"b-1-1.noarch.rpm\": \"bb\"\n  }\n}"
        );
    }

    #[test]
    fn result_dir_sorting() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "build.log",
            "x-1-1.src.rpm",
            "x-1-1.x86_64.rpm",
            "x-debuginfo-1-1.x86_64.rpm",
            "core.1234",
        ] {
            std::fs::write(d.path().join(f), b"").unwrap();
        }
        let r = scan_resultdir(d.path()).unwrap();
        assert_eq!(r.srpms, ["x-1-1.src.rpm"]);
        assert_eq!(r.rpms, ["x-1-1.x86_64.rpm", "x-debuginfo-1-1.x86_64.rpm"]);
        assert_eq!(r.unexpected, ["core.1234"]);
    }
}
