//! The fallback for kernels without XDP multi-buffer (before 5.18: Ubuntu 22.04's 5.15, RHEL 9's
//! 5.14 unless backported), taken on a kernel that has it: `LOCALNET_PROBE_WITHOUT=xdp_frags`
//! makes the probe load the XDP programs without `xdp.frags`. No kernel that old boots here, so
//! this is how the fallback is tested: exact counts and drops on a veth, and an interface whose
//! MTU needs multi-buffer left out with a sentence that names the feature, while the others are
//! served. Needs root.

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Command,
    time::Duration,
};

use test_frames::ipv4;
use testbed::{
    Link, Netns, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, RECEIVER_V4, SENDER_MAC, SENDER_V4,
    class_packets, interface, receive, served,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const QUIET: Duration = Duration::from_millis(300);
/// Runs the probe as if the kernel had no XDP multi-buffer.
const WITHOUT_FRAGS: [&str; 2] = ["env", "LOCALNET_PROBE_WITHOUT=xdp_frags"];
/// A veth pair in the receiver's namespace with a jumbo MTU, which needs multi-buffer.
const JUMBO_IF: &str = "jumbo0";
const JUMBO_PEER: &str = "jumbo1";
const JUMBO_MTU: &str = "9000";
/// What the probe says of an interface it leaves out for its MTU.
const LEFT_OUT: &str = "jumbo0: left out: its MTU, 9000, needs XDP multi-buffer (Linux 5.18 and \
                        later have it), which this kernel lacks: without it the XDP programs \
                        serve an MTU of at most 4073; lower its MTU to 4073 or less, or leave it \
                        out with --exclude";

/// Adds the jumbo pair to `netns`, both ends up.
fn add_jumbo_pair(netns: &Netns) {
    netns.ip(&[
        "link", "add", JUMBO_IF, "mtu", JUMBO_MTU, "type", "veth", "peer", "name", JUMBO_PEER,
        "mtu", JUMBO_MTU,
    ]);
    netns.ip(&["link", "set", JUMBO_IF, "up"]);
    netns.ip(&["link", "set", JUMBO_PEER, "up"]);
}

/// The name the kernel gives the XDP program on `dev` in `netns` (its first 15 bytes), from
/// `ip -details link show`.
fn xdp_program_name(netns: &Netns, dev: &str) -> String {
    let output = netns.output("ip", &["-details", "link", "show", "dev", dev]);
    let text = String::from_utf8_lossy(&output.stdout);
    let after = text
        .split("prog/xdp ")
        .nth(1)
        .unwrap_or_else(|| panic!("no XDP program on {dev}: {text}"));
    let mut words = after.split_whitespace();
    words
        .find(|word| *word == "name")
        .and_then(|_| words.next())
        .unwrap_or_else(|| panic!("no program name on {dev}: {text}"))
        .to_owned()
}

/// Spoofed datagrams to a server bound to 127.0.0.1 (route_localnet=1 lets them in) and frames
/// of every size up to the MTU, all dropped and each counted with its exact length, by the
/// programs without multi-buffer; the jumbo pair is left out with its reason, and served once
/// its MTU is lowered.
#[test]
#[ignore = "needs root"]
fn without_multi_buffer_frames_are_counted_exactly_dropped_and_jumbo_mtus_left_out() {
    const SPOOFED: usize = 200;
    const SIZES: usize = 1_000;
    let link = Link::new("lin");
    add_jumbo_pair(&link.receiver);
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    let benign_server = link.receiver_udp(SocketAddr::from((RECEIVER_V4, 5354)));

    // Every interface that is up: vrx and the jumbo pair.
    let probe = ProbeProcess::start_wrapped(&WITHOUT_FRAGS, PROBE, &link.receiver, &["--drop"]);
    let ready = probe.wait_ready();
    assert_eq!(served(&ready), [RECEIVER_IF], "{ready}");
    let entry = interface(&ready, RECEIVER_IF);
    assert_eq!(entry["xdp_mode"], "native", "{entry}");
    assert_eq!(entry["mode"], "drop");
    let said = probe.wait_until_said(LEFT_OUT);
    assert!(said.contains("jumbo1: left out: its MTU, 9000"), "{said}");
    assert!(
        said.contains(
            "this kernel has no XDP multi-buffer (Linux 5.18 and later have it), masked by \
             LOCALNET_PROBE_WITHOUT"
        ),
        "{said}"
    );
    assert!(
        said.contains("attached to vrx (native XDP, without multi-buffer, drop mode)"),
        "{said}"
    );
    assert_eq!(
        xdp_program_name(&link.receiver, RECEIVER_IF),
        "localnet_probe_",
        "the program without multi-buffer (the one with it is named localnet_probe)"
    );
    assert!(!link.receiver.has_xdp(JUMBO_IF));
    assert!(!link.receiver.has_xdp(JUMBO_PEER));

    let spoofed = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 5353)
        .build();
    let benign = ipv4(SENDER_V4, RECEIVER_V4)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 5354)
        .build();
    let mut sender = link.paced_sender();
    for _ in 0..SPOOFED {
        sender.send(&spoofed);
        sender.send(&benign);
    }
    assert_eq!(receive(&server, 0, QUIET), 0, "the probe drops them");
    assert_eq!(
        receive(&benign_server, SPOOFED, QUIET),
        SPOOFED,
        "benign traffic passes"
    );
    // Lengths from the shortest to the MTU's (1,514 bytes), each step of the length's
    // approximation taken and not taken.
    let mut sized_bytes = 0;
    for round in 0..SIZES {
        let payload = vec![0x5a; round * 1_472 / (SIZES - 1)];
        let frame = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
            .macs(SENDER_MAC, RECEIVER_MAC)
            .ports(40000, 5355)
            .payload(&payload)
            .build();
        sized_bytes += frame.len() as u64;
        sender.send(&frame);
    }
    sender.finish();
    let total = (SPOOFED + SIZES) as u64;
    let report = probe.wait_for(Duration::from_secs(20), |report| {
        interface(report, RECEIVER_IF)["packets_matched"]
            .as_u64()
            .is_some_and(|matched| matched >= total)
    });
    let entry = interface(&report, RECEIVER_IF);
    assert_eq!(entry["packets_matched"], total, "{entry}");
    assert_eq!(entry["packets_dropped"], total, "{entry}");
    assert_eq!(
        entry["bytes_matched"],
        spoofed.len() as u64 * SPOOFED as u64 + sized_bytes,
        "{entry}"
    );
    assert_eq!(
        class_packets(entry, "ipv4", "destination", "dropped"),
        total
    );

    // Lowered, its MTU fits: served at the next link event, in generic mode as long as its
    // peer's MTU is above what veth takes in native mode without multi-buffer.
    link.receiver.ip(&["link", "set", JUMBO_IF, "mtu", "1500"]);
    let said = probe.wait_until_said("attached to jumbo0");
    assert!(
        said.contains("attached to jumbo0 (generic XDP, without multi-buffer, drop mode)"),
        "{said}"
    );
    assert!(link.receiver.has_xdp(JUMBO_IF));

    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
    assert!(!link.receiver.has_xdp(RECEIVER_IF), "detached on exit");
    assert!(!link.receiver.has_xdp(JUMBO_IF), "detached on exit");
}

/// Named on the command line, an interface whose MTU needs multi-buffer is an invalid argument
/// (exit status 2), said in one sentence, with nothing attached.
#[test]
#[ignore = "needs root"]
fn without_multi_buffer_a_jumbo_mtu_named_is_refused_with_the_feature_named() {
    let link = Link::new("linj");
    add_jumbo_pair(&link.receiver);
    let output = Command::new("ip")
        .args(["netns", "exec", &link.receiver.name])
        .args(WITHOUT_FRAGS)
        .args([PROBE, "run", "--json", "--duration", "1"])
        .args(["--iface", RECEIVER_IF, "--iface", JUMBO_IF])
        .output()
        .expect("run localnet-probe");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "error: jumbo0 cannot be served on this kernel: its MTU, 9000, needs XDP \
             multi-buffer (Linux 5.18 and later have it), which this kernel lacks"
        ),
        "{stderr}"
    );
    assert!(!link.receiver.has_xdp(RECEIVER_IF));
    assert!(!link.receiver.has_xdp(JUMBO_IF));

    // With multi-buffer the same interfaces are served.
    let output = Command::new("ip")
        .args(["netns", "exec", &link.receiver.name])
        .args([PROBE, "run", "--json", "--duration", "0.5"])
        .args(["--iface", RECEIVER_IF, "--iface", JUMBO_IF])
        .output()
        .expect("run localnet-probe");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `--version` and `status --json` carry the minimum kernel and the features found, masked ones
/// said so.
#[test]
#[ignore = "needs root"]
fn version_and_status_carry_the_kernel_features() {
    let netns = Netns::new("linv");
    let version = netns.output(PROBE, &["--version"]);
    assert!(version.status.success());
    let text = String::from_utf8_lossy(&version.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("localnet-probe "), "{text}");
    assert!(lines[1].starts_with("revision "), "{text}");
    assert!(lines[2].starts_with("minimum kernel: Linux 5.9;"), "{text}");
    assert!(
        lines[3].contains("XDP multi-buffer yes") && lines[3].contains("BPF ring buffer yes"),
        "{text}"
    );

    // In the host's mount namespace, where bpffs is (`ip netns exec` has none).
    // Without the privileges to probe: said, and still exit status 0.
    let unprivileged = netns
        .command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args([PROBE, "--version"])
        .output()
        .expect("run localnet-probe --version as nobody");
    let text = String::from_utf8_lossy(&unprivileged.stdout);
    assert!(unprivileged.status.success(), "{text}");
    assert!(
        text.lines()
            .nth(3)
            .is_some_and(|line| line.contains(": features not probed (cannot probe the kernel")),
        "{text}"
    );

    let status = netns
        .command(PROBE)
        .args(["status", "--json"])
        .env("LOCALNET_PROBE_WITHOUT", "xdp_frags")
        .output()
        .expect("run localnet-probe status");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status as JSON");
    let kernel = &report["kernel"];
    assert_eq!(kernel["minimum"], "5.9", "{report}");
    assert_eq!(kernel["xdp_frags"], false, "{report}");
    assert_eq!(kernel["ring_buffer"], true, "{report}");
    assert_eq!(
        kernel["masked"],
        serde_json::json!(["xdp_frags"]),
        "{report}"
    );
    assert!(kernel["release"].is_string(), "{report}");
}
