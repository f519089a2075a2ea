//! A small tool used by tests/realhub/check.sh: act as the build host for one task
//! and exercise the upload path against a real hub.
//!
//! `hubcheck upload -c kojid.conf TASK_ID SIZE`: log in as kojid would (cert or
//! password), take the exclusive session (forced), open the task, upload a generated
//! file of SIZE bytes in `upload_blocksize` chunks plus a log synced incrementally,
//! verify with checkUpload, and close the task with the uploaded paths as its result.
//! Prints the result; exits 1 on any error.

use std::sync::Arc;

use koji_adjutant::config::{Config, DaemonArgs};
use koji_adjutant::daemon::auth_method;
use koji_adjutant::hub::{
    taskrelpath, HubSession, HubTransport, RetryPolicy, TransportOptions, UploadOptions, Uploader,
};
use koji_adjutant::xmlrpc::{encode_response, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("hubcheck: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 || args[1] != "upload" || args[2] != "-c" {
        return Err("usage: hubcheck upload -c kojid.conf TASK_ID SIZE".into());
    }
    let da = DaemonArgs {
        config: Some(args[3].clone().into()),
        ..Default::default()
    };
    let task: i64 = args[4].parse().map_err(|e| format!("task id: {e}"))?;
    let size: usize = args[5].parse().map_err(|e| format!("size: {e}"))?;
    let cfg = Config::load(&da, std::env::vars()).map_err(|e| e.to_string())?;
    let auth = auth_method(&cfg).map_err(|e| e.to_string())?;
    let t = Arc::new(
        HubTransport::new(TransportOptions::from_config(&cfg).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?,
    );
    let s = HubSession::new(t, auth, RetryPolicy::from_config(&cfg), true);
    s.login().await.map_err(|e| e.to_string())?;
    s.exclusive_session(true).await.map_err(|e| e.to_string())?;
    let opened = s.host_open_task(task).await.map_err(|e| e.to_string())?;
    if opened.is_none() {
        return Err(format!("could not open task {task}"));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("payload.bin");
    let data: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(31) % 253) as u8)
        .collect();
    std::fs::write(&file, &data).map_err(|e| e.to_string())?;
    let log = dir.path().join("check.log");
    std::fs::write(&log, b"first line\n").map_err(|e| e.to_string())?;
    let up = Uploader::new(
        s.clone(),
        taskrelpath(task),
        UploadOptions {
            blocksize: usize::try_from(cfg.adjutant.upload_blocksize).unwrap_or(1 << 20),
            ..Default::default()
        },
    );
    let mut sync = up.log_sync(&log, "check.log");
    sync.sync().await.map_err(|e| e.to_string())?;
    let sum = up
        .upload_file(&file, None)
        .await
        .map_err(|e| e.to_string())?;
    std::fs::write(&log, b"first line\nsecond line\n").map_err(|e| e.to_string())?;
    sync.sync().await.map_err(|e| e.to_string())?;
    let check = s
        .check_upload(&taskrelpath(task), "payload.bin", Some("adler32"))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("checkUpload: missing")?;
    let result = Value::struct_from([
        (
            "files",
            Value::Array(vec![Value::from(sum.relpath.clone())]),
        ),
        (
            "logs",
            Value::Array(vec![Value::from(format!(
                "{}/check.log",
                taskrelpath(task)
            ))]),
        ),
        ("size", Value::Int(sum.size as i64)),
        (
            "adler32",
            check.get("hexdigest").cloned().unwrap_or_default(),
        ),
    ]);
    s.host_close_task(task, encode_response(&result))
        .await
        .map_err(|e| e.to_string())?;
    s.logout().await.map_err(|e| e.to_string())?;
    println!("{result}");
    Ok(())
}
