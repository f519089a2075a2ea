//! `tagBuild(tag_id, build_id, force=False, fromtag=None, ignore_success=False)`:
//! kojid's `TagBuildTask` (notes §5.5). Tags the build as the task's owner through
//! `host.tagBuild` (the hub checks the `tag` policy and the package list), then asks the
//! hub for a tag notification — also when tagging failed, with the error, before the
//! task fails with it.

use crate::daemon::{BoxFuture, TaskContext, TaskFailure, TaskHandler, TaskParams};
use crate::xmlrpc::{Struct, Value};

/// The `tagBuild` handler.
pub struct TagBuild;

fn failure_text(f: &TaskFailure) -> String {
    // kojid: "%s: %s" % (exctype, value); a hub fault arrives as koji.GenericError etc.
    match f {
        TaskFailure::Fault(fault) => {
            format!("<class 'koji.{}'>: {}", fault.kind().name(), fault.string)
        }
        other => format!("{other:?}"),
    }
}

impl TaskHandler for TagBuild {
    fn method(&self) -> &'static str {
        "tagBuild"
    }

    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        params: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = params.bind(
                "tagBuild",
                &["tag_id", "build_id", "force", "fromtag", "ignore_success"],
            )?;
            let tag = b.require("tag_id")?.clone();
            let build = b.require("build_id")?.clone();
            let force = b.get("force").is_some_and(Value::truthy);
            let fromtag = b.get("fromtag").cloned().unwrap_or(Value::Nil);
            let ignore_success = b.get("ignore_success").is_some_and(Value::truthy);
            let s = &ctx.session;
            let task = s
                .get_task_info(ctx.task_id, false)
                .await?
                .ok_or_else(|| TaskFailure::generic(format!("No such task: {}", ctx.task_id)))?;
            let user_id = task.get("owner").cloned().unwrap_or(Value::Nil);
            let work = async {
                s.get_build_strict(build.clone()).await?;
                let mut k = Struct::new();
                k.insert("strict".into(), Value::Bool(true));
                s.get_tag(tag.clone(), k).await?;
                s.host_tag_build(
                    ctx.task_id,
                    tag.clone(),
                    build.clone(),
                    force,
                    fromtag.clone(),
                )
                .await?;
                s.host_tag_notification(
                    true,
                    tag.clone(),
                    fromtag.clone(),
                    build.clone(),
                    user_id.clone(),
                    ignore_success,
                    None,
                )
                .await?;
                Ok::<(), TaskFailure>(())
            };
            match work.await {
                Ok(()) => Ok(Value::Nil),
                Err(e) => {
                    let msg = failure_text(&e);
                    s.host_tag_notification(
                        false,
                        tag,
                        fromtag,
                        build,
                        user_id,
                        ignore_success,
                        Some(&msg),
                    )
                    .await?;
                    Err(e)
                }
            }
        })
    }
}
