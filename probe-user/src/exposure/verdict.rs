//! The one decision: from what is known of a link, whether services bound to loopback are
//! reachable from it. `audit` knows the most (sockets, nftables, every program on every device);
//! `run` and `status` know their own programs and ask the same question with fewer facts, and
//! each says so here by what it leaves `None`.

use serde::Serialize;

use super::nft::{self, Dropped, NftDrop};
use crate::net::interfaces::Interface;

/// What is true of one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// route_localnet is not in effect for the link's frames.
    NotExposed,
    /// It is, and nothing drops them, but nothing listens on IPv4 loopback now.
    Latent,
    /// It is, and IPv4 loopback services are reachable from the link.
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
    /// (a child's lower device, a bridge's ports); `None`: the devices themselves only (`run`
    /// and `status`, as they always have).
    pub stacking: Option<&'a [Interface]>,
    /// nftables' drops; `None` where the ruleset is not read (`run`, `status`).
    pub firewall: Option<Firewall<'a>>,
}

/// The nftables rules that drop loopback frames, and what decides which of them count.
pub struct Firewall<'a> {
    pub drops: &'a [NftDrop],
    /// Whether the routing accepts a 127.0.0.0/8 source from the link: then a rule that spares
    /// frames with a loopback source does not drop them all.
    pub loopback_sources_accepted: bool,
}

impl Drops<'_> {
    /// Whether the frames `wanted` picks, arriving on `interface`, are dropped before they reach
    /// the stack through `receiver`.
    fn cover(
        &self,
        interface: &Interface,
        receiver: &Interface,
        wanted: &dyn Fn(Dropped) -> bool,
    ) -> bool {
        self.probe_below(interface)
            || self.probe_below(receiver)
            || !self.nft_on(interface, receiver, wanted).is_empty()
    }

    fn probe_below(&self, device: &Interface) -> bool {
        match self.stacking {
            Some(all) => probe_drops_below(device, all, self.probe, 0),
            None => (self.probe)(device.ifindex),
        }
    }

    /// The nftables rules that drop the frames `wanted` picks of `interface` on their way
    /// through `receiver`.
    pub fn nft_on(
        &self,
        interface: &Interface,
        receiver: &Interface,
        wanted: &dyn Fn(Dropped) -> bool,
    ) -> Vec<&NftDrop> {
        let Some(firewall) = &self.firewall else {
            return Vec::new();
        };
        firewall
            .drops
            .iter()
            .filter(|drop| {
                let here = match drop.hook {
                    nft::Hook::Ingress => {
                        drop.interface.as_deref() == Some(&interface.name)
                            || drop.interface.as_deref() == Some(&receiver.name)
                    }
                    _ => drop
                        .interface
                        .as_deref()
                        .is_none_or(|name| name == receiver.name),
                };
                here && wanted(drop.dropped)
            })
            .collect()
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
    /// How many services bound to IPv4 loopback are reachable from it; `None` where the sockets
    /// are not read (`run`, `status`): then a link whose frames are not dropped is exposed,
    /// never latent.
    pub reachable_services: Option<usize>,
    /// Frames with a loopback source seen leaving it; `None` where they are not counted.
    pub replies_seen: Option<u64>,
}

/// The verdict on a link.
pub struct Decision {
    /// How it stands now.
    pub now: Verdict,
    /// How it stands now, unless replies seen leaving make it [`Verdict::Exploited`].
    pub verdict: Verdict,
    /// Whether frames with a loopback source are dropped on every path to the stack.
    pub sources_dropped: bool,
}

/// Decides, for every view, whether a link is exposed.
pub fn decide(facts: &LinkFacts) -> Decision {
    let LinkFacts {
        interface,
        via,
        drops,
        reachable_services,
        replies_seen,
    } = facts;
    // Frames of this link reach the stack through each receiver: each must drop them.
    let loopback_sources_accepted = drops.loopback_sources_accepted();
    let destinations = |dropped| match dropped {
        Dropped::Destinations => true,
        Dropped::DestinationsFromOtherSources => !loopback_sources_accepted,
        Dropped::Sources => false,
    };
    let sources = |dropped| dropped == Dropped::Sources;
    let destinations_dropped = via
        .iter()
        .all(|receiver| drops.cover(interface, receiver, &destinations));
    let sources_dropped = via
        .iter()
        .all(|receiver| drops.cover(interface, receiver, &sources));
    let now = if via.is_empty() {
        Verdict::NotExposed
    } else if destinations_dropped {
        Verdict::Mitigated
    } else if *reachable_services == Some(0) {
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
        sources_dropped,
    }
}
