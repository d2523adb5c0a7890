//! The one decision: from what is known of a link, whether services bound to loopback are
//! reachable from it. `audit` knows the most (sockets, nftables, every program on every device);
//! `run` and `status` know their own programs and ask the same question with fewer facts, and
//! each says so here by what it leaves `None`.

use serde::Serialize;

use super::{
    ruleset::{Class, Destination, Outcome, Ruleset, Source},
    sockets::LoopbackService,
};
use crate::net::interfaces::Interface;

/// What is true of one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// route_localnet is not in effect for the link's frames.
    NotExposed,
    /// It is, and not every frame to 127.0.0.0/8 is dropped, but no service bound to IPv4
    /// loopback is reachable now (none listens, or the frames to each are dropped).
    Latent,
    /// It is, and IPv4 loopback services are reachable from the link (or the sockets could not be
    /// read).
    Exposed,
    /// localnet-probe counted frames with a loopback source leaving the interface (at tcx egress,
    /// `run --egress`): a service bound to loopback answered someone on this link, so the
    /// exposure was used.
    ///
    /// It ranks above every other verdict, a mitigation included: the replies are evidence of
    /// what happened before (before the probe switched to drop mode, say, or route_localnet was
    /// unset), which a drop now does not undo. The finding says how the interface stands now,
    /// and the finding of that state (reachable services, mitigated, …) is made as well. The
    /// verdict lasts as long as the count does: until localnet-probe's programs are loaded anew
    /// (a new `run`; a standing filter keeps its counters until it is detached).
    Exploited,
    /// It is, and frames to 127.0.0.0/8 are dropped before they reach the stack.
    Mitigated,
}

/// What drops a link's loopback frames before the stack, as far as it is known.
pub struct Drops<'a> {
    /// Whether localnet-probe drops the frames arriving on the device with this ifindex: in drop
    /// mode, with no other program before it at tcx ingress.
    pub probe: &'a dyn Fn(u32) -> bool,
    /// Every interface of the namespace, to look for localnet-probe's drops below a device too
    /// (a child's lower device, a bridge's ports); `None`: the devices themselves only.
    pub stacking: Option<&'a [Interface]>,
    /// The packet filter; `None` where it is not read.
    pub firewall: Option<Firewall<'a>>,
}

/// The packet filter's chains, and what decides which frames they see.
pub struct Firewall<'a> {
    pub ruleset: &'a Ruleset,
    /// Whether the routing accepts a 127.0.0.0/8 source from the link: then a rule that spares
    /// frames with a loopback source does not drop them all.
    pub loopback_sources_accepted: bool,
}

/// What [`Outcome::Dropped`] names when localnet-probe drops the frames.
pub const LOCALNET_PROBE: &str = "localnet-probe in drop mode";

impl Drops<'_> {
    /// What happens to `class` of frames arriving on `interface` on their way to the stack
    /// through `receiver`.
    fn outcome(&self, interface: &Interface, receiver: &Interface, class: &Class) -> Outcome {
        if self.probe_below(interface) || self.probe_below(receiver) {
            return Outcome::Dropped(LOCALNET_PROBE.to_owned());
        }
        match &self.firewall {
            Some(firewall) => firewall
                .ruleset
                .outcome(&interface.name, &receiver.name, class),
            None => Outcome::Passed(None),
        }
    }

    fn probe_below(&self, device: &Interface) -> bool {
        match self.stacking {
            Some(all) => probe_drops_below(device, all, self.probe, 0),
            None => (self.probe)(device.ifindex),
        }
    }

    fn loopback_sources_accepted(&self) -> bool {
        self.firewall
            .as_ref()
            .is_some_and(|firewall| firewall.loopback_sources_accepted)
    }
}

/// Whether localnet-probe drops on `device` or, for every path its frames take, on a device
/// below it: a macvlan, ipvlan or VLAN child gets its frames through its lower device, a bridge
/// or bond through its ports (all of which must drop).
fn probe_drops_below(
    device: &Interface,
    all: &[Interface],
    probe_drops: &dyn Fn(u32) -> bool,
    depth: usize,
) -> bool {
    if probe_drops(device.ifindex) {
        return true;
    }
    // Devices stack a few deep; a loop in what rtnetlink said is no reason to recurse forever.
    if depth > 8 {
        return false;
    }
    let below: Vec<&Interface> = all
        .iter()
        .filter(|other| other.ifindex != device.ifindex && device.is_stacked_on(other))
        .collect();
    !below.is_empty()
        && below
            .iter()
            .all(|lower| probe_drops_below(lower, all, probe_drops, depth + 1))
}

/// What is known of one link.
pub struct LinkFacts<'a> {
    pub interface: &'a Interface,
    /// The devices, itself included, where route_localnet is in effect for its frames.
    pub via: &'a [&'a Interface],
    pub drops: Drops<'a>,
    /// The services bound to IPv4 loopback; `None` where the sockets could not be read: then a
    /// link whose frames are not all dropped is exposed, never latent.
    pub services: Option<&'a [LoopbackService]>,
    /// Frames with a loopback source seen leaving it; `None` where they are not counted.
    pub replies_seen: Option<u64>,
}

/// The verdict on a link.
pub struct Decision {
    /// How it stands now.
    pub now: Verdict,
    /// How it stands now, unless replies seen leaving make it [`Verdict::Exploited`].
    pub verdict: Verdict,
    /// What happens to frames to any of 127.0.0.0/8 (from any source the routing accepts).
    pub destinations: Outcome,
    /// A rule that drops frames to 127.0.0.0/8 from other sources but lets those with a
    /// loopback source by, which the routing accepts from this link.
    pub spared_by: Option<String>,
    /// Whether frames with a loopback source are dropped on every path to the stack.
    pub sources_dropped: bool,
    /// What happens to the frames to each of [`LinkFacts::services`], in order; `None` for one
    /// bound to a device its frames do not reach.
    pub services: Vec<Option<Outcome>>,
}

/// Decides, for every view, whether a link is exposed.
pub fn decide(facts: &LinkFacts) -> Decision {
    let LinkFacts {
        interface,
        via,
        drops,
        services,
        replies_seen,
    } = facts;
    let loopback_sources_accepted = drops.loopback_sources_accepted();
    // Frames of this link reach the stack through each receiver: each must drop them.
    let class_outcome = |class: Class| {
        via.iter()
            .map(|receiver| drops.outcome(interface, receiver, &class))
            .reduce(Outcome::and)
            .unwrap_or(Outcome::Passed(None))
    };
    let to = |destination, service| {
        let class = |source| Class {
            source,
            destination,
            service,
        };
        let other = class_outcome(class(Source::Other));
        if loopback_sources_accepted {
            let loopback = class_outcome(class(Source::Loopback));
            let spared = match (&other, &loopback) {
                (Outcome::Dropped(rule), outcome) if !outcome.dropped() => Some(rule.clone()),
                _ => None,
            };
            (other.and(loopback), spared)
        } else {
            (other, None)
        }
    };
    let (destinations, spared_by) = to(Destination::Loopback(None), None);
    let sources_dropped = class_outcome(Class {
        source: Source::Loopback,
        destination: Destination::Host,
        service: None,
    })
    .dropped();
    let services_known = services.is_some();
    let services: Vec<Option<Outcome>> = services
        .unwrap_or_default()
        .iter()
        .map(|service| {
            let reaches = service
                .bound_device
                .is_none_or(|device| via.iter().any(|receiver| receiver.ifindex == device));
            reaches.then(|| {
                to(
                    Destination::Loopback(Some(service.address)),
                    Some((service.protocol, service.port)),
                )
                .0
            })
        })
        .collect();
    let now = if via.is_empty() {
        Verdict::NotExposed
    } else if destinations.dropped() {
        Verdict::Mitigated
    } else if services_known && services.iter().flatten().all(Outcome::dropped) {
        Verdict::Latent
    } else {
        Verdict::Exposed
    };
    let verdict = if replies_seen.is_some_and(|replies| replies > 0) {
        Verdict::Exploited
    } else {
        now
    };
    Decision {
        now,
        verdict,
        destinations,
        spared_by,
        sources_dropped,
        services,
    }
}
