//! The network interfaces of this namespace, from one rtnetlink dump: names, link types, how
//! devices stack on each other, each one's own route_localnet, and any XDP program attached.
//!
//! A `run` reads this every tick, so the dump skips statistics and each message is read for the
//! few attributes used here only: parsing every attribute (IPv6 configuration and statistics
//! above all) would be most of the probe's CPU on a host with a thousand interfaces.

use std::io;

use netlink_packet_core::{NlaBuffer, NlasIterator, ParseableParametrized as _};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::{
        LinkAttribute, LinkExtentMask, LinkInfo, LinkLayerType, LinkMessage, LinkXdp, XdpAttached,
    },
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::net::rtnetlink;
use probe_common::Framing;
use thiserror::Error;

use crate::net::names::name_of_bytes;

#[derive(Debug, Error)]
pub enum InterfaceError {
    #[error("cannot open an rtnetlink socket: {0}")]
    Connect(io::Error),
    #[error("listing interfaces over rtnetlink failed: {0}")]
    List(io::Error),
    #[error("interfaces kept changing during every rtnetlink dump for {0:?}")]
    Changing(std::time::Duration),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name, every byte kept ([`name_of_bytes`]).
    pub name: String,
    pub ifindex: u32,
    pub up: bool,
    pub loopback: bool,
    /// What the device's frames start with; otherwise (ipip, gre, sit, ppp, infiniband, can,
    /// …) its ARPHRD number: generic XDP on such devices may start at an outer header, so
    /// localnet-probe does not attach there.
    pub framing: Result<Framing, u16>,
    /// The largest packet it sends, without the link-layer header; `None` when the kernel does
    /// not say.
    pub mtu: Option<u32>,
    /// The driver kind (`veth`, `macvlan`, `bridge`, `tun`, `ifb`, …), when it says.
    pub kind: Option<String>,
    /// The device this one receives its frames from, for stacked devices in this namespace
    /// (macvlan, ipvlan and VLAN children name their parent).
    pub lower: Option<u32>,
    /// The bridge, bond or team this device is a port of.
    pub master: Option<u32>,
    /// The id this namespace gives the namespace its link is in (`IFLA_LINK_NETNSID`), when
    /// that is another: a veth's peer, the parent of a macvlan moved here.
    pub link_netnsid: Option<i32>,
    /// `net.ipv4.conf.<name>.route_localnet`; `None` without IPv4 configuration.
    pub route_localnet: Option<bool>,
    /// The interface's other IPv4 settings that decide what arrives from its link; `None`
    /// without IPv4 configuration.
    pub ipv4_conf: Option<Ipv4Conf>,
    /// The XDP program attached to the interface, ours or another's.
    pub xdp: Option<AttachedProgram>,
    /// Its Ethernet address; `None` on devices without one.
    pub mac: Option<[u8; 6]>,
}

/// `net.ipv4.conf.<if>.*` values, besides route_localnet, that decide which frames with
/// loopback addresses the kernel accepts from a link and what it says about them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Ipv4Conf {
    /// 0 off, 1 strict, 2 loose reverse-path filtering.
    pub rp_filter: u32,
    /// Accept packets whose source is a local address.
    pub accept_local: u32,
    pub log_martians: u32,
    pub arp_ignore: u32,
    pub arp_announce: u32,
}

impl Ipv4Conf {
    /// `IPV4_DEVCONF_*` (from 1) of each field, as in `include/uapi/linux/ip.h`.
    const RP_FILTER: usize = 8;
    const LOG_MARTIANS: usize = 11;
    const ARP_ANNOUNCE: usize = 18;
    const ARP_IGNORE: usize = 19;
    const ACCEPT_LOCAL: usize = 23;

    /// Reads the fields from `IFLA_INET_CONF`, an array of u32 from `IPV4_DEVCONF_FORWARDING`
    /// (1) on.
    fn of(conf: &[u8]) -> Option<Self> {
        let at = |devconf: usize| u32_of(conf.get((devconf - 1) * 4..)?);
        Some(Self {
            rp_filter: at(Self::RP_FILTER)?,
            accept_local: at(Self::ACCEPT_LOCAL)?,
            log_martians: at(Self::LOG_MARTIANS)?,
            arp_ignore: at(Self::ARP_IGNORE)?,
            arp_announce: at(Self::ARP_ANNOUNCE)?,
        })
    }
}

/// An XDP program on an interface, as rtnetlink reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachedProgram {
    pub id: u32,
    pub mode: AttachMode,
}

/// Where an XDP program runs, which decides how `ip link` removes one attached through netlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
    Offload,
    /// Programs in more than one mode.
    Several,
}

impl AttachMode {
    /// The `ip link set dev IF … off` keyword that removes a netlink attachment in this mode.
    pub const fn ip_link_keyword(self) -> &'static str {
        match self {
            Self::Native => "xdpdrv",
            Self::Generic => "xdpgeneric",
            Self::Offload => "xdpoffload",
            Self::Several => "xdp",
        }
    }
}

#[cfg(test)]
impl Interface {
    /// An Ethernet device that is up, with IPv4 configuration and route_localnet off, standing
    /// alone: what tests start from.
    pub(crate) fn for_tests(name: &str, ifindex: u32) -> Self {
        Self {
            name: name.to_owned(),
            ifindex,
            up: true,
            loopback: false,
            framing: Ok(Framing::Ethernet),
            mtu: Some(1500),
            kind: None,
            lower: None,
            master: None,
            link_netnsid: None,
            route_localnet: Some(false),
            ipv4_conf: None,
            xdp: None,
            mac: None,
        }
    }
}

impl Interface {
    /// Whether frames that arrive on `other` reach the stack through this device too: this is
    /// a macvlan, ipvlan or VLAN child of `other`, or the bridge, bond or team it is a port of.
    pub fn is_stacked_on(&self, other: &Self) -> bool {
        let aggregates = matches!(self.kind.as_deref(), Some("bridge" | "bond" | "team"));
        self.lower == Some(other.ifindex) || (aggregates && other.master == Some(self.ifindex))
    }
}

pub(super) const RTM_NEWLINK: u16 = 16;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_XDP: u16 = 43;
const AF_INET: u16 = libc::AF_INET as u16;
const IFLA_INET_CONF: u16 = 1;
/// `IPV4_DEVCONF_ROUTE_LOCALNET` (26) as an index into `IFLA_INET_CONF`, an array of u32 from
/// `IPV4_DEVCONF_FORWARDING` (1) on.
const ROUTE_LOCALNET_INDEX: usize = 25;
/// `struct nlattr`, before an attribute's value.
const NLA_HEADER_LEN: usize = 4;
/// `struct ifinfomsg`, before the attributes.
const IFINFOMSG_LEN: usize = 16;
const IFF_UP: u32 = libc::IFF_UP as u32;
const IFF_LOOPBACK: u32 = libc::IFF_LOOPBACK as u32;
/// How long dumps that interfaces changing under them made inconsistent are retried: a burst of
/// new interfaces (a hundred veths from one `ip -batch`) takes about this long.
const DUMP_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// An rtnetlink socket, kept open across reads.
pub struct Interfaces {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl Interfaces {
    pub fn connect() -> Result<Self, InterfaceError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(InterfaceError::Connect)?;
        socket.bind_auto().map_err(InterfaceError::Connect)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(InterfaceError::Connect)?;
        Ok(Self {
            socket,
            sequence: 0,
            buffer: vec![0; 64 * 1024],
        })
    }

    /// Every interface in this network namespace, in ifindex order.
    /// Dumps made inconsistent by interfaces changing meanwhile are retried, with growing
    /// pauses, for [`DUMP_PATIENCE`]; then [`InterfaceError::Changing`].
    pub fn list(&mut self) -> Result<Vec<Interface>, InterfaceError> {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            if let Some(interfaces) = self.dump().map_err(InterfaceError::List)? {
                return Ok(interfaces);
            }
            if started.elapsed() >= DUMP_PATIENCE {
                return Err(InterfaceError::Changing(DUMP_PATIENCE));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(50));
        }
    }

    /// Every interface in this network namespace, in ifindex order, without waiting: a few
    /// dumps back to back, then [`InterfaceError::Changing`] for the caller to list again later.
    /// For a loop that must not block: [`Interfaces::list`] sleeps between its tries.
    pub fn list_now(&mut self) -> Result<Vec<Interface>, InterfaceError> {
        for _ in 0..3 {
            if let Some(interfaces) = self.dump().map_err(InterfaceError::List)? {
                return Ok(interfaces);
            }
        }
        Err(InterfaceError::Changing(std::time::Duration::ZERO))
    }

    /// One dump; `None` when the kernel marks it inconsistent.
    fn dump(&mut self) -> io::Result<Option<Vec<Interface>>> {
        let (links, consistent) = self.dump_links(None)?;
        let mut interfaces: Vec<Interface> = links.into_iter().map(|(link, _)| link).collect();
        interfaces.sort_by_key(|interface: &Interface| interface.ifindex);
        Ok(consistent.then_some(interfaces))
    }

    /// One dump of the links of this namespace, or with `in_nsid` of the namespace this one
    /// gives that id (`IFLA_TARGET_NETNSID`), each with its `IFLA_LINK` as given; whether the
    /// dump was consistent.
    fn dump_links(&mut self, in_nsid: Option<i32>) -> io::Result<(Vec<LinkWithParent>, bool)> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut request_message = LinkMessage::default();
        // Statistics are most of each message and nothing here reads them.
        request_message
            .attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        if let Some(nsid) = in_nsid {
            request_message
                .attributes
                .push(LinkAttribute::IfNetnsId(nsid));
        }
        let mut links = Vec::new();
        let consistent = rtnetlink::dump(
            &self.socket,
            &mut self.buffer,
            self.sequence,
            RouteNetlinkMessage::GetLink(request_message),
            RTM_NEWLINK,
            |payload| links.extend(parse(payload)),
        )?;
        Ok((links, consistent))
    }

    /// The macvlan, macvtap, ipvlan and ipvtap devices in the namespaces this one gives the
    /// ids `nsids` whose parent is a device of this one (a container given a child of the
    /// host's NIC), their links listed from here. `own_nsid` says, once the listings are done,
    /// the id this namespace gives itself (the kernel gives it one when it names a child's
    /// parent namespace from here).
    pub fn children_elsewhere(
        &mut self,
        nsids: &[i32],
        own_nsid: impl FnOnce() -> io::Result<Option<i32>>,
    ) -> io::Result<Vec<ChildElsewhere>> {
        let mut found = Vec::new();
        for &nsid in nsids {
            // A namespace gone since the ids were listed has no links to give.
            let Ok((links, _)) = self.dump_links(Some(nsid)) else {
                continue;
            };
            found.extend(links.into_iter().filter_map(|(link, parent)| {
                let kind = link.kind?;
                matches!(kind.as_str(), "macvlan" | "macvtap" | "ipvlan" | "ipvtap").then_some(
                    ChildElsewhere {
                        parent: parent?,
                        parent_nsid: link.link_netnsid?,
                        name: link.name,
                        kind,
                        mac: link.mac,
                        nsid,
                    },
                )
            }));
        }
        if found.is_empty() {
            return Ok(found);
        }
        let Some(own) = own_nsid()? else {
            return Ok(Vec::new());
        };
        found.retain(|child| child.parent_nsid == own && child.nsid != own);
        Ok(found)
    }
}

/// An interface and its `IFLA_LINK` as given ([`parse`]).
type LinkWithParent = (Interface, Option<u32>);

/// A child device in another namespace whose parent is here ([`Interfaces::children_elsewhere`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildElsewhere {
    /// The parent's ifindex here.
    pub parent: u32,
    /// The id the child's namespace names the parent's by, as this namespace numbers them.
    parent_nsid: i32,
    /// Its name in its namespace, every byte kept.
    pub name: String,
    pub kind: String,
    pub mac: Option<[u8; 6]>,
    /// The id this namespace gives the child's.
    pub nsid: i32,
}

/// The interface an `RTM_NEWLINK` or `RTM_DELLINK` payload is about: `ifi_index` of its
/// `struct ifinfomsg`.
pub(super) fn ifindex_of(payload: &[u8]) -> Option<u32> {
    let index = payload.get(4..8)?;
    Some(u32::from_ne_bytes(index.try_into().expect("4 bytes")))
}

/// Reads an `RTM_NEWLINK` payload: `struct ifinfomsg`, then attributes; with its `IFLA_LINK`
/// as given (its parent's ifindex, in the namespace `link_netnsid` names when that is another).
fn parse(payload: &[u8]) -> Option<(Interface, Option<u32>)> {
    let header = payload.get(..IFINFOMSG_LEN)?;
    let u32_at = |at: usize| u32::from_ne_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let link_type = u16::from_ne_bytes([header[2], header[3]]);
    let ifindex = ifindex_of(header)?;
    let flags = u32_at(8);
    let mut interface = Interface {
        name: String::new(),
        ifindex,
        up: flags & IFF_UP != 0,
        loopback: flags & IFF_LOOPBACK != 0,
        framing: match LinkLayerType::from(link_type) {
            LinkLayerType::Ether => Ok(Framing::Ethernet),
            LinkLayerType::None | LinkLayerType::Rawip => Ok(Framing::Ip),
            _ => Err(link_type),
        },
        mtu: None,
        kind: None,
        lower: None,
        master: None,
        link_netnsid: None,
        route_localnet: None,
        ipv4_conf: None,
        xdp: None,
        mac: None,
    };
    let mut lower_in_other_namespace = false;
    let mut named = false;
    let mut link = None;
    for attribute in NlasIterator::new(&payload[IFINFOMSG_LEN..]) {
        let attribute = attribute.ok()?;
        let value = attribute.value();
        match attribute.kind() {
            IFLA_IFNAME => {
                let name = value.split(|byte| *byte == 0).next().unwrap_or_default();
                interface.name = name_of_bytes(name);
                named = true;
            }
            IFLA_ADDRESS => interface.mac = value.try_into().ok(),
            IFLA_MTU => interface.mtu = u32_of(value),
            IFLA_LINK => {
                link = u32_of(value).filter(|lower| *lower != 0);
                interface.lower = link.filter(|lower| *lower != ifindex);
            }
            IFLA_MASTER => interface.master = u32_of(value).filter(|master| *master != 0),
            IFLA_LINK_NETNSID => {
                lower_in_other_namespace = true;
                interface.link_netnsid = u32_of(value)
                    .map(u32::cast_signed)
                    .filter(|nsid| *nsid >= 0);
            }
            IFLA_LINKINFO => {
                if let Ok(LinkAttribute::LinkInfo(infos)) =
                    LinkAttribute::parse_with_param(&attribute, AddressFamily::Unspec)
                {
                    interface.kind = infos.into_iter().find_map(|info| match info {
                        LinkInfo::Kind(kind) => Some(kind.to_string()),
                        _ => None,
                    });
                }
            }
            IFLA_AF_SPEC => {
                if let Some(conf) = inet_conf(value) {
                    interface.route_localnet = route_localnet(conf);
                    interface.ipv4_conf = Ipv4Conf::of(conf);
                }
            }
            IFLA_XDP => {
                if let Ok(LinkAttribute::Xdp(xdp)) =
                    LinkAttribute::parse_with_param(&attribute, AddressFamily::Unspec)
                {
                    interface.xdp = attached_program(&xdp);
                }
            }
            _ => {}
        }
    }
    // Only children see their parent's frames (a veth names its peer, a vxlan its underlay),
    // and a parent in another namespace has an ifindex that means nothing here.
    let child = matches!(
        interface.kind.as_deref(),
        Some("macvlan" | "macvtap" | "ipvlan" | "ipvtap" | "vlan")
    );
    if !child || lower_in_other_namespace {
        interface.lower = None;
    }
    named.then_some((interface, link))
}

fn u32_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.get(..4)?.try_into().ok()?))
}

/// `IFLA_AF_SPEC` → `AF_INET` → `IFLA_INET_CONF`, without reading the other families.
fn inet_conf(af_spec: &[u8]) -> Option<&[u8]> {
    let inet = NlasIterator::new(af_spec)
        .filter_map(Result::ok)
        .find(|family| family.kind() == AF_INET)?;
    let conf = NlasIterator::new(value_of(inet)?)
        .filter_map(Result::ok)
        .find(|attribute: &NlaBuffer<&[u8]>| attribute.kind() == IFLA_INET_CONF)?;
    value_of(conf)
}

/// An attribute's value, borrowed for as long as the message it is in.
fn value_of(attribute: NlaBuffer<&[u8]>) -> Option<&[u8]> {
    let length = usize::from(attribute.length());
    attribute.into_inner().get(NLA_HEADER_LEN..length)
}

fn route_localnet(conf: &[u8]) -> Option<bool> {
    let at = ROUTE_LOCALNET_INDEX * 4;
    u32_of(conf.get(at..)?).map(|value| value != 0)
}

fn attached_program(xdp: &[LinkXdp]) -> Option<AttachedProgram> {
    let mode = xdp.iter().find_map(|nla| match nla {
        LinkXdp::Attached(XdpAttached::Driver) => Some(AttachMode::Native),
        LinkXdp::Attached(XdpAttached::SocketBuffer) => Some(AttachMode::Generic),
        LinkXdp::Attached(XdpAttached::Hardware) => Some(AttachMode::Offload),
        LinkXdp::Attached(XdpAttached::None) => None,
        LinkXdp::Attached(_) => Some(AttachMode::Several),
        _ => None,
    })?;
    let id = xdp.iter().find_map(|nla| match nla {
        LinkXdp::ProgId(id) | LinkXdp::DrvProgId(id) | LinkXdp::SkbProgId(id) if *id != 0 => {
            Some(*id)
        }
        _ => None,
    })?;
    Some(AttachedProgram { id, mode })
}
