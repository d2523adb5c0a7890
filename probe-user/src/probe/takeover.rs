//! The standing filter taken over: a probe loaded over the maps pinned by an earlier `run --pin`
//! adopts the interfaces whose links are pinned (or whose clsact filters are recorded) there,
//! clears those that are gone, and pins its own; `status` reads it without taking anything.

use super::*;

impl Probe {
    /// Loads the embedded programs as the standing filter in `dir`: over the maps pinned there
    /// when `found` is one, whose interfaces it takes over (their links switch to the new
    /// programs at once, counters and modes unchanged: see [`Adopted`]), or with new maps that
    /// it pins there. Links made by [`Probe::pin_link`] are pinned there too.
    pub fn load_standing(
        options: LoadOptions,
        dir: PinDir,
        found: Found,
    ) -> Result<(Self, Vec<Adopted>), ProbeError> {
        match found {
            Found::Standing(standing) => {
                let options = LoadOptions {
                    capacity: standing.capacity,
                    ..options
                };
                let mut probe = Self::load_over(PROBE_OBJECT, options, Some(&dir))?;
                probe.generations[0].interfaces = Some(dir.interfaces()?);
                // Each generation it grew by, over its own pinned maps.
                for (generation_dir, capacity) in dir.generations(true)? {
                    let mut generation = Generation::load(
                        PROBE_OBJECT,
                        options,
                        capacity,
                        Some(&generation_dir),
                        probe.cpus,
                    )?;
                    generation.interfaces = Some(generation_dir.interfaces()?);
                    probe.generations.push(generation);
                }
                probe.standing = Some(Standing {
                    dir,
                    detached: Vec::new(),
                });
                let adopted = probe.adopt()?;
                Ok((probe, adopted))
            }
            Found::Nothing => {
                let mut probe = Self::load_over(PROBE_OBJECT, options, None)?;
                let first = &probe.generations[0];
                let interfaces = dir.pin_new(first.capacity, &first.program_maps())?;
                probe.generations[0].interfaces = Some(interfaces);
                probe.standing = Some(Standing {
                    dir,
                    detached: Vec::new(),
                });
                Ok((probe, Vec::new()))
            }
        }
    }

    /// The standing filter pinned in `dir`, only read: its interfaces and counters, without
    /// programs; nothing is changed. `status` shows it this way.
    pub fn read_standing(dir: PinDir, capacity: u32) -> Result<(Self, Vec<Adopted>), ProbeError> {
        let cpus = nr_cpus().map_err(|(_, error)| ProbeError::Cpus(error))?;
        let mut generations = vec![Generation::pinned(&dir, capacity, cpus)?];
        for (generation_dir, capacity) in dir.generations(false)? {
            generations.push(Generation::pinned(&generation_dir, capacity, cpus)?);
        }
        let room = generations
            .iter()
            .map(|generation| generation.capacity)
            .sum();
        let mut probe = Self {
            generations,
            // Nothing is loaded: only the pinned maps are read.
            options: LoadOptions {
                capacity,
                bound: room,
                verifier_log: false,
                sample_rate: 0,
                xdp: XdpPrograms::MultiBuffer,
            },
            object: PROBE_OBJECT,
            bound: room,
            sample_rate: 0,
            cpus,
            records: BTreeMap::new(),
            standing: Some(Standing {
                dir,
                detached: Vec::new(),
            }),
            tc_hook: TcHook::Tcx,
            filter_owner: None,
        };
        let mut gone = Vec::new();
        for (generation, ifindex, pinned, config, link, egress) in probe.pinned_interfaces()? {
            let slot = config.slot();
            match (config.mode(), link) {
                (Some(mode), PinnedLink::Attached(held, program_id)) => {
                    let record = pinned_record(
                        &pinned,
                        (generation, slot),
                        mode,
                        (held, egress),
                        program_id,
                    );
                    probe.records.insert(ifindex, record);
                }
                // Not attached: said, never counted; the next `run --pin` attaches it again.
                (Some(_), PinnedLink::CutShort) => {
                    if let Some(standing) = &mut probe.standing {
                        standing.detached.push(ifindex);
                    }
                }
                (None, _) => {}
                (Some(mode), PinnedLink::Gone) => {
                    gone.push(probe.gone(ifindex, &pinned, mode, (generation, slot))?);
                    // A device with its ifindex is here, unfiltered: said beside the counts.
                    if interface_exists(ifindex)
                        && let Some(standing) = &mut probe.standing
                    {
                        standing.detached.push(ifindex);
                    }
                }
            }
        }
        Ok((probe, gone))
    }

    /// The standing filter's interfaces: each with the generation that serves it, its pinned
    /// entry, its configuration, what became of its link, and its egress link if it has one.
    #[expect(clippy::type_complexity, reason = "one use, a tuple of named types")]
    fn pinned_interfaces(
        &self,
    ) -> Result<
        Vec<(
            usize,
            u32,
            PinnedInterface,
            IfaceConfig,
            PinnedLink,
            Option<Held>,
        )>,
        ProbeError,
    > {
        let standing = self.standing.as_ref().expect("a standing filter");
        let mut found = Vec::new();
        for (index, generation) in self.generations.iter().enumerate() {
            let interfaces = generation
                .interfaces
                .as_ref()
                .expect("a generation of a standing filter");
            for entry in interfaces.iter() {
                let (ifindex, pinned) = entry?;
                let config = generation.read_config(ifindex)?;
                standing
                    .dir
                    .check_interface(ifindex, &pinned, &config, generation.capacity)?;
                found.push((index, ifindex, pinned, config));
            }
        }
        found
            .into_iter()
            .map(|(index, ifindex, pinned, config)| {
                let (link, egress) = self.pinned_links(ifindex, &pinned)?;
                Ok((index, ifindex, pinned, config, link, egress))
            })
            .collect()
    }

    /// What became of a pinned interface's link, and its egress link if it has one.
    fn pinned_links(
        &self,
        ifindex: u32,
        pinned: &PinnedInterface,
    ) -> Result<(PinnedLink, Option<Held>), ProbeError> {
        let standing = self.standing.as_ref().expect("a standing filter");
        let adopt_error = |error| ProbeError::Adopt { ifindex, error };
        let not_found = || {
            if interface_exists(ifindex) {
                PinnedLink::CutShort
            } else {
                PinnedLink::Gone
            }
        };
        let link = if pinned.hook() == Hook::Tc(TcHook::Clsact) {
            match Filter::pinned(ifindex, Direction::Ingress, pinned.clsact_added())
                .map_err(adopt_error)?
            {
                Some((filter, program_id)) => {
                    PinnedLink::Attached(Held::Filter(filter), program_id)
                }
                None => not_found(),
            }
        } else {
            let path = standing.dir.link_path(ifindex, Direction::Ingress);
            match Link::from_pin(&path, pinned.hook().stage()) {
                Ok(Some(link)) => {
                    let info = link.info().map_err(adopt_error)?;
                    if info.ifindex == Some(ifindex) {
                        PinnedLink::Attached(Held::Link(link), info.program_id)
                    } else {
                        // Defunct: its device went (perhaps replaced by one with its ifindex),
                        // or something detached it. Its counts are final either way.
                        PinnedLink::Gone
                    }
                }
                Ok(None) => PinnedLink::Gone,
                Err(error) if error.kind() == io::ErrorKind::NotFound => not_found(),
                Err(error) => return Err(adopt_error(error)),
            }
        };
        let egress = if pinned.egress_filter() {
            Filter::pinned(ifindex, Direction::Egress, pinned.clsact_added())
                .map_err(adopt_error)?
                .map(|(filter, _)| Held::Filter(filter))
        } else {
            let egress_path = standing.dir.link_path(ifindex, Direction::Egress);
            match Link::from_pin(&egress_path, Stage::Tc(Direction::Egress)) {
                Ok(egress) => egress.map(Held::Link),
                Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                Err(error) => return Err(adopt_error(error)),
            }
        };
        Ok((link, egress))
    }

    /// Takes over the interfaces of the standing filter this probe was loaded over: their
    /// links switch to this probe's programs; interfaces that are gone have their pins cleared
    /// and their final counts returned.
    fn adopt(&mut self) -> Result<Vec<Adopted>, ProbeError> {
        let mut adopted = Vec::new();
        let mut used = BTreeSet::new();
        let mut cleared = Vec::new();
        for (generation, ifindex, pinned, config, link, egress) in self.pinned_interfaces()? {
            let Some(mode) = config.mode() else {
                // Pinned as far as its entry, not its configuration.
                cleared.push((generation, ifindex, None));
                continue;
            };
            let slot = (generation, config.slot());
            used.insert(slot);
            let held = match link {
                PinnedLink::Attached(held, _) => held,
                // Not attached, not gone either: attached anew when selected.
                PinnedLink::CutShort => {
                    cleared.push((generation, ifindex, Some(slot.1)));
                    continue;
                }
                PinnedLink::Gone => {
                    cleared.push((generation, ifindex, Some(slot.1)));
                    adopted.push(self.gone(ifindex, &pinned, mode, slot)?);
                    continue;
                }
            };
            let program = pinned.program();
            let stage = pinned.hook().stage();
            self.switch(&held, (generation, stage), program)
                .map_err(|error| match error.raw_os_error() {
                    // A driver that took its MTU from the programs with multi-buffer.
                    Some(libc::ERANGE) if self.options.xdp == XdpPrograms::Linear => {
                        ProbeError::AdoptNeedsMultiBuffer { ifindex, error }
                    }
                    _ => ProbeError::Adopt { ifindex, error },
                })?;
            if let Some(egress) = &egress {
                self.switch(egress, (generation, Stage::Tc(Direction::Egress)), program)
                    .map_err(|error| ProbeError::Adopt { ifindex, error })?;
            }
            adopted.push(Adopted {
                ifindex,
                name: pinned.name(),
                program,
                mode,
                hook: Some(pinned.hook()),
                egress: egress.as_ref().map(Held::tc_hook),
                counters: SlotCounters::default(),
                generation,
                slot: slot.1,
            });
            let record = pinned_record(
                &pinned,
                slot,
                mode,
                (held, egress),
                self.generations[generation].program_id(stage, program),
            );
            self.records.insert(ifindex, record);
        }
        for (index, generation) in self.generations.iter_mut().enumerate() {
            generation.free_slots = (0..generation.capacity)
                .rev()
                .filter(|slot| !used.contains(&(index, *slot)))
                .collect();
        }
        for (generation, ifindex, slot) in cleared {
            self.clear(generation, ifindex, slot)?;
            if let Some(slot) = slot {
                self.generations[generation].free_slots.push(slot);
            }
        }
        // Links pinned without an entry: nothing can be counted there.
        let standing = self.standing.as_ref().expect("a standing filter");
        for direction in [Direction::Ingress, Direction::Egress] {
            for ifindex in standing
                .dir
                .pinned_links(direction)
                .map_err(|error| ProbeError::Adopt { ifindex: 0, error })?
            {
                if !self.records.contains_key(&ifindex) {
                    remove_pin(&standing.dir.link_path(ifindex, direction))
                        .map_err(|error| ProbeError::Adopt { ifindex, error })?;
                }
            }
        }
        Ok(adopted)
    }

    /// Makes what holds a pinned attachment run this probe's `program` at `stage` from the
    /// next frame on.
    fn switch(
        &self,
        held: &Held,
        (generation, stage): (usize, Stage),
        program: Framing,
    ) -> io::Result<()> {
        let fd = self
            .program_fd(generation, stage, program)
            .map_err(io::Error::other)?;
        match held {
            Held::Link(link) => link.update(fd),
            Held::Filter(filter) => filter.replace(fd.as_fd(), program),
        }
    }

    /// A pinned interface that is gone, with its final counts.
    fn gone(
        &mut self,
        ifindex: u32,
        pinned: &PinnedInterface,
        mode: Mode,
        (generation, slot): (usize, u32),
    ) -> Result<Adopted, ProbeError> {
        let counters = self.generations[generation].slot_counters(slot, self.sample_rate)?;
        Ok(Adopted {
            ifindex,
            name: pinned.name(),
            program: pinned.program(),
            mode,
            hook: None,
            egress: None,
            counters,
            generation,
            slot,
        })
    }

    /// Clears the pins, configuration and counters of an interface of the standing filter that
    /// is gone (see [`Probe::read_standing`]).
    pub fn clear_gone(&mut self, gone: &Adopted) -> Result<(), ProbeError> {
        self.clear(gone.generation, gone.ifindex, Some(gone.slot))
    }

    fn clear(
        &mut self,
        generation: usize,
        ifindex: u32,
        slot: Option<u32>,
    ) -> Result<(), ProbeError> {
        self.clear_pinned(generation, ifindex)?;
        let cpus = self.cpus;
        let generation = &mut self.generations[generation];
        generation.write_config(ifindex, IfaceConfig::default())?;
        if let Some(slot) = slot {
            generation.zero_slot(slot, cpus)?;
        }
        Ok(())
    }

    /// Removes `ifindex`'s link pins and entry (in `generation`) from the standing filter, if
    /// any.
    pub(super) fn clear_pinned(
        &mut self,
        generation: usize,
        ifindex: u32,
    ) -> Result<(), ProbeError> {
        let Some(standing) = &self.standing else {
            return Ok(());
        };
        for direction in [Direction::Egress, Direction::Ingress] {
            remove_pin(&standing.dir.link_path(ifindex, direction))
                .map_err(|error| ProbeError::Adopt { ifindex, error })?;
        }
        let interfaces = self.generations[generation].pinned_interfaces_mut();
        match interfaces.remove(&ifindex) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Pins again the links of the standing filter whose pins something removed while this
    /// probe held them, so that they stay attached when it ends (without a pin a link detaches
    /// when its last holder goes); returns the interfaces whose pins it made again. A link
    /// detached meanwhile is left alone: its interface is followed as one this probe lost.
    pub fn restore_link_pins(&self) -> Result<Vec<u32>, ProbeError> {
        let Some(standing) = &self.standing else {
            return Ok(Vec::new());
        };
        let mut restored = Vec::new();
        for (ifindex, record) in &self.records {
            let Some(attachment) = record.attachment.as_ref().filter(|a| a.pinned) else {
                continue;
            };
            for (held, direction) in [
                (Some(&attachment.held), Direction::Ingress),
                (attachment.egress.as_ref(), Direction::Egress),
            ] {
                let Some(Held::Link(link)) = held else {
                    continue;
                };
                let path = standing.dir.link_path(*ifindex, direction);
                if path.exists() || !link.info().is_ok_and(|info| info.ifindex == Some(*ifindex)) {
                    continue;
                }
                crate::kernel::bpffs::pin(link, &path).map_err(|error| ProbeError::PinLink {
                    ifindex: *ifindex,
                    error,
                })?;
                restored.push(*ifindex);
            }
        }
        Ok(restored)
    }

    /// Pins `ifindex`'s links in the standing filter, with its name, so that they stay attached
    /// when this process ends; does nothing for a probe that is not one. An egress link
    /// attached later is pinned by [`Probe::attach_egress`].
    pub fn pin_link(&mut self, ifindex: u32, name: &str) -> Result<(), ProbeError> {
        let Some(standing) = &self.standing else {
            return Ok(());
        };
        let record = self
            .records
            .get_mut(&ifindex)
            .ok_or(ProbeError::NotConfigured { ifindex })?;
        let attachment = record
            .attachment
            .as_mut()
            .ok_or(ProbeError::NotConfigured { ifindex })?;
        self.generations[record.generation]
            .pinned_interfaces_mut()
            .insert(ifindex, attachment.pinned_entry(name), 0)?;
        for (held, direction) in [
            (Some(&mut attachment.held), Direction::Ingress),
            (attachment.egress.as_mut(), Direction::Egress),
        ] {
            let path = standing.dir.link_path(ifindex, direction);
            // A pin of a device that had this ifindex before.
            remove_pin(&path).map_err(|error| ProbeError::PinLink { ifindex, error })?;
            match held {
                Some(Held::Link(link)) => crate::kernel::bpffs::pin(&*link, &path)
                    .map_err(|error| ProbeError::PinLink { ifindex, error })?,
                Some(Held::Filter(filter)) => filter.keep(true),
                None => {}
            }
        }
        attachment.pinned = true;
        Ok(())
    }

    /// Records a pinned interface's new name.
    pub fn rename(&mut self, ifindex: u32, name: &str) -> Result<(), ProbeError> {
        let (Some(_), Some(record)) = (&self.standing, self.records.get(&ifindex)) else {
            return Ok(());
        };
        if let Some(attachment) = &record.attachment
            && attachment.pinned
        {
            self.generations[record.generation]
                .pinned_interfaces_mut()
                .insert(ifindex, attachment.pinned_entry(name), 0)?;
        }
        Ok(())
    }

    /// Interfaces the standing filter read lists whose link is gone though a device with their
    /// ifindex is here: nothing of it runs there.
    pub fn detached(&self) -> &[u32] {
        self.standing
            .as_ref()
            .map_or(&[], |standing| standing.detached.as_slice())
    }

    /// The name a pinned interface had when last seen by a probe.
    pub fn pinned_name(&self, ifindex: u32) -> Option<String> {
        self.standing.as_ref()?;
        self.generations.iter().find_map(|generation| {
            let pinned = generation.interfaces.as_ref()?.get(&ifindex, 0).ok()?;
            Some(pinned.name())
        })
    }

    /// Deletes the clsact filters on `ifindexes` that a run killed with SIGKILL left, and, with
    /// `by_pins` (for a standing filter whose lock the caller holds, and whose pins were found
    /// rather than made now: pins made in a BPF file system just mounted may not be the ones
    /// that record its filters), the standing filter's that its pins do not record: a process
    /// killed between attaching and pinning one.
    pub fn remove_leftover_filters(
        &self,
        ifindexes: impl IntoIterator<Item = u32>,
        by_pins: bool,
    ) -> Result<Vec<filters::Leftover>, ProbeError> {
        let recorded = |ifindex: u32, direction: Direction| {
            let Some(attachment) = self
                .records
                .get(&ifindex)
                .and_then(|record| record.attachment.as_ref())
            else {
                return false;
            };
            let held = match direction {
                Direction::Ingress => Some(&attachment.held),
                Direction::Egress => attachment.egress.as_ref(),
            };
            held.and_then(Held::filter).is_some_and(Filter::is_standing)
        };
        let standing: Option<&dyn Fn(u32, Direction) -> bool> =
            (by_pins && self.standing.is_some()).then_some(&recorded);
        filters::remove_leftovers(ifindexes, standing).map_err(ProbeError::Attach)
    }

    /// The standing filter's directory, for a probe that is one.
    pub fn standing_dir(&self) -> Option<&PinDir> {
        self.standing.as_ref().map(|standing| &standing.dir)
    }
}

/// The link pinned (or the clsact filter recorded) for an interface of a standing filter.
enum PinnedLink {
    /// Attached to the interface, running the program with this id.
    Attached(Held, u32),
    /// The device is gone: its link is defunct (a device that took the ifindex since is
    /// another), or was never pinned and no device has the ifindex.
    Gone,
    /// Not pinned, the device still there: the process pinning it was killed before its link.
    CutShort,
}

/// The record of a pinned interface whose link is attached, with its egress link if any.
fn pinned_record(
    pinned: &PinnedInterface,
    (generation, slot): (usize, u32),
    mode: Mode,
    (held, egress): (Held, Option<Held>),
    program_id: u32,
) -> Record {
    Record {
        generation,
        slot,
        mode,
        attachment: Some(Attachment {
            hook: pinned.hook(),
            program: pinned.program(),
            program_id,
            held,
            egress,
            pinned: true,
        }),
    }
}

impl Attachment {
    /// Its entry in the standing filter's INTERFACES, under `name`.
    fn pinned_entry(&self, name: &str) -> PinnedInterface {
        let filters = [Some(&self.held), self.egress.as_ref()];
        let clsact_added = filters
            .iter()
            .flatten()
            .filter_map(|held| held.filter())
            .any(Filter::clsact_added);
        let egress_filter = self
            .egress
            .as_ref()
            .is_some_and(|held| held.filter().is_some());
        PinnedInterface::new(name, self.program, self.hook, egress_filter, clsact_added)
    }

    /// Lets its clsact filters go with it, pinned or not.
    pub(super) fn release_filters(&mut self) {
        for held in [Some(&mut self.held), self.egress.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Held::Filter(filter) = held {
                filter.keep(false);
            }
        }
    }
}

/// Removes a pin, if there is one.
pub(super) fn remove_pin(path: &std::path::Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
