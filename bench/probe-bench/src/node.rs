//! A busy node's telemetry, from snapshots made in process (no 2,000 veth pairs needed): the
//! metrics page at 2,000 interfaces, raw and gzipped, and the time to encode it; the series a pod
//! restart creates; the JSON bytes a day under pod churn, compact against full objects. And
//! things measured on a real probe: a burst of interfaces plugged at once (`growth`), then
//! churn with the binary itself (see [`crate::churn`]).

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use probe_common::{Action, Address, Family, Framing, LoopbackMatch, Mode, SlotCounters};
use probe_user::{
    net::route_localnet::RouteLocalnet,
    output::{
        compact::{self, Compactor},
        json_line,
        metrics::{self, Detail, Encoding, Format, Tally},
        report::{AttachedReport, Report},
    },
    probe::{
        TcxPrecededBy,
        attachment::{AttachedMode, Hook},
    },
    session::{AttachedInterface, InterfaceSnapshot, Snapshot},
};
use serde::Serialize;

use crate::{
    Plan,
    churn::{self, Churn},
    growth::{self, Growth},
    stats::Summary,
};

/// The node of issue 27.
pub const INTERFACES: u32 = 2_000;
/// The soak's churn: 24,000 interfaces created and deleted in 10 minutes.
pub const CHURN_PER_SEC: u32 = 40;
/// The page at 2,000 interfaces before this work (ifindex labels, every class of every
/// interface, no compression), measured in process at commit ac3d51f.
pub const BEFORE_PAGE_BYTES: u64 = 10_187_261;
pub const BEFORE_SERIES: usize = 88_001;
pub const BEFORE_SERIES_PER_RESTART: usize = 44;

#[derive(Debug, Serialize)]
pub struct Node {
    pub interfaces: u32,
    pub pages: Vec<Page>,
    pub restarts: Vec<Restart>,
    /// Churn alone, and churn with 1 % of the interfaces counting frames.
    pub json: Vec<Json>,
    /// 2,000 interfaces plugged in one batch.
    pub growth: Growth,
    /// Interfaces added and deleted in batches while the binary runs.
    pub churn: Churn,
}

/// One `/metrics` page at [`INTERFACES`].
#[derive(Debug, Serialize)]
pub struct Page {
    pub case: &'static str,
    pub series: usize,
    pub raw_bytes: u64,
    pub gzip_bytes: u64,
    /// Encoding the snapshot and gzipping it, as a scrape does (the HTTP exchange aside).
    pub encode_secs: Summary,
}

/// Series a pod restart creates: its old interface gone, a new one under another name.
#[derive(Debug, Serialize)]
pub struct Restart {
    pub case: &'static str,
    pub new_series: usize,
}

/// JSON on stdout at `--interval 1` under [`CHURN_PER_SEC`] interfaces replaced a second.
#[derive(Debug, Serialize)]
pub struct Json {
    /// One interface in this many counts a frame every second; none when 0.
    pub counting_one_in: usize,
    pub seconds: u32,
    pub full_every_secs: u32,
    pub full_bytes_per_day: f64,
    pub compact_bytes_per_day: f64,
    /// One full object, as `--json=full` writes every second.
    pub full_object_bytes: usize,
}

pub fn measure(plan: &Plan, probe_binary: &str) -> anyhow::Result<Node> {
    let quiet = node(INTERFACES, |_| (false, 0));
    let active = node(INTERFACES, |_| (true, 1_000));
    let pages = [
        ("summary, all quiet", &quiet, Detail::Summary),
        (
            "summary, all exposed and counting",
            &active,
            Detail::Summary,
        ),
        ("--metrics-detail", &quiet, Detail::Full),
    ]
    .into_iter()
    .map(|(case, snapshot, detail)| page(case, snapshot, detail, plan.node_rounds))
    .collect();

    let restarts = [
        ("summary, quiet pod", Detail::Summary, false),
        ("summary, exposed or counting pod", Detail::Summary, true),
        ("--metrics-detail", Detail::Full, false),
    ]
    .into_iter()
    .map(|(case, detail, active)| {
        let before = node(4, |n| (active && n == 3, u64::from(active)));
        let mut after = before.clone();
        let mut new = interface(4, active, u64::from(active));
        new.name = "veth-restarted".to_owned();
        after.interfaces[3] = new;
        Restart {
            case,
            new_series: series_of(&after, detail)
                .difference(&series_of(&before, detail))
                .count(),
        }
    })
    .collect();

    Ok(Node {
        interfaces: INTERFACES,
        pages,
        restarts,
        json: vec![
            json(plan.node_json_seconds, 0),
            json(plan.node_json_seconds, 100),
        ],
        growth: growth::measure(plan.growth_pairs, probe_binary)?,
        churn: churn::measure(plan, probe_binary)?,
    })
}

/// `n` interfaces, each exposed and with `frames` counted as `state` says of its number.
fn node(n: u32, state: impl Fn(u32) -> (bool, u64)) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        interfaces: (0..n)
            .map(|i| {
                let (exposed, frames) = state(i);
                interface(i, exposed, frames)
            })
            .collect(),
        removed: Vec::new(),
        removed_totals: SlotCounters::default(),
        sample_rate: probe_user::probe::DEFAULT_SAMPLE_RATE,
        route_localnet_changes: Vec::new(),
        refused: Vec::new(),
        firewall_changes: Vec::new(),
    }
}

/// A pod's veth, named as Calico and most CNIs name them.
fn interface(i: u32, exposed: bool, frames: u64) -> InterfaceSnapshot {
    let mut counters = SlotCounters::default();
    counters.classes[probe_common::class_index(
        LoopbackMatch {
            family: Family::Ipv4,
            address: Address::Destination,
        },
        Action::Passed,
    )]
    .packets = frames;
    counters.samples.emitted = frames.min(100);
    InterfaceSnapshot {
        ifindex: i + 10,
        name: format!(
            "cali{:011x}",
            u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20
        ),
        mode: Mode::Monitor,
        program: Framing::Ethernet,
        hook: Some(Hook::Xdp(AttachedMode::Native)),
        egress: None,
        tcx_preceded_by: TcxPrecededBy::default(),
        route_localnet: Some(RouteLocalnet::new(exposed, false)),
        route_localnet_via: if exposed {
            vec!["eth0".to_owned()]
        } else {
            Vec::new()
        },
        exposed,
        counters,
        workload: None,
        children: Vec::new(),
    }
}

fn page(case: &'static str, snapshot: &Snapshot, detail: Detail, rounds: usize) -> Page {
    let mut times = Vec::new();
    let mut sizes = (0, 0, 0);
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let text = metrics::encode(
            snapshot.clone(),
            Tally::default(),
            detail,
            Format::OpenMetrics,
        );
        let raw = text.len();
        let series = text.lines().filter(|line| !line.starts_with('#')).count();
        let gzip = Encoding::Gzip.apply(text).len();
        times.push(started.elapsed().as_secs_f64());
        sizes = (series, raw, gzip);
    }
    Page {
        case,
        series: sizes.0,
        raw_bytes: sizes.1 as u64,
        gzip_bytes: sizes.2 as u64,
        encode_secs: Summary::of(&times),
    }
}

/// The label sets of a page's samples.
fn series_of(snapshot: &Snapshot, detail: Detail) -> BTreeSet<String> {
    metrics::encode(snapshot.clone(), Tally::default(), detail, Format::Text)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

/// Bytes of `seconds` objects at `--interval 1`, full and compact, scaled to a day, with one
/// interface in `counting_one_in` counting a frame every second (none with 0).
fn json(seconds: u32, counting_one_in: usize) -> Json {
    const FULL_EVERY_SECS: u32 = 300;
    let mut compactor = Compactor::new(FULL_EVERY_SECS);
    let mut snapshot = node(INTERFACES, |_| (false, 0));
    let mut next_ifindex = INTERFACES + 10;
    let mut previous: Option<Snapshot> = None;
    let (mut full_bytes, mut compact_bytes, mut full_object_bytes) = (0, 0, 0);
    let start = Instant::now();
    for second in 0..seconds {
        snapshot.at = start + Duration::from_secs(u64::from(second) + 1);
        // Pods replaced: the oldest interfaces go, as many new ones come.
        let gone: Vec<InterfaceSnapshot> = snapshot
            .interfaces
            .drain(..CHURN_PER_SEC as usize)
            .collect();
        for interface in &gone {
            snapshot.removed_totals.add(&interface.counters);
        }
        snapshot.removed = gone;
        let mut attached = Vec::new();
        for _ in 0..CHURN_PER_SEC {
            let new = interface(next_ifindex, false, 0);
            attached.push(AttachedReport::new(&AttachedInterface {
                ifindex: new.ifindex,
                name: new.name.clone(),
                program: new.program,
                mode: new.mode,
                hook: Hook::Xdp(AttachedMode::Native),
                egress: None,
                native_refused: None,
                adopted: false,
            }));
            snapshot.interfaces.push(new);
            next_ifindex += 1;
        }
        if counting_one_in > 0 {
            for interface in snapshot.interfaces.iter_mut().step_by(counting_one_in) {
                interface.counters.classes[0].packets += 1;
                interface.counters.classes[0].bytes += 60;
            }
        }
        let mut report = Report::new(
            &snapshot,
            previous.as_ref(),
            Duration::from_secs(u64::from(second)),
            false,
        );
        report.attached = attached;
        let full = json_line(&report).len();
        full_object_bytes = full;
        full_bytes += full;
        compactor.compact(&mut report);
        compact_bytes += json_line(&compact::object(&report)).len();
        previous = Some(snapshot.clone());
    }
    let per_day = 86_400.0 / f64::from(seconds);
    Json {
        counting_one_in,
        seconds,
        full_every_secs: FULL_EVERY_SECS,
        full_bytes_per_day: full_bytes as f64 * per_day,
        compact_bytes_per_day: compact_bytes as f64 * per_day,
        full_object_bytes,
    }
}
