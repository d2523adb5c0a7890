//! A probe serving a selection of interfaces for as long as the session lives: start (select,
//! refuse occupied interfaces, load, attach all or nothing), then one [`Snapshot`] per tick that
//! follows each interface by ifindex through renames and removals and says what changed in
//! route_localnet since the last one, and, after each link event, [`Session::follow_links`]
//! that serves the interfaces the selection asks for since. Dropping the session detaches
//! everything.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Instant, SystemTime},
};

use probe_common::{MAX_SLOTS, Mode, SlotCounters};
use thiserror::Error;

use crate::{
    interfaces::{Interface, InterfaceError, Interfaces},
    occupant::Occupant,
    pins::{Found, PinDir, PinError, PinLock, Standing},
    privileges,
    probe::{Adopted, Hook, LoadOptions, Probe, ProbeError, Program, TcxPrecededBy, XdpModeChoice},
    retry,
    route_localnet::{self, RouteLocalnet},
    select::{Chosen, LeftOut, SelectError, Selected, Selection, Skipped, select, select_new},
};

/// What to do with a selected interface that another XDP program holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnConflict {
    /// Refuse it: an error at start, said and retried later for one that appears.
    #[default]
    Fail,
    /// Leave it out, saying so.
    Skip,
    /// Serve it at tcx ingress, beside the XDP program, unless that program is another
    /// localnet-probe's (which serves it already).
    Tcx,
}

/// Spare slots the counter map has at least, so interfaces that appear later find one.
const MIN_CAPACITY: u32 = 256;

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
    #[error(
        "{selected} interfaces selected, but --capacity {capacity} leaves room for {capacity}; \
         give a larger --capacity, or narrow the selection"
    )]
    CapacityTooSmall { selected: usize, capacity: u32 },
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
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("cannot find this process's network namespace: {0}")]
    Namespace(std::io::Error),
    #[error("cannot take over the standing filter")]
    Adopt(#[source] Box<ProbeError>),
    #[error("cannot switch {name} to {mode} mode")]
    SetMode {
        name: String,
        mode: &'static str,
        #[source]
        source: Box<ProbeError>,
    },
    #[error("{0} is not served by this probe")]
    NotServed(String),
    #[error("cannot pin the link of {name}")]
    PinLink {
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
    pub on_conflict: OnConflict,
    /// Count the replies leaving each served interface, at its tcx egress.
    pub egress: bool,
    /// Be the standing filter of this network namespace: take over the one pinned, or pin
    /// one, so that its interfaces stay filtered when the session ends.
    pub pin: bool,
    /// Interfaces the counter map has room for, at most [`MAX_SLOTS`]; by default those here
    /// and a quarter more, at least 256 more. A standing filter keeps the room it was first
    /// pinned with.
    pub capacity: Option<u32>,
}

/// What starting did, to tell the user.
#[derive(Debug)]
pub struct Started {
    pub attached: Vec<AttachedInterface>,
    pub skipped: Vec<Skipped>,
    /// Interfaces the counter map has room for.
    pub capacity: u32,
    /// Where the standing filter is pinned, with `SessionOptions::pin`.
    pub pinned_in: Option<std::path::PathBuf>,
    /// Whether the pins go away when this process ends (in a BPF file system it mounted in a
    /// mount namespace of its own): the filter does not stay.
    pub pins_vanish: bool,
    /// Things done to the standing filter that the user should hear of: a BPF file system
    /// mounted, leftovers cleared, interfaces no longer selected detached.
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub struct AttachedInterface {
    pub ifindex: u32,
    pub name: String,
    pub program: Program,
    pub mode: Mode,
    pub hook: Hook,
    /// Replies leaving it are counted.
    pub egress: bool,
    /// Why native XDP was refused, when auto mode fell back to generic.
    pub native_refused: Option<std::io::Error>,
    /// Taken over from the standing filter: attached all along.
    pub adopted: bool,
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
    /// Interfaces kept changing while they were listed: call again shortly.
    pub unsettled: bool,
    /// When to call again because an interface was refused for a reason that may pass.
    pub retry_in: Option<std::time::Duration>,
}

/// What was last said about an interface that is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Unserved {
    Skipped(Skipped),
    /// What refused it: for an occupied interface the program there, not the processes holding
    /// it, which come and go (a process forked anywhere holds a copy of a link until it
    /// executes); otherwise the error.
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
    /// What changed in route_localnet since the previous snapshot: `conf.all`, `conf.default`,
    /// and the own setting of each served interface and of each device stacked on one.
    pub route_localnet_changes: Vec<route_localnet::Change>,
    /// Interfaces the selection asks for that the probe cannot serve: neither counted nor
    /// filtered until a later try succeeds.
    pub refused: Vec<RefusedInterface>,
}

/// A selected interface left unserved by a failure (another XDP program on it, no room left in
/// the counter map, a driver that refuses); tried again as interfaces change.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RefusedInterface {
    pub name: String,
    pub ifindex: u32,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct InterfaceSnapshot {
    pub ifindex: u32,
    pub name: String,
    pub mode: Mode,
    pub program: Program,
    /// Where it is attached; `None` once it is gone.
    pub hook: Option<Hook>,
    /// Replies leaving it are counted.
    pub egress: bool,
    /// Other programs that run before the probe's at its tcx hooks.
    pub tcx_preceded_by: TcxPrecededBy,
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
    /// What [`Session::follow_links`] serves, with the XDP mode to attach in.
    selection: Selection,
    xdp_mode: XdpModeChoice,
    on_conflict: OnConflict,
    egress: bool,
    served: BTreeMap<u32, Served>,
    removed_totals: SlotCounters,
    /// Removed interfaces not yet reported by a snapshot.
    pending_removed: Vec<InterfaceSnapshot>,
    /// Only reads a standing filter: changes nothing.
    read_only: bool,
    /// Held by the session serving the standing filter.
    _pin_lock: Option<PinLock>,
    /// What was last said about each interface here that is not served.
    told: BTreeMap<u32, Unserved>,
    /// The last consistent list of interfaces, for a snapshot taken while they keep changing.
    listed: Vec<Interface>,
    /// The route_localnet settings the last snapshot read.
    route_localnet: route_localnet::Watch,
    /// When interfaces refused for a passing reason are tried again.
    retry: retry::Backoff,
}

impl Session {
    /// Selects the interfaces, refuses occupied ones, loads the programs and attaches to every
    /// selected interface, or to none: on any error what was attached is detached. With
    /// `options.pin`, the session is the namespace's standing filter: it takes over the
    /// interfaces of the one pinned (attached all along; those no longer selected are detached)
    /// and pins the links it makes.
    pub fn start(options: SessionOptions) -> Result<(Self, Started), SessionError> {
        if let Some(missing) = privileges::missing() {
            return Err(SessionError::Privileges(missing));
        }
        let mut interfaces = Interfaces::connect()?;
        let mut notes = Vec::new();
        let mut pins_vanish = false;
        let standing = if options.pin {
            let lock = PinLock::take()?;
            let dir = PinDir::of_this_namespace().map_err(SessionError::Namespace)?;
            let prepared = dir.prepare()?;
            pins_vanish = prepared.vanishing;
            notes.extend(prepared.warning);
            let (found, note) = dir.inspect()?;
            notes.extend(note);
            if let (Found::Standing(standing), Some(capacity)) = (&found, options.capacity)
                && capacity != standing.capacity
            {
                notes.push(format!(
                    "--capacity {capacity} does not apply: the standing filter in {} keeps the \
                     room it was first pinned with ({} interfaces) until `localnet-probe detach`",
                    dir.path.display(),
                    standing.capacity
                ));
            }
            Some((lock, dir, found))
        } else {
            None
        };
        let all = interfaces.list()?;
        let selected = select(&all, &options.selection)?;
        if selected.chosen.len() > MAX_SLOTS as usize {
            return Err(SessionError::TooMany {
                selected: selected.chosen.len(),
            });
        }
        // A new counter map must hold what is selected now: all or nothing at start.
        if let Some(capacity) = options.capacity
            && !matches!(standing, Some((_, _, Found::Standing(_))))
            && selected.chosen.len() > capacity as usize
        {
            return Err(SessionError::CapacityTooSmall {
                selected: selected.chosen.len(),
                capacity,
            });
        }
        // Room for every interface here and a quarter more (at least MIN_CAPACITY) for ones
        // that appear later: the map costs 432 bytes per slot on every CPU.
        let capacity = options.capacity.unwrap_or_else(|| {
            u32::try_from(all.len() + (all.len() / 4).max(MIN_CAPACITY as usize))
                .unwrap_or(MAX_SLOTS)
                .min(MAX_SLOTS)
        });
        let load_options = LoadOptions {
            capacity,
            verifier_log: options.verifier_log,
            sample_rate: options.sample_rate,
        };
        let load_error = |error| SessionError::Load(Box::new(error));
        let (probe, adopted, pin_lock, pinned_now) = match standing {
            Some((lock, dir, found)) => {
                let pinned_now = matches!(found, Found::Nothing);
                let (probe, adopted) = Probe::load_standing(load_options, dir, found).map_err(
                    |error| match error {
                        ProbeError::Pin(error) => SessionError::Pin(error),
                        error @ ProbeError::Adopt { .. } => SessionError::Adopt(Box::new(error)),
                        error => load_error(error),
                    },
                )?;
                (probe, adopted, Some(lock), pinned_now)
            }
            None => (
                Probe::load(load_options).map_err(load_error)?,
                Vec::new(),
                None,
                false,
            ),
        };
        let mut session = Self {
            probe,
            interfaces,
            selection: options.selection,
            xdp_mode: options.xdp_mode,
            on_conflict: options.on_conflict,
            egress: options.egress,
            served: BTreeMap::new(),
            removed_totals: SlotCounters::default(),
            pending_removed: Vec::new(),
            read_only: false,
            _pin_lock: pin_lock,
            told: selected
                .skipped
                .iter()
                .map(|skipped| (skipped.ifindex, Unserved::Skipped(skipped.clone())))
                .collect(),
            listed: all.clone(),
            route_localnet: route_localnet::Watch::default(),
            retry: retry::Backoff::default(),
        };
        let mut selected = selected;
        let attached = match session.serve_at_start(&all, &mut selected, adopted, &mut notes) {
            Ok(attached) => attached,
            Err(error) => {
                // A standing filter pinned by this start that attached nothing is not left.
                if pinned_now && let Some(dir) = session.probe.standing_dir() {
                    let _ = dir.remove();
                }
                return Err(error);
            }
        };
        let started = Started {
            attached,
            skipped: selected.skipped,
            capacity: session.probe.capacity(),
            pinned_in: session.probe.standing_dir().map(|dir| dir.path.clone()),
            pins_vanish,
            notes,
        };
        Ok((session, started))
    }

    /// Serves the selection: the standing filter's interfaces taken over (in their new mode),
    /// then every other selected one attached, all or nothing, and pinned once all are.
    fn serve_at_start(
        &mut self,
        all: &[Interface],
        selected: &mut Selected,
        adopted: Vec<Adopted>,
        notes: &mut Vec<String>,
    ) -> Result<Vec<AttachedInterface>, SessionError> {
        // Refused before anything changes: the standing filter's interfaces keep their modes
        // and stay attached when a new one is occupied.
        let mut left_out = Vec::new();
        for chosen in &selected.chosen {
            let held = adopted
                .iter()
                .any(|adopted| adopted.ifindex == chosen.ifindex && adopted.hook.is_some());
            let interface = all.iter().find(|i| i.ifindex == chosen.ifindex);
            if !held && let Some(occupant) = interface.and_then(occupant_of) {
                match self.on_conflict {
                    OnConflict::Skip => left_out.push(skipped_for(chosen, &occupant)),
                    OnConflict::Tcx if !occupant.is_localnet_probe() => {}
                    OnConflict::Fail | OnConflict::Tcx => {
                        return Err(SessionError::Occupied(Box::new(occupant)));
                    }
                }
            }
        }
        selected
            .chosen
            .retain(|chosen| !left_out.iter().any(|out| out.ifindex == chosen.ifindex));
        // Without --iface finding nothing is an error, also when it is for this reason.
        if selected.chosen.is_empty() && !left_out.is_empty() && self.selection.ifaces.is_empty() {
            return Err(SelectError::AllOccupied.into());
        }
        for skipped in &left_out {
            self.told
                .insert(skipped.ifindex, Unserved::Skipped(skipped.clone()));
        }
        selected.skipped.extend(left_out);
        let mut attached = Vec::with_capacity(selected.chosen.len());
        for mut adopted in adopted {
            let chosen = selected
                .chosen
                .iter()
                .find(|chosen| chosen.ifindex == adopted.ifindex);
            // Its link is attached, but not to a device here: moved to another network
            // namespace while no probe ran. Detached, and reported removed. (The listing was
            // made before the takeover switched the programs: an XDP program is ours.)
            let here = all.iter().find(|i| i.ifindex == adopted.ifindex);
            let moved_away = match adopted.hook {
                None => false,
                Some(Hook::Xdp(_)) => here.is_none_or(|i| i.xdp.is_none()),
                Some(Hook::Tcx) => here.is_none_or(|i| !self.probe.holds(i.ifindex, None)),
            };
            if moved_away {
                adopted.counters = self.release(adopted.ifindex, &adopted.name)?;
                adopted.hook = None;
            }
            match (adopted.hook, chosen) {
                // Gone while no probe ran: reported removed by the first snapshot.
                (None, _) => self.keep_removed(adopted),
                (Some(hook), Some(chosen)) => {
                    let change_error = |source| SessionError::Attach {
                        name: chosen.name.clone(),
                        source: Box::new(source),
                    };
                    if adopted.mode == Mode::Drop && chosen.mode == Mode::Monitor {
                        notes.push(format!(
                            "{}: the standing filter dropped there, this run only monitors it: \
                             loopback frames pass from now on (give --drop or --drop-on {} to \
                             keep dropping)",
                            chosen.name, chosen.name
                        ));
                    }
                    if chosen.mode != adopted.mode {
                        self.probe
                            .configure(chosen.ifindex, chosen.mode)
                            .map_err(change_error)?;
                    }
                    if chosen.name != adopted.name {
                        self.probe
                            .rename(chosen.ifindex, &chosen.name)
                            .map_err(change_error)?;
                    }
                    if self.egress && !adopted.egress {
                        self.probe
                            .attach_egress(chosen.ifindex)
                            .map_err(change_error)?;
                    } else if adopted.egress && !self.egress {
                        self.probe
                            .detach_egress(chosen.ifindex)
                            .map_err(change_error)?;
                        notes.push(format!(
                            "{}: the standing filter counted replies leaving it, this run does \
                             not (give --egress to keep counting them)",
                            chosen.name
                        ));
                    }
                    self.served.insert(
                        chosen.ifindex,
                        Served {
                            name: chosen.name.clone(),
                            program: adopted.program,
                        },
                    );
                    attached.push(AttachedInterface {
                        ifindex: chosen.ifindex,
                        name: chosen.name.clone(),
                        program: adopted.program,
                        mode: chosen.mode,
                        hook,
                        egress: self.egress,
                        native_refused: None,
                        adopted: true,
                    });
                }
                (Some(_), None) => {
                    let counters = self.release(adopted.ifindex, &adopted.name)?;
                    let totals = crate::report::Totals::of(&counters);
                    notes.push(format!(
                        "{}: no longer selected, detached (its counts: {totals})",
                        adopted.name
                    ));
                }
            }
        }
        let new: Vec<&Chosen> = selected
            .chosen
            .iter()
            .filter(|chosen| !self.served.contains_key(&chosen.ifindex))
            .collect();
        let mut served_now = Vec::with_capacity(new.len());
        for chosen in new {
            let interface = all.iter().find(|i| i.ifindex == chosen.ifindex);
            match self.serve(chosen, interface, false) {
                Ok(served) => {
                    attached.push(served);
                    served_now.push(chosen);
                }
                // Only a standing filter taken over can be full at start (it keeps the room it
                // was first pinned with; a new one is sized for the selection): its interfaces
                // stay served, the ones that do not fit are said, and tried again as interfaces
                // change.
                Err(SessionError::Attach { name, source })
                    if matches!(*source, ProbeError::Full { .. }) =>
                {
                    notes.push(format!("{name}: not attached: {source}"));
                    // As `follow_links` words it, so that it is not said again there.
                    let cause = format!("cannot attach to {name}: {source}");
                    self.told.insert(chosen.ifindex, Unserved::Refused(cause));
                }
                // Deleted since it was listed: it is no more to serve than one deleted later.
                Err(SessionError::Attach { name, .. })
                    if !crate::probe::interface_exists(chosen.ifindex) =>
                {
                    notes.push(format!(
                        "{name}: deleted while the probe started; not served"
                    ));
                }
                Err(error) => return Err(error),
            }
        }
        for chosen in served_now {
            self.probe
                .pin_link(chosen.ifindex, &chosen.name)
                .map_err(|source| SessionError::PinLink {
                    name: chosen.name.clone(),
                    source: Box::new(source),
                })?;
        }
        Ok(attached)
    }

    /// Configures and attaches one chosen interface, and pins its link with `pin` (when the
    /// session is a standing filter); `interface` is its entry in a listing made just before. On
    /// an error nothing of it stays: no attachment, no pin, no counter slot.
    fn serve(
        &mut self,
        chosen: &Chosen,
        interface: Option<&Interface>,
        pin: bool,
    ) -> Result<AttachedInterface, SessionError> {
        let occupant = interface.and_then(occupant_of);
        let beside = match occupant {
            Some(occupant)
                if self.on_conflict == OnConflict::Tcx && !occupant.is_localnet_probe() =>
            {
                true
            }
            Some(occupant) => return Err(SessionError::Occupied(Box::new(occupant))),
            None => false,
        };
        let attach_error = |source| SessionError::Attach {
            name: chosen.name.clone(),
            source: Box::new(source),
        };
        self.probe
            .configure(chosen.ifindex, chosen.mode)
            .map_err(attach_error)?;
        let attached = if beside {
            self.probe.attach_tcx(chosen.ifindex, chosen.program)
        } else {
            self.probe
                .attach(chosen.ifindex, chosen.program, self.xdp_mode)
        };
        let attached = attached.and_then(|attached| {
            if self.egress {
                self.probe.attach_egress(chosen.ifindex)?;
            }
            Ok(attached)
        });
        let result = match attached {
            Ok(result) => result,
            Err(error) => {
                self.release(chosen.ifindex, &chosen.name)?;
                // Another program arrived since the listing (another probe starting at the
                // same time): say whose, as the check above would have.
                if matches!(error, ProbeError::Occupied(_))
                    && let Ok(now) = self.interfaces.list()
                    && let Some(occupant) = now
                        .iter()
                        .find(|i| i.ifindex == chosen.ifindex)
                        .and_then(Occupant::of)
                {
                    return Err(SessionError::Occupied(Box::new(occupant)));
                }
                return Err(attach_error(error));
            }
        };
        if pin && let Err(source) = self.probe.pin_link(chosen.ifindex, &chosen.name) {
            self.release(chosen.ifindex, &chosen.name)?;
            return Err(SessionError::PinLink {
                name: chosen.name.clone(),
                source: Box::new(source),
            });
        }
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
            hook: result.hook,
            egress: self.egress,
            native_refused: result.native_refused,
            adopted: false,
        })
    }

    /// Detaches from `ifindex` (named `name` in an error), unpins it and frees its slot; its
    /// final counters.
    fn release(&mut self, ifindex: u32, name: &str) -> Result<SlotCounters, SessionError> {
        self.probe
            .release(ifindex)
            .map_err(|source| SessionError::Release {
                name: name.to_owned(),
                source: Box::new(source),
            })
    }

    /// Follows the interfaces after a link event: releases the served ones that are gone (the
    /// next snapshot reports them) and attaches to every interface the selection asks for now
    /// that is not served yet, by the rules of the start, pinning its link in a standing filter.
    /// One that cannot be attached is not an error: it is refused, and tried again at the next
    /// call.
    pub fn follow_links(&mut self) -> Result<Followed, SessionError> {
        let all = match self.list() {
            Ok(all) => all,
            Err(SessionError::Interfaces(InterfaceError::Changing(_))) => {
                return Ok(Followed {
                    unsettled: true,
                    ..Followed::default()
                });
            }
            Err(error) => return Err(error),
        };
        self.follow_served(&all)?;
        let present: BTreeSet<u32> = all.iter().map(|interface| interface.ifindex).collect();
        self.told.retain(|ifindex, _| present.contains(ifindex));
        let served: BTreeSet<u32> = self.served.keys().copied().collect();
        let selected = select_new(&all, &self.selection, &served);
        let mut followed = Followed::default();
        let mut refused_passing = false;
        for skipped in selected.skipped {
            if self.tell(skipped.ifindex, Unserved::Skipped(skipped.clone())) {
                followed.skipped.push(skipped);
            }
        }
        for chosen in &selected.chosen {
            let interface = all.iter().find(|i| i.ifindex == chosen.ifindex);
            let (cause, reason, passing) = match self.serve(chosen, interface, true) {
                Ok(attached) => {
                    self.told.remove(&chosen.ifindex);
                    followed.attached.push(attached);
                    continue;
                }
                Err(SessionError::Occupied(occupant)) if self.on_conflict == OnConflict::Skip => {
                    let skipped = skipped_for(chosen, &occupant);
                    if self.tell(chosen.ifindex, Unserved::Skipped(skipped.clone())) {
                        followed.skipped.push(skipped);
                    }
                    continue;
                }
                Err(SessionError::Occupied(occupant)) => (
                    format!(
                        "another XDP program (id {}) is attached",
                        occupant.program_id
                    ),
                    occupant.to_string(),
                    false,
                ),
                Err(SessionError::Attach { name, source }) => {
                    let reason = format!("cannot attach to {name}: {source}");
                    (reason.clone(), reason, retry::is_passing(&source))
                }
                Err(SessionError::PinLink { name, source }) => {
                    let reason = format!("cannot pin the link of {name}: {source}");
                    (reason.clone(), reason, retry::is_passing(&source))
                }
                Err(other) => return Err(other),
            };
            refused_passing |= passing;
            if self.tell(chosen.ifindex, Unserved::Refused(cause)) {
                followed.refused.push(format!(
                    "{reason}; serving the others, and trying {} again {}",
                    chosen.name,
                    if passing {
                        "shortly and when interfaces change"
                    } else {
                        "when interfaces change"
                    }
                ));
            }
        }
        followed.retry_in = self.retry.after(refused_passing);
        Ok(followed)
    }

    /// Keeps a standing filter's interface that is gone for the next snapshot to report.
    fn keep_removed(&mut self, gone: Adopted) {
        self.remember_removed(
            gone.ifindex,
            gone.name,
            (gone.mode, gone.program),
            gone.counters,
        );
    }

    /// Keeps an interface that is gone, with its final counts, for the next snapshot to report
    /// (and the totals to keep).
    fn remember_removed(
        &mut self,
        ifindex: u32,
        name: String,
        (mode, program): (Mode, Program),
        counters: SlotCounters,
    ) {
        self.removed_totals.add(&counters);
        self.pending_removed.push(InterfaceSnapshot {
            ifindex,
            name,
            mode,
            program,
            hook: None,
            egress: false,
            tcx_preceded_by: TcxPrecededBy::default(),
            route_localnet: None,
            route_localnet_via: Vec::new(),
            exposed: false,
            counters,
        });
    }

    /// The interfaces here, kept as the last consistent list. Without waiting, as the run loop
    /// calls it: while interfaces keep changing, its callers list again later.
    fn list(&mut self) -> Result<Vec<Interface>, SessionError> {
        let all = self.interfaces.list_now()?;
        self.listed.clone_from(&all);
        Ok(all)
    }

    /// Records what is said about an unserved interface; false when it was said last already.
    fn tell(&mut self, ifindex: u32, unserved: Unserved) -> bool {
        if self.told.get(&ifindex) == Some(&unserved) {
            return false;
        }
        self.told.insert(ifindex, unserved);
        true
    }

    /// Releases the served interfaces that are gone (a read-only session only reads their
    /// counts), keeping them for the next snapshot, and takes the new names of renamed ones.
    fn follow_served(&mut self, all: &[Interface]) -> Result<(), SessionError> {
        let by_index: BTreeMap<u32, &Interface> = all.iter().map(|i| (i.ifindex, i)).collect();
        // Gone, or replaced by a device that took its ifindex (then without our program).
        let gone: Vec<u32> = self
            .served
            .keys()
            .filter(|ifindex| {
                !by_index.get(ifindex).is_some_and(|interface| {
                    self.probe.holds(**ifindex, interface.xdp.map(|xdp| xdp.id))
                })
            })
            .copied()
            .collect();
        let mut counters = if gone.is_empty() || !self.read_only {
            BTreeMap::new()
        } else {
            self.probe
                .counters()
                .map_err(|error| SessionError::Counters(Box::new(error)))?
        };
        for ifindex in gone {
            let served = self.served.remove(&ifindex).expect("listed above");
            let mode = self
                .probe
                .mode(ifindex)
                .expect("served interfaces are configured");
            let counters = if self.read_only {
                counters.remove(&ifindex).unwrap_or_default()
            } else {
                self.release(ifindex, &served.name)?
            };
            self.remember_removed(ifindex, served.name, (mode, served.program), counters);
        }
        for (ifindex, served) in &mut self.served {
            let name = &by_index[ifindex].name;
            if served.name != *name {
                served.name.clone_from(name);
                if !self.read_only {
                    self.probe
                        .rename(*ifindex, name)
                        .map_err(|source| SessionError::PinLink {
                            name: name.clone(),
                            source: Box::new(source),
                        })?;
                }
            }
        }
        Ok(())
    }

    /// Reads every served interface once: names, route_localnet and counters. An interface
    /// renamed since is reported under its new name; one that is gone is released (if
    /// [`Session::follow_links`] has not already) and reported once in [`Snapshot::removed`].
    /// Changes of route_localnet since the previous snapshot are in
    /// [`Snapshot::route_localnet_changes`].
    pub fn snapshot(&mut self) -> Result<Snapshot, SessionError> {
        // While interfaces keep changing, the last consistent list: the next one catches up.
        let all = match self.list() {
            Err(SessionError::Interfaces(InterfaceError::Changing(_))) => self.listed.clone(),
            listed => listed?,
        };
        let all_route_localnet = route_localnet::read_all().ok();
        let default_route_localnet = route_localnet::read_default().ok();
        let read_at = SystemTime::now();
        self.follow_served(&all)?;
        let refused = self
            .told
            .iter()
            .filter_map(|(ifindex, unserved)| match unserved {
                Unserved::Refused(reason) => {
                    all.iter()
                        .find(|i| i.ifindex == *ifindex)
                        .map(|i| RefusedInterface {
                            name: i.name.clone(),
                            ifindex: *ifindex,
                            reason: reason.clone(),
                        })
                }
                Unserved::Skipped(_) => None,
            })
            .collect();
        let removed = std::mem::take(&mut self.pending_removed);
        let by_index: BTreeMap<u32, &Interface> = all.iter().map(|i| (i.ifindex, i)).collect();
        let mut counters = self
            .probe
            .counters()
            .map_err(|error| SessionError::Counters(Box::new(error)))?;
        let uppers = Uppers::of(&all);
        let mut reading = route_localnet::Reading {
            all: all_route_localnet,
            default: default_route_localnet,
            interfaces: BTreeMap::new(),
        };
        let mut interfaces = Vec::with_capacity(self.served.len());
        for (ifindex, served) in &self.served {
            let interface = by_index[ifindex];
            for device in uppers.stacked(interface) {
                if let Some(on) = device.route_localnet {
                    reading
                        .interfaces
                        .insert(device.ifindex, (device.name.clone(), on));
                }
            }
            let mode = self
                .probe
                .mode(*ifindex)
                .expect("served interfaces are configured");
            let route_localnet = all_route_localnet
                .zip(interface.route_localnet)
                .map(|(all, iface)| RouteLocalnet::new(all, iface));
            let receivers = uppers.route_localnet_via(interface, all_route_localnet);
            // Gone since it was listed: nothing is ahead of it any more.
            let tcx_preceded_by = self.probe.tcx_preceded_by(*ifindex).unwrap_or_default();
            // Drop mode protects a device unless another program that runs first may pass
            // frames to the stack; a receiver the probe drops on (a served child in drop mode)
            // is closed.
            let drops_at = |ifindex: u32, preceded: &TcxPrecededBy| {
                self.probe.mode(ifindex) == Some(Mode::Drop) && preceded.ingress.is_empty()
            };
            let exposed = !drops_at(*ifindex, &tcx_preceded_by)
                && receivers.iter().any(|receiver| {
                    let preceded = if receiver.ifindex == *ifindex {
                        tcx_preceded_by.clone()
                    } else {
                        self.probe
                            .tcx_preceded_by(receiver.ifindex)
                            .unwrap_or_default()
                    };
                    !drops_at(receiver.ifindex, &preceded)
                });
            let attached = self.probe.attached_hook(*ifindex);
            interfaces.push(InterfaceSnapshot {
                ifindex: *ifindex,
                name: interface.name.clone(),
                mode,
                program: served.program,
                hook: attached.map(|(hook, _)| hook),
                egress: attached.is_some_and(|(_, egress)| egress),
                tcx_preceded_by,
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
            route_localnet_changes: self.route_localnet.update(reading, read_at),
            refused,
        })
    }
}

impl Session {
    /// This network namespace's standing filter as pinned, only read, or `None` with what
    /// the directory it would be in is: nothing attaches, nothing changes. Interfaces whose
    /// pins outlived them are reported removed by the first snapshot.
    pub fn observe() -> Result<Result<(Self, Standing), PinDir>, SessionError> {
        if let Some(missing) = privileges::missing_to_read() {
            return Err(SessionError::Privileges(missing));
        }
        let dir = PinDir::of_this_namespace().map_err(SessionError::Namespace)?;
        dir.require_visible()?;
        let Some(standing) = dir.standing()? else {
            return Ok(Err(dir));
        };
        let mut interfaces = Interfaces::connect()?;
        let (probe, gone) = Probe::read_standing(dir, standing.capacity)
            .map_err(|error| SessionError::Adopt(Box::new(error)))?;
        let listed = interfaces.list()?;
        let names: BTreeMap<u32, String> = listed
            .iter()
            .map(|interface| (interface.ifindex, interface.name.clone()))
            .collect();
        let mut session = Self {
            probe,
            interfaces,
            served: BTreeMap::new(),
            removed_totals: SlotCounters::default(),
            pending_removed: Vec::new(),
            read_only: true,
            _pin_lock: None,
            selection: Selection::default(),
            xdp_mode: XdpModeChoice::Auto,
            on_conflict: OnConflict::Fail,
            egress: false,
            told: BTreeMap::new(),
            listed,
            route_localnet: route_localnet::Watch::default(),
            retry: retry::Backoff::default(),
        };
        for (ifindex, program) in session.probe.served() {
            // Not here: moved to another namespace while no probe ran.
            let name = names
                .get(&ifindex)
                .cloned()
                .or_else(|| session.probe.pinned_name(ifindex))
                .unwrap_or_else(|| format!("ifindex {ifindex}"));
            session.served.insert(ifindex, Served { name, program });
        }
        for gone in gone {
            session.keep_removed(gone);
        }
        Ok(Ok((session, standing)))
    }

    /// The standing filter's directory, for a session that serves or reads one.
    pub fn standing_dir(&self) -> Option<&PinDir> {
        self.probe.standing_dir()
    }

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

    /// Switches a served interface between monitor and drop mode, live: the next frame is
    /// handled in the new mode. A standing filter keeps the new mode after exit.
    pub fn set_mode(&mut self, ifindex: u32, mode: Mode) -> Result<(), SessionError> {
        let name = match self.served.get(&ifindex) {
            Some(served) if !self.read_only => served.name.clone(),
            _ => return Err(SessionError::NotServed(format!("ifindex {ifindex}"))),
        };
        self.probe
            .configure(ifindex, mode)
            .map_err(|source| SessionError::SetMode {
                name,
                mode: mode.name(),
                source: Box::new(source),
            })
    }

    /// The name a served interface had at the last snapshot (or at start).
    pub fn interface_name(&self, ifindex: u32) -> Option<&str> {
        self.served.get(&ifindex).map(|served| served.name.as_str())
    }
}

/// What holds `interface` already: another localnet-probe at its tcx ingress (refused whatever
/// `--on-conflict` says, as at XDP: it is served), or another XDP program.
fn occupant_of(interface: &Interface) -> Option<Occupant> {
    Occupant::localnet_probe_at_tcx(interface).or_else(|| Occupant::of(interface))
}

/// An interface left out because another XDP program holds it (`--on-conflict skip`).
fn skipped_for(chosen: &Chosen, occupant: &Occupant) -> Skipped {
    Skipped {
        ifindex: chosen.ifindex,
        name: chosen.name.clone(),
        reason: LeftOut::Occupied {
            program_id: occupant.program_id,
            program_name: occupant.program_name.clone(),
            localnet_probe: occupant.is_localnet_probe(),
        },
    }
}

/// An interface as `status` shows it when no standing filter is pinned.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UnservedInterface {
    pub name: String,
    pub ifindex: u32,
    /// `None` when the interface has no IPv4 configuration.
    pub route_localnet: Option<RouteLocalnet>,
    /// As [`InterfaceSnapshot::route_localnet_via`].
    pub route_localnet_via: Vec<String>,
    /// Route_localnet is in effect for the link's frames, and nothing of localnet-probe's
    /// drops them.
    pub exposed: bool,
    /// The id of an XDP program attached there, anyone's.
    pub xdp_program_id: Option<u32>,
}

/// Every interface of this namespace but loopback, with its route_localnet, for a namespace
/// without a standing filter.
pub fn unserved_interfaces() -> Result<Vec<UnservedInterface>, SessionError> {
    let all = Interfaces::connect()?.list()?;
    let all_route_localnet = route_localnet::read_all().ok();
    let uppers = Uppers::of(&all);
    Ok(all
        .iter()
        .filter(|interface| !interface.loopback)
        .map(|interface| {
            let via: Vec<String> = uppers
                .route_localnet_via(interface, all_route_localnet)
                .into_iter()
                .map(|receiver| receiver.name.clone())
                .collect();
            UnservedInterface {
                name: interface.name.clone(),
                ifindex: interface.ifindex,
                route_localnet: all_route_localnet
                    .zip(interface.route_localnet)
                    .map(|(all, iface)| RouteLocalnet::new(all, iface)),
                exposed: !via.is_empty(),
                route_localnet_via: via,
                xdp_program_id: interface.xdp.map(|xdp| xdp.id),
            }
        })
        .collect())
}

impl Drop for Session {
    fn drop(&mut self) {
        // A standing filter goes on without a reader of its samples.
        if self.probe.standing_dir().is_some() && !self.read_only {
            let _ = self.probe.stop_sampling();
        }
    }
}

/// For each device, the devices stacked on it directly (see [`Interface::is_stacked_on`]).
pub(crate) struct Uppers<'a>(BTreeMap<u32, Vec<&'a Interface>>);

impl<'a> Uppers<'a> {
    pub(crate) fn of(all: &'a [Interface]) -> Self {
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

    /// `interface` and every device stacked on it, directly or not: where its frames arrive.
    pub(crate) fn stacked(&self, interface: &'a Interface) -> Vec<&'a Interface> {
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
    }

    /// `interface` and every device stacked on it, directly or not, whose effective
    /// route_localnet is 1. `all_route_localnet` is `conf.all`, `None` when it could not be read.
    pub(crate) fn route_localnet_via(
        &self,
        interface: &'a Interface,
        all_route_localnet: Option<bool>,
    ) -> Vec<&'a Interface> {
        self.stacked(interface)
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

    fn interface(name: &str, ifindex: u32, route_localnet: bool) -> Interface {
        Interface {
            route_localnet: Some(route_localnet),
            ..Interface::for_tests(name, ifindex)
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
