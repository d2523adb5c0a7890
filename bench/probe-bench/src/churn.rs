//! Churn with the real binary: a thousand veth pairs added in one `ip -batch` and deleted in
//! another while `run --interval 0.5` serves them (the probe's CPU seconds and the longest time
//! between two reports, each batch); then an hour of a busy node's churn compressed, pods of a
//! 500-interface node replaced again and again with scrapes between, the probe's resident
//! memory after the first minute's worth and after the hour, and what a 500-interface node
//! costs at rest and under that churn (the figures the DaemonSet's and unit's resources are
//! set from).

use std::{
    cell::{Cell, RefCell},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;
use testbed::{Netns, ProbeProcess, http_get};

use crate::{
    Plan,
    node::CHURN_PER_SEC,
    process::{Footprint, cpu_secs, peak_rss_kib, rss_kib},
    userspace::stop,
};

/// The probe's `--interval` while the pairs come and go.
pub const INTERVAL_SECS: f64 = 0.5;
/// What the served interfaces are named; the pattern selects them.
const PATTERN: &str = "ch*";
const METRICS_ADDRESS: &str = "127.0.0.1:9464";
/// Scrapes of `/metrics` each time the node is full.
pub const SCRAPES_PER_CYCLE: usize = 3;
/// How long to wait for the probe to follow a batch.
const PATIENCE: Duration = Duration::from_secs(120);

#[derive(Debug, Serialize)]
pub struct Churn {
    pub interval_secs: f64,
    /// Pairs added in one batch, then deleted in one: the probe serves both ends of each.
    pub pairs: usize,
    pub add: Burst,
    pub delete: Burst,
    pub hour: Hour,
}

/// One batch, from the start of `ip -batch` to the first report that shows all of it.
#[derive(Debug, Serialize)]
pub struct Burst {
    pub secs: f64,
    pub cpu_secs: f64,
    /// The longest time between two reports meanwhile, by their `elapsed_secs`.
    pub worst_gap_secs: f64,
}

/// An hour of the soak's churn ([`CHURN_PER_SEC`] interfaces replaced a second) compressed:
/// `cycles` times a peer namespace brings `interfaces` in, they are scraped, and it is deleted.
#[derive(Debug, Serialize)]
pub struct Hour {
    pub interfaces: usize,
    pub cycles: usize,
    pub secs: f64,
    /// The probe's resident memory with the node full and just scraped, after the cycle that
    /// ends the first minute's worth of churn, and after the last.
    pub rss_after_minute_kib: u64,
    pub rss_after_hour_kib: u64,
    /// The most it ever held (VmHWM).
    pub peak_rss_kib: u64,
    /// With `interfaces` served and nothing changing, a scrape every few seconds.
    pub at_rest: Footprint,
    /// Over the whole compressed hour: far more churn than an hour of the soak's pace.
    pub churning: Footprint,
}

pub fn measure(plan: &Plan, probe_binary: &str) -> anyhow::Result<Churn> {
    let netns = Netns::new("bench-churn");
    let capacity = (2 * plan.churn_pairs).max(plan.churn_node_interfaces) + 64;
    let probe = ProbeProcess::start(
        probe_binary,
        &netns,
        &[
            "--iface",
            PATTERN,
            "--capacity",
            &capacity.to_string(),
            "--interval",
            &INTERVAL_SECS.to_string(),
            "--metrics",
            METRICS_ADDRESS,
        ],
    );
    probe.wait_ready();
    let pairs = plan.churn_pairs;
    let added: String = (0..pairs)
        .map(|i| format!("link add cha{i} type veth peer name chb{i}\n"))
        .collect();
    let add = burst(&probe, &netns, &added, 2 * pairs)?;
    let deleted: String = (0..pairs).map(|i| format!("link del cha{i}\n")).collect();
    let delete = burst(&probe, &netns, &deleted, 0)?;
    let hour = hour(plan, &probe, &netns)?;
    stop(probe, "churning interfaces")?;
    Ok(Churn {
        interval_secs: INTERVAL_SECS,
        pairs,
        add,
        delete,
        hour,
    })
}

/// Runs `batch` in `netns` and waits for the report that serves `served` interfaces.
fn burst(probe: &ProbeProcess, netns: &Netns, batch: &str, served: usize) -> anyhow::Result<Burst> {
    let cpu = cpu_secs(probe.pid())?;
    let started = Instant::now();
    run_batch(netns, batch)?;
    let elapsed = RefCell::new(Vec::new());
    probe.wait_for(PATIENCE, |report| {
        if report["type"] != "counters" {
            return false;
        }
        elapsed
            .borrow_mut()
            .push(report["elapsed_secs"].as_f64().unwrap_or(0.0));
        served_by(report) == served
    });
    let secs = started.elapsed().as_secs_f64();
    let elapsed = elapsed.into_inner();
    Ok(Burst {
        secs,
        cpu_secs: cpu_secs(probe.pid())? - cpu,
        worst_gap_secs: elapsed
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .fold(0.0, f64::max),
    })
}

/// The compressed hour: node-sized sets of interfaces brought in by a peer namespace, scraped,
/// and gone with it.
fn hour(plan: &Plan, probe: &ProbeProcess, netns: &Netns) -> anyhow::Result<Hour> {
    let interfaces = plan.churn_node_interfaces;
    let pid = probe.pid();
    // The soak's first minute of churn, in cycles.
    let minute_cycles = (60 * CHURN_PER_SEC as usize).div_ceil(interfaces).max(1);
    let cycles = (3600 * CHURN_PER_SEC as usize).div_ceil(interfaces);
    let cycles = cycles.min(plan.churn_cycles).max(minute_cycles + 1);
    let (mut after_minute, mut after_hour) = (0, 0);
    let mut at_rest = None;
    let started = Instant::now();
    let churning = Footprint::start(pid)?;
    for cycle in 0..cycles {
        let peers = Netns::new("bench-churn-peer");
        let batch: String = (0..interfaces)
            .map(|i| {
                format!(
                    "link add chp{i} type veth peer name chc{i} netns {}\n",
                    netns.name
                )
            })
            .collect();
        run_batch(&peers, &batch)?;
        probe.wait_for(PATIENCE, |report| served_by(report) == interfaces);
        if cycle == 0 {
            let rest = Footprint::start(pid)?;
            let until = Instant::now() + plan.idle;
            while Instant::now() < until {
                scrape(netns)?;
                std::thread::sleep(Duration::from_secs(5).min(plan.idle));
            }
            at_rest = Some(rest.finish()?);
        }
        for _ in 0..SCRAPES_PER_CYCLE {
            scrape(netns)?;
        }
        let rss = rss_kib(pid)?;
        if cycle + 1 == minute_cycles {
            after_minute = rss;
        }
        after_hour = rss;
        drop(peers);
        let gone = Cell::new(false);
        probe.wait_for(PATIENCE, |report| {
            gone.set(served_by(report) == 0);
            gone.get()
        });
    }
    Ok(Hour {
        interfaces,
        cycles,
        secs: started.elapsed().as_secs_f64(),
        rss_after_minute_kib: after_minute,
        rss_after_hour_kib: after_hour,
        peak_rss_kib: peak_rss_kib(pid)?,
        at_rest: at_rest.context("the first cycle measures the node at rest")?,
        churning: churning.finish()?,
    })
}

fn scrape(netns: &Netns) -> anyhow::Result<()> {
    let response = http_get(netns, METRICS_ADDRESS, "/metrics", None);
    anyhow::ensure!(
        response.status == 200,
        "a scrape answered {}",
        response.status
    );
    Ok(())
}

fn served_by(report: &Value) -> usize {
    report["served"].as_u64().map_or(usize::MAX, |n| n as usize)
}

/// `ip -n NETNS -batch` over `lines`.
fn run_batch(netns: &Netns, lines: &str) -> anyhow::Result<()> {
    let path = std::env::temp_dir().join(format!("{}.batch", netns.name));
    std::fs::write(&path, lines).with_context(|| format!("write {}", path.display()))?;
    netns.ip(&["-batch", path.to_str().context("a UTF-8 path")?]);
    let _ = std::fs::remove_file(&path);
    Ok(())
}
