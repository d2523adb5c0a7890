//! The per-CPU counter array, read with one `BPF_MAP_LOOKUP_BATCH` call per tick instead
//! of a lookup per class and interface.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::{IterableMap as _, MapData, MapError, PerCpuArray, PerCpuValues};
use probe_common::{CLASSES_PER_INTERFACE, Counter, SlotCounters};

use crate::kernel::map_batch;

pub(crate) struct CounterMap {
    map: PerCpuArray<MapData, Counter>,
    entries: u32,
    cpus: usize,
    /// Counters of every CPU of the slots read so far, reused across reads.
    values: Vec<Counter>,
    keys: Vec<u32>,
}

impl CounterMap {
    pub(crate) fn new(map: PerCpuArray<MapData, Counter>, slots: u32, cpus: usize) -> Self {
        let entries = slots * CLASSES_PER_INTERFACE as u32;
        Self {
            map,
            entries,
            cpus,
            values: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Reads every counter of every CPU of the first `slots` slots (the ones in use: slots are
    /// given out lowest first).
    pub(crate) fn read(&mut self, slots: u32) -> io::Result<()> {
        let map_fd = self.map.map().fd().as_fd().as_raw_fd() as u32;
        let wanted = (slots * CLASSES_PER_INTERFACE as u32).min(self.entries) as usize;
        // Sized by the slots in use, not the map: a big map costs no memory here until used.
        if self.keys.len() < wanted {
            self.keys.resize(wanted, 0);
            self.values.resize(wanted * self.cpus, Counter::default());
        }
        let mut read = 0usize;
        let mut next_key: u32 = 0;
        let mut first = true;
        while read < wanted {
            let mut attr = map_batch::BatchAttr {
                in_batch: if first {
                    0
                } else {
                    (&raw const next_key) as u64
                },
                out_batch: (&raw mut next_key) as u64,
                keys: self.keys[read..].as_mut_ptr() as u64,
                values: self.values[read * self.cpus..].as_mut_ptr() as u64,
                count: (wanted - read) as u32,
                map_fd,
                ..map_batch::BatchAttr::default()
            };
            // SAFETY: the key and value buffers hold `count` keys and `count × cpus` per-CPU
            // values of the map's value size (16 bytes, already a multiple of 8); `next_key`
            // outlives the call.
            let error = unsafe { map_batch::lookup(&mut attr) }.err();
            read += attr.count as usize;
            first = false;
            match error {
                None => {}
                // The end of the array: everything was read.
                Some(error) if error.raw_os_error() == Some(libc::ENOENT) => break,
                Some(error) => return Err(error),
            }
        }
        if read < wanted {
            return Err(io::Error::other(format!(
                "read {read} of {wanted} counters"
            )));
        }
        Ok(())
    }

    pub(crate) fn map(&self) -> &MapData {
        self.map.map()
    }

    /// The counters of `slot` as last [read](Self::read), summed over CPUs; `None` where a sum
    /// overflows, which no kernel counts but a write to the pinned map can.
    pub(crate) fn slot(&self, slot: u32) -> Option<SlotCounters> {
        let mut total = SlotCounters::default();
        for (key, class) in Self::keys(slot).zip(&mut total.classes) {
            for counter in &self.values[key as usize * self.cpus..][..self.cpus] {
                *class = class.checked_add(*counter)?;
            }
        }
        Some(total)
    }

    /// As [`Self::slot`], the sums stopping at the largest counts instead: for final counts,
    /// which are only said, on the way to freeing the slot.
    pub(crate) fn slot_saturating(&self, slot: u32) -> SlotCounters {
        let mut total = SlotCounters::default();
        for (key, class) in Self::keys(slot).zip(&mut total.classes) {
            for counter in &self.values[key as usize * self.cpus..][..self.cpus] {
                class.add(*counter);
            }
        }
        total
    }

    /// Zeroes the counters of `slot` on every CPU.
    pub(crate) fn zero(&mut self, slot: u32) -> Result<(), MapError> {
        for key in Self::keys(slot) {
            let zeroes = PerCpuValues::try_from(vec![Counter::default(); self.cpus])
                .expect("one value per CPU");
            self.map.set(key, zeroes, 0)?;
        }
        Ok(())
    }

    /// The keys of `slot`'s counters, in class order: [`probe_common::counter_key`] puts them
    /// side by side.
    fn keys(slot: u32) -> impl Iterator<Item = u32> {
        let first = slot * CLASSES_PER_INTERFACE as u32;
        first..first + CLASSES_PER_INTERFACE as u32
    }
}
