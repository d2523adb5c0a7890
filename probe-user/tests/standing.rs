//! The standing filter (`run --pin`, `status`, `detach`) as a host relies on it: it filters and
//! counts after the CLI exits, a restart or a mode change leaves no frame unfiltered, and
//! `detach` leaves nothing behind. Needs root.

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Output,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use test_frames::ipv4;
use testbed::{
    Link, Netns, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, SENDER_MAC, SENDER_V4, class_packets,
    interface, only_caps, receive, stderr_of,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const QUIET: Duration = Duration::from_millis(300);
const PORT: u16 = 5353;

fn spoofed_to_localhost() -> Vec<u8> {
    ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, PORT)
        .build()
}

/// `run --pin --json --duration 0.3 args…` in `netns`, to its end.
fn run_pin(netns: &Netns, args: &[&str]) -> Output {
    let run_pin = ["run", "--pin", "--json", "--duration", "0.3"];
    netns.output(PROBE, &[&run_pin[..], args].concat())
}

/// `status --json`, which must succeed.
fn status(netns: &Netns) -> Value {
    let output = netns.output(PROBE, &["status", "--json"]);
    assert!(output.status.success(), "status: {}", stderr_of(&output));
    serde_json::from_slice(&output.stdout).expect("status writes JSON")
}

/// Stops a `run --pin` with SIGTERM; it must exit 0.
fn stop(probe: ProbeProcess) {
    let stderr = probe.stderr();
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(
        status.success(),
        "run --pin exited {status}; stderr: {stderr}"
    );
}

/// Sends spoofed frames every 200 µs on its own thread until stopped (at most 60,000 or 30 s);
/// returns how many it sent.
fn send_continuously(link: &Link, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    let sender = link.raw_sender();
    let frame = spoofed_to_localhost();
    thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) && sent < 60_000 && started.elapsed().as_secs() < 30 {
            sender.send(&frame);
            sent += 1;
            thread::sleep(Duration::from_micros(200));
        }
        sent
    })
}

fn dropped(report: &Value) -> u64 {
    interface(report, RECEIVER_IF)["packets_dropped"]
        .as_u64()
        .expect("packets_dropped")
}

#[test]
#[ignore = "needs root"]
fn the_standing_filter_outlives_the_cli_restarts_without_a_gap_and_detaches_cleanly() {
    let link = Link::new("pin");
    let netns = &link.receiver;
    netns.sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let listener = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, PORT)));
    let sender = link.raw_sender();
    let frame = spoofed_to_localhost();

    // Pinned in drop mode, then the CLI exits: frames are still dropped and counted.
    let first = ProbeProcess::start_pinned(PROBE, netns, &["--drop", "--iface", RECEIVER_IF]);
    first.wait_ready();
    stop(first);
    assert!(netns.has_xdp(RECEIVER_IF), "the filter stays attached");
    for _ in 0..100 {
        sender.send(&frame);
    }
    assert_eq!(
        receive(&listener, 0, QUIET),
        0,
        "dropped with no CLI running"
    );
    let shown = status(netns);
    assert_eq!(shown["type"], "status");
    assert_eq!(shown["standing_filter"]["served_by"], Value::Null);
    // nsenter --net keeps the host's mount namespace and its BPF file system: the pins stay.
    assert_eq!(shown["standing_filter"]["pins_vanish"], false, "{shown}");
    let entry = interface(&shown, RECEIVER_IF);
    assert_eq!(entry["mode"], "drop");
    assert_eq!(dropped(&shown), 100, "{shown}");
    assert_eq!(
        class_packets(entry, "ipv4", "destination", "dropped"),
        100,
        "{entry}"
    );

    // Frames flow continuously across two restarts: none is delivered, all are counted.
    let stop_sending = Arc::new(AtomicBool::new(false));
    let sending = send_continuously(&link, Arc::clone(&stop_sending));
    thread::sleep(Duration::from_millis(200));
    for _ in 0..2 {
        let restarted =
            ProbeProcess::start_pinned(PROBE, netns, &["--drop", "--iface", RECEIVER_IF]);
        let report = restarted.wait_ready();
        assert!(dropped(&report) >= 100, "counters continue: {report}");
        thread::sleep(Duration::from_millis(200));
        stop(restarted);
        thread::sleep(Duration::from_millis(100));
    }
    stop_sending.store(true, Ordering::Relaxed);
    let sent = sending.join().expect("sender");
    assert!(sent > 1000, "only {sent} frames sent across the restarts");
    assert_eq!(
        receive(&listener, 0, QUIET),
        0,
        "a frame got through a restart"
    );
    assert_eq!(dropped(&status(netns)), 100 + sent);

    // The mode changes live: monitor lets them through (counted), drop stops them again.
    let monitoring = ProbeProcess::start_pinned(PROBE, netns, &["--iface", RECEIVER_IF]);
    let report = monitoring.wait_ready();
    // Turning dropping off is said.
    monitoring.wait_until_said("loopback frames pass from now on");
    assert_eq!(interface(&report, RECEIVER_IF)["mode"], "monitor");
    for _ in 0..50 {
        sender.send(&frame);
    }
    assert_eq!(
        receive(&listener, 50, QUIET),
        50,
        "monitor mode passes them"
    );
    stop(monitoring);
    let dropping = ProbeProcess::start_pinned(PROBE, netns, &["--drop-on", RECEIVER_IF]);
    dropping.wait_ready();
    for _ in 0..50 {
        sender.send(&frame);
    }
    assert_eq!(receive(&listener, 0, QUIET), 0, "drop mode again");
    stop(dropping);
    let shown = status(netns);
    let entry = interface(&shown, RECEIVER_IF);
    assert_eq!(class_packets(entry, "ipv4", "destination", "passed"), 50);
    assert_eq!(
        class_packets(entry, "ipv4", "destination", "dropped"),
        100 + sent + 50
    );

    // Detach: delivery is back, nothing is attached or pinned.
    let output = netns.output(PROBE, &["detach"]);
    assert!(output.status.success(), "detach: {}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains(&format!("detached from {RECEIVER_IF}")),
        "{}",
        stderr_of(&output)
    );
    assert!(!netns.has_xdp(RECEIVER_IF));
    assert!(!netns.pin_dir().exists(), "{:?} is left", netns.pin_dir());
    for _ in 0..10 {
        sender.send(&frame);
    }
    assert_eq!(receive(&listener, 10, QUIET), 10);
    let shown = status(netns);
    assert_eq!(shown["standing_filter"], Value::Null);
    let entry = shown["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|entry| entry["name"] == RECEIVER_IF)
        .expect("the interface is listed");
    assert_eq!(entry["exposed"], true, "{entry}");
    let output = netns.output(PROBE, &["detach"]);
    assert!(output.status.success());
    assert!(stderr_of(&output).contains("nothing to detach"));
}

// The faults a new user meets: each is refused with one clear sentence and the documented exit
// status (1 for these runtime errors), and leaves every interface attached and configured, or
// neither; cleanup leaves nothing in bpffs or on an interface.

/// The status a process exited with; panics on a signal.
fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {}", stderr_of(output)))
}

/// Asserts that `output` succeeded (exit status 0).
fn assert_succeeded(output: &Output) {
    assert_eq!(code(output), 0, "stderr: {}", stderr_of(output));
}

/// Asserts that `output` failed with `expected` and that its stderr holds every one of `says`.
fn assert_refused(output: &Output, expected: i32, says: &[&str]) {
    let text = stderr_of(output);
    assert_eq!(code(output), expected, "exit status; stderr: {text}");
    for words in says {
        assert!(text.contains(words), "no {words:?} in: {text}");
    }
}

/// `count` veth pairs `{tag}a<i>`/`{tag}b<i>` in `netns`, all up, made with one `ip -batch`.
fn veth_pairs(netns: &Netns, tag: &str, count: usize) -> Vec<String> {
    let mut batch = String::new();
    for i in 0..count {
        batch += &format!("link add {tag}a{i} type veth peer name {tag}b{i}\n");
        batch += &format!("link set {tag}a{i} up\nlink set {tag}b{i} up\n");
    }
    let path = std::env::temp_dir().join(format!("{}.batch", netns.name));
    std::fs::write(&path, batch).expect("write the ip batch");
    netns.ip(&["-batch", path.to_str().expect("a UTF-8 path")]);
    let _ = std::fs::remove_file(&path);
    (0..count).map(|i| format!("{tag}a{i}")).collect()
}

/// A new network namespace `tag` with [`veth_pairs`] `{prefix}a<i>`/`{prefix}b<i>`; the
/// `{prefix}a<i>` are returned.
fn with_veths(tag: &str, prefix: &str, count: usize) -> (Netns, Vec<String>) {
    let netns = Netns::new(tag);
    let devices = veth_pairs(&netns, prefix, count);
    (netns, devices)
}

/// The interfaces of `netns` that carry an XDP program, per one `ip -d link show`.
fn with_xdp(netns: &Netns) -> Vec<String> {
    let output = std::process::Command::new("ip")
        .args(["-n", &netns.name, "-d", "link", "show"])
        .output()
        .expect("run ip");
    let mut found = Vec::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if !line.starts_with(' ') {
            current = line
                .split(": ")
                .nth(1)
                .map(|name| name.split('@').next().unwrap_or(name).to_owned());
        } else if line.contains("prog/xdp")
            && let Some(name) = current.take()
        {
            found.push(name);
        }
    }
    found
}

/// Sends `count` spoofed frames out of `device` in `netns`.
fn send_on(netns: &Netns, device: &str, count: usize) {
    let sender = netns.enter(|| testbed::RawSender::open(device));
    let frame = spoofed_to_localhost();
    for _ in 0..count {
        sender.send(&frame);
    }
}

/// The names of a status report's `field` (`interfaces` or `removed`).
fn names(report: &Value, field: &str) -> Vec<String> {
    report[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {report}"))
        .iter()
        .map(|entry| entry["name"].as_str().expect("name").to_owned())
        .collect()
}

fn link_pins(netns: &Netns) -> Vec<String> {
    match std::fs::read_dir(netns.pin_dir().join("links")) {
        Ok(entries) => entries
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `detach` must succeed and leave nothing: no XDP in `netns`, no pin directory.
fn detach_all(netns: &Netns) -> Output {
    let output = netns.output(PROBE, &["detach"]);
    assert_eq!(code(&output), 0, "detach: {}", stderr_of(&output));
    assert_eq!(
        with_xdp(netns),
        Vec::<String>::new(),
        "XDP left after detach"
    );
    assert!(!netns.pin_dir().exists(), "{:?} is left", netns.pin_dir());
    output
}

/// `--iface` for each of `devices` (run takes no patterns).
fn ifaces(devices: &[String]) -> Vec<&str> {
    devices
        .iter()
        .flat_map(|device| ["--iface", device.as_str()])
        .collect()
}

/// `localnet-probe args…` in `netns` as nobody with exactly `caps`.
fn probe_as_nobody(netns: &Netns, caps: &str, args: &[&str]) -> Output {
    let setpriv = only_caps(caps);
    netns
        .command(&setpriv[0])
        .args(&setpriv[1..])
        .arg(PROBE)
        .args(args)
        .output()
        .expect("run setpriv")
}

#[test]
#[ignore = "needs root"]
fn a_second_run_pin_or_a_detach_is_refused_naming_the_first() {
    let (netns, devices) = with_veths("busy", "b", 1);
    let first = ProbeProcess::start_pinned(PROBE, &netns, &["--drop", "--iface", &devices[0]]);
    first.wait_ready();
    let pid = format!("pid {}", first.pid());
    let second = run_pin(&netns, &["--iface", &devices[0]]);
    assert_refused(&second, 1, &[&pid, "run --pin", "stop it first"]);
    assert!(second.stdout.is_empty(), "no report from the refused one");
    let detach = netns.output(PROBE, &["detach"]);
    assert_refused(&detach, 1, &[&pid, "stop it first"]);
    // The first is unaffected: attached, pinned, reporting, and stops cleanly.
    assert_eq!(with_xdp(&netns), devices);
    let report = first.wait_for(Duration::from_secs(5), |_| true);
    assert_eq!(interface(&report, &devices[0])["mode"], "drop");
    stop(first);
    assert_eq!(link_pins(&netns).len(), 1);
    detach_all(&netns);
}

#[test]
#[ignore = "needs root"]
fn no_mountable_bpf_file_system_says_how_to_mount_one_and_attaches_nothing() {
    let (netns, devices) = with_veths("nobpffs", "m", 1);
    // A mount namespace of its own where /sys/fs/bpf is a tmpfs, and a process that may load
    // and attach (and pass the permissions) but not mount.
    let caps = "+bpf,+net_admin,+dac_override";
    let script = format!(
        "umount -l /sys/fs/bpf 2>/dev/null; mount -t tmpfs none /sys/fs/bpf && exec {} {PROBE} \
         run --pin --json --duration 0.3 --iface {}",
        only_caps(caps).join(" "),
        devices[0]
    );
    let output = netns
        .command("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    assert_refused(
        &output,
        1,
        &["mount -t bpf bpf /sys/fs/bpf", "Operation not permitted"],
    );
    assert!(with_xdp(&netns).is_empty(), "attached without pins");
    assert!(!netns.pin_dir().exists());
}

#[test]
#[ignore = "needs root"]
fn under_ip_netns_exec_the_pins_are_said_to_go_with_the_command() {
    let (netns, devices) = with_veths("ipexec", "e", 1);
    let output = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns.name,
            PROBE,
            "run",
            "--pin",
            "--json",
        ])
        .args(["--duration", "0.3", "--iface", &devices[0]])
        .output()
        .expect("run ip netns exec");
    let text = stderr_of(&output);
    assert_eq!(code(&output), 0, "{text}");
    assert!(text.contains("the pins go away with it"), "{text}");
    assert!(
        text.contains(&format!("nsenter --net=/run/netns/{} ", netns.name)),
        "{text}"
    );
    assert!(
        !text.contains("stays attached"),
        "promises a filter that is gone: {text}"
    );
    // Its mount namespace and the filter went with it; nothing reached the host's bpffs.
    assert!(with_xdp(&netns).is_empty());
    assert!(!netns.pin_dir().exists());
}

#[test]
#[ignore = "needs root"]
fn a_pin_directory_with_something_else_in_it_is_refused_and_an_incompatible_one_detached() {
    let (netns, devices) = with_veths("foreign", "f", 1);
    let dir = netns.pin_dir();
    let bpftool = |args: &[&str]| {
        let output = std::process::Command::new("bpftool")
            .args(args)
            .output()
            .expect("run bpftool");
        assert!(
            output.status.success(),
            "bpftool {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let pin_anew = || run_pin(&netns, &["--drop", "--iface", &devices[0]]);

    // An invalid argument: exit 2, and no directory made for nothing.
    let output = netns.output(PROBE, &["run", "--pin", "--json", "--iface", "nosuch"]);
    assert_refused(&output, 2, &["unknown interface \"nosuch\""]);
    assert!(!dir.exists(), "{dir:?} made by a refused start");

    // Something else's map where the standing filter would go.
    std::fs::create_dir_all(&dir).expect("create the pin directory");
    let foo = dir.join("foo");
    let foo = foo.to_str().expect("UTF-8");
    bpftool(&[
        "map", "create", foo, "type", "array", "key", "4", "value", "4", "entries", "1", "name",
        "foo",
    ]);
    let output = pin_anew();
    assert_refused(&output, 1, &["\"foo\"", "did not put there"]);
    assert!(with_xdp(&netns).is_empty(), "attached despite the refusal");
    std::fs::remove_file(foo).expect("remove foo");

    // A standing filter, then its STANDING replaced by one of "layout 99".
    let output = pin_anew();
    assert_succeeded(&output);
    let standing = dir.join("STANDING");
    std::fs::remove_file(&standing).expect("remove STANDING");
    let standing = standing.to_str().expect("UTF-8");
    bpftool(&[
        "map",
        "create",
        standing,
        "type",
        "array",
        "key",
        "4",
        "value",
        "32",
        "entries",
        "1",
        "name",
        "lnp_standing",
    ]);
    let value: Vec<String> = b"lnprobe\0"
        .iter()
        .chain(&99u32.to_le_bytes())
        .chain(&64u32.to_le_bytes())
        .chain(&[0; 16])
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut update = vec![
        "map", "update", "pinned", standing, "key", "hex", "0", "0", "0", "0",
    ];
    update.extend(["value", "hex"]);
    update.extend(value.iter().map(String::as_str));
    bpftool(&update);
    let output = pin_anew();
    assert_refused(
        &output,
        1,
        &["incompatible version", "layout 99", "localnet-probe detach"],
    );
    // Refused without touching it: still attached by the old filter.
    assert_eq!(with_xdp(&netns), devices);
    let output = netns.output(PROBE, &["status", "--json"]);
    assert_refused(&output, 1, &["localnet-probe detach"]);
    detach_all(&netns);

    // And run --pin works again.
    let output = pin_anew();
    assert_succeeded(&output);
    assert_eq!(with_xdp(&netns), devices);
    detach_all(&netns);
}

#[test]
#[ignore = "needs root"]
fn the_pins_of_a_deleted_interface_are_reported_removed_and_cleared() {
    for clear_with in ["run --pin", "detach --iface", "detach"] {
        let netns = Netns::new("gone");
        let devices = veth_pairs(&netns, "g", 2);
        let (gone, kept) = (&devices[0], &devices[1]);
        let output = run_pin(&netns, &[&["--drop"][..], &ifaces(&devices)].concat());
        assert_succeeded(&output);
        send_on(&netns, "gb0", 7);
        let ifindex = netns.enter(|| testbed::ifindex(gone)).to_string();
        netns.ip(&["link", "del", gone]);

        let shown = status(&netns);
        assert_eq!(names(&shown, "interfaces"), [kept.as_str()], "{shown}");
        assert_eq!(names(&shown, "removed"), [gone.as_str()], "{shown}");
        assert_eq!(shown["removed"][0]["packets_dropped"], 7, "{shown}");
        // Reading changes nothing.
        assert!(link_pins(&netns).contains(&ifindex));

        let report_line = format!("{gone} (ifindex {ifindex}) was removed");
        match clear_with {
            "run --pin" => {
                let output = run_pin(&netns, &["--drop", "--iface", kept]);
                let text = stderr_of(&output);
                assert_eq!(code(&output), 0, "{text}");
                assert_eq!(text.matches(&report_line).count(), 1, "{text}");
                let reports: Vec<Value> = String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(|line| serde_json::from_str(line).expect("JSON"))
                    .collect();
                let removed: Vec<String> = reports
                    .iter()
                    .flat_map(|report| names(report, "removed"))
                    .collect();
                assert_eq!(removed, [gone.as_str()], "reported removed once");
                assert!(!link_pins(&netns).contains(&ifindex));
                let shown = status(&netns);
                assert_eq!(names(&shown, "removed"), Vec::<String>::new(), "{shown}");
                assert_eq!(names(&shown, "interfaces"), [kept.as_str()]);
                detach_all(&netns);
            }
            "detach --iface" => {
                let output = netns.output(PROBE, &["detach", "--iface", gone]);
                let text = stderr_of(&output);
                assert_eq!(code(&output), 0, "{text}");
                assert!(
                    text.contains(&format!("cleared the pins of {gone}")),
                    "{text}"
                );
                assert!(!link_pins(&netns).contains(&ifindex));
                assert_eq!(with_xdp(&netns), [kept.as_str()], "the other stays");
                let shown = status(&netns);
                assert_eq!(names(&shown, "interfaces"), [kept.as_str()]);
                assert_eq!(names(&shown, "removed"), Vec::<String>::new(), "{shown}");
                detach_all(&netns);
            }
            _ => {
                let output = detach_all(&netns);
                let text = stderr_of(&output);
                assert!(
                    text.contains(&format!("cleared the pins of {gone}")),
                    "{text}"
                );
                assert!(text.contains(&format!("detached from {kept}")), "{text}");
            }
        }
    }
}

#[test]
#[ignore = "needs root"]
fn sigkill_while_taking_over_leaves_every_interface_filtered_and_counted() {
    let (netns, devices) = with_veths("kill", "k", 20);
    let started = Instant::now();
    let first = ProbeProcess::start_pinned(PROBE, &netns, &ifaces(&devices));
    first.wait_ready();
    let ready_after = started.elapsed();
    stop(first);
    assert_eq!(with_xdp(&netns).len(), 20);
    let mut expected = 0;
    for round in 0..10u32 {
        // Spread over the time a start takes to be ready, adoption included.
        let delay = ready_after * round / 9;
        let args = [&["--drop"][..], &ifaces(&devices)].concat();
        let killed = ProbeProcess::start_pinned(PROBE, &netns, &args);
        thread::sleep(delay);
        let _ = killed.stop(libc::SIGKILL);
        let mut attached = with_xdp(&netns);
        attached.sort();
        let mut all = devices.clone();
        all.sort();
        assert_eq!(
            attached, all,
            "round {round} ({delay:?}): an interface lost its filter"
        );
        let device = round as usize % 20;
        send_on(&netns, &format!("kb{device}"), 3);
        expected += 3;
        let shown = status(&netns);
        assert_eq!(names(&shown, "interfaces").len(), 20, "{shown}");
        for entry in shown["interfaces"].as_array().expect("interfaces") {
            let mode = entry["mode"].as_str().expect("mode");
            assert!(mode == "drop" || mode == "monitor", "{entry}");
        }
        let matched: u64 = shown["interfaces"]
            .as_array()
            .expect("interfaces")
            .iter()
            .map(|entry| entry["packets_matched"].as_u64().expect("packets_matched"))
            .sum();
        assert_eq!(matched, expected, "round {round}: frames went uncounted");
    }
    let output = run_pin(&netns, &[&["--drop"][..], &ifaces(&devices)].concat());
    let text = stderr_of(&output);
    assert_eq!(code(&output), 0, "{text}");
    assert_eq!(text.matches("took over").count(), 20, "{text}");
    detach_all(&netns);
}

#[test]
#[ignore = "needs root"]
fn a_plain_run_on_the_standing_filters_interface_names_it_and_the_commands() {
    let (netns, devices) = with_veths("plain", "p", 1);
    let plain = || {
        netns.output(
            PROBE,
            &["run", "--json", "--duration", "0.3", "--iface", &devices[0]],
        )
    };
    let says = [
        "standing filter",
        "localnet-probe status",
        "localnet-probe run --pin",
        "localnet-probe detach",
    ];
    // While its `run --pin` serves it, and after.
    let serving = ProbeProcess::start_pinned(PROBE, &netns, &["--iface", &devices[0]]);
    serving.wait_ready();
    let output = plain();
    assert_refused(&output, 1, &says);
    assert!(stderr_of(&output).contains(&format!("pid {}", serving.pid())));
    stop(serving);
    let output = plain();
    assert_refused(&output, 1, &says);
    assert_eq!(with_xdp(&netns), devices, "the standing filter stays");
    assert_eq!(link_pins(&netns).len(), 1);
    detach_all(&netns);
}

#[test]
#[ignore = "needs root"]
fn what_pinning_needs_as_another_user() {
    let (netns, devices) = with_veths("privs", "u", 1);
    let run_pin = [
        "run",
        "--pin",
        "--json",
        "--duration",
        "0.3",
        "--iface",
        &devices[0],
    ];
    // CAP_BPF and CAP_NET_ADMIN load and attach, but the BPF file system is root's (1700).
    for args in [&run_pin[..], &["status", "--json"], &["detach"]] {
        let output = probe_as_nobody(&netns, "+bpf,+net_admin", args);
        assert_refused(&output, 1, &["Permission denied", "CAP_DAC_OVERRIDE"]);
    }
    assert!(with_xdp(&netns).is_empty());
    assert!(!netns.pin_dir().exists());
    // With CAP_DAC_OVERRIDE besides: pinned; status and detach need CAP_BPF and it only.
    let all = "+bpf,+net_admin,+dac_override";
    let output = probe_as_nobody(&netns, all, &run_pin);
    assert_succeeded(&output);
    assert_eq!(with_xdp(&netns), devices);
    let output = probe_as_nobody(&netns, "+net_admin,+dac_override", &["status", "--json"]);
    assert_refused(&output, 1, &["needs CAP_BPF"]);
    let output = probe_as_nobody(&netns, "+bpf,+dac_override", &["status", "--json"]);
    assert_succeeded(&output);
    let shown: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(names(&shown, "interfaces"), devices);
    // Taking it over again as nobody, then as root.
    let output = probe_as_nobody(&netns, all, &run_pin);
    assert_succeeded(&output);
    assert!(stderr_of(&output).contains("took over"));
    let output = netns.output(PROBE, &run_pin);
    assert_succeeded(&output);
    let output = probe_as_nobody(&netns, "+bpf,+dac_override", &["detach"]);
    assert_succeeded(&output);
    assert!(with_xdp(&netns).is_empty());
    assert!(!netns.pin_dir().exists());
}

#[test]
#[ignore = "needs root"]
fn an_interface_whose_pinning_was_cut_short_is_attached_anew_not_reported_removed() {
    let (netns, devices) = with_veths("cut", "c", 20);
    let mut all = devices.clone();
    all.sort();
    let pin_all = || run_pin(&netns, &ifaces(&devices));
    let no_removed = |output: &Output| {
        let text = stderr_of(output);
        assert_eq!(code(output), 0, "{text}");
        assert!(!text.contains("was removed"), "{text}");
        let reports = String::from_utf8_lossy(&output.stdout).into_owned();
        for line in reports.lines() {
            let report: Value = serde_json::from_str(line).expect("JSON");
            assert_eq!(names(&report, "removed"), Vec::<String>::new(), "{report}");
        }
    };
    // What a process killed between an interface's entry and its link leaves: the entry, no
    // link (which went with the process).
    let output = pin_all();
    no_removed(&output);
    let ifindex = netns.enter(|| testbed::ifindex(&devices[3]));
    std::fs::remove_file(netns.pin_dir().join("links").join(ifindex.to_string()))
        .expect("remove a link pin");
    let shown = status(&netns);
    assert_eq!(names(&shown, "removed"), Vec::<String>::new(), "{shown}");
    assert_eq!(names(&shown, "interfaces").len(), 19, "{shown}");
    assert!(!with_xdp(&netns).contains(&devices[3]));
    let output = pin_all();
    no_removed(&output);
    assert!(stderr_of(&output).contains(&format!("attached to {}", devices[3])));
    assert_eq!(
        status(&netns)["interfaces"]
            .as_array()
            .expect("array")
            .len(),
        20
    );
    detach_all(&netns);

    // Killed while pinning a new standing filter: every interface is attached and listed, or
    // neither, and none is reported removed.
    let started = Instant::now();
    let first = ProbeProcess::start_pinned(PROBE, &netns, &ifaces(&devices));
    first.wait_ready();
    let ready_after = started.elapsed();
    stop(first);
    detach_all(&netns);
    for round in 0..6u32 {
        let killed = ProbeProcess::start_pinned(PROBE, &netns, &ifaces(&devices));
        thread::sleep(ready_after * (round + 3) / 8);
        let _ = killed.stop(libc::SIGKILL);
        let mut attached = with_xdp(&netns);
        attached.sort();
        let shown = status(&netns);
        let mut listed = if shown["standing_filter"].is_null() {
            Vec::new()
        } else {
            names(&shown, "interfaces")
        };
        listed.sort();
        assert_eq!(attached, listed, "round {round}: {shown}");
        if !shown["standing_filter"].is_null() {
            assert_eq!(names(&shown, "removed"), Vec::<String>::new(), "{shown}");
        }
        let output = pin_all();
        no_removed(&output);
        let mut attached = with_xdp(&netns);
        attached.sort();
        assert_eq!(attached, all);
        detach_all(&netns);
    }
}

#[test]
#[ignore = "needs root"]
fn a_run_pin_refused_for_an_occupied_interface_changes_nothing() {
    let (netns, devices) = with_veths("occupied", "o", 2);
    let (standing, occupied) = (&devices[0], &devices[1]);
    let output = run_pin(&netns, &["--iface", standing]);
    assert_succeeded(&output);
    let other = ProbeProcess::start(PROBE, &netns, &["--iface", occupied]);
    other.wait_ready();
    let other_pid = format!("pid {}", other.pid());
    let refused = [
        &["--drop", "--iface", standing, "--iface", occupied][..],
        &["--drop", "--iface", occupied],
    ];
    for args in refused {
        let output = run_pin(&netns, args);
        assert_refused(&output, 1, &[occupied.as_str(), &other_pid]);
        // The standing filter is as it was: attached, in monitor mode.
        let shown = status(&netns);
        assert_eq!(
            names(&shown, "interfaces"),
            [standing.as_str()],
            "{args:?}: {shown}"
        );
        assert_eq!(
            interface(&shown, standing)["mode"],
            "monitor",
            "{args:?}: {shown}"
        );
        assert!(with_xdp(&netns).contains(standing));
    }
    let (status, _) = other.stop(libc::SIGTERM);
    assert!(status.success());
    detach_all(&netns);
}

/// `ip netns exec` gives `status` and `detach` a mount namespace without the host's bpffs: they
/// say they cannot see the pins rather than that there are none.
#[test]
#[ignore = "needs root"]
fn status_and_detach_say_when_they_cannot_see_the_pins() {
    let (netns, devices) = with_veths("unseen", "u", 1);
    assert_succeeded(&run_pin(&netns, &ifaces(&devices)));
    for command in ["status", "detach"] {
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &netns.name, PROBE, command])
            .output()
            .expect("run ip netns exec");
        // Its own name, not a placeholder.
        let nsenter = format!("`nsenter --net=/run/netns/{} localnet-probe …`", netns.name);
        assert_refused(&output, 1, &["cannot be seen from here", &nsenter]);
    }
    assert_eq!(with_xdp(&netns), [devices[0].as_str()], "still filtered");
    detach_all(&netns);
}

/// A device deleted while no probe runs, and another one created with its ifindex: the pins are
/// the old device's, reported removed; the new one is another interface.
#[test]
#[ignore = "needs root"]
fn a_device_that_takes_a_pinned_ones_ifindex_is_not_taken_for_it() {
    let (netns, devices) = with_veths("reuse", "r", 1);
    let old = &devices[0];
    assert_succeeded(&run_pin(&netns, &["--drop", "--iface", old]));
    send_on(&netns, "rb0", 3);
    let ifindex = netns.enter(|| testbed::ifindex(old)).to_string();
    netns.ip(&["link", "del", old]);
    netns.ip(&[
        "link", "add", old, "index", &ifindex, "type", "veth", "peer", "name", "rnew",
    ]);
    let shown = status(&netns);
    assert_eq!(names(&shown, "interfaces"), Vec::<String>::new(), "{shown}");
    assert_eq!(names(&shown, "removed"), [old.as_str()], "{shown}");
    assert_eq!(shown["removed"][0]["packets_dropped"], 3, "{shown}");

    let output = run_pin(&netns, &["--iface", old]);
    assert_succeeded(&output);
    let first: Value = serde_json::from_slice(
        output
            .stdout
            .split(|b| *b == b'\n')
            .next()
            .expect("a report"),
    )
    .expect("JSON");
    assert_eq!(names(&first, "removed"), [old.as_str()], "{first}");
    let shown = status(&netns);
    let entry = interface(&shown, old);
    assert_eq!(
        entry["mode"], "monitor",
        "the new device, served anew: {entry}"
    );
    assert_eq!(entry["packets_matched"], 0, "{entry}");
    detach_all(&netns);
}

/// A device moved into another namespace (as a container's end of a veth is) while no probe
/// runs takes the program along; the next `run --pin` here reports it removed, under its name,
/// and detaches it.
#[test]
#[ignore = "needs root"]
fn a_device_moved_away_is_reported_under_its_name_and_detached() {
    let (netns, devices) = with_veths("moved", "m", 2);
    let elsewhere = Netns::new("moved-to");
    assert_succeeded(&run_pin(
        &netns,
        &[&["--drop"][..], &ifaces(&devices)].concat(),
    ));
    netns.ip(&["link", "set", &devices[0], "netns", &elsewhere.name]);
    assert!(elsewhere.has_xdp(&devices[0]), "the program moved along");
    let shown = status(&netns);
    assert_eq!(names(&shown, "removed"), [devices[0].as_str()], "{shown}");

    let output = run_pin(&netns, &["--drop", "--iface", &devices[1]]);
    assert_succeeded(&output);
    assert!(
        stderr_of(&output).contains(&format!("{} (ifindex", devices[0])),
        "{}",
        stderr_of(&output)
    );
    assert!(!elsewhere.has_xdp(&devices[0]), "detached where it went");
    assert_eq!(with_xdp(&netns), [devices[1].as_str()]);
    detach_all(&netns);
}

/// `--capacity` bounds a takeover too: one that selects more than it allows keeps what the
/// standing filter serves, says what it leaves out, and keeps serving.
#[test]
#[ignore = "needs root"]
fn a_takeover_beyond_the_capacity_bound_serves_what_fits() {
    let (netns, devices) = with_veths("room", "c", 2);
    assert_succeeded(&run_pin(
        &netns,
        &["--capacity", "1", "--iface", &devices[0]],
    ));
    let output = run_pin(
        &netns,
        &[&["--capacity", "1"][..], &ifaces(&devices)].concat(),
    );
    assert_refused(
        &output,
        0,
        &[&format!(
            "{}: not attached: all 1 interfaces that --capacity allows are served",
            devices[1]
        )],
    );
    assert_eq!(with_xdp(&netns), [devices[0].as_str()]);
    detach_all(&netns);
}

/// A mount namespace that outlives the command (a shell's, made by `unshare --mount`, where no
/// BPF file system was mounted): the pins the probe puts in the file system it mounts stay
/// after it exits, as long as that namespace. That it is not the host's is known from an
/// ancestor in another one (this test, whose bpffs is another), whether or not init's can be
/// read (this machine's cannot): it says they go with the mount namespace, not with the command.
#[test]
#[ignore = "needs root"]
fn pins_are_said_to_go_away_only_where_known() {
    let (netns, devices) = with_veths("mntns", "m", 1);
    let script = format!(
        "umount /sys/fs/bpf 2>/dev/null; \
         nsenter --net=/run/netns/{ns} {PROBE} run --pin --json --duration 0.3 --iface {dev} \
         >/dev/null || exit 90; \
         nsenter --net=/run/netns/{ns} {PROBE} status --json; \
         nsenter --net=/run/netns/{ns} {PROBE} detach >/dev/null 2>&1",
        ns = netns.name,
        dev = devices[0],
    );
    let output = std::process::Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    let text = stderr_of(&output);
    assert_eq!(code(&output), 0, "{text}");
    assert!(text.contains("mounted a BPF file system"), "{text}");
    let status: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("status is not JSON ({e}): {text}"));
    assert_eq!(
        names(&status, "interfaces"),
        [devices[0].clone()],
        "the pins did not stay: {status}"
    );
    assert!(
        text.contains("the pins go away with it")
            && text.contains("it goes away with this mount namespace")
            && !text.contains("stays attached"),
        "{text}"
    );
    assert_eq!(status["standing_filter"]["pins_vanish"], true, "{status}");
    assert!(with_xdp(&netns).is_empty());
}

/// A pin `detach` cannot remove (a link pin that is a mount point in `detach`'s mount
/// namespace: EBUSY) keeps neither the other interfaces attached nor the failure quiet: the
/// others are detached, the one that stayed is named, the exit status is 1, and the next
/// `detach` removes it.
#[test]
#[ignore = "needs root"]
fn detach_removes_what_it_can_and_names_what_stayed() {
    let (netns, devices) = with_veths("stuck", "s", 2);
    assert_succeeded(&run_pin(&netns, &ifaces(&devices)));
    let stuck_ifindex = netns.enter(|| testbed::ifindex(&devices[0]));
    let stuck = netns
        .pin_dir()
        .join("links")
        .join(stuck_ifindex.to_string());
    let script = format!(
        "mount --make-rprivate / && mount --bind {stuck} {stuck} && \
         nsenter --net=/run/netns/{ns} {PROBE} detach",
        stuck = stuck.display(),
        ns = netns.name,
    );
    let output = std::process::Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    assert_refused(
        &output,
        1,
        &[
            &format!("detached from {}", devices[1]),
            &format!(": {} (", devices[0]),
            "what stayed still filters",
        ],
    );
    assert_eq!(
        with_xdp(&netns),
        [devices[0].clone()],
        "only the stuck one stays"
    );
    detach_all(&netns);
}
