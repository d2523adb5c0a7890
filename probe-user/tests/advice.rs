//! The audit's commands for localnet-probe to drop on an exposed interface, pasted as an operator
//! would (`sh -c` in the namespace, `nsenter`): beside a standing filter on two interfaces, one
//! dropping, taking it over keeps both and their modes, attaches nothing else, and spoofed frames
//! to both are then dropped; an admin-down interface (not selected by default) is served by the
//! command given for it, and the `run --pin` given to keep it adds it to the standing filter
//! without changing the others. Needs root.

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use serde_json::Value;
use test_frames::ipv4;
use testbed::{Netns, ProbeProcess, RawSender, advised, pasted, receive, served};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const UDP_PORT: u16 = 5353;
const SPOOFED: usize = 5;
const QUIET: Duration = Duration::from_millis(300);

/// Each audited interface, its peer, and the last byte of their MACs and subnet.
const PAIRS: [(&str, &str, u8); 3] = [("va", "pa", 1), ("vb", "pb", 2), ("vc", "pc", 3)];

fn mac(pair: u8, end: u8) -> [u8; 6] {
    [0x02, 0x4c, 0x50, 0, pair, end]
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

/// A namespace with the pairs, each audited end with an address and route_localnet=1, and a
/// UDP socket on 127.0.0.1 there.
fn namespace() -> (Netns, UdpSocket) {
    let netns = Netns::new("advice");
    for (name, peer, pair) in PAIRS {
        netns.ip(&[
            "link",
            "add",
            name,
            "address",
            &mac_text(mac(pair, 2)),
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "address",
            &mac_text(mac(pair, 1)),
        ]);
        netns.ip(&["addr", "add", &format!("198.18.{pair}.2/24"), "dev", name]);
        netns.ip(&["link", "set", name, "up"]);
        netns.ip(&["link", "set", peer, "up"]);
        netns.sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1");
    }
    let socket = netns.enter(|| {
        let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, UDP_PORT)))
            .expect("bind the UDP socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set timeout");
        socket
    });
    for (name, peer, _) in PAIRS {
        netns.wait_operational(name);
        netns.wait_operational(peer);
    }
    (netns, socket)
}

/// Spoofed datagrams to 127.0.0.1 from `peer` to its pair's audited end: how many arrived.
fn delivered(netns: &Netns, socket: &UdpSocket, peer: &str, expected: usize) -> usize {
    let (_, _, pair) = PAIRS.iter().find(|(_, p, _)| *p == peer).expect("a peer");
    let frame = ipv4(Ipv4Addr::new(198, 18, *pair, 1), Ipv4Addr::LOCALHOST)
        .macs(mac(*pair, 1), mac(*pair, 2))
        .ports(40000, UDP_PORT)
        .build();
    netns.enter(|| {
        let sender = RawSender::open(peer);
        for _ in 0..SPOOFED {
            sender.send(&frame);
        }
    });
    receive(socket, expected, QUIET)
}

/// The remedy `audit --json` gives for localnet-probe to drop on `name`.
fn drop_remedy(netns: &Netns, name: &str) -> String {
    let output = netns.output(PROBE, &["audit", "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "audit's stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|finding| finding["interface"] == name && finding["kind"] == "reachable-services")
        .flat_map(|finding| finding["remedies"].as_array().expect("remedies"))
        .filter_map(Value::as_str)
        .find(|remedy| remedy.starts_with("or drop frames with loopback addresses"))
        .unwrap_or_else(|| panic!("no remedy for {name} in {report}"))
        .to_owned()
}

/// The standing filter's interfaces and their modes, as `status` reads the pins.
fn standing(netns: &Netns) -> Vec<(String, String)> {
    let output = netns.output(PROBE, &["status", "--json"]);
    assert!(output.status.success(), "status: {output:?}");
    let report: Value = serde_json::from_slice(
        output
            .stdout
            .split(|byte| *byte == b'\n')
            .next()
            .expect("a line"),
    )
    .expect("JSON");
    let mut modes: Vec<(String, String)> = report["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(|interface| {
            (
                interface["name"].as_str().expect("a name").to_owned(),
                interface["mode"].as_str().expect("a mode").to_owned(),
            )
        })
        .collect();
    modes.sort();
    modes
}

fn modes(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, mode)| ((*name).to_owned(), (*mode).to_owned()))
        .collect()
}

#[test]
#[ignore = "needs root"]
fn taking_a_standing_filter_over_as_advised_keeps_its_interfaces_and_modes() {
    let (netns, socket) = namespace();
    let pinned = ProbeProcess::start_pinned(
        PROBE,
        &netns,
        &["--iface", "va", "--iface", "vb", "--drop-on", "vb"],
    );
    pinned.wait_ready();
    let (status, _) = pinned.stop(libc::SIGTERM);
    assert!(status.success(), "run --pin: {status:?}");
    assert_eq!(
        standing(&netns),
        modes(&[("va", "monitor"), ("vb", "drop")])
    );
    assert_eq!(
        delivered(&netns, &socket, "pa", SPOOFED),
        SPOOFED,
        "va monitors"
    );

    let remedy = drop_remedy(&netns, "va");
    let command = advised(&remedy, "localnet-probe run", " (");
    pasted(&netns, PROBE, command);
    assert_eq!(standing(&netns), modes(&[("va", "drop"), ("vb", "drop")]));
    for other in ["pa", "pb", "vc", "pc"] {
        assert!(!netns.has_xdp(other), "{command} attached to {other}");
    }
    assert_eq!(delivered(&netns, &socket, "pa", 0), 0, "to va");
    assert_eq!(delivered(&netns, &socket, "pb", 0), 0, "to vb");
    assert_eq!(
        delivered(&netns, &socket, "pc", SPOOFED),
        SPOOFED,
        "vc is not filtered"
    );
    // Patterns are not in the pins: what the command pins is said.
    assert!(
        remedy.contains("(it pins exactly these interfaces: a pattern"),
        "{remedy}"
    );

    // An admin-down interface is not selected by default: its command names it.
    netns.ip(&["link", "set", "vc", "down"]);
    let remedy = drop_remedy(&netns, "vc");
    let command = advised(&remedy, "localnet-probe run", " (");
    let report = pasted(&netns, PROBE, command);
    assert_eq!(served(&report), ["vc"], "{report}");
    assert_eq!(report["interfaces"][0]["mode"], "drop", "{report}");
    pasted(
        &netns,
        PROBE,
        advised(&remedy, "localnet-probe run --pin", ";"),
    );
    assert_eq!(
        standing(&netns),
        modes(&[("va", "drop"), ("vb", "drop"), ("vc", "drop")])
    );
    netns.ip(&["link", "set", "vc", "up"]);
    netns.wait_operational("vc");
    assert_eq!(delivered(&netns, &socket, "pc", 0), 0, "to vc");
    assert_eq!(delivered(&netns, &socket, "pa", 0), 0, "to va");

    let output = netns.output(PROBE, &["detach"]);
    assert!(output.status.success(), "detach: {output:?}");
}
