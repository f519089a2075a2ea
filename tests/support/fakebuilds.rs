//! Builds for the fake hub: targets, package lists, builds and their rpms, buildroots,
//! the repo request queue, policies and tag notifications — the calls kojid's build
//! tasks make, each with the 1.35 hub's validation (kojihub `HostExports` and
//! `BuildRoot`, `new_build`/`recycle_build`, `import_build`/`import_rpm`,
//! `moveBuildToScratch`, `_tag_build`, `repos.request_repo`/`check_repo_request`),
//! so that what passes here predicts what passes against a real hub:
//!
//! - every `host.*` call needs the host's exclusive session and (where kojid passes a
//!   task) the task OPEN and ours; buildroots must be ours and (with `task_id`) the
//!   task's;
//! - buildroot states: INIT → BUILDING → EXPIRED; `setBuildRootList` only in INIT,
//!   `updateBuildRootList` only in BUILDING, nothing back to INIT, nothing but EXPIRED
//!   after EXPIRED; rpm entries are looked up strictly (by `id`, or by NVRA);
//! - `initBuild` refuses a build that exists unless it FAILED/CANCELED (recycled) or is
//!   BUILDING for the same task; `completeBuild` needs the files in `work/`, a source
//!   srpm whose N-V-R/epoch/task match the build in BUILDING, `N-V-R.A.rpm` names,
//!   rpms whose SOURCERPM is the build's, real buildroot ids in `brmap`; it moves the
//!   rpms to `packages/<n>/<v>/<r>/<arch>/` and the logs to `…/data/logs/<arch>/`;
//! - `moveBuildToScratch` moves everything to `scratch/<owner>/task_<id>/`;
//! - `host.tagBuild` needs a COMPLETE build not yet in the tag and the package in the
//!   tag's list; tagging makes the build's rpms part of the tag's next repo;
//! - `repo.request` answers with a current repo, or queues a request that a
//!   "kojira" turns into a `newRepo` task at once (owner kojira, priority 15);
//!   `repo.checkRequest` reports the repo once that task made it.
//!
//! Install with [`FakeBuilds::install`] after [`super::fakerepos::FakeRepos::install`].

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use koji_adjutant::xmlrpc::{encode_args, Struct, Value};

use super::fakehub::{fault, Buildroot, FakeHub, State, User, CLOSED, FAILED, OPEN};
use super::fakerepos::{rpm_header, FakeRepos, RepoDb, TaggedRpm, REPO_READY};

pub const BUILDING: i64 = 0;
pub const COMPLETE: i64 = 1;
pub const BUILD_FAILED: i64 = 3;
pub const BUILD_CANCELED: i64 = 4;

pub const BR_INIT: i64 = 0;
pub const BR_BUILDING: i64 = 2;
pub const BR_EXPIRED: i64 = 3;

/// The submitting user of build tasks in tests.
pub const ALICE: i64 = 50;

fn build_state_name(s: i64) -> &'static str {
    match s {
        0 => "BUILDING",
        1 => "COMPLETE",
        2 => "DELETED",
        3 => "FAILED",
        4 => "CANCELED",
        _ => "?",
    }
}

fn br_state(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::String(s) => match s.as_str() {
            "INIT" => Some(0),
            "WAITING" => Some(1),
            "BUILDING" => Some(2),
            "EXPIRED" => Some(3),
            _ => None,
        },
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub id: i64,
    pub name: String,
    pub build_tag: i64,
    pub dest_tag: i64,
}

#[derive(Debug, Clone)]
pub struct PkgEntry {
    pub tag_id: i64,
    pub name: String,
    pub owner: i64,
    pub blocked: bool,
    pub extra_arches: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BuiltRpm {
    pub id: i64,
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<i64>,
    pub arch: String,
    /// relative to topdir
    pub relpath: String,
    pub buildroot_id: Option<i64>,
    pub payloadhash: String,
    pub size: i64,
    pub buildtime: i64,
}

#[derive(Debug, Clone)]
pub struct FakeBuild {
    pub id: i64,
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<i64>,
    pub state: i64,
    pub task_id: Option<i64>,
    pub owner: i64,
    pub source: Option<String>,
    pub extra: Value,
    pub rpms: Vec<BuiltRpm>,
    /// logs imported: (subdir, relpath under topdir)
    pub logs: Vec<(String, String)>,
}

impl FakeBuild {
    pub fn nvr(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.release)
    }
}

/// Extra data of a buildroot (its state lives in the hub's `State.buildroots`).
#[derive(Debug, Clone, Default)]
pub struct BrInfo {
    pub id: i64,
    pub repo_id: i64,
    pub arch: String,
    pub tag_name: String,
    /// rpm ids listed by setBuildRootList
    pub list: Vec<i64>,
    /// rpm ids added by updateBuildRootList
    pub updates: Vec<i64>,
    pub set_list_calls: u32,
    pub update_list_calls: u32,
    /// every state set, in order (names)
    pub states: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct RepoRequest {
    pub id: i64,
    pub tag_id: i64,
    pub min_event: Option<i64>,
    pub active: bool,
    pub task_id: Option<i64>,
    pub repo_id: Option<i64>,
    pub tries: i64,
}

#[derive(Debug, Clone)]
pub struct Notification {
    pub ok: bool,
    pub tag: Value,
    pub build: Value,
    pub user: Value,
    pub msg: Option<String>,
}

#[derive(Debug, Default)]
pub struct BuildDb {
    pub targets: BTreeMap<i64, Target>,
    pub packages: Vec<PkgEntry>,
    pub builds: BTreeMap<i64, FakeBuild>,
    pub brinfo: BTreeMap<i64, BrInfo>,
    pub requests: BTreeMap<i64, RepoRequest>,
    pub notifications: Vec<Notification>,
    /// policy name → deny reason (absent: allow)
    pub deny: HashMap<String, String>,
    /// every assertPolicy call: (name, data)
    pub policy_calls: Vec<(String, Value)>,
    /// evalPolicy results by policy name (absent: "allow")
    pub eval: HashMap<String, String>,
    pub avg_duration: HashMap<String, f64>,
    /// tag id → last change event
    pub tag_changes: HashMap<i64, i64>,
    /// (tag id, build id, event)
    pub tagged: Vec<(i64, i64, i64)>,
    /// make a newRepo task for each new repo request (kojira)
    pub kojira: bool,
    next: i64,
}

impl BuildDb {
    fn next(&mut self) -> i64 {
        self.next += 1;
        self.next
    }
}

fn arg(args: &[Value], kw: &Struct, i: usize, name: &str) -> Option<Value> {
    args.get(i)
        .cloned()
        .or_else(|| kw.get(name).cloned())
        .filter(|v| !v.is_nil())
}

fn int_arg(
    args: &[Value],
    kw: &Struct,
    i: usize,
    name: &str,
) -> Result<i64, koji_adjutant::xmlrpc::Fault> {
    arg(args, kw, i, name)
        .and_then(|v| v.as_i64())
        .ok_or_else(|| fault(1019, format!("missing or bad argument {name}")))
}

fn tag_id(db: &RepoDb, v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => db.tags.contains_key(i).then_some(*i),
        Value::String(s) => db.tags.values().find(|t| &t.name == s).map(|t| t.id),
        Value::Struct(_) => v
            .get("id")
            .and_then(|x| tag_id(db, x))
            .or_else(|| v.get("name").and_then(|x| tag_id(db, x))),
        _ => None,
    }
}

fn lineage(db: &RepoDb, tag: i64) -> Vec<i64> {
    let mut v = vec![tag];
    v.extend(
        db.full_inheritance(tag)
            .iter()
            .filter_map(|l| l.get("parent_id").and_then(Value::as_i64)),
    );
    v
}

fn tag_name(db: &RepoDb, id: i64) -> String {
    db.tags.get(&id).map(|t| t.name.clone()).unwrap_or_default()
}

/// `getBuildConfig`: arches and extra through inheritance, first value wins.
fn build_config(db: &RepoDb, id: i64) -> Value {
    let t = &db.tags[&id];
    let mut arches = Value::Nil;
    let mut arches_from = Value::Nil;
    let mut extra = Struct::new();
    let mut extra_from = Struct::new();
    for tid in lineage(db, id) {
        let tag = &db.tags[&tid];
        if arches.is_nil() {
            if let Some(a) = &tag.arches {
                arches = Value::from(a.as_str());
                if tid != id {
                    arches_from = Value::struct_from([
                        ("id", Value::Int(tid)),
                        ("name", Value::from(tag.name.as_str())),
                    ]);
                }
            }
        }
        for (k, v) in &tag.extra {
            if !extra.contains_key(k) {
                extra.insert(k.clone(), v.clone());
                if tid != id {
                    extra_from.insert(
                        k.clone(),
                        Value::struct_from([
                            ("id", Value::Int(tid)),
                            ("name", Value::from(tag.name.as_str())),
                        ]),
                    );
                }
            }
        }
    }
    Value::struct_from([
        ("id", Value::Int(t.id)),
        ("name", Value::from(t.name.as_str())),
        ("perm_id", Value::Nil),
        ("perm", Value::Nil),
        ("arches", arches),
        ("locked", Value::Bool(false)),
        ("maven_support", Value::Bool(false)),
        ("maven_include_all", Value::Bool(false)),
        ("extra", Value::Struct(extra)),
        (
            "config_inheritance",
            Value::struct_from([
                ("extra", Value::Struct(extra_from)),
                ("arches", arches_from),
            ]),
        ),
    ])
}

fn target_value(db: &RepoDb, t: &Target) -> Value {
    Value::struct_from([
        ("id", Value::Int(t.id)),
        ("name", Value::from(t.name.as_str())),
        ("build_tag", Value::Int(t.build_tag)),
        ("build_tag_name", Value::from(tag_name(db, t.build_tag))),
        ("dest_tag", Value::Int(t.dest_tag)),
        ("dest_tag_name", Value::from(tag_name(db, t.dest_tag))),
    ])
}

fn build_value(b: &FakeBuild, users: &BTreeMap<i64, User>) -> Value {
    Value::struct_from([
        ("id", Value::Int(b.id)),
        ("build_id", Value::Int(b.id)),
        ("package_id", Value::Int(1000 + b.id)),
        ("package_name", Value::from(b.name.as_str())),
        ("name", Value::from(b.name.as_str())),
        ("version", Value::from(b.version.as_str())),
        ("release", Value::from(b.release.as_str())),
        ("epoch", b.epoch.map_or(Value::Nil, Value::Int)),
        ("nvr", Value::from(b.nvr())),
        ("state", Value::Int(b.state)),
        ("task_id", b.task_id.map_or(Value::Nil, Value::Int)),
        ("owner_id", Value::Int(b.owner)),
        (
            "owner_name",
            Value::from(
                users
                    .get(&b.owner)
                    .map(|u| u.name.clone())
                    .unwrap_or_default(),
            ),
        ),
        ("source", b.source.clone().map_or(Value::Nil, Value::String)),
        ("extra", b.extra.clone()),
        ("draft", Value::Bool(false)),
        ("volume_id", Value::Int(0)),
        ("volume_name", Value::from("DEFAULT")),
    ])
}

fn find_build(db: &BuildDb, v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => db.builds.contains_key(i).then_some(*i),
        Value::String(s) => db.builds.values().find(|b| &b.nvr() == s).map(|b| b.id),
        Value::Struct(_) => v.get("id").and_then(|x| find_build(db, x)),
        _ => None,
    }
}

/// Every rpm the hub knows: tagged fixture rpms and built rpms.
fn known_rpms(rdb: &RepoDb, bdb: &BuildDb) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = Vec::new();
    for t in rdb.tags.values() {
        for r in &t.rpms {
            out.push((
                r.id,
                format!("{}-{}-{}.{}", r.name, r.version, r.release, r.arch),
            ));
        }
    }
    for b in bdb.builds.values() {
        for r in &b.rpms {
            out.push((
                r.id,
                format!("{}-{}-{}.{}", r.name, r.version, r.release, r.arch),
            ));
        }
    }
    out
}

/// `BuildRoot._setList`'s strict lookups; the rpm ids.
fn check_rpmlist(
    rdb: &RepoDb,
    bdb: &BuildDb,
    list: &Value,
) -> Result<Vec<i64>, koji_adjutant::xmlrpc::Fault> {
    let known = known_rpms(rdb, bdb);
    let mut ids = Vec::new();
    for e in list
        .as_array()
        .ok_or_else(|| fault(1000, format!("Invalid type for rpmlist: {list}")))?
    {
        for k in ["name", "version", "release", "arch", "payloadhash"] {
            if e.get(k).and_then(Value::as_str).is_none() {
                return Err(fault(1000, format!("rpm entry without a string {k}: {e}")));
            }
        }
        for k in ["size", "buildtime"] {
            if e.get(k).and_then(Value::as_i64).is_none() {
                return Err(fault(1000, format!("rpm entry without an int {k}: {e}")));
            }
        }
        if e.get("location").is_some_and(|l| !l.is_nil()) {
            return Err(fault(
                1000,
                "external rpms are not supported by the fake hub",
            ));
        }
        let id = match e.get("id").and_then(Value::as_i64) {
            Some(id) => known
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(i, _)| *i)
                .ok_or_else(|| fault(1000, format!("No such rpm: {{'id': {id}}}")))?,
            None => {
                let nvra = format!(
                    "{}-{}-{}.{}",
                    e.get("name").and_then(Value::as_str).unwrap_or_default(),
                    e.get("version").and_then(Value::as_str).unwrap_or_default(),
                    e.get("release").and_then(Value::as_str).unwrap_or_default(),
                    e.get("arch").and_then(Value::as_str).unwrap_or_default()
                );
                known
                    .iter()
                    .find(|(_, n)| *n == nvra)
                    .map(|(i, _)| *i)
                    .ok_or_else(|| fault(1000, format!("No such rpm: {nvra}")))?
            }
        };
        ids.push(id);
    }
    Ok(ids)
}

/// The build side of the fake hub.
#[derive(Clone)]
pub struct FakeBuilds {
    pub db: Arc<Mutex<BuildDb>>,
    pub repos: FakeRepos,
    topdir: PathBuf,
}

fn move_file(src: &Path, dst: &Path) -> Result<(), koji_adjutant::xmlrpc::Fault> {
    std::fs::create_dir_all(dst.parent().unwrap())
        .map_err(|e| fault(1000, format!("mkdir {}: {e}", dst.display())))?;
    std::fs::rename(src, dst).map_err(|e| {
        fault(
            1000,
            format!("move {} → {}: {e}", src.display(), dst.display()),
        )
    })?;
    // move_and_symlink leaves a relative symlink behind
    let _ = std::os::unix::fs::symlink(dst, src);
    Ok(())
}

impl FakeBuilds {
    /// Register the build calls on `hub` (after `FakeRepos::install`). Adds user alice
    /// (id [`ALICE`]) and a kojira user.
    pub fn install(hub: &FakeHub, repos: &FakeRepos) -> FakeBuilds {
        let topdir = hub.topdir();
        for d in ["packages", "scratch", "work"] {
            std::fs::create_dir_all(topdir.join(d)).unwrap();
        }
        hub.with(|s| {
            s.users.insert(
                ALICE,
                User {
                    id: ALICE,
                    name: "alice".into(),
                    password: "alice-pw".into(),
                },
            );
            s.users.insert(
                51,
                User {
                    id: 51,
                    name: "kojira".into(),
                    password: "kojira-pw".into(),
                },
            );
        });
        let me = FakeBuilds {
            db: Arc::new(Mutex::new(BuildDb {
                kojira: true,
                next: 500,
                ..Default::default()
            })),
            repos: repos.clone(),
            topdir,
        };
        me.register(hub);
        me
    }

    pub fn with_db<R>(&self, f: impl FnOnce(&mut BuildDb) -> R) -> R {
        f(&mut self.db.lock().unwrap())
    }

    /// A target `name`: build tag → dest tag.
    pub fn add_target(&self, name: &str, build_tag: i64, dest_tag: i64) -> i64 {
        self.with_db(|db| {
            let id = db.next();
            db.targets.insert(
                id,
                Target {
                    id,
                    name: name.into(),
                    build_tag,
                    dest_tag,
                },
            );
            id
        })
    }

    /// Add `pkg` to `tag`'s package list.
    pub fn add_package(&self, tag: i64, pkg: &str, blocked: bool) {
        self.with_db(|db| {
            db.packages.push(PkgEntry {
                tag_id: tag,
                name: pkg.into(),
                owner: ALICE,
                blocked,
                extra_arches: None,
            })
        });
    }

    pub fn build(&self, id: i64) -> FakeBuild {
        self.with_db(|db| db.builds[&id].clone())
    }

    pub fn builds(&self) -> Vec<FakeBuild> {
        self.with_db(|db| db.builds.values().cloned().collect())
    }

    pub fn brinfo(&self, id: i64) -> BrInfo {
        self.with_db(|db| db.brinfo[&id].clone())
    }

    fn register(&self, hub: &FakeHub) {
        let (bdb, rdb) = (self.db.clone(), self.repos.db.clone());
        hub.register("getBuildConfig", move |_, _, a, kw| {
            let rdb = rdb.lock().unwrap();
            let info = arg(&a, &kw, 0, "tag").unwrap_or_default();
            let id = tag_id(&rdb, &info)
                .ok_or_else(|| fault(1000, format!("No such tagInfo: {info}")))?;
            Ok(build_config(&rdb, id))
        });
        let (b2, rdb) = (bdb.clone(), self.repos.db.clone());
        hub.register("getBuildTarget", move |_, _, a, kw| {
            let rdb = rdb.lock().unwrap();
            let db = b2.lock().unwrap();
            let info = arg(&a, &kw, 0, "info").unwrap_or_default();
            let strict = arg(&a, &kw, 2, "strict").is_some_and(|v| v.truthy());
            let t = db.targets.values().find(|t| match &info {
                Value::Int(i) => t.id == *i,
                Value::String(s) => &t.name == s,
                _ => false,
            });
            match t {
                Some(t) => Ok(target_value(&rdb, t)),
                None if strict => Err(fault(1000, format!("No such build target: {info}"))),
                None => Ok(Value::Nil),
            }
        });
        let (b2, rdb) = (bdb.clone(), self.repos.db.clone());
        hub.register("getPackageConfig", move |_, _, a, kw| {
            let rdb = rdb.lock().unwrap();
            let db = b2.lock().unwrap();
            let info = arg(&a, &kw, 0, "tag").unwrap_or_default();
            let pkg = arg(&a, &kw, 1, "pkg").unwrap_or_default();
            let tid = tag_id(&rdb, &info)
                .ok_or_else(|| fault(1000, format!("No such tagInfo: {info}")))?;
            let pkg = pkg.as_str().unwrap_or_default().to_owned();
            for t in lineage(&rdb, tid) {
                if let Some(p) = db.packages.iter().find(|p| p.tag_id == t && p.name == pkg) {
                    return Ok(Value::struct_from([
                        ("package_id", Value::Int(1)),
                        ("package_name", Value::from(p.name.as_str())),
                        ("tag_id", Value::Int(p.tag_id)),
                        ("tag_name", Value::from(tag_name(&rdb, p.tag_id))),
                        ("owner_id", Value::Int(p.owner)),
                        ("owner_name", Value::from("alice")),
                        ("blocked", Value::Bool(p.blocked)),
                        (
                            "extra_arches",
                            p.extra_arches.clone().map_or(Value::Nil, Value::String),
                        ),
                    ]));
                }
            }
            Ok(Value::Nil)
        });
        let b2 = bdb.clone();
        hub.register("getAverageBuildDuration", move |_, _, a, kw| {
            let db = b2.lock().unwrap();
            let pkg = arg(&a, &kw, 0, "package").unwrap_or_default();
            Ok(pkg
                .as_str()
                .and_then(|p| db.avg_duration.get(p))
                .map_or(Value::Nil, |d| Value::Double(*d)))
        });
        let b2 = bdb.clone();
        hub.register("host.assertPolicy", move |s, ctx, a, kw| {
            s.verify_host(ctx)?;
            let mut db = b2.lock().unwrap();
            let name = arg(&a, &kw, 0, "name")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let data = arg(&a, &kw, 1, "data").unwrap_or_default();
            db.policy_calls.push((name.clone(), data));
            match db.deny.get(&name) {
                Some(reason) => Err(fault(1004, format!("policy violation ({name}): {reason}"))),
                None => Ok(Value::Nil),
            }
        });
        let b2 = bdb.clone();
        hub.register("host.evalPolicy", move |s, ctx, a, kw| {
            s.verify_host(ctx)?;
            let mut db = b2.lock().unwrap();
            let name = arg(&a, &kw, 0, "name")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let data = arg(&a, &kw, 1, "data").unwrap_or_default();
            db.policy_calls.push((name.clone(), data));
            Ok(Value::from(
                db.eval
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| "allow".into()),
            ))
        });
        let rdb = self.repos.db.clone();
        hub.register("getLastEvent", move |_, _, _, _| {
            let rdb = rdb.lock().unwrap();
            Ok(Value::struct_from([
                ("id", Value::Int(rdb.event)),
                ("ts", Value::Double(1.7e9)),
            ]))
        });
        let (b2, rdb) = (bdb.clone(), self.repos.db.clone());
        hub.register("tagLastChangeEvent", move |_, _, a, kw| {
            let rdb = rdb.lock().unwrap();
            let db = b2.lock().unwrap();
            let info = arg(&a, &kw, 0, "tag").unwrap_or_default();
            let tid = tag_id(&rdb, &info)
                .ok_or_else(|| fault(1000, format!("No such tagInfo: {info}")))?;
            let last = lineage(&rdb, tid)
                .iter()
                .filter_map(|t| db.tag_changes.get(t))
                .max()
                .copied()
                .unwrap_or(1000);
            Ok(Value::Int(last))
        });
        let (b2, rdb) = (bdb.clone(), self.repos.db.clone());
        hub.register("listTagged", move |s, _, a, kw| {
            let rdb = rdb.lock().unwrap();
            let db = b2.lock().unwrap();
            let info = arg(&a, &kw, 0, "tag").unwrap_or_default();
            let tid = tag_id(&rdb, &info)
                .ok_or_else(|| fault(1000, format!("No such tagInfo: {info}")))?;
            let event = arg(&a, &kw, 1, "event").and_then(|v| v.as_i64());
            let inherit = arg(&a, &kw, 2, "inherit").is_some_and(|v| v.truthy());
            let package = kw.get("package").and_then(Value::as_str);
            let tags = if inherit {
                lineage(&rdb, tid)
            } else {
                vec![tid]
            };
            let mut out = Vec::new();
            for (t, b, ev) in &db.tagged {
                if !tags.contains(t) || event.is_some_and(|e| *ev > e) {
                    continue;
                }
                let build = &db.builds[b];
                if package.is_some_and(|p| p != build.name) {
                    continue;
                }
                let mut v = build_value(build, &s.users);
                if let Value::Struct(st) = &mut v {
                    st.insert("tag_id".into(), Value::Int(*t));
                    st.insert("tag_name".into(), Value::from(tag_name(&rdb, *t)));
                }
                out.push(v);
            }
            Ok(Value::Array(out))
        });
        let (b2, rdb) = (bdb.clone(), self.repos.db.clone());
        hub.register("repo.request", move |s, ctx, a, kw| {
            if ctx.user_id.is_none() {
                return Err(fault(1002, "Not logged-in"));
            }
            let rdb = rdb.lock().unwrap();
            let mut db = b2.lock().unwrap();
            let info = arg(&a, &kw, 0, "tag").unwrap_or_default();
            let tid = tag_id(&rdb, &info)
                .ok_or_else(|| fault(1000, format!("No such tagInfo: {info}")))?;
            let last = lineage(&rdb, tid)
                .iter()
                .filter_map(|t| db.tag_changes.get(t))
                .max()
                .copied()
                .unwrap_or(1000);
            let min_event = match arg(&a, &kw, 1, "min_event") {
                Some(Value::String(s)) if s == "last" => last,
                Some(v) => v.as_i64().ok_or_else(|| fault(1019, "bad min_event"))?,
                // default_min_event: no repo lag in the fake hub
                None => last,
            };
            let mut ret = Struct::new();
            ret.insert("repo".into(), Value::Nil);
            ret.insert("request".into(), Value::Nil);
            ret.insert("duplicate".into(), Value::Bool(false));
            if let Some(r) = rdb
                .repos
                .values()
                .filter(|r| {
                    r.tag_id == tid
                        && r.state == REPO_READY
                        && r.create_event >= min_event
                        && r.custom_opts.as_struct().is_none_or(|c| c.is_empty())
                })
                .max_by_key(|r| r.create_event)
            {
                ret.insert("repo".into(), repo_value(&rdb, r.id));
                return Ok(Value::Struct(ret));
            }
            if let Some(req) = db
                .requests
                .values()
                .find(|r| r.tag_id == tid && r.active && r.min_event >= Some(min_event))
            {
                ret.insert("request".into(), request_value(&rdb, req));
                ret.insert("duplicate".into(), Value::Bool(true));
                return Ok(Value::Struct(ret));
            }
            let id = db.next();
            let mut req = RepoRequest {
                id,
                tag_id: tid,
                min_event: Some(min_event),
                active: true,
                task_id: None,
                repo_id: None,
                tries: 0,
            };
            if db.kojira {
                let mut k = Struct::new();
                k.insert("opts".into(), Value::new_struct());
                let args = encode_args(
                    vec![Value::struct_from([
                        ("id", Value::Int(tid)),
                        ("name", Value::from(tag_name(&rdb, tid))),
                    ])],
                    k,
                );
                let t = s.make_task("newRepo", args, "noarch", 15, None);
                s.tasks.get_mut(&t).unwrap().owner = 51;
                req.task_id = Some(t);
                req.tries = 1;
            }
            ret.insert("request".into(), request_value(&rdb, &req));
            db.requests.insert(id, req);
            Ok(Value::Struct(ret))
        });
        let (b2, rdb) = (bdb.clone(), self.repos.db.clone());
        hub.register("repo.checkRequest", move |s, _, a, kw| {
            let rdb = rdb.lock().unwrap();
            let mut db = b2.lock().unwrap();
            let id = int_arg(&a, &kw, 0, "req_id")?;
            let req = db
                .requests
                .get_mut(&id)
                .ok_or_else(|| fault(1000, "No such request"))?;
            // what kojira's queue check does: a finished task settles the request
            if req.active {
                if let Some(t) = req.task_id.and_then(|t| s.tasks.get(&t)) {
                    if t.state == CLOSED {
                        if let Some(r) = rdb.repos.values().find(|r| r.task_id == Some(t.id)) {
                            req.repo_id = Some(r.id);
                            req.active = false;
                        }
                    } else if t.state == FAILED || t.state == super::fakehub::CANCELED {
                        req.active = false;
                    }
                }
            }
            let req = req.clone();
            let mut ret = Struct::new();
            ret.insert("request".into(), request_value(&rdb, &req));
            ret.insert(
                "repo".into(),
                req.repo_id.map_or(Value::Nil, |r| repo_value(&rdb, r)),
            );
            if req.repo_id.is_none() {
                if let Some(t) = req.task_id.and_then(|t| s.tasks.get(&t)) {
                    ret.insert("task".into(), s.task_info(t, false));
                }
            }
            Ok(Value::Struct(ret))
        });
        let (b2, rdb) = (bdb.clone(), self.repos.db.clone());
        hub.register("host.newBuildRoot", move |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let rdb = rdb.lock().unwrap();
            let mut db = b2.lock().unwrap();
            let repo_id = int_arg(&a, &kw, 0, "repo")?;
            let arch = arg(&a, &kw, 1, "arch")
                .and_then(|v| v.as_str().map(str::to_owned))
                .ok_or_else(|| fault(1019, "arch"))?;
            if arch.is_empty() || arch.contains(' ') || arch.contains(',') {
                return Err(fault(1000, format!("Invalid architecture: {arch}")));
            }
            let task_id = arg(&a, &kw, 2, "task_id").and_then(|v| v.as_i64());
            if let Some(t) = task_id {
                s.assert_host(t, h)?;
            }
            let repo = rdb
                .repos
                .get(&repo_id)
                .ok_or_else(|| fault(1000, format!("No such repo: {repo_id}")))?;
            let id = db.next();
            s.buildroots.insert(
                id,
                Buildroot {
                    id,
                    host_id: h,
                    task_id,
                    state: BR_INIT,
                },
            );
            db.brinfo.insert(
                id,
                BrInfo {
                    id,
                    repo_id,
                    arch,
                    tag_name: tag_name(&rdb, repo.tag_id),
                    ..Default::default()
                },
            );
            Ok(Value::Int(id))
        });
        for (method, update) in [
            ("host.setBuildRootList", false),
            ("host.updateBuildRootList", true),
        ] {
            let (b2, rdb) = (bdb.clone(), self.repos.db.clone());
            hub.register(method, move |s, ctx, a, kw| {
                let h = s.verify_host(ctx)?;
                let rdb = rdb.lock().unwrap();
                let mut db = b2.lock().unwrap();
                let id = int_arg(&a, &kw, 0, "brootid")?;
                let list = arg(&a, &kw, 1, "rpmlist").unwrap_or(Value::Array(vec![]));
                let task_id = arg(&a, &kw, 2, "task_id").and_then(|v| v.as_i64());
                check_br(s, h, id, task_id)?;
                let state = s.buildroots[&id].state;
                let want = if update { BR_BUILDING } else { BR_INIT };
                if state != want {
                    return Err(fault(
                        1000,
                        format!("buildroot {id} in wrong state {state}"),
                    ));
                }
                let ids = check_rpmlist(&rdb, &db, &list)?;
                let info = db.brinfo.get_mut(&id).unwrap();
                if update {
                    info.update_list_calls += 1;
                    for i in ids {
                        if !info.list.contains(&i) && !info.updates.contains(&i) {
                            info.updates.push(i);
                        }
                    }
                } else {
                    info.set_list_calls += 1;
                    info.list = ids;
                }
                Ok(Value::Nil)
            });
        }
        let b2 = bdb.clone();
        hub.register("host.setBuildRootState", move |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let mut db = b2.lock().unwrap();
            let id = int_arg(&a, &kw, 0, "brootid")?;
            let state_v = arg(&a, &kw, 1, "state").unwrap_or_default();
            let state = br_state(&state_v)
                .ok_or_else(|| fault(1000, format!("Invalid buildroot state: {state_v}")))?;
            let task_id = arg(&a, &kw, 2, "task_id").and_then(|v| v.as_i64());
            check_br(s, h, id, task_id)?;
            if state == BR_INIT {
                return Err(fault(1000, "Cannot change buildroot state to INIT"));
            }
            let b = s.buildroots.get_mut(&id).unwrap();
            if b.state == BR_EXPIRED {
                if state == BR_EXPIRED {
                    return Ok(Value::Nil);
                }
                return Err(fault(1000, format!("buildroot {id} is EXPIRED")));
            }
            b.state = state;
            if let Some(i) = db.brinfo.get_mut(&id) {
                i.states.push(state);
            }
            Ok(Value::Nil)
        });
        let (b2, rdb) = (bdb.clone(), self.repos.db.clone());
        hub.register("listBuildroots", move |s, _, a, kw| {
            let _ = a;
            let rdb = rdb.lock().unwrap();
            let db = b2.lock().unwrap();
            let host = kw.get("hostID").and_then(Value::as_i64);
            let states: Option<Vec<i64>> = kw.get("state").and_then(|v| {
                v.as_array()
                    .map(|x| x.iter().filter_map(Value::as_i64).collect())
            });
            let _ = &rdb;
            Ok(Value::Array(
                s.buildroots
                    .values()
                    .filter(|b| host.is_none_or(|h| b.host_id == h))
                    .filter(|b| states.as_ref().is_none_or(|st| st.contains(&b.state)))
                    .map(|b| {
                        let i = db.brinfo.get(&b.id).cloned().unwrap_or_default();
                        Value::struct_from([
                            ("id", Value::Int(b.id)),
                            ("host_id", Value::Int(b.host_id)),
                            ("task_id", b.task_id.map_or(Value::Nil, Value::Int)),
                            ("state", Value::Int(b.state)),
                            ("repo_id", Value::Int(i.repo_id)),
                            ("tag_name", Value::from(i.tag_name.as_str())),
                            ("arch", Value::from(i.arch.as_str())),
                        ])
                    })
                    .collect(),
            ))
        });
        let b2 = bdb.clone();
        hub.register("host.initBuild", move |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let mut db = b2.lock().unwrap();
            let data = arg(&a, &kw, 0, "data").unwrap_or_default();
            let task_id = data
                .get("task_id")
                .and_then(Value::as_i64)
                .ok_or_else(|| fault(1000, "initBuild: no task_id"))?;
            s.assert_host(task_id, h)?;
            let owner = s.tasks[&task_id].owner;
            let name = data
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| fault(1000, "No name or package id provided for build"))?
                .to_owned();
            for f in ["version", "release", "epoch"] {
                if data.get(f).is_none() {
                    return Err(fault(1000, format!("No {f} value for build")));
                }
            }
            let version = data
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let release = data
                .get("release")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let epoch = data.get("epoch").and_then(Value::as_i64);
            if let Some(old) = db
                .builds
                .values_mut()
                .find(|b| b.name == name && b.version == version && b.release == release)
            {
                match old.state {
                    BUILDING if old.task_id == Some(task_id) => return Ok(Value::Int(old.id)),
                    BUILDING => {
                        return Err(fault(
                            1000,
                            format!(
                                "Build already in progress (task {})",
                                old.task_id.unwrap_or(0)
                            ),
                        ))
                    }
                    BUILD_FAILED | BUILD_CANCELED if old.rpms.is_empty() => {
                        old.state = BUILDING;
                        old.task_id = Some(task_id);
                        old.owner = owner;
                        old.epoch = epoch;
                        return Ok(Value::Int(old.id));
                    }
                    st => {
                        return Err(fault(
                            1000,
                            format!(
                                "Build already exists (id={}, state={}): {data}",
                                old.id,
                                build_state_name(st)
                            ),
                        ))
                    }
                }
            }
            let id = db.next();
            db.builds.insert(
                id,
                FakeBuild {
                    id,
                    name,
                    version,
                    release,
                    epoch,
                    state: BUILDING,
                    task_id: Some(task_id),
                    owner,
                    source: data
                        .get("source")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    extra: data.get("extra").cloned().unwrap_or(Value::Nil),
                    rpms: vec![],
                    logs: vec![],
                },
            );
            Ok(Value::Int(id))
        });
        let (b2, top) = (bdb.clone(), self.topdir.clone());
        hub.register("host.completeBuild", move |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let mut db = b2.lock().unwrap();
            let task_id = int_arg(&a, &kw, 0, "task_id")?;
            let build_id = int_arg(&a, &kw, 1, "build_id")?;
            s.assert_host(task_id, h)?;
            let srpm = arg(&a, &kw, 2, "srpm")
                .and_then(|v| v.as_str().map(str::to_owned))
                .ok_or_else(|| fault(1000, "Invalid type for value srpm"))?;
            let rpms: Vec<String> = arg(&a, &kw, 3, "rpms")
                .and_then(|v| {
                    v.as_array().map(|x| {
                        x.iter()
                            .filter_map(|r| r.as_str().map(str::to_owned))
                            .collect()
                    })
                })
                .ok_or_else(|| fault(1000, "Invalid type for value rpms"))?;
            let brmap = arg(&a, &kw, 4, "brmap").unwrap_or(Value::new_struct());
            let logs = arg(&a, &kw, 5, "logs").unwrap_or(Value::new_struct());
            let work = top.join("work");
            for rel in std::iter::once(&srpm).chain(rpms.iter()) {
                if !work.join(rel).exists() {
                    return Err(fault(
                        1000,
                        format!("No such file: {}", work.join(rel).display()),
                    ));
                }
            }
            let rpms = dedup_noarch(&rpms);
            let brmap = brmap
                .as_struct()
                .cloned()
                .ok_or_else(|| fault(1000, "Invalid type for value brmap"))?;
            for v in brmap.values() {
                let br = v.as_i64().unwrap_or(-1);
                if !s.buildroots.contains_key(&br) {
                    return Err(fault(1000, format!("no buildroot with ID: {br}")));
                }
            }
            let hdr = rpm_header(&work.join(&srpm));
            if hdr[5] != "(none)" {
                return Err(fault(1000, format!("not a source package: {srpm}")));
            }
            let b = db
                .builds
                .get(&build_id)
                .cloned()
                .ok_or_else(|| fault(1000, format!("No such build: {build_id}")))?;
            let epoch = hdr[3].parse::<i64>().ok();
            let checks: [(&str, String, String); 5] = [
                ("name", b.name.clone(), hdr[0].clone()),
                ("version", b.version.clone(), hdr[1].clone()),
                ("release", b.release.clone(), hdr[2].clone()),
                ("epoch", format!("{:?}", b.epoch), format!("{epoch:?}")),
                (
                    "task_id",
                    format!("{:?}", b.task_id),
                    format!("{:?}", Some(task_id)),
                ),
            ];
            for (k, want, got) in checks {
                if want != got {
                    return Err(fault(
                        1000,
                        format!(
                            "Unable to complete build: {k} mismatch (build: {want}, rpm: {got})"
                        ),
                    ));
                }
            }
            if b.state != BUILDING {
                return Err(fault(
                    1000,
                    format!(
                        "Unable to complete build: state is {}",
                        build_state_name(b.state)
                    ),
                ));
            }
            let srpmname = format!("{}.src.rpm", b.nvr());
            let mut imported = Vec::new();
            for rel in std::iter::once(&srpm).chain(rpms.iter()) {
                let fp = work.join(rel);
                let hd = rpm_header(&fp);
                let source = hd[5] == "(none)";
                let arch = if source {
                    "src".to_string()
                } else {
                    hd[4].clone()
                };
                let basename = fp.file_name().unwrap().to_string_lossy().into_owned();
                let expected = format!("{}-{}-{}.{arch}.rpm", hd[0], hd[1], hd[2]);
                if basename != expected {
                    return Err(fault(
                        1000,
                        format!("bad filename: {basename} (expected {expected})"),
                    ));
                }
                if !source && hd[5] != srpmname {
                    return Err(fault(
                        1000,
                        format!(
                            "srpm mismatch for {}: {} (expected {srpmname})",
                            fp.display(),
                            hd[5]
                        ),
                    ));
                }
                if source && basename != srpmname {
                    return Err(fault(
                        1000,
                        format!(
                            "srpm mismatch for {}: {basename} (expected {srpmname})",
                            fp.display()
                        ),
                    ));
                }
                let relpath = format!(
                    "packages/{}/{}/{}/{arch}/{basename}",
                    b.name, b.version, b.release
                );
                imported.push((
                    fp,
                    relpath,
                    hd,
                    arch,
                    brmap.get(rel).and_then(Value::as_i64),
                ));
            }
            let mut logmoves = Vec::new();
            if let Some(l) = logs.as_struct() {
                for (arch, files) in l {
                    for f in files.as_array().unwrap_or_default() {
                        let rel = f.as_str().unwrap_or_default();
                        let fp = work.join(rel);
                        if !fp.exists() {
                            return Err(fault(1000, format!("No such file: {}", fp.display())));
                        }
                        let name = fp.file_name().unwrap().to_string_lossy().into_owned();
                        logmoves.push((
                            fp,
                            arch.clone(),
                            format!(
                                "packages/{}/{}/{}/data/logs/{arch}/{name}",
                                b.name, b.version, b.release
                            ),
                        ));
                    }
                }
            }
            let mut new_rpms = Vec::new();
            for (fp, relpath, hd, arch, br) in imported {
                move_file(&fp, &top.join(&relpath))?;
                let id = db.next() + 100_000;
                new_rpms.push(BuiltRpm {
                    id,
                    name: hd[0].clone(),
                    version: hd[1].clone(),
                    release: hd[2].clone(),
                    epoch: hd[3].parse().ok(),
                    arch,
                    relpath,
                    buildroot_id: br,
                    payloadhash: hd[6].clone(),
                    size: hd[7].parse().unwrap_or(0),
                    buildtime: hd[8].parse().unwrap_or(0),
                });
            }
            let mut newlogs = Vec::new();
            for (fp, arch, rel) in logmoves {
                move_file(&fp, &top.join(&rel))?;
                newlogs.push((arch, rel));
            }
            let b = db.builds.get_mut(&build_id).unwrap();
            b.rpms = new_rpms;
            b.logs = newlogs;
            b.state = COMPLETE;
            Ok(build_value(b, &s.users))
        });
        let b2 = bdb.clone();
        hub.register("host.failBuild", move |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let mut db = b2.lock().unwrap();
            let task_id = int_arg(&a, &kw, 0, "task_id")?;
            let build_id = int_arg(&a, &kw, 1, "build_id")?;
            s.assert_host(task_id, h)?;
            let b = db
                .builds
                .get_mut(&build_id)
                .ok_or_else(|| fault(1000, format!("No such build: {build_id}")))?;
            if b.state != BUILDING {
                return Err(fault(
                    1000,
                    format!(
                        "cannot update build {build_id}, state: {}",
                        build_state_name(b.state)
                    ),
                ));
            }
            b.state = BUILD_FAILED;
            Ok(Value::Nil)
        });
        let top = self.topdir.clone();
        hub.register("host.moveBuildToScratch", move |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let task_id = int_arg(&a, &kw, 0, "task_id")?;
            s.assert_host(task_id, h)?;
            let srpm = arg(&a, &kw, 1, "srpm")
                .and_then(|v| v.as_str().map(str::to_owned))
                .ok_or_else(|| fault(1000, "srpm"))?;
            let rpms: Vec<String> = arg(&a, &kw, 2, "rpms")
                .and_then(|v| {
                    v.as_array().map(|x| {
                        x.iter()
                            .filter_map(|r| r.as_str().map(str::to_owned))
                            .collect()
                    })
                })
                .ok_or_else(|| fault(1000, "rpms"))?;
            let logs = arg(&a, &kw, 3, "logs");
            let work = top.join("work");
            for rel in std::iter::once(&srpm).chain(rpms.iter()) {
                if !work.join(rel).exists() {
                    return Err(fault(
                        1000,
                        format!("No such file: {}", work.join(rel).display()),
                    ));
                }
            }
            let rpms = dedup_noarch(&rpms);
            let owner = s.tasks[&task_id].owner;
            let user = s
                .users
                .get(&owner)
                .map(|u| u.name.clone())
                .unwrap_or_default();
            let dir = top
                .join("scratch")
                .join(user)
                .join(format!("task_{task_id}"));
            for rel in std::iter::once(&srpm).chain(rpms.iter()) {
                let fp = work.join(rel);
                move_file(&fp, &dir.join(fp.file_name().unwrap()))?;
            }
            if let Some(Value::Struct(l)) = logs {
                for (key, files) in l {
                    let logdir = if key.is_empty() {
                        dir.join("logs")
                    } else {
                        dir.join("logs").join(&key)
                    };
                    for f in files.as_array().unwrap_or_default() {
                        let fp = work.join(f.as_str().unwrap_or_default());
                        move_file(&fp, &logdir.join(fp.file_name().unwrap()))?;
                    }
                }
            }
            Ok(Value::Nil)
        });
        let (b2, rdb) = (bdb.clone(), self.repos.db.clone());
        hub.register("getBuild", move |s, _, a, kw| {
            let db = b2.lock().unwrap();
            let _ = &rdb;
            let info = arg(&a, &kw, 0, "buildInfo").unwrap_or_default();
            let strict = arg(&a, &kw, 1, "strict").is_some_and(|v| v.truthy());
            match find_build(&db, &info) {
                Some(id) => Ok(build_value(&db.builds[&id], &s.users)),
                None if strict => Err(fault(1000, format!("No such build: {info}"))),
                None => Ok(Value::Nil),
            }
        });
        let b2 = bdb.clone();
        hub.register("listBuilds", move |s, _, _, kw| {
            let db = b2.lock().unwrap();
            let task = kw.get("taskID").and_then(Value::as_i64);
            Ok(Value::Array(
                db.builds
                    .values()
                    .filter(|b| task.is_none_or(|t| b.task_id == Some(t)))
                    .map(|b| build_value(b, &s.users))
                    .collect(),
            ))
        });
        let (b2, rdb, top) = (bdb.clone(), self.repos.db.clone(), self.topdir.clone());
        hub.register("host.tagBuild", move |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let mut rdb = rdb.lock().unwrap();
            let mut db = b2.lock().unwrap();
            let task_id = int_arg(&a, &kw, 0, "task_id")?;
            s.assert_host(task_id, h)?;
            let tag = arg(&a, &kw, 1, "tag").unwrap_or_default();
            let build = arg(&a, &kw, 2, "build").unwrap_or_default();
            let bid = find_build(&db, &build)
                .ok_or_else(|| fault(1000, format!("No such build: {build}")))?;
            let tid =
                tag_id(&rdb, &tag).ok_or_else(|| fault(1000, format!("No such tagInfo: {tag}")))?;
            let b = db.builds[&bid].clone();
            let in_list = lineage(&rdb, tid)
                .iter()
                .find_map(|t| {
                    db.packages
                        .iter()
                        .find(|p| p.tag_id == *t && p.name == b.name)
                })
                .cloned();
            match in_list {
                None => {
                    return Err(fault(
                        1003,
                        format!("Package {} not in list for {tag}", b.name),
                    ))
                }
                Some(p) if p.blocked => {
                    return Err(fault(1003, format!("Package {} blocked in {tag}", b.name)))
                }
                _ => {}
            }
            if b.state != COMPLETE {
                return Err(fault(
                    1003,
                    format!(
                        "build {} not complete: state {}",
                        b.nvr(),
                        build_state_name(b.state)
                    ),
                ));
            }
            if db.tagged.iter().any(|(t, x, _)| *t == tid && *x == bid) {
                return Err(fault(
                    1003,
                    format!("build {} already tagged ({})", b.nvr(), tag_name(&rdb, tid)),
                ));
            }
            rdb.event += 1;
            let ev = rdb.event;
            db.tagged.push((tid, bid, ev));
            db.tag_changes.insert(tid, ev);
            // the tag's next repo lists the build's rpms
            let name = tag_name(&rdb, tid);
            let _ = (&top, &name);
            let t = rdb.tags.get_mut(&tid).unwrap();
            for r in &b.rpms {
                t.rpms.push(TaggedRpm {
                    id: r.id,
                    build_id: b.id,
                    build_name: b.name.clone(),
                    name: r.name.clone(),
                    version: r.version.clone(),
                    release: r.release.clone(),
                    epoch: r.epoch,
                    arch: r.arch.clone(),
                    payloadhash: r.payloadhash.clone(),
                    size: r.size,
                    buildtime: r.buildtime,
                    relpath: r.relpath.clone(),
                });
            }
            Ok(Value::Nil)
        });
        let b2 = bdb.clone();
        hub.register("host.tagNotification", move |s, ctx, a, kw| {
            s.verify_host(ctx)?;
            let mut db = b2.lock().unwrap();
            let ok = arg(&a, &kw, 0, "is_successful").is_some_and(|v| v.truthy());
            db.notifications.push(Notification {
                ok,
                tag: arg(&a, &kw, 1, "tag_id").unwrap_or_default(),
                build: arg(&a, &kw, 3, "build_id").unwrap_or_default(),
                user: arg(&a, &kw, 4, "user_id").unwrap_or_default(),
                msg: arg(&a, &kw, 6, "failure_msg").and_then(|v| v.as_str().map(str::to_owned)),
            });
            Ok(Value::Nil)
        });
        // the realhub's channels: 1 default, 2 createrepo (by id or name)
        hub.register("getChannel", move |_, _, a, kw| {
            let info = arg(&a, &kw, 0, "channelInfo").unwrap_or_default();
            let strict = arg(&a, &kw, 1, "strict").is_some_and(|v| v.truthy());
            let found = [(1, "default"), (2, "createrepo")]
                .into_iter()
                .find(|(id, name)| match &info {
                    Value::Int(i) => i == id,
                    Value::String(n) => n == name,
                    _ => false,
                });
            match found {
                Some((id, name)) => Ok(Value::struct_from([
                    ("id", Value::Int(id)),
                    ("name", Value::from(name)),
                    ("description", Value::Nil),
                    ("enabled", Value::Bool(true)),
                    ("comment", Value::Nil),
                ])),
                None if strict => Err(fault(1000, format!("No such channel: {info}"))),
                None => Ok(Value::Nil),
            }
        });
        hub.register("getUser", move |s, _, a, kw| {
            let info = arg(&a, &kw, 0, "userInfo").unwrap_or_default();
            let u = s.users.values().find(|u| match &info {
                Value::Int(i) => u.id == *i,
                Value::String(n) => &u.name == n,
                _ => false,
            });
            Ok(u.map_or(Value::Nil, |u| {
                Value::struct_from([
                    ("id", Value::Int(u.id)),
                    ("name", Value::from(u.name.as_str())),
                    ("status", Value::Int(0)),
                    ("usertype", Value::Int(0)),
                ])
            }))
        });
    }
}

/// `check_noarch_rpms` without the rpmdiff: identical noarch file names are imported
/// once.
fn dedup_noarch(rpms: &[String]) -> Vec<String> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for r in rpms {
        if r.ends_with(".noarch.rpm") {
            let base = r.rsplit('/').next().unwrap_or(r).to_owned();
            if seen.contains(&base) {
                continue;
            }
            seen.push(base);
        }
        out.push(r.clone());
    }
    out
}

/// `BuildRoot.assertHost` / `assertTask` (and the task's `assertHost`).
fn check_br(
    s: &State,
    host: i64,
    id: i64,
    task_id: Option<i64>,
) -> Result<(), koji_adjutant::xmlrpc::Fault> {
    if let Some(t) = task_id {
        s.assert_host(t, host)?;
    }
    let b = s
        .buildroots
        .get(&id)
        .ok_or_else(|| fault(1000, format!("no buildroot with ID: {id}")))?;
    if b.host_id != host {
        return Err(fault(
            1004,
            format!("Host {host} not owner of buildroot {id}"),
        ));
    }
    if let Some(t) = task_id {
        if b.task_id != Some(t) {
            return Err(fault(
                1004,
                format!("Task {t} does not have lock on buildroot {id}"),
            ));
        }
    }
    Ok(())
}

fn repo_value(rdb: &RepoDb, id: i64) -> Value {
    let r = &rdb.repos[&id];
    Value::struct_from([
        ("id", Value::Int(r.id)),
        ("tag_id", Value::Int(r.tag_id)),
        ("tag_name", Value::from(tag_name(rdb, r.tag_id))),
        ("state", Value::Int(r.state)),
        ("create_event", Value::Int(r.create_event)),
        ("create_ts", Value::Double(r.creation_ts)),
        ("dist", Value::Bool(false)),
        ("opts", r.opts.clone()),
        ("custom_opts", r.custom_opts.clone()),
        ("task_id", r.task_id.map_or(Value::Nil, Value::Int)),
    ])
}

fn request_value(rdb: &RepoDb, r: &RepoRequest) -> Value {
    Value::struct_from([
        ("id", Value::Int(r.id)),
        ("tag_id", Value::Int(r.tag_id)),
        ("tag_name", Value::from(tag_name(rdb, r.tag_id))),
        ("min_event", r.min_event.map_or(Value::Nil, Value::Int)),
        ("at_event", Value::Nil),
        ("opts", Value::new_struct()),
        ("active", Value::Bool(r.active)),
        ("task_id", r.task_id.map_or(Value::Nil, Value::Int)),
        ("task_state", Value::Nil),
        ("repo_id", r.repo_id.map_or(Value::Nil, Value::Int)),
        ("tries", Value::Int(r.tries)),
        ("priority", Value::Int(20)),
    ])
}

/// Is the task OPEN?
pub fn is_open(s: &State, task: i64) -> bool {
    s.tasks.get(&task).is_some_and(|t| t.state == OPEN)
}
