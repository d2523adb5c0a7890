//! The probe over time and on the devices users have: exactly the documented capabilities,
//! layer-3 devices, stacked devices, renames, removals, a reader that stops reading, and
//! attachments observed while the process that made them still runs. Needs root.

use std::{
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use test_frames::ipv4;
use testbed::{
    Link, Netns, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, SENDER_MAC, SENDER_V4, Tun,
    class_packets, interface, only_caps, receive, served, wait_exit,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const QUIET: Duration = Duration::from_millis(300);

fn spoofed_to_localhost(port: u16) -> Vec<u8> {
    ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, port)
        .build()
}

/// `run --json args…` in `netns` with stdout on a pipe the caller reads, or not.
fn start_piped(netns: &Netns, args: &[&str]) -> (testbed::KillOnDrop, std::process::ChildStdout) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &netns.name, PROBE, "run", "--json"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start localnet-probe");
    let stdout = child.stdout.take().expect("piped");
    (testbed::KillOnDrop(child), stdout)
}

fn packets_matched(report: &serde_json::Value, name: &str) -> u64 {
    interface(report, name)["packets_matched"]
        .as_u64()
        .expect("packets_matched")
}

/// docs/kernels.md promises CAP_BPF and CAP_NET_ADMIN suffice: run as nobody with exactly those, the
/// probe attaches, counts exactly and drops.
#[test]
#[ignore = "needs root"]
fn runs_with_exactly_cap_bpf_and_cap_net_admin() {
    let link = Link::new("caps");
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    let wrapper = only_caps("+bpf,+net_admin");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let probe = ProbeProcess::start_wrapped(
        &wrapper,
        PROBE,
        &link.receiver,
        &["--drop", "--iface", RECEIVER_IF],
    );
    let ready = probe.wait_ready();
    assert_eq!(interface(&ready, RECEIVER_IF)["mode"], "drop");
    let sender = link.raw_sender();
    let frame = spoofed_to_localhost(5353);
    for _ in 0..100 {
        sender.send(&frame);
    }
    assert_eq!(
        receive(&server, 0, QUIET),
        0,
        "dropped under the two capabilities"
    );
    probe.wait_for(Duration::from_secs(10), |report| {
        packets_matched(report, RECEIVER_IF) == 100
    });
    let (status, last) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
    let entry = interface(last.as_ref().expect("a final report"), RECEIVER_IF).clone();
    assert_eq!(entry["packets_dropped"], 100);
    // Without CAP_PERFMON the program asks the kernel for the frame length.
    assert_eq!(entry["bytes_dropped"], 100 * frame.len() as u64);
    assert!(!link.receiver.has_xdp(RECEIVER_IF));
}

/// A `--capacity` smaller than the selection is an error before anything attaches, not a
/// start that serves some.
#[test]
#[ignore = "needs root"]
fn a_capacity_below_the_selection_attaches_nothing() {
    let link = Link::new("capacity");
    link.receiver.ip(&[
        "link", "add", "cap0", "type", "veth", "peer", "name", "cap1",
    ]);
    let output = Command::new("ip")
        .args(["netns", "exec", &link.receiver.name, PROBE, "run", "--json"])
        .args(["--duration", "1", "--capacity", "1"])
        .args(["--iface", RECEIVER_IF, "--iface", "cap0"])
        .stdin(Stdio::null())
        .output()
        .expect("run localnet-probe");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("2 interfaces selected, but --capacity 1 leaves room for 1"),
        "{stderr}"
    );
    assert!(!link.receiver.has_xdp(RECEIVER_IF));
}

/// With one of the two capabilities missing, one sentence names the other, and nothing loads.
#[test]
#[ignore = "needs root"]
fn one_capability_fewer_names_the_missing_one() {
    let netns = Netns::new("fewer-caps");
    for (caps, missing) in [("+bpf", "CAP_NET_ADMIN"), ("+net_admin", "CAP_BPF")] {
        let output = Command::new("ip")
            .args(["netns", "exec", &netns.name])
            .args(only_caps(caps))
            .args([PROBE, "run", "--json", "--duration", "1"])
            .output()
            .expect("run setpriv");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "localnet-probe needs {missing} to load and attach"
            )),
            "{caps}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
    }
}

#[test]
#[ignore = "needs root"]
fn out_of_range_seconds_are_refused_before_anything_happens() {
    let link = Link::new("range");
    for args in [
        ["--interval", "1e20"],
        ["--duration", "1e20"],
        ["--interval", "0"],
        ["--duration", "NaN"],
        ["--interval", "inf"],
    ] {
        let started = Instant::now();
        let output = Command::new("ip")
            .args(["netns", "exec", &link.receiver.name, PROBE, "run", "--json"])
            .args(args)
            .output()
            .expect("run localnet-probe");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(args[0]) && stderr.contains("seconds"),
            "{args:?}: {stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "{args:?}: nothing attached, nothing reported"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

/// On a tun device packets start at the IP header: they are classified, counted and dropped
/// like Ethernet frames.
#[test]
#[ignore = "needs root"]
fn tun_devices_are_served_by_the_ip_program() {
    let netns = Netns::new("tun");
    let tun = Tun::new(&netns, "tun0", "198.18.1.1/24");
    netns.sysctl("net/ipv4/conf/tun0/route_localnet", "1");
    netns.sysctl("net/ipv4/conf/tun0/rp_filter", "0");
    netns.sysctl("net/ipv4/conf/all/rp_filter", "0");
    let server = netns.enter(|| {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 5353)).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        socket
    });
    let frame = ipv4(Ipv4Addr::new(198, 18, 1, 2), Ipv4Addr::LOCALHOST)
        .ports(40000, 5353)
        .build();
    let packet = &frame[14..];
    for _ in 0..20 {
        tun.send(packet);
    }
    assert_eq!(
        receive(&server, 20, QUIET),
        20,
        "route_localnet=1 lets them in"
    );

    let probe = ProbeProcess::start(PROBE, &netns, &["--drop"]);
    let ready = probe.wait_ready();
    let entry = interface(&ready, "tun0");
    assert_eq!(entry["framing"], "ip");
    assert_eq!(entry["mode"], "drop");
    for _ in 0..20 {
        tun.send(packet);
    }
    assert_eq!(receive(&server, 0, QUIET), 0, "dropped on the tun device");
    let report = probe.wait_for(Duration::from_secs(10), |report| {
        packets_matched(report, "tun0") == 20
    });
    let entry = interface(&report, "tun0");
    assert_eq!(class_packets(entry, "ipv4", "destination", "dropped"), 20);
    assert_eq!(entry["bytes_matched"], 20 * packet.len() as u64);
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success());
}

/// A macvlan child with route_localnet=1 on a served parent receives the parent's spoofed frames:
/// the parent is reported exposed through it, the child is left out (its frames are the
/// parent's), and drop mode on the parent protects the child.
#[test]
#[ignore = "needs root"]
fn a_macvlan_child_exposes_its_parent_and_is_protected_there() {
    const CHILD_MAC: [u8; 6] = [0x02, 0x4c, 0x50, 0, 0, 0x03];
    let link = Link::new("macvlan");
    link.receiver.ip(&[
        "link",
        "add",
        "mv0",
        "link",
        RECEIVER_IF,
        "address",
        "02:4c:50:00:00:03",
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    link.receiver
        .ip(&["addr", "add", "198.18.0.3/24", "dev", "mv0"]);
    link.receiver.ip(&["link", "set", "mv0", "up"]);
    link.receiver
        .sysctl("net/ipv4/conf/mv0/route_localnet", "1");
    let server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    let to_child = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, CHILD_MAC)
        .ports(40000, 5353)
        .build();
    let sender = link.raw_sender();
    for _ in 0..10 {
        sender.send(&to_child);
    }
    assert_eq!(receive(&server, 10, QUIET), 10, "the child lets them in");

    let monitor = ProbeProcess::start(PROBE, &link.receiver, &[]);
    let ready = monitor.wait_ready();
    let names = served(&ready);
    assert_eq!(names, [RECEIVER_IF], "the child is left out");
    let entry = interface(&ready, RECEIVER_IF);
    assert_eq!(
        entry["route_localnet"],
        serde_json::json!({"all": false, "iface": false, "effective": false})
    );
    assert_eq!(entry["route_localnet_via"], serde_json::json!(["mv0"]));
    assert_eq!(entry["exposed"], true);
    let (status, _) = monitor.stop(libc::SIGTERM);
    assert!(status.success());
    let stderr = monitor_stderr(&link.receiver);
    assert!(
        stderr.contains("mv0: left out: its frames arrive on vrx")
            && stderr.contains("vrx: route_localnet=1 (on mv0, where vrx's frames also arrive)")
            && stderr.contains("--drop-on vrx"),
        "{stderr}"
    );

    // Dropping on the child closes the exposure too.
    let both = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--iface", RECEIVER_IF, "--iface", "mv0", "--drop-on", "mv0"],
    );
    assert_eq!(interface(&both.wait_ready(), RECEIVER_IF)["exposed"], false);
    let (status, _) = both.stop(libc::SIGTERM);
    assert!(status.success());

    let probe = ProbeProcess::start(PROBE, &link.receiver, &["--drop-on", RECEIVER_IF]);
    assert_eq!(
        interface(&probe.wait_ready(), RECEIVER_IF)["exposed"],
        false
    );
    for _ in 0..10 {
        sender.send(&to_child);
    }
    assert_eq!(receive(&server, 0, QUIET), 0, "dropped on the parent");
    probe.wait_for(Duration::from_secs(10), |report| {
        interface(report, RECEIVER_IF)["packets_dropped"] == 10
    });
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success());
}

fn monitor_stderr(netns: &Netns) -> String {
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns.name,
            PROBE,
            "run",
            "--json",
            "--duration",
            "0.2",
        ])
        .output()
        .expect("run localnet-probe");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Renaming an attached interface and giving its old name to another device: the probe follows
/// the attached device (by ifindex) under its new name, with its own route_localnet, and serves
/// the newcomer too, as the name given to --iface.
#[test]
#[ignore = "needs root"]
fn a_renamed_interface_is_followed_by_ifindex() {
    let link = Link::new("rename");
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    // A service on 127.0.0.1, without which the link would be latent, not exposed.
    let _server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    let probe = ProbeProcess::start(PROBE, &link.receiver, &["--iface", RECEIVER_IF]);
    let ready = probe.wait_ready();
    let ifindex = interface(&ready, RECEIVER_IF)["ifindex"].clone();

    link.receiver.ip(&["link", "set", RECEIVER_IF, "down"]);
    link.receiver
        .ip(&["link", "set", RECEIVER_IF, "name", "vry"]);
    link.receiver.ip(&["link", "set", "vry", "up"]);
    link.receiver.ip(&[
        "link",
        "add",
        RECEIVER_IF,
        "type",
        "veth",
        "peer",
        "name",
        "vrz",
    ]);
    let report = probe.wait_for(Duration::from_secs(10), |report| {
        served(report) == ["vry", RECEIVER_IF]
    });
    let entry = interface(&report, "vry");
    assert_eq!(entry["ifindex"], ifindex);
    assert_eq!(entry["route_localnet"]["iface"], true, "vry's own setting");
    assert_eq!(entry["exposed"], true);
    assert_ne!(interface(&report, RECEIVER_IF)["ifindex"], ifindex);

    let sender = link.raw_sender();
    for _ in 0..10 {
        sender.send(&spoofed_to_localhost(5353));
    }
    probe.wait_for(Duration::from_secs(10), |report| {
        packets_matched(report, "vry") == 10
    });
    // A hang-up ends the run like Ctrl-C: detached, with a last report.
    let (status, last) = probe.stop(libc::SIGHUP);
    assert!(status.success(), "exit status {status}");
    assert_eq!(last.expect("a final report")["final"], true);
    assert!(!link.receiver.has_xdp("vry"));
}

/// A device deleted and another created with its ifindex between two readings carries no
/// program: the served one is reported removed, the newcomer is not taken for it.
#[test]
#[ignore = "needs root"]
fn a_device_that_takes_a_removed_ones_ifindex_is_not_taken_for_it() {
    let link = Link::new("reuse");
    link.receiver
        .ip(&["link", "add", "vr2", "type", "veth", "peer", "name", "vs2"]);
    link.receiver.ip(&["link", "set", "vr2", "up"]);
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--iface", RECEIVER_IF, "--iface", "vr2", "--interval", "1"],
    );
    let ready = probe.wait_ready();
    let ifindex = interface(&ready, "vr2")["ifindex"]
        .as_u64()
        .expect("ifindex");
    link.receiver.ip(&["link", "del", "vr2"]);
    link.receiver.ip(&[
        "link",
        "add",
        "vr9",
        "index",
        &ifindex.to_string(),
        "type",
        "veth",
        "peer",
        "name",
        "vs9",
    ]);
    let report = probe.wait_for(Duration::from_secs(10), |report| {
        !report["removed"].as_array().expect("removed").is_empty()
    });
    assert_eq!(report["removed"][0]["name"], "vr2");
    let names = served(&report);
    assert_eq!(names, [RECEIVER_IF]);
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success());
}

/// Jumbo frames: on a veth with MTU 9000 the programs, which declare multi-buffer support
/// (`xdp.frags`), attach in native mode, and frames larger than a page, which arrive in several
/// buffers, are counted whole (every byte) and dropped.
#[test]
#[ignore = "needs root"]
fn jumbo_frames_are_counted_whole_and_dropped_in_native_mode() {
    let link = Link::new("jumbo");
    link.sender
        .ip(&["link", "set", testbed::SENDER_IF, "mtu", "9000"]);
    link.receiver
        .ip(&["link", "set", RECEIVER_IF, "mtu", "9000"]);
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    let probe = ProbeProcess::start(PROBE, &link.receiver, &["--drop", "--iface", RECEIVER_IF]);
    let ready = probe.wait_ready();
    assert_eq!(interface(&ready, RECEIVER_IF)["xdp_mode"], "native");
    let sender = link.raw_sender();
    let sizes = [9000, 4000, 1500];
    for size in sizes {
        // Ethernet, IPv4 and UDP headers take 42 bytes.
        let frame = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
            .macs(SENDER_MAC, RECEIVER_MAC)
            .ports(40000, 5353)
            .payload(&vec![0x5a; size - 42])
            .build();
        assert_eq!(frame.len(), size);
        for _ in 0..5 {
            sender.send(&frame);
        }
    }
    assert_eq!(receive(&server, 0, QUIET), 0, "dropped, jumbo or not");
    let report = probe.wait_for(Duration::from_secs(10), |report| {
        interface(report, RECEIVER_IF)["packets_dropped"] == 15
    });
    assert_eq!(
        interface(&report, RECEIVER_IF)["bytes_dropped"],
        5 * sizes.iter().sum::<usize>() as u64,
        "every buffer's bytes"
    );
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success());
}

/// Where a driver has no native XDP (a bridge), auto mode falls back to generic XDP, says why,
/// and counts there.
#[test]
#[ignore = "needs root"]
fn auto_mode_falls_back_to_generic_where_native_is_refused() {
    let link = Link::new("generic");
    link.receiver.ip(&["link", "add", "br0", "type", "bridge"]);
    link.receiver
        .ip(&["link", "set", RECEIVER_IF, "master", "br0"]);
    link.receiver.ip(&["link", "set", "br0", "up"]);
    link.receiver.wait_operational("br0");
    let probe = ProbeProcess::start(PROBE, &link.receiver, &["--iface", "br0"]);
    let ready = probe.wait_ready();
    assert_eq!(interface(&ready, "br0")["xdp_mode"], "generic");
    let sender = link.raw_sender();
    for _ in 0..10 {
        sender.send(&spoofed_to_localhost(5353));
    }
    probe.wait_for(Duration::from_secs(10), |report| {
        packets_matched(report, "br0") == 10
    });
    probe.wait_until_said("br0: no native XDP here (the driver refused it");
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success());
}

/// An interface deleted while served leaves the view once, reported with its final counts in
/// `removed`, which the totals keep; the probe goes on with the others.
#[test]
#[ignore = "needs root"]
fn a_deleted_interface_is_reported_once_and_its_counts_kept() {
    let link = Link::new("delete");
    link.receiver
        .ip(&["link", "add", "vr2", "type", "veth", "peer", "name", "vs2"]);
    link.receiver.ip(&["link", "set", "vr2", "up"]);
    link.receiver.ip(&["link", "set", "vs2", "up"]);
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--iface", RECEIVER_IF, "--iface", "vr2"],
    );
    probe.wait_ready();
    let doomed = link.receiver.enter(|| testbed::RawSender::open("vs2"));
    let frame = spoofed_to_localhost(5353);
    for _ in 0..7 {
        doomed.send(&frame);
    }
    for _ in 0..5 {
        link.raw_sender().send(&frame);
    }
    probe.wait_for(Duration::from_secs(10), |report| {
        packets_matched(report, "vr2") == 7 && packets_matched(report, RECEIVER_IF) == 5
    });
    link.receiver.ip(&["link", "del", "vr2"]);
    let report = probe.wait_for(Duration::from_secs(10), |report| {
        !report["removed"].as_array().expect("removed").is_empty()
    });
    let removed = &report["removed"][0];
    assert_eq!(removed["name"], "vr2");
    assert_eq!(removed["packets_matched"], 7);
    assert_eq!(
        report["interfaces"].as_array().expect("interfaces").len(),
        1
    );
    assert_eq!(report["totals"]["packets_matched"], 12);
    let later = probe.wait_for(Duration::from_secs(10), |_| true);
    assert!(
        later["removed"].as_array().expect("removed").is_empty(),
        "reported once"
    );
    assert_eq!(later["totals"]["packets_matched"], 12);
    let (status, last) = probe.stop(libc::SIGTERM);
    assert!(status.success());
    assert_eq!(last.expect("final report")["totals"]["packets_matched"], 12);
}

/// A reader that stops reading fills the pipe; SIGTERM still detaches and ends the probe.
#[test]
#[ignore = "needs root"]
fn a_stalled_reader_does_not_stop_sigterm_from_detaching() {
    let link = Link::new("stall");
    let (mut child, _unread) = start_piped(
        &link.receiver,
        &["--interval", "0.01", "--iface", RECEIVER_IF],
    );
    // A report is ~600 bytes: 100 a second fill the 64 KiB pipe in about a second.
    link.receiver
        .wait_for_xdp(RECEIVER_IF, Duration::from_secs(20));
    thread::sleep(Duration::from_secs(3));
    let status = child.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(!link.receiver.has_xdp(RECEIVER_IF));
}

/// A reader that goes away (`| head -1`) ends the run and detaches at once, not at the next
/// write an interval later.
#[test]
#[ignore = "needs root"]
fn a_reader_that_goes_away_ends_the_run_at_once() {
    let link = Link::new("gone");
    let (mut child, stdout) = start_piped(
        &link.receiver,
        &["--interval", "5", "--drop", "--iface", RECEIVER_IF],
    );
    let mut reader = BufReader::new(stdout);
    let mut first = String::new();
    reader.read_line(&mut first).expect("the first report");
    assert!(link.receiver.has_xdp(RECEIVER_IF));
    drop(reader);
    // The next report is 5 s away: the probe must not wait for it to notice.
    let status = wait_exit(&mut child.0, Duration::from_secs(3));
    assert!(status.success(), "exit status {status}");
    assert!(!link.receiver.has_xdp(RECEIVER_IF));
}
