//! The host's network interfaces, from rtnetlink.

use futures::TryStreamExt as _;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkXdp, XdpAttached};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum InterfaceError {
    #[error("cannot open an rtnetlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("listing interfaces over rtnetlink failed: {0}")]
    List(#[source] rtnetlink::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub up: bool,
    pub loopback: bool,
    /// Id of the XDP program attached to the interface, ours or another's.
    pub xdp_program_id: Option<u32>,
}

/// Every interface in this network namespace, in ifindex order.
pub async fn list() -> Result<Vec<Interface>, InterfaceError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(InterfaceError::Connect)?;
    let connection = tokio::spawn(connection);
    let links: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(InterfaceError::List)?;
    connection.abort();

    let mut interfaces: Vec<Interface> = links
        .into_iter()
        .filter_map(|link| {
            let mut name = None;
            let mut xdp_program_id = None;
            for attribute in link.attributes {
                match attribute {
                    LinkAttribute::IfName(ifname) => name = Some(ifname),
                    LinkAttribute::Xdp(xdp) => xdp_program_id = attached_program(&xdp),
                    _ => {}
                }
            }
            Some(Interface {
                name: name?,
                ifindex: link.header.index,
                up: link.header.flags.contains(LinkFlags::Up),
                loopback: link.header.flags.contains(LinkFlags::Loopback),
                xdp_program_id,
            })
        })
        .collect();
    interfaces.sort_by_key(|interface| interface.ifindex);
    Ok(interfaces)
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
