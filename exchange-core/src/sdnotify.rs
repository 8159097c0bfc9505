//! systemd readiness notification (`Type=notify`), written by hand: one datagram to the socket
//! named by `$NOTIFY_SOCKET`, so no crate (and no libsystemd) is needed.
//!
//! `READY=1` is sent once every listener is bound and the daemon answers, so that
//! `systemctl start` returns (and units ordered `After=` it start) only when the service really
//! is up; `STOPPING=1` when a shutdown begins. Without `$NOTIFY_SOCKET` (not under systemd, or
//! `Type=exec`) nothing is sent. This is the one environment variable besides `RUST_LOG` the
//! daemons read: it is systemd's protocol, not configuration.

use std::os::unix::net::UnixDatagram;

/// Tells systemd the service is ready; logs and otherwise ignores a failure (readiness is a
/// courtesy to the service manager, never a reason to stop serving).
pub fn ready() {
    send_logged("READY=1");
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    send_logged("STOPPING=1");
}

fn send_logged(state: &str) {
    match notify(state) {
        Ok(true) => tracing::debug!(state, "notified systemd"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, state, "could not notify systemd"),
    }
}

/// Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`; `Ok(false)` when it is not set.
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    send(&path, state)?;
    Ok(true)
}

/// Sends one datagram to the notification socket `path`: a file system path, or an abstract
/// socket name when it starts with `@`.
fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    let sent = match bytes.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?
        }
        _ => sock.send_to(state.as_bytes(), path)?,
    };
    if sent != state.len() {
        return Err(std::io::Error::other("short write to NOTIFY_SOCKET"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_datagram_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
