//! Who a sampled frame's sender is, by its MAC address, as this host's tables say: the
//! neighbour table's IP addresses for it, and on a bridge the port it was learned behind with the
//! workload on that port's other end.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, OnceLock},
};

use crate::net::{
    interfaces::Interface,
    neighbours::{ArrivedOn, Neighbours},
    workload::{Workload, Workloads},
};

use super::Session;

/// What the tables say of one sender.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderOrigin {
    /// The IP addresses the neighbour table holds for the MAC, those on the interface the frame
    /// arrived on first.
    pub neighbour_ips: Vec<IpAddr>,
    /// The bridge port the MAC was learned behind (ifindex, name), when the frame arrived on a
    /// bridge or on a port of one.
    pub bridge_port: Option<(u32, String)>,
    /// The workload on that port's other end.
    pub workload: Option<Arc<Workload>>,
}

impl SenderOrigin {
    /// The tables say nothing of the sender.
    pub fn is_unknown(&self) -> bool {
        self.neighbour_ips.is_empty() && self.bridge_port.is_none()
    }
}

/// The senders' origins for one report: the tables are asked for (and read again in the
/// background) only when a sender is looked up.
pub struct SenderOrigins<'a> {
    session: &'a Session,
    neighbours: OnceLock<Option<Arc<Neighbours>>>,
    interfaces: OnceLock<HashMap<u32, &'a Interface>>,
    workloads: OnceLock<Arc<Workloads>>,
}

impl Session {
    /// Looks senders up in this namespace's neighbour table and bridges, as last read.
    pub fn sender_origins(&self) -> SenderOrigins<'_> {
        SenderOrigins {
            session: self,
            neighbours: OnceLock::new(),
            interfaces: OnceLock::new(),
            workloads: OnceLock::new(),
        }
    }
}

impl SenderOrigins<'_> {
    /// The origin of a frame from `mac` that arrived on `ifindex`; `None` before the tables are
    /// first read (a second after the first lookup).
    pub fn of(&self, ifindex: u32, mac: [u8; 6]) -> Option<SenderOrigin> {
        let neighbours = self
            .neighbours
            .get_or_init(|| self.session.neighbours.latest())
            .as_ref()?;
        let interfaces = self.interfaces.get_or_init(|| {
            self.session
                .tracked
                .listed
                .iter()
                .map(|interface| (interface.ifindex, interface))
                .collect()
        });
        let arrived = interfaces.get(&ifindex);
        let found = neighbours.find(
            mac,
            ArrivedOn {
                ifindex,
                is_bridge: arrived.is_some_and(|i| i.kind.as_deref() == Some("bridge")),
                master: arrived.and_then(|i| i.master),
            },
        );
        let bridge_port = found.bridge_port.map(|port| {
            let name = interfaces
                .get(&port)
                .map_or_else(|| format!("ifindex {port}"), |i| i.name.clone());
            (port, name)
        });
        let workload = found.bridge_port.and_then(|port| {
            self.workloads
                .get_or_init(|| self.session.workloads())
                .get(&port)
                .cloned()
        });
        Some(SenderOrigin {
            neighbour_ips: found.ips,
            bridge_port,
            workload,
        })
    }
}
