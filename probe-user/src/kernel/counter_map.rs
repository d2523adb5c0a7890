//! The per-CPU counter array, read with one `BPF_MAP_LOOKUP_BATCH` call per tick instead
//! of a lookup per class and interface.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    maps::{IterableMap as _, MapData, MapError, PerCpuArray},
    sys::SyscallError,
};
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
        self.read_keys(0, slots * CLASSES_PER_INTERFACE as u32)
    }

    /// Reads the counters of `slot` alone, for [`Self::slot_saturating`]: a slot freed as its
    /// interface goes reads its own counters, not every slot below it (a thousand interfaces
    /// deleted at once read the whole map a thousand times).
    pub(crate) fn read_slot(&mut self, slot: u32) -> io::Result<()> {
        let first = slot * CLASSES_PER_INTERFACE as u32;
        self.read_keys(first, first + CLASSES_PER_INTERFACE as u32)
    }

    /// Reads the counters of every CPU with keys from `first` up to `end` (exclusive), kept at
    /// their keys' places in the buffers.
    fn read_keys(&mut self, first: u32, end: u32) -> io::Result<()> {
        let map_fd = self.map.map().fd().as_fd().as_raw_fd() as u32;
        let end = end.min(self.entries) as usize;
        let first = first as usize;
        if first >= end {
            return Ok(());
        }
        // Sized by the slots in use, not the map: a big map costs no memory here until used.
        if self.keys.len() < end {
            self.keys.resize(end, 0);
            self.values.resize(end * self.cpus, Counter::default());
        }
        let mut read = first;
        // The batch cursor is the last key read: the kernel goes on from the key after it.
        let mut next_key: u32 = (first as u32).wrapping_sub(1);
        let mut from_start = first == 0;
        while read < end {
            let mut attr = map_batch::BatchAttr {
                in_batch: if from_start {
                    0
                } else {
                    (&raw const next_key) as u64
                },
                out_batch: (&raw mut next_key) as u64,
                keys: self.keys[read..].as_mut_ptr() as u64,
                values: self.values[read * self.cpus..].as_mut_ptr() as u64,
                count: (end - read) as u32,
                map_fd,
                ..map_batch::BatchAttr::default()
            };
            // SAFETY: the key and value buffers hold `count` keys and `count × cpus` per-CPU
            // values of the map's value size (16 bytes, already a multiple of 8); `next_key`
            // outlives the call.
            let error = unsafe { map_batch::lookup(&mut attr) }.err();
            read += attr.count as usize;
            from_start = false;
            match error {
                None => {}
                // The end of the array: everything was read.
                Some(error) if error.raw_os_error() == Some(libc::ENOENT) => break,
                Some(error) => return Err(error),
            }
        }
        if read < end {
            return Err(io::Error::other(format!(
                "read {} of {} counters",
                read - first,
                end - first
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

    /// Zeroes the counters of `slot` on every CPU, in one call.
    pub(crate) fn zero(&mut self, slot: u32) -> Result<(), MapError> {
        let map_fd = self.map.map().fd().as_fd().as_raw_fd() as u32;
        let keys: Vec<u32> = Self::keys(slot).collect();
        let zeroes = vec![Counter::default(); keys.len() * self.cpus];
        map_batch::update_per_cpu(map_fd, &keys, &zeroes, self.cpus).map_err(|io_error| {
            MapError::SyscallError(SyscallError {
                call: "bpf_map_update_batch",
                io_error,
            })
        })
    }

    /// The keys of `slot`'s counters, in class order: [`probe_common::counter_key`] puts them
    /// side by side.
    fn keys(slot: u32) -> impl Iterator<Item = u32> {
        let first = slot * CLASSES_PER_INTERFACE as u32;
        first..first + CLASSES_PER_INTERFACE as u32
    }
}
