//! Keys and values of the maps the kernel programs and the loader share.

use core::mem::size_of;

use crate::{Action, LoopbackMatch, SampleCounts};

/// The names of the programs' maps and globals, as the object declares them (a `#[map]` static
/// is named after itself) and as the loader and the pins refer to them.
pub mod map_names {
    /// Per-interface configuration by ifindex, below [`super::IFINDEX_ARRAY_LEN`].
    pub const IFACE_CONFIG: &str = "IFACE_CONFIG";
    /// Per-interface configuration of higher ifindexes.
    pub const IFACE_CONFIG_HIGH: &str = "IFACE_CONFIG_HIGH";
    /// The per-CPU counters, a slot of classes per interface.
    pub const COUNTERS: &str = "COUNTERS";
    /// The ring buffer of sampled frames.
    pub const SAMPLES: &str = "SAMPLES";
    /// The per-CPU counts of samples emitted and lost, by slot.
    pub const SAMPLE_COUNTS: &str = "SAMPLE_COUNTS";
    /// The global that turns sampling on at load time.
    pub const SAMPLING: &str = "SAMPLING";
}

/// Interfaces with an ifindex below this are configured in an array indexed by ifindex, whose
/// lookup the verifier turns into a bounds check and a load; higher ifindexes (hosts that have
/// created and destroyed many interfaces) go to a hash map.
pub const IFINDEX_ARRAY_LEN: u32 = 65536;

/// Which of the two configuration maps holds an interface's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigMap {
    /// [`map_names::IFACE_CONFIG`], indexed by ifindex, below [`IFINDEX_ARRAY_LEN`].
    Array,
    /// [`map_names::IFACE_CONFIG_HIGH`], keyed by ifindex, from [`IFINDEX_ARRAY_LEN`] on.
    High,
}

impl ConfigMap {
    pub const fn of(ifindex: u32) -> Self {
        if ifindex < IFINDEX_ARRAY_LEN {
            Self::Array
        } else {
            Self::High
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Array => map_names::IFACE_CONFIG,
            Self::High => map_names::IFACE_CONFIG_HIGH,
        }
    }
}

/// Most interfaces one loaded program can serve at once: each needs a slot of counters. The
/// loader sizes the counter map (and the hash map for high ifindexes) at load time, up to this.
pub const MAX_SLOTS: u32 = 65536;

/// Counters per interface: every [`LoopbackMatch`] × every [`Action`].
pub const CLASSES_PER_INTERFACE: usize = LoopbackMatch::COUNT as usize * Action::ALL.len();

/// Index into [`SlotCounters::classes`]: the matches of one action are consecutive.
#[inline(always)]
pub const fn class_index(matched: LoopbackMatch, action: Action) -> usize {
    action as usize * LoopbackMatch::COUNT as usize + matched.index() as usize
}

/// Key of one class's counter in the per-CPU counter array, where each slot's classes are
/// consecutive. The program computes the key and lets the map find the counter: indexing into a
/// larger value with a computed offset is pointer arithmetic the verifier allows only with
/// CAP_PERFMON.
#[inline(always)]
pub const fn counter_key(slot: u32, matched: LoopbackMatch, action: Action) -> u32 {
    slot * CLASSES_PER_INTERFACE as u32 + class_index(matched, action) as u32
}

/// What a program does with matched frames on one interface.
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

    /// The action taken on matched frames.
    pub const fn action(self) -> Action {
        match self {
            Self::Monitor => Action::Passed,
            Self::Drop => Action::Dropped,
        }
    }
}

/// Per-interface configuration, keyed by ifindex: the interface's counter slot, what to do with
/// matched frames, and how many more of them it may sample. It holds an [`Action`], not a
/// verdict, so any hook (XDP, tc) maps it to its own return code. Written before a program is
/// attached to the interface, so every frame a program sees there finds its entry. All zeroes, as
/// array entries start, means "not configured".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct IfaceConfig {
    /// Everything a matched frame needs of the entry, in one load: from the lowest bits up, the
    /// slot (16 bits: below [`MAX_SLOTS`]), the action (8: `Action as u8`), 1 when configured
    /// (8), and the [`counter_key`] of the slot, the action and the match of index 0 (32), to
    /// which the program adds the match's index. In memory on a little-endian machine (the
    /// only kind with `bpfel` programs), the slot, action, configured flag and first key of
    /// earlier versions, byte for byte, so a standing filter they pinned is read the same.
    head: u64,
    /// Samples the interface may still send: the loader sets it to the rate once a second (the
    /// rate limit). Here rather than in a map of its own, so a program that has used them up
    /// pays one load from the entry it has just read, not a second lookup. Signed, because CPUs
    /// racing for the last one may take it below zero.
    pub sample_tokens: i64,
}

/// The match of index 0, whose key is an entry's first.
const FIRST_MATCH: LoopbackMatch = LoopbackMatch {
    family: crate::Family::Ipv4,
    address: crate::Address::Source,
};
const _: () = assert!(FIRST_MATCH.index() == 0);

const ACTION_SHIFT: u32 = 16;
const CONFIGURED_SHIFT: u32 = 24;
const FIRST_KEY_SHIFT: u32 = 32;

/// An entry is 16 bytes: the array lookup indexes with a shift, and no entry straddles a cache
/// line.
const _: () = assert!(size_of::<IfaceConfig>() == 16);
const _: () = assert!(MAX_SLOTS - 1 <= u16::MAX as u32);

impl IfaceConfig {
    /// `slot` must be below [`MAX_SLOTS`].
    pub const fn new(slot: u32, mode: Mode, sample_tokens: i64) -> Self {
        let action = mode.action();
        Self {
            head: head(slot, action, counter_key(slot, FIRST_MATCH, action)),
            sample_tokens,
        }
    }

    #[inline(always)]
    const fn configured(&self) -> bool {
        (self.head >> CONFIGURED_SHIFT) as u8 != 0
    }

    /// The action for the interface's matched frames, or `None` when it is not configured.
    pub const fn action(&self) -> Option<Action> {
        if self.configured() {
            Some(FrameClass(self.head).action())
        } else {
            None
        }
    }

    /// The interface's mode, the one [`Mode::action`] gave its action; `None` when it is not
    /// configured.
    pub const fn mode(&self) -> Option<Mode> {
        match self.action() {
            None => None,
            Some(Action::Dropped) => Some(Mode::Drop),
            Some(Action::Passed | Action::Replied) => Some(Mode::Monitor),
        }
    }

    pub const fn slot(&self) -> u32 {
        self.head as u16 as u32
    }

    /// The class of a frame arriving with `matched`, from one read of the entry; `None` when
    /// the interface is not configured.
    #[inline(always)]
    pub const fn arriving(&self, matched: LoopbackMatch) -> Option<FrameClass> {
        if self.configured() {
            Some(FrameClass(
                self.head + ((matched.index() as u64) << FIRST_KEY_SHIFT),
            ))
        } else {
            None
        }
    }

    /// The class of a frame leaving the interface with `matched`.
    #[inline(always)]
    pub const fn leaving(&self, matched: LoopbackMatch) -> FrameClass {
        let slot = self.slot();
        FrameClass(head(
            slot,
            Action::Replied,
            counter_key(slot, matched, Action::Replied),
        ))
    }
}

/// An entry's head: `slot`, `action` and `key` with the configured flag between them.
const fn head(slot: u32, action: Action, key: u32) -> u64 {
    (slot as u16 as u64)
        | ((action as u8 as u64) << ACTION_SHIFT)
        | (1 << CONFIGURED_SHIFT)
        | ((key as u64) << FIRST_KEY_SHIFT)
}

/// What a program decided about a matched frame on one interface, in one word: the key of its
/// counter and the action, as an entry's head holds them. One register carries it past the
/// helper calls that follow (the frame's length, the counter's lookup), and the verdict, the
/// counter and a sample all come from it, so they agree whatever the loader writes meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameClass(u64);

impl FrameClass {
    #[inline(always)]
    pub const fn counter_key(self) -> u32 {
        (self.0 >> FIRST_KEY_SHIFT) as u32
    }

    #[inline(always)]
    pub const fn action(self) -> Action {
        match (self.0 >> ACTION_SHIFT) as u8 {
            0 => Action::Passed,
            1 => Action::Dropped,
            _ => Action::Replied,
        }
    }

    /// A sample's family, address and action bytes (`Family`, `Address` and `Action` as `u8`),
    /// the match from the key (a slot's classes, and each action's, start at a multiple of
    /// [`LoopbackMatch::COUNT`]), worked out without a branch: the verifier walks the sampling
    /// code once for every length the programs for one buffer can find, and a branch on the
    /// class there took 6.1's verifier past its limit.
    #[inline(always)]
    pub const fn sample_bytes(self) -> [u8; 3] {
        let index = self.counter_key() % LoopbackMatch::COUNT;
        [
            (index / 3) as u8,
            (index % 3) as u8,
            (self.0 >> ACTION_SHIFT) as u8,
        ]
    }
}

/// Packets and bytes of one class on one CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Counter {
    pub packets: u64,
    /// Frame lengths as the program saw them, from the first header on.
    pub bytes: u64,
}

const _: () = assert!(size_of::<Counter>() == 16);

impl Counter {
    /// Adds `other`, stopping at the largest count rather than wrapping: totals over interfaces
    /// never panic, whatever a pinned map was made to hold.
    pub const fn add(&mut self, other: Self) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }

    /// `self + other`, or `None` where a count would overflow: counts no kernel could have
    /// reached, which only something writing the map could have put there.
    pub const fn checked_add(self, other: Self) -> Option<Self> {
        match (
            self.packets.checked_add(other.packets),
            self.bytes.checked_add(other.bytes),
        ) {
            (Some(packets), Some(bytes)) => Some(Self { packets, bytes }),
            _ => None,
        }
    }
}

/// Every counter of one interface slot, as the loader sums them over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotCounters {
    /// Indexed by [`class_index`].
    pub classes: [Counter; CLASSES_PER_INTERFACE],
    pub samples: SampleCounts,
}

// Written out: arrays longer than 32 have no derived `Default`.
impl Default for SlotCounters {
    fn default() -> Self {
        Self {
            classes: [Counter::default(); CLASSES_PER_INTERFACE],
            samples: SampleCounts::default(),
        }
    }
}

impl SlotCounters {
    pub const fn get(&self, matched: LoopbackMatch, action: Action) -> Counter {
        self.classes[class_index(matched, action)]
    }

    /// Adds `other` class by class, stopping at the largest counts (see [`Counter::add`]).
    pub fn add(&mut self, other: &Self) {
        for (total, counter) in self.classes.iter_mut().zip(other.classes) {
            total.add(counter);
        }
        self.samples.add(other.samples);
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are `#[repr(C)]`, made only of integers, with no padding (asserted above).
    unsafe impl aya::Pod for super::IfaceConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::SampleCounts {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::Sample {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_stop_at_the_largest_count_or_say_they_overflow() {
        let most = Counter {
            packets: u64::MAX,
            bytes: u64::MAX - 1,
        };
        let one = Counter {
            packets: 1,
            bytes: 1,
        };
        assert_eq!(most.checked_add(one), None);
        assert_eq!(
            one.checked_add(one),
            Some(Counter {
                packets: 2,
                bytes: 2
            })
        );
        let mut total = most;
        total.add(one);
        assert_eq!(
            total,
            Counter {
                packets: u64::MAX,
                bytes: u64::MAX
            }
        );
    }

    #[test]
    fn class_indices_are_dense_and_distinct() {
        let mut seen = [false; CLASSES_PER_INTERFACE];
        for matched in LoopbackMatch::all() {
            for action in Action::ALL {
                let index = class_index(matched, action);
                assert!(!seen[index], "index {index} used twice");
                seen[index] = true;
            }
        }
        assert!(seen.iter().all(|used| *used));
    }

    #[test]
    fn config_gives_the_slot_the_action_and_the_keys() {
        assert_eq!(IfaceConfig::default().action(), None);
        assert_eq!(IfaceConfig::default().arriving(FIRST_MATCH), None);
        for (slot, mode) in [
            (0, Mode::Monitor),
            (5, Mode::Drop),
            (7, Mode::Monitor),
            (MAX_SLOTS - 1, Mode::Drop),
        ] {
            let config = IfaceConfig::new(slot, mode, 100);
            assert_eq!(config.slot(), slot);
            assert_eq!(config.action(), Some(mode.action()));
            for matched in LoopbackMatch::all() {
                let arriving = config.arriving(matched).expect("configured");
                assert_eq!(
                    arriving.counter_key(),
                    counter_key(slot, matched, mode.action())
                );
                assert_eq!(arriving.action(), mode.action());
                let leaving = config.leaving(matched);
                assert_eq!(
                    leaving.counter_key(),
                    counter_key(slot, matched, Action::Replied)
                );
                assert_eq!(leaving.action(), Action::Replied);
                for (class, action) in [(arriving, mode.action()), (leaving, Action::Replied)] {
                    assert_eq!(
                        class.sample_bytes(),
                        [matched.family as u8, matched.address as u8, action as u8]
                    );
                }
            }
        }
    }

    /// A standing filter pinned by an earlier version (slot, action, configured flag and first
    /// key as fields of their own) is read the same.
    #[test]
    #[cfg(target_endian = "little")]
    fn an_entry_keeps_the_bytes_of_earlier_versions() {
        let slot = 0x1234;
        let config = IfaceConfig::new(slot, Mode::Drop, 7);
        // SAFETY: `IfaceConfig` is 16 bytes of plain integers, without padding.
        let bytes: [u8; 16] = unsafe { core::mem::transmute(config) };
        let first_key = slot * CLASSES_PER_INTERFACE as u32 + LoopbackMatch::COUNT;
        let mut expected = [0; 16];
        expected[..2].copy_from_slice(&(slot as u16).to_le_bytes());
        expected[2] = Action::Dropped as u8;
        expected[3] = 1;
        expected[4..8].copy_from_slice(&first_key.to_le_bytes());
        expected[8..].copy_from_slice(&7_i64.to_le_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn counter_keys_of_slots_do_not_overlap() {
        let mut seen = [false; 3 * CLASSES_PER_INTERFACE];
        for slot in 0..3 {
            for matched in LoopbackMatch::all() {
                for action in Action::ALL {
                    let key = counter_key(slot, matched, action) as usize;
                    assert!(!seen[key], "key {key} used twice");
                    seen[key] = true;
                }
            }
        }
        assert!(seen.iter().all(|used| *used));
    }
}
