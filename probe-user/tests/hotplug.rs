//! Interfaces that appear, change and go while `run` serves a pattern or the default selection:
//! each is attached as it appears (or comes up), counted exactly, followed through renames and
//! down/up, reported with its final counts when deleted; one that carries another program is
//! said once and skipped. Needs root.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    net::Ipv4Addr,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use test_frames::ipv4;
use testbed::{ForeignXdp, Netns, ProbeProcess, RECEIVER_MAC, RawSender, SENDER_MAC, SENDER_V4};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const TIMEOUT: Duration = Duration::from_secs(20);

fn spoofed() -> Vec<u8> {
    ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 5353)
        .build()
}

/// The probe's namespace and a peer namespace holding the other end of each veth pair.
struct Hosts {
    probe: Netns,
    peer: Netns,
}

impl Hosts {
    fn new(tag: &str) -> Self {
        Self {
            probe: Netns::new(tag),
            peer: Netns::new(&format!("{tag}-peer")),
        }
    }

    /// A veth pair: `name` in the probe's namespace, `p-<name>` in the peer's, both down.
    fn add_pair(&self, name: &str) {
        self.peer.ip(&[
            "link",
            "add",
            &peer_of(name),
            "type",
            "veth",
            "peer",
            "name",
            name,
            "netns",
            &self.probe.name,
        ]);
    }

    /// Sets both ends up and waits until they carry frames: until the kernel's link watcher has
    /// seen the carrier, a device's queue discards what is sent through it.
    fn set_up(&self, name: &str) {
        self.peer.ip(&["link", "set", &peer_of(name), "up"]);
        self.probe.ip(&["link", "set", name, "up"]);
        self.peer.wait_operational(&peer_of(name));
        self.probe.wait_operational(name);
    }

    /// Sends `count` loopback frames from the peer's end of `name`'s pair.
    fn send(&self, name: &str, count: u64) {
        let sender = self.sender(name);
        let frame = spoofed();
        for _ in 0..count {
            sender.send(&frame);
        }
    }

    fn sender(&self, name: &str) -> RawSender {
        self.peer.enter(|| RawSender::open(&peer_of(name)))
    }

    /// Whether any interface in the probe's namespace carries an XDP program.
    fn any_xdp(&self) -> bool {
        let output = Command::new("ip")
            .args(["-n", &self.probe.name, "-d", "link", "show"])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&output.stdout).contains("prog/xdp")
    }
}

fn peer_of(name: &str) -> String {
    format!("p-{name}")
}

/// Polls `ip` until `name` carries an XDP program; how long that took.
fn time_to_attach(netns: &Netns, name: &str) -> Duration {
    let started = Instant::now();
    while !netns.has_xdp(name) {
        assert!(
            started.elapsed() < TIMEOUT,
            "nothing attached to {name} within {TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(2));
    }
    started.elapsed()
}

/// SIGTERM ends the run with status 0 and nothing attached; the last report.
fn stop_cleanly(probe: ProbeProcess, hosts: &Hosts) -> Value {
    let (status, last) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
    assert!(!hosts.any_xdp(), "nothing stays attached");
    last.expect("a final report")
}

fn packets_matched(entry: &Value) -> u64 {
    entry["packets_matched"].as_u64().expect("packets_matched")
}

/// Every served interface's count, by name.
fn counts(report: &Value) -> BTreeMap<String, u64> {
    report["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(|entry| {
            let name = entry["name"].as_str().expect("name").to_owned();
            (name, packets_matched(entry))
        })
        .collect()
}

/// Stderr says nothing but what `allowed` accepts at warning level and none of it is an error.
fn assert_quiet(stderr: &str, allowed: impl Fn(&str) -> bool) {
    for line in stderr.lines() {
        assert!(
            !line.contains("ERROR") && (!line.contains("WARN") || allowed(line)),
            "unexpected on stderr: {line}\n{stderr}"
        );
    }
}

/// `run --iface 'hp*'` started before any such interface exists: 20 veth pairs appear, are
/// attached (down, before they come up) and count exactly; one is renamed out of the pattern and
/// one goes down and up, both keep counting; five are deleted while frames flow through another,
/// and are reported once with their final counts; five more appear after. Nothing stays attached.
#[test]
#[ignore = "needs root"]
fn a_pattern_serves_interfaces_as_they_appear_change_and_go() {
    let hosts = Hosts::new("hotplug");
    let probe = ProbeProcess::start(PROBE, &hosts.probe, &["--iface", "hp*"]);
    let ready = probe.wait_ready();
    assert_eq!(ready["interfaces"], serde_json::json!([]));

    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut add = |names: std::ops::Range<u64>, frames: fn(u64) -> u64| {
        for i in names.clone() {
            let name = format!("hp{i}");
            hosts.add_pair(&name);
            latencies.push(time_to_attach(&hosts.probe, &name));
        }
        names
            .map(|i| {
                let name = format!("hp{i}");
                hosts.set_up(&name);
                hosts.send(&name, frames(i));
                (name, frames(i))
            })
            .collect::<Vec<_>>()
    };
    expected.extend(add(0..20, |i| 5 * (i + 1)));
    let report = probe.wait_for(TIMEOUT, |report| counts(report) == expected);
    for entry in report["interfaces"].as_array().expect("interfaces") {
        assert_eq!(entry["mode"], "monitor");
    }

    // Renamed out of the pattern, it is still the interface served; down and up, still attached.
    hosts.probe.ip(&["link", "set", "hp3", "down"]);
    hosts.probe.ip(&["link", "set", "hp3", "name", "hq3"]);
    hosts.probe.ip(&["link", "set", "hq3", "up"]);
    hosts.probe.ip(&["link", "set", "hp4", "down"]);
    hosts.probe.ip(&["link", "set", "hp4", "up"]);
    let hp3 = expected.remove("hp3").expect("hp3 counted");
    expected.insert("hq3".to_owned(), hp3 + 7);
    *expected.get_mut("hp4").expect("hp4 counted") += 7;
    // The peer of hq3 keeps its name.
    hosts.send("hp3", 7);
    hosts.send("hp4", 7);

    // Five deleted while 300 frames go through hp0.
    let flowing = hosts.sender("hp0");
    let deleted: BTreeMap<String, u64> = (10..15)
        .map(|i| {
            let name = format!("hp{i}");
            let count = expected.remove(&name).expect("counted");
            (name, count)
        })
        .collect();
    thread::scope(|scope| {
        scope.spawn(|| {
            let frame = spoofed();
            for _ in 0..300 {
                flowing.send(&frame);
                thread::sleep(Duration::from_micros(200));
            }
        });
        for name in deleted.keys() {
            hosts.probe.ip(&["link", "del", name]);
        }
    });
    *expected.get_mut("hp0").expect("hp0 counted") += 300;
    expected.extend(add(20..25, |_| 11));

    let removed = RefCell::new(Vec::new());
    probe.wait_for(TIMEOUT, |report| {
        removed.borrow_mut().extend(
            report["removed"]
                .as_array()
                .expect("removed")
                .iter()
                .cloned(),
        );
        counts(report) == expected && removed.borrow().len() >= deleted.len()
    });
    let stderr = probe.stderr();
    let last = stop_cleanly(probe, &hosts);
    assert_eq!(counts(&last), expected);
    let mut removed = removed.into_inner();
    removed.extend(last["removed"].as_array().expect("removed").iter().cloned());
    let mut removed: Vec<(String, u64)> = removed
        .iter()
        .map(|entry| {
            (
                entry["name"].as_str().expect("name").to_owned(),
                packets_matched(entry),
            )
        })
        .collect();
    removed.sort_unstable();
    assert_eq!(
        removed,
        deleted.clone().into_iter().collect::<Vec<_>>(),
        "each reported once, with its final count"
    );
    let total: u64 = expected.values().chain(deleted.values()).sum();
    assert_eq!(last["totals"]["packets_matched"], total);
    assert_quiet(&stderr, |line| {
        line.contains("was removed; its final counts")
    });
    assert_eq!(stderr.matches("attached to hp").count(), 25, "{stderr}");
    assert!(
        stderr.contains("no interface matches --iface 'hp*' yet; waiting for one to appear"),
        "{stderr}"
    );

    latencies.sort_unstable();
    println!(
        "attached after the link appeared: median {:?}, max {:?} (polled with ip, over {})",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );
}

/// An interface that appears with another tool's program on it is said once and skipped; the
/// probe counts elsewhere, serves it once the program is gone, and exits 0.
#[test]
#[ignore = "needs root"]
fn an_interface_with_another_program_is_said_once_and_skipped() {
    let hosts = Hosts::new("hp-foreign");
    let probe = ProbeProcess::start(PROBE, &hosts.probe, &["--iface", "hp*", "--drop-on", "hp?"]);
    probe.wait_ready();
    hosts.add_pair("hp0");
    time_to_attach(&hosts.probe, "hp0");
    hosts.set_up("hp0");

    // Occupied under another name, then renamed into the pattern.
    hosts.add_pair("occ");
    let foreign = ForeignXdp::attach(&hosts.probe, "occ");
    hosts.probe.ip(&["link", "set", "occ", "name", "hpocc"]);
    let said = "hpocc already has an XDP program attached";
    probe.wait_until_said(said);
    // More events: the refusal is not repeated, and the others count.
    hosts.add_pair("hp1");
    time_to_attach(&hosts.probe, "hp1");
    hosts.set_up("hp1");
    hosts.probe.ip(&["link", "set", "hpocc", "up"]);
    hosts.send("hp0", 10);
    hosts.send("hp1", 4);
    let report = probe.wait_for(TIMEOUT, |report| {
        counts(report) == BTreeMap::from([("hp0".to_owned(), 10), ("hp1".to_owned(), 4)])
    });
    let drops: Vec<&Value> = report["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(|entry| &entry["packets_dropped"])
        .collect();
    assert_eq!(drops, [10, 4], "--drop-on hp? drops on both");
    let stderr = probe.stderr();
    assert_eq!(stderr.matches(said).count(), 1, "said once: {stderr}");
    assert!(
        stderr.contains(ForeignXdp::NAME) && stderr.contains("--exclude hpocc"),
        "names the program and the way out: {stderr}"
    );

    // Gone, it is served at the next event.
    drop(foreign);
    let deadline = Instant::now() + TIMEOUT;
    while hosts.probe.has_xdp("hpocc") {
        assert!(Instant::now() < deadline, "the foreign program stays");
        thread::sleep(Duration::from_millis(20));
    }
    hosts.probe.ip(&["link", "set", "hpocc", "down"]);
    time_to_attach(&hosts.probe, "hpocc");
    // Its peer keeps the name it was created with.
    hosts.peer.ip(&["link", "set", &peer_of("occ"), "up"]);
    hosts.probe.ip(&["link", "set", "hpocc", "up"]);
    hosts.peer.wait_operational(&peer_of("occ"));
    hosts.probe.wait_operational("hpocc");
    hosts.send("occ", 6);
    probe.wait_for(TIMEOUT, |report| counts(report).get("hpocc") == Some(&6));
    let stderr = probe.stderr();
    assert!(
        stderr.contains("attached to hpocc (native XDP, monitor mode)"),
        "{stderr}"
    );
    assert_eq!(stderr.matches(said).count(), 1, "said once: {stderr}");
    stop_cleanly(probe, &hosts);
}

/// Without --iface, a new interface is served once it comes up, not before.
#[test]
#[ignore = "needs root"]
fn without_iface_a_new_interface_is_served_once_it_is_up() {
    let hosts = Hosts::new("hp-default");
    hosts.add_pair("old0");
    hosts.set_up("old0");
    let probe = ProbeProcess::start(PROBE, &hosts.probe, &["--drop"]);
    assert_eq!(counts(&probe.wait_ready()).len(), 1);
    hosts.add_pair("new0");
    // Events are followed in order: by the time new1 is attached, new0 was seen, down.
    hosts.add_pair("new1");
    hosts.set_up("new1");
    time_to_attach(&hosts.probe, "new1");
    assert!(!hosts.probe.has_xdp("new0"), "not while it is down");
    hosts.set_up("new0");
    time_to_attach(&hosts.probe, "new0");
    hosts.send("new0", 3);
    let report = probe.wait_for(TIMEOUT, |report| counts(report).get("new0") == Some(&3));
    let new0 = testbed::interface(&report, "new0");
    assert_eq!(new0["packets_dropped"], 3, "--drop applies to it");
    assert_quiet(&probe.stderr(), |_| false);
    stop_cleanly(probe, &hosts);
}

/// `--capacity 65` bounds what is served: the 66th interface to appear is said once and left
/// out, and served once a deleted one frees a slot.
#[test]
#[ignore = "needs root"]
fn an_interface_beyond_the_capacity_bound_waits_for_a_free_slot() {
    let hosts = Hosts::new("hp-full");
    let probe = ProbeProcess::start(PROBE, &hosts.probe, &["--iface", "hp*", "--capacity", "65"]);
    probe.wait_ready();
    for i in 0..66 {
        hosts.add_pair(&format!("hp{i}"));
    }
    let said = "cannot attach to hp65: all 65 interfaces that --capacity allows are served";
    probe.wait_until_said(said);
    // Not served, and said so in the reports until it is.
    let report = probe.wait_for(TIMEOUT, |report| {
        report["refused"]
            .as_array()
            .is_some_and(|refused| !refused.is_empty())
    });
    assert_eq!(
        report["refused"][0]["name"], "hp65",
        "{}",
        report["refused"]
    );
    assert!(
        report["refused"][0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.starts_with(said)),
        "{}",
        report["refused"]
    );
    assert_eq!(
        report["refused"].as_array().map(Vec::len),
        Some(1),
        "{}",
        report["refused"]
    );
    hosts.probe.ip(&["link", "del", "hp0"]);
    time_to_attach(&hosts.probe, "hp65");
    let report = probe.wait_for(TIMEOUT, |report| counts(report).contains_key("hp65"));
    assert_eq!(counts(&report).len(), 65);
    assert_eq!(
        report["refused"],
        serde_json::json!([]),
        "{}",
        report["refused"]
    );
    let stderr = probe.stderr();
    assert_eq!(stderr.matches(said).count(), 1, "said once: {stderr}");
    stop_cleanly(probe, &hosts);
}

/// With --pin, an interface attached after start is pinned like the others: it stays filtered
/// and counted after the CLI exits, `status` shows it, and `detach` removes it.
#[test]
#[ignore = "needs root"]
fn with_pin_an_interface_that_appears_is_pinned_too() {
    let hosts = Hosts::new("hp-pin");
    let probe = ProbeProcess::start_pinned(PROBE, &hosts.probe, &["--drop", "--iface", "hp*"]);
    probe.wait_ready();
    hosts.add_pair("hp0");
    time_to_attach(&hosts.probe, "hp0");
    hosts.set_up("hp0");
    let stderr = probe.stderr();
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}; stderr: {stderr}");
    assert!(hosts.probe.has_xdp("hp0"), "the filter stays attached");
    hosts.send("hp0", 5);
    let run = |args: &[&str]| {
        let output = hosts
            .probe
            .command(PROBE)
            .args(args)
            .output()
            .expect("run localnet-probe");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{args:?}: {stderr}");
        (output.stdout, stderr)
    };
    let (shown, _) = run(&["status", "--json"]);
    let shown: Value = serde_json::from_slice(&shown).expect("status writes JSON");
    assert_eq!(testbed::interface(&shown, "hp0")["packets_dropped"], 5);
    let (_, said) = run(&["detach"]);
    assert!(said.contains("detached from hp0"), "{said}");
    assert!(!hosts.any_xdp(), "nothing stays attached");
    assert!(!hosts.probe.pin_dir().exists(), "nothing stays pinned");
}

/// A hundred interfaces from one `ip -batch`, while unrelated ones come and go, keep every
/// rtnetlink dump inconsistent for a while: the probe lists them again until they settle, and
/// serves them all; none it attached is taken for removed (and released) in the meantime.
#[test]
#[ignore = "needs root"]
fn a_burst_of_a_hundred_interfaces_is_followed_to_the_last() {
    let hosts = Hosts::new("hp-burst");
    let probe = ProbeProcess::start(PROBE, &hosts.probe, &["--iface", "burst*"]);
    probe.wait_ready();
    let settled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let netns = hosts.probe.name.clone();
        let settled = settled.clone();
        thread::spawn(move || {
            for _ in 0..300 {
                if settled.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                testbed::ip(&["-n", &netns, "link", "add", "churn0", "type", "veth"]);
                testbed::ip(&["-n", &netns, "link", "del", "churn0"]);
            }
        })
    };
    let batch: String = (0..100)
        .map(|i| format!("link add burst{i} type veth peer name other{i}\n"))
        .collect();
    let path = std::env::temp_dir().join(format!("{}.batch", hosts.probe.name));
    std::fs::write(&path, batch).expect("write the ip batch");
    hosts
        .probe
        .ip(&["-batch", path.to_str().expect("a UTF-8 path")]);
    let _ = std::fs::remove_file(&path);
    let report = probe.wait_for(TIMEOUT, |report| counts(report).len() == 100);
    settled.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().expect("the churn ends");
    assert!(counts(&report).keys().all(|name| name.starts_with("burst")));
    assert_quiet(&probe.stderr(), |line| line.contains("attached to burst"));
    stop_cleanly(probe, &hosts);
}

/// `run` writing to a pipe without `--json` (a service's log): compact objects, from which the
/// way of rebuilding the state in docs/evidence.md gives what the full ones say; a burst of 80 interfaces
/// takes fewer lines on stderr than interfaces, every one of them listed in the objects'
/// `attached`.
#[test]
#[ignore = "needs root"]
fn a_service_log_gets_compact_objects_and_few_lines_for_a_burst() {
    const PAIRS: usize = 40;
    let hosts = Hosts::new("hp-compact");
    let mut probe = testbed::KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &hosts.probe.name, PROBE, "run"])
            .args(["--iface", "lnj*", "--interval", "0.2", "--full-every", "1"])
            .args(["--duration", "6"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start localnet-probe"),
    );
    // Read as written: a pipe left full would make the probe skip objects.
    let mut out = probe.0.stdout.take().expect("piped");
    let mut err = probe.0.stderr.take().expect("piped");
    let stdout = thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut out, &mut text).expect("read stdout");
        text
    });
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut err, &mut text).expect("read stderr");
        text
    });
    thread::sleep(Duration::from_secs(1));
    let batch: String = (0..PAIRS)
        .map(|i| format!("link add lnja{i} type veth peer name lnjb{i}\n"))
        .collect();
    let path = std::env::temp_dir().join(format!("{}.batch", hosts.probe.name));
    std::fs::write(&path, batch).expect("write the ip batch");
    hosts
        .probe
        .ip(&["-batch", path.to_str().expect("a UTF-8 path")]);
    let _ = std::fs::remove_file(&path);
    hosts.probe.ip(&["link", "set", "lnja0", "up"]);
    hosts.probe.ip(&["link", "set", "lnjb0", "up"]);
    thread::sleep(Duration::from_secs(1));
    let sender = hosts.probe.enter(|| RawSender::open("lnjb0"));
    for _ in 0..9 {
        sender.send(&spoofed());
    }
    let status = testbed::wait_exit(&mut probe.0, TIMEOUT);
    let stdout = stdout.join().expect("stdout read");
    let stderr = stderr.join().expect("stderr read");
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("not keeping up"), "{stderr}");

    let objects: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .filter(|object: &Value| object["type"] == "counters")
        .collect();
    let (last, before_last) = objects.split_last().expect("objects");
    assert_eq!(last["final"], true);
    assert_eq!(last["full"], true, "the last object is full");
    assert_eq!(last["served"], 2 * PAIRS);
    assert_eq!(objects[0]["full"], true, "the first object is full");
    // Full objects every fifth, compact ones between, and some of those list nothing.
    for (n, object) in before_last.iter().enumerate() {
        assert_eq!(object["full"], n % 5 == 0, "object {n}: {object}");
    }
    assert!(
        before_last
            .iter()
            .any(|object| object["interfaces"].as_array().unwrap().is_empty()),
        "quiet intervals list no interface"
    );
    // The state rebuilt as docs/evidence.md says, before the last object, is what it lists.
    let mut state: BTreeMap<u64, Value> = BTreeMap::new();
    let mut attached = Vec::new();
    for object in &objects {
        if object["full"] == true {
            state.clear();
        }
        for interface in object["interfaces"].as_array().unwrap() {
            state.insert(interface["ifindex"].as_u64().unwrap(), interface.clone());
        }
        for gone in object["removed"].as_array().unwrap() {
            state.remove(&gone["ifindex"].as_u64().unwrap());
        }
        attached.extend(
            object["attached"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| entry["name"].as_str().unwrap().to_owned()),
        );
        assert_eq!(
            state.len() as u64,
            object["served"].as_u64().unwrap(),
            "{object}"
        );
    }
    // Sent through lnjb0, counted arriving on its peer.
    let lnja0 = state
        .values()
        .find(|interface| interface["name"] == "lnja0")
        .expect("lnja0");
    assert_eq!(lnja0["packets_matched"], 9);
    attached.sort_unstable();
    let mut expected: Vec<String> = (0..PAIRS)
        .flat_map(|i| [format!("lnja{i}"), format!("lnjb{i}")])
        .collect();
    expected.sort_unstable();
    assert_eq!(attached, expected, "every attachment listed once");

    // Fewer lines than interfaces, every interface accounted for.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("attached to "))
        .collect();
    assert!(lines.len() < 2 * PAIRS, "{stderr}");
    let said: usize = lines
        .iter()
        .map(|line| {
            line.split_once("attached to ")
                .and_then(|(_, rest)| rest.split_once(" interfaces matching 'lnj*'"))
                .map_or(1, |(count, _)| count.parse().expect("a count"))
        })
        .sum();
    assert_eq!(said, 2 * PAIRS, "{stderr}");
}
