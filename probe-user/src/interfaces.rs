//! The network interfaces of this namespace, from one rtnetlink dump: names, link types, how
//! devices stack on each other, each one's own route_localnet, and any XDP program attached.

use futures::TryStreamExt as _;
use netlink_packet_route::link::{
    AfSpecInet, AfSpecUnspec, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkXdp,
    XdpAttached,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum InterfaceError {
    #[error("cannot open an rtnetlink socket: {0}")]
    Connect(std::io::Error),
    #[error("listing interfaces over rtnetlink failed: {0}")]
    List(rtnetlink::Error),
}

/// What a device's frames start with, which decides the program that can read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// An Ethernet header (ARPHRD_ETHER: NICs, veth, bridges, macvlan, …).
    Ethernet,
    /// The IP header itself (ARPHRD_NONE and ARPHRD_RAWIP: tun, wireguard).
    Ip,
    /// Anything else (ipip, gre, sit, ppp, infiniband, can, …), by ARPHRD number. Generic XDP on
    /// such devices may start at an outer header, so localnet-probe does not attach there.
    Unsupported(u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub up: bool,
    pub loopback: bool,
    pub framing: Framing,
    /// The driver kind (`veth`, `macvlan`, `bridge`, `tun`, `ifb`, …), when it says.
    pub kind: Option<String>,
    /// The device this one receives its frames from, for stacked devices in this namespace
    /// (macvlan, ipvlan and VLAN children name their parent).
    pub lower: Option<u32>,
    /// The bridge, bond or team this device is a port of.
    pub master: Option<u32>,
    /// `net.ipv4.conf.<name>.route_localnet`; `None` without IPv4 configuration.
    pub route_localnet: Option<bool>,
    /// Id of the XDP program attached to the interface, ours or another's.
    pub xdp_program_id: Option<u32>,
}

impl Interface {
    /// Whether frames that arrive on `other` reach the stack through this device too: this is
    /// a macvlan, ipvlan or VLAN child of `other`, or the bridge, bond or team it is a port of.
    pub fn is_stacked_on(&self, other: &Self) -> bool {
        let aggregates = matches!(self.kind.as_deref(), Some("bridge" | "bond" | "team"));
        self.lower == Some(other.ifindex) || (aggregates && other.master == Some(self.ifindex))
    }
}

/// An rtnetlink connection, kept open across reads.
pub struct Interfaces {
    handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Interfaces {
    /// Must be called inside a tokio runtime, which drives the connection.
    pub fn connect() -> Result<Self, InterfaceError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(InterfaceError::Connect)?;
        Ok(Self {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// Every interface in this network namespace, in ifindex order.
    pub async fn list(&self) -> Result<Vec<Interface>, InterfaceError> {
        let links: Vec<_> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(InterfaceError::List)?;
        let mut interfaces: Vec<Interface> = links.into_iter().filter_map(parse).collect();
        interfaces.sort_by_key(|interface| interface.ifindex);
        Ok(interfaces)
    }
}

impl Drop for Interfaces {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn parse(link: netlink_packet_route::link::LinkMessage) -> Option<Interface> {
    let header = link.header;
    let mut interface = Interface {
        name: String::new(),
        ifindex: header.index,
        up: header.flags.contains(LinkFlags::Up),
        loopback: header.flags.contains(LinkFlags::Loopback),
        framing: match header.link_layer_type {
            LinkLayerType::Ether => Framing::Ethernet,
            LinkLayerType::None | LinkLayerType::Rawip => Framing::Ip,
            other => Framing::Unsupported(other.into()),
        },
        kind: None,
        lower: None,
        master: None,
        route_localnet: None,
        xdp_program_id: None,
    };
    let mut lower_in_other_namespace = false;
    let mut named = false;
    for attribute in link.attributes {
        match attribute {
            LinkAttribute::IfName(name) => {
                interface.name = name;
                named = true;
            }
            LinkAttribute::Link(lower) if lower != 0 && lower != header.index => {
                interface.lower = Some(lower);
            }
            LinkAttribute::LinkNetNsId(_) => lower_in_other_namespace = true,
            LinkAttribute::Controller(master) if master != 0 => interface.master = Some(master),
            LinkAttribute::LinkInfo(infos) => {
                interface.kind = infos.into_iter().find_map(|info| match info {
                    LinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                });
            }
            LinkAttribute::AfSpecUnspec(specs) => {
                interface.route_localnet = specs.into_iter().find_map(|spec| match spec {
                    AfSpecUnspec::Inet(inet) => inet.into_iter().find_map(|nla| match nla {
                        AfSpecInet::DevConf(conf) => Some(conf.route_localnet != 0),
                        _ => None,
                    }),
                    _ => None,
                });
            }
            LinkAttribute::Xdp(xdp) => interface.xdp_program_id = attached_program(&xdp),
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
    named.then_some(interface)
}

fn attached_program(xdp: &[LinkXdp]) -> Option<u32> {
    let attached = xdp
        .iter()
        .any(|nla| matches!(nla, LinkXdp::Attached(mode) if *mode != XdpAttached::None));
    if !attached {
        return None;
    }
    xdp.iter().find_map(|nla| match nla {
        LinkXdp::ProgId(id) | LinkXdp::DrvProgId(id) | LinkXdp::SkbProgId(id) if *id != 0 => {
            Some(*id)
        }
        _ => None,
    })
}
