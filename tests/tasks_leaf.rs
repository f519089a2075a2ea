//! The leaf build tasks (`buildArch`, `rebuildSRPM`, `buildSRPMFromSCM`) against the
//! fake hub, over the host test double of the buildroot layer
//! (tests/support/hostbroot.rs): kojid's result shapes, the buildroot's hub record
//! through every path (INIT → BUILDING → EXPIRED, EXPIRED after a failed init), logs,
//! faults, weights, the host check, and SCM checkouts from git over HTTP (served from
//! the fake hub's topurl) and from `git+file://`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use koji_adjutant::daemon::default_handlers;
use koji_adjutant::hub::taskrelpath;
use koji_adjutant::rpmfile::{kojihash, RpmHeaders};
use koji_adjutant::tasks::build_arch::rpmdiff_json;
use koji_adjutant::xmlrpc::{encode_args, MethodResponse, Struct, Value};
use support::buildenv::BuildEnv;
use support::fakebuilds::{BR_BUILDING, BR_EXPIRED, COMPLETE};
use support::fakehub::{CLOSED, FAILED, FREE};
use support::hostbroot::HostFactory;

fn fixture(rel: &str) -> PathBuf {
    adjutant_testkit::fixtures_dir().join(rel)
}

fn srpm(name: &str) -> PathBuf {
    fixture(&format!("srpms/{name}-1.0-1.src.rpm"))
}

async fn env(extra: &str) -> BuildEnv {
    let mut e = BuildEnv::new().await;
    let mut h = default_handlers();
    koji_adjutant::tasks::register_buildroot_tasks(
        &mut h,
        Arc::new(HostFactory::new(e.hub.topdir())),
    );
    e.start_daemon(Some(h), extra).await;
    e
}

/// koji-only-dep tagged into the build tag and a READY repo made by newRepo.
async fn repo(e: &BuildEnv) -> i64 {
    e.repos.tag_rpms(
        e.build_tag,
        &[fixture("rpms/koji-only-dep-1.0-1.noarch.rpm")],
    );
    let mut kw = Struct::new();
    kw.insert("opts".into(), Value::new_struct());
    let t = e.hub.make_task(
        "newRepo",
        encode_args(
            vec![Value::struct_from([
                ("id", Value::Int(e.build_tag)),
                ("name", Value::from("dist-build")),
            ])],
            kw,
        ),
    );
    assert_eq!(e.finish(t).await, CLOSED);
    e.repos.repos_of(e.build_tag).last().unwrap().id
}

fn build_arch(e: &BuildEnv, pkg: &str, keep: bool, opts: Value) -> i64 {
    e.hub.make_task(
        "buildArch",
        vec![
            Value::from(pkg),
            Value::from("dist-build"),
            Value::from("noarch"),
            Value::Bool(keep),
            opts,
        ],
    )
}

fn result_struct(e: &BuildEnv, t: i64) -> Struct {
    match e.result(t) {
        MethodResponse::Params(p) => p[0].as_struct().unwrap().clone(),
        other => panic!("{other:?}"),
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

fn buildroots_of(e: &BuildEnv, task: i64) -> Vec<i64> {
    e.hub.with(|s| {
        s.buildroots
            .values()
            .filter(|b| b.task_id == Some(task))
            .map(|b| b.id)
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_arch_result_and_buildroot_record() {
    let mut e = env("").await;
    let repo_id = repo(&e).await;
    e.builds
        .with_db(|db| db.avg_duration.insert("hello-data".into(), 4800.0));
    let pkg = e.upload_srpm(&srpm("hello-data"));
    let t = build_arch(
        &e,
        &pkg,
        true,
        Value::struct_from([("repo_id", Value::Int(repo_id))]),
    );
    assert_eq!(e.finish(t).await, CLOSED, "{:?}", e.hub.result(t));
    let r = result_struct(&e, t);
    let up = taskrelpath(t);
    assert_eq!(
        r.keys().collect::<Vec<_>>(),
        ["rpms", "srpms", "logs", "brootid"]
    );
    assert_eq!(
        strs(&r["rpms"]),
        [format!("{up}/hello-data-1.0-1.noarch.rpm")]
    );
    assert_eq!(
        strs(&r["srpms"]),
        [format!("{up}/hello-data-1.0-1.src.rpm")]
    );
    assert_eq!(
        strs(&r["logs"]),
        [
            format!("{up}/build.log"),
            format!("{up}/mock_config.log"),
            format!("{up}/root.log"),
            format!("{up}/noarch_rpmdiff.json"),
        ]
    );
    // every listed file is on the hub
    for f in strs(&r["rpms"])
        .into_iter()
        .chain(strs(&r["srpms"]))
        .chain(strs(&r["logs"]))
    {
        assert!(e.top(&format!("work/{f}")).is_file(), "{f}");
    }
    // the noarch hash is koji's kojihash of the uploaded rpm
    let rpm = e.top(&format!("work/{up}/hello-data-1.0-1.noarch.rpm"));
    let h = kojihash(&RpmHeaders::open(&rpm).unwrap());
    let json = std::fs::read_to_string(e.top(&format!("work/{up}/noarch_rpmdiff.json"))).unwrap();
    assert_eq!(
        json,
        rpmdiff_json(
            t,
            &[("hello-data-1.0-1.noarch.rpm".to_owned(), h)]
                .into_iter()
                .collect()
        )
    );
    // the buildroot: a real id, listed with the repo's rpm ids, BUILDING then EXPIRED
    let brs = buildroots_of(&e, t);
    assert_eq!(brs.len(), 1);
    assert_eq!(r["brootid"], Value::Int(brs[0]));
    let info = e.builds.brinfo(brs[0]);
    assert_eq!(info.repo_id, repo_id);
    assert_eq!(
        info.arch, "x86_64",
        "noarch builds in a canonical host∩tag arch"
    );
    assert_eq!(info.states, [BR_BUILDING, BR_EXPIRED]);
    let dep_id = e.repos.with_db(|db| db.tags[&e.build_tag].rpms[0].id);
    assert_eq!(info.list, [dep_id]);
    assert_eq!((info.set_list_calls, info.update_list_calls), (1, 1));
    // weight from the average build duration: 1.5 + 4800/4800
    let w = e.hub.calls_of("host.setTaskWeight");
    assert!(
        w.iter()
            .any(|c| c.params == [Value::Int(t), Value::Double(2.5)]),
        "{w:?}"
    );
    // the status registry knows the buildroot
    let reg = e.daemon.as_ref().unwrap().registry.snapshot();
    let rec = &reg.tasks[&t];
    assert_eq!(rec.buildroot_id, Some(brs[0]));
    assert_eq!(rec.image.as_deref(), Some("host-test-double"));
    assert_eq!(rec.container_id, Some(format!("host-{}", brs[0])));
    assert!(rec.logs.contains_key("build.log"), "{:?}", rec.logs);
    // without keep_srpm: no srpm
    let t2 = build_arch(
        &e,
        &pkg,
        false,
        Value::struct_from([("repo_id", Value::Int(repo_id))]),
    );
    assert_eq!(e.finish(t2).await, CLOSED);
    assert!(strs(&result_struct(&e, t2)["srpms"]).is_empty());
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_arch_failures() {
    let mut e = env("").await;
    let repo_id = repo(&e).await;
    let opts = Value::struct_from([("repo_id", Value::Int(repo_id))]);

    // a failing %build: BuildError with the tail of build.log, buildroot expired
    let pkg = e.upload_srpm(&srpm("fails-build"));
    let t = build_arch(&e, &pkg, true, opts.clone());
    assert_eq!(e.finish(t).await, FAILED);
    let (code, msg) = e.fault(t);
    assert_eq!(code, 1005);
    assert!(
        msg.starts_with("error building package (arch noarch), mock exited with status 1; see build.log for more information\nLast lines of build.log:\n"),
        "{msg}"
    );
    assert!(msg.contains("this %build step fails on purpose"), "{msg}");
    let up = taskrelpath(t);
    assert!(e.top(&format!("work/{up}/build.log")).is_file());
    let br = buildroots_of(&e, t)[0];
    assert_eq!(e.builds.brinfo(br).states, [BR_BUILDING, BR_EXPIRED]);
    assert_eq!(e.builds.brinfo(br).update_list_calls, 1);

    // no repo id
    let t = build_arch(&e, &pkg, true, Value::new_struct());
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(e.fault(t), (1005, "A repo id must be provided".into()));

    // a binary rpm is not a source package
    let bin = e.upload_srpm(&fixture("rpms/koji-only-dep-1.0-1.noarch.rpm"));
    let t = build_arch(&e, &bin, true, opts.clone());
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(e.fault(t), (1005, "not a source package".into()));

    // a missing srpm on the hub: the download's error
    let t = build_arch(&e, "cli-build/none/x-1-1.src.rpm", true, opts.clone());
    assert_eq!(e.finish(t).await, FAILED);
    let (code, msg) = e.fault(t);
    assert_eq!(code, 1000);
    assert!(msg.contains("404"), "{msg}");

    // keep_srpm needs vendor/packager/distribution set by the buildroot
    e.repos
        .set_extra(e.build_tag, "test.no_vendor", Value::Bool(true));
    let good = e.upload_srpm(&srpm("hello-data"));
    let t = build_arch(&e, &good, true, opts.clone());
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(
        e.fault(t),
        (1005, "The build system failed to set the vendor tag".into())
    );
    let br = buildroots_of(&e, t)[0];
    assert_eq!(e.builds.brinfo(br).states, [BR_BUILDING, BR_EXPIRED]);

    // a failed group install: BuildrootError naming root.log, buildroot expired
    e.repos
        .set_extra(e.build_tag, "test.init_fail", Value::Bool(true));
    let t = build_arch(&e, &good, true, opts.clone());
    assert_eq!(e.finish(t).await, FAILED);
    let (code, msg) = e.fault(t);
    assert_eq!(code, 1012, "{msg}");
    assert!(
        msg.starts_with("could not init mock buildroot, mock exited with status 30; see root.log for more information\nLast lines of root.log:\n"),
        "{msg}"
    );
    assert!(msg.contains("no-such-package"), "{msg}");
    let br = buildroots_of(&e, t)[0];
    assert_eq!(e.builds.brinfo(br).states, [BR_EXPIRED]);
    assert_eq!(e.builds.brinfo(br).set_list_calls, 0);
    assert!(e
        .top(&format!("work/{}/root.log", taskrelpath(t)))
        .is_file());
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_the_host_cannot_build_for_is_refused() {
    let mut e = env("").await;
    let s390 = e.repos.add_tag("s390-build", Some("s390x"));
    let t = e.hub.make_task(
        "buildArch",
        vec![
            Value::from("cli-build/x/x-1-1.src.rpm"),
            Value::from("s390-build"),
            Value::from("noarch"),
            Value::Bool(true),
            Value::struct_from([("repo_id", Value::Int(1))]),
        ],
    );
    let _ = s390;
    support::wait_until("refused", || {
        e.hub.with(|s| s.refusals.iter().any(|r| r.0 == t))
    })
    .await;
    let r = e.hub.with(|s| s.refusals.clone());
    let r = r.iter().find(|r| r.0 == t).unwrap();
    assert!(!r.2, "a hard refusal");
    assert_eq!(r.3, "failed host check");
    assert_eq!(e.hub.task(t).state, FREE);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_srpm_result() {
    let mut e = env("").await;
    let repo_id = repo(&e).await;
    let pkg = e.upload_srpm(&srpm("hello-data"));
    let t = e.hub.make_task(
        "rebuildSRPM",
        vec![
            Value::from(pkg.as_str()),
            Value::Int(e.build_tag),
            Value::struct_from([("repo_id", Value::Int(repo_id)), ("scratch", Value::Nil)]),
        ],
    );
    assert_eq!(e.finish(t).await, CLOSED, "{:?}", e.hub.result(t));
    let r = result_struct(&e, t);
    let up = taskrelpath(t);
    assert_eq!(
        r.keys().collect::<Vec<_>>(),
        ["srpm", "logs", "brootid", "source"]
    );
    assert_eq!(
        r["srpm"],
        Value::from(format!("{up}/hello-data-1.0-1.src.rpm"))
    );
    assert_eq!(
        r["source"],
        Value::struct_from([
            ("source", Value::from("hello-data-1.0-1.src.rpm")),
            ("url", Value::from("hello-data-1.0-1.src.rpm")),
        ])
    );
    assert_eq!(
        strs(&r["logs"]),
        [
            format!("{up}/build.log"),
            format!("{up}/mock_config.log"),
            format!("{up}/root.log")
        ]
    );
    let h = RpmHeaders::open(&e.top(&format!("work/{up}/hello-data-1.0-1.src.rpm"))).unwrap();
    assert!(h.is_source());
    let br = buildroots_of(&e, t)[0];
    assert_eq!(r["brootid"], Value::Int(br));
    assert_eq!(e.builds.brinfo(br).states, [BR_BUILDING, BR_EXPIRED]);
    assert_eq!(
        e.builds.brinfo(br).update_list_calls,
        0,
        "as kojid: no update"
    );
    e.stop().await;
}

/// A bare git repository in the hub's topdir with `spec` committed, served over git's
/// dumb HTTP protocol by the topurl server; the commit hash.
fn git_repo(topdir: &Path, rel: &str, files: &[(&str, &str)]) -> String {
    let bare = topdir.join(rel);
    let work = topdir.join(format!("{rel}.work"));
    std::fs::create_dir_all(&work).unwrap();
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
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
    };
    git(&work, &["init", "-q", "-b", "main"]);
    for (name, text) in files {
        let p = work.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "spec"]);
    let hash = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();
    git(
        topdir,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    git(&bare, &["update-server-info"]);
    hash
}

fn hello_data_spec() -> String {
    std::fs::read_to_string(fixture("src/hello-data.spec")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scm_builds_from_git_over_http() {
    // allowed: any port of 127.0.0.1, repos under /kojifiles/git/rpms, no common/, no
    // source command
    let mut e = env("allowed_scms = 127.0.0.1*:/kojifiles/git/rpms/*:no:").await;
    let hash = git_repo(
        &e.hub.topdir(),
        "git/rpms/hello-data.git",
        &[("hello-data.spec", &hello_data_spec())],
    );
    let base = e.topurl.url().replace("http://", "git+http://");
    let url = format!("{base}/git/rpms/hello-data.git#main");
    e.builds.add_package(e.dest_tag, "hello-data", false);
    let t = e.submit_build(&url, "dist", &[]);
    assert_eq!(e.finish(t).await, CLOSED, "{:?}", e.hub.result(t));
    let kids = e.children(t);
    let scm = kids
        .iter()
        .find(|k| k.method == "buildSRPMFromSCM")
        .unwrap();
    assert_eq!(scm.label.as_deref(), Some("srpm"));
    let r = result_struct(&e, scm.id);
    let up = taskrelpath(scm.id);
    assert_eq!(
        r.keys().collect::<Vec<_>>(),
        ["srpm", "logs", "brootid", "source"]
    );
    assert_eq!(
        r["srpm"],
        Value::from(format!("{up}/hello-data-1.0-1.src.rpm"))
    );
    let source = format!("{base}/git/rpms/hello-data.git#{hash}");
    assert_eq!(
        r["source"],
        Value::struct_from([
            ("url", Value::from(url.as_str())),
            ("source", Value::from(source.as_str())),
        ])
    );
    // checkout.log: uploaded, kojid's "$ command" lines, not in the result's logs
    let log = std::fs::read_to_string(e.top(&format!("work/{up}/checkout.log"))).unwrap();
    let repo_url = format!("{}/git/rpms/hello-data.git", e.topurl.url());
    assert!(
        log.starts_with(&format!("$ git clone -n {repo_url} ")),
        "{log}"
    );
    assert!(
        log.contains("$ git fetch origin main:KOJI_FETCH_HEAD\n"),
        "{log}"
    );
    assert!(
        log.contains("$ git reset --hard KOJI_FETCH_HEAD\n"),
        "{log}"
    );
    assert!(!strs(&r["logs"]).iter().any(|l| l.ends_with("checkout.log")));
    // the buildroot had network, group srpm-build
    let b = &e.builds.builds()[0];
    assert_eq!(b.state, COMPLETE);
    assert_eq!(b.source.as_deref(), Some(source.as_str()));
    assert_eq!(
        b.extra,
        Value::struct_from([(
            "source",
            Value::struct_from([("original_url", Value::from(url.as_str()))])
        )])
    );
    let policies = e.builds.with_db(|db| db.policy_calls.clone());
    assert_eq!(
        policies[0].0, "build_rpm",
        "no build_from_srpm for SCM builds"
    );
    assert_eq!(policies[0].1.get("from_scm"), Some(&Value::Bool(true)));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scm_urls_are_checked() {
    let mut e =
        env("allowed_scms = !127.0.0.1*:/kojifiles/git/blocked/* 127.0.0.1*:/kojifiles/git/*:no:")
            .await;
    let repo_id = repo(&e).await;
    let base = e.topurl.url().replace("http://", "git+http://");
    let host = base
        .trim_start_matches("git+http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let submit = |url: String| {
        e.hub.make_task(
            "buildSRPMFromSCM",
            vec![
                Value::from(url),
                Value::from("dist-build"),
                Value::struct_from([("repo_id", Value::Int(repo_id))]),
            ],
        )
    };
    let t = submit(format!("{base}/git/blocked/x.git#main"));
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(
        e.fault(t),
        (
            1005,
            format!("{host}:/kojifiles/git/blocked/x.git is not in the list of allowed SCMs")
        )
    );
    let t = submit(format!("{base}/git/x.git"));
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(e.fault(t).0, 1000);
    assert!(e.fault(t).1.contains("Could not find the fragment element"));
    // an allowed repo that does not exist: the checkout fails with kojid's message
    let t = submit(format!("{base}/git/missing.git#main"));
    assert_eq!(e.finish(t).await, FAILED);
    let (code, msg) = e.fault(t);
    assert_eq!(code, 1005);
    assert!(
        msg.starts_with("Error running GIT command \"git clone -n "),
        "{msg}"
    );
    assert!(msg.ends_with("\", see checkout.log for details"), "{msg}");
    let br = buildroots_of(&e, t)[0];
    assert_eq!(e.builds.brinfo(br).states, [BR_EXPIRED]);
    // git+file:// is refused unless allow_file_scm
    let t = submit("git+file:///srv/git/x.git#main".into());
    assert_eq!(e.finish(t).await, FAILED);
    assert!(e.fault(t).1.starts_with("Invalid scheme in scm url"));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scm_from_a_local_repository_with_spec_checks() {
    let mut e = env("allowed_scms = :/*:no:\nadjutant_allow_file_scm = true").await;
    let repo_id = repo(&e).await;
    let gitroot = e.dir.path().join("git");
    std::fs::create_dir_all(&gitroot).unwrap();
    let hash = git_repo(
        &gitroot,
        "local.git",
        &[
            ("pkgs/hello-data/hello-data.spec", &hello_data_spec()),
            (
                "pkgs/bad/bad.spec",
                &format!("Vendor: me\n{}", hello_data_spec()),
            ),
        ],
    );
    let repo = gitroot.join("local.git");
    let submit = |module: &str| {
        e.hub.make_task(
            "buildSRPMFromSCM",
            vec![
                Value::from(format!("git+file://{}?{module}#main", repo.display())),
                Value::from("dist-build"),
                Value::struct_from([("repo_id", Value::Int(repo_id))]),
            ],
        )
    };
    let t = submit("pkgs/hello-data");
    assert_eq!(e.finish(t).await, CLOSED, "{:?}", e.hub.result(t));
    let r = result_struct(&e, t);
    assert_eq!(
        r["source"].get("source"),
        Some(&Value::from(format!(
            "git+file://{}?pkgs/hello-data#{hash}",
            repo.display()
        )))
    );
    assert_eq!(
        r["srpm"],
        Value::from(format!("{}/hello-data-1.0-1.src.rpm", taskrelpath(t)))
    );
    let t = submit("pkgs/bad");
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(
        e.fault(t),
        (1005, "Vendor is not allowed to be set in spec file".into())
    );
    // a module directory that is not in the checkout (kojid fails in get_source too)
    let t = submit("pkgs/none");
    assert_eq!(e.finish(t).await, FAILED);
    let (code, msg) = e.fault(t);
    assert_eq!(code, 1000);
    assert!(
        msg.starts_with("Error getting commit hash for git: "),
        "{msg}"
    );
    assert!(msg.contains("pkgs/none"), "{msg}");
    // a module without a spec
    let t = submit("pkgs");
    assert_eq!(e.finish(t).await, FAILED);
    assert_eq!(e.fault(t), (1005, "No spec file found".into()));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scm_allowed_by_hub_policy() {
    let mut e = env("allowed_scms_use_config = False\nallowed_scms_use_policy = True").await;
    let repo_id = repo(&e).await;
    git_repo(
        &e.hub.topdir(),
        "git/rpms/hello-data.git",
        &[("hello-data.spec", &hello_data_spec())],
    );
    let base = e.topurl.url().replace("http://", "git+http://");
    let url = format!("{base}/git/rpms/hello-data.git#main");
    let submit = || {
        e.hub.make_task(
            "buildSRPMFromSCM",
            vec![
                Value::from(url.as_str()),
                Value::from("dist-build"),
                Value::struct_from([
                    ("repo_id", Value::Int(repo_id)),
                    ("scratch", Value::Bool(true)),
                ]),
            ],
        )
    };
    e.builds.with_db(|db| {
        db.eval
            .insert("build_from_scm".into(), "deny not from here".into())
    });
    let t = submit();
    assert_eq!(e.finish(t).await, FAILED);
    let host = base
        .trim_start_matches("git+http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        e.fault(t),
        (
            1005,
            format!("SCM: {host}:/kojifiles/git/rpms/hello-data.git is not allowed, reason: not from here")
        )
    );
    let (name, data) = e
        .builds
        .with_db(|db| db.policy_calls.last().unwrap().clone());
    assert_eq!(name, "build_from_scm");
    for (k, v) in [
        ("scm_url", Value::from(url.as_str())),
        ("scm_scheme", Value::from("git+http://")),
        ("scm_host", Value::from(host.as_str())),
        (
            "scm_repository",
            Value::from("/kojifiles/git/rpms/hello-data.git"),
        ),
        ("scm_module", Value::from("")),
        ("scm_revision", Value::from("main")),
        ("scm_type", Value::from("GIT")),
        ("scm_user", Value::Nil),
        ("user_id", Value::Int(1)),
        ("scratch", Value::Bool(true)),
    ] {
        assert_eq!(data.get(k), Some(&v), "{k}: {data}");
    }
    assert_eq!(data.get("channel"), Some(&Value::from("default")), "{data}");
    // "allow none": no common/, no source command
    e.builds
        .with_db(|db| db.eval.insert("build_from_scm".into(), "allow none".into()));
    let t = submit();
    assert_eq!(e.finish(t).await, CLOSED, "{:?}", e.hub.result(t));
    e.stop().await;
}
