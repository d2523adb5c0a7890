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
