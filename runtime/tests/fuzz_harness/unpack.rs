//! The checks of the `layer_unpack` fuzz target, shared with the regression tests.
//!
//! Included by path from `fuzz/fuzz_targets/layer_unpack.rs` and from
//! `runtime/tests/fuzz_regressions.rs`. See docs/fuzzing.md.
//!
//! Each input is written as an uncompressed layer blob (its real sha256 as diff_id, so
//! whole layers get applied) and unpacked by the real [`unpack`] into a fresh directory
//!
//! ```text
//! <base>/<pid>-<n>/layer.tar
//! <base>/<pid>-<n>/t/            the target
//! <base>/sentinel/canary         must never change
//! ```
//!
//! `<base>` is `$KOJI_ADJUTANT_FUZZ_DIR`, else `/dev/shm/ka-fuzz` (as root; other users get
//! `/dev/shm/ka-fuzz-<uid>`). Seeds reach the sentinel with `../../sentinel` and the
//! absolute `/dev/shm/ka-fuzz/sentinel`. After every input, success or failure:
//!
//! - the sentinel and the run directory hold exactly what they held before;
//! - no inode in the target is linked from outside it (link counts add up);
//! - no device node other than the 0:0 overlay whiteout, no socket;
//! - as root (ids shifted into 100000..165536): no setuid/setgid file owned by an id
//!   outside that range, and after a successful unpack no inode at all outside it;
//! - a successful unpack counted every byte of the stream.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use adjutant_runtime::digest::Digest;
use adjutant_runtime::idmap::IdMapping;
use adjutant_runtime::layer::{self, sys, Compression, Limits, Ownership, UnpackJob};

pub const BASE_ENV: &str = "KOJI_ADJUTANT_FUZZ_DIR";
const LABEL: &str = "fuzz-input";
const CANARY: &[u8] = b"the layer unpacker must never write here\n";
/// Host ids of container ids 0..65536 as root (`IdMapping::root`'s default range).
pub const HOST_BASE: u32 = 100_000;
pub const HOST_COUNT: u32 = 65_536;

/// The fuzzing base directory.
pub fn base_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(BASE_ENV) {
        return PathBuf::from(d);
    }
    let shm = Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    match unsafe { libc::geteuid() } {
        0 => parent.join("ka-fuzz"),
        uid => parent.join(format!("ka-fuzz-{uid}")),
    }
}

pub struct Unpacker {
    base: PathBuf,
    sentinel: PathBuf,
    ownership: Ownership,
    /// The host id range everything must be owned by (None: not checked).
    range: Option<(u32, u32)>,
}

impl Default for Unpacker {
    fn default() -> Self {
        Self::new()
    }
}

impl Unpacker {
    pub fn new() -> Unpacker {
        let base = base_dir();
        std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{}: {e}", base.display()));
        let sentinel = base.join("sentinel");
        match std::fs::create_dir(&sentinel) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("{}: {e}", sentinel.display()),
        }
        let canary = sentinel.join("canary");
        if !canary.exists() {
            // Another process may be doing the same: write aside, then rename.
            let tmp = sentinel.join(format!(".canary-{}", std::process::id()));
            std::fs::write(&tmp, CANARY).unwrap();
            std::fs::rename(&tmp, &canary).unwrap();
        }
        let (ownership, range) = if unsafe { libc::geteuid() } == 0 {
            let m = IdMapping::root(HOST_BASE, HOST_COUNT).expect("the default id range");
            (
                Ownership::Shift(m),
                Some((HOST_BASE, HOST_BASE + HOST_COUNT)),
            )
        } else {
            (Ownership::Ignore, None)
        };
        let u = Unpacker {
            base,
            sentinel,
            ownership,
            range,
        };
        u.check_sentinel();
        u
    }

    fn check_sentinel(&self) {
        let s = &self.sentinel;
        let md = std::fs::symlink_metadata(s).unwrap_or_else(|e| panic!("sentinel: {e}"));
        assert!(md.is_dir(), "the sentinel {} was replaced", s.display());
        let mut names: Vec<_> = std::fs::read_dir(s)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.retain(|n| !n.to_string_lossy().starts_with(".canary-"));
        assert_eq!(
            names,
            ["canary"],
            "something was written into the sentinel {}",
            s.display()
        );
        let canary = s.join("canary");
        let md = std::fs::symlink_metadata(&canary).unwrap();
        assert!(md.is_file(), "the canary was replaced");
        assert_eq!(md.nlink(), 1, "the canary was hardlinked from somewhere");
        assert_eq!(
            std::fs::read(&canary).unwrap(),
            CANARY,
            "the canary was overwritten"
        );
    }

    /// Unpack `data` and check every invariant; panics on a violation.
    pub fn check(&mut self, data: &[u8]) {
        // Unique per process and call (tests run harnesses on several threads).
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let run = self.base.join(format!("{}-{n}", std::process::id()));
        if run.exists() {
            std::fs::remove_dir_all(&run).unwrap();
        }
        std::fs::create_dir(&run).unwrap();
        let blob = run.join("layer.tar");
        std::fs::write(&blob, data).unwrap();
        let target = run.join("t");
        std::fs::create_dir(&target).unwrap();
        let job = UnpackJob {
            blob: blob.clone(),
            compression: Compression::None,
            diff_id: Digest::of(data),
            target: target.clone(),
            ownership: self.ownership.clone(),
            limits: Limits {
                max_entries: 10_000,
                max_bytes: 32 << 20,
            },
            label: LABEL.into(),
        };
        let result = layer::unpack(&job);

        self.check_sentinel();
        let mut names: Vec<_> = std::fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["layer.tar", "t"],
            "something was written next to the target"
        );
        let md = std::fs::symlink_metadata(&blob).unwrap();
        assert!(md.is_file() && md.nlink() == 1 && md.len() == data.len() as u64);
        let md = std::fs::symlink_metadata(&target).unwrap();
        assert!(md.is_dir(), "the target itself was replaced");

        let root: OwnedFd = std::fs::File::open(&target).unwrap().into();
        let mut inodes = HashMap::new();
        let ok = result.is_ok();
        self.walk(&root, b"", ok, &mut inodes);
        let st = sys::fstat(root.as_fd()).unwrap();
        self.check_owner(b".", &st, ok);
        for (ino, (seen, nlink, path)) in inodes {
            assert_eq!(
                seen,
                nlink,
                "inode {ino} ({:?}) has {nlink} links but {seen} inside the target: \
                 it is linked from outside the layer",
                String::from_utf8_lossy(&path)
            );
        }
        match result {
            Ok(stats) => assert_eq!(stats.tar_bytes, data.len() as u64, "{stats:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with(&format!("layer {LABEL}: ")),
                    "the error does not name the layer: {msg}"
                );
            }
        }
        std::fs::remove_dir_all(&run).unwrap_or_else(|e| panic!("removing {}: {e}", run.display()));
    }

    fn check_owner(&self, path: &[u8], st: &libc::stat, ok: bool) {
        let Some((lo, hi)) = self.range else {
            return;
        };
        let path = String::from_utf8_lossy(path);
        let inside = |id: u32| (lo..hi).contains(&id);
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFREG {
            if st.st_mode & libc::S_ISUID != 0 {
                assert!(
                    inside(st.st_uid),
                    "setuid {path:?} owned by host uid {}",
                    st.st_uid
                );
            }
            if st.st_mode & libc::S_ISGID != 0 {
                assert!(
                    inside(st.st_gid),
                    "setgid {path:?} owned by host gid {}",
                    st.st_gid
                );
            }
        }
        if ok {
            assert!(
                inside(st.st_uid) && inside(st.st_gid),
                "{path:?} owned by host {}:{} after a successful unpack",
                st.st_uid,
                st.st_gid
            );
        }
    }

    fn walk(
        &self,
        dir: &OwnedFd,
        prefix: &[u8],
        ok: bool,
        inodes: &mut HashMap<u64, (u64, u64, Vec<u8>)>,
    ) {
        let names = sys::read_dir_names(dir.as_fd()).unwrap();
        for name in names {
            let mut path = prefix.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            let Some(st) = sys::lstatat(dir.as_fd(), &name).unwrap() else {
                continue;
            };
            self.check_owner(&path, &st, ok);
            let p = || String::from_utf8_lossy(&path).into_owned();
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    let sub =
                        sys::openat(dir.as_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
                            .unwrap_or_else(|e| panic!("{}: {e}", p()));
                    self.walk(&sub, &path, ok, inodes);
                }
                libc::S_IFBLK => panic!("block device {:?} created", p()),
                libc::S_IFSOCK => panic!("socket {:?} created", p()),
                libc::S_IFCHR => {
                    assert_eq!(st.st_rdev, 0, "character device {:?} created", p());
                }
                _ => {}
            }
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                let e = inodes
                    .entry(st.st_ino)
                    .or_insert((0, st.st_nlink, path.clone()));
                e.0 += 1;
            }
        }
    }
}
