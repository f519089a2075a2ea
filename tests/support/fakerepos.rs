//! Repos for the fake hub: tags (arches, extra, inheritance, tagged rpms, groups, blocked
//! packages, external repos) and the calls kojid's newRepo/createrepo make, behaving as
//! the 1.35 hub does (kojihub `repo_init`, `HostExports.repoDone`, `repo_info`,
//! `old_get_repo`, `get_external_repo_list`, `readFullInheritance`):
//!
//! - `host.repoInit` writes the skeleton into the hub's temp topdir: `repo.json`,
//!   `groups/comps.xml`, `<arch>/{pkglist, blocklist, rpmlist.jsonl, toplink}`;
//! - `host.repoDone` moves the uploaded files from `work/<uploadpath>` into
//!   `<arch>/repodata` (`*pkglist` into `<arch>/`), applies `repo_json_updates`, marks the
//!   repo READY and points `repos/<tag>/latest` at it.
//!
//! Install with [`FakeRepos::install`]; the state is separate from the hub's.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use koji_adjutant::xmlrpc::{Fault, Struct, Value};

use super::fakehub::{fault, Ctx, FakeHub, State};

pub const REPO_INIT: i64 = 0;
pub const REPO_READY: i64 = 1;

/// An rpm tagged into a tag (what `readTaggedRPMS` lists).
#[derive(Debug, Clone)]
pub struct TaggedRpm {
    pub id: i64,
    pub build_id: i64,
    /// the build's (source package's) name
    pub build_name: String,
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<i64>,
    pub arch: String,
    pub payloadhash: String,
    pub size: i64,
    pub buildtime: i64,
    /// relative to topdir: packages/<build>/<v>/<r>/<arch>/<file>
    pub relpath: String,
}

#[derive(Debug, Clone, Default)]
pub struct FakeTag {
    pub id: i64,
    pub name: String,
    pub arches: Option<String>,
    pub extra: Struct,
    /// (parent id, priority)
    pub parents: Vec<(i64, i64)>,
    pub rpms: Vec<TaggedRpm>,
    /// (group, packages)
    pub groups: Vec<(String, Vec<String>)>,
    pub blocked: Vec<String>,
    /// (external repo id, priority)
    pub external: Vec<(i64, i64)>,
}

#[derive(Debug, Clone)]
pub struct FakeRepo {
    pub id: i64,
    pub tag_id: i64,
    pub state: i64,
    pub create_event: i64,
    pub opts: Value,
    pub custom_opts: Value,
    pub task_id: Option<i64>,
    pub creation_ts: f64,
}

#[derive(Debug, Clone)]
pub struct FakeExternalRepo {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub merge_mode: String,
    pub arches: Option<String>,
}

#[derive(Debug, Default)]
pub struct RepoDb {
    pub tags: BTreeMap<i64, FakeTag>,
    pub repos: BTreeMap<i64, FakeRepo>,
    pub external: BTreeMap<i64, FakeExternalRepo>,
    next_tag: i64,
    next_repo: i64,
    next_rpm: i64,
    next_ext: i64,
    pub event: i64,
    pub topdir: PathBuf,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn arg(args: &[Value], kw: &Struct, i: usize, name: &str) -> Option<Value> {
    args.get(i)
        .cloned()
        .or_else(|| kw.get(name).cloned())
        .filter(|v| !v.is_nil())
}

fn canon_arch(a: &str) -> String {
    match a {
        "i386" | "i486" | "i586" | "i686" | "athlon" => "i386".into(),
        "amd64" | "ia32e" => "x86_64".into(),
        "armv7hl" | "armv7l" => "armhfp".into(),
        other => other.into(),
    }
}

impl RepoDb {
    fn tag_id(&self, info: &Value) -> Option<i64> {
        match info {
            Value::Int(i) => self.tags.contains_key(i).then_some(*i),
            Value::String(s) => self.tags.values().find(|t| &t.name == s).map(|t| t.id),
            Value::Struct(_) => info
                .get("id")
                .and_then(|v| self.tag_id(v))
                .or_else(|| info.get("name").and_then(|v| self.tag_id(v))),
            _ => None,
        }
    }

    fn tag_value(&self, t: &FakeTag) -> Value {
        Value::struct_from([
            ("id", Value::Int(t.id)),
            ("name", Value::from(t.name.as_str())),
            ("perm_id", Value::Nil),
            ("perm", Value::Nil),
            ("arches", t.arches.clone().map_or(Value::Nil, Value::String)),
            ("locked", Value::Bool(false)),
            ("maven_support", Value::Bool(false)),
            ("maven_include_all", Value::Bool(false)),
            ("extra", Value::Struct(t.extra.clone())),
        ])
    }

    /// readFullInheritance: parents depth-first, each once, with currdepth.
    pub fn full_inheritance(&self, tag_id: i64) -> Vec<Value> {
        fn walk(db: &RepoDb, tag: i64, depth: i64, seen: &mut Vec<i64>, out: &mut Vec<Value>) {
            let Some(t) = db.tags.get(&tag) else { return };
            let mut parents = t.parents.clone();
            parents.sort_by_key(|p| p.1);
            for (pid, prio) in parents {
                if seen.contains(&pid) {
                    continue;
                }
                seen.push(pid);
                let name = db
                    .tags
                    .get(&pid)
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                out.push(Value::struct_from([
                    ("child_id", Value::Int(tag)),
                    ("parent_id", Value::Int(pid)),
                    ("name", Value::String(name)),
                    ("priority", Value::Int(prio)),
                    ("maxdepth", Value::Nil),
                    ("intransitive", Value::Bool(false)),
                    ("noconfig", Value::Bool(false)),
                    ("pkg_filter", Value::from("")),
                    ("filter", Value::Array(vec![])),
                    ("currdepth", Value::Int(depth)),
                    ("nextdepth", Value::Nil),
                ]));
                walk(db, pid, depth + 1, seen, out);
            }
        }
        let mut out = Vec::new();
        walk(self, tag_id, 1, &mut vec![tag_id], &mut out);
        out
    }

    fn lineage(&self, tag_id: i64) -> Vec<i64> {
        let mut v = vec![tag_id];
        v.extend(
            self.full_inheritance(tag_id)
                .iter()
                .filter_map(|l| l.get("parent_id").and_then(Value::as_i64)),
        );
        v
    }

    fn repo_value(&self, r: &FakeRepo) -> Value {
        let tag_name = self
            .tags
            .get(&r.tag_id)
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let t = "2026-01-01 00:00:00.000000+00:00";
        Value::struct_from([
            ("id", Value::Int(r.id)),
            ("tag_id", Value::Int(r.tag_id)),
            ("creation_time", Value::from(t)),
            ("creation_ts", Value::Double(r.creation_ts)),
            ("state_time", Value::from(t)),
            ("state_ts", Value::Double(r.creation_ts)),
            ("create_event", Value::Int(r.create_event)),
            ("create_ts", Value::Double(r.creation_ts)),
            ("begin_event", Value::Int(r.create_event)),
            ("begin_ts", Value::Double(r.creation_ts)),
            ("end_event", Value::Nil),
            ("end_ts", Value::Nil),
            ("state", Value::Int(r.state)),
            ("dist", Value::Bool(false)),
            ("opts", r.opts.clone()),
            ("custom_opts", r.custom_opts.clone()),
            ("task_id", r.task_id.map_or(Value::Nil, Value::Int)),
            ("task_state", Value::Nil),
            ("tag_name", Value::String(tag_name)),
        ])
    }

    /// koji.generate_comps(groups, expand_groups=True)
    fn comps(&self, tag_id: i64) -> String {
        let mut s = String::from(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE comps PUBLIC \"-//Red Hat, Inc.//DTD Comps info//EN\" \"comps.dtd\">\n\n<!-- Auto-generated by the build system -->\n<comps>\n",
        );
        let mut seen: Vec<String> = Vec::new();
        for t in self.lineage(tag_id) {
            for (g, pkgs) in &self.tags[&t].groups {
                if seen.contains(g) {
                    continue;
                }
                seen.push(g.clone());
                s.push_str(&format!(
                    "  <group>\n    <id>{g}</id>\n    <name>{g}</name>\n    <description>None</description>\n    <default>true</default>\n    <uservisible>true</uservisible>\n    <packagelist>\n"
                ));
                for p in pkgs {
                    s.push_str(&format!(
                        "      <packagereq type=\"mandatory\">{p}</packagereq>\n"
                    ));
                }
                s.push_str("    </packagelist>\n  </group>\n");
            }
        }
        s.push_str("</comps>\n");
        s
    }

    fn repo_opts(&self, tag: &FakeTag, over: Option<&Value>) -> (Struct, Struct) {
        let mut opts: Struct = ["src", "debuginfo", "separate_src", "maven"]
            .iter()
            .map(|k| (k.to_string(), Value::Bool(false)))
            .collect();
        if let Some(Value::Struct(t)) = tag.extra.get("repo.opts") {
            for (k, v) in t {
                opts.insert(k.clone(), Value::Bool(v.truthy()));
            }
        }
        let mut custom = Struct::new();
        if let Some(Value::Struct(o)) = over {
            for (k, v) in o {
                let v = Value::Bool(v.truthy());
                if opts.get(k) != Some(&v) {
                    custom.insert(k.clone(), v.clone());
                    opts.insert(k.clone(), v);
                }
            }
        }
        (opts, custom)
    }

    /// host.repoInit: the repo row and its skeleton.
    fn repo_init(
        &mut self,
        tag_id: i64,
        task_id: Option<i64>,
        event: Option<i64>,
        over: Option<&Value>,
    ) -> Result<(i64, i64), Fault> {
        let tag = self.tags[&tag_id].clone();
        let (opts, custom) = self.repo_opts(&tag, over);
        let flag = |k: &str| opts.get(k).is_some_and(Value::truthy);
        let mut arches: Vec<String> = Vec::new();
        if flag("separate_src") {
            arches.push("src".into());
        }
        for a in tag.arches.as_deref().unwrap_or("").split_whitespace() {
            let a = canon_arch(a);
            if a != "src" && a != "noarch" && !arches.contains(&a) {
                arches.push(a);
            }
        }
        self.next_repo += 1;
        let repo_id = self.next_repo;
        let event_id = match event {
            Some(e) => e,
            None => {
                self.event += 1;
                self.event
            }
        };
        self.repos.insert(
            repo_id,
            FakeRepo {
                id: repo_id,
                tag_id,
                state: REPO_INIT,
                create_event: event_id,
                opts: Value::Struct(opts.clone()),
                custom_opts: Value::Struct(custom.clone()),
                task_id,
                creation_ts: now(),
            },
        );
        let repodir = self
            .topdir
            .join("repos")
            .join(&tag.name)
            .join(repo_id.to_string());
        std::fs::create_dir_all(repodir.join("groups")).unwrap();
        std::fs::write(repodir.join("groups/comps.xml"), self.comps(tag_id)).unwrap();
        let to_json = |s: &Struct| -> serde_json::Value {
            serde_json::Value::Object(
                s.iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::Bool(v.truthy())))
                    .collect(),
            )
        };
        let info = serde_json::json!({
            "id": repo_id,
            "tag": tag.name,
            "tag_id": tag_id,
            "task_id": task_id,
            "event_id": event_id,
            "opts": to_json(&opts),
            "custom_opts": to_json(&custom),
            "with_src": flag("src"),
            "with_separate_src": flag("separate_src"),
            "with_debuginfo": flag("debuginfo"),
        });
        std::fs::write(
            repodir.join("repo.json"),
            serde_json::to_string_pretty(&info).unwrap(),
        )
        .unwrap();
        // latest tagged build per package, nearest tag first; blocked packages dropped
        let lineage = self.lineage(tag_id);
        let mut blocked: Vec<String> = Vec::new();
        for t in &lineage {
            for b in &self.tags[t].blocked {
                if !blocked.contains(b) {
                    blocked.push(b.clone());
                }
            }
        }
        let mut chosen: BTreeMap<String, i64> = BTreeMap::new();
        for t in &lineage {
            for r in self.tags[t].rpms.iter().rev() {
                chosen.entry(r.build_name.clone()).or_insert(r.build_id);
            }
        }
        let mut rpms: Vec<TaggedRpm> = Vec::new();
        for t in &lineage {
            for r in &self.tags[t].rpms {
                if chosen.get(&r.build_name) == Some(&r.build_id)
                    && !blocked.contains(&r.build_name)
                    && !rpms.iter().any(|x| x.id == r.id)
                {
                    rpms.push(r.clone());
                }
            }
        }
        let mut pkglist: BTreeMap<String, String> = BTreeMap::new();
        let mut rpmlist: BTreeMap<String, String> = BTreeMap::new();
        for a in &arches {
            pkglist.insert(a.clone(), String::new());
            rpmlist.insert(a.clone(), String::new());
        }
        for r in &rpms {
            if !flag("debuginfo")
                && (r.name.ends_with("-debuginfo") || r.name.ends_with("-debugsource"))
            {
                continue;
            }
            let line = format!("toplink/{}\n", r.relpath);
            let json = serde_json::json!({
                "id": r.id, "build_id": r.build_id, "name": r.name, "version": r.version,
                "release": r.release, "epoch": r.epoch, "arch": r.arch, "draft": false,
                "payloadhash": r.payloadhash, "size": r.size, "buildtime": r.buildtime,
                "buildroot_id": null, "metadata_only": false, "external_repo_id": 0,
                "external_repo_name": "INTERNAL", "extra": null,
            })
            .to_string()
                + "\n";
            let targets: Vec<String> = match r.arch.as_str() {
                "src" => {
                    let mut v = Vec::new();
                    if flag("src") {
                        v.extend(arches.iter().cloned());
                    }
                    if flag("separate_src") && !v.contains(&"src".to_string()) {
                        v.push("src".into());
                    }
                    v
                }
                "noarch" => arches.iter().filter(|a| *a != "src").cloned().collect(),
                other => {
                    let c = canon_arch(other);
                    if arches.contains(&c) {
                        vec![c]
                    } else {
                        vec![]
                    }
                }
            };
            for a in targets {
                pkglist.get_mut(&a).unwrap().push_str(&line);
                rpmlist.get_mut(&a).unwrap().push_str(&json);
            }
        }
        for a in &arches {
            let archdir = repodir.join(a);
            std::fs::create_dir_all(&archdir).unwrap();
            std::os::unix::fs::symlink("../../../..", archdir.join("toplink")).unwrap();
            std::fs::write(archdir.join("pkglist"), &pkglist[a]).unwrap();
            std::fs::write(archdir.join("rpmlist.jsonl"), &rpmlist[a]).unwrap();
            let bl: String = blocked.iter().map(|b| format!("{b}\n")).collect();
            std::fs::write(archdir.join("blocklist"), bl).unwrap();
        }
        Ok((repo_id, event_id))
    }
}

/// The repo side of the fake hub.
#[derive(Clone)]
pub struct FakeRepos {
    pub db: Arc<Mutex<RepoDb>>,
    topdir: PathBuf,
}

/// NAME, VERSION, RELEASE, EPOCH, ARCH, SOURCERPM, SIGMD5, SIZE, BUILDTIME of an rpm file.
pub fn rpm_header(path: &Path) -> Vec<String> {
    let out = Command::new("rpm")
        .args([
            "-qp",
            "--nosignature",
            "--nodigest",
            "--qf",
            "%{NAME}\\t%{VERSION}\\t%{RELEASE}\\t%{EPOCH}\\t%{ARCH}\\t%{SOURCERPM}\\t%{SIGMD5}\\t%{SIZE}\\t%{BUILDTIME}",
        ])
        .arg(path)
        .output()
        .expect("rpm (the rpm package) must be installed");
    assert!(
        out.status.success(),
        "rpm -qp {}: {:?}",
        path.display(),
        out
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\t')
        .map(str::to_owned)
        .collect()
}

impl FakeRepos {
    /// Register the repo calls on `hub` and create `<topdir>/{repos,packages}`.
    pub fn install(hub: &FakeHub) -> FakeRepos {
        let topdir = hub.topdir();
        std::fs::create_dir_all(topdir.join("repos")).unwrap();
        std::fs::create_dir_all(topdir.join("packages")).unwrap();
        let db = Arc::new(Mutex::new(RepoDb {
            topdir: topdir.clone(),
            event: 1000,
            ..Default::default()
        }));
        let me = FakeRepos { db, topdir };
        me.register(hub);
        me
    }

    fn register(&self, hub: &FakeHub) {
        let db = self.db.clone();
        hub.register("getTag", move |_, _, a, kw| {
            let db = db.lock().unwrap();
            let info = arg(&a, &kw, 0, "tagInfo").unwrap_or_default();
            let strict = arg(&a, &kw, 1, "strict").is_some_and(|v| v.truthy());
            match db.tag_id(&info) {
                Some(id) => Ok(db.tag_value(&db.tags[&id])),
                None if strict => Err(fault(1000, format!("No such tagInfo: {info}"))),
                None => Ok(Value::Nil),
            }
        });
        let db = self.db.clone();
        hub.register("getFullInheritance", move |_, _, a, kw| {
            let db = db.lock().unwrap();
            let info = arg(&a, &kw, 0, "tag").unwrap_or_default();
            let id = db
                .tag_id(&info)
                .ok_or_else(|| fault(1000, format!("No such tagInfo: {info}")))?;
            Ok(Value::Array(db.full_inheritance(id)))
        });
        let db = self.db.clone();
        hub.register("getExternalRepoList", move |_, _, a, kw| {
            let db = db.lock().unwrap();
            let info = arg(&a, &kw, 0, "tag_info").unwrap_or_default();
            let id = db
                .tag_id(&info)
                .ok_or_else(|| fault(1000, format!("No such tagInfo: {info}")))?;
            let mut out = Vec::new();
            let mut seen = Vec::new();
            for t in db.lineage(id) {
                let tag = &db.tags[&t];
                let mut ext = tag.external.clone();
                ext.sort_by_key(|e| e.1);
                for (eid, prio) in ext {
                    if seen.contains(&eid) {
                        continue;
                    }
                    seen.push(eid);
                    let e = &db.external[&eid];
                    out.push(Value::struct_from([
                        ("external_repo_id", Value::Int(eid)),
                        ("external_repo_name", Value::from(e.name.as_str())),
                        ("priority", Value::Int(prio)),
                        ("tag_id", Value::Int(t)),
                        ("tag_name", Value::from(tag.name.as_str())),
                        ("url", Value::from(e.url.as_str())),
                        ("merge_mode", Value::from(e.merge_mode.as_str())),
                        ("arches", e.arches.clone().map_or(Value::Nil, Value::String)),
                    ]));
                }
            }
            Ok(Value::Array(out))
        });
        let db = self.db.clone();
        hub.register("repoInfo", move |_, _, a, kw| {
            let db = db.lock().unwrap();
            let id = arg(&a, &kw, 0, "repo_id")
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            let strict = arg(&a, &kw, 1, "strict").is_some_and(|v| v.truthy());
            match db.repos.get(&id) {
                Some(r) => Ok(db.repo_value(r)),
                None if strict => Err(fault(1000, format!("No such repo: {id}"))),
                None => Ok(Value::Nil),
            }
        });
        let db = self.db.clone();
        hub.register("getRepo", move |_, _, a, kw| {
            let db = db.lock().unwrap();
            let info = arg(&a, &kw, 0, "tag").unwrap_or_default();
            let id = db
                .tag_id(&info)
                .ok_or_else(|| fault(1000, format!("No such tagInfo: {info}")))?;
            let state = arg(&a, &kw, 1, "state")
                .and_then(|v| v.as_i64())
                .unwrap_or(REPO_READY);
            Ok(db
                .repos
                .values()
                .filter(|r| r.tag_id == id && r.state == state)
                .max_by_key(|r| r.id)
                .map_or(Value::Nil, |r| db.repo_value(r)))
        });
        let db = self.db.clone();
        hub.register("host.repoInit", move |s: &mut State, ctx: &Ctx, a, kw| {
            s.verify_host(ctx)?;
            let mut db = db.lock().unwrap();
            let info = arg(&a, &kw, 0, "tag").unwrap_or_default();
            let task_id = arg(&a, &kw, 1, "task_id").and_then(|v| v.as_i64());
            let event = arg(&a, &kw, 2, "event").and_then(|v| v.as_i64());
            let opts = arg(&a, &kw, 3, "opts");
            let id = db
                .tag_id(&info)
                .ok_or_else(|| fault(1000, format!("No such tagInfo: {info}")))?;
            let (r, e) = db.repo_init(id, task_id, event, opts.as_ref())?;
            Ok(Value::Array(vec![Value::Int(r), Value::Int(e)]))
        });
        let db = self.db.clone();
        hub.register("host.repoDone", move |s: &mut State, ctx: &Ctx, a, kw| {
            s.verify_host(ctx)?;
            let mut db = db.lock().unwrap();
            let id = arg(&a, &kw, 0, "repo_id")
                .and_then(|v| v.as_i64())
                .ok_or_else(|| fault(1019, "repo_id"))?;
            let data = arg(&a, &kw, 1, "data").unwrap_or_default();
            let Value::Struct(data) = data else {
                return Err(fault(1000, format!("Invalid type for value '{data}'")));
            };
            let updates = arg(&a, &kw, 3, "repo_json_updates");
            let repo = db
                .repos
                .get(&id)
                .cloned()
                .ok_or_else(|| fault(1000, format!("No such repo: {id}")))?;
            if repo.state != REPO_INIT {
                return Err(fault(
                    1000,
                    format!("Repo {id} not in INIT state (got {})", repo.state),
                ));
            }
            let tag_name = db.tags[&repo.tag_id].name.clone();
            let repodir = db.topdir.join("repos").join(&tag_name).join(id.to_string());
            if let Some(Value::Struct(u)) = updates {
                let p = repodir.join("repo.json");
                let mut j: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                for (k, v) in u {
                    j[k.as_str()] = value_to_json(&v);
                }
                std::fs::write(&p, serde_json::to_string_pretty(&j).unwrap()).unwrap();
            }
            let work = s.topdir.join("work");
            for (arch, pair) in data {
                let (Some(up), Some(files)) = (
                    pair.as_array()
                        .and_then(|p| p.first())
                        .and_then(Value::as_str),
                    pair.as_array()
                        .and_then(|p| p.get(1))
                        .and_then(Value::as_array),
                ) else {
                    return Err(fault(1000, format!("bad repoDone data for {arch}: {pair}")));
                };
                let archdir = repodir.join(canon_arch(&arch));
                if !archdir.is_dir() {
                    return Err(fault(
                        1000,
                        format!("Repo arch directory missing: {}", archdir.display()),
                    ));
                }
                let datadir = archdir.join("repodata");
                std::fs::create_dir_all(&datadir).unwrap();
                for f in files.iter().filter_map(Value::as_str) {
                    let src = work.join(up).join(f);
                    let dst = if f.ends_with("pkglist") {
                        archdir.join(f)
                    } else {
                        datadir.join(f)
                    };
                    if !src.exists() {
                        return Err(fault(
                            1000,
                            format!("uploaded file missing: {}", src.display()),
                        ));
                    }
                    std::fs::rename(&src, &dst).unwrap();
                }
            }
            db.repos.get_mut(&id).unwrap().state = REPO_READY;
            if repo.custom_opts.as_struct().is_none_or(|c| c.is_empty()) {
                let latest = db.topdir.join("repos").join(&tag_name).join("latest");
                let _ = std::fs::remove_file(&latest);
                std::os::unix::fs::symlink(id.to_string(), latest).unwrap();
            }
            Ok(Value::Nil)
        });
    }

    /// Run `f` on the repo database.
    pub fn with_db<R>(&self, f: impl FnOnce(&mut RepoDb) -> R) -> R {
        f(&mut self.db.lock().unwrap())
    }

    /// A tag with these arches (space separated; None for no arches).
    pub fn add_tag(&self, name: &str, arches: Option<&str>) -> i64 {
        self.with_db(|db| {
            db.next_tag += 1;
            let id = db.next_tag;
            db.tags.insert(
                id,
                FakeTag {
                    id,
                    name: name.into(),
                    arches: arches.map(str::to_owned),
                    ..Default::default()
                },
            );
            id
        })
    }

    pub fn set_extra(&self, tag: i64, key: &str, v: Value) {
        self.with_db(|db| {
            db.tags.get_mut(&tag).unwrap().extra.insert(key.into(), v);
        });
    }

    pub fn add_parent(&self, tag: i64, parent: i64, priority: i64) {
        self.with_db(|db| {
            db.tags
                .get_mut(&tag)
                .unwrap()
                .parents
                .push((parent, priority))
        });
    }

    pub fn add_group(&self, tag: i64, group: &str, pkgs: &[&str]) {
        self.with_db(|db| {
            db.tags
                .get_mut(&tag)
                .unwrap()
                .groups
                .push((group.into(), pkgs.iter().map(|p| p.to_string()).collect()))
        });
    }

    pub fn block(&self, tag: i64, pkg: &str) {
        self.with_db(|db| db.tags.get_mut(&tag).unwrap().blocked.push(pkg.into()));
    }

    pub fn add_external_repo(
        &self,
        tag: i64,
        name: &str,
        url: &str,
        merge_mode: &str,
        arches: Option<&str>,
    ) -> i64 {
        self.with_db(|db| {
            db.next_ext += 1;
            let id = db.next_ext;
            db.external.insert(
                id,
                FakeExternalRepo {
                    id,
                    name: name.into(),
                    url: url.into(),
                    merge_mode: merge_mode.into(),
                    arches: arches.map(str::to_owned),
                },
            );
            let t = db.tags.get_mut(&tag).unwrap();
            let prio = t.external.len() as i64 * 5;
            t.external.push((id, prio));
            id
        })
    }

    /// Tag the builds of these rpm files (all rpms of one source package form a build);
    /// the files are copied to `<topdir>/packages/<build>/<v>/<r>/<arch>/`.
    pub fn tag_rpms(&self, tag: i64, files: &[PathBuf]) {
        let mut builds: BTreeMap<(String, String, String), i64> = BTreeMap::new();
        for f in files {
            let h = rpm_header(f);
            let (name, version, release, epoch, arch, srpm) =
                (&h[0], &h[1], &h[2], &h[3], &h[4], &h[5]);
            let (arch, build_name) = if srpm == "(none)" {
                ("src".to_string(), name.clone())
            } else {
                // name-version-release.src.rpm → name
                let base = srpm.trim_end_matches(".src.rpm");
                let mut parts = base.rsplitn(3, '-');
                let (_r, _v) = (parts.next(), parts.next());
                (arch.clone(), parts.next().unwrap_or(name).to_owned())
            };
            let fname = format!("{name}-{version}-{release}.{arch}.rpm");
            let rel = format!("packages/{build_name}/{version}/{release}/{arch}/{fname}");
            let dst = self.topdir.join(&rel);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(f, &dst).unwrap();
            self.with_db(|db| {
                let key = (build_name.clone(), version.clone(), release.clone());
                let next_build = db.next_rpm + 10_000;
                let build_id = *builds.entry(key).or_insert(next_build);
                db.next_rpm += 1;
                let id = db.next_rpm;
                db.tags.get_mut(&tag).unwrap().rpms.push(TaggedRpm {
                    id,
                    build_id,
                    build_name: build_name.clone(),
                    name: name.clone(),
                    version: version.clone(),
                    release: release.clone(),
                    epoch: epoch.parse().ok(),
                    arch: arch.clone(),
                    payloadhash: h[6].clone(),
                    size: h[7].parse().unwrap_or(0),
                    buildtime: h[8].parse().unwrap_or(0),
                    relpath: rel.clone(),
                });
                db.event += 1;
            });
        }
    }

    pub fn repo(&self, id: i64) -> FakeRepo {
        self.with_db(|db| db.repos.get(&id).cloned().expect("no such repo"))
    }

    pub fn repos_of(&self, tag: i64) -> Vec<FakeRepo> {
        self.with_db(|db| {
            db.repos
                .values()
                .filter(|r| r.tag_id == tag)
                .cloned()
                .collect()
        })
    }

    /// `<topdir>/repos/<tag>/<id>`.
    pub fn repo_path(&self, id: i64) -> PathBuf {
        self.with_db(|db| {
            let r = &db.repos[&id];
            db.topdir
                .join("repos")
                .join(&db.tags[&r.tag_id].name)
                .join(id.to_string())
        })
    }
}

fn value_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Int(i) => serde_json::json!(i),
        Value::Bool(b) => serde_json::json!(b),
        Value::Double(d) => serde_json::json!(d),
        Value::String(s) | Value::DateTime(s) => serde_json::json!(s),
        Value::Base64(b) => serde_json::json!(b),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(value_to_json).collect()),
        Value::Struct(s) => serde_json::Value::Object(
            s.iter()
                .map(|(k, v)| (k.clone(), value_to_json(v)))
                .collect(),
        ),
    }
}
