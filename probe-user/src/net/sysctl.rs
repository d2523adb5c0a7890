//! `net.ipv4.conf.<scope>.<name>` read from `/proc/sys`, for `all`, `default` or an interface.
//! (Interfaces' own values come with the interface list: rtnetlink carries every IPv4 devconf.)

use std::{fs, io};

/// The value of `net.ipv4.conf.<scope>.<name>`; errors name the file.
pub fn ipv4_conf(scope: &str, name: &str) -> io::Result<u32> {
    let path = format!("/proc/sys/net/ipv4/conf/{scope}/{name}");
    let text = fs::read_to_string(&path)
        .map_err(|error| io::Error::new(error.kind(), format!("{path}: {error}")))?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected value {text:?}"),
        )
    })
}
