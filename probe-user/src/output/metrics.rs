//! The `/metrics` page `run --metrics` serves: a [`Snapshot`] in the Prometheus text format
//! (0.0.4) or in OpenMetrics, whichever the scraper asks for.

use probe_common::{Counter, Mode};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{
    output::report::{SamplesReport, counted_classes},
    probe::attachment::{AttachedMode, Direction},
    session::Snapshot,
};

const PACKETS: &str = "localnet_probe_packets";
const BYTES: &str = "localnet_probe_bytes";
const SAMPLES: &str = "localnet_probe_samples";
/// The families encoded as counters; their samples carry the `_total` suffix.
const COUNTERS: [&str; 3] = [PACKETS, BYTES, SAMPLES];

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

/// `snapshot` as a `/metrics` page: every class of every served interface (zeros included),
/// route_localnet, exposure, the attachment, the sampling and the build.
pub fn encode(snapshot: Snapshot, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot)));
    let mut page = String::new();
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

/// Hands one snapshot to prometheus-client's encoder; a new one is registered for every scrape.
#[derive(Debug)]
struct SnapshotCollector(Snapshot);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = &self.0;

        let packets: fn(Counter) -> u64 = |counter| counter.packets;
        let bytes: fn(Counter) -> u64 = |counter| counter.bytes;
        for (name, help, value) in [
            (
                PACKETS,
                "Frames with a loopback address that arrived on the interface (action passed or \
                 dropped), and with --egress frames with a loopback source that left it (action \
                 replied), by family, loopback address and action.",
                packets,
            ),
            (
                BYTES,
                "Bytes of the frames counted in localnet_probe_packets_total.",
                bytes,
            ),
        ] {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for interface in &snapshot.interfaces {
                let ifindex = interface.ifindex.to_string();
                for (matched, action) in counted_classes(interface.egress.is_some()) {
                    let labels = [
                        ("interface", interface.name.as_str()),
                        ("ifindex", ifindex.as_str()),
                        ("family", matched.family.name()),
                        ("address", matched.address.name()),
                        ("action", action.name()),
                    ];
                    let counter = interface.counters.get(matched, action);
                    ConstCounter::new(value(counter)).encode(metric.encode_family(&labels)?)?;
                }
            }
        }

        let mut metric = encoder.encode_descriptor(
            "localnet_probe_route_localnet",
            "net.ipv4.conf route_localnet for the interface: the all setting, its own, and the \
             effective one (1 routes 127.0.0.0/8 from the wire).",
            None,
            MetricType::Gauge,
        )?;
        for interface in &snapshot.interfaces {
            let ifindex = interface.ifindex.to_string();
            let Some(route_localnet) = interface.route_localnet else {
                continue;
            };
            for (scope, on) in [
                ("all", route_localnet.all),
                ("interface", route_localnet.iface),
                ("effective", route_localnet.effective),
            ] {
                let labels = [
                    ("interface", interface.name.as_str()),
                    ("ifindex", ifindex.as_str()),
                    ("scope", scope),
                ];
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
        for interface in &snapshot.interfaces {
            let ifindex = interface.ifindex.to_string();
            let labels = [
                ("interface", interface.name.as_str()),
                ("ifindex", ifindex.as_str()),
            ];
            ConstGauge::new(u32::from(interface.exposed)).encode(metric.encode_family(&labels)?)?;
        }

        let mut metric = encoder.encode_descriptor(
            "localnet_probe_attached",
            "1 for every attachment of the probe: each interface at ingress (hook xdp, with its \
             XDP mode, or beside another XDP program tcx, or tc where the kernel has no tcx) in \
             the probe's mode, and with --egress at tc egress (hook tcx or tc), where it only \
             counts.",
            None,
            MetricType::Gauge,
        )?;
        for interface in &snapshot.interfaces {
            let ifindex = interface.ifindex.to_string();
            let Some(hook) = interface.hook else {
                continue;
            };
            let ingress = (
                Direction::Ingress,
                hook.name(),
                hook.xdp_mode().map_or("", AttachedMode::name),
                interface.mode.name(),
            );
            let egress = interface
                .egress
                .map(|egress| (Direction::Egress, egress.name(), "", Mode::Monitor.name()));
            for (direction, hook, xdp_mode, mode) in std::iter::once(ingress).chain(egress) {
                let labels = [
                    ("interface", interface.name.as_str()),
                    ("ifindex", ifindex.as_str()),
                    ("direction", direction.name()),
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
            for interface in &snapshot.interfaces {
                let ifindex = interface.ifindex.to_string();
                let Some(samples) = SamplesReport::of(&interface.counters, true) else {
                    continue;
                };
                for (result, value) in [
                    ("emitted", samples.emitted),
                    ("suppressed", samples.suppressed),
                    ("lost", samples.lost),
                ] {
                    let labels = [
                        ("interface", interface.name.as_str()),
                        ("ifindex", ifindex.as_str()),
                        ("result", result),
                    ];
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
            let ifindex = refused.ifindex.to_string();
            let labels = [
                ("interface", refused.name.as_str()),
                ("ifindex", ifindex.as_str()),
            ];
            ConstGauge::new(1_u32).encode(metric.encode_family(&labels)?)?;
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

    #[test]
    fn a_snapshot_is_written_in_the_text_format() {
        let page = encode(two_interfaces(), Format::Text);
        let headers: Vec<&str> = page.lines().filter(|line| line.starts_with('#')).collect();
        assert_eq!(
            headers,
            [
                "# HELP localnet_probe_packets_total Frames with a loopback address that arrived \
                 on the interface (action passed or dropped), and with --egress frames with a \
                 loopback source that left it (action replied), by family, loopback address and \
                 action.",
                "# TYPE localnet_probe_packets_total counter",
                "# HELP localnet_probe_bytes_total Bytes of the frames counted in \
                 localnet_probe_packets_total.",
                "# TYPE localnet_probe_bytes_total counter",
                "# HELP localnet_probe_route_localnet net.ipv4.conf route_localnet for the \
                 interface: the all setting, its own, and the effective one (1 routes \
                 127.0.0.0/8 from the wire).",
                "# TYPE localnet_probe_route_localnet gauge",
                "# HELP localnet_probe_exposed 1 when services bound to 127.0.0.1 on this host \
                 are reachable from the interface's link: route_localnet is in effect where its \
                 frames arrive and matched frames pass.",
                "# TYPE localnet_probe_exposed gauge",
                "# HELP localnet_probe_attached 1 for every attachment of the probe: each \
                 interface at ingress (hook xdp, with its XDP mode, or beside another XDP program \
                 tcx, or tc where the kernel has no tcx) in the probe's mode, and with --egress at \
                 tc egress (hook tcx or tc), where it only counts.",
                "# TYPE localnet_probe_attached gauge",
                "# HELP localnet_probe_samples_total Samples of matched frames: emitted to the \
                 ring buffer, suppressed by the per-interface rate limit, or lost because the \
                 ring buffer was full.",
                "# TYPE localnet_probe_samples_total counter",
                "# HELP localnet_probe_refused 1 for every interface the selection asks for that \
                 the probe cannot attach to (another XDP program, no room left in its counter \
                 map, a driver that refuses): neither counted nor filtered, tried again as \
                 interfaces change.",
                "# TYPE localnet_probe_refused gauge",
                "# HELP localnet_probe_build_info 1, labelled with the version of localnet-probe \
                 serving these metrics.",
                "# TYPE localnet_probe_build_info gauge",
            ]
        );

        // Every class of both interfaces, zeros included, in class order; replies (loopback
        // sources only) where they are counted.
        let packets = samples(&page, "localnet_probe_packets_total");
        assert_eq!(packets.len(), 2 * 18 + 6);
        assert_eq!(
            packets[0],
            "localnet_probe_packets_total{interface=\"eth0\",ifindex=\"2\",family=\"ipv4\",address=\"source\",\
             action=\"passed\"} 0"
        );
        assert!(packets.contains(
            &"localnet_probe_packets_total{interface=\"eth0\",ifindex=\"2\",family=\"ipv4\",\
              address=\"destination\",action=\"passed\"} 5"
        ));
        assert!(packets.contains(
            &"localnet_probe_packets_total{interface=\"wg0\",ifindex=\"7\",family=\"ipv4-mapped\",\
              address=\"both\",action=\"dropped\"} 2"
        ));
        assert!(packets.contains(
            &"localnet_probe_packets_total{interface=\"eth0\",ifindex=\"2\",family=\"ipv4\",\
              address=\"source\",action=\"replied\"} 2"
        ));
        assert!(
            !packets
                .iter()
                .any(|line| line.contains("wg0") && line.contains("replied"))
        );
        assert_eq!(
            packets.iter().filter(|line| !line.ends_with("} 0")).count(),
            3
        );
        let bytes = samples(&page, "localnet_probe_bytes_total");
        assert_eq!(bytes.len(), 2 * 18 + 6);
        assert!(bytes.contains(
            &"localnet_probe_bytes_total{interface=\"eth0\",ifindex=\"2\",family=\"ipv4\",\
              address=\"destination\",action=\"passed\"} 300"
        ));
        assert!(bytes.contains(
            &"localnet_probe_bytes_total{interface=\"wg0\",ifindex=\"7\",family=\"ipv4-mapped\",\
              address=\"both\",action=\"dropped\"} 160"
        ));

        // wg0 has no IPv4 configuration: no route_localnet lines.
        assert_eq!(
            samples(&page, "localnet_probe_route_localnet"),
            [
                "localnet_probe_route_localnet{interface=\"eth0\",ifindex=\"2\",scope=\"all\"} 0",
                "localnet_probe_route_localnet{interface=\"eth0\",ifindex=\"2\",scope=\"interface\"} 1",
                "localnet_probe_route_localnet{interface=\"eth0\",ifindex=\"2\",scope=\"effective\"} 1",
            ]
        );
        assert_eq!(
            samples(&page, "localnet_probe_exposed"),
            [
                "localnet_probe_exposed{interface=\"eth0\",ifindex=\"2\"} 1",
                "localnet_probe_exposed{interface=\"wg0\",ifindex=\"7\"} 0",
            ]
        );
        assert_eq!(
            samples(&page, "localnet_probe_attached"),
            [
                "localnet_probe_attached{interface=\"eth0\",ifindex=\"2\",direction=\"ingress\",hook=\"xdp\",xdp_mode=\"native\",mode=\"monitor\"} 1",
                "localnet_probe_attached{interface=\"eth0\",ifindex=\"2\",direction=\"egress\",hook=\"tcx\",xdp_mode=\"\",mode=\"monitor\"} 1",
                "localnet_probe_attached{interface=\"wg0\",ifindex=\"7\",direction=\"ingress\",hook=\"tc\",xdp_mode=\"\",mode=\"drop\"} 1",
            ]
        );
        // eth0: 5 matched and 2 replies, 3 emitted, 1 lost, so 3 suppressed.
        assert_eq!(
            samples(&page, "localnet_probe_samples_total"),
            [
                "localnet_probe_samples_total{interface=\"eth0\",ifindex=\"2\",result=\"emitted\"} 3",
                "localnet_probe_samples_total{interface=\"eth0\",ifindex=\"2\",result=\"suppressed\"} 3",
                "localnet_probe_samples_total{interface=\"eth0\",ifindex=\"2\",result=\"lost\"} 1",
                "localnet_probe_samples_total{interface=\"wg0\",ifindex=\"7\",result=\"emitted\"} 2",
                "localnet_probe_samples_total{interface=\"wg0\",ifindex=\"7\",result=\"suppressed\"} 0",
                "localnet_probe_samples_total{interface=\"wg0\",ifindex=\"7\",result=\"lost\"} 0",
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
            ["localnet_probe_refused{interface=\"eth9\",ifindex=\"9\"} 1"]
        );
        assert_eq!(
            page.lines().count(),
            headers.len() + 42 * 2 + 3 + 2 + 3 + 6 + 1 + 1
        );
        assert!(page.ends_with("} 1\n"), "no # EOF in the text format");
    }

    #[test]
    fn open_metrics_names_counter_families_without_total_and_ends_with_eof() {
        let page = encode(two_interfaces(), Format::OpenMetrics);
        assert!(page.contains("\n# TYPE localnet_probe_packets counter\n"));
        assert!(page.contains("\n# TYPE localnet_probe_samples counter\n"));
        assert_eq!(samples(&page, "localnet_probe_packets_total").len(), 42);
        assert!(page.ends_with("\n# EOF\n"));
        // Apart from those, the same page.
        let text = encode(two_interfaces(), Format::Text);
        let without_headers = |page: &str| -> Vec<String> {
            page.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(without_headers(&page), without_headers(&text));
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
        let page = encode(snapshot(vec![eth0], 0), Format::Text);
        assert!(page.contains("localnet_probe_packets_total{interface=\"eth0\""));
        assert!(!page.contains("localnet_probe_samples"), "{page}");
    }

    #[test]
    fn interface_names_are_escaped_in_label_values() {
        let page = encode(
            snapshot(vec![interface("a\"b\\c", 2, Mode::Monitor)], 0),
            Format::Text,
        );
        assert!(
            page.contains("localnet_probe_exposed{interface=\"a\\\"b\\\\c\",ifindex=\"2\"} 0\n")
        );
    }

    #[test]
    fn a_thousand_interfaces_give_every_line() {
        let interfaces = (0..1000)
            .map(|n| interface(&format!("veth{n}"), n + 2, Mode::Monitor))
            .collect();
        let page = encode(snapshot(interfaces, 100), Format::Text);
        assert_eq!(samples(&page, "localnet_probe_packets_total").len(), 18_000);
        assert_eq!(samples(&page, "localnet_probe_samples_total").len(), 3_000);
        assert!(page.contains("localnet_probe_attached{interface=\"veth999\",ifindex=\"1001\",direction=\"ingress\",hook=\"xdp\",xdp_mode=\"native\",mode=\"monitor\"} 1\n"));
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
