//! The buildroot layer with the rpmroot image, through its API (as the task handlers use
//! it): builds, failures, BuildRequires from a repo over HTTP, the hub package list, the
//! buildroot cache (second build runs no dnf; concurrent makers), Koji requests (macros,
//! environment, network), timeouts and OOM. Run as root (the rootless variant of the
//! local rebuild is in tests/buildroot_rebuild.rs).

mod buildroot_common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use adjutant_runtime::container::{ExecSpec, Limits, ProcessSpec, Sink};
use adjutant_testkit::is_root;
use buildroot_common::*;
use koji_adjutant::buildroot::{BuildrootError, BuildrootRequest, KojiInputs, StepOutcome};
use koji_adjutant::config::Config;
use koji_adjutant::policy::{ImageSource, Resolution};
use koji_adjutant::xmlrpc::Value;

fn need_root() {
    assert!(
        is_root(),
        "the buildroot API tests run as root (tests/run.sh); the rootless variant is \
         buildroot_rebuild::rootless_local_rebuild"
    );
}

/// Output of a command run as root in the buildroot's current container.
async fn sh(br: &koji_adjutant::buildroot::Buildroot, script: &str) -> String {
    let (out, cap) = Sink::capture();
    let mut e = ExecSpec::new(ProcessSpec::new(["/bin/sh", "-c", script]));
    e.stdout = out;
    e.stderr = Sink::Null;
    let st = br.container().run(e).await.unwrap();
    assert!(st.success(), "{script}: {st}");
    cap.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_hello_without_repos() {
    need_root();
    let env = Env::new(true);
    let req = env.request("hello");
    let (logdir, work) = (req.logdir.clone(), req.workdir.clone());
    let mut br = env.b.create(req).await.unwrap();
    let info = br.info();
    assert_eq!(info.image, IMAGE);
    assert!(info.image_digest.starts_with("sha256:"));
    assert!(!info.cache_hit);
    let out = br.rebuild(&srpm("hello"), None).await.unwrap();
    assert_eq!(out, StepOutcome::Ok);
    let rpm = br.resultdir().join("hello-1.0-1.x86_64.rpm");
    assert_eq!(rpm_q(&rpm, "%{NEVRA} %{ARCH}"), "hello-1.0-1.x86_64 x86_64");
    assert!(rpm_q(&rpm, "[%{FILENAMES}\n]").contains("/usr/bin/hello"));
    assert!(br.resultdir().join("hello-1.0-1.src.rpm").is_file());
    // The installed list (no Koji link: every package, no ids).
    let list = br.hub_package_list().await.unwrap();
    assert!(list
        .iter()
        .any(|p| p.get("name") == Some(&Value::from("gcc"))));
    assert!(list.iter().all(|p| p.get("id").is_none()));
    br.destroy().await;
    for l in [
        "build.log",
        "root.log",
        "state.log",
        "hw_info.log",
        "mock_config.log",
        "mock_output.log",
        "installed_pkgs.log",
    ] {
        assert!(logdir.join(l).is_file(), "{l} missing");
    }
    let build = read(&logdir.join("build.log"));
    assert!(
        build.contains("Executing command: [\"rpmbuild\", \"-ba\""),
        "{build}"
    );
    assert!(
        build.contains("+ make CFLAGS="),
        "rpmbuild output goes to build.log"
    );
    assert!(build.contains("Child return code was: 0"));
    let state = read(&logdir.join("state.log"));
    assert!(
        state.contains("INFO: Start: rpmbuild hello-1.0-1.src.rpm"),
        "{state}"
    );
    assert!(
        state.contains("INFO: Finish: rpmbuild hello-1.0-1.src.rpm"),
        "{state}"
    );
    let cfg = read(&logdir.join("mock_config.log"));
    assert!(cfg.contains("image: localhost/buildroot:latest"), "{cfg}");
    assert!(cfg.contains("image digest: sha256:"));
    assert!(read(&logdir.join("installed_pkgs.log")).contains("\ngcc-"));
    assert!(read(&logdir.join("hw_info.log")).contains("CPU info:"));
    assert_clean(&env, &work);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_build_reports_the_tail_of_build_log() {
    need_root();
    let env = Env::new(false);
    let req = env.request("fails");
    let work = req.workdir.clone();
    let mut br = env.b.create(req).await.unwrap();
    let out = br.rebuild(&srpm("fails-build"), None).await.unwrap();
    let StepOutcome::Failed(f) = out else {
        panic!("fails-build built")
    };
    assert_eq!(f.step, "rpmbuild");
    assert_eq!(f.log, "build.log");
    assert_eq!(f.status, "exited with status 1");
    assert!(
        f.tail
            .contains("fails-build: this %build step fails on purpose"),
        "{}",
        f.tail
    );
    assert!(f.message().starts_with("rpmbuild exited with status 1; see build.log for more information\nLast lines of build.log:\n"));
    assert!(!br.resultdir().join("fails-build-1.0-1.noarch.rpm").exists());
    br.destroy().await;
    assert_clean(&env, &work);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildrequires_from_an_http_repo_then_from_the_cache() {
    need_root();
    let env = Env::new(true);
    let repo = make_repo(env.dir.path());
    let base = serve(repo.parent().unwrap().to_owned()).await;
    let url = format!("{base}/repo");

    // Without the repo, needs-dep cannot build: rpmbuild names the missing dependency.
    let mut br = env.b.create(env.request("norepo")).await.unwrap();
    let StepOutcome::Failed(f) = br.rebuild(&srpm("needs-dep"), None).await.unwrap() else {
        panic!("needs-dep built without its BuildRequires")
    };
    assert!(f.tail.contains("koji-only-dep is needed"), "{}", f.tail);
    br.destroy().await;

    let koji_req = |name: &str| {
        let mut r = env.request(name);
        r.repos = vec![repo_source(url.clone())];
        r.koji = Some(koji_adjutant::buildroot::KojiLink {
            brootid: 5,
            repo_id: 9,
            tag_name: "f40-build".into(),
            task_id: None,
            rpmlist_url: format!("{url}/rpmlist.jsonl"),
        });
        r
    };
    let first = koji_req("first");
    let (logs1, work1) = (first.logdir.clone(), first.workdir.clone());
    let mut br = env.b.create(first).await.unwrap();
    assert!(!br.info().cache_hit);
    // The hub list after the install: only repo rpms, with ids (none yet: the group's
    // members all come with the image).
    assert_eq!(br.hub_package_list().await.unwrap(), Vec::<Value>::new());
    assert_eq!(
        br.rebuild(&srpm("needs-dep"), None).await.unwrap(),
        StepOutcome::Ok
    );
    let rpm = br.resultdir().join("needs-dep-1.0-1.noarch.rpm");
    assert_eq!(rpm_q(&rpm, "%{NEVRA}"), "needs-dep-1.0-1.noarch");
    let list = br.hub_package_list().await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].get("name"), Some(&Value::from("koji-only-dep")));
    assert_eq!(list[0].get("id"), Some(&Value::Int(4242)));
    assert_eq!(list[0].get("epoch"), Some(&Value::Nil));
    br.destroy().await;
    let root1 = read(&logs1.join("root.log"));
    assert!(root1.contains("Executing command: [\"dnf\""), "{root1}");
    assert!(root1.contains("koji-only-dep"), "{root1}");
    assert!(logs1.join("dnf.log").is_file(), "dnf's own logs are kept");
    let out1 = read(&logs1.join("mock_output.log"));
    assert!(out1.contains("buildroot cache miss: install-"), "{out1}");
    assert!(out1.contains("buildroot cache miss: builddep-"), "{out1}");
    assert_eq!(
        env.b.cache_counters().get(),
        (0, 2),
        "norepo: nothing to install or cache; first: install + builddep missed"
    );
    assert_clean(&env, &work1);

    // Second build, same repo: both layers from the cache, no dnf at all.
    let second = koji_req("second");
    let (logs2, work2) = (second.logdir.clone(), second.workdir.clone());
    let mut br = env.b.create(second).await.unwrap();
    assert!(br.info().cache_hit);
    assert_eq!(
        br.rebuild(&srpm("needs-dep"), None).await.unwrap(),
        StepOutcome::Ok
    );
    assert!(br.resultdir().join("needs-dep-1.0-1.noarch.rpm").is_file());
    let list = br.hub_package_list().await.unwrap();
    assert_eq!(list[0].get("id"), Some(&Value::Int(4242)));
    br.destroy().await;
    let root2 = read(&logs2.join("root.log"));
    assert!(
        !root2.contains("[\"dnf\""),
        "the second build ran dnf:\n{root2}"
    );
    let out2 = read(&logs2.join("mock_output.log"));
    assert!(out2.contains("buildroot cache hit: install-"), "{out2}");
    assert!(out2.contains("buildroot cache hit: builddep-"), "{out2}");
    assert_eq!(env.b.cache_counters().get(), (2, 2));
    // Metrics saw them too.
    let text = env
        .registry
        .metrics()
        .encode(&env.registry.snapshot(), false)
        .unwrap();
    let hits = text
        .lines()
        .find(|l| l.contains("buildroot_cache_lookups") && l.contains("result=\"hit\""))
        .unwrap_or_else(|| panic!("no cache hit metric:\n{text}"));
    assert!(hits.ends_with(" 2"), "{hits}");
    assert_clean(&env, &work2);
    let layers = env.b.store().local_layers().unwrap();
    assert_eq!(layers.len(), 2);

    // A payloadhash that disagrees with rpmlist.jsonl is refused, as kojid does.
    let jl = repo.join("rpmlist.jsonl");
    let orig = read(&jl);
    let v: serde_json::Value = serde_json::from_str(orig.trim()).unwrap();
    let bad = orig.replace(
        v["payloadhash"].as_str().unwrap(),
        "00000000000000000000000000000000",
    );
    std::fs::write(&jl, bad).unwrap();
    let mut br = env.b.create(koji_req("third")).await.unwrap();
    assert_eq!(
        br.rebuild(&srpm("needs-dep"), None).await.unwrap(),
        StepOutcome::Ok
    );
    let e = br.hub_package_list().await.unwrap_err();
    assert!(matches!(e, BuildrootError::PackageList(_)));
    assert!(
        e.to_string().contains("payloadhash") && e.to_string().contains("mismatch expected 0000"),
        "{e}"
    );
    br.destroy().await;
    std::fs::write(&jl, orig).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_buildroots_install_once() {
    need_root();
    let env = Env::new(true);
    let repo = make_repo(env.dir.path());
    let url = format!("file://{}", repo.display());
    let mk = |n: &str| {
        let mut r = env.request(n);
        r.repos = vec![repo_source(url.clone())];
        r.packages = vec!["koji-only-dep".into()];
        r
    };
    let (a, b) = tokio::join!(env.b.create(mk("a")), env.b.create(mk("b")));
    let (mut a, mut b) = (a.unwrap(), b.unwrap());
    // One made the install layer, the other waited and used it.
    assert_eq!(env.b.cache_counters().get(), (1, 1));
    assert_ne!(a.info().cache_hit, b.info().cache_hit);
    for br in [&mut a, &mut b] {
        let m = sh(br, "cat /usr/share/koji-only-dep/marker").await;
        assert_eq!(m.trim(), "koji-only-dep 1.0 is installed");
    }
    a.destroy().await;
    b.destroy().await;
    // A different package set is a different key.
    let mut r = mk("c");
    r.packages = vec![];
    let c = env.b.create(r).await.unwrap();
    assert!(!c.info().cache_hit);
    c.destroy().await;
    assert_eq!(env.b.store().local_layers().unwrap().len(), 2);
    // A changed repo (new repomd.xml) is never served the old install.
    let st = std::process::Command::new("createrepo_c")
        .args(["-q", "--revision", "2", "-g"])
        .arg(env.dir.path().join("comps.xml"))
        .arg(&repo)
        .status()
        .unwrap();
    assert!(st.success());
    let d = env.b.create(mk("d")).await.unwrap();
    assert!(
        !d.info().cache_hit,
        "a repo with new metadata got the old install"
    );
    d.destroy().await;
    // Eviction: a zero budget removes every unused layer.
    let rep = env.b.store().evict_local_layers(Some(0), None).unwrap();
    assert_eq!(rep.removed, 3);
    assert!(env.b.store().local_layers().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koji_request_macros_env_and_network() {
    need_root();
    let env = Env::new(false);
    let repo = make_repo(env.dir.path());
    let topdir = env.dir.path().join("topdir");
    // A Koji-like tree: <topdir>/repos/<tag>/<repo_id>/<arch> (read as file:// without
    // topurl, the whole topdir bound read-only).
    let arch_dir = topdir.join("repos/f40-build/9/x86_64");
    std::fs::create_dir_all(arch_dir.parent().unwrap()).unwrap();
    std::fs::rename(&repo, &arch_dir).unwrap();
    let st = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&topdir)
        .status()
        .unwrap();
    assert!(st.success());
    let mut cfg = Config::defaults();
    cfg.kojid.topdir = topdir.clone();
    cfg.kojid.vendor = "Acme".into();
    cfg.kojid.packager = "Builder <b@example.com>".into();
    cfg.kojid.distribution = "Acme Linux".into();
    cfg.kojid.mockhost = "koji-linux-gnu".into();
    let tag = Value::struct_from([
        ("id", Value::Int(3)),
        ("name", Value::from("f40-build")),
        ("arches", Value::from("x86_64")),
        (
            "extra",
            Value::struct_from([
                ("rpm.macro.dist", Value::from(".fc40")),
                ("rpm.macro.vendor", Value::from("Tag Vendor")),
                ("rpm.macro._topdir", Value::from("/nope")),
                ("rpm.macro.with_feature", Value::Int(1)),
                ("rpm.env.FOO", Value::from("bar baz")),
                ("mock.releasever", Value::from("12")),
            ]),
        ),
    ]);
    let repo_info = Value::struct_from([("id", Value::Int(9)), ("tag_id", Value::Int(3))]);
    let base = env.dir.path().join("koji");
    let image = env
        .b
        .policy()
        .resolve_config(&tag, "x86_64", "buildArch")
        .unwrap();
    let req = BuildrootRequest::for_koji(
        &cfg,
        image,
        KojiInputs {
            tag_config: &tag,
            repo: &repo_info,
            brootid: 77,
            task_id: 1234,
            br_arch: "x86_64",
            target_arch: "x86_64",
            install_group: "build",
            network: false,
            binds: vec![],
            logdir: base.join("logs"),
            workdir: base.join("work"),
        },
    )
    .unwrap();
    assert_eq!(req.name, "f40-build-77-9");
    assert_eq!(
        req.repos[0].baseurls,
        vec![format!(
            "file://{}/repos/f40-build/9/x86_64",
            topdir.display()
        )]
    );
    let logs = req.logdir.clone();
    let mut br = env.b.create(req).await.unwrap();
    let ev = sh(
        &br,
        "rpm --eval '%{dist}|%{vendor}|%{packager}|%{distribution}|%{_topdir}|%{_host_cpu}|%{_host}|%{with_feature}'",
    )
    .await;
    assert_eq!(
        ev.trim(),
        ".fc40|Tag Vendor|Builder <b@example.com>|Acme Linux|/builddir/build|x86_64|x86_64-koji-linux-gnu|1"
    );
    let conf = sh(&br, "cat /etc/dnf/dnf.conf").await;
    for l in [
        "gpgcheck=0",
        "install_weak_deps=0",
        "strict=1",
        "keepcache=1",
        "skip_if_unavailable=False",
        "reposdir=/dev/null",
        "[build]",
    ] {
        assert!(conf.lines().any(|x| x == l), "{l} missing:\n{conf}");
    }
    let user = sh(&br, "id mockbuild; stat -c %u:%g /builddir").await;
    assert!(user.contains("uid=1000(mockbuild) gid=135(mock)"), "{user}");
    assert!(user.contains("1000:135"), "{user}");
    // The hub's list: the repo's koji-only-dep is not installed yet; none of the image's.
    assert!(br.hub_package_list().await.unwrap().is_empty());
    // A build step sees the tag's environment and no network but loopback; the srpm
    // step works too.
    let spec_dir = env.dir.path().join("envcheck");
    std::fs::create_dir_all(&spec_dir).unwrap();
    std::fs::write(
        spec_dir.join("envcheck.spec"),
        "Name: envcheck\nVersion: 1\nRelease: 1%{?dist}\nSummary: x\nLicense: MIT\nBuildArch: noarch\n\
         %description\nx\n%build\necho \"FOO=[$FOO]\"\ncat /etc/resolv.conf | grep -c nameserver || echo no-nameserver\n\
         ls /sys/class/net\n%files\n%changelog\n* Mon Jan 01 2024 t <t@example.invalid> - 1-1\n- x\n",
    )
    .unwrap();
    assert_eq!(
        br.build_srpm(&spec_dir.join("envcheck.spec"), &spec_dir)
            .await
            .unwrap(),
        StepOutcome::Ok
    );
    let srpm = br.resultdir().join("envcheck-1-1.fc40.src.rpm");
    assert!(
        srpm.is_file(),
        "{:?}",
        std::fs::read_dir(br.resultdir())
            .unwrap()
            .collect::<Vec<_>>()
    );
    assert_eq!(br.rebuild(&srpm, None).await.unwrap(), StepOutcome::Ok);
    let rpm = br.resultdir().join("envcheck-1-1.fc40.noarch.rpm");
    assert_eq!(
        rpm_q(&rpm, "%{VENDOR}|%{PACKAGER}|%{DISTRIBUTION}"),
        "Tag Vendor|Builder <b@example.com>|Acme Linux"
    );
    br.destroy().await;
    let build = read(&logs.join("build.log"));
    assert!(build.contains("FOO=[bar baz]"), "{build}");
    assert!(build.contains("no-nameserver"), "{build}");
    let nets: Vec<&str> = build
        .lines()
        .skip_while(|l| !l.starts_with("+ ls /sys/class/net"))
        .skip(1)
        .take_while(|l| !l.starts_with('+'))
        .collect();
    assert_eq!(nets, vec!["lo"], "{build}");
    let mc = read(&logs.join("mock_config.log"));
    for l in [
        "# Koji buildroot id: 77",
        "# Koji repo id: 9",
        "# Koji tag: f40-build",
        "%dist .fc40",
        "%_topdir /builddir/build",
        "%_rpmfilename %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
        "FOO=bar baz",
    ] {
        assert!(mc.contains(l), "{l} missing in mock_config.log:\n{mc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_oom_are_reported() {
    need_root();
    let env = Env::new(false);
    let dir = env.dir.path().join("specs");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = |name: &str, build: &str| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("{name}.spec")),
            format!(
                "Name: {name}\nVersion: 1\nRelease: 1\nSummary: x\nLicense: MIT\nBuildArch: noarch\n\
                 %description\nx\n%build\n{build}\n%files\n%changelog\n* Mon Jan 01 2024 t <t@example.invalid> - 1-1\n- x\n"
            ),
        )
        .unwrap();
        d
    };
    let sleepy = spec("sleepy", "echo going to sleep; sleep 600");
    let hungry = spec(
        "hungry",
        "python3 -c 'a = bytearray(1024 * 1024 * 1024); print(len(a))'",
    );

    let mut req = env.request("limits");
    req.build_timeout = Duration::from_secs(3);
    req.limits = Limits {
        memory: Some(256 << 20),
        pids: Some(512),
        cpus: None,
    };
    let mut br = env.b.create(req).await.unwrap();
    assert_eq!(
        br.build_srpm(&sleepy.join("sleepy.spec"), &sleepy)
            .await
            .unwrap(),
        StepOutcome::Ok
    );
    let s = br.resultdir().join("sleepy-1-1.src.rpm");
    let StepOutcome::Failed(f) = br.rebuild(&s, None).await.unwrap() else {
        panic!("sleepy finished")
    };
    assert_eq!(f.status, "timed out after 3 s");
    assert!(f.exit.timed_out);
    assert!(f.tail.contains("going to sleep"), "{}", f.tail);

    assert_eq!(
        br.build_srpm(&hungry.join("hungry.spec"), &hungry)
            .await
            .unwrap(),
        StepOutcome::Ok
    );
    let h = br.resultdir().join("hungry-1-1.src.rpm");
    let StepOutcome::Failed(f) = br.rebuild(&h, None).await.unwrap() else {
        panic!("hungry allocated 1 GiB under a 256 MiB limit")
    };
    // python is OOM-killed, rpmbuild exits 1: the cgroup's OOM count names the cause.
    assert!(f.exit.oom_killed, "{:?}", f.exit);
    assert!(
        f.status.ends_with("killed: out of memory)") || f.status == "was killed: out of memory",
        "{}",
        f.status
    );
    assert!(
        f.tail.contains("killed by the kernel: out of memory"),
        "{}",
        f.tail
    );
    br.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_failure_and_missing_image_are_errors() {
    need_root();
    let env = Env::new(true);
    let repo = make_repo(env.dir.path());
    let mut req = env.request("badpkg");
    req.repos = vec![repo_source(format!("file://{}", repo.display()))];
    req.packages = vec!["no-such-package-anywhere".into()];
    let work = req.workdir.clone();
    let e = env.b.create(req).await.unwrap_err();
    let BuildrootError::InitFailed { name, failure } = &e else {
        panic!("not an init failure: {e}")
    };
    assert_eq!(name, "badpkg");
    assert_eq!(failure.step, "install");
    assert_eq!(failure.log, "root.log");
    assert!(
        failure.tail.contains("no-such-package-anywhere"),
        "{}",
        failure.tail
    );
    assert_eq!(env.b.cache_counters().misses.load(Ordering::Relaxed), 1);
    assert!(
        env.b.store().local_layers().unwrap().is_empty(),
        "a failed install is not cached"
    );
    assert_clean(&env, &work);

    let mut req = env.request("noimage");
    req.image = Resolution {
        image: "localhost/not-imported:1".into(),
        source: ImageSource::Default,
        tag: "t".into(),
    };
    let e = env.b.create(req).await.unwrap_err();
    assert!(matches!(e, BuildrootError::Image { .. }));
    assert!(e.to_string().contains("koji-adjutant image import"), "{e}");

    let mut req = env.request("badrepo");
    req.repos = vec![repo_source("file:///nonexistent/repo".into())];
    let e = env.b.create(req).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("/nonexistent/repo/repodata/repomd.xml"),
        "{e}"
    );
    assert!(!Path::new("/nonexistent").exists());
}
