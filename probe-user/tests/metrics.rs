//! `run --metrics`: a real Prometheus (Debian's `prometheus`, in the probe's namespace) scrapes
//! the exact counts of frames sent through a monitored and a dropping veth; promtool accepts the
//! page; an address in use is refused before anything is attached; a scraper that hangs up
//! mid-response stops neither the counting nor the server. Needs root, except the parse error.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use probe_common::LoopbackMatch;
use serde_json::Value;
use test_frames::{arp_reply, arp_request, ipv4, ipv6};
use testbed::{
    KillOnDrop, Link, ProbeProcess, Prometheus, RECEIVER_IF, RECEIVER_MAC, RawSender, SENDER_MAC,
    SENDER_V4, TempDir, http_get, interface, wait_exit,
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
/// Inside the test's own namespaces, so fixed ports collide with nothing.
const METRICS_ADDRESS: &str = "127.0.0.1:9464";
/// The drop interface: a second veth pair between the same namespaces.
const DROP_SENDER_IF: &str = "vtx2";
const DROP_RECEIVER_IF: &str = "vrx2";
const DROP_SENDER_MAC: [u8; 6] = [0x02, 0x4c, 0x50, 0, 1, 0x01];
const DROP_RECEIVER_MAC: [u8; 6] = [0x02, 0x4c, 0x50, 0, 1, 0x02];

/// Runs `promtool check metrics` on `page`; panics with its complaints.
fn promtool_accepts(page: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus, or cargo xtask setup)");
    promtool
        .stdin
        .take()
        .expect("piped")
        .write_all(page.as_bytes())
        .expect("write to promtool");
    let output = promtool.wait_with_output().expect("wait for promtool");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn mac(bytes: [u8; 6]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Adds the drop interface's veth pair to `link`.
fn add_drop_pair(link: &Link) {
    link.sender.ip(&[
        "link",
        "add",
        DROP_SENDER_IF,
        "address",
        &mac(DROP_SENDER_MAC),
        "type",
        "veth",
        "peer",
        "name",
        DROP_RECEIVER_IF,
        "address",
        &mac(DROP_RECEIVER_MAC),
        "netns",
        &link.receiver.name,
    ]);
    link.sender.ip(&["link", "set", DROP_SENDER_IF, "up"]);
    link.receiver.ip(&["link", "set", DROP_RECEIVER_IF, "up"]);
}

/// The series of an instant-query result, by the labels named in `keys`, with their values.
fn series(result: &Value, keys: &[&str]) -> BTreeMap<Vec<String>, u64> {
    result["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("not a query result: {result}"))
        .iter()
        .map(|series| {
            let labels = keys
                .iter()
                .map(|key| {
                    series["metric"][key]
                        .as_str()
                        .unwrap_or_else(|| panic!("no {key} in {series}"))
                        .to_owned()
                })
                .collect();
            let value = series["value"][1]
                .as_str()
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no integer value in {series}"));
            (labels, value)
        })
        .collect()
}

fn labels(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

/// With `--metrics-detail`: every class of every interface, zeros included.
#[test]
#[ignore = "needs root"]
fn prometheus_scrapes_the_exact_counts_sent() {
    let link = Link::new("prom");
    add_drop_pair(&link);
    let config = TempDir::new("prometheus");
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--iface",
            RECEIVER_IF,
            "--iface",
            DROP_RECEIVER_IF,
            "--drop-on",
            DROP_RECEIVER_IF,
            "--metrics",
            METRICS_ADDRESS,
            "--metrics-detail",
        ],
    );
    probe.wait_ready();

    let page = http_get(&link.receiver, METRICS_ADDRESS, "/metrics", None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.headers
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        page.headers
    );
    promtool_accepts(&page.body);

    let configuration = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - \
         job_name: localnet-probe\n    static_configs:\n      - targets: ['{METRICS_ADDRESS}']\n"
    );
    let config_file = config.path().join("prometheus.yml");
    std::fs::write(&config_file, configuration).expect("write prometheus.yml");
    let prometheus = Prometheus::start(&link.receiver, &config_file);

    let lo4 = Ipv4Addr::LOCALHOST;
    let lo6 = Ipv6Addr::LOCALHOST;
    let fd00_1: Ipv6Addr = "fd00::1".parse().unwrap();
    let fd00_2: Ipv6Addr = "fd00::2".parse().unwrap();
    // (frame, how many, interface, family, address, action)
    let sent = [
        (
            ipv4(SENDER_V4, lo4).macs(SENDER_MAC, RECEIVER_MAC).build(),
            30,
            RECEIVER_IF,
            "ipv4",
            "destination",
            "passed",
        ),
        (
            ipv6(lo6, fd00_2).macs(SENDER_MAC, RECEIVER_MAC).build(),
            20,
            RECEIVER_IF,
            "ipv6",
            "source",
            "passed",
        ),
        (
            ipv4(lo4, lo4)
                .macs(DROP_SENDER_MAC, DROP_RECEIVER_MAC)
                .build(),
            25,
            DROP_RECEIVER_IF,
            "ipv4",
            "both",
            "dropped",
        ),
        (
            ipv6(fd00_1, lo4.to_ipv6_mapped())
                .macs(DROP_SENDER_MAC, DROP_RECEIVER_MAC)
                .build(),
            15,
            DROP_RECEIVER_IF,
            "ipv4-mapped",
            "destination",
            "dropped",
        ),
        (
            arp_request(SENDER_V4, lo4)
                .macs(SENDER_MAC, [0xff; 6])
                .build(),
            12,
            RECEIVER_IF,
            "arp",
            "target",
            "passed",
        ),
        (
            arp_reply(lo4, SENDER_V4)
                .macs(DROP_SENDER_MAC, DROP_RECEIVER_MAC)
                .build(),
            8,
            DROP_RECEIVER_IF,
            "arp",
            "source",
            "dropped",
        ),
    ];
    let monitor_sender = link.raw_sender();
    let drop_sender = link.sender.enter(|| RawSender::open(DROP_SENDER_IF));
    for (frame, count, interface, ..) in &sent {
        let sender = if *interface == RECEIVER_IF {
            &monitor_sender
        } else {
            &drop_sender
        };
        for _ in 0..*count {
            sender.send(frame);
        }
    }

    // Every class of both interfaces, zeros included.
    let mut expected_packets = BTreeMap::new();
    let mut expected_bytes = BTreeMap::new();
    for interface in [RECEIVER_IF, DROP_RECEIVER_IF] {
        for matched in LoopbackMatch::all() {
            for action in ["passed", "dropped"] {
                let key = labels(&[
                    interface,
                    matched.family.name(),
                    matched.address_name(),
                    action,
                ]);
                expected_packets.insert(key.clone(), 0);
                expected_bytes.insert(key, 0);
            }
        }
    }
    for (frame, count, interface, family, address, action) in &sent {
        let key = labels(&[interface, family, address, action]);
        expected_packets.insert(key.clone(), *count);
        expected_bytes.insert(key, *count * frame.len() as u64);
    }

    let query = |metric: &str| prometheus.query(metric);
    let class_keys = ["interface", "family", "address", "action"];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let packets = query("localnet_probe_packets_total").map(|r| series(&r, &class_keys));
        let bytes = query("localnet_probe_bytes_total").map(|r| series(&r, &class_keys));
        if packets.as_ref() == Some(&expected_packets) && bytes.as_ref() == Some(&expected_bytes) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not report the counts sent within 30 s: packets {packets:?}, bytes \
             {bytes:?}; prometheus log: {}",
            prometheus.log()
        );
        thread::sleep(Duration::from_millis(250));
    }

    let attached = series(
        &query("localnet_probe_attached").expect("a query result"),
        &["interface", "xdp_mode", "mode"],
    );
    assert_eq!(
        attached,
        BTreeMap::from([
            (labels(&[RECEIVER_IF, "native", "monitor"]), 1),
            (labels(&[DROP_RECEIVER_IF, "native", "drop"]), 1),
        ])
    );
    let route_localnet = series(
        &query("localnet_probe_route_localnet").expect("a query result"),
        &["interface", "scope"],
    );
    assert_eq!(
        route_localnet,
        BTreeMap::from([
            (labels(&[RECEIVER_IF, "all"]), 0),
            (labels(&[RECEIVER_IF, "effective"]), 0),
            (labels(&[RECEIVER_IF, "interface"]), 0),
            (labels(&[DROP_RECEIVER_IF, "all"]), 0),
            (labels(&[DROP_RECEIVER_IF, "effective"]), 0),
            (labels(&[DROP_RECEIVER_IF, "interface"]), 0),
        ])
    );
    let build = series(
        &query("localnet_probe_build_info").expect("a query result"),
        &["version"],
    );
    assert_eq!(
        build,
        BTreeMap::from([(labels(&[env!("CARGO_PKG_VERSION")]), 1)])
    );
    // Prometheus asks for OpenMetrics, and gets it.
    let page = http_get(
        &link.receiver,
        METRICS_ADDRESS,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(
        page.headers
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{}",
        page.headers
    );
    assert!(page.body.ends_with("# EOF\n"));

    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
}

#[test]
#[ignore = "needs root"]
fn other_paths_and_methods_are_refused() {
    let link = Link::new("paths");
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &["--iface", RECEIVER_IF, "--metrics", METRICS_ADDRESS],
    );
    probe.wait_ready();
    assert_eq!(
        http_get(&link.receiver, METRICS_ADDRESS, "/", None).status,
        404
    );
    assert_eq!(
        http_get(&link.receiver, METRICS_ADDRESS, "/metrics/x", None).status,
        404
    );
    let post = link.receiver.enter(|| {
        let mut stream = TcpStream::connect(METRICS_ADDRESS).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        stream
            .write_all(b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
            .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
    });
    assert!(post.starts_with("HTTP/1.0 405 "), "{post}");
    assert!(
        post.to_ascii_lowercase().contains("allow: get, head"),
        "{post}"
    );
}

#[test]
#[ignore = "needs root"]
fn an_address_in_use_is_refused_before_anything_is_attached() {
    let link = Link::new("inuse");
    // The default address, taken inside the namespace.
    let _occupant = link
        .receiver
        .enter(|| TcpListener::bind(METRICS_ADDRESS).expect("bind the default address"));
    let mut child = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &link.receiver.name, PROBE, "run", "--json"])
            .args(["--iface", RECEIVER_IF, "--metrics"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start localnet-probe"),
    );
    let status = wait_exit(&mut child.0, Duration::from_secs(20));
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
    assert!(
        stderr.contains(METRICS_ADDRESS) && stderr.contains("--metrics"),
        "names the address and the flag: {stderr}"
    );
    assert!(!link.receiver.has_xdp(RECEIVER_IF), "nothing attached");
}

#[test]
fn an_unparsable_address_is_a_usage_error() {
    // clap refuses it before anything else happens: no root needed.
    let output = Command::new(PROBE)
        .args(["run", "--metrics", "localhost:9464"])
        .output()
        .expect("run localnet-probe");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("--metrics"), "{stderr}");
}

#[test]
#[ignore = "needs root"]
fn a_scraper_that_hangs_up_mid_response_stops_neither_counting_nor_serving() {
    const HANG_UPS: usize = 10;
    const FRAMES: u64 = 40;
    let link = Link::new("hangup");
    // Enough interfaces that a page with every one's series (about 4 kB each) outgrows the
    // socket buffers, so the probe is still writing when the scraper hangs up.
    let pairs: String = (0..50)
        .map(|n| {
            format!(
                "link add lnpa{n} type veth peer name lnpb{n}\nlink set lnpa{n} up\n\
                 link set lnpb{n} up\n"
            )
        })
        .collect();
    let mut batch = Command::new("ip")
        .args(["-n", &link.receiver.name, "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run ip -batch");
    batch
        .stdin
        .take()
        .expect("piped")
        .write_all(pairs.as_bytes())
        .expect("write to ip -batch");
    assert!(batch.wait().expect("wait for ip").success());
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--metrics",
            METRICS_ADDRESS,
            "--metrics-detail",
            "--interval",
            "0.2",
        ],
    );
    probe.wait_ready();

    for round in 0..HANG_UPS {
        link.receiver.enter(|| {
            let mut stream = TcpStream::connect(METRICS_ADDRESS).expect("connect");
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: probe\r\n\r\n")
                .expect("send the request");
            // Half the scrapers read the start of the page, then close with the rest unread
            // (a reset); the others close without reading.
            if round % 2 == 1 {
                let mut start = [0; 256];
                stream.read_exact(&mut start).expect("the page starts");
            }
        });
    }

    let frame = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .build();
    let sender = link.raw_sender();
    for _ in 0..FRAMES {
        sender.send(&frame);
    }
    probe.wait_for(Duration::from_secs(20), |report| {
        interface(report, RECEIVER_IF)["packets_matched"] == FRAMES
    });
    let page = http_get(&link.receiver, METRICS_ADDRESS, "/metrics", None);
    assert_eq!(page.status, 200);
    let line = format!(
        "localnet_probe_packets_total{{interface=\"{RECEIVER_IF}\",family=\"ipv4\",\
         address=\"destination\",action=\"passed\"}} {FRAMES}\n"
    );
    assert!(page.body.contains(&line), "no {line} in the page");
    assert!(page.body.contains("interface=\"lnpb49\""));
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
}

/// A neighbour holding idle connections open (more than the server serves at once) takes at
/// most its share: a scraper from another address is still served, and it is said once.
#[test]
#[ignore = "needs root"]
fn idle_connections_from_one_address_leave_room_for_a_scraper_from_another() {
    use std::os::fd::FromRawFd as _;

    const IDLE: usize = 100;
    let link = Link::new("crowd");
    let probe = ProbeProcess::start(PROBE, &link.receiver, &["--metrics", METRICS_ADDRESS]);
    probe.wait_ready();
    let idle: Vec<TcpStream> = link.receiver.enter(|| {
        (0..IDLE)
            .filter_map(|_| TcpStream::connect(METRICS_ADDRESS).ok())
            .collect()
    });
    assert_eq!(
        idle.len(),
        IDLE,
        "every connection is accepted, then some closed"
    );
    // From 127.0.0.2, another address of the loopback network.
    let scrape = link.receiver.enter(|| {
        // SAFETY: plain syscalls on a new socket, owned by the stream at once; the addresses
        // are valid for their lengths.
        let mut stream = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let stream = TcpStream::from_raw_fd(fd);
            let mut source: libc::sockaddr_in = std::mem::zeroed();
            source.sin_family = libc::AF_INET as u16;
            source.sin_addr.s_addr = u32::from(Ipv4Addr::new(127, 0, 0, 2)).to_be();
            let rc = libc::bind(
                fd,
                (&raw const source).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let mut server: libc::sockaddr_in = std::mem::zeroed();
            server.sin_family = libc::AF_INET as u16;
            server.sin_port = 9464u16.to_be();
            server.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
            let rc = libc::connect(
                fd,
                (&raw const server).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            );
            assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
            stream
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            .expect("send the request");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    });
    assert!(
        scrape.starts_with("HTTP/1.1 200"),
        "the scraper elsewhere got: {scrape:?}"
    );
    assert_eq!(
        probe
            .stderr()
            .matches("127.0.0.1 holds 8 metrics connections open")
            .count(),
        1,
        "{}",
        probe.stderr()
    );
    drop(idle);
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
}

/// A scrape's snapshot that finds an interface gone releases it; the next JSON report still
/// lists it once in `removed`, with its final counts.
#[test]
#[ignore = "needs root"]
fn an_interface_a_scrape_finds_removed_is_still_reported_once() {
    let link = Link::new("scraperm");
    link.receiver
        .ip(&["link", "add", "vr2", "type", "veth", "peer", "name", "vs2"]);
    link.receiver.ip(&["link", "set", "vr2", "up"]);
    link.receiver.ip(&["link", "set", "vs2", "up"]);
    // Reports far enough apart that the scrape, not a report, finds vr2 gone.
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--iface",
            RECEIVER_IF,
            "--iface",
            "vr2",
            "--metrics",
            METRICS_ADDRESS,
            "--interval",
            "2",
        ],
    );
    probe.wait_ready();
    let doomed = link.receiver.enter(|| RawSender::open("vs2"));
    let frame = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST).build();
    for _ in 0..7 {
        doomed.send(&frame);
    }
    probe.wait_for(Duration::from_secs(10), |report| {
        interface(report, "vr2")["packets_matched"] == 7
    });

    link.receiver.ip(&["link", "del", "vr2"]);
    let page = http_get(&link.receiver, METRICS_ADDRESS, "/metrics", None);
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("interface=\"vr2\""), "{}", page.body);

    let report = probe.wait_for(Duration::from_secs(10), |report| {
        !report["removed"].as_array().expect("removed").is_empty()
    });
    let removed = report["removed"].as_array().expect("removed");
    assert_eq!(removed.len(), 1, "{report}");
    assert_eq!(removed[0]["name"], "vr2");
    assert_eq!(removed[0]["packets_matched"], 7);
    assert_eq!(report["totals"]["packets_matched"], 7);
    let later = probe.wait_for(Duration::from_secs(10), |_| true);
    assert!(
        later["removed"].as_array().expect("removed").is_empty(),
        "reported once"
    );
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
}

/// `GET /metrics` asking for gzip, as Prometheus does: the response's headers and the page
/// decompressed.
fn get_gzipped(link: &Link) -> (String, String) {
    let raw = link.receiver.enter(|| {
        let mut stream = TcpStream::connect(METRICS_ADDRESS).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
            .expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read");
        raw
    });
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("headers end");
    let headers = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let mut page = String::new();
    flate2::read::GzDecoder::new(&raw[end + 4..])
        .read_to_string(&mut page)
        .unwrap_or_else(|error| panic!("not gzip ({error}): {headers}"));
    (headers, page)
}

/// The series Prometheus holds in its head block: every one it ever scraped, until compaction.
fn head_series(prometheus: &Prometheus) -> u64 {
    prometheus
        .api("status/tsdb", "")
        .and_then(|answer| answer["data"]["headStats"]["numSeries"].as_u64())
        .expect("the TSDB status")
}

/// The default page: the node's totals, series of its own for an interface that counted frames,
/// none for quiet ones, so interfaces that come and go create no series; gzipped for
/// Prometheus.
#[test]
#[ignore = "needs root"]
fn quiet_interfaces_that_come_and_go_create_no_series() {
    const FRAMES: u64 = 30;
    const CHURNED_PAIRS: usize = 4;
    let link = Link::new("promchurn");
    let config = TempDir::new("prometheus");
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--iface",
            RECEIVER_IF,
            "--iface",
            "lnc*",
            "--metrics",
            METRICS_ADDRESS,
        ],
    );
    probe.wait_ready();
    let frame = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .build();
    let sender = link.raw_sender();
    for _ in 0..FRAMES {
        sender.send(&frame);
    }
    probe.wait_for(Duration::from_secs(20), |report| {
        interface(report, RECEIVER_IF)["packets_matched"] == FRAMES
    });

    let (headers, page) = get_gzipped(&link);
    assert!(headers.contains("content-encoding: gzip"), "{headers}");
    assert!(headers.contains("vary: accept-encoding"), "{headers}");
    promtool_accepts(&page);
    let bytes = FRAMES * frame.len() as u64;
    for line in [
        format!("localnet_probe_node_packets_total{{action=\"passed\"}} {FRAMES}\n"),
        "localnet_probe_node_packets_total{action=\"dropped\"} 0\n".to_owned(),
        format!("localnet_probe_node_bytes_total{{action=\"passed\"}} {bytes}\n"),
        format!(
            "localnet_probe_packets_total{{interface=\"{RECEIVER_IF}\",action=\"passed\"}} \
             {FRAMES}\n"
        ),
        format!(
            "localnet_probe_packets_total{{interface=\"{RECEIVER_IF}\",action=\"dropped\"}} 0\n"
        ),
        format!(
            "localnet_probe_bytes_total{{interface=\"{RECEIVER_IF}\",action=\"passed\"}} {bytes}\n"
        ),
        format!("localnet_probe_exposed{{interface=\"{RECEIVER_IF}\"}} 0\n"),
        "localnet_probe_interfaces{direction=\"ingress\",hook=\"xdp\",xdp_mode=\"native\",\
         mode=\"monitor\"} 1\n"
            .to_owned(),
    ] {
        assert!(page.contains(&line), "no {line} in\n{page}");
    }
    // The identity encoding when not asked.
    let plain = http_get(&link.receiver, METRICS_ADDRESS, "/metrics", None);
    assert!(
        !plain.headers.contains("content-encoding"),
        "{}",
        plain.headers
    );
    assert!(plain.body.contains("localnet_probe_node_packets_total{"));

    let configuration = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: localnet-probe\n    \
         static_configs:\n      - targets: ['{METRICS_ADDRESS}']\n"
    );
    let config_file = config.path().join("prometheus.yml");
    std::fs::write(&config_file, configuration).expect("write prometheus.yml");
    let prometheus = Prometheus::start(&link.receiver, &config_file);
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} within 30 s; prometheus log: {}",
                prometheus.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
    };
    let prometheus = &prometheus;
    let served = |count: usize| {
        move || {
            prometheus
                .query("sum(localnet_probe_interfaces{direction=\"ingress\"})")
                .and_then(|answer| {
                    answer["data"]["result"][0]["value"][1]
                        .as_str()
                        .map(str::to_owned)
                })
                == Some(count.to_string())
        }
    };
    // Scraped, gzipped as Prometheus asks, with the exact counts.
    wait_until("Prometheus scraped the counts", &|| {
        prometheus
            .query("localnet_probe_packets_total{action=\"passed\"}")
            .map(|answer| series(&answer, &["interface"]))
            == Some(BTreeMap::from([(labels(&[RECEIVER_IF]), FRAMES)]))
    });
    wait_until("Prometheus scraped one interface", &served(1));
    let before = head_series(prometheus);

    // Pods restarting: pairs created, served, scraped, deleted.
    for pair in 0..CHURNED_PAIRS {
        let (a, b) = (format!("lnc{pair}a"), format!("lnc{pair}b"));
        link.receiver
            .ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        wait_until("Prometheus scraped the new pair", &served(3));
        link.receiver.ip(&["link", "del", &a]);
        wait_until("Prometheus scraped without it", &served(1));
    }
    let after = head_series(prometheus);
    println!(
        "series in Prometheus's head: {before} before {CHURNED_PAIRS} pairs came and went, \
         {after} after"
    );
    assert_eq!(after, before, "quiet interfaces created series");
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
}
