//! Load: a million frames nobody would send by hand, every class and benign ones, through one
//! interface with samples at their highest rate: the counts are exact, the reports keep coming,
//! the process stays small, and samples that do not fit are counted as lost, never frames.
//! Needs root.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use test_frames::{ipv4, ipv6, mapped};
use testbed::{
    Link, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, RECEIVER_V4, SENDER_MAC, SENDER_V4, interface,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const FRAMES: usize = 1_000_000;
const SEND_LIMIT: Duration = Duration::from_secs(60);

/// The class (family, address) a frame is counted in, `None` for a benign one, and the frame.
type Template = (Option<(&'static str, &'static str)>, Vec<u8>);

/// A field of the process's `/proc/PID/status` given in kB (`VmHWM`, `RssAnon`), in KiB.
fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the probe runs");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

#[test]
#[ignore = "needs root"]
fn a_million_frames_of_every_class_are_counted_exactly_while_reports_keep_coming() {
    let link = Link::new("flood");
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--drop",
            "--iface",
            RECEIVER_IF,
            "--sample-rate",
            "100000",
            "--interval",
            "0.5",
        ],
    );
    probe.wait_ready();

    let (v6_sender, v6_receiver) = (
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
    );
    let lo4 = Ipv4Addr::LOCALHOST;
    let lo6 = Ipv6Addr::LOCALHOST;
    let templates: Vec<Template> = vec![
        (None, ipv4(SENDER_V4, RECEIVER_V4).build()),
        (None, ipv6(v6_sender, v6_receiver).build()),
        (Some(("ipv4", "source")), ipv4(lo4, RECEIVER_V4).build()),
        (Some(("ipv4", "destination")), ipv4(SENDER_V4, lo4).build()),
        (
            Some(("ipv4", "both")),
            ipv4(Ipv4Addr::new(127, 0, 0, 2), lo4).build(),
        ),
        (Some(("ipv6", "source")), ipv6(lo6, v6_receiver).build()),
        (Some(("ipv6", "destination")), ipv6(v6_sender, lo6).build()),
        (Some(("ipv6", "both")), ipv6(lo6, lo6).build()),
        (
            Some(("ipv4-mapped", "source")),
            ipv6(mapped(lo4), v6_receiver).build(),
        ),
        (
            Some(("ipv4-mapped", "destination")),
            ipv6(v6_sender, mapped(lo4)).build(),
        ),
        (
            Some(("ipv4-mapped", "both")),
            ipv6(mapped(Ipv4Addr::new(127, 0, 0, 9)), mapped(lo4)).build(),
        ),
    ];
    let templates: Vec<Template> = templates
        .into_iter()
        .map(|(class, mut frame)| {
            frame[..6].copy_from_slice(&RECEIVER_MAC);
            frame[6..12].copy_from_slice(&SENDER_MAC);
            (class, frame)
        })
        .collect();
    let mut expected: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for index in 0..FRAMES {
        let (class, frame) = &templates[index % templates.len()];
        if let Some((family, address)) = class {
            let entry = expected
                .entry(((*family).to_owned(), (*address).to_owned()))
                .or_default();
            entry.0 += 1;
            entry.1 += frame.len() as u64;
        }
    }
    let matched: u64 = expected.values().map(|(packets, _)| packets).sum();

    // Sent from a thread of its own; the reports are read here meanwhile.
    let sender = link.raw_sender();
    let frames: Vec<Vec<u8>> = templates.iter().map(|(_, frame)| frame.clone()).collect();
    let (done, sent) = mpsc::channel();
    thread::spawn(move || {
        let started = Instant::now();
        for index in 0..FRAMES {
            if started.elapsed() > SEND_LIMIT {
                break;
            }
            sender.send(&frames[index % frames.len()]);
        }
        let _ = done.send(started.elapsed());
    });
    let mut arrivals = Vec::new();
    // The heap, queues and buffers the flood makes the probe hold, looked at while it lasts: the
    // binary's own pages (tens of MiB in a debug build) and the start-up peak are not its doing.
    let mut flood_anon = status_kib(probe.pid(), "RssAnon");
    let elapsed = loop {
        flood_anon = flood_anon.max(status_kib(probe.pid(), "RssAnon"));
        if let Ok(elapsed) = sent.try_recv() {
            break elapsed;
        }
        if probe.next_report(Duration::from_millis(200)).is_ok() {
            arrivals.push(Instant::now());
        }
    };
    assert!(
        elapsed <= SEND_LIMIT,
        "{FRAMES} frames not sent within {SEND_LIMIT:?}"
    );
    let gaps = arrivals.windows(2).map(|pair| pair[1] - pair[0]);
    let longest = gaps.max().unwrap_or_default();
    assert!(
        arrivals.len() as f64 >= elapsed.as_secs_f64() / 0.5 * 0.5,
        "{} reports in {elapsed:?} at an interval of 0.5 s",
        arrivals.len()
    );
    assert!(
        longest < Duration::from_secs(2),
        "reports stopped for {longest:?} during the flood"
    );

    let report = probe.wait_for(Duration::from_secs(20), |report| {
        report["type"] == "counters"
            && interface(report, RECEIVER_IF)["packets_matched"].as_u64() == Some(matched)
    });
    let entry = interface(&report, RECEIVER_IF);
    let counted: BTreeMap<(String, String), (u64, u64)> = entry["by_class"]
        .as_array()
        .expect("by_class")
        .iter()
        .map(|class| {
            assert_eq!(class["action"], "dropped", "{class}");
            (
                (
                    class["family"].as_str().expect("family").to_owned(),
                    class["address"].as_str().expect("address").to_owned(),
                ),
                (
                    class["packets"].as_u64().expect("packets"),
                    class["bytes"].as_u64().expect("bytes"),
                ),
            )
        })
        .collect();
    assert_eq!(counted, expected, "every class exact, packets and bytes");
    let samples: &Value = &entry["samples"];
    let (emitted, suppressed, lost) = (
        samples["emitted"].as_u64().expect("emitted"),
        samples["suppressed"].as_u64().expect("suppressed"),
        samples["lost"].as_u64().expect("lost"),
    );
    assert_eq!(emitted + suppressed + lost, matched, "{samples}");
    assert!(emitted > 0, "{samples}");
    flood_anon = flood_anon.max(status_kib(probe.pid(), "RssAnon"));
    let rss = status_kib(probe.pid(), "VmHWM");
    // What a reader behind costs is bounded (4 MiB a writer), the ring 1 MiB, a batch of samples
    // a few; an unbounded queue would pass this within the first second.
    assert!(flood_anon < 40 * 1024, "anonymous memory {flood_anon} KiB");
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
    eprintln!(
        "{FRAMES} frames in {elapsed:?}, {} reports, longest gap {longest:?}; samples \
         {emitted} emitted, {suppressed} suppressed, {lost} lost; anonymous memory up to \
         {flood_anon} KiB, peak RSS {rss} KiB",
        arrivals.len()
    );
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success());
}

/// SIGTERM, SIGINT or SIGHUP while the probe attaches to 200 interfaces: it finishes or stops
/// attaching, detaches from every one, and exits cleanly; nothing stays on any interface.
#[test]
#[ignore = "needs root"]
fn a_signal_while_attaching_200_interfaces_leaves_nothing_attached() {
    const PAIRS: usize = 200;
    let netns = testbed::Netns::new("sigattach");
    let batch: String = (0..PAIRS)
        .map(|n| format!("link add a{n} type veth peer name b{n}\nlink set a{n} up\n"))
        .collect();
    let batch_file = std::env::temp_dir().join(format!("lnp-sigattach-{}", std::process::id()));
    std::fs::write(&batch_file, batch).expect("write the batch");
    let created = std::process::Command::new("ip")
        .args(["-n", &netns.name, "-batch"])
        .arg(&batch_file)
        .status()
        .expect("run ip");
    let _ = std::fs::remove_file(&batch_file);
    assert!(created.success());
    let attached = || {
        let output = std::process::Command::new("ip")
            .args(["-n", &netns.name, "-d", "link", "show"])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&output.stdout)
            .matches("prog/xdp")
            .count()
    };
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let probe = ProbeProcess::start(PROBE, &netns, &["--iface", "a*"]);
        // As soon as the first program is on: the others are being attached.
        let deadline = Instant::now() + Duration::from_secs(20);
        while attached() == 0 {
            assert!(Instant::now() < deadline, "nothing attached");
        }
        let (status, _) = probe.stop(signal);
        assert!(status.success(), "signal {signal}: exit status {status}");
        assert_eq!(attached(), 0, "signal {signal}: left attached");
    }
}
