//! Which container and pod a process belongs to, read from its `/proc/<pid>/cgroup` the way
//! cAdvisor, Falco and Tetragon read it: the runtimes name their cgroups after the container
//! (`docker-<id>.scope`, `/docker/<id>`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
//! `libpod-<id>.scope`) and the kubelet after the pod (`kubepods-<qos>-pod<uid>.slice` with the
//! systemd driver, `/kubepods/<qos>/pod<uid>/<id>` with cgroupfs). Pure: no file is read here.

use serde::Serialize;

/// The container runtime a cgroup path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Containerd,
    Crio,
    Podman,
}

impl Runtime {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::Crio => "crio",
            Self::Podman => "podman",
        }
    }
}

/// A pod's Kubernetes QoS class, from the kubelet's cgroup parents (guaranteed pods have none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Guaranteed => "guaranteed",
            Self::Burstable => "burstable",
            Self::BestEffort => "besteffort",
        }
    }

    fn of(word: &str) -> Option<Self> {
        match word {
            "burstable" => Some(Self::Burstable),
            "besteffort" => Some(Self::BestEffort),
            _ => None,
        }
    }
}

/// What a cgroup path says of the container and pod a process runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Attribution {
    /// `None` where the path names a container without its runtime (the kubelet's cgroupfs
    /// layout, `/kubepods/<qos>/pod<uid>/<id>`).
    pub runtime: Option<Runtime>,
    pub container_id: Option<String>,
    /// With dashes, as the API server has it (the systemd driver writes `_` for `-`).
    pub pod_uid: Option<String>,
    pub qos: Option<Qos>,
}

impl Attribution {
    fn is_empty(&self) -> bool {
        self.container_id.is_none() && self.pod_uid.is_none()
    }
}

/// The attribution of the cgroup lines of one process (`/proc/<pid>/cgroup`: `0::/path` for
/// v2, `N:controllers:/path` for each v1 hierarchy, both on a hybrid host). The v2 line is read
/// first, then the v1 lines in order; the first that names a container or pod wins. `None`
/// when no line does.
pub fn attribute(cgroup_file: &str) -> Option<Attribution> {
    let paths = cgroup_file
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let hierarchy = fields.next()?;
            let _controllers = fields.next()?;
            Some((hierarchy == "0", fields.next()?))
        })
        .collect::<Vec<_>>();
    let v2 = paths.iter().filter(|(v2, _)| *v2);
    let v1 = paths.iter().filter(|(v2, _)| !*v2);
    v2.chain(v1).find_map(|(_, path)| attribute_path(path))
}

/// The path of the cgroup line [`attribute`] would read, for saying what was not recognised:
/// the v2 line's, else the first v1 line's.
pub fn main_path(cgroup_file: &str) -> Option<&str> {
    let lines = || cgroup_file.lines();
    lines()
        .find(|line| line.starts_with("0::"))
        .or_else(|| lines().next())?
        .splitn(3, ':')
        .nth(2)
}

/// What one cgroup path says: the last container component, and the pod around it.
pub fn attribute_path(path: &str) -> Option<Attribution> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut attribution = Attribution::default();
    let mut cgroupfs_pod_at = None;
    for (at, component) in components.iter().enumerate() {
        if let Some((uid, qos)) = systemd_pod(component) {
            attribution.pod_uid = Some(uid);
            attribution.qos = Some(qos);
        } else if let Some(uid) = component.strip_prefix("pod").filter(|_| {
            at > 0 && (components[at - 1] == "kubepods" || Qos::of(components[at - 1]).is_some())
        }) {
            if let Some(uid) = pod_uid(uid) {
                attribution.qos = Some(if components[at - 1] == "kubepods" {
                    Qos::Guaranteed
                } else {
                    Qos::of(components[at - 1]).expect("checked above")
                });
                attribution.pod_uid = Some(uid);
                cgroupfs_pod_at = Some(at);
            }
        } else if let Some((runtime, id)) = container(component) {
            attribution.runtime = Some(runtime);
            attribution.container_id = Some(id.to_owned());
        } else if at > 0 && components[at - 1] == "docker" && is_container_id(component) {
            attribution.runtime = Some(Runtime::Docker);
            attribution.container_id = Some((*component).to_owned());
        } else if cgroupfs_pod_at.is_some_and(|pod| pod + 1 == at) && is_container_id(component) {
            attribution.runtime = None;
            attribution.container_id = Some((*component).to_owned());
        }
    }
    (!attribution.is_empty()).then_some(attribution)
}

/// `kubepods-pod<uid>.slice` (guaranteed) or `kubepods-<qos>-pod<uid>.slice`, the uid with `_`
/// for `-`.
fn systemd_pod(component: &str) -> Option<(String, Qos)> {
    let slice = component
        .strip_prefix("kubepods-")?
        .strip_suffix(".slice")?;
    let (qos, uid) = match slice.strip_prefix("pod") {
        Some(uid) => (Qos::Guaranteed, uid),
        None => {
            let (qos, pod) = slice.split_once('-')?;
            (Qos::of(qos)?, pod.strip_prefix("pod")?)
        }
    };
    Some((pod_uid(&uid.replace('_', "-"))?, qos))
}

/// A pod UID as the kubelet names its cgroup: a UUID, or a static pod's 32 hex digits.
fn pod_uid(uid: &str) -> Option<String> {
    let hex_or_dash = uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let digits = uid.bytes().filter(u8::is_ascii_hexdigit).count();
    (hex_or_dash && digits == 32 && uid.len() <= 36).then(|| uid.to_ascii_lowercase())
}

/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`
/// (conmon's `crio-conmon-` and `libpod-conmon-` scopes are the monitor, not the container, and
/// their ids fail the check). Podman's cgroupfs layout has no `.scope`: `libpod-<id>`.
fn container(component: &str) -> Option<(Runtime, &str)> {
    const PREFIXES: [(&str, Runtime); 4] = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::Crio),
        ("libpod-", Runtime::Podman),
    ];
    let (runtime, rest) = PREFIXES
        .iter()
        .find_map(|(prefix, runtime)| Some((*runtime, component.strip_prefix(prefix)?)))?;
    let id = rest.strip_suffix(".scope").unwrap_or(rest);
    is_container_id(id).then_some((runtime, id))
}

/// 64 lowercase hex digits, the ids Docker, containerd, CRI-O and Podman give containers.
fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests;
