//! Container integration tests (root, and the same as an unprivileged user).

mod common;

use common::*;

async fn exec_basics_body() {
    let env = Env::new();
    let c = env.create().await;
    let (code, out, err) = sh(&c, "echo hello; echo oops >&2; exit 3").await;
    assert_eq!((code, out.as_str(), err.as_str()), (3, "hello\n", "oops\n"));
    c.destroy().await.unwrap();
}

#[test]
fn exec_basics() {
    if in_rootless_child() || !is_root() {
        return block_on(exec_basics_body());
    }
    block_on(exec_basics_body());
    rerun_unprivileged("exec_basics");
}
