//! Which services bound to IPv4 loopback a neighbour on each link can reach, without any XDP
//! program or traffic: the interfaces' route_localnet (and the settings that decide what else
//! passes), the loopback sockets and their processes, and what drops such frames there —
//! localnet-probe in drop mode at XDP or tcx ingress, read from the configuration map of the
//! program attached, or an nftables rule — and whether someone on a link already got answers:
//! the replies localnet-probe counted at tcx egress. [`Inputs::read`] reads the namespace,
//! [`audit`] gathers each link's facts and asks [`verdict::decide`] (as `run` and `status` do
//! with the facts they have), so every verdict is testable with made-up inputs.
//! `localnet-probe audit` renders the result.

pub(crate) mod nft;
pub(crate) mod sockets;
pub mod verdict;

use std::{io, net::IpAddr};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use probe_common::{
    Address, Counter, IFINDEX_ARRAY_LEN, IfaceConfig, LoopbackMatch, Mode, map_names,
};
use serde::Serialize;

use self::{
    nft::NftDrop,
    sockets::{BoundSocket, Protocol, is_ipv4_loopback},
    verdict::{Decision, Drops, Firewall, LinkFacts, Verdict, decide},
};
use crate::{
    kernel::link::{self, Direction, Stage},
    kernel::processes::Holder,
    net::interfaces::{AttachMode, Interface, InterfaceError, Interfaces},
    net::names::NamePatterns,
    net::{route_localnet, stacking::Uppers, sysctl},
    probe::occupant::{Attachment, Occupant},
};

/// `net.ipv4.conf.{all,default}` values that matter here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GlobalConf {
    pub route_localnet: bool,
    pub rp_filter: u32,
    pub accept_local: u32,
    pub log_martians: u32,
    pub arp_ignore: u32,
    pub arp_announce: u32,
}

impl GlobalConf {
    /// `/proc/sys/net/ipv4/conf/<scope>/…`.
    pub fn read(scope: &str) -> io::Result<Self> {
        let value = |name: &str| sysctl::ipv4_conf(scope, name);
        Ok(Self {
            route_localnet: value("route_localnet")? != 0,
            rp_filter: value("rp_filter")?,
            accept_local: value("accept_local")?,
            log_martians: value("log_martians")?,
            arp_ignore: value("arp_ignore")?,
            arp_announce: value("arp_announce")?,
        })
    }
}

/// localnet-probe's program for arriving frames on an interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeOn {
    /// `xdp`, or `tcx` (at tcx ingress, beside another XDP program: `run --on-conflict tc`).
    /// Either counts and, in drop mode, drops the same frames.
    pub hook: &'static str,
    /// `standing` (pinned by `run --pin`) or `process` (a running `run`).
    pub how: &'static str,
    /// `native`, `generic`, `offload` or `several` at hook `xdp`; `None` at `tcx`.
    pub xdp_mode: Option<&'static str>,
    /// Processes holding its link.
    pub processes: Vec<Holder>,
    /// `monitor` or `drop`, as its configuration map says; `None` when it could not be read
    /// (then [`ProbeOn::mode_unknown`] says why) and no drop is assumed.
    pub mode: Option<&'static str>,
    pub mode_unknown: Option<String>,
    /// At tcx, the ids of the programs that run before it (attached before it since it went
    /// first): what they pass to the stack or redirect, it never sees, so its drop mode is not
    /// counted as a mitigation.
    pub preceded_by: Vec<u32>,
    /// The replies its counters hold for the interface (`run --egress` counts them in the same
    /// counters), when they can be read: evidence that outlives the egress program.
    #[serde(skip)]
    pub replies: Option<u64>,
}

impl ProbeOn {
    fn drops(&self) -> bool {
        self.mode == Some(Mode::Drop.name()) && self.preceded_by.is_empty()
    }
}

/// Why this network namespace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    #[error(transparent)]
    Interfaces(#[from] InterfaceError),
    #[error("cannot find this process's network namespace: {0}")]
    Namespace(io::Error),
}

/// Everything the verdicts are made from.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub interfaces: Vec<Interface>,
    pub all: GlobalConf,
    pub default: GlobalConf,
    pub sockets: Vec<BoundSocket>,
    /// Whether every process could be inspected for the sockets' owners.
    pub saw_every_process: bool,
    /// localnet-probe or another XDP program on an interface, by ifindex.
    pub xdp: Vec<(u32, XdpOn)>,
    /// localnet-probe at interfaces' tcx hooks, by ifindex (interfaces with nothing of it there
    /// left out), or why the hooks could not be queried.
    pub tcx: Result<Vec<(u32, TcxOn)>, String>,
    /// The nftables drops, or why the ruleset could not be read.
    pub nft: Result<Vec<NftDrop>, String>,
}

/// An XDP program on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XdpOn {
    LocalnetProbe(ProbeOn),
    /// Another program: what it does to loopback frames is not known here.
    Other {
        id: u32,
        name: Option<String>,
    },
    /// A program this process cannot tell anything about: it may list no program and see no
    /// process holding it (both take root). It may be localnet-probe's; no drop is assumed.
    Unidentified {
        id: u32,
    },
}

/// localnet-probe's programs at an interface's tcx hooks, and the programs there this process
/// cannot identify. Other programs are left out: what they do is not known here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcxOn {
    /// Its program at tcx ingress, for arriving frames.
    pub ingress: Option<ProbeOn>,
    /// Its program at tcx egress (`run --egress`): the frames with a loopback source it counted
    /// leaving, or why they could not be read.
    pub replies: Option<Result<u64, String>>,
    /// Programs at either hook this process cannot identify, as [`XdpOn::Unidentified`]:
    /// perhaps localnet-probe's; no drop and no count of replies is assumed.
    pub unidentified: Vec<u32>,
}

impl Inputs {
    /// Reads this network namespace.
    pub fn read() -> Result<Self, InputsError> {
        let interfaces = Interfaces::connect()?.list()?;
        let global = |scope| GlobalConf::read(scope).map_err(InputsError::Namespace);
        let (sockets, saw_every_process) =
            sockets::bound_sockets().map_err(InputsError::Namespace)?;
        let xdp = interfaces
            .iter()
            .filter_map(|interface| Some((interface.ifindex, xdp_on(interface)?)))
            .collect();
        let tcx = tcx_on(&interfaces);
        let nft = if which("nft") {
            nft::read_ruleset()
        } else {
            Err("nft is not installed".to_owned())
        };
        Ok(Self {
            all: global("all")?,
            default: global("default")?,
            interfaces,
            sockets,
            saw_every_process,
            xdp,
            tcx,
            nft,
        })
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The XDP program on `interface`, localnet-probe's with its mode when it is.
fn xdp_on(interface: &Interface) -> Option<XdpOn> {
    let occupant = Occupant::of(interface)?;
    if occupant.unidentifiable() {
        return Some(XdpOn::Unidentified {
            id: occupant.program_id,
        });
    }
    if !occupant.is_localnet_probe() {
        return Some(XdpOn::Other {
            id: occupant.program_id,
            name: occupant.program_name,
        });
    }
    let xdp_mode = match occupant.mode {
        AttachMode::Native => "native",
        AttachMode::Generic => "generic",
        AttachMode::Offload => "offload",
        AttachMode::Several => "several",
    };
    Some(XdpOn::LocalnetProbe(probe_on(
        occupant.program_id,
        interface.ifindex,
        Some(xdp_mode),
        occupant.holders,
        occupant.standing.is_some(),
        Vec::new(),
    )))
}

/// localnet-probe's program `program_id` for arriving frames on `ifindex`, at XDP in `xdp_mode`
/// or at tcx ingress (`None`), with its mode when its configuration map can be read.
fn probe_on(
    program_id: u32,
    ifindex: u32,
    xdp_mode: Option<&'static str>,
    processes: Vec<Holder>,
    standing: bool,
    preceded_by: Vec<u32>,
) -> ProbeOn {
    let (mode, mode_unknown) = match configured_mode(program_id, ifindex) {
        Ok(mode) => (Some(mode.name()), None),
        Err(why) => (None, Some(why)),
    };
    ProbeOn {
        hook: if xdp_mode.is_some() { "xdp" } else { "tcx" },
        how: if standing { "standing" } else { "process" },
        xdp_mode,
        processes,
        mode,
        mode_unknown,
        preceded_by,
        replies: replies_counted(program_id, ifindex).ok(),
    }
}

/// localnet-probe at the tcx hooks of `interfaces`, or why the hooks cannot be queried (that
/// takes CAP_NET_ADMIN).
fn tcx_on(interfaces: &[Interface]) -> Result<Vec<(u32, TcxOn)>, String> {
    let mut found = Vec::new();
    for interface in interfaces {
        let mut on = TcxOn::default();
        for direction in [Direction::Ingress, Direction::Egress] {
            let programs = match link::tcx_programs(interface.ifindex, direction) {
                Ok(programs) => programs,
                // Gone since it was listed: nothing is attached there any more.
                Err(error) if error.raw_os_error() == Some(libc::ENODEV) => Vec::new(),
                Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                    return Err(format!("querying them takes CAP_NET_ADMIN ({error})"));
                }
                Err(error) => {
                    return Err(format!(
                        "cannot query {}'s tcx {}: {error}",
                        interface.name,
                        direction.name()
                    ));
                }
            };
            for (position, &program_id) in programs.iter().enumerate() {
                let attachment =
                    Attachment::of(program_id, interface.ifindex, Stage::Tcx(direction));
                if attachment.unidentifiable() {
                    on.unidentified.push(program_id);
                } else if attachment.is_localnet_probe() {
                    match direction {
                        Direction::Ingress => {
                            on.ingress = Some(probe_on(
                                program_id,
                                interface.ifindex,
                                None,
                                attachment.holders,
                                attachment.standing.is_some(),
                                programs[..position].to_vec(),
                            ));
                        }
                        Direction::Egress => {
                            on.replies = Some(replies_counted(program_id, interface.ifindex));
                        }
                    }
                }
            }
        }
        if on != TcxOn::default() {
            found.push((interface.ifindex, on));
        }
    }
    Ok(found)
}

/// The ids of the maps of the program `program_id` (finding a program by its id takes
/// CAP_SYS_ADMIN).
fn map_ids_of(program_id: u32) -> Result<Vec<u32>, String> {
    let program = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|program| program.id() == program_id)
        .ok_or("its program is not listed (listing programs takes CAP_SYS_ADMIN)")?;
    program
        .map_ids()
        .map_err(|error| format!("cannot list its maps: {error}"))?
        .ok_or_else(|| "the kernel does not list a program's maps".to_owned())
}

/// The map called `name` in the object among `map_ids`. The kernel keeps the first 15 bytes of
/// a name (`IFACE_CONFIG_HIGH` is `IFACE_CONFIG_HI` there).
fn map_named(map_ids: &[u32], name: &str) -> Result<MapData, String> {
    let kernel_name = &name[..name.len().min(15)];
    map_ids
        .iter()
        .filter_map(|id| MapData::from_id(*id).ok())
        .find(|map| {
            map.info()
                .is_ok_and(|info| info.name_as_str() == Some(kernel_name))
        })
        .ok_or(format!("its map {name} is not found"))
}

/// `ifindex`'s configuration, configured or not, from the map of the program with `map_ids`.
fn iface_config(map_ids: &[u32], ifindex: u32) -> Result<IfaceConfig, String> {
    let wanted = if ifindex < IFINDEX_ARRAY_LEN {
        map_names::IFACE_CONFIG
    } else {
        map_names::IFACE_CONFIG_HIGH
    };
    let map = map_named(map_ids, wanted)?;
    let config: Result<IfaceConfig, _> = if ifindex < IFINDEX_ARRAY_LEN {
        Array::<_, IfaceConfig>::try_from(Map::Array(map)).and_then(|array| array.get(&ifindex, 0))
    } else {
        HashMap::<_, u32, IfaceConfig>::try_from(Map::HashMap(map))
            .and_then(|hash| hash.get(&ifindex, 0))
    };
    config.map_err(|error| format!("cannot read {wanted}: {error}"))
}

const NOT_CONFIGURED: &str = "the interface is not configured in its map";

/// What the program `program_id` does with matched frames on `ifindex`, from the configuration
/// map it reads itself.
fn configured_mode(program_id: u32, ifindex: u32) -> Result<Mode, String> {
    iface_config(&map_ids_of(program_id)?, ifindex)?
        .mode()
        .ok_or_else(|| NOT_CONFIGURED.to_owned())
}

/// The frames with a loopback source (or both addresses loopback) the egress program
/// `program_id` counted leaving `ifindex`, summed over the CPUs, from the counters it writes
/// itself: the interface's slot in its configuration map, [`probe_common::Action::Replied`].
fn replies_counted(program_id: u32, ifindex: u32) -> Result<u64, String> {
    let map_ids = map_ids_of(program_id)?;
    let config = iface_config(&map_ids, ifindex)?;
    // An entry not configured has slot 0, another interface's.
    if config.action().is_none() {
        return Err(NOT_CONFIGURED.to_owned());
    }
    let counters = PerCpuArray::<_, Counter>::try_from(Map::PerCpuArray(map_named(
        &map_ids,
        map_names::COUNTERS,
    )?))
    .map_err(|error| format!("cannot open {}: {error}", map_names::COUNTERS))?;
    let mut packets = 0;
    for matched in LoopbackMatch::all().filter(|matched| matched.address != Address::Destination) {
        let per_cpu = counters
            .get(&config.replied_key(matched), 0)
            .map_err(|error| format!("cannot read {}: {error}", map_names::COUNTERS))?;
        packets += per_cpu.iter().map(|counter| counter.packets).sum::<u64>();
    }
    Ok(packets)
}

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
    /// nftables rules that drop loopback frames from this link.
    pub nft_drops: Vec<String>,
    pub verdict: Verdict,
    /// Indexes into [`Audit::sockets`] of the services reachable from this link.
    pub reachable: Vec<usize>,
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
    let (nft_rules, nft_unreadable) = match &inputs.nft {
        Ok(drops) => (drops.as_slice(), None),
        Err(why) => (&[][..], Some(why.clone())),
    };
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
        let loopback_sources_accepted = via.iter().any(|receiver| {
            receiver.ipv4_conf.is_some_and(|conf| {
                loopback_source_passes(
                    inputs.all.rp_filter.max(conf.rp_filter),
                    inputs.all.accept_local.max(conf.accept_local) != 0,
                )
            })
        });
        let drops = Drops {
            probe: &probe_drops,
            stacking: Some(&inputs.interfaces),
            firewall: Some(Firewall {
                drops: nft_rules,
                loopback_sources_accepted,
            }),
        };
        let mut nft_drops: Vec<String> = via
            .iter()
            .flat_map(|receiver| {
                drops
                    .nft_on(interface, receiver, &|_| true)
                    .into_iter()
                    .map(NftDrop::label)
            })
            .collect();
        nft_drops.dedup();
        let reaches = |socket: &BoundSocket| {
            socket
                .bound_device
                .is_none_or(|device| via.iter().any(|receiver| receiver.ifindex == device))
        };
        let reachable: Vec<usize> = sockets
            .iter()
            .enumerate()
            .filter(|(_, socket)| is_ipv4_loopback(socket.local.ip()) && reaches(socket))
            .map(|(index, _)| index)
            .collect();
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
            sources_dropped,
        } = decide(&LinkFacts {
            interface,
            via: &via,
            drops,
            reachable_services: Some(reachable.len()),
            replies_seen,
        });
        // Listed only where they are reachable now.
        let reachable = if now == Verdict::Exposed {
            reachable
        } else {
            Vec::new()
        };
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
        };
        findings.extend(interface_findings(
            &audited,
            now,
            &sockets,
            inputs,
            !sources_dropped && loopback_sources_accepted,
        ));
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

/// `tcp 127.0.0.1:6379 (pid 812 redis-server)`.
pub fn describe(socket: &BoundSocket) -> String {
    let processes = if socket.processes.is_empty() {
        format!("uid {}, process not found", socket.uid)
    } else {
        socket
            .processes
            .iter()
            .map(|process| format!("pid {} {}", process.pid, process.command))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{} ({processes})", socket.label())
}

/// The kind of [`Verdict::Exploited`]'s finding.
const EXPLOITED: &str = "exploited";

/// Where route_localnet is set for the audited link's frames: `conf.all`, `conf.<device>`.
fn route_localnet_set_in(audited: &InterfaceAudit, inputs: &Inputs) -> Vec<String> {
    if audited.route_localnet.is_none() || audited.route_localnet_via.is_empty() {
        return Vec::new();
    }
    let mut set_in = Vec::new();
    if inputs.all.route_localnet {
        set_in.push("conf.all".to_owned());
    }
    set_in.extend(
        inputs
            .interfaces
            .iter()
            .filter(|i| {
                audited.route_localnet_via.contains(&i.name) && i.route_localnet == Some(true)
            })
            .map(|i| format!("conf.{}", i.name)),
    );
    set_in
}

/// The remedy that unsets route_localnet where `set_in` says it is set.
fn unset_route_localnet(set_in: &[String]) -> String {
    format!(
        "if nothing needs route_localnet (Docker or kube-proxy DNAT to 127.0.0.1 does), unset it: \
         {}",
        set_in
            .iter()
            .map(|scope| format!("sysctl -w net.ipv4.{scope}.route_localnet=0"))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// The remedy of localnet-probe dropping on the interface `name`.
fn drop_with_probe(audited: &InterfaceAudit) -> String {
    let name = &audited.name;
    match (&audited.localnet_probe, audited.other_xdp_program) {
        (Some(probe), _) => {
            let (how, pin) = if probe.how == "standing" {
                ("take its standing filter over in drop mode", " --pin")
            } else {
                ("stop it and start it again in drop mode", "")
            };
            format!(
                "drop frames with loopback addresses on {name} before the stack sees them, where \
                 localnet-probe ({} at {}) serves it already: {how}, localnet-probe run{pin} \
                 --drop-on {name}{}",
                probe.how,
                probe.hook,
                beside_other_xdp(audited)
            )
        }
        (None, Some(id)) => format!(
            "drop frames with loopback addresses on {name} before the stack sees them, beside \
             its XDP program {id}: localnet-probe run --drop-on {name} --on-conflict tc (with \
             --pin to keep it after exit)"
        ),
        (None, None) => format!(
            "drop frames with loopback addresses on {name} before the stack sees them: \
             localnet-probe run --drop-on {name} (with --pin to keep it after exit)"
        ),
    }
}

/// `--on-conflict tc`, where localnet-probe has to serve `audited` beside another XDP program.
fn beside_other_xdp(audited: &InterfaceAudit) -> &'static str {
    let at_tcx = audited
        .localnet_probe
        .as_ref()
        .map_or(audited.other_xdp_program.is_some(), |probe| {
            probe.hook == "tcx"
        });
    if at_tcx { " --on-conflict tc" } else { "" }
}

/// What drops frames to 127.0.0.0/8 from a mitigated link.
fn mitigated_by(audited: &InterfaceAudit) -> String {
    let by = audited
        .localnet_probe
        .as_ref()
        .filter(|probe| probe.drops())
        .map(|probe| {
            format!(
                "localnet-probe in drop mode ({}, {})",
                probe.hook, probe.how
            )
        })
        .into_iter()
        .chain(audited.nft_drops.iter().cloned())
        .collect::<Vec<_>>();
    if by.is_empty() {
        "localnet-probe in drop mode on a device it reaches".to_owned()
    } else {
        by.join(", ")
    }
}

/// The finding of an exploited interface, which says how it stands `now` (its verdict without
/// the replies). The replies are evidence whatever that state, so the finding is an exposure
/// even where a drop or an unset route_localnet stops new ones; its remedies are what is left to
/// do.
fn exploited_finding(audited: &InterfaceAudit, now: Verdict, inputs: &Inputs) -> Option<Finding> {
    let replies = audited
        .replies_seen
        .filter(|_| audited.verdict == Verdict::Exploited)?;
    let name = &audited.name;
    let stopped = "which stops new ones but not what was answered before";
    let state = match now {
        // `now` is never exploited: that is the verdict the replies make.
        Verdict::Exposed | Verdict::Exploited => "; the link is still exposed".to_owned(),
        Verdict::Latent => {
            "; nothing listens on IPv4 loopback now, but nothing drops such frames either"
                .to_owned()
        }
        Verdict::Mitigated => format!(
            "; {} drops frames to 127.0.0.0/8 from this link now, {stopped}",
            mitigated_by(audited)
        ),
        Verdict::NotExposed => {
            format!("; route_localnet is not in effect for its frames now, {stopped}")
        }
    };
    let mut remedies = Vec::new();
    if matches!(now, Verdict::Exposed | Verdict::Latent) {
        remedies.push(drop_with_probe(audited));
    }
    let set_in = route_localnet_set_in(audited, inputs);
    if !set_in.is_empty() {
        remedies.push(unset_route_localnet(&set_in));
    }
    remedies.push(format!(
        "see who tries, and whom it answered, in samples of the frames with loopback addresses \
         arriving or replied while dropping them: localnet-probe run --iface {name} --drop-on \
         {name}{} --egress --events (or --pcap FILE, for tcpdump); the replies already counted \
         are in the samples of the probe that counted them, where it shows them",
        beside_other_xdp(audited)
    ));
    Some(Finding {
        severity: Severity::Exposure,
        kind: EXPLOITED,
        interface: Some(name.clone()),
        message: format!(
            "localnet-probe counted {replies} frame(s) with a loopback source leaving {name}: a \
             service bound to loopback answered someone on this link, so the exposure was \
             used{state}; the count stands until localnet-probe's programs are loaded anew"
        ),
        remedies,
    })
}

fn interface_findings(
    audited: &InterfaceAudit,
    now: Verdict,
    sockets: &[BoundSocket],
    inputs: &Inputs,
    loopback_sources_pass: bool,
) -> Vec<Finding> {
    let name = &audited.name;
    let mut findings: Vec<Finding> = exploited_finding(audited, now, inputs)
        .into_iter()
        .collect();
    let set_in = route_localnet_set_in(audited, inputs);
    if set_in.is_empty() {
        return findings;
    }
    let why = format!(
        "route_localnet=1 ({}) routes 127.0.0.0/8 arriving on {name}{}",
        set_in.join(", "),
        if audited.route_localnet_via == [name.clone()] {
            String::new()
        } else {
            format!(" (through {})", audited.route_localnet_via.join(", "))
        }
    );
    let sysctl = unset_route_localnet(&set_in);
    let probe = format!("or {}", drop_with_probe(audited));
    let nft_rule = |address: &str| {
        format!(
            "or drop them with nftables: nft add table inet localnet_guard; nft add chain inet \
             localnet_guard prerouting '{{ type filter hook prerouting priority raw; }}'; nft add \
             rule inet localnet_guard prerouting iifname \"{}\" ip {address} 127.0.0.0/8 drop",
            audited.route_localnet_via.join("\", \"")
        )
    };
    let probe_state = match &audited.localnet_probe {
        Some(probe) if probe.mode.is_none() => format!(
            "; localnet-probe is attached there but its mode could not be read ({}), so no drop \
             is assumed",
            probe.mode_unknown.as_deref().unwrap_or("unknown")
        ),
        Some(probe) if !probe.drops() => "; localnet-probe only monitors there".to_owned(),
        None if audited.unidentified_xdp_program.is_some() => {
            "; an XDP program this user cannot identify is attached there (perhaps \
             localnet-probe's: run the audit as root to know), so no drop is assumed"
                .to_owned()
        }
        None if !audited.unidentified_tcx_programs.is_empty() => {
            "; a tcx program this user cannot identify is attached there (perhaps \
             localnet-probe's: run the audit as root to know), so no drop is assumed"
                .to_owned()
        }
        None => inputs
            .tcx
            .as_ref()
            .err()
            .map(|why| {
                format!(
                    "; the tcx hooks could not be queried ({why}), so localnet-probe there is not \
                     seen"
                )
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    let nft_state = inputs
        .nft
        .as_ref()
        .err()
        .map(|why| {
            format!("; the nftables ruleset could not be read ({why}), so no rule of it is counted")
        })
        .unwrap_or_default();
    match now {
        Verdict::Exposed => {
            let services: Vec<String> = audited
                .reachable
                .iter()
                .map(|index| describe(&sockets[*index]))
                .collect();
            findings.push(Finding {
                severity: Severity::Exposure,
                kind: "reachable-services",
                interface: Some(name.clone()),
                message: format!(
                    "{why} and nothing drops them{probe_state}{nft_state}: any neighbour on this \
                     link can reach {}",
                    services.join(", ")
                ),
                remedies: vec![
                    sysctl.clone(),
                    probe.clone(),
                    format!(
                        "{}; kubelet's rule in the input hook is the same idea: ip saddr != \
                         127.0.0.0/8 ip daddr 127.0.0.0/8 ct state != {{ established, related }} \
                         ct status != dnat drop",
                        nft_rule("daddr")
                    ),
                ],
            });
        }
        Verdict::Latent => findings.push(Finding {
            severity: Severity::Warning,
            kind: "latent",
            interface: Some(name.clone()),
            message: format!(
                "{why} and nothing drops them{probe_state}{nft_state}; nothing listens on IPv4 \
                 loopback now, but any service that binds 127.0.0.1 later is reachable from this \
                 link"
            ),
            remedies: vec![sysctl.clone(), probe.clone(), nft_rule("daddr")],
        }),
        Verdict::Mitigated => findings.push(Finding {
            severity: Severity::Info,
            kind: "mitigated",
            interface: Some(name.clone()),
            message: format!(
                "{why}, but {} drops frames to 127.0.0.0/8 from this link",
                mitigated_by(audited)
            ),
            remedies: vec![sysctl.clone()],
        }),
        // `now` is never exploited: its own finding is made above.
        Verdict::NotExposed | Verdict::Exploited => {}
    }
    let receivers: Vec<&Interface> = inputs
        .interfaces
        .iter()
        .filter(|i| audited.route_localnet_via.contains(&i.name))
        .collect();
    let udp: Vec<String> = sockets
        .iter()
        .filter(|socket| {
            ipv4_udp(socket)
                && socket
                    .bound_device
                    .is_none_or(|device| receivers.iter().any(|r| r.ifindex == device))
        })
        .map(describe)
        .collect();
    if loopback_sources_pass && !udp.is_empty() {
        // The check is made on the device the frames reach the stack through (for a bridge
        // port, the bridge), with the larger of its own and `all`'s rp_filter.
        // rp_filter is the larger of `all`'s and the device's, accept_local the OR of both: with
        // `all` at loose filtering a device cannot be made strict, but accept_local off refuses
        // the source as well.
        let strict: Vec<String> = receivers
            .iter()
            .map(|r| {
                let device = r.name.replace('.', "/");
                if inputs.all.rp_filter >= 2 {
                    format!(
                        "net.ipv4.conf.all.accept_local=0 net.ipv4.conf.{device}.accept_local=0"
                    )
                } else {
                    format!("net.ipv4.conf.{device}.rp_filter=1")
                }
            })
            .collect();
        findings.push(Finding {
            severity: Severity::Exposure,
            kind: "loopback-source",
            interface: Some(name.clone()),
            message: format!(
                "{why}, and with rp_filter={} and accept_local={} a 127.x *source* from this \
                 link passes the routing check: UDP services that receive IPv4 here ({}) take \
                 such a datagram as coming from a loopback peer, which code that trusts local \
                 peers believes",
                audited.rp_filter.map_or(0, |setting| setting.effective),
                audited.accept_local.map_or(0, |setting| setting.effective),
                udp.join(", ")
            ),
            remedies: vec![
                sysctl,
                format!(
                    "or make the routing check refuse a loopback source where the frames reach the \
                     stack: sysctl -w {}",
                    strict.join(" ")
                ),
                probe,
                nft_rule("saddr"),
            ],
        });
    }
    findings
}

#[cfg(test)]
mod tests;
