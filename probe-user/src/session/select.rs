//! Which interfaces a probe serves, and in which mode, from the names and shell-style patterns
//! given on the command line: once at start ([`select`]), then again for the interfaces that
//! appear or change later ([`select_new`]).

use std::{collections::BTreeSet, fmt};

use probe_common::{Framing, Mode};
use thiserror::Error;

use crate::{
    kernel::features::Feature,
    net::{
        interfaces::Interface,
        names::{BadPattern, NamePattern},
    },
    probe::attachment::XdpPrograms,
};

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Interfaces to serve; empty means every eligible one that is up.
    pub ifaces: Vec<NamePattern>,
    pub exclude: Vec<NamePattern>,
    /// Drop on every selected interface.
    pub drop_all: bool,
    /// Drop on the selected interfaces these match; monitor the rest.
    pub drop_on: Vec<NamePattern>,
}

impl Selection {
    /// Whether `--iface` has a pattern, which may match interfaces that appear later.
    pub fn has_patterns(&self) -> bool {
        self.ifaces.iter().any(NamePattern::is_glob)
    }
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
    #[error("{name} cannot be served on this kernel: {reason}")]
    NeedsMultiBuffer { name: String, reason: LeftOut },
    #[error("--drop-on {0}: {0} is not among the selected interfaces (see --iface, --exclude)")]
    DropOnUnselected(String),
    #[error(
        "--drop-on {name}: {name} is left out because {reason}; drop there instead, or name \
         {name} with --iface too"
    )]
    DropOnSkipped { name: String, reason: String },
    #[error(
        "no interface selected: none is up besides loopback, or --exclude left none; name one \
         with --iface, or give a pattern such as --iface 'eth*' to wait for one"
    )]
    Empty,
    #[error("no interface selected: every one given to --iface is also given to --exclude")]
    AllExcluded,
    #[error(
        "no interface selected: another XDP program holds every one that is up, and \
         --on-conflict skip leaves them out; --on-conflict tc serves them at tcx ingress, beside \
         it"
    )]
    AllOccupied,
    #[error(
        "{name:?} is not among the standing filter's interfaces ({served}); `localnet-probe \
         status` lists them"
    )]
    NotPinned { name: String, served: String },
    #[error(transparent)]
    BadPattern(#[from] BadPattern),
}

/// An interface to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub ifindex: u32,
    pub name: String,
    pub mode: Mode,
    pub program: Framing,
}

/// An interface the selection leaves out, and why; said once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub ifindex: u32,
    pub name: String,
    pub reason: LeftOut,
}

/// Why an interface that the selection asks for is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeftOut {
    Loopback,
    Unsupported {
        link_type: u16,
    },
    Ifb,
    /// It is stacked on this served device, where its frames arrive first.
    StackedOn(String),
    /// This served device is stacked on it (a bridge or bond it became a port of), and its
    /// frames reach the stack through that device.
    Beneath(String),
    /// Another XDP program holds it (or another localnet-probe, at XDP or tcx ingress), and
    /// `--on-conflict skip` leaves such interfaces out.
    Occupied {
        program_id: u32,
        program_name: Option<String>,
        localnet_probe: bool,
    },
    /// Its MTU is above what the XDP programs without multi-buffer serve, on a kernel without
    /// multi-buffer.
    NeedsMultiBuffer {
        mtu: u32,
        largest: u32,
    },
}

impl fmt::Display for LeftOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Loopback => {
                f.write_str("it is the loopback interface, where loopback addresses belong")
            }
            Self::Unsupported { link_type } => write!(
                f,
                "link type {link_type} frames start with neither an Ethernet nor an IP header"
            ),
            Self::Ifb => f.write_str("an ifb device carries copies of other interfaces' frames"),
            Self::StackedOn(lower) => write!(
                f,
                "its frames arrive on {lower}, where they are counted (name both with --iface to \
                 count them twice)"
            ),
            Self::Beneath(upper) => write!(
                f,
                "its frames reach the stack through {upper}, where they are counted (name both \
                 with --iface to count them twice)"
            ),
            Self::Occupied {
                program_id,
                program_name,
                localnet_probe: true,
            } => {
                write!(
                    f,
                    "another localnet-probe serves it (program id {program_id}"
                )?;
                if let Some(name) = program_name {
                    write!(f, ", name {name:?}")?;
                }
                f.write_str(")")
            }
            Self::Occupied {
                program_id,
                program_name,
                localnet_probe: false,
            } => {
                write!(f, "another XDP program holds it (id {program_id}")?;
                if let Some(name) = program_name {
                    write!(f, ", name {name:?}")?;
                }
                f.write_str(
                    "), and --on-conflict skip leaves such interfaces out (--on-conflict tc \
                     serves them at tcx ingress, beside it)",
                )
            }
            Self::NeedsMultiBuffer { mtu, largest } => write!(
                f,
                "its MTU, {mtu}, needs {}, which this kernel lacks: without it the XDP \
                 programs serve an MTU of at most {largest}; lower its MTU to {largest} or less, \
                 or leave it out with --exclude",
                Feature::XDP_FRAGS
            ),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selected {
    pub chosen: Vec<Chosen>,
    pub skipped: Vec<Skipped>,
}

/// Applies `selection` to the interfaces of this namespace at start.
///
/// Without `--iface`, every interface that is up is served except loopback, devices whose
/// frames no program can read, ifb devices (they carry copies of other interfaces' traffic) and
/// devices stacked on a served one (a macvlan or VLAN child, a bridge or bond master): their
/// frames are seen, counted and dropped on the device they arrive on, so serving both would
/// count them twice. A pattern given to `--iface` applies the same rules to the interfaces it
/// matches, up or not. Interfaces named literally are served whatever they are, except loopback
/// and unreadable ones, which are errors, as are literal names that do not exist. An empty
/// selection is an error unless `--iface` has a pattern, which may match interfaces later.
/// Without multi-buffer (`xdp`), interfaces whose MTU needs it are left out (an error when named
/// literally).
pub fn select(
    all: &[Interface],
    selection: &Selection,
    xdp: XdpPrograms,
) -> Result<Selected, SelectError> {
    let known = |name: &str| all.iter().any(|interface| interface.name == name);
    for (patterns, flag) in [
        (&selection.ifaces, "--iface"),
        (&selection.exclude, "--exclude"),
        (&selection.drop_on, "--drop-on"),
    ] {
        if let Some(name) = patterns
            .iter()
            .filter_map(NamePattern::name)
            .find(|name| !known(name))
        {
            return Err(SelectError::Unknown {
                name: name.to_owned(),
                flag,
                known: all
                    .iter()
                    .map(|interface| interface.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }

    let choice = choose(all, selection, &BTreeSet::new(), xdp);
    if let Some(unfit) = choice.unfit.into_iter().next() {
        return Err(match unfit.reason {
            LeftOut::Unsupported { link_type } => SelectError::Unsupported {
                name: unfit.name,
                link_type,
            },
            reason @ LeftOut::NeedsMultiBuffer { .. } => SelectError::NeedsMultiBuffer {
                name: unfit.name,
                reason,
            },
            // Otherwise a named interface is only unfit for being loopback.
            _ => SelectError::Loopback(unfit.name),
        });
    }
    let Selected { chosen, skipped } = choice.selected;
    if let Some(name) = selection
        .drop_on
        .iter()
        .filter_map(NamePattern::name)
        .find(|name| !chosen.iter().any(|chosen| chosen.name == *name))
    {
        return Err(match skipped.iter().find(|skipped| skipped.name == name) {
            Some(skipped) => SelectError::DropOnSkipped {
                name: name.to_owned(),
                reason: skipped.reason.to_string(),
            },
            None => SelectError::DropOnUnselected(name.to_owned()),
        });
    }
    if chosen.is_empty() && !selection.has_patterns() {
        return Err(if selection.ifaces.is_empty() {
            SelectError::Empty
        } else {
            SelectError::AllExcluded
        });
    }
    Ok(Selected { chosen, skipped })
}

/// Applies `selection` to the interfaces not served yet, for interfaces that appeared, came up or
/// were renamed since start; `served` are the ones served now. Nothing here is an error: an
/// interface that cannot be served is left out, with the reason. One stacked on a served
/// device, or beneath one (a new port of a served bridge), is left out unless named literally.
pub fn select_new(
    all: &[Interface],
    selection: &Selection,
    served: &BTreeSet<u32>,
    xdp: XdpPrograms,
) -> Selected {
    let mut choice = choose(all, selection, served, xdp);
    choice.selected.skipped.append(&mut choice.unfit);
    choice.selected
}

struct Choice {
    selected: Selected,
    /// Interfaces named literally that cannot be served.
    unfit: Vec<Skipped>,
}

fn choose(
    all: &[Interface],
    selection: &Selection,
    served: &BTreeSet<u32>,
    xdp: XdpPrograms,
) -> Choice {
    let skip = |interface: &Interface, reason| Skipped {
        ifindex: interface.ifindex,
        name: interface.name.clone(),
        reason,
    };
    let mut skipped = Vec::new();
    let mut unfit = Vec::new();
    // With whether each was named literally.
    let mut candidates: Vec<(&Interface, bool)> = Vec::new();
    for interface in all.iter().filter(|i| !served.contains(&i.ifindex)) {
        let name = interface.name.as_str();
        let asked = if selection.ifaces.is_empty() {
            interface.up && !interface.loopback
        } else {
            selection.ifaces.iter().any(|pattern| pattern.matches(name))
        };
        if !asked
            || selection
                .exclude
                .iter()
                .any(|pattern| pattern.matches(name))
        {
            continue;
        }
        let named = selection
            .ifaces
            .iter()
            .any(|pattern| pattern.name() == Some(name));
        let reason = match interface.framing {
            _ if interface.loopback => Some(LeftOut::Loopback),
            Err(link_type) => Some(LeftOut::Unsupported { link_type }),
            _ if !named && interface.kind.as_deref() == Some("ifb") => Some(LeftOut::Ifb),
            Ok(framing) => xdp
                .largest_mtu(framing)
                .zip(interface.mtu)
                .filter(|(largest, mtu)| mtu > largest)
                .map(|(largest, mtu)| LeftOut::NeedsMultiBuffer { mtu, largest }),
        };
        match reason {
            Some(reason) if named => unfit.push(skip(interface, reason)),
            Some(reason) => skipped.push(skip(interface, reason)),
            None => candidates.push((interface, named)),
        }
    }

    let served: Vec<&Interface> = all
        .iter()
        .filter(|interface| served.contains(&interface.ifindex))
        .collect();
    let sharing: Vec<Option<LeftOut>> = candidates
        .iter()
        .map(|(interface, named)| {
            if *named {
                return None;
            }
            let mut lowers = candidates.iter().map(|(lower, _)| lower).chain(&served);
            if let Some(lower) = lowers.find(|lower| interface.is_stacked_on(lower)) {
                return Some(LeftOut::StackedOn(lower.name.clone()));
            }
            served
                .iter()
                .find(|upper| upper.is_stacked_on(interface))
                .map(|upper| LeftOut::Beneath(upper.name.clone()))
        })
        .collect();
    let mut chosen = Vec::new();
    for ((interface, _), sharing) in candidates.into_iter().zip(sharing) {
        if let Some(reason) = sharing {
            skipped.push(skip(interface, reason));
            continue;
        }
        let drop = selection.drop_all
            || selection
                .drop_on
                .iter()
                .any(|pattern| pattern.matches(&interface.name));
        chosen.push(Chosen {
            ifindex: interface.ifindex,
            name: interface.name.clone(),
            mode: if drop { Mode::Drop } else { Mode::Monitor },
            program: interface.framing.expect("unsupported ones are left out"),
        });
    }
    Choice {
        selected: Selected { chosen, skipped },
        unfit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::select`] with the multi-buffer programs, which serve any MTU.
    fn select(all: &[Interface], selection: &Selection) -> Result<Selected, SelectError> {
        super::select(all, selection, XdpPrograms::MultiBuffer)
    }

    /// [`super::select_new`] with the multi-buffer programs.
    fn select_new(all: &[Interface], selection: &Selection, served: &BTreeSet<u32>) -> Selected {
        super::select_new(all, selection, served, XdpPrograms::MultiBuffer)
    }

    #[test]
    fn without_multi_buffer_interfaces_whose_mtu_needs_it_are_left_out() {
        let mut all = host();
        all[2].mtu = Some(9000);
        all.push(Interface {
            framing: Ok(Framing::Ip),
            mtu: Some(4095),
            ..interface("tun0", 5, true, false)
        });
        all.push(interface("eth4", 6, true, false));
        all[5].mtu = Some(4073);
        let linear = XdpPrograms::Linear;
        let selected = super::select(&all, &Selection::default(), linear).unwrap();
        assert_eq!(
            names_and_modes(&selected),
            [
                ("eth0", Mode::Monitor),
                ("tun0", Mode::Monitor),
                ("eth4", Mode::Monitor)
            ]
        );
        assert_eq!(
            selected.skipped,
            [Skipped {
                ifindex: 3,
                name: "eth1".to_owned(),
                reason: LeftOut::NeedsMultiBuffer {
                    mtu: 9000,
                    largest: 4073
                },
            }]
        );
        assert_eq!(
            selected.skipped[0].reason.to_string(),
            "its MTU, 9000, needs XDP multi-buffer (Linux 5.18 and later have it), which this \
             kernel lacks: without it the XDP programs serve an MTU of at most 4073; lower its \
             MTU to 4073 or less, or leave it out with --exclude"
        );
        // Named, it is an error; after a link event, left out again, not an error.
        let named = selection(&["eth0", "eth1"], &[], false, &[]);
        let error = super::select(&all, &named, linear).unwrap_err().to_string();
        assert!(
            error.starts_with("eth1 cannot be served on this kernel: its MTU, 9000, needs XDP"),
            "{error}"
        );
        let later = super::select_new(&all, &named, &BTreeSet::from([2]), linear);
        assert_eq!(later.chosen, []);
        assert_eq!(skipped_names(&later), ["eth1"]);
        // With multi-buffer every MTU is served.
        assert_eq!(select(&all, &Selection::default()).unwrap().chosen.len(), 4);
    }

    fn interface(name: &str, ifindex: u32, up: bool, loopback: bool) -> Interface {
        Interface {
            up,
            loopback,
            ..Interface::for_tests(name, ifindex)
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
        let owned = |names: &[&str]| {
            names
                .iter()
                .map(|name| name.parse().expect("a valid pattern"))
                .collect()
        };
        Selection {
            ifaces: owned(ifaces),
            exclude: owned(exclude),
            drop_all,
            drop_on: owned(drop_on),
        }
    }

    fn skipped_names(selected: &Selected) -> Vec<&str> {
        let mut names: Vec<&str> = selected.skipped.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names
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
            framing: Ok(Framing::Ip),
            kind: Some("tun".to_owned()),
            ..interface("tun0", 5, true, false)
        });
        all.push(Interface {
            framing: Err(778),
            kind: Some("gre".to_owned()),
            ..interface("gre1", 6, true, false)
        });
        let selected = select(&all, &Selection::default()).unwrap();
        let programs: Vec<(&str, Framing)> = selected
            .chosen
            .iter()
            .map(|chosen| (chosen.name.as_str(), chosen.program))
            .collect();
        assert_eq!(
            programs,
            [
                ("eth0", Framing::Ethernet),
                ("eth1", Framing::Ethernet),
                ("tun0", Framing::Ip)
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
        let all = stacked_host();
        let selected = select(&all, &Selection::default()).unwrap();
        assert_eq!(
            names_and_modes(&selected),
            [("eth0", Mode::Monitor), ("eth1", Mode::Monitor)]
        );
        assert_eq!(skipped_names(&selected), ["br0", "ifb0", "mv0"]);
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

    /// `host()` with a macvlan child mv0 on eth0, a bridge br0 with eth1 as its port, an ifb
    /// device and the loopback interface.
    fn stacked_host() -> Vec<Interface> {
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
        all
    }

    #[test]
    fn values_with_glob_characters_are_patterns_and_others_literal_names() {
        assert_eq!(
            "eth0".parse::<NamePattern>().unwrap(),
            NamePattern::Name("eth0".to_owned())
        );
        for (pattern, matching, other) in [
            ("eth*", "eth10", "veth0"),
            ("eth?", "eth1", "eth10"),
            ("eth[02]", "eth2", "eth1"),
            ("eth[!0]", "eth1", "eth0"),
            // A name with a glob character in it, escaped.
            ("a[*]", "a*", "ab"),
        ] {
            let parsed: NamePattern = pattern.parse().unwrap();
            assert!(matches!(parsed, NamePattern::Glob(_)), "{pattern}");
            assert_eq!(parsed.to_string(), pattern);
            assert!(parsed.matches(matching), "{pattern} ~ {matching}");
            assert!(!parsed.matches(other), "{pattern} !~ {other}");
        }
        assert!("eth[".parse::<NamePattern>().is_err());
    }

    #[test]
    fn a_pattern_applies_the_default_rules_to_its_matches_up_or_not() {
        let selected = select(&stacked_host(), &selection(&["*"], &[], false, &[])).unwrap();
        // eth2 is down; mv0 arrives on eth0 and br0 on eth1.
        assert_eq!(
            names_and_modes(&selected),
            [
                ("eth0", Mode::Monitor),
                ("eth1", Mode::Monitor),
                ("eth2", Mode::Monitor)
            ]
        );
        assert_eq!(skipped_names(&selected), ["br0", "ifb0", "lo", "mv0"]);
        let reasons: Vec<String> = selected
            .skipped
            .iter()
            .map(|skipped| format!("{}: {}", skipped.name, skipped.reason))
            .collect();
        assert!(
            reasons.contains(
                &"lo: it is the loopback interface, where loopback addresses belong".to_owned()
            ),
            "{reasons:?}"
        );
        let selected = select(&stacked_host(), &selection(&["eth?"], &[], false, &[])).unwrap();
        assert_eq!(selected.chosen.len(), 3);
        assert!(selected.skipped.is_empty(), "only what the pattern matches");
    }

    #[test]
    fn a_literal_name_beside_a_pattern_is_served_whatever_it_is() {
        let all = stacked_host();
        let selected = select(&all, &selection(&["eth*", "mv0", "ifb0"], &[], false, &[])).unwrap();
        let names: Vec<&str> = selected.chosen.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1", "eth2", "mv0", "ifb0"]);
        // A pattern-matched child of a literally named device is left out.
        let selected = select(&all, &selection(&["eth0", "mv*"], &[], false, &[])).unwrap();
        assert_eq!(names_and_modes(&selected), [("eth0", Mode::Monitor)]);
        assert_eq!(
            selected.skipped[0].reason,
            LeftOut::StackedOn("eth0".to_owned())
        );
        assert_eq!(
            select(&all, &selection(&["eth*", "lo"], &[], false, &[])).unwrap_err(),
            SelectError::Loopback("lo".to_owned())
        );
    }

    #[test]
    fn patterns_that_match_nothing_are_no_error_and_an_empty_selection_waits() {
        let selected = select(&host(), &selection(&["hp*"], &["x*"], false, &["y*"])).unwrap();
        assert_eq!(selected, Selected::default());
        // The literal is excluded, the pattern matches nothing yet: waits too.
        let selected = select(&host(), &selection(&["eth0", "hp*"], &["eth0"], false, &[]));
        assert_eq!(selected.unwrap(), Selected::default());
        // Without a pattern it is an error, as before.
        let error = select(&host(), &selection(&["eth0"], &["eth0"], false, &[])).unwrap_err();
        assert_eq!(error, SelectError::AllExcluded);
        let down = vec![
            interface("lo", 1, true, true),
            interface("eth0", 2, false, false),
        ];
        assert_eq!(
            select(&down, &Selection::default()).unwrap_err(),
            SelectError::Empty
        );
    }

    #[test]
    fn exclude_and_drop_on_patterns_shape_the_selection() {
        let selected =
            select(&host(), &selection(&["eth*"], &["*2"], false, &["eth[01]"])).unwrap();
        assert_eq!(
            names_and_modes(&selected),
            [("eth0", Mode::Drop), ("eth1", Mode::Drop)]
        );
        let selected = select(&host(), &selection(&[], &[], false, &["*1"])).unwrap();
        assert_eq!(
            names_and_modes(&selected),
            [("eth0", Mode::Monitor), ("eth1", Mode::Drop)]
        );
        // A --drop-on pattern may match an interface that is not selected.
        let selected = select(&host(), &selection(&["eth0"], &[], false, &["eth*"])).unwrap();
        assert_eq!(names_and_modes(&selected), [("eth0", Mode::Drop)]);
        // Literal names must still exist and be selected.
        let error = select(&host(), &selection(&["eth*"], &["eth9"], false, &[])).unwrap_err();
        assert!(matches!(
            error,
            SelectError::Unknown {
                flag: "--exclude",
                ..
            }
        ));
        let error = select(&host(), &selection(&["eth0"], &[], false, &["eth1"])).unwrap_err();
        assert_eq!(error, SelectError::DropOnUnselected("eth1".to_owned()));
    }

    #[test]
    fn new_interfaces_are_chosen_by_the_same_rules_beside_the_served_ones() {
        let mut all = stacked_host();
        all.push(interface("hp0", 8, false, false));
        all.push(interface("eth3", 9, false, false));
        let served = BTreeSet::from([2, 3]);
        let chosen = |selection: &Selection, all: &[Interface]| -> Vec<String> {
            select_new(all, selection, &served)
                .chosen
                .into_iter()
                .map(|chosen| chosen.name)
                .collect()
        };
        // By default only the ones that are up, and never the served ones again; mv0 (on eth0)
        // and br0 (eth1's bridge) share their frames with served devices.
        let selected = select_new(&all, &Selection::default(), &served);
        assert!(selected.chosen.is_empty(), "{selected:?}");
        assert_eq!(skipped_names(&selected), ["br0", "ifb0", "mv0"]);
        all[7].up = true;
        assert_eq!(chosen(&Selection::default(), &all), ["hp0"]);
        all[7].up = false;
        // A pattern serves its matches down too.
        assert_eq!(chosen(&selection(&["hp*"], &[], false, &[]), &all), ["hp0"]);
        assert_eq!(
            chosen(&selection(&["eth*"], &[], false, &[]), &all),
            ["eth2", "eth3"]
        );
        // A new port of a served bridge reaches the stack through it.
        all[7].master = Some(6);
        let served_bridge = BTreeSet::from([6]);
        let selected = select_new(&all, &selection(&["hp*"], &[], false, &[]), &served_bridge);
        assert_eq!(selected.chosen, []);
        assert_eq!(
            selected.skipped[0].reason,
            LeftOut::Beneath("br0".to_owned())
        );
        // A literal name may come back as another device, and is served; one that cannot be
        // served is left out, not an error.
        let selected = select_new(
            &all,
            &selection(&["ifb0", "lo"], &[], false, &["ifb0"]),
            &served,
        );
        assert_eq!(names_and_modes(&selected), [("ifb0", Mode::Drop)]);
        assert_eq!(selected.skipped[0].reason, LeftOut::Loopback);
    }
}
