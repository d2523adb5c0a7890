//! A node that fills up: `run --drop --iface 'g*'` started in a namespace with nothing but
//! loopback (room for 257 interfaces), then 1,000 veth pairs, both ends matching, plugged in one
//! `ip -batch`. The time from the start of the batch until every one of the 2,000 carries the
//! program (polled with `ip -d link show` every 20 ms), and how many the probe refused.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;
use testbed::{Netns, ProbeProcess};

use crate::userspace::stop;

/// How long every interface may take to be served before the measure gives up.
const GIVE_UP: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Serialize)]
pub struct Growth {
    /// Interfaces plugged (both ends of each pair).
    pub interfaces: usize,
    /// How long the `ip -batch` itself took.
    pub batch_secs: f64,
    /// From the start of the batch until every interface carried the program; `None` when
    /// some never did within [`GIVE_UP`].
    pub all_served_secs: Option<f64>,
    /// Interfaces the probe's last report lists as refused.
    pub refused: usize,
    /// Interfaces carrying the program at the end.
    pub served: usize,
    /// The room the probe said its counters last grew to; `None` if they never grew.
    pub grown_to: Option<u32>,
}

pub fn measure(pairs: usize, probe_binary: &str) -> anyhow::Result<Growth> {
    let netns = Netns::new("bench-grow");
    let probe = ProbeProcess::start(
        probe_binary,
        &netns,
        &["--drop", "--iface", "g*", "--interval", "0.5"],
    );
    probe
        .next_report(Duration::from_secs(30))
        .with_context(|| format!("no report from the probe: {}", probe.stderr()))?;
    let batch: String = (0..pairs)
        .map(|i| format!("link add g{i:04}a type veth peer name g{i:04}b\n"))
        .collect();
    let interfaces = 2 * pairs;
    let plugged = Instant::now();
    let mut ip = Command::new("ip")
        .args(["-n", &netns.name, "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("run ip -batch")?;
    ip.stdin
        .take()
        .context("ip's stdin")?
        .write_all(batch.as_bytes())
        .context("write the batch")?;
    if !ip.wait().context("wait for ip")?.success() {
        bail!("ip -batch failed");
    }
    let batch_secs = plugged.elapsed().as_secs_f64();
    let mut all_served_secs = None;
    while plugged.elapsed() < GIVE_UP {
        if with_xdp(&netns)? >= interfaces {
            all_served_secs = Some(plugged.elapsed().as_secs_f64());
            break;
        }
        thread::sleep(POLL);
    }
    let served = with_xdp(&netns)?;
    // A report made after the last attachment: the refused ones are those still left out.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = 0;
    while Instant::now() < deadline {
        let Ok(report) = probe.next_report(Duration::from_secs(5)) else {
            break;
        };
        refused = report["refused"].as_array().map_or(0, Vec::len);
        if report["interfaces"].as_array().map_or(0, Vec::len) >= served {
            break;
        }
    }
    let grown_to = probe.stderr().lines().rev().find_map(|line| {
        let rest = line.split("the counters grew to room for ").nth(1)?;
        rest.split(' ').next()?.parse().ok()
    });
    stop(probe, "the plugged interfaces")?;
    Ok(Growth {
        interfaces,
        batch_secs,
        all_served_secs,
        refused,
        served,
        grown_to,
    })
}

/// Interfaces of `netns` that carry an XDP program, from one `ip -d link show`.
fn with_xdp(netns: &Netns) -> anyhow::Result<usize> {
    let output = Command::new("ip")
        .args(["-n", &netns.name, "-d", "link", "show"])
        .output()
        .context("run ip")?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .matches("prog/xdp")
        .count())
}
