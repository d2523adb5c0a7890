//! A short run of the benchmark harness end to end: every section runs and reports what it
//! measured, with the verdicts the programs must give. No timing is asserted. Needs root and the
//! tools `cargo xtask test` installs (xdp-tools, bpftool, nftables, ethtool).

use std::{path::Path, process::Command, sync::Mutex};

use serde_json::Value;

/// One benchmark at a time: each takes the CPUs it pins and the namespaces it names.
static BENCH: Mutex<()> = Mutex::new(());

/// Runs the quick plan for `sections`; the report as JSON and as Markdown.
fn quick_run(sections: &str) -> (Value, String) {
    let _alone = BENCH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bench = Path::new(env!("CARGO_BIN_EXE_localnet-probe-bench"));
    let probe = bench.with_file_name("localnet-probe");
    assert!(
        probe.exists(),
        "{} is missing: build probe-user first (cargo xtask test does)",
        probe.display()
    );
    let out = std::env::temp_dir().join(format!(
        "localnet-probe-bench-smoke-{}-{}",
        std::process::id(),
        sections.replace(',', "-")
    ));
    let output = Command::new(bench)
        .arg("--quick")
        .arg("--section")
        .arg(sections)
        .arg("--probe-binary")
        .arg(&probe)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the benchmark");
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("report.json")).expect("report.json"),
    )
    .expect("report.json is JSON");
    let markdown = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    std::fs::remove_dir_all(&out).expect("remove the report");
    (report, markdown)
}

#[test]
#[ignore = "needs root"]
fn quick_run_reports_every_section() {
    let (report, markdown) = quick_run("kernel,userspace,startup,hotplug,node,scan");
    assert!(markdown.contains("**Targets**"), "{markdown}");
    assert!(markdown.contains("**tc hooks**"), "{markdown}");

    let results = report["kernel_cost"]["results"]
        .as_array()
        .expect("kernel results");
    // Seven IP frames and two ARP ones.
    assert_eq!(results.len(), 21 * 9, "21 subjects × 9 frames");
    for result in results {
        assert!(
            result["ns_per_frame"]["median"].as_f64().unwrap() > 0.0,
            "{result}"
        );
        let frame = result["frame"].as_str().unwrap();
        let loopback = !frame.starts_with("benign");
        // xdp-filter matches exact IP addresses: 127.0.0.1 and ::1, not the v4-mapped form nor
        // ARP; the C classifier all three IP forms, not ARP. The tcx programs hand frames on (TCX_NEXT, -1) or drop them (TCX_DROP, 2); the
        // egress program never drops.
        let subject = result["subject"].as_str().unwrap();
        let expected = match subject {
            "probe at tcx ingress (drop)" if loopback => 2,
            _ if subject.contains("tcx") => -1,
            _ if loopback && subject.starts_with("probe (drop") => 1,
            "XDP read headers, drop" | "XDP read headers, count exactly, drop" => 1,
            "xdp-filter" if loopback && frame != "v4-mapped" && !frame.starts_with("ARP") => 1,
            // The C classifier reads no ARP.
            _ if subject.starts_with("C classifier") && loopback && !frame.starts_with("ARP") => 1,
            _ => 2,
        };
        assert_eq!(result["verdict"], expected, "{result}");
    }

    let attach = report["startup"].as_array().expect("start-up times");
    assert_eq!(
        attach
            .iter()
            .map(|a| a["interfaces"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 3]
    );
    for a in attach {
        assert!(a["seconds"]["median"].as_f64().unwrap() > 0.0, "{a}");
        assert!(a["peak_rss_kib"]["max"].as_f64().unwrap() > 0.0, "{a}");
    }
    assert!(
        markdown.contains("start-up: the first report listing all 3 interfaces"),
        "{markdown}"
    );

    // The quick plan's 2 interfaces plugged in, each counted, unless this binary does not
    // follow new interfaces, which the report then says.
    let hotplug = &report["hotplug"];
    assert_eq!(hotplug["interfaces"], 2, "{hotplug}");
    let outcome = &hotplug["outcome"];
    if let Some(why) = outcome["unsupported"].as_str() {
        assert!(!why.is_empty(), "{hotplug}");
        assert!(
            markdown.contains("hot-plug not supported by this binary"),
            "{markdown}"
        );
    } else {
        let measured = &outcome["measured"];
        assert_eq!(measured["missed"], serde_json::json!([]), "{hotplug}");
        let latency = &measured["latency_secs"];
        assert_eq!(latency["samples"].as_array().unwrap().len(), 2, "{hotplug}");
        assert!(latency["min"].as_f64().unwrap() > 0.0, "{hotplug}");
    }
    assert!(
        report["userspace"]["idle"]["peak_rss_kib"]
            .as_u64()
            .unwrap()
            > 0
    );
    // The quick plan's 64 veth pairs, both ends served.
    let many = &report["userspace"]["many"];
    assert_eq!(many["interfaces"], 128, "{many}");
    assert!(many["footprint"]["peak_rss_kib"].as_u64().unwrap() > 0);
    assert!(
        many["scrape"]["seconds"]["median"].as_f64().unwrap() > 0.0,
        "{many}"
    );
    assert!(many["scrape"]["bytes"].as_u64().unwrap() > 0, "{many}");
    for (map, served) in [
        (&report["userspace"]["idle_counter_map"], 1),
        (&many["counter_map"], 128),
    ] {
        assert!(map["slots"].as_u64().unwrap() >= served, "{map}");
        assert_eq!(
            map["total_bytes"].as_u64().unwrap(),
            map["bytes_per_cpu"].as_u64().unwrap() * map["cpus"].as_u64().unwrap(),
            "{map}"
        );
    }
    assert!(
        markdown.contains("128 interfaces at --interval 1"),
        "{markdown}"
    );
    // The node section: quiet interfaces have no series of their own, so a quiet pod's restart
    // creates none; compact JSON is smaller than full under churn.
    let node = &report["node"];
    assert_eq!(node["interfaces"], 2000, "{node}");
    let pages = node["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 3, "{node}");
    for page in pages {
        assert!(page["gzip_bytes"].as_u64().unwrap() > 0, "{page}");
        assert!(
            page["gzip_bytes"].as_u64().unwrap() < page["raw_bytes"].as_u64().unwrap(),
            "{page}"
        );
    }
    assert!(
        pages[0]["series"].as_u64().unwrap() < 20,
        "quiet interfaces: {node}"
    );
    assert_eq!(node["restarts"][0]["new_series"], 0, "{node}");
    // Packets and bytes of every class passed and dropped, and 8 gauges and sample counts.
    assert_eq!(
        node["restarts"][2]["new_series"],
        2 * 2 * u64::from(probe_common::LoopbackMatch::COUNT) + 8,
        "{node}"
    );
    for json in node["json"].as_array().expect("json") {
        assert!(
            json["compact_bytes_per_day"].as_f64().unwrap()
                < json["full_bytes_per_day"].as_f64().unwrap(),
            "{json}"
        );
    }
    assert!(markdown.contains("**A busy node**"), "{markdown}");

    // scan and tcpdump matched the same frames (the harness checks it), both at some rate.
    let scan = &report["scan"];
    assert_eq!(scan["frames"], 100_000, "{scan}");
    assert_eq!(scan["matched"], 3_000, "{scan}");
    for rate in ["scan_frames_per_sec", "tcpdump_frames_per_sec"] {
        assert!(scan[rate]["median"].as_f64().unwrap() > 0.0, "{scan}");
    }
    assert!(markdown.contains("**Scan**"), "{markdown}");
    assert!(!report["targets"].as_array().unwrap().is_empty());
}

/// The veth flood needs BPF_PROG_TEST_RUN's live-frames mode; where the kernel refuses it the
/// report says so and this test is counted as skipped.
#[test]
#[ignore = "needs root"]
fn quick_veth_run_reports_every_scenario() {
    let (report, markdown) = quick_run("veth");
    if let Some(skipped) = report["not_measured"].as_array().and_then(|not| {
        not.iter()
            .find(|entry| entry["section"] == "veth throughput")
    }) {
        let why = skipped["why"].as_str().expect("why");
        assert!(markdown.contains(why), "{markdown}");
        testbed::skipped("quick_veth_run_reports_every_scenario", why);
        return;
    }
    let scenarios = report["throughput"]["scenarios"]
        .as_array()
        .expect("veth scenarios");
    assert_eq!(scenarios.len(), 14);
    for scenario in scenarios {
        assert!(
            scenario["handled_per_sec"]["median"].as_f64().unwrap() > 0.0,
            "{scenario}"
        );
        // The CLI's footprint; the probe at tcx ingress is attached by the harness itself.
        let name = scenario["name"].as_str().unwrap();
        assert_eq!(
            scenario["probe_footprint"].is_object(),
            name.starts_with("probe ("),
            "{scenario}"
        );
        assert_eq!(
            scenario["samples"].is_object(),
            name.ends_with("sampling)"),
            "{scenario}"
        );
    }
}
