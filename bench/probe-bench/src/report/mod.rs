//! The benchmark's report: raw figures, medians and ranges, ratios, and the targets they are held to.

use std::{
    fmt::Write as _,
    fs,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

mod markdown;
mod node;
mod targets;

use self::targets::*;

use crate::{
    Plan,
    hotplug::{Hotplug, Outcome},
    kernel_cost::{self, KernelCost},
    node::Node,
    process::Footprint,
    scan::ScanBench,
    startup::AttachTime,
    stats::Summary,
    throughput::{self, ScenarioResult, Throughput},
    userspace::{CounterMap, Userspace},
};

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub plan: Plan,
    pub kernel_cost: Option<KernelCost>,
    pub throughput: Option<Throughput>,
    pub userspace: Option<Userspace>,
    pub startup: Option<Vec<AttachTime>>,
    pub hotplug: Option<Hotplug>,
    pub node: Option<Node>,
    pub scan: Option<ScanBench>,
    /// Sections asked for that this machine cannot measure, and why.
    pub not_measured: Vec<NotMeasured>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Serialize)]
pub struct NotMeasured {
    pub section: &'static str,
    pub why: String,
}

/// What each section measured; `None` for those left out.
pub struct Sections {
    pub kernel_cost: Option<KernelCost>,
    pub throughput: Option<Throughput>,
    pub userspace: Option<Userspace>,
    pub startup: Option<Vec<AttachTime>>,
    pub hotplug: Option<Hotplug>,
    pub node: Option<Node>,
    pub scan: Option<ScanBench>,
    pub not_measured: Vec<NotMeasured>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    /// Unix time the report was made.
    pub timestamp: u64,
}

impl Machine {
    fn read() -> anyhow::Result<Self> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo")?;
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|line| line.split_once(':'))
            .map_or("unknown CPU", |(_, name)| name.trim())
            .to_owned();
        Ok(Self {
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")?
                .trim()
                .to_owned(),
            timestamp: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        })
    }
}

/// A goal from the project's claims and whether this run met it.
#[derive(Debug, Serialize)]
pub struct Target {
    pub goal: String,
    pub measured: String,
    pub met: bool,
    /// How far off, in percent of the goal, when missed.
    pub shortfall_percent: Option<f64>,
    /// What the figures say about why, when missed.
    pub why: Option<String>,
}

impl Target {
    /// `value` must be at most `limit`.
    fn at_most(goal: String, value: f64, limit: f64, measured: String) -> Self {
        let met = value <= limit;
        Self {
            goal,
            measured,
            met,
            shortfall_percent: (!met).then(|| (value / limit - 1.0) * 100.0),
            why: None,
        }
    }

    /// `value` must be at least `floor`.
    fn at_least(goal: String, value: f64, floor: f64, measured: String) -> Self {
        let met = value >= floor;
        Self {
            goal,
            measured,
            met,
            shortfall_percent: (!met).then(|| (1.0 - value / floor) * 100.0),
            why: None,
        }
    }

    /// A goal this run could not measure: missed, with no shortfall to give.
    fn unmeasured(goal: String, measured: String, why: String) -> Self {
        Self {
            goal,
            measured,
            met: false,
            shortfall_percent: None,
            why: Some(why),
        }
    }

    /// Explains a miss; a met target keeps no note.
    fn why(mut self, why: impl FnOnce() -> String) -> Self {
        if !self.met {
            self.why = Some(why());
        }
        self
    }
}

impl Report {
    pub fn new(plan: Plan, sections: Sections) -> anyhow::Result<Self> {
        let Sections {
            kernel_cost,
            throughput,
            userspace,
            startup,
            hotplug,
            node,
            scan,
            not_measured,
        } = sections;
        let mut targets = Vec::new();
        if let Some(kernel_cost) = &kernel_cost {
            targets.extend(kernel_targets(kernel_cost));
        }
        if let Some(throughput) = &throughput {
            targets.extend(veth_targets(throughput));
        }
        if let Some(userspace) = &userspace {
            targets.extend(userspace_targets(userspace));
        }
        if let Some(startup) = &startup {
            targets.extend(startup_targets(startup));
        }
        if let Some(hotplug) = &hotplug {
            targets.push(hotplug_targets(hotplug));
        }
        if let Some(node) = &node {
            targets.extend(node::targets(node));
        }
        if let Some(scan) = &scan {
            targets.push(scan_target(scan));
        }
        Ok(Self {
            machine: Machine::read()?,
            targets,
            plan,
            kernel_cost,
            throughput,
            userspace,
            startup,
            hotplug,
            node,
            scan,
            not_measured,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts_and_sizes() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(128), "128");
        assert_eq!(thousands(1024), "1,024");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(288), "288 B");
        assert_eq!(bytes(64 * 288), "18 KiB");
        assert_eq!(bytes(2 * 2050 * 288), "1.1 MiB");
    }
}
