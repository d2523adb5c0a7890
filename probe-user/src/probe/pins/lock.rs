//! Who serves a network namespace's standing filter: an abstract socket as its lock.

use std::{
    fs, io,
    os::{
        fd::AsRawFd as _,
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixListener, UnixStream},
    },
};

use super::PinError;

/// Who may take the standing filter of a namespace: an abstract socket, which belongs to the
/// network namespace and goes away with its process however it ends.
const LOCK_NAME: &[u8] = b"localnet-probe/standing-filter";

/// Held while a `run --pin` or a `detach` works on this namespace's standing filter.
#[derive(Debug)]
pub struct PinLock {
    _listener: UnixListener,
}

impl PinLock {
    /// Takes the lock, or says who holds it.
    pub fn take() -> Result<Self, PinError> {
        let address = SocketAddr::from_abstract_name(LOCK_NAME).map_err(PinError::Lock)?;
        match UnixListener::bind_addr(&address) {
            Ok(listener) => Ok(Self {
                _listener: listener,
            }),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => Err(PinError::Busy {
                holder: UnixStream::connect_addr(&address).map_or_else(
                    |_| "a process this one cannot see".to_owned(),
                    |stream| holder(&stream),
                ),
            }),
            Err(error) => Err(PinError::Lock(error)),
        }
    }
}

/// The `run --pin` serving this namespace's standing filter now, if any, as "pid N: command".
pub fn serving_process() -> Option<String> {
    let address = SocketAddr::from_abstract_name(LOCK_NAME).ok()?;
    let stream = UnixStream::connect_addr(&address).ok()?;
    Some(holder(&stream))
}

/// The process listening on the lock `stream` is connected to, as "pid N: command".
fn holder(stream: &UnixStream) -> String {
    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `credentials` and `len` are valid for writes of their sizes during the call.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut credentials).cast(),
            &raw mut len,
        )
    };
    if result < 0 || credentials.pid == 0 {
        return "a process this one cannot see".to_owned();
    }
    let pid = credentials.pid;
    match fs::read_to_string(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) if !cmdline.is_empty() => {
            // Escaped here: whoever started it chose its arguments, and every message and
            // view that names the holder shows this.
            format!(
                "pid {pid}: {}",
                crate::net::names::printable(&cmdline.trim_end_matches('\0').replace('\0', " "))
            )
        }
        _ => format!("pid {pid}"),
    }
}
