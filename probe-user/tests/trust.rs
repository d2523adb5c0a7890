//! What the probe takes as given and must not: the contents of its own pins, which anyone with
//! CAP_BPF can rewrite, and a loopback address on `lo`. Needs root.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    process::{Command, Output},
    time::{Duration, Instant},
};

use test_frames::ipv4;
use testbed::{
    KillOnDrop, Link, Netns, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, RawSender, SENDER_MAC,
    SENDER_V4, TempDir, ifindex, receive, served, stderr_of,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const CAPACITY: u32 = 8;

/// `bytes` as bpftool's `hex` arguments.
fn hex(bytes: &[u8]) -> Vec<String> {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `bpftool map update pinned PIN key … value …`, which must succeed.
fn overwrite(pin: &std::path::Path, key: &[u8], value: &[u8]) {
    let pin = pin.to_str().expect("a UTF-8 path");
    let mut args = vec!["map", "update", "pinned", pin, "key", "hex"];
    let key = hex(key);
    let value = hex(value);
    args.extend(key.iter().map(String::as_str));
    args.extend(["value", "hex"]);
    args.extend(value.iter().map(String::as_str));
    let output = std::process::Command::new("bpftool")
        .args(&args)
        .output()
        .expect("run bpftool");
    assert!(output.status.success(), "bpftool: {}", stderr_of(&output));
}

/// A standing filter in drop mode on the receiver, its CLI stopped.
fn pin_filter(link: &Link) {
    let probe = ProbeProcess::start_pinned(
        PROBE,
        &link.receiver,
        &[
            "--drop",
            "--iface",
            RECEIVER_IF,
            "--capacity",
            &CAPACITY.to_string(),
        ],
    );
    probe.wait_ready();
    let stderr = probe.stderr();
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "run --pin exited {status}: {stderr}");
    assert!(link.receiver.has_xdp(RECEIVER_IF));
}

/// An IFACE_CONFIG value: slot, action, configured, first key, sample tokens.
fn iface_config(slot: u16, action: u8, first_key: u32) -> Vec<u8> {
    let mut value = Vec::new();
    value.extend(slot.to_ne_bytes());
    value.extend([action, 1]);
    value.extend(first_key.to_ne_bytes());
    value.extend(0_i64.to_ne_bytes());
    value
}

/// Fails unless `output` exited with `code`, said `words` and did not panic.
fn assert_refused(what: &str, output: &Output, code: i32, words: &[&str]) {
    let stderr = stderr_of(output);
    assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
    assert_eq!(output.status.code(), Some(code), "{what}: {stderr}");
    for word in words {
        assert!(
            stderr.contains(word),
            "{what} does not say {word:?}: {stderr}"
        );
    }
}

/// `status` and `run --pin` refuse the tampered standing filter, naming `pin` and `detach`;
/// `detach` removes it, saying what was wrong.
fn refused_then_detached(netns: &Netns, pin: &str) {
    let status = netns.output(PROBE, &["status", "--json"]);
    assert_refused("status", &status, 1, &[pin, "localnet-probe detach"]);
    // It takes nothing over.
    assert!(
        !stderr_of(&status).contains("take over"),
        "{}",
        stderr_of(&status)
    );
    let run = netns.output(
        PROBE,
        &[
            "run",
            "--pin",
            "--json",
            "--duration",
            "0.3",
            "--iface",
            RECEIVER_IF,
        ],
    );
    assert_refused("run --pin", &run, 1, &[pin, "localnet-probe detach"]);
    assert!(netns.has_xdp(RECEIVER_IF), "refused, nothing is changed");
    let detach = netns.output(PROBE, &["detach"]);
    assert_refused("detach", &detach, 0, &[pin]);
    assert!(!netns.has_xdp(RECEIVER_IF), "detach removes the filter");
    assert!(!netns.pin_dir().exists(), "detach removes the pins");
}

#[test]
#[ignore = "needs root"]
fn a_pinned_slot_beyond_capacity_is_refused_and_detach_removes_the_filter() {
    let link = Link::new("trslot");
    pin_filter(&link);
    let ifindex = link.receiver.enter(|| ifindex(RECEIVER_IF));
    let slot = CAPACITY as u16 + 5;
    let first_key = u32::from(slot) * probe_common::CLASSES_PER_INTERFACE as u32;
    overwrite(
        &link.receiver.pin_dir().join("IFACE_CONFIG"),
        &ifindex.to_ne_bytes(),
        &iface_config(slot, 1, first_key),
    );
    refused_then_detached(&link.receiver, "IFACE_CONFIG");
}

#[test]
#[ignore = "needs root"]
fn a_bad_action_or_hook_byte_is_refused_and_detach_removes_the_filter() {
    let link = Link::new("trmode");
    pin_filter(&link);
    let ifindex = link.receiver.enter(|| ifindex(RECEIVER_IF));
    overwrite(
        &link.receiver.pin_dir().join("IFACE_CONFIG"),
        &ifindex.to_ne_bytes(),
        &iface_config(0, 7, 0),
    );
    refused_then_detached(&link.receiver, "IFACE_CONFIG");

    pin_filter(&link);
    // INTERFACES: the name, NUL-padded, the program, the hook, the clsact flags.
    let mut entry = [0_u8; 20];
    entry[..RECEIVER_IF.len()].copy_from_slice(RECEIVER_IF.as_bytes());
    entry[17] = 9;
    overwrite(
        &link.receiver.pin_dir().join("INTERFACES"),
        &ifindex.to_ne_bytes(),
        &entry,
    );
    refused_then_detached(&link.receiver, "INTERFACES");
}

#[test]
#[ignore = "needs root"]
fn counts_no_kernel_could_have_counted_are_refused_and_detach_removes_the_filter() {
    let link = Link::new("trcount");
    pin_filter(&link);
    let netns = &link.receiver;
    // Slot 0's first class, near the top of a u64 on every CPU: the sum over CPUs overflows.
    overwrite(
        &netns.pin_dir().join("COUNTERS"),
        &0_u32.to_ne_bytes(),
        &[0xff; 16],
    );
    let status = netns.output(PROBE, &["status", "--json"]);
    assert_refused("status", &status, 1, &["COUNTERS", "localnet-probe detach"]);
    let run = netns.output(
        PROBE,
        &[
            "run",
            "--pin",
            "--json",
            "--duration",
            "0.3",
            "--iface",
            RECEIVER_IF,
        ],
    );
    assert_refused("run --pin", &run, 1, &["COUNTERS", "localnet-probe detach"]);
    assert!(
        netns.has_xdp(RECEIVER_IF),
        "the pinned filter stays until detached"
    );
    let detach = netns.output(PROBE, &["detach"]);
    assert_refused("detach", &detach, 0, &[]);
    assert!(!netns.has_xdp(RECEIVER_IF), "detach removes the filter");
    assert!(!netns.pin_dir().exists(), "detach removes the pins");
}

#[test]
#[ignore = "needs root"]
fn a_garbled_standing_record_is_refused_and_detach_removes_the_filter() {
    let link = Link::new("trstand");
    pin_filter(&link);
    // The right magic and layout, a capacity beyond any counter map.
    let mut record = Vec::new();
    record.extend(u64::from_le_bytes(*b"lnprobe\0").to_ne_bytes());
    record.extend(probe_user::probe::pins::LAYOUT.to_ne_bytes());
    record.extend(u32::MAX.to_ne_bytes());
    record.extend([0xa5; 16]);
    overwrite(
        &link.receiver.pin_dir().join("STANDING"),
        &0_u32.to_ne_bytes(),
        &record,
    );
    refused_then_detached(&link.receiver, "STANDING");
}

#[test]
#[ignore = "needs root"]
fn a_namespace_without_loopback_addresses_can_pin_read_and_detach_a_filter() {
    let link = Link::new("trnolo");
    let netns = &link.receiver;
    netns.ip(&["addr", "flush", "dev", "lo"]);
    netns.ip(&["link", "set", "lo", "down"]);
    pin_filter(&link);
    let status = netns.output(PROBE, &["status", "--json"]);
    assert!(status.status.success(), "status: {}", stderr_of(&status));
    let shown: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("status writes JSON");
    assert_eq!(
        testbed::interface(&shown, RECEIVER_IF)["mode"],
        "drop",
        "{shown}"
    );
    let detach = netns.output(PROBE, &["detach"]);
    assert!(detach.status.success(), "detach: {}", stderr_of(&detach));
    assert!(!netns.has_xdp(RECEIVER_IF), "detach removes the filter");
    assert!(!netns.pin_dir().exists(), "detach removes the pins");
}

/// Waits until process `pid` has `path` open.
fn wait_until_open(pid: u32, path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("the process's descriptors")
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path));
        if open {
            return;
        }
        assert!(Instant::now() < deadline, "{pid} did not open {path:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Signals `child`, which this test started, by its pid.
fn signal(child: &KillOnDrop, signal: i32) {
    // SAFETY: a plain kill(2) of a child of this process.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, signal) }, 0);
}

#[test]
#[ignore = "needs root"]
fn a_stalled_pcap_reader_never_stops_reports_attaching_or_sigterm() {
    let link = Link::new("trfifo");
    let netns = &link.receiver;
    let dir = TempDir::new("trfifo");
    let fifo = dir.path().join("samples.pcapng");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    // Opened read-write, which does not wait for a writer, so the probe finds its reader.
    let mut reader = KillOnDrop(
        Command::new("sh")
            .args(["-c", "exec cat 0<>\"$1\"", "sh"])
            .arg(&fifo)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run cat"),
    );
    wait_until_open(reader.0.id(), &fifo);
    let probe = ProbeProcess::start(
        PROBE,
        netns,
        &[
            "--iface",
            RECEIVER_IF,
            "--iface",
            "late*",
            "--drop",
            "--sample-rate",
            "100000",
            "--pcap",
            fifo.to_str().expect("a UTF-8 path"),
        ],
    );
    probe.wait_ready();

    // The reader stops; a flood of samples fills the FIFO many times over.
    signal(&reader, libc::SIGSTOP);
    let sender = link.raw_sender();
    let frame = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 5353)
        .payload(&[0x5a; 100])
        .build();
    for _ in 0..20_000 {
        sender.send(&frame);
    }
    // Reports go on: the loop is not stuck writing to the FIFO.
    let flooded = Instant::now();
    for _ in 0..5 {
        if let Err(error) = probe.next_report(Duration::from_secs(3)) {
            panic!(
                "no report {:?} after the flood ({error}); stderr: {}",
                flooded.elapsed(),
                probe.stderr()
            );
        }
    }
    // A new interface is attached.
    netns.ip(&[
        "link", "add", "late0", "type", "veth", "peer", "name", "late1",
    ]);
    netns.ip(&["link", "set", "late0", "up"]);
    netns.ip(&["link", "set", "late1", "up"]);
    probe.wait_for(Duration::from_secs(10), |report| {
        served(report).contains(&"late0")
    });
    assert!(netns.has_xdp("late0"));

    // SIGTERM ends it promptly, the reader still stopped, and nothing stays attached.
    let asked = Instant::now();
    let stderr = probe.stderr();
    let (status, _) = probe.stop(libc::SIGTERM);
    let took = asked.elapsed();
    assert!(status.success(), "exited {status}: {stderr}");
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    assert!(!netns.has_xdp(RECEIVER_IF), "detached from {RECEIVER_IF}");
    assert!(!netns.has_xdp("late0"), "detached from late0");
    signal(&reader, libc::SIGCONT);
    reader.terminate(Duration::from_secs(5));
}

#[test]
#[ignore = "needs root"]
fn idle_metrics_connections_under_a_low_file_limit_leave_no_interface_unfiltered() {
    // Room for the probe's own descriptors (28 with one interface) and its connection cap, not
    // for the connections made.
    new_interface_under_idle_connections("trfd", "--nofile=120:120");
}

#[test]
#[ignore = "needs root"]
fn a_file_limit_below_the_connection_cap_still_leaves_room_for_interfaces() {
    // 64 connections would take every descriptor: the cap follows the limit.
    new_interface_under_idle_connections("trfdlow", "--nofile=48:48");
}

/// `prlimit --pid PID --nofile=LIMIT`, which must succeed.
fn set_file_limit(pid: i32, limit: &str) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}")])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit {limit}");
}

#[test]
#[ignore = "needs root"]
fn an_interface_refused_for_want_of_descriptors_is_attached_once_they_are_freed() {
    let link = Link::new("trretry");
    let netns = &link.receiver;
    let probe = ProbeProcess::start(
        PROBE,
        netns,
        &["--iface", RECEIVER_IF, "--iface", "late*", "--drop"],
    );
    probe.wait_ready();
    // Not one descriptor more (fewer than counted: the workload resolver and a scan of /proc
    // hold some for a moment; those open stay open): the next interface cannot be attached.
    let open = std::fs::read_dir(format!("/proc/{}/fd", probe.pid()))
        .expect("the probe's descriptors")
        .count();
    set_file_limit(probe.pid(), &format!("{}:4096", open.saturating_sub(8)));
    netns.ip(&[
        "link", "add", "late0", "type", "veth", "peer", "name", "peer0",
    ]);
    netns.ip(&["link", "set", "late0", "up"]);
    netns.ip(&["link", "set", "peer0", "up"]);
    let said = probe.wait_until_said("cannot attach to late0");
    assert!(said.contains("trying late0 again shortly"), "{said}");
    // Descriptors again, and no link event after: it is attached on the timer.
    set_file_limit(probe.pid(), "4096:4096");
    probe.wait_for(Duration::from_secs(20), |report| {
        served(report).contains(&"late0")
    });
    assert!(netns.has_xdp("late0"));
    let stderr = probe.stderr();
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exited {status}: {stderr}");
    assert!(!netns.has_xdp("late0"), "detached from late0");
}

/// Under `prlimit files`, with 300 idle connections to --metrics, an interface added is attached
/// and its spoofed frames are dropped under --drop.
fn new_interface_under_idle_connections(tag: &str, files: &str) {
    const CONNECTIONS: usize = 300;
    let link = Link::new(tag);
    let netns = &link.receiver;
    let probe = ProbeProcess::start_wrapped(
        &["prlimit", files, "--"],
        PROBE,
        netns,
        &[
            "--iface",
            RECEIVER_IF,
            "--iface",
            "late*",
            "--drop",
            "--metrics",
        ],
    );
    probe.wait_ready();
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, 9464));
    let idle: Vec<TcpStream> = netns.enter(|| {
        (0..CONNECTIONS)
            .filter_map(|_| TcpStream::connect_timeout(&metrics, Duration::from_secs(1)).ok())
            .collect()
    });
    assert!(!idle.is_empty(), "no connection to {metrics}");

    // A new interface, from the sender's namespace, while the connections are open.
    link.sender.ip(&[
        "link",
        "add",
        "late1",
        "type",
        "veth",
        "peer",
        "name",
        "late0",
        "netns",
        &netns.name,
    ]);
    // The receiver's address, so the frames below are for it.
    let mac: Vec<String> = RECEIVER_MAC.iter().map(|b| format!("{b:02x}")).collect();
    netns.ip(&["link", "set", "late0", "address", &mac.join(":")]);
    link.sender
        .ip(&["addr", "add", "198.18.2.1/24", "dev", "late1"]);
    netns.ip(&["addr", "add", "198.18.2.2/24", "dev", "late0"]);
    netns.sysctl("net/ipv4/conf/late0/route_localnet", "1");
    link.sender.ip(&["link", "set", "late1", "up"]);
    netns.ip(&["link", "set", "late0", "up"]);
    link.sender.wait_operational("late1");
    netns.wait_operational("late0");
    let listener = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    probe.wait_for(Duration::from_secs(20), |report| {
        served(report).contains(&"late0")
    });
    drop(idle);

    let sender = link.sender.enter(|| RawSender::open("late1"));
    let frame = ipv4(Ipv4Addr::new(198, 18, 2, 1), Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 5353)
        .build();
    for _ in 0..3 {
        sender.send(&frame);
    }
    assert_eq!(
        receive(&listener, 0, Duration::from_millis(300)),
        0,
        "delivered under --drop"
    );
    let stderr = probe.stderr();
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exited {status}: {stderr}");
}

#[test]
#[ignore = "needs root"]
fn a_fifo_whose_reader_stopped_with_the_pipe_full_delays_no_start() {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};

    let link = Link::new("trfull");
    let dir = TempDir::new("trfull");
    let fifo = dir.path().join("samples.pcapng");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let mut reader = KillOnDrop(
        Command::new("sh")
            .args(["-c", "exec cat 0<>\"$1\"", "sh"])
            .arg(&fifo)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run cat"),
    );
    wait_until_open(reader.0.id(), &fifo);
    signal(&reader, libc::SIGSTOP);
    // The pipe filled to the last byte while its reader is stopped.
    let mut filler = std::fs::File::options()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO");
    let block = [0_u8; 4096];
    for _ in 0..100_000 {
        match filler.write(&block) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) => panic!("fill the FIFO: {error}"),
        }
    }
    assert_eq!(
        filler.write(&[0]).map_err(|error| error.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "the pipe is full"
    );
    let mut probe = KillOnDrop(
        link.receiver
            .command(PROBE)
            .args([
                "run",
                "--json",
                "--duration",
                "1",
                "--iface",
                RECEIVER_IF,
                "--pcap",
            ])
            .arg(&fifo)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the probe"),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = probe.0.try_wait().expect("wait for the probe") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            panic!(
                "run --duration 1 still running after 20 s with the FIFO full: {}",
                probe.last_words()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = probe.stdout();
    assert!(status.success(), "exited {status}: {}", probe.stderr());
    assert!(
        stdout.lines().any(|line| line.contains("\"interfaces\"")),
        "no report: {stdout}"
    );
    signal(&reader, libc::SIGCONT);
    reader.terminate(Duration::from_secs(5));
}

/// `bpftool map create PIN type TYPE key 4 value VALUE entries N name NAME`, which must succeed.
fn pin_map(pin: &std::path::Path, map_type: &str, value: usize, entries: u32) {
    let output = Command::new("bpftool")
        .args(["map", "create"])
        .arg(pin)
        .args(["type", map_type, "key", "4", "value", &value.to_string()])
        .args(["entries", &entries.to_string(), "name", "foreign"])
        .output()
        .expect("run bpftool");
    assert!(output.status.success(), "bpftool: {}", stderr_of(&output));
}

/// Something else's entries in the pin directory (a directory with a map pinned in it, a file
/// under links/ that is no ifindex): `status` and `run --pin` refuse, naming it; `detach`
/// removes all of localnet-probe's, leaves them and names them.
#[test]
#[ignore = "needs root"]
fn foreign_entries_keep_detach_from_nothing_of_its_own() {
    let link = Link::new("trforn");
    pin_filter(&link);
    let dir = link.receiver.pin_dir();
    std::fs::create_dir(dir.join("evil")).expect("mkdir");
    pin_map(&dir.join("evil/map"), "hash", 4, 1);
    pin_map(&dir.join("links/other"), "hash", 4, 1);

    let status = link.receiver.output(PROBE, &["status", "--json"]);
    assert_refused(
        "status",
        &status,
        1,
        &["which localnet-probe did not put there"],
    );
    let run = link.receiver.output(
        PROBE,
        &[
            "run",
            "--pin",
            "--json",
            "--duration",
            "0.3",
            "--iface",
            RECEIVER_IF,
        ],
    );
    assert_refused(
        "run --pin",
        &run,
        1,
        &["which localnet-probe did not put there"],
    );
    assert!(
        link.receiver.has_xdp(RECEIVER_IF),
        "refused, nothing is changed"
    );

    let detach = link.receiver.output(PROBE, &["detach"]);
    assert_refused(
        "detach",
        &detach,
        0,
        &["evil", "links/other", "did not put it there"],
    );
    assert!(
        !link.receiver.has_xdp(RECEIVER_IF),
        "detach removes the filter"
    );
    let mut left: Vec<String> = walk(&dir);
    left.sort();
    assert_eq!(
        left,
        ["evil", "evil/map", "links", "links/other"],
        "only the foreign entries stay"
    );
}

/// Every path under `dir`, relative to it.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the pin directory") {
        let entry = entry.expect("an entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().expect("its type").is_dir() {
            paths.extend(
                walk(&entry.path())
                    .into_iter()
                    .map(|inner| format!("{name}/{inner}")),
            );
        }
        paths.push(name);
    }
    paths
}

/// COUNTERS replaced by a hash map with the same key and value sizes: the error names the map
/// types, and `status`, which takes nothing over, does not say it cannot take it over.
#[test]
#[ignore = "needs root"]
fn a_pinned_map_of_the_wrong_type_is_named_by_its_type() {
    let link = Link::new("trtype");
    pin_filter(&link);
    let counters = link.receiver.pin_dir().join("COUNTERS");
    std::fs::remove_file(&counters).expect("unpin COUNTERS");
    let entries = CAPACITY * probe_common::CLASSES_PER_INTERFACE as u32;
    pin_map(&counters, "hash", 16, entries);
    let said = [
        "COUNTERS is a hash map",
        "this version pins a per-CPU array map",
    ];
    let status = link.receiver.output(PROBE, &["status", "--json"]);
    assert_refused("status", &status, 1, &said);
    assert!(
        !stderr_of(&status).contains("take over"),
        "{}",
        stderr_of(&status)
    );
    let detach = link.receiver.output(PROBE, &["detach"]);
    assert_refused("detach", &detach, 0, &said);
    assert!(
        !link.receiver.has_xdp(RECEIVER_IF),
        "detach removes the filter"
    );
    assert!(!link.receiver.pin_dir().exists(), "detach removes the pins");
}

/// The standing filter's link pin removed (its program detaches with it, nothing else holding
/// the link): `status` says the interface is neither counted nor filtered, rather than leaving
/// it out as if it had never been asked for, and the next `run --pin` attaches it again.
#[test]
#[ignore = "needs root"]
fn a_removed_link_pin_is_said_by_status_and_mended_by_run_pin() {
    let link = Link::new("trlink");
    pin_filter(&link);
    let netns = &link.receiver;
    let links = netns.pin_dir().join("links");
    let pins: Vec<_> = std::fs::read_dir(&links)
        .expect("the links directory")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    assert_eq!(pins.len(), 1, "{pins:?}");
    std::fs::remove_file(&pins[0]).expect("remove the link pin");
    assert!(
        !netns.has_xdp(RECEIVER_IF),
        "the program went with its link"
    );

    let output = netns.output(PROBE, &["status", "--json"]);
    assert!(output.status.success(), "status: {}", stderr_of(&output));
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let refused = shown["refused"].as_array().expect("refused");
    assert_eq!(refused.len(), 1, "{shown}");
    assert_eq!(refused[0]["name"], RECEIVER_IF, "{shown}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("link here is gone"),
        "{shown}"
    );
    // As an operator reads it, on a terminal.
    let table = netns
        .command("script")
        .args(["-qec", &format!("{PROBE} status"), "/dev/null"])
        .output()
        .expect("run script");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!(
            "NOT SERVED {RECEIVER_IF}: the standing filter's link"
        )),
        "{table}"
    );

    let capacity = CAPACITY.to_string();
    let again = netns.output(
        PROBE,
        &[
            "run",
            "--pin",
            "--json",
            "--duration",
            "0.3",
            "--drop",
            "--iface",
            RECEIVER_IF,
            "--capacity",
            &capacity,
        ],
    );
    assert!(again.status.success(), "run --pin: {}", stderr_of(&again));
    assert!(netns.has_xdp(RECEIVER_IF), "attached again");
    let output = netns.output(PROBE, &["status", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(shown["refused"], serde_json::json!([]), "{shown}");
}

/// Detaches the link pinned at `pin` as another tool would (`bpftool link detach`), its pin left.
fn detach_pinned_link(pin: &std::path::Path) {
    let pin = pin.to_str().expect("UTF-8");
    let output = Command::new("bpftool")
        .args(["-j", "link", "show", "pinned", pin])
        .output()
        .expect("bpftool");
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("bpftool JSON");
    let id = shown["id"].as_u64().expect("link id").to_string();
    let detached = Command::new("bpftool")
        .args(["link", "detach", "id", &id])
        .output()
        .expect("bpftool");
    assert!(detached.status.success(), "{}", stderr_of(&detached));
}

/// The link of a standing filter's interface tampered with while `run --pin` serves it: its pin
/// removed, the process pins it again as it ends (the filter stays); the link detached
/// (`bpftool link detach`), the process serves the interface again at once, and with no process
/// serving `status` says it is not served and `run --pin` attaches it again.
#[test]
#[ignore = "needs root"]
fn a_tampered_link_of_a_served_interface_is_pinned_or_attached_again() {
    let link = Link::new("trheld");
    let netns = &link.receiver;
    let links = netns.pin_dir().join("links");
    let link_pin = || -> std::path::PathBuf {
        let pins: Vec<_> = std::fs::read_dir(&links)
            .expect("the links directory")
            .map(|entry| entry.expect("an entry").path())
            .collect();
        assert_eq!(pins.len(), 1, "{pins:?}");
        pins[0].clone()
    };
    let capacity = CAPACITY.to_string();
    let args = ["--drop", "--iface", RECEIVER_IF, "--capacity", &capacity];

    // The pin removed while the link is held: pinned again at the end.
    let probe = ProbeProcess::start_pinned(PROBE, netns, &args);
    probe.wait_ready();
    std::fs::remove_file(link_pin()).expect("remove the link pin");
    let stderr = probe.stderr();
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "{stderr}");
    assert!(netns.has_xdp(RECEIVER_IF), "the filter stays attached");
    let pin = link_pin();

    // The link detached while a process serves: attached again.
    let probe = ProbeProcess::start_pinned(PROBE, netns, &args);
    probe.wait_ready();
    detach_pinned_link(&pin);
    netns.wait_for_xdp(RECEIVER_IF, Duration::from_secs(10));
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success());
    assert!(netns.has_xdp(RECEIVER_IF), "the filter stays attached");

    // Detached with nobody serving: said, and mended by run --pin.
    detach_pinned_link(&link_pin());
    assert!(!netns.has_xdp(RECEIVER_IF));
    let output = netns.output(PROBE, &["status", "--json"]);
    assert!(output.status.success(), "status: {}", stderr_of(&output));
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    // Its counts are final, and the interface here is not filtered: both said.
    assert_eq!(shown["refused"][0]["name"], RECEIVER_IF, "{shown}");
    assert_eq!(shown["removed"][0]["name"], RECEIVER_IF, "{shown}");
    let again = netns.output(
        PROBE,
        &[&["run", "--pin", "--json", "--duration", "0.3"][..], &args].concat(),
    );
    assert!(again.status.success(), "run --pin: {}", stderr_of(&again));
    assert!(netns.has_xdp(RECEIVER_IF), "attached again");
}
