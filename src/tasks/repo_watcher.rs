//! `koji.util.RepoWatcher` (1.35): getting a repo for a tag that satisfies a minimum
//! event and contains given builds, through the hub's repo request queue
//! (`repo.request`, `repo.checkRequest`) — kojira turns requests into `newRepo` tasks.

use std::time::{Duration, Instant};

use tracing::{debug, error, info};

use crate::daemon::TaskFailure;
use crate::hub::HubSession;
use crate::xmlrpc::Value;

/// `koji.parse_NVR`: (name, version, release) of `N-V-R` (an `E:` prefix is dropped).
pub fn parse_nvr(nvr: &str) -> Result<(String, String, String), TaskFailure> {
    let bad = || TaskFailure::generic(format!("invalid format: {nvr}"));
    let (rest, release) = nvr.rsplit_once('-').ok_or_else(bad)?;
    let (name, version) = rest.rsplit_once('-').ok_or_else(bad)?;
    let name = match name.split_once(':') {
        Some((_, n)) => n,
        None => name,
    };
    if name.is_empty() || version.is_empty() || release.is_empty() {
        return Err(bad());
    }
    Ok((name.to_owned(), version.to_owned(), release.to_owned()))
}

/// The `min_event` of a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinEvent {
    /// No minimum.
    None,
    /// The tag's last change (`"last"`).
    Last,
    /// This event.
    Event(i64),
}

/// A repo watcher for one tag.
pub struct RepoWatcher<'a> {
    session: &'a HubSession,
    /// `getTag(tag, strict=True)`.
    pub taginfo: Value,
    tag_id: i64,
    tag_name: String,
    nvrs: Vec<String>,
    builds: Vec<(String, String, String)>,
    /// The resolved minimum event.
    pub min_event: Option<i64>,
    /// Pause between checks (kojid: 6 s, the waitrepo task 60 s).
    pub pause: Duration,
    /// Give up after this long (kojid: 120 min).
    pub timeout: Duration,
    start: Option<Instant>,
    task_request: Option<Value>,
}

impl<'a> RepoWatcher<'a> {
    /// `RepoWatcher(session, tag, nvrs=…, min_event=…)`.
    pub async fn new(
        session: &'a HubSession,
        tag: Value,
        nvrs: Vec<String>,
        min_event: MinEvent,
    ) -> Result<RepoWatcher<'a>, TaskFailure> {
        let mut kw = crate::xmlrpc::Struct::new();
        kw.insert("strict".into(), Value::Bool(true));
        let taginfo = session
            .get_tag(tag.clone(), kw)
            .await?
            .ok_or_else(|| TaskFailure::generic(format!("No such tagInfo: {tag}")))?;
        let tag_id = taginfo.get("id").and_then(Value::as_i64).unwrap_or(0);
        let tag_name = taginfo
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let builds = nvrs
            .iter()
            .map(|n| parse_nvr(n))
            .collect::<Result<Vec<_>, _>>()?;
        let min_event = match min_event {
            MinEvent::None => None,
            MinEvent::Last => session.tag_last_change_event(tag_id).await?,
            MinEvent::Event(e) => Some(e),
        };
        Ok(RepoWatcher {
            session,
            taginfo,
            tag_id,
            tag_name,
            nvrs,
            builds,
            min_event,
            pause: Duration::from_secs(6),
            timeout: Duration::from_secs(120 * 60),
            start: None,
            task_request: None,
        })
    }

    fn start(&mut self) -> Instant {
        *self.start.get_or_insert_with(Instant::now)
    }

    fn timed_out(&mut self) -> bool {
        self.start().elapsed() > self.timeout
    }

    fn duration(&mut self) -> String {
        let s = self.start().elapsed().as_secs();
        format!("{}:{:02}", s / 60, s % 60)
    }

    /// `koji.util.checkForBuilds`: every build tagged in the tag at `event`.
    async fn check_for_builds(&self, event: Option<i64>) -> Result<bool, TaskFailure> {
        for (name, version, release) in &self.builds {
            let tagged = self.session.list_tagged(self.tag_id, name, event).await?;
            let found = tagged.iter().any(|t| {
                t.get("version").and_then(Value::as_str) == Some(version)
                    && t.get("release").and_then(Value::as_str) == Some(release)
            });
            if !found {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn request(&self, min_event: Option<i64>) -> Result<Value, TaskFailure> {
        info!(tag = self.tag_name, ?min_event, "requesting a repo");
        Ok(self.session.repo_request(self.tag_id, min_event).await?)
    }

    /// `check_repo`: the repo is for our tag, new enough and has the builds.
    pub async fn check_repo(&self, repo: &Value) -> Result<bool, TaskFailure> {
        if repo.get("tag_id").and_then(Value::as_i64) != Some(self.tag_id) {
            error!(expected = self.tag_id, got = %repo, "got a repo for the wrong tag");
            return Ok(false);
        }
        let create = repo.get("create_event").and_then(Value::as_i64);
        if let Some(min) = self.min_event {
            if create.is_none_or(|c| c < min) {
                info!(?create, min, "got a repo before the minimum event");
                return Ok(false);
            }
        }
        if !self.builds.is_empty() && !self.check_for_builds(create).await? {
            info!("got a repo without the needed builds");
            return Ok(false);
        }
        Ok(true)
    }

    /// `getRepo()`: a repo available now, or None (then [`Self::task_args`]).
    pub async fn get_repo(&mut self) -> Result<Option<Value>, TaskFailure> {
        info!(tag = self.tag_name, "need a repo");
        if !self.builds.is_empty() && !self.check_for_builds(None).await? {
            debug!(nvrs = ?self.nvrs, "builds not present in the tag");
            return Ok(None);
        }
        let check = self.request(self.min_event).await?;
        if let Some(repo) = check.get("repo").filter(|r| !r.is_nil()) {
            if self.check_repo(repo).await? {
                return Ok(Some(repo.clone()));
            }
        }
        self.task_request = check.get("request").filter(|r| !r.is_nil()).cloned();
        Ok(None)
    }

    /// `task_args()`: the args of a `waitrepo` subtask continuing this wait.
    pub fn task_args(&self) -> Vec<Value> {
        let min_event = self.min_event.or_else(|| {
            self.task_request
                .as_ref()
                .and_then(|r| r.get("min_event"))
                .and_then(Value::as_i64)
        });
        vec![
            Value::from(self.tag_name.as_str()),
            Value::Nil,
            Value::Array(self.nvrs.iter().map(|n| Value::from(n.as_str())).collect()),
            min_event.map_or(Value::Nil, Value::Int),
        ]
    }

    async fn sleep(&self) {
        tokio::time::sleep(self.pause).await;
    }

    async fn wait_request(&mut self, req: &Value) -> Result<Value, TaskFailure> {
        const FIELDS: [&str; 5] = ["task_id", "task_state", "repo_id", "active", "tries"];
        self.start();
        let req_id = req
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| TaskFailure::generic(format!("repo request without an id: {req}")))?;
        let mut watch: Vec<Value> = FIELDS
            .iter()
            .map(|f| req.get(f).cloned().unwrap_or(Value::Nil))
            .collect();
        loop {
            let check = self.session.repo_check_request(req_id).await?;
            if let Some(repo) = check.get("repo").filter(|r| !r.is_nil()) {
                return Ok(repo.clone());
            }
            let request = check.get("request").cloned().unwrap_or(Value::Nil);
            for (i, f) in FIELDS.iter().enumerate() {
                let v = request.get(f).cloned().unwrap_or(Value::Nil);
                if v != watch[i] {
                    info!(field = f, old = %watch[i], new = %v, "request updated");
                    watch[i] = v;
                }
            }
            if self.timed_out() {
                return Err(TaskFailure::generic(format!(
                    "Unsuccessfully waited {} for a new {} repo",
                    self.duration(),
                    self.tag_name
                )));
            }
            if !request.get("active").is_some_and(Value::truthy) {
                if let Some(t) = request.get("task_id").and_then(Value::as_i64) {
                    error!(task = t, state = %request.get("task_state").cloned().unwrap_or_default(), "repo task did not succeed");
                }
                return Err(TaskFailure::generic("Repo request no longer active"));
            }
            self.sleep().await;
        }
    }

    async fn wait_builds(&mut self) -> Result<(), TaskFailure> {
        self.start();
        info!(nvrs = ?self.nvrs, tag = self.tag_name, "waiting for builds");
        loop {
            if self.check_for_builds(None).await? {
                return Ok(());
            }
            if self.timed_out() {
                let list = print_list(&self.nvrs);
                return Err(TaskFailure::generic(format!(
                    "Unsuccessfully waited {} for {list} to appear in the {} repo",
                    self.duration(),
                    self.tag_name
                )));
            }
            self.sleep().await;
        }
    }

    /// `waitrepo()`: wait until a satisfying repo exists; its repoinfo.
    pub async fn waitrepo(&mut self) -> Result<Value, TaskFailure> {
        info!(tag = self.tag_name, "waiting on repo");
        self.start();
        let mut min_event = self.min_event;
        let mut req: Option<Value> = None;
        loop {
            if let Some(r) = req.take() {
                let repo = self.wait_request(&r).await?;
                if self.check_repo(&repo).await? {
                    return Ok(repo);
                }
                min_event = self.session.tag_last_change_event(self.tag_id).await?;
                error!("repo request did not satisfy conditions");
            }
            if !self.builds.is_empty() {
                self.wait_builds().await?;
                min_event = self.session.tag_last_change_event(self.tag_id).await?;
            }
            let check = self.request(min_event).await?;
            match check.get("repo").filter(|r| !r.is_nil()) {
                Some(repo) => {
                    if self.check_repo(repo).await? {
                        return Ok(repo.clone());
                    }
                }
                None => {
                    let r = check.get("request").cloned().unwrap_or(Value::Nil);
                    info!(request = %r.get("id").cloned().unwrap_or_default(), "got request");
                    if min_event.is_none() {
                        min_event = r.get("min_event").and_then(Value::as_i64);
                    }
                    req = Some(r);
                }
            }
            self.sleep().await;
        }
    }
}

/// `koji.util.printList`.
fn print_list(l: &[String]) -> String {
    match l.len() {
        0 => String::new(),
        1 => l[0].clone(),
        2 => l.join(" and "),
        n => format!("{}, and {}", l[..n - 1].join(", "), l[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvr() {
        assert_eq!(
            parse_nvr("foo-bar-1.2-3.fc40").unwrap(),
            ("foo-bar".into(), "1.2".into(), "3.fc40".into())
        );
        assert_eq!(parse_nvr("2:foo-1-1").unwrap().0, "foo");
        assert!(parse_nvr("foo-1").is_err());
        assert!(parse_nvr("-1-1").is_err());
    }

    #[test]
    fn lists() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(print_list(&s(&["a"])), "a");
        assert_eq!(print_list(&s(&["a", "b"])), "a and b");
        assert_eq!(print_list(&s(&["a", "b", "c"])), "a, b, and c");
    }
}
