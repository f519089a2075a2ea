//! Decoding responses captured from a real Koji 1.35.3 hub (tests/realhub/capture.sh
//! against /work/shared/realhub), and the typed views the client builds on them.

use koji_adjutant::xmlrpc::{decode_call, decode_response, FaultKind, MethodResponse, Value};

fn load(name: &str) -> MethodResponse {
    let path = format!(
        "{}/tests/data/realhub/{name}.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    decode_response(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn value(name: &str) -> Value {
    match load(name) {
        MethodResponse::Params(mut p) => {
            assert_eq!(p.len(), 1, "{name}");
            p.pop().unwrap()
        }
        MethodResponse::Fault(f) => panic!("{name}: unexpected fault {f}"),
    }
}

fn fault(name: &str) -> koji_adjutant::xmlrpc::Fault {
    match load(name) {
        MethodResponse::Fault(f) => f,
        other => panic!("{name}: not a fault: {other:?}"),
    }
}

#[test]
fn every_capture_decodes() {
    let dir = format!("{}/tests/data/realhub", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "xml") {
            decode_response(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 25, "only {n} captures");
}

#[test]
fn simple_values() {
    assert_eq!(value("getKojiVersion"), Value::from("1.35.3"));
    assert_eq!(value("echo"), Value::Array(vec![Value::from("OK")]));
    assert_eq!(value("host_getID"), Value::Int(2));
    assert_eq!(value("exclusiveSession"), Value::Nil);
    assert_eq!(value("host_updateHost"), Value::Nil);
    assert_eq!(value("getTaskInfo_missing"), Value::Nil);
    assert_eq!(
        value("host_openTask_again"),
        Value::Nil,
        "openTask of an open task is nil"
    );
    let login = value("login");
    assert!(login.get("session-id").and_then(Value::as_i64).is_some());
    assert_eq!(login.get("header-auth"), Some(&Value::Bool(true)));
}

#[test]
fn build_config_with_extras() {
    let bc = value("getBuildConfig");
    assert_eq!(bc.get("name").and_then(Value::as_str), Some("dist-build"));
    assert_eq!(bc.get("arches").and_then(Value::as_str), Some("x86_64"));
    assert_eq!(
        bc.get("extra")
            .and_then(|e| e.get("adjutant.image"))
            .and_then(Value::as_str),
        Some("localhost/buildroot:latest")
    );
    assert!(bc.get("config_inheritance").is_some());
}

#[test]
fn task_info_and_open_task() {
    let info = value("getTaskInfo_request");
    assert_eq!(info.get("method").and_then(Value::as_str), Some("sleep"));
    assert_eq!(
        info.get("request"),
        Some(&Value::Array(vec![Value::Int(1)]))
    );
    assert_eq!(info.get("state").and_then(Value::as_i64), Some(0));
    // datetimes are strings; the *_ts fields are doubles and agree with them
    let ts = info.get("create_ts").and_then(Value::as_f64).unwrap();
    let parsed = info
        .get("create_time")
        .and_then(Value::as_hub_datetime)
        .unwrap();
    assert!((ts - parsed).abs() < 1e-3, "{ts} vs {parsed}");
    let opened = value("host_openTask");
    assert_eq!(opened.get("state").and_then(Value::as_i64), Some(1));
    // openTask gives the request as raw methodCall XML
    let req = opened.get("request").and_then(Value::as_str).unwrap();
    let call = decode_call(req.as_bytes()).unwrap();
    assert_eq!(call.method, "sleep");
    assert_eq!(call.params, vec![Value::Int(1)]);
    let failed = value("getTaskInfo_failed");
    assert_eq!(failed.get("state").and_then(Value::as_i64), Some(5));
}

#[test]
fn host_views() {
    let h = value("host_getHost");
    assert_eq!(h.get("name").and_then(Value::as_str), Some("builder2"));
    assert_eq!(h.get("capacity").and_then(Value::as_f64), Some(4.0));
    let ld = value("host_getLoadData");
    let parts = ld.as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert!(value("host_getHostTasks").as_array().is_some());
    assert!(value("listBuildroots").as_array().is_some());
    let si = value("getSessionInfo");
    assert!(si.get("start_ts").and_then(Value::as_f64).is_some());
}

#[test]
fn faults_map_to_koji_classes() {
    let cases = [
        (
            "fault_invalid_method",
            FaultKind::Generic,
            "Invalid method: noSuchMethod",
        ),
        (
            "fault_parameter",
            FaultKind::Parameter,
            "positional arguments",
        ),
        ("fault_unknown_tag", FaultKind::Generic, "No such tagInfo"),
        (
            "fault_not_exclusive",
            FaultKind::Auth,
            "requires an exclusive session",
        ),
        ("fault_retry", FaultKind::Retry, "unable to retry call"),
        ("fault_sequence", FaultKind::Sequence, " > "),
        (
            "fault_bad_session",
            FaultKind::Auth,
            "Invalid session or bad credentials",
        ),
        (
            "fault_getTaskResult_unfinished",
            FaultKind::Generic,
            "is not finished",
        ),
    ];
    for (name, kind, text) in cases {
        let f = fault(name);
        assert_eq!(f.kind(), kind, "{name}: {f}");
        assert!(f.string.contains(text), "{name}: {}", f.string);
    }
    assert!(fault("fault_retry").kind().is_a(FaultKind::Auth));
    // a task's stored fault comes back with its own code
    let f = fault("fault_getTaskResult_failed");
    assert_eq!((f.code, f.string.as_str()), (1005, "captured failure"));
}

#[test]
fn multicall_entries() {
    let v = value("multiCall");
    let e = v.as_array().unwrap();
    assert_eq!(e[0], Value::Array(vec![Value::Array(vec![Value::Int(1)])]));
    let f = koji_adjutant::xmlrpc::Fault::from_value(&e[1]).unwrap();
    assert_eq!(f.string, "Invalid method: nosuch");
    assert!(e[1].get("traceback").is_some());
}
