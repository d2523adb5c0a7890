//! The mitigations real hosts have, as their projects install them, read by `audit` and
//! checked by delivering spoofed datagrams: kubelet's CVE-2020-8558 rule as iptables-nft writes
//! it (its conntrack match opaque in nft's JSON), Docker 28's per-port drops in raw
//! PREROUTING, the shapes of hand-written nftables rulesets (a netdev ingress chain bound to the
//! device, `iifname` wildcards, `policy drop` chains with accept rules, a match not understood).
//! Needs root, nft, and iptables (Debian's, with iptables-nft).

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use serde_json::Value;
use test_frames::ipv4;
use testbed::{Link, Netns, RECEIVER_IF, RECEIVER_MAC, SENDER_MAC, SENDER_V4, receive};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const SPOOFED: usize = 5;
const QUIET: Duration = Duration::from_millis(300);

fn iptables(netns: &Netns, args: &[&str]) {
    let status = netns
        .command("iptables")
        .args(args)
        .status()
        .expect("run iptables (Debian's iptables package; `cargo xtask setup` installs it)");
    assert!(status.success(), "iptables {args:?}");
}

/// Loads `ruleset` (nft's syntax) in `netns`, after flushing what was there.
fn nft(netns: &Netns, ruleset: &str) {
    use std::io::Write as _;
    let mut child = netns
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    let mut stdin = child.stdin.take().expect("nft's stdin");
    stdin
        .write_all(format!("flush ruleset\n{ruleset}").as_bytes())
        .expect("write the ruleset");
    drop(stdin);
    assert!(child.wait().expect("wait for nft").success(), "{ruleset}");
}

fn audit(netns: &Netns) -> Value {
    let output = netns
        .command(PROBE)
        .args(["audit", "--json"])
        .output()
        .expect("run localnet-probe audit");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "audit's stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn veth(report: &Value) -> &Value {
    report["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|interface| interface["name"] == RECEIVER_IF)
        .unwrap_or_else(|| panic!("no {RECEIVER_IF} in {report}"))
}

/// The finding about the veth's reachable services, or its latent or mitigated one.
fn finding<'a>(report: &'a Value, kind: &str) -> &'a str {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|finding| finding["interface"] == RECEIVER_IF && finding["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} finding in {report}"))["message"]
        .as_str()
        .expect("a message")
}

/// Sends `SPOOFED` datagrams from `source` to 127.0.0.1:`port` and counts those `socket` gets.
fn delivered(
    link: &Link,
    socket: &std::net::UdpSocket,
    source: Ipv4Addr,
    port: u16,
    expected: usize,
) -> usize {
    let frame = ipv4(source, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, port)
        .build();
    let sender = link.raw_sender();
    for _ in 0..SPOOFED {
        sender.send(&frame);
    }
    receive(socket, expected, QUIET)
}

#[test]
#[ignore = "needs root"]
fn kubelets_rule_through_iptables_nft() {
    let link = Link::new("kubelet");
    let netns = &link.receiver;
    netns.ip(&["link", "set", "lo", "up"]);
    let udp = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    netns.sysctl("net/ipv4/conf/vrx/route_localnet", "1");
    netns.sysctl("net/ipv4/conf/all/rp_filter", "1");
    netns.sysctl("net/ipv4/conf/vrx/rp_filter", "1");
    iptables(netns, &["-N", "KUBE-FIREWALL"]);
    iptables(
        netns,
        &[
            "-A",
            "KUBE-FIREWALL",
            "!",
            "-s",
            "127.0.0.0/8",
            "-d",
            "127.0.0.0/8",
            "-m",
            "comment",
            "--comment",
            "block incoming localnet connections",
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "RELATED,ESTABLISHED,DNAT",
            "-j",
            "DROP",
        ],
    );
    iptables(netns, &["-A", "INPUT", "-j", "KUBE-FIREWALL"]);

    let report = audit(netns);
    assert_eq!(veth(&report)["verdict"], "mitigated", "{report}");
    assert!(
        finding(&report, "mitigated").contains("block incoming localnet connections"),
        "{report}"
    );
    assert_eq!(
        delivered(&link, &udp, SENDER_V4, 5353, 0),
        0,
        "the rule drops them"
    );

    // Without reverse-path filtering a 127.x source passes the routing, and the rule spares it.
    netns.sysctl("net/ipv4/conf/all/rp_filter", "0");
    netns.sysctl("net/ipv4/conf/vrx/rp_filter", "0");
    let report = audit(netns);
    assert_eq!(veth(&report)["verdict"], "exposed", "{report}");
    let message = finding(&report, "reachable-services");
    assert!(
        message.contains("block incoming localnet connections")
            && message.contains("drops them only from sources outside 127.0.0.0/8")
            && !message.contains("nothing drops them"),
        "{message}"
    );
    let loopback_source = Ipv4Addr::new(127, 0, 0, 2);
    assert_eq!(
        delivered(&link, &udp, loopback_source, 5353, SPOOFED),
        SPOOFED,
        "a 127.x source gets by"
    );
    assert_eq!(
        delivered(&link, &udp, SENDER_V4, 5353, 0),
        0,
        "other sources do not"
    );
}

#[test]
#[ignore = "needs root"]
fn dockers_per_port_drop_mitigates_that_service_only() {
    let link = Link::new("docker");
    let netns = &link.receiver;
    let published = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    let other = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5354)));
    netns.sysctl("net/ipv4/conf/vrx/route_localnet", "1");
    // What Docker 28 adds for `-p 127.0.0.1:5353:53/udp`.
    iptables(
        netns,
        &[
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-d",
            "127.0.0.1/32",
            "!",
            "-i",
            "lo",
            "-p",
            "udp",
            "-m",
            "udp",
            "--dport",
            "5353",
            "-j",
            "DROP",
        ],
    );
    let report = audit(netns);
    let vrx = veth(&report);
    assert_eq!(vrx["verdict"], "exposed", "{report}");
    let sockets = report["sockets"].as_array().expect("sockets");
    let port_of = |index: &Value| sockets[index.as_u64().unwrap() as usize]["local"].clone();
    let outcomes: Vec<(Value, Value)> = vrx["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|service| (port_of(&service["socket"]), service["outcome"].clone()))
        .collect();
    assert!(
        outcomes.contains(&("127.0.0.1:5353".into(), "dropped".into()))
            && outcomes.contains(&("127.0.0.1:5354".into(), "passed".into())),
        "{outcomes:?}"
    );
    let reachable: Vec<Value> = vrx["reachable"]
        .as_array()
        .expect("reachable")
        .iter()
        .map(port_of)
        .collect();
    assert_eq!(reachable, ["127.0.0.1:5354"], "{report}");
    let message = finding(&report, "reachable-services");
    assert!(
        message.contains("drops those to udp 127.0.0.1:5353"),
        "{message}"
    );
    assert_eq!(
        delivered(&link, &published, SENDER_V4, 5353, 0),
        0,
        "the published port"
    );
    assert_eq!(
        delivered(&link, &other, SENDER_V4, 5354, SPOOFED),
        SPOOFED,
        "another port"
    );
}

/// The veth's verdict and the message of its finding of `kind`.
fn verdict_and_message(netns: &Netns, kind: &str) -> (Value, String) {
    let report = audit(netns);
    (
        veth(&report)["verdict"].clone(),
        finding(&report, kind).to_owned(),
    )
}

#[test]
#[ignore = "needs root"]
fn nft_shapes_are_counted_when_they_drop() {
    let link = Link::new("shapes");
    let netns = &link.receiver;
    netns.ip(&["link", "set", "lo", "up"]);
    let first = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    let second = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5354)));
    netns.sysctl("net/ipv4/conf/vrx/route_localnet", "1");

    // A netdev ingress chain bound to the veth: nft 1.0.6's JSON leaves the device out.
    nft(
        netns,
        "table netdev edge { chain guard { type filter hook ingress device \"vrx\" priority 0; \
         ip daddr 127.0.0.0/8 drop\n}\n}",
    );
    let (verdict, message) = verdict_and_message(netns, "mitigated");
    assert_eq!(verdict, "mitigated", "{message}");
    assert!(
        message.contains("nft netdev edge guard handle"),
        "{message}"
    );
    assert_eq!(delivered(&link, &first, SENDER_V4, 5353, 0), 0, "ingress");
    // Bound to another device, it never sees them.
    netns.ip(&[
        "link", "add", "oth0", "type", "veth", "peer", "name", "oth1",
    ]);
    nft(
        netns,
        "table netdev edge { chain guard { type filter hook ingress device \"oth0\" priority 0; \
         ip daddr 127.0.0.0/8 drop\n}\n}",
    );
    let (verdict, message) = verdict_and_message(netns, "reachable-services");
    assert_eq!(verdict, "exposed", "{message}");
    assert!(message.contains("nothing drops them"), "{message}");
    assert_eq!(
        delivered(&link, &first, SENDER_V4, 5353, SPOOFED),
        SPOOFED,
        "ingress of another device"
    );

    // An `iifname` wildcard that matches the veth, and one that does not.
    for (wildcard, drops) in [("vr*", true), ("zz*", false)] {
        nft(
            netns,
            &format!(
                "table inet shape {{ chain pre {{ type filter hook prerouting priority -300; \
                 iifname \"{wildcard}\" ip daddr 127.0.0.0/8 drop\n}}\n}}"
            ),
        );
        let kind = if drops {
            "mitigated"
        } else {
            "reachable-services"
        };
        let (verdict, message) = verdict_and_message(netns, kind);
        let expected = if drops { 0 } else { SPOOFED };
        assert_eq!(
            verdict,
            if drops { "mitigated" } else { "exposed" },
            "{message}"
        );
        assert_eq!(
            delivered(&link, &first, SENDER_V4, 5353, expected),
            expected,
            "iifname {wildcard}"
        );
    }

    // A host firewall: input policy drop, loopback, replies and what is not for 127.0.0.0/8
    // accepted, and one service opened by its port.
    nft(
        netns,
        "table inet host { chain input { type filter hook input priority 0; policy drop; \
         iifname \"lo\" accept; ct state established,related accept; \
         ip daddr != 127.0.0.0/8 accept; udp dport 5354 accept\n}\n}",
    );
    let report = audit(netns);
    let vrx = veth(&report);
    assert_eq!(vrx["verdict"], "exposed", "{report}");
    let sockets = report["sockets"].as_array().expect("sockets");
    let outcomes: Vec<(Value, Value)> = vrx["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|service| {
            let socket = &sockets[service["socket"].as_u64().unwrap() as usize];
            (socket["local"].clone(), service["outcome"].clone())
        })
        .collect();
    assert!(
        outcomes.contains(&("127.0.0.1:5353".into(), "dropped".into()))
            && outcomes.contains(&("127.0.0.1:5354".into(), "passed".into())),
        "{outcomes:?}"
    );
    let message = finding(&report, "reachable-services");
    assert!(
        message.contains("nft inet host input policy drop drops those to udp 127.0.0.1:5353"),
        "{message}"
    );
    assert_eq!(delivered(&link, &first, SENDER_V4, 5353, 0), 0, "policy");
    assert_eq!(
        delivered(&link, &second, SENDER_V4, 5354, SPOOFED),
        SPOOFED,
        "the port opened"
    );

    // Policy drop, but every source outside 127.0.0.0/8 accepted first.
    nft(
        netns,
        "table inet host { chain input { type filter hook input priority 0; policy drop; \
         ip saddr != 127.0.0.0/8 accept\n}\n}",
    );
    let (verdict, message) = verdict_and_message(netns, "reachable-services");
    assert_eq!(verdict, "exposed", "{message}");
    assert!(
        message.contains("nothing drops them all (nft inet host input handle"),
        "{message}"
    );
    assert_eq!(
        delivered(&link, &first, SENDER_V4, 5353, SPOOFED),
        SPOOFED,
        "accepted by source"
    );

    // A match not understood (the frame's packet type): it does drop them, and the audit says
    // it may, never that nothing does.
    nft(
        netns,
        "table inet shape { chain pre { type filter hook prerouting priority -300; \
         ip daddr 127.0.0.0/8 meta pkttype host drop\n}\n}",
    );
    let (verdict, message) = verdict_and_message(netns, "reachable-services");
    assert_eq!(verdict, "exposed", "{message}");
    assert!(
        message.contains("a rule here may drop them: nft inet shape pre handle")
            && !message.contains("nothing drops them"),
        "{message}"
    );
    assert_eq!(delivered(&link, &first, SENDER_V4, 5353, 0), 0, "pkttype");
}

#[test]
#[ignore = "needs root"]
fn cni_portmap_and_netavark_are_named_where_they_set_route_localnet() {
    let link = Link::new("runtimes");
    let netns = &link.receiver;
    netns.ip(&["link", "set", "lo", "up"]);
    let udp = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    // portmap sets it on the host's interface toward the container (a ptp veth here).
    netns.sysctl("net/ipv4/conf/vrx/route_localnet", "1");
    let named = |by: &str, project: &str| {
        let (verdict, message) = verdict_and_message(netns, "reachable-services");
        assert_eq!(verdict, "exposed", "{message}");
        assert!(
            message.contains(project)
                && message.contains(&format!("its {by} is here; it adds no drop"))
                && message.contains("nothing drops them"),
            "{message}"
        );
        assert_eq!(
            delivered(&link, &udp, SENDER_V4, 5353, SPOOFED),
            SPOOFED,
            "{by}"
        );
    };
    let portmap = "CNI portmap sets route_localnet=1 on the host's interface toward a container";
    // What portmap's iptables backend adds for a hostPort 8053/udp to 10.88.0.2:53
    // (`genToplevelDnatChain`, `genDnatChain`, `fillDnatRules`), through iptables-nft.
    let chain = "CNI-DN-3c5b2e7a91f04d6e8b2a1";
    for rule in [
        vec!["-t", "nat", "-N", "CNI-HOSTPORT-DNAT"],
        vec!["-t", "nat", "-N", chain],
        vec![
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            "CNI-HOSTPORT-DNAT",
        ],
        vec![
            "-t",
            "nat",
            "-A",
            "CNI-HOSTPORT-DNAT",
            "-p",
            "udp",
            "-m",
            "comment",
            "--comment",
            "dnat name: \"mynet\" id: \"0123abcd\"",
            "-m",
            "multiport",
            "--destination-ports",
            "8053",
            "-j",
            chain,
        ],
        vec![
            "-t",
            "nat",
            "-A",
            chain,
            "-p",
            "udp",
            "--dport",
            "8053",
            "-j",
            "DNAT",
            "--to-destination",
            "10.88.0.2:53",
        ],
    ] {
        iptables(netns, &rule);
    }
    named("nft ip nat CNI-HOSTPORT-DNAT", portmap);

    // Its nftables backend (`portmap_nftables.go`).
    nft(
        netns,
        "table ip cni_hostport {\ncomment \"CNI portmap plugin\"\nchain hostports {\n\
         udp dport 8053 dnat to 10.88.0.2:53 comment \"0123abcd\"\n}\n\
         chain hostip_hostports {\n}\nchain hostports_all {\njump hostip_hostports\n\
         jump hostports\n}\nchain prerouting {\ntype nat hook prerouting priority dstnat\n\
         fib daddr type local jump hostports_all\n}\n}",
    );
    named("nft table ip cni_hostport", portmap);

    // netavark sets it on its bridge (`bridge.rs`), with `table inet netavark` (`nft.rs`).
    netns.sysctl("net/ipv4/conf/vrx/route_localnet", "0");
    netns.ip(&["link", "add", "podman0", "type", "bridge"]);
    netns.ip(&["link", "set", "vrx", "master", "podman0"]);
    netns.ip(&["link", "set", "podman0", "up"]);
    netns.sysctl("net/ipv4/conf/podman0/route_localnet", "1");
    nft(
        netns,
        "table inet netavark {\nchain INPUT {\ntype filter hook input priority filter\n\
         ip saddr 10.88.0.0/16 udp dport 53 accept\n}\nchain PREROUTING {\n\
         type nat hook prerouting priority dstnat\nfib daddr type local jump \
         NETAVARK-HOSTPORT-DNAT\n}\nchain NETAVARK-HOSTPORT-DNAT {\n}\n}",
    );
    let report = audit(netns);
    let message = finding(&report, "reachable-services");
    assert!(
        message.contains("netavark (Podman) sets route_localnet=1 on each bridge")
            && message.contains("conf.podman0")
            && message.contains("its nft table inet netavark is here"),
        "{message}"
    );
    assert_eq!(
        delivered(&link, &udp, SENDER_V4, 5353, SPOOFED),
        SPOOFED,
        "through the bridge"
    );
    // Where route_localnet is on only in `all`, they did not set it.
    netns.sysctl("net/ipv4/conf/podman0/route_localnet", "0");
    netns.sysctl("net/ipv4/conf/all/route_localnet", "1");
    let report = audit(netns);
    let message = finding(&report, "reachable-services");
    assert!(!message.contains("netavark (Podman) sets"), "{message}");
}
