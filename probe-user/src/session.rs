//! A probe serving a selection of interfaces for as long as the session lives: start (select,
//! refuse occupied interfaces, load, attach all or nothing), then one [`Snapshot`] per tick that
//! follows each interface by ifindex through renames and removals, and, after each link event,
//! [`Session::follow_links`] that serves the interfaces the selection asks for since. Dropping
//! the session detaches everything.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use probe_common::{MAX_SLOTS, Mode, SlotCounters};
use thiserror::Error;

use crate::{
    interfaces::{Interface, InterfaceError, Interfaces},
    occupant::Occupant,
    privileges,
    probe::{AttachedMode, LoadOptions, Probe, ProbeError, Program, XdpModeChoice},
    route_localnet::{self, RouteLocalnet},
    select::{Chosen, SelectError, Selection, Skipped, select, select_new},
};

/// Spare slots the counter map has at least, so interfaces that appear later find one.
const MIN_CAPACITY: u32 = 64;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("{0}")]
    Privileges(String),
    #[error(transparent)]
    Interfaces(#[from] InterfaceError),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error("{0}")]
    Occupied(Box<Occupant>),
    #[error(
        "{selected} interfaces selected, but one probe serves at most {MAX_SLOTS}; narrow the \
         selection with --iface or --exclude"
    )]
    TooMany { selected: usize },
    #[error(transparent)]
    Load(Box<ProbeError>),
    #[error("cannot attach to {name}; nothing stays attached")]
    Attach {
        name: String,
        #[source]
        source: Box<ProbeError>,
    },
    #[error("cannot read the counters")]
    Counters(#[source] Box<ProbeError>),
    #[error("cannot refill the interfaces' sample budgets")]
    Refill(#[source] Box<ProbeError>),
    #[error("cannot release the counter slot of {name}")]
    Release {
        name: String,
        #[source]
        source: Box<ProbeError>,
    },
}

/// How to start.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub selection: Selection,
    pub xdp_mode: XdpModeChoice,
    pub verifier_log: bool,
    /// Samples of matched frames per second and interface; 0 turns sampling off.
    pub sample_rate: u32,
}

/// What starting did, to tell the user.
#[derive(Debug)]
pub struct Started {
    pub attached: Vec<AttachedInterface>,
    pub skipped: Vec<Skipped>,
    /// Interfaces the counter map has room for.
    pub capacity: u32,
}

#[derive(Debug)]
pub struct AttachedInterface {
    pub ifindex: u32,
    pub name: String,
    pub program: Program,
    pub mode: Mode,
    pub xdp_mode: AttachedMode,
    /// Why native XDP was refused, when auto mode fell back to generic.
    pub native_refused: Option<std::io::Error>,
}

/// What [`Session::follow_links`] did that is news, to tell the user.
#[derive(Debug, Default)]
pub struct Followed {
    pub attached: Vec<AttachedInterface>,
    /// Interfaces the selection leaves out, each said once (and again if the reason changes).
    pub skipped: Vec<Skipped>,
    /// Why an interface the selection asks for could not be attached, one sentence each, said
    /// once per reason; it is tried again at each call.
    pub refused: Vec<String>,
}

/// What was last said about an interface that is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Unserved {
    Skipped(Skipped),
    Refused(String),
}

/// An interface the session serves, as last seen.
#[derive(Clone, Debug)]
struct Served {
    name: String,
    program: Program,
}

/// One reading of every served interface.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub interfaces: Vec<InterfaceSnapshot>,
    /// Interfaces that disappeared since the previous snapshot, with their final counts.
    pub removed: Vec<InterfaceSnapshot>,
    /// Final counts of every interface removed since the session started.
    pub removed_totals: SlotCounters,
    /// Samples per second and interface; 0 when sampling is off.
    pub sample_rate: u32,
}

#[derive(Clone, Debug)]
pub struct InterfaceSnapshot {
    pub ifindex: u32,
    pub name: String,
    pub mode: Mode,
    pub program: Program,
    pub xdp_mode: Option<AttachedMode>,
    /// `None` when the interface has no IPv4 configuration.
    pub route_localnet: Option<RouteLocalnet>,
    /// This interface and the devices stacked on it (macvlan, VLAN children, a bridge or bond
    /// master) whose effective route_localnet is 1: frames arriving here reach the stack
    /// through them, so 127.0.0.0/8 destinations are routed.
    pub route_localnet_via: Vec<String>,
    /// Services bound to 127.0.0.1 are reachable from this link: route_localnet is in effect on
    /// a device its frames reach, and matched frames pass both here and there.
    pub exposed: bool,
    pub counters: SlotCounters,
}

pub struct Session {
    probe: Probe,
    interfaces: Interfaces,
    selection: Selection,
    xdp_mode: XdpModeChoice,
    served: BTreeMap<u32, Served>,
    /// Released since the last snapshot, for it to report.
    removed: Vec<InterfaceSnapshot>,
    removed_totals: SlotCounters,
    /// What was last said about each interface here that is not served.
    told: BTreeMap<u32, Unserved>,
}

impl Session {
    /// Selects the interfaces, refuses occupied ones, loads the programs and attaches to every
    /// selected interface, or to none: on any error what was attached is detached.
    pub fn start(options: SessionOptions) -> Result<(Self, Started), SessionError> {
        if let Some(missing) = privileges::missing() {
            return Err(SessionError::Privileges(missing));
        }
        let mut interfaces = Interfaces::connect()?;
        let all = interfaces.list()?;
        let selected = select(&all, &options.selection)?;
        for chosen in &selected.chosen {
            let interface = all.iter().find(|i| i.ifindex == chosen.ifindex);
            if let Some(occupant) = interface.and_then(Occupant::of) {
                return Err(SessionError::Occupied(Box::new(occupant)));
            }
        }
        if selected.chosen.len() > MAX_SLOTS as usize {
            return Err(SessionError::TooMany {
                selected: selected.chosen.len(),
            });
        }
        // Room for every interface here and a quarter more (at least MIN_CAPACITY) for ones
        // that appear later: the map costs 288 bytes per slot on every CPU.
        let capacity = u32::try_from(all.len() + (all.len() / 4).max(MIN_CAPACITY as usize))
            .unwrap_or(MAX_SLOTS)
            .min(MAX_SLOTS);
        let probe = Probe::load(LoadOptions {
            capacity,
            verifier_log: options.verifier_log,
            sample_rate: options.sample_rate,
        })
        .map_err(|error| SessionError::Load(Box::new(error)))?;

        let mut session = Self {
            probe,
            interfaces,
            selection: options.selection,
            xdp_mode: options.xdp_mode,
            served: BTreeMap::new(),
            removed: Vec::new(),
            removed_totals: SlotCounters::default(),
            told: selected
                .skipped
                .iter()
                .map(|skipped| (skipped.ifindex, Unserved::Skipped(skipped.clone())))
                .collect(),
        };
        let mut attached = Vec::with_capacity(selected.chosen.len());
        for chosen in &selected.chosen {
            let interface = all.iter().find(|i| i.ifindex == chosen.ifindex);
            attached.push(session.serve(chosen, interface)?);
        }
        let started = Started {
            attached,
            skipped: selected.skipped,
            capacity,
        };
        Ok((session, started))
    }

    /// Configures and attaches one chosen interface; `interface` is its entry in a listing made
    /// just before. On an error nothing of it stays: no attachment, no counter slot.
    fn serve(
        &mut self,
        chosen: &Chosen,
        interface: Option<&Interface>,
    ) -> Result<AttachedInterface, SessionError> {
        if let Some(occupant) = interface.and_then(Occupant::of) {
            return Err(SessionError::Occupied(Box::new(occupant)));
        }
        let attach_error = |source| SessionError::Attach {
            name: chosen.name.clone(),
            source: Box::new(source),
        };
        self.probe
            .configure(chosen.ifindex, chosen.mode)
            .map_err(attach_error)?;
        let result = match self
            .probe
            .attach(chosen.ifindex, chosen.program, self.xdp_mode)
        {
            Ok(result) => result,
            Err(error) => {
                self.probe
                    .release(chosen.ifindex)
                    .map_err(|source| SessionError::Release {
                        name: chosen.name.clone(),
                        source: Box::new(source),
                    })?;
                // Another program arrived since the listing (another probe starting at the
                // same time): say whose, as the check above would have.
                if matches!(error, ProbeError::Occupied(_)) {
                    let now = self.interfaces.list()?;
                    let interface = now.iter().find(|i| i.ifindex == chosen.ifindex);
                    if let Some(occupant) = interface.and_then(Occupant::of) {
                        return Err(SessionError::Occupied(Box::new(occupant)));
                    }
                }
                return Err(attach_error(error));
            }
        };
        self.served.insert(
            chosen.ifindex,
            Served {
                name: chosen.name.clone(),
                program: chosen.program,
            },
        );
        Ok(AttachedInterface {
            ifindex: chosen.ifindex,
            name: chosen.name.clone(),
            program: chosen.program,
            mode: chosen.mode,
            xdp_mode: result.mode,
            native_refused: result.native_refused,
        })
    }

    /// Follows the interfaces after a link event: releases the served ones that are gone (the
    /// next snapshot reports them) and attaches to every interface the selection asks for now
    /// that is not served yet, by the rules of the start. One that cannot be attached is not an
    /// error: it is refused, and tried again at the next call.
    pub fn follow_links(&mut self) -> Result<Followed, SessionError> {
        let all = self.interfaces.list()?;
        self.follow_served(&all)?;
        let present: BTreeSet<u32> = all.iter().map(|interface| interface.ifindex).collect();
        self.told.retain(|ifindex, _| present.contains(ifindex));
        let served: BTreeSet<u32> = self.served.keys().copied().collect();
        let selected = select_new(&all, &self.selection, &served);
        let mut followed = Followed::default();
        for skipped in selected.skipped {
            if self.tell(skipped.ifindex, Unserved::Skipped(skipped.clone())) {
                followed.skipped.push(skipped);
            }
        }
        for chosen in &selected.chosen {
            let interface = all.iter().find(|i| i.ifindex == chosen.ifindex);
            let refusal = match self.serve(chosen, interface) {
                Ok(attached) => {
                    self.told.remove(&chosen.ifindex);
                    followed.attached.push(attached);
                    continue;
                }
                Err(SessionError::Occupied(occupant)) => format!(
                    "{occupant}; serving the others, and trying {} again when interfaces change",
                    chosen.name
                ),
                Err(SessionError::Attach { name, source }) => match *source {
                    ProbeError::Full { capacity } => format!(
                        "cannot attach to {name}: the counters have room for {capacity} \
                         interfaces, all in use (the room is set at start: restart \
                         localnet-probe to serve more); serving the others"
                    ),
                    other => format!(
                        "cannot attach to {name}: {other}; serving the others, and trying {name} \
                         again when interfaces change"
                    ),
                },
                Err(other) => return Err(other),
            };
            if self.tell(chosen.ifindex, Unserved::Refused(refusal.clone())) {
                followed.refused.push(refusal);
            }
        }
        Ok(followed)
    }

    /// Records what is said about an unserved interface; false when it was said last already.
    fn tell(&mut self, ifindex: u32, unserved: Unserved) -> bool {
        if self.told.get(&ifindex) == Some(&unserved) {
            return false;
        }
        self.told.insert(ifindex, unserved);
        true
    }

    /// Releases the served interfaces that are gone, keeping them for the next snapshot, and
    /// takes the new names of the renamed ones.
    fn follow_served(&mut self, all: &[Interface]) -> Result<(), SessionError> {
        let by_index: BTreeMap<u32, &Interface> = all.iter().map(|i| (i.ifindex, i)).collect();
        // Gone, or replaced by a device that took its ifindex (then without our program).
        let gone: Vec<u32> = self
            .served
            .iter()
            .filter(|(ifindex, served)| {
                by_index
                    .get(ifindex)
                    .and_then(|interface| interface.xdp)
                    .map(|xdp| xdp.id)
                    != Some(self.probe.program_id(served.program))
            })
            .map(|(ifindex, _)| *ifindex)
            .collect();
        for ifindex in gone {
            let served = self.served.remove(&ifindex).expect("listed above");
            let mode = self
                .probe
                .mode(ifindex)
                .expect("served interfaces are configured");
            let counters = self
                .probe
                .release(ifindex)
                .map_err(|source| SessionError::Release {
                    name: served.name.clone(),
                    source: Box::new(source),
                })?;
            self.removed_totals.add(&counters);
            self.removed.push(InterfaceSnapshot {
                ifindex,
                name: served.name,
                mode,
                program: served.program,
                xdp_mode: None,
                route_localnet: None,
                route_localnet_via: Vec::new(),
                exposed: false,
                counters,
            });
        }
        for (ifindex, served) in &mut self.served {
            served.name.clone_from(&by_index[ifindex].name);
        }
        Ok(())
    }

    /// Reads every served interface once: names, route_localnet and counters. An interface
    /// renamed since is reported under its new name; one that is gone is released (if
    /// [`Session::follow_links`] has not already) and reported once in [`Snapshot::removed`].
    pub fn snapshot(&mut self) -> Result<Snapshot, SessionError> {
        let all = self.interfaces.list()?;
        let all_route_localnet = route_localnet::read_all().ok();
        self.follow_served(&all)?;
        let removed = std::mem::take(&mut self.removed);
        let by_index: BTreeMap<u32, &Interface> = all.iter().map(|i| (i.ifindex, i)).collect();

        let mut counters = self
            .probe
            .counters()
            .map_err(|error| SessionError::Counters(Box::new(error)))?;
        let uppers = Uppers::of(&all);
        let mut interfaces = Vec::with_capacity(self.served.len());
        for (ifindex, served) in &self.served {
            let interface = by_index[ifindex];
            let mode = self
                .probe
                .mode(*ifindex)
                .expect("served interfaces are configured");
            let route_localnet = all_route_localnet
                .zip(interface.route_localnet)
                .map(|(all, iface)| RouteLocalnet::new(all, iface));
            let receivers = uppers.route_localnet_via(interface, all_route_localnet);
            // A receiver the probe drops on (a served child in drop mode) is closed.
            let exposed = mode == Mode::Monitor
                && receivers
                    .iter()
                    .any(|receiver| self.probe.mode(receiver.ifindex) != Some(Mode::Drop));
            interfaces.push(InterfaceSnapshot {
                ifindex: *ifindex,
                name: interface.name.clone(),
                mode,
                program: served.program,
                xdp_mode: self.probe.attached_mode(*ifindex),
                route_localnet,
                route_localnet_via: receivers
                    .into_iter()
                    .map(|receiver| receiver.name.clone())
                    .collect(),
                exposed,
                counters: counters.remove(ifindex).unwrap_or_default(),
            });
        }
        Ok(Snapshot {
            at: Instant::now(),
            interfaces,
            removed,
            removed_totals: self.removed_totals,
            sample_rate: self.probe.sample_rate(),
        })
    }
}

impl Session {
    /// The ring buffer samples arrive through, once: whoever reads it owns it.
    pub fn take_samples(&mut self) -> Option<aya::maps::RingBuf<aya::maps::MapData>> {
        self.probe.take_samples()
    }

    /// Gives every interface a second's worth of samples again; call once a second.
    pub fn refill_sample_tokens(&mut self) -> Result<(), SessionError> {
        self.probe
            .refill_sample_tokens()
            .map_err(|error| SessionError::Refill(Box::new(error)))
    }

    /// The name a served interface had at the last snapshot (or at start).
    pub fn interface_name(&self, ifindex: u32) -> Option<&str> {
        self.served.get(&ifindex).map(|served| served.name.as_str())
    }
}

/// For each device, the devices stacked on it directly (see [`Interface::is_stacked_on`]).
struct Uppers<'a>(BTreeMap<u32, Vec<&'a Interface>>);

impl<'a> Uppers<'a> {
    fn of(all: &'a [Interface]) -> Self {
        let by_index: BTreeMap<u32, &Interface> = all.iter().map(|i| (i.ifindex, i)).collect();
        let mut uppers: BTreeMap<u32, Vec<&Interface>> = BTreeMap::new();
        for interface in all {
            // A child sits on its lower device.
            if let Some(lower) = interface.lower.and_then(|lower| by_index.get(&lower))
                && interface.is_stacked_on(lower)
            {
                uppers.entry(lower.ifindex).or_default().push(interface);
            }
            // A bridge, bond or team sits on its ports.
            if let Some(master) = interface.master.and_then(|master| by_index.get(&master))
                && master.is_stacked_on(interface)
            {
                uppers.entry(interface.ifindex).or_default().push(master);
            }
        }
        Self(uppers)
    }

    /// `interface` and every device stacked on it, directly or not, whose effective
    /// route_localnet is 1. `all_route_localnet` is `conf.all`, `None` when it could not be read.
    fn route_localnet_via(
        &self,
        interface: &'a Interface,
        all_route_localnet: Option<bool>,
    ) -> Vec<&'a Interface> {
        let mut receivers = vec![interface];
        let mut next = 0;
        while let Some(lower) = receivers.get(next).copied() {
            for upper in self.0.get(&lower.ifindex).into_iter().flatten() {
                if !receivers.iter().any(|seen| seen.ifindex == upper.ifindex) {
                    receivers.push(upper);
                }
            }
            next += 1;
        }
        receivers
            .into_iter()
            .filter(|receiver| {
                receiver
                    .route_localnet
                    .is_some_and(|iface| iface || all_route_localnet == Some(true))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interfaces::Framing;

    fn interface(name: &str, ifindex: u32, route_localnet: bool) -> Interface {
        Interface {
            name: name.to_owned(),
            ifindex,
            up: true,
            loopback: false,
            framing: Framing::Ethernet,
            kind: None,
            lower: None,
            master: None,
            route_localnet: Some(route_localnet),
            xdp: None,
        }
    }

    #[test]
    fn route_localnet_on_a_stacked_device_exposes_the_link_below() {
        let mut all = vec![
            interface("eth0", 2, false),
            Interface {
                kind: Some("macvlan".to_owned()),
                lower: Some(2),
                ..interface("mv0", 3, true)
            },
            interface("eth1", 4, false),
            Interface {
                kind: Some("bridge".to_owned()),
                ..interface("br0", 5, false)
            },
            Interface {
                kind: Some("vlan".to_owned()),
                lower: Some(5),
                ..interface("br0.7", 6, true)
            },
        ];
        all[2].master = Some(5);
        let uppers = Uppers::of(&all);
        let via = |interface, all_route_localnet| -> Vec<String> {
            uppers
                .route_localnet_via(interface, all_route_localnet)
                .into_iter()
                .map(|receiver| receiver.name.clone())
                .collect()
        };
        assert_eq!(via(&all[0], Some(false)), ["mv0"]);
        // eth1 → its bridge br0 → the VLAN on the bridge.
        assert_eq!(via(&all[2], Some(false)), ["br0.7"]);
        // conf.all=1 puts every device with IPv4 configuration in effect.
        assert_eq!(via(&all[2], Some(true)), ["eth1", "br0", "br0.7"]);
        all[1].route_localnet = None;
        let uppers = Uppers::of(&all);
        assert!(uppers.route_localnet_via(&all[0], Some(false)).is_empty());
    }
}
