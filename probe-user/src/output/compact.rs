//! Compact JSON objects, for log pipelines (`run` when stdout is not a terminal): each lists only
//! the interfaces whose counts or state changed since the previous object, and now and then one
//! lists them all. A consumer rebuilds every interface's state by keeping the last version of
//! each by ifindex: a full object (`"full": true`) replaces them all, a compact one replaces
//! those it lists and drops those in its `removed`; `served` says how many there are. A removed
//! interface is only its name, ifindex and final counts: the rest the consumer has.

use std::collections::HashMap;

use super::report::{InterfaceReport, Report};

/// What a removed interface keeps in a compact stream's objects.
const REMOVED_KEYS: [&str; 8] = [
    "name",
    "ifindex",
    "packets_matched",
    "bytes_matched",
    "packets_dropped",
    "bytes_dropped",
    "packets_replied",
    "bytes_replied",
];

/// `report` (cut by [`Compactor::compact`]) as a compact stream's object: removed interfaces
/// reduced to their name, ifindex and final counts.
pub fn object(report: &Report) -> serde_json::Value {
    let mut object = serde_json::to_value(report).expect("reports serialize");
    if let Some(removed) = object
        .get_mut("removed")
        .and_then(serde_json::Value::as_array_mut)
    {
        for entry in removed {
            if let Some(fields) = entry.as_object_mut() {
                fields.retain(|key, _| REMOVED_KEYS.contains(&key.as_str()));
            }
        }
    }
    object
}

/// Cuts reports to what changed since the previous object, and says when a full one is due.
#[derive(Debug)]
pub struct Compactor {
    full_every: u32,
    /// Compact objects since the last full one.
    since_full: u32,
    /// Each served interface as the reader last saw it, by ifindex.
    seen: HashMap<u32, InterfaceReport>,
    /// The next object is full: the first, the one after an object the reader never got.
    full_next: bool,
}

impl Compactor {
    /// Every `full_every`th object is full (1: all of them), and the first.
    pub fn new(full_every: u32) -> Self {
        Self {
            full_every: full_every.max(1),
            since_full: 0,
            seen: HashMap::new(),
            full_next: true,
        }
    }

    /// `report` as the next object: every interface when a full object is due or the report is
    /// the last, else those that differ in anything (counts, rates, mode, hook, route_localnet,
    /// exposure, samples, top senders) from their last version or are new.
    pub fn compact(&mut self, report: &mut Report) {
        let full = self.full_next || report.is_final || self.since_full + 1 >= self.full_every;
        let mut seen = HashMap::with_capacity(report.interfaces.len());
        let mut listed = Vec::new();
        for interface in report.interfaces.drain(..) {
            if full || self.seen.get(&interface.ifindex) != Some(&interface) {
                listed.push(interface.clone());
            }
            seen.insert(interface.ifindex, interface);
        }
        self.seen = seen;
        report.interfaces = listed;
        report.full = full;
        if full {
            self.since_full = 0;
            self.full_next = false;
        } else {
            self.since_full += 1;
        }
    }

    /// The last object never reached the reader (it fell behind): the next is full.
    pub fn lost(&mut self) {
        self.full_next = true;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use probe_common::{Action, Address, Family, Framing, LoopbackMatch, Mode, SlotCounters};

    use super::*;
    use crate::{
        probe::{
            TcxPrecededBy,
            attachment::{AttachedMode, Hook},
        },
        session::{InterfaceSnapshot, Snapshot},
    };

    fn interface(ifindex: u32, matched: u64) -> InterfaceSnapshot {
        let mut counters = SlotCounters::default();
        counters.classes[probe_common::class_index(
            LoopbackMatch {
                family: Family::Ipv4,
                address: Address::Destination,
            },
            Action::Passed,
        )]
        .packets = matched;
        InterfaceSnapshot {
            ifindex,
            name: format!("veth{ifindex}"),
            mode: Mode::Monitor,
            program: Framing::Ethernet,
            hook: Some(Hook::Xdp(AttachedMode::Native)),
            egress: None,
            tcx_preceded_by: TcxPrecededBy::default(),
            route_localnet: None,
            route_localnet_via: Vec::new(),
            exposed: false,
            counters,
            workload: None,
            children: Vec::new(),
        }
    }

    /// A snapshot of interfaces 1 to 4 with these matched counts, read `at`.
    fn snapshot(at: Instant, counts: [u64; 4]) -> Snapshot {
        Snapshot {
            at,
            interfaces: (1..).zip(counts).map(|(i, n)| interface(i, n)).collect(),
            removed: Vec::new(),
            removed_totals: SlotCounters::default(),
            sample_rate: 0,
            route_localnet_changes: Vec::new(),
            refused: Vec::new(),
            firewall_changes: Vec::new(),
        }
    }

    fn listed(report: &Report) -> Vec<u32> {
        report.interfaces.iter().map(|i| i.ifindex).collect()
    }

    #[test]
    fn only_what_changed_is_listed_and_every_nth_object_is_full() {
        let start = Instant::now();
        let mut compactor = Compactor::new(4);
        let mut previous: Option<Snapshot> = None;
        let mut objects = Vec::new();
        for (n, counts) in [
            [0, 0, 0, 0],
            [0, 5, 0, 0],
            [0, 5, 0, 0],
            [1, 5, 0, 0],
            [1, 5, 0, 0],
            [1, 5, 0, 0],
        ]
        .into_iter()
        .enumerate()
        {
            let snapshot = snapshot(start + Duration::from_secs(n as u64 + 1), counts);
            let mut report = Report::new(&snapshot, previous.as_ref(), Duration::ZERO, false);
            compactor.compact(&mut report);
            assert_eq!(report.served, 4);
            objects.push((report.full, listed(&report)));
            previous = Some(snapshot);
        }
        assert_eq!(
            objects,
            [
                (true, vec![1, 2, 3, 4]),
                // veth2 counted 5 frames.
                (false, vec![2]),
                // Its rate fell back to 0.
                (false, vec![2]),
                (false, vec![1]),
                // Every fourth object is full.
                (true, vec![1, 2, 3, 4]),
                (false, vec![]),
            ]
        );
    }

    #[test]
    fn an_object_the_reader_missed_and_the_last_are_full() {
        let at = Instant::now();
        let mut compactor = Compactor::new(100);
        let mut first = Report::new(&snapshot(at, [0; 4]), None, Duration::ZERO, false);
        compactor.compact(&mut first);
        let mut quiet = Report::new(&snapshot(at, [0; 4]), None, Duration::ZERO, false);
        compactor.compact(&mut quiet);
        assert!(!quiet.full && quiet.interfaces.is_empty());
        compactor.lost();
        let mut after_loss = Report::new(&snapshot(at, [0; 4]), None, Duration::ZERO, false);
        compactor.compact(&mut after_loss);
        assert!(after_loss.full);
        assert_eq!(listed(&after_loss), [1, 2, 3, 4]);
        let mut last = Report::new(&snapshot(at, [0; 4]), None, Duration::ZERO, true);
        compactor.compact(&mut last);
        assert!(last.full);
        assert_eq!(listed(&last), [1, 2, 3, 4]);
    }

    /// What a consumer that follows docs/evidence.md rebuilds from compact objects is what full
    /// objects would have said, interface by interface.
    #[test]
    fn a_consumer_rebuilds_the_full_state() {
        let start = Instant::now();
        let mut compactor = Compactor::new(1000);
        let mut previous: Option<Snapshot> = None;
        let mut state: HashMap<u32, serde_json::Value> = HashMap::new();
        for n in 0..20_u64 {
            let mut snapshot = snapshot(
                start + Duration::from_secs(n + 1),
                [n / 3, 7, n * n, u64::from(n > 10)],
            );
            if n == 12 {
                snapshot.removed = vec![snapshot.interfaces.remove(2)];
            }
            if n > 12 {
                snapshot.interfaces.remove(2);
            }
            let full = Report::new(&snapshot, previous.as_ref(), Duration::ZERO, false);
            let mut compact = full.clone();
            compactor.compact(&mut compact);
            let object = object(&compact);
            if object["full"] == true {
                state.clear();
            }
            for interface in object["interfaces"].as_array().expect("interfaces") {
                state.insert(
                    u32::try_from(interface["ifindex"].as_u64().expect("ifindex")).unwrap(),
                    interface.clone(),
                );
            }
            for gone in object["removed"].as_array().expect("removed") {
                let fields: Vec<&String> = gone.as_object().expect("an object").keys().collect();
                assert_eq!(fields.len(), REMOVED_KEYS.len(), "{gone}");
                assert_eq!(gone["packets_matched"], n * n, "its final count");
                state.remove(&u32::try_from(gone["ifindex"].as_u64().unwrap()).unwrap());
            }
            let expected: HashMap<u32, serde_json::Value> = full
                .interfaces
                .iter()
                .map(|i| (i.ifindex, serde_json::to_value(i).expect("JSON")))
                .collect();
            assert_eq!(state, expected, "object {n}");
            assert_eq!(object["served"], expected.len());
            previous = Some(snapshot);
        }
    }
}
