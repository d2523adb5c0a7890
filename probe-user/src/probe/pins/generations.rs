//! The directories of a standing filter's generations after the first (`gen-<n>/`): each
//! generation's maps and its `INTERFACES`, pinned last.

use std::fs;

use aya::maps::{HashMap, MapData};

use super::{GENERATION_PREFIX, INTERFACES, PinDir, PinError, PinnedInterface};

impl PinDir {
    /// The directory of generation `number` (from 1), whether or not it exists.
    pub fn generation(&self, number: usize) -> Self {
        Self {
            path: self.path.join(format!("{GENERATION_PREFIX}{number}")),
            netns_cookie: self.netns_cookie,
        }
    }

    /// Pins a new generation's maps in its directory `self` (see [`PinDir::generation`]), its
    /// INTERFACES for `capacity` interfaces last; on an error nothing of it is left.
    pub fn pin_generation(
        &self,
        capacity: u32,
        program_maps: &[(&'static str, &MapData)],
    ) -> Result<HashMap<MapData, u32, PinnedInterface>, PinError> {
        fs::create_dir(&self.path).map_err(|error| PinError::Access {
            what: "create",
            path: self.path.clone(),
            error,
        })?;
        let pinned = self.pin_maps(capacity, program_maps);
        if pinned.is_err() {
            self.remove_generation();
        }
        pinned
    }

    /// The generations after the first pinned here, in order, each with its room: those
    /// complete. An incomplete last one (a process stopped while pinning it, before it served
    /// anything) is removed with `clear_incomplete` (by the holder of the lock only: for
    /// others it may be one being pinned now).
    pub fn generations(&self, clear_incomplete: bool) -> Result<Vec<(Self, u32)>, PinError> {
        let mut found = Vec::new();
        for number in 1.. {
            let generation = self.generation(number);
            if !generation.path.exists() {
                break;
            }
            if !generation.path.join(INTERFACES).exists() {
                if clear_incomplete {
                    generation.remove_generation();
                }
                break;
            }
            let capacity = generation.check_generation_maps()?;
            found.push((generation, capacity));
        }
        Ok(found)
    }

    /// Removes a generation's directory, as far as it goes: what stays is found, and
    /// removed, by `detach`.
    fn remove_generation(&self) {
        for name in Self::program_maps().chain([INTERFACES]) {
            let _ = fs::remove_file(self.path.join(name));
        }
        let _ = fs::remove_dir(&self.path);
    }
}
