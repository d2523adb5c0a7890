//! Samples of matched frames: the ring buffer the programs write, and each interface's budget of
//! samples per second, refilled every second.

use super::*;

impl Probe {
    /// The ring buffer the programs send samples through, once: whoever reads it owns it.
    pub fn take_samples(&mut self) -> Option<RingBuf<MapData>> {
        self.samples.take()
    }

    pub const fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Gives every configured interface a full second's worth of samples again; call once a
    /// second for the rate to hold.
    pub fn refill_sample_tokens(&mut self) -> Result<(), ProbeError> {
        if self.sample_rate == 0 {
            return Ok(());
        }
        self.set_sample_tokens(i64::from(self.sample_rate))
    }

    /// Takes every interface's sample budget away: a standing filter whose reader is gone
    /// counts samples as suppressed rather than filling a ring nobody reads.
    pub fn stop_sampling(&mut self) -> Result<(), ProbeError> {
        self.set_sample_tokens(0)
    }

    fn set_sample_tokens(&mut self, tokens: i64) -> Result<(), ProbeError> {
        // The tokens are part of each interface's configuration, written whole: those in the
        // array in one call, the rare ones in the hash map one by one.
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        let mut high = Vec::new();
        for (&ifindex, record) in &self.records {
            let config = IfaceConfig::new(record.slot, record.mode, tokens);
            match ConfigMap::of(ifindex) {
                ConfigMap::Array => {
                    keys.push(ifindex);
                    values.push(config);
                }
                ConfigMap::High => high.push((ifindex, config)),
            }
        }
        let fd = self.config.map().fd().as_fd().as_raw_fd() as u32;
        map_batch::update(fd, &keys, &values).map_err(ProbeError::Refill)?;
        for (ifindex, config) in high {
            self.write_config(ifindex, config)?;
        }
        Ok(())
    }

    pub(super) fn sample_counts(&self, slot: u32) -> Result<SampleCounts, ProbeError> {
        let mut total = SampleCounts::default();
        if self.sample_rate == 0 {
            return Ok(total);
        }
        for counts in self.sample_counts.get(&slot, 0)?.iter() {
            total.add(*counts);
        }
        Ok(total)
    }

    pub(super) fn zero_sample_counts(&mut self, slot: u32) -> Result<(), MapError> {
        let zeroes = PerCpuValues::try_from(vec![SampleCounts::default(); self.cpus])
            .expect("one value per CPU");
        self.sample_counts.set(slot, zeroes, 0)
    }
}

/// The ring buffer's size: room for half a second of samples at the full rate on every
/// interface slot, within bounds (it is mapped into the loader, so it counts in its memory).
pub(super) fn ring_size(sample_rate: u32, capacity: u32) -> u32 {
    const MIN: u64 = 64 << 10;
    // The reader drains it as samples arrive; a bigger ring only holds more for a reader that
    // is not running.
    const MAX: u64 = 1 << 20;
    let record = size_of::<Sample>() as u64 + 8;
    let wanted = u64::from(sample_rate) * u64::from(capacity) * record / 2;
    wanted.clamp(MIN, MAX).next_power_of_two() as u32
}
