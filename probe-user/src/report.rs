//! What a reading looks like to people and machines: the JSON objects `run` writes, built from a
//! [`Snapshot`] and the one before it (for rates). Every view renders this same report.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use probe_common::{Action, Counter, LoopbackMatch, SlotCounters};
use serde::Serialize;

use crate::{
    probe::Program,
    route_localnet::RouteLocalnet,
    session::{InterfaceSnapshot, Snapshot},
};

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Unix time of the reading, in seconds.
    pub timestamp: f64,
    /// Seconds since the probe attached.
    pub elapsed_secs: f64,
    /// True for the last report, written as the probe detaches.
    #[serde(rename = "final")]
    pub is_final: bool,
    pub interfaces: Vec<InterfaceReport>,
    /// Interfaces that disappeared since the previous report, with their final counts; each is
    /// reported here once.
    pub removed: Vec<InterfaceReport>,
    /// Every interface served since the start, removed ones included.
    pub totals: Totals,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub packets_matched: u64,
    pub bytes_matched: u64,
    pub packets_dropped: u64,
    pub bytes_dropped: u64,
}

impl Totals {
    fn of(counters: &SlotCounters) -> Self {
        let matched = total(counters, None);
        let dropped = total(counters, Some(Action::Dropped));
        Self {
            packets_matched: matched.packets,
            bytes_matched: matched.bytes,
            packets_dropped: dropped.packets,
            bytes_dropped: dropped.bytes,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct InterfaceReport {
    pub name: String,
    pub ifindex: u32,
    pub mode: &'static str,
    /// `native` or `generic`; `null` once the interface is gone.
    pub xdp_mode: Option<&'static str>,
    /// `ethernet`, or `ip` on layer-3 devices (tun, wireguard).
    pub framing: &'static str,
    /// `null` when the interface has no IPv4 configuration to read.
    pub route_localnet: Option<RouteLocalnet>,
    /// This interface and the devices stacked on it whose effective route_localnet is 1.
    pub route_localnet_via: Vec<String>,
    /// route_localnet is in effect where this link's frames arrive and matched frames pass:
    /// loopback-bound services on this host are reachable from this link.
    pub exposed: bool,
    #[serde(flatten)]
    pub totals: Totals,
    /// Matched packets per second over the last interval.
    pub packets_matched_per_sec: f64,
    pub bytes_matched_per_sec: f64,
    /// Non-zero classes only.
    pub by_class: Vec<ClassReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassReport {
    pub family: &'static str,
    pub address: &'static str,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// All classes, or those of one action.
fn total(counters: &SlotCounters, action: Option<Action>) -> Counter {
    let mut sum = Counter::default();
    for matched in LoopbackMatch::all() {
        for class_action in Action::ALL {
            if action.is_none_or(|action| action == class_action) {
                sum.add(counters.get(matched, class_action));
            }
        }
    }
    sum
}

impl InterfaceReport {
    fn new(
        interface: &InterfaceSnapshot,
        previous: Option<&InterfaceSnapshot>,
        since: f64,
    ) -> Self {
        let totals = Totals::of(&interface.counters);
        let (packets_rate, bytes_rate) = match previous {
            Some(previous) if since > 0.0 => {
                let before = Totals::of(&previous.counters);
                (
                    totals
                        .packets_matched
                        .saturating_sub(before.packets_matched) as f64
                        / since,
                    totals.bytes_matched.saturating_sub(before.bytes_matched) as f64 / since,
                )
            }
            _ => (0.0, 0.0),
        };
        Self {
            name: interface.name.clone(),
            ifindex: interface.ifindex,
            mode: interface.mode.name(),
            xdp_mode: interface.xdp_mode.map(|mode| mode.name()),
            framing: match interface.program {
                Program::Ethernet => "ethernet",
                Program::Ip => "ip",
            },
            route_localnet: interface.route_localnet,
            route_localnet_via: interface.route_localnet_via.clone(),
            exposed: interface.exposed,
            totals,
            packets_matched_per_sec: packets_rate,
            bytes_matched_per_sec: bytes_rate,
            by_class: LoopbackMatch::all()
                .flat_map(|matched| Action::ALL.map(|action| (matched, action)))
                .filter_map(|(matched, action)| {
                    let counter = interface.counters.get(matched, action);
                    (counter.packets != 0).then_some(ClassReport {
                        family: matched.family.name(),
                        address: matched.address.name(),
                        action: action.name(),
                        packets: counter.packets,
                        bytes: counter.bytes,
                    })
                })
                .collect(),
        }
    }
}

impl Report {
    /// The report of `snapshot`; rates are over the time since `previous`.
    pub fn new(
        snapshot: &Snapshot,
        previous: Option<&Snapshot>,
        elapsed: Duration,
        is_final: bool,
    ) -> Self {
        let since = previous.map_or(0.0, |previous| {
            snapshot.at.duration_since(previous.at).as_secs_f64()
        });
        let before: BTreeMap<u32, &InterfaceSnapshot> = previous
            .into_iter()
            .flat_map(|previous| &previous.interfaces)
            .map(|interface| (interface.ifindex, interface))
            .collect();
        let mut all = snapshot.removed_totals;
        for interface in &snapshot.interfaces {
            all.add(&interface.counters);
        }
        Self {
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
            elapsed_secs: elapsed.as_secs_f64(),
            is_final,
            interfaces: snapshot
                .interfaces
                .iter()
                .map(|interface| {
                    InterfaceReport::new(interface, before.get(&interface.ifindex).copied(), since)
                })
                .collect(),
            removed: snapshot
                .removed
                .iter()
                .map(|interface| InterfaceReport::new(interface, None, 0.0))
                .collect(),
            totals: Totals::of(&all),
        }
    }
}
