//! An interface's life with the loaded programs: configured, attached at XDP or a tc hook,
//! switched between modes, detached and released, and the counters read.

use super::*;

impl Probe {
    /// Gives `ifindex` a block of zeroed counters, or keeps the one it has, and sets its mode;
    /// the change is live on an attached interface. Frames on an interface a program is attached
    /// to but that is not configured pass uncounted, so configure first. With every slot in
    /// use, loads another generation (see [`generation`]) unless that would pass the bound.
    pub fn configure(&mut self, ifindex: u32, mode: Mode) -> Result<(), ProbeError> {
        let (generation, slot) = match self.records.get(&ifindex) {
            Some(record) => (record.generation, record.slot),
            None => {
                let generation = self.generation_with_room()?;
                let slot = *self.generations[generation]
                    .free_slots
                    .last()
                    .expect("a generation with room");
                self.generations[generation].zero_slot(slot, self.cpus)?;
                (generation, slot)
            }
        };
        self.generations[generation].write_config(
            ifindex,
            IfaceConfig::new(slot, mode, i64::from(self.sample_rate)),
        )?;
        match self.records.get_mut(&ifindex) {
            Some(record) => record.mode = mode,
            None => {
                self.generations[generation].free_slots.pop();
                self.records.insert(
                    ifindex,
                    Record {
                        generation,
                        slot,
                        mode,
                        attachment: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// The first generation with a free slot, loading a new one when none has.
    fn generation_with_room(&mut self) -> Result<usize, ProbeError> {
        if let Some(found) = self
            .generations
            .iter()
            .position(|generation| !generation.free_slots.is_empty())
        {
            return Ok(found);
        }
        let loaded = self.capacity();
        let capacity = generation::next_capacity(loaded, self.bound);
        if capacity == 0 {
            return Err(ProbeError::Full { capacity: loaded });
        }
        let mut next = Generation::load(self.object, self.options, capacity, None, self.cpus)?;
        let number = self.generations.len();
        // A standing filter's is pinned whole before it serves anything.
        if let Some(standing) = &self.standing {
            let interfaces = standing
                .dir
                .generation(number)
                .pin_generation(capacity, &next.program_maps())?;
            next.interfaces = Some(interfaces);
        }
        self.generations.push(next);
        Ok(number)
    }

    pub fn mode(&self, ifindex: u32) -> Option<Mode> {
        self.records.get(&ifindex).map(|record| record.mode)
    }

    /// Attaches `program` to a configured interface. The kernel refuses when another XDP
    /// program is there; this never replaces one.
    pub fn attach(
        &mut self,
        ifindex: u32,
        program: Framing,
        choice: XdpModeChoice,
    ) -> Result<Attached, ProbeError> {
        if !self.records.contains_key(&ifindex) {
            return Err(ProbeError::NotConfigured { ifindex });
        }
        let generation = self.records[&ifindex].generation;
        let (link, attached) = match choice {
            XdpModeChoice::Native | XdpModeChoice::Generic => {
                let mode = if choice == XdpModeChoice::Native {
                    AttachedMode::Native
                } else {
                    AttachedMode::Generic
                };
                let link = self.link(generation, ifindex, program, mode)?;
                (
                    link,
                    Attached {
                        hook: Hook::Xdp(mode),
                        native_refused: None,
                    },
                )
            }
            XdpModeChoice::Auto => {
                match self.link(generation, ifindex, program, AttachedMode::Native) {
                    Ok(link) => (
                        link,
                        Attached {
                            hook: Hook::Xdp(AttachedMode::Native),
                            native_refused: None,
                        },
                    ),
                    Err(
                        ProbeError::NoNativeSupport(error)
                        | ProbeError::NativeNeedsMultiBuffer(error),
                    ) => (
                        self.link(generation, ifindex, program, AttachedMode::Generic)?,
                        Attached {
                            hook: Hook::Xdp(AttachedMode::Generic),
                            native_refused: Some(error),
                        },
                    ),
                    Err(other) => return Err(other),
                }
            }
        };
        self.record_attachment(ifindex, program, attached.hook, Held::Link(link));
        Ok(attached)
    }

    /// Attaches `program` to a configured interface at tc ingress, first there and beside
    /// whatever XDP programs, tcx programs or clsact filters are there, none of which is
    /// displaced: through a tcx link, or a clsact filter where the kernel has no tcx.
    pub fn attach_tc(&mut self, ifindex: u32, program: Framing) -> Result<Attached, ProbeError> {
        if !self.records.contains_key(&ifindex) {
            return Err(ProbeError::NotConfigured { ifindex });
        }
        let generation = self.records[&ifindex].generation;
        let held = self.tc_attachment(generation, ifindex, program, Direction::Ingress, false)?;
        let hook = Hook::Tc(held.tc_hook());
        self.record_attachment(ifindex, program, hook, held);
        Ok(Attached {
            hook,
            native_refused: None,
        })
    }

    fn record_attachment(&mut self, ifindex: u32, program: Framing, hook: Hook, held: Held) {
        let record = self
            .records
            .get_mut(&ifindex)
            .expect("checked by the caller");
        let program_id = self.generations[record.generation].program_id(hook.stage(), program);
        record.attachment = Some(Attachment {
            hook,
            program,
            program_id,
            held,
            egress: None,
            pinned: false,
        });
    }

    /// Counts the replies leaving an attached interface: attaches the egress program at its
    /// tc egress, first there, and pins it with the rest when the interface is pinned.
    pub fn attach_egress(&mut self, ifindex: u32) -> Result<(), ProbeError> {
        let record = self
            .records
            .get(&ifindex)
            .ok_or(ProbeError::NotConfigured { ifindex })?;
        let generation = record.generation;
        let attachment = record
            .attachment
            .as_ref()
            .ok_or(ProbeError::NotConfigured { ifindex })?;
        if attachment.egress.is_some() {
            return Ok(());
        }
        let (program, pinned) = (attachment.program, attachment.pinned);
        // A clsact qdisc the ingress filter added goes with the last of the two.
        let clsact_added = attachment.held.filter().is_some_and(Filter::clsact_added);
        let mut held = self.tc_attachment(
            generation,
            ifindex,
            program,
            Direction::Egress,
            clsact_added,
        )?;
        if pinned && let Some(standing) = &self.standing {
            match &mut held {
                Held::Link(link) => crate::kernel::bpffs::pin(
                    &*link,
                    &standing.dir.link_path(ifindex, Direction::Egress),
                )
                .map_err(|error| ProbeError::PinLink { ifindex, error })?,
                Held::Filter(filter) => {
                    let interfaces = self.generations[generation].pinned_interfaces_mut();
                    let mut entry = interfaces.get(&ifindex, 0)?;
                    entry.set_egress_filter(Some(filter.clsact_added()));
                    interfaces.insert(ifindex, entry, 0)?;
                    filter.keep(true);
                }
            }
        }
        let attachment = self
            .records
            .get_mut(&ifindex)
            .and_then(|record| record.attachment.as_mut());
        attachment.expect("checked above").egress = Some(held);
        Ok(())
    }

    /// Stops counting an interface's replies: detaches (and unpins) its egress program.
    pub fn detach_egress(&mut self, ifindex: u32) -> Result<(), ProbeError> {
        let Some(record) = self.records.get_mut(&ifindex) else {
            return Ok(());
        };
        let generation = record.generation;
        let Some(attachment) = record.attachment.as_mut() else {
            return Ok(());
        };
        if let Some(standing) = &self.standing {
            remove_pin(&standing.dir.link_path(ifindex, Direction::Egress))
                .map_err(|error| ProbeError::PinLink { ifindex, error })?;
            let interfaces = self.generations[generation].pinned_interfaces_mut();
            if attachment.pinned
                && let Ok(mut entry) = interfaces.get(&ifindex, 0)
            {
                entry.set_egress_filter(None);
                interfaces.insert(ifindex, entry, 0)?;
            }
        }
        if let Some(Held::Filter(filter)) = &mut attachment.egress {
            filter.keep(false);
        }
        attachment.egress = None;
        Ok(())
    }

    /// Attaches `program` at `ifindex`'s tc hook in `direction`, as this kernel allows: a tcx
    /// link, or a clsact filter (`clsact_added`: another filter of this probe's there added
    /// the qdisc).
    fn tc_attachment(
        &mut self,
        generation: usize,
        ifindex: u32,
        program: Framing,
        direction: Direction,
        clsact_added: bool,
    ) -> Result<Held, ProbeError> {
        let stage = Stage::Tc(direction);
        if self.tc_hook == TcHook::Clsact {
            if self.filter_owner.is_none() {
                let owner = if self.standing.is_some() {
                    FilterOwner::standing()
                } else {
                    FilterOwner::process().map_err(ProbeError::Attach)?
                };
                self.filter_owner = Some(owner);
            }
            let owner = self.filter_owner.as_ref().expect("set above");
            let fd = self.program_fd(generation, stage, program)?.as_fd();
            return Filter::attach(owner, (fd, program), ifindex, direction, clsact_added)
                .map(Held::Filter)
                .map_err(|error| ProbeError::Clsact { direction, error });
        }
        let fd = self.program_fd(generation, stage, program)?;
        Link::tcx(fd, ifindex, direction)
            .map(Held::Link)
            .map_err(|error| match error.raw_os_error() {
                Some(libc::ERANGE) => ProbeError::TcxFull { direction, error },
                _ => ProbeError::Attach(error),
            })
    }

    fn link(
        &self,
        generation: usize,
        ifindex: u32,
        program: Framing,
        mode: AttachedMode,
    ) -> Result<Link, ProbeError> {
        let fd = self.program_fd(generation, Stage::Xdp, program)?;
        Link::xdp(fd, ifindex, mode).map_err(|error| match error.raw_os_error() {
            Some(libc::EBUSY | libc::EEXIST) => ProbeError::Occupied(error),
            // A driver that takes this MTU with multi-buffer (veth: above about 3,500 bytes).
            Some(libc::ERANGE)
                if mode == AttachedMode::Native && self.options.xdp == XdpPrograms::Linear =>
            {
                ProbeError::NativeNeedsMultiBuffer(error)
            }
            // EOPNOTSUPP: no driver support; EINVAL, ERANGE: not in this configuration (an MTU
            // above a page on veth, for one). Generic XDP works on every device.
            Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ERANGE)
                if mode == AttachedMode::Native =>
            {
                ProbeError::NoNativeSupport(error)
            }
            // Generic XDP takes every device and program: the link itself is what is refused.
            Some(libc::EINVAL) => ProbeError::NoXdpLinks(error),
            _ => ProbeError::Attach(error),
        })
    }

    /// Where `ifindex` is attached, and where its replies are counted, if they are.
    pub fn attached_hook(&self, ifindex: u32) -> Option<(Hook, Option<TcHook>)> {
        self.records
            .get(&ifindex)?
            .attachment
            .as_ref()
            .map(|attachment| {
                (
                    attachment.hook,
                    attachment.egress.as_ref().map(Held::tc_hook),
                )
            })
    }

    /// The programs that run before this probe's at `ifindex`'s tc hooks, first to last: at
    /// ingress (when served there) and at egress (when replies are counted); for clsact
    /// filters, the program ids of the filters before it (0 for a filter without a program).
    /// Attached first, it stays first unless another program is attached before it later;
    /// those ahead can end the chain (pass to the stack, redirect) so that it never sees a
    /// frame.
    pub fn tcx_preceded_by(&self, ifindex: u32) -> io::Result<TcxPrecededBy> {
        let mut preceded = TcxPrecededBy::default();
        let Some(attachment) = self
            .records
            .get(&ifindex)
            .and_then(|record| record.attachment.as_ref())
        else {
            return Ok(preceded);
        };
        let hooks = [
            (
                matches!(attachment.hook, Hook::Tc(_)).then_some(&attachment.held),
                Direction::Ingress,
            ),
            (attachment.egress.as_ref(), Direction::Egress),
        ];
        for (held, direction) in hooks {
            let ahead = match held {
                None => continue,
                Some(Held::Link(link)) => {
                    let ours = link.info()?.program_id;
                    let chain = crate::kernel::link::tcx_programs(ifindex, direction)?;
                    chain.into_iter().take_while(|id| *id != ours).collect()
                }
                Some(Held::Filter(filter)) => filter.preceded_by()?,
            };
            match direction {
                Direction::Ingress => preceded.ingress = ahead,
                Direction::Egress => preceded.egress = ahead,
            }
        }
        Ok(preceded)
    }

    /// Whether this probe's program is still attached to the device with `ifindex`, whose XDP
    /// program (anyone's) has the id `xdp_program_id`: false once the device is gone, or
    /// replaced by one that took its ifindex.
    pub fn holds(&self, ifindex: u32, xdp_program_id: Option<u32>) -> bool {
        let Some(attachment) = self
            .records
            .get(&ifindex)
            .and_then(|record| record.attachment.as_ref())
        else {
            return false;
        };
        match (&attachment.hook, &attachment.held) {
            (Hook::Xdp(_), _) => xdp_program_id == Some(attachment.program_id),
            // A tcx link of a device that is gone is defunct, with no ifindex.
            (Hook::Tc(_), Held::Link(link)) => {
                link.info().is_ok_and(|info| info.ifindex == Some(ifindex))
            }
            (Hook::Tc(_), Held::Filter(filter)) => filter.is_attached(),
        }
    }

    /// Detaches from `ifindex`, keeping its configuration and counters.
    pub fn detach(&mut self, ifindex: u32) -> Result<(), ProbeError> {
        let record = self
            .records
            .get_mut(&ifindex)
            .ok_or(ProbeError::NotConfigured { ifindex })?;
        record.attachment = None;
        Ok(())
    }

    /// Detaches from `ifindex` and frees its slot, returning its final counters. The slot's
    /// counters are zeroed, now and again when the slot is given out.
    pub fn release(&mut self, ifindex: u32) -> Result<SlotCounters, ProbeError> {
        let record = self
            .records
            .remove(&ifindex)
            .ok_or(ProbeError::NotConfigured { ifindex })?;
        // Unpinned first: the link then detaches when dropped.
        self.clear_pinned(record.generation, ifindex)?;
        let mut attachment = record.attachment;
        if let Some(attachment) = &mut attachment {
            attachment.release_filters();
        }
        drop(attachment);
        let generation = &mut self.generations[record.generation];
        generation.write_config(ifindex, IfaceConfig::default())?;
        let counters = generation.slot_counters(record.slot, self.sample_rate)?;
        generation.zero_slot(record.slot, self.cpus)?;
        generation.free_slots.push(record.slot);
        Ok(counters)
    }

    /// The counters of every configured interface, summed over CPUs, from one read of each
    /// generation's map.
    ///
    /// The sample counts are read first: a program counts a frame before it samples it, so
    /// read in this order no interface shows more samples than matched frames.
    pub fn counters(&mut self) -> Result<BTreeMap<u32, SlotCounters>, ProbeError> {
        let samples = self
            .records
            .iter()
            .map(|(ifindex, record)| {
                let generation = &self.generations[record.generation];
                Ok((
                    *ifindex,
                    generation.sample_counts(record.slot, self.sample_rate)?,
                ))
            })
            .collect::<Result<BTreeMap<u32, SampleCounts>, ProbeError>>()?;
        for (index, generation) in self.generations.iter_mut().enumerate() {
            let slots_in_use = self
                .records
                .values()
                .filter(|record| record.generation == index)
                .map(|record| record.slot + 1)
                .max();
            generation
                .counters
                .read(slots_in_use.unwrap_or(0))
                .map_err(ProbeError::ReadCounters)?;
        }
        self.records
            .iter()
            .map(|(ifindex, record)| {
                let implausible = |map| ProbeError::ImplausibleCounts {
                    map,
                    slot: record.slot,
                };
                let mut counters = self.generations[record.generation]
                    .counters
                    .slot(record.slot)
                    .ok_or_else(|| implausible(map_names::COUNTERS))?;
                counters.samples = samples[ifindex];
                // A program counts a frame before it samples it, and the samples were read
                // first: more samples than matched frames were written by someone else.
                let matched = counters
                    .classes
                    .iter()
                    .fold(0_u64, |sum, class| sum.saturating_add(class.packets));
                if counters
                    .samples
                    .emitted
                    .saturating_add(counters.samples.lost)
                    > matched
                {
                    return Err(implausible(map_names::SAMPLE_COUNTS));
                }
                Ok((*ifindex, counters))
            })
            .collect()
    }
}

/// The ids of the programs before this probe's in an interface's tcx chains.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcxPrecededBy {
    pub ingress: Vec<u32>,
    pub egress: Vec<u32>,
}

impl TcxPrecededBy {
    pub const fn is_empty(&self) -> bool {
        self.ingress.is_empty() && self.egress.is_empty()
    }
}

/// Whether an interface has `ifindex` in this network namespace.
pub(crate) fn interface_exists(ifindex: u32) -> bool {
    let mut name = [0; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes the call may write.
    !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
}
