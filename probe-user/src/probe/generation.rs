//! One generation: an instance of the embedded object, its programs and its own maps, serving
//! the interfaces given a counter slot in it.
//!
//! A probe starts with one. When every slot of every generation is in use, it loads another
//! (as many slots as all before it together, within the bound `--capacity` sets) for the
//! interfaces that come next: those already served keep their programs, maps and links
//! untouched, so growing opens no gap in filtering and moves no counter. A slot freed in any
//! generation is given out before a new one is loaded.

use super::*;

/// An instance of the embedded object and the slots of its counter map.
pub(super) struct Generation {
    /// `None` for a standing filter only read ([`Probe::read_standing`]).
    pub(super) ebpf: Option<Ebpf>,
    /// By [`Stage`], then [`Framing`].
    pub(super) program_ids: [[u32; 2]; 3],
    pub(super) capacity: u32,
    pub(super) config: Array<MapData, IfaceConfig>,
    pub(super) config_high: HashMap<MapData, u32, IfaceConfig>,
    pub(super) counters: CounterMap,
    pub(super) sample_counts: PerCpuArray<MapData, SampleCounts>,
    /// Taken by the reader of the samples.
    pub(super) samples: Option<RingBuf<MapData>>,
    pub(super) free_slots: Vec<u32>,
    /// In a standing filter, the pinned entries of the interfaces it serves.
    pub(super) interfaces: Option<HashMap<MapData, u32, PinnedInterface>>,
}

impl Generation {
    /// Loads the programs of `object` with maps for `capacity` interfaces, over the maps pinned
    /// in `pinned` when given.
    pub(super) fn load(
        object: &[u8],
        options: LoadOptions,
        capacity: u32,
        pinned: Option<&PinDir>,
        cpus: usize,
    ) -> Result<Self, ProbeError> {
        let level = if options.verifier_log {
            VerifierLogLevel::VERBOSE | VerifierLogLevel::STATS
        } else {
            VerifierLogLevel::default()
        };
        let sample_rate = options.sample_rate.min(MAX_SAMPLE_RATE);
        let sampling = u8::from(sample_rate > 0);
        let mut loader = EbpfLoader::new();
        let map_paths: Vec<(&str, std::path::PathBuf)> = pinned
            .into_iter()
            .flat_map(|dir| PinDir::program_maps().map(|name| (name, dir.map_path(name))))
            .collect();
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .verifier_log_level(level)
            .override_global(map_names::SAMPLING, &sampling, true)
            .map_max_entries(map_names::COUNTERS, capacity * CLASSES_PER_INTERFACE as u32)
            .map_max_entries(map_names::IFACE_CONFIG_HIGH, capacity)
            .map_max_entries(map_names::SAMPLE_COUNTS, capacity)
            .map_max_entries(map_names::SAMPLES, ring_size(sample_rate, capacity))
            .load(object)
            .map_err(ProbeError::Load)?;
        let mut program_ids = [[0; 2]; 3];
        let rejected = |error| match error {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => ProbeError::Verifier {
                io_error,
                verifier_log: verifier_log.to_string(),
            },
            other => ProbeError::Program(other),
        };
        for stage in Stage::ALL {
            for program in Framing::ALL {
                let loaded = ebpf
                    .program_mut(program_name(program, stage, options.xdp))
                    .ok_or(ProbeError::MissingPart("program"))?;
                let info = if stage == Stage::Xdp {
                    let xdp: &mut Xdp = loaded.try_into()?;
                    xdp.load().map_err(rejected)?;
                    xdp.info()?
                } else {
                    let classifier: &mut SchedClassifier = loaded.try_into()?;
                    classifier.load().map_err(rejected)?;
                    classifier.info()?
                };
                program_ids[stage.index()][program as usize] = info.id();
            }
        }
        let mut take_map = |name: &'static str| {
            ebpf.take_map(name).ok_or(ProbeError::MissingPart(
                "map (see probe-ebpf for their names)",
            ))
        };
        let config = Array::try_from(take_map(map_names::IFACE_CONFIG)?)?;
        let config_high = HashMap::try_from(take_map(map_names::IFACE_CONFIG_HIGH)?)?;
        let counters = CounterMap::new(
            PerCpuArray::try_from(take_map(map_names::COUNTERS)?)?,
            capacity,
            cpus,
        );
        let sample_counts = PerCpuArray::try_from(take_map(map_names::SAMPLE_COUNTS)?)?;
        let samples = RingBuf::try_from(take_map(map_names::SAMPLES)?)?;
        Ok(Self {
            ebpf: Some(ebpf),
            program_ids,
            capacity,
            config,
            config_high,
            counters,
            sample_counts,
            samples: Some(samples),
            free_slots: (0..capacity).rev().collect(),
            interfaces: None,
        })
    }

    /// The maps of a generation of the standing filter pinned in `dir`, only read: without
    /// programs, nothing given out.
    pub(super) fn pinned(dir: &PinDir, capacity: u32, cpus: usize) -> Result<Self, ProbeError> {
        let pinned_map = |name: &'static str| {
            MapData::from_pin(dir.map_path(name)).map_err(|error| {
                ProbeError::Pin(PinError::Map {
                    name,
                    error: error.to_string(),
                })
            })
        };
        Ok(Self {
            ebpf: None,
            program_ids: [[0; 2]; 3],
            capacity,
            config: Array::try_from(Map::Array(pinned_map(map_names::IFACE_CONFIG)?))?,
            config_high: HashMap::try_from(Map::HashMap(pinned_map(
                map_names::IFACE_CONFIG_HIGH,
            )?))?,
            counters: CounterMap::new(
                PerCpuArray::try_from(Map::PerCpuArray(pinned_map(map_names::COUNTERS)?))?,
                capacity,
                cpus,
            ),
            sample_counts: PerCpuArray::try_from(Map::PerCpuArray(pinned_map(
                map_names::SAMPLE_COUNTS,
            )?))?,
            samples: None,
            free_slots: Vec::new(),
            interfaces: Some(dir.interfaces()?),
        })
    }

    /// The maps a standing filter pins, by name.
    pub(super) fn program_maps(&self) -> [(&'static str, &MapData); 4] {
        [
            (map_names::IFACE_CONFIG, self.config.map()),
            (map_names::IFACE_CONFIG_HIGH, self.config_high.map()),
            (map_names::COUNTERS, self.counters.map()),
            (map_names::SAMPLE_COUNTS, self.sample_counts.map()),
        ]
    }

    /// The pinned entries of a standing filter's generation.
    pub(super) fn pinned_interfaces_mut(&mut self) -> &mut HashMap<MapData, u32, PinnedInterface> {
        self.interfaces
            .as_mut()
            .expect("a generation of a standing filter")
    }

    pub(super) fn loaded(
        &self,
        stage: Stage,
        program: Framing,
        xdp: XdpPrograms,
    ) -> &aya::programs::Program {
        self.ebpf
            .as_ref()
            .expect("a probe that loaded its programs")
            .program(program_name(program, stage, xdp))
            .expect("checked at load")
    }

    pub(super) const fn program_id(&self, stage: Stage, program: Framing) -> u32 {
        self.program_ids[stage.index()][program as usize]
    }

    pub(super) fn read_config(&self, ifindex: u32) -> Result<IfaceConfig, ProbeError> {
        let found = match ConfigMap::of(ifindex) {
            ConfigMap::Array => self.config.get(&ifindex, 0),
            ConfigMap::High => self.config_high.get(&ifindex, 0),
        };
        match found {
            Ok(config) => Ok(config),
            Err(MapError::KeyNotFound) => Ok(IfaceConfig::default()),
            Err(error) => Err(error.into()),
        }
    }

    pub(super) fn write_config(
        &mut self,
        ifindex: u32,
        config: IfaceConfig,
    ) -> Result<(), ProbeError> {
        if ConfigMap::of(ifindex) == ConfigMap::Array {
            self.config.set(ifindex, config, 0)?;
        } else if config == IfaceConfig::default() {
            match self.config_high.remove(&ifindex) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(error) => return Err(error.into()),
            }
        } else {
            self.config_high.insert(ifindex, config, 0)?;
        }
        Ok(())
    }

    pub(super) fn sample_counts(
        &self,
        slot: u32,
        sample_rate: u32,
    ) -> Result<SampleCounts, ProbeError> {
        let mut total = SampleCounts::default();
        if sample_rate == 0 {
            return Ok(total);
        }
        for counts in self.sample_counts.get(&slot, 0)?.iter() {
            total.add(*counts);
        }
        Ok(total)
    }

    pub(super) fn zero_slot(&mut self, slot: u32, cpus: usize) -> Result<(), MapError> {
        self.counters.zero(slot)?;
        let zeroes =
            PerCpuValues::try_from(vec![SampleCounts::default(); cpus]).expect("one value per CPU");
        self.sample_counts.set(slot, zeroes, 0)
    }

    /// The final counts of a slot, read alone.
    pub(super) fn slot_counters(
        &mut self,
        slot: u32,
        sample_rate: u32,
    ) -> Result<SlotCounters, ProbeError> {
        let samples = self.sample_counts(slot, sample_rate)?;
        self.counters
            .read_slot(slot)
            .map_err(ProbeError::ReadCounters)?;
        let mut counters = self.counters.slot_saturating(slot);
        counters.samples = samples;
        Ok(counters)
    }
}

/// The slots of the next generation: as many as all before it together, so that the room
/// doubles each time, within what `bound` leaves.
pub(super) fn next_capacity(loaded: u32, bound: u32) -> u32 {
    loaded.max(1).min(bound.saturating_sub(loaded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_generation_doubles_the_room_within_the_bound() {
        let mut loaded = 260;
        let mut sizes = Vec::new();
        while next_capacity(loaded, 2_100) > 0 {
            let next = next_capacity(loaded, 2_100);
            sizes.push(next);
            loaded += next;
        }
        assert_eq!(sizes, [260, 520, 1_040, 20]);
        assert_eq!(loaded, 2_100);
        assert_eq!(next_capacity(MAX_SLOTS, MAX_SLOTS), 0);
        assert_eq!(next_capacity(0, 5), 1);
    }
}
