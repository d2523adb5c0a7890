//! Sampled frames as pcapng, for the tools responders already use: one interface block per
//! interface (its name, its link type), each frame with its original length and a comment with
//! its class and action.

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
use probe_common::{Framing, SAMPLE_CAPTURE_LEN};

use crate::samples::SampledFrame;

/// Timestamps are written in nanoseconds (`if_tsresol` 9).
const NANOSECONDS: u8 = 9;

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
            linktype: match framing {
                Framing::Ethernet => DataLink::ETHERNET,
                Framing::Ip => DataLink::RAW,
            },
            snaplen: SAMPLE_CAPTURE_LEN as u32,
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
        let comment = format!(
            "localnet-probe: {}/{} {}",
            frame.matched.family.name(),
            frame.matched.address.name(),
            frame.action.name()
        );
        self.writer.write_pcapng_block(EnhancedPacketBlock {
            interface_id,
            timestamp: frame.at.duration_since(UNIX_EPOCH).unwrap_or_default(),
            original_len: frame.frame_len,
            data: Cow::Borrowed(&frame.captured),
            options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment))],
        })?;
        Ok(())
    }

    pub fn get_mut(&mut self) -> &mut W {
        self.writer.get_mut()
    }
}
