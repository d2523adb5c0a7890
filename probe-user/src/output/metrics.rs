//! The `/metrics` page `run --metrics` serves: a [`Snapshot`] in the Prometheus text format
//! (0.0.4) or in OpenMetrics, whichever the scraper asks for.
//!
//! Sized for a node with thousands of short-lived pod interfaces: the node's totals always, and
//! series of its own only for an interface that has counted a frame or is exposed, by action and
//! labelled by name alone (a pod's new veth creates none while it stays quiet, however often pods
//! restart). [`Detail::Full`] (`--metrics-detail`) gives every interface its series, by class.

use std::collections::BTreeMap;

use probe_common::{Action, Counter, LoopbackMatch, Mode};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{
    net::route_localnet::{Change, RouteLocalnet, Scope},
    output::report::{SamplesReport, counted_classes},
    probe::attachment::{AttachedMode, Direction},
    session::{InterfaceSnapshot, Snapshot, totals::total},
};

const PACKETS: &str = "localnet_probe_packets";
const BYTES: &str = "localnet_probe_bytes";
const SAMPLES: &str = "localnet_probe_samples";
const NODE_PACKETS: &str = "localnet_probe_node_packets";
const NODE_BYTES: &str = "localnet_probe_node_bytes";
const ROUTE_LOCALNET_CHANGES: &str = "localnet_probe_route_localnet_changes";
/// The families encoded as counters; their samples carry the `_total` suffix.
const COUNTERS: [&str; 6] = [
    PACKETS,
    BYTES,
    SAMPLES,
    NODE_PACKETS,
    NODE_BYTES,
    ROUTE_LOCALNET_CHANGES,
];
/// The route_localnet scopes, in the order [`Tally`] keeps them.
const SCOPES: [Scope; 3] = [Scope::All, Scope::Default, Scope::Interface];

/// Which interfaces get series of their own, and how finely.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    /// Interfaces that counted a frame or are exposed: counts by action, the effective
    /// route_localnet, the attachment, samples once there are any. Quiet interfaces are only in
    /// the node's totals, so pod churn creates no series.
    #[default]
    Summary,
    /// Every served interface, counts by family, loopback address and action (zeros included),
    /// route_localnet by scope, samples (`--metrics-detail`).
    Full,
}

/// What the page counts across snapshots, each of which holds only the changes since the one
/// before: every snapshot the run takes is added, whoever asked for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// route_localnet settings that changed, by scope in [`SCOPES`]' order.
    route_localnet_changes: [u64; 3],
}

impl Tally {
    pub fn add(&mut self, snapshot: &Snapshot) {
        for Change { scope, .. } in &snapshot.route_localnet_changes {
            let slot = SCOPES
                .iter()
                .position(|known| known == scope)
                .expect("every scope is listed");
            self.route_localnet_changes[slot] += 1;
        }
    }
}

/// How a scrape is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4, for scrapers that do not ask for OpenMetrics.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics 1.0.0 when it weighs more than the
    /// text format (a `*/*` or `text/*` range counting for the text format), the text format
    /// otherwise.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let mut open_metrics = 0.0_f32;
        let mut text = 0.0_f32;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media_type = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut quality = 1.0_f32;
            let mut version = None;
            for parameter in parts {
                let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
                match name.trim().to_ascii_lowercase().as_str() {
                    "q" => quality = value.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(value.trim().trim_matches('"')),
                    _ => {}
                }
            }
            match media_type.as_str() {
                "application/openmetrics-text" if version.is_none_or(|v| v == "1.0.0") => {
                    open_metrics = open_metrics.max(quality);
                }
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics > text {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }
}

/// How a page is sent: compressed when the scraper accepts gzip, as Prometheus always does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    /// gzip when an `Accept-Encoding` header gives it (or `*`) a weight above 0, as-is otherwise.
    pub fn negotiate(accept_encoding: Option<&str>) -> Self {
        let gzip = accept_encoding.unwrap_or("").split(',').any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("").to_ascii_lowercase();
            let quality = parts
                .filter_map(|parameter| parameter.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, value)| value.trim().parse().unwrap_or(0.0_f32));
            matches!(name.as_str(), "gzip" | "x-gzip" | "*") && quality > 0.0
        });
        if gzip { Self::Gzip } else { Self::Identity }
    }

    /// The `Content-Encoding` header's value; none for the page as it is.
    pub const fn header(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
        }
    }

    /// `page` in this encoding. gzip at its fastest level: a page of repeated label sets
    /// compresses about twentyfold at it, in a fraction of the time the default level takes.
    pub fn apply(self, page: String) -> Vec<u8> {
        match self {
            Self::Identity => page.into_bytes(),
            Self::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(page.len() / 8),
                    flate2::Compression::fast(),
                );
                std::io::Write::write_all(&mut encoder, page.as_bytes())
                    .and_then(|()| encoder.finish())
                    .expect("writing to a Vec cannot fail")
            }
        }
    }
}

/// `snapshot` as a `/metrics` page: the node's totals and attachments, the interfaces `detail`
/// gives series of their own, the refused ones, the route_localnet changes `tally` counted, the
/// build.
pub fn encode(snapshot: Snapshot, tally: Tally, detail: Detail, format: Format) -> String {
    encode_sized(snapshot, tally, detail, format, 0)
}

/// [`encode`] into a page allocated for `bytes` at first: given the last page's size, a page
/// of thousands of interfaces is written into one allocation instead of a dozen, each twice the
/// one before, that leave the allocator's heaps fragmented.
pub fn encode_sized(
    snapshot: Snapshot,
    tally: Tally,
    detail: Detail,
    format: Format,
    bytes: usize,
) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector {
        snapshot,
        tally,
        detail,
    }));
    let mut page = String::with_capacity(bytes);
    prometheus_client::encoding::text::encode(&mut page, &registry)
        .expect("writing to a String cannot fail");
    match format {
        Format::OpenMetrics => page,
        Format::Text => to_text_format(&page),
    }
}

/// prometheus-client writes OpenMetrics only. The text format differs, for the counters and
/// gauges here, in two places: a counter's HELP and TYPE name its samples (`…_total`), not the
/// family, and there is no `# EOF`. Without the first, Prometheus's text parser (promtool's too)
/// takes the samples for an untyped metric without help.
fn to_text_format(open_metrics: &str) -> String {
    let mut text = String::with_capacity(open_metrics.len() + 64);
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let header = line
            .strip_prefix("# HELP ")
            .map(|rest| ("# HELP ", rest))
            .or_else(|| line.strip_prefix("# TYPE ").map(|rest| ("# TYPE ", rest)));
        match header {
            Some((keyword, rest))
                if COUNTERS.iter().any(|counter| {
                    rest.strip_prefix(counter)
                        .is_some_and(|after| after.starts_with(' '))
                }) =>
            {
                let (name, after) = rest.split_once(' ').expect("checked above");
                text.push_str(keyword);
                text.push_str(name);
                text.push_str("_total ");
                text.push_str(after);
            }
            _ => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// Whether `interface` has series of its own at `detail`: at [`Detail::Summary`], once it has
/// counted a frame (counters only grow, so its series then stay while it does) or while it is
/// exposed.
fn has_own_series(interface: &InterfaceSnapshot, detail: Detail) -> bool {
    detail == Detail::Full || interface.exposed || total(&interface.counters, None).packets > 0
}

/// The actions an interface's counts are split by: what arrives, and replies where they are
/// counted.
fn actions(egress: bool) -> impl Iterator<Item = Action> {
    Action::ALL
        .into_iter()
        .filter(move |action| egress || *action != Action::Replied)
}

/// Hands one snapshot to prometheus-client's encoder; a new one is registered for every scrape.
#[derive(Debug)]
struct SnapshotCollector {
    snapshot: Snapshot,
    tally: Tally,
    detail: Detail,
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Self {
            snapshot,
            tally,
            detail,
        } = self;
        let detail = *detail;
        let own: Vec<&InterfaceSnapshot> = snapshot
            .interfaces
            .iter()
            .filter(|interface| has_own_series(interface, detail))
            .collect();

        let packets: fn(Counter) -> u64 = |counter| counter.packets;
        let bytes: fn(Counter) -> u64 = |counter| counter.bytes;
        let mut node = snapshot.removed_totals;
        for interface in &snapshot.interfaces {
            node.add(&interface.counters);
        }
        // Replies only where some interface counts them, or did before it went.
        let node_egress = snapshot
            .interfaces
            .iter()
            .any(|interface| interface.egress.is_some())
            || total(&node, Some(Action::Replied)).packets > 0;
        for (name, help, value) in [
            (
                NODE_PACKETS,
                "Frames with a loopback address counted on every interface served since the probe \
                 started, removed ones included, by action: arrived and passed or dropped, and \
                 with --egress left (replied).",
                packets,
            ),
            (
                NODE_BYTES,
                "Bytes of the frames counted in localnet_probe_node_packets_total.",
                bytes,
            ),
        ] {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for action in actions(node_egress) {
                let counter = total(&node, Some(action));
                ConstCounter::new(value(counter))
                    .encode(metric.encode_family(&[("action", action.name())])?)?;
            }
        }

        let mut metric = encoder.encode_descriptor(
            "localnet_probe_interfaces",
            "Attachments of the probe, by direction, hook, XDP mode and the probe's mode: \
             ingress for every served interface (hook xdp, or tcx beside another XDP program), \
             and with --egress tcx egress, where it only counts.",
            None,
            MetricType::Gauge,
        )?;
        let mut attachments: BTreeMap<[&str; 4], u64> = BTreeMap::new();
        for interface in &snapshot.interfaces {
            for labels in attachment_labels(interface) {
                *attachments.entry(labels).or_default() += 1;
            }
        }
        for ([direction, hook, xdp_mode, mode], count) in attachments {
            let labels = [
                ("direction", direction),
                ("hook", hook),
                ("xdp_mode", xdp_mode),
                ("mode", mode),
            ];
            ConstGauge::new(count).encode(metric.encode_family(&labels)?)?;
        }

        let mut metric = encoder.encode_descriptor(
            ROUTE_LOCALNET_CHANGES,
            "Changes of a net.ipv4.conf route_localnet setting seen since the probe started, by \
             scope: all (every interface's effective value), default (interfaces created \
             later), interface (a served interface's own, or a device's stacked on one).",
            None,
            MetricType::Counter,
        )?;
        for (scope, changes) in SCOPES.iter().zip(tally.route_localnet_changes) {
            ConstCounter::new(changes).encode(metric.encode_family(&[("scope", scope.name())])?)?;
        }

        for (name, help, value) in [
            (
                PACKETS,
                "Frames with a loopback address that arrived on the interface (action passed or \
                 dropped), and with --egress frames with a loopback source that left it (action \
                 replied): for interfaces that counted one or are exposed (all, by family and \
                 loopback address too, with --metrics-detail).",
                packets,
            ),
            (
                BYTES,
                "Bytes of the frames counted in localnet_probe_packets_total.",
                bytes,
            ),
        ] {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for interface in &own {
                let name = interface.name.as_str();
                match detail {
                    Detail::Summary => {
                        for action in actions(interface.egress.is_some()) {
                            let counter = total(&interface.counters, Some(action));
                            let labels = [("interface", name), ("action", action.name())];
                            ConstCounter::new(value(counter))
                                .encode(metric.encode_family(&labels)?)?;
                        }
                    }
                    Detail::Full => {
                        for (matched, action) in counted_classes(interface.egress.is_some()) {
                            let labels = class_labels(name, matched, action);
                            let counter = interface.counters.get(matched, action);
                            ConstCounter::new(value(counter))
                                .encode(metric.encode_family(&labels)?)?;
                        }
                    }
                }
            }
        }

        let mut metric = encoder.encode_descriptor(
            "localnet_probe_route_localnet",
            "net.ipv4.conf route_localnet for the interface: the effective one (1 routes \
             127.0.0.0/8 from the wire), and with --metrics-detail the all setting and its own.",
            None,
            MetricType::Gauge,
        )?;
        let effective: ScopeSetting = ("effective", |r| r.effective);
        let scopes: &[ScopeSetting] = match detail {
            Detail::Summary => &[effective],
            Detail::Full => &[("all", |r| r.all), ("interface", |r| r.iface), effective],
        };
        for interface in &own {
            let Some(route_localnet) = interface.route_localnet else {
                continue;
            };
            for (scope, setting) in scopes {
                let on = setting(route_localnet);
                let labels = [("interface", interface.name.as_str()), ("scope", *scope)];
                ConstGauge::new(u32::from(on)).encode(metric.encode_family(&labels)?)?;
            }
        }

        let mut metric = encoder.encode_descriptor(
            "localnet_probe_exposed",
            "1 when services bound to 127.0.0.1 on this host are reachable from the interface's \
             link: route_localnet is in effect where its frames arrive and matched frames pass.",
            None,
            MetricType::Gauge,
        )?;
        for interface in &own {
            let labels = [("interface", interface.name.as_str())];
            ConstGauge::new(u32::from(interface.exposed)).encode(metric.encode_family(&labels)?)?;
        }

        let mut metric = encoder.encode_descriptor(
            "localnet_probe_attached",
            "1 for every attachment of the probe to an interface with series of its own: at \
             ingress (hook xdp, with its XDP mode, or beside another XDP program tcx, or tc where \
             the kernel has no tcx) in the probe's mode, and with --egress at tc egress (hook tcx \
             or tc), where it only counts.",
            None,
            MetricType::Gauge,
        )?;
        for interface in &own {
            for [direction, hook, xdp_mode, mode] in attachment_labels(interface) {
                let labels = [
                    ("interface", interface.name.as_str()),
                    ("direction", direction),
                    ("hook", hook),
                    ("xdp_mode", xdp_mode),
                    ("mode", mode),
                ];
                ConstGauge::new(1_u32).encode(metric.encode_family(&labels)?)?;
            }
        }

        // Only with sampling on, when every matched frame is emitted, suppressed or lost.
        if snapshot.sample_rate > 0 {
            let mut metric = encoder.encode_descriptor(
                SAMPLES,
                "Samples of matched frames: emitted to the ring buffer, suppressed by the \
                 per-interface rate limit, or lost because the ring buffer was full.",
                None,
                MetricType::Counter,
            )?;
            for interface in &own {
                let Some(samples) = SamplesReport::of(&interface.counters, true) else {
                    continue;
                };
                if detail == Detail::Summary && total(&interface.counters, None).packets == 0 {
                    continue;
                }
                for (result, value) in [
                    ("emitted", samples.emitted),
                    ("suppressed", samples.suppressed),
                    ("lost", samples.lost),
                ] {
                    let labels = [("interface", interface.name.as_str()), ("result", result)];
                    ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
                }
            }
        }

        let mut metric = encoder.encode_descriptor(
            "localnet_probe_refused",
            "1 for every interface the selection asks for that the probe cannot attach to \
             (another XDP program, no room left in its counter map, a driver that refuses): \
             neither counted nor filtered, tried again as interfaces change.",
            None,
            MetricType::Gauge,
        )?;
        for refused in &snapshot.refused {
            let labels = [("interface", refused.name.as_str())];
            ConstGauge::new(1_u32).encode(metric.encode_family(&labels)?)?;
        }

        let mut metric = encoder.encode_descriptor(
            "localnet_probe_interface_workload",
            "1 for every interface with series of its own whose link leads to another network \
             namespace, and for each of its children in another (a macvlan or ipvlan given to a \
             container), labelled with who is behind it: the namespace (its /run/netns name, else \
             net:[inode]), the container runtime, container and pod UID its processes' cgroups \
             name (empty where unknown), and the pod's name and namespace as the container \
             runtime's CRI lists them (empty where unknown). Join on interface to name the pod \
             of its other series.",
            None,
            MetricType::Gauge,
        )?;
        // Only beside the series it names: a quiet pod's veth has none, and a pod restart then
        // creates none here either.
        for interface in &own {
            let ifindex = interface.ifindex.to_string();
            let behind = interface
                .workload
                .iter()
                .chain(interface.children.iter().map(|child| &child.workload));
            for workload in behind {
                let netns = workload.netns.as_ref().map_or_else(String::new, |netns| {
                    netns
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("net:[{}]", netns.inode))
                });
                let a = &workload.attribution;
                let labels = [
                    ("interface", interface.name.as_str()),
                    ("ifindex", ifindex.as_str()),
                    ("netns", netns.as_str()),
                    ("runtime", a.runtime.map_or("", |runtime| runtime.name())),
                    (
                        "container_id",
                        a.container_id.as_deref().unwrap_or_default(),
                    ),
                    ("pod_uid", a.pod_uid.as_deref().unwrap_or_default()),
                    ("pod", workload.names.pod.as_deref().unwrap_or_default()),
                    (
                        "namespace",
                        workload.names.namespace.as_deref().unwrap_or_default(),
                    ),
                ];
                ConstGauge::new(1_u32).encode(metric.encode_family(&labels)?)?;
            }
        }

        // A gauge, not an OpenMetrics info: the text format has no info type.
        let mut metric = encoder.encode_descriptor(
            "localnet_probe_build_info",
            "1, labelled with the version of localnet-probe serving these metrics.",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("version", env!("CARGO_PKG_VERSION"))];
        ConstGauge::new(1_u32).encode(metric.encode_family(&labels)?)?;
        Ok(())
    }
}

/// A route_localnet scope's label and its setting.
type ScopeSetting = (&'static str, fn(RouteLocalnet) -> bool);

/// The labels of a class's counts at [`Detail::Full`].
fn class_labels(
    interface: &str,
    matched: LoopbackMatch,
    action: Action,
) -> [(&'static str, &str); 4] {
    [
        ("interface", interface),
        ("family", matched.family.name()),
        ("address", matched.address_name()),
        ("action", action.name()),
    ]
}

/// Direction, hook, XDP mode (empty at tc hooks) and mode of each of `interface`'s attachments.
fn attachment_labels(interface: &InterfaceSnapshot) -> Vec<[&'static str; 4]> {
    let Some(hook) = interface.hook else {
        return Vec::new();
    };
    let ingress = [
        Direction::Ingress.name(),
        hook.name(),
        hook.xdp_mode().map_or("", AttachedMode::name),
        interface.mode.name(),
    ];
    let egress = interface.egress.map(|egress| {
        [
            Direction::Egress.name(),
            egress.name(),
            "",
            Mode::Monitor.name(),
        ]
    });
    std::iter::once(ingress).chain(egress).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use probe_common::{
        Action, Address, Family, Framing, LoopbackMatch, SampleCounts, SlotCounters, class_index,
    };

    use super::*;
    use crate::{
        net::route_localnet::RouteLocalnet,
        probe::TcxPrecededBy,
        probe::attachment::{Hook, TcHook},
        session::{InterfaceSnapshot, RefusedInterface},
    };

    fn interface(name: &str, ifindex: u32, mode: Mode) -> InterfaceSnapshot {
        InterfaceSnapshot {
            ifindex,
            name: name.to_owned(),
            mode,
            program: Framing::Ethernet,
            hook: Some(Hook::Xdp(AttachedMode::Native)),
            egress: None,
            tcx_preceded_by: TcxPrecededBy::default(),
            route_localnet: None,
            route_localnet_via: Vec::new(),
            exposed: false,
            counters: SlotCounters::default(),
            workload: None,
            children: Vec::new(),
        }
    }

    fn count(
        counters: &mut SlotCounters,
        family: Family,
        address: Address,
        action: Action,
        packets: u64,
        bytes: u64,
    ) {
        counters.classes[class_index(LoopbackMatch { family, address }, action)] =
            Counter { packets, bytes };
    }

    fn snapshot(interfaces: Vec<InterfaceSnapshot>, sample_rate: u32) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            interfaces,
            removed: Vec::new(),
            removed_totals: SlotCounters::default(),
            sample_rate,
            route_localnet_changes: Vec::new(),
            firewall_changes: Vec::new(),
            refused: vec![RefusedInterface {
                name: "eth9".to_owned(),
                ifindex: 9,
                reason: "another XDP program (id 42) is attached".to_owned(),
            }],
        }
    }

    /// An exposed monitor on eth0 that replied (counted at tcx egress), and a drop interface
    /// wg0 without IPv4 configuration at tc ingress (a clsact filter, on a kernel without tcx)
    /// beside another XDP program.
    fn two_interfaces() -> Snapshot {
        let mut eth0 = interface("eth0", 2, Mode::Monitor);
        eth0.route_localnet = Some(RouteLocalnet::new(false, true));
        eth0.route_localnet_via = vec!["eth0".to_owned()];
        eth0.exposed = true;
        eth0.egress = Some(TcHook::Tcx);
        count(
            &mut eth0.counters,
            Family::Ipv4,
            Address::Destination,
            Action::Passed,
            5,
            300,
        );
        count(
            &mut eth0.counters,
            Family::Ipv4,
            Address::Source,
            Action::Replied,
            2,
            120,
        );
        eth0.counters.samples = SampleCounts {
            emitted: 3,
            lost: 1,
        };
        let mut wg0 = interface("wg0", 7, Mode::Drop);
        wg0.program = Framing::Ip;
        wg0.hook = Some(Hook::Tc(TcHook::Clsact));
        count(
            &mut wg0.counters,
            Family::Ipv4Mapped,
            Address::Both,
            Action::Dropped,
            2,
            160,
        );
        wg0.counters.samples.emitted = 2;
        snapshot(vec![eth0, wg0], 100)
    }

    /// The sample lines of `family` (its name, or with `_total` for a counter).
    fn samples<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
        page.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{'))
            })
            .collect()
    }

    fn page(snapshot: Snapshot, detail: Detail) -> String {
        encode(snapshot, Tally::default(), detail, Format::Text)
    }

    /// [`two_interfaces`] and a quiet one, lo9, attached in generic mode.
    fn with_a_quiet_one() -> Snapshot {
        let mut snapshot = two_interfaces();
        let mut quiet = interface("lo9", 11, Mode::Monitor);
        quiet.hook = Some(Hook::Xdp(AttachedMode::Generic));
        quiet.route_localnet = Some(RouteLocalnet::new(false, false));
        snapshot.interfaces.push(quiet);
        snapshot.removed_totals.classes[class_index(
            LoopbackMatch {
                family: Family::Ipv6,
                address: Address::Source,
            },
            Action::Passed,
        )] = Counter {
            packets: 10,
            bytes: 1000,
        };
        snapshot
    }

    #[test]
    fn a_workload_is_one_info_series_of_its_interface() {
        use crate::net::workload::{
            Netns, Workload,
            cgroup::{Attribution, Qos, Runtime},
            cri::Names,
        };
        let mut snapshot = with_a_quiet_one();
        let id = "ab".repeat(32);
        let workload = std::sync::Arc::new(Workload {
            netns: Some(Netns {
                inode: 4026532999,
                cookie: Some(7),
                name: None,
            }),
            processes: Vec::new(),
            process_count: 1,
            attribution: Attribution {
                runtime: Some(Runtime::Containerd),
                container_id: Some(id.clone()),
                pod_uid: Some("0f7c1a9e-2b3d-4c5e-8f6a-7b8c9d0e1f2a".to_owned()),
                qos: Some(Qos::Burstable),
            },
            unresolved: None,
            names: Names {
                pod: Some("web-0".to_owned()),
                namespace: Some("shop".to_owned()),
                container: None,
            },
            names_unresolved: None,
        });
        for interface in &mut snapshot.interfaces {
            interface.workload = Some(std::sync::Arc::clone(&workload));
        }
        let series = |(name, ifindex): &(String, u32)| {
            format!(
                "localnet_probe_interface_workload{{interface=\"{name}\",ifindex=\"{ifindex}\",\
                 netns=\"net:[4026532999]\",runtime=\"containerd\",container_id=\"{id}\",\
                 pod_uid=\"0f7c1a9e-2b3d-4c5e-8f6a-7b8c9d0e1f2a\",pod=\"web-0\",namespace=\"shop\"}} 1"
            )
        };
        let names: Vec<(String, u32)> = snapshot
            .interfaces
            .iter()
            .map(|i| (i.name.clone(), i.ifindex))
            .collect();
        let (active, quiet) = (&names[0], names.last().expect("the quiet one"));
        // The quiet interface has no series of its own, so none naming its workload either.
        let summary = page(snapshot.clone(), Detail::Summary);
        let summary = samples(&summary, "localnet_probe_interface_workload");
        assert!(summary.contains(&series(active).as_str()), "{summary:?}");
        assert!(!summary.contains(&series(quiet).as_str()), "{summary:?}");
        let full = page(snapshot, Detail::Full);
        assert!(
            samples(&full, "localnet_probe_interface_workload").contains(&series(quiet).as_str())
        );
    }

    #[test]
    fn a_snapshot_is_written_in_the_text_format() {
        let page = page(with_a_quiet_one(), Detail::Summary);
        let headers: Vec<&str> = page
            .lines()
            .filter(|line| line.starts_with("# TYPE"))
            .collect();
        assert_eq!(
            headers,
            [
                "# TYPE localnet_probe_node_packets_total counter",
                "# TYPE localnet_probe_node_bytes_total counter",
                "# TYPE localnet_probe_interfaces gauge",
                "# TYPE localnet_probe_route_localnet_changes_total counter",
                "# TYPE localnet_probe_packets_total counter",
                "# TYPE localnet_probe_bytes_total counter",
                "# TYPE localnet_probe_route_localnet gauge",
                "# TYPE localnet_probe_exposed gauge",
                "# TYPE localnet_probe_attached gauge",
                "# TYPE localnet_probe_samples_total counter",
                "# TYPE localnet_probe_refused gauge",
                "# TYPE localnet_probe_interface_workload gauge",
                "# TYPE localnet_probe_build_info gauge",
            ]
        );
        assert!(page.contains(
            "# HELP localnet_probe_node_packets_total Frames with a loopback address counted on \
             every interface served since the probe started, removed ones included, by action: \
             arrived and passed or dropped, and with --egress left (replied).\n"
        ));

        // The node: every interface served, the removed ones' 10 included; replies because eth0
        // counts them.
        assert_eq!(
            samples(&page, "localnet_probe_node_packets_total"),
            [
                "localnet_probe_node_packets_total{action=\"passed\"} 15",
                "localnet_probe_node_packets_total{action=\"dropped\"} 2",
                "localnet_probe_node_packets_total{action=\"replied\"} 2",
            ]
        );
        assert_eq!(
            samples(&page, "localnet_probe_node_bytes_total"),
            [
                "localnet_probe_node_bytes_total{action=\"passed\"} 1300",
                "localnet_probe_node_bytes_total{action=\"dropped\"} 160",
                "localnet_probe_node_bytes_total{action=\"replied\"} 120",
            ]
        );
        assert_eq!(
            samples(&page, "localnet_probe_interfaces"),
            [
                "localnet_probe_interfaces{direction=\"egress\",hook=\"tcx\",xdp_mode=\"\",mode=\"monitor\"} 1",
                "localnet_probe_interfaces{direction=\"ingress\",hook=\"tc\",xdp_mode=\"\",mode=\"drop\"} 1",
                "localnet_probe_interfaces{direction=\"ingress\",hook=\"xdp\",xdp_mode=\"generic\",mode=\"monitor\"} 1",
                "localnet_probe_interfaces{direction=\"ingress\",hook=\"xdp\",xdp_mode=\"native\",mode=\"monitor\"} 1",
            ]
        );
        assert_eq!(
            samples(&page, "localnet_probe_route_localnet_changes_total"),
            [
                "localnet_probe_route_localnet_changes_total{scope=\"all\"} 0",
                "localnet_probe_route_localnet_changes_total{scope=\"default\"} 0",
                "localnet_probe_route_localnet_changes_total{scope=\"interface\"} 0",
            ]
        );

        // eth0 and wg0 counted frames, by action (replies where counted); the quiet lo9 has no
        // series of its own, and no line carries an ifindex.
        assert_eq!(
            samples(&page, "localnet_probe_packets_total"),
            [
                "localnet_probe_packets_total{interface=\"eth0\",action=\"passed\"} 5",
                "localnet_probe_packets_total{interface=\"eth0\",action=\"dropped\"} 0",
                "localnet_probe_packets_total{interface=\"eth0\",action=\"replied\"} 2",
                "localnet_probe_packets_total{interface=\"wg0\",action=\"passed\"} 0",
                "localnet_probe_packets_total{interface=\"wg0\",action=\"dropped\"} 2",
            ]
        );
        assert_eq!(
            samples(&page, "localnet_probe_bytes_total"),
            [
                "localnet_probe_bytes_total{interface=\"eth0\",action=\"passed\"} 300",
                "localnet_probe_bytes_total{interface=\"eth0\",action=\"dropped\"} 0",
                "localnet_probe_bytes_total{interface=\"eth0\",action=\"replied\"} 120",
                "localnet_probe_bytes_total{interface=\"wg0\",action=\"passed\"} 0",
                "localnet_probe_bytes_total{interface=\"wg0\",action=\"dropped\"} 160",
            ]
        );
        // wg0 has no IPv4 configuration: no route_localnet line.
        assert_eq!(
            samples(&page, "localnet_probe_route_localnet"),
            ["localnet_probe_route_localnet{interface=\"eth0\",scope=\"effective\"} 1"]
        );
        assert_eq!(
            samples(&page, "localnet_probe_exposed"),
            [
                "localnet_probe_exposed{interface=\"eth0\"} 1",
                "localnet_probe_exposed{interface=\"wg0\"} 0",
            ]
        );
        assert_eq!(
            samples(&page, "localnet_probe_attached"),
            [
                "localnet_probe_attached{interface=\"eth0\",direction=\"ingress\",hook=\"xdp\",xdp_mode=\"native\",mode=\"monitor\"} 1",
                "localnet_probe_attached{interface=\"eth0\",direction=\"egress\",hook=\"tcx\",xdp_mode=\"\",mode=\"monitor\"} 1",
                "localnet_probe_attached{interface=\"wg0\",direction=\"ingress\",hook=\"tc\",xdp_mode=\"\",mode=\"drop\"} 1",
            ]
        );
        // eth0: 5 matched and 2 replies, 3 emitted, 1 lost, so 3 suppressed.
        assert_eq!(
            samples(&page, "localnet_probe_samples_total"),
            [
                "localnet_probe_samples_total{interface=\"eth0\",result=\"emitted\"} 3",
                "localnet_probe_samples_total{interface=\"eth0\",result=\"suppressed\"} 3",
                "localnet_probe_samples_total{interface=\"eth0\",result=\"lost\"} 1",
                "localnet_probe_samples_total{interface=\"wg0\",result=\"emitted\"} 2",
                "localnet_probe_samples_total{interface=\"wg0\",result=\"suppressed\"} 0",
                "localnet_probe_samples_total{interface=\"wg0\",result=\"lost\"} 0",
            ]
        );
        assert_eq!(
            samples(&page, "localnet_probe_build_info"),
            [format!(
                "localnet_probe_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )]
        );
        assert_eq!(
            samples(&page, "localnet_probe_refused"),
            ["localnet_probe_refused{interface=\"eth9\"} 1"]
        );
        assert!(!page.contains("lo9"), "{page}");
        assert!(!page.contains("ifindex"), "{page}");
        assert_eq!(
            page.lines().count(),
            2 * headers.len() + 3 + 3 + 4 + 3 + 5 + 5 + 1 + 2 + 3 + 6 + 1 + 1
        );
        assert!(page.ends_with("} 1\n"), "no # EOF in the text format");
    }

    #[test]
    fn an_exposed_interface_has_series_before_its_first_frame() {
        let mut snapshot = with_a_quiet_one();
        let lo9 = snapshot.interfaces.last_mut().expect("lo9");
        lo9.exposed = true;
        lo9.route_localnet = Some(RouteLocalnet::new(true, false));
        let page = page(snapshot, Detail::Summary);
        // At zero, so that a rate sees its first frame.
        for line in [
            "localnet_probe_packets_total{interface=\"lo9\",action=\"passed\"} 0\n",
            "localnet_probe_exposed{interface=\"lo9\"} 1\n",
            "localnet_probe_route_localnet{interface=\"lo9\",scope=\"effective\"} 1\n",
            "localnet_probe_attached{interface=\"lo9\",direction=\"ingress\",hook=\"xdp\",xdp_mode=\"generic\",mode=\"monitor\"} 1\n",
        ] {
            assert!(page.contains(line), "no {line} in {page}");
        }
        // No samples before there is a frame to sample.
        assert!(!page.contains("localnet_probe_samples_total{interface=\"lo9\""));
    }

    #[test]
    fn the_full_detail_gives_every_interface_every_class_and_scope() {
        let page = page(with_a_quiet_one(), Detail::Full);
        // Every class of the three interfaces, zeros included, in class order; replies
        // (loopback sources, and ARP) where they are counted.
        let packets = samples(&page, "localnet_probe_packets_total");
        assert_eq!(
            packets.len(),
            3 * 2 * LoopbackMatch::COUNT as usize
                + LoopbackMatch::all()
                    .filter(|matched| matched.counted_leaving())
                    .count()
        );
        assert_eq!(
            packets[0],
            "localnet_probe_packets_total{interface=\"eth0\",family=\"ipv4\",address=\"source\",\
             action=\"passed\"} 0"
        );
        assert!(packets.contains(
            &"localnet_probe_packets_total{interface=\"wg0\",family=\"ipv4-mapped\",\
              address=\"both\",action=\"dropped\"} 2"
        ));
        assert!(packets.contains(
            &"localnet_probe_packets_total{interface=\"eth0\",family=\"ipv4\",\
              address=\"source\",action=\"replied\"} 2"
        ));
        assert_eq!(
            packets.iter().filter(|line| !line.ends_with("} 0")).count(),
            3
        );
        assert_eq!(
            samples(&page, "localnet_probe_bytes_total").len(),
            packets.len()
        );
        assert_eq!(
            samples(&page, "localnet_probe_route_localnet"),
            [
                "localnet_probe_route_localnet{interface=\"eth0\",scope=\"all\"} 0",
                "localnet_probe_route_localnet{interface=\"eth0\",scope=\"interface\"} 1",
                "localnet_probe_route_localnet{interface=\"eth0\",scope=\"effective\"} 1",
                "localnet_probe_route_localnet{interface=\"lo9\",scope=\"all\"} 0",
                "localnet_probe_route_localnet{interface=\"lo9\",scope=\"interface\"} 0",
                "localnet_probe_route_localnet{interface=\"lo9\",scope=\"effective\"} 0",
            ]
        );
        assert!(page.contains("localnet_probe_exposed{interface=\"lo9\"} 0\n"));
        assert!(
            page.contains("localnet_probe_samples_total{interface=\"lo9\",result=\"lost\"} 0\n")
        );
        // The node's series as at the summary.
        let summary = encode(
            with_a_quiet_one(),
            Tally::default(),
            Detail::Summary,
            Format::Text,
        );
        assert_eq!(
            samples(&page, "localnet_probe_node_packets_total"),
            samples(&summary, "localnet_probe_node_packets_total")
        );
    }

    #[test]
    fn route_localnet_changes_are_counted_across_snapshots_by_scope() {
        let change = |scope| Change {
            scope,
            interface: (scope == Scope::Interface).then(|| ("eth0".to_owned(), 2)),
            old: false,
            new: true,
            at: std::time::SystemTime::now(),
        };
        let mut tally = Tally::default();
        let mut snapshot = two_interfaces();
        snapshot.route_localnet_changes = vec![change(Scope::All), change(Scope::Interface)];
        tally.add(&snapshot);
        snapshot.route_localnet_changes = vec![change(Scope::Interface)];
        tally.add(&snapshot);
        snapshot.route_localnet_changes.clear();
        tally.add(&snapshot);
        let page = encode(snapshot, tally, Detail::Summary, Format::Text);
        assert_eq!(
            samples(&page, "localnet_probe_route_localnet_changes_total"),
            [
                "localnet_probe_route_localnet_changes_total{scope=\"all\"} 1",
                "localnet_probe_route_localnet_changes_total{scope=\"default\"} 0",
                "localnet_probe_route_localnet_changes_total{scope=\"interface\"} 2",
            ]
        );
    }

    #[test]
    fn open_metrics_names_counter_families_without_total_and_ends_with_eof() {
        for detail in [Detail::Summary, Detail::Full] {
            let page = encode(
                with_a_quiet_one(),
                Tally::default(),
                detail,
                Format::OpenMetrics,
            );
            for family in [
                PACKETS,
                BYTES,
                SAMPLES,
                NODE_PACKETS,
                NODE_BYTES,
                ROUTE_LOCALNET_CHANGES,
            ] {
                assert!(
                    page.contains(&format!("\n# TYPE {family} counter\n")),
                    "{family}"
                );
            }
            assert!(page.ends_with("\n# EOF\n"));
            // Apart from those, the same page.
            let text = encode(with_a_quiet_one(), Tally::default(), detail, Format::Text);
            let without_headers = |page: &str| -> Vec<String> {
                page.lines()
                    .filter(|l| !l.starts_with('#'))
                    .map(str::to_owned)
                    .collect()
            };
            assert_eq!(without_headers(&page), without_headers(&text));
        }
    }

    #[test]
    fn no_samples_are_reported_when_sampling_is_off() {
        let mut eth0 = interface("eth0", 2, Mode::Monitor);
        count(
            &mut eth0.counters,
            Family::Ipv6,
            Address::Source,
            Action::Passed,
            9,
            900,
        );
        let page = page(snapshot(vec![eth0], 0), Detail::Full);
        assert!(page.contains("localnet_probe_packets_total{interface=\"eth0\""));
        assert!(!page.contains("localnet_probe_samples"), "{page}");
    }

    #[test]
    fn interface_names_are_escaped_in_label_values() {
        let page = page(
            snapshot(vec![interface("a\"b\\c", 2, Mode::Monitor)], 0),
            Detail::Full,
        );
        assert!(page.contains("localnet_probe_exposed{interface=\"a\\\"b\\\\c\"} 0\n"));
    }

    #[test]
    fn quiet_interfaces_have_no_series_of_their_own_unless_asked() {
        let interfaces: Vec<InterfaceSnapshot> = (0..1000)
            .map(|n| interface(&format!("veth{n}"), n + 2, Mode::Monitor))
            .collect();
        let summary = page(snapshot(interfaces.clone(), 100), Detail::Summary);
        assert_eq!(
            samples(&summary, "localnet_probe_interfaces"),
            [
                "localnet_probe_interfaces{direction=\"ingress\",hook=\"xdp\",xdp_mode=\"native\",mode=\"monitor\"} 1000"
            ]
        );
        assert!(!summary.contains("veth"), "{summary}");
        // Node totals, attachments, changes, refused, build: the same page for any number of
        // quiet interfaces.
        assert_eq!(
            summary
                .lines()
                .filter(|line| !line.starts_with('#'))
                .count(),
            2 + 2 + 1 + 3 + 1 + 1
        );

        let full = page(snapshot(interfaces, 100), Detail::Full);
        assert_eq!(
            samples(&full, "localnet_probe_packets_total").len(),
            1_000 * 2 * LoopbackMatch::COUNT as usize
        );
        assert_eq!(samples(&full, "localnet_probe_samples_total").len(), 3_000);
        assert!(full.contains("localnet_probe_attached{interface=\"veth999\",direction=\"ingress\",hook=\"xdp\",xdp_mode=\"native\",mode=\"monitor\"} 1\n"));
    }

    #[test]
    fn gzip_when_the_scraper_accepts_it() {
        // What Prometheus sends.
        assert_eq!(Encoding::negotiate(Some("gzip")), Encoding::Gzip);
        assert_eq!(
            Encoding::negotiate(Some("deflate, GZIP;q=0.5")),
            Encoding::Gzip
        );
        assert_eq!(Encoding::negotiate(Some("*")), Encoding::Gzip);
        assert_eq!(Encoding::negotiate(None), Encoding::Identity);
        assert_eq!(Encoding::negotiate(Some("identity")), Encoding::Identity);
        assert_eq!(Encoding::negotiate(Some("gzip;q=0")), Encoding::Identity);
        assert_eq!(Encoding::negotiate(Some("br, deflate")), Encoding::Identity);

        let page = encode(
            with_a_quiet_one(),
            Tally::default(),
            Detail::Full,
            Format::Text,
        );
        let compressed = Encoding::Gzip.apply(page.clone());
        assert!(
            compressed.len() * 5 < page.len(),
            "{} of {}",
            compressed.len(),
            page.len()
        );
        let mut decoded = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(compressed.as_slice()),
            &mut decoded,
        )
        .expect("gzip");
        assert_eq!(decoded, page);
        assert_eq!(Encoding::Identity.apply(page.clone()), page.into_bytes());
    }

    #[test]
    fn the_scrapers_accept_header_picks_the_format() {
        // What Prometheus 2.x sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,\
                          application/openmetrics-text;version=0.0.1;q=0.75,\
                          text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=0.0.1")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }
}
