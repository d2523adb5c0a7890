//! Notice of interfaces appearing, disappearing, coming up or being renamed: an rtnetlink socket
//! subscribed to the link group. The messages themselves are not read: any of them means "list
//! the interfaces again", which [`crate::session::Session::follow_links`] does.

use std::io;

use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use tokio::io::{Interest, unix::AsyncFd};

pub struct LinkEvents {
    socket: AsyncFd<Socket>,
    buffer: Vec<u8>,
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
            // Messages are discarded, not parsed: the part that does not fit is dropped.
            buffer: vec![0; 4096],
        })
    }

    /// Completes once any link event has arrived, with every one queued until then read.
    /// Cancel-safe: the messages are read and the result returned in the same poll.
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.socket.readable().await?;
            let mut changed = false;
            loop {
                match guard.get_inner().recv(&mut &mut self.buffer[..], 0) {
                    Ok(_) => changed = true,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        guard.clear_ready();
                        break;
                    }
                    // The kernel dropped events that did not fit the socket's buffer: whatever
                    // they said, listing again finds it.
                    Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
            if changed {
                return Ok(());
            }
        }
    }
}
