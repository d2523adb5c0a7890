//! Which services bound to IPv4 loopback a neighbour on each link can reach, without any XDP
//! program or traffic: the interfaces' route_localnet (and the settings that decide what else
//! passes), the loopback sockets and their processes, and what drops such frames there —
//! localnet-probe in drop mode at XDP or tcx ingress, read from the configuration map of the
//! program attached, or an nftables rule — and whether someone on a link already got answers:
//! the replies localnet-probe counted at tcx egress. [`Inputs::read`] reads the namespace,
//! [`audit`] gathers each link's facts and asks [`verdict::decide`] (as `run` and `status` do
//! with the facts they have), so every verdict is testable with made-up inputs.
//! `localnet-probe audit` renders the result.

mod advice;
mod findings;
pub mod firewall;
mod inputs;
pub mod installers;
pub(crate) mod iptables;
pub(crate) mod nft;
pub mod ruleset;
pub(crate) mod sockets;
pub mod verdict;

use self::findings::{EXPLOITED, interface_findings};
pub use self::{
    advice::pin_switching,
    findings::describe,
    inputs::{GlobalConf, Inputs, InputsError, ProbeOn, StandingInterface, TcxOn, XdpOn},
};

use std::{io, net::IpAddr};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use probe_common::{ConfigMap, Counter, IfaceConfig, LoopbackMatch, Mode, map_names};
use serde::Serialize;

use self::{
    installers::Installed,
    ruleset::Outcome,
    sockets::{BoundSocket, LoopbackService, Protocol, is_ipv4_loopback},
    verdict::{Decision, Drops, Firewall, LOCALNET_PROBE, LinkFacts, Verdict, decide},
};
use crate::{
    kernel::link::{self, Direction, Stage},
    kernel::processes::Holder,
    net::interfaces::{AttachMode, Interface, InterfaceError, Interfaces},
    net::names::NamePatterns,
    net::workload::{Child, Workload},
    net::{route_localnet, stacking::Uppers, sysctl},
    probe::filters,
    probe::occupant::{Attachment, Occupant, program_holders},
};

/// An interface's route_localnet in each place it is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RouteLocalnetAudit {
    pub all: bool,
    pub default: bool,
    pub iface: bool,
    pub effective: bool,
}

/// A setting as the interface has it, `all` has it, and what the kernel makes of both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub all: u32,
    pub iface: u32,
    pub effective: u32,
}

impl Setting {
    /// The kernel ORs some settings (accept_local, log_martians) and takes the larger of
    /// others (rp_filter, arp_ignore, arp_announce): for 0/1 values both are the maximum.
    fn max(all: u32, iface: u32) -> Self {
        Self {
            all,
            iface,
            effective: all.max(iface),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterfaceAudit {
    pub name: String,
    pub ifindex: u32,
    pub up: bool,
    /// `None` without IPv4 configuration.
    pub route_localnet: Option<RouteLocalnetAudit>,
    /// The devices, itself included, where route_localnet is in effect for this link's frames
    /// (a macvlan or VLAN child, a bridge it is a port of).
    pub route_localnet_via: Vec<String>,
    /// The projects here that set route_localnet on their own devices (CNI portmap, netavark),
    /// where it is set on a device in [`InterfaceAudit::route_localnet_via`].
    pub route_localnet_set_by: Vec<Installed>,
    pub rp_filter: Option<Setting>,
    pub accept_local: Option<Setting>,
    pub log_martians: Option<Setting>,
    pub arp_ignore: Option<Setting>,
    pub arp_announce: Option<Setting>,
    /// Whether the routing accepts a 127.0.0.0/8 source from this link once route_localnet is in
    /// effect: accept_local, or no reverse-path filter (then every 127.x but the host's own
    /// addresses, such as 127.0.0.1).
    pub loopback_sources_accepted: bool,
    /// localnet-probe's program for arriving frames: at XDP, or at tcx ingress beside another
    /// XDP program (when there are both, the one that drops, else the XDP one).
    pub localnet_probe: Option<ProbeOn>,
    /// Another XDP program's id, whose effect is not known here.
    pub other_xdp_program: Option<u32>,
    /// The id of an XDP program this user cannot identify (listing programs and their holders
    /// takes root): perhaps localnet-probe's, whose mode is then not known either.
    pub unidentified_xdp_program: Option<u32>,
    /// The ids of programs at the interface's tcx hooks this user cannot identify: perhaps
    /// localnet-probe's, whose mode and count of replies are then not known either.
    pub unidentified_tcx_programs: Vec<u32>,
    /// Frames with a loopback source seen leaving the interface — replies of a service bound
    /// to loopback — as localnet-probe counts them at tcx egress (`run --egress`) since its
    /// programs were loaded. `None` where they are not counted, or could not be read
    /// ([`InterfaceAudit::replies_unknown`] then says why); `Some(0)` where none left.
    pub replies_seen: Option<u64>,
    /// Why the replies could not be read where localnet-probe counts them.
    pub replies_unknown: Option<String>,
    /// Rules of the packet filter that drop loopback frames from this link: all of them, or
    /// those to one of its services.
    pub nft_drops: Vec<String>,
    pub verdict: Verdict,
    /// Indexes into [`Audit::sockets`] of the services reachable from this link.
    pub reachable: Vec<usize>,
    /// What happens to frames to any of 127.0.0.0/8 from this link.
    pub destinations: Outcome,
    /// A rule that drops them from other sources but spares a loopback source, which the routing
    /// accepts from this link.
    pub spared_by: Option<String>,
    /// What happens to the frames to each IPv4 loopback service its frames reach.
    pub services: Vec<ServiceVerdict>,
    /// Who is behind it, for a link whose other end is in another namespace.
    pub workload: Option<Workload>,
    /// Its children in other namespaces (macvlan, ipvlan), each with who is behind it; left
    /// out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Child>,
}

/// What happens to the frames from a link to one service bound to IPv4 loopback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceVerdict {
    /// Its index in [`Audit::sockets`].
    pub socket: usize,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    /// Counted in the exit status.
    Exposure,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// `exploited`, `reachable-services`, `loopback-source`, `latent`, `ipv6-loopback`,
    /// `mitigated`.
    pub kind: &'static str,
    pub interface: Option<String>,
    pub message: String,
    /// What to do, each a sentence with the command.
    pub remedies: Vec<String>,
    /// Who is behind the interface (its message names them too): the pod or container whose
    /// link this is.
    pub workload: Option<Workload>,
}

/// The whole answer.
#[derive(Clone, Debug, Serialize)]
pub struct Audit {
    pub all: GlobalConf,
    pub default: GlobalConf,
    pub interfaces: Vec<InterfaceAudit>,
    /// Loopback-bound services, and dual-stack UDP sockets.
    pub sockets: Vec<BoundSocket>,
    /// Whether every process could be inspected for the sockets' owners.
    pub saw_every_process: bool,
    /// `None` when the ruleset was read, why not otherwise.
    pub nft_unreadable: Option<String>,
    /// `None` when the interfaces' tcx hooks were queried, why not otherwise: localnet-probe
    /// there, and the replies it counts, are then not seen.
    pub tcx_unqueried: Option<String>,
    pub findings: Vec<Finding>,
}

impl Finding {
    /// This finding, naming the workload behind its interface, and its children's.
    fn behind(mut self, workload: Option<&Workload>, children: &[Child]) -> Self {
        if let Some(workload) = workload {
            self.message = format!("{} (workload: {})", self.message, workload.summary());
            self.workload = Some(workload.clone());
        }
        if !children.is_empty() {
            let named: Vec<String> = children.iter().map(Child::summary).collect();
            self.message = format!("{} (children: {})", self.message, named.join("; "));
        }
        self
    }
}

impl Audit {
    /// Whether any finding is an exposure (an exploited interface is one).
    pub fn exposed(&self) -> bool {
        self.findings
            .iter()
            .any(|finding| finding.severity == Severity::Exposure)
    }

    /// Whether any interface is [`Verdict::Exploited`].
    pub fn exploited(&self) -> bool {
        self.interfaces
            .iter()
            .any(|interface| interface.verdict == Verdict::Exploited)
    }
}

/// A UDP socket that receives IPv4 datagrams from other hosts: bound to an IPv4 address other
/// than loopback (the wildcard included), or to `::` or `::ffff:a.b.c.d` without IPV6_V6ONLY.
fn ipv4_udp(socket: &BoundSocket) -> bool {
    if socket.protocol != Protocol::Udp || is_ipv4_loopback(socket.local.ip()) {
        return false;
    }
    match socket.local.ip() {
        IpAddr::V4(_) => true,
        IpAddr::V6(address) => {
            address.to_ipv4_mapped().is_some()
                || (address.is_unspecified() && socket.v6only == Some(false))
        }
    }
}

/// Whether the routing check (`fib_validate_source`) lets a 127.x *source* in on a device with
/// these effective rp_filter and accept_local, once route_localnet is in effect there: without
/// reverse-path filtering every 127.x but the host's own addresses (such as 127.0.0.1) passes,
/// all of them with accept_local; loose filtering (2) passes them only with accept_local, as the
/// reverse route is local; strict filtering (1) never, as that route is not through the device.
pub fn loopback_source_passes(rp_filter: u32, accept_local: bool) -> bool {
    rp_filter == 0 || (rp_filter == 2 && accept_local)
}

/// Whether the routing accepts a 127.0.0.0/8 source from a link whose frames reach the stack
/// through the devices `via`, with `all`'s settings.
pub fn loopback_sources_accepted(via: &[&Interface], all: &GlobalConf) -> bool {
    via.iter().any(|receiver| {
        receiver.ipv4_conf.is_some_and(|conf| {
            loopback_source_passes(
                all.rp_filter.max(conf.rp_filter),
                all.accept_local.max(conf.accept_local) != 0,
            )
        })
    })
}

/// Audits the interfaces `only` matches (every one but loopback when `None`).
pub fn audit(inputs: &Inputs, only: Option<&NamePatterns>) -> Audit {
    let sockets: Vec<BoundSocket> = inputs
        .sockets
        .iter()
        .filter(|socket| {
            socket.local.ip().is_loopback()
                || is_ipv4_loopback(socket.local.ip())
                || ipv4_udp(socket)
        })
        .cloned()
        .collect();
    let uppers = Uppers::of(&inputs.interfaces);
    let chains = firewall::chains_or_unread(&inputs.nft);
    let nft_unreadable = inputs.nft.as_ref().err().cloned();
    let xdp_on = |ifindex: u32| {
        inputs
            .xdp
            .iter()
            .find(|(on, _)| *on == ifindex)
            .map(|(_, xdp)| xdp)
    };
    let (tcx, tcx_unqueried) = match &inputs.tcx {
        Ok(tcx) => (tcx.as_slice(), None),
        Err(why) => (&[][..], Some(why.clone())),
    };
    let tcx_on = |ifindex: u32| {
        tcx.iter()
            .find(|(on, _)| *on == ifindex)
            .map(|(_, tcx)| tcx)
    };
    let probe_drops = |ifindex: u32| {
        matches!(xdp_on(ifindex), Some(XdpOn::LocalnetProbe(probe)) if probe.drops())
            || tcx_on(ifindex)
                .and_then(|on| on.ingress.as_ref())
                .is_some_and(ProbeOn::drops)
    };
    let mut interfaces = Vec::new();
    let mut findings = Vec::new();
    for interface in &inputs.interfaces {
        if interface.loopback || only.is_some_and(|only| !only.matches(&interface.name)) {
            continue;
        }
        let via = uppers.route_localnet_via(interface, Some(inputs.all.route_localnet));
        let conf = interface.ipv4_conf;
        let setting = |all: u32, get: fn(&crate::net::interfaces::Ipv4Conf) -> u32| {
            conf.as_ref().map(|conf| Setting::max(all, get(conf)))
        };
        let rp_filter = setting(inputs.all.rp_filter, |conf| conf.rp_filter);
        let accept_local = setting(inputs.all.accept_local, |conf| conf.accept_local);
        let loopback_sources_accepted = loopback_sources_accepted(&via, &inputs.all);
        let drops = Drops {
            probe: &probe_drops,
            stacking: Some(&inputs.interfaces),
            firewall: Some(Firewall {
                ruleset: &chains,
                loopback_sources_accepted,
            }),
        };
        // The IPv4 loopback services, by their index in `sockets`.
        let (indexes, services): (Vec<usize>, Vec<LoopbackService>) = sockets
            .iter()
            .enumerate()
            .filter_map(|(index, socket)| Some((index, LoopbackService::of(socket)?)))
            .unzip();
        let tcx = tcx_on(interface.ifindex);
        // Replies counted before the egress program was detached stay in the counters the
        // program for arriving frames shares with it.
        let replies_kept = [
            match xdp_on(interface.ifindex) {
                Some(XdpOn::LocalnetProbe(probe)) => probe.replies,
                _ => None,
            },
            tcx.and_then(|on| on.ingress.as_ref())
                .and_then(|probe| probe.replies),
        ]
        .into_iter()
        .flatten()
        .max()
        .filter(|replies| *replies > 0);
        let (replies_seen, replies_unknown) =
            match (tcx.and_then(|on| on.replies.clone()), replies_kept) {
                (Some(Ok(replies)), kept) => (Some(replies.max(kept.unwrap_or(0))), None),
                (_, Some(kept)) => (Some(kept), None),
                (Some(Err(why)), None) => (None, Some(why)),
                (None, None) => (None, None),
            };
        let Decision {
            now,
            verdict,
            destinations,
            spared_by,
            sources_dropped,
            services: outcomes,
        } = decide(&LinkFacts {
            interface,
            via: &via,
            drops,
            services: Some(&services),
            replies_seen,
        });
        let services: Vec<ServiceVerdict> = indexes
            .iter()
            .zip(outcomes)
            .filter_map(|(index, outcome)| {
                Some(ServiceVerdict {
                    socket: *index,
                    outcome: outcome?,
                })
            })
            .collect();
        // Listed only where they are reachable now.
        let reachable = if now == Verdict::Exposed {
            services
                .iter()
                .filter(|service| !service.outcome.dropped())
                .map(|service| service.socket)
                .collect()
        } else {
            Vec::new()
        };
        let mut nft_drops: Vec<String> = std::iter::once(&destinations)
            .chain(services.iter().map(|service| &service.outcome))
            .filter_map(|outcome| match outcome {
                Outcome::Dropped(rule) if rule != LOCALNET_PROBE => Some(rule.clone()),
                _ => None,
            })
            .collect();
        nft_drops.sort();
        nft_drops.dedup();
        let (xdp_probe, other_xdp_program, unidentified_xdp_program) =
            match xdp_on(interface.ifindex) {
                Some(XdpOn::LocalnetProbe(probe)) => (Some(probe.clone()), None, None),
                Some(XdpOn::Other { id, .. }) => (None, Some(*id), None),
                Some(XdpOn::Unidentified { id }) => (None, None, Some(*id)),
                None => (None, None, None),
            };
        // Both only when a second `run` met the first one's program at tcx ingress once the XDP
        // hook was free again: the one that drops is what protects the link.
        let localnet_probe = match (xdp_probe, tcx.and_then(|on| on.ingress.clone())) {
            (Some(xdp), Some(tcx)) if tcx.drops() && !xdp.drops() => Some(tcx),
            (xdp, tcx) => xdp.or(tcx),
        };
        let audited = InterfaceAudit {
            name: interface.name.clone(),
            ifindex: interface.ifindex,
            up: interface.up,
            route_localnet: interface.route_localnet.map(|iface| RouteLocalnetAudit {
                all: inputs.all.route_localnet,
                default: inputs.default.route_localnet,
                iface,
                effective: route_localnet::effective(inputs.all.route_localnet, iface),
            }),
            route_localnet_via: via.iter().map(|receiver| receiver.name.clone()).collect(),
            route_localnet_set_by: if via
                .iter()
                .any(|receiver| receiver.route_localnet == Some(true))
            {
                chains.installers.clone()
            } else {
                Vec::new()
            },
            rp_filter,
            accept_local,
            log_martians: setting(inputs.all.log_martians, |conf| conf.log_martians),
            arp_ignore: setting(inputs.all.arp_ignore, |conf| conf.arp_ignore),
            arp_announce: setting(inputs.all.arp_announce, |conf| conf.arp_announce),
            loopback_sources_accepted,
            localnet_probe,
            other_xdp_program,
            unidentified_xdp_program,
            unidentified_tcx_programs: tcx.map(|on| on.unidentified.clone()).unwrap_or_default(),
            replies_seen,
            replies_unknown,
            nft_drops,
            verdict,
            reachable,
            destinations,
            spared_by,
            services,
            workload: inputs.workloads.get(&interface.ifindex).cloned(),
            children: inputs
                .children
                .get(&interface.ifindex)
                .cloned()
                .unwrap_or_default(),
        };
        findings.extend(
            interface_findings(
                &audited,
                now,
                &sockets,
                inputs,
                !sources_dropped && loopback_sources_accepted,
            )
            .into_iter()
            .map(|finding| finding.behind(audited.workload.as_ref(), &audited.children)),
        );
        interfaces.push(audited);
    }
    let ipv6_loopback: Vec<String> = sockets
        .iter()
        .filter(|socket| socket.local.ip() == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST))
        .map(BoundSocket::label)
        .collect();
    if !ipv6_loopback.is_empty() {
        findings.push(Finding {
            severity: Severity::Info,
            kind: "ipv6-loopback",
            interface: None,
            message: format!(
                "{} on ::1 not reachable from any link: Linux drops packets to or from ::1 that \
                 arrive on any interface but lo, whatever the sysctls",
                ipv6_loopback.join(", ")
            ),
            remedies: Vec::new(),
            workload: None,
        });
    }
    // Exploited interfaces first: the exposures that were used.
    findings.sort_by_key(|finding| {
        (
            std::cmp::Reverse(finding.severity),
            finding.kind != EXPLOITED,
        )
    });
    Audit {
        all: inputs.all,
        default: inputs.default,
        interfaces,
        sockets,
        saw_every_process: inputs.saw_every_process,
        nft_unreadable,
        tcx_unqueried,
        findings,
    }
}

#[cfg(test)]
mod tests;
