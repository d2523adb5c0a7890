//! The tc hooks, as users meet them: an interface another XDP program holds is refused, left
//! out, or served at tc ingress beside it (counting and dropping exactly there, standing
//! filter included); and a loopback-bound service's reply to a spoofed SYN is counted leaving
//! the interface, unless the SYN was dropped. Needs root.
//!
//! The probe attaches there through tcx links, or through clsact filters where the kernel has
//! no tcx: each test expects what the feature probe finds, so on a kernel with tcx they run
//! twice (`cargo xtask test` runs them again with `LOCALNET_PROBE_WITHOUT=tcx`, which the
//! probes they start inherit), and on 6.1 in the kernel matrix they try the real fallback.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    thread,
    time::Duration,
};

use probe_user::kernel::features::KernelFeatures;
use serde_json::Value;
use test_frames::{TPID_8021AD, TPID_8021Q, ipv4};
use testbed::{
    ForeignTcx, ForeignXdp, Link, Netns, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, RECEIVER_V4,
    SENDER_MAC, SENDER_V4, class_packets, foreign_filter, interface, only_caps, receive, served,
    stderr_of,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const QUIET: Duration = Duration::from_millis(300);
const TIMEOUT: Duration = Duration::from_secs(20);
const UDP_PORT: u16 = 5353;
const TCP_PORT: u16 = 8080;

fn spoofed_to_localhost() -> Vec<u8> {
    ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, UDP_PORT)
        .build()
}

fn benign() -> Vec<u8> {
    ipv4(SENDER_V4, RECEIVER_V4)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 9)
        .build()
}

/// A TCP SYN from the sender to 127.0.0.1:TCP_PORT, as a neighbour exploiting route_localnet
/// sends it.
fn spoofed_syn(source_port: u16) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2(SENDER_MAC, RECEIVER_MAC)
        .ipv4(SENDER_V4.octets(), Ipv4Addr::LOCALHOST.octets(), 64)
        .tcp(source_port, TCP_PORT, 1, 64240)
        .syn();
    let mut frame = Vec::with_capacity(builder.size(0));
    builder.write(&mut frame, &[]).expect("writing to a Vec");
    frame
}

/// How the probe attaches at tc hooks here: `tcx`, or `tc` (a clsact filter) where the kernel
/// has no tcx or `LOCALNET_PROBE_WITHOUT=tcx` says to act as if.
fn tc_hook() -> &'static str {
    if KernelFeatures::probe().expect("probe the kernel").tcx {
        "tcx"
    } else {
        "tc"
    }
}

/// The programs at `dev`'s tc ingress (or egress) where the probe attaches, in the order they
/// run: the tcx chain's ids, or the clsact filters' (0 for one without an eBPF program).
fn programs_at(netns: &Netns, dev: &str, egress: bool) -> Vec<u32> {
    if tc_hook() == "tcx" {
        netns.tcx_programs(dev, egress)
    } else {
        netns
            .clsact_filters(dev, egress)
            .into_iter()
            .map(|(_, id)| id.unwrap_or(0))
            .collect()
    }
}

/// Another tool's program at tc ingress that ends the chain (passes frames to the stack), where
/// the probe attaches: a tcx program, or a classic BPF clsact filter (id 0), last or first.
enum ForeignTc {
    Tcx(ForeignTcx),
    Filter,
}

impl ForeignTc {
    fn attach(netns: &Netns, dev: &str, first: bool) -> Self {
        match (tc_hook(), first) {
            ("tcx", false) => Self::Tcx(ForeignTcx::attach(netns, dev)),
            ("tcx", true) => Self::Tcx(ForeignTcx::attach_first(netns, dev)),
            // After the probe's priority, or at its priority, where a filter added later runs
            // first.
            (_, false) => {
                foreign_filter(netns, dev, 2, 7);
                Self::Filter
            }
            (_, true) => {
                foreign_filter(netns, dev, 1, 7);
                Self::Filter
            }
        }
    }

    const fn id(&self) -> u32 {
        match self {
            Self::Tcx(foreign) => foreign.id,
            Self::Filter => 0,
        }
    }
}

fn count(entry: &Value, field: &str) -> u64 {
    entry[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field}: {entry}"))
}

/// By default an occupied interface is an error that names the way out; with `skip` it is left
/// out with a warning and the others are served.
#[test]
#[ignore = "needs root"]
fn an_occupied_interface_is_refused_by_default_and_left_out_with_skip() {
    let link = Link::new("conflict");
    let _foreign = ForeignXdp::attach(&link.receiver, RECEIVER_IF);
    link.receiver.ip(&[
        "link", "add", "spare0", "type", "veth", "peer", "name", "spare1",
    ]);
    for spare in ["spare0", "spare1"] {
        link.receiver.ip(&["link", "set", spare, "up"]);
    }

    let refused = link.receiver.output(
        PROBE,
        &["run", "--json", "--duration", "1", "--iface", RECEIVER_IF],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", stderr_of(&refused));
    let said = stderr_of(&refused);
    assert!(
        said.contains("vrx already has an XDP program attached")
            && said.contains(ForeignXdp::NAME)
            && said.contains("--on-conflict tc")
            && said.contains("--on-conflict skip"),
        "names the program and the ways out: {said}"
    );
    assert!(programs_at(&link.receiver, RECEIVER_IF, false).is_empty());

    let skipping = ProbeProcess::start(PROBE, &link.receiver, &["--on-conflict", "skip"]);
    let ready = skipping.wait_ready();
    let mut names = served(&ready);
    names.sort_unstable();
    assert_eq!(names, ["spare0", "spare1"]);
    let said = skipping.wait_until_said("vrx: left out: another XDP program holds it");
    assert!(said.contains("WARN"), "warns: {said}");
    let (status, _) = skipping.stop(libc::SIGTERM);
    assert!(status.success());

    // Without --iface, finding nothing to serve is an error, also when skip is why.
    for spare in ["spare0", "spare1"] {
        link.receiver.ip(&["link", "set", spare, "down"]);
    }
    let nothing = link.receiver.output(
        PROBE,
        &["run", "--json", "--duration", "1", "--on-conflict", "skip"],
    );
    assert!(!nothing.status.success());
    assert!(
        stderr_of(&nothing).contains("another XDP program holds every one that is up"),
        "{}",
        stderr_of(&nothing)
    );
}

/// With `--on-conflict tc`, an interface another XDP program holds is served at tc ingress
/// beside it, and before a tc program that ends the chain: in monitor mode every loopback
/// frame is counted and delivered, in drop mode counted and dropped, benign frames never
/// counted; the other programs stay, and ours go when the probe ends. Run as nobody with
/// exactly CAP_BPF and CAP_NET_ADMIN.
#[test]
#[ignore = "needs root"]
fn beside_another_xdp_program_it_counts_and_drops_at_tc_ingress() {
    let link = Link::new("tcx");
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, UDP_PORT)));
    let _foreign = ForeignXdp::attach(&link.receiver, RECEIVER_IF);
    // And a tc program that ends the chain, as Cilium's do: ours goes before it.
    let foreign_tc = ForeignTc::attach(&link.receiver, RECEIVER_IF, false);
    let hook = tc_hook();
    let sender = link.raw_sender();
    let (spoofed, benign) = (spoofed_to_localhost(), benign());

    for (mode, delivered) in [("monitor", 50), ("drop", 0)] {
        let args: &[&str] = if mode == "drop" {
            &["--on-conflict", "tc", "--iface", RECEIVER_IF, "--drop"]
        } else {
            &["--on-conflict", "tc", "--iface", RECEIVER_IF]
        };
        // The two capabilities of docs/kernels.md suffice at tc ingress and egress, tcx or clsact.
        let wrapper = only_caps("+bpf,+net_admin");
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        let args = [args, &["--egress"]].concat();
        let probe = ProbeProcess::start_wrapped(&wrapper, PROBE, &link.receiver, &args);
        let ready = probe.wait_ready();
        let entry = interface(&ready, RECEIVER_IF);
        assert_eq!(entry["hook"], hook, "{entry}");
        assert_eq!(entry["egress_hook"], hook, "{entry}");
        assert_eq!(entry["xdp_mode"], Value::Null);
        assert_eq!(entry["mode"], mode);
        let chain = programs_at(&link.receiver, RECEIVER_IF, false);
        assert_eq!(chain.len(), 2, "beside the other tc program: {chain:?}");
        assert_eq!(
            chain[1],
            foreign_tc.id(),
            "first in the chain, the other one kept"
        );
        assert_eq!(programs_at(&link.receiver, RECEIVER_IF, true).len(), 1);
        assert!(
            link.receiver.has_xdp(RECEIVER_IF),
            "the other program stays"
        );
        let said = probe.wait_until_said("beside another XDP program");
        assert!(said.contains(&format!("({hook} ingress")), "{said}");

        // A second probe is refused there, whatever --on-conflict says: it is served.
        let second = link.receiver.output(
            PROBE,
            &[
                "run",
                "--json",
                "--duration",
                "1",
                "--on-conflict",
                "tc",
                "--iface",
                RECEIVER_IF,
            ],
        );
        assert_eq!(second.status.code(), Some(1), "{}", stderr_of(&second));
        assert!(
            stderr_of(&second).contains(&format!(
                "vrx is already served by localnet-probe at {hook} ingress"
            )),
            "{}",
            stderr_of(&second)
        );
        assert_eq!(
            programs_at(&link.receiver, RECEIVER_IF, false).len(),
            2,
            "a start never removes a live probe's filter"
        );

        for _ in 0..50 {
            sender.send(&spoofed);
            sender.send(&benign);
        }
        assert_eq!(receive(&server, delivered, QUIET), delivered, "{mode}");
        let report = probe.wait_for(TIMEOUT, |report| {
            count(interface(report, RECEIVER_IF), "packets_matched") == 50
        });
        let entry = interface(&report, RECEIVER_IF);
        let action = if mode == "drop" { "dropped" } else { "passed" };
        assert_eq!(
            class_packets(entry, "ipv4", "destination", action),
            50,
            "{entry}"
        );
        assert_eq!(
            count(entry, "bytes_matched"),
            50 * spoofed.len() as u64,
            "counts whole frames, Ethernet header included"
        );
        let (status, _) = probe.stop(libc::SIGTERM);
        assert!(status.success());
        assert_eq!(
            programs_at(&link.receiver, RECEIVER_IF, false),
            [foreign_tc.id()]
        );
        assert!(programs_at(&link.receiver, RECEIVER_IF, true).is_empty());
        assert!(
            link.receiver.has_xdp(RECEIVER_IF),
            "the other program stays"
        );
    }
}

/// A standing filter at tc (tcx, or clsact filters): pinned, it goes on dropping after the
/// process ends; `status` shows the hook; a takeover without --egress detaches only the egress
/// program, keeping the counts; `detach` removes ours (and a clsact qdisc it added) and leaves
/// the other program.
#[test]
#[ignore = "needs root"]
fn a_standing_filter_at_tc_is_taken_over_and_detached() {
    let link = Link::new("tcx-pin");
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, UDP_PORT)));
    let _foreign = ForeignXdp::attach(&link.receiver, RECEIVER_IF);
    let pinned_args = ["--on-conflict", "tc", "--drop", "--iface", RECEIVER_IF];

    let first = ProbeProcess::start_pinned(
        PROBE,
        &link.receiver,
        &[&pinned_args[..], &["--egress"]].concat(),
    );
    first.wait_ready();
    let (status, _) = first.stop(libc::SIGTERM);
    assert!(status.success());
    let hook = tc_hook();
    let ingress = programs_at(&link.receiver, RECEIVER_IF, false);
    assert_eq!(ingress.len(), 1, "pinned at ingress");
    assert_eq!(programs_at(&link.receiver, RECEIVER_IF, true).len(), 1);

    let sender = link.raw_sender();
    for _ in 0..10 {
        sender.send(&spoofed_to_localhost());
    }
    assert_eq!(
        receive(&server, 0, QUIET),
        0,
        "dropped with no process running"
    );
    let output = link.receiver.output(PROBE, &["status", "--json"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let shown: Value = serde_json::from_slice(&output.stdout).expect("status writes JSON");
    let entry = interface(&shown, RECEIVER_IF);
    assert_eq!(entry["hook"], hook, "{entry}");
    assert_eq!(entry["egress"], true);
    assert_eq!(entry["egress_hook"], hook, "{entry}");
    assert_eq!(count(entry, "packets_dropped"), 10);

    let second = ProbeProcess::start_pinned(PROBE, &link.receiver, &pinned_args);
    let ready = second.wait_ready();
    let entry = interface(&ready, RECEIVER_IF);
    assert_eq!(entry["hook"], hook);
    assert_eq!(entry["egress"], false);
    assert_eq!(count(entry, "packets_dropped"), 10, "counts kept");
    let ingress_now = programs_at(&link.receiver, RECEIVER_IF, false);
    assert_eq!(
        ingress_now.len(),
        1,
        "the link or filter kept, its program replaced"
    );
    assert_ne!(ingress_now, ingress);
    assert!(programs_at(&link.receiver, RECEIVER_IF, true).is_empty());
    second.wait_until_said("counted replies leaving it, this run does not");
    let (status, _) = second.stop(libc::SIGTERM);
    assert!(status.success());

    let detached = link.receiver.output(PROBE, &["detach"]);
    assert!(detached.status.success(), "{}", stderr_of(&detached));
    assert!(programs_at(&link.receiver, RECEIVER_IF, false).is_empty());
    assert!(
        !link.receiver.has_clsact(RECEIVER_IF),
        "the clsact qdisc the probe added goes with its last filter"
    );
    assert!(
        link.receiver.has_xdp(RECEIVER_IF),
        "the other program stays"
    );
}

/// The proof an exposure was used: with route_localnet=1 and a TCP service on 127.0.0.1, a
/// neighbour's spoofed SYN is answered by a SYN-ACK with source 127.0.0.1, which `--egress`
/// counts leaving the interface (sampled with its direction) and marks exploited; with
/// `--drop` the SYN never arrives and nothing leaves.
#[test]
#[ignore = "needs root"]
fn a_reply_to_a_spoofed_syn_is_counted_leaving_unless_the_syn_is_dropped() {
    let link = Link::new("reply");
    for (key, value) in [
        (format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1"),
        ("net/ipv4/conf/all/rp_filter".to_owned(), "0"),
        (format!("net/ipv4/conf/{RECEIVER_IF}/rp_filter"), "0"),
    ] {
        link.receiver.sysctl(&key, value);
    }
    // The neighbour is known: otherwise the SYN-ACK waits for an ARP reply to a request whose
    // sender address is 127.0.0.1, which no stack answers.
    let sender_mac = SENDER_MAC
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    link.receiver.ip(&[
        "neigh",
        "replace",
        &SENDER_V4.to_string(),
        "lladdr",
        &sender_mac,
        "dev",
        RECEIVER_IF,
        "nud",
        "permanent",
    ]);
    let listen = || {
        link.receiver.enter(|| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, TCP_PORT)).expect("bind 127.0.0.1:8080")
        })
    };
    let service = listen();
    let sender = link.raw_sender();

    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--egress", "--events", "--iface", RECEIVER_IF],
    );
    let ready = probe.wait_ready();
    assert_eq!(interface(&ready, RECEIVER_IF)["egress"], true);
    assert_eq!(interface(&ready, RECEIVER_IF)["egress_hook"], tc_hook());
    assert_eq!(programs_at(&link.receiver, RECEIVER_IF, true).len(), 1);
    sender.send(&spoofed_syn(40001));
    let event = probe.wait_for(TIMEOUT, |line| {
        line["type"] == "event" && line["direction"] == "egress"
    });
    assert_eq!(event["action"], "replied");
    assert_eq!(event["source_ip"], "127.0.0.1");
    assert_eq!(event["destination_ip"], SENDER_V4.to_string());
    assert_eq!(event["tcp_flags"], "S.");
    let report = probe.wait_for(TIMEOUT, |line| {
        line["type"] == "counters" && count(interface(line, RECEIVER_IF), "packets_replied") >= 1
    });
    let entry = interface(&report, RECEIVER_IF);
    assert_eq!(entry["exploited"], true);
    assert_eq!(count(entry, "packets_matched"), 1, "the SYN alone arrived");
    assert_eq!(
        class_packets(entry, "ipv4", "source", "replied"),
        count(entry, "packets_replied")
    );
    assert_eq!(
        entry["top_senders_sampled"],
        serde_json::json!([{
            "source_mac": "02:4c:50:00:00:01",
            "source_ip": "198.18.0.1",
            "samples": 1
        }]),
        "the host's own replies are no sender"
    );
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success());
    assert!(programs_at(&link.receiver, RECEIVER_IF, true).is_empty());
    assert!(!link.receiver.has_clsact(RECEIVER_IF));
    // A new listener: the old one's half-open connection would go on retransmitting its
    // SYN-ACK.
    drop(service);
    let _service = listen();

    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--egress", "--drop", "--iface", RECEIVER_IF],
    );
    probe.wait_ready();
    sender.send(&spoofed_syn(40002));
    probe.wait_for(TIMEOUT, |report| {
        count(interface(report, RECEIVER_IF), "packets_dropped") == 1
    });
    // A SYN-ACK leaves within a millisecond of the SYN, a retransmission within a second.
    thread::sleep(Duration::from_millis(1500));
    let (status, last) = probe.stop(libc::SIGTERM);
    assert!(status.success());
    let entry = interface(last.as_ref().expect("a final report"), RECEIVER_IF).clone();
    assert_eq!(count(&entry, "packets_replied"), 0, "{entry}");
    assert_eq!(entry["exploited"], false);
}

/// At tcx a frame's outer VLAN tag may already be off the frame, in the socket buffer's
/// metadata (veth takes it off): it is counted in the frame's bytes and put back into samples,
/// so events show what was on the wire, and a frame behind three tags is not matched, as at
/// XDP.
#[test]
#[ignore = "needs root"]
fn at_tcx_a_tag_taken_off_the_frame_is_counted_and_put_back_into_samples() {
    let link = Link::new("tcx-vlan");
    let _foreign = ForeignXdp::attach(&link.receiver, RECEIVER_IF);
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--on-conflict", "tc", "--events", "--iface", RECEIVER_IF],
    );
    probe.wait_ready();
    let tagged = |tpids: &[u16]| {
        tpids
            .iter()
            .fold(
                ipv4(SENDER_V4, Ipv4Addr::LOCALHOST).macs(SENDER_MAC, RECEIVER_MAC),
                |builder, tpid| builder.vlan(*tpid),
            )
            .build()
    };
    let single = tagged(&[TPID_8021Q]);
    let double = tagged(&[TPID_8021AD, TPID_8021Q]);
    // Behind three tags, never matched at XDP: at tcx neither, the outer one taken off or not.
    let triple = tagged(&[TPID_8021AD, TPID_8021Q, TPID_8021Q]);
    let sender = link.raw_sender();
    sender.send(&triple);
    sender.send(&single);
    sender.send(&double);
    // Events come as the frames do, the counters at each interval: both, in whatever order.
    let mut vlans = std::collections::BTreeMap::new();
    let mut bytes = None;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while vlans.len() < 2 || bytes.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = probe
            .next_report(left)
            .unwrap_or_else(|_| panic!("no events and counts; stderr: {}", probe.stderr()));
        if line["type"] == "event" {
            vlans.insert(count(&line, "frame_len"), line["vlans"].clone());
        } else if count(interface(&line, RECEIVER_IF), "packets_matched") == 2 {
            bytes = Some(count(interface(&line, RECEIVER_IF), "bytes_matched"));
        }
    }
    assert_eq!(bytes, Some((single.len() + double.len()) as u64));
    assert_eq!(vlans[&(single.len() as u64)], serde_json::json!([100]));
    assert_eq!(vlans[&(double.len() as u64)], serde_json::json!([100, 101]));
}

/// A program attached before the probe's at tc ingress later (another tool that insists on
/// going first) can pass frames to the stack unseen: the probe says so, its report names the
/// program, and the link counts as exposed again although the probe is in drop mode.
#[test]
#[ignore = "needs root"]
fn a_program_put_before_it_later_is_said_and_the_link_exposed_again() {
    let link = Link::new("tcx-ahead");
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, UDP_PORT)));
    let _foreign = ForeignXdp::attach(&link.receiver, RECEIVER_IF);
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--on-conflict", "tc", "--drop", "--iface", RECEIVER_IF],
    );
    let ready = probe.wait_ready();
    assert_eq!(interface(&ready, RECEIVER_IF)["exposed"], false);
    assert_eq!(
        interface(&ready, RECEIVER_IF)["tcx_preceded_by"],
        serde_json::json!({ "ingress": [], "egress": [] })
    );

    let ahead = ForeignTc::attach(&link.receiver, RECEIVER_IF, true);
    let report = probe.wait_for(TIMEOUT, |report| {
        interface(report, RECEIVER_IF)["tcx_preceded_by"]["ingress"]
            == serde_json::json!([ahead.id()])
    });
    assert_eq!(interface(&report, RECEIVER_IF)["exposed"], true);
    probe.wait_until_said("now run(s) before localnet-probe");
    let sender = link.raw_sender();
    for _ in 0..10 {
        sender.send(&spoofed_to_localhost());
    }
    assert_eq!(
        receive(&server, 10, QUIET),
        10,
        "passed by the program ahead"
    );
    let (status, last) = probe.stop(libc::SIGTERM);
    assert!(status.success());
    assert_eq!(
        count(
            interface(last.as_ref().expect("a final report"), RECEIVER_IF),
            "packets_matched"
        ),
        0,
        "never seen"
    );
}

/// The probe's tc attachments go on every way out, and never another tool's: with another
/// tool's filter on the same clsact qdisc, a probe ended by SIGINT, by `--duration` or by an
/// error at start leaves that filter alone and nothing of its own; one killed with SIGKILL
/// leaves its clsact filters (a filter belongs to no process), which the next start finds
/// (its owner gone) and removes, saying so, as `detach` does with no standing filter pinned.
/// With tcx, SIGKILL leaves nothing to find.
#[test]
#[ignore = "needs root"]
fn its_filters_go_on_every_way_out_even_sigkill_and_anothers_stay() {
    let link = Link::new("tc-out");
    let netns = &link.receiver;
    let _foreign = ForeignXdp::attach(netns, RECEIVER_IF);
    foreign_filter(netns, RECEIVER_IF, 2, 7);
    let hook = tc_hook();
    let theirs = vec![(7, None)];
    let args = ["--on-conflict", "tc", "--egress", "--iface", RECEIVER_IF];
    let nothing_of_ours_left = |after: &str| {
        assert_eq!(netns.clsact_filters(RECEIVER_IF, false), theirs, "{after}");
        assert!(
            netns.clsact_filters(RECEIVER_IF, true).is_empty(),
            "{after}"
        );
        assert!(netns.tcx_programs(RECEIVER_IF, false).is_empty(), "{after}");
        assert!(netns.tcx_programs(RECEIVER_IF, true).is_empty(), "{after}");
        assert!(
            netns.has_xdp(RECEIVER_IF),
            "{after}: the other XDP program stays"
        );
    };

    let probe = ProbeProcess::start(PROBE, netns, &args);
    assert_eq!(interface(&probe.wait_ready(), RECEIVER_IF)["hook"], hook);
    assert_eq!(programs_at(netns, RECEIVER_IF, true).len(), 1);
    let (status, _) = probe.stop(libc::SIGINT);
    assert!(status.success());
    nothing_of_ours_left("SIGINT");

    let timed = netns.output(
        PROBE,
        &[&["run", "--json", "--duration", "0.5"][..], &args].concat(),
    );
    assert!(timed.status.success(), "{}", stderr_of(&timed));
    nothing_of_ours_left("--duration");

    if hook == "tc" {
        // A device where another tool's filter holds the probe's priority at egress for
        // another protocol: the probe's filter cannot be made there, so the start fails, all
        // or nothing.
        netns.ip(&[
            "link", "add", "spare0", "type", "veth", "peer", "name", "spare1",
        ]);
        netns.tc(&["qdisc", "add", "dev", "spare0", "clsact"]);
        netns.tc(&[
            "filter",
            "add",
            "dev",
            "spare0",
            "egress",
            "protocol",
            "ip",
            "prio",
            "1",
            "handle",
            "9",
            "bpf",
            "bytecode",
            "1,6 0 0 0,",
        ]);
        let failed = netns.output(
            PROBE,
            &[
                "run",
                "--json",
                "--duration",
                "1",
                "--egress",
                "--iface",
                RECEIVER_IF,
                "--iface",
                "spare0",
                "--xdp-mode",
                "generic",
                "--on-conflict",
                "tc",
            ],
        );
        assert_eq!(failed.status.code(), Some(1), "{}", stderr_of(&failed));
        assert!(
            stderr_of(&failed).contains("clsact filter at tc egress"),
            "{}",
            stderr_of(&failed)
        );
        nothing_of_ours_left("an error at start");
        assert!(!netns.has_xdp("spare0"));
        assert_eq!(netns.clsact_filters("spare0", true), [(9, None)]);
    }

    let killed = ProbeProcess::start(PROBE, netns, &args);
    killed.wait_ready();
    let (status, _) = killed.stop(libc::SIGKILL);
    assert!(!status.success());
    let left = programs_at(netns, RECEIVER_IF, false);
    if hook == "tc" {
        assert_eq!(
            left.len(),
            2,
            "its filter outlives it, beside theirs: {left:?}"
        );
        assert_eq!(netns.clsact_filters(RECEIVER_IF, true).len(), 1);
    } else {
        assert!(left.is_empty(), "its tcx link dies with it: {left:?}");
    }

    let next = ProbeProcess::start(PROBE, netns, &args);
    let ready = next.wait_ready();
    assert_eq!(interface(&ready, RECEIVER_IF)["hook"], hook, "served again");
    if hook == "tc" {
        let said = next.wait_until_said("removed the clsact filter at tc egress");
        assert!(
            said.contains("removed the clsact filter at tc ingress"),
            "{said}"
        );
    }
    // Its own, and at clsact ingress theirs.
    let expected = if hook == "tc" { 2 } else { 1 };
    assert_eq!(programs_at(netns, RECEIVER_IF, false).len(), expected);
    let (status, _) = next.stop(libc::SIGTERM);
    assert!(status.success());
    nothing_of_ours_left("SIGKILL, then a start and SIGTERM");

    // Killed again, with no standing filter pinned: `detach` removes what it left.
    let killed = ProbeProcess::start(PROBE, netns, &args);
    killed.wait_ready();
    let (status, _) = killed.stop(libc::SIGKILL);
    assert!(!status.success());
    let detach = netns.output(PROBE, &["detach"]);
    assert!(detach.status.success(), "detach: {}", stderr_of(&detach));
    if hook == "tc" {
        assert!(
            stderr_of(&detach).contains("removed the clsact filter at tc egress"),
            "{}",
            stderr_of(&detach)
        );
    }
    nothing_of_ours_left("SIGKILL, then detach");
}
