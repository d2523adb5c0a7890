//! Who sent the frames: samples seen through the CLI as a responder meets them — event objects
//! and lines, the top senders, a pcapng file that tcpdump and pcap-file read back, a pcap
//! stream into `tcpdump -r -` — and the rate limit's accounting. Needs root.

use std::{
    cell::RefCell,
    fs::File,
    io::Read as _,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, SystemTime},
};

use etherparse::PacketBuilder;
use pcap_file::{
    DataLink,
    pcapng::{
        Block, PcapNgReader,
        blocks::{
            enhanced_packet::EnhancedPacketOption,
            interface_description::InterfaceDescriptionOption,
        },
    },
};
use serde_json::Value;
use test_frames::ipv4;
use testbed::{
    KillOnDrop, Link, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, SENDER_MAC, SENDER_V4, interface,
    wait_exit,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
/// A second sender on the same link, told apart by its MAC.
const OTHER_MAC: [u8; 6] = [0x02, 0x4c, 0x50, 0, 0, 0x09];
const TIMEOUT: Duration = Duration::from_secs(20);

fn udp_to_localhost(payload_len: usize) -> Vec<u8> {
    ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 5353)
        .payload(&vec![0x5a; payload_len])
        .build()
}

/// A TCP SYN from `::1`, behind VLAN 7, from the other sender.
fn tcp_syn_from_loopback() -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(OTHER_MAC, RECEIVER_MAC)
        .single_vlan(etherparse::VlanId::try_new(7).expect("a VLAN id"))
        .ipv6(
            Ipv6Addr::LOCALHOST.octets(),
            "fd00::2".parse::<Ipv6Addr>().expect("an address").octets(),
            64,
        )
        .tcp(50000, 22, 1, 64240)
        .syn()
        .write(&mut frame, &[])
        .expect("build a frame");
    frame
}

/// What `tcpdump -nn -e -r` prints of the capture at `path`; it must read it without error.
fn tcpdump_read(path: &std::path::Path) -> String {
    let tcpdump = Command::new("tcpdump")
        .args(["-nn", "-e", "-r"])
        .arg(path)
        .output()
        .expect("run tcpdump (cargo xtask setup installs it)");
    assert!(
        tcpdump.status.success(),
        "{}",
        String::from_utf8_lossy(&tcpdump.stderr)
    );
    String::from_utf8_lossy(&tcpdump.stdout).into_owned()
}

/// `run --iface vrx args…` in the receiver's namespace, stdout and stderr piped.
fn probe_command(link: &Link, args: &[impl AsRef<std::ffi::OsStr>]) -> Command {
    let mut command = Command::new("ip");
    command
        .args([
            "netns",
            "exec",
            &link.receiver.name,
            PROBE,
            "run",
            "--iface",
            RECEIVER_IF,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// [`probe_command`], to completion.
fn run_to_exit(link: &Link, args: &[impl AsRef<std::ffi::OsStr>]) -> std::process::Output {
    probe_command(link, args)
        .output()
        .expect("run localnet-probe")
}

struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("lnp-{}-{name}", std::process::id())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A responder's view of one drop: events name the sender, the live report ranks the senders,
/// and the pcapng file holds the frames as sent (cut to 128 bytes, with their length), for
/// tcpdump and for any pcapng reader.
#[test]
#[ignore = "needs root"]
fn samples_name_the_senders_in_events_top_senders_and_pcap() {
    let link = Link::new("evidence");
    let pcap = TempPath::new("evidence.pcapng");
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--iface",
            RECEIVER_IF,
            "--drop",
            "--events",
            "--pcap",
            pcap.0.to_str().expect("a UTF-8 path"),
            "--top",
            "3",
        ],
    );
    probe.wait_ready();
    let started = SystemTime::now();
    let udp_short = udp_to_localhost(20);
    // 60-byte payload past the 128 bytes a sample holds.
    let udp_long = udp_to_localhost(300);
    let tcp = tcp_syn_from_loopback();
    let sent = [
        &udp_short, &udp_short, &udp_long, &udp_short, &udp_long, &tcp, &tcp,
    ];
    let sender = link.raw_sender();
    for frame in sent {
        sender.send(frame);
    }

    let events = RefCell::new(Vec::new());
    let report = probe.wait_for(TIMEOUT, |line| {
        if line["type"] == "event" {
            events.borrow_mut().push(line.clone());
            return false;
        }
        line["type"] == "counters"
            && interface(line, RECEIVER_IF)["samples"]["emitted"] == 7
            && events.borrow().len() == 7
    });
    let vrx = interface(&report, RECEIVER_IF);
    assert_eq!(vrx["packets_dropped"], 7);
    assert_eq!(
        vrx["samples"],
        serde_json::json!({ "emitted": 7, "suppressed": 0, "lost": 0 })
    );
    assert_eq!(
        vrx["top_senders_sampled"],
        serde_json::json!([
            { "source_mac": "02:4c:50:00:00:01", "source_ip": "198.18.0.1", "samples": 5 },
            { "source_mac": "02:4c:50:00:00:09", "source_ip": "::1", "samples": 2 },
        ])
    );

    let events = events.into_inner();
    let udp_events: Vec<&Value> = events.iter().filter(|e| e["protocol"] == "udp").collect();
    assert_eq!(udp_events.len(), 5, "{events:#?}");
    for event in &udp_events {
        assert_eq!(event["interface"], RECEIVER_IF);
        assert_eq!(event["action"], "dropped");
        assert_eq!(event["family"], "ipv4");
        assert_eq!(event["address"], "destination");
        assert_eq!(event["source_mac"], "02:4c:50:00:00:01");
        assert_eq!(event["destination_mac"], "02:4c:50:00:00:02");
        assert_eq!(event["source_ip"], "198.18.0.1");
        assert_eq!(event["destination_ip"], "127.0.0.1");
        assert_eq!(event["source_port"], 40000);
        assert_eq!(event["destination_port"], 5353);
        assert_eq!(event["vlans"], serde_json::json!([]));
        assert!(event["tcp_flags"].is_null());
    }
    let long: Vec<&&Value> = udp_events
        .iter()
        .filter(|e| e["frame_len"] == udp_long.len())
        .collect();
    assert_eq!(long.len(), 2);
    assert!(long.iter().all(|e| e["captured_len"] == 128));
    let tcp_events: Vec<&Value> = events.iter().filter(|e| e["protocol"] == "tcp").collect();
    assert_eq!(tcp_events.len(), 2, "{events:#?}");
    for event in tcp_events {
        assert_eq!(event["family"], "ipv6");
        assert_eq!(event["address"], "source");
        assert_eq!(event["source_ip"], "::1");
        assert_eq!(event["destination_ip"], "fd00::2");
        assert_eq!(event["vlans"], serde_json::json!([7]));
        assert_eq!(event["destination_port"], 22);
        assert_eq!(event["tcp_flags"], "S");
        assert_eq!(event["frame_len"], tcp.len());
    }

    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "{status}");
    let finished = SystemTime::now();

    // tcpdump reads the file and prints the addresses and VLAN that were sent.
    let printed = tcpdump_read(&pcap.0);
    assert_eq!(printed.lines().count(), 7, "{printed}");
    assert_eq!(
        printed
            .matches("198.18.0.1.40000 > 127.0.0.1.5353: ")
            .count(),
        5,
        "{printed}"
    );
    assert_eq!(printed.matches("vlan 7").count(), 2, "{printed}");
    assert_eq!(
        printed.matches("::1.50000 > fd00::2.22: Flags [S]").count(),
        2,
        "{printed}"
    );

    // Read back with the crate: every field as written.
    let mut bytes = Vec::new();
    File::open(&pcap.0)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .expect("read the pcap");
    let mut reader = PcapNgReader::new(bytes.as_slice()).expect("a pcapng section");
    let mut interfaces = Vec::new();
    let mut packets = Vec::new();
    while let Some(block) = reader.next_block() {
        match block.expect("a valid block") {
            Block::InterfaceDescription(idb) => interfaces.push(idb.into_owned()),
            Block::EnhancedPacket(epb) => packets.push(epb.into_owned()),
            other => panic!("unexpected block {other:?}"),
        }
    }
    let [idb] = interfaces.as_slice() else {
        panic!("{} interface blocks", interfaces.len());
    };
    assert_eq!(idb.linktype, DataLink::ETHERNET);
    // 128 bytes, and the Ethernet header added to packets from layer-3 devices.
    assert_eq!(idb.snaplen, 142);
    assert!(
        idb.options
            .contains(&InterfaceDescriptionOption::IfName(RECEIVER_IF.into()))
    );
    assert!(
        idb.options
            .contains(&InterfaceDescriptionOption::IfTsResol(9))
    );
    assert_eq!(packets.len(), sent.len());
    let mut expected: Vec<&Vec<u8>> = sent.to_vec();
    for packet in &packets {
        assert_eq!(packet.interface_id, 0);
        let at = SystemTime::UNIX_EPOCH + packet.timestamp;
        assert!(started <= at && at <= finished, "timestamp {at:?}");
        let position = expected
            .iter()
            .position(|frame| {
                packet.original_len as usize == frame.len()
                    && packet.data[..] == frame[..frame.len().min(128)]
            })
            .unwrap_or_else(|| panic!("a packet that was not sent: {packet:?}"));
        let frame = expected.remove(position);
        let comment = if frame == &tcp {
            "localnet-probe: ipv6/source dropped"
        } else {
            "localnet-probe: ipv4/destination dropped"
        };
        // Flags 1: inbound.
        assert_eq!(
            packet.options,
            [
                EnhancedPacketOption::Comment(comment.into()),
                EnhancedPacketOption::Flags(1)
            ]
        );
    }
}

/// `--pcap -` into `tcpdump -r -` works while the probe runs; when tcpdump has what it wanted
/// and goes away, the probe goes on counting.
#[test]
#[ignore = "needs root"]
fn pcap_on_stdout_feeds_tcpdump_live_and_outlives_it() {
    let link = Link::new("pcap-pipe");
    let mut probe = probe_command(&link, &["--pcap", "-"])
        .spawn()
        .expect("start localnet-probe");
    let pipe = probe.stdout.take().expect("piped");
    let mut probe = KillOnDrop(probe);
    let mut tcpdump = KillOnDrop(
        Command::new("tcpdump")
            .args(["-nn", "-r", "-", "-c", "3"])
            .stdin(pipe)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run tcpdump (cargo xtask setup installs it)"),
    );
    // Attached once its programs show on the interface.
    link.receiver.wait_for_xdp(RECEIVER_IF, TIMEOUT);
    let sender = link.raw_sender();
    let frame = udp_to_localhost(20);
    for _ in 0..3 {
        sender.send(&frame);
    }
    let status = wait_exit(&mut tcpdump.0, TIMEOUT);
    assert!(status.success(), "{status}");
    let printed = tcpdump.stdout();
    assert_eq!(
        printed
            .matches("198.18.0.1.40000 > 127.0.0.1.5353: ")
            .count(),
        3,
        "{printed}"
    );

    // tcpdump is gone: the probe notices, keeps counting and still detaches cleanly.
    thread::sleep(Duration::from_millis(500));
    for _ in 0..2 {
        sender.send(&frame);
    }
    thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(probe.0.try_wait(), Ok(None)),
        "the probe ended with its pcap reader"
    );
    let status = probe.terminate(TIMEOUT);
    let stderr = probe.stderr();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("detached: 5 matched, 0 dropped"),
        "{stderr}"
    );
    assert!(!link.receiver.has_xdp(RECEIVER_IF));
}

/// Without a terminal and without --json, events are lines on stderr; every matched frame is
/// sampled or suppressed by the limit, and the counts say which.
#[test]
#[ignore = "needs root"]
fn event_lines_go_to_stderr_and_the_limit_is_accounted_for() {
    const FRAMES: u64 = 40;
    let link = Link::new("event-lines");
    let mut probe = KillOnDrop(
        probe_command(
            &link,
            &["--events", "--sample-rate", "5", "--interval", "0.2"],
        )
        .spawn()
        .expect("start localnet-probe"),
    );
    link.receiver.wait_for_xdp(RECEIVER_IF, TIMEOUT);
    let sender = link.raw_sender();
    let frame = udp_to_localhost(20);
    for _ in 0..FRAMES {
        sender.send(&frame);
    }
    thread::sleep(Duration::from_millis(500));
    let status = probe.terminate(TIMEOUT);
    assert!(status.success(), "{status}");
    let stdout = probe.stdout();
    let stderr = probe.stderr();

    for line in stdout.lines() {
        let report: Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(report["type"], "counters", "{line}");
        // Every object adds up, not only the last: matched = emitted + suppressed + lost.
        let listed = report["interfaces"].as_array().expect("interfaces");
        let Some(vrx) = listed.iter().find(|entry| entry["name"] == RECEIVER_IF) else {
            // Compact objects (stdout is a pipe) list only what changed.
            assert_eq!(report["full"], false, "{line}");
            continue;
        };
        let samples = &vrx["samples"];
        let parts: u64 = ["emitted", "suppressed", "lost"]
            .iter()
            .map(|part| samples[part].as_u64().expect("a count"))
            .sum();
        assert_eq!(
            parts,
            vrx["packets_matched"].as_u64().expect("matched"),
            "{line}"
        );
    }
    let last: Value = serde_json::from_str(stdout.lines().last().expect("a report")).expect("JSON");
    let vrx = interface(&last, RECEIVER_IF);
    assert_eq!(vrx["packets_matched"], FRAMES);
    let samples = &vrx["samples"];
    let emitted = samples["emitted"].as_u64().expect("emitted");
    let suppressed = samples["suppressed"].as_u64().expect("suppressed");
    assert_eq!(samples["lost"], 0);
    assert_eq!(emitted + suppressed, FRAMES);
    // Five a second; the sends may straddle a refill.
    assert!((5..=10).contains(&emitted), "{emitted} sampled");

    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains(" vrx passed ipv4/destination "))
        .collect();
    assert_eq!(lines.len() as u64, emitted, "{stderr}");
    for line in lines {
        assert!(
            line.ends_with(&format!(
                "02:4c:50:00:00:01 > 02:4c:50:00:00:02 198.18.0.1:40000 > 127.0.0.1:5353 udp len {}",
                frame.len()
            )),
            "{line}"
        );
        let time = line.split(' ').next().expect("a time");
        humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("{time}: {e}"));
    }
}

/// Evidence options that cannot work are refused in one sentence before anything attaches.
#[test]
#[ignore = "needs root"]
fn bad_evidence_options_are_refused_before_attaching() {
    let link = Link::new("evidence-args");
    let cases: [(&[&str], i32, &str); 10] = [
        (&["--top", "0"], 2, "--top"),
        (&["--sample-rate", "100001"], 2, "--sample-rate"),
        (&["--sample-rate", "-1"], 2, "--sample-rate"),
        (
            &["--events", "--sample-rate", "0"],
            2,
            "--sample-rate 0 turns sampling off",
        ),
        (&["--pcap", "-", "--json"], 2, "--json"),
        (
            &["--top", "3", "--sample-rate", "0"],
            2,
            "--sample-rate 0 turns sampling off",
        ),
        (
            &["--pcap", "/dev/stdout"],
            1,
            "is this process's stdout; give --pcap -",
        ),
        (
            &["--pcap", "/dev/stderr"],
            1,
            "is where the logs go (stderr)",
        ),
        (
            &["--metrics", "9464"],
            2,
            "give an IP address and a port, such as 127.0.0.1:9464",
        ),
        (
            &["--pcap", "/nonexistent-dir/x.pcapng"],
            1,
            "cannot write the pcap to /nonexistent-dir/x.pcapng",
        ),
    ];
    for (args, code, says) in cases {
        let output = run_to_exit(&link, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!link.receiver.has_xdp(RECEIVER_IF), "{args:?} attached");
    }

    // A FIFO nobody reads: said at once, rather than a hang in open before attaching.
    let fifo = TempPath::new("nobody-reads.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo.0)
            .status()
            .expect("mkfifo")
            .success()
    );
    let output = run_to_exit(&link, &[std::ffi::OsStr::new("--pcap"), fifo.0.as_os_str()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is a FIFO nobody reads yet"), "{stderr}");

    // Sampling off: no sample counts or senders to show, rather than zeros that do not add up.
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--iface", RECEIVER_IF, "--sample-rate", "0"],
    );
    let report = probe.wait_ready();
    let vrx = interface(&report, RECEIVER_IF);
    assert!(vrx["samples"].is_null(), "{vrx}");
    assert!(vrx["top_senders_sampled"].is_null(), "{vrx}");
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success());
}

/// A stderr nobody reads holds up neither the counting nor the signals, however many event
/// lines wait for it.
#[test]
#[ignore = "needs root"]
fn a_stalled_stderr_reader_does_not_stop_sigterm_from_detaching() {
    const FRAMES: usize = 5_000;
    let link = Link::new("stalled-stderr");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    let mut probe = KillOnDrop(
        // JSON on stdout, not a terminal: the event lines go to stderr.
        probe_command(&link, &["--events", "--sample-rate", "100000"])
            .stderr(writer)
            .spawn()
            .expect("start localnet-probe"),
    );
    link.receiver.wait_for_xdp(RECEIVER_IF, TIMEOUT);
    // Far more event lines than a pipe holds (64 KiB): stderr stalls.
    let sender = link.raw_sender();
    let frame = udp_to_localhost(20);
    for _ in 0..FRAMES {
        sender.send(&frame);
    }
    thread::sleep(Duration::from_millis(500));
    let stopped = std::time::Instant::now();
    let status = probe.terminate(TIMEOUT);
    assert!(status.success(), "{status}");
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "detaching waited {:?} for stderr",
        stopped.elapsed()
    );
    assert!(!link.receiver.has_xdp(RECEIVER_IF));
    let stdout = probe.stdout();
    let last: Value = serde_json::from_str(stdout.lines().last().expect("a report")).expect("JSON");
    assert_eq!(last["final"], true);
    assert_eq!(interface(&last, RECEIVER_IF)["packets_matched"], FRAMES);
    drop(reader);
}

/// A pcap that cannot be written (a full disk) stops the pcap, not the probe; and a tun
/// device's packets, which have no link layer, are written so that tcpdump reads them beside
/// Ethernet frames.
#[test]
#[ignore = "needs root"]
fn pcap_failures_stop_only_the_pcap_and_layer_3_packets_are_readable() {
    const FRAMES: u64 = 2_000;
    let link = Link::new("pcap-edges");
    // A disk that is full from the start: an error before anything attaches.
    let output = run_to_exit(&link, &["--pcap", "/dev/full"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write the pcap to /dev/full: No space left on device"),
        "{stderr}"
    );
    assert!(!link.receiver.has_xdp(RECEIVER_IF));

    // One that fills up while the probe runs (a 64 KiB tmpfs, mounted in the mount namespace
    // `ip netns exec` gives the probe alone): the pcap stops, the counting and dropping go on.
    let probe = ProbeProcess::start_wrapped(
        &[
            "sh",
            "-c",
            r#"mount -t tmpfs -o size=64k lnp-full /mnt && exec "$0" "$@""#,
        ],
        PROBE,
        &link.receiver,
        &[
            "--iface",
            RECEIVER_IF,
            "--drop",
            "--sample-rate",
            "100000",
            "--pcap",
            "/mnt/full.pcapng",
        ],
    );
    probe.wait_ready();
    let sender = link.raw_sender();
    let frame = udp_to_localhost(20);
    for _ in 0..FRAMES {
        sender.send(&frame);
    }
    probe.wait_for(TIMEOUT, |report| {
        report["type"] == "counters" && interface(report, RECEIVER_IF)["packets_dropped"] == FRAMES
    });
    assert!(
        probe
            .stderr()
            .contains("cannot write to the pcap: No space left on device"),
        "{}",
        probe.stderr()
    );
    let (status, last) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "{status}");
    let last = last.expect("a final report");
    assert_eq!(last["final"], true);
    assert_eq!(interface(&last, RECEIVER_IF)["packets_dropped"], FRAMES);

    let tun = testbed::Tun::new(&link.receiver, "tun0", "198.18.1.1/24");
    let pcap = TempPath::new("layer3.pcapng");
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--iface",
            RECEIVER_IF,
            "--iface",
            "tun0",
            "--pcap",
            pcap.0.to_str().expect("UTF-8"),
        ],
    );
    probe.wait_ready();
    sender.send(&frame);
    tun.send(&frame[14..]);
    probe.wait_for(TIMEOUT, |report| {
        report["type"] == "counters"
            && interface(report, RECEIVER_IF)["samples"]["emitted"] == 1
            && interface(report, "tun0")["samples"]["emitted"] == 1
    });
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "{status}");
    let printed = tcpdump_read(&pcap.0);
    assert_eq!(
        printed
            .matches("198.18.0.1.40000 > 127.0.0.1.5353: ")
            .count(),
        2,
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "00:00:00:00:00:00 > 00:00:00:00:00:00, ethertype IPv4 (0x0800), length {}",
            frame.len()
        )),
        "{printed}"
    );
}
