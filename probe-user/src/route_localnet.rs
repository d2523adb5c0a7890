//! `net.ipv4.conf.{all,<if>}.route_localnet`: whether IPv4 packets to or from 127.0.0.0/8 arriving
//! on an interface are routed instead of dropped as martians. The interface's own value comes
//! with the interface list (rtnetlink carries every IPv4 devconf value); `all` is read here.

use std::{fs, io};

use serde::Serialize;

const ALL: &str = "/proc/sys/net/ipv4/conf/all/route_localnet";

/// Both settings and what the kernel makes of them: it ORs `all` with the interface's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RouteLocalnet {
    pub all: bool,
    pub iface: bool,
    pub effective: bool,
}

impl RouteLocalnet {
    pub const fn new(all: bool, iface: bool) -> Self {
        Self {
            all,
            iface,
            effective: all || iface,
        }
    }
}

/// `net.ipv4.conf.all.route_localnet`.
pub fn read_all() -> io::Result<bool> {
    let value = fs::read_to_string(ALL)
        .map_err(|error| io::Error::new(error.kind(), format!("{ALL}: {error}")))?;
    match value.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{ALL}: unexpected value {other:?}"),
        )),
    }
}
