//! Layer unpacking: fidelity, overlay format, ownership modes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use adjutant_runtime::digest::Digest;
use adjutant_runtime::idmap::IdMapping;
use adjutant_runtime::layer::{
    self, Compression, LayerError, Limits, Ownership, UnpackJob, UnpackStats,
};

use crate::support::{self, compress, is_root, LayerBuilder};

pub fn root_mapping() -> IdMapping {
    IdMapping::root(100000, 65536).unwrap()
}

/// Write `tar` compressed as `c` next to `dir` and unpack it into `dir/<name>`.
pub fn unpack_tar(
    dir: &Path,
    name: &str,
    tar: &[u8],
    c: Compression,
    own: Ownership,
) -> Result<(PathBuf, UnpackStats), LayerError> {
    unpack_tar_with(dir, name, tar, c, own, Limits::default(), Digest::of(tar))
}

pub fn unpack_tar_with(
    dir: &Path,
    name: &str,
    tar: &[u8],
    c: Compression,
    own: Ownership,
    limits: Limits,
    diff_id: Digest,
) -> Result<(PathBuf, UnpackStats), LayerError> {
    let blob = dir.join(format!("{name}.blob"));
    std::fs::write(&blob, compress(tar, c)).unwrap();
    let target = dir.join(name);
    std::fs::create_dir(&target).unwrap();
    let job = UnpackJob {
        blob,
        compression: c,
        diff_id,
        target: target.clone(),
        ownership: own,
        limits,
        label: format!("test-layer-{name}"),
    };
    layer::unpack(&job).map(|s| (target, s))
}

fn fixture_layer(name: &str) -> Vec<u8> {
    std::fs::read(
        support::fixtures()
            .join("layers")
            .join(format!("{name}.tar")),
    )
    .unwrap()
}

/// `tar -x` of the same layer, as the reference.
fn tar_x(tar: &[u8], dir: &Path) {
    std::fs::create_dir(dir).unwrap();
    let p = dir.with_extension("tar");
    std::fs::write(&p, tar).unwrap();
    let st = Command::new("tar")
        .args(["--numeric-owner", "-xpf"])
        .arg(&p)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn busybox_layer_matches_tar_with_shifted_owners() {
    assert!(is_root(), "this test needs root (Shift ownership)");
    let t = support::tempdir();
    let tar = fixture_layer("busybox");
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let name = format!("{c:?}");
        let (dir, stats) =
            unpack_tar(t.path(), &name, &tar, c, Ownership::Shift(root_mapping())).unwrap();
        assert!(stats.files > 0 && stats.symlinks > 200, "{stats:?}");
        let ours: Vec<String> = support::tree(&dir)
            .into_iter()
            .map(|l| {
                // Shift the owners back for the comparison.
                let mut f: Vec<String> = l.split(' ').map(str::to_owned).collect();
                for i in [3, 4] {
                    let v: u32 = f[i].parse().unwrap();
                    assert!(v >= 100000, "owner not shifted: {l}");
                    f[i] = (v - 100000).to_string();
                }
                f.join(" ")
            })
            .collect();
        let refdir = t.path().join(format!("ref-{name}"));
        tar_x(&tar, &refdir);
        assert_eq!(
            ours,
            support::tree(&refdir),
            "tree differs from tar -x for {c:?}"
        );
    }
}

/// The multilayer fixture (busybox + multilayer-add + multilayer-change; see
/// tests/fixtures/layers/*.spec), checked per layer and by mounting an overlay of the
/// three layer directories.
#[test]
fn multilayer_merges_in_overlay_as_expected() {
    assert!(is_root(), "this test needs root (overlay mount)");
    let t = support::tempdir();
    let own = Ownership::Shift(root_mapping());
    let mut dirs = Vec::new();
    let mut stats = Vec::new();
    for name in ["busybox", "multilayer-add", "multilayer-change"] {
        let (d, s) = unpack_tar(
            t.path(),
            name,
            &fixture_layer(name),
            Compression::Gzip,
            own.clone(),
        )
        .unwrap();
        dirs.push(d);
        stats.push(s);
    }
    let top = &dirs[2];
    let s3 = &stats[2];
    assert_eq!(
        (s3.whiteouts, s3.opaque_dirs, s3.hardlinks, s3.symlinks),
        (2, 1, 1, 2),
        "{s3:?}"
    );
    // Per layer: whiteouts are 0:0 char devices, the opaque dir has the user xattr.
    for w in ["etc/motd", "var/del-dir"] {
        let m = std::fs::symlink_metadata(top.join(w)).unwrap();
        assert!(
            std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()),
            "{w}"
        );
        assert_eq!(m.rdev(), 0, "{w}");
    }
    assert_eq!(
        support::lgetxattr(&top.join("opt/data"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("opt/data/.wh..wh..opq").exists());
    // Owners shifted into the mapped range, modes kept.
    let mid = &dirs[1];
    let md = |p: &Path| std::fs::symlink_metadata(p).unwrap();
    assert_eq!(
        (
            md(&mid.join("opt/owned/by-1000")).uid(),
            md(&mid.join("opt/owned/by-1000")).gid()
        ),
        (101000, 100135)
    );
    assert_eq!(md(&mid.join("opt/owned/by-nobody")).uid(), 165534);
    assert_eq!(md(&mid.join("opt/sticky")).mode() & 0o7777, 0o1777);
    assert_eq!(md(&mid.join("opt/setuid")).mode() & 0o7777, 0o4755);
    // Merged.
    let m = t.path().join("merged");
    std::fs::create_dir(&m).unwrap();
    let script = format!(
        "mount -t overlay overlay -o ro,userxattr,lowerdir={l3}:{l2}:{l1} {m} && cd {m} && \
         ls -A etc && echo ---var && ls -A var && echo ---data && ls -A opt/data && echo ---x && \
         cat opt/keep/x && readlink opt/keep/x-link opt/keep/abs-link && \
         stat -c '%h %i' opt/keep/y opt/keep/y-hard && stat -c '%F' opt/was-file opt/was-dir && \
         cat opt/was-file/inside opt/was-dir && stat -c '%u %a' opt/owned/by-1000",
        l1 = dirs[0].display(),
        l2 = dirs[1].display(),
        l3 = dirs[2].display(),
        m = m.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-ec", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (etc, rest) = stdout.split_once("---var\n").unwrap();
    let (var, rest) = rest.split_once("---data\n").unwrap();
    let (data, rest) = rest.split_once("---x\n").unwrap();
    let etc: Vec<&str> = etc.split_whitespace().collect();
    assert!(
        !etc.contains(&"motd"),
        "/etc/motd must be whited out: {etc:?}"
    );
    assert!(etc.contains(&"passwd"), "{etc:?}");
    let var: Vec<&str> = var.split_whitespace().collect();
    assert!(!var.contains(&"del-dir"), "/var/del-dir survived: {var:?}");
    let data: Vec<&str> = data.split_whitespace().collect();
    assert_eq!(data, ["c"], "opaque dir should hold only c");
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines[0], "new");
    assert_eq!(lines[1], "x");
    assert_eq!(lines[2], "/etc/passwd");
    let (y, yh): (Vec<&str>, Vec<&str>) =
        (lines[3].split(' ').collect(), lines[4].split(' ').collect());
    assert_eq!(y[0], "2", "y must have two links");
    assert_eq!(y[1], yh[1], "y-hard must be a hardlink of y");
    assert_eq!(lines[5], "directory", "was-file became a directory");
    assert_eq!(lines[6], "regular file", "was-dir became a file");
    assert_eq!(lines[7], "now a directory");
    assert_eq!(lines[8], "now a file");
    assert_eq!(lines[9], "101000 640");
}

/// setuid bits, owners, file capabilities, xattrs, mtimes (with nanoseconds),
/// hardlinks, symlinks, FIFOs, directory modes and times.
#[test]
fn metadata_is_preserved() {
    assert!(
        is_root(),
        "this test needs root (Shift ownership, security.capability)"
    );
    let t = support::tempdir();
    // cap_net_bind_service=ep, v2 capability xattr.
    let mut cap = vec![0u8; 20];
    cap[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 10).to_le_bytes());
    let tar = LayerBuilder::new()
        .dir("./", 0o755)
        .dir("ro", 0o555)
        .file_with("ro/inside", b"x", |h| h.set_mode(0o600))
        .file_with("sbin-su", b"#!", |h| {
            h.set_mode(0o4755);
            h.set_uid(0);
            h.set_gid(0);
        })
        .file_with("sgid", b"g", |h| {
            h.set_mode(0o2711);
            h.set_gid(5);
        })
        .file_with("owned", b"o", |h| {
            h.set_uid(1000);
            h.set_gid(1001);
        })
        .pax_file(
            "capped",
            b"bin",
            &[
                ("SCHILY.xattr.security.capability", &cap),
                ("SCHILY.xattr.user.note", b"hello"),
                ("SCHILY.xattr.user.overlay.redirect", b"/etc"),
                (
                    "SCHILY.xattr.security.selinux",
                    b"system_u:object_r:bin_t:s0",
                ),
                ("mtime", b"1600000000.123456789"),
            ],
            |h| h.set_mode(0o755),
        )
        .hardlink("capped-link", "capped")
        .symlink("sl", "/etc/passwd")
        .raw(tar::EntryType::Fifo, "fifo", b"", None, |h| {
            h.set_mode(0o640)
        })
        .finish();
    let (d, stats) = unpack_tar(
        t.path(),
        "meta",
        &tar,
        Compression::Gzip,
        Ownership::Shift(root_mapping()),
    )
    .unwrap();
    let md = |p: &str| std::fs::symlink_metadata(d.join(p)).unwrap();
    assert_eq!(md("sbin-su").mode() & 0o7777, 0o4755);
    assert_eq!((md("sbin-su").uid(), md("sbin-su").gid()), (100000, 100000));
    assert_eq!(md("sgid").mode() & 0o7777, 0o2711);
    assert_eq!(md("sgid").gid(), 100005);
    assert_eq!((md("owned").uid(), md("owned").gid()), (101000, 101001));
    // File capabilities are kept, but namespaced: revision 3 with the container root's
    // host id (100000) as rootid, so they count only inside the container's user
    // namespace, never on the host (docs/security.md).
    let mut v3 = cap.clone();
    v3[3] = 3;
    v3.extend_from_slice(&100000u32.to_le_bytes());
    assert_eq!(
        support::lgetxattr(&d.join("capped"), "security.capability"),
        Some(v3)
    );
    assert_eq!(
        support::lgetxattr(&d.join("capped"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        support::lgetxattr(&d.join("capped"), "user.overlay.redirect"),
        None,
        "overlay xattrs must be refused"
    );
    assert_eq!(stats.xattrs_skipped, 2, "{stats:?}");
    assert_eq!(
        (md("capped").mtime(), md("capped").mtime_nsec()),
        (1600000000, 123456789)
    );
    assert_eq!(md("capped").ino(), md("capped-link").ino());
    assert_eq!(md("capped").nlink(), 2);
    assert_eq!(
        std::fs::read_link(d.join("sl")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(md("sl").uid(), 100000);
    assert_eq!(md("sl").mtime(), 1_700_000_000);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &md("fifo").file_type()
    ));
    assert_eq!(md("fifo").mode() & 0o777, 0o640);
    assert_eq!(md("ro").mode() & 0o7777, 0o555);
    assert_eq!(
        md("ro").mtime(),
        1_700_000_000,
        "directory mtime must survive its children"
    );
    assert_eq!(md("ro/inside").mode() & 0o777, 0o600);
    assert_eq!(md(".").mode() & 0o777, 0o755);
    assert_eq!(md(".").uid(), 100000);
}

#[test]
fn whiteout_rules() {
    let t = support::tempdir();
    let tar = LayerBuilder::new()
        .dir("a", 0o755)
        .file("a/.wh.gone", b"")
        // Added by this layer, then "whited out": the whiteout only hides lower layers.
        .file("a/mine", b"m")
        .file("a/.wh.mine", b"")
        // Deleted from below and recreated as a directory: must hide the lower one.
        .file(".wh.redo", b"")
        .dir("redo", 0o755)
        .file("redo/new", b"n")
        // Whiteouts written before an opaque marker are dropped, later ones skipped.
        .dir("o", 0o755)
        .file("o/.wh.early", b"")
        .file("o/.wh..wh..opq", b"")
        .file("o/.wh.late", b"")
        .file("o/kept", b"k")
        // aufs metadata is ignored; whiteouts inside a whited-out dir are moot.
        // Whited out, then written into without a directory entry: an opaque dir too.
        .file(".wh.redo2", b"")
        .file("redo2/new", b"n")
        .file(".wh..wh.plnk", b"")
        .file(".wh.deep", b"")
        .file("deep/.wh.x", b"")
        .finish();
    let own = if is_root() {
        Ownership::Shift(root_mapping())
    } else {
        Ownership::Ignore
    };
    let (d, s) = unpack_tar(t.path(), "wh", &tar, Compression::None, own).unwrap();
    let is_wh = |p: &str| {
        std::fs::symlink_metadata(d.join(p))
            .map(|m| {
                std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()) && m.rdev() == 0
            })
            .unwrap_or(false)
    };
    assert!(is_wh("a/gone"));
    assert_eq!(std::fs::read(d.join("a/mine")).unwrap(), b"m");
    assert!(d.join("redo").is_dir());
    assert_eq!(
        support::lgetxattr(&d.join("redo"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        support::lgetxattr(&d.join("o"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!d.join("o/early").exists() && !d.join("o/late").exists());
    assert!(d.join("o/kept").exists());
    assert!(!d.join(".wh..wh.plnk").exists() && !d.join("plnk").exists());
    assert!(is_wh("deep"));
    assert!(d.join("redo2/new").is_file());
    assert_eq!(
        support::lgetxattr(&d.join("redo2"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(s.opaque_dirs, 3, "{s:?}");
}

#[test]
fn diff_id_mismatch_is_an_error_naming_the_layer() {
    let t = support::tempdir();
    let tar = LayerBuilder::new().file("f", b"data").finish();
    let wrong = Digest::of(b"something else");
    let e = unpack_tar_with(
        t.path(),
        "bad",
        &tar,
        Compression::Gzip,
        Ownership::Ignore,
        Limits::default(),
        wrong.clone(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, LayerError::DiffIdMismatch { expected, .. } if *expected == wrong),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("test-layer-bad") && msg.contains("diff_id"),
        "{msg}"
    );
}

/// Single-id degraded mapping: the unprivileged user unpacks without any chown;
/// device nodes are skipped and counted; setuid bits and modes still apply.
#[test]
fn ignore_mode_as_unprivileged_user() {
    if !support::as_test_user() {
        return; // ran as the test user in a child process
    }
    assert_ne!(unsafe { libc::geteuid() }, 0);
    let me = unsafe { libc::geteuid() };
    let t = support::tempdir();
    let tar = LayerBuilder::new()
        .dir("dev", 0o755)
        .raw(tar::EntryType::Char, "dev/null", b"", None, |h| {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        })
        .raw(tar::EntryType::Block, "dev/sda", b"", None, |h| {
            h.set_device_major(8).unwrap();
            h.set_device_minor(0).unwrap();
        })
        .file_with("suid", b"x", |h| {
            h.set_mode(0o4755);
            h.set_uid(0);
        })
        .file_with("other", b"y", |h| h.set_uid(1000))
        .dir("ro", 0o555)
        .file("ro/f", b"z")
        .file(".wh.lower", b"")
        .finish();
    let (d, s) = unpack_tar(
        t.path(),
        "rootless",
        &tar,
        Compression::Gzip,
        Ownership::Ignore,
    )
    .unwrap();
    assert_eq!(s.devices_skipped, 2, "{s:?}");
    assert!(!d.join("dev/null").exists() && !d.join("dev/sda").exists());
    for p in ["suid", "other", "ro", "ro/f", "dev", "lower"] {
        assert_eq!(
            std::fs::symlink_metadata(d.join(p)).unwrap().uid(),
            me,
            "{p}"
        );
    }
    assert_eq!(
        std::fs::metadata(d.join("suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
    assert_eq!(
        std::fs::metadata(d.join("ro"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o555
    );
    // And the unprivileged user can remove what it unpacked (0555 dirs included).
    adjutant_runtime::store::remove_tree(&d).unwrap();
    assert!(!d.exists());
}

/// `Verbatim`: the unpacker runs inside a user namespace that maps container ids
/// 0..65536 to host 100000..; it chowns to the tar's ids and the host sees them
/// shifted. The inner half runs in a re-executed copy of this test under
/// `unshare --map-users`.
#[test]
fn verbatim_inside_a_user_namespace() {
    const JOB: &str = "ADJUTANT_TEST_VERBATIM_JOB";
    if let Some(job) = std::env::var_os(JOB) {
        // Inner half: we are container root in the namespace.
        let job: UnpackJob = serde_json::from_slice(&std::fs::read(&job).unwrap()).unwrap();
        layer::unpack(&job).unwrap();
        return;
    }
    assert!(is_root(), "this test needs root (unshare --map-users)");
    let t = support::tempdir();
    let tar = LayerBuilder::new()
        .dir("./", 0o755)
        .file_with("owned", b"o", |h| {
            h.set_uid(1000);
            h.set_gid(1001);
        })
        .file_with("suid", b"s", |h| h.set_mode(0o4755))
        .file(".wh.gone", b"")
        .finish();
    let blob = t.path().join("v.blob");
    std::fs::write(&blob, compress(&tar, Compression::Gzip)).unwrap();
    let target = t.path().join("v");
    std::fs::create_dir(&target).unwrap();
    // Container root (host 100000) must be able to write into the target.
    std::os::unix::fs::chown(&target, Some(100000), Some(100000)).unwrap();
    let job = UnpackJob {
        blob,
        compression: Compression::Gzip,
        diff_id: Digest::of(&tar),
        target: target.clone(),
        ownership: Ownership::Verbatim,
        limits: Limits::default(),
        label: "verbatim".into(),
    };
    let jf = t.path().join("job.json");
    std::fs::write(&jf, serde_json::to_vec(&job).unwrap()).unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args([
            "--map-users=100000,0,65536",
            "--map-groups=100000,0,65536",
            "--setuid=0",
            "--setgid=0",
        ])
        .arg(&exe)
        .args([
            "unpack::verbatim_inside_a_user_namespace",
            "--exact",
            "--nocapture",
        ])
        .env(JOB, &jf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let md = |p: &str| std::fs::symlink_metadata(target.join(p)).unwrap();
    assert_eq!((md("owned").uid(), md("owned").gid()), (101000, 101001));
    assert_eq!(md("suid").uid(), 100000);
    assert_eq!(md("suid").mode() & 0o7777, 0o4755);
    assert_eq!(md("gone").uid(), 100000);
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &md("gone").file_type()
    ));
}
