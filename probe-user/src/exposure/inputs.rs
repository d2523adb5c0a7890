//! What the audit reads of this network namespace: the global sysctls, the interfaces, the
//! loopback sockets, localnet-probe's programs and modes at XDP and tcx, and nftables.

use super::{ruleset::Ruleset, *};
use std::collections::BTreeMap;

use crate::{
    net::workload::{self, Children, WorkloadWatch, cri},
    probe::{Probe, pins::PinDir},
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
    /// `xdp`, or `tcx` (at tcx ingress, beside another XDP program: `run --on-conflict tc`),
    /// or `tc` (the same through a clsact filter, where the kernel has no tcx). Each counts
    /// and, in drop mode, drops the same frames.
    pub hook: &'static str,
    /// `standing` (pinned by `run --pin`, the pins visible here; for a clsact filter, the
    /// standing filter's), `pinned` (held by no process this one sees: pins of a BPF file
    /// system not mounted here, as under `ip netns exec`), `process` (a running `run`) or
    /// `leftover` (a clsact filter of a run killed by SIGKILL, which the next run removes).
    pub how: &'static str,
    /// `native`, `generic`, `offload` or `several` at hook `xdp`; `None` at `tcx` or `tc`.
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
    pub(super) fn drops(&self) -> bool {
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
    /// The packet filter's chains (nftables', iptables-legacy's), or why nftables' ruleset could
    /// not be read.
    pub nft: Result<Ruleset, String>,
    /// This namespace's standing filter as its pins have it (`None` when none is pinned, or its
    /// pins are not visible from this mount namespace), or why they could not be read: a
    /// `run --pin` the audit advises must keep it.
    pub standing: Result<Option<Vec<StandingInterface>>, String>,
    /// The workloads behind the links whose other end is in another namespace, by ifindex.
    pub workloads: BTreeMap<u32, Workload>,
    /// The children of the others in other namespaces (macvlan, ipvlan), by the parent's
    /// ifindex.
    pub children: Children,
}

/// An interface of the standing filter, with what a `run --pin` taking it over must give again
/// to keep it as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandingInterface {
    pub name: String,
    pub mode: Mode,
    /// Its replies are counted at tcx egress (`run --pin --egress`).
    pub egress: bool,
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
    /// Reads this network namespace, asking `cri` for the names of the pods behind interfaces
    /// (at most [`cri::WAIT`]).
    pub fn read(cri: &cri::Client) -> Result<Self, InputsError> {
        let interfaces = Interfaces::connect()?.list()?;
        let global = |scope| GlobalConf::read(scope).map_err(InputsError::Namespace);
        let (sockets, saw_every_process) =
            sockets::bound_sockets().map_err(InputsError::Namespace)?;
        let xdp = interfaces
            .iter()
            .filter_map(|interface| Some((interface.ifindex, xdp_on(interface)?)))
            .collect();
        let tcx = tcx_on(&interfaces);
        let nft = firewall::read();
        let standing = standing_interfaces(&interfaces);
        let (workloads, children) = workloads_behind(&interfaces, cri);
        Ok(Self {
            all: global("all")?,
            default: global("default")?,
            interfaces,
            sockets,
            saw_every_process,
            xdp,
            tcx,
            nft,
            standing,
            workloads,
            children,
        })
    }
}

/// The workload behind each interface whose peer is in another namespace, and the children of
/// the others there, as `status` reads them.
fn workloads_behind(
    interfaces: &[Interface],
    cri: &cri::Client,
) -> (BTreeMap<u32, Workload>, Children) {
    let peers: BTreeMap<u32, i32> = interfaces
        .iter()
        .filter_map(|interface| Some((interface.ifindex, workload::peer_nsid(interface)?)))
        .collect();
    let parents = interfaces
        .iter()
        .filter(|interface| workload::may_have_children(interface))
        .map(|interface| interface.ifindex)
        .collect();
    let watch = WorkloadWatch::once(peers, &parents, cri, cri::WAIT);
    let workloads = watch
        .latest()
        .iter()
        .map(|(ifindex, workload)| (*ifindex, (**workload).clone()))
        .collect();
    (workloads, (*watch.children()).clone())
}

/// The standing filter's interfaces here, read from its pins as `status` reads them.
fn standing_interfaces(interfaces: &[Interface]) -> Result<Option<Vec<StandingInterface>>, String> {
    let dir = PinDir::of_this_namespace()
        .map_err(|error| format!("cannot find this network namespace: {error}"))?;
    if dir.require_visible().is_err() {
        return Ok(None);
    }
    let Some(standing) = dir.standing().map_err(|error| error.to_string())? else {
        return Ok(None);
    };
    let (probe, _gone) =
        Probe::read_standing(dir, standing.capacity).map_err(|error| error.to_string())?;
    Ok(Some(
        probe
            .served()
            .filter_map(|(ifindex, _)| {
                // One moved to another namespace has no name here; a `run --pin` reports it
                // removed.
                let name = interfaces
                    .iter()
                    .find(|i| i.ifindex == ifindex)?
                    .name
                    .clone();
                Some(StandingInterface {
                    name,
                    mode: probe.mode(ifindex)?,
                    egress: probe
                        .attached_hook(ifindex)
                        .is_some_and(|(_, egress)| egress.is_some()),
                })
            })
            .collect(),
    ))
}

pub(crate) fn which(program: &str) -> bool {
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
        (occupant.program_id, interface.ifindex),
        (Some(xdp_mode), false),
        occupant.holders,
        occupant.standing.is_some(),
        Vec::new(),
    )))
}

/// localnet-probe's program `program_id` for arriving frames on `ifindex`, at XDP in `xdp_mode`
/// or at tc ingress (`None`; through a clsact filter with `clsact`), with its mode when its
/// configuration map can be read.
fn probe_on(
    (program_id, ifindex): (u32, u32),
    (xdp_mode, clsact): (Option<&'static str>, bool),
    processes: Vec<Holder>,
    standing: bool,
    preceded_by: Vec<u32>,
) -> ProbeOn {
    let (mode, mode_unknown) = match configured_mode(program_id, ifindex) {
        Ok(mode) => (Some(mode.name()), None),
        Err(why) => (None, Some(why)),
    };
    ProbeOn {
        hook: match (xdp_mode, clsact) {
            (Some(_), _) => "xdp",
            (None, false) => "tcx",
            (None, true) => "tc",
        },
        how: if standing {
            "standing"
        } else if processes.is_empty() && clsact {
            "leftover"
        } else if processes.is_empty() {
            // Held by no process: by a pin this mount namespace does not see.
            "pinned"
        } else {
            "process"
        },
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
                    Attachment::of(program_id, interface.ifindex, Stage::Tc(direction));
                if attachment.unidentifiable() {
                    on.unidentified.push(program_id);
                } else if attachment.is_localnet_probe() {
                    match direction {
                        Direction::Ingress => {
                            on.ingress = Some(probe_on(
                                (program_id, interface.ifindex),
                                (None, false),
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
        clsact_on(interface, &mut on)?;
        if on != TcxOn::default() {
            found.push((interface.ifindex, on));
        }
    }
    Ok(found)
}

/// localnet-probe's clsact filters on `interface` (where the kernel has no tcx), added to `on`.
fn clsact_on(interface: &Interface, on: &mut TcxOn) -> Result<(), String> {
    for direction in [Direction::Ingress, Direction::Egress] {
        let found = match filters::probes_at(interface.ifindex, direction) {
            Ok(found) => found,
            Err(error) if error.raw_os_error() == Some(libc::ENODEV) => None,
            Err(error) => {
                return Err(format!(
                    "cannot list {}'s clsact filters at {}: {error}",
                    interface.name,
                    direction.name()
                ));
            }
        };
        let Some((program_id, standing)) = found else {
            continue;
        };
        match direction {
            Direction::Ingress => {
                let (holders, _) = program_holders(program_id);
                let preceded_by =
                    filters::preceding(interface.ifindex, program_id).unwrap_or_default();
                on.ingress = Some(probe_on(
                    (program_id, interface.ifindex),
                    (None, true),
                    holders,
                    standing,
                    preceded_by,
                ));
            }
            Direction::Egress => {
                on.replies = Some(replies_counted(program_id, interface.ifindex));
            }
        }
    }
    Ok(())
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
    let wanted = ConfigMap::of(ifindex);
    let map = map_named(map_ids, wanted.name())?;
    let config: Result<IfaceConfig, _> = match wanted {
        ConfigMap::Array => Array::<_, IfaceConfig>::try_from(Map::Array(map))
            .and_then(|array| array.get(&ifindex, 0)),
        ConfigMap::High => HashMap::<_, u32, IfaceConfig>::try_from(Map::HashMap(map))
            .and_then(|hash| hash.get(&ifindex, 0)),
    };
    config.map_err(|error| format!("cannot read {}: {error}", wanted.name()))
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
    for matched in LoopbackMatch::all().filter(|matched| matched.counted_leaving()) {
        let per_cpu = counters
            .get(&config.leaving(matched).counter_key(), 0)
            .map_err(|error| format!("cannot read {}: {error}", map_names::COUNTERS))?;
        packets += per_cpu.iter().map(|counter| counter.packets).sum::<u64>();
    }
    Ok(packets)
}
