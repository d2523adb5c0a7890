//! Which namespaces the standing filter lives in: the network namespace's cookie, and whether
//! a BPF file system mounted by this command outlives it.

use std::{
    fs, io,
    os::fd::{AsRawFd as _, FromRawFd as _},
};

use super::BPFFS;

/// This network namespace's cookie (`SO_NETNS_COOKIE`, Linux 5.14): unlike the inode, never
/// reused for another namespace. Asked of a socket that is never bound, so it needs no address
/// (a namespace's `lo` may be down, without 127.0.0.1), and of a Unix socket, which needs no
/// IP stack.
pub(super) fn netns_cookie() -> io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain syscall; the descriptor it returns is owned below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for writes of their sizes during the call.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// Whether this process's mount namespace is not the host's (init's): one `ip netns exec`,
/// `unshare --mount` or a unit's private mounts made, which a mount in it does not outlive for
/// long. Where init's cannot be read (in a container without CAP_SYS_PTRACE over it), a parent
/// in another one says this one was made for this command; otherwise `None`: nobody knows, and
/// the pins may well stay.
pub(super) fn in_private_mount_namespace() -> Option<bool> {
    let own = fs::read_link("/proc/self/ns/mnt").ok()?;
    if let Ok(init) = fs::read_link("/proc/1/ns/mnt") {
        return Some(own != init);
    }
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    fs::read_link(format!("/proc/{parent}/ns/mnt"))
        .ok()
        .filter(|parent| *parent != own)
        .map(|_| true)
}

/// Said after mounting the BPF file system: the mount lives as long as the mount namespace,
/// which is said only when known to be one of this command's own.
pub(super) fn mount_warning(private: Option<bool>) -> String {
    if private == Some(true) {
        format!(
            "mounted a BPF file system at {BPFFS}, in a mount namespace of this command's own \
             (as `ip netns exec` makes): the pins go away with it, and the filter with them. To \
             keep them, run in the host's mount namespace: `{} localnet-probe run --pin …`",
            crate::net::netns::nsenter_here()
        )
    } else {
        format!("mounted a BPF file system at {BPFFS}: none was mounted")
    }
}

#[cfg(test)]
mod mount_tests {
    use super::*;

    #[test]
    fn pins_are_said_to_vanish_only_where_known() {
        assert!(mount_warning(Some(true)).contains("the pins go away"));
        // /proc/1/ns/mnt unreadable: the pins may well stay, so nothing is claimed.
        assert!(!mount_warning(None).contains("go away"));
        assert!(!mount_warning(Some(false)).contains("go away"));
    }
}
