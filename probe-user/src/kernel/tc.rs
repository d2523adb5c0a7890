//! Classic tc, for kernels without tcx (before Linux 6.6): the clsact qdisc, and direct-action
//! cls_bpf filters on its ingress and egress, over rtnetlink. Unlike a link, a filter belongs to
//! no process: it stays until it is deleted, so every filter made here is deleted by whoever
//! owns it (see `crate::probe::filters`).
//!
//! Not aya's `SchedClassifier` netlink attachment: it names the interface rather than its
//! ifindex (a device renamed in between would be another), detaches when its link is dropped (a
//! standing filter's must stay), and cannot list the filters of an interface, which finding a
//! dead run's filters takes.

use std::{cell::RefCell, io};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, ParseableParametrized as _,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcHeader, TcMessage, TcOption},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::kernel::link::Direction;

/// The qdisc's kind, and the filter's.
const CLSACT: &str = "clsact";
const CLS_BPF: &str = "bpf";
/// `ETH_P_ALL` in network byte order, as a filter's protocol: every frame.
const ALL_PROTOCOLS: u16 = (libc::ETH_P_ALL as u16).to_be();

/// A filter on an interface's clsact qdisc, as a dump shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterInfo {
    pub priority: u16,
    pub handle: u32,
    /// `bpf`, `matchall`, `u32`, …
    pub kind: String,
    /// For a cls_bpf filter, the name its maker gave the program, and the program's id.
    pub bpf_name: Option<String>,
    pub program_id: Option<u32>,
}

/// Where a filter is: an interface's clsact ingress or egress, at a priority, with a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterPlace {
    pub ifindex: u32,
    pub direction: Direction,
    pub priority: u16,
    pub handle: u32,
}

impl FilterPlace {
    fn header(self) -> TcHeader {
        TcHeader {
            index: self.ifindex as i32,
            handle: TcHandle::from(self.handle),
            parent: parent(self.direction),
            info: (u32::from(self.priority) << 16) | u32::from(ALL_PROTOCOLS),
            ..TcHeader::default()
        }
    }
}

/// The clsact qdisc's ingress or egress, as a filter's parent.
fn parent(direction: Direction) -> TcHandle {
    TcHandle {
        major: TcHandle::CLSACT.major,
        minor: match direction {
            Direction::Ingress => TcHandle::MIN_INGRESS,
            Direction::Egress => TcHandle::MIN_EGRESS,
        },
    }
}

/// The clsact qdisc of `ifindex`, as a message names it.
fn clsact(ifindex: u32) -> TcMessage {
    let header = TcHeader {
        index: ifindex as i32,
        handle: TcHandle {
            major: TcHandle::CLSACT.major,
            minor: 0,
        },
        parent: TcHandle::CLSACT,
        ..TcHeader::default()
    };
    TcMessage::from_parts(header, vec![TcAttribute::Kind(CLSACT.to_owned())])
}

/// Adds a clsact qdisc to `ifindex`: true if it added one, false if one was there. Another
/// qdisc in its place (`ingress`) is an error.
pub fn add_clsact(ifindex: u32) -> io::Result<bool> {
    let message = RouteNetlinkMessage::NewQueueDiscipline(clsact(ifindex));
    match request(message, NLM_F_CREATE | NLM_F_EXCL) {
        Ok(()) => Ok(true),
        Err(error) if error.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Deletes `ifindex`'s clsact qdisc, and with it every filter on it: the caller makes sure none
/// is another's.
pub fn delete_clsact(ifindex: u32) -> io::Result<()> {
    request(RouteNetlinkMessage::DelQueueDiscipline(clsact(ifindex)), 0)
}

/// Puts the program behind `program_fd` in a direct-action cls_bpf filter at `place`, named
/// `name`: a new filter (an error if one is there), or with `replace` in the filter there,
/// which then runs the new program from the next frame on (an error if none is there).
pub fn attach(
    place: FilterPlace,
    program_fd: std::os::fd::BorrowedFd<'_>,
    name: &str,
    replace: bool,
) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let options = vec![
        TcOption::Bpf(TcFilterBpfOption::ProgFd(program_fd.as_raw_fd() as u32)),
        TcOption::Bpf(TcFilterBpfOption::ProgName(name.to_owned())),
        TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
    ];
    let message = TcMessage::from_parts(
        place.header(),
        vec![
            TcAttribute::Kind(CLS_BPF.to_owned()),
            TcAttribute::Options(options),
        ],
    );
    let flags = if replace {
        0
    } else {
        NLM_F_CREATE | NLM_F_EXCL
    };
    request(RouteNetlinkMessage::NewTrafficFilter(message), flags)
}

/// Deletes the cls_bpf filter at `place`; one that is not there (its interface or qdisc gone
/// with it) is no error.
pub fn delete(place: FilterPlace) -> io::Result<()> {
    let message =
        TcMessage::from_parts(place.header(), vec![TcAttribute::Kind(CLS_BPF.to_owned())]);
    match request(RouteNetlinkMessage::DelTrafficFilter(message), 0) {
        Err(error)
            if matches!(
                error.raw_os_error(),
                Some(libc::ENOENT | libc::ENODEV | libc::EINVAL)
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The filters on `ifindex`'s clsact qdisc in `direction`, in the order they run; none without
/// the qdisc.
pub fn filters(ifindex: u32, direction: Direction) -> io::Result<Vec<FilterInfo>> {
    let header = TcHeader {
        index: ifindex as i32,
        parent: parent(direction),
        ..TcHeader::default()
    };
    let message = RouteNetlinkMessage::GetTrafficFilter(TcMessage::from_parts(header, Vec::new()));
    let mut found = Vec::new();
    for message in exchange(message, NLM_F_DUMP, true)? {
        let filter = match message {
            Some(RouteNetlinkMessage::NewTrafficFilter(filter)) => filter,
            Some(_) => continue,
            None => {
                found.push(FilterInfo {
                    priority: 0,
                    handle: 0,
                    kind: "unreadable".to_owned(),
                    bpf_name: None,
                    program_id: None,
                });
                continue;
            }
        };
        // The entry of a priority's filter chain itself, not a filter.
        if u32::from(filter.header.handle) == 0 {
            continue;
        }
        let mut info = FilterInfo {
            priority: (filter.header.info >> 16) as u16,
            handle: u32::from(filter.header.handle),
            kind: String::new(),
            bpf_name: None,
            program_id: None,
        };
        for attribute in filter.attributes {
            match attribute {
                TcAttribute::Kind(kind) => info.kind = kind,
                TcAttribute::Options(options) => {
                    for option in options {
                        match option {
                            TcOption::Bpf(TcFilterBpfOption::ProgName(name)) => {
                                info.bpf_name = Some(name);
                            }
                            TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => {
                                info.program_id = Some(id);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        found.push(info);
    }
    Ok(found)
}

/// Sends `message` and waits for the kernel's answer.
fn request(message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
    exchange(message, NLM_F_ACK | flags, false).map(drop)
}

/// An rtnetlink socket kept for the thread's next exchange, with its receive buffer: every
/// interface a probe attaches to is checked for another probe's filters, and opening a socket
/// for each was about half the time it took to attach.
struct Channel {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

thread_local! {
    static CHANNEL: RefCell<Option<Channel>> = const { RefCell::new(None) };
}

/// Sends `message` with `flags` and reads the answer to its end: with `dump`, its messages until
/// `NLMSG_DONE` (`None` for one that cannot be parsed), or an acknowledgement; an error the
/// kernel answers is returned as one.
fn exchange(
    message: RouteNetlinkMessage,
    flags: u16,
    dump: bool,
) -> io::Result<Vec<Option<RouteNetlinkMessage>>> {
    CHANNEL.with_borrow_mut(|kept| {
        let mut channel = match kept.take() {
            Some(channel) => channel,
            None => Channel::open()?,
        };
        let answer = channel.exchange(message, flags, dump);
        // The rest of an answer cut short by an error is told apart by its sequence number.
        *kept = Some(channel);
        answer
    })
}

impl Channel {
    fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            sequence: 0,
            buffer: vec![0; 64 * 1024],
        })
    }

    fn exchange(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        dump: bool,
    ) -> io::Result<Vec<Option<RouteNetlinkMessage>>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut request = NetlinkMessage::new(header, NetlinkPayload::from(message));
        request.finalize();
        let mut bytes = vec![0; request.buffer_len()];
        request.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        let mut answers = Vec::new();
        loop {
            let received = self.socket.recv(&mut &mut self.buffer[..], 0)?;
            let mut offset = 0;
            while offset < received {
                let message = NetlinkBuffer::new_checked(&self.buffer[offset..received])
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                let length = message.length() as usize;
                if length == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "an rtnetlink message of no length",
                    ));
                }
                offset += length.next_multiple_of(4);
                if message.sequence_number() != self.sequence {
                    continue;
                }
                match message.message_type() {
                    NLMSG_DONE => return Ok(answers),
                    NLMSG_ERROR => {
                        let code = message.payload().get(..4).map_or(0, |code| {
                            i32::from_ne_bytes(code.try_into().expect("4 bytes"))
                        });
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        if !dump {
                            return Ok(answers);
                        }
                    }
                    message_type => {
                        // Another tool's filter with options this crate cannot read is still
                        // one.
                        answers.push(
                            RouteNetlinkMessage::parse_with_param(message.payload(), message_type)
                                .ok(),
                        );
                    }
                }
            }
        }
    }
}
