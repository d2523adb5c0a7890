//! localnet-probe attached to a veth in a namespace, frames sent from the peer namespace through
//! AF_PACKET: exact counts, the route_localnet experiment with and without `--drop`, cleanup when
//! the probe dies, and the errors users meet. Needs root.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    process::{Command, Output},
    time::Duration,
};

use test_frames::{TPID_8021Q, ipv4, ipv6};
use testbed::{
    Link, Netns, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, RECEIVER_V4, SENDER_MAC, SENDER_V4,
    class_packets, interface, receive,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const QUIET: Duration = Duration::from_millis(300);

/// Runs `localnet-probe args…` in `netns` to completion.
fn run_in(netns: &Netns, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &netns.name, PROBE])
        .args(args)
        .output()
        .expect("run localnet-probe")
}

fn packets_matched(report: &serde_json::Value) -> u64 {
    interface(report, RECEIVER_IF)["packets_matched"]
        .as_u64()
        .expect("packets_matched")
}

#[test]
#[ignore = "needs root"]
fn ten_thousand_loopback_frames_are_counted_exactly() {
    let link = Link::new("count");
    let probe = ProbeProcess::start(PROBE, &link.receiver, &["--iface", RECEIVER_IF]);
    let ready = probe.wait_ready();
    let entry = interface(&ready, RECEIVER_IF);
    assert_eq!(entry["xdp_mode"], "native", "veth supports native XDP");
    assert_eq!(entry["mode"], "monitor");

    let lo4 = Ipv4Addr::LOCALHOST;
    let lo6 = Ipv6Addr::LOCALHOST;
    let other6: Ipv6Addr = "fd00::1".parse().unwrap();
    let kinds = [
        ipv4(SENDER_V4, lo4).macs(SENDER_MAC, RECEIVER_MAC).build(),
        ipv4(lo4, RECEIVER_V4)
            .macs(SENDER_MAC, RECEIVER_MAC)
            .vlan(TPID_8021Q)
            .build(),
        ipv6(lo6, other6).macs(SENDER_MAC, RECEIVER_MAC).build(),
        ipv6(other6, lo4.to_ipv6_mapped())
            .macs(SENDER_MAC, RECEIVER_MAC)
            .build(),
    ];
    let benign = ipv4(SENDER_V4, RECEIVER_V4)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .build();
    let mut sender = link.paced_sender();
    for round in 0..2_500 {
        for frame in &kinds {
            sender.send(frame);
        }
        if round % 5 == 0 {
            sender.send(&benign);
        }
    }
    sender.finish();

    probe.wait_for(Duration::from_secs(20), |report| {
        packets_matched(report) >= 10_000
    });
    let (status, last) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
    let last = last.expect("a final report");
    assert_eq!(last["final"], true);
    let entry = interface(&last, RECEIVER_IF);
    assert_eq!(entry["packets_matched"], 10_000);
    assert_eq!(entry["packets_dropped"], 0);
    let bytes: usize = kinds.iter().map(|frame| frame.len() * 2_500).sum();
    assert_eq!(entry["bytes_matched"], bytes as u64);
    for (family, address) in [
        ("ipv4", "destination"),
        ("ipv4", "source"),
        ("ipv6", "source"),
        ("ipv4-mapped", "destination"),
    ] {
        assert_eq!(
            class_packets(entry, family, address, "passed"),
            2_500,
            "{family}/{address} in {entry}"
        );
    }
    assert!(!link.receiver.has_xdp(RECEIVER_IF), "detached on exit");
}

/// The spoofed-frame experiment: with route_localnet=1 a datagram to 127.0.0.1 from the wire
/// reaches a socket bound to 127.0.0.1; `run --drop` stops that and counts it; after the probe
/// exits it reaches the socket again. Benign traffic is untouched throughout.
#[test]
#[ignore = "needs root"]
fn drop_mode_stops_spoofed_datagrams_to_a_loopback_bound_server() {
    const SPOOFED: usize = 50;
    let link = Link::new("seed");
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    let benign_server = link.receiver_udp(SocketAddr::from((RECEIVER_V4, 5354)));
    let spoofed = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 5353)
        .build();
    let benign = ipv4(SENDER_V4, RECEIVER_V4)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 5354)
        .build();
    let sender = link.raw_sender();
    let send_both = || {
        for _ in 0..SPOOFED {
            sender.send(&spoofed);
            sender.send(&benign);
        }
    };

    send_both();
    assert_eq!(
        receive(&server, SPOOFED, QUIET),
        SPOOFED,
        "route_localnet=1 lets them in"
    );
    assert_eq!(receive(&benign_server, SPOOFED, QUIET), SPOOFED);

    let probe = ProbeProcess::start(PROBE, &link.receiver, &["--iface", RECEIVER_IF, "--drop"]);
    let ready = probe.wait_ready();
    let entry = interface(&ready, RECEIVER_IF);
    assert_eq!(entry["mode"], "drop");
    assert_eq!(
        entry["route_localnet"],
        serde_json::json!({"all": false, "iface": true, "effective": true})
    );
    assert_eq!(entry["exposed"], false, "drop mode closes the exposure");
    send_both();
    assert_eq!(receive(&server, 0, QUIET), 0, "the probe drops them");
    assert_eq!(
        receive(&benign_server, SPOOFED, QUIET),
        SPOOFED,
        "benign traffic passes"
    );
    let report = probe.wait_for(Duration::from_secs(10), |report| {
        packets_matched(report) >= SPOOFED as u64
    });
    let entry = interface(&report, RECEIVER_IF);
    assert_eq!(
        entry["packets_matched"], SPOOFED as u64,
        "benign frames are not counted"
    );
    assert_eq!(entry["packets_dropped"], SPOOFED as u64);
    assert_eq!(
        class_packets(entry, "ipv4", "destination", "dropped"),
        SPOOFED as u64
    );

    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
    assert!(!link.receiver.has_xdp(RECEIVER_IF));
    send_both();
    assert_eq!(
        receive(&server, SPOOFED, QUIET),
        SPOOFED,
        "without the probe they arrive again"
    );
    assert_eq!(receive(&benign_server, SPOOFED, QUIET), SPOOFED);
}

#[test]
#[ignore = "needs root"]
fn monitor_mode_with_route_localnet_reports_the_exposure() {
    let link = Link::new("expose");
    link.receiver
        .sysctl("net/ipv4/conf/all/route_localnet", "1");
    // A service on 127.0.0.1, without which the link would be latent, not exposed.
    let _server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    let probe = ProbeProcess::start(PROBE, &link.receiver, &[]);
    let entry = interface(&probe.wait_ready(), RECEIVER_IF).clone();
    assert_eq!(
        entry["route_localnet"],
        serde_json::json!({"all": true, "iface": false, "effective": true})
    );
    assert_eq!(entry["exposed"], true);
    let (status, _) = probe.stop(libc::SIGINT);
    assert!(status.success());
    assert!(probe_stderr_warns(&link.receiver));
}

/// The warning on stderr names the interface and the fix.
fn probe_stderr_warns(netns: &Netns) -> bool {
    let output = run_in(netns, &["run", "--json", "--duration", "0.2"]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr.contains(&format!(
        "{RECEIVER_IF}: route_localnet=1 (net.ipv4.conf.all.route_localnet=1) and monitor mode"
    )) && stderr.contains(&format!("--drop-on {RECEIVER_IF}"))
}

#[test]
#[ignore = "needs root"]
fn killed_probe_leaves_no_program_behind() {
    let link = Link::new("kill");
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    let spoofed = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 5353)
        .build();
    let probe = ProbeProcess::start(PROBE, &link.receiver, &["--drop"]);
    probe.wait_ready();
    assert!(link.receiver.has_xdp(RECEIVER_IF));
    let (status, _) = probe.stop(libc::SIGKILL);
    assert!(!status.success());
    assert!(
        !link.receiver.has_xdp(RECEIVER_IF),
        "the link died with the process"
    );
    let sender = link.raw_sender();
    for _ in 0..10 {
        sender.send(&spoofed);
    }
    assert_eq!(
        receive(&server, 10, QUIET),
        10,
        "nothing drops them any more"
    );
}

#[test]
#[ignore = "needs root"]
fn a_second_probe_is_refused_and_the_first_keeps_working() {
    let link = Link::new("busy");
    let first = ProbeProcess::start(PROBE, &link.receiver, &["--iface", RECEIVER_IF]);
    first.wait_ready();
    let output = run_in(&link.receiver, &["run", "--iface", RECEIVER_IF, "--json"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("vrx already has an XDP program attached: id ")
            && stderr.contains("name \"localnet_probe\"")
            && stderr.contains("Another localnet-probe serves it (pid ")
            && stderr.contains("(localnet-probe)")
            && stderr.contains("--exclude vrx"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no report from a refused run");

    let frame = ipv4(Ipv4Addr::LOCALHOST, RECEIVER_V4)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .build();
    let sender = link.raw_sender();
    for _ in 0..7 {
        sender.send(&frame);
    }
    first.wait_for(Duration::from_secs(10), |report| {
        packets_matched(report) == 7
    });
    let (status, _) = first.stop(libc::SIGTERM);
    assert!(status.success());
}

#[test]
#[ignore = "needs root"]
fn unknown_interface_is_refused_before_anything_loads() {
    let link = Link::new("unknown");
    let output = run_in(
        &link.receiver,
        &["run", "--iface", RECEIVER_IF, "--iface", "nope0"],
    );
    assert_eq!(output.status.code(), Some(2), "an invalid argument");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown interface \"nope0\" given to --iface")
            && stderr.contains(RECEIVER_IF),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no report from a refused run");
}

#[test]
#[ignore = "needs root"]
fn native_mode_failure_is_one_clear_error() {
    let link = Link::new("partial");
    // An ifb interface has no native XDP: the second attachment fails, the first is undone.
    link.receiver.ip(&["link", "add", "ifb0", "type", "ifb"]);
    link.receiver.ip(&["link", "set", "ifb0", "up"]);
    let output = run_in(
        &link.receiver,
        &[
            "run",
            "--xdp-mode",
            "native",
            "--iface",
            RECEIVER_IF,
            "--iface",
            "ifb0",
            "--duration",
            "5",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot attach to ifb0; nothing stays attached")
            && stderr.contains("--xdp-mode generic"),
        "{stderr}"
    );
    // That the first attachment is undone before the process exits (after, the kernel would
    // undo it anyway) is observed in lifecycle.rs, in the process that attached.
}

#[test]
#[ignore = "needs root"]
fn unprivileged_run_says_what_is_missing() {
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            PROBE,
            "run",
        ])
        .output()
        .expect("run setpriv");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("needs CAP_BPF and CAP_NET_ADMIN") && stderr.contains("root"),
        "{stderr}"
    );
}
