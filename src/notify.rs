//! systemd's service notification protocol (`sd_notify(3)`), for `Type=notify` units:
//! one datagram of `KEY=VALUE` lines to the `AF_UNIX` socket named by `$NOTIFY_SOCKET`
//! (a path, or an abstract name written with a leading `@`). No crate, no libsystemd:
//! it is one `sendto`.
//!
//! The daemon sends `READY=1` once it is logged in to the hub and about to take tasks,
//! `STOPPING=1` when it starts to shut down, and `RELOADING=1` before it re-executes
//! itself for a graceful restart (the new process sends `READY=1` again). Without
//! `$NOTIFY_SOCKET` every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where `$NOTIFY_SOCKET` points.
fn address(raw: &str) -> std::io::Result<SocketAddr> {
    if let Some(name) = raw.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if raw.starts_with('/') {
        SocketAddr::from_pathname(raw)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{NOTIFY_SOCKET}={raw:?} is neither a path nor an abstract socket name"),
        ))
    }
}

/// Send `state` (newline-separated `KEY=VALUE` assignments) to the service manager.
/// `Ok(false)` when not started by one (no `$NOTIFY_SOCKET`).
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(raw) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    let raw = raw.to_string_lossy();
    if raw.is_empty() {
        return Ok(false);
    }
    let addr = address(&raw)?;
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(true)
}

/// [`notify`], logging a failure instead of returning it (a notification that cannot
/// be sent must not stop the daemon; systemd then reports the start as timed out).
pub fn notify_logged(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!("cannot notify the service manager ({state:?}): {e}");
    }
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    notify_logged(&format!("READY=1\nSTATUS={status}"));
}

/// `STOPPING=1` with a status line.
pub fn stopping(status: &str) {
    notify_logged(&format!("STOPPING=1\nSTATUS={status}"));
}

/// `RELOADING=1` (with `MONOTONIC_USEC`, as systemd ≥ 253 wants it) before a restart
/// in place.
pub fn reloading(status: &str) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    let usec = if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0 {
        ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
    } else {
        0
    };
    notify_logged(&format!(
        "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={status}"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(address("/run/systemd/notify")
            .unwrap()
            .as_pathname()
            .is_some());
        {
            use std::os::linux::net::SocketAddrExt;
            assert_eq!(
                address("@abc").unwrap().as_abstract_name(),
                Some(b"abc".as_slice())
            );
        }
        assert!(address("relative").is_err());
    }

    #[test]
    fn sends_to_a_path_and_an_abstract_socket() {
        // One test touches the environment variable (tests run in threads).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        std::env::set_var(NOTIFY_SOCKET, &path);
        assert!(notify("READY=1\nSTATUS=x").unwrap());
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=x");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("koji-adjutant-notify-test-{}", std::process::id());
        let rx2 =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        std::env::set_var(NOTIFY_SOCKET, format!("@{name}"));
        reloading("restarting");
        let n = rx2.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(got.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{got}");
        assert!(got.ends_with("\nSTATUS=restarting"), "{got}");

        std::env::remove_var(NOTIFY_SOCKET);
        assert!(!notify("READY=1").unwrap());
    }
}
