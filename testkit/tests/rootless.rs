//! run_as_test_user / as_test_user really switch to adjutant-test, pass the fixtures on, and
//! fail loudly when the re-executed test does not run.

use adjutant_testkit::{
    as_test_user, fixtures_dir, is_root, is_test_user_child, run_as_test_user, TEST_UID,
};

#[test]
fn body_runs_as_the_test_user() {
    let parent_was_root = is_root();
    if parent_was_root {
        fixtures_dir(); // resolved here, handed to the child through the environment
    }
    if !as_test_user() {
        return;
    }
    if is_test_user_child() {
        assert_eq!(nix::unistd::geteuid().as_raw(), TEST_UID);
        assert_eq!(nix::unistd::getegid().as_raw(), TEST_UID);
        assert_eq!(std::env::var("HOME").as_deref(), Ok("/home/adjutant-test"));
        // The fixtures are readable by the test user, without running the script again.
        assert!(std::env::var_os(adjutant_testkit::FIXTURES_ENV).is_some());
        let index = fixtures_dir().join("oci/busybox/index.json");
        std::fs::read(&index)
            .unwrap_or_else(|e| panic!("{} as the test user: {e}", index.display()));
    } else {
        assert!(
            !is_root(),
            "as_test_user returned true in a root process that is no child"
        );
    }
}

#[test]
fn a_wrong_test_name_fails_instead_of_passing_vacuously() {
    let result = std::panic::catch_unwind(|| run_as_test_user("no_such_module::no_such_test"));
    let err = result.expect_err("running a test that does not exist must fail");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    if is_root() {
        assert!(msg.contains("did not run exactly one test"), "{msg}");
    } else {
        assert!(msg.contains("needs root"), "{msg}");
    }
}

#[test]
fn a_failing_body_fails_the_parent() {
    if is_test_user_child() {
        panic!("failing on purpose as the test user");
    }
    let result = std::panic::catch_unwind(|| run_as_test_user("a_failing_body_fails_the_parent"));
    let err = result.expect_err("a failing child must fail the parent");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    if is_root() {
        assert!(msg.contains("failed: exit status"), "{msg}");
    } else {
        assert!(msg.contains("needs root"), "{msg}");
    }
}
