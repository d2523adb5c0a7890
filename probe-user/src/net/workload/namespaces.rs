//! The other network namespaces as this one knows them: the id (`nsid`) this namespace gives
//! each (`RTM_GETNSID`, what `IFLA_LINK_NETNSID` of a veth names), their cookies (`NS_GET_ID`
//! on the namespace's file, the value `SO_NETNS_COOKIE` gives its sockets, Linux 6.18 and
//! newer), and the names of those `ip netns` keeps in /run/netns.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::Path,
};

use netlink_packet_core::{NLMSG_ERROR, NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    nsid::{NsidAttribute, NsidMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::net::rtnetlink;

use crate::net::names::name_of_bytes;

const NAMED: &str = "/run/netns";
/// `NS_GET_ID`, `_IOR(0xb7, 0xd, __u64)`: the namespace's 64-bit id, for a network namespace
/// its cookie.
// `Ioctl`: glibc takes the request as an unsigned long, musl as an int.
const NS_GET_ID: libc::Ioctl = 0x8008_b70d_u32 as libc::Ioctl;

/// How a namespace is reached to ask about it.
#[derive(Clone, Copy, Debug)]
pub enum Holder<'a> {
    /// A process in it.
    Pid(u32),
    /// A file that is it (a /run/netns bind mount).
    File(&'a Path),
}

/// An rtnetlink socket for asking the ids of namespaces, one question at a time.
pub struct NsidQuery {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl NsidQuery {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            sequence: 0,
            buffer: vec![0; 4096],
        })
    }

    /// The id this namespace gives the namespace `holder` is in; `None` when it has given none
    /// (no link here leads there).
    pub fn nsid(&mut self, holder: Holder<'_>) -> io::Result<Option<i32>> {
        let (message, _file) = naming(holder)?;
        self.ask(message)
    }

    /// Has the kernel give the namespace `holder` is in an id here, any free one
    /// (`RTM_NEWNSID`, as `ip netns set NAME auto`), and says it.
    pub fn assign(&mut self, holder: Holder<'_>) -> io::Result<Option<i32>> {
        let (mut message, _file) = naming(holder)?;
        message.attributes.push(NsidAttribute::Id(-1));
        self.sequence = self.sequence.wrapping_add(1);
        // No answer but an error; one comes under this sequence number, which the question
        // below skips (another process may have given it one meanwhile: asked anyway).
        rtnetlink::send(
            &self.socket,
            self.sequence,
            RouteNetlinkMessage::NewNsId(message),
            false,
        )?;
        self.nsid(holder)
    }

    /// Sends `message` (`RTM_GETNSID`) and reads the id answered.
    fn ask(&mut self, message: NsidMessage) -> io::Result<Option<i32>> {
        self.sequence = self.sequence.wrapping_add(1);
        rtnetlink::send(
            &self.socket,
            self.sequence,
            RouteNetlinkMessage::GetNsId(message),
            false,
        )?;
        loop {
            let received = self.socket.recv(&mut &mut self.buffer[..], 0)?;
            let answer = NetlinkBuffer::new_checked(&self.buffer[..received])
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
            if answer.sequence_number() != self.sequence {
                continue;
            }
            if answer.message_type() == NLMSG_ERROR {
                return Err(rtnetlink::error_of(answer.payload()));
            }
            let parsed =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buffer[..received])
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
            let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(answer)) = parsed.payload
            else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "RTM_GETNSID answered with something else",
                ));
            };
            return Ok(answer
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                    _ => None,
                }));
        }
    }
}

/// A message naming the namespace `holder` is in, and the file it names it by, open while the
/// message is sent.
fn naming(holder: Holder<'_>) -> io::Result<(NsidMessage, Option<File>)> {
    let mut message = NsidMessage::default();
    let file = match holder {
        Holder::Pid(pid) => {
            message.attributes.push(NsidAttribute::Pid(pid));
            None
        }
        Holder::File(path) => {
            let file = File::open(path)?;
            message
                .attributes
                .push(NsidAttribute::Fd(file.as_raw_fd().cast_unsigned()));
            Some(file)
        }
    };
    Ok((message, file))
}

/// The cookie of the namespace `holder` is in; `None` on kernels without `NS_GET_ID`.
pub fn cookie(holder: Holder<'_>) -> Option<u64> {
    let file = match holder {
        Holder::Pid(pid) => File::open(format!("/proc/{pid}/ns/net")),
        Holder::File(path) => File::open(path),
    }
    .ok()?;
    let mut id = 0u64;
    // SAFETY: NS_GET_ID writes one u64 to the address given, which is `id`'s.
    let done = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_ID, &raw mut id) };
    (done == 0).then_some(id)
}

/// The namespaces named in /run/netns, by inode: each name with every byte kept.
pub fn named() -> BTreeMap<u64, (String, std::path::PathBuf)> {
    let Ok(entries) = fs::read_dir(NAMED) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            // A file not yet mounted over is the empty file `ip netns add` makes first.
            let metadata = fs::metadata(&path).ok()?;
            let name = name_of_bytes(std::os::unix::ffi::OsStrExt::as_bytes(
                entry.file_name().as_os_str(),
            ));
            Some((metadata.ino(), (name, path)))
        })
        .collect()
}
