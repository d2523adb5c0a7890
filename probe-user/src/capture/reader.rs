//! The records of a pcap or pcapng stream, one at a time, each with the byte offset where it
//! begins: constant memory whatever the capture's length (one buffer, as long as the longest
//! record or `READ_LEN`, whichever is longer).
//!
//! Both formats are framed here rather than by pcap-file, whose readers take every pcapng
//! timestamp for nanoseconds (`if_tsresol` says microseconds unless an interface says
//! otherwise) and refuse a whole file for an interface name or a comment that is not UTF-8.

use std::{
    io::{self, Read},
    time::Duration,
};

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
/// Interface blocks a file may describe, over all its sections: each is counted apart, so a
/// file made of nothing else would cost memory without end. Real captures hold a few.
pub const MAX_INTERFACES: usize = 4096;
/// The longest record read: longer is taken for corruption, not buffered (libpcap allows
/// 256 KiB per packet; Wireshark's pcapng blocks stay far below this).
const MAX_RECORD_LEN: u32 = 16 << 20;
/// Reads from the decompressed stream in pieces of at most this size: of 16 KiB to 4 MiB, the
/// fastest on a warm file (fewer system calls than smaller reads, and its bytes still in the
/// CPU's cache when they are parsed, unlike larger ones).
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
    /// `None` where the block has none (pcapng simple packet blocks).
    stamp: Option<Stamp>,
    pub original_len: u32,
    pub data: &'a [u8],
}

impl Packet<'_> {
    /// Since the Unix epoch; `None` where the block has none (pcapng simple packet blocks).
    pub fn timestamp(&self) -> Option<Duration> {
        self.stamp.map(Stamp::since_epoch)
    }
}

/// A timestamp as the capture has it: converted only for the frames that need it (the matched
/// ones), its 128-bit division being a tenth of a scan's time when done for every frame.
#[derive(Clone, Copy, Debug)]
struct Stamp {
    /// pcap's seconds, or pcapng's `if_tsoffset`.
    seconds: u64,
    /// Of `resolution`, after `seconds`.
    units: u64,
    resolution: Resolution,
}

impl Stamp {
    fn since_epoch(self) -> Duration {
        Duration::from_secs(self.seconds).saturating_add(self.resolution.duration(self.units))
    }
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
    window: Window,
    pub format: Format,
    endianness: Endianness,
    /// Where the next record begins.
    offset: u64,
    decompressed: bool,
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

fn truncated() -> Fault {
    Fault::Io(io::ErrorKind::UnexpectedEof.into())
}

/// The decompressed stream, read into one buffer where its records are parsed in place: the
/// bytes of a record are moved only when it spans two reads (to the front of the buffer), and
/// the buffer grows only for a record longer than it.
struct Window {
    source: Box<dyn Read + Send>,
    buffer: Vec<u8>,
    /// The bytes read and not consumed: `buffer[start..end]`.
    start: usize,
    end: usize,
}

impl Window {
    fn new(source: Box<dyn Read + Send>) -> Self {
        Self {
            source,
            buffer: vec![0; READ_LEN],
            start: 0,
            end: 0,
        }
    }

    /// The next `len` bytes, not consumed; fewer only where the input ends before them.
    #[inline]
    fn peek(&mut self, len: usize) -> io::Result<&[u8]> {
        if self.end - self.start < len {
            self.read_to(len)?;
        }
        let available = self.end.min(self.start + len);
        Ok(&self.buffer[self.start..available])
    }

    /// Reads until `len` bytes are unconsumed or the input ends.
    #[cold]
    fn read_to(&mut self, len: usize) -> io::Result<()> {
        if self.buffer.len() - self.start < len {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buffer.len() < len {
                self.buffer.resize(len, 0);
            }
        }
        while self.end - self.start < len {
            match self.source.read(&mut self.buffer[self.end..]) {
                Ok(0) => break,
                Ok(read) => self.end += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Passes over `len` bytes, all of them returned by [`Self::peek`] before.
    fn consume(&mut self, len: usize) {
        debug_assert!(len <= self.end - self.start);
        self.start += len;
    }
}

impl CaptureReader {
    /// Reads the file header; `decompressed` says whether offsets count decompressed bytes.
    pub fn new(source: Box<dyn Read + Send>, decompressed: bool) -> Result<Self, ReadError> {
        let mut reader = Self {
            window: Window::new(source),
            format: Format::Pcap,
            endianness: Endianness::Little,
            offset: 0,
            decompressed,
            interfaces: Vec::new(),
            announced_before: 0,
            section: 0,
        };
        let magic = match reader.window.peek(4) {
            Ok(magic) => magic,
            Err(error) => return Err(reader.fault(Fault::Io(error))),
        };
        let shown = magic
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        let Ok(magic) = <[u8; 4]>::try_from(magic) else {
            return Err(ReadError::UnknownFormat(if magic.is_empty() {
                "none, it is empty".to_owned()
            } else {
                shown
            }));
        };
        let (pcap, nanoseconds) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
            (PCAP_MICROSECONDS, _) => (Some(Endianness::Little), false),
            (PCAP_NANOSECONDS, _) => (Some(Endianness::Little), true),
            (_, PCAP_MICROSECONDS) => (Some(Endianness::Big), false),
            (_, PCAP_NANOSECONDS) => (Some(Endianness::Big), true),
            _ => (None, false),
        };
        if let Some(endianness) = pcap {
            reader.endianness = endianness;
            let header: [u8; PCAP_HEADER_LEN] = match reader.window.peek(PCAP_HEADER_LEN) {
                Ok(header) => header.try_into().map_err(|_| reader.fault(truncated()))?,
                Err(error) => return Err(reader.fault(Fault::Io(error))),
            };
            let snaplen = endianness.u32(header[16..20].try_into().expect("4 bytes"));
            // The upper bits of the link type field say whether frames end with their FCS.
            let link_type = endianness.u32(header[20..24].try_into().expect("4 bytes")) as u16;
            reader.window.consume(PCAP_HEADER_LEN);
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
            // The section header, magic included, is read as the first block.
            reader.format = Format::PcapNg;
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
        let header: [u8; PCAP_RECORD_HEADER_LEN] = match self.window.peek(PCAP_RECORD_HEADER_LEN)? {
            [] => return Ok(false),
            header => header.try_into().map_err(|_| truncated())?,
        };
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
        let len = PCAP_RECORD_HEADER_LEN + captured_len as usize;
        let record = self.window.peek(len)?;
        if record.len() < len {
            return Err(truncated());
        }
        each(Record::Packet(Packet {
            interface: 0,
            stamp: Some(Stamp {
                seconds: u64::from(seconds),
                units: u64::from(fraction),
                resolution: self.interfaces[0].resolution,
            }),
            original_len,
            data: &record[PCAP_RECORD_HEADER_LEN..],
        }));
        self.window.consume(len);
        self.offset += len as u64;
        Ok(true)
    }

    /// Reads one pcapng block; `false` at the end.
    fn next_block(&mut self, each: &mut impl FnMut(Record<'_>)) -> Result<bool, Fault> {
        // Type and length.
        let head: [u8; 8] = match self.window.peek(8)? {
            [] => return Ok(false),
            head => head.try_into().map_err(|_| truncated())?,
        };
        let kind = self.endianness.u32(head[..4].try_into().expect("4 bytes"));
        let section_header =
            u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) == SECTION_HEADER_BLOCK;
        if section_header {
            // A new section says its byte order right after its length.
            let order: [u8; 4] = self.window.peek(12)?[8..]
                .try_into()
                .map_err(|_| truncated())?;
            self.endianness = if u32::from_le_bytes(order) == BYTE_ORDER_MAGIC {
                Endianness::Little
            } else if u32::from_be_bytes(order) == BYTE_ORDER_MAGIC {
                Endianness::Big
            } else {
                return Err(Fault::Corrupt(
                    "a section header without its byte-order magic".to_owned(),
                ));
            };
        }
        let len = self.endianness.u32(head[4..].try_into().expect("4 bytes"));
        if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD_LEN {
            return Err(Fault::Corrupt(format!("a block of length {len}")));
        }
        // The body, then the trailing copy of the length.
        let block = self.window.peek(len as usize)?;
        if block.len() < len as usize {
            return Err(truncated());
        }
        let (body, trailer) = block[8..].split_at(block.len() - 12);
        if self.endianness.u32(trailer.try_into().expect("4 bytes")) != len {
            return Err(Fault::Corrupt(format!(
                "a block of length {len} whose trailer says otherwise"
            )));
        }
        match kind {
            _ if section_header => {
                self.section += u32::from(self.offset > 0);
                self.announced_before += self.interfaces.len();
                self.interfaces.clear();
            }
            INTERFACE_DESCRIPTION_BLOCK => {
                if self.announced_before + self.interfaces.len() >= MAX_INTERFACES {
                    return Err(Fault::Corrupt(format!(
                        "more than {MAX_INTERFACES} interface blocks, which scan does not keep \
                         apart"
                    )));
                }
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
        self.window.consume(len as usize);
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
        stamp: timestamp.map(|units| Stamp {
            seconds: description.offset_secs,
            units,
            resolution: description.resolution,
        }),
        original_len,
        data,
    })
}
