//! The session after a link event: the served interfaces that are gone are released, renames
//! followed, and the interfaces the selection asks for now served by the rules of the start.

use super::{serve::skipped_for, *};

impl Session {
    /// Whether a snapshot since the last call released a served interface that is still here,
    /// which [`Session::follow_links`] may serve again.
    pub fn take_lost_present(&mut self) -> bool {
        std::mem::take(&mut self.lost_present)
    }

    /// Pins again the standing filter's links whose pins were removed while this process held
    /// them; see [`Probe::restore_link_pins`].
    pub fn restore_link_pins(&self) -> Result<Vec<String>, SessionError> {
        let restored =
            self.tracked
                .probe
                .restore_link_pins()
                .map_err(|error| SessionError::PinLink {
                    name: "the standing filter".to_owned(),
                    source: Box::new(error),
                })?;
        Ok(restored
            .into_iter()
            .map(|ifindex| {
                self.tracked.served.get(&ifindex).map_or_else(
                    || format!("ifindex {ifindex}"),
                    |served| served.name.clone(),
                )
            })
            .collect())
    }

    /// Follows the interfaces after a link event: releases the served ones that are gone (the
    /// next snapshot reports them) and attaches to every interface the selection asks for now
    /// that is not served yet, by the rules of the start, pinning its link in a standing filter.
    /// One that cannot be attached is not an error: it is refused, and tried again at the next
    /// call.
    pub fn follow_links(&mut self) -> Result<Followed, SessionError> {
        let all = match self.tracked.list() {
            Ok(all) => all,
            Err(SessionError::Interfaces(InterfaceError::Changing(_))) => {
                return Ok(Followed {
                    unsettled: true,
                    ..Followed::default()
                });
            }
            Err(error) => return Err(error),
        };
        self.follow_served(&all)?;
        let present: BTreeSet<u32> = all.iter().map(|interface| interface.ifindex).collect();
        self.told.retain(|ifindex, _| present.contains(ifindex));
        self.considered.clone_from(&present);
        let served: BTreeSet<u32> = self.tracked.served.keys().copied().collect();
        let selected = select_new(
            &all,
            &self.selection,
            &served,
            self.tracked.probe.xdp_programs(),
        );
        let mut followed = Followed::default();
        let mut refused_passing = false;
        let room = self.tracked.probe.capacity();
        for skipped in selected.skipped {
            if self.tell(skipped.ifindex, Unserved::Skipped(skipped.clone())) {
                followed.skipped.push(skipped);
            }
        }
        for chosen in &selected.chosen {
            let interface = all.iter().find(|i| i.ifindex == chosen.ifindex);
            let (cause, reason, passing) = match self.serve(chosen, interface, true) {
                Ok(attached) => {
                    self.told.remove(&chosen.ifindex);
                    followed.attached.push(attached);
                    continue;
                }
                Err(SessionError::Occupied(occupant)) if self.on_conflict == OnConflict::Skip => {
                    let skipped = skipped_for(chosen, &occupant);
                    if self.tell(chosen.ifindex, Unserved::Skipped(skipped.clone())) {
                        followed.skipped.push(skipped);
                    }
                    continue;
                }
                Err(SessionError::Occupied(occupant)) => (
                    format!(
                        "another XDP program (id {}) is attached",
                        occupant.program_id
                    ),
                    occupant.to_string(),
                    false,
                ),
                Err(SessionError::Attach { name, source }) => {
                    let reason = format!("cannot attach to {name}: {source}");
                    (reason.clone(), reason, retry::is_passing(&source))
                }
                Err(SessionError::PinLink { name, source }) => {
                    let reason = format!("cannot pin the link of {name}: {source}");
                    (reason.clone(), reason, retry::is_passing(&source))
                }
                Err(other) => return Err(other),
            };
            refused_passing |= passing;
            if self.tell(chosen.ifindex, Unserved::Refused(cause)) {
                followed.refused.push(format!(
                    "{reason}; serving the others, and trying {} again {}",
                    chosen.name,
                    if passing {
                        "shortly and when interfaces change"
                    } else {
                        "when interfaces change"
                    }
                ));
            }
        }
        followed.retry_in = self.retry.after(refused_passing);
        self.tracked.follow_workloads(&all);
        let grown = self.tracked.probe.capacity();
        followed.grown_to = (grown > room).then_some(grown);
        Ok(followed)
    }

    /// Records what is said about an unserved interface; false when it was said last already.
    pub(super) fn tell(&mut self, ifindex: u32, unserved: Unserved) -> bool {
        if self.told.get(&ifindex) == Some(&unserved) {
            return false;
        }
        self.told.insert(ifindex, unserved);
        true
    }

    /// Releases the served interfaces that are gone, keeping them for the next snapshot, and
    /// renames the pins of renamed ones. Notes one released while a device with its ifindex is
    /// still here: the selection may want it served again.
    pub(super) fn follow_served(&mut self, all: &[Interface]) -> Result<(), SessionError> {
        let departed = self.tracked.departed(all);
        self.lost_present |= departed
            .gone
            .iter()
            .any(|(ifindex, _, _)| all.iter().any(|interface| interface.ifindex == *ifindex));
        for (ifindex, served, mode) in departed.gone {
            let counters = self.tracked.release(ifindex, &served.name)?;
            self.tracked
                .remember_removed(ifindex, served.name, (mode, served.program), counters);
        }
        for (ifindex, name) in departed.renamed {
            self.tracked
                .probe
                .rename(ifindex, &name)
                .map_err(|source| SessionError::PinLink {
                    name: name.clone(),
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }
}

/// What [`Tracked::list_or_last`] found.
pub(super) struct Listing {
    pub(super) all: Vec<Interface>,
    /// False for the last consistent list, taken before the interfaces attached since: it
    /// shows them without our program, so it cannot say which served interfaces are gone.
    pub(super) fresh: bool,
}

/// What [`Tracked::departed`] found.
pub(super) struct Departed {
    /// Gone, with what was served and its mode.
    pub(super) gone: Vec<(u32, Served, Mode)>,
    /// Renamed, with the new name.
    pub(super) renamed: Vec<(u32, String)>,
}

impl Tracked {
    /// Takes the served interfaces that are gone (or replaced by a device that took their
    /// ifindex, then without our program) out of the served ones, with their modes, and the
    /// new names of renamed ones.
    pub(super) fn departed(&mut self, all: &[Interface]) -> Departed {
        let by_index: BTreeMap<u32, &Interface> = all.iter().map(|i| (i.ifindex, i)).collect();
        let gone: Vec<u32> = self
            .served
            .keys()
            .filter(|ifindex| {
                !by_index.get(ifindex).is_some_and(|interface| {
                    self.probe.holds(**ifindex, interface.xdp.map(|xdp| xdp.id))
                })
            })
            .copied()
            .collect();
        let gone = gone
            .into_iter()
            .map(|ifindex| {
                let served = self.served.remove(&ifindex).expect("listed above");
                let mode = self
                    .probe
                    .mode(ifindex)
                    .expect("served interfaces are configured");
                (ifindex, served, mode)
            })
            .collect();
        let mut renamed = Vec::new();
        for (ifindex, served) in &mut self.served {
            let name = &by_index[ifindex].name;
            if served.name != *name {
                served.name.clone_from(name);
                renamed.push((*ifindex, name.clone()));
            }
        }
        Departed { gone, renamed }
    }

    /// The interfaces here, or while they keep changing the last consistent list, said to be
    /// stale: the next one catches up.
    pub(super) fn list_or_last(&mut self) -> Result<Listing, SessionError> {
        match self.list() {
            Ok(all) => Ok(Listing { all, fresh: true }),
            Err(SessionError::Interfaces(InterfaceError::Changing(_))) => Ok(Listing {
                all: self.listed.clone(),
                fresh: false,
            }),
            Err(error) => Err(error),
        }
    }
    /// Keeps a standing filter's interface that is gone for the next snapshot to report.
    pub(super) fn keep_removed(&mut self, gone: Adopted) {
        self.remember_removed(
            gone.ifindex,
            gone.name,
            (gone.mode, gone.program),
            gone.counters,
        );
    }

    /// Keeps an interface that is gone, with its final counts and the workload last behind it
    /// (its namespace is often gone with it: what was found is the evidence left), for the next
    /// snapshot to report (and the totals to keep).
    pub(super) fn remember_removed(
        &mut self,
        ifindex: u32,
        name: String,
        (mode, program): (Mode, Framing),
        counters: SlotCounters,
    ) {
        self.removed_totals.add(&counters);
        self.pending_removed.push(InterfaceSnapshot {
            ifindex,
            name,
            mode,
            program,
            hook: None,
            egress: None,
            tcx_preceded_by: TcxPrecededBy::default(),
            route_localnet: None,
            route_localnet_via: Vec::new(),
            exposed: false,
            counters,
            workload: self.workloads.latest().get(&ifindex).cloned(),
            children: self
                .workloads
                .children()
                .get(&ifindex)
                .cloned()
                .unwrap_or_default(),
        });
    }

    /// The interfaces here, kept as the last consistent list. Without waiting, as the run loop
    /// calls it: while interfaces keep changing, its callers list again later.
    pub(super) fn list(&mut self) -> Result<Vec<Interface>, SessionError> {
        let all = self.interfaces.list_now()?;
        self.listed.clone_from(&all);
        Ok(all)
    }
}
