//! Who a sender's MAC address is, as this host knows it: the IP addresses the neighbour table
//! (ARP and NDP) holds for it, and the bridge port its bridge learned it on (the bridge's
//! forwarding database). Read by a thread of its own, and only while someone asks
//! ([`NeighbourWatch`]): at rest it costs nothing, and the loop that asks never waits.

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use netlink_packet_core::Parseable as _;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::net::rtnetlink;

const RTM_NEWNEIGH: u16 = 28;
/// How often the tables are read again while someone asks.
const READ_EVERY: Duration = Duration::from_secs(1);
/// Entries kept from each table: a table flooded with entries (a neighbour answering for a
/// whole subnet, a bridge learning random MACs) costs bounded memory; what is past the bound is
/// not told.
const MOST_ENTRIES: usize = 65_536;

/// An entry of the neighbour table: `ip` is at the MAC address on interface `ifindex`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub ifindex: u32,
}

/// A MAC address a bridge learned (or was told) is behind one of its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgePort {
    pub bridge: u32,
    pub port: u32,
}

/// The neighbour table and the bridges' forwarding databases of this namespace, by MAC.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Neighbours {
    ips: HashMap<[u8; 6], Vec<Neighbour>>,
    ports: HashMap<[u8; 6], Vec<BridgePort>>,
}

/// Where an interface a frame arrived on sits, for finding its sender.
#[derive(Clone, Copy, Debug)]
pub struct ArrivedOn {
    pub ifindex: u32,
    /// It is a bridge: its own forwarding database says which port the sender is behind.
    pub is_bridge: bool,
    /// The bridge it is a port of.
    pub master: Option<u32>,
}

/// What the tables say of one sender.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// The IP addresses the neighbour table holds for its MAC, those on the interface it arrived
    /// on first.
    pub ips: Vec<IpAddr>,
    /// The port of the bridge it arrived on (or of the bridge that interface is a port of) that
    /// the MAC was learned on.
    pub bridge_port: Option<u32>,
}

impl Neighbours {
    /// Reads both tables: one rtnetlink dump each. Blocking.
    pub fn read() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let mut neighbours = Self::default();
        let mut entries = 0;
        dump(&socket, AddressFamily::Unspec, 1, |message| {
            if let Some((mac, neighbour)) = neighbour_of(message)
                && entries < MOST_ENTRIES
            {
                entries += 1;
                neighbours.ips.entry(mac).or_default().push(neighbour);
            }
        })?;
        let mut entries = 0;
        dump(&socket, AddressFamily::Bridge, 2, |message| {
            if let Some((mac, port)) = bridge_port_of(message)
                && entries < MOST_ENTRIES
            {
                entries += 1;
                neighbours.ports.entry(mac).or_default().push(port);
            }
        })?;
        Ok(neighbours)
    }

    /// What the tables say of the sender `mac` of a frame that arrived on `arrived`.
    pub fn find(&self, mac: [u8; 6], arrived: ArrivedOn) -> Found {
        let mut neighbours: Vec<&Neighbour> = self.ips.get(&mac).into_iter().flatten().collect();
        neighbours.sort_by_key(|n| (n.ifindex != arrived.ifindex, n.ip));
        let mut ips: Vec<IpAddr> = neighbours.iter().map(|n| n.ip).collect();
        ips.dedup();
        let bridge = if arrived.is_bridge {
            Some(arrived.ifindex)
        } else {
            arrived.master
        };
        let bridge_port = bridge.and_then(|bridge| {
            self.ports
                .get(&mac)?
                .iter()
                .find(|entry| entry.bridge == bridge)
                .map(|entry| entry.port)
        });
        Found { ips, bridge_port }
    }
}

/// Dumps one table, handing every `RTM_NEWNEIGH` message's payload to `each`.
fn dump(
    socket: &Socket,
    family: AddressFamily,
    sequence: u32,
    each: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut request = NeighbourMessage::default();
    request.header.family = family;
    let mut buffer = vec![0; 64 * 1024];
    rtnetlink::dump(
        socket,
        &mut buffer,
        sequence,
        RouteNetlinkMessage::GetNeighbour(request),
        RTM_NEWNEIGH,
        each,
    )?;
    Ok(())
}

fn parse(payload: &[u8]) -> Option<NeighbourMessage> {
    NeighbourMessage::parse(payload).ok()
}

fn mac_in(message: &NeighbourMessage) -> Option<[u8; 6]> {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::LinkLayerAddress(mac) => mac.as_slice().try_into().ok(),
            _ => None,
        })
}

/// An IPv4 or IPv6 neighbour with a link-layer address (not one still being resolved or one
/// that failed).
fn neighbour_of(payload: &[u8]) -> Option<([u8; 6], Neighbour)> {
    let message = parse(payload)?;
    if matches!(
        message.header.state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    ) {
        return None;
    }
    let ip = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
            _ => None,
        })?;
    Some((
        mac_in(&message)?,
        Neighbour {
            ip,
            ifindex: message.header.ifindex,
        },
    ))
}

/// A forwarding database entry of a bridge for a MAC behind one of its ports. The ports' own
/// addresses (permanent entries) are the host's, not a sender's.
fn bridge_port_of(payload: &[u8]) -> Option<([u8; 6], BridgePort)> {
    let message = parse(payload)?;
    if message.header.state == NeighbourState::Permanent {
        return None;
    }
    let bridge = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::Controller(bridge) => Some(*bridge),
            _ => None,
        })?;
    Some((
        mac_in(&message)?,
        BridgePort {
            bridge,
            port: message.header.ifindex,
        },
    ))
}

#[derive(Debug, Default)]
struct Shared {
    latest: Mutex<Option<Arc<Neighbours>>>,
    asked: AtomicBool,
}

/// The tables, read again every second while someone asks; see the module.
#[derive(Debug)]
pub struct NeighbourWatch {
    shared: Arc<Shared>,
}

impl NeighbourWatch {
    pub fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let weak = Arc::downgrade(&shared);
        let spawned = thread::Builder::new()
            .name("neighbour-watch".to_owned())
            .spawn(move || {
                loop {
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    if shared.asked.swap(false, Ordering::Relaxed) {
                        match Neighbours::read() {
                            Ok(read) => {
                                *shared.latest.lock().unwrap_or_else(PoisonError::into_inner) =
                                    Some(Arc::new(read));
                            }
                            Err(error) => {
                                tracing::debug!("cannot read the neighbour tables: {error}");
                            }
                        }
                    }
                    drop(shared);
                    thread::sleep(READ_EVERY);
                }
            });
        if let Err(error) = spawned {
            tracing::warn!("senders are not looked up in the neighbour table: {error}");
        }
        Self { shared }
    }

    /// The tables as last read (`None` before the first reading), and a request to read them
    /// again. Never waits for a reading.
    pub fn latest(&self) -> Option<Arc<Neighbours>> {
        self.shared.asked.store(true, Ordering::Relaxed);
        self.shared
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn ip(last: u8) -> IpAddr {
        Ipv4Addr::new(198, 18, 0, last).into()
    }

    fn tables() -> Neighbours {
        let mut neighbours = Neighbours::default();
        neighbours.ips.insert(
            MAC,
            vec![
                Neighbour {
                    ip: ip(9),
                    ifindex: 7,
                },
                Neighbour {
                    ip: ip(19),
                    ifindex: 3,
                },
            ],
        );
        neighbours.ports.insert(
            MAC,
            vec![
                BridgePort {
                    bridge: 10,
                    port: 11,
                },
                BridgePort {
                    bridge: 20,
                    port: 21,
                },
            ],
        );
        neighbours
    }

    #[test]
    fn a_sender_is_found_by_its_mac_on_the_interface_it_arrived_on_first() {
        let arrived = ArrivedOn {
            ifindex: 3,
            is_bridge: false,
            master: None,
        };
        let found = tables().find(MAC, arrived);
        assert_eq!(found.ips, [ip(19), ip(9)]);
        assert_eq!(found.bridge_port, None);
        assert_eq!(tables().find([2, 0, 0, 0, 0, 8], arrived), Found::default());
    }

    #[test]
    fn a_bridge_names_the_port_behind_which_it_learned_the_sender() {
        let on_bridge = ArrivedOn {
            ifindex: 20,
            is_bridge: true,
            master: None,
        };
        assert_eq!(tables().find(MAC, on_bridge).bridge_port, Some(21));
        let on_a_port = ArrivedOn {
            ifindex: 12,
            is_bridge: false,
            master: Some(10),
        };
        assert_eq!(tables().find(MAC, on_a_port).bridge_port, Some(11));
        let elsewhere = ArrivedOn {
            ifindex: 30,
            is_bridge: true,
            master: None,
        };
        assert_eq!(tables().find(MAC, elsewhere).bridge_port, None);
    }

    #[test]
    fn this_namespace_tables_are_read() {
        // Any host has a neighbour table to dump, even an empty one.
        Neighbours::read().expect("dump the neighbour tables");
    }
}
