//! What the localnet-probe kernel programs and their loader share: the loopback-frame classifier, the
//! class encoding used to index the counters, and the `#[repr(C)]` map keys and values.
//!
//! The kernel program calls exactly these functions, so host tests of this crate test the rules
//! the kernel runs.
#![no_std]

mod classify;
mod ethernet_view;
mod maps;
mod sample;

pub use classify::{
    ARP_IPV4_LEN, ETHERNET_HEADER_LEN, Frame, HEADERS_LEN, IPV6_HEADER_LEN, MAX_VLAN_TAGS,
    VLAN_TAG_LEN, classify, classify_ip, two_inline_vlan_tags,
};
pub use ethernet_view::EthernetView;
pub use maps::{
    CLASSES_PER_INTERFACE, ConfigMap, Counter, FrameClass, IFINDEX_ARRAY_LEN, IfaceConfig,
    MAX_SLOTS, Mode, SlotCounters, class_index, counter_key, map_names,
};
pub use sample::{Framing, SAMPLE_CAPTURE_LEN, Sample, SampleCounts};

/// The longest frame the XDP programs without multi-buffer (`localnet_probe_linear*`) measure:
/// the constant steps that find a frame's length, 2048 down to 1, add up to this. An interface
/// whose frames can be longer needs the programs with multi-buffer.
pub const LINEAR_FRAME_MAX: u32 = 4095;

/// The IP family a matched frame's loopback address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Family {
    /// IPv4 127.0.0.0/8.
    Ipv4 = 0,
    /// IPv6 `::1`.
    Ipv6 = 1,
    /// IPv6 `::ffff:127.0.0.0/104`, the IPv4-mapped form of 127.0.0.0/8.
    Ipv4Mapped = 2,
    /// ARP for IPv4 over Ethernet with 127.0.0.0/8 as the sender's or the target's protocol
    /// address: a neighbour asking who has 127.0.0.1 learns from the answer that the host
    /// routes loopback addresses on the link (route_localnet).
    Arp = 3,
}

impl Family {
    pub const ALL: [Self; 4] = [Self::Ipv4, Self::Ipv6, Self::Ipv4Mapped, Self::Arp];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::Ipv4Mapped => "ipv4-mapped",
            Self::Arp => "arp",
        }
    }
}

/// Which of a matched frame's addresses is loopback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Address {
    Source = 0,
    Destination = 1,
    Both = 2,
}

impl Address {
    pub const ALL: [Self; 3] = [Self::Source, Self::Destination, Self::Both];

    /// As IP names it; [`LoopbackMatch::address_name`] names it for the match's family.
    const fn name(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
            Self::Both => "both",
        }
    }

    /// `None` when neither address is loopback.
    #[inline(always)]
    pub const fn from_flags(source: bool, destination: bool) -> Option<Self> {
        match (source, destination) {
            (true, true) => Some(Self::Both),
            (true, false) => Some(Self::Source),
            (false, true) => Some(Self::Destination),
            (false, false) => None,
        }
    }
}

/// What became of a matched frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Action {
    /// Arrived, and passed to the stack.
    Passed = 0,
    /// Arrived, and dropped.
    Dropped = 1,
    /// Left the interface with a loopback source: the host answered someone on the link from
    /// a loopback address, which only a service reached through route_localnet does. Counted at
    /// egress, never dropped.
    Replied = 2,
}

impl Action {
    pub const ALL: [Self; 3] = [Self::Passed, Self::Dropped, Self::Replied];
    /// What can become of a frame that arrives.
    pub const INGRESS: [Self; 2] = [Self::Passed, Self::Dropped];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Dropped => "dropped",
            Self::Replied => "replied",
        }
    }

    /// `ingress` or `egress`: where the frame was seen.
    pub const fn direction(self) -> &'static str {
        match self {
            Self::Passed | Self::Dropped => "ingress",
            Self::Replied => "egress",
        }
    }
}

/// Why a frame matched: the family of its loopback address and which address it was.
///
/// A frame whose two addresses are loopback in different IPv6 forms (`::1` and
/// `::ffff:127.x.y.z`) is counted as [`Family::Ipv6`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoopbackMatch {
    pub family: Family,
    pub address: Address,
}

impl LoopbackMatch {
    /// Number of distinct matches, the size of one interface's block of counters per action.
    pub const COUNT: u32 = (Family::ALL.len() * Address::ALL.len()) as u32;

    /// Every match, in [`LoopbackMatch::index`] order.
    pub fn all() -> impl Iterator<Item = Self> {
        Family::ALL.into_iter().flat_map(|family| {
            Address::ALL
                .into_iter()
                .map(move |address| Self { family, address })
        })
    }

    /// The name of the loopback address: an ARP packet's second address is its target's.
    pub const fn address_name(self) -> &'static str {
        match (self.family, self.address) {
            (Family::Arp, Address::Destination) => "target",
            (_, address) => address.name(),
        }
    }

    /// Whether a frame of this match is counted leaving an interface (as [`Action::Replied`]):
    /// one from a loopback address, which only the host answering from it sends; and any ARP
    /// packet with a loopback address, the host answering for one, or answering a neighbour
    /// that claimed one. An IP packet only to a loopback address is the host's own business.
    #[inline(always)]
    pub const fn counted_leaving(self) -> bool {
        !matches!(self.address, Address::Destination) || matches!(self.family, Family::Arp)
    }

    /// Dense index in `0..COUNT`.
    #[inline(always)]
    pub const fn index(self) -> u32 {
        self.family as u32 * 3 + self.address as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaving_counts_loopback_sources_and_any_loopback_arp() {
        for matched in LoopbackMatch::all() {
            let expected = matched.family == Family::Arp || matched.address != Address::Destination;
            assert_eq!(matched.counted_leaving(), expected, "{matched:?}");
        }
        let target = LoopbackMatch {
            family: Family::Arp,
            address: Address::Destination,
        };
        assert_eq!(target.address_name(), "target");
        assert!(target.counted_leaving());
    }
}
