//! The store: imports, names, unpack-once, crash safety, sharing, prune.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use adjutant_runtime::digest::Digest;
use adjutant_runtime::idmap::IdMapping;
use adjutant_runtime::layer::Compression;
use adjutant_runtime::store::{ImportOptions, Store, StoreError, UsernsJob};

use crate::support::{self, is_root, LayerBuilder, TestImage};
use crate::unpack::root_mapping;

/// The mapping tests unpack with: root mode as root, the single-id mapping otherwise.
fn mapping() -> IdMapping {
    if is_root() {
        root_mapping()
    } else {
        let (u, g) = unsafe { (libc::geteuid(), libc::getegid()) };
        IdMapping::single(u, g)
    }
}

fn oci(name: &str) -> String {
    format!("oci:{}:latest", support::fixture_oci(name).display())
}

#[test]
fn import_list_resolve_and_skopeo_inspect() {
    let t = support::tempdir();
    let s = Store::open(t.path()).unwrap();
    let r = s
        .import(
            &oci("busybox"),
            Some("localhost/busybox:latest"),
            &ImportOptions::default(),
        )
        .unwrap();
    assert_eq!(r.image.name, "localhost/busybox:latest");
    assert_eq!(r.blobs_fetched, 2, "config and layer");
    assert_eq!(r.image.layers.len(), 1);
    // Short names, the manifest digest and an id prefix resolve to it.
    let digest = r.image.manifest_digest.clone();
    for q in [
        "busybox",
        "localhost/busybox",
        "localhost/busybox:latest",
        &digest.to_string(),
        &digest.hex()[..12],
    ] {
        assert_eq!(s.resolve(q).unwrap().manifest_digest, digest, "{q}");
    }
    assert!(matches!(s.resolve("nothere"), Err(StoreError::NotFound(_))));
    // Without a name: localhost/<dir>:<tag>.
    let r2 = s
        .import(&oci("multilayer"), None, &ImportOptions::default())
        .unwrap();
    assert_eq!(r2.image.name, "localhost/multilayer:latest");
    let names: Vec<String> = s.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        ["localhost/busybox:latest", "localhost/multilayer:latest"]
    );
    // The store is an OCI layout other tools read.
    for n in names {
        let out = Command::new("skopeo")
            .args(["inspect", &format!("oci:{}:{n}", t.path().display())])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["Digest"].as_str().unwrap(),
            s.resolve(&n).unwrap().manifest_digest.to_string()
        );
    }
    // Importing again copies nothing.
    let again = s
        .import(&oci("busybox"), Some("busybox"), &ImportOptions::default())
        .unwrap();
    assert_eq!((again.blobs_fetched, again.blobs_present), (0, 2));
}

#[test]
fn import_oci_archive() {
    let t = support::tempdir();
    let ar = t.path().join("bb.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&ar)
        .arg("-C")
        .arg(support::fixture_oci("busybox"))
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let s = Store::open(&t.path().join("store")).unwrap();
    let r = s
        .import(
            &format!("oci-archive:{}:latest", ar.display()),
            None,
            &ImportOptions::default(),
        )
        .unwrap();
    assert_eq!(r.image.name, "localhost/bb:latest");
    let direct = TestImage::from_layout(&support::fixture_oci("busybox"));
    assert_eq!(r.image.manifest_digest, direct.manifest.digest);
    // The shared fixture archive (written with GNU tar, ./-prefixed members).
    let fx = support::fixtures().join("archives/busybox.oci.tar");
    let r2 = s
        .import(
            &format!("oci-archive:{}:latest", fx.display()),
            None,
            &ImportOptions::default(),
        )
        .unwrap();
    assert_eq!(r2.image.name, "localhost/busybox-oci:latest");
    assert_eq!(r2.image.manifest_digest, direct.manifest.digest);
    assert_eq!(r2.blobs_fetched, 0, "the blobs are in the store already");
    let e = s
        .import(
            &format!("oci-archive:{}:nope", ar.display()),
            None,
            &ImportOptions::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("no image tagged \"nope\""), "{e}");
}

fn dir_stamp(p: &Path) -> (u64, i64, i64) {
    let m = std::fs::metadata(p).unwrap();
    (m.ino(), m.mtime(), m.mtime_nsec())
}

#[test]
fn layers_unpack_once_and_a_second_use_writes_nothing() {
    let t = support::tempdir();
    let s = Store::open(t.path()).unwrap();
    let m = mapping();
    let img = s
        .import(&oci("multilayer"), None, &ImportOptions::default())
        .unwrap()
        .image;
    let first = s
        .unpack(&img, &m, &*adjutant_runtime::progress::silent())
        .unwrap();
    assert_eq!((first.layers_unpacked, first.layers_present), (3, 0));
    assert_eq!(first.dirs, s.layer_dirs(&img, &m).unwrap());
    let stamps: Vec<_> = first.dirs.iter().map(|d| dir_stamp(d)).collect();
    let inner = dir_stamp(&first.dirs[0].join("bin"));
    // Again through layer_dirs, through a re-import, through a fresh Store handle.
    let second = s
        .unpack(&img, &m, &*adjutant_runtime::progress::silent())
        .unwrap();
    assert_eq!((second.layers_unpacked, second.layers_present), (0, 3));
    let opts = ImportOptions {
        unpack: Some(m.clone()),
        ..Default::default()
    };
    let re = s.import(&oci("multilayer"), None, &opts).unwrap();
    assert_eq!(re.blobs_fetched, 0);
    let u = re.unpack.unwrap();
    assert_eq!((u.layers_unpacked, u.layers_present), (0, 3));
    let s2 = Store::open(t.path()).unwrap();
    assert_eq!(
        s2.layer_dirs(&s2.resolve("multilayer").unwrap(), &m)
            .unwrap(),
        first.dirs
    );
    assert_eq!(
        first.dirs.iter().map(|d| dir_stamp(d)).collect::<Vec<_>>(),
        stamps
    );
    assert_eq!(dir_stamp(&first.dirs[0].join("bin")), inner);
    // The same diff_ids in another compression share the unpacked layers.
    let z = s.import(&oci("multilayer-zstd"), None, &opts).unwrap();
    assert_eq!(z.image.diff_ids, img.diff_ids);
    assert_eq!(z.unpack.unwrap().layers_unpacked, 0);
}

#[test]
fn zstd_and_uncompressed_layers_unpack() {
    let t = support::tempdir();
    let tar = LayerBuilder::new()
        .dir("./", 0o755)
        .file("hello", b"world")
        .finish();
    for c in [Compression::Zstd, Compression::None, Compression::Gzip] {
        let img = TestImage::new(&[(tar.clone(), c)], "amd64");
        let dir = t.path().join(format!("src-{c:?}"));
        img.write_layout(&dir, "latest");
        let s = Store::open(&t.path().join(format!("store-{c:?}"))).unwrap();
        let opts = ImportOptions {
            unpack: Some(mapping()),
            ..Default::default()
        };
        let r = s
            .import(&format!("oci:{}:latest", dir.display()), Some("x"), &opts)
            .unwrap();
        let d = &r.unpack.unwrap().dirs[0];
        assert_eq!(std::fs::read(d.join("hello")).unwrap(), b"world", "{c:?}");
    }
}

/// A config whose diff_id does not match its layer: the import verifies blobs, the
/// unpack refuses the layer, and no layer directory or temp dir is left.
#[test]
fn diff_id_mismatch_leaves_no_layer_and_no_name() {
    let t = support::tempdir();
    let tar = LayerBuilder::new().file("f", b"1").finish();
    let good = TestImage::new(&[(tar.clone(), Compression::Gzip)], "amd64");
    let bad = TestImage::from_blobs(good.layers.clone(), vec![Digest::of(b"lie")], "amd64");
    let src = t.path().join("src");
    bad.write_layout(&src, "latest");
    let s = Store::open(&t.path().join("store")).unwrap();
    let opts = ImportOptions {
        unpack: Some(mapping()),
        ..Default::default()
    };
    let e = s
        .import(&format!("oci:{}:latest", src.display()), Some("bad"), &opts)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("diff_id mismatch") && msg.contains(&good.layers[0].digest.to_string()),
        "{msg}"
    );
    assert!(matches!(s.resolve("bad"), Err(StoreError::NotFound(_))));
    let key_dir = t.path().join("store/layers").join(mapping().cache_key());
    let left: Vec<_> = std::fs::read_dir(&key_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "mapping.json")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // A blob whose content does not match its digest never enters the store.
    let s = Store::open(&t.path().join("store2")).unwrap();
    let corrupt = t.path().join("corrupt");
    good.write_layout(&corrupt, "latest");
    let lp = corrupt
        .join("blobs/sha256")
        .join(good.layers[0].digest.hex());
    let mut data = std::fs::read(&lp).unwrap();
    *data.last_mut().unwrap() ^= 1;
    std::fs::write(&lp, data).unwrap();
    let e = s
        .import(
            &format!("oci:{}:latest", corrupt.display()),
            Some("c"),
            &ImportOptions::default(),
        )
        .unwrap_err();
    assert!(
        matches!(e, StoreError::DigestMismatch { ref blob, .. } if *blob == good.layers[0].digest),
        "{e}"
    );
    assert!(!t
        .path()
        .join("store2/blobs/sha256")
        .join(good.layers[0].digest.hex())
        .exists());
    assert_eq!(
        std::fs::read_dir(t.path().join("store2/ingest"))
            .unwrap()
            .count(),
        0
    );
}

/// Kill a process in the middle of unpacking a big layer; the next unpack notices
/// nothing complete, cleans up and produces the full layer.
#[test]
fn crash_mid_unpack_is_recovered() {
    const ROLE: &str = "ADJUTANT_TEST_CRASH_STORE";
    // The big layer (438 MB), so that the kill lands in the middle of it.
    let fx = "rpmroot";
    if let Some(root) = std::env::var_os(ROLE) {
        let s = Store::open(Path::new(&root)).unwrap();
        let img = s.resolve(fx).unwrap();
        s.layer_dirs(&img, &mapping()).unwrap();
        return;
    }
    let t = support::tempdir();
    let s = Store::open(t.path()).unwrap();
    let img = s
        .import(&oci(fx), None, &ImportOptions::default())
        .unwrap()
        .image;
    let key_dir = t.path().join("layers").join(mapping().cache_key());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store::crash_mid_unpack_is_recovered",
            "--exact",
            "--nocapture",
        ])
        .env(ROLE, t.path())
        .spawn()
        .unwrap();
    // Wait until the child is inside the unpack (its temp dir exists), then kill it.
    let mut saw_tmp = false;
    let prefix = format!(".tmp-{}", img.diff_ids[0].hex());
    for _ in 0..20_000 {
        let tmp = std::fs::read_dir(&key_dir)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            })
            .unwrap_or(false);
        if tmp {
            saw_tmp = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        saw_tmp,
        "the child finished before it could be killed mid-unpack"
    );
    let final_dir = s.layer_dir(&img.diff_ids[0], &mapping());
    assert!(
        !final_dir.exists(),
        "a killed unpack must not look complete"
    );
    let r = s
        .unpack(&img, &mapping(), &*adjutant_runtime::progress::silent())
        .unwrap();
    assert_eq!(r.layers_unpacked, img.layers.len());
    assert!(r.stats[0].files > 8000, "{:?}", r.stats[0]);
    let tmp_left: Vec<String> = std::fs::read_dir(&key_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(
        tmp_left.is_empty(),
        "stale temp dir not removed: {tmp_left:?} (layer {})",
        img.diff_ids[0]
    );
}

/// Two store handles (as two daemons would have) unpack the same image at once:
/// each layer is unpacked exactly once.
#[test]
fn two_handles_on_one_store_unpack_each_layer_once() {
    let t = support::tempdir();
    let s = Store::open(t.path()).unwrap();
    let img = s
        .import(&oci("multilayer"), None, &ImportOptions::default())
        .unwrap()
        .image;
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (root, img, b) = (t.path().to_owned(), img.clone(), barrier.clone());
            std::thread::spawn(move || {
                let s = Store::open(&root).unwrap();
                b.wait();
                s.unpack(&img, &mapping(), &*adjutant_runtime::progress::silent())
                    .unwrap()
            })
        })
        .collect();
    let reports: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        reports.iter().map(|r| r.layers_unpacked).sum::<usize>(),
        3,
        "{reports:?}"
    );
    assert_eq!(reports[0].dirs, reports[1].dirs);
}

/// A lease on a layer (a container using it) never blocks the unpacking of that layer:
/// an unpacker that found the layer missing while another process unpacked it must not
/// then wait for that process's containers (a daemon hung that way in a test).
#[test]
fn a_lease_does_not_block_unpacking() {
    let t = support::tempdir();
    let s = Arc::new(Store::open(t.path()).unwrap());
    let img = s
        .import(&oci("busybox"), None, &ImportOptions::default())
        .unwrap()
        .image;
    let lease = s.lease_layers(&img, &mapping()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let s2 = s.clone();
    let img2 = img.clone();
    std::thread::spawn(move || {
        let r = s2.unpack(&img2, &mapping(), &*adjutant_runtime::progress::silent());
        let _ = tx.send(r.map(|r| r.layers_unpacked));
    });
    // a generous bound on a hang, not a timing assertion
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("unpack blocked by a lease on the layer");
    assert_eq!(r.unwrap(), 1);
    drop(lease);
}

#[test]
fn rm_and_prune() {
    let t = support::tempdir();
    let s = Store::open(t.path()).unwrap();
    let opts = ImportOptions {
        unpack: Some(mapping()),
        ..Default::default()
    };
    let bb = s.import(&oci("busybox"), None, &opts).unwrap().image;
    let ml = s.import(&oci("multilayer"), None, &opts).unwrap().image;
    // multilayer is busybox's layer plus two: that layer is stored and unpacked once.
    assert_eq!(ml.layers[0].digest, bb.layers[0].digest);
    let blobs = |s: &Store| {
        std::fs::read_dir(s.root().join("blobs/sha256"))
            .unwrap()
            .count()
    };
    assert_eq!(blobs(&s), 3 + 4);
    let p = s.prune().unwrap();
    assert_eq!((p.blobs_removed, p.layers_removed), (0, 0), "{p:?}");
    assert_eq!(s.remove("busybox").unwrap(), ["localhost/busybox:latest"]);
    assert!(matches!(s.remove("busybox"), Err(StoreError::NotFound(_))));
    // busybox's manifest and config go; its layer stays (multilayer uses it).
    let p = s.prune().unwrap();
    assert_eq!((p.blobs_removed, p.layers_removed), (2, 0), "{p:?}");
    assert!(s.layer_dir(&bb.diff_ids[0], &mapping()).exists());
    // Leftovers of a crashed download are collected too.
    std::fs::write(t.path().join("ingest/deadbeef.partial"), b"half").unwrap();
    // A container holding multilayer's layers keeps them even once unreferenced.
    let lease = s.lease_layers(&ml, &mapping()).unwrap();
    s.remove(&ml.manifest_digest.to_string()).unwrap();
    let p = s.prune().unwrap();
    assert_eq!(p.blobs_removed, 5, "{p:?}");
    assert_eq!(
        (p.layers_removed, p.layers_in_use, p.temp_removed),
        (0, 3, 1),
        "{p:?}"
    );
    assert!(s.layer_dir(&ml.diff_ids[2], &mapping()).exists());
    drop(lease);
    let p = s.prune().unwrap();
    assert_eq!(p.layers_removed, 3, "{p:?}");
    assert!(!s.layer_dir(&ml.diff_ids[2], &mapping()).exists());
    assert_eq!(blobs(&s), 0);
    assert!(s.list().unwrap().is_empty());
}

const USERNS_JOB: &str = "ADJUTANT_TEST_USERNS_JOB";

/// `RootlessRanges` unpacks go through the user-namespace runner the container
/// runtime provides; without one it is a clear error. Here the runner re-executes
/// this test under `unshare --map-users` (a stand-in for newuidmap); that copy runs
/// the job ([`adjutant_runtime::store::run_userns_job`]) and returns.
#[test]
fn rootless_ranges_go_through_the_userns_runner() {
    if let Some(jf) = std::env::var_os(USERNS_JOB) {
        let jf = std::path::PathBuf::from(jf);
        let job: UsernsJob = serde_json::from_slice(&std::fs::read(&jf).unwrap()).unwrap();
        let res = adjutant_runtime::store::run_userns_job(&job);
        std::fs::write(jf.with_extension("out"), serde_json::to_vec(&res).unwrap()).unwrap();
        return;
    }
    assert!(
        is_root(),
        "this test needs root (unshare --map-users stands in for newuidmap)"
    );
    let t = support::tempdir();
    std::fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let s = Store::open(t.path()).unwrap();
    let img = s
        .import(&oci("busybox"), None, &ImportOptions::default())
        .unwrap()
        .image;
    // As if user 100000 had the subordinate range 100001..: container root is the user.
    let m = IdMapping::rootless(100000, 100000, (100001, 65535), (100001, 65535));
    let e = s.layer_dirs(&img, &m).unwrap_err();
    assert!(matches!(e, StoreError::NoUsernsRunner(_)), "{e}");
    let runner_dir = t.path().join("jobs");
    std::fs::create_dir(&runner_dir).unwrap();
    std::os::unix::fs::chown(&runner_dir, Some(100000), Some(100000)).unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = calls.clone();
    s.set_userns_runner(Arc::new(move |m: &IdMapping, job: &UsernsJob| {
        c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // A rootless store belongs to the user (container root); ours is root's.
        let owned = match job {
            UsernsJob::Unpack(j) => j.target.clone(),
            UsernsJob::RemoveTree(p) => p.clone(),
        };
        for p in [owned.parent().unwrap(), &owned] {
            if p.exists() {
                std::os::unix::fs::chown(p, m.host_uid(0), m.host_gid(0)).unwrap();
            }
        }
        run_in_userns(&runner_dir, m, job)
    }));
    let dirs = s.layer_dirs(&img, &m).unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let md = std::fs::symlink_metadata(dirs[0].join("bin/busybox")).unwrap();
    assert_eq!(md.uid(), 100000, "container root maps to the user");
    s.remove("busybox").unwrap();
    let p = s.prune().unwrap();
    assert_eq!(p.layers_removed, 1);
    assert!(!dirs[0].exists());
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "removal must go through the runner too"
    );
}

/// Run `job` in a copy of this test binary under `unshare` with mapping `m`
/// (contiguous ranges merged: unshare hands several ranges to newuidmap, which root
/// without /etc/subuid entries may not use).
fn run_in_userns(
    dir: &Path,
    m: &IdMapping,
    job: &UsernsJob,
) -> Result<Option<adjutant_runtime::layer::UnpackStats>, String> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let jf = dir.join(format!(
        "job-{}.json",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&jf, serde_json::to_vec(job).unwrap()).map_err(|e| e.to_string())?;
    let merged = |r: &[adjutant_runtime::idmap::IdRange]| {
        let mut v: Vec<(u32, u32, u32)> = Vec::new();
        for x in r {
            match v.last_mut() {
                Some(l) if l.0 + l.2 == x.outside && l.1 + l.2 == x.inside => l.2 += x.count,
                _ => v.push((x.outside, x.inside, x.count)),
            }
        }
        v
    };
    let mut cmd = Command::new("unshare");
    for (o, i, c) in merged(&m.uids) {
        cmd.arg(format!("--map-users={o},{i},{c}"));
    }
    for (o, i, c) in merged(&m.gids) {
        cmd.arg(format!("--map-groups={o},{i},{c}"));
    }
    let out = cmd
        .args(["--setuid=0", "--setgid=0"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "store::rootless_ranges_go_through_the_userns_runner",
            "--exact",
            "--nocapture",
        ])
        .env(USERNS_JOB, &jf)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "helper failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let out = std::fs::read(jf.with_extension("out")).map_err(|e| e.to_string())?;
    serde_json::from_slice::<Result<Option<adjutant_runtime::layer::UnpackStats>, String>>(&out)
        .map_err(|e| e.to_string())?
}

/// The devnodes image (device nodes and a FIFO next to files) as the unprivileged
/// test user with the single-id mapping: devices skipped, the rest unpacked.
#[test]
fn devnodes_image_unpacks_rootless() {
    if !support::as_test_user() {
        return; // ran as the test user in a child process
    }
    let t = support::tempdir();
    let s = Store::open(t.path()).unwrap();
    let opts = ImportOptions {
        unpack: Some(mapping()),
        ..Default::default()
    };
    let r = s.import(&oci("devnodes"), None, &opts).unwrap();
    let u = r.unpack.unwrap();
    let top = u.dirs.last().unwrap();
    assert_eq!(u.stats.last().unwrap().devices_skipped, 3, "{:?}", u.stats);
    assert!(!top.join("dev/null").exists());
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::symlink_metadata(top.join("dev/initctl"))
            .unwrap()
            .file_type()
    ));
    assert!(top.join("opt/regular").is_file());
    let me = unsafe { libc::geteuid() };
    assert_eq!(
        std::fs::metadata(top.join("opt/regular")).unwrap().uid(),
        me
    );
    // The unprivileged user can prune what it unpacked.
    s.remove("devnodes").unwrap();
    assert_eq!(s.prune().unwrap().layers_removed, 2);
}
