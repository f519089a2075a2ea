//! Soak (issue 8, item 2): many builds in a row through the daemon binary (the fake
//! hub, container buildroots from the rpmroot image, buildroot cache hits after the
//! first), then `maxjobs` builds at once; afterwards mounts, cgroups, the daemon's
//! open fds, threads, memory, child processes and the disk use of its store and
//! workdir must be back at their level after the first (warm-up) build.
//!
//! `KOJI_ADJUTANT_SOAK_BUILDS` sets the number of sequential builds (default 50).
//! Tolerances (docs/reliability.md): fds +8 (the HTTP client's idle keep-alive
//! connections come and go: one per task's subsession after maxjobs at once; a
//! leak of one fd per build would show as +50), threads +4 (tokio's blocking pool parks idle threads
//! for 10 s; measured after 12 s idle), RSS +48 MiB (allocator fragmentation and
//! the status registry's bounded history); the store: the same number of entries and
//! bytes within 1 MiB; the workdir: the same number of files, bytes within 1 MiB (its
//! empty bucket directories `tasks/<id % 10000>` stay, as with kojid).
//!
//! Needs root and the rpmroot fixture.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::buildhost::{fixture, make_srpm, BuildHost};
use support::fakehub::{CLOSED, OPEN};
use support::leaks::{
    children_of, fd_count, file_usage, leftovers, mounts_under, rss_kib, thread_count, tree_usage,
    ContainerWatch,
};

#[derive(Debug, Clone, PartialEq)]
struct Level {
    fds: usize,
    threads: usize,
    rss_kib: u64,
    children: Vec<i32>,
    store: (u64, u64),
    workdir: (u64, u64),
    mounts: Vec<String>,
}

async fn level(h: &mut BuildHost) -> Level {
    // let the blocking pool's idle threads (10 s keep-alive) and finished tasks' cleanup
    // threads go
    tokio::time::sleep(Duration::from_secs(12)).await;
    let pid = h.daemon().pid();
    let mut mounts = mounts_under(h.e.dir.path());
    mounts.sort();
    Level {
        fds: fd_count(pid),
        threads: thread_count(pid),
        rss_kib: rss_kib(pid),
        children: children_of(pid),
        store: tree_usage(&h.store()),
        workdir: file_usage(&h.workdir()),
        mounts,
    }
}

fn soak_count() -> usize {
    std::env::var("KOJI_ADJUTANT_SOAK_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

fn check(what: &str, base: &Level, now: &Level, h: &BuildHost, seen: &BTreeSet<String>) {
    eprintln!("{what}: base {base:?}\n{what}: now  {now:?}");
    let left = leftovers(&h.store(), &h.workdir(), seen, None);
    assert!(left.is_empty(), "{what}: left behind {left:#?}");
    assert!(now.mounts.is_empty(), "{what}: mounts {:?}", now.mounts);
    assert!(
        now.children.is_empty(),
        "{what}: children {:?}",
        now.children
    );
    assert!(
        now.fds <= base.fds + 8,
        "{what}: fds {} → {}",
        base.fds,
        now.fds
    );
    assert!(
        now.threads <= base.threads + 4,
        "{what}: threads {} → {}",
        base.threads,
        now.threads
    );
    assert!(
        now.rss_kib <= base.rss_kib + 48 * 1024,
        "{what}: RSS {} KiB → {} KiB",
        base.rss_kib,
        now.rss_kib
    );
    assert_eq!(now.store.0, base.store.0, "{what}: files in the store");
    assert!(
        now.store.1.abs_diff(base.store.1) <= 1 << 20,
        "{what}: store bytes {} → {}",
        base.store.1,
        now.store.1
    );
    assert_eq!(
        now.workdir.0, base.workdir.0,
        "{what}: entries in the workdir"
    );
    assert!(
        now.workdir.1.abs_diff(base.workdir.1) <= 1 << 20,
        "{what}: workdir bytes {} → {}",
        base.workdir.1,
        now.workdir.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_builds_in_a_row_then_maxjobs_at_once() {
    let maxjobs = 3;
    let mut h = BuildHost::new(&format!("maxjobs = {maxjobs}")).await;
    // capacity is not the limit here: maxjobs is
    h.e.hub
        .with(|s| s.hosts.get_mut(&1).unwrap().capacity = 20.0);
    h.start();
    let watch = ContainerWatch::start(&h.store());
    let repo = h.repo().await;
    let src = h.e.upload_srpm(&fixture("srpms/hello-data-1.0-1.src.rpm"));
    // warm-up: the image unpacked, the buildroot cached
    let t0 = Instant::now();
    let first = h.build_arch(&src, repo);
    assert_eq!(h.finish(first).await, CLOSED);
    eprintln!("warm-up build: {:?}", t0.elapsed());
    let base = level(&mut h).await;

    let n = soak_count();
    let t1 = Instant::now();
    for i in 0..n {
        let t = h.build_arch(&src, repo);
        assert_eq!(h.finish(t).await, CLOSED, "build {i}");
        assert!(
            h.uploaded(t, "mock_output.log")
                .contains("buildroot cache hit"),
            "build {i} missed the buildroot cache"
        );
    }
    let seq = t1.elapsed();
    eprintln!(
        "{n} builds in a row: {seq:?} ({:?} per build)",
        seq / n.max(1) as u32
    );
    let after = level(&mut h).await;
    check(
        "after the builds in a row",
        &base,
        &after,
        &h,
        &watch.seen(),
    );

    // maxjobs at once: builds that take a few seconds, submitted together
    let slow = make_srpm(h.e.dir.path(), "slow-soak", "sleep 4");
    let slow = h.e.upload_srpm(&slow);
    let ids: Vec<i64> = (0..maxjobs * 2)
        .map(|_| h.build_arch(&slow, repo))
        .collect();
    let mut most = 0;
    let t2 = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let states: Vec<i64> = ids.iter().map(|t| h.e.hub.task(*t).state).collect();
        most = most.max(states.iter().filter(|s| **s == OPEN).count());
        if states
            .iter()
            .all(|s| *s != OPEN && *s != support::fakehub::FREE && *s != support::fakehub::ASSIGNED)
        {
            break;
        }
        assert!(Instant::now() < deadline, "concurrent builds did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{} builds, {maxjobs} at a time: {:?}; at most {most} open at once",
        ids.len(),
        t2.elapsed()
    );
    for t in &ids {
        assert_eq!(h.finish(*t).await, CLOSED);
    }
    assert_eq!(
        most, maxjobs as usize,
        "maxjobs builds ran at once, never more"
    );
    let end = level(&mut h).await;
    check("after maxjobs at once", &base, &end, &h, &watch.seen());
}
