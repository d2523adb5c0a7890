//! What a scan counts of each interface of a capture, and the report it becomes: the classes
//! `run` counts (family × address; a capture says nothing of passed or dropped), the first and
//! last match, the top senders, and the frames that could not be classified.

use std::{collections::HashMap, net::IpAddr, time::Duration, time::UNIX_EPOCH};

use probe_common::{Counter, Framing, LoopbackMatch};
use serde::Serialize;

use crate::{
    capture::{
        link::{self, LinkType, Verdict},
        reader::{Interface, Packet},
    },
    output::{
        samples::{Headers, mac_string},
        senders::Sender,
    },
};

/// Distinct senders one interface keeps: more (a flood from random sources) are counted
/// together, so memory stays bounded whatever the capture.
const MAX_SENDERS: usize = 4096;
/// How many senders the report names.
pub const TOP_SENDERS: usize = 5;

/// The counts of one interface of a capture.
#[derive(Debug)]
pub struct InterfaceTally {
    pub interface: Interface,
    pub link: LinkType,
    pub frames: u64,
    /// Wire lengths.
    pub bytes: u64,
    /// By [`LoopbackMatch::index`].
    classes: Vec<Counter>,
    first_match: Option<Duration>,
    last_match: Option<Duration>,
    senders: HashMap<Sender, u64>,
    /// Matched frames of senders past [`MAX_SENDERS`].
    senders_untracked: u64,
    cut_short: u64,
    unknown_link_type: u64,
    loopback_device: u64,
}

impl InterfaceTally {
    pub fn new(interface: Interface) -> Self {
        Self {
            link: LinkType::of(interface.link_type),
            interface,
            frames: 0,
            bytes: 0,
            classes: vec![Counter::default(); LoopbackMatch::COUNT as usize],
            first_match: None,
            last_match: None,
            senders: HashMap::new(),
            senders_untracked: 0,
            cut_short: 0,
            unknown_link_type: 0,
            loopback_device: 0,
        }
    }

    /// Classifies and counts one frame; its match, if any.
    pub fn count(&mut self, packet: &Packet<'_>) -> Option<LoopbackMatch> {
        let len = u64::from(packet.original_len);
        self.frames += 1;
        self.bytes += len;
        let matched = match link::classify_frame(self.link, packet.data, packet.original_len) {
            Verdict::Matched(matched) => matched,
            Verdict::NotMatched => return None,
            Verdict::CutShort => {
                self.cut_short += 1;
                return None;
            }
            Verdict::LoopbackDevice => {
                self.loopback_device += 1;
                return None;
            }
            Verdict::UnknownLinkType => {
                self.unknown_link_type += 1;
                return None;
            }
        };
        let counter = &mut self.classes[matched.index() as usize];
        counter.packets += 1;
        counter.bytes += len;
        if let Some(at) = packet.timestamp {
            self.first_match = Some(self.first_match.map_or(at, |first| first.min(at)));
            self.last_match = Some(self.last_match.map_or(at, |last| last.max(at)));
        }
        let sender = self.sender(packet.data);
        let full = self.senders.len() >= MAX_SENDERS;
        match self.senders.get_mut(&sender) {
            Some(count) => *count += 1,
            None if full => self.senders_untracked += 1,
            None => {
                self.senders.insert(sender, 1);
            }
        }
        Some(matched)
    }

    fn sender(&self, data: &[u8]) -> Sender {
        let headers = match self.link {
            LinkType::Ip => Headers::decode(data, Framing::Ip),
            LinkType::LinuxSll | LinkType::LinuxSll2 => link::cooked_as_ethernet(self.link, data)
                .map(|frame| Headers::decode(&frame, Framing::Ethernet))
                .unwrap_or_default(),
            LinkType::Ethernet | LinkType::Other(_) => Headers::decode(data, Framing::Ethernet),
        };
        Sender {
            mac: link::source_mac(self.link, data),
            ip: headers.source_ip,
        }
    }

    pub fn matched(&self) -> Counter {
        self.classes
            .iter()
            .fold(Counter::default(), |sum, class| Counter {
                packets: sum.packets + class.packets,
                bytes: sum.bytes + class.bytes,
            })
    }

    pub fn report(&self) -> InterfaceReport {
        let mut senders: Vec<(&Sender, &u64)> = self.senders.iter().collect();
        senders.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let matched = self.matched();
        InterfaceReport {
            section: self.interface.section,
            id: self.interface.id,
            name: self.interface.name.clone(),
            link_type: self.link.name(),
            snaplen: self.interface.snaplen,
            frames: self.frames,
            bytes: self.bytes,
            packets_matched: matched.packets,
            bytes_matched: matched.bytes,
            by_class: LoopbackMatch::all()
                .filter_map(|class| {
                    let counter = self.classes[class.index() as usize];
                    (counter.packets != 0).then_some(ClassCount {
                        family: class.family.name(),
                        address: class.address_name(),
                        packets: counter.packets,
                        bytes: counter.bytes,
                    })
                })
                .collect(),
            first_match: self.first_match.map(rfc3339),
            last_match: self.last_match.map(rfc3339),
            top_senders: senders
                .into_iter()
                .take(TOP_SENDERS)
                .map(|(sender, packets)| SenderCount {
                    source_mac: sender.mac.map(mac_string),
                    source_ip: sender.ip,
                    packets: *packets,
                })
                .collect(),
            senders_untracked: self.senders_untracked,
            not_classified: NotClassified {
                cut_short: self.cut_short,
                unknown_link_type: self.unknown_link_type,
                loopback_device: self.loopback_device,
            },
        }
    }
}

fn rfc3339(since_epoch: Duration) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + since_epoch).to_string()
}

/// One interface of a capture, as `scan` reports it (docs/scan.md describes each field).
#[derive(Clone, Debug, Serialize)]
pub struct InterfaceReport {
    pub section: u32,
    pub id: u32,
    /// `if_name` of a pcapng interface; `null` in pcap files.
    pub name: Option<String>,
    pub link_type: String,
    pub snaplen: u32,
    pub frames: u64,
    pub bytes: u64,
    pub packets_matched: u64,
    pub bytes_matched: u64,
    /// Non-zero classes only.
    pub by_class: Vec<ClassCount>,
    pub first_match: Option<String>,
    pub last_match: Option<String>,
    pub top_senders: Vec<SenderCount>,
    /// Matched frames of senders past the 4096 told apart.
    pub senders_untracked: u64,
    pub not_classified: NotClassified,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassCount {
    pub family: &'static str,
    pub address: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SenderCount {
    pub source_mac: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub packets: u64,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct NotClassified {
    /// The snapshot length cut the frame before what the classifier reads.
    pub cut_short: u64,
    pub unknown_link_type: u64,
    /// Frames of a loopback device (a Linux cooked header says so), where loopback addresses
    /// belong.
    pub loopback_device: u64,
}
