//! Samples of matched frames: the ring buffer the programs write, and each interface's budget of
//! samples per second, refilled every second.

use super::*;

impl Probe {
    /// The ring buffers the programs send samples through, one per generation, each once:
    /// whoever reads them owns them. Call again after interfaces are served, for those of
    /// generations loaded since.
    pub fn take_samples(&mut self) -> Vec<RingBuf<MapData>> {
        self.generations
            .iter_mut()
            .filter_map(|generation| generation.samples.take())
            .collect()
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
        // The tokens are part of each interface's configuration, written whole: those in each
        // generation's array in one call, the rare ones in its hash map one by one.
        for (index, generation) in self.generations.iter_mut().enumerate() {
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            let mut high = Vec::new();
            for (&ifindex, record) in &self.records {
                if record.generation != index {
                    continue;
                }
                let config = IfaceConfig::new(record.slot, record.mode, tokens);
                match ConfigMap::of(ifindex) {
                    ConfigMap::Array => {
                        keys.push(ifindex);
                        values.push(config);
                    }
                    ConfigMap::High => high.push((ifindex, config)),
                }
            }
            let fd = generation.config.map().fd().as_fd().as_raw_fd() as u32;
            map_batch::update(fd, &keys, &values).map_err(ProbeError::Refill)?;
            for (ifindex, config) in high {
                generation.write_config(ifindex, config)?;
            }
        }
        Ok(())
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
