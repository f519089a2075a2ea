//! User and group id mappings for user namespaces.
//!
//! Three modes (see docs/architecture.md):
//! - **Root**: the daemon runs as real root and maps container ids `0..size` onto a
//!   configured subordinate range `base..base+size` (at least 65536 ids).
//! - **Rootless ranges**: the daemon runs as an ordinary user; container root is the
//!   user itself and container ids `1..=size` come from its `/etc/subuid` and
//!   `/etc/subgid` ranges, written with `newuidmap`/`newgidmap`.
//! - **Single**: container root is the user itself and nothing else is mapped. This is
//!   a degraded mode: rpm cannot chown files to other users in it.

use std::fmt;
use std::path::{Path, PathBuf};

/// One line of a `uid_map`/`gid_map`: `inside outside count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The complete id mapping of a container (uids and gids).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IdMapping {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
    pub mode: MappingMode,
}

/// How the mapping was obtained; decides how it is written into a new user namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MappingMode {
    /// Real root writes `/proc/<pid>/{uid,gid}_map` directly.
    Root,
    /// An unprivileged user uses the setuid `newuidmap`/`newgidmap` helpers.
    RootlessRanges,
    /// An unprivileged user maps only itself (degraded: no chown to other ids).
    Single,
}

impl fmt::Display for MappingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MappingMode::Root => "root",
            MappingMode::RootlessRanges => "rootless-ranges",
            MappingMode::Single => "single (degraded)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: malformed subordinate id entry {text:?} (want NAME_OR_ID:START:COUNT)"
    )]
    Malformed {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("subordinate id range {base}+{count} is too small or overflows: at least {min} ids are needed")]
    TooSmall { base: u32, count: u32, min: u32 },
}

/// Minimum number of ids a build root needs (rpm payloads use ids up to 65534).
pub const MIN_RANGE: u32 = 65536;

impl IdMapping {
    /// Root mode: container ids `0..count` are host ids `base..base+count`.
    pub fn root(base: u32, count: u32) -> Result<Self, IdMapError> {
        if count < MIN_RANGE || base.checked_add(count).is_none() || base == 0 {
            return Err(IdMapError::TooSmall {
                base,
                count,
                min: MIN_RANGE,
            });
        }
        let r = vec![IdRange {
            inside: 0,
            outside: base,
            count,
        }];
        Ok(IdMapping {
            uids: r.clone(),
            gids: r,
            mode: MappingMode::Root,
        })
    }

    /// Rootless with subordinate ranges: 0 is the caller, `1..=count` the subordinate range.
    pub fn rootless(uid: u32, gid: u32, sub_uid: (u32, u32), sub_gid: (u32, u32)) -> Self {
        let mk = |own: u32, (start, count): (u32, u32)| {
            vec![
                IdRange {
                    inside: 0,
                    outside: own,
                    count: 1,
                },
                IdRange {
                    inside: 1,
                    outside: start,
                    count,
                },
            ]
        };
        IdMapping {
            uids: mk(uid, sub_uid),
            gids: mk(gid, sub_gid),
            mode: MappingMode::RootlessRanges,
        }
    }

    /// Degraded single-id mapping: container root is the caller and nothing else exists.
    pub fn single(uid: u32, gid: u32) -> Self {
        IdMapping {
            uids: vec![IdRange {
                inside: 0,
                outside: uid,
                count: 1,
            }],
            gids: vec![IdRange {
                inside: 0,
                outside: gid,
                count: 1,
            }],
            mode: MappingMode::Single,
        }
    }

    /// Whether this mapping can represent files owned by other users (rpm needs that).
    pub fn is_degraded(&self) -> bool {
        self.mode == MappingMode::Single
    }

    /// Host uid for container uid `id`, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        map_one(&self.uids, id)
    }

    /// Host gid for container gid `id`, if mapped.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        map_one(&self.gids, id)
    }

    /// Text for `/proc/<pid>/uid_map`.
    pub fn uid_map_text(&self) -> String {
        map_text(&self.uids)
    }

    /// Text for `/proc/<pid>/gid_map`.
    pub fn gid_map_text(&self) -> String {
        map_text(&self.gids)
    }

    /// A short stable key naming this mapping, used to keep unpacked layers of
    /// different mappings apart (file ownership on disk depends on it).
    pub fn cache_key(&self) -> String {
        let part = |v: &[IdRange]| {
            v.iter()
                .map(|r| format!("{}-{}-{}", r.inside, r.outside, r.count))
                .collect::<Vec<_>>()
                .join("_")
        };
        format!("u{}.g{}", part(&self.uids), part(&self.gids))
    }
}

fn map_one(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        (id >= r.inside && id - r.inside < r.count).then(|| r.outside + (id - r.inside))
    })
}

fn map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect()
}

/// Find the first subordinate range of `name` (or numeric `id`) in an
/// `/etc/subuid`-format file. Returns `(start, count)`.
pub fn find_subordinate(
    path: &Path,
    name: &str,
    id: u32,
) -> Result<Option<(u32, u32)>, IdMapError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(IdMapError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let id_s = id.to_string();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = || IdMapError::Malformed {
            path: path.to_owned(),
            line: i + 1,
            text: line.to_owned(),
        };
        let mut it = line.split(':');
        let (Some(who), Some(start), Some(count), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(malformed());
        };
        let start: u32 = start.parse().map_err(|_| malformed())?;
        let count: u32 = count.parse().map_err(|_| malformed())?;
        if who == name || who == id_s {
            return Ok(Some((start, count)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_mapping_maps_and_rejects_small_ranges() {
        let m = IdMapping::root(100000, 65536).unwrap();
        assert_eq!(m.host_uid(0), Some(100000));
        assert_eq!(m.host_uid(65535), Some(165535));
        assert_eq!(m.host_uid(65536), None);
        assert_eq!(m.uid_map_text(), "0 100000 65536\n");
        assert!(IdMapping::root(100000, 1000).is_err());
        assert!(IdMapping::root(u32::MAX - 10, 65536).is_err());
    }

    #[test]
    fn rootless_mapping_puts_caller_at_zero() {
        let m = IdMapping::rootless(1000, 1000, (200000, 65536), (300000, 65536));
        assert_eq!(m.host_uid(0), Some(1000));
        assert_eq!(m.host_uid(1), Some(200000));
        assert_eq!(m.host_gid(5), Some(300004));
        assert!(!m.is_degraded());
        assert!(IdMapping::single(1000, 1000).is_degraded());
    }

    #[test]
    fn subordinate_file_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("subuid");
        std::fs::write(&p, "# c\nalice:100000:65536\n1001:300000:70000\n").unwrap();
        assert_eq!(
            find_subordinate(&p, "alice", 1000).unwrap(),
            Some((100000, 65536))
        );
        assert_eq!(
            find_subordinate(&p, "bob", 1001).unwrap(),
            Some((300000, 70000))
        );
        assert_eq!(find_subordinate(&p, "carol", 1002).unwrap(), None);
        std::fs::write(&p, "alice:x:1\n").unwrap();
        let e = find_subordinate(&p, "alice", 1000).unwrap_err().to_string();
        assert!(e.contains("subuid:1"), "{e}");
    }
}
