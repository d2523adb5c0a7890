//! Which namespaces the standing filter lives in: the network namespace's cookie, and whether
//! a BPF file system mounted by this command outlives it.

use std::{
    fs, io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _},
        unix::fs::MetadataExt as _,
    },
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

/// The initial PID namespace's inode (`PROC_PID_INIT_INO`): a process in another one is in a
/// container, whose PID 1 is not the host's init.
const INITIAL_PID_NAMESPACE: &str = "pid:[4026531836]";

/// How many ancestors are looked at, at most.
const ANCESTORS: usize = 64;

/// Whether the pins in the BPF file system at [`BPFFS`] go away with this process's mount
/// namespace: `Some(true)` when an outer mount namespace (an ancestor's, as the shell that ran
/// `ip netns exec` or `unshare --mount` has) does not have the same file system there, so it is
/// this namespace's own; `Some(false)` when one has it (a unit's private mounts, a namespace
/// copied from the host's), or when this is the host's own namespace; `None` when nobody can
/// tell. `mounted_here`: this command mounted it, which in a container means it is the
/// container's own (a DaemonSet's host bpffs is mounted before the probe starts), and lasts
/// only as long as the container.
pub fn pins_vanish(mounted_here: bool) -> Option<bool> {
    let own = fs::read_link("/proc/self/ns/mnt").ok()?;
    let bpffs = fs::metadata(BPFFS).ok()?.dev();
    let mut pid = std::process::id();
    for _ in 0..ANCESTORS {
        pid = parent_of(pid)?;
        if pid == 0 {
            break;
        }
        // Unreadable without CAP_SYS_PTRACE over it (or under a stricter LSM): the next one
        // may tell.
        let Ok(namespace) = fs::read_link(format!("/proc/{pid}/ns/mnt")) else {
            continue;
        };
        if namespace != own {
            // Readable as its namespace was: no such directory there shares nothing.
            let outer = fs::metadata(format!("/proc/{pid}/root{BPFFS}"));
            return Some(outer.map_or(true, |outer| outer.dev() != bpffs));
        }
        if pid == 1 {
            let host = fs::read_link("/proc/self/ns/pid")
                .is_ok_and(|pid_namespace| pid_namespace.as_os_str() == INITIAL_PID_NAMESPACE);
            return if host || !mounted_here {
                Some(false)
            } else {
                None
            };
        }
    }
    // PID 1 unreadable, and every ancestor read in this namespace.
    (!mounted_here).then_some(false)
}

/// The parent of process `pid`, 0 for none, from `/proc/PID/stat` (its fourth field, after a
/// command name that may hold spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Said when the BPF file system is this namespace's own, or this command mounted it: the
/// mount lives as long as the mount namespace, said to go with this command only when known.
pub(super) fn mount_warning(mounted_here: bool, vanish: Option<bool>) -> Option<String> {
    let what = if mounted_here {
        format!("mounted a BPF file system at {BPFFS}, where none was mounted")
    } else {
        format!("the BPF file system at {BPFFS} is not the host's")
    };
    match vanish {
        Some(true) => Some(format!(
            "{what}, in a mount namespace of its own (as `ip netns exec` or `unshare --mount` \
             makes): the pins go away with it, and the filter with them. To keep them, run in \
             the host's mount namespace: `{} localnet-probe run --pin …`",
            crate::net::netns::nsenter_here()
        )),
        None => Some(format!(
            "{}; whether it outlives this command cannot be told from here (in a container \
             it lasts as long as the container): to be sure the filter stays, mount the host's \
             BPF file system at {BPFFS} (a DaemonSet's hostPath) or run in the host's mount \
             namespace",
            if mounted_here {
                &what
            } else {
                "the BPF file system here may not be the host's"
            }
        )),
        Some(false) => mounted_here.then_some(what),
    }
}

#[cfg(test)]
mod mount_tests {
    use super::*;

    #[test]
    fn pins_are_said_to_vanish_only_where_known() {
        for mounted_here in [true, false] {
            let vanish = mount_warning(mounted_here, Some(true)).unwrap();
            assert!(vanish.contains("the pins go away"), "{vanish}");
            // Nobody can tell: neither claimed.
            let unknown = mount_warning(mounted_here, None).unwrap();
            assert!(!unknown.contains("go away"), "{unknown}");
            assert!(unknown.contains("cannot be told"), "{unknown}");
        }
        assert!(
            !mount_warning(true, Some(false))
                .unwrap()
                .contains("go away")
        );
        // Already mounted, and shared with an outer namespace: nothing to say.
        assert_eq!(mount_warning(false, Some(false)), None);
    }

    #[test]
    fn a_parent_is_read_past_a_command_name_with_parentheses() {
        // This test's own process: its parent is the test harness's, never 0.
        let parent = parent_of(std::process::id()).unwrap();
        assert_eq!(parent, std::os::unix::process::parent_id());
    }
}
