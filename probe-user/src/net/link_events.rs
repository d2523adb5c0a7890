//! Notice of interfaces appearing, disappearing, coming up or being renamed: an rtnetlink socket
//! subscribed to the link group. Any message means "list the interfaces again", which
//! [`crate::session::Session::follow_links`] does; the messages are read only for which
//! interfaces they announce, so that one that appeared can be served at once.

use std::{collections::BTreeSet, io};

use netlink_packet_core::NetlinkBuffer;
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use tokio::io::{Interest, unix::AsyncFd};

use crate::net::interfaces::{RTM_NEWLINK, ifindex_of};

/// Larger than any link message the kernel sends, so that none is cut short.
const BUFFER_LEN: usize = 64 * 1024;

pub struct LinkEvents {
    socket: AsyncFd<Socket>,
    buffer: Vec<u8>,
}

/// What the link events read at once said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LinkChanges {
    /// The interfaces `RTM_NEWLINK` announced: each appeared or changed.
    pub announced: BTreeSet<u32>,
    /// Events were lost (the kernel dropped what did not fit the socket's buffer) or could not
    /// be read: any interface may have appeared.
    pub lost: bool,
}

impl LinkChanges {
    /// Adds what one datagram of link messages announces.
    fn read(&mut self, datagram: &[u8]) {
        let mut offset = 0;
        while offset < datagram.len() {
            let Ok(message) = NetlinkBuffer::new_checked(&datagram[offset..]) else {
                self.lost = true;
                return;
            };
            let length = message.length() as usize;
            if length == 0 {
                return;
            }
            offset += length.next_multiple_of(4);
            if message.message_type() == RTM_NEWLINK {
                match ifindex_of(message.payload()) {
                    Some(ifindex) => {
                        self.announced.insert(ifindex);
                    }
                    None => self.lost = true,
                }
            }
        }
    }
}

impl LinkEvents {
    /// Subscribes to link events in this network namespace; call within a tokio runtime.
    pub fn subscribe() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.add_membership(libc::RTNLGRP_LINK)?;
        socket.set_non_blocking(true)?;
        // SAFETY: the socket owns its fd, open as long as it lives, and the `AsyncFd` owns the
        // socket.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
        Ok(Self {
            socket,
            buffer: vec![0; BUFFER_LEN],
        })
    }

    /// Completes once any link event has arrived, with every one queued until then read.
    /// Cancel-safe: the messages are read and the result returned in the same poll.
    pub async fn changed(&mut self) -> io::Result<LinkChanges> {
        loop {
            let mut guard = self.socket.readable().await?;
            let mut changes = None::<LinkChanges>;
            loop {
                match guard.get_inner().recv(&mut &mut self.buffer[..], 0) {
                    Ok(received) => changes
                        .get_or_insert_default()
                        .read(&self.buffer[..received.min(self.buffer.len())]),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        guard.clear_ready();
                        break;
                    }
                    // Whatever the dropped events said, listing again finds it.
                    Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                        changes.get_or_insert_default().lost = true;
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
            if let Some(changes) = changes {
                return Ok(changes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::{RouteNetlinkMessage, link::LinkMessage};

    use super::*;

    fn datagram(messages: &[RouteNetlinkMessage]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for message in messages {
            let mut message = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::from(message.clone()),
            );
            message.finalize();
            let mut buffer = vec![0; message.buffer_len()];
            message.serialize(&mut buffer);
            bytes.extend_from_slice(&buffer);
        }
        bytes
    }

    fn link(ifindex: u32) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.header.index = ifindex;
        link
    }

    #[test]
    fn new_links_are_announced_and_deleted_ones_are_not() {
        let mut changes = LinkChanges::default();
        changes.read(&datagram(&[
            RouteNetlinkMessage::NewLink(link(7)),
            RouteNetlinkMessage::DelLink(link(8)),
            RouteNetlinkMessage::NewLink(link(9)),
        ]));
        assert_eq!(
            changes,
            LinkChanges {
                announced: BTreeSet::from([7, 9]),
                lost: false
            }
        );
    }

    #[test]
    fn a_message_cut_short_is_a_loss() {
        let whole = datagram(&[RouteNetlinkMessage::NewLink(link(7))]);
        for length in [3, 16, whole.len() - 1] {
            let mut changes = LinkChanges::default();
            changes.read(&whole[..length]);
            assert!(changes.lost, "{length} bytes");
        }
    }
}
