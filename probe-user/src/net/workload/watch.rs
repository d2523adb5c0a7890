//! The workloads behind the served interfaces, kept by a thread of its own: told which
//! interfaces lead to which namespaces when links change, it resolves the new ones, tries
//! again on a bounded schedule those whose processes have not appeared yet (a container's
//! processes join its namespace after its veth is made), and checks every few seconds that the
//! processes found are still there. The loop that asks reads the latest map and never waits.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Condvar, Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use super::{Workload, cri, resolve};
use crate::kernel::processes;

/// The first pause before resolving again a namespace without processes; it doubles up to
/// [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// Tries for a namespace without processes before waiting for the next link change: about
/// half a minute.
const TRIES: u32 = 36;
/// How often the processes found are checked to be there still (a `readlink` each: at a
/// thousand workloads, every 2 s took a fifteenth of the probe's CPU).
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How soon pods are named again while the CRI is being asked.
const NAMES_AGAIN: Duration = Duration::from_millis(200);

/// Interface → workload, as last resolved.
pub type Workloads = BTreeMap<u32, Arc<Workload>>;

#[derive(Debug, Default)]
struct State {
    /// The served interfaces that lead to another namespace: ifindex → nsid.
    wanted: BTreeMap<u32, i32>,
    changed: bool,
    latest: Arc<Workloads>,
    stopped: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The workloads behind the served interfaces; see the module.
#[derive(Debug)]
pub struct WorkloadWatch {
    shared: Arc<Shared>,
    /// Whether a thread keeps them.
    followed: bool,
}

impl WorkloadWatch {
    /// Starts the thread, with nothing to resolve yet; pods are named by asking `cri`.
    pub fn start(cri: cri::Client) -> Self {
        let shared = Arc::new(Shared::default());
        let for_thread = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("workload-watch".to_owned())
            .spawn(move || Resolver::new(cri).run(&for_thread));
        if let Err(error) = &spawned {
            tracing::warn!("the workloads behind the interfaces are not resolved: {error}");
        }
        Self {
            shared,
            followed: spawned.is_ok(),
        }
    }

    /// Resolves `wanted` (ifindex → nsid) once, here, and never again: for a view read once.
    /// Waits at most `wait` for `cri` to name the pods.
    pub fn once(wanted: BTreeMap<u32, i32>, cri: &cri::Client, wait: Duration) -> Self {
        let nsids = wanted.values().copied().collect();
        let mut resolved = resolve(&nsids);
        cri.name(resolved.values_mut(), wait);
        let latest = wanted
            .iter()
            .filter_map(|(ifindex, nsid)| Some((*ifindex, Arc::new(resolved.get(nsid)?.clone()))))
            .collect();
        let shared = Arc::new(Shared::default());
        shared.lock().latest = Arc::new(latest);
        Self {
            shared,
            followed: false,
        }
    }

    /// Says which served interfaces lead to which namespaces (ifindex → nsid); the thread
    /// resolves what changed. Never waits for a resolution.
    pub fn follow(&self, wanted: BTreeMap<u32, i32>) {
        if !self.followed {
            return;
        }
        let mut state = self.shared.lock();
        if state.wanted != wanted {
            state.wanted = wanted;
            state.changed = true;
            self.shared.wake.notify_one();
        }
    }

    /// The workloads as last resolved, by ifindex.
    pub fn latest(&self) -> Arc<Workloads> {
        Arc::clone(&self.shared.lock().latest)
    }
}

impl Drop for WorkloadWatch {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.wake.notify_one();
    }
}

/// What the thread knows of one namespace.
#[derive(Debug)]
struct Entry {
    workload: Arc<Workload>,
    /// Resolutions that found no process, since one did.
    tries: u32,
    /// When to resolve it again; `None` when its processes are there or the tries are spent.
    again_at: Option<Instant>,
}

#[derive(Debug)]
struct Resolver {
    entries: BTreeMap<i32, Entry>,
    /// The interfaces each namespace was resolved for: one that leads there anew resolves it
    /// again (an nsid is reused once its namespace is gone).
    resolved_for: BTreeMap<u32, i32>,
    checked_at: Option<Instant>,
    cri: cri::Client,
    /// When to name pods again, while the CRI is being asked.
    names_again_at: Option<Instant>,
}

impl Resolver {
    fn new(cri: cri::Client) -> Self {
        Self {
            entries: BTreeMap::new(),
            resolved_for: BTreeMap::new(),
            checked_at: None,
            cri,
            names_again_at: None,
        }
    }

    fn run(mut self, shared: &Shared) {
        loop {
            let wanted = {
                let mut state = shared.lock();
                loop {
                    if state.stopped {
                        return;
                    }
                    if state.changed {
                        break;
                    }
                    let now = Instant::now();
                    let next = self.next_at();
                    if next.is_some_and(|at| at <= now) {
                        break;
                    }
                    let wait = next.map_or(CHECK_EVERY, |at| at - now);
                    state = shared
                        .wake
                        .wait_timeout(state, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                state.changed = false;
                state.wanted.clone()
            };
            let latest = self.round(&wanted);
            shared.lock().latest = Arc::new(latest);
        }
    }

    /// When something is due: a retry, or the check of the processes found.
    fn next_at(&self) -> Option<Instant> {
        let check = self
            .checked_at
            .filter(|_| !self.entries.is_empty())
            .map(|at| at + CHECK_EVERY);
        self.entries
            .values()
            .filter_map(|entry| entry.again_at)
            .chain(check)
            .chain(self.names_again_at)
            .min()
    }

    /// Resolves what is new, due or gone, and says the workload of every wanted interface.
    fn round(&mut self, wanted: &BTreeMap<u32, i32>) -> Workloads {
        let now = Instant::now();
        let nsids: BTreeSet<i32> = wanted.values().copied().collect();
        self.entries.retain(|nsid, _| nsids.contains(nsid));
        let check = self
            .checked_at
            .is_none_or(|at| now.duration_since(at) >= CHECK_EVERY);
        if check {
            self.checked_at = Some(now);
        }
        let due: BTreeSet<i32> = wanted
            .iter()
            .filter(|(ifindex, nsid)| {
                self.resolved_for.get(ifindex) != Some(nsid)
                    || self.entries.get(nsid).is_none_or(|entry| {
                        entry.again_at.is_some_and(|at| at <= now)
                            || (check && !still_there(&entry.workload))
                    })
            })
            .map(|(_, nsid)| *nsid)
            .collect();
        if !due.is_empty() {
            for (nsid, workload) in resolve(&due) {
                self.update(nsid, workload, now);
            }
        }
        self.name_pods(now);
        self.resolved_for.clone_from(wanted);
        wanted
            .iter()
            .filter_map(|(ifindex, nsid)| {
                Some((*ifindex, Arc::clone(&self.entries.get(nsid)?.workload)))
            })
            .collect()
    }

    /// Names the pods that have no names yet, without waiting for the CRI: while it is being
    /// asked, again shortly.
    fn name_pods(&mut self, now: Instant) {
        let unnamed = self
            .entries
            .values_mut()
            .filter(|entry| {
                entry.workload.attribution.pod_uid.is_some() && entry.workload.names.pod.is_none()
            })
            .map(|entry| Arc::make_mut(&mut entry.workload));
        self.cri.name(unnamed, Duration::ZERO);
        self.names_again_at = self.cri.listing().then(|| now + NAMES_AGAIN);
    }

    fn update(&mut self, nsid: i32, mut workload: Workload, now: Instant) {
        let previous = self.entries.remove(&nsid);
        if workload.process_count > 0 {
            self.entries.insert(
                nsid,
                Entry {
                    workload: Arc::new(workload),
                    tries: 0,
                    again_at: None,
                },
            );
            return;
        }
        // The processes are gone: what they were is still the best account of who was there.
        if let Some(before) = previous.as_ref().map(|entry| &entry.workload)
            && before.attribution.container_id.is_some()
            && workload.netns.as_ref().map(|n| n.inode) == before.netns.as_ref().map(|n| n.inode)
        {
            workload.attribution = before.attribution.clone();
            workload.unresolved = Some(
                "no process left in the namespace; runtime and ids are from the processes \
                 found before"
                    .to_owned(),
            );
        }
        let tries = previous.map_or(0, |entry| entry.tries) + 1;
        let pause = (FIRST_PAUSE * 2u32.saturating_pow(tries - 1)).min(LONGEST_PAUSE);
        self.entries.insert(
            nsid,
            Entry {
                workload: Arc::new(workload),
                tries,
                again_at: (tries < TRIES).then(|| now + pause),
            },
        );
    }
}

/// Whether the first process found in a workload's namespace is in it still.
fn still_there(workload: &Workload) -> bool {
    let (Some(netns), Some(first)) = (&workload.netns, workload.processes.first()) else {
        // Nothing to check: resolved again only on its schedule.
        return true;
    };
    processes::net_namespace_of(first.pid).is_ok_and(|inode| inode == netns.inode)
}
