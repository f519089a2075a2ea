//! The parent tasks (`build`, `waitrepo`, `tagBuild`, `chainbuild`) end to end against
//! the fake hub with the real leaf tasks (`rebuildSRPM`, `buildArch`) over the host
//! test double of the buildroot layer (tests/support/hostbroot.rs: the host's
//! `rpmbuild --nodeps` instead of a container). Builds in containers from the rpmroot
//! image are in tests/tasks_build.rs.
//!
//! The repo comes the 1.35 way: `repo.request` queues a request, the fake kojira turns
//! it into a `newRepo` task, which this daemon runs (createrepo_c on the host), and the
//! build's `waitrepo` subtask sees the request fulfilled.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use koji_adjutant::daemon::default_handlers;
use koji_adjutant::hub::taskrelpath;
use koji_adjutant::xmlrpc::{MethodResponse, Value};
use support::buildenv::BuildEnv;
use support::fakebuilds::{ALICE, BR_EXPIRED, BUILD_FAILED, COMPLETE};
use support::fakehub::{CLOSED, FAILED};
use support::hostbroot::HostFactory;

fn srpm(name: &str) -> PathBuf {
    adjutant_testkit::fixtures_dir()
        .join("srpms")
        .join(format!("{name}-1.0-1.src.rpm"))
}

fn handlers(e: &BuildEnv) -> koji_adjutant::daemon::HandlerRegistry {
    let mut h = default_handlers();
    koji_adjutant::tasks::register_buildroot_tasks(
        &mut h,
        Arc::new(HostFactory::new(e.hub.topdir())),
    );
    h
}

async fn env() -> BuildEnv {
    let mut e = BuildEnv::new().await;
    let h = handlers(&e);
    e.start_daemon(Some(h), "").await;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch_build_waits_for_a_repo_and_moves_to_scratch() {
    let mut e = env().await;
    let src = e.upload_srpm(&srpm("hello-data"));
    let t = e.submit_build(&src, "dist", &[("scratch", Value::Bool(true))]);
    assert_eq!(e.finish(t).await, CLOSED, "{:?}", e.hub.result(t));
    assert_eq!(e.result(t), MethodResponse::Params(vec![Value::Nil]));

    // the repo came through the request queue: a newRepo task made by kojira, and a
    // waitrepo subtask of the build
    let kids = e.children(t);
    let methods: Vec<&str> = kids.iter().map(|k| k.method.as_str()).collect();
    assert_eq!(
        methods,
        ["waitrepo", "rebuildSRPM", "buildArch"],
        "{kids:?}"
    );
    let newrepo = e.tasks_of("newRepo");
    assert_eq!(newrepo.len(), 1);
    assert_eq!(newrepo[0].owner, 51, "made by kojira");
    assert_eq!(newrepo[0].state, CLOSED);
    let repo = e.repos.repos_of(e.build_tag);
    assert_eq!(repo.len(), 1);
    let waitrepo = &kids[0];
    match e.result(waitrepo.id) {
        MethodResponse::Params(p) => {
            assert_eq!(p[0].get("id"), Some(&Value::Int(repo[0].id)));
            assert_eq!(p[0].get("tag_name"), Some(&Value::from("dist-build")));
        }
        other => panic!("{other:?}"),
    }
    // the SRPM subtask: label srpm, noarch; buildArch: label = arch, keep_srpm
    assert_eq!(kids[1].label.as_deref(), Some("srpm"));
    assert_eq!(kids[1].arch, "noarch");
    assert_eq!(kids[2].label.as_deref(), Some("noarch"));
    let req = koji_adjutant::xmlrpc::decode_call(kids[2].request.as_bytes()).unwrap();
    assert_eq!(req.params[2], Value::from("noarch"));
    assert_eq!(
        req.params[3],
        Value::Bool(true),
        "the only arch keeps the srpm"
    );
    assert_eq!(
        req.params[4],
        Value::struct_from([("repo_id", Value::Int(repo[0].id))])
    );
    // rebuilt srpm from the srpm subtask is what buildArch got
    assert_eq!(
        req.params[0],
        Value::from(format!(
            "{}/hello-data-1.0-1.src.rpm",
            taskrelpath(kids[1].id)
        ))
    );
    // policy: no build_from_srpm for scratch, build_rpm with kojid's data
    let policies = e.builds.with_db(|db| db.policy_calls.clone());
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!(policies[0].0, "build_rpm");
    let d = &policies[0].1;
    assert_eq!(d.get("user_id"), Some(&Value::Int(ALICE)));
    assert_eq!(d.get("scratch"), Some(&Value::Bool(true)));
    assert_eq!(d.get("from_scm"), Some(&Value::Bool(false)));
    assert_eq!(d.get("build_tag"), Some(&Value::Int(e.build_tag)));
    assert_eq!(d.get("tag"), Some(&Value::Int(e.dest_tag)));
    assert_eq!(d.get("target"), Some(&Value::from("dist")));
    // moveBuildToScratch: srpm, rpms and logs under scratch/alice/task_<id>/
    let calls = e.hub.calls_of("host.moveBuildToScratch");
    assert_eq!(calls.len(), 1);
    let up = taskrelpath(kids[2].id);
    assert_eq!(calls[0].params[0], Value::Int(t));
    assert_eq!(
        calls[0].params[1],
        Value::from(format!("{up}/hello-data-1.0-1.src.rpm"))
    );
    assert_eq!(
        calls[0].params[2],
        Value::Array(vec![Value::from(format!(
            "{up}/hello-data-1.0-1.noarch.rpm"
        ))])
    );
    let dir = e.top(&format!("scratch/alice/task_{t}"));
    for f in [
        "hello-data-1.0-1.src.rpm",
        "hello-data-1.0-1.noarch.rpm",
        "logs/noarch/build.log",
    ] {
        assert!(dir.join(f).is_file(), "{}", dir.join(f).display());
    }
    // no build entry, no tagging
    assert!(e.builds.builds().is_empty());
    assert!(e.hub.calls_of("host.initBuild").is_empty());
    assert!(e.tasks_of("tagBuild").is_empty());
    // every buildroot of the build went INIT → BUILDING → EXPIRED
    for br in e.hub.with(|s| s.buildroots.clone()).values() {
        assert_eq!(br.state, BR_EXPIRED);
        assert_eq!(e.builds.brinfo(br.id).states, [2, 3]);
    }
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_scratch_build_is_imported_and_tagged() {
    let mut e = env().await;
    e.builds.add_package(e.dest_tag, "hello-data", false);
    let src = e.upload_srpm(&srpm("hello-data"));
    let t = e.submit_build(&src, "dist", &[]);
    assert_eq!(e.finish(t).await, CLOSED, "{:?}", e.hub.result(t));
    let builds = e.builds.builds();
    assert_eq!(builds.len(), 1);
    let b = &builds[0];
    assert_eq!(b.nvr(), "hello-data-1.0-1");
    assert_eq!(b.state, COMPLETE);
    assert_eq!(b.task_id, Some(t));
    assert_eq!(b.owner, ALICE);
    // source from the SRPM subtask: the srpm's name
    assert_eq!(b.source.as_deref(), Some("hello-data-1.0-1.src.rpm"));
    // completeBuild's brmap: every file → the buildArch's real buildroot id
    let calls = e.hub.calls_of("host.completeBuild");
    assert_eq!(calls.len(), 1);
    let brmap = calls[0].params[4].as_struct().unwrap().clone();
    let arch_task = e
        .children(t)
        .into_iter()
        .find(|k| k.method == "buildArch")
        .unwrap();
    let br = e.hub.with(|s| {
        s.buildroots
            .values()
            .find(|b| b.task_id == Some(arch_task.id))
            .unwrap()
            .id
    });
    assert_eq!(brmap.len(), 2, "{brmap:?}");
    assert!(brmap.values().all(|v| *v == Value::Int(br)), "{brmap:?}");
    for r in &b.rpms {
        assert!(e.top(&r.relpath).is_file(), "{}", r.relpath);
        assert_eq!(r.buildroot_id, Some(br));
    }
    assert!(e
        .top("packages/hello-data/1.0/1/data/logs/noarch/build.log")
        .is_file());
    // tagged by a tagBuild subtask, notification sent
    let tag = e.tasks_of("tagBuild");
    assert_eq!(tag.len(), 1);
    assert_eq!(tag[0].state, CLOSED);
    assert_eq!(tag[0].label.as_deref(), Some("tag"));
    let req = koji_adjutant::xmlrpc::decode_call(tag[0].request.as_bytes()).unwrap();
    assert_eq!(
        req.params,
        [
            Value::Int(e.dest_tag),
            Value::Int(b.id),
            Value::Bool(false),
            Value::Nil,
            Value::Bool(true)
        ]
    );
    assert_eq!(
        e.builds
            .with_db(|db| db.tagged.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>()),
        [(e.dest_tag, b.id)]
    );
    let n = e.builds.with_db(|db| db.notifications.clone());
    assert_eq!(n.len(), 1);
    assert!(n[0].ok);
    assert_eq!(n[0].user, Value::Int(ALICE));
    // the policies kojid asserts for a non-scratch SRPM build
    let names: Vec<String> = e
        .builds
        .with_db(|db| db.policy_calls.iter().map(|p| p.0.clone()).collect());
    assert_eq!(names, ["build_from_srpm", "build_rpm"]);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_not_in_the_list_fails_before_init_build() {
    let mut e = env().await;
    let src = e.upload_srpm(&srpm("hello-data"));
    let t = e.submit_build(&src, "dist", &[]);
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(
        e.fault(t),
        (
            1005,
            "package hello-data not in list for tag dist-dest".to_owned()
        )
    );
    assert!(e.hub.calls_of("host.initBuild").is_empty());
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_arch_fails_the_build_entry() {
    let mut e = env().await;
    e.builds.add_package(e.dest_tag, "fails-build", false);
    let src = e.upload_srpm(&srpm("fails-build"));
    let t = e.submit_build(&src, "dist", &[]);
    assert_eq!(e.finish(t).await, FAILED);
    let (code, msg) = e.fault(t);
    assert_eq!(code, 1005, "{msg}");
    assert!(msg.contains("this %build step fails on purpose"), "{msg}");
    let b = &e.builds.builds()[0];
    assert_eq!(b.state, BUILD_FAILED, "failBuild was called");
    assert_eq!(e.hub.calls_of("host.failBuild").len(), 1);
    assert!(e.hub.calls_of("host.completeBuild").is_empty());
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_denial_fails_the_task() {
    let mut e = env().await;
    e.builds
        .with_db(|db| db.deny.insert("build_rpm".into(), "not for you".into()));
    let src = e.upload_srpm(&srpm("hello-data"));
    let t = e.submit_build(&src, "dist", &[("scratch", Value::Bool(true))]);
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(
        e.fault(t),
        (1004, "policy violation (build_rpm): not for you".to_owned())
    );
    assert!(e.children(t).is_empty());
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_id_and_no_rebuild_use_the_repo_and_the_upload_as_is() {
    let mut e = env().await;
    // a READY repo made by a newRepo task first
    let nr = e.hub.make_task(
        "newRepo",
        koji_adjutant::xmlrpc::encode_args(
            vec![Value::struct_from([
                ("id", Value::Int(e.build_tag)),
                ("name", Value::from("dist-build")),
            ])],
            [("opts".to_string(), Value::new_struct())]
                .into_iter()
                .collect(),
        ),
    );
    assert_eq!(e.finish(nr).await, CLOSED);
    let repo = e.repos.repos_of(e.build_tag)[0].id;
    e.repos
        .set_extra(e.build_tag, "rebuild_srpm", Value::Bool(false));
    let src = e.upload_srpm(&srpm("hello-data"));
    let t = e.submit_build(
        &src,
        "dist",
        &[
            ("scratch", Value::Bool(true)),
            ("repo_id", Value::Int(repo)),
        ],
    );
    assert_eq!(e.finish(t).await, CLOSED, "{:?}", e.hub.result(t));
    let kids = e.children(t);
    assert_eq!(kids.len(), 1, "only buildArch: {kids:?}");
    let req = koji_adjutant::xmlrpc::decode_call(kids[0].request.as_bytes()).unwrap();
    assert_eq!(req.params[0], Value::from(src.as_str()), "the upload as is");
    let names: Vec<String> = e
        .builds
        .with_db(|db| db.policy_calls.iter().map(|p| p.0.clone()).collect());
    assert_eq!(names, ["build_from_repo_id", "build_rpm"]);
    // a bad repo id is kojid's BuildError
    let t2 = e.submit_build(
        &src,
        "dist",
        &[
            ("scratch", Value::Bool(true)),
            ("repo_id", Value::Int(9999)),
        ],
    );
    assert_eq!(e.finish(t2).await, FAILED);
    assert_eq!(e.fault(t2), (1005, "No such repo: 9999".to_owned()));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_target_and_arch_override_rules() {
    let mut e = env().await;
    let src = e.upload_srpm(&srpm("hello-data"));
    let t = e.submit_build(&src, "nope", &[("scratch", Value::Bool(true))]);
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(e.fault(t), (1000, "unknown build target: nope".to_owned()));
    let t = e.submit_build(&src, "dist", &[("arch_override", Value::from("x86_64"))]);
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(
        e.fault(t),
        (
            1005,
            "arch_override is only allowed for scratch builds".to_owned()
        )
    );
    e.stop().await;
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn noarch_spec(name: &str, requires: &str) -> String {
    format!(
        "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: chain test\nLicense: MIT\nBuildArch: noarch\n{requires}\n%description\nchain test\n%install\nmkdir -p %{{buildroot}}/usr/share/{name}\necho {name} > %{{buildroot}}/usr/share/{name}/f\n%files\n/usr/share/{name}/f\n%changelog\n* Mon Jan 01 2024 t <t@example.invalid> - 1.0-1\n- x\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chainbuild_waits_for_each_level_in_the_repo() {
    let mut e = BuildEnv::new().await;
    // the build tag inherits the destination tag, as Koji targets usually do
    e.repos.add_parent(e.build_tag, e.dest_tag, 10);
    let h = handlers(&e);
    e.start_daemon(Some(h), "allowed_scms = 127.0.0.1*:/kojifiles/git/*:no:")
        .await;
    let work = e.dir.path().join("chain.work");
    std::fs::create_dir_all(work.join("first")).unwrap();
    std::fs::create_dir_all(work.join("second")).unwrap();
    std::fs::write(work.join("first/first.spec"), noarch_spec("first", "")).unwrap();
    std::fs::write(
        work.join("second/second.spec"),
        noarch_spec("second", "BuildRequires: first"),
    )
    .unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "specs"]);
    let bare = e.top("git/chain.git");
    git(
        e.dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    git(&bare, &["update-server-info"]);
    for p in ["first", "second"] {
        e.builds.add_package(e.dest_tag, p, false);
    }
    let base = e.topurl.url().replace("http://", "git+http://");
    let url = |m: &str| Value::from(format!("{base}/git/chain.git?{m}#main"));
    let t = e.hub.make_task(
        "chainbuild",
        vec![
            Value::Array(vec![
                Value::Array(vec![url("first")]),
                Value::Array(vec![url("second")]),
            ]),
            Value::from("dist"),
            Value::new_struct(),
        ],
    );
    e.hub.with(|s| s.tasks.get_mut(&t).unwrap().owner = ALICE);
    assert_eq!(e.finish(t).await, CLOSED, "{:?}", e.hub.result(t));
    let kids = e.children(t);
    let labels: Vec<(String, String)> = kids
        .iter()
        .map(|k| (k.method.clone(), k.label.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        labels,
        [
            ("build".to_owned(), "build 0,0".to_owned()),
            ("waitrepo".to_owned(), "wait 1".to_owned()),
            ("build".to_owned(), "build 1,0".to_owned()),
        ]
    );
    let req = koji_adjutant::xmlrpc::decode_call(kids[1].request.as_bytes()).unwrap();
    assert_eq!(
        req.params,
        [
            Value::from("dist-build"),
            Value::Nil,
            Value::Array(vec![Value::from("first-1.0-1")])
        ]
    );
    // the repo the second level built from had the first build
    let repo = match e.result(kids[1].id) {
        MethodResponse::Params(p) => p[0].get("id").and_then(Value::as_i64).unwrap(),
        other => panic!("{other:?}"),
    };
    let pkglist = std::fs::read_to_string(e.repos.repo_path(repo).join("x86_64/pkglist")).unwrap();
    assert!(pkglist.contains("first-1.0-1.noarch.rpm"), "{pkglist}");
    let nvrs: Vec<String> = e.builds.builds().iter().map(|b| b.nvr()).collect();
    assert_eq!(nvrs, ["first-1.0-1", "second-1.0-1"]);
    assert!(e.builds.builds().iter().all(|b| b.state == COMPLETE));
    // scratch chains are refused
    let t = e.hub.make_task(
        "chainbuild",
        vec![
            Value::Array(vec![]),
            Value::from("dist"),
            Value::struct_from([("scratch", Value::Bool(true))]),
        ],
    );
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(
        e.fault(t),
        (1005, "--scratch is not allowed with chain-builds".into())
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_build_failure_is_notified_then_fails() {
    let mut e = env().await;
    e.builds.add_package(e.dest_tag, "hello-data", false);
    let src = e.upload_srpm(&srpm("hello-data"));
    let t = e.submit_build(&src, "dist", &[]);
    assert_eq!(e.finish(t).await, CLOSED);
    let b = e.builds.builds()[0].id;
    // tagging the same build again: the hub's TagError, notified as a failure
    let t2 = e.hub.make_task(
        "tagBuild",
        vec![
            Value::Int(e.dest_tag),
            Value::Int(b),
            Value::Bool(false),
            Value::Nil,
            Value::Bool(true),
        ],
    );
    assert_eq!(e.finish(t2).await, FAILED);
    let (code, msg) = e.fault(t2);
    assert_eq!(code, 1003);
    assert_eq!(msg, "build hello-data-1.0-1 already tagged (dist-dest)");
    let n = e.builds.with_db(|db| db.notifications.clone());
    assert_eq!(n.len(), 2);
    assert!(!n[1].ok);
    assert_eq!(
        n[1].msg.as_deref(),
        Some("<class 'koji.TagError'>: build hello-data-1.0-1 already tagged (dist-dest)")
    );
    e.stop().await;
}
