//! `run` says within a second when route_localnet changes, whatever `--interval`: a
//! `sysctl_change` object beside the counters, a warning on stderr, the next counters object and
//! the metrics reflecting it; an interface that appears or goes away is no change. Needs root.

use std::{
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use testbed::{Link, ProbeProcess, RECEIVER_IF, http_get, interface};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
/// Inside the test's own namespace, so a fixed port collides with nothing.
const METRICS_ADDRESS: &str = "127.0.0.1:9464";
/// What the issue asks: a change is said within 2 s.
const SAID_WITHIN: Duration = Duration::from_secs(2);
/// A veth pair, both ends in the receiver's namespace, that appears and goes away.
const HOTPLUG: [&str; 2] = ["vrx8", "vrx9"];

fn metric(page: &str, line_start: &str) -> String {
    page.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in\n{page}"))
        .trim()
        .to_owned()
}

/// Objects the probe writes within `wait`, none of them a `sysctl_change`.
fn no_change_within(probe: &ProbeProcess, wait: Duration) {
    let deadline = Instant::now() + wait;
    while let Ok(object) = probe.next_report(deadline.saturating_duration_since(Instant::now())) {
        assert_ne!(object["type"], "sysctl_change", "not a change: {object}");
    }
}

#[test]
#[ignore = "needs root"]
fn route_localnet_changes_are_said_within_two_seconds() {
    let link = Link::new("alerts");
    let netns = &link.receiver;
    // Reports every 10 s: an alert cannot ride on one.
    let probe = ProbeProcess::start(
        PROBE,
        netns,
        &[
            "--iface",
            "vrx*",
            "--interval",
            "10",
            "--metrics",
            METRICS_ADDRESS,
        ],
    );
    let ready = probe.wait_ready();
    assert_eq!(ready["type"], "counters");
    assert_eq!(interface(&ready, RECEIVER_IF)["exposed"], false);
    let ifindex = interface(&ready, RECEIVER_IF)["ifindex"].clone();

    for (key, value, scope, exposed_now) in [
        (
            "net/ipv4/conf/vrx/route_localnet",
            "1",
            "interface",
            json!(["vrx"]),
        ),
        (
            "net/ipv4/conf/vrx/route_localnet",
            "0",
            "interface",
            json!([]),
        ),
        (
            "net/ipv4/conf/all/route_localnet",
            "1",
            "all",
            json!(["vrx"]),
        ),
        (
            "net/ipv4/conf/default/route_localnet",
            "1",
            "default",
            json!(["vrx"]),
        ),
    ] {
        let flipped = Instant::now();
        netns.sysctl(key, value);
        let change = probe.wait_for(SAID_WITHIN, |object| object["type"] == "sysctl_change");
        println!("{key}={value} said after {:?}", flipped.elapsed());
        let on_interface = scope == "interface";
        let new: u8 = value.parse().expect("0 or 1");
        assert_eq!(
            change["sysctl"],
            format!(
                "net.ipv4.conf.{}.route_localnet",
                key.split('/').nth(3).unwrap()
            )
        );
        assert_eq!(change["scope"], scope, "{change}");
        assert_eq!(
            change["interface"],
            if on_interface {
                json!("vrx")
            } else {
                Value::Null
            }
        );
        assert_eq!(
            change["ifindex"],
            if on_interface {
                ifindex.clone()
            } else {
                Value::Null
            }
        );
        assert_eq!(change["old"], 1 - new);
        assert_eq!(change["new"], new);
        assert_eq!(change["exposed_now"], exposed_now);
        let age = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            - change["timestamp"].as_f64().expect("timestamp");
        assert!((0.0..5.0).contains(&age), "timestamp {age} s ago");

        if key == "net/ipv4/conf/vrx/route_localnet" && value == "1" {
            // The next scrape reads the new value: vrx, exposed, has series of its own now, and
            // the change is counted.
            let page = http_get(netns, METRICS_ADDRESS, "/metrics", None).body;
            assert_eq!(
                metric(
                    &page,
                    "localnet_probe_route_localnet{interface=\"vrx\",scope=\"effective\"}"
                ),
                "1"
            );
            assert_eq!(
                metric(&page, "localnet_probe_exposed{interface=\"vrx\"}"),
                "1"
            );
            assert_eq!(
                metric(
                    &page,
                    "localnet_probe_route_localnet_changes_total{scope=\"interface\"}"
                ),
                "1"
            );
        }
    }

    // The next counters object: exposed through conf.all.
    let report = probe.wait_for(Duration::from_secs(15), |object| {
        object["type"] == "counters"
    });
    let vrx = interface(&report, RECEIVER_IF);
    assert_eq!(vrx["exposed"], true, "{vrx}");
    assert_eq!(
        vrx["route_localnet"],
        json!({ "all": true, "iface": false, "effective": true })
    );

    // An interface that appears (with conf.default's 1) and one that goes away are no changes.
    netns.ip(&[
        "link", "add", HOTPLUG[0], "type", "veth", "peer", "name", HOTPLUG[1],
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe
        .stderr()
        .contains(&format!("attached to {}", HOTPLUG[1]))
    {
        assert!(
            Instant::now() < deadline,
            "not attached: {}",
            probe.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
    no_change_within(&probe, SAID_WITHIN);
    netns.ip(&["link", "del", HOTPLUG[0]]);
    no_change_within(&probe, SAID_WITHIN);

    let stderr = probe.stderr();
    let (status, last) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
    assert_eq!(last.expect("a final report")["final"], true);
    for said in [
        "net.ipv4.conf.vrx.route_localnet changed from 0 to 1; exposed now: vrx",
        "net.ipv4.conf.vrx.route_localnet changed from 1 to 0; no served interface is exposed",
        "net.ipv4.conf.all.route_localnet changed from 0 to 1; exposed now: vrx",
        "net.ipv4.conf.default.route_localnet changed from 0 to 1; interfaces created from now \
         on start with it",
    ] {
        assert_eq!(stderr.matches(said).count(), 1, "{said} once: {stderr}");
    }
    assert_eq!(
        stderr.matches("route_localnet changed").count(),
        4,
        "{stderr}"
    );
}
