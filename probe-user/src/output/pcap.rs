//! Sampled frames as pcapng, for the tools responders already use: one interface block per
//! interface (its name), each frame with its original length and a comment with its class and
//! action.
//!
//! Every interface block says Ethernet, because tcpdump refuses a file whose interfaces have
//! different link types: packets from layer-3 devices (tun, wireguard), which have no link
//! layer, get an Ethernet header with zero addresses in front, and their comment says so.

use std::{borrow::Cow, collections::HashMap, io::Write, time::UNIX_EPOCH};

use pcap_file::{
    DataLink, PcapError,
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
    },
};
use probe_common::{Action, Framing, SAMPLE_CAPTURE_LEN};

use crate::output::samples::SampledFrame;

/// Timestamps are written in nanoseconds (`if_tsresol` 9).
const NANOSECONDS: u8 = 9;
/// The Ethernet header put in front of packets from layer-3 devices.
const ADDED_HEADER_LEN: usize = probe_common::ETHERNET_HEADER_LEN;

pub struct PcapWriter<W: Write> {
    writer: PcapNgWriter<W>,
    /// The interface block of each (ifindex, framing), by the order they were written.
    interface_ids: HashMap<(u32, Framing), u32>,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the section header.
    pub fn new(writer: W) -> Result<Self, PcapError> {
        Ok(Self {
            writer: PcapNgWriter::new(writer)?,
            interface_ids: HashMap::new(),
        })
    }

    /// Writes the interface block of `ifindex`, named `name`, unless written before. Readers
    /// such as tcpdump refuse a file without one, so the served interfaces are announced
    /// before any frame arrives.
    pub fn add_interface(
        &mut self,
        ifindex: u32,
        framing: Framing,
        name: &str,
    ) -> Result<u32, PcapError> {
        if let Some(id) = self.interface_ids.get(&(ifindex, framing)) {
            return Ok(*id);
        }
        let id = self.interface_ids.len() as u32;
        self.writer.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            // One for all: tcpdump also refuses interfaces with different snapshot lengths.
            snaplen: (SAMPLE_CAPTURE_LEN + ADDED_HEADER_LEN) as u32,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                InterfaceDescriptionOption::IfTsResol(NANOSECONDS),
            ],
        })?;
        self.interface_ids.insert((ifindex, framing), id);
        Ok(id)
    }

    /// Writes one sampled frame, after its interface's block if this is the interface's first.
    /// `interface` is the interface's name.
    pub fn write(&mut self, frame: &SampledFrame, interface: &str) -> Result<(), PcapError> {
        let interface_id = self.add_interface(frame.ifindex, frame.framing, interface)?;
        let mut comment = format!(
            "localnet-probe: {}/{} {}",
            frame.matched.family.name(),
            frame.matched.address_name(),
            frame.action.name()
        );
        let (data, original_len) = match frame.framing {
            Framing::Ethernet => (Cow::Borrowed(&frame.captured[..]), frame.frame_len),
            Framing::Ip => {
                comment.push_str(" (arrived without a link layer; Ethernet header added)");
                let version = frame.captured.first().map_or(0, |byte| byte >> 4);
                let ethertype: u16 = if version == 6 { 0x86dd } else { 0x0800 };
                let mut data = Vec::with_capacity(ADDED_HEADER_LEN + frame.captured.len());
                data.extend_from_slice(&[0; 12]);
                data.extend_from_slice(&ethertype.to_be_bytes());
                data.extend_from_slice(&frame.captured);
                (Cow::Owned(data), frame.frame_len + ADDED_HEADER_LEN as u32)
            }
        };
        self.writer.write_pcapng_block(EnhancedPacketBlock {
            interface_id,
            timestamp: frame.at.duration_since(UNIX_EPOCH).unwrap_or_default(),
            original_len,
            data,
            options: vec![
                EnhancedPacketOption::Comment(Cow::Owned(comment)),
                EnhancedPacketOption::Flags(direction_flags(frame.action)),
            ],
        })?;
        Ok(())
    }

    pub fn get_mut(&mut self) -> &mut W {
        self.writer.get_mut()
    }
}

/// The `epb_flags` of a frame: inbound (1) or outbound (2) in bits 0–1.
const fn direction_flags(action: Action) -> u32 {
    match action {
        Action::Passed | Action::Dropped => 1,
        Action::Replied => 2,
    }
}
