//! The processes of this host and the files they hold open, walked through `/proc`: who holds a
//! BPF link or a socket.

use std::{
    fs::{self, ReadDir},
    io,
    path::PathBuf,
};

/// A process holding something, as `/proc/<pid>` names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
}

/// A process met on the walk.
pub struct Process {
    pub pid: u32,
    path: PathBuf,
}

impl Process {
    /// `/proc/<pid>/fdinfo/<fd>` of a descriptor its `fd` directory lists.
    pub fn fdinfo(&self, fd: &std::ffi::OsStr) -> io::Result<String> {
        fs::read_to_string(self.path.join("fdinfo").join(fd))
    }

    /// It, with its command name (empty when it cannot be read).
    pub fn holder(&self) -> Holder {
        let command = fs::read_to_string(self.path.join("comm"))
            .map(|comm| comm.trim_end().to_owned())
            .unwrap_or_default();
        Holder {
            pid: self.pid,
            command,
        }
    }
}

/// Calls `visit` with every process and the entries of its `fd` directory; says whether every
/// process could be inspected (a process that exited meanwhile is not one that was missed).
pub fn walk(mut visit: impl FnMut(&Process, ReadDir)) -> bool {
    let Ok(processes) = fs::read_dir("/proc") else {
        return false;
    };
    let mut saw_every_process = true;
    for entry in processes.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let process = Process {
            pid,
            path: entry.path(),
        };
        match fs::read_dir(process.path.join("fd")) {
            Ok(fds) => visit(&process, fds),
            Err(error) => saw_every_process &= error.kind() == io::ErrorKind::NotFound,
        }
    }
    saw_every_process
}

/// The network namespaces that processes are in, by the inode `/proc/<pid>/ns/net` names, each
/// with its processes in pid order; and whether every process could be inspected (one that
/// exited meanwhile is not one that was missed).
pub fn net_namespaces() -> (std::collections::BTreeMap<u64, Vec<u32>>, bool) {
    let mut namespaces = std::collections::BTreeMap::<u64, Vec<u32>>::new();
    let Ok(processes) = fs::read_dir("/proc") else {
        return (namespaces, false);
    };
    let mut saw_every_process = true;
    for entry in processes.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        match net_namespace_of(pid) {
            Ok(inode) => namespaces.entry(inode).or_default().push(pid),
            Err(error) => saw_every_process &= error.kind() == io::ErrorKind::NotFound,
        }
    }
    for pids in namespaces.values_mut() {
        pids.sort_unstable();
    }
    (namespaces, saw_every_process)
}

/// The inode of the network namespace `pid` is in, from the `net:[<inode>]` its
/// `/proc/<pid>/ns/net` links to.
pub fn net_namespace_of(pid: u32) -> io::Result<u64> {
    let target = fs::read_link(format!("/proc/{pid}/ns/net"))?;
    target
        .to_str()
        .and_then(|target| target.strip_prefix("net:["))
        .and_then(|target| target.strip_suffix(']'))
        .and_then(|inode| inode.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a network namespace"))
}

/// `pid` as a holder, its command name read from `/proc/<pid>/comm` (empty when it cannot be).
pub fn holder_of(pid: u32) -> Holder {
    Process {
        pid,
        path: PathBuf::from(format!("/proc/{pid}")),
    }
    .holder()
}
