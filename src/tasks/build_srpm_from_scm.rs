//! `buildSRPMFromSCM(url, build_tag, opts=None)` (weight 1.0): kojid's
//! `BuildSRPMFromSCMTask` (notes §5.3). The SCM URL is parsed and checked (`allowed_scms`,
//! and the hub's `build_from_scm` policy when `allowed_scms_use_policy`); a
//! `srpm-build` buildroot with network (`scm_credentials_dir` bound at `/credentials`);
//! the checkout on the host into the buildroot's SCM directory, logged to
//! `checkout.log` (uploaded while it runs); the spec found as kojid finds it (one
//! `*.spec`, else `SPECS/*.spec`, else the one named after the checkout directory) and
//! refused if it starts by setting Packager, Distribution or Vendor; `source_cmd` in
//! the buildroot; `rpmbuild -bs`. Result: `{srpm, logs, brootid, source: {url,
//! source}}` where `source` names the commit.

use std::path::{Path, PathBuf};

use crate::daemon::{
    BoxFuture, HostCheckContext, TaskContext, TaskFailure, TaskHandler, TaskParams,
};
use crate::hub::taskrelpath;
use crate::scm::{Scm, ScmError};
use crate::xmlrpc::Value;

use super::broot::{failure_message, srpm_buildroot, take_srpm, SharedFactory, StepStatus};
use super::common::check_build_tag_arch;

/// The `buildSRPMFromSCM` handler.
pub struct BuildSrpmFromScm {
    /// Makes the buildroots.
    pub factory: SharedFactory,
}

impl From<ScmError> for TaskFailure {
    fn from(e: ScmError) -> TaskFailure {
        match e {
            ScmError::Generic(m) => TaskFailure::generic(m),
            ScmError::Build(m) => TaskFailure::build(m),
        }
    }
}

/// kojid's `spec_sanity_checks`. kojid uses `re.match(…, re.M)`, which only looks at
/// the start of the spec, and so does this.
pub fn spec_sanity_checks(spec: &str) -> Result<(), TaskFailure> {
    for t in ["Packager", "Distribution", "Vendor"] {
        if spec.starts_with(&format!("{t}:")) {
            return Err(TaskFailure::build(format!(
                "{t} is not allowed to be set in spec file"
            )));
        }
    }
    for t in ["packager", "distribution", "vendor"] {
        if let Some(rest) = spec.strip_prefix("%define") {
            let trimmed = rest.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
            if trimmed.len() < rest.len() {
                if let Some(after) = trimmed.strip_prefix(t) {
                    if after.starts_with([' ', '\t', '\n', '\r', '\x0b', '\x0c']) {
                        return Err(TaskFailure::build(format!(
                            "{t} is not allowed to be defined in spec file"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

fn specs_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "spec")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Find the spec file in a checkout as kojid does.
pub fn find_spec(sourcedir: &Path, rpm_source_layout: bool) -> Result<PathBuf, TaskFailure> {
    let mut specs = specs_in(sourcedir);
    if specs.is_empty() && rpm_source_layout {
        specs = specs_in(&sourcedir.join("SPECS"));
    }
    match specs.len() {
        0 => Err(TaskFailure::build("No spec file found")),
        1 => Ok(specs.remove(0)),
        _ => {
            let base = sourcedir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for cand in [
                sourcedir.join(format!("{base}.spec")),
                sourcedir.join("SPECS").join(format!("{base}.spec")),
            ] {
                if specs.contains(&cand) {
                    return Ok(cand);
                }
            }
            let list: Vec<String> = specs.iter().map(|p| p.display().to_string()).collect();
            Err(TaskFailure::build(format!(
                "Multiple spec files found but none is matching SCM checkout dir name: {}",
                super::build_arch::py_list(&list)
            )))
        }
    }
}

impl TaskHandler for BuildSrpmFromScm {
    fn method(&self) -> &'static str {
        "buildSRPMFromSCM"
    }

    fn host_check<'a>(
        &'a self,
        ctx: &'a HostCheckContext,
        params: &'a TaskParams,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(check_build_tag_arch(ctx, params))
    }

    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        params: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = params.bind("buildSRPMFromSCM", &["url", "build_tag", "opts"])?;
            let url = b
                .require("url")?
                .as_str()
                .ok_or_else(|| TaskFailure::parameter("buildSRPMFromSCM(): url must be a string"))?
                .to_owned();
            let build_tag = b.require("build_tag")?.clone();
            let opts = b.get("opts").cloned().unwrap_or(Value::Nil);
            run(self, &ctx, &url, &build_tag, &opts).await
        })
    }
}

async fn run(
    me: &BuildSrpmFromScm,
    ctx: &TaskContext,
    url: &str,
    build_tag: &Value,
    opts: &Value,
) -> Result<Value, TaskFailure> {
    let k = &ctx.config.kojid;
    let s = &ctx.session;
    let mut scm = Scm::parse(
        url,
        k.allow_password_in_scm_url,
        ctx.config.adjutant.allow_file_scm,
    )?;
    if k.allowed_scms_use_config {
        scm.assert_allowed_by_config(&k.allowed_scms)?;
    }
    if k.allowed_scms_use_policy {
        let info = s
            .get_task_info(ctx.task_id, true)
            .await?
            .ok_or_else(|| TaskFailure::generic(format!("No such task: {}", ctx.task_id)))?;
        let channel = s
            .get_channel(info.get("channel_id").cloned().unwrap_or(Value::Nil))
            .await?;
        let mut data = scm.policy_data();
        data.insert(
            "user_id".into(),
            info.get("owner").cloned().unwrap_or(Value::Nil),
        );
        data.insert(
            "channel".into(),
            channel.get("name").cloned().unwrap_or(Value::Nil),
        );
        data.insert(
            "scratch".into(),
            opts.get("scratch").cloned().unwrap_or(Value::Nil),
        );
        let result = s.host_eval_policy("build_from_scm", data).await?;
        scm.apply_policy_result(&result)?;
    }
    let repo_id = opts
        .get("repo_id")
        .and_then(Value::as_i64)
        .filter(|r| *r != 0)
        .ok_or_else(|| TaskFailure::build("A repo id must be provided"))?;
    let binds = match &k.scm_credentials_dir {
        Some(d) if Path::new(d).is_dir() => vec![(PathBuf::from(d), "/credentials".to_owned())],
        _ => vec![],
    };
    let (mut hb, mut broot, logs, logdir) =
        srpm_buildroot(&me.factory, ctx, build_tag, repo_id, true, binds).await?;
    let checkout_log = ctx.work_path("checkout.log");
    let work = async {
        let scmdir = broot.scm_dir();
        std::fs::create_dir_all(&scmdir)
            .map_err(|e| TaskFailure::generic(format!("create {}: {e}", scmdir.display())))?;
        let stream = ctx.stream_log(&checkout_log, "checkout.log");
        let checkout = {
            let step = ctx.step("checkout");
            step.finish(scm.checkout(&scmdir, &checkout_log).await)
        };
        let synced = stream.finish().await;
        let sourcedir = checkout?;
        synced?;
        let (surl, source) = scm.get_source(&sourcedir).await?;
        broot.hand_over(&scmdir).await?;
        let spec = find_spec(&sourcedir, k.support_rpm_source_layout)?;
        let text = std::fs::read(&spec)
            .map_err(|e| TaskFailure::generic(format!("read {}: {e}", spec.display())))?;
        spec_sanity_checks(&String::from_utf8_lossy(&text))?;
        hb.building().await?;
        if let Some(cmd) = scm.source_cmd.as_deref().filter(|c| !c.is_empty()) {
            let step = ctx.step("sources");
            if let StepStatus::Failed { status, log } = broot.source_cmd(&sourcedir, cmd).await? {
                step.end("failed");
                return Err(TaskFailure::build(format!(
                    "error retrieving sources, {}",
                    failure_message(&status, &log, &logdir)
                )));
            }
            step.end("ok");
        }
        let alt = sourcedir.join("SOURCES");
        let sources = if k.support_rpm_source_layout && alt.is_dir() {
            alt
        } else {
            sourcedir.clone()
        };
        let step = ctx.step("build_srpm");
        if let StepStatus::Failed { status, log } = broot.build_srpm(&spec, &sources).await? {
            step.end("failed");
            return Err(TaskFailure::build(format!(
                "error building srpm, {}",
                failure_message(&status, &log, &logdir)
            )));
        }
        step.end("ok");
        let name = take_srpm(ctx, &broot.resultdir(), &sourcedir).await?;
        Ok((name, surl, source))
    }
    .await;
    broot.destroy().await;
    let names = logs.finish().await;
    let expired = hb.expire().await;
    let (name, surl, source) = work?;
    let names = names?;
    expired?;
    let up = taskrelpath(ctx.task_id);
    Ok(Value::struct_from([
        ("srpm", Value::from(format!("{up}/{name}"))),
        (
            "logs",
            Value::Array(
                names
                    .iter()
                    .map(|n| Value::from(format!("{up}/{n}")))
                    .collect(),
            ),
        ),
        ("brootid", Value::Int(hb.id)),
        (
            "source",
            Value::struct_from([("url", Value::from(surl)), ("source", Value::from(source))]),
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_checks_like_kojids_re_match() {
        assert!(
            spec_sanity_checks("Name: x\nVendor: me\n").is_ok(),
            "only the start counts"
        );
        assert_eq!(
            spec_sanity_checks("Vendor: me\nName: x\n").unwrap_err(),
            TaskFailure::build("Vendor is not allowed to be set in spec file")
        );
        assert_eq!(
            spec_sanity_checks("%define  packager me\n").unwrap_err(),
            TaskFailure::build("packager is not allowed to be defined in spec file")
        );
        assert!(spec_sanity_checks("%define packagerx 1\n").is_ok());
    }

    #[test]
    fn spec_search_like_kojid() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("foo");
        std::fs::create_dir_all(src.join("SPECS")).unwrap();
        assert_eq!(
            find_spec(&src, true).unwrap_err(),
            TaskFailure::build("No spec file found")
        );
        std::fs::write(src.join("SPECS/foo.spec"), "").unwrap();
        assert_eq!(find_spec(&src, true).unwrap(), src.join("SPECS/foo.spec"));
        assert!(find_spec(&src, false).is_err());
        std::fs::write(src.join("a.spec"), "").unwrap();
        std::fs::write(src.join("foo.spec"), "").unwrap();
        assert_eq!(find_spec(&src, true).unwrap(), src.join("foo.spec"));
        std::fs::remove_file(src.join("foo.spec")).unwrap();
        std::fs::write(src.join("b.spec"), "").unwrap();
        let e = find_spec(&src, true).unwrap_err();
        assert!(
            matches!(&e, TaskFailure::Fault(f) if f.string.starts_with("Multiple spec files found but none is matching SCM checkout dir name: ['")),
            "{e:?}"
        );
    }
}
