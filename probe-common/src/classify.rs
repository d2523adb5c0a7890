//! Finds frames whose IP source or destination is a loopback address, and ARP packets whose
//! sender or target protocol address is.
//!
//! Benign frames are the hot path: an IPv4 frame costs one ethertype check, one bounds check and
//! two byte compares before it is known not to match; an IPv6 frame one ethertype check, one
//! bounds check and two 64-bit compares; an ARP packet three ethertype checks, one bounds check
//! and two byte compares. Header validation (version, IHL, ARP's types and lengths) runs only
//! for frames whose addresses already look like loopback.

use core::mem::size_of;

use crate::{Address, Family, LoopbackMatch};

/// Read access to a frame, from its first header on. Lengths are only ever compared, never
/// computed from the frame's bounds: in the kernel that would subtract packet pointers, which the
/// verifier allows only with CAP_PERFMON.
pub trait Frame {
    /// Whether the frame is at least `len` bytes long.
    fn holds(&self, len: usize) -> bool;

    /// The `T` stored `offset` bytes into the frame, or `None` if it would end past the frame.
    fn load<T: Copy>(&self, offset: usize) -> Option<T>;
}

impl Frame for [u8] {
    fn holds(&self, len: usize) -> bool {
        len <= self.len()
    }

    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        let bytes = self.get(offset..offset.checked_add(size_of::<T>())?)?;
        // SAFETY: `bytes` holds exactly `size_of::<T>()` bytes; every `T` read here is plain data
        // (integers and byte arrays) for which any bit pattern is valid.
        Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
    }
}

/// An Ethernet header without tags: two addresses and the ethertype.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// One 802.1Q or 802.1ad tag.
pub const VLAN_TAG_LEN: usize = 4;
/// The most VLAN tags the classifier looks behind.
pub const MAX_VLAN_TAGS: u32 = 2;

// Ethertypes as they sit in memory, compared without a byte swap.
const ETHERTYPE_IPV4: u16 = u16::from_ne_bytes([0x08, 0x00]);
const ETHERTYPE_IPV6: u16 = u16::from_ne_bytes([0x86, 0xdd]);
const ETHERTYPE_ARP: u16 = u16::from_ne_bytes([0x08, 0x06]);
const ETHERTYPE_VLAN: u16 = u16::from_ne_bytes([0x81, 0x00]);
const ETHERTYPE_QINQ: u16 = u16::from_ne_bytes([0x88, 0xa8]);
const ETHERTYPE_QINQ_OLD: u16 = u16::from_ne_bytes([0x91, 0x00]);

const IPV4_MIN_HEADER_LEN: usize = 20;
// 127.0.0.0/8 as it sits in memory.
const IPV4_LOOPBACK_NET: u32 = u32::from_ne_bytes([127, 0, 0, 0]);
const IPV4_LOOPBACK_MASK: u32 = u32::from_ne_bytes([0xff, 0, 0, 0]);

/// The fixed IPv6 header, the longer of the two the classifier reads.
pub const IPV6_HEADER_LEN: usize = 40;
// The low 64 bits of `::1` and the fixed part of `::ffff:127.0.0.0/104`, as they sit in memory.
/// The most of a frame the classifier reads: an Ethernet header, [`MAX_VLAN_TAGS`] tags and an
/// IPv6 header. A program that must pull headers into the linear part of a buffer first (tcx)
/// pulls this much.
pub const HEADERS_LEN: usize =
    ETHERNET_HEADER_LEN + MAX_VLAN_TAGS as usize * VLAN_TAG_LEN + IPV6_HEADER_LEN;

/// An ARP packet for IPv4 over Ethernet (hardware type 1, or IEEE 802's 6): hardware and
/// protocol types, their lengths, the operation, then the sender's hardware and protocol addresses and the target's.
pub const ARP_IPV4_LEN: usize = 28;
// ARP's fixed fields for IPv4 over Ethernet, as they sit in memory. Linux takes IEEE 802's
// hardware type on an Ethernet device too (`arp_process`), so both are ARP over Ethernet here.
const ARP_HARDWARE_ETHERNET: u16 = u16::from_ne_bytes([0, 1]);
const ARP_HARDWARE_IEEE802: u16 = u16::from_ne_bytes([0, 6]);
const ARP_LENGTHS_ETHERNET_IPV4: u16 = u16::from_ne_bytes([6, 4]);

const IPV6_LOOPBACK_LOW: u64 = u64::from_ne_bytes([0, 0, 0, 0, 0, 0, 0, 1]);
const IPV4_MAPPED_LOOPBACK_LOW: u64 = u64::from_ne_bytes([0, 0, 0xff, 0xff, 127, 0, 0, 0]);
const IPV4_MAPPED_LOOPBACK_MASK: u64 = u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0]);

/// Classifies a frame: `Some` when it is a well-formed IPv4 or IPv6 packet, behind at most two
/// VLAN tags (802.1Q, 802.1ad, or the pre-standard 0x9100), whose source or destination is
/// loopback, or an ARP packet for IPv4 over Ethernet, behind as many, whose sender or target
/// protocol address is. Truncated and malformed frames, and frames behind more tags, are never
/// matched.
#[inline(always)]
pub fn classify<F: Frame + ?Sized>(frame: &F) -> Option<LoopbackMatch> {
    let mut l3_offset = ETHERNET_HEADER_LEN;
    let mut ethertype: u16 = frame.load(l3_offset - 2)?;
    let mut vlan_tags = 0;
    // Untagged IP is tested first: it is nearly all traffic.
    loop {
        if ethertype == ETHERTYPE_IPV4 {
            return classify_ipv4(frame, l3_offset);
        }
        if ethertype == ETHERTYPE_IPV6 {
            return classify_ipv6(frame, l3_offset);
        }
        if ethertype == ETHERTYPE_ARP {
            return classify_arp(frame, l3_offset);
        }
        if vlan_tags == MAX_VLAN_TAGS || !is_vlan(ethertype) {
            return None;
        }
        ethertype = frame.load(l3_offset + 2)?;
        l3_offset += VLAN_TAG_LEN;
        vlan_tags += 1;
    }
}

/// Classifies a packet that starts at its IP header, as on layer-3 devices (tun, wireguard):
/// the version nibble says IPv4 or IPv6; the rules are those of [`classify`].
#[inline(always)]
pub fn classify_ip<F: Frame + ?Sized>(frame: &F) -> Option<LoopbackMatch> {
    // A word rather than the one byte: the verifier cannot follow the bounds check LLVM makes
    // of a one-byte load at offset 0 (`data >= data_end`), and no IP header is shorter anyway.
    let [version_ihl, ..]: [u8; 4] = frame.load(0)?;
    match version_ihl >> 4 {
        4 => classify_ipv4(frame, 0),
        6 => classify_ipv6(frame, 0),
        _ => None,
    }
}

/// Whether a frame carries two VLAN tags right after its Ethernet addresses. Where the kernel has
/// already taken an outer tag off (tc), a match behind two more would be a frame behind three,
/// which [`classify`] never matches: the hooks must agree.
#[inline(always)]
pub fn two_inline_vlan_tags<F: Frame + ?Sized>(frame: &F) -> bool {
    let (Some(outer), Some(inner)) = (
        frame.load::<u16>(ETHERNET_HEADER_LEN - 2),
        frame.load::<u16>(ETHERNET_HEADER_LEN - 2 + VLAN_TAG_LEN),
    ) else {
        return false;
    };
    is_vlan(outer) && is_vlan(inner)
}

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ || ethertype == ETHERTYPE_QINQ_OLD
}

/// Addresses are at fixed offsets whatever the IHL, so fragments (first or not) and packets with
/// options are read the same way; IHL only decides whether the header is well formed.
#[inline(always)]
fn classify_ipv4<F: Frame + ?Sized>(frame: &F, l3_offset: usize) -> Option<LoopbackMatch> {
    // The fixed header in one load: one bounds check covers the addresses and, for the rare
    // frame that needs it, the version and IHL.
    let header: [u32; IPV4_MIN_HEADER_LEN / 4] = frame.load(l3_offset)?;
    let source = header[3] & IPV4_LOOPBACK_MASK == IPV4_LOOPBACK_NET;
    let destination = header[4] & IPV4_LOOPBACK_MASK == IPV4_LOOPBACK_NET;
    let address = Address::from_flags(source, destination)?;

    let version_ihl = header[0].to_ne_bytes()[0];
    let ihl_words = usize::from(version_ihl & 0x0f);
    if version_ihl >> 4 != 4 || ihl_words * 4 < IPV4_MIN_HEADER_LEN {
        return None;
    }
    // Options must fit in the frame (the fixed header, IHL 5, is known to): one constant length
    // per possible IHL rather than `l3_offset + ihl * 4`, since adding a variable to a packet
    // pointer needs CAP_PERFMON. Written so that LLVM unrolls it, and so that IHL 5 skips it at
    // once; as a loop advancing a packet pointer, the verifier without CAP_PERFMON explores every
    // speculative path and gives up.
    if ihl_words > IPV4_MIN_HEADER_LEN / 4 {
        let mut words = IPV4_MIN_HEADER_LEN / 4 + 1;
        while words <= 15 {
            if ihl_words >= words && !frame.holds(l3_offset + words * 4) {
                return None;
            }
            words += 1;
        }
    }
    Some(LoopbackMatch {
        family: Family::Ipv4,
        address,
    })
}

#[inline(always)]
fn classify_ipv6<F: Frame + ?Sized>(frame: &F, l3_offset: usize) -> Option<LoopbackMatch> {
    // The fixed header in one load, as 64-bit words: version and flow label, payload length and
    // next header, then source and destination as (high, low) halves.
    let header: [u64; IPV6_HEADER_LEN / 8] = frame.load(l3_offset)?;
    let [
        first,
        source_high,
        source_low,
        destination_high,
        destination_low,
    ] = header;
    // Both loopback forms have an all-zero upper half; most real traffic does not.
    if source_high != 0 && destination_high != 0 {
        return None;
    }
    // Each form is one comparison with zero (`|`, not `||`: no branch between them).
    let source_ipv6 = source_high | (source_low ^ IPV6_LOOPBACK_LOW) == 0;
    let destination_ipv6 = destination_high | (destination_low ^ IPV6_LOOPBACK_LOW) == 0;
    let source = source_ipv6 | is_ipv4_mapped_loopback(source_high, source_low);
    let destination = destination_ipv6 | is_ipv4_mapped_loopback(destination_high, destination_low);
    let address = Address::from_flags(source, destination)?;

    if first.to_ne_bytes()[0] >> 4 != 6 {
        return None;
    }
    let family = if source_ipv6 | destination_ipv6 {
        Family::Ipv6
    } else {
        Family::Ipv4Mapped
    };
    Some(LoopbackMatch { family, address })
}

/// Any operation counts (requests, replies, and the rarer inverse ARP): the addresses alone make
/// an ARP packet with 127.0.0.0/8 in it something no neighbour sends in good faith. The
/// packet's sender protocol address is its [`Address::Source`], its target's its
/// [`Address::Destination`].
#[inline(always)]
fn classify_arp<F: Frame + ?Sized>(frame: &F, l3_offset: usize) -> Option<LoopbackMatch> {
    let packet: [u16; ARP_IPV4_LEN / 2] = frame.load(l3_offset)?;
    // 127.0.0.0/8 is decided by an address's first byte: the sender's is at byte 14, the
    // target's at byte 24.
    let source = packet[7].to_ne_bytes()[0] == 127;
    let destination = packet[12].to_ne_bytes()[0] == 127;
    let address = Address::from_flags(source, destination)?;
    if (packet[0] != ARP_HARDWARE_ETHERNET && packet[0] != ARP_HARDWARE_IEEE802)
        || packet[1] != ETHERTYPE_IPV4
        || packet[2] != ARP_LENGTHS_ETHERNET_IPV4
    {
        return None;
    }
    Some(LoopbackMatch {
        family: Family::Arp,
        address,
    })
}

#[inline(always)]
fn is_ipv4_mapped_loopback(high: u64, low: u64) -> bool {
    high | ((low & IPV4_MAPPED_LOOPBACK_MASK) ^ IPV4_MAPPED_LOOPBACK_LOW) == 0
}
