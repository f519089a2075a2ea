//! `koji-adjutant image …` end to end: exit codes, output, two processes on one store.

use std::path::Path;
use std::process::{Command, Output};

fn ka(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_koji-adjutant"))
        .arg("--root")
        .arg(root)
        .arg("image")
        .args(args)
        .env_remove("KOJI_ADJUTANT_INSECURE_REGISTRIES")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn oci(name: &str) -> String {
    format!(
        "oci:{}:latest",
        adjutant_testkit::oci_layout(name).display()
    )
}

#[test]
fn exit_codes_scripts_can_rely_on() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    // Not in the store: 3, with a message naming it.
    let o = ka(r, &["inspect", "localhost/nothere"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("localhost/nothere"));
    let o = ka(r, &["pull", "--policy", "never", "quay.io/x/y:1"]);
    assert_eq!(o.status.code(), Some(3));
    // Malformed reference or flag: 2.
    assert_eq!(ka(r, &["pull", "UPPER/Case"]).status.code(), Some(2));
    assert_eq!(
        ka(r, &["pull", "--arch", "sparc", "busybox"]).status.code(),
        Some(2)
    );
    assert_eq!(
        ka(r, &["pull", "--policy", "sometimes", "busybox"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(ka(r, &["rm"]).status.code(), Some(2));
    // A source that is not an OCI layout: 1.
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = ka(r, &["import", &format!("oci:{}", empty.display())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("oci-layout"),
        "{o:?}"
    );
}

#[test]
fn import_ls_inspect_rm_prune() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let digest = ok(&ka(
        r,
        &[
            "import",
            "-q",
            &oci("busybox"),
            "localhost/buildroot:latest",
        ],
    ));
    let digest = digest.trim();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(
        ok(&ka(r, &["ls", "-q"])).trim(),
        "localhost/buildroot:latest"
    );
    let table = ok(&ka(r, &["ls"]));
    assert!(
        table.starts_with("NAME") && table.contains(&digest[7..19]),
        "{table}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&ka(r, &["inspect", "buildroot"]))).unwrap();
    assert_eq!(v["manifest_digest"], digest);
    assert_eq!(v["layers"].as_array().unwrap().len(), 1);
    // Policy missing: a stored name is used without asking any registry (localhost
    // has none here).
    let again = ok(&ka(r, &["pull", "-q", "localhost/buildroot:latest"]));
    assert_eq!(again.trim(), digest);
    assert_eq!(
        ok(&ka(r, &["rm", "localhost/buildroot"])).trim(),
        "localhost/buildroot:latest"
    );
    let p: serde_json::Value = serde_json::from_str(&ok(&ka(r, &["prune", "--json"]))).unwrap();
    assert_eq!(p["blobs_removed"], 3);
    assert_eq!(ok(&ka(r, &["ls", "-q"])).trim(), "");
}

/// Two processes (two daemons, say) pulling and unpacking into one store at once.
#[test]
fn two_processes_share_one_store() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let src = oci("multilayer");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_koji-adjutant"))
            .arg("--root")
            .arg(r)
            .args(["image", "import", "--unpack", "-q", &src, "localhost/ml"])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(ok(&a), ok(&b));
    let v: serde_json::Value =
        serde_json::from_str(&ok(&ka(r, &["inspect", "localhost/ml"]))).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 3);
    // Each layer was unpacked exactly once, into exactly one directory.
    let key_dirs: Vec<_> = std::fs::read_dir(r.join("layers"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(key_dirs.len(), 1);
    let mut layers: Vec<String> = std::fs::read_dir(key_dirs[0].path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    layers.sort();
    assert_eq!(
        layers.len(),
        4,
        "3 layers + mapping.json, no temp dirs: {layers:?}"
    );
}

/// `image pull` from the test registry, with the progress lines scripts see.
#[test]
fn pull_from_the_test_registry() {
    let reg = match std::env::var(adjutant_testkit::REGISTRY_ENV) {
        Ok(r) if !r.is_empty() => r,
        // The runtime's tests start their own registry; this one needs tests/run.sh.
        _ => panic!(
            "{} is not set: run `eval \"$(tests/registry.sh start)\"` or tests/run.sh",
            adjutant_testkit::REGISTRY_ENV
        ),
    };
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let name = format!("{reg}/test/multilayer:latest");
    // Without --insecure-registry the plain-HTTP registry is refused.
    let o = ka(r, &["pull", &name]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("insecure"),
        "{o:?}"
    );
    let o = ka(
        r,
        &[
            "pull",
            "--insecure-registry",
            &reg,
            "--unpack",
            "--policy",
            "always",
            &name,
        ],
    );
    let stdout = ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("Copying blob") && stderr.contains("Unpacked layer"),
        "{stderr}"
    );
    let o = ka(
        r,
        &[
            "pull",
            "--insecure-registry",
            &reg,
            "--unpack",
            "--policy",
            "always",
            &name,
        ],
    );
    assert_eq!(ok(&o), stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("0 blobs fetched") && stderr.contains("3 already unpacked"),
        "{stderr}"
    );
}
