//! What a reading looks like to people and machines: the JSON objects `run` writes, built from a
//! [`Snapshot`] and the one before it (for rates), and the route_localnet changes it found. Every
//! view renders this same report.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use probe_common::{Action, Family, Framing, LoopbackMatch, SampleCounts, SlotCounters};
use serde::Serialize;

use crate::{
    exposure::firewall::FirewallChange,
    net::names::printable,
    net::route_localnet::{self, RouteLocalnet},
    net::workload::{Child, Workload},
    output::samples::{ArpHeader, SampledFrame, mac_string},
    output::senders::TopSenders,
    probe::TcxPrecededBy,
    probe::attachment::{AttachedMode, Hook, TcHook},
    session::{
        AttachedInterface, InterfaceSnapshot, RefusedInterface, SenderOrigin, Snapshot,
        totals::{Totals, total},
    },
};

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `counters`, to tell these objects from the events on the same stream.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unix time of the reading, in seconds.
    pub timestamp: f64,
    /// Seconds since the probe attached.
    pub elapsed_secs: f64,
    /// True for the last report, written as the probe detaches.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// `interfaces` lists every served interface. Compact objects (see [`super::compact`])
    /// list only those that changed since the previous object, and are full only now and then.
    pub full: bool,
    /// The interfaces served now, listed in `interfaces` or not.
    pub served: usize,
    pub interfaces: Vec<InterfaceReport>,
    /// Interfaces attached to (or taken over) since the previous object, each listed here once.
    pub attached: Vec<AttachedReport>,
    /// Interfaces that disappeared since the previous report, with their final counts; each is
    /// reported here once.
    pub removed: Vec<InterfaceReport>,
    /// Interfaces the selection asks for that could not be attached to (another XDP program,
    /// no room left, a driver that refuses), with why: neither counted nor filtered; tried
    /// again as interfaces change.
    pub refused: Vec<RefusedInterface>,
    /// Every interface served since the start, removed ones included.
    pub totals: Totals,
    /// The standing filter shown, in `status` objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standing_filter: Option<StandingReport>,
}

/// Where a standing filter is pinned and who serves it.
#[derive(Clone, Debug, Serialize)]
pub struct StandingReport {
    pub directory: String,
    /// Unix time it was first pinned, in seconds.
    pub pinned_at: u64,
    /// The `run --pin` serving it now ("pid N: command line"), `null` when none does: it goes
    /// on filtering and counting, without samples.
    pub served_by: Option<String>,
    /// Whether its pins go away with this mount namespace (a BPF file system mounted under `ip
    /// netns exec`), `null` when that cannot be told.
    pub pins_vanish: Option<bool>,
}

/// The classes an interface's counters can have: every match of a frame arriving, and with
/// `egress` every match with a loopback source of a frame leaving.
pub fn counted_classes(egress: bool) -> impl Iterator<Item = (LoopbackMatch, Action)> {
    LoopbackMatch::all()
        .flat_map(|matched| Action::ALL.map(|action| (matched, action)))
        .filter(move |(matched, action)| match action {
            Action::Passed | Action::Dropped => true,
            Action::Replied => egress && matched.counted_leaving(),
        })
}

/// An interface as it was attached to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttachedReport {
    pub name: String,
    pub ifindex: u32,
    pub hook: &'static str,
    /// `native` or `generic` at hook `xdp`, else `null`.
    pub xdp_mode: Option<&'static str>,
    pub mode: &'static str,
    /// Replies leaving the interface are counted (`run --egress`).
    pub egress: bool,
    /// Where they are counted: `tcx`, or `tc` (a clsact filter) on a kernel without tcx.
    pub egress_hook: Option<&'static str>,
    /// Taken over from a standing filter, which served it all along.
    pub adopted: bool,
}

impl AttachedReport {
    pub fn new(attached: &AttachedInterface) -> Self {
        Self {
            name: attached.name.clone(),
            ifindex: attached.ifindex,
            hook: attached.hook.name(),
            xdp_mode: attached.hook.xdp_mode().map(AttachedMode::name),
            mode: attached.mode.name(),
            egress: attached.egress.is_some(),
            egress_hook: attached.egress.map(TcHook::name),
            adopted: attached.adopted,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterfaceReport {
    pub name: String,
    pub ifindex: u32,
    pub mode: &'static str,
    /// Where arriving frames are counted: `xdp`, or beside another XDP program `tcx`, or `tc`
    /// (a clsact filter) on a kernel without tcx; `null` once the interface is gone.
    pub hook: Option<&'static str>,
    /// `native` or `generic` at hook `xdp`, else `null`.
    pub xdp_mode: Option<&'static str>,
    /// Replies leaving the interface are counted (`run --egress`).
    pub egress: bool,
    /// Where they are counted: `tcx`, or `tc` (a clsact filter) on a kernel without tcx; `null`
    /// without `egress`.
    pub egress_hook: Option<&'static str>,
    /// The ids of other programs that run before the probe's at the interface's tc hooks
    /// (`ingress`, `egress`), first to last: the frames they pass on to the stack or redirect
    /// are neither counted nor dropped. Empty where the probe runs first, as it attaches. (For
    /// clsact filters, 0 stands for a filter of another kind than cls_bpf.)
    pub tcx_preceded_by: TcxPrecededBy,
    /// `ethernet`, or `ip` on layer-3 devices (tun, wireguard).
    pub framing: &'static str,
    /// `null` when the interface has no IPv4 configuration to read.
    pub route_localnet: Option<RouteLocalnet>,
    /// This interface and the devices stacked on it whose effective route_localnet is 1.
    pub route_localnet_via: Vec<String>,
    /// route_localnet is in effect where this link's frames arrive and matched frames pass:
    /// loopback-bound services on this host are reachable from this link.
    pub exposed: bool,
    /// Frames with a loopback source left the interface: a loopback-bound service answered
    /// someone on this link. Worse than exposed: the exposure was used.
    pub exploited: bool,
    #[serde(flatten)]
    pub totals: Totals,
    /// Matched packets (arrived) per second over the last interval.
    pub packets_matched_per_sec: f64,
    pub bytes_matched_per_sec: f64,
    /// Non-zero classes only.
    pub by_class: Vec<ClassReport>,
    /// `null` when sampling is off.
    pub samples: Option<SamplesReport>,
    /// The senders with the most samples over the last minute (from samples, not every frame),
    /// most first; `null` when sampling is off.
    pub top_senders_sampled: Option<Vec<SenderReport>>,
    /// Who is behind the link, for a veth whose peer is in another namespace: that
    /// namespace, its first processes, the runtime, container and pod their cgroups name, and
    /// `unresolved` saying what could not be found; `null` for other interfaces.
    pub workload: Option<Arc<Workload>>,
    /// Its children in other namespaces (a macvlan or ipvlan given to a container: the frames
    /// to it arrive here first), each with its `workload`; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Child>,
}

/// What became of the matched frames' samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SamplesReport {
    /// Sent to the probe.
    pub emitted: u64,
    /// Not sent: the interface's samples per second were used up.
    pub suppressed: u64,
    /// Not sent: the ring buffer was full.
    pub lost: u64,
}

impl SamplesReport {
    /// What became of the samples when sampling is on (`None` when it is off): every matched
    /// frame is emitted, lost or suppressed.
    pub fn of(counters: &SlotCounters, sampling: bool) -> Option<Self> {
        // Replies are sampled too.
        let matched = total(counters, None).packets;
        let SampleCounts { emitted, lost } = counters.samples;
        sampling.then(|| Self {
            emitted,
            // Never below zero: the sample counts are read before the frame counters.
            suppressed: matched.saturating_sub(emitted + lost),
            lost,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SenderReport {
    /// `null` on layer-3 devices.
    pub source_mac: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub samples: u64,
    /// Who the host's neighbour table and bridges say the MAC is; absent when they say
    /// nothing of it (or have not been read yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<SenderOriginReport>,
}

/// Who a sender is by its MAC address, as the host's tables say: a frame's source IP may be
/// spoofed (127.0.0.1), its MAC is what the link delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SenderOriginReport {
    /// The IP addresses the neighbour table (ARP, NDP) holds for the MAC, those on the
    /// interface the frames arrived on first.
    pub neighbour_ips: Vec<IpAddr>,
    /// The bridge port the MAC was learned behind, when the frames arrived on a bridge or a
    /// port of one.
    pub bridge_port: Option<String>,
    pub bridge_port_ifindex: Option<u32>,
    /// The workload on that port's other end, in short (the port's own `workload` in the
    /// report has the whole account when the port is served).
    pub workload: Option<WorkloadRef>,
    #[serde(skip)]
    pub workload_summary: Option<String>,
}

impl SenderOriginReport {
    fn of(origin: SenderOrigin) -> Option<Self> {
        (!origin.is_unknown()).then(|| Self {
            neighbour_ips: origin.neighbour_ips,
            bridge_port_ifindex: origin.bridge_port.as_ref().map(|(ifindex, _)| *ifindex),
            bridge_port: origin.bridge_port.map(|(_, name)| name),
            workload: origin.workload.as_deref().map(WorkloadRef::of),
            workload_summary: origin.workload.map(|workload| workload.summary()),
        })
    }
}

impl SenderReport {
    /// The sender on one line for people, escaped:
    /// `02:4c:50:00:00:01 127.0.0.1 (5) = 198.18.0.2 behind vethX (containerd 3f4e8a1b2c9d)`.
    pub fn describe(&self) -> String {
        let ip = self
            .source_ip
            .map_or_else(|| "?".to_owned(), |ip| ip.to_string());
        let mut line = match &self.source_mac {
            Some(mac) => format!("{mac} {ip} ({})", self.samples),
            None => format!("{ip} ({})", self.samples),
        };
        if let Some(origin) = &self.origin {
            line.push_str(" =");
            if !origin.neighbour_ips.is_empty() {
                let ips: Vec<String> = origin.neighbour_ips.iter().map(IpAddr::to_string).collect();
                let _ = write!(line, " {}", ips.join(" "));
            }
            if let Some(port) = &origin.bridge_port {
                let _ = write!(line, " behind {}", printable(port));
            }
            if let Some(summary) = &origin.workload_summary {
                let _ = write!(line, " ({})", printable(summary));
            }
        }
        line
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClassReport {
    pub family: &'static str,
    pub address: &'static str,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

impl InterfaceReport {
    /// Who answered someone on this link from a loopback address, by the classes of the replies
    /// counted: a service (IP replies), or the kernel itself (ARP replies for 127.0.0.0/8).
    pub fn who_answered(&self) -> &'static str {
        let replied = |arp: bool| {
            self.by_class.iter().any(|class| {
                class.action == Action::Replied.name()
                    && (class.family == Family::Arp.name()) == arp
            })
        };
        match (replied(false), replied(true)) {
            (_, false) => "a service bound to 127.0.0.1 on this host answered someone on this link",
            (false, true) => {
                "this host answered ARP for a loopback address: someone on this link now knows \
                 that it routes 127.0.0.0/8 from the link (route_localnet)"
            }
            (true, true) => {
                "a service bound to 127.0.0.1 on this host answered someone on this link, and the \
                 host answered ARP for loopback addresses"
            }
        }
    }

    fn new(
        interface: &InterfaceSnapshot,
        previous: Option<&InterfaceSnapshot>,
        since: f64,
        sampling: bool,
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
            hook: interface.hook.map(Hook::name),
            xdp_mode: interface
                .hook
                .and_then(Hook::xdp_mode)
                .map(AttachedMode::name),
            egress: interface.egress.is_some(),
            egress_hook: interface.egress.map(TcHook::name),
            tcx_preceded_by: interface.tcx_preceded_by.clone(),
            framing: match interface.program {
                Framing::Ethernet => "ethernet",
                Framing::Ip => "ip",
            },
            route_localnet: interface.route_localnet,
            route_localnet_via: interface.route_localnet_via.clone(),
            exposed: interface.exposed,
            exploited: totals.packets_replied > 0,
            totals,
            packets_matched_per_sec: packets_rate,
            bytes_matched_per_sec: bytes_rate,
            by_class: counted_classes(true)
                .filter_map(|(matched, action)| {
                    let counter = interface.counters.get(matched, action);
                    (counter.packets != 0).then_some(ClassReport {
                        family: matched.family.name(),
                        address: matched.address_name(),
                        action: action.name(),
                        packets: counter.packets,
                        bytes: counter.bytes,
                    })
                })
                .collect(),
            samples: SamplesReport::of(&interface.counters, sampling),
            top_senders_sampled: sampling.then(Vec::new),
            workload: interface.workload.clone(),
            children: interface.children.clone(),
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
        let sampling = snapshot.sample_rate > 0;
        Self {
            kind: "counters",
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
            elapsed_secs: elapsed.as_secs_f64(),
            is_final,
            full: true,
            served: snapshot.interfaces.len(),
            attached: Vec::new(),
            interfaces: snapshot
                .interfaces
                .iter()
                .map(|interface| {
                    InterfaceReport::new(
                        interface,
                        before.get(&interface.ifindex).copied(),
                        since,
                        sampling,
                    )
                })
                .collect(),
            removed: snapshot
                .removed
                .iter()
                .map(|interface| InterfaceReport::new(interface, None, 0.0, sampling))
                .collect(),
            refused: snapshot.refused.clone(),
            totals: Totals::of(&all),
            standing_filter: None,
        }
    }

    /// Fills in each interface's `n` top senders (when sampling is on), each with what `origin`
    /// says of its MAC on that interface.
    pub fn add_top_senders(
        &mut self,
        senders: &TopSenders,
        n: usize,
        origin: impl Fn(u32, [u8; 6]) -> Option<SenderOrigin>,
    ) {
        for interface in &mut self.interfaces {
            let Some(top) = &mut interface.top_senders_sampled else {
                continue;
            };
            *top = senders
                .top(interface.ifindex, n)
                .into_iter()
                .map(|(sender, samples)| SenderReport {
                    source_mac: sender.mac.map(mac_string),
                    source_ip: sender.ip,
                    samples,
                    origin: sender
                        .mac
                        .and_then(|mac| origin(interface.ifindex, mac))
                        .and_then(SenderOriginReport::of),
                })
                .collect();
        }
    }
}

/// One sampled frame, as a JSON object on the report stream and as a line of text.
#[derive(Clone, Debug, Serialize)]
pub struct EventReport {
    /// `event`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unix time the program saw the frame, in seconds.
    pub timestamp: f64,
    pub interface: String,
    pub ifindex: u32,
    pub action: &'static str,
    /// `ingress`, or `egress` for a reply.
    pub direction: &'static str,
    pub family: &'static str,
    pub address: &'static str,
    pub source_mac: Option<String>,
    pub destination_mac: Option<String>,
    /// Outer first.
    pub vlans: Vec<u16>,
    pub source_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    /// `tcp`, `udp`, `icmp`, … or the protocol number.
    pub protocol: Option<String>,
    pub source_port: Option<u16>,
    pub destination_port: Option<u16>,
    /// As tcpdump writes them (`S`, `S.`, `P.`, …).
    pub tcp_flags: Option<String>,
    /// An IP fragment: no transport header to decode.
    pub fragment: bool,
    /// An ARP packet's operation and hardware addresses (its protocol addresses are
    /// `source_ip` and `destination_ip`).
    pub arp: Option<ArpEvent>,
    /// The whole frame's length.
    pub frame_len: u32,
    /// How much of it the sample holds (at most 128 bytes).
    pub captured_len: usize,
    /// Who is behind the interface, in short: the full account is the interface's `workload`
    /// in the report.
    pub workload: Option<WorkloadRef>,
    /// The device in another namespace a frame arriving at the interface was addressed to, by
    /// its destination MAC: a macvlan or macvtap child of the interface moved into a container
    /// (its `children` in the report). Absent otherwise, and for ipvlan children, which share
    /// their parent's MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_child: Option<ChildRef>,
    #[serde(skip)]
    at: SystemTime,
}

/// A child device an event's frame was addressed to, and who is behind it, in short.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChildRef {
    pub name: String,
    pub kind: String,
    pub workload: WorkloadRef,
}

/// The workload behind an event's interface, in short: what tells it from the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkloadRef {
    pub netns_inode: Option<u64>,
    pub runtime: Option<&'static str>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    /// The pod's name and Kubernetes namespace, as the CRI lists them.
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// The account is incomplete; the report's `workload` says why.
    pub unresolved: bool,
}

impl WorkloadRef {
    /// ` docker 3f4e8a1b2c9d pod shop/web-0`, each part where it is known, escaped.
    fn words(&self) -> String {
        let mut words = String::new();
        if let Some(id) = &self.container_id {
            let runtime = self.runtime.unwrap_or("container");
            let _ = write!(words, " {runtime} {}", printable(&id[..12.min(id.len())]));
        }
        if let Some(pod) = self.pod_named() {
            let _ = write!(words, " pod {}", printable(&pod));
        }
        words
    }

    /// The pod as `namespace/name`, or its UID where the CRI did not name it.
    fn pod_named(&self) -> Option<String> {
        match (&self.namespace, &self.pod, &self.pod_uid) {
            (Some(namespace), Some(pod), _) => Some(format!("{namespace}/{pod}")),
            (None, Some(pod), _) => Some(pod.clone()),
            (_, None, uid) => uid.clone(),
        }
    }

    pub fn of(workload: &Workload) -> Self {
        Self {
            netns_inode: workload.netns.as_ref().map(|netns| netns.inode),
            runtime: workload.attribution.runtime.map(|runtime| runtime.name()),
            container_id: workload.attribution.container_id.clone(),
            pod_uid: workload.attribution.pod_uid.clone(),
            pod: workload.names.pod.clone(),
            namespace: workload.names.namespace.clone(),
            unresolved: workload.unresolved.is_some(),
        }
    }
}

/// What an ARP packet said, in an [`EventReport`].
#[derive(Clone, Debug, Serialize)]
pub struct ArpEvent {
    /// `request`, `reply`, or the operation's number.
    pub operation: String,
    pub sender_mac: String,
    pub target_mac: String,
}

impl ArpEvent {
    fn new(header: &ArpHeader) -> Self {
        Self {
            operation: header.operation_name(),
            sender_mac: mac_string(header.sender_mac),
            target_mac: mac_string(header.target_mac),
        }
    }
}

impl EventReport {
    pub fn new(frame: &SampledFrame, interface: &str) -> Self {
        let headers = &frame.headers;
        Self {
            kind: "event",
            timestamp: frame
                .at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
            interface: interface.to_owned(),
            ifindex: frame.ifindex,
            action: frame.action.name(),
            direction: frame.action.direction(),
            family: frame.matched.family.name(),
            address: frame.matched.address_name(),
            source_mac: headers.source_mac.map(mac_string),
            destination_mac: headers.destination_mac.map(mac_string),
            vlans: headers.vlans.clone(),
            source_ip: headers.source_ip,
            destination_ip: headers.destination_ip,
            protocol: headers.protocol_name(),
            source_port: headers.source_port,
            destination_port: headers.destination_port,
            tcp_flags: headers.tcp_flags.map(|flags| flags.to_string()),
            fragment: headers.fragment,
            arp: headers.arp.as_ref().map(ArpEvent::new),
            frame_len: frame.frame_len,
            captured_len: frame.captured.len(),
            workload: None,
            to_child: None,
            at: frame.at,
        }
    }

    /// This event, naming the workload behind its interface.
    pub fn behind(mut self, workload: Option<&Workload>) -> Self {
        self.workload = workload.map(WorkloadRef::of);
        self
    }

    /// This event, naming the child of its interface, among `children`, that its frame was
    /// addressed to: the one macvlan or macvtap child with its destination MAC, for a frame
    /// arriving.
    pub fn addressed_to(mut self, children: &[Child]) -> Self {
        let Some(mac) = self
            .destination_mac
            .as_deref()
            .filter(|_| self.direction == "ingress")
        else {
            return self;
        };
        let mut addressed = children.iter().filter(|child| {
            matches!(child.kind.as_str(), "macvlan" | "macvtap")
                && child.mac.as_deref() == Some(mac)
        });
        if let (Some(child), None) = (addressed.next(), addressed.next()) {
            self.to_child = Some(ChildRef {
                name: child.name.clone(),
                kind: child.kind.clone(),
                workload: WorkloadRef::of(&child.workload),
            });
        }
        self
    }

    /// One line: time, interface, action, class, MACs, VLANs, addresses and ports, protocol,
    /// TCP flags, length.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} {} {} {}/{}",
            humantime::format_rfc3339_micros(self.at),
            printable(&self.interface),
            self.action,
            self.family,
            self.address
        );
        if let (Some(source), Some(destination)) = (&self.source_mac, &self.destination_mac) {
            let _ = write!(line, " {source} > {destination}");
        }
        for vlan in &self.vlans {
            let _ = write!(line, " vlan {vlan}");
        }
        if let Some(arp) = &self.arp {
            let (sender, target) = (
                endpoint(self.source_ip, None),
                endpoint(self.destination_ip, None),
            );
            // As tcpdump says them.
            let _ = match arp.operation.as_str() {
                "request" => write!(line, " arp who-has {target} tell {sender}"),
                "reply" => write!(line, " arp reply {sender} is-at {}", arp.sender_mac),
                other => write!(line, " arp operation {other} {sender} > {target}"),
            };
            let _ = write!(line, " len {}", self.frame_len);
            self.add_workload(&mut line);
            return line;
        }
        let _ = write!(
            line,
            " {} > {}",
            endpoint(self.source_ip, self.source_port),
            endpoint(self.destination_ip, self.destination_port)
        );
        if let Some(protocol) = &self.protocol {
            let _ = write!(line, " {protocol}");
        }
        if let Some(flags) = &self.tcp_flags {
            let _ = write!(line, " [{flags}]");
        }
        if self.fragment {
            line.push_str(" fragment");
        }
        let _ = write!(line, " len {}", self.frame_len);
        self.add_workload(&mut line);
        line
    }

    /// ` from docker 3f4e8a1b2c9d pod shop/web-0` (the pod's UID where its name is not known)
    /// when the interface's workload is known; ` to macvlan mv0 (containerd 71980646d367 pod
    /// shop/web-0)` when the frame was addressed to a child of the interface.
    fn add_workload(&self, line: &mut String) {
        if let Some(workload) = &self.workload {
            if workload.container_id.is_some() {
                line.push_str(" from");
            }
            line.push_str(&workload.words());
        }
        if let Some(child) = &self.to_child {
            let _ = write!(
                line,
                " to {} {}",
                printable(&child.kind),
                printable(&child.name)
            );
            let words = child.workload.words();
            if !words.is_empty() {
                let _ = write!(line, " ({})", words.trim_start());
            }
        }
    }
}

/// An address and port as written in an event line: `198.18.0.1:53`, `[fd00::1]:53`, the
/// address alone without a port, `?` without an address.
pub fn endpoint(ip: Option<IpAddr>, port: Option<u16>) -> String {
    match (ip, port) {
        (Some(IpAddr::V6(ip)), Some(port)) => format!("[{ip}]:{port}"),
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(ip), None) => ip.to_string(),
        (None, _) => "?".to_owned(),
    }
}

/// The served interfaces `snapshot` finds exposed.
fn exposed_now(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .interfaces
        .iter()
        .filter(|interface| interface.exposed)
        .map(|interface| interface.name.clone())
        .collect()
}

/// What exposure means now, after a change.
fn effect(exposed_now: &[String]) -> String {
    if exposed_now.is_empty() {
        "no served interface is exposed".to_owned()
    } else {
        format!("exposed now: {}", exposed_now.join(", "))
    }
}

/// A change of the nftables rules that drop loopback frames, said as a route_localnet change
/// is: a JSON object on the report stream, a warning and a line.
#[derive(Clone, Debug, Serialize)]
pub struct FirewallChangeReport {
    /// `firewall_change`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unix time of the reading that found the change, in seconds.
    pub timestamp: f64,
    #[serde(flatten)]
    pub change: FirewallChange,
    /// The served interfaces exposed after the change (each one's `exposed`).
    pub exposed_now: Vec<String>,
    #[serde(skip)]
    at: SystemTime,
}

impl FirewallChangeReport {
    /// `change`, found by `snapshot`, which says what is exposed now.
    pub fn new(change: &FirewallChange, snapshot: &Snapshot) -> Self {
        let at = SystemTime::now();
        Self {
            kind: "firewall_change",
            timestamp: at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
            change: change.clone(),
            exposed_now: exposed_now(snapshot),
            at,
        }
    }

    /// One sentence: what changed and what it means now.
    pub fn sentence(&self) -> String {
        printable(&format!(
            "{}; {}",
            self.change.clause(),
            effect(&self.exposed_now)
        ))
        .into_owned()
    }

    /// The sentence, after the time of the reading that found the change.
    pub fn line(&self) -> String {
        format!(
            "{} {}",
            humantime::format_rfc3339_seconds(self.at),
            self.sentence()
        )
    }
}

/// A route_localnet setting that changed, as a JSON object on the report stream and as a line.
#[derive(Clone, Debug, Serialize)]
pub struct SysctlChangeReport {
    /// `sysctl_change`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unix time of the reading that found the change, in seconds.
    pub timestamp: f64,
    /// `net.ipv4.conf.<all|default|if>.route_localnet`.
    pub sysctl: String,
    /// `all`, `default` or `interface`.
    pub scope: &'static str,
    /// The interface whose own setting changed; `null` for `all` and `default`.
    pub interface: Option<String>,
    pub ifindex: Option<u32>,
    pub old: u8,
    pub new: u8,
    /// The served interfaces exposed after the change (each one's `exposed`).
    pub exposed_now: Vec<String>,
    #[serde(skip)]
    at: SystemTime,
}

impl SysctlChangeReport {
    /// `change`, found by `snapshot`, which says what is exposed now.
    pub fn new(change: &route_localnet::Change, snapshot: &Snapshot) -> Self {
        Self {
            kind: "sysctl_change",
            timestamp: change
                .at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
            sysctl: change.sysctl(),
            scope: change.scope.name(),
            interface: change.interface.as_ref().map(|(name, _)| name.clone()),
            ifindex: change.interface.as_ref().map(|(_, ifindex)| *ifindex),
            old: u8::from(change.old),
            new: u8::from(change.new),
            exposed_now: exposed_now(snapshot),
            at: change.at,
        }
    }

    /// One sentence: the setting, old and new value, and what it means now; printable.
    pub fn sentence(&self) -> String {
        let effect = if self.scope == "default" {
            "interfaces created from now on start with it".to_owned()
        } else {
            effect(&self.exposed_now)
        };
        printable(&format!(
            "{} changed from {} to {}; {effect}",
            self.sysctl, self.old, self.new
        ))
        .into_owned()
    }

    /// The sentence, after the time of the reading that found the change.
    pub fn line(&self) -> String {
        format!(
            "{} {}",
            humantime::format_rfc3339_seconds(self.at),
            self.sentence()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_pod_is_named_by_the_cri_or_else_by_its_uid() {
        let uid = "0f7c1a9e-2b3d-4c5e-8f6a-7b8c9d0e1f2a";
        let reference = |namespace: Option<&str>, pod: Option<&str>| WorkloadRef {
            netns_inode: None,
            runtime: Some("containerd"),
            container_id: None,
            pod_uid: Some(uid.to_owned()),
            pod: pod.map(str::to_owned),
            namespace: namespace.map(str::to_owned),
            unresolved: false,
        };
        assert_eq!(
            reference(Some("shop"), Some("web-0"))
                .pod_named()
                .as_deref(),
            Some("shop/web-0")
        );
        assert_eq!(
            reference(None, Some("web-0")).pod_named().as_deref(),
            Some("web-0")
        );
        assert_eq!(
            reference(Some("shop"), None).pod_named().as_deref(),
            Some(uid)
        );
    }

    fn arriving_at(destination_mac: [u8; 6], action: Action) -> EventReport {
        let frame = SampledFrame {
            at: UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            ifindex: 7,
            matched: LoopbackMatch {
                family: Family::Ipv4,
                address: probe_common::Address::Destination,
            },
            action,
            framing: Framing::Ethernet,
            frame_len: 60,
            captured: bytes::Bytes::new(),
            headers: crate::output::samples::Headers {
                source_mac: Some([2, 0, 0, 0, 0, 1]),
                destination_mac: Some(destination_mac),
                source_ip: Some(IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1))),
                destination_ip: Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
                protocol: Some(17),
                source_port: Some(40000),
                destination_port: Some(6379),
                ..crate::output::samples::Headers::default()
            },
        };
        EventReport::new(&frame, "eth0")
    }

    fn child(name: &str, kind: &str, mac: &str, container: Option<&str>) -> Child {
        let mut workload = Workload::pending();
        workload.unresolved = None;
        workload.attribution.container_id = container.map(str::to_owned);
        workload.names.pod = Some("web-0".to_owned());
        workload.names.namespace = Some("shop".to_owned());
        Child {
            name: name.to_owned(),
            kind: kind.to_owned(),
            mac: Some(mac.to_owned()),
            workload: std::sync::Arc::new(workload),
        }
    }

    #[test]
    fn an_event_names_the_macvlan_child_its_frame_was_addressed_to_escaped() {
        let container = "71980646d367902e4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b";
        let children = [
            child(
                "mv\u{1b}[2J",
                "macvlan",
                "02:00:00:00:00:0a",
                Some(container),
            ),
            child("mv1", "macvlan", "02:00:00:00:00:0b", None),
            child("iv0", "ipvlan", "02:00:00:00:00:0c", None),
        ];
        let to_first = arriving_at([2, 0, 0, 0, 0, 0x0a], Action::Dropped).addressed_to(&children);
        let named = to_first.to_child.as_ref().expect("addressed to mv0");
        assert_eq!(named.kind, "macvlan");
        assert_eq!(named.workload.pod.as_deref(), Some("web-0"));
        assert!(
            to_first.line().ends_with(
                " len 60 to macvlan mv\\u{1b}[2J (container 71980646d367 pod shop/web-0)"
            ),
            "{}",
            to_first.line()
        );
        let json = serde_json::to_value(&to_first).expect("serializes");
        assert_eq!(json["to_child"]["name"], "mv\u{1b}[2J");
        assert_eq!(json["to_child"]["workload"]["namespace"], "shop");

        let to_second = arriving_at([2, 0, 0, 0, 0, 0x0b], Action::Passed).addressed_to(&children);
        assert!(
            to_second
                .line()
                .ends_with(" to macvlan mv1 (pod shop/web-0)"),
            "{}",
            to_second.line()
        );
        // An ipvlan child answers to its parent's MAC: a frame to it may be the parent's.
        for unclaimed in [[2, 0, 0, 0, 0, 0x0c], [2, 0, 0, 0, 0, 0x0d]] {
            let event = arriving_at(unclaimed, Action::Passed).addressed_to(&children);
            assert_eq!(event.to_child, None);
            assert!(!event.line().contains(" to "), "{}", event.line());
            let json = serde_json::to_value(&event).expect("serializes");
            assert!(json.get("to_child").is_none(), "{json}");
        }
        // Two children with one MAC: which of them is not known.
        let twins = [
            child("a", "macvlan", "02:00:00:00:00:0a", None),
            child("b", "macvtap", "02:00:00:00:00:0a", None),
        ];
        let ambiguous = arriving_at([2, 0, 0, 0, 0, 0x0a], Action::Passed).addressed_to(&twins);
        assert_eq!(ambiguous.to_child, None);
    }

    fn sender(origin: Option<SenderOriginReport>) -> SenderReport {
        SenderReport {
            source_mac: Some("02:00:00:00:00:01".to_owned()),
            source_ip: Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            samples: 5,
            origin,
        }
    }

    #[test]
    fn a_sender_is_described_with_what_the_tables_say_of_it_escaped() {
        assert_eq!(sender(None).describe(), "02:00:00:00:00:01 127.0.0.1 (5)");
        let origin = SenderOriginReport {
            neighbour_ips: vec!["198.18.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
            bridge_port: Some("veth\u{1b}[31m".to_owned()),
            bridge_port_ifindex: Some(7),
            workload: None,
            workload_summary: Some("containerd 3f4e8a1b2c9d\u{7}".to_owned()),
        };
        assert_eq!(
            sender(Some(origin)).describe(),
            "02:00:00:00:00:01 127.0.0.1 (5) = 198.18.0.2 fd00::2 behind veth\\u{1b}[31m \
             (containerd 3f4e8a1b2c9d\\u{7})"
        );
        let port_only = SenderOriginReport {
            neighbour_ips: Vec::new(),
            bridge_port: Some("nbu".to_owned()),
            bridge_port_ifindex: Some(8),
            workload: None,
            workload_summary: None,
        };
        assert_eq!(
            sender(Some(port_only)).describe(),
            "02:00:00:00:00:01 127.0.0.1 (5) = behind nbu"
        );
    }
}
