//! What the kernel's classifier makes of a captured frame, for each link type a capture can
//! have: Ethernet frames as they are, raw IP packets as on layer-3 devices, and Linux cooked
//! captures (SLL, SLL2: `tcpdump -i any`) through the ethertype they name.

use std::{cell::Cell, net::IpAddr};

use probe_common::{
    ETHERNET_HEADER_LEN, EthernetView, Frame, LoopbackMatch, MAX_VLAN_TAGS, VLAN_TAG_LEN, classify,
    classify_ip,
};

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
#[inline]
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
            decide(
                Rules::Ethernet,
                &view,
                (original_len + ETHERNET_HEADER_LEN).saturating_sub(header_len),
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

/// The sender of a frame the classifier matched: its IP source address, or ARP's sender
/// protocol address. Read where the classifier found the header, known to be well formed:
/// decoding the whole frame (etherparse, as for samples) was most of the time of a scan whose
/// frames all matched.
pub fn matched_source_ip(link: LinkType, data: &[u8]) -> Option<IpAddr> {
    match link {
        LinkType::Ethernet => behind_tags(
            data.get(ETHERNET_HEADER_LEN - 2..ETHERNET_HEADER_LEN)?
                .try_into()
                .ok()?,
            data.get(ETHERNET_HEADER_LEN..)?,
        ),
        LinkType::Ip => match data.first()? >> 4 {
            4 => source_at(data, IPV4_SOURCE),
            6 => source_at(data, IPV6_SOURCE),
            _ => None,
        },
        LinkType::LinuxSll | LinkType::LinuxSll2 => {
            let cooked = Cooked::of(link, data)?;
            behind_tags(cooked.ethertype, cooked.payload)
        }
        LinkType::Other(_) => None,
    }
}

/// Where the source address sits in an IPv4 header, an IPv6 header and an ARP packet for IPv4
/// over Ethernet (the sender's protocol address), and how long it is.
const IPV4_SOURCE: (usize, usize) = (12, 4);
const IPV6_SOURCE: (usize, usize) = (8, 16);
const ARP_SENDER: (usize, usize) = (14, 4);

/// The source address of the packet of `ethertype`, behind as many VLAN tags as the classifier
/// looks behind.
fn behind_tags(mut ethertype: [u8; 2], mut packet: &[u8]) -> Option<IpAddr> {
    for _ in 0..=MAX_VLAN_TAGS {
        match u16::from_be_bytes(ethertype) {
            0x0800 => return source_at(packet, IPV4_SOURCE),
            0x86dd => return source_at(packet, IPV6_SOURCE),
            0x0806 => return source_at(packet, ARP_SENDER),
            0x8100 | 0x88a8 | 0x9100 => {
                ethertype = packet.get(2..VLAN_TAG_LEN)?.try_into().ok()?;
                packet = packet.get(VLAN_TAG_LEN..)?;
            }
            _ => return None,
        }
    }
    None
}

fn source_at(packet: &[u8], (at, len): (usize, usize)) -> Option<IpAddr> {
    let address = packet.get(at..at + len)?;
    Some(match len {
        4 => IpAddr::from(<[u8; 4]>::try_from(address).ok()?),
        _ => IpAddr::from(<[u8; 16]>::try_from(address).ok()?),
    })
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

#[cfg(test)]
mod tests {
    use probe_common::Framing;
    use test_frames::{cases, ip_offset};

    use super::*;
    use crate::output::samples::Headers;

    /// Every test frame the classifier matches (IPv4, IPv6, ARP, behind VLAN tags or not), as
    /// each link type carries it.
    fn matched_frames() -> Vec<(LinkType, Vec<u8>)> {
        let mut frames = Vec::new();
        for frame in cases().into_iter().map(|case| case.frame) {
            if let Some(at) = ip_offset(&frame) {
                frames.push((LinkType::Ip, frame[at..].to_vec()));
            }
            if frame.len() >= ETHERNET_HEADER_LEN {
                let (mac, ethertype, payload) = (&frame[6..12], &frame[12..14], &frame[14..]);
                // Packet type, ARPHRD_ETHER, the address's length, the address padded to 8 bytes.
                let sll = [&[0, 0, 0, 1, 0, 6], mac, &[0, 0], ethertype, payload].concat();
                // Reserved, an ifindex, ARPHRD_ETHER, packet type, the address's length.
                let sll2 = [
                    ethertype,
                    &[0, 0, 0, 0, 0, 2, 0, 1, 0, 6],
                    mac,
                    &[0, 0],
                    payload,
                ]
                .concat();
                frames.push((LinkType::LinuxSll, sll));
                frames.push((LinkType::LinuxSll2, sll2));
            }
            frames.push((LinkType::Ethernet, frame));
        }
        frames.retain(|(link, frame)| {
            matches!(
                classify_frame(*link, frame, frame.len() as u32),
                Verdict::Matched(_)
            )
        });
        frames
    }

    #[test]
    fn a_matched_frame_has_the_sender_its_decoded_headers_name() {
        let frames = matched_frames();
        for link in [
            LinkType::Ethernet,
            LinkType::Ip,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
        ] {
            assert!(
                frames.iter().any(|(of, _)| *of == link),
                "no matched frame of {link:?}"
            );
        }
        for (link, frame) in frames {
            let decoded = match link {
                LinkType::Ip => Headers::decode(&frame, Framing::Ip),
                LinkType::LinuxSll | LinkType::LinuxSll2 => {
                    let cooked = Cooked::of(link, &frame).expect("a cooked header");
                    let ethernet = [&[0; 12], &cooked.ethertype[..], cooked.payload].concat();
                    Headers::decode(&ethernet, Framing::Ethernet)
                }
                _ => Headers::decode(&frame, Framing::Ethernet),
            };
            assert!(decoded.source_ip.is_some(), "{link:?} {frame:02x?}");
            assert_eq!(
                matched_source_ip(link, &frame),
                decoded.source_ip,
                "{link:?} {frame:02x?}"
            );
        }
    }
}
