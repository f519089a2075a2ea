//! The hub client against the fake hub: sessions, call numbers, exclusivity,
//! renewal, retries, faults, multicall and uploads.

mod support;

use std::sync::Arc;
use std::time::Duration;

use koji_adjutant::hub::{
    AuthMethod, HubError, HubSession, HubTransport, RetryPolicy, TransportOptions, UploadOptions,
    Uploader,
};
use koji_adjutant::xmlrpc::{Fault, FaultKind, Struct, Value};
use support::fakehub::{Action, FakeHub, OPEN};

fn policy(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        retry_interval: Duration::from_millis(20),
        offline_retry: true,
        offline_retry_interval: Duration::from_millis(50),
        anon_retry: false,
    }
}

fn session(hub: &FakeHub, user: &str, retries: u32) -> HubSession {
    let t = Arc::new(HubTransport::new(TransportOptions::new(hub.url().parse().unwrap())).unwrap());
    HubSession::new(
        t,
        AuthMethod::Password {
            user: user.into(),
            password: format!("{user}-pw"),
        },
        policy(retries),
        true,
    )
}

async fn host_session(hub: &FakeHub) -> HubSession {
    let s = session(hub, "builder1", 5);
    s.login().await.unwrap();
    s.exclusive_session(false).await.unwrap();
    s
}

#[tokio::test]
async fn login_exclusive_and_host_calls() {
    let hub = FakeHub::start(1).await;
    let s = session(&hub, "builder1", 5);
    // host calls need an exclusive session
    s.login().await.unwrap();
    let e = s.host_get_id().await.unwrap_err();
    assert!(e.is_fault(FaultKind::Auth), "{e}");
    assert!(e.to_string().contains("exclusive"), "{e}");
    s.exclusive_session(false).await.unwrap();
    assert_eq!(s.host_get_id().await.unwrap(), 1);
    assert_eq!(
        s.echo(vec![Value::from("OK")]).await.unwrap(),
        Value::Array(vec![Value::from("OK")])
    );
    let host = s.host_get_host().await.unwrap();
    assert_eq!(host.name, "builder1");
    assert_eq!(host.capacity, 4.0);
    assert_eq!(s.transport().hub_version().as_deref(), Some("1.35.3"));
    // bad password
    let bad = session(&hub, "builder1", 0);
    let bad = HubSession::new(
        bad.transport().clone(),
        AuthMethod::Password {
            user: "builder1".into(),
            password: "nope".into(),
        },
        policy(0),
        true,
    );
    let e = bad.login().await.unwrap_err();
    assert!(e.is_fault(FaultKind::Auth), "{e}");
}

#[tokio::test]
async fn call_numbers_increase_strictly_and_calls_are_serialized() {
    let hub = FakeHub::start(1).await;
    let s = host_session(&hub).await;
    let mut handles = Vec::new();
    for _ in 0..40 {
        let s = s.clone();
        handles.push(tokio::spawn(async move { s.host_get_host().await }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let sub = s.subsession().await.unwrap();
    for _ in 0..3 {
        sub.host_get_id().await.unwrap();
    }
    let sid = s.session_id().unwrap();
    let subid = sub.session_id().unwrap();
    assert_ne!(sid, subid);
    hub.with(|st| {
        let seen = &st.sessions[&sid].seen;
        assert_eq!(
            seen.len(),
            42,
            "exclusiveSession, 40 calls, subsession: {seen:?}"
        );
        assert!(
            seen.windows(2).all(|w| w[1] == w[0] + 1),
            "not strictly increasing by one: {seen:?}"
        );
        assert_eq!(
            st.sessions[&subid].seen,
            vec![0, 1, 2],
            "a subsession counts on its own"
        );
        assert!(
            st.calls
                .iter()
                .all(|c| c.outcome.is_ok() || c.method == "host.getID"),
            "a call failed"
        );
    });
    // the subsession is exclusive through its master; logoutChild closes it
    s.logout_child(subid).await.unwrap();
    let e = sub.host_get_id().await.unwrap_err();
    assert!(e.is_fault(FaultKind::Auth), "{e}");
}

#[tokio::test]
async fn exclusive_lock_and_force() {
    let hub = FakeHub::start(1).await;
    let a = host_session(&hub).await;
    let b = session(&hub, "builder1", 0);
    b.login().await.unwrap();
    let e = b.exclusive_session(false).await.unwrap_err();
    assert!(e.is_fault(FaultKind::AuthLock), "{e}");
    // while locked, the other session cannot do anything else
    let e = b.echo(vec![]).await.unwrap_err();
    assert!(e.is_fault(FaultKind::AuthLock), "{e}");
    b.exclusive_session(true).await.unwrap();
    assert_eq!(b.host_get_id().await.unwrap(), 1);
    let e = a.host_get_id().await.unwrap_err();
    assert!(
        e.is_fault(FaultKind::Auth),
        "the forced-out session is closed: {e}"
    );
}

#[tokio::test]
async fn expired_sessions_are_renewed_and_the_call_replayed() {
    let hub = FakeHub::start(1).await;
    let s = host_session(&hub).await;
    let sub = s.subsession().await.unwrap();
    let sid = s.session_id().unwrap();
    hub.expire_sessions();
    assert_eq!(s.host_get_id().await.unwrap(), 1);
    assert_eq!(s.session_id(), Some(sid), "renewal keeps the session id");
    assert_eq!(sub.host_get_id().await.unwrap(), 1, "subsessions renew too");
    let logins = hub.calls_of("login");
    let renewals: Vec<_> = logins
        .iter()
        .filter(|c| {
            c.params
                .last()
                .and_then(|p| p.get("renew"))
                .is_some_and(Value::truthy)
        })
        .collect();
    assert_eq!(renewals.len(), 2);
    // renewal never asks for `exclusive` (it would fail, notes §1.7)
    assert!(renewals
        .iter()
        .all(|c| c.params.last().and_then(|p| p.get("exclusive")).is_none()));
    // call numbers kept increasing across the renewal
    hub.with(|st| {
        let seen = &st.sessions[&sid].seen;
        assert!(seen.windows(2).all(|w| w[1] > w[0]), "{seen:?}");
    });
}

#[tokio::test]
async fn dropped_connections_are_retried_with_the_same_call_number() {
    let hub = FakeHub::start(1).await;
    let s = host_session(&hub).await;
    let sid = s.session_id().unwrap();
    hub.inject("host.getHost", 2, Action::DropBefore);
    s.host_get_host().await.unwrap();
    let seen = hub.with(|st| st.sessions[&sid].seen.clone());
    // the call number of the two dropped attempts never reached a handler; the third
    // attempt carries the same number
    let last = *seen.last().unwrap();
    assert_eq!(
        hub.calls_of("host.getHost").last().unwrap().callnum,
        Some(last)
    );
    // a whitelisted call whose answer was lost is simply retried
    hub.inject("host.updateHost", 1, Action::DropAfter);
    s.host_update_host(0.5, true, None).await.unwrap();
    let updates = hub.calls_of("host.updateHost");
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].callnum, updates[1].callnum);
    // a call that took effect but whose answer was lost is not run twice: the hub
    // refuses the replay (RetryError) ...
    let t = hub.make_task("sleep", vec![Value::Int(1)]);
    assert!(s.host_open_task(t).await.unwrap().is_some());
    hub.inject("host.subtask", 1, Action::DropAfter);
    let e = s
        .host_subtask("sleep", vec![Value::Int(1)], t, Struct::new())
        .await
        .unwrap_err();
    assert!(matches!(e, HubError::TookEffect { .. }), "{e}");
    assert_eq!(
        hub.with(|st| st.tasks.values().filter(|x| x.parent == Some(t)).count()),
        1
    );
    // a labeled subtask is idempotent: asking again returns the child's id
    hub.inject("host.subtask", 1, Action::DropAfter);
    let mut opts = Struct::new();
    opts.insert("label".into(), Value::from("x"));
    let c1 = s
        .host_subtask("sleep", vec![Value::Int(1)], t, opts.clone())
        .await
        .unwrap();
    let c2 = s
        .host_subtask("sleep", vec![Value::Int(1)], t, opts)
        .await
        .unwrap();
    assert_eq!(c1, c2);
    assert_eq!(
        hub.with(|st| st.tasks.values().filter(|x| x.parent == Some(t)).count()),
        2
    );
    // ... which, for calls that return nothing, is success
    hub.inject("host.setTaskWeight", 1, Action::DropAfter);
    s.host_set_task_weight(t, 2.0).await.unwrap();
    assert_eq!(hub.task(t).weight, 2.0);
    assert_eq!(
        hub.calls_of("host.setTaskWeight")
            .iter()
            .filter(|c| c.outcome.is_ok())
            .count(),
        1
    );
    hub.inject("host.closeTask", 1, Action::DropAfter);
    s.host_close_task(t, koji_adjutant::xmlrpc::encode_response(&Value::Nil))
        .await
        .unwrap();
    assert_eq!(hub.task(t).state, support::fakehub::CLOSED);
}

#[tokio::test]
async fn retries_give_up_after_max_retries_and_faults_are_final() {
    let hub = FakeHub::start(1).await;
    let s = session(&hub, "builder1", 2);
    s.login().await.unwrap();
    s.exclusive_session(false).await.unwrap();
    hub.inject("host.getHost", 10, Action::DropBefore);
    let e = s.host_get_host().await.unwrap_err();
    assert!(matches!(e, HubError::Transport { .. }), "{e}");
    // 1 try + 2 retries, each with kojid's one immediate reconnect
    let left = hub.with(|st| st.injections.iter().map(|i| i.remaining).sum::<u32>());
    assert_eq!(10 - left, 6);
    hub.with(|st| st.injections.clear());
    hub.inject("host.getHost", 1, Action::Fault(Fault::new(1004, "nope")));
    let e = s.host_get_host().await.unwrap_err();
    assert!(
        e.is_fault(FaultKind::ActionNotAllowed) && e.is_fault(FaultKind::Generic),
        "{e}"
    );
    assert_eq!(e.fault().unwrap().string, "nope");
    // anonymous calls are not retried (kojid does not set anon_retry)
    let anon = HubSession::new(s.transport().clone(), AuthMethod::None, policy(5), true);
    hub.inject("echo", 5, Action::DropBefore);
    assert!(anon.echo(vec![]).await.is_err());
    let left = hub.with(|st| st.injections.iter().map(|i| i.remaining).sum::<u32>());
    assert_eq!(left, 3, "one try plus one reconnect");
}

#[tokio::test]
async fn server_offline_is_retried_until_it_passes() {
    let hub = Arc::new(FakeHub::start(1).await);
    let s = host_session(&hub).await;
    hub.with(|st| st.offline = true);
    let h = {
        let s = s.clone();
        tokio::spawn(async move { s.host_get_id().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!h.is_finished(), "gave up while the hub was offline");
    hub.with(|st| st.offline = false);
    assert_eq!(h.await.unwrap().unwrap(), 1);
}

#[tokio::test]
async fn multicall_returns_results_and_faults() {
    let hub = FakeHub::start(1).await;
    let s = host_session(&hub).await;
    let r = s
        .multicall(vec![
            ("echo".into(), vec![Value::Int(1)], Struct::new()),
            ("nosuch".into(), vec![], Struct::new()),
            ("host.getID".into(), vec![], Struct::new()),
        ])
        .await
        .unwrap();
    assert_eq!(r[0], Ok(Value::Array(vec![Value::Int(1)])));
    assert_eq!(r[1].as_ref().unwrap_err().code, 1000);
    assert_eq!(r[2], Ok(Value::Int(1)));
    assert_eq!(hub.calls_of("multiCall").len(), 1);
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn uploads_in_verified_chunks_only_while_the_task_is_ours() {
    let hub = FakeHub::start(1).await;
    let s = host_session(&hub).await;
    let t = hub.make_task("sleep", vec![Value::Int(1)]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    let content = data(100_000);
    std::fs::write(&file, &content).unwrap();
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, b"").unwrap();
    let rel = koji_adjutant::hub::taskrelpath(t);
    let up = Uploader::new(
        s.clone(),
        rel.clone(),
        UploadOptions {
            blocksize: 16384,
            ..Default::default()
        },
    );
    // not open yet: the hub refuses
    let e = up.upload_file(&file, None).await.unwrap_err();
    assert!(e.to_string().contains("does not own task"), "{e}");
    s.host_open_task(t).await.unwrap();
    let sum = up.upload_file(&file, None).await.unwrap();
    assert_eq!(sum.size, 100_000);
    assert_eq!(sum.relpath, format!("{rel}/big.bin"));
    assert_eq!(
        support::fakehub::read_uploaded(&hub, &sum.relpath).unwrap(),
        content
    );
    assert_eq!(
        hub.calls_of("rawUpload").len(),
        1 + 7,
        "one refused, then ceil(100000/16384) chunks"
    );
    // an empty file is one empty chunk
    up.upload_file(&empty, Some("empty.log")).await.unwrap();
    assert_eq!(
        support::fakehub::read_uploaded(&hub, &format!("{rel}/empty.log")).unwrap(),
        b""
    );
    // a second upload overwrites
    std::fs::write(&file, b"short").unwrap();
    up.upload_file(&file, None).await.unwrap();
    assert_eq!(
        support::fakehub::read_uploaded(&hub, &sum.relpath).unwrap(),
        b"short"
    );
    // sha256 verification works the same way
    let up256 = Uploader::new(
        s.clone(),
        rel.clone(),
        UploadOptions {
            blocksize: 30000,
            verify: koji_adjutant::hub::Verify::Sha256,
            ..Default::default()
        },
    );
    std::fs::write(&file, &content).unwrap();
    up256.upload_file(&file, Some("sha.bin")).await.unwrap();
    assert_eq!(
        support::fakehub::read_uploaded(&hub, &format!("{rel}/sha.bin")).unwrap(),
        content
    );
    assert!(hub.calls_of("rawUpload").last().unwrap().params[0]
        .as_str()
        .unwrap()
        .contains("fileverify=sha256"));
    // bad names never reach the hub
    assert!(up.upload_bytes(b"x", "../x").await.is_err());
    assert!(up.upload_bytes(b"x", ".hidden").await.is_err());
}

#[tokio::test]
async fn a_connection_dropped_mid_upload_is_resent_or_resumed() {
    let hub = FakeHub::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rpm.bin");
    let content = data(70_000);
    std::fs::write(&file, &content).unwrap();
    for retries in [3u32, 0] {
        let s = session(&hub, "builder1", retries);
        s.login().await.unwrap();
        s.exclusive_session(true).await.unwrap();
        let t = hub.make_task("sleep", vec![Value::Int(1)]);
        s.host_open_task(t).await.unwrap();
        let up = Uploader::new(
            s.clone(),
            koji_adjutant::hub::taskrelpath(t),
            UploadOptions {
                blocksize: 20_000,
                ..Default::default()
            },
        );
        // once the first chunk is in, the next one breaks after 5000 bytes reached
        // the hub — twice, so kojid's immediate reconnect does not hide it
        let calls_before = hub.calls_of("rawUpload").len();
        let task = {
            let up2 = up.clone();
            let f2 = file.clone();
            tokio::spawn(async move { up2.upload_file(&f2, None).await })
        };
        hub.inject("rawUpload", 2, Action::DropUploadAfter(5000));
        let sum = task.await.unwrap().unwrap();
        assert!(hub.calls_of("rawUpload").len() >= calls_before + 5);
        assert_eq!(sum.size, 70_000);
        let got = support::fakehub::read_uploaded(&hub, &sum.relpath).unwrap();
        assert_eq!(got.len(), content.len(), "retries={retries}");
        assert!(got == content, "content differs (retries={retries})");
        if retries == 0 {
            assert_eq!(
                sum.resumes, 1,
                "no transport retries left: resumed through checkUpload"
            );
        }
    }
}

#[tokio::test]
async fn log_sync_uploads_increments_and_restarts_on_truncation() {
    let hub = FakeHub::start(1).await;
    let s = host_session(&hub).await;
    let t = hub.make_task("sleep", vec![Value::Int(1)]);
    s.host_open_task(t).await.unwrap();
    let rel = koji_adjutant::hub::taskrelpath(t);
    let up = Uploader::new(s.clone(), rel.clone(), UploadOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("build.log");
    let mut sync = up.log_sync(&log, "build.log");
    sync.sync().await.unwrap(); // not there yet: fine
    std::fs::write(&log, b"line 1\n").unwrap();
    sync.sync().await.unwrap();
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&data(150_000)).unwrap();
    drop(f);
    sync.sync().await.unwrap();
    let remote = format!("{rel}/build.log");
    assert_eq!(
        support::fakehub::read_uploaded(&hub, &remote).unwrap(),
        std::fs::read(&log).unwrap()
    );
    let n = hub.calls_of("rawUpload").len();
    sync.sync().await.unwrap();
    assert_eq!(
        hub.calls_of("rawUpload").len(),
        n,
        "nothing new, nothing sent"
    );
    std::fs::write(&log, b"rewritten\n").unwrap();
    sync.sync().await.unwrap();
    assert_eq!(
        support::fakehub::read_uploaded(&hub, &remote).unwrap(),
        b"rewritten\n"
    );
    assert_eq!(hub.task(t).state, OPEN);
}
