//! Interfaces attributed to the workloads behind them: veth pairs whose other end is in a
//! namespace of its own, with a process the test starts there and places into cgroups laid out
//! as Docker, containerd, CRI-O, Podman and the kubelet (systemd and cgroupfs drivers) lay them
//! out, in the unified (v2) hierarchy and a v1 one of this hybrid host, each under a directory
//! of the test's own. The report names each exactly; a "container" started after the probe is
//! attributed within a second of its process joining; one whose process is gone says so. Needs
//! root.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use testbed::{Netns, ProbeProcess};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const TIMEOUT: Duration = Duration::from_secs(20);
const V2: &str = "/sys/fs/cgroup/unified";
const V1: &str = "/sys/fs/cgroup/memory";

/// 64 hex digits of the test's own.
fn container_id(seed: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!(
        "{:016x}{:016x}{:016x}{:016x}",
        nanos,
        seed,
        u64::from(std::process::id()),
        nanos ^ seed
    )
}

fn pod_uid(seed: u64) -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        seed & 0xffff_ffff_ffff
    )
}

/// A process of the test's in a namespace, in a cgroup of the test's; killed by its pid and
/// the cgroups removed on drop.
struct Workload {
    child: Child,
    /// The directories made, outermost first.
    made: Vec<PathBuf>,
}

impl Workload {
    /// `sleep` in `netns`, moved into `<hierarchy>/<root>/<path>`.
    fn start(netns: &Netns, hierarchy: &str, root: &str, path: &str) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name, "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep");
        let mut workload = Self {
            child,
            made: Vec::new(),
        };
        workload.move_into(hierarchy, root, path);
        workload
    }

    /// `ip netns exec` execs the command: wait until the pid is `sleep`, in the namespace.
    fn wait_exec(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::read_to_string(format!("/proc/{}/comm", self.child.id()))
            .is_ok_and(|comm| comm.trim() != "sleep")
        {
            assert!(Instant::now() < deadline, "sleep did not start");
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn move_into(&mut self, hierarchy: &str, root: &str, path: &str) {
        let mut dir = PathBuf::from(hierarchy);
        for component in std::iter::once(root).chain(path.split('/').filter(|c| !c.is_empty())) {
            dir.push(component);
            if !dir.exists() {
                fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                self.made.push(dir.clone());
            }
        }
        fs::write(dir.join("cgroup.procs"), self.child.id().to_string())
            .unwrap_or_else(|e| panic!("move into {}: {e}", dir.display()));
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.kill();
        for dir in self.made.iter().rev() {
            // A cgroup is removable a moment after its last process is reaped.
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Workloads dropped the last made first, also when a test fails: the cgroups they share were
/// made by the earlier ones.
struct LastFirst(Vec<Workload>);

impl Drop for LastFirst {
    fn drop(&mut self) {
        while let Some(workload) = self.0.pop() {
            drop(workload);
        }
    }
}

/// A veth pair: `name` in `probe`'s namespace, its peer in `peer`'s.
fn veth(probe: &Netns, peer: &Netns, name: &str) {
    peer.ip(&[
        "link",
        "add",
        &format!("p-{name}"),
        "type",
        "veth",
        "peer",
        "name",
        name,
        "netns",
        &probe.name,
    ]);
    probe.ip(&["link", "set", name, "up"]);
}

fn interface<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == name)
}

fn workload<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    interface(report, name)
        .map(|i| &i["workload"])
        .filter(|w| !w.is_null())
}

/// What each case expects: runtime, container id, pod uid, QoS.
struct Case {
    interface: String,
    hierarchy: &'static str,
    path: String,
    runtime: Option<&'static str>,
    container_id: String,
    pod_uid: Option<String>,
    qos: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    let case = |n: u64,
                hierarchy,
                path: &dyn Fn(&str, &str, &str) -> String,
                runtime,
                pod: Option<&'static str>| {
        let id = container_id(n);
        let uid = pod_uid(n);
        Case {
            interface: format!("wl{n}"),
            hierarchy,
            path: path(&id, &uid, &uid.replace('-', "_")),
            runtime,
            container_id: id,
            pod_uid: pod.map(|_| uid),
            qos: pod,
        }
    };
    vec![
        case(
            0,
            V2,
            &|id, _, _| format!("system.slice/docker-{id}.scope"),
            Some("docker"),
            None,
        ),
        case(
            1,
            V1,
            &|id, _, _| format!("docker/{id}"),
            Some("docker"),
            None,
        ),
        case(
            2,
            V2,
            &|id, _, _| format!("machine.slice/libpod-{id}.scope/container"),
            Some("podman"),
            None,
        ),
        case(
            3,
            V2,
            &|id, _, s| {
                format!(
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{s}.slice/cri-containerd-{id}.scope"
                )
            },
            Some("containerd"),
            Some("burstable"),
        ),
        case(
            4,
            V2,
            &|id, _, s| {
                format!(
                    "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{s}.slice/crio-{id}.scope"
                )
            },
            Some("crio"),
            Some("besteffort"),
        ),
        case(
            5,
            V2,
            &|id, _, s| format!("kubepods.slice/kubepods-pod{s}.slice/crio-{id}.scope"),
            Some("crio"),
            Some("guaranteed"),
        ),
        case(
            6,
            V1,
            &|id, uid, _| format!("kubepods/burstable/pod{uid}/{id}"),
            None,
            Some("burstable"),
        ),
        case(
            7,
            V2,
            &|id, uid, _| format!("kubepods/pod{uid}/{id}"),
            None,
            Some("guaranteed"),
        ),
    ]
}

fn attributed_as(workload: &Value, case: &Case) -> bool {
    workload["container_id"] == case.container_id.as_str()
        && workload["runtime"] == serde_json::json!(case.runtime)
        && workload["pod_uid"] == serde_json::json!(case.pod_uid)
        && workload["qos"] == serde_json::json!(case.qos)
        && workload["unresolved"].is_null()
}

#[test]
#[ignore = "needs root"]
fn each_runtime_and_kubelet_layout_is_attributed_exactly() {
    let probe_ns = Netns::new("wl");
    let root = format!("lp-test-{}", std::process::id());
    let cases = cases();
    let mut peers = Vec::new();
    let mut workloads = LastFirst(Vec::new());
    for case in &cases {
        let peer = Netns::new(&format!("wl-{}", case.interface));
        veth(&probe_ns, &peer, &case.interface);
        let workload = Workload::start(&peer, case.hierarchy, &root, &case.path);
        workload.wait_exec();
        peers.push(peer);
        workloads.0.push(workload);
    }
    let probe = ProbeProcess::start(PROBE, &probe_ns, &["--iface", "wl*"]);
    let report = probe.wait_for(TIMEOUT, |report| {
        cases
            .iter()
            .all(|case| workload(report, &case.interface).is_some_and(|w| attributed_as(w, case)))
    });
    for (case, (peer, process)) in cases.iter().zip(peers.iter().zip(&workloads.0)) {
        let found = workload(&report, &case.interface).unwrap();
        assert_eq!(found["netns"]["name"], peer.name.as_str(), "{found}");
        assert!(found["netns"]["inode"].as_u64().is_some(), "{found}");
        assert_eq!(found["processes"][0]["pid"], process.child.id(), "{found}");
        assert_eq!(found["processes"][0]["command"], "sleep", "{found}");
        assert_eq!(found["process_count"], 1, "{found}");
    }
    drop(probe);
    drop(workloads);
    for hierarchy in [V2, V1] {
        let _ = fs::remove_dir(format!("{hierarchy}/{root}"));
    }
}

#[test]
#[ignore = "needs root"]
fn a_container_started_after_the_probe_is_attributed_within_a_second_and_its_end_is_said() {
    let probe_ns = Netns::new("wlh");
    let root = format!("lp-test-late-{}", std::process::id());
    let probe = ProbeProcess::start(PROBE, &probe_ns, &["--iface", "wlh*"]);
    probe.wait_for(TIMEOUT, |report| report["interfaces"].is_array());
    // As a runtime does it: the namespace, then the veth, then the process, with pauses.
    let peer = Netns::new("wlh-peer");
    thread::sleep(Duration::from_millis(300));
    veth(&probe_ns, &peer, "wlh0");
    let unresolved = probe.wait_for(TIMEOUT, |report| {
        workload(report, "wlh0").is_some_and(|w| !w["unresolved"].is_null())
    });
    let said = workload(&unresolved, "wlh0").unwrap();
    assert!(said["container_id"].is_null(), "{said}");
    thread::sleep(Duration::from_millis(700));
    let id = container_id(99);
    let mut process = Workload::start(&peer, V2, &root, &format!("system.slice/docker-{id}.scope"));
    process.wait_exec();
    let joined = Instant::now();
    let attributed = probe.wait_for(TIMEOUT, |report| {
        workload(report, "wlh0").is_some_and(|w| w["container_id"] == id.as_str())
    });
    let took = joined.elapsed();
    assert!(
        took < Duration::from_secs(1) + Duration::from_millis(200),
        "attributed {took:?} after its process joined"
    );
    let found = workload(&attributed, "wlh0").unwrap();
    assert_eq!(found["runtime"], "docker", "{found}");
    assert!(found["unresolved"].is_null(), "{found}");

    // The process gone: the namespace stays (named), the interface is still served and says so.
    process.kill();
    let gone = probe.wait_for(TIMEOUT, |report| {
        workload(report, "wlh0").is_some_and(|w| w["process_count"] == 0)
    });
    let said = workload(&gone, "wlh0").unwrap();
    let why = said["unresolved"]
        .as_str()
        .unwrap_or_else(|| panic!("{said}"));
    assert!(why.contains("no process left"), "{said}");
    assert_eq!(
        said["container_id"],
        id.as_str(),
        "the last known ids kept: {said}"
    );
    assert!(
        !interface(&gone, "wlh0").unwrap()["hook"].is_null(),
        "still served"
    );
    drop(probe);
    drop(process);
    let _ = fs::remove_dir(format!("{V2}/{root}"));
}
