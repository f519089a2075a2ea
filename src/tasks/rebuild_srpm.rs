//! `rebuildSRPM(srpm, build_tag, opts=None)` (weight 1.0): kojid's `RebuildSRPM` (notes
//! §5.4). Rebuilds an uploaded SRPM in a `srpm-build` buildroot (no network) so it gets
//! the buildroot's dist tag and rpm version: unpack, `rpmbuild -bs --nodeps`. Result:
//! `{srpm, logs, brootid, source: {source: <basename>, url: <basename>}}`.

use crate::daemon::{
    BoxFuture, HostCheckContext, TaskContext, TaskFailure, TaskHandler, TaskParams,
};
use crate::hub::taskrelpath;
use crate::xmlrpc::Value;

use super::broot::{failure_message, srpm_buildroot, take_srpm, SharedFactory, StepStatus};
use super::common::{check_build_tag_arch, local_path};

/// The `rebuildSRPM` handler.
pub struct RebuildSrpm {
    /// Makes the buildroots.
    pub factory: SharedFactory,
}

impl TaskHandler for RebuildSrpm {
    fn method(&self) -> &'static str {
        "rebuildSRPM"
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
            let b = params.bind("rebuildSRPM", &["srpm", "build_tag", "opts"])?;
            let srpm = b
                .require("srpm")?
                .as_str()
                .ok_or_else(|| TaskFailure::parameter("rebuildSRPM(): srpm must be a string"))?
                .to_owned();
            let build_tag = b.require("build_tag")?.clone();
            let opts = b.get("opts").cloned().unwrap_or(Value::Nil);
            let repo_id = opts
                .get("repo_id")
                .and_then(Value::as_i64)
                .filter(|r| *r != 0)
                .ok_or_else(|| TaskFailure::build("A repo id must be provided"))?;
            let (mut hb, mut broot, logs, logdir) =
                srpm_buildroot(&self.factory, &ctx, &build_tag, repo_id, false, vec![]).await?;
            let work = async {
                let fname = local_path(&ctx.config, &ctx.workdir, &format!("work/{srpm}")).await?;
                if !fname.exists() {
                    return Err(TaskFailure::build(format!(
                        "Input SRPM file missing: {}",
                        fname.display()
                    )));
                }
                hb.building().await?;
                let step = ctx.step("rebuild_srpm");
                let st = broot.rebuild_srpm(&fname).await?;
                if let StepStatus::Failed { status, log } = st {
                    step.end("failed");
                    return Err(TaskFailure::build(format!(
                        "error building srpm, {}",
                        failure_message(&status, &log, &logdir)
                    )));
                }
                step.end("ok");
                take_srpm(&ctx, &broot.resultdir(), &broot.resultdir()).await
            }
            .await;
            broot.destroy().await;
            let names = logs.finish().await;
            let expired = hb.expire().await;
            let name = work?;
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
                    Value::struct_from([
                        ("source", Value::from(name.as_str())),
                        ("url", Value::from(name.as_str())),
                    ]),
                ),
            ]))
        })
    }
}
