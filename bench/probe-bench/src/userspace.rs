//! The localnet-probe CLI's own cost: CPU and memory while idle, on one interface and on many,
//! the size of its counter map, and the time a scrape of its metrics takes.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use probe_common::CLASSES_PER_INTERFACE;
use serde::Serialize;
use serde_json::Value;
use testbed::{Netns, ProbeProcess};

use crate::{
    Plan,
    process::{self, Footprint, PERCPU_ARRAY},
    stats::Summary,
};

#[derive(Debug, Serialize)]
pub struct Userspace {
    /// `run --interval 1` on one idle interface, over `idle_secs`.
    pub idle: Footprint,
    pub idle_secs: f64,
    /// The counter map of that run.
    pub idle_counter_map: CounterMap,
    pub many: ManyInterfaces,
}

/// `run --interval 1` serving every interface of a namespace full of idle veth pairs.
#[derive(Debug, Serialize)]
pub struct ManyInterfaces {
    /// Both ends of every pair, as the first report listed them.
    pub interfaces: usize,
    /// Over `idle_secs`, from the first report on, serving `/metrics` unasked.
    pub footprint: Footprint,
    pub counter_map: CounterMap,
    /// Scrapes of `/metrics`, one after another, after `footprint`'s window.
    pub scrape: Scrape,
}

/// GET `/metrics` over a fresh connection, as Prometheus scrapes.
#[derive(Debug, Serialize)]
pub struct Scrape {
    /// From connecting to the last byte of the page.
    pub seconds: Summary,
    /// The page's size, headers included.
    pub bytes: usize,
}

/// The size of the probe's per-CPU counter map, as the kernel describes it.
#[derive(Debug, Serialize)]
pub struct CounterMap {
    pub max_entries: u32,
    pub value_size: u32,
    /// Interfaces it has counters for: `max_entries` / the classes per interface.
    pub slots: u32,
    /// One slot's counters on one CPU.
    pub slot_bytes: u64,
    /// One CPU's copy: `max_entries` × `value_size` rounded up to 8, as the kernel stores it.
    pub bytes_per_cpu: u64,
    /// Possible CPUs, each with a copy.
    pub cpus: usize,
    pub total_bytes: u64,
}

pub fn measure(plan: &Plan, probe_binary: &str) -> anyhow::Result<Userspace> {
    let netns = Netns::new("bench-idle");
    netns.ip(&["link", "add", "ida", "type", "veth", "peer", "name", "idb"]);
    netns.ip(&["link", "set", "ida", "up"]);
    netns.ip(&["link", "set", "idb", "up"]);
    let probe = ProbeProcess::start(probe_binary, &netns, &["--iface", "ida", "--interval", "1"]);
    probe.wait_ready();
    let idle_counter_map = CounterMap::of(probe.pid())?;
    let start = Footprint::start(probe.pid())?;
    thread::sleep(plan.idle);
    let idle = start.finish()?;
    drop(probe);

    let many = many_interfaces(plan, probe_binary)?;
    Ok(Userspace {
        idle,
        idle_secs: plan.idle.as_secs_f64(),
        idle_counter_map,
        many,
    })
}

impl CounterMap {
    /// The counter map of the probe running as `pid`: the per-CPU array named `COUNTERS` (the
    /// sample counts are another, by slot, with values of the same size). `ip netns exec` execs
    /// the probe in place, so a [`ProbeProcess`]'s pid is the probe's own.
    fn of(pid: i32) -> anyhow::Result<Self> {
        let map = process::bpf_map_named(pid, PERCPU_ARRAY, probe_common::map_names::COUNTERS)?;
        let cpus = aya::util::nr_cpus()
            .map_err(|(path, error)| anyhow!(error).context(format!("read {path}")))?;
        let value_bytes = u64::from(map.value_size.next_multiple_of(8));
        let bytes_per_cpu = u64::from(map.max_entries) * value_bytes;
        Ok(Self {
            max_entries: map.max_entries,
            value_size: map.value_size,
            slots: map.max_entries / CLASSES_PER_INTERFACE as u32,
            slot_bytes: CLASSES_PER_INTERFACE as u64 * value_bytes,
            bytes_per_cpu,
            cpus,
            total_bytes: bytes_per_cpu * cpus as u64,
        })
    }
}

/// A namespace with `count` veth pairs `a<i>`–`b<i>`, both ends up, made in one `ip -batch`.
pub fn veth_pairs(tag: &str, count: usize) -> anyhow::Result<Netns> {
    let netns = Netns::new(tag);
    let batch: String = (0..count)
        .map(|i| {
            format!("link add a{i} type veth peer name b{i}\nlink set a{i} up\nlink set b{i} up\n")
        })
        .collect();
    let batch_file = std::env::temp_dir().join(format!("{}.ip", netns.name));
    std::fs::write(&batch_file, batch)?;
    let status = Command::new("ip")
        .args(["-n", &netns.name, "-batch"])
        .arg(&batch_file)
        .status()?;
    let _ = std::fs::remove_file(&batch_file);
    if !status.success() {
        bail!("creating {count} veth pairs failed");
    }
    Ok(netns)
}

/// Interfaces a report lists.
pub fn listed(report: &Value) -> usize {
    report["interfaces"].as_array().map_or(0, Vec::len)
}

/// Sends SIGTERM and checks that `run` exits cleanly.
pub fn stop(probe: ProbeProcess, what: &str) -> anyhow::Result<()> {
    let (status, _) = probe.stop(libc::SIGTERM);
    if !status.success() {
        bail!("run on {what} exited with {status}");
    }
    Ok(())
}

/// `run` with no `--iface` in a namespace of `plan.many_veth_pairs` veth pairs: the default
/// selection serves every interface that is up but loopback, both ends of each pair.
fn many_interfaces(plan: &Plan, probe_binary: &str) -> anyhow::Result<ManyInterfaces> {
    let expected = 2 * plan.many_veth_pairs;
    let netns = veth_pairs("bench-many", plan.many_veth_pairs)?;
    // The metrics address is on the namespace's loopback, which the default selection leaves out.
    netns.ip(&["link", "set", "lo", "up"]);
    let probe = ProbeProcess::start(
        probe_binary,
        &netns,
        &["--interval", "1", "--metrics", METRICS_ADDRESS],
    );
    let interfaces = listed(&probe.wait_for(Duration::from_secs(120), |_| true));
    if interfaces != expected {
        bail!("expected {expected} interfaces in the first report, got {interfaces}");
    }
    let counter_map = CounterMap::of(probe.pid())
        .with_context(|| format!("the counter map for {interfaces} interfaces"))?;
    let start = Footprint::start(probe.pid())?;
    thread::sleep(plan.idle);
    let footprint = start.finish()?;
    let scrape = netns.enter(|| scrape_metrics(plan.scrapes))?;
    stop(probe, &format!("{interfaces} interfaces"))?;
    Ok(ManyInterfaces {
        interfaces,
        footprint,
        counter_map,
        scrape,
    })
}

const METRICS_ADDRESS: &str = "127.0.0.1:9464";

/// `count` scrapes of the CLI's `/metrics` at [`METRICS_ADDRESS`], from the caller's namespace.
fn scrape_metrics(count: usize) -> anyhow::Result<Scrape> {
    let mut seconds = Vec::new();
    let mut bytes = 0;
    for _ in 0..count {
        let start = Instant::now();
        let mut stream = TcpStream::connect(METRICS_ADDRESS).context("connect to --metrics")?;
        stream.write_all(
            format!(
                "GET /metrics HTTP/1.1\r\nHost: {METRICS_ADDRESS}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )?;
        let mut page = Vec::new();
        stream.read_to_end(&mut page)?;
        seconds.push(start.elapsed().as_secs_f64());
        if !page.starts_with(b"HTTP/1.1 200") {
            bail!(
                "/metrics answered {}",
                String::from_utf8_lossy(&page[..page.len().min(100)])
            );
        }
        bytes = page.len();
    }
    Ok(Scrape {
        seconds: Summary::of(&seconds),
        bytes,
    })
}
