//! Advice under `ip netns exec` where a standing filter is pinned: the BPF file system there is
//! not the host's, so the pins are not visible, and a pinned BPF link can be neither replaced
//! (`ip link set … xdpdrv off`) nor joined at tcx ("Can't replace active BPF XDP link"). `run`
//! says it is localnet-probe's standing filter and how to remove it from the host's mount
//! namespace, the command it gives removes it, and `audit` says `pinned`, not `process`.
//! Needs root.

use std::{process::Command, time::Duration};

use serde_json::Value;
use testbed::{Netns, ProbeProcess, served};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");

/// `localnet-probe args…` under `ip netns exec`, in a mount namespace of its own.
fn under_ip_netns_exec(netns: &Netns, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", &netns.name, PROBE])
        .args(args)
        .output()
        .expect("run ip netns exec")
}

#[test]
#[ignore = "needs root"]
fn a_pinned_filter_gets_advice_that_works_under_ip_netns_exec() {
    let netns = Netns::new("pinadv");
    netns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    netns.ip(&["link", "set", "va", "up"]);
    netns.ip(&["link", "set", "vb", "up"]);
    let pinned = ProbeProcess::start_pinned(PROBE, &netns, &["--iface", "va"]);
    pinned.wait_ready();
    let (status, _) = pinned.stop(libc::SIGTERM);
    assert!(status.success(), "run --pin: {status:?}");
    assert!(netns.has_xdp("va"), "the standing filter is not attached");

    let nsenter = format!("nsenter --net=/run/netns/{}", netns.name);
    let mut advised = None;
    for conflict in [&[][..], &["--on-conflict", "tc"]] {
        let output = under_ip_netns_exec(
            &netns,
            &[
                &["run", "--iface", "va", "--json", "--duration", "1"],
                conflict,
            ]
            .concat(),
        );
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "{conflict:?}: {stderr}");
        assert!(
            stderr.contains("localnet-probe's")
                && stderr.contains(&format!("`{nsenter} localnet-probe detach --iface va`"))
                && !stderr.contains("xdpdrv off")
                && !stderr.contains("--on-conflict tc"),
            "{conflict:?}: {stderr}"
        );
        advised = stderr
            .split('`')
            .find(|part| part.ends_with("detach --iface va"))
            .map(str::to_owned);
    }

    let audit = under_ip_netns_exec(&netns, &["audit", "--json"]);
    let report: Value = serde_json::from_slice(&audit.stdout).unwrap_or_else(|e| {
        panic!(
            "audit's stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&audit.stderr)
        )
    });
    let va = report["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|interface| interface["name"] == "va")
        .unwrap_or_else(|| panic!("no va in {report}"));
    assert_eq!(va["localnet_probe"]["how"], "pinned", "{va}");
    assert_eq!(va["localnet_probe"]["processes"], Value::Array(Vec::new()));

    // With route_localnet on, its advice takes the filter over in drop mode from the host's
    // mount namespace; pasted here, it does.
    netns.sysctl("net/ipv4/conf/va/route_localnet", "1");
    let audit = under_ip_netns_exec(&netns, &["audit", "--json"]);
    let report: Value = serde_json::from_slice(&audit.stdout).expect("JSON");
    let remedy = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|finding| finding["interface"] == "va")
        .flat_map(|finding| finding["remedies"].as_array().expect("remedies"))
        .filter_map(Value::as_str)
        .find(|remedy| remedy.starts_with("or drop frames with loopback addresses"))
        .unwrap_or_else(|| panic!("no remedy for va in {report}"));
    let takeover = testbed::advised(remedy, "nsenter --net=", " (");
    assert!(
        takeover.starts_with(&format!("{nsenter} localnet-probe run --pin --iface va")),
        "{takeover}"
    );
    let output = Command::new("sh")
        .args([
            "-c",
            &(takeover.replacen("localnet-probe", PROBE, 1) + " --json --duration 0.5"),
        ])
        .output()
        .expect("run sh");
    assert!(output.status.success(), "{takeover}: {output:?}");
    let status = netns.output(PROBE, &["status", "--json"]);
    let status: Value = serde_json::from_slice(
        status
            .stdout
            .split(|byte| *byte == b'\n')
            .next()
            .expect("a line"),
    )
    .expect("JSON");
    assert_eq!(served(&status), ["va"], "{takeover}: {status}");
    assert_eq!(
        status["interfaces"][0]["mode"], "drop",
        "{takeover}: {status}"
    );

    // The advice, run as given (from this test's mount namespace, the host's).
    let advised = advised.expect("a detach command");
    let output = Command::new("sh")
        .args(["-c", &advised.replacen("localnet-probe", PROBE, 1)])
        .output()
        .expect("run sh");
    assert!(output.status.success(), "{advised}: {output:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while netns.has_xdp("va") {
        assert!(
            std::time::Instant::now() < deadline,
            "{advised} left the filter attached"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!netns.pin_dir().exists(), "{advised} left the pins");
}

/// `run --pin` under `ip netns exec` mounts a BPF file system of that mount namespace's own:
/// it says, and `status` there says (`pins_vanish`), that the filter goes away with it, and it
/// does, though the probe cannot read /proc/1/ns/mnt (the test VM's case) and its parent is in
/// the same namespace.
#[test]
#[ignore = "needs root"]
fn pins_said_to_vanish_under_ip_netns_exec_do() {
    let netns = Netns::new("pinvan");
    netns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    netns.ip(&["link", "set", "va", "up"]);
    netns.ip(&["link", "set", "vb", "up"]);
    let script = format!(
        "{PROBE} run --pin --iface va --json --duration 0.3 >/dev/null && {PROBE} status --json"
    );
    let output = Command::new("ip")
        .args(["netns", "exec", &netns.name, "sh", "-c", &script])
        .output()
        .expect("run ip netns exec");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script}: {output:?}");
    assert!(
        stderr.contains("it goes away with this mount namespace")
            && !stderr.contains("stays attached"),
        "{stderr}"
    );
    let status: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("status is not JSON ({e}): {output:?}"));
    assert_eq!(served(&status), ["va"], "{status}");
    assert_eq!(status["standing_filter"]["pins_vanish"], true, "{status}");

    // The mount namespace went with `ip netns exec`, and the filter with its pins.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while netns.has_xdp("va") {
        assert!(
            std::time::Instant::now() < deadline,
            "the filter said to go away is still attached"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = netns.output(PROBE, &["status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(status["standing_filter"], Value::Null, "{status}");
}
