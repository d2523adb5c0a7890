//! The standing filter (`run --pin`, `status`, `detach`) as a host relies on it: it filters and
//! counts after the CLI exits, a restart or a mode change leaves no frame unfiltered, and
//! `detach` leaves nothing behind. Needs root.

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Output,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use test_frames::ipv4;
use testbed::{
    Link, Netns, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, SENDER_MAC, SENDER_V4, class_packets,
    drain, interface,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const QUIET: Duration = Duration::from_millis(300);
const PORT: u16 = 5353;

fn spoofed_to_localhost() -> Vec<u8> {
    ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, PORT)
        .build()
}

/// `localnet-probe args…` in `netns` (host mount namespace), to its end.
fn probe(netns: &Netns, args: &[&str]) -> Output {
    netns
        .command(PROBE)
        .args(args)
        .output()
        .expect("run localnet-probe")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `status --json`, which must succeed.
fn status(netns: &Netns) -> Value {
    let output = probe(netns, &["status", "--json"]);
    assert!(output.status.success(), "status: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("status writes JSON")
}

/// Stops a `run --pin` with SIGTERM; it must exit 0.
fn stop(probe: ProbeProcess) {
    let stderr = probe.stderr();
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(
        status.success(),
        "run --pin exited {status}; stderr: {stderr}"
    );
}

/// Sends spoofed frames every 200 µs on its own thread until stopped (at most 60,000 or 30 s);
/// returns how many it sent.
fn send_continuously(link: &Link, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    let sender = link.raw_sender();
    let frame = spoofed_to_localhost();
    thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) && sent < 60_000 && started.elapsed().as_secs() < 30 {
            sender.send(&frame);
            sent += 1;
            thread::sleep(Duration::from_micros(200));
        }
        sent
    })
}

fn dropped(report: &Value) -> u64 {
    interface(report, RECEIVER_IF)["packets_dropped"]
        .as_u64()
        .expect("packets_dropped")
}

#[test]
fn the_standing_filter_outlives_the_cli_restarts_without_a_gap_and_detaches_cleanly() {
    testbed::skip_unless_root!();
    let link = Link::new("pin");
    let netns = &link.receiver;
    netns.sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let listener = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, PORT)));
    let sender = link.raw_sender();
    let frame = spoofed_to_localhost();

    // Pinned in drop mode, then the CLI exits: frames are still dropped and counted.
    let first = ProbeProcess::start_pinned(PROBE, netns, &["--drop", "--iface", RECEIVER_IF]);
    first.wait_ready();
    stop(first);
    assert!(netns.has_xdp(RECEIVER_IF), "the filter stays attached");
    for _ in 0..100 {
        sender.send(&frame);
    }
    assert_eq!(drain(&listener, QUIET), 0, "dropped with no CLI running");
    let shown = status(netns);
    assert_eq!(shown["type"], "status");
    assert_eq!(shown["standing_filter"]["served_by"], Value::Null);
    let entry = interface(&shown, RECEIVER_IF);
    assert_eq!(entry["mode"], "drop");
    assert_eq!(dropped(&shown), 100, "{shown}");
    assert_eq!(
        class_packets(entry, "ipv4", "destination", "dropped"),
        100,
        "{entry}"
    );

    // Frames flow continuously across two restarts: none is delivered, all are counted.
    let stop_sending = Arc::new(AtomicBool::new(false));
    let sending = send_continuously(&link, Arc::clone(&stop_sending));
    thread::sleep(Duration::from_millis(200));
    for _ in 0..2 {
        let restarted =
            ProbeProcess::start_pinned(PROBE, netns, &["--drop", "--iface", RECEIVER_IF]);
        let report = restarted.wait_ready();
        assert!(dropped(&report) >= 100, "counters continue: {report}");
        thread::sleep(Duration::from_millis(200));
        stop(restarted);
        thread::sleep(Duration::from_millis(100));
    }
    stop_sending.store(true, Ordering::Relaxed);
    let sent = sending.join().expect("sender");
    assert!(sent > 1000, "only {sent} frames sent across the restarts");
    assert_eq!(drain(&listener, QUIET), 0, "a frame got through a restart");
    assert_eq!(dropped(&status(netns)), 100 + sent);

    // The mode changes live: monitor lets them through (counted), drop stops them again.
    let monitoring = ProbeProcess::start_pinned(PROBE, netns, &["--iface", RECEIVER_IF]);
    let report = monitoring.wait_ready();
    assert_eq!(interface(&report, RECEIVER_IF)["mode"], "monitor");
    for _ in 0..50 {
        sender.send(&frame);
    }
    assert_eq!(drain(&listener, QUIET), 50, "monitor mode passes them");
    stop(monitoring);
    let dropping = ProbeProcess::start_pinned(PROBE, netns, &["--drop-on", RECEIVER_IF]);
    dropping.wait_ready();
    for _ in 0..50 {
        sender.send(&frame);
    }
    assert_eq!(drain(&listener, QUIET), 0, "drop mode again");
    stop(dropping);
    let shown = status(netns);
    let entry = interface(&shown, RECEIVER_IF);
    assert_eq!(class_packets(entry, "ipv4", "destination", "passed"), 50);
    assert_eq!(
        class_packets(entry, "ipv4", "destination", "dropped"),
        100 + sent + 50
    );

    // Detach: delivery is back, nothing is attached or pinned.
    let output = probe(netns, &["detach"]);
    assert!(output.status.success(), "detach: {}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("detached from {RECEIVER_IF}")),
        "{}",
        stderr(&output)
    );
    assert!(!netns.has_xdp(RECEIVER_IF));
    assert!(!netns.pin_dir().exists(), "{:?} is left", netns.pin_dir());
    for _ in 0..10 {
        sender.send(&frame);
    }
    assert_eq!(drain(&listener, QUIET), 10);
    let shown = status(netns);
    assert_eq!(shown["standing_filter"], Value::Null);
    let entry = shown["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|entry| entry["name"] == RECEIVER_IF)
        .expect("the interface is listed");
    assert_eq!(entry["exposed"], true, "{entry}");
    let output = probe(netns, &["detach"]);
    assert!(output.status.success());
    assert!(stderr(&output).contains("nothing to detach"));
}
