//! Fuzzes the shared classifier, `probe_common::{classify, classify_ip}`: on any input it must not
//! panic, and it must say what a reference written here says. The reference restates the
//! classifier's documented rules on top of etherparse's header slices, a parser the classifier
//! shares no code with, and lets the standard library decide what is loopback.
//!
//! An input is a tag byte, then a body:
//! - tag % 3 == 0: the body is an Ethernet frame, for `classify`;
//! - tag % 3 == 1: the body is an IP packet as a layer-3 device delivers it, for `classify_ip`;
//! - tag % 3 == 2: `arbitrary` reads the body as a [`Shaped`] frame (VLAN tags, ethertype, IP
//!   version, IHL, ARP's types and lengths, and addresses drawn near the rules' boundaries),
//!   written out and checked in the framing it chose.
//!
//! `cargo xtask fuzz` seeds the corpus with every test-frames case in both framings (tags 0 and 1);
//! libFuzzer mutates those and whatever it finds.
#![no_main]

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
};

use arbitrary::{Arbitrary, Unstructured};
use etherparse::{
    ArpHardwareId, ArpPacketSlice, EtherType, Ethernet2HeaderSlice, Ipv4HeaderSlice,
    Ipv6HeaderSlice, SingleVlanHeaderSlice,
};
use libfuzzer_sys::fuzz_target;
use probe_common::{Address, Family, LoopbackMatch, classify, classify_ip};

fuzz_target!(init: reference_agrees_with_the_cases(), |input: &[u8]| {
    let Some((&tag, body)) = input.split_first() else {
        return;
    };
    match tag % 3 {
        0 => check(Framing::Ethernet, body),
        1 => check(Framing::Ip, body),
        _ => {
            // Bodies too short for a whole `Shaped` are filled with zeros by `arbitrary`.
            if let Ok(shaped) = Shaped::arbitrary_take_rest(Unstructured::new(body)) {
                let (framing, bytes) = shaped.build();
                check(framing, &bytes);
            }
        }
    }
});

#[derive(Clone, Copy, Debug)]
enum Framing {
    /// From the Ethernet header on: `classify`.
    Ethernet,
    /// From the IP header on (tun, wireguard): `classify_ip`.
    Ip,
}

fn check(framing: Framing, bytes: &[u8]) {
    let (classifier, reference) = match framing {
        Framing::Ethernet => (classify(bytes), reference_frame(bytes)),
        Framing::Ip => (classify_ip(bytes), reference_packet(bytes)),
    };
    assert_eq!(
        classifier,
        reference,
        "the classifier (left) and the etherparse reference (right) disagree on this {framing:?} \
         input of {} bytes: {}",
        bytes.len(),
        hex(bytes)
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .enumerate()
        .fold(String::new(), |mut out, (index, byte)| {
            let separator = if index == 0 { "" } else { " " };
            write!(out, "{separator}{byte:02x}").expect("writing to a String");
            out
        })
}

/// An oracle that is wrong on the hand-checked cases would make every disagreement noise: the
/// reference is held to test-frames' table once, before fuzzing starts.
fn reference_agrees_with_the_cases() {
    for case in test_frames::cases() {
        assert_eq!(
            reference_frame(&case.frame),
            case.expected,
            "the fuzz reference is wrong on test-frames case {:?}",
            case.name
        );
        if let Some(ip_offset) = test_frames::ip_offset(&case.frame) {
            assert_eq!(
                reference_packet(&case.frame[ip_offset..]),
                case.expected,
                "the fuzz reference is wrong on test-frames case {:?} without its link layer",
                case.name
            );
        }
    }
}

// --- The reference ---------------------------------------------------------------------------
//
// Where etherparse and the rules differ, and what is done about it:
// - Only the header slices are used, never `SlicedPacket`, `LaxSlicedPacket`, `Ipv4Slice` or
//   `IpHeaders`. The strict ones hold the packet to its length fields (`Ipv4Slice` rejects a total
//   length below the header length or past the slice); the lax ones fall back to the slice's
//   length then and mark the payload incomplete; all of them go on to IPv6 extension headers and
//   the transport header and report those errors. The rules read the fixed header only and ignore
//   total length, payload length, checksum and fragments, so each of those checks would have to
//   be undone; the header slices make none of them. `Ipv4HeaderSlice::from_slice` checks exactly
//   the rules' IPv4 header (at least 20 bytes, version 4, IHL ≥ 5, the options within the slice),
//   `Ipv6HeaderSlice::from_slice` at least 40 bytes and version 6.
// - Those slicers also take up to three VLAN tags (`LINK_EXTS_CAP`), and MACsec headers; the
//   rules take at most two tags and nothing else, so tags are walked here one
//   `SingleVlanHeaderSlice` at a time. etherparse names the rules' three TPIDs
//   `VLAN_TAGGED_FRAME` (0x8100), `PROVIDER_BRIDGING` (0x88a8) and `VLAN_DOUBLE_TAGGED_FRAME`
//   (0x9100).
// - For a packet without a link layer, rather than reading the version nibble as the classifier
//   does, each header slice is tried: each checks its own version, and no header has both.
//   `classify_ip`'s 4-byte minimum needs no code: both slices need at least 20 bytes.
// - Which address matched is worked out here too, not with `Address::from_flags`, which the
//   classifier uses.

const MAX_VLAN_TAGS: usize = 2;

/// The rules for a frame from its Ethernet header on.
fn reference_frame(frame: &[u8]) -> Option<LoopbackMatch> {
    let ethernet = Ethernet2HeaderSlice::from_slice(frame).ok()?;
    let mut ether_type = ethernet.ether_type();
    let mut rest = &frame[ethernet.slice().len()..];
    let mut tags = 0;
    while matches!(
        ether_type,
        EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME
    ) {
        if tags == MAX_VLAN_TAGS {
            return None;
        }
        let tag = SingleVlanHeaderSlice::from_slice(rest).ok()?;
        ether_type = tag.ether_type();
        rest = &rest[tag.slice().len()..];
        tags += 1;
    }
    match ether_type {
        EtherType::IPV4 => ipv4_match(&Ipv4HeaderSlice::from_slice(rest).ok()?),
        EtherType::IPV6 => ipv6_match(&Ipv6HeaderSlice::from_slice(rest).ok()?),
        EtherType::ARP => arp_match(&ArpPacketSlice::from_slice(rest).ok()?),
        _ => None,
    }
}

/// The rules for a packet from its IP header on.
fn reference_packet(packet: &[u8]) -> Option<LoopbackMatch> {
    if let Ok(header) = Ipv4HeaderSlice::from_slice(packet) {
        return ipv4_match(&header);
    }
    if let Ok(header) = Ipv6HeaderSlice::from_slice(packet) {
        return ipv6_match(&header);
    }
    None
}

fn ipv4_match(header: &Ipv4HeaderSlice) -> Option<LoopbackMatch> {
    let address = which(
        header.source_addr().is_loopback(),
        header.destination_addr().is_loopback(),
    )?;
    Some(LoopbackMatch {
        family: Family::Ipv4,
        address,
    })
}

/// ARP for IPv4 over Ethernet only (hardware type 1 or IEEE 802's 6, as Linux takes on
/// Ethernet): etherparse reads any hardware and protocol lengths, the rules only 6 and 4.
fn arp_match(packet: &ArpPacketSlice) -> Option<LoopbackMatch> {
    if !matches!(
        packet.hw_addr_type(),
        ArpHardwareId::ETHERNET | ArpHardwareId::IEEE802
    ) || packet.proto_addr_type() != EtherType::IPV4
        || packet.hw_addr_size() != 6
        || packet.proto_addr_size() != 4
    {
        return None;
    }
    let v4 = |bytes: &[u8]| Ipv4Addr::from(<[u8; 4]>::try_from(bytes).expect("four bytes"));
    let address = which(
        v4(packet.sender_protocol_addr()).is_loopback(),
        v4(packet.target_protocol_addr()).is_loopback(),
    )?;
    Some(LoopbackMatch {
        family: Family::Arp,
        address,
    })
}

fn ipv6_match(header: &Ipv6HeaderSlice) -> Option<LoopbackMatch> {
    let (source, destination) = (header.source_addr(), header.destination_addr());
    let address = which(
        is_ipv6_loopback(source) || is_ipv4_mapped_loopback(source),
        is_ipv6_loopback(destination) || is_ipv4_mapped_loopback(destination),
    )?;
    let family = if is_ipv6_loopback(source) || is_ipv6_loopback(destination) {
        Family::Ipv6
    } else {
        Family::Ipv4Mapped
    };
    Some(LoopbackMatch { family, address })
}

/// `::1` only.
fn is_ipv6_loopback(address: Ipv6Addr) -> bool {
    address.is_loopback()
}

/// `::ffff:127.0.0.0/104`. `to_ipv4_mapped`, not `to_ipv4`: the latter also takes the deprecated
/// IPv4-compatible `::a.b.c.d` (and makes `::1` into 0.0.0.1), which the rules do not count.
fn is_ipv4_mapped_loopback(address: Ipv6Addr) -> bool {
    address
        .to_ipv4_mapped()
        .as_ref()
        .is_some_and(Ipv4Addr::is_loopback)
}

fn which(source: bool, destination: bool) -> Option<Address> {
    match (source, destination) {
        (false, false) => None,
        (true, false) => Some(Address::Source),
        (false, true) => Some(Address::Destination),
        (true, true) => Some(Address::Both),
    }
}

// --- Structure-aware inputs ------------------------------------------------------------------

/// A frame described by its parts, each drawn mostly from values at the rules' boundaries and
/// sometimes from anything. Mutating raw bytes seldom keeps a tagged IPv6 header intact while
/// moving an address across `::ffff:127.0.0.0/104`; this does so from a few bytes.
#[derive(Debug, Arbitrary)]
struct Shaped {
    /// No link layer: what a layer-3 device delivers, for `classify_ip`.
    layer3: bool,
    macs: [u8; 12],
    /// Only the first three are written: one more than the rules take.
    tags: Vec<VlanTag>,
    ether_type: EtherTypeChoice,
    ip: IpChoice,
    /// Options and payload after the fixed header.
    tail: Vec<u8>,
    /// Where the frame is cut, if anywhere.
    cut: Option<u8>,
}

#[derive(Debug, Arbitrary)]
struct VlanTag {
    tpid: Tpid,
    tci: [u8; 2],
}

#[derive(Debug, Arbitrary)]
enum Tpid {
    Dot1Q,
    Dot1Ad,
    PreStandard,
    Other(u16),
}

#[derive(Debug, Arbitrary)]
enum EtherTypeChoice {
    /// The one the header implies.
    OfTheHeader,
    Ipv4,
    Ipv6,
    Arp,
    Other(u16),
}

#[derive(Debug, Arbitrary)]
enum IpChoice {
    V4 {
        version: VersionChoice,
        ihl: IhlChoice,
        /// Type of service to checksum, none of which the rules read.
        fields: [u8; 11],
        source: V4Choice,
        destination: V4Choice,
    },
    V6 {
        version: VersionChoice,
        /// The low nibble of the first byte, then traffic class to hop limit.
        fields: [u8; 8],
        source: V6Choice,
        destination: V6Choice,
    },
    Arp {
        /// Hardware type, protocol type and their lengths as IPv4 over Ethernet has them.
        right_types: bool,
        /// Used when not `right_types`.
        types: [u8; 6],
        operation: [u8; 2],
        sender_mac: [u8; 6],
        sender: V4Choice,
        target_mac: [u8; 6],
        target: V4Choice,
    },
}

#[derive(Debug, Arbitrary)]
enum VersionChoice {
    Right,
    /// Its low nibble.
    Any(u8),
}

#[derive(Debug, Arbitrary)]
enum IhlChoice {
    Five,
    /// Its low nibble.
    Any(u8),
}

#[derive(Debug, Arbitrary)]
enum V4Choice {
    Loopback([u8; 3]),
    /// 126.x.y.z, just below 127/8.
    Below([u8; 3]),
    /// 128.x.y.z, just above.
    Above([u8; 3]),
    Any([u8; 4]),
}

#[derive(Debug, Arbitrary)]
enum V6Choice {
    Localhost,
    Mapped(V4Choice),
    /// `::1`, or `::ffff:127.0.0.1` if `mapped`, with one byte replaced.
    Near {
        mapped: bool,
        index: u8,
        value: u8,
    },
    Any([u8; 16]),
}

impl Shaped {
    fn build(&self) -> (Framing, Vec<u8>) {
        let mut bytes = Vec::with_capacity(128);
        let framing = if self.layer3 {
            Framing::Ip
        } else {
            bytes.extend_from_slice(&self.macs);
            let ip_ether_type = match (&self.ether_type, &self.ip) {
                (EtherTypeChoice::OfTheHeader, IpChoice::V4 { .. })
                | (EtherTypeChoice::Ipv4, _) => 0x0800,
                (EtherTypeChoice::OfTheHeader, IpChoice::V6 { .. })
                | (EtherTypeChoice::Ipv6, _) => 0x86dd,
                (EtherTypeChoice::OfTheHeader, IpChoice::Arp { .. })
                | (EtherTypeChoice::Arp, _) => 0x0806,
                (EtherTypeChoice::Other(value), _) => *value,
            };
            let tags = &self.tags[..self.tags.len().min(MAX_VLAN_TAGS + 1)];
            for tag in tags {
                let tpid: u16 = match tag.tpid {
                    Tpid::Dot1Q => 0x8100,
                    Tpid::Dot1Ad => 0x88a8,
                    Tpid::PreStandard => 0x9100,
                    Tpid::Other(value) => value,
                };
                bytes.extend_from_slice(&tpid.to_be_bytes());
                bytes.extend_from_slice(&tag.tci);
            }
            bytes.extend_from_slice(&ip_ether_type.to_be_bytes());
            Framing::Ethernet
        };
        match &self.ip {
            IpChoice::V4 {
                version,
                ihl,
                fields,
                source,
                destination,
            } => {
                let ihl = match ihl {
                    IhlChoice::Five => 5,
                    IhlChoice::Any(value) => value & 0x0f,
                };
                bytes.push(version.nibble(4) << 4 | ihl);
                bytes.extend_from_slice(fields);
                bytes.extend_from_slice(&source.address().octets());
                bytes.extend_from_slice(&destination.address().octets());
            }
            IpChoice::V6 {
                version,
                fields,
                source,
                destination,
            } => {
                bytes.push(version.nibble(6) << 4 | fields[0] & 0x0f);
                bytes.extend_from_slice(&fields[1..]);
                bytes.extend_from_slice(&source.address().octets());
                bytes.extend_from_slice(&destination.address().octets());
            }
            IpChoice::Arp {
                right_types,
                types,
                operation,
                sender_mac,
                sender,
                target_mac,
                target,
            } => {
                let ethernet_ipv4 = [0, 1, 0x08, 0x00, 6, 4];
                bytes.extend_from_slice(if *right_types { &ethernet_ipv4 } else { types });
                bytes.extend_from_slice(operation);
                bytes.extend_from_slice(sender_mac);
                bytes.extend_from_slice(&sender.address().octets());
                bytes.extend_from_slice(target_mac);
                bytes.extend_from_slice(&target.address().octets());
            }
        }
        bytes.extend_from_slice(&self.tail);
        if let Some(cut) = self.cut {
            bytes.truncate(cut.into());
        }
        (framing, bytes)
    }
}

impl VersionChoice {
    fn nibble(&self, right: u8) -> u8 {
        match self {
            Self::Right => right,
            Self::Any(value) => value & 0x0f,
        }
    }
}

impl V4Choice {
    fn address(&self) -> Ipv4Addr {
        match *self {
            Self::Loopback([b, c, d]) => Ipv4Addr::new(127, b, c, d),
            Self::Below([b, c, d]) => Ipv4Addr::new(126, b, c, d),
            Self::Above([b, c, d]) => Ipv4Addr::new(128, b, c, d),
            Self::Any(octets) => octets.into(),
        }
    }
}

impl V6Choice {
    fn address(&self) -> Ipv6Addr {
        match self {
            Self::Localhost => Ipv6Addr::LOCALHOST,
            Self::Mapped(v4) => v4.address().to_ipv6_mapped(),
            Self::Near {
                mapped,
                index,
                value,
            } => {
                let base = if *mapped {
                    Ipv4Addr::LOCALHOST.to_ipv6_mapped()
                } else {
                    Ipv6Addr::LOCALHOST
                };
                let mut octets = base.octets();
                octets[usize::from(index % 16)] = *value;
                octets.into()
            }
            Self::Any(octets) => (*octets).into(),
        }
    }
}
