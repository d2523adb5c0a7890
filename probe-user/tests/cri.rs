//! Pod names from a real container runtime: containerd (Debian's) started by the test in a
//! network namespace of its own, with its root, state, socket and CNI configuration in a
//! directory of the test's own, runs a pod sandbox the way the kubelet asks for one (over CRI,
//! its cgroup under `/kubepods/besteffort/pod<uid>`), the bridge CNI plugin giving it a veth
//! into that namespace. The probe, serving the veth, names the pod and its namespace as the
//! runtime lists them. Needs root.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use probe_user::net::workload::cri::Connection;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use testbed::{KillOnDrop, Netns, ProbeProcess, skipped, succeeded};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const TIMEOUT: Duration = Duration::from_secs(20);
const IMAGE: &str = "localhost/localnet-probe-pause:test";
const CNI_PLUGINS: &str = "/usr/lib/cni";
/// Debian's Python, which has python3-scapy (cargo xtask test installs it).
const PYTHON: &str = "/usr/bin/python3";

// The requests of k8s.io/cri-api's api.proto (runtime.v1) the test makes as the kubelet would;
// the probe itself only lists.

#[derive(Clone, PartialEq, prost::Message)]
struct RunPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    config: Option<PodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PodSandboxConfig {
    #[prost(message, optional, tag = "1")]
    metadata: Option<PodSandboxMetadata>,
    #[prost(string, tag = "2")]
    hostname: String,
    #[prost(string, tag = "3")]
    log_directory: String,
    #[prost(message, optional, tag = "8")]
    linux: Option<LinuxPodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    uid: String,
    #[prost(string, tag = "3")]
    namespace: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LinuxPodSandboxConfig {
    #[prost(string, tag = "1")]
    cgroup_parent: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RunPodSandboxResponse {
    #[prost(string, tag = "1")]
    pod_sandbox_id: String,
}

/// `StopPodSandboxRequest` and `RemovePodSandboxRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct PodSandboxIdRequest {
    #[prost(string, tag = "1")]
    pod_sandbox_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

/// What the test needs of the host, or why it cannot run here.
fn missing_prerequisite() -> Option<String> {
    for command in ["containerd", "ctr", "runc", "tar"] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|dir| dir.join(command).is_file());
        if !found {
            return Some(format!("no {command} (cargo xtask test installs it)"));
        }
    }
    for plugin in ["bridge", "host-local", "loopback"] {
        if !Path::new(CNI_PLUGINS).join(plugin).is_file() {
            return Some(format!(
                "no CNI plugin {CNI_PLUGINS}/{plugin} (containernetworking-plugins)"
            ));
        }
    }
    if !statically_linked(Path::new("/bin/busybox")) {
        return Some("no statically linked /bin/busybox (busybox-static)".to_owned());
    }
    None
}

/// Whether the ELF file at `path` asks for no program interpreter (no PT_INTERP header).
fn statically_linked(path: &Path) -> bool {
    let Ok(elf) = fs::read(path) else {
        return false;
    };
    let field = |at: usize, len: usize| -> Option<u64> {
        let bytes = elf.get(at..at + len)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0, |value, byte| (value << 8) | u64::from(*byte)),
        )
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (field(0x20, 8), field(0x36, 2), field(0x38, 2))
    else {
        return false;
    };
    elf.starts_with(b"\x7fELF\x02\x01")
        && (0..phnum)
            .all(|n| field((phoff + n * phentsize) as usize, 4).is_some_and(|p_type| p_type != 3))
}

/// An image of one layer, a static busybox that sleeps, in Docker's archive format, which `ctr
/// images import` reads; made here rather than pulled.
fn pause_image(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    let archive = dir.join("archive");
    fs::create_dir_all(&archive).expect("archive directory");
    succeeded(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(archive.join("layer.tar"))
            .arg("."),
    );
    let layer = fs::read(archive.join("layer.tar")).expect("layer");
    let diff_id = format!("sha256:{:x}", Sha256::digest(&layer));
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "config": {"Entrypoint": ["/bin/busybox", "sleep", "2147483647"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    fs::write(archive.join("config.json"), config.to_string()).expect("config");
    let manifest = serde_json::json!([
        {"Config": "config.json", "RepoTags": [IMAGE], "Layers": ["layer.tar"]}
    ]);
    fs::write(archive.join("manifest.json"), manifest.to_string()).expect("manifest");
    let image = dir.join("image.tar");
    succeeded(
        Command::new("tar")
            .arg("-C")
            .arg(&archive)
            .arg("-cf")
            .arg(&image)
            .args(["manifest.json", "config.json", "layer.tar"]),
    );
    image
}

/// containerd, its pod, and everything they made, removed on drop.
struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    daemon: Option<KillOnDrop>,
    runtime: tokio::runtime::Runtime,
    pod: Option<String>,
    cgroup_parent: String,
}

impl Containerd {
    fn start(netns: &Netns, dir: &Path, bridge: &str) -> Self {
        let socket = dir.join("containerd.sock");
        let cni = dir.join("cni");
        fs::create_dir_all(&cni).expect("CNI directory");
        // Addresses from the range the tests keep to; the bridge in the test's namespace.
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": bridge,
            "plugins": [{
                "type": "bridge",
                "bridge": bridge,
                "isGateway": false,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "198.19.251.0/24"}]],
                    "dataDir": dir.join("ipam"),
                },
            }],
        });
        fs::write(cni.join("10-test.conflist"), conflist.to_string()).expect("conflist");
        let path = |name: &str| dir.join(name).display().to_string();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = "{socket}.debug"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{cni}"
"#,
            root = path("root"),
            state = path("state"),
            socket = socket.display(),
            opt = path("opt"),
            cni = cni.display(),
        );
        fs::write(dir.join("config.toml"), config).expect("containerd config");
        let log = fs::File::create(dir.join("containerd.log")).expect("log");
        let daemon = netns
            .command("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let containerd = Self {
            dir: dir.to_owned(),
            socket,
            daemon: Some(KillOnDrop(daemon)),
            runtime,
            pod: None,
            cgroup_parent: String::new(),
        };
        let started = Instant::now();
        while containerd.call::<Empty>("Version", &Empty {}).is_err() {
            assert!(
                started.elapsed() < TIMEOUT,
                "containerd did not answer: {}",
                containerd.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        containerd
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn call<Answer: prost::Message + Default>(
        &self,
        method: &str,
        request: &impl prost::Message,
    ) -> Result<Answer, String> {
        self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                Connection::open(&self.socket)
                    .await?
                    .call(method, request)
                    .await
            })
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?
            .map_err(|error| error.to_string())
        })
    }

    fn import(&self, image: &Path) {
        succeeded(
            Command::new("ctr")
                .arg("--address")
                .arg(&self.socket)
                .args(["--namespace", "k8s.io", "images", "import"])
                .arg(image),
        );
    }

    /// Runs a pod as the kubelet's cgroupfs driver places a best-effort one.
    fn run_pod(&mut self, name: &str, namespace: &str, uid: &str) -> Result<(), String> {
        self.cgroup_parent = format!("/kubepods/besteffort/pod{uid}");
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_owned(),
                uid: uid.to_owned(),
                namespace: namespace.to_owned(),
            }),
            hostname: name.to_owned(),
            log_directory: self.dir.join("pods").display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
            }),
        };
        let ran: RunPodSandboxResponse = self.call(
            "RunPodSandbox",
            &RunPodSandboxRequest {
                config: Some(config),
            },
        )?;
        self.pod = Some(ran.pod_sandbox_id);
        Ok(())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(pod) = self.pod.take() {
            let request = PodSandboxIdRequest {
                pod_sandbox_id: pod,
            };
            let _ = self.call::<Empty>("StopPodSandbox", &request);
            let _ = self.call::<Empty>("RemovePodSandbox", &request);
        }
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate(Duration::from_secs(10));
        }
        // What runc made of the pod's cgroup parent, in every hierarchy; only empty directories
        // go, so a host's own kubepods stays.
        if !self.cgroup_parent.is_empty()
            && let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup")
        {
            for hierarchy in hierarchies.filter_map(|entry| Some(entry.ok()?.path())) {
                let mut path = self.cgroup_parent.as_str();
                while !path.is_empty() && path != "/" {
                    let _ = fs::remove_dir(hierarchy.join(path.trim_start_matches('/')));
                    path = path.rsplit_once('/').map_or("", |(parent, _)| parent);
                }
            }
        }
        unmount_under(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Detaches what is still mounted under `dir` (a snapshot of a containerd that was stopped
/// short), deepest first.
fn unmount_under(dir: &Path) {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut under: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    under.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in under {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
}

/// The veth the CNI plugin made for the pod, in `netns`: the only one there.
fn pod_veth(netns: &Netns) -> String {
    let output = succeeded(
        Command::new("ip")
            .args(["-n", &netns.name, "-j", "link", "show", "type", "veth"])
            .stdout(Stdio::piped()),
    );
    let links: Value = serde_json::from_slice(&output.stdout).expect("ip -j");
    let links = links.as_array().expect("links");
    assert_eq!(links.len(), 1, "one veth for the one pod: {links:?}");
    links[0]["ifname"].as_str().expect("a name").to_owned()
}

#[test]
#[ignore = "needs root"]
fn a_pod_run_by_containerd_is_named_as_its_cri_lists_it() {
    const TEST: &str = "a_pod_run_by_containerd_is_named_as_its_cri_lists_it";
    if let Some(why) = missing_prerequisite() {
        skipped(TEST, &why);
        return;
    }
    let netns = Netns::new("cri");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&netns.name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("the test's directory");
    let bridge = format!("lpcri{}", std::process::id() % 100_000);
    let mut containerd = Containerd::start(&netns, &dir, &bridge);
    containerd.import(&pause_image(&dir));
    let uid = format!(
        "7e57c0de-{:04x}-4000-8000-00000000c21e",
        std::process::id() % 0x10000
    );
    if let Err(error) = containerd.run_pod("web-0", "shop", &uid) {
        // containerd answered and took the image: a runtime that cannot run a container here
        // (no user namespaces, no overlayfs) is the machine's, not the probe's.
        skipped(
            TEST,
            &format!("containerd cannot run a pod on this machine: {error}"),
        );
        return;
    }
    let veth = pod_veth(&netns);
    let socket = format!("unix://{}", containerd.socket.display());
    // Asked first, a path that is no socket (a runtime's leftover): the next one answers.
    let not_a_socket = dir.join("not-a-socket");
    fs::write(&not_a_socket, "").expect("a file");
    let not_a_socket = not_a_socket.display().to_string();
    let probe = ProbeProcess::start(
        PROBE,
        &netns,
        &[
            "--iface",
            &veth,
            "--cri-endpoint",
            &not_a_socket,
            "--cri-endpoint",
            &socket,
        ],
    );
    let report = probe.wait_for(TIMEOUT, |report| {
        testbed::interface(report, &veth)["workload"]["pod"] == "web-0"
    });
    let workload = &testbed::interface(&report, &veth)["workload"];
    assert_eq!(workload["namespace"], "shop", "{workload}");
    assert_eq!(workload["pod_uid"], uid.as_str(), "{workload}");
    assert_eq!(workload["qos"], "besteffort", "{workload}");
    // The namespace's process is the sandbox's own (its pause): a pod, no container name.
    assert_eq!(
        workload["container_id"],
        containerd.pod.as_deref().unwrap(),
        "{workload}"
    );
    assert!(workload["container"].is_null(), "{workload}");
    assert!(workload["names_unresolved"].is_null(), "{workload}");
    drop(probe);

    // What a responder sees of spoofed frames from the pod: each event names it.
    let pod_netns = workload["netns"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("containerd names the pod's namespace: {workload}"))
        .to_owned();
    let probe = ProbeProcess::start(
        PROBE,
        &netns,
        &[
            "--iface",
            &veth,
            "--cri-endpoint",
            &socket,
            "--drop",
            "--events",
        ],
    );
    probe.wait_for(TIMEOUT, |report| {
        testbed::interface(report, &veth)["workload"]["pod"] == "web-0"
    });
    succeeded(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{pod_netns}"))
            .args([
                PYTHON,
                "-c",
                "from scapy.all import *\n\
                 sendp(Ether(dst='ff:ff:ff:ff:ff:ff')/IP(src='198.19.251.66', dst='127.0.0.1')\
                 /UDP(sport=40000, dport=6379), iface='eth0', count=3, verbose=False)",
            ]),
    );
    let event = probe.wait_for(TIMEOUT, |line| {
        line["type"] == "event" && line["workload"]["pod"] == "web-0"
    });
    eprintln!("an event of a spoofed frame from the pod: {event}");
    assert_eq!(event["action"], "dropped", "{event}");
    assert_eq!(event["destination_ip"], "127.0.0.1", "{event}");
    assert_eq!(event["workload"]["namespace"], "shop", "{event}");
    assert_eq!(event["workload"]["pod_uid"], uid.as_str(), "{event}");
    drop(probe);
    // The audit names the pod whose link is exposed.
    netns.sysctl(&format!("net/ipv4/conf/{veth}/route_localnet"), "1");
    let _listener = netns
        .enter(|| std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).expect("listen"));
    let output = netns.output(PROBE, &["audit", "--json", "--cri-endpoint", &socket]);
    let audit: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    let exposure = audit["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["interface"] == veth.as_str() && f["severity"] == "exposure")
        .unwrap_or_else(|| panic!("no exposure of {veth}: {audit}"));
    assert_eq!(exposure["workload"]["pod"], "web-0", "{exposure}");
    let message = exposure["message"].as_str().expect("a message");
    assert!(
        message.contains(" pod shop/web-0 (besteffort)"),
        "{message}"
    );
}
