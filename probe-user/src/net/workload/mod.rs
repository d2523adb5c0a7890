//! Who is on the other end of an interface: for a veth (or netkit) whose peer is in another
//! network namespace, that namespace (inode, cookie, /run/netns name), the processes in it, and
//! from their cgroups the container runtime, container and pod ([`cgroup`]). Resolved on a
//! thread of its own when links change ([`WorkloadWatch`]), never on the loop that asks.

pub mod cgroup;
pub mod cri;
pub(crate) mod namespaces;
mod watch;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
};

use serde::Serialize;

pub use self::watch::{WorkloadWatch, Workloads};

/// A device in another namespace whose parent is a served interface (a macvlan, macvtap,
/// ipvlan or ipvtap moved into a container): the parent sees its frames first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Child {
    /// Its name in its namespace, every byte kept.
    pub name: String,
    pub kind: String,
    /// Its Ethernet address, by which frames arriving at the parent are its (an ipvlan's is its
    /// parent's).
    pub mac: Option<String>,
    pub workload: std::sync::Arc<Workload>,
}

impl Child {
    /// A short line for people: `macvlan mv0: containerd 3f4e8a1b2c9d pod shop/web-0 …`.
    pub fn summary(&self) -> String {
        format!("{} {}: {}", self.kind, self.name, self.workload.summary())
    }
}

/// The children of served interfaces in other namespaces, by the parent's ifindex.
pub type Children = BTreeMap<u32, Vec<Child>>;
use self::{
    cgroup::Attribution,
    namespaces::{Holder as NsHolder, NsidQuery},
};
pub use crate::kernel::processes::Holder;
use crate::{kernel::processes, net::interfaces::Interface};

/// Processes named per workload; the rest are counted.
pub const PROCESSES_NAMED: usize = 4;
/// Processes whose cgroup is read before saying none names a container.
const CGROUPS_READ: usize = 16;

/// The network namespace at the other end of a link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Netns {
    pub inode: u64,
    /// What `SO_NETNS_COOKIE` gives its sockets; `None` on kernels before 6.18.
    pub cookie: Option<u64>,
    /// Its name in /run/netns, every byte kept.
    pub name: Option<String>,
}

/// Who is behind an interface, as far as it could be found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// `None` when no process and no /run/netns file holds the peer's namespace.
    pub netns: Option<Netns>,
    /// The first processes in it, by pid.
    pub processes: Vec<Holder>,
    pub process_count: usize,
    #[serde(flatten)]
    pub attribution: Attribution,
    /// What could not be found, when the runtime and ids are not all known.
    pub unresolved: Option<String>,
    /// The pod's and container's names, from the CRI.
    #[serde(flatten)]
    pub names: cri::Names,
    /// Why the pod of a known pod UID has no name here.
    pub names_unresolved: Option<String>,
}

impl Workload {
    fn unresolved(netns: Option<Netns>, why: String) -> Self {
        Self {
            netns,
            processes: Vec::new(),
            process_count: 0,
            attribution: Attribution::default(),
            unresolved: Some(why),
            names: cri::Names::default(),
            names_unresolved: None,
        }
    }

    /// Not resolved yet: the link appeared a moment ago.
    pub fn pending() -> Self {
        Self::unresolved(None, "not resolved yet".to_owned())
    }

    /// A short line for people: `containerd 3f4e8a1b2c9d pod default/web-0 (burstable) container
    /// app`, the pod UID where its name is not known, or why not.
    pub fn summary(&self) -> String {
        let a = &self.attribution;
        let mut words = Vec::new();
        if let Some(id) = &a.container_id {
            let runtime = a.runtime.map_or("container", cgroup::Runtime::name);
            words.push(format!("{runtime} {}", &id[..12.min(id.len())]));
        }
        if let Some(uid) = &a.pod_uid {
            let qos = a.qos.map_or(String::new(), |q| format!(" ({})", q.name()));
            let names = &self.names;
            words.push(match (&names.namespace, &names.pod) {
                (Some(namespace), Some(pod)) => format!("pod {namespace}/{pod}{qos}"),
                (None, Some(pod)) => format!("pod {pod}{qos}"),
                _ => format!("pod {uid}{qos}"),
            });
            if let Some(container) = &names.container {
                words.push(format!("container {container}"));
            }
        }
        if words.is_empty()
            && let Some(first) = self.processes.first()
        {
            words.push(format!("pid {} {}", first.pid, first.command));
        }
        if let Some(name) = self.netns.as_ref().and_then(|n| n.name.as_ref()) {
            words.push(format!("netns {name}"));
        }
        if let Some(why) = &self.unresolved {
            words.push(format!("[{why}]"));
        }
        words.join(" ")
    }
}

/// The id of the namespace holding an interface's peer, for an interface that leads to a
/// workload: a veth or netkit device whose peer is in another namespace.
pub fn peer_nsid(interface: &Interface) -> Option<i32> {
    matches!(interface.kind.as_deref(), Some("veth" | "netkit"))
        .then_some(interface.link_netnsid)
        .flatten()
}

/// Whether an interface may be the parent of macvlan or ipvlan children in other namespaces:
/// an Ethernet device, not a bridge, not one that leads to another namespace itself.
pub fn may_have_children(interface: &Interface) -> bool {
    interface.framing == Ok(probe_common::Framing::Ethernet)
        && !interface.loopback
        && peer_nsid(interface).is_none()
        && interface.kind.as_deref() != Some("bridge")
}

/// The workloads behind the namespaces with ids `nsids` (as this namespace numbers them): one
/// walk of /proc, one `RTM_GETNSID` per namespace until all are found. Blocking.
pub fn resolve(nsids: &BTreeSet<i32>) -> BTreeMap<i32, Workload> {
    let (by_inode, saw_every_process) = processes::net_namespaces();
    let named = namespaces::named();
    let own = processes::net_namespace_of(std::process::id()).ok();
    let mut query = match NsidQuery::open() {
        Ok(query) => query,
        Err(error) => {
            let why = format!("cannot ask the namespaces' ids over rtnetlink: {error}");
            return nsids
                .iter()
                .map(|nsid| (*nsid, Workload::unresolved(None, why.clone())))
                .collect();
        }
    };
    let mut found = BTreeMap::new();
    for (inode, holder) in others(&by_inode, &named, own) {
        if found.len() == nsids.len() {
            break;
        }
        // A process that exited, or a file not mounted over yet, is no namespace to ask about.
        if let Ok(Some(nsid)) = query.nsid(holder)
            && nsids.contains(&nsid)
        {
            found.insert(nsid, (inode, holder));
        }
    }
    nsids
        .iter()
        .map(|nsid| {
            let workload = match found.get(nsid) {
                Some((inode, holder)) => {
                    let netns = Netns {
                        inode: *inode,
                        cookie: namespaces::cookie(*holder),
                        name: named.get(inode).map(|(name, _)| name.clone()),
                    };
                    of_processes(netns, by_inode.get(inode).map_or(&[], Vec::as_slice))
                }
                None => Workload::unresolved(
                    None,
                    if saw_every_process {
                        format!(
                            "no process or /run/netns file holds the peer's namespace (nsid {nsid})"
                        )
                    } else {
                        format!(
                            "no process this one may inspect, and no /run/netns file, holds the \
                             peer's namespace (nsid {nsid})"
                        )
                    },
                ),
            };
            (*nsid, workload)
        })
        .collect()
}

/// The other namespaces a process or a /run/netns file holds, by inode, each with a way to
/// reach it.
fn others<'a>(
    by_inode: &'a BTreeMap<u64, Vec<u32>>,
    named: &'a BTreeMap<u64, (String, std::path::PathBuf)>,
    own: Option<u64>,
) -> impl Iterator<Item = (u64, NsHolder<'a>)> {
    by_inode
        .iter()
        .filter_map(|(inode, pids)| Some((*inode, NsHolder::Pid(*pids.first()?))))
        .chain(
            named
                .iter()
                .filter(|(inode, _)| !by_inode.contains_key(inode))
                .map(|(inode, (_, path))| (*inode, NsHolder::File(path))),
        )
        .filter(move |(inode, _)| Some(*inode) != own)
}

/// The ids this namespace gives every other namespace a process or a /run/netns file holds,
/// having the kernel give one to those that have none yet (as `ip netns set NAME auto` does):
/// a container whose macvlan child was made in it directly, never moved from here, has none,
/// and its links can be listed from here only by an id. Blocking.
pub(crate) fn ids_of_other_namespaces() -> std::io::Result<Vec<i32>> {
    let (by_inode, _) = processes::net_namespaces();
    let named = namespaces::named();
    let own = processes::net_namespace_of(std::process::id()).ok();
    let mut query = NsidQuery::open()?;
    let mut ids = BTreeSet::new();
    for (_, holder) in others(&by_inode, &named, own) {
        // A process that exited, or a file not mounted over yet, is no namespace to ask about.
        let id = match query.nsid(holder) {
            Ok(Some(id)) => Some(id),
            Ok(None) => query.assign(holder).ok().flatten(),
            Err(_) => None,
        };
        ids.extend(id);
    }
    Ok(ids.into_iter().collect())
}

/// The workload of the namespace `netns`, given its processes in pid order.
fn of_processes(netns: Netns, pids: &[u32]) -> Workload {
    if pids.is_empty() {
        return Workload::unresolved(Some(netns), "no process in the namespace".to_owned());
    }
    let processes = pids
        .iter()
        .take(PROCESSES_NAMED)
        .map(|pid| processes::holder_of(*pid))
        .collect();
    let mut first_unknown = None;
    let mut attribution = None;
    for pid in pids.iter().take(CGROUPS_READ) {
        match fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            Ok(file) => match cgroup::attribute(&file) {
                Some(found) => {
                    attribution = Some(found);
                    break;
                }
                None => {
                    first_unknown.get_or_insert_with(|| {
                        format!(
                            "no container runtime in the cgroup of pid {pid}: {}",
                            cgroup::main_path(&file).unwrap_or("(none)")
                        )
                    });
                }
            },
            Err(error) => {
                first_unknown
                    .get_or_insert_with(|| format!("cannot read /proc/{pid}/cgroup: {error}"));
            }
        }
    }
    let unresolved = match &attribution {
        Some(found) if found.container_id.is_none() => {
            Some("the pod's cgroup names no container".to_owned())
        }
        Some(_) => None,
        None => first_unknown,
    };
    Workload {
        netns: Some(netns),
        processes,
        process_count: pids.len(),
        attribution: attribution.unwrap_or_default(),
        unresolved,
        names: cri::Names::default(),
        names_unresolved: None,
    }
}
