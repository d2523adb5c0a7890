//! The matched frames of a scan as pcapng: each with its original bytes, timestamp, length and
//! link type, under an interface block that names its capture's interface, with a comment
//! that says its class.
//!
//! Not `output::pcap`'s writer: that one writes samples, all as Ethernet (tcpdump refuses a
//! file whose interfaces have different link types). Here frames keep their link type, so a
//! scan of captures of one link type (the usual case) gives a file tcpdump reads, and one of
//! several link types a file Wireshark and tshark read.

use std::{borrow::Cow, collections::HashMap, io::Write};

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
use probe_common::LoopbackMatch;

use crate::capture::reader::{Interface, Packet};

/// Timestamps are written in nanoseconds (`if_tsresol` 9).
const NANOSECONDS: u8 = 9;

pub struct MatchedWriter<W: Write> {
    writer: PcapNgWriter<W>,
    /// The interface block written for each (capture, section, interface id).
    interface_ids: HashMap<(usize, u32, u32), u32>,
}

impl<W: Write> MatchedWriter<W> {
    /// Writes the section header.
    pub fn new(writer: W) -> Result<Self, PcapError> {
        Ok(Self {
            writer: PcapNgWriter::new(writer)?,
            interface_ids: HashMap::new(),
        })
    }

    /// Writes one matched frame of the `capture`-th file named `file`, after its interface's
    /// block if this is the interface's first.
    pub fn write(
        &mut self,
        capture: usize,
        file: &str,
        interface: &Interface,
        packet: &Packet<'_>,
        matched: LoopbackMatch,
    ) -> Result<(), PcapError> {
        let key = (capture, interface.section, interface.id);
        let interface_id = match self.interface_ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = self.interface_ids.len() as u32;
                let mut options = vec![
                    InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                        "{file}, interface {}",
                        interface.id
                    ))),
                    InterfaceDescriptionOption::IfTsResol(NANOSECONDS),
                ];
                if let Some(name) = &interface.name {
                    options.push(InterfaceDescriptionOption::IfName(Cow::Borrowed(name)));
                }
                self.writer.write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: DataLink::from(u32::from(interface.link_type)),
                    snaplen: interface.snaplen,
                    options,
                })?;
                self.interface_ids.insert(key, id);
                id
            }
        };
        let mut options = vec![EnhancedPacketOption::Comment(Cow::Owned(format!(
            "localnet-probe scan: {}/{}",
            matched.family.name(),
            matched.address_name()
        )))];
        if packet.timestamp.is_none() {
            options.push(EnhancedPacketOption::Comment(Cow::Borrowed(
                "no timestamp in the capture",
            )));
        }
        self.writer.write_pcapng_block(EnhancedPacketBlock {
            interface_id,
            timestamp: packet.timestamp.unwrap_or_default(),
            original_len: packet.original_len,
            data: Cow::Borrowed(packet.data),
            options,
        })?;
        Ok(())
    }

    pub fn get_mut(&mut self) -> &mut W {
        self.writer.get_mut()
    }
}
