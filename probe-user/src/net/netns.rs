//! Which named network namespace (`ip netns add NAME`, a file in /run/netns) this process is
//! in, for commands it suggests to run there from another mount namespace.

use std::{fs, os::unix::fs::MetadataExt as _, path::PathBuf};

use crate::net::names::shell_word;

const NAMED: &str = "/run/netns";

/// The file in /run/netns that is this process's network namespace, if one is.
pub fn this_namespace_file() -> Option<PathBuf> {
    let own = fs::metadata("/proc/self/ns/net").ok()?;
    fs::read_dir(NAMED)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            fs::metadata(path)
                .is_ok_and(|named| named.dev() == own.dev() && named.ino() == own.ino())
        })
}

/// `nsenter --net=/run/netns/NAME`, entering this network namespace from any mount namespace:
/// its own name when it has one, `NAME` for the reader to fill in otherwise.
pub fn nsenter_here() -> String {
    let file = this_namespace_file().map_or_else(
        || format!("{NAMED}/NAME"),
        |path| shell_word(&path.to_string_lossy()),
    );
    format!("nsenter --net={file}")
}
