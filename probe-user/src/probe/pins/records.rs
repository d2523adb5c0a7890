//! What the standing filter's own maps hold (`STANDING`, `INTERFACES`), and the checks that
//! everything read back from the directory is what a probe of this version pinned there.

use std::time::{SystemTime, UNIX_EPOCH};

use aya::maps::{Array, Map, MapData};
use probe_common::{
    Action, CLASSES_PER_INTERFACE, ConfigMap, Counter, Framing, IfaceConfig, MAX_SLOTS, Mode,
    SampleCounts, map_names,
};

use super::{INTERFACES, PROGRAM_MAPS, PinDir, PinError, STANDING};
use crate::{
    net::names::{bytes_of_name, name_of_bytes},
    probe::attachment::{AttachedMode, Hook, TcHook},
};

/// The version of the layout below; a change in any pinned map's keys or values, or in what the
/// programs read from them, or in the directory's entries, takes a new one (4: the generations'
/// directories; 5: ARP's classes, 36 counters a slot). A change of size is caught at compile time by
/// `LAYOUT_SIZES`; a change of meaning at the same size is up to the one who makes it.
pub const LAYOUT: u32 = 5;

/// The sizes of every pinned record, in this order: the programs' map values (`IfaceConfig`,
/// `Counter`, `SampleCounts`), then `STANDING` and `INTERFACES` values.
const PINNED_SIZES: [usize; 5] = [
    size_of::<IfaceConfig>(),
    size_of::<Counter>(),
    size_of::<SampleCounts>(),
    size_of::<Standing>(),
    size_of::<PinnedInterface>(),
];

/// The layout version and the [`PINNED_SIZES`] it was cut for: a record that changes size does
/// not compile until [`LAYOUT`] is bumped and its sizes written here.
const LAYOUT_SIZES: (u32, [usize; 5]) = (5, [16, 16, 16, 32, 20]);

const _: () = {
    assert!(
        LAYOUT == LAYOUT_SIZES.0,
        "LAYOUT changed: write the sizes it is cut for in LAYOUT_SIZES"
    );
    let mut record = 0;
    while record < PINNED_SIZES.len() {
        assert!(
            PINNED_SIZES[record] == LAYOUT_SIZES.1[record],
            "a pinned record changed size: bump LAYOUT and write the new sizes in LAYOUT_SIZES"
        );
        record += 1;
    }
};
const MAGIC: u64 = u64::from_le_bytes(*b"lnprobe\0");

/// What made a standing filter.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Standing {
    magic: u64,
    layout: u32,
    /// Interfaces its first generation's counter map has slots for.
    pub capacity: u32,
    /// The network namespace's cookie, never reused, unlike its inode.
    pub(super) netns_cookie: u64,
    /// When it was first pinned, in seconds since the epoch.
    pub pinned_at: u64,
}

// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for Standing {}

impl Standing {
    /// What a standing filter first pinned now, with `capacity` slots, in the network
    /// namespace of `netns_cookie`, is made of.
    pub(super) fn new(capacity: u32, netns_cookie: u64) -> Self {
        Self {
            magic: MAGIC,
            layout: LAYOUT,
            capacity,
            netns_cookie,
            pinned_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
        }
    }
}

const _: () = assert!(size_of::<Standing>() == 32);

/// The latest `pinned_at` taken as a date: the end of year 9999.
const LAST_PINNED_AT: u64 = 253_402_300_799;

/// What the programs' maps do not say about a pinned interface.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct PinnedInterface {
    /// Its name when last seen, NUL-padded.
    name: [u8; 16],
    /// `Framing as u8`.
    program: u8,
    /// 0 XDP native, 1 XDP generic, 2 tcx, 3 a clsact filter.
    hook: u8,
    /// 1: its replies are counted by a clsact filter at egress (a tcx link there is pinned in
    /// `links-egress`).
    egress_filter: u8,
    /// 1: the probe added the clsact qdisc its filters are on, which goes with the last of them.
    clsact_added: u8,
}

// SAFETY: bytes only, no implicit padding.
unsafe impl aya::Pod for PinnedInterface {}

const _: () = assert!(size_of::<PinnedInterface>() == 20);

impl PinnedInterface {
    /// The entry of the interface `name` (held as its bytes, see [`bytes_of_name`]) served at
    /// `hook`, with a clsact filter at egress when `egress_filter`, and `clsact_added` when the
    /// probe added the qdisc of its filters.
    pub fn new(
        name: &str,
        program: Framing,
        hook: Hook,
        egress_filter: bool,
        clsact_added: bool,
    ) -> Self {
        let name = bytes_of_name(name);
        let mut bytes = [0; 16];
        let len = name.len().min(15);
        bytes[..len].copy_from_slice(&name[..len]);
        Self {
            name: bytes,
            program: program as u8,
            hook: match hook {
                Hook::Xdp(AttachedMode::Native) => 0,
                Hook::Xdp(AttachedMode::Generic) => 1,
                Hook::Tc(TcHook::Tcx) => 2,
                Hook::Tc(TcHook::Clsact) => 3,
            },
            egress_filter: u8::from(egress_filter),
            clsact_added: u8::from(clsact_added),
        }
    }

    /// Records a clsact filter at egress (`Some`, with whether the probe added the qdisc), or
    /// none.
    pub fn set_egress_filter(&mut self, clsact_added: Option<bool>) {
        self.egress_filter = u8::from(clsact_added.is_some());
        if let Some(added) = clsact_added {
            self.clsact_added = u8::from(added);
        }
    }

    /// Whether a clsact filter counts its replies at egress.
    pub const fn egress_filter(&self) -> bool {
        self.egress_filter == 1
    }

    /// Whether the probe added the clsact qdisc of its filters.
    pub const fn clsact_added(&self) -> bool {
        self.clsact_added == 1
    }

    /// What is wrong with the entry, if anything: a name the kernel would not give an
    /// interface, or a program or hook byte this version did not write.
    fn problem(&self) -> Option<String> {
        let Some(len) = self.name.iter().position(|b| *b == 0) else {
            return Some("a name without its terminating NUL".to_owned());
        };
        let name = &self.name[..len];
        // The kernel's dev_valid_name.
        let valid_name = !name.is_empty()
            && name != b"."
            && name != b".."
            && !name
                .iter()
                .any(|b| *b == b'/' || *b == b':' || b.is_ascii_whitespace());
        if !valid_name {
            return Some(format!(
                "the name {:?}, which no interface can have",
                name_of_bytes(name)
            ));
        }
        if self.program != Framing::Ip as u8 && self.program != Framing::Ethernet as u8 {
            return Some(format!(
                "program byte {}, not one of a program",
                self.program
            ));
        }
        if self.hook > 3 {
            return Some(format!("hook byte {}, not one of a hook", self.hook));
        }
        if self.egress_filter > 1 || self.clsact_added > 1 {
            return Some(format!(
                "clsact bytes {} and {}, not flags",
                self.egress_filter, self.clsact_added
            ));
        }
        let filters = self.hook == 3 || self.egress_filter == 1;
        if self.clsact_added == 1 && !filters {
            return Some("a clsact qdisc added, without a filter on it".to_owned());
        }
        None
    }

    pub fn name(&self) -> String {
        let len = self.name.iter().position(|b| *b == 0).unwrap_or(16);
        name_of_bytes(&self.name[..len])
    }

    pub const fn program(&self) -> Framing {
        if self.program == Framing::Ip as u8 {
            Framing::Ip
        } else {
            Framing::Ethernet
        }
    }

    pub const fn hook(&self) -> Hook {
        match self.hook {
            1 => Hook::Xdp(AttachedMode::Generic),
            2 => Hook::Tc(TcHook::Tcx),
            3 => Hook::Tc(TcHook::Clsact),
            _ => Hook::Xdp(AttachedMode::Native),
        }
    }
}
impl PinDir {
    pub(super) fn read_standing(&self) -> Result<Standing, PinError> {
        let incompatible = |reason: String| PinError::Incompatible {
            path: self.path.clone(),
            reason,
        };
        let map = MapData::from_pin(self.path.join(STANDING))
            .map_err(|error| incompatible(format!("{STANDING}: {error}")))?;
        let info = map
            .info()
            .map_err(|error| incompatible(format!("{STANDING}: {error}")))?;
        if info.value_size() as usize != size_of::<Standing>() {
            return Err(incompatible(format!(
                "{STANDING} holds {} bytes, this version reads {}",
                info.value_size(),
                size_of::<Standing>()
            )));
        }
        let array: Array<MapData, Standing> = Array::try_from(Map::Array(map))
            .map_err(|error| incompatible(format!("{STANDING}: {error}")))?;
        let standing = array
            .get(&0, 0)
            .map_err(|error| incompatible(format!("{STANDING}: {error}")))?;
        if standing.magic != MAGIC {
            return Err(self.corrupt(
                STANDING,
                format!(
                    "starts with {:#x}, not localnet-probe's mark",
                    standing.magic
                ),
            ));
        }
        if standing.layout != LAYOUT {
            return Err(incompatible(format!(
                "layout {}, this version reads layout {LAYOUT}",
                standing.layout
            )));
        }
        if standing.capacity == 0 || standing.capacity > MAX_SLOTS {
            return Err(self.corrupt(
                STANDING,
                format!(
                    "capacity {}, where 1 to {MAX_SLOTS} interfaces can be",
                    standing.capacity
                ),
            ));
        }
        if standing.pinned_at > LAST_PINNED_AT {
            return Err(self.corrupt(
                STANDING,
                format!("pinned at {} s since 1970, not a date", standing.pinned_at),
            ));
        }
        Ok(standing)
    }

    pub(super) fn check_program_maps(&self, standing: &Standing) -> Result<(), PinError> {
        let slots = self.check_map_types()?;
        if slots != standing.capacity {
            return Err(self.corrupt(
                STANDING,
                format!(
                    "capacity {}, where COUNTERS has room for {slots} interfaces",
                    standing.capacity
                ),
            ));
        }
        Ok(())
    }

    /// Checks the maps of a generation after the first (in its directory) and returns its
    /// room.
    pub(super) fn check_generation_maps(&self) -> Result<u32, PinError> {
        let slots = self.check_map_types()?;
        if slots == 0 || slots > MAX_SLOTS {
            return Err(self.corrupt(
                map_names::COUNTERS,
                format!("room for {slots} interfaces, where 1 to {MAX_SLOTS} can be"),
            ));
        }
        Ok(slots)
    }

    /// Checks that the programs' maps pinned here are of the types and sizes this version
    /// pins, and returns the interfaces COUNTERS has room for.
    fn check_map_types(&self) -> Result<u32, PinError> {
        for (name, map_type, key_size, value_size) in PROGRAM_MAPS {
            let info = MapData::from_pin(self.path.join(name))
                .and_then(|map| map.info())
                .map_err(|error| PinError::Incompatible {
                    path: self.path.clone(),
                    reason: format!("{name}: {error}"),
                })?;
            let found_type = info.map_type();
            let reason = if found_type.as_ref().is_ok_and(|found| *found == map_type) {
                let fits = info.key_size() as usize == key_size
                    && info.value_size() as usize == value_size;
                (!fits).then(|| {
                    format!(
                        "{name} is a map of {} byte keys and {} byte values, this version uses \
                         {key_size} and {value_size}",
                        info.key_size(),
                        info.value_size()
                    )
                })
            } else {
                Some(format!(
                    "{name} is {}, this version pins {} there",
                    found_type.map_or_else(
                        |_| "a map of a type unknown here".to_owned(),
                        |found| { map_type_name(found) }
                    ),
                    map_type_name(map_type)
                ))
            };
            if let Some(reason) = reason {
                return Err(PinError::Incompatible {
                    path: self.path.clone(),
                    reason,
                });
            }
        }
        let counters = MapData::from_pin(self.path.join(map_names::COUNTERS))
            .and_then(|map| map.info())
            .map_err(|error| PinError::Incompatible {
                path: self.path.clone(),
                reason: format!("{}: {error}", map_names::COUNTERS),
            })?;
        Ok(counters.max_entries() / CLASSES_PER_INTERFACE as u32)
    }

    fn corrupt(&self, pin: &'static str, problem: String) -> PinError {
        PinError::Corrupt {
            path: self.path.clone(),
            pin,
            problem,
        }
    }

    /// An error unless `ifindex`'s pinned entry and configuration are ones a probe with
    /// `capacity` slots wrote: anything else may index past its counters.
    pub fn check_interface(
        &self,
        ifindex: u32,
        pinned: &PinnedInterface,
        config: &IfaceConfig,
        capacity: u32,
    ) -> Result<(), PinError> {
        if let Some(problem) = pinned.problem() {
            return Err(self.corrupt(INTERFACES, format!("ifindex {ifindex} has {problem}")));
        }
        let config_map = ConfigMap::of(ifindex).name();
        let expected = match config.action() {
            None => {
                let mut blank = IfaceConfig::default();
                blank.sample_tokens = config.sample_tokens;
                blank
            }
            Some(_) if config.slot() >= capacity => {
                return Err(self.corrupt(
                    config_map,
                    format!(
                        "ifindex {ifindex} has slot {}, beyond the {capacity} of the counters",
                        config.slot()
                    ),
                ));
            }
            Some(Action::Dropped) => {
                IfaceConfig::new(config.slot(), Mode::Drop, config.sample_tokens)
            }
            Some(_) => IfaceConfig::new(config.slot(), Mode::Monitor, config.sample_tokens),
        };
        if *config != expected {
            return Err(self.corrupt(
                config_map,
                format!(
                    "ifindex {ifindex} has {config:?}, which is no configuration of slot {} \
                     (its action, its configured flag or its first key is wrong)",
                    config.slot()
                ),
            ));
        }
        Ok(())
    }
}

/// A map type as said to the user: the kernel's name.
fn map_type_name(map_type: aya::maps::MapType) -> String {
    use aya::maps::MapType;
    match map_type {
        MapType::Array => "an array map (BPF_MAP_TYPE_ARRAY)".to_owned(),
        MapType::Hash => "a hash map (BPF_MAP_TYPE_HASH)".to_owned(),
        MapType::PerCpuArray => "a per-CPU array map (BPF_MAP_TYPE_PERCPU_ARRAY)".to_owned(),
        other => format!("a map of type {other:?}"),
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn a_pinned_name_is_the_interfaces_bytes() {
        // 15 bytes, 4 of them not UTF-8: its held text is longer than a pinned name can be.
        let name = name_of_bytes(b"w\xfe\xfe\xfe\xfe0123456789");
        let pinned = PinnedInterface::new(
            &name,
            Framing::Ethernet,
            Hook::Tc(TcHook::Tcx),
            false,
            false,
        );
        assert_eq!(pinned.name(), name);
        assert_eq!(pinned.problem(), None);
    }
}
