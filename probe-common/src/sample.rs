//! Samples of matched frames, sent by the programs through a ring buffer, and what becomes of
//! the attempts to send them.

use core::mem::size_of;

use crate::{Action, Address, Family, LoopbackMatch};

/// Bytes of a matched frame a sample carries, from its first header on: enough for Ethernet,
/// two VLAN tags, an IPv6 header and a TCP header with options.
pub const SAMPLE_CAPTURE_LEN: usize = 128;

/// What a frame starts with, which decides the program that can read it (`localnet_probe` or
/// `localnet_probe_ip`, and their tcx twins); each sample says which it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Framing {
    /// An Ethernet header (`localnet_probe`).
    Ethernet = 0,
    /// The IP header, on layer-3 devices (`localnet_probe_ip`).
    Ip = 1,
}

impl Framing {
    pub const ALL: [Self; 2] = [Self::Ethernet, Self::Ip];
}

/// One matched frame as a program saw it: when, where, why it matched, what was done with it,
/// and its first [`SAMPLE_CAPTURE_LEN`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Sample {
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`).
    pub timestamp_ns: u64,
    pub ifindex: u32,
    /// The whole frame's length, however much of it was captured.
    pub frame_len: u32,
    /// How many bytes of `frame` hold the frame: `min(frame_len, SAMPLE_CAPTURE_LEN)`.
    pub captured_len: u32,
    /// `Family as u8`.
    pub family: u8,
    /// `Address as u8`.
    pub address: u8,
    /// `Action as u8`.
    pub action: u8,
    /// `Framing as u8`.
    pub framing: u8,
    /// The outer VLAN tag's protocol (in network byte order, as in the frame) when the driver
    /// or the stack took the tag off the frame into the socket buffer before tc (then `frame`
    /// lacks it, and `frame_len` counts it); 0 otherwise.
    pub vlan_proto: u16,
    /// That tag's control information (priority and id), in host byte order.
    pub vlan_tci: u16,
    pub _reserved: u32,
    pub frame: [u8; SAMPLE_CAPTURE_LEN],
}

const _: () = assert!(size_of::<Sample>() == 32 + SAMPLE_CAPTURE_LEN);

impl Sample {
    /// The match, the action and the framing, or `None` for values no program writes.
    pub const fn decode(&self) -> Option<(LoopbackMatch, Action, Framing)> {
        let family = match self.family {
            0 => Family::Ipv4,
            1 => Family::Ipv6,
            2 => Family::Ipv4Mapped,
            3 => Family::Arp,
            _ => return None,
        };
        let address = match self.address {
            0 => Address::Source,
            1 => Address::Destination,
            2 => Address::Both,
            _ => return None,
        };
        let action = match self.action {
            0 => Action::Passed,
            1 => Action::Dropped,
            2 => Action::Replied,
            _ => return None,
        };
        let framing = match self.framing {
            0 => Framing::Ethernet,
            1 => Framing::Ip,
            _ => return None,
        };
        Some((LoopbackMatch { family, address }, action, framing))
    }

    /// The captured bytes of the frame.
    pub fn captured(&self) -> &[u8] {
        &self.frame[..(self.captured_len as usize).min(SAMPLE_CAPTURE_LEN)]
    }

    /// The outer VLAN tag taken off the frame before tc, as it sits in a frame: protocol, then
    /// control information, both in network byte order.
    pub const fn offloaded_vlan_tag(&self) -> Option<[u8; 4]> {
        if self.vlan_proto == 0 {
            return None;
        }
        let [proto_0, proto_1] = self.vlan_proto.to_ne_bytes();
        let [tci_0, tci_1] = self.vlan_tci.to_be_bytes();
        Some([proto_0, proto_1, tci_0, tci_1])
    }
}

/// Per interface slot and CPU: samples sent, and samples lost because the ring buffer was full.
/// Matched frames that were neither were suppressed by the rate limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SampleCounts {
    pub emitted: u64,
    pub lost: u64,
}

const _: () = assert!(size_of::<SampleCounts>() == 16);

impl SampleCounts {
    /// Adds `other`, stopping at the largest count (see [`crate::Counter::add`]).
    pub const fn add(&mut self, other: Self) {
        self.emitted = self.emitted.saturating_add(other.emitted);
        self.lost = self.lost.saturating_add(other.lost);
    }

    /// `self + other`, or `None` where a count would overflow (see
    /// [`crate::Counter::checked_add`]).
    pub const fn checked_add(self, other: Self) -> Option<Self> {
        match (
            self.emitted.checked_add(other.emitted),
            self.lost.checked_add(other.lost),
        ) {
            (Some(emitted), Some(lost)) => Some(Self { emitted, lost }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_decodes_what_a_program_encodes() {
        let sample_of = |matched: LoopbackMatch| Sample {
            timestamp_ns: 1,
            ifindex: 2,
            frame_len: 1500,
            captured_len: SAMPLE_CAPTURE_LEN as u32,
            family: matched.family as u8,
            address: matched.address as u8,
            action: Action::Dropped as u8,
            framing: Framing::Ip as u8,
            vlan_proto: 0,
            vlan_tci: 0,
            _reserved: 0,
            frame: [0; SAMPLE_CAPTURE_LEN],
        };
        for matched in LoopbackMatch::all() {
            assert_eq!(
                sample_of(matched).decode(),
                Some((matched, Action::Dropped, Framing::Ip))
            );
        }
        let sample = sample_of(LoopbackMatch {
            family: Family::Ipv4Mapped,
            address: Address::Both,
        });
        assert_eq!(sample.captured().len(), SAMPLE_CAPTURE_LEN);
        assert_eq!(
            Sample {
                family: Family::ALL.len() as u8,
                ..sample
            }
            .decode(),
            None
        );
        assert_eq!(
            Sample {
                framing: 2,
                ..sample
            }
            .decode(),
            None
        );
    }
}
