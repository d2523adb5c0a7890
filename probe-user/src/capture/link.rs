//! What the kernel's classifier makes of a captured frame, for each link type a capture can
//! have: Ethernet frames as they are, raw IP packets as on layer-3 devices, and Linux cooked
//! captures (SLL, SLL2: `tcpdump -i any`) through the ethertype they name.

use std::cell::Cell;

use probe_common::{EthernetView, Frame, LoopbackMatch, classify, classify_ip};

/// LINKTYPE_ETHERNET.
const ETHERNET: u16 = 1;
/// LINKTYPE_RAW, and its IPv4-only and IPv6-only forms.
const RAW: u16 = 101;
const IPV4: u16 = 228;
const IPV6: u16 = 229;
/// LINKTYPE_LINUX_SLL and LINKTYPE_LINUX_SLL2.
const LINUX_SLL: u16 = 113;
const LINUX_SLL2: u16 = 276;
const SLL_HEADER_LEN: usize = 16;
const SLL2_HEADER_LEN: usize = 20;
/// ARPHRD_ETHER and ARPHRD_LOOPBACK, the device types cooked headers carry.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

/// The link types `scan` reads, by their LINKTYPE_ number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// Raw IP, whichever the version (101, 228 and 229).
    Ip,
    LinuxSll,
    LinuxSll2,
    /// Any other: its frames are counted, not classified.
    Other(u16),
}

impl LinkType {
    pub fn of(number: u16) -> Self {
        match number {
            ETHERNET => Self::Ethernet,
            RAW | IPV4 | IPV6 => Self::Ip,
            LINUX_SLL => Self::LinuxSll,
            LINUX_SLL2 => Self::LinuxSll2,
            other => Self::Other(other),
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::Ethernet => "ethernet".to_owned(),
            Self::Ip => "raw-ip".to_owned(),
            Self::LinuxSll => "linux-sll".to_owned(),
            Self::LinuxSll2 => "linux-sll2".to_owned(),
            Self::Other(number) => format!("linktype-{number}"),
        }
    }
}

/// What became of a captured frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Matched(LoopbackMatch),
    NotMatched,
    /// The capture ends (its snapshot length) before what the classifier had to read.
    CutShort,
    /// Captured on a loopback device (a cooked header says so): loopback addresses belong
    /// there, so it is not classified.
    LoopbackDevice,
    /// Of a link type not read here.
    UnknownLinkType,
}

/// What the cooked header of an SLL or SLL2 frame says.
struct Cooked<'a> {
    device_type: u16,
    ethertype: [u8; 2],
    /// The link-layer source address, when it is a MAC address.
    source_mac: Option<[u8; 6]>,
    payload: &'a [u8],
}

impl<'a> Cooked<'a> {
    fn of(link: LinkType, frame: &'a [u8]) -> Option<Self> {
        let field = |at: usize| -> Option<[u8; 2]> { frame.get(at..at + 2)?.try_into().ok() };
        // SLL: packet type, device type, address length, 8 bytes of address, protocol.
        // SLL2: protocol, reserved, ifindex, device type, packet type, address length, address.
        let (device_type, ethertype, address_len, address_at, header_len) = match link {
            LinkType::LinuxSll => (
                field(2)?,
                field(14)?,
                usize::from(u16::from_be_bytes(field(4)?)),
                6,
                SLL_HEADER_LEN,
            ),
            LinkType::LinuxSll2 => (
                field(8)?,
                field(0)?,
                usize::from(*frame.get(11)?),
                12,
                SLL2_HEADER_LEN,
            ),
            _ => return None,
        };
        let device_type = u16::from_be_bytes(device_type);
        let source_mac = (device_type == ARPHRD_ETHER && address_len == 6)
            .then(|| frame.get(address_at..address_at + 6)?.try_into().ok())
            .flatten();
        Some(Self {
            device_type,
            ethertype,
            source_mac,
            payload: frame.get(header_len..)?,
        })
    }
}

/// Classifies one captured frame of `link`, `original_len` long on the wire, with the
/// classifier the kernel runs.
pub fn classify_frame(link: LinkType, data: &[u8], original_len: u32) -> Verdict {
    let original_len = original_len as usize;
    match link {
        LinkType::Ethernet => decide(Rules::Ethernet, data, original_len),
        LinkType::Ip => decide(Rules::Ip, data, original_len),
        LinkType::LinuxSll | LinkType::LinuxSll2 => {
            let Some(cooked) = Cooked::of(link, data) else {
                return cut_or_not(data.len() < original_len);
            };
            if cooked.device_type == ARPHRD_LOOPBACK {
                return Verdict::LoopbackDevice;
            }
            let header_len = data.len() - cooked.payload.len();
            let view = EthernetView::new(cooked.ethertype, cooked.payload);
            // In the view's offsets: the cooked header is replaced by an Ethernet header.
            let ethernet_len = probe_common::ETHERNET_HEADER_LEN;
            decide(
                Rules::Ethernet,
                &view,
                (original_len + ethernet_len).saturating_sub(header_len),
            )
        }
        LinkType::Other(_) => Verdict::UnknownLinkType,
    }
}

fn cut_or_not(cut: bool) -> Verdict {
    if cut {
        Verdict::CutShort
    } else {
        Verdict::NotMatched
    }
}

/// A frame's link-layer source MAC address, if its link layer has one.
pub fn source_mac(link: LinkType, data: &[u8]) -> Option<[u8; 6]> {
    match link {
        LinkType::Ethernet => data.get(6..12)?.try_into().ok(),
        LinkType::LinuxSll | LinkType::LinuxSll2 => Cooked::of(link, data)?.source_mac,
        LinkType::Ip | LinkType::Other(_) => None,
    }
}

/// The frame's network-layer packet as Ethernet would carry it (zero MAC addresses), for the
/// header decoding of matched frames; `None` for Ethernet frames, which are that already, and
/// for raw IP.
pub fn cooked_as_ethernet(link: LinkType, data: &[u8]) -> Option<Vec<u8>> {
    let cooked = Cooked::of(link, data)?;
    let mut frame = Vec::with_capacity(14 + cooked.payload.len());
    frame.extend_from_slice(&[0; 12]);
    frame.extend_from_slice(&cooked.ethertype);
    frame.extend_from_slice(cooked.payload);
    Some(frame)
}

/// Which of the classifier's entry points a frame goes to.
#[derive(Clone, Copy)]
enum Rules {
    Ethernet,
    Ip,
}

impl Rules {
    fn classify<F: Frame + ?Sized>(self, frame: &F) -> Option<LoopbackMatch> {
        match self {
            Self::Ethernet => classify(frame),
            Self::Ip => classify_ip(frame),
        }
    }
}

/// Classifies `frame`; when it does not match and the capture holds less than the wire
/// frame, says whether the classifier wanted bytes the capture cut off.
fn decide<F: Frame + ?Sized>(rules: Rules, frame: &F, original_len: usize) -> Verdict {
    if frame.holds(original_len) {
        return rules
            .classify(frame)
            .map_or(Verdict::NotMatched, Verdict::Matched);
    }
    let probed = Probed {
        frame,
        original_len,
        wanted_cut_bytes: Cell::new(false),
    };
    match rules.classify(&probed) {
        Some(matched) => Verdict::Matched(matched),
        None => cut_or_not(probed.wanted_cut_bytes.get()),
    }
}

/// A frame that notes whether the classifier looked past what was captured but within what
/// was on the wire.
struct Probed<'a, F: ?Sized> {
    frame: &'a F,
    original_len: usize,
    wanted_cut_bytes: Cell<bool>,
}

impl<F: Frame + ?Sized> Probed<'_, F> {
    fn note(&self, end: usize, captured: bool) {
        if !captured && end <= self.original_len {
            self.wanted_cut_bytes.set(true);
        }
    }
}

impl<F: Frame + ?Sized> Frame for Probed<'_, F> {
    fn holds(&self, len: usize) -> bool {
        let holds = self.frame.holds(len);
        self.note(len, holds);
        holds
    }

    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        let value = self.frame.load(offset);
        self.note(offset.saturating_add(size_of::<T>()), value.is_some());
        value
    }
}
