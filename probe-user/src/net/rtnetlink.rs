//! Requests to the kernel's routing netlink and their answers, as the link listing, the
//! neighbour table and the namespace ids read them: one way to send a request, to walk a dump,
//! and to read an error.

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::Socket;

/// Sends `message` numbered `sequence`, as a dump request when `dump`.
pub(crate) fn send(
    socket: &Socket,
    sequence: u32,
    message: RouteNetlinkMessage,
    dump: bool,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
    header.sequence_number = sequence;
    let mut request = NetlinkMessage::new(header, NetlinkPayload::from(message));
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);
    socket.send(&bytes, 0)?;
    Ok(())
}

/// The error an `NLMSG_ERROR` answer carries (its payload starts with the negated errno).
pub(crate) fn error_of(payload: &[u8]) -> io::Error {
    let code = payload.get(..4).map_or(0, |code| {
        i32::from_ne_bytes(code.try_into().expect("4 bytes"))
    });
    io::Error::from_raw_os_error(-code)
}

/// Sends `message` as the dump request `sequence` and hands the payload of every answer of type
/// `wanted` to `each`, reading into `buffer`, until the dump is done; whether the kernel kept it
/// consistent (no `NLM_F_DUMP_INTR`: nothing changed while it was dumped).
pub(crate) fn dump(
    socket: &Socket,
    buffer: &mut [u8],
    sequence: u32,
    message: RouteNetlinkMessage,
    wanted: u16,
    mut each: impl FnMut(&[u8]),
) -> io::Result<bool> {
    send(socket, sequence, message, true)?;
    let mut consistent = true;
    loop {
        let received = socket.recv(&mut &mut buffer[..], 0)?;
        let mut offset = 0;
        while offset < received {
            let message = NetlinkBuffer::new_checked(&buffer[offset..received])
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
            let length = message.length() as usize;
            if length == 0 {
                break;
            }
            offset += length.next_multiple_of(4);
            if message.sequence_number() != sequence {
                continue;
            }
            consistent &= message.flags() & NLM_F_DUMP_INTR == 0;
            match message.message_type() {
                NLMSG_DONE => return Ok(consistent),
                NLMSG_ERROR => return Err(error_of(message.payload())),
                kind if kind == wanted => each(message.payload()),
                _ => {}
            }
        }
    }
}
