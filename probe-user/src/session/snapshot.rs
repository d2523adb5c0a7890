//! One reading of every served interface per tick: counters, names, route_localnet and its
//! changes, and each interface's exposure as [`crate::exposure::verdict::decide`] gives it.

use super::*;

/// One reading of every served interface.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub interfaces: Vec<InterfaceSnapshot>,
    /// Interfaces that disappeared since the previous snapshot, with their final counts.
    pub removed: Vec<InterfaceSnapshot>,
    /// Final counts of every interface removed since the session started.
    pub removed_totals: SlotCounters,
    /// Samples per second and interface; 0 when sampling is off.
    pub sample_rate: u32,
    /// What changed in route_localnet since the previous snapshot: `conf.all`, `conf.default`,
    /// and the own setting of each served interface and of each device stacked on one.
    pub route_localnet_changes: Vec<route_localnet::Change>,
    /// Interfaces the selection asks for that the probe cannot serve: neither counted nor
    /// filtered until a later try succeeds.
    pub refused: Vec<RefusedInterface>,
    /// What changed in the nftables drops since the previous snapshot.
    pub firewall_changes: Vec<FirewallChange>,
}

/// A selected interface left unserved by a failure (another XDP program on it, no room left in
/// the counter map, a driver that refuses); tried again as interfaces change.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RefusedInterface {
    pub name: String,
    pub ifindex: u32,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct InterfaceSnapshot {
    pub ifindex: u32,
    pub name: String,
    pub mode: Mode,
    pub program: Framing,
    /// Where it is attached; `None` once it is gone.
    pub hook: Option<Hook>,
    /// Where replies leaving it are counted, if they are.
    pub egress: Option<TcHook>,
    /// Other programs that run before the probe's at its tc hooks.
    pub tcx_preceded_by: TcxPrecededBy,
    /// `None` when the interface has no IPv4 configuration.
    pub route_localnet: Option<RouteLocalnet>,
    /// This interface and the devices stacked on it (macvlan, VLAN children, a bridge or bond
    /// master) whose effective route_localnet is 1: frames arriving here reach the stack
    /// through them, so 127.0.0.0/8 destinations are routed.
    pub route_localnet_via: Vec<String>,
    /// Services bound to 127.0.0.1 are reachable from this link: route_localnet is in effect on
    /// a device its frames reach, and neither localnet-probe nor a rule of the packet filter
    /// drops them on their way ([`Verdict::Exposed`]; a link with no such service listening is
    /// latent, as the audit says, not exposed).
    pub exposed: bool,
    pub counters: SlotCounters,
    /// Who is behind it, for a link whose other end is in another namespace; shared with the
    /// events and senders that name it.
    pub workload: Option<Arc<Workload>>,
    /// Its children in other namespaces (macvlan, ipvlan), each with who is behind it.
    pub children: Vec<Child>,
}

impl Session {
    /// Reads every served interface once: names, route_localnet and counters. An interface
    /// renamed since is reported under its new name; one that is gone is released (if
    /// [`Session::follow_links`] has not already) and reported once in [`Snapshot::removed`].
    /// Changes of route_localnet since the previous snapshot are in
    /// [`Snapshot::route_localnet_changes`].
    pub fn snapshot(&mut self) -> Result<Snapshot, SessionError> {
        let listing = self.tracked.list_or_last()?;
        if listing.fresh {
            self.follow_served(&listing.all)?;
            self.tracked.follow_workloads(&listing.all);
        }
        let refused = refused(&self.told, &listing.all);
        self.tracked.read(&listing.all, refused)
    }
}

/// The interfaces the selection asks for that the probe could not serve, as `all` names them.
fn refused(told: &BTreeMap<u32, Unserved>, all: &[Interface]) -> Vec<RefusedInterface> {
    told.iter()
        .filter_map(|(ifindex, unserved)| match unserved {
            Unserved::Refused(reason) => {
                all.iter()
                    .find(|i| i.ifindex == *ifindex)
                    .map(|i| RefusedInterface {
                        name: i.name.clone(),
                        ifindex: *ifindex,
                        reason: reason.clone(),
                    })
            }
            Unserved::Skipped(_) => None,
        })
        .collect()
}

impl Tracked {
    /// One reading of the served interfaces, listed in `all` once the gone ones were followed.
    pub(super) fn read(
        &mut self,
        all: &[Interface],
        refused: Vec<RefusedInterface>,
    ) -> Result<Snapshot, SessionError> {
        let all_route_localnet = route_localnet::read_all().ok();
        let default_route_localnet = route_localnet::read_default().ok();
        let read_at = SystemTime::now();
        let removed = std::mem::take(&mut self.pending_removed);
        let by_index: BTreeMap<u32, &Interface> = all.iter().map(|i| (i.ifindex, i)).collect();
        let mut counters = self
            .probe
            .counters()
            .map_err(|error| SessionError::Counters(Box::new(error)))?;
        let uppers = Uppers::of(all);
        // Unreadable: no reverse-path filter assumed, which counts fewer rules as drops.
        let all_conf = GlobalConf::read("all").unwrap_or_default();
        let (chains, firewall_changes) = self.firewall.update();
        let services = self.services.latest();
        let workloads = self.workloads.latest();
        let children = self.workloads.children();
        let mut reading = route_localnet::Reading {
            all: all_route_localnet,
            default: default_route_localnet,
            interfaces: BTreeMap::new(),
        };
        let mut interfaces = Vec::with_capacity(self.served.len());
        for (ifindex, served) in &self.served {
            let interface = by_index[ifindex];
            for device in uppers.stacked(interface) {
                if let Some(on) = device.route_localnet {
                    reading
                        .interfaces
                        .insert(device.ifindex, (device.name.clone(), on));
                }
            }
            let mode = self
                .probe
                .mode(*ifindex)
                .expect("served interfaces are configured");
            let route_localnet = RouteLocalnet::of(all_route_localnet, interface.route_localnet);
            let receivers = uppers.route_localnet_via(interface, all_route_localnet);
            // Gone since it was listed: nothing is ahead of it any more.
            let tcx_preceded_by = self.probe.tcx_preceded_by(*ifindex).unwrap_or_default();
            // Drop mode protects a device unless another program that runs first may pass
            // frames to the stack.
            let probe_drops = |receiver: u32| {
                let preceded_is_empty = if receiver == *ifindex {
                    tcx_preceded_by.ingress.is_empty()
                } else {
                    self.probe
                        .tcx_preceded_by(receiver)
                        .unwrap_or_default()
                        .ingress
                        .is_empty()
                };
                self.probe.mode(receiver) == Some(Mode::Drop) && preceded_is_empty
            };
            let exposed = decide(&LinkFacts {
                interface,
                via: &receivers,
                drops: Drops {
                    probe: &probe_drops,
                    stacking: Some(all),
                    firewall: Some(Firewall {
                        ruleset: chains,
                        loopback_sources_accepted: loopback_sources_accepted(&receivers, &all_conf),
                    }),
                },
                services: services.as_deref(),
                replies_seen: None,
            })
            .verdict
                == Verdict::Exposed;
            let attached = self.probe.attached_hook(*ifindex);
            interfaces.push(InterfaceSnapshot {
                ifindex: *ifindex,
                name: interface.name.clone(),
                mode,
                program: served.program,
                hook: attached.map(|(hook, _)| hook),
                egress: attached.and_then(|(_, egress)| egress),
                tcx_preceded_by,
                route_localnet,
                route_localnet_via: receivers
                    .into_iter()
                    .map(|receiver| receiver.name.clone())
                    .collect(),
                exposed,
                counters: counters.remove(ifindex).unwrap_or_default(),
                workload: workloads
                    .get(ifindex)
                    .cloned()
                    .or_else(|| peer_nsid(interface).map(|_| Arc::new(Workload::pending()))),
                children: children.get(ifindex).cloned().unwrap_or_default(),
            });
        }
        Ok(Snapshot {
            at: Instant::now(),
            interfaces,
            removed,
            removed_totals: self.removed_totals,
            sample_rate: self.probe.sample_rate(),
            route_localnet_changes: self.route_localnet.update(reading, read_at),
            refused,
            firewall_changes,
        })
    }
}
