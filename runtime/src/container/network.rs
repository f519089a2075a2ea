//! Container networking: `lo` up in a private network namespace, and the
//! `/etc/hosts` / `/etc/resolv.conf` that go with a step's network choice.
//!
//! The files are regular files in the container's root (not bind mounts), so package
//! scriptlets that replace `/etc/hosts` by rename keep working. Network `none`:
//! localhost-only hosts, an empty resolv.conf (lookups fail fast). Network `host`: the
//! host's two files, copied. When a step's network differs from what the files say,
//! the step rewrites them in place before it starts (see docs/runtime.md).

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use crate::container::spec::Network;
use crate::sys::SysError;

/// The content of the two files for one network choice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetFiles {
    pub network: Network,
    pub hosts: String,
    pub resolv_conf: String,
}

impl NetFiles {
    /// Files for `network`; the host variant reads the host's files now.
    pub fn for_network(network: Network, hostname: &str) -> NetFiles {
        match network {
            Network::None => NetFiles {
                network,
                hosts: format!(
                    "127.0.0.1\tlocalhost localhost.localdomain {hostname}\n\
                     ::1\tlocalhost localhost.localdomain ip6-localhost ip6-loopback {hostname}\n"
                ),
                resolv_conf: String::new(),
            },
            Network::Host => NetFiles {
                network,
                hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| {
                    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost {hostname}\n")
                }),
                resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            },
        }
    }

    /// Write both files into the `etc` directory handle `etc` (inside the container).
    /// A symlink or other non-regular file in their place is replaced by a file.
    pub fn write_at(&self, etc: &OwnedFd) -> Result<(), SysError> {
        write_file_at(etc, "hosts", self.hosts.as_bytes())?;
        write_file_at(etc, "resolv.conf", self.resolv_conf.as_bytes())
    }

    /// Write both files into `/etc` of the current root (used by steps, already inside).
    pub fn write_in_current_root(&self) -> Result<(), SysError> {
        let fd = nix::fcntl::open(
            "/etc",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SysError::at("open", "/etc", e))?;
        // SAFETY: fresh fd.
        self.write_at(&unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn write_file_at(dir: &OwnedFd, name: &str, data: &[u8]) -> Result<(), SysError> {
    let path = Path::new("/etc").join(name);
    // Replace anything that is not a regular file (a dangling resolv.conf symlink to
    // /run/systemd/... is common in images).
    match nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) if (st.st_mode & libc::S_IFMT) != libc::S_IFREG => {
            nix::unistd::unlinkat(
                Some(dir.as_raw_fd()),
                name,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )
            .map_err(|e| SysError::at("unlinkat", &path, e))?;
        }
        _ => {}
    }
    let fd = openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| SysError::at("openat", &path, e))?;
    // SAFETY: fresh fd.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(data).map_err(|e| {
        SysError::at(
            "write",
            &path,
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })
}

#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCSIFFLAGS: libc::c_ulong = 0x8914;

/// Bring `lo` up in the current network namespace (the kernel then assigns
/// 127.0.0.1/8 and ::1).
pub fn loopback_up() -> Result<(), SysError> {
    // SAFETY: plain socket/ioctl calls on a struct laid out like `struct ifreq`.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(SysError::at("socket", "lo", Errno::last()));
        }
        let sock = OwnedFd::from_raw_fd(s);
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        req.name[..2].copy_from_slice(b"lo");
        if libc::ioctl(sock.as_raw_fd(), SIOCGIFFLAGS, &mut req) < 0 {
            return Err(SysError::at("ioctl(SIOCGIFFLAGS)", "lo", Errno::last()));
        }
        req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), SIOCSIFFLAGS, &req) < 0 {
            return Err(SysError::at("ioctl(SIOCSIFFLAGS)", "lo", Errno::last()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_files_are_localhost_only() {
        let f = NetFiles::for_network(Network::None, "box");
        assert!(f.resolv_conf.is_empty());
        assert!(f.hosts.contains("127.0.0.1\tlocalhost"));
        assert!(f.hosts.contains(" box\n"));
        assert_eq!(f.hosts.lines().count(), 2);
    }

    #[test]
    fn write_replaces_symlinks_without_following() {
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        let outside = d.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        std::os::unix::fs::symlink(&outside, etc.join("resolv.conf")).unwrap();
        let fd = nix::fcntl::open(&etc, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        NetFiles::for_network(Network::None, "h")
            .write_at(&fd)
            .unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        let m = std::fs::symlink_metadata(etc.join("resolv.conf")).unwrap();
        assert!(m.is_file());
        assert_eq!(
            std::fs::read_to_string(etc.join("resolv.conf")).unwrap(),
            ""
        );
    }
}
