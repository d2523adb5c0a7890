//! A probe serving a selection of interfaces for as long as the session lives: start (select,
//! refuse occupied interfaces, load, attach all or nothing), then one [`Snapshot`] per tick that
//! follows each interface by ifindex through renames and removals and says what changed in
//! route_localnet since the last one, and, after each link event, [`Session::follow_links`]
//! that serves the interfaces the selection asks for since. Dropping the session detaches
//! everything.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use probe_common::{Framing, MAX_SLOTS, Mode, SlotCounters};
use thiserror::Error;

mod follow;
mod observe;
mod origins;
mod retry;
pub mod select;
mod serve;
mod snapshot;
pub mod standing;
pub mod totals;

pub use self::{
    observe::{Observed, UnservedInterface, unserved_interfaces},
    origins::{SenderOrigin, SenderOrigins},
    snapshot::{InterfaceSnapshot, RefusedInterface, Snapshot},
};

use crate::{
    exposure::{
        GlobalConf,
        firewall::{self, FirewallChange, FirewallWatch},
        loopback_sources_accepted,
        sockets::ServicesWatch,
        verdict::{Drops, Firewall, LinkFacts, Verdict, decide},
    },
    kernel::features::{Feature, FeatureProbeError, KernelFeatures},
    net::interfaces::{Interface, InterfaceError, Interfaces},
    net::neighbours::NeighbourWatch,
    net::privileges,
    net::workload::{
        Child, Children, Workload, WorkloadWatch, Workloads, cri, may_have_children, peer_nsid,
    },
    net::{
        route_localnet::{self, RouteLocalnet},
        stacking::Uppers,
    },
    probe::attachment::{Hook, TcHook, XdpPrograms},
    probe::occupant::Occupant,
    probe::pins::{Found, PinDir, PinError, PinLock, Standing},
    probe::{Adopted, LoadOptions, Probe, ProbeError, TcxPrecededBy, XdpModeChoice},
    session::select::{
        Chosen, LeftOut, SelectError, Selected, Selection, Skipped, select, select_new,
    },
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
    Features(#[from] FeatureProbeError),
    #[error(
        "this kernel has no {feature}, which carries the samples: localnet-probe needs Linux \
         {minimum} or newer",
        minimum = crate::kernel::features::MINIMUM_KERNEL
    )]
    MissingFeature { feature: Feature },
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
    /// Where the pods behind interfaces get their names.
    pub cri: cri::Client,
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
    /// Whether the pins go away with this process's mount namespace (`None`: cannot be told),
    /// see [`crate::probe::pins::pins_vanish`].
    pub pins_vanish: Option<bool>,
    /// Things done to the standing filter that the user should hear of: a BPF file system
    /// mounted, leftovers cleared, interfaces no longer selected detached.
    pub notes: Vec<String>,
    /// What the kernel offers, which decided the programs loaded.
    pub kernel: KernelFeatures,
    /// The XDP programs loaded.
    pub xdp: XdpPrograms,
}

#[derive(Debug)]
pub struct AttachedInterface {
    pub ifindex: u32,
    pub name: String,
    pub program: Framing,
    pub mode: Mode,
    pub hook: Hook,
    /// Where replies leaving it are counted, if they are.
    pub egress: Option<TcHook>,
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
    /// The interfaces the counters have room for now, when they grew to serve the ones
    /// attached (see [`Session::capacity_bound`]).
    pub grown_to: Option<u32>,
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
    program: Framing,
}

pub struct Session {
    tracked: Tracked,
    /// What [`Session::follow_links`] serves, with the XDP mode to attach in.
    selection: Selection,
    xdp_mode: XdpModeChoice,
    on_conflict: OnConflict,
    egress: bool,
    /// Held by the session serving the standing filter.
    _pin_lock: Option<PinLock>,
    /// What was last said about each interface here that is not served.
    told: BTreeMap<u32, Unserved>,
    /// When interfaces refused for a passing reason are tried again.
    retry: retry::Backoff,
    /// The interfaces the start or the last following listed: one not among them has appeared
    /// since, and may not be served yet.
    considered: BTreeSet<u32>,
    /// The neighbour table and bridges, for naming the senders of sampled frames.
    neighbours: NeighbourWatch,
    /// A snapshot released a served interface that is still here (its link detached by
    /// something else, or its device replaced): the selection is followed again at once.
    lost_present: bool,
}

/// What serving ([`Session`]) and reading a standing filter ([`Observed`]) both keep: the
/// probe, the interfaces it serves as last seen, and what a snapshot carries to the next.
struct Tracked {
    probe: Probe,
    interfaces: Interfaces,
    served: BTreeMap<u32, Served>,
    removed_totals: SlotCounters,
    /// Removed interfaces not yet reported by a snapshot.
    pending_removed: Vec<InterfaceSnapshot>,
    /// The last consistent list of interfaces, for a snapshot taken while they keep changing.
    listed: Vec<Interface>,
    /// The route_localnet settings the last snapshot read.
    route_localnet: route_localnet::Watch,
    /// The nftables drops, and those the last snapshot saw.
    firewall: firewall::Followed,
    /// The services bound to IPv4 loopback, which tell an exposed link from a latent one as
    /// the audit does.
    services: ServicesWatch,
    /// Who is behind the served links that lead to other namespaces.
    workloads: WorkloadWatch,
}

impl Session {
    /// The XDP programs loaded: without multi-buffer where the kernel lacks it.
    pub fn xdp_programs(&self) -> XdpPrograms {
        self.tracked.probe.xdp_programs()
    }

    /// The standing filter's directory, for a session that serves one.
    pub fn standing_dir(&self) -> Option<&PinDir> {
        self.tracked.probe.standing_dir()
    }

    /// Whether `ifindex` appeared after the start or the last following listed the interfaces,
    /// so that it may be selected and not served yet.
    pub fn is_new(&self, ifindex: u32) -> bool {
        !self.considered.contains(&ifindex)
    }

    /// The most interfaces the counters may grow to serve (`--capacity`).
    pub fn capacity_bound(&self) -> u32 {
        self.tracked.probe.bound()
    }

    /// The ring buffers samples arrive through, one per generation of the programs, each
    /// once: whoever reads them owns them. After interfaces are served, those of the
    /// generations loaded for them.
    pub fn take_samples(&mut self) -> Vec<aya::maps::RingBuf<aya::maps::MapData>> {
        self.tracked.probe.take_samples()
    }

    /// Gives every interface a second's worth of samples again; call once a second.
    pub fn refill_sample_tokens(&mut self) -> Result<(), SessionError> {
        self.tracked
            .probe
            .refill_sample_tokens()
            .map_err(|error| SessionError::Refill(Box::new(error)))
    }

    /// Switches a served interface between monitor and drop mode, live: the next frame is
    /// handled in the new mode. A standing filter keeps the new mode after exit.
    pub fn set_mode(&mut self, ifindex: u32, mode: Mode) -> Result<(), SessionError> {
        let name = match self.tracked.served.get(&ifindex) {
            Some(served) => served.name.clone(),
            _ => return Err(SessionError::NotServed(format!("ifindex {ifindex}"))),
        };
        self.tracked
            .probe
            .configure(ifindex, mode)
            .map_err(|source| SessionError::SetMode {
                name,
                mode: mode.name(),
                source: Box::new(source),
            })
    }

    /// The workloads behind the served interfaces, as last resolved, by ifindex.
    pub fn workloads(&self) -> Arc<Workloads> {
        self.tracked.workloads.latest()
    }

    /// The children of served interfaces in other namespaces, as last found, by parent.
    pub fn children(&self) -> Arc<Children> {
        self.tracked.workloads.children()
    }

    /// Says that frames arrived at served interfaces with children (see
    /// [`WorkloadWatch::addressed`]).
    pub fn children_addressed(&self) {
        self.tracked.workloads.addressed();
    }

    /// Says that link events announced `ifindexes`, or were lost: a served device among them
    /// may have gained or lost a child in another namespace.
    pub fn links_announced(&self, ifindexes: &BTreeSet<u32>, lost: bool) {
        self.tracked.workloads.announced(ifindexes, lost);
    }

    /// The name a served interface had at the last snapshot (or at start).
    pub fn interface_name(&self, ifindex: u32) -> Option<&str> {
        self.tracked
            .served
            .get(&ifindex)
            .map(|served| served.name.as_str())
    }
}

impl Tracked {
    /// The served interfaces in `all` that lead to another namespace, with its nsid.
    fn peers(&self, all: &[Interface]) -> BTreeMap<u32, i32> {
        all.iter()
            .filter(|interface| self.served.contains_key(&interface.ifindex))
            .filter_map(|interface| Some((interface.ifindex, peer_nsid(interface)?)))
            .collect()
    }

    /// The served interfaces that may have children in other namespaces.
    fn parents(&self, all: &[Interface]) -> BTreeSet<u32> {
        all.iter()
            .filter(|interface| self.served.contains_key(&interface.ifindex))
            .filter(|interface| may_have_children(interface))
            .map(|interface| interface.ifindex)
            .collect()
    }

    /// Tells the workload watch which interfaces lead to other namespaces in `all`.
    fn follow_workloads(&self, all: &[Interface]) {
        self.workloads.follow(self.peers(all), self.parents(all));
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
}

impl Drop for Session {
    fn drop(&mut self) {
        // A standing filter goes on without a reader of its samples.
        if self.tracked.probe.standing_dir().is_some() {
            let _ = self.tracked.probe.stop_sampling();
        }
    }
}
