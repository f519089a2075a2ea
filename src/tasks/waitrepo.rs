//! `waitrepo(tag, newer_than=None, nvrs=None, min_event=None)` (weight 0.2): kojid's
//! `WaitrepoTask` (notes §5.9). Waits through `koji.util.RepoWatcher` until the hub has
//! a repo for the tag that is at least as new as `min_event` and contains `nvrs`; the
//! result is that repo's info. `newer_than` is the legacy form: `"now"` means the tag's
//! last change, a timestamp the first change after it.
//!
//! kojid pauses 60 s between checks. koji-adjutant pauses 4 × `sleeptime` (60 s with
//! kojid's default `sleeptime` of 15), so a builder that polls the hub faster also
//! notices new repos faster. The timeout is kojid's, 120 minutes.

use std::time::Duration;

use crate::daemon::{BoxFuture, TaskContext, TaskFailure, TaskHandler, TaskParams};
use crate::xmlrpc::Value;

use super::repo_watcher::{MinEvent, RepoWatcher};

/// The `waitrepo` handler.
pub struct Waitrepo;

/// Pause between repo checks of a waitrepo task.
pub fn waitrepo_pause(sleeptime: i64) -> Duration {
    Duration::from_secs(u64::try_from(sleeptime).unwrap_or(15).max(1) * 4)
}

fn str_list(v: Option<&Value>, what: &str) -> Result<Vec<String>, TaskFailure> {
    match v {
        None => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| TaskFailure::parameter(format!("{what}: not a string: {x}")))
            })
            .collect(),
        Some(other) => Err(TaskFailure::parameter(format!(
            "{what} must be a list, not {other}"
        ))),
    }
}

impl TaskHandler for Waitrepo {
    fn method(&self) -> &'static str {
        "waitrepo"
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
            let b = params.bind("waitrepo", &["tag", "newer_than", "nvrs", "min_event"])?;
            let tag = b.require("tag")?.clone();
            let nvrs = str_list(b.get("nvrs").filter(|v| !v.is_nil()), "nvrs")?;
            let mut min_event = match b.get("min_event").filter(|v| !v.is_nil()) {
                None => MinEvent::None,
                Some(Value::String(s)) if s == "last" => MinEvent::Last,
                Some(v) => MinEvent::Event(v.as_i64().ok_or_else(|| {
                    TaskFailure::internal(format!("ValueError: invalid min_event: {v}"))
                })?),
            };
            if let Some(nt) = b.get("newer_than").filter(|v| !v.is_nil()) {
                if min_event != MinEvent::None {
                    return Err(TaskFailure::generic(
                        "newer_than and min_event args confict",
                    ));
                }
                min_event = match nt {
                    Value::String(s) if s.eq_ignore_ascii_case("now") => MinEvent::Last,
                    Value::Int(_) | Value::Double(_) => {
                        let ts = nt.as_f64().unwrap_or_default();
                        let base = ctx.session.get_last_event_before(ts).await?;
                        match ctx
                            .session
                            .tag_first_change_event(tag.clone(), base)
                            .await?
                        {
                            Some(e) => MinEvent::Event(e),
                            None => MinEvent::Last,
                        }
                    }
                    other => {
                        return Err(TaskFailure::generic(format!(
                            "Invalid value for newer_than: {other}"
                        )))
                    }
                };
            }
            let mut w = RepoWatcher::new(&ctx.session, tag, nvrs, min_event).await?;
            w.pause = waitrepo_pause(ctx.config.kojid.sleeptime);
            w.timeout = Duration::from_secs(120 * 60);
            let step = ctx.step("waitrepo");
            step.finish(w.waitrepo().await)
        })
    }
}
