//! Typed wrappers for the hub calls of the repo tasks (notes §2.4, §4.2, §5.7, §5.8).
//! Answers that are passed on to the hub again (a repo dict handed to a createrepo
//! subtask) are kept as [`Value`]s so nothing is lost on the way.

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

impl HubSession {
    /// `getTag(tag, **kwargs)` (kwargs such as `strict`, `event`); None when the tag does
    /// not exist and `strict` is off.
    pub async fn get_tag(&self, tag: Value, kwargs: Struct) -> Result<Option<Value>, HubError> {
        Ok(opt(self.call_kw("getTag", vec![tag], kwargs).await?))
    }

    /// `host.repoInit(tag_id, opts=…, task_id=…[, event=…])` → `(repo_id, event_id)`.
    pub async fn host_repo_init(
        &self,
        tag_id: i64,
        opts: Value,
        task_id: i64,
        event: Option<Value>,
    ) -> Result<(i64, i64), HubError> {
        let m = "host.repoInit";
        let mut k = kw([("opts", opts), ("task_id", Value::Int(task_id))]);
        if let Some(e) = event {
            k.insert("event".into(), e);
        }
        let v = self.call_kw(m, vec![Value::Int(tag_id)], k).await?;
        match v.as_array() {
            Some([Value::Int(r), Value::Int(e)]) => Ok((*r, *e)),
            _ => Err(HubError::Protocol {
                method: m.into(),
                msg: format!("expected [repo_id, event_id], got {v}"),
            }),
        }
    }

    /// `repoInfo(repo_id, strict=…)`.
    pub async fn repo_info(&self, repo_id: i64, strict: bool) -> Result<Option<Value>, HubError> {
        let k = if strict {
            kw([("strict", Value::Bool(true))])
        } else {
            Struct::new()
        };
        Ok(opt(self
            .call_kw("repoInfo", vec![Value::Int(repo_id)], k)
            .await?))
    }

    /// `getRepo(tag)`: the newest READY repo of a tag, or None.
    pub async fn get_repo(&self, tag: Value) -> Result<Option<Value>, HubError> {
        Ok(opt(self.call("getRepo", vec![tag]).await?))
    }

    /// `getExternalRepoList(tag_id, event=…)`.
    pub async fn get_external_repo_list(
        &self,
        tag_id: Value,
        event: Value,
    ) -> Result<Vec<Value>, HubError> {
        let m = "getExternalRepoList";
        list(
            m,
            self.call_kw(m, vec![tag_id], kw([("event", event)]))
                .await?,
        )
    }

    /// `getFullInheritance(tag_id)`.
    pub async fn get_full_inheritance(&self, tag_id: i64) -> Result<Vec<Value>, HubError> {
        let m = "getFullInheritance";
        list(m, self.call(m, vec![Value::Int(tag_id)]).await?)
    }

    /// `host.repoDone(repo_id, data[, repo_json_updates=…])`.
    pub async fn host_repo_done(
        &self,
        repo_id: i64,
        data: Struct,
        repo_json_updates: Option<Struct>,
    ) -> Result<(), HubError> {
        let mut k = Struct::new();
        if let Some(u) = repo_json_updates {
            k.insert("repo_json_updates".into(), Value::Struct(u));
        }
        self.call_kw(
            "host.repoDone",
            vec![Value::Int(repo_id), Value::Struct(data)],
            k,
        )
        .await
        .map(|_| ())
    }
}
