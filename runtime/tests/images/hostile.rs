//! Hostile layers, one per attack: each is refused (error naming the layer and the
//! entry) or neutralised, and nothing is written outside the layer directory.

use std::path::Path;

use adjutant_runtime::digest::Digest;
use adjutant_runtime::layer::{Compression, LayerError, Limits, Ownership};

use crate::support::{self, LayerBuilder};
use crate::unpack::{unpack_tar, unpack_tar_with};

fn own() -> Ownership {
    Ownership::Ignore
}

/// Unpack `tar` and expect a refusal naming `entry` and mentioning `why`; the
/// `outside` directory must stay empty.
fn refused(tar: &[u8], entry: &str, why: &str) {
    let t = support::tempdir();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let e = unpack_tar(t.path(), "evil", tar, Compression::Gzip, own()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, LayerError::Refused { .. }),
        "not a refusal: {msg}"
    );
    assert!(
        msg.contains("test-layer-evil"),
        "error does not name the layer: {msg}"
    );
    assert!(
        msg.contains(&format!("{entry:?}")),
        "error does not name entry {entry:?}: {msg}"
    );
    assert!(msg.contains(why), "error does not say {why:?}: {msg}");
    assert_empty(&outside);
}

fn assert_empty(dir: &Path) {
    let n: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        n.is_empty(),
        "something was written outside the layer: {n:?}"
    );
}

#[test]
fn dotdot_traversal_is_refused() {
    let tar = LayerBuilder::new()
        .file("ok", b"1")
        .file("../outside/pwned", b"x")
        .finish();
    refused(&tar, "../outside/pwned", "`..`");
    let tar = LayerBuilder::new()
        .file("a/../../outside/pwned", b"x")
        .finish();
    refused(&tar, "a/../../outside/pwned", "`..`");
}

#[test]
fn absolute_paths_are_refused() {
    let tar = LayerBuilder::new()
        .file("/tmp/pwned-by-layer", b"x")
        .finish();
    refused(&tar, "/tmp/pwned-by-layer", "absolute");
    assert!(!Path::new("/tmp/pwned-by-layer").exists());
}

#[test]
fn writing_through_a_symlink_from_an_earlier_entry_is_refused() {
    let t = support::tempdir();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let tar = LayerBuilder::new()
        .symlink("link", outside.to_str().unwrap())
        .file("link/pwned", b"x")
        .finish();
    let e = unpack_tar(t.path(), "evil", &tar, Compression::Gzip, own()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("\"link/pwned\"") && msg.contains("symlink"),
        "{msg}"
    );
    assert_empty(&outside);
    // A relative symlink to an inside directory is no different: refused.
    let tar = LayerBuilder::new()
        .dir("real", 0o755)
        .symlink("alias", "real")
        .file("alias/f", b"x")
        .finish();
    refused(&tar, "alias/f", "symlink");
}

/// A symlink planted by a lower layer is not in this layer's directory at all: the
/// upper layer gets a real directory (which hides the symlink in the overlay).
#[test]
fn symlink_planted_by_an_earlier_layer_is_neutralised() {
    let t = support::tempdir();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let l1 = LayerBuilder::new()
        .symlink("etc", outside.to_str().unwrap())
        .finish();
    let l2 = LayerBuilder::new()
        .file("etc/passwd", b"root::0:0::/:/bin/sh\n")
        .finish();
    let (d1, _) = unpack_tar(t.path(), "l1", &l1, Compression::Gzip, own()).unwrap();
    let (d2, _) = unpack_tar(t.path(), "l2", &l2, Compression::Gzip, own()).unwrap();
    assert!(std::fs::symlink_metadata(d1.join("etc"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::symlink_metadata(d2.join("etc")).unwrap().is_dir());
    assert!(d2.join("etc/passwd").is_file());
    assert_empty(&outside);
}

#[test]
fn hardlinks_outside_the_root_are_refused() {
    let tar = LayerBuilder::new()
        .hardlink("shadow", "../../../../etc/shadow")
        .finish();
    refused(&tar, "shadow", "outside the layer root");
    let tar = LayerBuilder::new()
        .hardlink("shadow", "/etc/shadow")
        .finish();
    refused(&tar, "shadow", "outside the layer root");
    // Through a symlinked directory planted first.
    let tar = LayerBuilder::new()
        .symlink("etcl", "/etc")
        .hardlink("shadow", "etcl/shadow")
        .finish();
    refused(&tar, "shadow", "symlink");
    // To something the layer does not have.
    let tar = LayerBuilder::new()
        .hardlink("x", "usr/bin/missing")
        .finish();
    refused(&tar, "x", "not in this layer");
}

#[test]
fn device_nodes_are_skipped_and_counted() {
    let t = support::tempdir();
    let tar = LayerBuilder::new()
        .raw(tar::EntryType::Char, "kmem", b"", None, |h| {
            h.set_device_major(1).unwrap();
            h.set_device_minor(2).unwrap();
        })
        .raw(tar::EntryType::Block, "disk", b"", None, |h| {
            h.set_device_major(8).unwrap();
            h.set_device_minor(0).unwrap();
        })
        .file("ok", b"1")
        .finish();
    let own = if support::is_root() {
        Ownership::Shift(crate::unpack::root_mapping())
    } else {
        Ownership::Ignore
    };
    let (d, s) = unpack_tar(t.path(), "dev", &tar, Compression::Gzip, own).unwrap();
    assert_eq!(s.devices_skipped, 2);
    assert!(!d.join("kmem").exists() && !d.join("disk").exists());
    assert!(d.join("ok").exists());
}

#[test]
fn duplicate_entries_are_refused() {
    let tar = LayerBuilder::new()
        .file("etc/passwd", b"a")
        .file("etc/passwd", b"b")
        .finish();
    refused(&tar, "etc/passwd", "duplicate");
    let tar = LayerBuilder::new()
        .dir("./", 0o755)
        .dir(".", 0o755)
        .finish();
    refused(&tar, ".", "duplicate");
}

#[test]
fn entry_count_cap() {
    let t = support::tempdir();
    let mut b = LayerBuilder::new();
    for i in 0..11 {
        b.file(&format!("f{i}"), b"");
    }
    let tar = b.finish();
    let limits = Limits {
        max_entries: 10,
        max_bytes: u64::MAX,
    };
    let e = unpack_tar_with(
        t.path(),
        "many",
        &tar,
        Compression::Gzip,
        own(),
        limits,
        Digest::of(&tar),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("\"f10\"") && msg.contains("more than 10 entries"),
        "{msg}"
    );
}

#[test]
fn total_size_cap_stops_bombs() {
    let t = support::tempdir();
    // 64 MiB of zeros: a gzip bomb of about 64 KiB.
    let tar = LayerBuilder::new()
        .file("bomb", &vec![0u8; 64 << 20])
        .finish();
    let limits = Limits {
        max_entries: 100,
        max_bytes: 8 << 20,
    };
    let e = unpack_tar_with(
        t.path(),
        "bomb",
        &tar,
        Compression::Gzip,
        own(),
        limits,
        Digest::of(&tar),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("\"bomb\"") && msg.contains("size limit"),
        "{msg}"
    );
}

#[test]
fn malformed_headers_and_oversized_extensions_are_refused() {
    // A GNU long name of 100 KiB.
    let long = "a/".repeat(50 << 10);
    let mut b = LayerBuilder::new();
    b.raw(
        tar::EntryType::GNULongName,
        "././@LongLink",
        long.as_bytes(),
        None,
        |_| {},
    );
    b.file("x", b"1");
    refused(&b.finish(), "././@LongLink", "exceeds the cap");
    // A broken checksum.
    let mut tar = LayerBuilder::new().file("f", b"1").finish();
    tar[148] ^= 1;
    refused(&tar, "f", "checksum");
    // An empty whiteout name and sparse files.
    refused(
        &LayerBuilder::new().file(".wh.", b"").finish(),
        ".wh.",
        "whiteout",
    );
    refused(
        &LayerBuilder::new()
            .raw(tar::EntryType::GNUSparse, "sparse", b"", None, |_| {})
            .finish(),
        "sparse",
        "sparse",
    );
    // A PAX size of 2^64-1 on a symlink (its data would be skipped).
    let mut b = LayerBuilder::new();
    b.pax_file("x", b"", &[("size", b"18446744073709551615")], |h| {
        h.set_entry_type(tar::EntryType::Symlink)
    });
    refused(&b.finish(), "x", "exceeds the layer size limit");
    // The root entry must be a directory.
    refused(
        &LayerBuilder::new().file("./", b"").finish(),
        "./",
        "root entry",
    );
}

/// The hostile layers of the shared fixtures (tests/fixtures/layers/hostile/*.spec).
#[test]
fn fixture_hostile_layers() {
    let dir = support::fixtures().join("layers/hostile");
    for (name, entry, why) in [
        (
            "absolute",
            "/tmp/koji-adjutant-escaped-absolute",
            "absolute",
        ),
        ("dotdot", "../koji-adjutant-escaped-dotdot", "`..`"),
        ("hardlink-escape", "passwd-link", "outside the layer root"),
        (
            "symlink-absolute",
            "evil/koji-adjutant-escaped-abs-symlink",
            "symlink",
        ),
        (
            "symlink-escape",
            "evil/koji-adjutant-escaped-symlink",
            "symlink",
        ),
        ("whiteout-escape", "etc/.wh...", "whiteout"),
    ] {
        let tar = std::fs::read(dir.join(format!("{name}.tar"))).unwrap();
        refused(&tar, entry, why);
    }
    for f in [
        "/tmp/koji-adjutant-escaped-absolute",
        "/tmp/koji-adjutant-escaped-abs-symlink",
        "/tmp/koji-adjutant-escaped-symlink",
    ] {
        assert!(!Path::new(f).exists(), "{f} was written");
    }
}

/// Root mode maps 65536 ids; an owner outside that range cannot be represented.
#[test]
fn owners_outside_the_mapped_range_are_refused() {
    let t = support::tempdir();
    let tar = LayerBuilder::new()
        .file("fine", b"1")
        .file_with("far", b"2", |h| h.set_uid(70000))
        .finish();
    let own = Ownership::Shift(crate::unpack::root_mapping());
    let e = unpack_tar(t.path(), "ids", &tar, Compression::Gzip, own).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("\"far\"") && msg.contains("uid 70000 is not mapped"),
        "{msg}"
    );
}

/// `cap_setuid,cap_net_raw+ep` as revision 2 (what `setcap` writes as real root).
fn v2_caps() -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0200_0001u32, (1 << 7) | (1 << 13), 0, 0, 0] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    v
}

/// Set-user-id root files and file capabilities in a layer, unpacked by real root:
/// the file belongs to container root's host id (never host root), and its
/// capabilities are namespaced to the container's user namespace, so that a host
/// user who reaches the store cannot run it with host privileges.
#[test]
fn setuid_root_and_file_capabilities_stay_in_the_container() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert!(
        support::is_root(),
        "unpacking with shifted owners needs root (tests/run.sh)"
    );
    let t = support::tempdir();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let caps = v2_caps();
    let mut b = LayerBuilder::new();
    b.dir("bin", 0o755);
    b.pax_file(
        "bin/busybox",
        &busybox,
        &[("SCHILY.xattr.security.capability", &caps[..])],
        |h| h.set_mode(0o4755),
    );
    let tar = b.finish();
    let (d, s) = unpack_tar(
        t.path(),
        "caps",
        &tar,
        Compression::Gzip,
        Ownership::Shift(crate::unpack::root_mapping()),
    )
    .unwrap();
    assert_eq!(s.xattrs_skipped, 0, "{s:?}");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = d.join("bin/busybox");
    let m = std::fs::metadata(&bin).unwrap();
    assert_eq!((m.uid(), m.gid()), (100000, 100000));
    assert_eq!(m.mode() & 0o7777, 0o4755);
    // Namespaced: revision 3 with root 100000.
    let v = support::lgetxattr(&bin, "security.capability").unwrap();
    assert_eq!(v.len(), 24, "{v:?}");
    assert_eq!(&v[..4], &0x0300_0001u32.to_le_bytes());
    assert_eq!(&v[4..8], &caps[4..8]);
    assert_eq!(&v[20..], &100000u32.to_le_bytes());
    // Run from the host by an unprivileged user: neither the set-uid bit nor the
    // capabilities give it host root or host capabilities.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=4242", "--regid=4242", "--clear-groups"])
        .arg(&bin)
        .args(["cat", "/proc/self/status"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap()
    };
    // The set-uid bit applied (busybox itself drops the effective id again): the
    // ids are the user's and container root's host id, never 0.
    let uids = field("Uid:");
    assert!(
        uids.split(' ').all(|u| u == "4242" || u == "100000"),
        "{uids}"
    );
    assert!(uids.contains("100000"), "{uids}");
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapPrm:"), "0000000000000000");
}

/// A zstd layer that inflates far beyond the size cap is stopped at the cap, with
/// an error naming the entry, like gzip bombs.
#[test]
fn zstd_bomb_is_stopped() {
    let t = support::tempdir();
    let tar = LayerBuilder::new()
        .file("zbomb", &vec![0u8; 64 << 20])
        .finish();
    let limits = Limits {
        max_entries: 100,
        max_bytes: 8 << 20,
    };
    let e = unpack_tar_with(
        t.path(),
        "zbomb",
        &tar,
        Compression::Zstd,
        own(),
        limits,
        Digest::of(&tar),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("\"zbomb\"") && msg.contains("size limit") && msg.contains("test-layer-zbomb"),
        "{msg}"
    );
    let out = std::process::Command::new("du")
        .args(["-sb", "--apparent-size"])
        .arg(t.path().join("zbomb"))
        .output()
        .unwrap();
    let left: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(left < 16 << 20, "{left} bytes written");
}

/// A layer may not steer overlayfs with its own xattrs (a fake opaque dir, a
/// redirect to another path, a metacopy) nor set an SELinux label: they are dropped
/// and counted, and the rest of the layer is applied.
#[test]
fn overlay_and_selinux_xattrs_are_dropped() {
    let t = support::tempdir();
    let mut b = LayerBuilder::new();
    b.pax_file(
        "etc-redirect",
        b"x",
        &[
            ("SCHILY.xattr.user.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.trusted.overlay.metacopy", b""),
            ("SCHILY.xattr.user.overlay.opaque", b"y"),
            (
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:shadow_t:s0",
            ),
            ("SCHILY.xattr.user.kept", b"1"),
        ],
        |_| {},
    );
    let (d, s) = unpack_tar(t.path(), "ovl", &b.finish(), Compression::Gzip, own()).unwrap();
    assert_eq!(s.xattrs_skipped, 4, "{s:?}");
    let f = d.join("etc-redirect");
    assert!(support::lgetxattr(&f, "user.overlay.redirect").is_none());
    assert!(support::lgetxattr(&f, "user.overlay.opaque").is_none());
    assert_eq!(
        support::lgetxattr(&f, "user.kept").as_deref(),
        Some(&b"1"[..])
    );
}
