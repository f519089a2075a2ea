//! Capabilities of container processes.
//!
//! Every step runs with its bounding set reduced to [`DEFAULT_CAPS`] (or the set the
//! caller names), an empty inheritable and ambient set, and `no_new_privs`. A step
//! running as container root has exactly that set effective; any other uid has none.
//! The capabilities are those of the container's user namespace: they never grant
//! anything over the host (docs/runtime.md, "Capabilities").

use caps::{CapSet, Capability, CapsHashSet};

/// The default capability set: podman's default, which is what package installs and
/// builds need (chown/chmod of any file, setuid/setgid for scriptlets and `su`,
/// file capabilities for rpm's `%caps`, chroot for `rpm --root`, `kill`, binding
/// low ports on the private loopback).
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETGID,
    Capability::CAP_SETPCAP,
    Capability::CAP_SETUID,
    Capability::CAP_SYS_CHROOT,
];

#[derive(Debug, thiserror::Error)]
pub enum CapError {
    #[error("unknown capability {0:?}")]
    Unknown(String),
    #[error("{what}: {source}")]
    Set {
        what: &'static str,
        source: caps::errors::CapsError,
    },
    #[error("prctl(PR_SET_NO_NEW_PRIVS): {0}")]
    NoNewPrivs(nix::errno::Errno),
}

/// Parse capability names (`CAP_NET_ADMIN`, `net_admin`); `None` gives the default.
pub fn resolve(names: Option<&[String]>) -> Result<CapsHashSet, CapError> {
    match names {
        None => Ok(DEFAULT_CAPS.iter().copied().collect()),
        Some(names) => names
            .iter()
            .map(|n| {
                caps::to_canonical(n)
                    .parse::<Capability>()
                    .map_err(|_| CapError::Unknown(n.clone()))
            })
            .collect(),
    }
}

/// The bit mask of a set, as shown in `/proc/<pid>/status` (`CapBnd:` etc.).
pub fn mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0u64, |m, c| m | c.bitmask())
}

/// Drop everything outside `keep` from the bounding set and clear the inheritable and
/// ambient sets. Must run while the process still has `CAP_SETPCAP` (i.e. before
/// switching to a non-root uid).
pub fn limit_bounding(keep: &CapsHashSet) -> Result<(), CapError> {
    for c in caps::all() {
        if keep.contains(&c) {
            continue;
        }
        // One prctl per capability. EINVAL: the kernel does not know this one, so
        // there is nothing to drop; anything else is an error.
        // SAFETY: plain prctl.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAPBSET_DROP,
                libc::c_ulong::from(c.index()),
                0,
                0,
                0,
            )
        };
        if r != 0 && nix::errno::Errno::last() != nix::errno::Errno::EINVAL {
            return Err(CapError::Set {
                what: "dropping from the bounding set",
                source: caps::errors::CapsError::from(format!(
                    "PR_CAPBSET_DROP {c}: {}",
                    std::io::Error::last_os_error()
                )),
            });
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|source| CapError::Set {
        what: "clearing the ambient set",
        source,
    })?;
    caps::clear(None, CapSet::Inheritable).map_err(|source| CapError::Set {
        what: "clearing the inheritable set",
        source,
    })?;
    Ok(())
}

/// After the uid switch: restrict permitted and effective to `keep` (a no-op for
/// non-root uids, whose sets the kernel already cleared), then set `no_new_privs`.
pub fn finish(keep: &CapsHashSet) -> Result<(), CapError> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(|source| CapError::Set {
        what: "reading the permitted set",
        source,
    })?;
    let target: CapsHashSet = permitted.intersection(keep).copied().collect();
    caps::set(None, CapSet::Effective, &target).map_err(|source| CapError::Set {
        what: "setting the effective set",
        source,
    })?;
    caps::set(None, CapSet::Permitted, &target).map_err(|source| CapError::Set {
        what: "setting the permitted set",
        source,
    })?;
    nix::sys::prctl::set_no_new_privs().map_err(CapError::NoNewPrivs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_is_documented_value() {
        let d = resolve(None).unwrap();
        assert_eq!(d.len(), DEFAULT_CAPS.len());
        // docs/runtime.md quotes this mask; keep them in sync.
        assert_eq!(mask(&d), 0x0000_0000_8004_05fb);
    }

    #[test]
    fn names_parse_both_spellings() {
        let s = resolve(Some(&["net_admin".into(), "CAP_CHOWN".into()])).unwrap();
        assert!(s.contains(&Capability::CAP_NET_ADMIN) && s.contains(&Capability::CAP_CHOWN));
        assert!(matches!(
            resolve(Some(&["cap_bogus".into()])),
            Err(CapError::Unknown(_))
        ));
    }
}
