//! A registry that looks like a busy builder's: shared by the status benchmark and
//! the `status_demo` example.

use koji_adjutant::registry::{
    ContainerStart, ContainerUsage, LimitsRecord, MountRecord, Registry, TaskPhase,
};
use koji_adjutant::xmlrpc::{Fault, FaultKind};

/// `finished` kept tasks (every tenth failed) and `running` running ones, each with
/// steps, logs and a container.
pub fn busy_registry(finished: i64, running: i64) -> Registry {
    let r = Registry::new(std::time::Duration::from_secs(86400));
    r.update_host(|h| {
        h.hub_url = "https://koji.example.org/kojihub".into();
        h.hub_version = Some("1.35.3".into());
        h.host_id = Some(7);
        h.host_name = Some("buildvm-x86-07.example.org".into());
        h.session = koji_adjutant::registry::SessionState::Exclusive;
        h.session_id = Some(123456);
        h.ready = true;
        h.capacity = 8.0;
        h.task_load = 4.5;
        h.maxjobs = 10;
        h.running = running as usize;
        h.last_poll = Some(koji_adjutant::registry::now());
    });
    for id in 1..=(finished + running) {
        r.task_started(id, "buildArch", "x86_64", 1.5);
        r.update_task(id, |t| {
            t.tag = Some("f40-build".into());
            t.srpm = Some(format!("work/tasks/{id}/pkg-{id}-1.0-1.fc40.src.rpm"));
            t.image = Some("registry.fedoraproject.org/fedora:40".into());
            t.policy_rule = Some("tag_arch f40-build/x86_64".into());
            t.buildroot_id = Some(10_000 + id);
            t.logs.insert(
                "build.log".into(),
                format!("/var/lib/kojid/tasks/{id}/build.log"),
            );
            t.logs.insert(
                "root.log".into(),
                format!("/var/lib/kojid/tasks/{id}/root.log"),
            );
        });
        for step in ["pull", "install", "build", "upload"] {
            r.step_start(id, step);
            r.step_end(id, step, "ok");
        }
        let cid = format!("c{id:016x}");
        r.container_started(ContainerStart {
            id: cid.clone(),
            task_id: Some(id),
            image: "registry.fedoraproject.org/fedora:40".into(),
            image_digest: Some(format!("sha256:{:064x}", id)),
            pid: Some(1000 + id as i32),
            mounts: vec![MountRecord {
                source: "/mnt/koji".into(),
                target: "/mnt/koji".into(),
                read_only: true,
            }],
            network: "none".into(),
            limits: LimitsRecord {
                memory_bytes: Some(8 << 30),
                cpus: Some(4.0),
                pids: Some(8192),
            },
            limits_available: true,
            command: vec!["/usr/bin/rpmbuild".into(), "--rebuild".into()],
            workdir: Some("/builddir".into()),
            user: Some("1000:1000".into()),
        });
        r.container_usage(
            &cid,
            ContainerUsage {
                cpu_seconds: 120.0,
                memory_bytes: 1 << 30,
                peak_memory: 3 << 30,
                pids: 12,
                oom_kills: 0,
            },
        );
        if id <= finished {
            r.container_exited(&cid, Some(0));
            r.container_finished(&cid);
            if id % 10 == 0 {
                r.task_failed(
                    id,
                    &Fault::of(
                        FaultKind::Build,
                        "error building package (arch x86_64), mock exited with status 1",
                    ),
                );
            } else {
                r.task_finished(
                    id,
                    TaskPhase::Closed,
                    Some("{'brootid': 1, 'rpms': [...]}".into()),
                );
            }
        }
    }
    r
}
