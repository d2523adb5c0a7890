//! Serving interfaces: the session's start (the selection listed, the programs loaded or a
//! standing filter taken over, every selected interface attached or none), and one interface
//! served as it appears, occupied ones refused or served at tc.

use super::*;

impl Session {
    /// Selects the interfaces, refuses occupied ones, loads the programs and attaches to every
    /// selected interface, or to none: on any error what was attached is detached. With
    /// `options.pin`, the session is the namespace's standing filter: it takes over the
    /// interfaces of the one pinned (attached all along; those no longer selected are detached)
    /// and pins the links it makes.
    pub fn start(options: SessionOptions) -> Result<(Self, Started), SessionError> {
        if let Some(missing) = privileges::missing() {
            return Err(SessionError::Privileges(missing));
        }
        let kernel = KernelFeatures::probe()?;
        // Found before anything is loaded, so that the error names the feature rather than
        // quoting the kernel's refusal of the map.
        if !kernel.ring_buffer {
            return Err(SessionError::MissingFeature {
                feature: Feature::RING_BUFFER,
            });
        }
        let xdp = XdpPrograms::for_kernel(kernel.xdp_frags);
        let mut interfaces = Interfaces::connect()?;
        let mut notes = Vec::new();
        let mut pins_vanish = None;
        let standing = if options.pin {
            let lock = PinLock::take()?;
            let dir = PinDir::of_this_namespace().map_err(SessionError::Namespace)?;
            let prepared = dir.prepare()?;
            pins_vanish = prepared.vanishing;
            notes.extend(prepared.warning);
            let (found, note) = dir.inspect()?;
            notes.extend(note);
            Some((lock, dir, found))
        } else {
            None
        };
        let all = interfaces.list()?;
        let selected = select(&all, &options.selection, xdp)?;
        if selected.chosen.len() > MAX_SLOTS as usize {
            return Err(SessionError::TooMany {
                selected: selected.chosen.len(),
            });
        }
        // A new counter map must hold what is selected now: all or nothing at start.
        if let Some(capacity) = options.capacity
            && !matches!(standing, Some((_, _, Found::Standing(_))))
            && selected.chosen.len() > capacity as usize
        {
            return Err(SessionError::CapacityTooSmall {
                selected: selected.chosen.len(),
                capacity,
            });
        }
        // Room for every interface here and a quarter more (at least MIN_CAPACITY) for ones
        // that appear later: the map costs 432 bytes per slot on every CPU. The probe grows
        // from there as interfaces come, up to --capacity (a standing filter taken over, from
        // the generations it was pinned with).
        let sized = u32::try_from(all.len() + (all.len() / 4).max(MIN_CAPACITY as usize))
            .unwrap_or(MAX_SLOTS)
            .min(MAX_SLOTS);
        let bound = options.capacity.unwrap_or(MAX_SLOTS);
        let capacity = sized.min(bound);
        let load_options = LoadOptions {
            capacity,
            bound,
            verifier_log: options.verifier_log,
            sample_rate: options.sample_rate,
            xdp,
        };
        let load_error = |error| SessionError::Load(Box::new(error));
        let (probe, adopted, pin_lock, pinned_now) = match standing {
            Some((lock, dir, found)) => {
                let pinned_now = matches!(found, Found::Nothing);
                let (probe, adopted) = Probe::load_standing(load_options, dir, found).map_err(
                    |error| match error {
                        ProbeError::Pin(error) => SessionError::Pin(error),
                        error @ (ProbeError::Adopt { .. }
                        | ProbeError::AdoptNeedsMultiBuffer { .. }) => {
                            SessionError::Adopt(Box::new(error))
                        }
                        error => load_error(error),
                    },
                )?;
                (probe, adopted, Some(lock), pinned_now)
            }
            None => (
                Probe::load(load_options).map_err(load_error)?,
                Vec::new(),
                None,
                false,
            ),
        };
        let mut session = Self {
            tracked: Tracked {
                probe,
                interfaces,
                served: BTreeMap::new(),
                removed_totals: SlotCounters::default(),
                pending_removed: Vec::new(),
                listed: all.clone(),
                route_localnet: route_localnet::Watch::default(),
                firewall: firewall::Followed::new(FirewallWatch::start()),
                services: ServicesWatch::start(),
                workloads: WorkloadWatch::start(options.cri.clone()),
            },
            selection: options.selection,
            xdp_mode: options.xdp_mode,
            on_conflict: options.on_conflict,
            egress: options.egress,
            _pin_lock: pin_lock,
            told: selected
                .skipped
                .iter()
                .map(|skipped| (skipped.ifindex, Unserved::Skipped(skipped.clone())))
                .collect(),
            retry: retry::Backoff::default(),
            neighbours: NeighbourWatch::start(),
            considered: all.iter().map(|interface| interface.ifindex).collect(),
            lost_present: false,
        };
        let leftovers = session
            .tracked
            .probe
            .remove_leftover_filters(all.iter().map(|interface| interface.ifindex), !pinned_now)
            .map_err(load_error)?;
        notes.extend(
            leftovers
                .iter()
                .map(|leftover| leftover.sentence(&name_of(&all, leftover.ifindex))),
        );
        let mut selected = selected;
        let attached = match session.serve_at_start(&all, &mut selected, adopted, &mut notes) {
            Ok(attached) => attached,
            Err(error) => {
                // A standing filter pinned by this start that attached nothing is not left.
                if pinned_now && let Some(dir) = session.tracked.probe.standing_dir() {
                    let _ = dir.remove();
                }
                return Err(error);
            }
        };
        let started = Started {
            attached,
            skipped: selected.skipped,
            capacity: session.tracked.probe.capacity(),
            pinned_in: session
                .tracked
                .probe
                .standing_dir()
                .map(|dir| dir.path.clone()),
            pins_vanish,
            notes,
            kernel,
            xdp,
        };
        Ok((session, started))
    }

    /// Serves the selection: the standing filter's interfaces taken over (in their new mode),
    /// then every other selected one attached, all or nothing, and pinned once all are.
    fn serve_at_start(
        &mut self,
        all: &[Interface],
        selected: &mut Selected,
        adopted: Vec<Adopted>,
        notes: &mut Vec<String>,
    ) -> Result<Vec<AttachedInterface>, SessionError> {
        // Refused before anything changes: the standing filter's interfaces keep their modes
        // and stay attached when a new one is occupied.
        let mut left_out = Vec::new();
        for chosen in &selected.chosen {
            let held = adopted
                .iter()
                .any(|adopted| adopted.ifindex == chosen.ifindex && adopted.hook.is_some());
            let interface = all.iter().find(|i| i.ifindex == chosen.ifindex);
            if !held && let Some(occupant) = interface.and_then(occupant_of) {
                match self.on_conflict {
                    OnConflict::Skip => left_out.push(skipped_for(chosen, &occupant)),
                    OnConflict::Tcx if !occupant.is_localnet_probe() => {}
                    OnConflict::Fail | OnConflict::Tcx => {
                        return Err(SessionError::Occupied(Box::new(occupant)));
                    }
                }
            }
        }
        selected
            .chosen
            .retain(|chosen| !left_out.iter().any(|out| out.ifindex == chosen.ifindex));
        // Without --iface finding nothing is an error, also when it is for this reason.
        if selected.chosen.is_empty() && !left_out.is_empty() && self.selection.ifaces.is_empty() {
            return Err(SelectError::AllOccupied.into());
        }
        for skipped in &left_out {
            self.told
                .insert(skipped.ifindex, Unserved::Skipped(skipped.clone()));
        }
        selected.skipped.extend(left_out);
        let mut attached = Vec::with_capacity(selected.chosen.len());
        for mut adopted in adopted {
            let chosen = selected
                .chosen
                .iter()
                .find(|chosen| chosen.ifindex == adopted.ifindex);
            // Its link is attached, but not to a device here: moved to another network
            // namespace while no probe ran. Detached, and reported removed. (The listing was
            // made before the takeover switched the programs: an XDP program is ours.)
            let here = all.iter().find(|i| i.ifindex == adopted.ifindex);
            let moved_away = match adopted.hook {
                None => false,
                Some(Hook::Xdp(_)) => here.is_none_or(|i| i.xdp.is_none()),
                Some(Hook::Tc(_)) => {
                    here.is_none_or(|i| !self.tracked.probe.holds(i.ifindex, None))
                }
            };
            if moved_away {
                adopted.counters = self.tracked.release(adopted.ifindex, &adopted.name)?;
                adopted.hook = None;
            }
            match (adopted.hook, chosen) {
                // Gone while no probe ran: reported removed by the first snapshot.
                (None, _) => self.tracked.keep_removed(adopted),
                (Some(hook), Some(chosen)) => {
                    let change_error = |source| SessionError::Attach {
                        name: chosen.name.clone(),
                        source: Box::new(source),
                    };
                    if adopted.mode == Mode::Drop && chosen.mode == Mode::Monitor {
                        notes.push(format!(
                            "{}: the standing filter dropped there, this run only monitors it: \
                             loopback frames pass from now on (give --drop or --drop-on {} to \
                             keep dropping)",
                            chosen.name, chosen.name
                        ));
                    }
                    if chosen.mode != adopted.mode {
                        self.tracked
                            .probe
                            .configure(chosen.ifindex, chosen.mode)
                            .map_err(change_error)?;
                    }
                    if chosen.name != adopted.name {
                        self.tracked
                            .probe
                            .rename(chosen.ifindex, &chosen.name)
                            .map_err(change_error)?;
                    }
                    if self.egress && adopted.egress.is_none() {
                        self.tracked
                            .probe
                            .attach_egress(chosen.ifindex)
                            .map_err(change_error)?;
                    } else if adopted.egress.is_some() && !self.egress {
                        self.tracked
                            .probe
                            .detach_egress(chosen.ifindex)
                            .map_err(change_error)?;
                        notes.push(format!(
                            "{}: the standing filter counted replies leaving it, this run does \
                             not (give --egress to keep counting them)",
                            chosen.name
                        ));
                    }
                    self.tracked.served.insert(
                        chosen.ifindex,
                        Served {
                            name: chosen.name.clone(),
                            program: adopted.program,
                        },
                    );
                    attached.push(AttachedInterface {
                        ifindex: chosen.ifindex,
                        name: chosen.name.clone(),
                        program: adopted.program,
                        mode: chosen.mode,
                        hook,
                        egress: self
                            .tracked
                            .probe
                            .attached_hook(chosen.ifindex)
                            .and_then(|(_, egress)| egress),
                        native_refused: None,
                        adopted: true,
                    });
                }
                (Some(_), None) => {
                    let counters = self.tracked.release(adopted.ifindex, &adopted.name)?;
                    let totals = totals::Totals::of(&counters);
                    notes.push(format!(
                        "{}: no longer selected, detached (its counts: {totals})",
                        adopted.name
                    ));
                }
            }
        }
        let new: Vec<&Chosen> = selected
            .chosen
            .iter()
            .filter(|chosen| !self.tracked.served.contains_key(&chosen.ifindex))
            .collect();
        let mut served_now = Vec::with_capacity(new.len());
        for chosen in new {
            let interface = all.iter().find(|i| i.ifindex == chosen.ifindex);
            match self.serve(chosen, interface, false) {
                Ok(served) => {
                    attached.push(served);
                    served_now.push(chosen);
                }
                // Only a standing filter taken over can be full at start (with a --capacity
                // below what it serves; a new one is sized for the selection): its interfaces
                // stay served, the ones beyond the bound are said, and tried again as
                // interfaces change.
                Err(SessionError::Attach { name, source })
                    if matches!(*source, ProbeError::Full { .. }) =>
                {
                    notes.push(format!("{name}: not attached: {source}"));
                    // As `follow_links` words it, so that it is not said again there.
                    let cause = format!("cannot attach to {name}: {source}");
                    self.told.insert(chosen.ifindex, Unserved::Refused(cause));
                }
                // Deleted since it was listed: it is no more to serve than one deleted later.
                Err(SessionError::Attach { name, .. })
                    if !crate::probe::interface_exists(chosen.ifindex) =>
                {
                    notes.push(format!(
                        "{name}: deleted while the probe started; not served"
                    ));
                }
                Err(error) => return Err(error),
            }
        }
        for chosen in served_now {
            self.tracked
                .probe
                .pin_link(chosen.ifindex, &chosen.name)
                .map_err(|source| SessionError::PinLink {
                    name: chosen.name.clone(),
                    source: Box::new(source),
                })?;
        }
        Ok(attached)
    }

    /// Configures and attaches one chosen interface, and pins its link with `pin` (when the
    /// session is a standing filter); `interface` is its entry in a listing made just before. On
    /// an error nothing of it stays: no attachment, no pin, no counter slot.
    pub(super) fn serve(
        &mut self,
        chosen: &Chosen,
        interface: Option<&Interface>,
        pin: bool,
    ) -> Result<AttachedInterface, SessionError> {
        let occupant = interface.and_then(occupant_of);
        let beside = match occupant {
            Some(occupant)
                if self.on_conflict == OnConflict::Tcx && !occupant.is_localnet_probe() =>
            {
                true
            }
            Some(occupant) => return Err(SessionError::Occupied(Box::new(occupant))),
            None => false,
        };
        let attach_error = |source| SessionError::Attach {
            name: chosen.name.clone(),
            source: Box::new(source),
        };
        self.tracked
            .probe
            .configure(chosen.ifindex, chosen.mode)
            .map_err(attach_error)?;
        let attached = if beside {
            self.tracked.probe.attach_tc(chosen.ifindex, chosen.program)
        } else {
            self.tracked
                .probe
                .attach(chosen.ifindex, chosen.program, self.xdp_mode)
        };
        let attached = attached.and_then(|attached| {
            if self.egress {
                self.tracked.probe.attach_egress(chosen.ifindex)?;
            }
            Ok(attached)
        });
        let result = match attached {
            Ok(result) => result,
            Err(error) => {
                self.tracked.release(chosen.ifindex, &chosen.name)?;
                // Another program arrived since the listing (another probe starting at the
                // same time): say whose, as the check above would have.
                if matches!(error, ProbeError::Occupied(_))
                    && let Ok(now) = self.tracked.interfaces.list()
                    && let Some(occupant) = now
                        .iter()
                        .find(|i| i.ifindex == chosen.ifindex)
                        .and_then(Occupant::of)
                {
                    return Err(SessionError::Occupied(Box::new(occupant)));
                }
                return Err(attach_error(error));
            }
        };
        if pin && let Err(source) = self.tracked.probe.pin_link(chosen.ifindex, &chosen.name) {
            self.tracked.release(chosen.ifindex, &chosen.name)?;
            return Err(SessionError::PinLink {
                name: chosen.name.clone(),
                source: Box::new(source),
            });
        }
        self.tracked.served.insert(
            chosen.ifindex,
            Served {
                name: chosen.name.clone(),
                program: chosen.program,
            },
        );
        Ok(AttachedInterface {
            ifindex: chosen.ifindex,
            name: chosen.name.clone(),
            program: chosen.program,
            mode: chosen.mode,
            hook: result.hook,
            egress: self
                .tracked
                .probe
                .attached_hook(chosen.ifindex)
                .and_then(|(_, egress)| egress),
            native_refused: result.native_refused,
            adopted: false,
        })
    }
}

/// What holds `interface` already: another localnet-probe at its tcx ingress (refused whatever
/// `--on-conflict` says, as at XDP: it is served), or another XDP program.
fn occupant_of(interface: &Interface) -> Option<Occupant> {
    Occupant::localnet_probe_at_tc(interface).or_else(|| Occupant::of(interface))
}

/// An interface left out because another XDP program holds it (`--on-conflict skip`).
pub(super) fn skipped_for(chosen: &Chosen, occupant: &Occupant) -> Skipped {
    Skipped {
        ifindex: chosen.ifindex,
        name: chosen.name.clone(),
        reason: LeftOut::Occupied {
            program_id: occupant.program_id,
            program_name: occupant.program_name.clone(),
            localnet_probe: occupant.is_localnet_probe(),
        },
    }
}

/// The name of the interface `ifindex` in `all`, or `ifindex N` when it is not listed.
pub(super) fn name_of(all: &[Interface], ifindex: u32) -> String {
    all.iter()
        .find(|interface| interface.ifindex == ifindex)
        .map_or_else(|| format!("ifindex {ifindex}"), |i| i.name.clone())
}
