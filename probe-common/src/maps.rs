//! Keys and values of the maps the XDP program and the loader share.

use core::mem::size_of;

use crate::{Action, LoopbackMatch};

/// Most interfaces one loaded program serves; each gets a slot of counters.
pub const MAX_INTERFACES: u32 = 1024;

/// Interfaces with an ifindex below this are configured in an array indexed by ifindex, whose
/// lookup the verifier turns into a bounds check and a load; higher ifindexes (hosts that have
/// created and destroyed many interfaces) go to a hash map.
pub const IFINDEX_ARRAY_LEN: u32 = 65536;

/// Counters per interface: every [`LoopbackMatch`] × every [`Action`].
pub const CLASSES_PER_INTERFACE: u32 = LoopbackMatch::COUNT * Action::ALL.len() as u32;

/// Entries in the per-CPU counter array.
pub const COUNTER_SLOTS: u32 = MAX_INTERFACES * CLASSES_PER_INTERFACE;

/// Index into the counter array of one interface slot, action and match. The matches of one
/// slot and action are consecutive, so the program adds the match to a base it is given.
#[inline(always)]
pub const fn counter_index(slot: u32, matched: LoopbackMatch, action: Action) -> u32 {
    counter_base(slot, action) + matched.index()
}

const fn counter_base(slot: u32, action: Action) -> u32 {
    slot * CLASSES_PER_INTERFACE + action as u32 * LoopbackMatch::COUNT
}

/// `XDP_DROP` and `XDP_PASS` from the kernel's uapi.
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// What the program does with matched frames on one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Count and pass.
    Monitor,
    /// Count and drop.
    Drop,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Monitor => "monitor",
            Self::Drop => "drop",
        }
    }
}

/// Per-interface configuration, keyed by ifindex, in the form the program uses without further
/// work: the verdict for matched frames and where their counters start. Written before the
/// program is attached to the interface, so every frame the program sees on it finds its entry.
/// All zeroes, as array entries start, means "not configured".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct IfaceConfig {
    /// `counter_index(slot, match, action) - match.index()` for this interface's action.
    counter_base: u32,
    /// `XDP_PASS` (monitor), `XDP_DROP` (drop), or 0 when not configured.
    verdict: u32,
}

const _: () = assert!(size_of::<IfaceConfig>() == 8);

impl IfaceConfig {
    pub const fn new(slot: u32, mode: Mode) -> Self {
        let (action, verdict) = match mode {
            Mode::Monitor => (Action::Passed, XDP_PASS),
            Mode::Drop => (Action::Dropped, XDP_DROP),
        };
        Self {
            counter_base: counter_base(slot, action),
            verdict,
        }
    }

    /// The XDP verdict for a matched frame and the index of its counter, or `None` when the
    /// interface is not configured.
    #[inline(always)]
    pub const fn on_match(&self, matched: LoopbackMatch) -> Option<(u32, u32)> {
        if self.verdict == 0 {
            None
        } else {
            Some((self.verdict, self.counter_base + matched.index()))
        }
    }
}

/// Packets and bytes of one class on one CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Counter {
    pub packets: u64,
    /// Frame lengths as the program saw them (linear part, from the Ethernet header on).
    pub bytes: u64,
}

const _: () = assert!(size_of::<Counter>() == 16);

impl Counter {
    pub fn add(&mut self, other: Self) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are `#[repr(C)]`, made only of integers, with no padding (asserted above).
    unsafe impl aya::Pod for super::IfaceConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counter {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, Family};

    #[test]
    fn counter_indices_are_dense_and_distinct() {
        let mut seen = [false; (2 * CLASSES_PER_INTERFACE) as usize];
        for slot in 0..2 {
            for matched in LoopbackMatch::all() {
                for action in Action::ALL {
                    let index = counter_index(slot, matched, action) as usize;
                    assert!(!seen[index], "index {index} used twice");
                    seen[index] = true;
                }
            }
        }
        assert!(seen.iter().all(|used| *used));
    }

    #[test]
    fn last_counter_index_fits_the_array() {
        let last = LoopbackMatch {
            family: Family::Ipv4Mapped,
            address: Address::Both,
        };
        assert_eq!(
            counter_index(MAX_INTERFACES - 1, last, Action::Dropped),
            COUNTER_SLOTS - 1
        );
    }

    #[test]
    fn config_gives_the_verdict_and_the_counter_of_a_match() {
        let matched = LoopbackMatch {
            family: Family::Ipv6,
            address: Address::Destination,
        };
        assert_eq!(IfaceConfig::default().on_match(matched), None);
        for (slot, mode, action, verdict) in [
            (0, Mode::Monitor, Action::Passed, XDP_PASS),
            (5, Mode::Drop, Action::Dropped, XDP_DROP),
        ] {
            let config = IfaceConfig::new(slot, mode);
            assert_eq!(
                config.on_match(matched),
                Some((verdict, counter_index(slot, matched, action)))
            );
        }
    }
}
