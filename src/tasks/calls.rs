//! Typed wrappers for the hub calls of the build tasks (notes §2.4, §4, §5.1–5.5,
//! §5.9, §5.10). Answers passed on to the hub or to other tasks (build targets, repo
//! infos, task results) stay [`Value`]s so nothing is lost on the way.

use crate::hub::{HubError, HubSession};
use crate::xmlrpc::{Struct, Value};

fn kw<const N: usize>(items: [(&str, Value); N]) -> Struct {
    items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn opt(v: Value) -> Option<Value> {
    if v.is_nil() {
        None
    } else {
        Some(v)
    }
}

fn list(method: &str, v: Value) -> Result<Vec<Value>, HubError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(HubError::Protocol {
            method: method.to_owned(),
            msg: format!("expected a list, got {other}"),
        }),
    }
}

fn int(method: &str, v: Value) -> Result<i64, HubError> {
    v.as_i64().ok_or_else(|| HubError::Protocol {
        method: method.to_owned(),
        msg: format!("expected an integer, got {v}"),
    })
}

fn event_kw(event: Option<i64>) -> Struct {
    let mut k = Struct::new();
    if let Some(e) = event {
        k.insert("event".into(), Value::Int(e));
    }
    k
}

/// A list of rpm entries for `setBuildRootList`/`updateBuildRootList`.
pub type RpmList = Vec<Value>;

impl HubSession {
    /// `getBuildConfig(tag, event=…)`.
    pub async fn get_build_config(
        &self,
        tag: Value,
        event: Option<i64>,
    ) -> Result<Option<Value>, HubError> {
        Ok(opt(self
            .call_kw("getBuildConfig", vec![tag], event_kw(event))
            .await?))
    }

    /// `getBuildTarget(target, event=…)`.
    pub async fn get_build_target(
        &self,
        target: Value,
        event: Option<i64>,
    ) -> Result<Option<Value>, HubError> {
        Ok(opt(self
            .call_kw("getBuildTarget", vec![target], event_kw(event))
            .await?))
    }

    /// `getPackageConfig(tag, pkg, event=…)`.
    pub async fn get_package_config(
        &self,
        tag: Value,
        pkg: &str,
        event: Option<i64>,
    ) -> Result<Option<Value>, HubError> {
        Ok(opt(self
            .call_kw(
                "getPackageConfig",
                vec![tag, Value::from(pkg)],
                event_kw(event),
            )
            .await?))
    }

    /// `getAverageBuildDuration(pkg, age=…)` in seconds (None: no builds).
    pub async fn get_average_build_duration(
        &self,
        pkg: &str,
        age: Option<i64>,
    ) -> Result<Option<f64>, HubError> {
        let mut k = Struct::new();
        if let Some(a) = age {
            k.insert("age".into(), Value::Int(a));
        }
        let v = self
            .call_kw("getAverageBuildDuration", vec![Value::from(pkg)], k)
            .await?;
        Ok(v.as_f64())
    }

    /// `host.assertPolicy(name, data)`: ActionNotAllowed when denied.
    pub async fn host_assert_policy(&self, name: &str, data: Struct) -> Result<(), HubError> {
        self.call(
            "host.assertPolicy",
            vec![Value::from(name), Value::Struct(data)],
        )
        .await
        .map(|_| ())
    }

    /// `host.evalPolicy(name, data)` → the policy's action text.
    pub async fn host_eval_policy(&self, name: &str, data: Struct) -> Result<String, HubError> {
        let v = self
            .call(
                "host.evalPolicy",
                vec![Value::from(name), Value::Struct(data)],
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// `getLastEvent()` → its id.
    pub async fn get_last_event(&self) -> Result<i64, HubError> {
        let m = "getLastEvent";
        let v = self.call(m, vec![]).await?;
        v.get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| HubError::Protocol {
                method: m.into(),
                msg: format!("no event id in {v}"),
            })
    }

    /// `getLastEvent(before=…, strict=False)` → its id, if any.
    pub async fn get_last_event_before(&self, before: f64) -> Result<Option<i64>, HubError> {
        let v = self
            .call_kw(
                "getLastEvent",
                vec![],
                kw([
                    ("before", Value::Double(before)),
                    ("strict", Value::Bool(false)),
                ]),
            )
            .await?;
        Ok(v.get("id").and_then(Value::as_i64))
    }

    /// `tagLastChangeEvent(tag)`.
    pub async fn tag_last_change_event(&self, tag: i64) -> Result<Option<i64>, HubError> {
        Ok(self
            .call("tagLastChangeEvent", vec![Value::Int(tag)])
            .await?
            .as_i64())
    }

    /// `tagFirstChangeEvent(tag, after=…)`.
    pub async fn tag_first_change_event(
        &self,
        tag: Value,
        after: Option<i64>,
    ) -> Result<Option<i64>, HubError> {
        let mut k = Struct::new();
        if let Some(a) = after {
            k.insert("after".into(), Value::Int(a));
        }
        Ok(self
            .call_kw("tagFirstChangeEvent", vec![tag], k)
            .await?
            .as_i64())
    }

    /// `listTagged(tag, event=…, package=…, inherit=True)`.
    pub async fn list_tagged(
        &self,
        tag: i64,
        package: &str,
        event: Option<i64>,
    ) -> Result<Vec<Value>, HubError> {
        let mut k = kw([
            ("package", Value::from(package)),
            ("inherit", Value::Bool(true)),
        ]);
        if let Some(e) = event {
            k.insert("event".into(), Value::Int(e));
        }
        list(
            "listTagged",
            self.call_kw("listTagged", vec![Value::Int(tag)], k).await?,
        )
    }

    /// `repo.request(tag, min_event=…)` → `{repo, request, duplicate}`.
    pub async fn repo_request(&self, tag: i64, min_event: Option<i64>) -> Result<Value, HubError> {
        self.call_kw(
            "repo.request",
            vec![Value::Int(tag)],
            kw([
                ("min_event", min_event.map_or(Value::Nil, Value::Int)),
                ("at_event", Value::Nil),
                ("opts", Value::Nil),
            ]),
        )
        .await
    }

    /// `repo.checkRequest(req_id)` → `{request, repo[, task]}`.
    pub async fn repo_check_request(&self, req_id: i64) -> Result<Value, HubError> {
        self.call("repo.checkRequest", vec![Value::Int(req_id)])
            .await
    }

    /// `host.newBuildRoot(repo, arch, task_id=…)` → the buildroot id.
    pub async fn host_new_buildroot(
        &self,
        repo_id: i64,
        arch: &str,
        task_id: i64,
    ) -> Result<i64, HubError> {
        let m = "host.newBuildRoot";
        int(
            m,
            self.call_kw(
                m,
                vec![Value::Int(repo_id), Value::from(arch)],
                kw([("task_id", Value::Int(task_id))]),
            )
            .await?,
        )
    }

    /// `host.setBuildRootList(brootid, rpmlist, task_id=…)` (buildroot in INIT).
    pub async fn host_set_buildroot_list(
        &self,
        brootid: i64,
        rpmlist: RpmList,
        task_id: i64,
    ) -> Result<(), HubError> {
        self.call_kw(
            "host.setBuildRootList",
            vec![Value::Int(brootid), Value::Array(rpmlist)],
            kw([("task_id", Value::Int(task_id))]),
        )
        .await
        .map(|_| ())
    }

    /// `host.updateBuildRootList(brootid, rpmlist, task_id=…)` (buildroot BUILDING).
    pub async fn host_update_buildroot_list(
        &self,
        brootid: i64,
        rpmlist: RpmList,
        task_id: i64,
    ) -> Result<(), HubError> {
        self.call_kw(
            "host.updateBuildRootList",
            vec![Value::Int(brootid), Value::Array(rpmlist)],
            kw([("task_id", Value::Int(task_id))]),
        )
        .await
        .map(|_| ())
    }

    /// `host.setBuildRootState(brootid, state, task_id=…)` with the state's name
    /// (`BUILDING`, `EXPIRED`), as kojid sends it.
    pub async fn host_set_buildroot_state_named(
        &self,
        brootid: i64,
        state: &str,
        task_id: i64,
    ) -> Result<(), HubError> {
        match self
            .call_kw(
                "host.setBuildRootState",
                vec![Value::Int(brootid), Value::from(state)],
                kw([("task_id", Value::Int(task_id))]),
            )
            .await
        {
            Ok(_) | Err(HubError::TookEffect { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `host.initBuild(data)` → build id.
    pub async fn host_init_build(&self, data: Struct) -> Result<i64, HubError> {
        let m = "host.initBuild";
        int(m, self.call(m, vec![Value::Struct(data)]).await?)
    }

    /// `host.completeBuild(task_id, build_id, srpm, rpms, brmap, logs=…)` → build info.
    pub async fn host_complete_build(
        &self,
        task_id: i64,
        build_id: i64,
        srpm: &str,
        rpms: Vec<Value>,
        brmap: Struct,
        logs: Struct,
    ) -> Result<Value, HubError> {
        self.call_kw(
            "host.completeBuild",
            vec![
                Value::Int(task_id),
                Value::Int(build_id),
                Value::from(srpm),
                Value::Array(rpms),
                Value::Struct(brmap),
            ],
            kw([("logs", Value::Struct(logs))]),
        )
        .await
    }

    /// `host.failBuild(task_id, build_id)`.
    pub async fn host_fail_build(&self, task_id: i64, build_id: i64) -> Result<(), HubError> {
        match self
            .call(
                "host.failBuild",
                vec![Value::Int(task_id), Value::Int(build_id)],
            )
            .await
        {
            Ok(_) | Err(HubError::TookEffect { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `host.moveBuildToScratch(task_id, srpm, rpms, logs=…)`.
    pub async fn host_move_build_to_scratch(
        &self,
        task_id: i64,
        srpm: &str,
        rpms: Vec<Value>,
        logs: Struct,
    ) -> Result<(), HubError> {
        self.call_kw(
            "host.moveBuildToScratch",
            vec![Value::Int(task_id), Value::from(srpm), Value::Array(rpms)],
            kw([("logs", Value::Struct(logs))]),
        )
        .await
        .map(|_| ())
    }

    /// `host.tagBuild(task_id, tag, build, force=…, fromtag=…)`.
    pub async fn host_tag_build(
        &self,
        task_id: i64,
        tag: Value,
        build: Value,
        force: bool,
        fromtag: Value,
    ) -> Result<(), HubError> {
        self.call_kw(
            "host.tagBuild",
            vec![Value::Int(task_id), tag, build],
            kw([("force", Value::Bool(force)), ("fromtag", fromtag)]),
        )
        .await
        .map(|_| ())
    }

    /// `host.tagNotification(is_successful, tag_id, from_id, build_id, user_id,
    /// ignore_success, failure_msg)`.
    #[allow(clippy::too_many_arguments)]
    pub async fn host_tag_notification(
        &self,
        ok: bool,
        tag: Value,
        fromtag: Value,
        build: Value,
        user_id: Value,
        ignore_success: bool,
        failure_msg: Option<&str>,
    ) -> Result<(), HubError> {
        let mut args = vec![
            Value::Bool(ok),
            tag,
            fromtag,
            build,
            user_id,
            Value::Bool(ignore_success),
        ];
        if let Some(m) = failure_msg {
            args.push(Value::from(m));
        }
        self.call("host.tagNotification", args).await.map(|_| ())
    }

    /// `getBuild(build, strict=True)`.
    pub async fn get_build_strict(&self, build: Value) -> Result<Value, HubError> {
        self.call_kw("getBuild", vec![build], kw([("strict", Value::Bool(true))]))
            .await
    }

    /// `listBuilds(taskID=…)`.
    pub async fn list_builds_of_task(&self, task_id: i64) -> Result<Vec<Value>, HubError> {
        list(
            "listBuilds",
            self.call_kw("listBuilds", vec![], kw([("taskID", Value::Int(task_id))]))
                .await?,
        )
    }
}
