//! `localnet-probe audit` in a namespace, each verdict proved against the kernel: a TCP listener
//! and a UDP socket on 127.0.0.1 held by this test process, the audit run with route_localnet
//! off, on for the veth, on through conf.all only, with the probe dropping there (at XDP, and at
//! tcx ingress beside another XDP program), with nftables drop rules and with rules that only
//! look like drops; after each, a spoofed datagram to 127.0.0.1 from the peer namespace is
//! delivered exactly when the audit says the services are reachable. A spoofed SYN the listener
//! answers, counted by the probe at tcx egress, makes the link exploited. Needs root.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use etherparse::PacketBuilder;
use serde_json::Value;
use test_frames::ipv4;
use testbed::{
    ForeignXdp, Link, Netns, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, RECEIVER_V4, SENDER_MAC,
    SENDER_V4, advised, interface, pasted, receive,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const QUIET: Duration = Duration::from_millis(300);
const TCP_PORT: u16 = 6379;
const UDP_PORT: u16 = 5353;
const SPOOFED: usize = 5;

/// `localnet-probe audit --json` in `netns`: its exit code and report.
fn audit(netns: &Netns) -> (i32, Value) {
    audit_with(netns, &[])
}

/// `localnet-probe audit --json args…` in `netns`: its exit code and report.
fn audit_with(netns: &Netns, args: &[&str]) -> (i32, Value) {
    let output = netns
        .command(PROBE)
        .args(["audit", "--json"])
        .args(args)
        .output()
        .expect("run localnet-probe audit");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "audit's stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("an exit code"), report)
}

fn veth(report: &Value) -> &Value {
    report["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|interface| interface["name"] == RECEIVER_IF)
        .unwrap_or_else(|| panic!("no {RECEIVER_IF} in {report}"))
}

/// The services the report finds reachable from the veth, as `protocol address pid`.
fn reachable(report: &Value) -> Vec<String> {
    veth(report)["reachable"]
        .as_array()
        .expect("reachable")
        .iter()
        .map(|index| {
            let socket = &report["sockets"][index.as_u64().expect("an index") as usize];
            format!(
                "{} {} {}",
                socket["protocol"].as_str().unwrap(),
                socket["local"].as_str().unwrap(),
                socket["processes"][0]["pid"]
            )
        })
        .collect()
}

/// What the spoofed datagrams to 127.0.0.1 that reached the UDP socket prove.
struct Services {
    _tcp: TcpListener,
    udp: UdpSocket,
}

impl Services {
    fn open(link: &Link) -> Self {
        let tcp = link.receiver.enter(|| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, TCP_PORT)).expect("bind the TCP listener")
        });
        let udp = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, UDP_PORT)));
        Self { _tcp: tcp, udp }
    }

    /// Sends spoofed datagrams to 127.0.0.1 from the peer; how many were delivered, waiting for
    /// all of them when `expected` says they should arrive.
    fn delivered(&self, link: &Link, expected: usize) -> usize {
        let frame = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
            .macs(SENDER_MAC, RECEIVER_MAC)
            .ports(40000, UDP_PORT)
            .build();
        let sender = link.raw_sender();
        for _ in 0..SPOOFED {
            sender.send(&frame);
        }
        receive(&self.udp, expected, QUIET)
    }
}

fn expected_services() -> Vec<String> {
    let pid = std::process::id();
    vec![
        format!("tcp 127.0.0.1:{TCP_PORT} {pid}"),
        format!("udp 127.0.0.1:{UDP_PORT} {pid}"),
    ]
}

/// Asserts that the veth is exposed, and returns the remedy that has localnet-probe drop there.
fn assert_exposed(link: &Link, services: &Services) -> String {
    let (code, report) = audit(&link.receiver);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["exposed"], true);
    assert_eq!(veth(&report)["verdict"], "exposed", "{report}");
    assert_eq!(reachable(&report), expected_services(), "{report}");
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|finding| finding["kind"] == "reachable-services")
        .unwrap_or_else(|| panic!("no finding in {report}"));
    let remedies = finding["remedies"].to_string();
    assert!(
        remedies.contains(&format!(
            "localnet-probe run --iface {RECEIVER_IF} --drop-on {RECEIVER_IF}"
        )),
        "{remedies}"
    );
    assert!(remedies.contains("route_localnet=0"), "{remedies}");
    assert_eq!(
        services.delivered(link, SPOOFED),
        SPOOFED,
        "the kernel delivers them"
    );
    finding["remedies"]
        .as_array()
        .expect("remedies")
        .iter()
        .filter_map(Value::as_str)
        .find(|remedy| remedy.starts_with("or drop frames with loopback addresses"))
        .unwrap_or_else(|| panic!("no probe remedy in {remedies}"))
        .to_owned()
}

/// `command`, advised by the audit, pasted in `netns` once nothing serves the veth: it serves
/// the veth in drop mode (at `hook`).
fn assert_pasted_drops(netns: &Netns, command: &str, hook: &str) -> Value {
    let report = pasted(netns, PROBE, command);
    let served = interface(&report, RECEIVER_IF);
    assert_eq!(served["mode"], "drop", "{command}: {report}");
    assert_eq!(served["hook"], hook, "{command}: {report}");
    report
}

fn assert_mitigated(link: &Link, services: &Services) -> Value {
    let (code, report) = audit(&link.receiver);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["exposed"], false);
    assert_eq!(veth(&report)["verdict"], "mitigated", "{report}");
    assert!(reachable(&report).is_empty());
    assert_eq!(services.delivered(link, 0), 0, "nothing reaches the socket");
    report
}

#[test]
#[ignore = "needs root"]
fn audit_verdicts_match_what_the_kernel_delivers() {
    let link = Link::new("audit");
    let services = Services::open(&link);
    let conf = |scope: &str, value: &str| {
        link.receiver
            .sysctl(&format!("net/ipv4/conf/{scope}/route_localnet"), value);
    };

    // Off: nothing is reachable, and nothing is delivered.
    let (code, report) = audit(&link.receiver);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["exposed"], false);
    assert_eq!(veth(&report)["verdict"], "not-exposed");
    assert_eq!(
        veth(&report)["route_localnet"],
        serde_json::json!({"all": false, "default": false, "iface": false, "effective": false})
    );
    let sockets = report["sockets"].to_string();
    assert!(
        sockets.contains(&format!("127.0.0.1:{UDP_PORT}")),
        "{sockets}"
    );
    assert_eq!(services.delivered(&link, 0), 0, "martians are dropped");

    // On the veth.
    conf(RECEIVER_IF, "1");
    assert_exposed(&link, &services);

    // Only conf.all: the kernel ORs it with the interface's own.
    conf(RECEIVER_IF, "0");
    conf("all", "1");
    assert_exposed(&link, &services);
    conf("all", "0");
    conf(RECEIVER_IF, "1");

    // The probe dropping there.
    let probe = ProbeProcess::start(PROBE, &link.receiver, &["--iface", RECEIVER_IF, "--drop"]);
    probe.wait_ready();
    let report = assert_mitigated(&link, &services);
    let on = &veth(&report)["localnet_probe"];
    assert_eq!(on["mode"], "drop", "{on}");
    assert_eq!(on["how"], "process");
    assert_eq!(on["processes"][0]["pid"], probe.pid());
    drop(probe);
    wait_detached(&link.receiver, RECEIVER_IF);

    // In monitor mode it drops nothing, and the audit says so; its advice, pasted once that
    // probe is stopped as it says, drops there.
    let probe = ProbeProcess::start(PROBE, &link.receiver, &["--iface", RECEIVER_IF]);
    probe.wait_ready();
    let remedy = assert_exposed(&link, &services);
    assert!(
        remedy.contains(&format!("stop it (pid {} ", probe.pid())),
        "{remedy}"
    );
    drop(probe);
    wait_detached(&link.receiver, RECEIVER_IF);
    assert_pasted_drops(
        &link.receiver,
        advised(&remedy, "localnet-probe run", " ("),
        "xdp",
    );
    wait_detached(&link.receiver, RECEIVER_IF);

    // An nftables rule dropping 127.0.0.0/8 destinations from the veth.
    let nft = |rule: &str| {
        let status = link
            .receiver
            .command("nft")
            .arg(rule)
            .status()
            .expect("run nft");
        assert!(status.success(), "nft {rule}");
    };
    nft("add table inet localnet_guard");
    nft("add chain inet localnet_guard prerouting { type filter hook prerouting priority raw; }");
    nft(&format!(
        "add rule inet localnet_guard prerouting iifname \"{RECEIVER_IF}\" ip daddr 127.0.0.0/8 drop"
    ));
    let report = assert_mitigated(&link, &services);
    let drops = veth(&report)["nft_drops"].to_string();
    assert!(
        drops.contains("nft inet localnet_guard prerouting"),
        "{drops}"
    );

    // kubelet's exceptions in the input hook still drop spoofed frames.
    nft("flush ruleset");
    nft("add table ip kube");
    nft("add chain ip kube input { type filter hook input priority 0; }");
    nft(
        "add rule ip kube input ip daddr 127.0.0.0/8 ct state != { established, related } ct status != dnat drop",
    );
    assert_mitigated(&link, &services);

    // Rules that look like drops and let spoofed frames through are not counted: in a dormant
    // table, excepting a state a spoofed frame has once conntrack has seen it, or matching
    // `ct status` before conntrack (priority -200) has.
    for (flags, priority, rule) in [
        ("{ flags dormant; }", "0", "ip daddr 127.0.0.0/8 drop"),
        ("", "0", "ip daddr 127.0.0.0/8 ct state != new drop"),
        ("", "raw", "ip daddr 127.0.0.0/8 ct status != dnat drop"),
    ] {
        nft("flush ruleset");
        nft(&format!("add table ip g {flags}"));
        nft(&format!(
            "add chain ip g p {{ type filter hook prerouting priority {priority}; }}"
        ));
        nft(&format!("add rule ip g p {rule}"));
        assert_exposed(&link, &services);
    }
}

/// Waits until the probe's program has left `dev`, so the next audit does not see it.
fn wait_detached(netns: &Netns, dev: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while netns.has_xdp(dev) {
        assert!(Instant::now() < deadline, "{dev} still has an XDP program");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A 127.x *source* from the link: a UDP service on the wildcard receives it exactly when the
/// audit finds it — rp_filter off, or loose with accept_local — and not under strict filtering,
/// accept_local or not.
#[test]
#[ignore = "needs root"]
fn a_loopback_source_reaches_udp_services_exactly_when_the_audit_says_so() {
    let link = Link::new("audit-src");
    let netns = &link.receiver;
    let udp = link.receiver_udp(SocketAddr::from((Ipv4Addr::UNSPECIFIED, UDP_PORT)));
    netns.sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let frame = ipv4(Ipv4Addr::new(127, 0, 0, 5), RECEIVER_V4)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, UDP_PORT)
        .build();
    let sender = link.raw_sender();
    for (rp_filter, accept_local, passes) in [
        ("0", "0", true),
        ("1", "1", false),
        ("2", "1", true),
        ("2", "0", false),
    ] {
        for (setting, value) in [("rp_filter", rp_filter), ("accept_local", accept_local)] {
            netns.sysctl(&format!("net/ipv4/conf/all/{setting}"), "0");
            netns.sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/{setting}"), value);
        }
        let (code, report) = audit(netns);
        let found = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|finding| {
                finding["kind"] == "loopback-source" && finding["interface"] == RECEIVER_IF
            });
        let case = format!("rp_filter={rp_filter} accept_local={accept_local}");
        assert_eq!(found, passes, "{case}: {report}");
        assert_eq!(code, i32::from(passes), "{case}: {report}");
        for _ in 0..SPOOFED {
            sender.send(&frame);
        }
        let expected = if passes { SPOOFED } else { 0 };
        let delivered = receive(&udp, expected, QUIET);
        assert_eq!(delivered, expected, "{case}: the kernel");
    }
}

/// At tcx ingress, beside another tool's XDP program (`run --on-conflict tc`), the probe in drop
/// mode mitigates as at XDP, and the audit finds it there by querying the hook; the other
/// program is still said.
#[test]
#[ignore = "needs root"]
fn a_probe_dropping_at_tcx_ingress_mitigates_beside_another_xdp_program() {
    let link = Link::new("audit-tcx");
    let services = Services::open(&link);
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let _foreign = ForeignXdp::attach(&link.receiver, RECEIVER_IF);
    // The advice beside the other program, pasted, serves the veth at tcx ingress.
    let remedy = assert_exposed(&link, &services);
    assert_pasted_drops(
        &link.receiver,
        advised(&remedy, "localnet-probe run", " ("),
        "tcx",
    );
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--iface", RECEIVER_IF, "--on-conflict", "tc", "--drop"],
    );
    probe.wait_ready();
    let report = assert_mitigated(&link, &services);
    let interface = veth(&report);
    let on = &interface["localnet_probe"];
    assert_eq!(on["hook"], "tcx", "{on}");
    assert_eq!(on["xdp_mode"], Value::Null, "{on}");
    assert_eq!(on["mode"], "drop", "{on}");
    assert_eq!(on["processes"][0]["pid"], probe.pid(), "{on}");
    assert!(
        interface["other_xdp_program"].is_u64(),
        "the other program is said: {interface}"
    );
    assert_eq!(interface["replies_seen"], Value::Null, "no --egress");
}

/// A spoofed SYN to 127.0.0.1 from the link, answered by the listener there: the probe counts
/// the SYN-ACK leaving with a loopback source at tcx egress, and the audit reads that count from
/// the probe's own counters and says the link was exploited.
#[test]
#[ignore = "needs root"]
fn an_answered_spoofed_syn_makes_the_link_exploited() {
    let link = Link::new("audit-exploit");
    let netns = &link.receiver;
    let _listener = netns.enter(|| {
        TcpListener::bind((Ipv4Addr::LOCALHOST, TCP_PORT)).expect("bind the TCP listener")
    });
    netns.sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    // Without it the SYN-ACK waits for ARP, whose request has the source 127.0.0.1 and is never
    // answered.
    let mac = SENDER_MAC.map(|byte| format!("{byte:02x}")).join(":");
    netns.ip(&[
        "neigh",
        "replace",
        &SENDER_V4.to_string(),
        "lladdr",
        &mac,
        "dev",
        RECEIVER_IF,
        "nud",
        "permanent",
    ]);
    let probe = ProbeProcess::start(PROBE, netns, &["--egress", "--iface", RECEIVER_IF]);
    probe.wait_ready();
    let (code, report) = audit_with(netns, &["--iface", RECEIVER_IF]);
    assert_eq!(code, 1, "exposed before anything is answered: {report}");
    assert_eq!(veth(&report)["verdict"], "exposed", "{report}");
    assert_eq!(veth(&report)["replies_seen"], 0, "counted, none: {report}");

    let mut syn = Vec::new();
    PacketBuilder::ethernet2(SENDER_MAC, RECEIVER_MAC)
        .ipv4(SENDER_V4.octets(), Ipv4Addr::LOCALHOST.octets(), 64)
        .tcp(40000, TCP_PORT, 1, 64240)
        .syn()
        .write(&mut syn, &[])
        .expect("build a SYN");
    link.raw_sender().send(&syn);
    probe.wait_for(Duration::from_secs(20), |report| {
        report["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|entry| {
                entry["name"] == RECEIVER_IF && entry["packets_replied"].as_u64() >= Some(1)
            })
    });

    let (code, report) = audit_with(netns, &["--iface", RECEIVER_IF]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["exploited"], true, "{report}");
    let interface = veth(&report);
    assert_eq!(interface["verdict"], "exploited", "{report}");
    let replies = interface["replies_seen"].as_u64().expect("replies counted");
    assert!(replies >= 1, "{report}");
    assert_eq!(interface["localnet_probe"]["hook"], "xdp", "{report}");
    let finding = &report["findings"][0];
    assert_eq!(finding["kind"], "exploited", "first: {report}");
    assert_eq!(finding["severity"], "exposure");
    assert_eq!(finding["interface"], RECEIVER_IF);
    let remedies = finding["remedies"].to_string();
    let samples = finding["remedies"]
        .as_array()
        .expect("remedies")
        .iter()
        .filter_map(Value::as_str)
        .find(|remedy| remedy.starts_with("see who tries"))
        .unwrap_or_else(|| panic!("no remedy for samples in {remedies}"));
    // Pasted once the probe that counted is stopped, as it says.
    assert!(
        samples.contains(&format!("stop it (pid {} ", probe.pid())),
        "{samples}"
    );
    drop(probe);
    wait_detached(netns, RECEIVER_IF);
    let command = advised(samples, "localnet-probe run", " (");
    assert!(command.ends_with(" --egress --events"), "{command}");
    let report = assert_pasted_drops(netns, command, "xdp");
    assert_eq!(
        testbed::interface(&report, RECEIVER_IF)["egress"],
        true,
        "{command}: {report}"
    );
}
