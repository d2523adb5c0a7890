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

use super::{Child, Children, Workload, cri, ids_of_other_namespaces, resolve};
use crate::{
    kernel::processes,
    net::{
        interfaces::{ChildElsewhere, Interfaces},
        workload::namespaces::{Holder, NsidQuery},
    },
};

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
/// How often the children of the served devices in other namespaces are looked for when no
/// link event says one came: a listing of every namespace's links, so not often.
const DISCOVER_EVERY: Duration = Duration::from_secs(60);
/// The least time between two such searches, however often link events ask for one.
const DISCOVER_AT_MOST_EVERY: Duration = Duration::from_secs(2);
/// How long after a link event the search waits: a child made beside its parent and moved a
/// moment later (as with `ip link add` then `ip link set … netns`) is not in its namespace yet
/// when the parent's event comes, which tells of the making only.
const SETTLE: Duration = Duration::from_millis(300);
/// How often the search is made while frames arrive at parents with children: events name a
/// child by the MAC the last search found, and a MAC changed in the child's namespace sends no
/// event here.
const DISCOVER_WHILE_ADDRESSED: Duration = Duration::from_secs(5);

/// Interface → workload, as last resolved.
pub type Workloads = BTreeMap<u32, Arc<Workload>>;

#[derive(Debug, Default)]
struct State {
    /// The served interfaces that lead to another namespace: ifindex → nsid.
    wanted: BTreeMap<u32, i32>,
    /// The served devices that may have children in other namespaces.
    parents: BTreeSet<u32>,
    changed: bool,
    /// When a link event last named a parent: its children may have changed.
    rediscover: Option<Instant>,
    /// Frames arrived at a parent with children since the last search.
    addressed: bool,
    latest: Arc<Workloads>,
    children: Arc<Children>,
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

    /// Resolves `wanted` (ifindex → nsid) and the children of `parents` once, here, and never
    /// again: for a view read once. Waits at most `wait` for `cri` to name the pods.
    pub fn once(
        wanted: BTreeMap<u32, i32>,
        parents: &BTreeSet<u32>,
        cri: &cri::Client,
        wait: Duration,
    ) -> Self {
        let found = children_of(parents);
        let nsids = wanted
            .values()
            .copied()
            .chain(found.iter().map(|child| child.nsid))
            .collect();
        let mut resolved = resolve(&nsids);
        cri.name(resolved.values_mut(), wait);
        let resolved: BTreeMap<i32, Arc<Workload>> = resolved
            .into_iter()
            .map(|(nsid, workload)| (nsid, Arc::new(workload)))
            .collect();
        let latest = wanted
            .iter()
            .filter_map(|(ifindex, nsid)| Some((*ifindex, Arc::clone(resolved.get(nsid)?))))
            .collect();
        let shared = Arc::new(Shared::default());
        let mut state = shared.lock();
        state.latest = Arc::new(latest);
        state.children = Arc::new(attributed(&found, &resolved));
        drop(state);
        Self {
            shared,
            followed: false,
        }
    }

    /// Says which served interfaces lead to which namespaces (ifindex → nsid), and which
    /// served devices may have children in others; the thread resolves what changed. Never
    /// waits for a resolution.
    pub fn follow(&self, wanted: BTreeMap<u32, i32>, parents: BTreeSet<u32>) {
        if !self.followed {
            return;
        }
        let mut state = self.shared.lock();
        if state.wanted != wanted || state.parents != parents {
            state.wanted = wanted;
            state.parents = parents;
            state.changed = true;
            self.shared.wake.notify_one();
        }
    }

    /// Says that link events announced `ifindexes`, or were lost: the children of a parent
    /// among them are looked for again.
    pub fn announced(&self, ifindexes: &BTreeSet<u32>, lost: bool) {
        if !self.followed {
            return;
        }
        let mut state = self.shared.lock();
        if lost || !state.parents.is_disjoint(ifindexes) {
            state.rediscover = Some(Instant::now());
            self.shared.wake.notify_one();
        }
    }

    /// Says that frames arrived at parents with children: the children's MACs, which name them
    /// in events, are to be searched for again within [`DISCOVER_WHILE_ADDRESSED`].
    pub fn addressed(&self) {
        if !self.followed {
            return;
        }
        let mut state = self.shared.lock();
        if !state.addressed {
            state.addressed = true;
            self.shared.wake.notify_one();
        }
    }

    /// The workloads as last resolved, by ifindex.
    pub fn latest(&self) -> Arc<Workloads> {
        Arc::clone(&self.shared.lock().latest)
    }

    /// The served devices' children in other namespaces, as last found, by the parent's
    /// ifindex.
    pub fn children(&self) -> Arc<Children> {
        Arc::clone(&self.shared.lock().children)
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
    /// The children found in other namespaces, when they were looked for, for which parents,
    /// and when a link event last asked for a search (until one more has been made after it,
    /// for a child moved away a moment after the event).
    found: Vec<ChildElsewhere>,
    discovered: Option<(Instant, BTreeSet<u32>)>,
    rediscover: Option<Instant>,
    searches_asked: u8,
    /// Frames arrived at a parent with children since the last search.
    addressed: bool,
}

impl Resolver {
    fn new(cri: cri::Client) -> Self {
        Self {
            entries: BTreeMap::new(),
            resolved_for: BTreeMap::new(),
            checked_at: None,
            cri,
            names_again_at: None,
            found: Vec::new(),
            discovered: None,
            rediscover: None,
            searches_asked: 0,
            addressed: false,
        }
    }

    fn run(mut self, shared: &Shared) {
        loop {
            let (wanted, parents) = {
                let mut state = shared.lock();
                loop {
                    if state.stopped {
                        return;
                    }
                    if state.changed {
                        break;
                    }
                    self.asked(state.rediscover.take());
                    self.addressed |= std::mem::take(&mut state.addressed);
                    let now = Instant::now();
                    let next = self.next_at(&state.parents, now);
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
                self.asked(state.rediscover.take());
                self.addressed |= std::mem::take(&mut state.addressed);
                (state.wanted.clone(), state.parents.clone())
            };
            let (latest, children) = self.round(&wanted, &parents);
            let mut state = shared.lock();
            state.latest = Arc::new(latest);
            state.children = Arc::new(children);
        }
    }

    /// Notes a link event's request for a search: two follow, [`SETTLE`] after it and
    /// [`DISCOVER_AT_MOST_EVERY`] after that.
    fn asked(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            self.rediscover = Some(at);
            self.searches_asked = 2;
        }
    }

    /// When the children of `parents` are to be looked for: now for parents not searched yet,
    /// soon after a link event asked, and every [`DISCOVER_EVERY`].
    fn discover_at(&self, parents: &BTreeSet<u32>, now: Instant) -> Option<Instant> {
        if parents.is_empty() {
            return None;
        }
        let Some((at, searched)) = &self.discovered else {
            return Some(now);
        };
        if !parents.is_subset(searched) {
            Some(*at + DISCOVER_AT_MOST_EVERY)
        } else if let Some(asked) = self.rediscover.filter(|_| self.searches_asked > 0) {
            Some((*at + DISCOVER_AT_MOST_EVERY).max(asked + SETTLE))
        } else if self.addressed {
            Some(*at + DISCOVER_WHILE_ADDRESSED)
        } else {
            Some(*at + DISCOVER_EVERY)
        }
    }

    /// When something is due: a retry, the check of the processes found, a search for
    /// children.
    fn next_at(&self, parents: &BTreeSet<u32>, now: Instant) -> Option<Instant> {
        let check = self
            .checked_at
            .filter(|_| !self.entries.is_empty())
            .map(|at| at + CHECK_EVERY);
        self.entries
            .values()
            .filter_map(|entry| entry.again_at)
            .chain(check)
            .chain(self.names_again_at)
            .chain(self.discover_at(parents, now))
            .min()
    }

    /// Resolves what is new, due or gone, and says the workload of every wanted interface and
    /// of the children of `parents`.
    fn round(
        &mut self,
        wanted: &BTreeMap<u32, i32>,
        parents: &BTreeSet<u32>,
    ) -> (Workloads, Children) {
        let now = Instant::now();
        if self.discover_at(parents, now).is_some_and(|at| at <= now) {
            self.found = children_of(parents);
            self.discovered = Some((now, parents.clone()));
            self.searches_asked = self.searches_asked.saturating_sub(1);
            self.addressed = false;
        }
        self.found.retain(|child| parents.contains(&child.parent));
        // The children's namespaces are resolved as a veth's are, under a key of their own:
        // the interfaces they are children of are not theirs to name.
        let wanted: BTreeMap<u32, i32> = wanted
            .iter()
            .map(|(ifindex, nsid)| (*ifindex, *nsid))
            .chain(
                self.found
                    .iter()
                    .map(|child| (child_key(child), child.nsid)),
            )
            .collect();
        let wanted = &wanted;
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
        let resolved: BTreeMap<i32, Arc<Workload>> = self
            .entries
            .iter()
            .map(|(nsid, entry)| (*nsid, Arc::clone(&entry.workload)))
            .collect();
        let workloads = wanted
            .iter()
            .filter(|(key, _)| **key < CHILD_KEYS)
            .filter_map(|(ifindex, nsid)| Some((*ifindex, Arc::clone(resolved.get(nsid)?))))
            .collect();
        (workloads, attributed(&self.found, &resolved))
    }

    /// Names the pods whose names are not all known yet (a pod, or a container of it, the
    /// CRI did not list), without waiting for the CRI: while it is being asked, again shortly.
    fn name_pods(&mut self, now: Instant) {
        let unnamed = self
            .entries
            .values_mut()
            .filter(|entry| {
                let workload = &entry.workload;
                workload.attribution.pod_uid.is_some()
                    && (workload.names.pod.is_none() || workload.names_unresolved.is_some())
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

/// Keys at and above this in the resolver's wanted map are children's, not ifindexes (which
/// the kernel keeps below 2^31).
const CHILD_KEYS: u32 = 1 << 31;

/// The resolver's key for a child: a retry keyed by it follows the child's namespace.
fn child_key(child: &ChildElsewhere) -> u32 {
    CHILD_KEYS | child.nsid.cast_unsigned()
}

/// The children of `parents` in other namespaces; none when they cannot be listed (said in
/// the debug log: the interfaces are served and counted whatever this finds).
fn children_of(parents: &BTreeSet<u32>) -> Vec<ChildElsewhere> {
    if parents.is_empty() {
        return Vec::new();
    }
    let own_nsid = || {
        NsidQuery::open()?.nsid(Holder::File(std::path::Path::new(
            "/proc/thread-self/ns/net",
        )))
    };
    let found = ids_of_other_namespaces().and_then(|nsids| {
        Interfaces::connect()
            .map_err(|error| std::io::Error::other(error.to_string()))?
            .children_elsewhere(&nsids, own_nsid)
    });
    match found {
        Ok(mut found) => {
            found.retain(|child| parents.contains(&child.parent));
            found
        }
        Err(error) => {
            tracing::debug!("cannot list the links of the other namespaces: {error}");
            Vec::new()
        }
    }
}

/// The children found, each with the workload resolved for its namespace, by parent.
fn attributed(found: &[ChildElsewhere], resolved: &BTreeMap<i32, Arc<Workload>>) -> Children {
    let mut children = Children::new();
    for child in found {
        let workload = resolved
            .get(&child.nsid)
            .cloned()
            .unwrap_or_else(|| Arc::new(Workload::pending()));
        children.entry(child.parent).or_default().push(Child {
            name: child.name.clone(),
            kind: child.kind.clone(),
            mac: child.mac.map(crate::net::mac_string),
            workload,
        });
    }
    children
}
