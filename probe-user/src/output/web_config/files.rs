//! The files a web configuration names, read relative to its directory (as the Go toolkit
//! does), each stamped before it is read so that a change during the read is seen next time.

use std::{
    io::Read as _,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use super::Problem;

/// More than any certificate chain or key: a path to something else is refused, not read.
const MAX_FILE: u64 = 1 << 20;

/// What identifies a file's content without reading it: replaced (a new inode, as Kubernetes
/// swaps a Secret's symlink), rewritten in place (size, modification and change times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl FileId {
    fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
            changed_ns: i128::from(metadata.ctime()) * 1_000_000_000
                + i128::from(metadata.ctime_nsec()),
        })
    }
}

/// The files a load read, as they were: `None` for one that could not be found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Stamp(Vec<(PathBuf, Option<FileId>)>);

impl Stamp {
    /// Whether any of the files is not as it was (a few `stat` calls, nothing read).
    pub(super) fn changed(&self) -> bool {
        self.0.iter().any(|(path, id)| FileId::of(path) != *id)
    }
}

/// Where some PEM text came from, for the message that says what is wrong with it.
pub(super) enum Source {
    Inline(&'static str),
    File(PathBuf),
}

impl Source {
    pub(super) fn problem(&self, message: impl std::fmt::Display) -> Problem {
        match self {
            Self::Inline(key) => Problem::config(format!("{key}: {message}")),
            Self::File(path) => Problem::in_file(path, message.to_string()),
        }
    }
}

/// Reads the files of one load and stamps them.
pub(super) struct Files {
    dir: PathBuf,
    pub(super) stamp: Stamp,
}

impl Files {
    pub(super) fn new(config: &Path) -> Self {
        Self {
            dir: config
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            stamp: Stamp::default(),
        }
    }

    /// Reads `path` (relative to the configuration's directory), at most [`MAX_FILE`] bytes.
    pub(super) fn read(&mut self, path: &Path) -> Result<(Vec<u8>, PathBuf), Problem> {
        let path = self.dir.join(path);
        self.stamp.0.push((path.clone(), FileId::of(&path)));
        let fail = |error: std::io::Error| Problem::in_file(&path, format!("cannot read: {error}"));
        // Without blocking: opening a FIFO for reading waits for a writer, and a blocking thread
        // held that way is one the probe's own work then lacks.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
            .map_err(fail)?;
        if !file.metadata().map_err(fail)?.is_file() {
            return Err(Problem::in_file(
                &path,
                "not a regular file; a certificate, key or configuration is one".to_owned(),
            ));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(fail)?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(Problem::in_file(
                &path,
                format!("larger than {MAX_FILE} bytes; not a certificate, key or configuration"),
            ));
        }
        Ok((bytes, path))
    }

    /// PEM text given inline under `inline_key` or in a file under `file_key`, not both.
    pub(super) fn inline_or_file(
        &mut self,
        inline_key: &'static str,
        inline: Option<&str>,
        file_key: &'static str,
        file: Option<&str>,
    ) -> Result<(Vec<u8>, Source), Problem> {
        let inline = inline.filter(|text| !text.is_empty());
        let file = file.filter(|name| !name.is_empty());
        match (inline, file) {
            (Some(_), Some(_)) => Err(Problem::config(format!(
                "tls_server_config gives both {inline_key} and {file_key}; give one"
            ))),
            (Some(text), None) => Ok((text.as_bytes().to_vec(), Source::Inline(inline_key))),
            (None, Some(name)) => {
                let (bytes, path) = self.read(Path::new(name))?;
                Ok((bytes, Source::File(path)))
            }
            (None, None) => Err(Problem::config(format!(
                "tls_server_config needs {file_key} (or {inline_key})"
            ))),
        }
    }
}
