//! Which interfaces a probe serves, and in which mode, from names given on the command line.

use probe_common::Mode;
use thiserror::Error;

use crate::{
    interfaces::{Framing, Interface},
    probe::Program,
};

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Interfaces to serve; empty means every eligible one.
    pub ifaces: Vec<String>,
    pub exclude: Vec<String>,
    /// Drop on every selected interface.
    pub drop_all: bool,
    /// Drop on these; monitor the rest.
    pub drop_on: Vec<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("unknown interface {name:?} given to {flag}; interfaces here: {known}")]
    Unknown {
        name: String,
        flag: &'static str,
        known: String,
    },
    #[error("{0} is the loopback interface, where loopback addresses belong; pick real interfaces")]
    Loopback(String),
    #[error(
        "{name}: its frames start with neither an Ethernet nor an IP header (link type \
         {link_type}), so localnet-probe cannot read them; leave it out"
    )]
    Unsupported { name: String, link_type: u16 },
    #[error("--drop-on {0}: {0} is not among the selected interfaces (see --iface, --exclude)")]
    DropOnUnselected(String),
    #[error(
        "--drop-on {name}: {name} is left out because {reason}; drop there instead, or name \
         {name} with --iface too"
    )]
    DropOnSkipped { name: String, reason: String },
    #[error(
        "no interface selected: none is up besides loopback, or --exclude left none; name one \
         with --iface"
    )]
    Empty,
    #[error("no interface selected: every one given to --iface is also given to --exclude")]
    AllExcluded,
    #[error(
        "{name} is not among the standing filter's interfaces ({served}); `localnet-probe \
         status` lists them"
    )]
    NotPinned { name: String, served: String },
    #[error("{flag} {pattern:?} is not a valid pattern: {reason}")]
    BadPattern {
        pattern: String,
        flag: &'static str,
        reason: String,
    },
}

/// An interface to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub ifindex: u32,
    pub name: String,
    pub mode: Mode,
    pub program: Program,
}

/// An interface the default selection leaves out, and why; said once at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selected {
    pub chosen: Vec<Chosen>,
    pub skipped: Vec<Skipped>,
}

const fn program_for(framing: Framing) -> Option<Program> {
    match framing {
        Framing::Ethernet => Some(Program::Ethernet),
        Framing::Ip => Some(Program::Ip),
        Framing::Unsupported(_) => None,
    }
}

/// Applies `selection` to the interfaces of this namespace.
///
/// By default every interface that is up is served except loopback, devices whose frames no
/// program can read, ifb devices (they carry copies of other interfaces' traffic) and devices
/// stacked on a served one (a macvlan or VLAN child, a bridge or bond master): their frames are
/// seen, counted and dropped on the device they arrive on, so serving both would count them
/// twice. Named interfaces are served whatever they are, except loopback and unreadable ones.
pub fn select(all: &[Interface], selection: &Selection) -> Result<Selected, SelectError> {
    let known = |name: &str| all.iter().find(|interface| interface.name == name);
    for (names, flag) in [
        (&selection.ifaces, "--iface"),
        (&selection.exclude, "--exclude"),
        (&selection.drop_on, "--drop-on"),
    ] {
        if let Some(name) = names.iter().find(|name| known(name).is_none()) {
            return Err(SelectError::Unknown {
                name: name.clone(),
                flag,
                known: all
                    .iter()
                    .map(|interface| interface.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }

    let mut skipped = Vec::new();
    let mut candidates: Vec<&Interface> = Vec::new();
    if selection.ifaces.is_empty() {
        for interface in all.iter().filter(|i| i.up && !i.loopback) {
            if let Framing::Unsupported(link_type) = interface.framing {
                skipped.push(Skipped {
                    name: interface.name.clone(),
                    reason: format!(
                        "link type {link_type} frames start with neither an Ethernet nor an IP \
                         header"
                    ),
                });
            } else if interface.kind.as_deref() == Some("ifb") {
                skipped.push(Skipped {
                    name: interface.name.clone(),
                    reason: "an ifb device carries copies of other interfaces' frames".to_owned(),
                });
            } else {
                candidates.push(interface);
            }
        }
    } else {
        for name in &selection.ifaces {
            let interface = known(name).expect("checked above");
            if interface.loopback {
                return Err(SelectError::Loopback(name.clone()));
            }
            if let Framing::Unsupported(link_type) = interface.framing {
                return Err(SelectError::Unsupported {
                    name: name.clone(),
                    link_type,
                });
            }
            if !candidates.contains(&interface) {
                candidates.push(interface);
            }
        }
    }
    candidates.retain(|interface| !selection.exclude.contains(&interface.name));
    if selection.ifaces.is_empty() {
        let stacked: Vec<(usize, &Interface)> = candidates
            .iter()
            .enumerate()
            .filter_map(|(index, interface)| {
                let lower = candidates
                    .iter()
                    .find(|lower| interface.is_stacked_on(lower))?;
                Some((index, *lower))
            })
            .collect();
        for (index, lower) in stacked.into_iter().rev() {
            let interface = candidates.remove(index);
            skipped.push(Skipped {
                name: interface.name.clone(),
                reason: format!(
                    "its frames arrive on {}, where they are counted (name both with --iface to \
                     count them twice)",
                    lower.name
                ),
            });
        }
    }

    let chosen: Vec<Chosen> = candidates
        .into_iter()
        .map(|interface| Chosen {
            ifindex: interface.ifindex,
            name: interface.name.clone(),
            mode: if selection.drop_all || selection.drop_on.contains(&interface.name) {
                Mode::Drop
            } else {
                Mode::Monitor
            },
            program: program_for(interface.framing).expect("unsupported ones are left out"),
        })
        .collect();
    if let Some(name) = selection
        .drop_on
        .iter()
        .find(|name| !chosen.iter().any(|chosen| &chosen.name == *name))
    {
        return Err(match skipped.iter().find(|skipped| &skipped.name == name) {
            Some(skipped) => SelectError::DropOnSkipped {
                name: name.clone(),
                reason: skipped.reason.clone(),
            },
            None => SelectError::DropOnUnselected(name.clone()),
        });
    }
    if chosen.is_empty() {
        return Err(if selection.ifaces.is_empty() {
            SelectError::Empty
        } else {
            SelectError::AllExcluded
        });
    }
    Ok(Selected { chosen, skipped })
}

/// Interface names given to a flag: literal names and shell-style patterns (`*`, `?`, `[…]`).
#[derive(Debug)]
pub struct NamePatterns {
    literals: Vec<String>,
    patterns: Vec<glob::Pattern>,
}

impl NamePatterns {
    pub fn new(values: &[String], flag: &'static str) -> Result<Self, SelectError> {
        let mut literals = Vec::new();
        let mut patterns = Vec::new();
        for value in values {
            if value.contains(['*', '?', '[']) {
                patterns.push(glob::Pattern::new(value).map_err(|error| {
                    SelectError::BadPattern {
                        pattern: value.clone(),
                        flag,
                        reason: error.msg.to_owned(),
                    }
                })?);
            } else {
                literals.push(value.clone());
            }
        }
        Ok(Self { literals, patterns })
    }

    /// The first literal name that is not among `names`.
    pub fn unknown_literal<'a>(
        &self,
        names: impl Iterator<Item = &'a str> + Clone,
    ) -> Option<&str> {
        self.literals
            .iter()
            .find(|literal| !names.clone().any(|name| name == literal.as_str()))
            .map(String::as_str)
    }

    pub fn matches(&self, name: &str) -> bool {
        self.literals.iter().any(|literal| literal == name)
            || self.patterns.iter().any(|pattern| pattern.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str, ifindex: u32, up: bool, loopback: bool) -> Interface {
        Interface {
            name: name.to_owned(),
            ifindex,
            up,
            loopback,
            framing: Framing::Ethernet,
            kind: None,
            lower: None,
            master: None,
            route_localnet: Some(false),
            xdp: None,
        }
    }

    fn host() -> Vec<Interface> {
        vec![
            interface("lo", 1, true, true),
            interface("eth0", 2, true, false),
            interface("eth1", 3, true, false),
            interface("eth2", 4, false, false),
        ]
    }

    fn selection(ifaces: &[&str], exclude: &[&str], drop_all: bool, drop_on: &[&str]) -> Selection {
        let owned = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect();
        Selection {
            ifaces: owned(ifaces),
            exclude: owned(exclude),
            drop_all,
            drop_on: owned(drop_on),
        }
    }

    fn names_and_modes(selected: &Selected) -> Vec<(&str, Mode)> {
        selected
            .chosen
            .iter()
            .map(|chosen| (chosen.name.as_str(), chosen.mode))
            .collect()
    }

    #[test]
    fn default_selection_is_every_up_non_loopback_interface() {
        let selected = select(&host(), &Selection::default()).unwrap();
        assert_eq!(
            names_and_modes(&selected),
            [("eth0", Mode::Monitor), ("eth1", Mode::Monitor)]
        );
        assert!(selected.skipped.is_empty());
    }

    #[test]
    fn drop_on_and_exclude_shape_the_selection() {
        let selected = select(&host(), &selection(&[], &["eth0"], false, &["eth1"])).unwrap();
        assert_eq!(names_and_modes(&selected), [("eth1", Mode::Drop)]);
        let selected = select(&host(), &selection(&["eth2"], &[], true, &[])).unwrap();
        assert_eq!(names_and_modes(&selected), [("eth2", Mode::Drop)]);
    }

    #[test]
    fn unknown_and_unfit_interfaces_are_errors() {
        for (selection, expected) in [
            (
                selection(&["nope0"], &[], false, &[]),
                "unknown interface \"nope0\" given to --iface",
            ),
            (
                selection(&[], &["nope0"], false, &[]),
                "unknown interface \"nope0\" given to --exclude",
            ),
            (
                selection(&["lo"], &[], false, &[]),
                "lo is the loopback interface",
            ),
            (
                selection(&["eth0"], &[], false, &["eth1"]),
                "--drop-on eth1",
            ),
            (
                selection(&[], &["eth0", "eth1"], false, &[]),
                "no interface selected: none is up",
            ),
            (
                selection(&["eth0"], &["eth0"], false, &[]),
                "every one given to --iface is also given to --exclude",
            ),
        ] {
            let error = select(&host(), &selection).unwrap_err().to_string();
            assert!(error.contains(expected), "{selection:?}: {error}");
        }
    }

    #[test]
    fn layer_3_devices_get_the_ip_program_and_unreadable_ones_are_left_out() {
        let mut all = host();
        all.push(Interface {
            framing: Framing::Ip,
            kind: Some("tun".to_owned()),
            ..interface("tun0", 5, true, false)
        });
        all.push(Interface {
            framing: Framing::Unsupported(778),
            kind: Some("gre".to_owned()),
            ..interface("gre1", 6, true, false)
        });
        let selected = select(&all, &Selection::default()).unwrap();
        let programs: Vec<(&str, Program)> = selected
            .chosen
            .iter()
            .map(|chosen| (chosen.name.as_str(), chosen.program))
            .collect();
        assert_eq!(
            programs,
            [
                ("eth0", Program::Ethernet),
                ("eth1", Program::Ethernet),
                ("tun0", Program::Ip)
            ]
        );
        assert_eq!(selected.skipped.len(), 1);
        assert_eq!(selected.skipped[0].name, "gre1");
        let error = select(&all, &selection(&["gre1"], &[], false, &[])).unwrap_err();
        assert_eq!(
            error,
            SelectError::Unsupported {
                name: "gre1".to_owned(),
                link_type: 778
            }
        );
    }

    #[test]
    fn stacked_devices_and_ifb_are_left_out_unless_named() {
        let mut all = host();
        all.push(Interface {
            kind: Some("macvlan".to_owned()),
            lower: Some(2),
            ..interface("mv0", 5, true, false)
        });
        all.push(Interface {
            kind: Some("bridge".to_owned()),
            ..interface("br0", 6, true, false)
        });
        all[2].master = Some(6);
        all.push(Interface {
            kind: Some("ifb".to_owned()),
            ..interface("ifb0", 7, true, false)
        });
        let selected = select(&all, &Selection::default()).unwrap();
        assert_eq!(
            names_and_modes(&selected),
            [("eth0", Mode::Monitor), ("eth1", Mode::Monitor)]
        );
        let mut skipped: Vec<&str> = selected.skipped.iter().map(|s| s.name.as_str()).collect();
        skipped.sort_unstable();
        assert_eq!(skipped, ["br0", "ifb0", "mv0"]);
        // A stacked device whose lower device is excluded is served.
        let selected = select(&all, &selection(&[], &["eth0"], false, &[])).unwrap();
        assert!(selected.chosen.iter().any(|chosen| chosen.name == "mv0"));
        let error = select(&all, &selection(&[], &[], false, &["mv0"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--drop-on mv0: mv0 is left out because its frames arrive on eth0, where they are \
             counted (name both with --iface to count them twice); drop there instead, or name \
             mv0 with --iface too"
        );
        // Named, both are served.
        let selected = select(&all, &selection(&["eth0", "mv0"], &[], false, &[])).unwrap();
        assert_eq!(selected.chosen.len(), 2);
    }
}
