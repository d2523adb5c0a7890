//! `net.ipv4.conf.{all,<if>}.route_localnet`: whether IPv4 packets to or from 127.0.0.0/8 arriving
//! on an interface are routed instead of dropped as martians. The interface's own value comes
//! with the interface list (rtnetlink carries every IPv4 devconf value); `all` and `default` are
//! read here. The kernel sends no netlink notification when route_localnet changes, so
//! [`Watch`] compares one reading with the next.

use std::{collections::BTreeMap, io, time::SystemTime};

use serde::Serialize;

use crate::net::sysctl;

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
            effective: effective(all, iface),
        }
    }

    /// An interface's, when both `all` and the interface's own are known (an interface without
    /// IPv4 configuration has none).
    pub fn of(all: Option<bool>, iface: Option<bool>) -> Option<Self> {
        all.zip(iface).map(|(all, iface)| Self::new(all, iface))
    }
}

/// Whether route_localnet is in effect on an interface: the kernel ORs `all` with its own.
pub const fn effective(all: bool, iface: bool) -> bool {
    all || iface
}

/// `net.ipv4.conf.all.route_localnet`.
pub fn read_all() -> io::Result<bool> {
    read("all")
}

/// `net.ipv4.conf.default.route_localnet`: what interfaces created from now on start with.
pub fn read_default() -> io::Result<bool> {
    read("default")
}

fn read(scope: &str) -> io::Result<bool> {
    match sysctl::ipv4_conf(scope, "route_localnet")? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/sys/net/ipv4/conf/{scope}/route_localnet: unexpected value {other}"),
        )),
    }
}

/// Which route_localnet setting changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `conf.all`, ORed into every interface's.
    All,
    /// `conf.default`, which only interfaces created later start with.
    Default,
    /// One interface's own, `conf.<if>`.
    Interface,
}

impl Scope {
    pub const fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Default => "default",
            Self::Interface => "interface",
        }
    }
}

/// One route_localnet setting that changed between two readings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub scope: Scope,
    /// The interface's name (as of the new reading) and ifindex, for [`Scope::Interface`].
    pub interface: Option<(String, u32)>,
    pub old: bool,
    pub new: bool,
    /// When the new reading was made.
    pub at: SystemTime,
}

impl Change {
    /// The sysctl as `sysctl` names it: `net.ipv4.conf.eth0.route_localnet`, with the dots of
    /// an interface's name written as slashes (`eth0/7` for `eth0.7`).
    pub fn sysctl(&self) -> String {
        let conf = match (&self.interface, self.scope) {
            (Some((name, _)), _) => name.replace('.', "/"),
            (None, scope) => scope.name().to_owned(),
        };
        format!("net.ipv4.conf.{conf}.route_localnet")
    }
}

/// The route_localnet settings read at one moment; `None` where one could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub all: Option<bool>,
    pub default: Option<bool>,
    /// The interfaces watched (those with IPv4 configuration), by ifindex: name and own value.
    pub interfaces: BTreeMap<u32, (String, bool)>,
}

/// The last reading, to compare the next with. A setting read for the first time (an interface
/// that appeared or started to be watched) is no change, nor is an interface that went away
/// or was renamed; a setting that could not be read keeps its last value.
#[derive(Debug, Default)]
pub struct Watch {
    last: Reading,
}

impl Watch {
    /// What changed since the last reading, in the order all, default, interfaces by ifindex.
    pub fn update(&mut self, reading: Reading, at: SystemTime) -> Vec<Change> {
        let mut changes = Vec::new();
        for (scope, last, new) in [
            (Scope::All, &mut self.last.all, reading.all),
            (Scope::Default, &mut self.last.default, reading.default),
        ] {
            if let (Some(old), Some(new)) = (*last, new)
                && old != new
            {
                changes.push(Change {
                    scope,
                    interface: None,
                    old,
                    new,
                    at,
                });
            }
            if new.is_some() {
                *last = new;
            }
        }
        for (ifindex, (name, new)) in &reading.interfaces {
            if let Some((_, old)) = self.last.interfaces.get(ifindex)
                && old != new
            {
                changes.push(Change {
                    scope: Scope::Interface,
                    interface: Some((name.clone(), *ifindex)),
                    old: *old,
                    new: *new,
                    at,
                });
            }
        }
        self.last.interfaces = reading.interfaces;
        changes
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn reading(
        all: Option<bool>,
        default: Option<bool>,
        interfaces: &[(u32, &str, bool)],
    ) -> Reading {
        Reading {
            all,
            default,
            interfaces: interfaces
                .iter()
                .map(|(ifindex, name, on)| (*ifindex, ((*name).to_owned(), *on)))
                .collect(),
        }
    }

    fn change(scope: Scope, interface: Option<(&str, u32)>, old: bool, new: bool) -> Change {
        Change {
            scope,
            interface: interface.map(|(name, ifindex)| (name.to_owned(), ifindex)),
            old,
            new,
            at: UNIX_EPOCH,
        }
    }

    #[test]
    fn the_watch_reports_changed_values_only() {
        let mut watch = Watch::default();
        // The first reading is no change.
        let first = reading(
            Some(false),
            Some(false),
            &[(2, "eth0", false), (3, "eth1", true)],
        );
        assert_eq!(watch.update(first.clone(), UNIX_EPOCH), []);
        assert_eq!(watch.update(first, UNIX_EPOCH), []);
        // all, default and one interface flip; eth1 keeps its value.
        assert_eq!(
            watch.update(
                reading(
                    Some(true),
                    Some(true),
                    &[(2, "eth0", true), (3, "eth1", true)]
                ),
                UNIX_EPOCH
            ),
            [
                change(Scope::All, None, false, true),
                change(Scope::Default, None, false, true),
                change(Scope::Interface, Some(("eth0", 2)), false, true),
            ]
        );
        // A setting that cannot be read keeps its value: reading it again is no change.
        assert_eq!(
            watch.update(reading(None, Some(true), &[(2, "eth0", true)]), UNIX_EPOCH),
            []
        );
        assert_eq!(
            watch.update(
                reading(Some(true), Some(true), &[(2, "eth0", true)]),
                UNIX_EPOCH
            ),
            []
        );
    }

    #[test]
    fn appearing_leaving_and_renames_are_no_changes() {
        let mut watch = Watch::default();
        watch.update(
            reading(Some(false), Some(false), &[(2, "eth0", false)]),
            UNIX_EPOCH,
        );
        // eth1 appears with route_localnet=1 (hot-plug): its first reading.
        let with_eth1 = reading(
            Some(false),
            Some(false),
            &[(2, "eth0", false), (3, "eth1", true)],
        );
        assert_eq!(watch.update(with_eth1, UNIX_EPOCH), []);
        // eth1 is removed; a device that later takes its ifindex is read for the first time.
        assert_eq!(
            watch.update(
                reading(Some(false), Some(false), &[(2, "eth0", false)]),
                UNIX_EPOCH
            ),
            []
        );
        assert_eq!(
            watch.update(
                reading(
                    Some(false),
                    Some(false),
                    &[(2, "eth0", false), (3, "new0", false)]
                ),
                UNIX_EPOCH
            ),
            []
        );
        // A rename keeps the ifindex: no change; a change after it names the new name.
        let renamed = reading(
            Some(false),
            Some(false),
            &[(2, "wan0", false), (3, "new0", false)],
        );
        assert_eq!(watch.update(renamed, UNIX_EPOCH), []);
        let changed = watch.update(
            reading(
                Some(false),
                Some(false),
                &[(2, "wan.7", true), (3, "new0", false)],
            ),
            UNIX_EPOCH,
        );
        assert_eq!(
            changed,
            [change(Scope::Interface, Some(("wan.7", 2)), false, true)]
        );
        assert_eq!(changed[0].sysctl(), "net.ipv4.conf.wan/7.route_localnet");
        assert_eq!(
            change(Scope::Default, None, true, false).sysctl(),
            "net.ipv4.conf.default.route_localnet"
        );
    }
}
