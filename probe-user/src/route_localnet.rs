//! `net.ipv4.conf.{all,<if>}.route_localnet`: whether IPv4 packets to or from 127.0.0.0/8 arriving
//! on an interface are routed instead of dropped as martians.

use std::{fs, io, path::PathBuf};

use serde::Serialize;

/// Both settings and what the kernel makes of them: it ORs `all` with the interface's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RouteLocalnet {
    pub all: bool,
    pub iface: bool,
    pub effective: bool,
}

impl RouteLocalnet {
    pub fn read(interface: &str) -> io::Result<Self> {
        let all = read_flag("all")?;
        let iface = read_flag(interface)?;
        Ok(Self {
            all,
            iface,
            effective: all || iface,
        })
    }
}

fn read_flag(conf: &str) -> io::Result<bool> {
    let path: PathBuf = ["/proc/sys/net/ipv4/conf", conf, "route_localnet"]
        .iter()
        .collect();
    let value = fs::read_to_string(&path)
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))?;
    match value.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: unexpected value {other:?}", path.display()),
        )),
    }
}
