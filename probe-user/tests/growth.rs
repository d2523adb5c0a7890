//! The counter space grows on demand: a probe started with the start's default sizing (the
//! interfaces there and 256 more) then given a burst of interfaces in one `ip -batch` serves
//! every one, refuses none, drops and counts exactly what is sent to the last ones created, and
//! keeps the counts of those it served before growing; a standing filter grows the same way and
//! is taken over whole. Needs root.

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use test_frames::ipv4;
use testbed::{Netns, ProbeProcess, RECEIVER_MAC, RawSender, SENDER_MAC, SENDER_V4, receive};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
/// How long the quiet after the last datagram expected lasts before none more is expected.
const QUIET: Duration = Duration::from_millis(300);

fn mac(bytes: [u8; 6]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn spoofed() -> Vec<u8> {
    ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 5353)
        .build()
}

/// The `ip link` line of a veth pair `<name>a`/`<name>b`, both in the namespace, `b` with the
/// MAC address the spoofed frames are sent to.
fn pair_line(name: &str) -> String {
    format!(
        "link add {name}a address {} type veth peer name {name}b address {}",
        mac(SENDER_MAC),
        mac(RECEIVER_MAC)
    )
}

/// Sets both ends of `name`'s pair up and waits until they carry frames.
fn set_up(netns: &Netns, name: &str) {
    for end in ["a", "b"] {
        netns.ip(&["link", "set", &format!("{name}{end}"), "up"]);
    }
    for end in ["a", "b"] {
        netns.wait_operational(&format!("{name}{end}"));
    }
}

/// Sends `count` spoofed frames out of `<name>a`, which arrive at `<name>b`.
fn send(netns: &Netns, name: &str, count: u64) {
    let sender = netns.enter(|| RawSender::open(&format!("{name}a")));
    let frame = spoofed();
    for _ in 0..count {
        sender.send(&frame);
    }
}

/// Sends spoofed frames out of `<name>a` every 200 µs on a thread of its own until `stop` (at
/// most 50,000 or 30 s); how many it sent.
fn send_continuously(netns: &Netns, name: &str, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    let sender = netns.enter(|| RawSender::open(&format!("{name}a")));
    let frame = spoofed();
    thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) && sent < 50_000 && started.elapsed().as_secs() < 30 {
            sender.send(&frame);
            sent += 1;
            thread::sleep(Duration::from_micros(200));
        }
        sent
    })
}

/// Interfaces of the namespace that carry an XDP program, from one `ip -d link show`.
fn with_xdp(netns: &Netns) -> usize {
    let output = Command::new("ip")
        .args(["-n", &netns.name, "-d", "link", "show"])
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&output.stdout)
        .matches("prog/xdp")
        .count()
}

fn dropped(report: &Value) -> BTreeMap<String, u64> {
    report["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(|entry| {
            (
                entry["name"].as_str().expect("name").to_owned(),
                entry["packets_dropped"].as_u64().expect("packets_dropped"),
            )
        })
        .collect()
}

/// A namespace where spoofed frames reach a server on 127.0.0.1 unless dropped
/// (route_localnet on every interface), with the pair `early` (selected) and the pair `x` (left
/// out, to show that), both up; and that server.
fn namespace(tag: &str) -> (Netns, UdpSocket) {
    let netns = Netns::new(tag);
    netns.sysctl("net/ipv4/conf/all/route_localnet", "1");
    let server = netns.enter(|| {
        let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353))).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set timeout");
        socket
    });
    for pair in ["early", "x"] {
        netns.ip(&pair_line(pair).split(' ').collect::<Vec<_>>());
        set_up(&netns, pair);
    }
    (netns, server)
}

/// Plugs `pairs` veth pairs `g<i>a`/`g<i>b` in one `ip -batch`; how long it took.
fn plug(netns: &Netns, pairs: usize) -> Duration {
    let batch: String = (0..pairs)
        .map(|i| pair_line(&format!("g{i:04}")) + "\n")
        .collect();
    let plugged = Instant::now();
    let mut ip = Command::new("ip")
        .args(["-n", &netns.name, "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run ip -batch");
    ip.stdin
        .take()
        .expect("piped")
        .write_all(batch.as_bytes())
        .expect("write the batch");
    assert!(
        ip.wait().expect("wait for ip").success(),
        "ip -batch failed"
    );
    plugged.elapsed()
}

/// The selection of both tests: the burst and the early pair, dropping.
const SELECTION: [&str; 7] = [
    "--drop",
    "--iface",
    "g*",
    "--iface",
    "early*",
    "--interval",
    "0.5",
];

/// 1,000 veth pairs (2,000 interfaces) plugged in one batch into a namespace the probe started
/// in with room for 261 (the five interfaces there and 256 more): every one attached, none refused, the room grown several times; the
/// frames sent to the last pairs created dropped (none reaches the server on 127.0.0.1) and
/// counted exactly, their samples read; and the frames sent to a pair served before the burst,
/// all through it, dropped and counted exactly.
#[test]
#[ignore = "needs root"]
fn a_burst_of_two_thousand_interfaces_is_served_with_none_refused() {
    const PAIRS: usize = 1_000;
    let (netns, server) = namespace("grow");
    let probe = ProbeProcess::start(PROBE, &netns, &SELECTION);
    probe.wait_ready();
    send(&netns, "x", 3);
    assert_eq!(
        receive(&server, 3, QUIET),
        3,
        "the unfiltered pair delivers"
    );
    send(&netns, "early", 7);
    probe.wait_for(Duration::from_secs(20), |report| {
        dropped(report).get("earlyb") == Some(&7)
    });

    // Frames flow to the early pair all through the burst and the growth.
    let stop_sending = Arc::new(AtomicBool::new(false));
    let sending = send_continuously(&netns, "early", Arc::clone(&stop_sending));
    let plugged = Instant::now();
    let created = plug(&netns, PAIRS);
    let every = 2 * PAIRS + 2;
    let report = probe.wait_for(Duration::from_secs(60), |report| {
        dropped(report).len() == every
    });
    let served_in = plugged.elapsed();
    stop_sending.store(true, Ordering::Relaxed);
    let sent = sending.join().expect("the sender");
    assert!(sent > 1_000, "only {sent} frames sent during the growth");
    assert_eq!(report["refused"], serde_json::json!([]), "none refused");
    assert_eq!(with_xdp(&netns), every, "every one carries the program");
    // Five interfaces at start (loopback and the two pairs) and 256 more; doubled three times.
    let grown_to = (5 + 256) * 8;
    let stderr = probe.stderr();
    assert!(
        stderr.contains(&format!(
            "the counters grew to room for {grown_to} interfaces"
        )),
        "{stderr}"
    );
    eprintln!(
        "{every} interfaces: created in {created:?}, all served {served_in:?} after the batch \
         began, room grown to {grown_to}, {sent} frames sent to a served pair meanwhile"
    );

    let last: Vec<String> = (PAIRS - 4..PAIRS).map(|i| format!("g{i:04}")).collect();
    for name in &last {
        set_up(&netns, name);
        send(&netns, name, 25);
    }
    send(&netns, "x", 2);
    assert_eq!(
        receive(&server, 2, QUIET),
        2,
        "only the unfiltered pair's frames reach the server"
    );
    // Their samples come through the ring of the generation that serves them: every frame
    // sampled (25 are within a second's budget of 100) and read, its sender seen.
    let sampled = |report: &Value, name: &str| {
        let entry = testbed::interface(report, name);
        entry["samples"]["emitted"] == 25
            && entry["top_senders_sampled"][0]["source_ip"] == SENDER_V4.to_string()
            && entry["top_senders_sampled"][0]["samples"] == 25
    };
    let report = probe.wait_for(Duration::from_secs(20), |report| {
        let dropped = dropped(report);
        last.iter().all(|name| {
            dropped.get(&format!("{name}b")) == Some(&25) && sampled(report, &format!("{name}b"))
        }) && dropped.get("earlyb") == Some(&(7 + sent))
    });
    let dropped = dropped(&report);
    let counted: u64 = dropped.values().sum();
    assert_eq!(
        counted,
        4 * 25 + 7 + sent,
        "no frame lost or counted elsewhere or twice"
    );
    for name in &last {
        assert_eq!(
            dropped[&format!("{name}a")],
            0,
            "{name}a sent, did not receive"
        );
    }

    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}: {stderr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while with_xdp(&netns) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(with_xdp(&netns), 0, "nothing stays attached");
}

/// A standing filter grows the same way, each generation pinned; stopped, its interfaces stay
/// filtered; a second `run --pin` takes over every one of them, in every generation, with
/// their counts; `status --json` sees them all, and `detach` removes everything.
#[test]
#[ignore = "needs root"]
fn a_standing_filter_that_grew_is_taken_over_whole_and_detached() {
    const PAIRS: usize = 300;
    let (netns, server) = namespace("grow-pin");
    let first = ProbeProcess::start_pinned(PROBE, &netns, &SELECTION);
    first.wait_ready();
    send(&netns, "early", 7);
    first.wait_for(Duration::from_secs(20), |report| {
        dropped(report).get("earlyb") == Some(&7)
    });
    plug(&netns, PAIRS);
    let every = 2 * PAIRS + 2;
    let report = first.wait_for(Duration::from_secs(60), |report| {
        dropped(report).len() == every
    });
    assert_eq!(report["refused"], serde_json::json!([]), "none refused");
    // 261 at start, doubled twice.
    let grown_to = (5 + 256) * 4;
    let said = first.stderr();
    assert!(
        said.contains(&format!(
            "the counters grew to room for {grown_to} interfaces"
        )),
        "{said}"
    );
    let last: Vec<String> = (PAIRS - 3..PAIRS).map(|i| format!("g{i:04}")).collect();
    for name in &last {
        set_up(&netns, name);
        send(&netns, name, 25);
    }
    first.wait_for(Duration::from_secs(20), |report| {
        let dropped = dropped(report);
        last.iter()
            .all(|name| dropped.get(&format!("{name}b")) == Some(&25))
    });
    let (status, _) = first.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}: {said}");
    assert_eq!(
        with_xdp(&netns),
        every,
        "the standing filter stays on every one"
    );
    for number in 1..=2 {
        let generation = netns.pin_dir().join(format!("gen-{number}"));
        assert!(generation.join("COUNTERS").exists(), "{generation:?}");
    }

    // Filtered with no CLI running, in the newest generation too.
    send(&netns, &last[2], 10);
    send(&netns, "x", 2);
    assert_eq!(
        receive(&server, 2, QUIET),
        2,
        "only the unfiltered pair delivers"
    );
    let output = netns.output(PROBE, &["status", "--json"]);
    assert!(output.status.success(), "{}", testbed::stderr_of(&output));
    let shown: Value = serde_json::from_slice(&output.stdout).expect("status writes JSON");
    let expected = |dropped: &BTreeMap<String, u64>| {
        dropped.len() == every
            && dropped.get("earlyb") == Some(&7)
            && dropped.get(&format!("{}b", last[0])) == Some(&25)
            && dropped.get(&format!("{}b", last[1])) == Some(&25)
            && dropped.get(&format!("{}b", last[2])) == Some(&35)
            && dropped.values().sum::<u64>() == 7 + 25 + 25 + 35
    };
    assert!(expected(&dropped(&shown)), "{:?}", dropped(&shown));

    // Taken over whole: every interface of every generation, counts exact, and it still
    // serves what comes next.
    let second = ProbeProcess::start_pinned(PROBE, &netns, &SELECTION);
    let report = second.wait_ready();
    assert!(expected(&dropped(&report)), "{:?}", dropped(&report));
    assert_eq!(report["refused"], serde_json::json!([]), "none refused");
    send(&netns, "early", 5);
    netns.ip(&pair_line("late").split(' ').collect::<Vec<_>>());
    netns.ip(&["link", "set", "latea", "name", "g9999a"]);
    second.wait_for(Duration::from_secs(20), |report| {
        let dropped = dropped(report);
        dropped.get("earlyb") == Some(&12) && dropped.contains_key("g9999a")
    });
    assert_eq!(
        receive(&server, 0, QUIET),
        0,
        "nothing got through the takeover"
    );
    let said = second.stderr();
    let (status, _) = second.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}: {said}");

    let output = netns.output(PROBE, &["detach"]);
    assert!(output.status.success(), "{}", testbed::stderr_of(&output));
    assert_eq!(with_xdp(&netns), 0, "nothing stays attached");
    assert!(!netns.pin_dir().exists(), "{:?} is left", netns.pin_dir());
}
