//! `run` and `audit` decide exposure from the same facts: with route_localnet on for the veth and
//! an `ip`-family prerouting rule dropping 127.0.0.0/8, both say the link is mitigated (the
//! counters' `exposed`, the metric, the audit's verdict) and a spoofed datagram to 127.0.0.1 is
//! not delivered. When the rule is deleted while `run` runs, `run` says so within seconds, as it
//! says a route_localnet change, and the link is exposed from then on: the datagrams are
//! delivered. Needs root.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use test_frames::ipv4;
use testbed::{
    Link, Netns, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, SENDER_MAC, SENDER_V4, http_get,
    interface, receive,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
/// Inside the test's own namespace, so a fixed port collides with nothing.
const METRICS_ADDRESS: &str = "127.0.0.1:9464";
const UDP_PORT: u16 = 5353;
const SPOOFED: usize = 5;
const QUIET: Duration = Duration::from_millis(300);
/// What the issue asks: a rule that disappears flips the verdict within seconds.
const SAID_WITHIN: Duration = Duration::from_secs(3);

fn nft(netns: &Netns, command: &str) {
    let status = netns.command("nft").arg(command).status().expect("run nft");
    assert!(status.success(), "nft {command}");
}

/// The audit's verdict on the veth.
fn audit_verdict(netns: &Netns) -> Value {
    let output = netns
        .command(PROBE)
        .args(["audit", "--json"])
        .output()
        .expect("run localnet-probe audit");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "audit's stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    report["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|interface| interface["name"] == RECEIVER_IF)
        .unwrap_or_else(|| panic!("no {RECEIVER_IF} in {report}"))["verdict"]
        .clone()
}

/// `localnet_probe_exposed` of the receiver; `None` when it has no series of its own (neither
/// exposed nor counting frames).
fn exposed_metric(netns: &Netns) -> Option<String> {
    let page = http_get(netns, METRICS_ADDRESS, "/metrics", None).body;
    assert!(
        page.contains("\nlocalnet_probe_interfaces{"),
        "not the probe's page:\n{page}"
    );
    page.lines()
        .find(|line| {
            line.starts_with(&format!(
                "localnet_probe_exposed{{interface=\"{RECEIVER_IF}\""
            ))
        })
        .map(|line| line.rsplit(' ').next().expect("a value").to_owned())
}

/// `status --json` without a standing filter: whether it finds the veth exposed.
fn status_exposed(netns: &Netns) -> Value {
    let output = netns
        .command(PROBE)
        .args(["status", "--json"])
        .output()
        .expect("run localnet-probe status");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = stdout
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "status wrote no JSON: {stdout}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    report["interfaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no interfaces in {report}"))
        .iter()
        .find(|interface| interface["name"] == RECEIVER_IF)
        .unwrap_or_else(|| panic!("no {RECEIVER_IF} in {report}"))["exposed"]
        .clone()
}

#[test]
#[ignore = "needs root"]
fn run_and_audit_agree_and_a_rule_removed_is_said() {
    let link = Link::new("truth");
    let netns = &link.receiver;
    let udp = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, UDP_PORT)));
    let delivered = |expected| {
        let frame = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
            .macs(SENDER_MAC, RECEIVER_MAC)
            .ports(40000, UDP_PORT)
            .build();
        let sender = link.raw_sender();
        for _ in 0..SPOOFED {
            sender.send(&frame);
        }
        receive(&udp, expected, QUIET)
    };
    netns.sysctl("net/ipv4/conf/vrx/route_localnet", "1");
    nft(netns, "add table ip guard");
    nft(
        netns,
        "add chain ip guard pre { type filter hook prerouting priority 0; }",
    );
    // Not from lo: the metrics are served on 127.0.0.1.
    nft(
        netns,
        "add rule ip guard pre iifname != lo ip daddr 127.0.0.0/8 drop",
    );
    assert_eq!(status_exposed(netns), false, "status with the rule");

    let probe = ProbeProcess::start(
        PROBE,
        netns,
        &["--iface", RECEIVER_IF, "--metrics", METRICS_ADDRESS],
    );
    let ready = probe.wait_ready();
    assert_eq!(interface(&ready, RECEIVER_IF)["exposed"], false, "{ready}");
    assert_eq!(
        exposed_metric(netns),
        None,
        "no series while quiet and not exposed"
    );
    assert_eq!(audit_verdict(netns), "mitigated");
    assert_eq!(delivered(0), 0, "the rule drops them");

    let deleted = Instant::now();
    nft(netns, "delete table ip guard");
    let change = probe.wait_for(SAID_WITHIN, |object| object["type"] == "firewall_change");
    println!("the rule's removal said after {:?}", deleted.elapsed());
    assert_eq!(change["change"], "removed", "{change}");
    assert!(
        change["rule"]
            .as_str()
            .is_some_and(|rule| rule.starts_with("nft ip guard pre handle ")),
        "{change}"
    );
    assert_eq!(change["exposed_now"], json!([RECEIVER_IF]), "{change}");
    probe.wait_until_said("which dropped loopback frames, was removed; exposed now: vrx");
    let report = probe.wait_for(SAID_WITHIN, |object| object["type"] == "counters");
    assert_eq!(interface(&report, RECEIVER_IF)["exposed"], true, "{report}");
    assert_eq!(exposed_metric(netns).as_deref(), Some("1"));
    assert_eq!(audit_verdict(netns), "exposed");
    assert_eq!(status_exposed(netns), true, "status without the rule");
    assert_eq!(delivered(SPOOFED), SPOOFED, "nothing drops them now");
}

/// With route_localnet on and nothing listening on IPv4 loopback, `audit` says latent: `run`
/// says the same (not exposed), and says exposed once a service binds 127.0.0.1.
#[test]
#[ignore = "needs root"]
fn run_says_latent_where_audit_does() {
    let link = Link::new("latent");
    let netns = &link.receiver;
    netns.sysctl("net/ipv4/conf/vrx/route_localnet", "1");
    assert_eq!(audit_verdict(netns), "latent");
    assert_eq!(
        status_exposed(netns),
        false,
        "status with nothing listening"
    );
    // No --metrics: its server on 127.0.0.1 would be a loopback service, and the link exposed.
    let probe = ProbeProcess::start(PROBE, netns, &["--iface", RECEIVER_IF]);
    let ready = probe.wait_ready();
    assert_eq!(interface(&ready, RECEIVER_IF)["exposed"], false, "{ready}");
    let udp = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, UDP_PORT)));
    let report = probe.wait_for(SAID_WITHIN, |object| {
        object["type"] == "counters" && interface(object, RECEIVER_IF)["exposed"] == true
    });
    assert_eq!(interface(&report, RECEIVER_IF)["exposed"], true, "{report}");
    assert_eq!(audit_verdict(netns), "exposed");
    drop(udp);
}
