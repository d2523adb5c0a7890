//! `scan` over captures written by tools that are not ours: scapy's `wrpcap` (every link type
//! scan reads), Wireshark's editcap and mergecap (pcapng), gzip and zstd, stdin, tcpdump on a
//! link (needs root), and `run --pcap`'s own file (needs root); a truncated file, and a large
//! capture in bounded memory.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use test_frames::ipv4;
use testbed::{Link, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, SENDER_MAC, SENDER_V4, interface};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
/// Debian's Python, which has python3-scapy (cargo xtask setup installs it).
const PYTHON: &str = "/usr/bin/python3";
const TIMEOUT: Duration = Duration::from_secs(20);

/// A directory of its own, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("lnp-scan-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).expect("create a temporary directory");
        Self(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a scapy script in `dir`.
fn scapy(dir: &TempDir, script: &str) {
    let output = Command::new(PYTHON)
        .arg("-c")
        .arg(format!("from scapy.all import *\n{script}"))
        .current_dir(&dir.0)
        .output()
        .expect("run python3 (cargo xtask setup installs python3-scapy)");
    assert!(
        output.status.success(),
        "scapy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Captures of every link type scan reads, written by scapy.
const CAPTURES: &str = r#"
e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
cut = e/IP(src="198.18.0.1", dst="198.18.0.2", ihl=6, options=[IPOption(b"\x01\x01\x01\x01")])/UDP()
cut = Ether(bytes(cut)[:30]); cut.wirelen = 60
wrpcap("ethernet.pcap", [
    e/IP(src="198.18.0.1", dst="127.0.0.1")/UDP(dport=53),
    e/Dot1Q(vlan=5)/IP(src="127.0.0.5", dst="198.18.0.2")/TCP(),
    e/Dot1AD(vlan=5)/Dot1Q(vlan=6)/IPv6(src="fd00::1", dst="::1")/UDP(),
    e/IPv6(src="fd00::1", dst="::ffff:127.0.0.1")/UDP(),
    e/Dot1AD(vlan=5)/Dot1Q(vlan=6)/Dot1Q(vlan=7)/IP(src="198.18.0.1", dst="127.0.0.1")/UDP(),
    e/IP(src="198.18.0.1", dst="198.18.0.2")/UDP(),
    e/ARP(psrc="198.18.0.1", pdst="198.18.0.2"),
    e/Dot1Q(vlan=9)/ARP(op=1, psrc="198.18.0.1", pdst="127.0.0.1"),
    cut,
])
wrpcap("raw.pcap", [
    IP(src="198.18.0.1", dst="127.0.0.1")/UDP(),
    IPv6(src="::1", dst="fd00::2")/UDP(),
    IP(src="198.18.0.1", dst="198.18.0.3")/UDP(),
], linktype=101)
wrpcap("sll.pcap", [
    CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\x07\0\0", proto=0x800)/IP(src="198.18.0.1", dst="127.0.0.1")/UDP(),
    CookedLinux(pkttype=0, lladdrtype=772, lladdrlen=6, proto=0x800)/IP(src="127.0.0.1", dst="127.0.0.1")/UDP(),
    CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, proto=0x800)/IP(src="198.18.0.1", dst="198.18.0.2")/UDP(),
])
wrpcap("sll2.pcap", [
    CookedLinuxV2(proto=0x86dd, ifindex=2, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\x08\0\0")/IPv6(src="fd00::1", dst="::1")/UDP(),
    CookedLinuxV2(proto=0x8100, ifindex=2, lladdrtype=1, lladdrlen=6)/Dot1Q(vlan=3)/IP(src="198.18.0.1", dst="127.0.0.9")/UDP(),
    CookedLinuxV2(proto=0x806, ifindex=2, lladdrtype=1, lladdrlen=6)/ARP(op=2, psrc="127.0.0.1", pdst="198.18.0.1"),
])
wrpcap("benign.pcap", [Ether()/IP(src="198.18.0.1", dst="198.18.0.2")/UDP()] * 3)
"#;

fn captures() -> TempDir {
    let dir = TempDir::new(&format!("{:?}", std::thread::current().id()).replace(['(', ')'], ""));
    scapy(&dir, CAPTURES);
    dir
}

fn scan_command(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
    let mut command = Command::new(PROBE);
    command.arg("scan");
    for arg in args {
        command.arg(arg);
    }
    command
}

/// Runs scan with `--json`; its exit status, report and stderr.
fn scan(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, Value, String) {
    let output = scan_command(args)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .expect("run localnet-probe scan");
    parsed(&output)
}

fn parsed(output: &Output) -> (i32, Value, String) {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    // Errors in the arguments end the scan before any report.
    if output.stdout.is_empty() {
        return (
            output.status.code().expect("an exit status"),
            Value::Null,
            stderr,
        );
    }
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "no JSON report ({error}): {}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    (
        output.status.code().expect("an exit status"),
        report,
        stderr,
    )
}

/// The non-zero classes of `file`'s `interface`-th interface, as `family/address packets`.
fn classes(report: &Value, file: usize, interface: usize) -> Vec<String> {
    report["files"][file]["interfaces"][interface]["by_class"]
        .as_array()
        .expect("by_class")
        .iter()
        .map(|class| {
            format!(
                "{}/{} {}",
                class["family"].as_str().expect("family"),
                class["address"].as_str().expect("address"),
                class["packets"]
            )
        })
        .collect()
}

/// Every link type: each frame classified as the kernel would, VLAN, QinQ, v4-mapped and ARP
/// included, a third tag not, a frame cut before its IP options counted as cut short, frames of
/// a loopback device left out.
#[test]
fn captures_of_every_link_type_classify_as_the_kernel_would() {
    let dir = captures();
    let files = ["ethernet.pcap", "raw.pcap", "sll.pcap", "sll2.pcap"].map(|f| dir.join(f));
    let (status, report, stderr) = scan(&[&files[0], &files[1], &files[2], &files[3]]);
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(report["matched"], true);
    assert_eq!(
        classes(&report, 0, 0),
        [
            "ipv4/source 1",
            "ipv4/destination 1",
            "ipv6/destination 1",
            "ipv4-mapped/destination 1",
            "arp/target 1"
        ]
    );
    let ethernet = &report["files"][0]["interfaces"][0];
    assert_eq!(ethernet["link_type"], "ethernet");
    assert_eq!(ethernet["frames"], 9);
    assert_eq!(
        ethernet["not_classified"],
        json!({ "cut_short": 1, "unknown_link_type": 0, "loopback_device": 0 })
    );
    assert_eq!(
        ethernet["top_senders"][0]["source_mac"],
        "02:00:00:00:00:01"
    );
    assert_eq!(report["files"][1]["interfaces"][0]["link_type"], "raw-ip");
    assert_eq!(
        classes(&report, 1, 0),
        ["ipv4/destination 1", "ipv6/source 1"]
    );
    assert_eq!(
        report["files"][2]["interfaces"][0]["link_type"],
        "linux-sll"
    );
    assert_eq!(classes(&report, 2, 0), ["ipv4/destination 1"]);
    let sll = &report["files"][2]["interfaces"][0];
    assert_eq!(sll["not_classified"]["loopback_device"], 1);
    assert_eq!(
        sll["top_senders"],
        json!([{ "source_mac": "02:00:00:00:00:07", "source_ip": "198.18.0.1", "packets": 1 }])
    );
    assert_eq!(
        report["files"][3]["interfaces"][0]["link_type"],
        "linux-sll2"
    );
    assert_eq!(
        classes(&report, 3, 0),
        ["ipv4/destination 1", "ipv6/destination 1", "arp/source 1"]
    );
    for file in report["files"].as_array().expect("files") {
        assert!(file["error"].is_null(), "{file}");
        assert_eq!(file["format"], "pcap");
    }

    // The same for people, with the classes and the senders.
    let output = scan_command(&[&files[0]]).output().expect("run scan");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    // stdout is a pipe here: JSON unless asked otherwise is what a pipe gets.
    assert!(text.starts_with('{'), "{text}");
}

#[test]
fn a_capture_without_loopback_addresses_exits_0() {
    let dir = captures();
    let (status, report, stderr) = scan(&[&dir.join("benign.pcap")]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(report["matched"], false);
    assert_eq!(report["files"][0]["frames"], 3);
}

/// gzip (several members, as `cat a.gz b.gz` makes) and zstd (several frames) are told by their
/// first bytes, whatever the name, from a file or from stdin.
#[test]
fn compressed_captures_and_stdin_count_the_same() {
    let dir = captures();
    let plain = dir.join("ethernet.pcap");
    let (_, expected, _) = scan(&[&plain]);
    let shell = |command: &str| {
        let status = Command::new("sh")
            .args(["-c", command])
            .current_dir(&dir.0)
            .status()
            .expect("run sh");
        assert!(status.success(), "{command}");
    };
    shell("gzip -c ethernet.pcap > gz.capture && zstd -q -c ethernet.pcap > zst.capture");
    // A second member or frame of nothing but an empty stream.
    shell("printf '' | gzip -c >> gz.capture && printf '' | zstd -q -c >> zst.capture");
    for (file, compression) in [("gz.capture", "gzip"), ("zst.capture", "zstd")] {
        let (status, report, stderr) = scan(&[&dir.join(file)]);
        assert_eq!(status, 1, "{file}: {stderr}");
        assert_eq!(report["files"][0]["compression"], compression);
        assert_eq!(
            report["files"][0]["interfaces"], expected["files"][0]["interfaces"],
            "{file}"
        );
        let output = scan_command(&[&"-", &"--json"])
            .stdin(std::fs::File::open(dir.join(file)).expect("open"))
            .output()
            .expect("run scan");
        let (status, report, stderr) = parsed(&output);
        assert_eq!(status, 1, "{file} on stdin: {stderr}");
        assert_eq!(report["files"][0]["file"], "-");
        assert_eq!(
            report["files"][0]["interfaces"], expected["files"][0]["interfaces"],
            "{file} on stdin"
        );
    }
    let (status, _, stderr) = scan(&[&"-", &"-"]);
    assert_eq!(status, 2);
    assert!(
        stderr.contains("stdin (`-`) can be read only once"),
        "{stderr}"
    );
}

/// A file cut in the middle of a record: exit status 2 and a message naming the file and where
/// the record begins, after the report of the records before it.
#[test]
fn a_truncated_capture_names_the_file_and_the_offset() {
    let dir = captures();
    let whole = std::fs::read(dir.join("ethernet.pcap")).expect("read");
    // The second record begins after the file header and the first record.
    let first_len = u32::from_le_bytes(whole[32..36].try_into().expect("4 bytes")) as usize;
    let second = 24 + 16 + first_len;
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &whole[..second + 20]).expect("write");
    let (status, report, stderr) = scan(&[&cut]);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: at byte offset {second}: the capture ends in the middle of a record",
            cut.display()
        )),
        "{stderr}"
    );
    assert_eq!(report["files"][0]["frames"], 1);
    assert_eq!(report["files"][0]["packets_matched"], 1);

    // Not a capture at all; a file that is not there.
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not a capture").expect("write");
    let (status, _, stderr) = scan(&[&text, &dir.join("absent.pcap")]);
    assert_eq!(status, 2);
    assert!(stderr.contains("neither pcap nor pcapng"), "{stderr}");
    assert!(stderr.contains("absent.pcap: cannot open"), "{stderr}");
}

/// Wireshark's tools write pcapng: editcap converts (microsecond timestamps, its own interface
/// block), mergecap puts captures of two link types in one file as two interfaces.
#[test]
fn pcapng_from_wireshark_tools_scans_as_its_pcap() {
    let dir = captures();
    let run = |program: &str, args: &[&str]| {
        let output = Command::new(program)
            .args(args)
            .current_dir(&dir.0)
            .output()
            .unwrap_or_else(|e| {
                panic!("run {program} (cargo xtask setup installs wireshark-common): {e}")
            });
        assert!(
            output.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(
        "editcap",
        &["-F", "pcapng", "ethernet.pcap", "ethernet.pcapng"],
    );
    run(
        "mergecap",
        &[
            "-F",
            "pcapng",
            "-w",
            "merged.pcapng",
            "ethernet.pcap",
            "raw.pcap",
        ],
    );
    let (_, pcap, _) = scan(&[&dir.join("ethernet.pcap"), &dir.join("raw.pcap")]);
    let (status, report, stderr) =
        scan(&[&dir.join("ethernet.pcapng"), &dir.join("merged.pcapng")]);
    assert_eq!(status, 1, "{stderr}");
    let converted = &report["files"][0];
    assert_eq!(converted["format"], "pcapng");
    let ethernet = &pcap["files"][0]["interfaces"][0];
    for field in [
        "frames",
        "bytes",
        "by_class",
        "first_match",
        "last_match",
        "top_senders",
        "not_classified",
    ] {
        assert_eq!(
            converted["interfaces"][0][field], ethernet[field],
            "{field}"
        );
    }
    let merged = report["files"][1]["interfaces"]
        .as_array()
        .expect("interfaces");
    assert_eq!(merged.len(), 2, "{merged:#?}");
    let by_link: Vec<(&str, u64)> = merged
        .iter()
        .map(|i| {
            (
                i["link_type"].as_str().expect("link type"),
                i["packets_matched"].as_u64().expect("count"),
            )
        })
        .collect();
    assert!(by_link.contains(&("ethernet", 5)), "{by_link:?}");
    assert!(by_link.contains(&("raw-ip", 2)), "{by_link:?}");
}

/// `--pcap OUT` holds the matched frames as they were: tcpdump reads it, and a scan of it
/// counts what the first scan matched; it never overwrites a capture being read.
#[test]
fn matched_frames_are_written_as_pcapng_that_scans_the_same() {
    let dir = captures();
    let out = dir.join("matched.pcapng");
    let ethernet = dir.join("ethernet.pcap");
    let (status, first, stderr) = scan(&[&ethernet, &"--pcap", &out]);
    assert_eq!(status, 1, "{stderr}");
    let (status, again, stderr) = scan(&[&out]);
    assert_eq!(status, 1, "{stderr}");
    let interface = &again["files"][0]["interfaces"][0];
    assert_eq!(interface["frames"], 5);
    for field in [
        "by_class",
        "first_match",
        "last_match",
        "bytes_matched",
        "top_senders",
    ] {
        assert_eq!(
            interface[field], first["files"][0]["interfaces"][0][field],
            "{field}"
        );
    }
    let tcpdump = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(&out)
        .output()
        .expect("run tcpdump (cargo xtask setup installs it)");
    assert!(
        tcpdump.status.success(),
        "{}",
        String::from_utf8_lossy(&tcpdump.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&tcpdump.stdout).lines().count(), 5);

    let before = std::fs::read(&ethernet).expect("read");
    let (status, _, stderr) = scan(&[&ethernet, &"--pcap", &ethernet]);
    assert_eq!(status, 2);
    assert!(
        stderr.contains("is one of the captures to scan"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&ethernet).expect("read"), before);
}

/// A pcap of `frames` 60-byte frames, every `every`-th one to 127.0.0.1 from a source of its
/// own, written to `sink` as it is made.
fn write_large_capture(sink: &mut impl std::io::Write, frames: u32, every: u32) {
    let mut header = Vec::new();
    for field in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        header.extend_from_slice(&field.to_le_bytes());
    }
    header.drain(4..8);
    header.splice(4..4, [2, 0, 4, 0]);
    sink.write_all(&header).expect("write");
    let benign = ipv4(SENDER_V4, "198.18.0.2".parse().expect("address"))
        .payload(&[0; 18])
        .build();
    let mut record = Vec::with_capacity(16 + 60);
    for n in 0..frames {
        record.clear();
        for field in [n / 1000, n % 1000, 60, 60] {
            record.extend_from_slice(&field.to_le_bytes());
        }
        if n % every == 0 {
            let source = std::net::Ipv4Addr::from(0xc612_0000 | n);
            record.extend_from_slice(
                &ipv4(source, std::net::Ipv4Addr::LOCALHOST)
                    .payload(&[0; 18])
                    .build(),
            );
        } else {
            record.extend_from_slice(&benign);
        }
        sink.write_all(&record).expect("write");
    }
}

/// Waits for `child` with wait4 rather than Child::wait, which gives its own peak resident
/// memory: its wait status and that peak in MiB.
fn reap(child: &std::process::Child) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by wait4 for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as i32;
    assert_eq!(
        unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) },
        pid
    );
    (status, usage.ru_maxrss / 1024)
}

/// Two million frames through stdin (120 MiB): counted exactly, distinct senders past the
/// bound counted together, and the scan's peak resident memory bounded.
#[test]
#[expect(
    clippy::zombie_processes,
    reason = "reaped with wait4, which gives the child's own peak memory"
)]
fn a_large_capture_is_scanned_in_bounded_memory() {
    const FRAMES: u32 = 2_000_000;
    const EVERY: u32 = 100;
    let mut child = scan_command(&[&"-", &"--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scan");
    let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("piped"));
    let writer = std::thread::spawn(move || {
        write_large_capture(&mut stdin, FRAMES, EVERY);
        stdin.flush().expect("flush");
    });
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut text).expect("read");
        text
    });
    writer.join().expect("writer");
    let report = reader.join().expect("reader");
    let (_, peak_mib) = reap(&child);
    let report: Value = serde_json::from_slice(&report).expect("a JSON report");
    let interface = &report["files"][0]["interfaces"][0];
    assert_eq!(interface["frames"], FRAMES);
    assert_eq!(interface["packets_matched"], FRAMES / EVERY);
    assert_eq!(interface["senders_untracked"], FRAMES / EVERY - 4096);
    eprintln!("scan of {FRAMES} frames: peak resident memory {peak_mib} MiB");
    assert!(peak_mib < 32, "peak resident memory {peak_mib} MiB");
}

/// A pcapng of a million interface blocks and nothing else (20 MiB): scan stops at its bound,
/// says why, keeps what it counted, and its memory stays small.
#[test]
#[expect(
    clippy::zombie_processes,
    reason = "reaped with wait4, which gives the child's own peak memory"
)]
fn a_capture_of_endless_interface_blocks_is_refused_past_the_bound() {
    const BLOCKS: u32 = 1_000_000;
    let block = |kind: u32, body: &[u8]| {
        let len = (12 + body.len()) as u32;
        let mut block = Vec::with_capacity(len as usize);
        for field in [kind, len] {
            block.extend_from_slice(&field.to_le_bytes());
        }
        block.extend_from_slice(body);
        block.extend_from_slice(&len.to_le_bytes());
        block
    };
    // Byte-order magic, version 1.0, section length unknown.
    let mut section = vec![0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
    section.extend_from_slice(&u64::MAX.to_le_bytes());
    // Ethernet, snaplen 65535.
    let interface = block(1, &[1, 0, 0, 0, 0xff, 0xff, 0, 0]);
    let mut child = scan_command(&[&"-", &"--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scan");
    let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("piped"));
    let writer = std::thread::spawn(move || {
        // scan stops reading at the bound: a broken pipe then is what the test expects.
        let _ = stdin.write_all(&block(0x0a0d_0d0a, &section));
        for _ in 0..BLOCKS {
            if stdin.write_all(&interface).is_err() {
                break;
            }
        }
        let _ = stdin.flush();
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut text).expect("read");
        text
    });
    let mut said = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut said).expect("read stderr");
    writer.join().expect("writer");
    let report = reader.join().expect("reader");
    let (status, peak_mib) = reap(&child);
    assert_eq!(libc::WEXITSTATUS(status), 2, "{said}");
    assert!(said.contains("more than 4096 interface blocks"), "{said}");
    let report: Value = serde_json::from_slice(&report).expect("a JSON report");
    assert_eq!(
        report["files"][0]["interfaces"]
            .as_array()
            .expect("interfaces")
            .len(),
        4096
    );
    assert!(peak_mib < 32, "peak resident memory {peak_mib} MiB");
}

/// Frames sent over a link, captured by tcpdump on every interface (Linux cooked v2) and on the
/// receiving one (Ethernet): scan counts what was sent.
#[test]
#[ignore = "needs root"]
fn tcpdump_captures_of_a_link_count_what_was_sent() {
    let link = Link::new("scan-tcpdump");
    let dir = TempDir::new("tcpdump");
    let capture = |interface: &str, file: &Path| {
        let mut tcpdump = testbed::KillOnDrop(
            link.receiver
                .command("tcpdump")
                // Frames written as they come: tcpdump otherwise waits up to a second for a
                // block of them, and those still waiting when it is stopped are lost.
                .args(["--immediate-mode", "-U", "-i", interface, "-w"])
                .arg(file)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run tcpdump"),
        );
        // Listening once it says so (after the link type it chose); its stderr is kept open
        // for the counts it prints on exit.
        let mut stderr = std::io::BufReader::new(tcpdump.0.stderr.take().expect("piped"));
        let mut said = String::new();
        while !said.contains("listening on") {
            let read =
                std::io::BufRead::read_line(&mut stderr, &mut said).expect("read tcpdump's stderr");
            assert!(read > 0, "tcpdump ended: {said}");
        }
        (tcpdump, stderr)
    };
    let any = dir.join("any.pcap");
    let vrx = dir.join("vrx.pcap");
    let mut on_any = capture("any", &any);
    let mut on_vrx = capture(RECEIVER_IF, &vrx);
    let to_loopback = ipv4(SENDER_V4, std::net::Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, 5353)
        .build();
    let from_loopback = test_frames::ipv6(
        std::net::Ipv6Addr::LOCALHOST,
        "fd00::2".parse().expect("address"),
    )
    .macs(SENDER_MAC, RECEIVER_MAC)
    .build();
    let benign = ipv4(SENDER_V4, "198.18.0.2".parse().expect("address"))
        .macs(SENDER_MAC, RECEIVER_MAC)
        .build();
    let sender = link.raw_sender();
    for _ in 0..5 {
        sender.send(&to_loopback);
        sender.send(&from_loopback);
        sender.send(&benign);
        // tcpdump -i any loses frames that come in a burst (3 of 5 rounds sent at once).
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    for (tcpdump, _stderr) in [&mut on_any, &mut on_vrx] {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(tcpdump.0.id() as i32, libc::SIGINT) };
        testbed::wait_exit(&mut tcpdump.0, TIMEOUT);
    }
    let (status, report, stderr) = scan(&[&any, &vrx]);
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(
        report["files"][0]["interfaces"][0]["link_type"],
        "linux-sll2"
    );
    assert_eq!(report["files"][1]["interfaces"][0]["link_type"], "ethernet");
    for file in 0..2 {
        assert_eq!(
            classes(&report, file, 0),
            ["ipv4/destination 5", "ipv6/source 5"],
            "{}",
            String::from_utf8_lossy(
                &Command::new("tcpdump")
                    .args(["-nn", "-tt", "-r"])
                    .arg(if file == 0 { &any } else { &vrx })
                    .output()
                    .unwrap()
                    .stdout
            )
        );
        assert_eq!(
            report["files"][file]["interfaces"][0]["top_senders"][0]["source_mac"],
            "02:4c:50:00:00:01"
        );
    }
}

/// What `run` counted, a scan of its `--pcap` file counts (every frame sampled: fewer than
/// the samples allowed per second).
#[test]
#[ignore = "needs root"]
fn a_scan_of_run_pcap_counts_what_run_counted() {
    let link = Link::new("scan-run");
    let dir = TempDir::new("run");
    let pcap = dir.join("run.pcapng");
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--iface",
            RECEIVER_IF,
            "--pcap",
            pcap.to_str().expect("a UTF-8 path"),
        ],
    );
    probe.wait_ready();
    let to_loopback = ipv4(SENDER_V4, std::net::Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .build();
    let mapped = test_frames::ipv6(
        "fd00::1".parse().expect("address"),
        test_frames::mapped(std::net::Ipv4Addr::new(127, 0, 0, 53)),
    )
    .macs(SENDER_MAC, RECEIVER_MAC)
    .vlan(test_frames::TPID_8021Q)
    .build();
    let sender = link.raw_sender();
    for _ in 0..4 {
        sender.send(&to_loopback);
        sender.send(&mapped);
    }
    let report = probe.wait_for(TIMEOUT, |line| {
        line["type"] == "counters" && interface(line, RECEIVER_IF)["samples"]["emitted"] == 8
    });
    let counted: Vec<String> = interface(&report, RECEIVER_IF)["by_class"]
        .as_array()
        .expect("by_class")
        .iter()
        .map(|class| {
            format!(
                "{}/{} {}",
                class["family"].as_str().expect("family"),
                class["address"].as_str().expect("address"),
                class["packets"]
            )
        })
        .collect();
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "{status}");
    let (status, scanned, stderr) = scan(&[&pcap]);
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(scanned["files"][0]["interfaces"][0]["name"], RECEIVER_IF);
    assert_eq!(classes(&scanned, 0, 0), counted);
    assert_eq!(counted, ["ipv4/destination 4", "ipv4-mapped/destination 4"]);
}
