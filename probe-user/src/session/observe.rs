//! A standing filter only read (`status`): snapshots of it as pinned, without attaching,
//! releasing or renaming anything; and, with none pinned, each interface's route_localnet.

use super::*;

/// This network namespace's standing filter, read and never changed: unlike a [`Session`] it
/// cannot serve, switch modes or release, and dropping it leaves everything as it was.
pub struct Observed {
    tracked: Tracked,
}

impl Observed {
    /// This network namespace's standing filter as pinned, only read, or `None` with what
    /// the directory it would be in is: nothing attaches, nothing changes. Interfaces whose
    /// pins outlived them are reported removed by the first snapshot. Waits at most `wait` for
    /// `cri` to name the pods behind the interfaces.
    pub fn standing(
        cri: &cri::Client,
        wait: Duration,
    ) -> Result<Result<(Self, Standing), PinDir>, SessionError> {
        if let Some(missing) = privileges::missing_to_read() {
            return Err(SessionError::Privileges(missing));
        }
        let dir = PinDir::of_this_namespace().map_err(SessionError::Namespace)?;
        dir.require_visible()?;
        let Some(standing) = dir.standing()? else {
            return Ok(Err(dir));
        };
        let mut interfaces = Interfaces::connect()?;
        let (probe, gone) =
            Probe::read_standing(dir, standing.capacity).map_err(super::standing::read_error)?;
        let listed = interfaces.list()?;
        let names: BTreeMap<u32, String> = listed
            .iter()
            .map(|interface| (interface.ifindex, interface.name.clone()))
            .collect();
        let mut tracked = Tracked {
            probe,
            interfaces,
            served: BTreeMap::new(),
            removed_totals: SlotCounters::default(),
            pending_removed: Vec::new(),
            listed,
            route_localnet: route_localnet::Watch::default(),
            // Read once, and followed no longer than this reading of the standing filter.
            firewall: firewall::Followed::new(FirewallWatch::once()),
            services: ServicesWatch::once(),
            workloads: WorkloadWatch::once(BTreeMap::new(), &BTreeSet::new(), cri, Duration::ZERO),
        };
        for (ifindex, program) in tracked.probe.served() {
            // Not here: moved to another namespace while no probe ran.
            let name = names
                .get(&ifindex)
                .cloned()
                .or_else(|| tracked.probe.pinned_name(ifindex))
                .unwrap_or_else(|| format!("ifindex {ifindex}"));
            tracked.served.insert(ifindex, Served { name, program });
        }
        for gone in gone {
            tracked.keep_removed(gone);
        }
        tracked.workloads = WorkloadWatch::once(
            tracked.peers(&tracked.listed),
            &tracked.parents(&tracked.listed),
            cri,
            wait,
        );
        Ok(Ok((Self { tracked }, standing)))
    }

    /// The standing filter's directory.
    pub fn standing_dir(&self) -> Option<&PinDir> {
        self.tracked.probe.standing_dir()
    }

    /// Reads every interface of the standing filter once, as [`Session::snapshot`] does; the
    /// interfaces that are gone are reported removed with the counts they had, their pins left
    /// for the next `run --pin` or `detach` to clear.
    pub fn snapshot(&mut self) -> Result<Snapshot, SessionError> {
        let listing = self.tracked.list_or_last()?;
        let departed = if listing.fresh {
            self.tracked.departed(&listing.all).gone
        } else {
            Vec::new()
        };
        if !departed.is_empty() {
            let mut counters = self
                .tracked
                .probe
                .counters()
                .map_err(|error| SessionError::Counters(Box::new(error)))?;
            for (ifindex, served, mode) in departed {
                let counters = counters.remove(&ifindex).unwrap_or_default();
                self.tracked.remember_removed(
                    ifindex,
                    served.name,
                    (mode, served.program),
                    counters,
                );
            }
        }
        let detached = self
            .tracked
            .probe
            .detached()
            .iter()
            .filter_map(|ifindex| {
                let name = listing
                    .all
                    .iter()
                    .find(|interface| interface.ifindex == *ifindex)?
                    .name
                    .clone();
                Some(RefusedInterface {
                    name,
                    ifindex: *ifindex,
                    reason: "the standing filter's link here is gone (its pin removed, the \
                             link detached or the device replaced) until `localnet-probe run \
                             --pin` attaches it again"
                        .to_owned(),
                })
            })
            .collect();
        self.tracked.read(&listing.all, detached)
    }
}

/// An interface as `status` shows it when no standing filter is pinned.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UnservedInterface {
    pub name: String,
    pub ifindex: u32,
    /// `None` when the interface has no IPv4 configuration.
    pub route_localnet: Option<RouteLocalnet>,
    /// As [`InterfaceSnapshot::route_localnet_via`].
    pub route_localnet_via: Vec<String>,
    /// Route_localnet is in effect for the link's frames, and nothing drops them: neither
    /// localnet-probe nor an nftables rule.
    pub exposed: bool,
    /// The id of an XDP program attached there, anyone's.
    pub xdp_program_id: Option<u32>,
}

/// Every interface of this namespace but loopback, with its route_localnet, for a namespace
/// without a standing filter.
pub fn unserved_interfaces() -> Result<Vec<UnservedInterface>, SessionError> {
    let all = Interfaces::connect()?.list()?;
    let all_route_localnet = route_localnet::read_all().ok();
    let all_conf = GlobalConf::read("all").unwrap_or_default();
    // Unreadable: no rule counts as a drop, and that is said.
    let chains = firewall::chains_or_unread(&firewall::read());
    let services = ServicesWatch::once().latest();
    let uppers = Uppers::of(&all);
    Ok(all
        .iter()
        .filter(|interface| !interface.loopback)
        .map(|interface| {
            let via = uppers.route_localnet_via(interface, all_route_localnet);
            // Nothing of localnet-probe's is pinned here to drop anything.
            let exposed = decide(&LinkFacts {
                interface,
                via: &via,
                drops: Drops {
                    probe: &|_| false,
                    stacking: Some(&all),
                    firewall: Some(Firewall {
                        ruleset: &chains,
                        loopback_sources_accepted: loopback_sources_accepted(&via, &all_conf),
                    }),
                },
                services: services.as_deref(),
                replies_seen: None,
            })
            .verdict
                == Verdict::Exposed;
            let via: Vec<String> = via
                .into_iter()
                .map(|receiver| receiver.name.clone())
                .collect();
            UnservedInterface {
                name: interface.name.clone(),
                ifindex: interface.ifindex,
                route_localnet: RouteLocalnet::of(all_route_localnet, interface.route_localnet),
                exposed,
                route_localnet_via: via,
                xdp_program_id: interface.xdp.map(|xdp| xdp.id),
            }
        })
        .collect())
}
