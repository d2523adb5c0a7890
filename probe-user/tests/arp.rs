//! ARP with loopback addresses, as a neighbour scanning for route_localnet would send it: what
//! the kernel does with it (measured here, and asserted), and what the probe counts, drops and
//! shows of it. Needs root.

use std::{net::Ipv4Addr, time::Duration};

use serde_json::Value;
use test_frames::arp_request;
use testbed::{
    FrameReceiver, Link, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, RECEIVER_V4, SENDER_MAC,
    SENDER_V4, class_packets, interface,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const ETHERTYPE_ARP: u16 = 0x0806;
const TIMEOUT: Duration = Duration::from_secs(20);
/// Long enough for a reply to an ARP request, which the kernel sends at once.
const REPLY_WAIT: Duration = Duration::from_millis(500);
const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);
const LOOPBACK_SENDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const ARP_REPLY: u16 = 2;

/// What an ARP reply arriving at the sender said: who is at which MAC, and to whom.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    sender: Ipv4Addr,
    sender_mac: [u8; 6],
    target: Ipv4Addr,
}

fn replies(receiver: &FrameReceiver) -> Vec<Reply> {
    receiver
        .drain(REPLY_WAIT)
        .iter()
        .filter_map(|frame| {
            let packet = etherparse::ArpPacketSlice::from_slice(frame.get(14..)?).ok()?;
            let packet = packet.to_packet().try_eth_ipv4().ok()?;
            (packet.operation.0 == ARP_REPLY).then(|| Reply {
                sender: packet.sender_ipv4_addr(),
                sender_mac: packet.sender_mac,
                target: packet.target_ipv4_addr(),
            })
        })
        .collect()
}

fn reply(sender: Ipv4Addr, target: Ipv4Addr) -> Reply {
    Reply {
        sender,
        sender_mac: RECEIVER_MAC,
        target,
    }
}

fn who_has(target: Ipv4Addr, tell: Ipv4Addr) -> Vec<u8> {
    arp_request(tell, target)
        .macs(SENDER_MAC, [0xff; 6])
        .build()
}

/// `who_has` with IEEE 802's hardware type (6), which Linux answers on Ethernet too.
fn who_has_ieee802(target: Ipv4Addr, tell: Ipv4Addr) -> Vec<u8> {
    let mut frame = who_has(target, tell);
    frame[14..16].copy_from_slice(&6u16.to_be_bytes());
    frame
}

/// Whether the receiver's neighbour table holds an entry for `address` on its end of the pair.
fn neighbour_learned(link: &Link, address: Ipv4Addr) -> bool {
    let output = link.receiver.output(
        "ip",
        &["neigh", "show", &address.to_string(), "dev", RECEIVER_IF],
    );
    !String::from_utf8_lossy(&output.stdout).trim().is_empty()
}

/// The kernel's side, without the probe: `arp_process` answers requests for 127.0.0.0/8, and
/// accepts requests from a 127.x sender (learning it as a neighbour), only where route_localnet
/// is in effect on the interface (its own setting or conf.all); otherwise it discards both.
#[test]
#[ignore = "needs root"]
fn the_kernel_answers_arp_for_loopback_addresses_only_where_route_localnet_is_in_effect() {
    let link = Link::new("arpk");
    let sender = link.raw_sender();
    let receiver = link.sender_receiver(ETHERTYPE_ARP);
    let interface_key = format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet");
    for (all, own) in [("0", "0"), ("0", "1"), ("1", "0")] {
        link.receiver
            .sysctl("net/ipv4/conf/all/route_localnet", all);
        link.receiver.sysctl(&interface_key, own);
        link.receiver.ip(&["neigh", "flush", "dev", RECEIVER_IF]);
        let in_effect = all == "1" || own == "1";
        let what = format!("conf.all={all}, conf.{RECEIVER_IF}={own}");

        sender.send(&who_has(RECEIVER_V4, SENDER_V4));
        assert_eq!(
            replies(&receiver),
            [reply(RECEIVER_V4, SENDER_V4)],
            "an ordinary request is answered ({what})"
        );
        for loopback in [Ipv4Addr::LOCALHOST, RESOLVER] {
            let expected: &[Reply] = if in_effect {
                &[reply(loopback, SENDER_V4)]
            } else {
                &[]
            };
            sender.send(&who_has(loopback, SENDER_V4));
            assert_eq!(replies(&receiver), expected, "who-has {loopback} ({what})");
            sender.send(&who_has_ieee802(loopback, SENDER_V4));
            assert_eq!(
                replies(&receiver),
                expected,
                "who-has {loopback} with hardware type 6 ({what})"
            );
        }
        sender.send(&who_has(RECEIVER_V4, LOOPBACK_SENDER));
        let expected: &[Reply] = if in_effect {
            &[reply(RECEIVER_V4, LOOPBACK_SENDER)]
        } else {
            &[]
        };
        assert_eq!(
            replies(&receiver),
            expected,
            "a request from {LOOPBACK_SENDER} ({what})"
        );
        assert_eq!(
            neighbour_learned(&link, LOOPBACK_SENDER),
            in_effect,
            "{LOOPBACK_SENDER} learned as a neighbour ({what})"
        );
    }
}

fn events(probe: &ProbeProcess, direction: &str, count: usize) -> Vec<Value> {
    (0..count)
        .map(|_| {
            probe.wait_for(TIMEOUT, |line| {
                line["type"] == "event" && line["direction"] == direction
            })
        })
        .collect()
}

/// With the probe: requests for loopback addresses counted in their own family (`arp`,
/// `target`), and those from one (`source`); the host's answers counted leaving as replies
/// (from 127.x: `source`; to a neighbour that claimed 127.x: `target`) that mark the interface
/// exploited, events that say what the packets said; with `--drop` no answer leaves and no
/// 127.x sender is learned.
#[test]
#[ignore = "needs root"]
fn arp_for_loopback_addresses_is_counted_dropped_and_its_replies_seen_leaving() {
    const SCANS: u64 = 5;
    let link = Link::new("arpp");
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let sender = link.raw_sender();
    let receiver = link.sender_receiver(ETHERTYPE_ARP);
    let scan = who_has(Ipv4Addr::LOCALHOST, SENDER_V4);
    let benign = who_has(RECEIVER_V4, SENDER_V4);

    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--egress", "--events", "--iface", RECEIVER_IF],
    );
    probe.wait_ready();
    for _ in 0..SCANS {
        sender.send(&scan);
        sender.send(&benign);
    }
    let answers = replies(&receiver);
    assert_eq!(
        answers
            .iter()
            .filter(|answer| answer.sender == Ipv4Addr::LOCALHOST)
            .count() as u64,
        SCANS,
        "monitor mode lets the kernel answer: {answers:?}"
    );
    // A neighbour claiming a loopback address is answered too, to that address.
    let from_loopback = who_has(RECEIVER_V4, LOOPBACK_SENDER);
    for _ in 0..SCANS {
        sender.send(&from_loopback);
    }
    assert_eq!(
        replies(&receiver),
        (0..SCANS)
            .map(|_| reply(RECEIVER_V4, LOOPBACK_SENDER))
            .collect::<Vec<_>>()
    );
    let arriving = events(&probe, "ingress", 1).remove(0);
    assert_eq!(arriving["family"], "arp");
    assert_eq!(arriving["address"], "target");
    assert_eq!(arriving["action"], "passed");
    assert_eq!(arriving["protocol"], "arp");
    assert_eq!(arriving["source_ip"], SENDER_V4.to_string());
    assert_eq!(arriving["destination_ip"], "127.0.0.1");
    assert_eq!(arriving["arp"]["operation"], "request");
    assert_eq!(arriving["arp"]["sender_mac"], "02:4c:50:00:00:01");
    assert_eq!(arriving["frame_len"], scan.len());
    let leaving = events(&probe, "egress", 1).remove(0);
    assert_eq!(leaving["family"], "arp");
    assert_eq!(leaving["address"], "source");
    assert_eq!(leaving["action"], "replied");
    assert_eq!(leaving["source_ip"], "127.0.0.1");
    assert_eq!(leaving["arp"]["operation"], "reply");
    assert_eq!(leaving["arp"]["sender_mac"], "02:4c:50:00:00:02");

    // Counted before their samples are all read: wait for both senders too.
    let report = probe.wait_for(TIMEOUT, |line| {
        line["type"] == "counters"
            && interface(line, RECEIVER_IF)["packets_replied"]
                .as_u64()
                .is_some_and(|replied| replied >= 2 * SCANS)
            && interface(line, RECEIVER_IF)["top_senders_sampled"]
                .as_array()
                .is_some_and(|senders| {
                    senders.len() == 2 && senders.iter().all(|sender| sender["samples"] == SCANS)
                })
    });
    let entry = interface(&report, RECEIVER_IF);
    assert_eq!(
        entry["packets_matched"],
        2 * SCANS,
        "benign ARP is not counted"
    );
    assert_eq!(entry["bytes_matched"], 2 * SCANS * scan.len() as u64);
    assert_eq!(class_packets(entry, "arp", "target", "passed"), SCANS);
    assert_eq!(class_packets(entry, "arp", "source", "passed"), SCANS);
    assert_eq!(class_packets(entry, "arp", "source", "replied"), SCANS);
    assert_eq!(
        class_packets(entry, "arp", "target", "replied"),
        SCANS,
        "answers to a loopback address leave too"
    );
    assert_eq!(entry["exploited"], true, "{entry}");
    probe.wait_until_said("this host answered ARP for a loopback address");
    let mut senders: Vec<(String, u64)> = entry["top_senders_sampled"]
        .as_array()
        .expect("top senders")
        .iter()
        .map(|sender| {
            (
                sender["source_ip"].as_str().expect("an address").to_owned(),
                sender["samples"].as_u64().expect("a count"),
            )
        })
        .collect();
    senders.sort();
    assert_eq!(
        senders,
        [
            (LOOPBACK_SENDER.to_string(), SCANS),
            (SENDER_V4.to_string(), SCANS)
        ],
        "the ARP senders' protocol addresses, the host's own answers not among them"
    );
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success());

    link.receiver.ip(&["neigh", "flush", "dev", RECEIVER_IF]);
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--egress", "--drop", "--iface", RECEIVER_IF],
    );
    probe.wait_ready();
    let scan_ieee802 = who_has_ieee802(Ipv4Addr::LOCALHOST, SENDER_V4);
    for _ in 0..SCANS {
        sender.send(&scan);
        sender.send(&scan_ieee802);
        sender.send(&from_loopback);
        sender.send(&benign);
    }
    let answers = replies(&receiver);
    assert_eq!(
        answers,
        (0..SCANS)
            .map(|_| reply(RECEIVER_V4, SENDER_V4))
            .collect::<Vec<_>>(),
        "only the benign requests are answered"
    );
    assert!(!neighbour_learned(&link, LOOPBACK_SENDER));
    let report = probe.wait_for(TIMEOUT, |line| {
        interface(line, RECEIVER_IF)["packets_dropped"]
            .as_u64()
            .is_some_and(|dropped| dropped >= 3 * SCANS)
    });
    let entry = interface(&report, RECEIVER_IF);
    assert_eq!(entry["packets_dropped"], 3 * SCANS);
    assert_eq!(class_packets(entry, "arp", "target", "dropped"), 2 * SCANS);
    assert_eq!(class_packets(entry, "arp", "source", "dropped"), SCANS);
    assert_eq!(class_packets(entry, "arp", "source", "replied"), 0);
    assert_eq!(entry["exploited"], false);
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success());
}
