//! The sockets of this network namespace that wait for traffic: TCP listeners and unconnected
//! UDP sockets, from a sock_diag netlink dump, with the processes that hold them (found through
//! `/proc/<pid>/fd`).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs, io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    thread,
    time::Duration,
};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags, nlas::Nla},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};
use serde::Serialize;

use crate::kernel::processes::{self, Holder};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// A TCP listener or an unconnected UDP socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BoundSocket {
    pub protocol: Protocol,
    pub local: SocketAddr,
    /// IPV6_V6ONLY of an AF_INET6 socket; `None` for AF_INET ones.
    pub v6only: Option<bool>,
    /// The ifindex of the device it is bound to (SO_BINDTODEVICE), if any: it then receives
    /// only what arrives there.
    pub bound_device: Option<u32>,
    pub uid: u32,
    pub inode: u32,
    /// Processes with the socket open.
    pub processes: Vec<Holder>,
}

impl BoundSocket {
    /// `tcp 127.0.0.1:6379` or `udp6 [::1]:53`.
    pub fn label(&self) -> String {
        let six = if self.local.is_ipv6() { "6" } else { "" };
        format!("{}{six} {}", self.protocol.name(), self.local)
    }
}

/// Every TCP listener and unconnected UDP socket of both families, with their processes, and
/// whether every process could be inspected (a process this one may not inspect may hold one of
/// the sockets without being named).
pub fn bound_sockets() -> io::Result<(Vec<BoundSocket>, bool)> {
    let mut sockets = waiting_sockets()?;
    let inodes = sockets.iter().map(|socket| socket.inode).collect();
    let (mut holders, saw_every_process) = socket_holders(&inodes);
    for socket in &mut sockets {
        socket.processes = holders.remove(&socket.inode).unwrap_or_default();
    }
    Ok((sockets, saw_every_process))
}

/// A service bound to IPv4 loopback, as the verdicts need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopbackService {
    pub protocol: Protocol,
    pub address: Ipv4Addr,
    pub port: u16,
    /// The device it is bound to, if any: it receives only what arrives there.
    pub bound_device: Option<u32>,
}

impl LoopbackService {
    /// The service `socket` is, if it is bound to IPv4 loopback (the IPv4-mapped form too).
    pub fn of(socket: &BoundSocket) -> Option<Self> {
        let address = match socket.local.ip() {
            IpAddr::V4(address) => address,
            IpAddr::V6(address) => address.to_ipv4_mapped()?,
        };
        address.is_loopback().then_some(Self {
            protocol: socket.protocol,
            address,
            port: socket.local.port(),
            bound_device: socket.bound_device,
        })
    }
}

/// The services bound to IPv4 loopback, without their processes (a quick read: one sock_diag
/// dump, no walk of /proc).
pub fn loopback_services() -> io::Result<Vec<LoopbackService>> {
    Ok(waiting_sockets()?
        .iter()
        .filter_map(LoopbackService::of)
        .collect())
}

/// How often [`ServicesWatch`] reads the sockets again: a service that binds 127.0.0.1 turns a
/// latent link exposed within this.
const READ_EVERY: Duration = Duration::from_secs(1);

/// The services bound to IPv4 loopback as `run` and `status` know them: read at start and then
/// every second by a thread of its own (the loop that asks never waits for a dump), which ends
/// soon after the watch is dropped.
#[derive(Debug)]
pub struct ServicesWatch {
    latest: Arc<Mutex<Option<Vec<LoopbackService>>>>,
}

impl ServicesWatch {
    /// Reads the services and keeps reading them, in the network namespace of the calling
    /// thread.
    pub fn start() -> Self {
        let watch = Self::once();
        let shared = Arc::downgrade(&watch.latest);
        let spawned = thread::Builder::new()
            .name("services-watch".to_owned())
            .spawn(move || {
                loop {
                    thread::sleep(READ_EVERY);
                    let Some(latest) = shared.upgrade() else {
                        return;
                    };
                    let services = loopback_services().ok();
                    *latest.lock().unwrap_or_else(PoisonError::into_inner) = services;
                }
            });
        if let Err(error) = spawned {
            tracing::warn!("the loopback services are not followed: {error}");
        }
        watch
    }

    /// One reading, never updated: for a view read once.
    pub fn once() -> Self {
        Self {
            latest: Arc::new(Mutex::new(loopback_services().ok())),
        }
    }

    /// The latest reading; `None` when the sockets could not be read.
    pub fn latest(&self) -> Option<Vec<LoopbackService>> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Every TCP listener and unconnected UDP socket of both families.
fn waiting_sockets() -> io::Result<Vec<BoundSocket>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let mut sockets = Vec::new();
    for (protocol, states) in [
        (Protocol::Tcp, StateFlags::LISTEN),
        // Unconnected UDP sockets are in the CLOSE state, connected ones ESTABLISHED.
        (Protocol::Udp, StateFlags::CLOSE),
    ] {
        for family in [AF_INET, AF_INET6] {
            for response in dump(&mut socket, family, protocol, states.clone())? {
                sockets.push(BoundSocket {
                    protocol,
                    local: SocketAddr::new(
                        response.header.socket_id.source_address,
                        response.header.socket_id.source_port,
                    ),
                    v6only: (family == AF_INET6).then(|| {
                        response
                            .nlas
                            .iter()
                            .any(|nla| matches!(nla, Nla::SkV6Only(true)))
                    }),
                    bound_device: Some(response.header.socket_id.interface_id)
                        .filter(|ifindex| *ifindex != 0),
                    uid: response.header.uid,
                    inode: response.header.inode,
                    processes: Vec::new(),
                });
            }
        }
    }
    Ok(sockets)
}

/// One sock_diag dump of `family` and `protocol` sockets in `states`.
fn dump(
    socket: &mut Socket,
    family: u8,
    protocol: Protocol,
    states: StateFlags,
) -> io::Result<Vec<InetResponse>> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: match protocol {
                Protocol::Tcp => IPPROTO_TCP,
                Protocol::Udp => IPPROTO_UDP,
            },
            extensions: ExtensionFlags::empty(),
            states,
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);
    socket.send(&bytes, 0)?;
    let mut buffer = vec![0; 64 * 1024];
    let mut responses = Vec::new();
    loop {
        let received = socket.recv(&mut &mut buffer[..], 0)?;
        let mut offset = 0;
        while offset < received {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buffer[offset..received])
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(responses),
                NetlinkPayload::Error(error) => return Err(error.to_io()),
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    responses.push(*response);
                }
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length.next_multiple_of(4);
        }
    }
}

/// The processes holding each of `inodes` (`socket:[inode]` in `/proc/<pid>/fd`), and whether
/// every process could be inspected.
fn socket_holders(inodes: &BTreeSet<u32>) -> (BTreeMap<u32, Vec<Holder>>, bool) {
    let mut holders: BTreeMap<u32, Vec<Holder>> = BTreeMap::new();
    let saw_every_process = processes::walk(|process, fds| {
        let held: BTreeSet<u32> = fds
            .filter_map(Result::ok)
            .filter_map(|fd| socket_inode(&fs::read_link(fd.path()).ok()?.to_string_lossy()))
            .filter(|inode| inodes.contains(inode))
            .collect();
        if held.is_empty() {
            return;
        }
        let holder = process.holder();
        for inode in held {
            holders.entry(inode).or_default().push(holder.clone());
        }
    });
    (holders, saw_every_process)
}

/// The inode of a `socket:[12345]` link target.
fn socket_inode(target: &str) -> Option<u32> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Whether `address` is IPv4 loopback (127.0.0.0/8), as an IPv4 address or IPv4-mapped
/// (`::ffff:127.0.0.0/104`): frames to 127.0.0.0/8 reach it.
pub fn is_ipv4_loopback(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_socket_links() {
        assert_eq!(socket_inode("socket:[4026]"), Some(4026));
        assert_eq!(socket_inode("pipe:[4026]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn ipv4_loopback_includes_the_mapped_form() {
        for loopback in ["127.0.0.1", "127.3.2.1", "::ffff:127.0.0.1"] {
            assert!(is_ipv4_loopback(loopback.parse().unwrap()), "{loopback}");
        }
        for other in ["::1", "0.0.0.0", "::", "198.18.0.2", "::ffff:198.18.0.2"] {
            assert!(!is_ipv4_loopback(other.parse().unwrap()), "{other}");
        }
    }
}
