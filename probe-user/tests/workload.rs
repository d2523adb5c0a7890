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

/// Sequences `run --plain` writes itself; nothing else may drive the terminal.
const OWN_SEQUENCES: [&str; 4] = ["\x1b[1;7m", "\x1b[0m", "\x1b[H", "\x1b[2J"];

/// A scratch directory of the test's own, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A peer namespace named with an OSC sequence, BEL and a line end, holding a process whose
/// command (`comm`) has an SGR sequence and a line end, in no container's cgroup: the table's
/// workload line, `status --json` over a standing filter, each event and the final report's
/// removed interface all name it, and no raw control byte reaches the terminal.
#[test]
#[ignore = "needs root"]
fn a_hostile_workload_is_named_escaped_in_the_table_status_events_and_its_removal() {
    let probe_ns = Netns::new("wlx");
    let hostile = Netns {
        name: format!("wlx\x1b]0;X\x07\n-{}", std::process::id()),
    };
    let added = Command::new("ip")
        .args(["netns", "add", &hostile.name])
        .status()
        .expect("run ip");
    assert!(added.success(), "ip netns add {:?}", hostile.name);
    veth(&probe_ns, &hostile, "wlx0");
    hostile.ip(&["link", "set", "p-wlx0", "up"]);
    probe_ns.wait_operational("wlx0");

    // `comm` is the name the program was executed by, whatever it links to.
    let scratch = Scratch(std::env::temp_dir().join(format!("lp-wlx-{}", std::process::id())));
    fs::create_dir(&scratch.0).expect("scratch directory");
    let command = "s\x1b[31m\nz";
    let link = scratch.0.join(command);
    std::os::unix::fs::symlink("/bin/sleep", &link).expect("symlink sleep");
    let mut process = Workload {
        child: Command::new("ip")
            .args(["netns", "exec", &hostile.name])
            .arg(&link)
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep"),
        made: Vec::new(),
    };
    let pid = process.child.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_or(true, |c| c != format!("{command}\n"))
    {
        assert!(Instant::now() < deadline, "{command:?} did not start");
        thread::sleep(Duration::from_millis(5));
    }
    let shown_name = "wlx\\u{1b}]0;X\\u{7}\\u{a}-";
    let shown_line = format!("  └ workload: pid {pid} s\\u{{1b}}[31m\\u{{a}}z netns {shown_name}");

    // The table, as a terminal gets it (its logs, coloured there, aside).
    let table = probe_ns
        .command("script")
        .args([
            "-qec",
            &format!("{PROBE} run --plain --iface wlx0 --interval 0.3 --duration 2 2>/dev/null"),
            "/dev/null",
        ])
        .output()
        .expect("run script");
    assert!(table.status.success(), "{table:?}");
    let mut text = String::from_utf8(table.stdout).expect("UTF-8");
    for own in OWN_SEQUENCES {
        text = text.replace(own, "");
    }
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r'),
        "a control character reached the terminal: {}",
        text.escape_debug()
    );
    assert!(
        text.lines()
            .any(|line| line.trim_end_matches('\r').starts_with(&shown_line)),
        "no {shown_line:?} in:\n{text}"
    );

    // Events name the workload, and so does `status --json` over the standing filter left.
    let probe = ProbeProcess::start_pinned(PROBE, &probe_ns, &["--iface", "wlx0", "--events"]);
    let report = probe.wait_for(TIMEOUT, |report| {
        workload(report, "wlx0").is_some_and(|w| w["processes"][0]["pid"] == pid)
    });
    let found = workload(&report, "wlx0").unwrap().clone();
    assert_eq!(found["netns"]["name"], hostile.name.as_str(), "{found}");
    assert_eq!(found["processes"][0]["command"], command, "{found}");
    let inode = found["netns"]["inode"].clone();
    let mac = [0x02, 0x4c, 0x50, 0x00, 0x0a, 0x01];
    let frame = test_frames::ipv4(
        std::net::Ipv4Addr::new(198, 18, 10, 1),
        std::net::Ipv4Addr::LOCALHOST,
    )
    .macs(mac, [0x02, 0x4c, 0x50, 0x00, 0x0a, 0x02])
    .ports(40000, 5353)
    .build();
    let sender = hostile.enter(|| testbed::RawSender::open("p-wlx0"));
    for _ in 0..3 {
        sender.send(&frame);
    }
    let event = probe.wait_for(TIMEOUT, |line| line["type"] == "event");
    assert_eq!(
        event["workload"],
        serde_json::json!({
            "netns_inode": inode,
            "runtime": null,
            "container_id": null,
            "pod_uid": null,
            "pod": null,
            "namespace": null,
            "unresolved": true,
        }),
        "{event}"
    );
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "run --pin: {status:?}");
    let output = probe_ns.output(PROBE, &["status", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let status: Value =
        serde_json::from_slice(output.stdout.split(|b| *b == b'\n').next().expect("a line"))
            .expect("JSON");
    let standing = workload(&status, "wlx0").unwrap_or_else(|| panic!("{status}"));
    assert_eq!(standing["netns"]["name"], hostile.name.as_str(), "{status}");
    assert_eq!(standing["processes"][0]["pid"], pid, "{status}");
    assert_eq!(standing["processes"][0]["command"], command, "{status}");

    // Removed while served (the standing filter taken over): the report keeps who was behind it.
    let probe = ProbeProcess::start_pinned(PROBE, &probe_ns, &["--iface", "wlx0"]);
    probe.wait_for(TIMEOUT, |report| {
        workload(report, "wlx0").is_some_and(|w| w["processes"][0]["pid"] == pid)
    });
    probe_ns.ip(&["link", "del", "wlx0"]);
    let removal = probe.wait_for(TIMEOUT, |report| {
        report["removed"].as_array().is_some_and(|r| !r.is_empty())
    });
    let removed = &removal["removed"][0];
    assert_eq!(removed["name"], "wlx0", "{removal}");
    assert_eq!(
        removed["workload"]["netns"]["name"],
        hostile.name.as_str(),
        "{removal}"
    );
    assert_eq!(removed["workload"]["processes"][0]["pid"], pid, "{removal}");
    drop(probe);
    process.kill();
}

/// `audit` names the pod behind an exposed link: its finding carries the workload, and its
/// message the runtime, container and pod.
#[test]
#[ignore = "needs root"]
fn audit_names_the_pod_whose_link_is_exposed() {
    let probe_ns = Netns::new("wla");
    let peer = Netns::new("wla-peer");
    veth(&probe_ns, &peer, "wla0");
    probe_ns.sysctl("net/ipv4/conf/wla0/route_localnet", "1");
    let _listener = probe_ns.enter(|| {
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 6379)).expect("listen")
    });
    let root = format!("lp-test-audit-{}", std::process::id());
    let id = container_id(42);
    let uid = pod_uid(42);
    let path = format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{id}.scope",
        uid.replace('-', "_")
    );
    let workload = LastFirst(vec![Workload::start(&peer, V2, &root, &path)]);
    workload.0[0].wait_exec();
    let output = probe_ns.output(PROBE, &["audit", "--json"]);
    let audit: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    let exposure = audit["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["interface"] == "wla0" && f["severity"] == "exposure")
        .unwrap_or_else(|| panic!("no exposure of wla0: {audit}"));
    assert_eq!(
        exposure["workload"]["container_id"],
        id.as_str(),
        "{exposure}"
    );
    assert_eq!(exposure["workload"]["pod_uid"], uid.as_str(), "{exposure}");
    assert_eq!(exposure["workload"]["runtime"], "containerd", "{exposure}");
    assert_eq!(exposure["workload"]["qos"], "besteffort", "{exposure}");
    let message = exposure["message"].as_str().unwrap();
    assert!(
        message.ends_with(&format!(
            " (workload: containerd {} pod {uid} (besteffort) netns {})",
            &id[..12],
            peer.name
        )),
        "{message}"
    );
    drop(workload);
    let _ = fs::remove_dir(format!("{V2}/{root}"));
}

/// The MAC of the sender the neighbour table knows, and of the one it does not.
const KNOWN_MAC: [u8; 6] = [0x02, 0x4c, 0x50, 0x00, 0x05, 0x02];
const UNKNOWN_MAC: [u8; 6] = [0x02, 0x4c, 0x50, 0x00, 0x05, 0x03];

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

/// `count` frames to 127.0.0.1 claiming `source`, broadcast from `mac` out of `interface` in
/// `netns`.
fn send_to_localhost(netns: &Netns, interface: &str, mac: [u8; 6], source: &str, count: usize) {
    let frame = test_frames::ipv4(source.parse().unwrap(), std::net::Ipv4Addr::LOCALHOST)
        .macs(mac, [0xff; 6])
        .ports(40000, 6379)
        .build();
    netns.enter(|| {
        let sender = testbed::RawSender::open(interface);
        for _ in 0..count {
            sender.send(&frame);
        }
    });
}

fn senders<'a>(report: &'a Value, name: &str) -> Vec<&'a Value> {
    interface(report, name)
        .and_then(|i| i["top_senders_sampled"].as_array())
        .map(|senders| senders.iter().collect())
        .unwrap_or_default()
}

fn sender<'a>(report: &'a Value, name: &str, mac: [u8; 6]) -> Option<&'a Value> {
    senders(report, name)
        .into_iter()
        .find(|sender| sender["source_mac"] == mac_text(mac))
}

/// Senders named by the host's tables rather than by what their frames claim: behind a bridge,
/// the neighbour table's address for the sender's MAC (the frames claim 127.0.0.1 or another
/// address), the port the bridge learned it behind and the workload on that port's other end,
/// on the port and on the bridge; a MAC the neighbour table does not hold has the port alone,
/// and one the tables say nothing of (off the bridge) no origin at all.
#[test]
#[ignore = "needs root"]
fn a_sender_is_named_by_the_neighbour_table_and_the_bridge_port_it_was_learned_behind() {
    let probe_ns = Netns::new("nb");
    let known = Netns::new("nb-known");
    let unknown = Netns::new("nb-unknown");
    veth(&probe_ns, &known, "nbk");
    veth(&probe_ns, &unknown, "nbu");
    veth(&probe_ns, &unknown, "nbx");
    probe_ns.ip(&["link", "add", "nbbr", "type", "bridge"]);
    for port in ["nbk", "nbu"] {
        probe_ns.ip(&["link", "set", port, "master", "nbbr"]);
    }
    probe_ns.ip(&["link", "set", "nbbr", "up"]);
    probe_ns.ip(&["addr", "add", "198.18.5.1/24", "dev", "nbbr"]);
    probe_ns.ip(&[
        "neigh",
        "add",
        "198.18.5.2",
        "lladdr",
        &mac_text(KNOWN_MAC),
        "dev",
        "nbbr",
    ]);
    for (netns, interface, mac) in [
        (&known, "p-nbk", KNOWN_MAC),
        (&unknown, "p-nbu", UNKNOWN_MAC),
        (&unknown, "p-nbx", UNKNOWN_MAC),
    ] {
        netns.ip(&["link", "set", interface, "address", &mac_text(mac), "up"]);
    }
    for interface in ["nbk", "nbu", "nbx", "nbbr"] {
        probe_ns.wait_operational(interface);
    }
    let root = format!("lp-test-neighbour-{}", std::process::id());
    let id = container_id(77);
    let workload = LastFirst(vec![Workload::start(
        &known,
        V2,
        &root,
        &format!("system.slice/cri-containerd-{id}.scope"),
    )]);
    workload.0[0].wait_exec();

    let probe = ProbeProcess::start(
        PROBE,
        &probe_ns,
        &[
            "--iface", "nbk", "--iface", "nbu", "--iface", "nbx", "--iface", "nbbr", "--top", "5",
        ],
    );
    probe.wait_ready();
    send_to_localhost(&known, "p-nbk", KNOWN_MAC, "127.0.0.1", 3);
    send_to_localhost(&unknown, "p-nbu", UNKNOWN_MAC, "198.18.5.3", 2);
    send_to_localhost(&unknown, "p-nbx", UNKNOWN_MAC, "198.18.5.3", 2);

    let named = |sender: Option<&Value>| {
        sender.is_some_and(|sender| {
            sender["origin"]["workload"]["container_id"] == id.as_str()
                && sender["origin"]["bridge_port"] == "nbk"
        })
    };
    let report = probe.wait_for(TIMEOUT, |report| {
        named(sender(report, "nbk", KNOWN_MAC))
            && named(sender(report, "nbbr", KNOWN_MAC))
            && sender(report, "nbbr", UNKNOWN_MAC).is_some_and(|s| !s["origin"].is_null())
            && sender(report, "nbx", UNKNOWN_MAC).is_some()
    });
    for on in ["nbk", "nbbr"] {
        let known = sender(&report, on, KNOWN_MAC).unwrap();
        assert_eq!(known["source_ip"], "127.0.0.1", "{known}");
        assert_eq!(known["samples"], 3, "{known}");
        assert_eq!(
            known["origin"]["neighbour_ips"],
            serde_json::json!(["198.18.5.2"]),
            "{known}"
        );
        assert_eq!(
            known["origin"]["bridge_port_ifindex"],
            interface(&report, "nbk").unwrap()["ifindex"],
            "{known}"
        );
        assert_eq!(
            known["origin"]["workload"]["runtime"], "containerd",
            "{known}"
        );
    }
    let unlisted = sender(&report, "nbbr", UNKNOWN_MAC).unwrap();
    assert_eq!(
        unlisted["origin"]["neighbour_ips"],
        serde_json::json!([]),
        "{unlisted}"
    );
    assert_eq!(unlisted["origin"]["bridge_port"], "nbu", "{unlisted}");
    assert_eq!(
        unlisted["origin"]["workload"]["netns_inode"],
        workload_of(&report, "nbu")["netns"]["inode"],
        "{unlisted}"
    );
    let off_the_bridge = sender(&report, "nbx", UNKNOWN_MAC).unwrap();
    assert!(off_the_bridge.get("origin").is_none(), "{off_the_bridge}");
    drop(probe);
    drop(workload);
    let _ = fs::remove_dir(format!("{V2}/{root}/system.slice"));
    let _ = fs::remove_dir(format!("{V2}/{root}"));
}

fn workload_of<'a>(report: &'a Value, name: &str) -> &'a Value {
    workload(report, name).unwrap_or_else(|| panic!("no workload behind {name}: {report}"))
}

/// A macvlan child of `parent` (in `probe`'s namespace) moved into `into`'s, as the macvlan
/// CNI plugin makes one: beside its parent, then moved.
fn macvlan(probe: &Netns, parent: &str, name: &str, into: &Netns) {
    probe.ip(&[
        "link", "add", "link", parent, "name", name, "type", "macvlan", "mode", "bridge",
    ]);
    probe.ip(&["link", "set", name, "netns", &into.name]);
}

/// The children reported under `parent`, by name.
fn children<'a>(report: &'a Value, parent: &str) -> Vec<(&'a str, &'a Value)> {
    interface(report, parent)
        .and_then(|i| i["children"].as_array())
        .map(|children| {
            children
                .iter()
                .filter_map(|child| Some((child["name"].as_str()?, child)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "needs root"]
fn macvlan_children_in_containers_are_attributed_to_their_parent_also_when_made_later() {
    let probe_ns = Netns::new("wlm");
    // The parent: a device of the probe's namespace, its own peer here too (no workload).
    probe_ns.ip(&[
        "link", "add", "wlm0", "type", "veth", "peer", "name", "wlm0p",
    ]);
    probe_ns.ip(&["link", "set", "wlm0", "up"]);
    probe_ns.ip(&["link", "set", "wlm0p", "up"]);
    let root = format!("lp-test-macvlan-{}", std::process::id());
    let pod = |seed: u64| {
        let (id, uid) = (container_id(seed), pod_uid(seed));
        let path = format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/\
             cri-containerd-{id}.scope",
            uid.replace('-', "_")
        );
        (id, uid, path)
    };
    let first_ns = Netns::new("wlm-c1");
    macvlan(&probe_ns, "wlm0", "mvc1", &first_ns);
    let (first_id, first_uid, first_path) = pod(71);
    let mut workloads = LastFirst(vec![Workload::start(&first_ns, V2, &root, &first_path)]);
    workloads.0[0].wait_exec();

    let probe = ProbeProcess::start(PROBE, &probe_ns, &["--iface", "wlm0", "--events"]);
    let report = probe.wait_for(TIMEOUT, |report| {
        children(report, "wlm0").iter().any(|(name, child)| {
            *name == "mvc1" && child["workload"]["container_id"] == first_id.as_str()
        })
    });
    let found = children(&report, "wlm0");
    assert_eq!(found.len(), 1, "{report}");
    let child = found[0].1;
    assert_eq!(child["kind"], "macvlan", "{child}");
    assert_eq!(child["workload"]["pod_uid"], first_uid.as_str(), "{child}");
    assert_eq!(child["workload"]["runtime"], "containerd", "{child}");
    assert_eq!(
        child["workload"]["netns"]["name"],
        first_ns.name.as_str(),
        "{child}"
    );
    assert!(
        workload(&report, "wlm0").is_none(),
        "the parent itself leads nowhere: {report}"
    );

    // A second container given a child after the probe started: its process first, then the
    // child made and moved, as a runtime does.
    let second_ns = Netns::new("wlm-c2");
    let (second_id, _, second_path) = pod(72);
    workloads
        .0
        .push(Workload::start(&second_ns, V2, &root, &second_path));
    workloads.0[1].wait_exec();
    let made = Instant::now();
    macvlan(&probe_ns, "wlm0", "mvc2", &second_ns);
    let report = probe.wait_for(TIMEOUT, |report| {
        children(report, "wlm0").iter().any(|(name, child)| {
            *name == "mvc2" && child["workload"]["container_id"] == second_id.as_str()
        })
    });
    let took = made.elapsed();
    assert!(took < Duration::from_secs(5), "found after {took:?}");
    assert_eq!(children(&report, "wlm0").len(), 2, "{report}");

    // A third made straight into its namespace, as the macvlan CNI plugin makes one: this
    // namespace gives that one no id of its own accord, the probe has it give one.
    let third_ns = Netns::new("wlm-c3");
    let (third_id, _, third_path) = pod(73);
    workloads
        .0
        .push(Workload::start(&third_ns, V2, &root, &third_path));
    workloads.0[2].wait_exec();
    let made = Instant::now();
    probe_ns.ip(&[
        "link",
        "add",
        "link",
        "wlm0",
        "name",
        "mvc3",
        "netns",
        &third_ns.name,
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    let report = probe.wait_for(TIMEOUT, |report| {
        children(report, "wlm0").iter().any(|(name, child)| {
            *name == "mvc3" && child["workload"]["container_id"] == third_id.as_str()
        })
    });
    let took = made.elapsed();
    assert!(took < Duration::from_secs(5), "found after {took:?}");
    assert_eq!(children(&report, "wlm0").len(), 3, "{report}");

    // A frame to 127.0.0.1 arriving at the parent, addressed to the second child's MAC: its
    // event names that child and who is behind it.
    let mac_of = |name: &str| -> [u8; 6] {
        let (_, child) = children(&report, "wlm0")
            .into_iter()
            .find(|(child, _)| *child == name)
            .unwrap_or_else(|| panic!("no {name}: {report}"));
        let text = child["mac"]
            .as_str()
            .unwrap_or_else(|| panic!("no MAC: {child}"));
        let bytes: Vec<u8> = text
            .split(':')
            .map(|byte| u8::from_str_radix(byte, 16).expect("hex"))
            .collect();
        bytes
            .try_into()
            .unwrap_or_else(|_| panic!("not a MAC: {text}"))
    };
    let second_mac = mac_of("mvc2");
    let frame = test_frames::ipv4("198.18.0.9".parse().unwrap(), std::net::Ipv4Addr::LOCALHOST)
        .macs([0x02, 0x4c, 0x50, 0x00, 0x07, 0x01], second_mac)
        .ports(40000, 6379)
        .build();
    probe_ns.enter(|| testbed::RawSender::open("wlm0p").send(&frame));
    let event = probe.wait_for(TIMEOUT, |line| {
        line["type"] == "event" && line["destination_mac"] == mac_text(second_mac)
    });
    assert_eq!(event["to_child"]["name"], "mvc2", "{event}");
    assert_eq!(event["to_child"]["kind"], "macvlan", "{event}");
    assert_eq!(
        event["to_child"]["workload"]["container_id"],
        second_id.as_str(),
        "{event}"
    );

    // The child's MAC changed inside its namespace, which tells this one nothing: frames to the
    // new MAC make the probe look again, and their events name the child within seconds.
    let new_mac = [0x02, 0x4c, 0x50, 0x00, 0x07, 0x02];
    // Past the searches the third child's link event asked for (the last 2 s after it).
    std::thread::sleep(Duration::from_secs(3));
    second_ns.ip(&["link", "set", "mvc2", "address", &mac_text(new_mac)]);
    let frame = test_frames::ipv4("198.18.0.9".parse().unwrap(), std::net::Ipv4Addr::LOCALHOST)
        .macs([0x02, 0x4c, 0x50, 0x00, 0x07, 0x01], new_mac)
        .ports(40000, 6379)
        .build();
    let changed = Instant::now();
    let named = loop {
        assert!(
            changed.elapsed() < Duration::from_secs(15),
            "no event named mvc2 by its new MAC within 15 s"
        );
        probe_ns.enter(|| testbed::RawSender::open("wlm0p").send(&frame));
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut found = None;
        while let Ok(line) = probe.next_report(deadline.saturating_duration_since(Instant::now())) {
            if line["type"] == "event"
                && line["destination_mac"] == mac_text(new_mac)
                && line["to_child"]["name"] == "mvc2"
            {
                found = Some(line);
                break;
            }
        }
        if let Some(line) = found {
            break line;
        }
    };
    assert_eq!(
        named["to_child"]["workload"]["container_id"],
        second_id.as_str(),
        "{named}"
    );
    let took = changed.elapsed();
    assert!(took < Duration::from_secs(8), "named after {took:?}");
    drop(probe);
    // The audit finds them the same way.
    let output = probe_ns.output(PROBE, &["audit", "--json"]);
    let audit: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    let parent = audit["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|i| i["name"] == "wlm0")
        .unwrap_or_else(|| panic!("no wlm0: {audit}"));
    let mut found: Vec<(&str, &str)> = parent["children"]
        .as_array()
        .unwrap_or_else(|| panic!("no children: {parent}"))
        .iter()
        .map(|child| {
            (
                child["name"].as_str().expect("a name"),
                child["workload"]["container_id"].as_str().expect("an id"),
            )
        })
        .collect();
    found.sort_unstable();
    assert_eq!(
        found,
        [
            ("mvc1", first_id.as_str()),
            ("mvc2", second_id.as_str()),
            ("mvc3", third_id.as_str())
        ],
        "{parent}"
    );
    drop(workloads);
    let _ = fs::remove_dir(format!("{V2}/{root}"));
}
