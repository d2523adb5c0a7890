//! The localnet-probe CLI's own cost: CPU and memory while idle, and the time to attach.

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::bail;
use serde::Serialize;
use testbed::{Netns, ProbeProcess};

use crate::{Plan, process::Footprint, stats::Summary};

#[derive(Debug, Serialize)]
pub struct Userspace {
    /// `run --interval 1` on one idle interface, over `idle_secs`.
    pub idle: Footprint,
    pub idle_secs: f64,
    pub attach: Vec<AttachTime>,
}

#[derive(Debug, Serialize)]
pub struct AttachTime {
    pub interfaces: usize,
    /// From starting `run` to its first report: loading the program, attaching everywhere.
    pub seconds: Summary,
}

pub fn measure(plan: &Plan, probe_binary: &str) -> anyhow::Result<Userspace> {
    let netns = Netns::new("bench-idle");
    netns.ip(&["link", "add", "ida", "type", "veth", "peer", "name", "idb"]);
    netns.ip(&["link", "set", "ida", "up"]);
    netns.ip(&["link", "set", "idb", "up"]);
    let probe = ProbeProcess::start(probe_binary, &netns, &["--iface", "ida", "--interval", "1"]);
    probe.wait_ready();
    let start = Footprint::start(probe.pid())?;
    thread::sleep(plan.idle);
    let idle = start.finish()?;
    drop(probe);

    let mut attach = Vec::new();
    for &count in &plan.attach_counts {
        attach.push(attach_time(plan, probe_binary, count)?);
    }
    Ok(Userspace {
        idle,
        idle_secs: plan.idle.as_secs_f64(),
        attach,
    })
}

/// A namespace with `count` veth pairs; `run` attaches to one end of each.
fn attach_time(plan: &Plan, probe_binary: &str, count: usize) -> anyhow::Result<AttachTime> {
    let netns = Netns::new("bench-attach");
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
    let names: Vec<String> = (0..count).map(|i| format!("a{i}")).collect();
    let mut args: Vec<&str> = vec!["--interval", "1"];
    for name in &names {
        args.extend(["--iface", name.as_str()]);
    }
    let mut samples = Vec::new();
    for _ in 0..plan.attach_rounds {
        let start = Instant::now();
        let probe = ProbeProcess::start(probe_binary, &netns, &args);
        let report = probe.wait_for(Duration::from_secs(60), |_| true);
        samples.push(start.elapsed().as_secs_f64());
        let attached = report["interfaces"].as_array().map_or(0, Vec::len);
        if attached != count {
            bail!("expected {count} interfaces in the first report, got {attached}");
        }
        let (status, _) = probe.stop(libc::SIGTERM);
        if !status.success() {
            bail!("run on {count} interfaces exited with {status}");
        }
    }
    Ok(AttachTime {
        interfaces: count,
        seconds: Summary::of(&samples),
    })
}
