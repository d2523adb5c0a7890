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

    /// Writes one sampled frame, after its interface's block if this is the interface's first.
    /// `interface` is the interface's name.
    pub fn write(&mut self, frame: &SampledFrame, interface: &str) -> Result<(), PcapError> {
        let key = (frame.ifindex, frame.framing);
        let interface_id = match self.interface_ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = self.interface_ids.len() as u32;
                self.writer.write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: match frame.framing {
                        Framing::Ethernet => DataLink::ETHERNET,
                        Framing::Ip => DataLink::RAW,
                    },
                    snaplen: SAMPLE_CAPTURE_LEN as u32,
                    options: vec![
                        InterfaceDescriptionOption::IfName(Cow::Borrowed(interface)),
                        InterfaceDescriptionOption::IfTsResol(NANOSECONDS),
                    ],
                })?;
                self.interface_ids.insert(key, id);
                id
            }
        };
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
