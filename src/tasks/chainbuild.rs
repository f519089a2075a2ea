//! `chainbuild(srcs, target, opts=None)` (weight 0.1): kojid's `ChainBuildTask` (notes
//! §5.10). `srcs` is a list of build levels, each a list of SCM URLs (built by `build`
//! subtasks, label `build <level>,<n>`) and NVRs (waited for). Before each level the
//! NVRs of the previous one must be in the build tag's repo: a `waitrepo` subtask
//! (label `wait <level>`). Scratch chain builds are refused.

use crate::daemon::{BoxFuture, TaskContext, TaskFailure, TaskHandler, TaskParams, WaitSpec};
use crate::scm::is_scm_url;
use crate::xmlrpc::{Struct, Value};

/// The `chainbuild` handler.
pub struct ChainBuild;

fn kw<const N: usize>(items: [(&str, Value); N]) -> Struct {
    items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

impl TaskHandler for ChainBuild {
    fn method(&self) -> &'static str {
        "chainbuild"
    }

    fn weight(&self) -> f64 {
        0.1
    }

    fn run<'a>(
        &'a self,
        ctx: TaskContext,
        params: TaskParams,
    ) -> BoxFuture<'a, Result<Value, TaskFailure>> {
        Box::pin(async move {
            let b = params.bind("chainbuild", &["srcs", "target", "opts"])?;
            let srcs = b
                .require("srcs")?
                .as_array()
                .ok_or_else(|| TaskFailure::parameter("chainbuild(): srcs must be a list"))?
                .to_vec();
            let target = b.require("target")?.clone();
            let opts = b.get("opts").cloned().unwrap_or(Value::Nil);
            if opts.get("scratch").is_some_and(Value::truthy) {
                return Err(TaskFailure::build(
                    "--scratch is not allowed with chain-builds",
                ));
            }
            let s = &ctx.session;
            let target_info = s
                .get_build_target(target.clone(), None)
                .await?
                .ok_or_else(|| {
                    TaskFailure::generic(format!(
                        "unknown build target: {}",
                        target.as_str().map_or(target.to_string(), str::to_owned)
                    ))
                })?;
            let build_tag_name = target_info
                .get("build_tag_name")
                .cloned()
                .unwrap_or(Value::Nil);
            let mut nvrs: Vec<Value> = Vec::new();
            for (n_level, level) in srcs.iter().enumerate() {
                let level = level.as_array().ok_or_else(|| {
                    TaskFailure::parameter("chainbuild(): each build level must be a list")
                })?;
                if !nvrs.is_empty() {
                    let t = ctx
                        .subtask(
                            "waitrepo",
                            vec![
                                build_tag_name.clone(),
                                Value::Nil,
                                Value::Array(std::mem::take(&mut nvrs)),
                            ],
                            kw([("label", Value::from(format!("wait {n_level}")))]),
                        )
                        .await?;
                    ctx.wait(WaitSpec {
                        subtasks: Some(vec![t]),
                        all: true,
                        failany: true,
                        ..Default::default()
                    })
                    .await?;
                }
                let mut build_tasks = Vec::new();
                for (n_src, src) in level.iter().enumerate() {
                    let text = src.as_str().unwrap_or_default();
                    if is_scm_url(text) {
                        let t = ctx
                            .subtask(
                                "build",
                                vec![src.clone(), target.clone(), opts.clone()],
                                kw([("label", Value::from(format!("build {n_level},{n_src}")))]),
                            )
                            .await?;
                        build_tasks.push(t);
                    } else {
                        nvrs.push(src.clone());
                    }
                }
                if !build_tasks.is_empty() {
                    ctx.wait(WaitSpec {
                        subtasks: Some(build_tasks.clone()),
                        all: true,
                        failany: true,
                        ..Default::default()
                    })
                    .await?;
                }
                for t in build_tasks {
                    if let Some(nvr) = s
                        .list_builds_of_task(t)
                        .await?
                        .first()
                        .and_then(|b| b.get("nvr"))
                    {
                        nvrs.push(nvr.clone());
                    }
                }
            }
            Ok(Value::Nil)
        })
    }
}
