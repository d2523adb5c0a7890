//! The CLI's start-up: from executing `run` to its first report listing every interface it was
//! given, and the memory it took to get there.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;
use testbed::ProbeProcess;

use crate::{
    Plan, process,
    stats::Summary,
    userspace::{listed, stop, veth_pairs},
};

#[derive(Debug, Serialize)]
pub struct AttachTime {
    pub interfaces: usize,
    /// From starting `run` to its first report: loading the program, attaching everywhere.
    pub seconds: Summary,
    /// The process's peak RSS (VmHWM) when that report was read, KiB.
    pub peak_rss_kib: Summary,
}

pub fn measure(plan: &Plan, probe_binary: &str) -> anyhow::Result<Vec<AttachTime>> {
    plan.attach_counts
        .iter()
        .map(|&count| attach_time(plan, probe_binary, count))
        .collect()
}

/// `count` veth pairs; `run` attaches to one end of each, named one by one with `--iface`. The
/// clock starts before `ip netns exec` is started, which then executes the probe in place: its
/// few milliseconds of namespace set-up are counted too.
fn attach_time(plan: &Plan, probe_binary: &str, count: usize) -> anyhow::Result<AttachTime> {
    let netns = veth_pairs("bench-attach", count)?;
    let names: Vec<String> = (0..count).map(|i| format!("a{i}")).collect();
    let mut args: Vec<&str> = vec!["--interval", "1"];
    for name in &names {
        args.extend(["--iface", name.as_str()]);
    }
    let mut seconds = Vec::new();
    let mut peak_rss_kib = Vec::new();
    for _ in 0..plan.attach_rounds {
        let start = Instant::now();
        let probe = ProbeProcess::start(probe_binary, &netns, &args);
        let report = probe.wait_for(Duration::from_secs(60), |_| true);
        seconds.push(start.elapsed().as_secs_f64());
        peak_rss_kib.push(process::peak_rss_kib(probe.pid())? as f64);
        let attached = listed(&report);
        if attached != count {
            bail!("expected {count} interfaces in the first report, got {attached}");
        }
        stop(probe, &format!("{count} interfaces"))?;
    }
    Ok(AttachTime {
        interfaces: count,
        seconds: Summary::of(&seconds),
        peak_rss_kib: Summary::of(&peak_rss_kib),
    })
}
