//! newRepo and createrepo against the fake hub, end to end through the daemon loop:
//! the hub writes repo skeletons into its temp topdir (as `host.repoInit` does), the
//! daemon runs the tasks with the host's createrepo_c/mergerepo_c, and `host.repoDone`
//! moves the uploaded repodata into place. The repodata is then read back with an XML
//! parser. Needs `createrepo_c`, `mergerepo_c`, `rpm` and `rpmbuild` on the host (all
//! installed by tests/setup-host.sh).

mod buildroot_common;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use koji_adjutant::daemon::{default_handlers, HandlerRegistry};
use koji_adjutant::repo::{ContainerRepoTool, RepoTool};
use koji_adjutant::tasks::createrepo::Createrepo;
use koji_adjutant::xmlrpc::{encode_args, MethodResponse, Struct, Value};
use support::fakehub::{self, FakeHub, CLOSED, FAILED, FREE};
use support::fakerepos::{FakeRepos, REPO_INIT, REPO_READY};
use support::repodata::{build_rpm, nas, packages, plain_repo, repomd};
use support::{config, spawn, wait_until, Running};

struct Env {
    hub: FakeHub,
    repos: FakeRepos,
    dir: tempfile::TempDir,
    d: Option<Running>,
}

impl Env {
    async fn start(extra: &str) -> Env {
        Env::start_with(extra, None).await
    }

    async fn start_with(extra: &str, handlers: Option<HandlerRegistry>) -> Env {
        let hub = FakeHub::start(1).await;
        let repos = FakeRepos::install(&hub);
        let dir = tempfile::tempdir().unwrap();
        let conf = format!("topdir = {}\n{extra}", hub.topdir().display());
        let d = spawn(config(&hub.url(), 1, dir.path(), &conf), handlers).await;
        Env {
            hub,
            repos,
            dir,
            d: Some(d),
        }
    }

    /// A directory for test rpms.
    fn pkgdir(&self) -> PathBuf {
        let p = self.dir.path().join("pkgs");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A newRepo task as the hub's repo queue makes it (`[{id, name}, {opts, __starstar}]`).
    fn new_repo(&self, tag: i64, name: &str) -> i64 {
        let mut kw = Struct::new();
        kw.insert("opts".into(), Value::new_struct());
        let args = encode_args(
            vec![Value::struct_from([
                ("id", Value::Int(tag)),
                ("name", Value::from(name)),
            ])],
            kw,
        );
        self.hub.make_task("newRepo", args)
    }

    async fn finish(&self, task: i64) -> i64 {
        wait_until("task finished", || {
            matches!(self.hub.task(task).state, CLOSED | FAILED)
        })
        .await;
        self.hub.task(task).state
    }

    /// Run a newRepo task to CLOSED; returns (repo_id, event_id).
    async fn regen(&self, tag: i64, name: &str) -> (i64, i64) {
        let t = self.new_repo(tag, name);
        let st = self.finish(t).await;
        assert_eq!(st, CLOSED, "newRepo failed: {:?}", self.hub.result(t));
        match self.hub.result(t) {
            Some(MethodResponse::Params(p)) => match p.as_slice() {
                [Value::Array(a)] => match a.as_slice() {
                    [Value::Int(r), Value::Int(e)] => (*r, *e),
                    _ => panic!("newRepo result is not [repo_id, event_id]: {a:?}"),
                },
                _ => panic!("newRepo result: {p:?}"),
            },
            other => panic!("newRepo result: {other:?}"),
        }
    }

    fn children(&self, parent: i64) -> Vec<fakehub::Task> {
        self.hub.with(|s| {
            s.tasks
                .values()
                .filter(|t| t.parent == Some(parent))
                .cloned()
                .collect()
        })
    }

    fn last_task(&self, method: &str) -> fakehub::Task {
        self.hub.with(|s| {
            s.tasks
                .values()
                .filter(|t| t.method == method)
                .max_by_key(|t| t.id)
                .cloned()
                .expect("no such task")
        })
    }

    fn arch_dir(&self, repo: i64, arch: &str) -> PathBuf {
        self.repos.repo_path(repo).join(arch)
    }

    fn uploaded_text(&self, task: i64, name: &str) -> String {
        let rel = format!("{}/{name}", koji_adjutant::hub::taskrelpath(task));
        String::from_utf8(
            fakehub::read_uploaded(&self.hub, &rel)
                .unwrap_or_else(|| panic!("{rel} was not uploaded")),
        )
        .unwrap()
    }

    async fn stop(mut self) {
        if let Some(d) = self.d.take() {
            d.stop().await;
        }
        // every task workdir was removed
        let work = self.dir.path().join("work-1/tasks");
        let left: Vec<_> = walk(&work);
        assert!(left.is_empty(), "left behind in the workdir: {left:?}");
    }
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                let sub = walk(&path);
                // a task's bucket directory (tasks/N) may stay, as with kojid
                out.extend(sub);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn koji_only_dep() -> PathBuf {
    adjutant_testkit::fixtures_dir().join("rpms/koji-only-dep-1.0-1.noarch.rpm")
}

fn createrepo_result(v: &MethodResponse) -> (String, Vec<String>) {
    let MethodResponse::Params(p) = v else {
        panic!("createrepo failed: {v:?}")
    };
    let [Value::Array(pair)] = p.as_slice() else {
        panic!("createrepo result: {p:?}")
    };
    let [Value::String(path), Value::Array(files)] = pair.as_slice() else {
        panic!("createrepo result: {pair:?}")
    };
    (
        path.clone(),
        files
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_repo_is_ready_and_marked_empty() {
    let e = Env::start("").await;
    let tag = e.repos.add_tag("empty-build", Some("x86_64"));
    let (repo_id, event_id) = e.regen(tag, "empty-build").await;
    let r = e.repos.repo(repo_id);
    assert_eq!(r.state, REPO_READY);
    assert_eq!(r.create_event, event_id);
    let parent = e.last_task("newRepo");
    assert_eq!(parent.weight, 0.1);
    let kids = e.children(parent.id);
    assert_eq!(kids.len(), 1);
    let c = &kids[0];
    assert_eq!(c.method, "createrepo");
    assert_eq!(c.label.as_deref(), Some("x86_64"));
    assert_eq!(c.arch, "noarch");
    assert_eq!(c.weight, 1.5);
    // the request is [repo_id, arch, oldrepo] with no old repo
    let req = koji_adjutant::xmlrpc::decode_call(c.request.as_bytes()).unwrap();
    assert_eq!(
        req.params,
        vec![Value::Int(repo_id), Value::from("x86_64"), Value::Nil]
    );
    let (path, files) = createrepo_result(&e.hub.result(c.id).unwrap());
    assert_eq!(path, koji_adjutant::hub::taskrelpath(c.id));
    assert!(files.contains(&"repomd.xml".to_string()), "{files:?}");
    assert!(files.contains(&"EMPTY_REPO".to_string()), "{files:?}");
    // repoDone moved every file into <arch>/repodata
    let arch = e.arch_dir(repo_id, "x86_64");
    for f in &files {
        assert!(arch.join("repodata").join(f).is_file(), "{f} not moved");
    }
    assert_eq!(
        std::fs::read_to_string(arch.join("repodata/EMPTY_REPO")).unwrap(),
        "This repo is empty because its tag has no content for this arch\n"
    );
    assert!(packages(&arch).is_empty());
    // comps (always written by repoInit) became the group metadata
    assert!(repomd(&arch).iter().any(|r| r.kind == "group"));
    // createrepo.log was uploaded, starting with the command as kojid writes it
    let log = e.uploaded_text(c.id, "createrepo.log");
    let first = log.lines().next().unwrap();
    assert!(first.starts_with("$ /"), "{first}");
    assert!(
        first.contains("createrepo_c --error-exit-val -vd -o "),
        "{first}"
    );
    assert!(
        !first.contains(" -i "),
        "an empty pkglist is not passed: {first}"
    );
    assert!(!first.contains("--update"), "{first}");
    // the latest symlink points at it
    assert_eq!(
        std::fs::read_link(e.hub.topdir().join("repos/empty-build/latest")).unwrap(),
        PathBuf::from(repo_id.to_string())
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_with_packages_and_comps_for_two_arches() {
    let e = Env::start("").await;
    let pk = e.pkgdir();
    let tag = e.repos.add_tag("dist-build", Some("x86_64 aarch64"));
    let files = vec![
        koji_only_dep(),
        build_rpm(&pk, "archpkg", "1.0", "x86_64"),
        build_rpm(&pk, "archpkg", "1.0", "aarch64"),
        build_rpm(&pk, "blockedpkg", "1.0", "noarch"),
        adjutant_testkit::fixtures_dir().join("srpms/hello-1.0-1.src.rpm"),
    ];
    e.repos.tag_rpms(tag, &files);
    e.repos.block(tag, "blockedpkg");
    e.repos
        .add_group(tag, "build", &["bash", "koji-only-dep", "archpkg"]);
    let (repo_id, _) = e.regen(tag, "dist-build").await;
    let parent = e.last_task("newRepo");
    let mut labels: Vec<String> = e
        .children(parent.id)
        .iter()
        .map(|c| c.label.clone().unwrap())
        .collect();
    labels.sort();
    assert_eq!(labels, vec!["aarch64", "x86_64"]);
    let x86 = e.arch_dir(repo_id, "x86_64");
    let arm = e.arch_dir(repo_id, "aarch64");
    // noarch in both, arch packages in theirs, no src (opts.src off), nothing blocked
    assert_eq!(nas(&x86), vec!["archpkg.x86_64", "koji-only-dep.noarch"]);
    assert_eq!(nas(&arm), vec!["archpkg.aarch64", "koji-only-dep.noarch"]);
    for dir in [&x86, &arm] {
        assert!(!dir.join("repodata/EMPTY_REPO").exists());
        for p in packages(dir) {
            // relative hrefs through toplink, so the repo can be served from topurl
            assert!(p.href.starts_with("toplink/packages/"), "{}", p.href);
            assert!(dir.join(&p.href).is_file(), "{} does not resolve", p.href);
        }
        let kinds: Vec<String> = repomd(dir).into_iter().map(|r| r.kind).collect();
        for k in [
            "primary",
            "filelists",
            "other",
            "primary_db",
            "group",
            "group_gz",
        ] {
            assert!(kinds.contains(&k.to_string()), "{k} missing: {kinds:?}");
        }
        // the group metadata is the tag's comps
        let group = repomd(dir).into_iter().find(|r| r.kind == "group").unwrap();
        let comps = std::fs::read_to_string(dir.join(group.href)).unwrap();
        assert!(comps.contains("<packagereq type=\"mandatory\">koji-only-dep</packagereq>"));
    }
    let x86_task = e
        .children(parent.id)
        .into_iter()
        .find(|c| c.label.as_deref() == Some("x86_64"))
        .unwrap();
    let log = e.uploaded_text(x86_task.id, "createrepo.log");
    let first = log.lines().next().unwrap();
    let comps = e.repos.repo_path(repo_id).join("groups/comps.xml");
    assert!(
        first.ends_with(&format!(
            " -i {}/pkglist -g {} {}",
            x86.display(),
            comps.display(),
            x86.display()
        )),
        "{first}"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_mode_from_own_old_repo_then_parent_then_hint() {
    let e = Env::start("").await;
    let pk = e.pkgdir();
    let base = e.repos.add_tag("base", Some("x86_64"));
    // first repo is empty; the next one updates from it and must not stay "EMPTY"
    let (first, _) = e.regen(base, "base").await;
    e.repos.tag_rpms(base, &[koji_only_dep()]);
    let (second, _) = e.regen(base, "base").await;
    let c = e.last_task("createrepo");
    let req = koji_adjutant::xmlrpc::decode_call(c.request.as_bytes()).unwrap();
    assert_eq!(req.params[2].get("id"), Some(&Value::Int(first)));
    assert_eq!(req.params[2].get("tag_id"), Some(&Value::Int(base)));
    let log = e.uploaded_text(c.id, "createrepo.log");
    assert!(
        log.lines()
            .next()
            .unwrap()
            .contains(" --update --skip-stat "),
        "{log}"
    );
    let dir2 = e.arch_dir(second, "x86_64");
    assert_eq!(nas(&dir2), vec!["koji-only-dep.noarch"]);
    assert!(!dir2.join("repodata/EMPTY_REPO").exists());

    // a third repo reuses the second's entries and adds the new package
    e.repos
        .tag_rpms(base, &[build_rpm(&pk, "newpkg", "2.0", "noarch")]);
    let (third, _) = e.regen(base, "base").await;
    let c = e.last_task("createrepo");
    assert_eq!(
        koji_adjutant::xmlrpc::decode_call(c.request.as_bytes())
            .unwrap()
            .params[2]
            .get("id"),
        Some(&Value::Int(second))
    );
    assert_eq!(
        nas(&e.arch_dir(third, "x86_64")),
        vec!["koji-only-dep.noarch", "newpkg.noarch"]
    );

    // a child tag without a repo of its own updates from its parent's
    let child = e.repos.add_tag("child", Some("x86_64"));
    e.repos.add_parent(child, base, 10);
    let (crepo, _) = e.regen(child, "child").await;
    let c = e.last_task("createrepo");
    let old = &koji_adjutant::xmlrpc::decode_call(c.request.as_bytes())
        .unwrap()
        .params[2];
    assert_eq!(old.get("id"), Some(&Value::Int(third)));
    assert_eq!(old.get("tag_id"), Some(&Value::Int(base)));
    assert!(e.uploaded_text(c.id, "createrepo.log").contains("--update"));
    assert_eq!(
        nas(&e.arch_dir(crepo, "x86_64")),
        vec!["koji-only-dep.noarch", "newpkg.noarch"]
    );

    // a hint wins over the inheritance
    let other = e.repos.add_tag("other", Some("x86_64"));
    e.repos.tag_rpms(other, &[koji_only_dep()]);
    let (orepo, _) = e.regen(other, "other").await;
    let hinted = e.repos.add_tag("hinted", Some("x86_64"));
    e.repos.add_parent(hinted, base, 10);
    e.repos.set_extra(
        hinted,
        "repo.oldrepo_hint",
        Value::Array(vec![Value::from("no-such-tag"), Value::from("other")]),
    );
    e.repos.tag_rpms(hinted, &[koji_only_dep()]);
    e.regen(hinted, "hinted").await;
    let c = e.last_task("createrepo");
    let old = &koji_adjutant::xmlrpc::decode_call(c.request.as_bytes())
        .unwrap()
        .params[2];
    assert_eq!(old.get("id"), Some(&Value::Int(orepo)));
    assert_eq!(old.get("tag_id"), Some(&Value::Int(other)));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_update_when_createrepo_update_is_off() {
    let e = Env::start("createrepo_update = False\ncreaterepo_skip_stat = False").await;
    let tag = e.repos.add_tag("plain", Some("x86_64"));
    e.repos.tag_rpms(tag, &[koji_only_dep()]);
    e.regen(tag, "plain").await;
    let (r2, _) = e.regen(tag, "plain").await;
    let c = e.last_task("createrepo");
    let req = koji_adjutant::xmlrpc::decode_call(c.request.as_bytes()).unwrap();
    assert_eq!(req.params[2], Value::Nil, "no old repo is looked up");
    assert!(!e.uploaded_text(c.id, "createrepo.log").contains("--update"));
    assert_eq!(nas(&e.arch_dir(r2, "x86_64")), vec!["koji-only-dep.noarch"]);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_old_repodata_clones_an_equivalent_repo_per_arch() {
    let e = Env::start("copy_old_repodata = True").await;
    let pk = e.pkgdir();
    let tag = e.repos.add_tag("stable", Some("x86_64 aarch64"));
    e.repos.tag_rpms(
        tag,
        &[koji_only_dep(), build_rpm(&pk, "archpkg", "1.0", "aarch64")],
    );
    e.repos.add_group(tag, "build", &["bash"]);
    let (first, _) = e.regen(tag, "stable").await;
    let creates_before = e.hub.calls_of("host.subtask").len();
    let (second, _) = e.regen(tag, "stable").await;
    let parent = e.last_task("newRepo");
    assert!(
        e.children(parent.id).is_empty(),
        "an equivalent repo is copied, not recreated"
    );
    assert_eq!(e.hub.calls_of("host.subtask").len(), creates_before);
    assert_eq!(e.repos.repo(second).state, REPO_READY);
    for arch in ["x86_64", "aarch64"] {
        let (a, b) = (e.arch_dir(first, arch), e.arch_dir(second, arch));
        let list = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d.join("repodata"))
                .unwrap()
                .map(|x| x.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(list(&a), list(&b), "{arch}");
        assert_eq!(
            std::fs::read(a.join("repodata/repomd.xml")).unwrap(),
            std::fs::read(b.join("repodata/repomd.xml")).unwrap(),
            "{arch}: each arch got its own repomd.xml"
        );
        assert_eq!(nas(&a), nas(&b));
    }
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(e.repos.repo_path(second).join("repo.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["cloned_from_repo_id"], serde_json::json!(first));
    let mut archs: Vec<String> = json["cloned_archs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    archs.sort();
    assert_eq!(archs, vec!["aarch64", "x86_64"]);

    // a change in one arch's content: that arch is recreated, the other copied
    e.repos
        .tag_rpms(tag, &[build_rpm(&pk, "x86only", "1.0", "x86_64")]);
    let (third, _) = e.regen(tag, "stable").await;
    let parent = e.last_task("newRepo");
    let kids = e.children(parent.id);
    assert_eq!(kids.len(), 1);
    assert_eq!(kids[0].label.as_deref(), Some("x86_64"));
    assert_eq!(
        nas(&e.arch_dir(third, "x86_64")),
        vec!["koji-only-dep.noarch", "x86only.x86_64"]
    );
    assert_eq!(
        nas(&e.arch_dir(third, "aarch64")),
        vec!["archpkg.aarch64", "koji-only-dep.noarch"]
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(e.repos.repo_path(third).join("repo.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["cloned_archs"], serde_json::json!(["aarch64"]));
    e.stop().await;
}

/// An external repo at `<dir>/<arch>/` with these rpms.
fn external_repo(dir: &Path, arch: &str, rpms: &[PathBuf]) {
    let d = dir.join(arch);
    std::fs::create_dir_all(&d).unwrap();
    for r in rpms {
        std::fs::copy(r, d.join(r.file_name().unwrap())).unwrap();
    }
    plain_repo(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_repos_are_merged_in_the_tags_mode() {
    let e = Env::start("").await;
    let pk = e.pkgdir();
    let ext = e.dir.path().join("ext");
    // the external repo has a newer koji-only-dep (koji mode: the tag's own wins), a
    // package of its own, and a package the tag blocks
    let ext_rpms = vec![
        build_rpm(&pk, "koji-only-dep", "9.0", "noarch"),
        build_rpm(&pk, "extpkg", "1.0", "noarch"),
        build_rpm(&pk, "blockedpkg", "1.0", "noarch"),
    ];
    external_repo(&ext, "x86_64", &ext_rpms);
    let url = format!("file://{}/$arch/", ext.display());

    // koji mode
    let koji = e.repos.add_tag("with-ext", Some("x86_64"));
    e.repos.tag_rpms(koji, &[koji_only_dep()]);
    e.repos.block(koji, "blockedpkg");
    e.repos.add_external_repo(koji, "ext", &url, "koji", None);
    // an external repo for other arches only is skipped
    e.repos.add_external_repo(
        koji,
        "elsewhere",
        "file:///nonexistent/",
        "koji",
        Some("ppc64le"),
    );
    let (r, _) = e.regen(koji, "with-ext").await;
    let dir = e.arch_dir(r, "x86_64");
    let pkgs = packages(&dir);
    let got: Vec<(String, String)> = pkgs
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("extpkg".to_string(), "1.0".to_string()),
            ("koji-only-dep".to_string(), "1.0".to_string())
        ]
    );
    let kinds: Vec<String> = repomd(&dir).into_iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&"origin".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"group".to_string()), "{kinds:?}");
    let c = e.last_task("createrepo");
    let log = e.uploaded_text(c.id, "mergerepos.log");
    let first = log.lines().next().unwrap();
    assert!(first.contains("mergerepo_c --koji -b "), "{first}");
    assert!(first.contains(" --arch-expand "), "{first}");
    assert!(
        first.contains(&format!(
            "-r file://{}/ -r file://{}/x86_64/",
            e.dir
                .path()
                .join("work-1")
                .join(koji_adjutant::hub::taskrelpath(c.id))
                .join(format!("repo_{r}_premerge"))
                .display(),
            ext.display()
        )),
        "{first}"
    );
    assert!(!first.contains("nonexistent"), "{first}");
    assert!(!dir.join("repodata/EMPTY_REPO").exists());

    // bare mode: everything from every repo, blocklist not applied
    let bare = e.repos.add_tag("bare", Some("x86_64"));
    e.repos.tag_rpms(bare, &[koji_only_dep()]);
    e.repos.block(bare, "blockedpkg");
    e.repos.add_external_repo(bare, "ext", &url, "bare", None);
    let (r, _) = e.regen(bare, "bare").await;
    let got: Vec<(String, String)> = packages(&e.arch_dir(r, "x86_64"))
        .into_iter()
        .map(|p| (p.name, p.version))
        .collect();
    assert_eq!(
        got,
        vec![
            ("blockedpkg".to_string(), "1.0".to_string()),
            ("extpkg".to_string(), "1.0".to_string()),
            ("koji-only-dep".to_string(), "1.0".to_string()),
            ("koji-only-dep".to_string(), "9.0".to_string())
        ]
    );
    let c = e.last_task("createrepo");
    assert!(e
        .uploaded_text(c.id, "mergerepos.log")
        .lines()
        .next()
        .unwrap()
        .contains("mergerepo_c --pkgorigins --all -a x86_64"));

    // simple mode, and an empty tag whose content comes only from the external repo
    let simple = e.repos.add_tag("simple", Some("x86_64"));
    e.repos
        .add_external_repo(simple, "ext", &url, "simple", None);
    let (r, _) = e.regen(simple, "simple").await;
    let dir = e.arch_dir(r, "x86_64");
    assert_eq!(
        nas(&dir),
        vec!["blockedpkg.noarch", "extpkg.noarch", "koji-only-dep.noarch"]
    );
    assert!(
        !dir.join("repodata/EMPTY_REPO").exists(),
        "a merged repo is not marked empty"
    );
    let c = e.last_task("createrepo");
    assert!(e
        .uploaded_text(c.id, "mergerepos.log")
        .contains("mergerepo_c --koji --simple -b "));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_merge_modes_fail_the_repo() {
    let e = Env::start("").await;
    let tag = e.repos.add_tag("mixed", Some("x86_64"));
    e.repos.tag_rpms(tag, &[koji_only_dep()]);
    e.repos
        .add_external_repo(tag, "a", "file:///nonexistent/a/", "koji", None);
    e.repos
        .add_external_repo(tag, "b", "file:///nonexistent/b/", "bare", None);
    let t = e.new_repo(tag, "mixed");
    assert_eq!(e.finish(t).await, FAILED);
    let c = e.last_task("createrepo");
    assert_eq!(c.state, FAILED);
    let child_fault = match e.hub.result(c.id) {
        Some(MethodResponse::Fault(f)) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(child_fault.code, 1000);
    assert_eq!(
        child_fault.string,
        "Found multiple merge modes for external repos: dict_keys(['koji', 'bare'])\n"
    );
    // the parent fails with the child's fault (failany), the repo stays INIT
    assert_eq!(
        e.hub.result(t),
        Some(MethodResponse::Fault(child_fault.clone()))
    );
    let repo = e.repos.repos_of(tag)[0].clone();
    assert_eq!(repo.state, REPO_INIT);
    // createrepo.log was still uploaded
    assert!(e.uploaded_text(c.id, "createrepo.log").starts_with("$ "));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn createrepo_failure_reports_kojids_message_and_log() {
    let e = Env::start("").await;
    let tag = e.repos.add_tag("broken", Some("x86_64"));
    e.repos.tag_rpms(tag, &[koji_only_dep()]);
    let (r, _) = e.regen(tag, "broken").await;
    // a createrepo for a READY repo fails: kojid's INIT check
    let t = e.hub.make_task(
        "createrepo",
        vec![Value::Int(r), Value::from("x86_64"), Value::Nil],
    );
    assert_eq!(e.finish(t).await, FAILED);
    match e.hub.result(t) {
        Some(MethodResponse::Fault(f)) => {
            assert_eq!(f.code, 1000);
            assert_eq!(f.string, format!("Repo {r} not in INIT state (got 1)"));
        }
        other => panic!("{other:?}"),
    }
    // a pkglist naming a missing rpm makes createrepo_c fail
    e.repos
        .with_db(|db| db.repos.get_mut(&r).unwrap().state = REPO_INIT);
    let pkglist = e.arch_dir(r, "x86_64").join("pkglist");
    std::fs::write(
        &pkglist,
        "toplink/packages/nope/1/1/noarch/nope-1-1.noarch.rpm\n",
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(e.arch_dir(r, "x86_64").join("repodata"));
    let t = e.hub.make_task(
        "createrepo",
        vec![Value::Int(r), Value::from("x86_64"), Value::Nil],
    );
    assert_eq!(e.finish(t).await, FAILED);
    match e.hub.result(t) {
        Some(MethodResponse::Fault(f)) => {
            assert_eq!(f.code, 1000);
            assert!(
                f.string.starts_with("failed to create repo: /"),
                "{}",
                f.string
            );
            assert!(f.string.contains("exited with status"), "{}", f.string);
        }
        other => panic!("{other:?}"),
    }
    assert!(e
        .uploaded_text(t, "createrepo.log")
        .contains("nope-1-1.noarch.rpm"));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topdir_is_refused_not_failed() {
    let hub = FakeHub::start(1).await;
    let repos = FakeRepos::install(&hub);
    let dir = tempfile::tempdir().unwrap();
    // this builder's topdir is not the hub's: nothing mounted there
    let unmounted = dir.path().join("mnt-koji");
    std::fs::create_dir_all(&unmounted).unwrap();
    let conf = format!("topdir = {}", unmounted.display());
    let d = spawn(config(&hub.url(), 1, dir.path(), &conf), None).await;
    let tag = repos.add_tag("dist-build", Some("x86_64"));
    let mut kw = Struct::new();
    kw.insert("opts".into(), Value::new_struct());
    let t = hub.make_task(
        "newRepo",
        encode_args(
            vec![Value::struct_from([
                ("id", Value::Int(tag)),
                ("name", Value::from("dist-build")),
            ])],
            kw,
        ),
    );
    wait_until("newRepo refused", || {
        hub.with(|s| s.refusals.iter().any(|r| r.0 == t))
    })
    .await;
    let r = hub.with(|s| s.refusals.iter().find(|r| r.0 == t).cloned().unwrap());
    assert_eq!(
        r,
        (
            t,
            1,
            true,
            format!("No access to repos dir {}/repos", unmounted.display())
        )
    );
    let task = hub.task(t);
    assert_eq!(task.state, FREE, "refused, not failed");
    assert!(task.result.is_none());
    assert!(
        hub.calls_of("host.repoInit").is_empty(),
        "nothing was created on the hub"
    );
    // a createrepo subtask taken by such a host is refused the same way
    repos.with_db(|db| {
        db.repos.insert(
            1,
            support::fakerepos::FakeRepo {
                id: 1,
                tag_id: tag,
                state: REPO_INIT,
                create_event: 1,
                opts: Value::new_struct(),
                custom_opts: Value::new_struct(),
                task_id: Some(t),
                creation_ts: 0.0,
            },
        );
    });
    let c = hub.make_task(
        "createrepo",
        vec![Value::Int(1), Value::from("x86_64"), Value::Nil],
    );
    wait_until("createrepo refused", || {
        hub.with(|s| s.refusals.iter().any(|r| r.0 == c))
    })
    .await;
    let r = hub.with(|s| s.refusals.iter().find(|r| r.0 == c).cloned().unwrap());
    assert!(r.2, "soft");
    assert!(r.3.starts_with("No access to repos dir"), "{}", r.3);
    assert_eq!(hub.task(c).state, FREE);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_options_become_repo_opts() {
    let e = Env::start("").await;
    let tag = e.repos.add_tag("with-src", Some("x86_64"));
    e.repos.tag_rpms(
        tag,
        &[
            koji_only_dep(),
            adjutant_testkit::fixtures_dir().join("srpms/koji-only-dep-1.0-1.src.rpm"),
        ],
    );
    // the old newRepo API: newRepo(tag, event=None, src=True) by name
    let mut kw = Struct::new();
    kw.insert("src".into(), Value::Bool(true));
    let t = e
        .hub
        .make_task("newRepo", encode_args(vec![Value::from("with-src")], kw));
    assert_eq!(e.finish(t).await, CLOSED, "{:?}", e.hub.result(t));
    let init = e.hub.calls_of("host.repoInit").pop().unwrap();
    let (_, kwargs) = koji_adjutant::xmlrpc::decode_args(init.params.clone());
    assert_eq!(
        kwargs.get("opts"),
        Some(&Value::struct_from([("src", Value::Bool(true))]))
    );
    assert_eq!(kwargs.get("task_id"), Some(&Value::Int(t)));
    assert!(!kwargs.contains_key("event"), "no event unless given");
    let repo = e.repos.repos_of(tag)[0].id;
    assert_eq!(
        nas(&e.arch_dir(repo, "x86_64")),
        vec!["koji-only-dep.noarch", "koji-only-dep.src"]
    );
    // legacy options and opts together: ParameterError, before anything is created
    let mut kw = Struct::new();
    kw.insert("debuginfo".into(), Value::Bool(false));
    kw.insert("opts".into(), Value::new_struct());
    let calls = e.hub.calls_of("host.repoInit").len();
    let bad = e
        .hub
        .make_task("newRepo", encode_args(vec![Value::from("with-src")], kw));
    assert_eq!(e.finish(bad).await, FAILED);
    match e.hub.result(bad) {
        Some(MethodResponse::Fault(f)) => {
            assert_eq!(f.code, 1019);
            assert_eq!(
                f.string,
                "opts parameter cannot be combined with legacy options"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.hub.calls_of("host.repoInit").len(), calls);
    // an explicit event is passed to getTag and repoInit
    let mut kw = Struct::new();
    kw.insert("event".into(), Value::Int(4242));
    let at = e
        .hub
        .make_task("newRepo", encode_args(vec![Value::from("with-src")], kw));
    assert_eq!(e.finish(at).await, CLOSED, "{:?}", e.hub.result(at));
    let init = e.hub.calls_of("host.repoInit").pop().unwrap();
    let (_, kwargs) = koji_adjutant::xmlrpc::decode_args(init.params.clone());
    assert_eq!(kwargs.get("event"), Some(&Value::Int(4242)));
    assert_eq!(kwargs.get("opts"), Some(&Value::Nil));
    let get_tag = e
        .hub
        .calls_of("getTag")
        .into_iter()
        .map(|c| koji_adjutant::xmlrpc::decode_args(c.params).1)
        .find(|kw| kw.get("event") == Some(&Value::Int(4242)));
    assert!(get_tag.is_some_and(|kw| kw.get("strict") == Some(&Value::Bool(true))));
    let last = e.repos.repos_of(tag).pop().unwrap();
    assert_eq!(last.create_event, 4242);
    e.stop().await;
}

/// `repo_tool = container`: createrepo_c and mergerepo_c from the rpmroot image (the
/// way a host without them installed runs repo tasks), with the host's paths bound at
/// the same places: the same repodata as with the host's binaries, the programs named
/// as inside the image in the logs, and nothing left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_tools_in_a_container_of_the_default_image() {
    let benv = buildroot_common::Env::new(false);
    let tool: Arc<dyn RepoTool> = Arc::new(ContainerRepoTool::new(
        benv.b.clone(),
        buildroot_common::IMAGE,
    ));
    let mut handlers = default_handlers();
    handlers.register(Arc::new(Createrepo {
        container: Some(tool),
    }));
    let e = Env::start_with("adjutant.repo_tool = container", Some(handlers)).await;
    // a Koji topdir is world-readable (the web server serves it): so is this one, for
    // the container's root, which is not the host's root
    let mut p = e.hub.topdir().to_path_buf();
    loop {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode | 0o755)).unwrap();
        if !p.pop() || p == Path::new("/tmp") || p == Path::new("/") {
            break;
        }
    }
    let pk = e.pkgdir();
    let ext = e.dir.path().join("ext");
    external_repo(&ext, "x86_64", &[build_rpm(&pk, "extpkg", "1.0", "noarch")]);
    let tag = e.repos.add_tag("in-container", Some("x86_64"));
    e.repos.tag_rpms(
        tag,
        &[koji_only_dep(), build_rpm(&pk, "archpkg", "1.0", "x86_64")],
    );
    e.repos.add_group(tag, "build", &["bash", "koji-only-dep"]);
    e.repos.add_external_repo(
        tag,
        "ext",
        &format!("file://{}/$arch/", ext.display()),
        "koji",
        None,
    );
    let (repo_id, _) = e.regen(tag, "in-container").await;
    let dir = e.arch_dir(repo_id, "x86_64");
    assert_eq!(
        nas(&dir),
        vec!["archpkg.x86_64", "extpkg.noarch", "koji-only-dep.noarch"]
    );
    for p in packages(&dir) {
        if p.name != "extpkg" {
            assert!(p.href.starts_with("toplink/packages/"), "{}", p.href);
            assert!(dir.join(&p.href).is_file(), "{} does not resolve", p.href);
        }
    }
    let kinds: Vec<String> = repomd(&dir).into_iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&"group".to_string()), "{kinds:?}");
    let c = e.last_task("createrepo");
    let log = e.uploaded_text(c.id, "createrepo.log");
    assert!(
        log.starts_with("$ /usr/bin/createrepo_c --error-exit-val -vd -o "),
        "{log}"
    );
    let merge_log = e.uploaded_text(c.id, "mergerepos.log");
    assert!(
        merge_log.starts_with("$ /usr/bin/mergerepo_c --koji "),
        "{merge_log}"
    );
    e.stop().await;
    // the image was unpacked for the tool's containers (importing it did not unpack it)
    let layers = benv.store_root.join("layers");
    let unpacked: Vec<_> = std::fs::read_dir(&layers)
        .map(|rd| rd.flatten().collect())
        .unwrap_or_default();
    assert!(!unpacked.is_empty(), "no layer unpacked under {layers:?}");
    // no container of the tool is left
    let containers = benv.store_root.join("containers");
    let left: Vec<_> = std::fs::read_dir(&containers)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name())
                .filter(|n| !n.to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "containers left: {left:?}");
}
