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

/// Index into the counter array of one interface slot, match and action.
#[inline(always)]
pub const fn counter_index(slot: u32, matched: LoopbackMatch, action: Action) -> u32 {
    (slot * LoopbackMatch::COUNT + matched.index()) * Action::ALL.len() as u32 + action as u32
}

/// What the program does with matched frames on one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Mode {
    /// Count and pass.
    Monitor = 1,
    /// Count and drop.
    Drop = 2,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Monitor => "monitor",
            Self::Drop => "drop",
        }
    }
}

/// Per-interface configuration, keyed by ifindex. Written before the program is attached to the
/// interface, so every frame the program sees on it finds its entry. All zeroes, as array entries
/// start, means "not configured".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct IfaceConfig {
    /// Which block of counters belongs to this interface, `< MAX_INTERFACES`.
    pub slot: u32,
    /// A [`Mode`] as `u32`, or 0: an enum with unlisted values is not a valid map value.
    mode: u32,
}

const _: () = assert!(size_of::<IfaceConfig>() == 8);

impl IfaceConfig {
    pub const fn new(slot: u32, mode: Mode) -> Self {
        Self {
            slot,
            mode: mode as u32,
        }
    }

    /// `None` when not configured. Any other value than [`Mode::Drop`] reads as
    /// [`Mode::Monitor`]: the probe only drops on request.
    #[inline(always)]
    pub const fn mode(&self) -> Option<Mode> {
        match self.mode {
            0 => None,
            mode if mode == Mode::Drop as u32 => Some(Mode::Drop),
            _ => Some(Mode::Monitor),
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
    fn mode_values() {
        assert_eq!(IfaceConfig::default().mode(), None);
        assert_eq!(IfaceConfig { slot: 0, mode: 7 }.mode(), Some(Mode::Monitor));
        assert_eq!(IfaceConfig::new(0, Mode::Monitor).mode(), Some(Mode::Monitor));
        assert_eq!(IfaceConfig::new(3, Mode::Drop).mode(), Some(Mode::Drop));
    }
}
