//! The records of a pcap or pcapng stream, one at a time, each with the byte offset where it
//! begins: constant memory whatever the capture's length (one buffer, as long as the longest
//! record).
//!
//! Both formats are framed here rather than by pcap-file, whose readers take every pcapng
//! timestamp for nanoseconds (`if_tsresol` says microseconds unless an interface says
//! otherwise) and refuse a whole file for an interface name or a comment that is not UTF-8.

use std::{
    io::{self, BufReader, Read},
    time::Duration,
};

use crate::capture::input::read_full;

/// The pcap file header.
const PCAP_HEADER_LEN: usize = 24;
/// A pcap record's header.
const PCAP_RECORD_HEADER_LEN: usize = 16;
/// pcap's magics as they read in the order they were written: microseconds, nanoseconds.
const PCAP_MICROSECONDS: u32 = 0xa1b2_c3d4;
const PCAP_NANOSECONDS: u32 = 0xa1b2_3c4d;
const SECTION_HEADER_BLOCK: u32 = 0x0a0d_0d0a;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const INTERFACE_DESCRIPTION_BLOCK: u32 = 1;
const PACKET_BLOCK: u32 = 2;
const SIMPLE_PACKET_BLOCK: u32 = 3;
const ENHANCED_PACKET_BLOCK: u32 = 6;
/// The longest record read: longer is taken for corruption, not buffered (libpcap allows
/// 256 KiB per packet; Wireshark's pcapng blocks stay far below this).
const MAX_RECORD_LEN: u32 = 16 << 20;
/// Reads from the decompressed stream in pieces of this size.
const READ_LEN: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

impl Format {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pcap => "pcap",
            Self::PcapNg => "pcapng",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endianness {
    Big,
    Little,
}

impl Endianness {
    fn u16(self, bytes: [u8; 2]) -> u16 {
        match self {
            Self::Big => u16::from_be_bytes(bytes),
            Self::Little => u16::from_le_bytes(bytes),
        }
    }

    fn u32(self, bytes: [u8; 4]) -> u32 {
        match self {
            Self::Big => u32::from_be_bytes(bytes),
            Self::Little => u32::from_le_bytes(bytes),
        }
    }

    fn u64(self, bytes: [u8; 8]) -> u64 {
        match self {
            Self::Big => u64::from_be_bytes(bytes),
            Self::Little => u64::from_le_bytes(bytes),
        }
    }

    /// The 16-bit field at `at` of `bytes`, `None` past their end.
    fn half(self, bytes: &[u8], at: usize) -> Option<u16> {
        Some(self.u16(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
    }

    fn word(self, bytes: &[u8], at: usize) -> Option<u32> {
        Some(self.u32(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
    }
}

/// An interface the frames were captured on: a pcapng interface block, or a pcap file's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// The pcapng section it belongs to, counted from 0 (0 for pcap).
    pub section: u32,
    /// Its number within its section, as packet blocks name it (0 for pcap).
    pub id: u32,
    pub link_type: u16,
    pub snaplen: u32,
    /// `if_name`, as the file has it: anyone's text.
    pub name: Option<String>,
    resolution: Resolution,
    /// `if_tsoffset`: seconds added to every timestamp.
    offset_secs: u64,
}

/// One captured frame.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Which interface, in the order [`Record::Interface`] announced them (from 0, across
    /// sections).
    pub interface: usize,
    /// Since the Unix epoch; `None` where the block has none (pcapng simple packet blocks).
    pub timestamp: Option<Duration>,
    pub original_len: u32,
    pub data: &'a [u8],
}

pub enum Record<'a> {
    Interface(Interface),
    Packet(Packet<'a>),
}

/// A capture that cannot be read on: what was wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("neither pcap nor pcapng (its first bytes: {0})")]
    UnknownFormat(String),
    #[error("at byte offset {offset}{}: {reason}", if *.decompressed { " of the decompressed stream" } else { "" })]
    Corrupt {
        offset: u64,
        reason: String,
        /// The offset counts the bytes after decompression.
        decompressed: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    /// Units of 10^-n seconds.
    Decimal(u32),
    /// Units of 2^-n seconds.
    Binary(u32),
}

impl Resolution {
    fn of(if_tsresol: u8) -> Self {
        if if_tsresol & 0x80 == 0 {
            Self::Decimal(u32::from(if_tsresol))
        } else {
            Self::Binary(u32::from(if_tsresol & 0x7f))
        }
    }

    fn per_second(self) -> u128 {
        match self {
            Self::Decimal(exponent) => 10u128.pow(exponent.min(30)),
            Self::Binary(exponent) => 1 << exponent.min(100),
        }
    }

    fn duration(self, units: u64) -> Duration {
        let per_second = self.per_second();
        let units = u128::from(units);
        let seconds = u64::try_from(units / per_second).unwrap_or(u64::MAX);
        // Below 10^9 since the fraction is below `per_second`.
        let nanos = (units % per_second * 1_000_000_000 / per_second) as u32;
        Duration::new(seconds, nanos)
    }
}

/// Reads a capture's records one at a time.
pub struct CaptureReader {
    source: BufReader<Box<dyn Read + Send>>,
    pub format: Format,
    endianness: Endianness,
    /// Where the next record begins.
    offset: u64,
    decompressed: bool,
    /// The record being read, reused.
    buffer: Vec<u8>,
    /// pcap: its one interface. pcapng: the interfaces of the current section, by id.
    interfaces: Vec<Interface>,
    /// pcapng: how many interfaces the sections before this one described.
    announced_before: usize,
    section: u32,
}

/// Why a record could not be read, before its offset is known to the message.
enum Fault {
    Io(io::Error),
    Corrupt(String),
}

impl From<io::Error> for Fault {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

impl CaptureReader {
    /// Reads the file header; `decompressed` says whether offsets count decompressed bytes.
    pub fn new(source: Box<dyn Read + Send>, decompressed: bool) -> Result<Self, ReadError> {
        let mut reader = Self {
            source: BufReader::with_capacity(READ_LEN, source),
            format: Format::Pcap,
            endianness: Endianness::Little,
            offset: 0,
            decompressed,
            buffer: Vec::new(),
            interfaces: Vec::new(),
            announced_before: 0,
            section: 0,
        };
        let mut magic = [0; 4];
        let got = read_full(&mut reader.source, &mut magic)
            .map_err(|error| reader.fault(Fault::Io(error)))?;
        let shown = magic[..got]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        if got < magic.len() && got > 0 || got == 0 {
            return Err(ReadError::UnknownFormat(if got == 0 {
                "none, it is empty".to_owned()
            } else {
                shown
            }));
        }
        let (pcap, nanoseconds) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
            (PCAP_MICROSECONDS, _) => (Some(Endianness::Little), false),
            (PCAP_NANOSECONDS, _) => (Some(Endianness::Little), true),
            (_, PCAP_MICROSECONDS) => (Some(Endianness::Big), false),
            (_, PCAP_NANOSECONDS) => (Some(Endianness::Big), true),
            _ => (None, false),
        };
        if let Some(endianness) = pcap {
            reader.endianness = endianness;
            let mut header = [0; PCAP_HEADER_LEN - 4];
            reader
                .fill(&mut header)
                .map_err(|fault| reader.fault(fault))?;
            let snaplen = endianness.u32(header[12..16].try_into().expect("4 bytes"));
            // The upper bits of the link type field say whether frames end with their FCS.
            let link_type = endianness.u32(header[16..20].try_into().expect("4 bytes")) as u16;
            reader.interfaces.push(Interface {
                section: 0,
                id: 0,
                link_type,
                snaplen,
                name: None,
                resolution: Resolution::Decimal(if nanoseconds { 9 } else { 6 }),
                offset_secs: 0,
            });
            reader.offset = PCAP_HEADER_LEN as u64;
            Ok(reader)
        } else if u32::from_be_bytes(magic) == SECTION_HEADER_BLOCK {
            reader.format = Format::PcapNg;
            // The section header is read as the first block.
            reader.buffer.extend_from_slice(&magic);
            Ok(reader)
        } else {
            Err(ReadError::UnknownFormat(shown))
        }
    }

    fn fault(&self, fault: Fault) -> ReadError {
        let reason = match fault {
            Fault::Io(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                "the capture ends in the middle of a record (truncated)".to_owned()
            }
            Fault::Io(error) => error.to_string(),
            Fault::Corrupt(reason) => reason,
        };
        ReadError::Corrupt {
            offset: self.offset,
            reason,
            decompressed: self.decompressed,
        }
    }

    /// Fills `bytes`; the end of the input is an error.
    fn fill(&mut self, bytes: &mut [u8]) -> Result<(), Fault> {
        Ok(self.source.read_exact(bytes)?)
    }

    /// Calls `each` with every record, in the file's order, until the end or the first error.
    pub fn for_each(mut self, mut each: impl FnMut(Record<'_>)) -> Result<(), ReadError> {
        if self.format == Format::Pcap {
            each(Record::Interface(self.interfaces[0].clone()));
        }
        loop {
            let more = match self.format {
                Format::Pcap => self.next_pcap(&mut each),
                Format::PcapNg => self.next_block(&mut each),
            };
            match more {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(fault) => return Err(self.fault(fault)),
            }
        }
    }

    /// Reads one pcap record; `false` at the end.
    fn next_pcap(&mut self, each: &mut impl FnMut(Record<'_>)) -> Result<bool, Fault> {
        let mut header = [0; PCAP_RECORD_HEADER_LEN];
        match read_full(&mut self.source, &mut header)? {
            0 => return Ok(false),
            PCAP_RECORD_HEADER_LEN => {}
            _ => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
        }
        let field = |at: usize| {
            self.endianness
                .u32(header[at..at + 4].try_into().expect("4 bytes"))
        };
        let (seconds, fraction, captured_len, original_len) =
            (field(0), field(4), field(8), field(12));
        if captured_len > MAX_RECORD_LEN {
            return Err(Fault::Corrupt(format!(
                "a record of {captured_len} bytes (more than {MAX_RECORD_LEN}: not a record header)"
            )));
        }
        let mut data = std::mem::take(&mut self.buffer);
        data.resize(captured_len as usize, 0);
        let filled = self.fill(&mut data);
        self.buffer = data;
        filled?;
        let interface = &self.interfaces[0];
        let units =
            u64::from(seconds) * interface.resolution.per_second() as u64 + u64::from(fraction);
        each(Record::Packet(Packet {
            interface: 0,
            timestamp: Some(interface.resolution.duration(units)),
            original_len,
            data: &self.buffer,
        }));
        self.offset += (PCAP_RECORD_HEADER_LEN + self.buffer.len()) as u64;
        Ok(true)
    }

    /// Reads one pcapng block; `false` at the end.
    fn next_block(&mut self, each: &mut impl FnMut(Record<'_>)) -> Result<bool, Fault> {
        // Type and length; the first section header's magic was read to tell the format.
        let mut head = [0; 8];
        let had = self.buffer.len().min(4);
        head[..had].copy_from_slice(&self.buffer[..had]);
        match had + read_full(&mut self.source, &mut head[had..])? {
            0 => return Ok(false),
            8 => {}
            _ => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
        }
        self.buffer.clear();
        let kind = self.endianness.u32(head[..4].try_into().expect("4 bytes"));
        if u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) == SECTION_HEADER_BLOCK {
            // A new section says its byte order right after its length.
            let mut order = [0; 4];
            self.fill(&mut order)?;
            self.endianness = if u32::from_le_bytes(order) == BYTE_ORDER_MAGIC {
                Endianness::Little
            } else if u32::from_be_bytes(order) == BYTE_ORDER_MAGIC {
                Endianness::Big
            } else {
                return Err(Fault::Corrupt(
                    "a section header without its byte-order magic".to_owned(),
                ));
            };
            self.buffer.extend_from_slice(&order);
        }
        let len = self.endianness.u32(head[4..].try_into().expect("4 bytes"));
        if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD_LEN {
            return Err(Fault::Corrupt(format!("a block of length {len}")));
        }
        // The body, then the trailing copy of the length.
        let start = self.buffer.len();
        let mut block = std::mem::take(&mut self.buffer);
        block.resize(len as usize - 8, 0);
        let filled = self.fill(&mut block[start..]);
        self.buffer = block;
        filled?;
        let (body, trailer) = self.buffer.split_at(self.buffer.len() - 4);
        if self.endianness.u32(trailer.try_into().expect("4 bytes")) != len {
            return Err(Fault::Corrupt(format!(
                "a block of length {len} whose trailer says otherwise"
            )));
        }
        match kind {
            _ if u32::from_be_bytes(head[..4].try_into().expect("4 bytes"))
                == SECTION_HEADER_BLOCK =>
            {
                self.section += u32::from(self.offset > 0);
                self.announced_before += self.interfaces.len();
                self.interfaces.clear();
            }
            INTERFACE_DESCRIPTION_BLOCK => {
                let id = self.interfaces.len() as u32;
                let interface =
                    interface_of(body, self.endianness, self.section, id).ok_or_else(|| {
                        Fault::Corrupt("an interface block shorter than its fields".to_owned())
                    })?;
                self.interfaces.push(interface.clone());
                each(Record::Interface(interface));
            }
            ENHANCED_PACKET_BLOCK | PACKET_BLOCK | SIMPLE_PACKET_BLOCK => {
                let packet = packet_of(kind, body, self.endianness, &self.interfaces).ok_or_else(|| {
                    Fault::Corrupt(
                        "a packet block shorter than its fields, or of an interface not described before it"
                            .to_owned(),
                    )
                })?;
                each(Record::Packet(Packet {
                    interface: self.announced_before + packet.interface,
                    ..packet
                }));
            }
            // Statistics, name resolution, custom and unknown blocks say nothing about frames.
            _ => {}
        }
        self.buffer.clear();
        self.offset += u64::from(len);
        Ok(true)
    }
}

/// An interface description block's link type, snapshot length and the options that matter
/// here (a name that is not UTF-8 is kept with replacement characters). `None` when the block is
/// shorter than its fields.
fn interface_of(body: &[u8], endianness: Endianness, section: u32, id: u32) -> Option<Interface> {
    let half = |at| endianness.half(body, at);
    let word = |at| endianness.word(body, at);
    let mut interface = Interface {
        section,
        id,
        link_type: half(0)?,
        snaplen: word(4)?,
        name: None,
        resolution: Resolution::Decimal(6),
        offset_secs: 0,
    };
    // Options: a code, a length, the value padded to 32 bits; code 0 ends them.
    let mut at = 8;
    while let (Some(code), Some(len)) = (half(at), half(at + 2)) {
        let value = body
            .get(at + 4..at + 4 + usize::from(len))
            .unwrap_or_default();
        match (code, value) {
            (0, _) => break,
            (2, name) => interface.name = Some(String::from_utf8_lossy(name).into_owned()),
            (9, &[resolution]) => interface.resolution = Resolution::of(resolution),
            (14, offset) if offset.len() == 8 => {
                interface.offset_secs = endianness.u64(offset.try_into().expect("8 bytes"));
            }
            _ => {}
        }
        at += 4 + usize::from(len).next_multiple_of(4);
    }
    Some(interface)
}

/// An enhanced, simple or (obsolete) packet block's packet; `interface` is the id within its
/// section. `None` when the block is too short for its fields or names an interface not
/// described before it.
fn packet_of<'a>(
    kind: u32,
    body: &'a [u8],
    endianness: Endianness,
    interfaces: &[Interface],
) -> Option<Packet<'a>> {
    let word = |at| endianness.word(body, at);
    let (interface, timestamp, captured_len, original_len, data_at) = match kind {
        ENHANCED_PACKET_BLOCK => {
            let units = u64::from(word(4)?) << 32 | u64::from(word(8)?);
            (word(0)? as usize, Some(units), word(12)?, word(16)?, 20)
        }
        PACKET_BLOCK => {
            // A 16-bit interface id, then a 16-bit drop count.
            let id = match endianness {
                Endianness::Big => word(0)? >> 16,
                Endianness::Little => word(0)? & 0xffff,
            };
            let units = u64::from(word(4)?) << 32 | u64::from(word(8)?);
            (id as usize, Some(units), word(12)?, word(16)?, 20)
        }
        _ => {
            // Simple packet blocks: interface 0, no timestamp, the data up to the snapshot length.
            let original_len = word(0)?;
            let snaplen = interfaces.first()?.snaplen;
            let captured = original_len.min(if snaplen == 0 { u32::MAX } else { snaplen });
            (0, None, captured, original_len, 4)
        }
    };
    let description = interfaces.get(interface)?;
    let data = body.get(data_at..usize::checked_add(data_at, captured_len as usize)?)?;
    Some(Packet {
        interface,
        timestamp: timestamp.map(|units| {
            description.resolution.duration(units) + Duration::from_secs(description.offset_secs)
        }),
        original_len,
        data,
    })
}
