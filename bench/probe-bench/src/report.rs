//! The benchmark's report: raw figures, medians and ranges, ratios, and the targets they are held to.

use std::{
    fmt::Write as _,
    fs,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::{
    Plan,
    kernel_cost::{self, KernelCost},
    stats::Summary,
    throughput::{self, Throughput},
    userspace::{CounterMap, Userspace},
};

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub plan: Plan,
    pub kernel_cost: Option<KernelCost>,
    pub throughput: Option<Throughput>,
    pub userspace: Option<Userspace>,
    pub targets: Vec<Target>,
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

    /// Explains a miss; a met target keeps no note.
    fn why(mut self, why: impl FnOnce() -> String) -> Self {
        if !self.met {
            self.why = Some(why());
        }
        self
    }
}

/// `(frame, ratio)` with the largest ratio, or the smallest when `largest` is false.
fn extreme(ratios: impl Iterator<Item = (String, f64)>, largest: bool) -> (String, f64) {
    ratios
        .reduce(|a, b| {
            let pick_b = if largest { b.1 > a.1 } else { b.1 < a.1 };
            if pick_b { b } else { a }
        })
        .unwrap_or_else(|| ("none".to_owned(), f64::NAN))
}

fn kernel_targets(kernel: &KernelCost) -> Vec<Target> {
    use kernel_cost::{EMPTY, PROBE_DROP, PROBE_MONITOR, XDP_FILTER};

    let frames = kernel_cost::frames();
    let probe_vs_empty = |loopback: bool| {
        frames
            .iter()
            .filter(move |(_, is_loopback, _)| *is_loopback == loopback)
            .flat_map(|(frame, _, _)| {
                [PROBE_MONITOR, PROBE_DROP].map(|subject| {
                    (
                        format!("{frame}, {subject}"),
                        kernel.ratio(subject, EMPTY, frame),
                    )
                })
            })
    };
    // Nanoseconds the probe adds to the empty program, median over frames of a kind and modes.
    let added_ns = |loopback: bool| {
        let added: Vec<f64> = frames
            .iter()
            .filter(|(_, is_loopback, _)| *is_loopback == loopback)
            .flat_map(|(frame, _, _)| {
                [PROBE_MONITOR, PROBE_DROP]
                    .map(|subject| kernel.median(subject, frame) - kernel.median(EMPTY, frame))
            })
            .collect();
        Summary::of(&added).median
    };
    let mut targets = Vec::new();
    for (loopback, limit, kind) in [(false, 1.15, "benign"), (true, 1.25, "loopback")] {
        let (worst, ratio) = extreme(probe_vs_empty(loopback), true);
        targets.push(
            Target::at_most(
                format!("BPF_PROG_TEST_RUN: probe on {kind} frames ≤ {limit}× the empty program"),
                ratio,
                limit,
                format!("worst {ratio:.2}× ({worst})"),
            )
            .why(|| {
                format!(
                    "the probe adds {:.1} ns to {kind} frames ({:.1} ns to the others); the \
                     empty program's runs spread over {:.1}–{:.1} ns",
                    added_ns(loopback),
                    added_ns(!loopback),
                    kernel.spread(EMPTY).0,
                    kernel.spread(EMPTY).1,
                )
            }),
        );
    }
    let (slowest, speedup) = extreme(
        frames.iter().flat_map(|(frame, _, _)| {
            [PROBE_MONITOR, PROBE_DROP].map(|subject| {
                (
                    format!("{frame}, {subject}"),
                    kernel.ratio(XDP_FILTER, subject, frame),
                )
            })
        }),
        false,
    );
    targets.push(
        Target::at_least(
            "BPF_PROG_TEST_RUN: probe ≥ 2× faster than xdp-filter on every frame".to_owned(),
            speedup,
            2.0,
            format!("least {speedup:.2}× ({slowest})"),
        )
        .why(|| {
            let (frame, subject) = slowest.split_once(", ").unwrap_or((&slowest, PROBE_DROP));
            let (filter, empty, probe) = (
                kernel.median(XDP_FILTER, frame),
                kernel.median(EMPTY, frame),
                kernel.median(subject, frame),
            );
            format!(
                "on this frame xdp-filter takes {filter:.1} ns (its first lookup hits), the empty \
                 program {empty:.1} ns and the probe {probe:.1} ns: the probe's own {:.1} ns would \
                 have to stay under {:.1} ns",
                probe - empty,
                filter / 2.0 - empty,
            )
        }),
    );
    targets
}

fn veth_targets(veth: &Throughput) -> Vec<Target> {
    use throughput::{
        BENIGN, DROP_ALL, EMPTY_PASS, LOOPBACK, NFTABLES, NO_PROGRAM, PROBE_DROP, PROBE_MONITOR,
    };

    let mpps = |name: &str, traffic: &str| {
        veth.scenario(name, traffic)
            .map_or(f64::NAN, |s| s.handled_per_sec.median / 1e6)
    };
    let mut targets = Vec::new();
    for (subject, reference, traffic, floor, goal) in [
        (
            PROBE_DROP,
            DROP_ALL,
            LOOPBACK,
            0.90,
            "veth: probe drop mode ≥ 0.90× the XDP drop-all ceiling",
        ),
        (
            PROBE_DROP,
            NFTABLES,
            LOOPBACK,
            5.0,
            "veth: probe drop mode ≥ 5× the nftables ingress rule",
        ),
        (
            PROBE_MONITOR,
            NO_PROGRAM,
            BENIGN,
            0.95,
            "veth: probe monitor mode on benign traffic ≥ 0.95× no program",
        ),
    ] {
        let ratio = veth.ratio(subject, reference, traffic);
        let mut measured = format!(
            "{ratio:.2}× ({:.2} vs {:.2} Mpps)",
            mpps(subject, traffic),
            mpps(reference, traffic)
        );
        if reference == NO_PROGRAM {
            // What attaching any XDP program costs here, to tell it from the probe's own cost.
            let _ = write!(
                measured,
                "; an empty XDP_PASS program: {:.2}×",
                veth.ratio(EMPTY_PASS, NO_PROGRAM, traffic)
            );
        }
        let spread = veth.ratios(subject, reference, traffic);
        targets.push(
            Target::at_least(goal.to_owned(), ratio, floor, measured).why(|| {
                spread.map_or_else(String::new, |spread| {
                    format!(
                        "per-round ratios ranged {:.2}–{:.2}×: the miss is within this \
                         machine's round-to-round noise",
                        spread.min, spread.max
                    )
                })
            }),
        );
    }
    targets
}

/// `n` with thousands separated by commas: 1,024.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A size in B, KiB or MiB, whichever reads best.
fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let n = n as f64;
    if n < KIB {
        format!("{n} B")
    } else if n < KIB * KIB {
        format!("{:.0} KiB", n / KIB)
    } else {
        format!("{:.1} MiB", n / KIB / KIB)
    }
}

/// "64 slots × 288 B = 18 KiB per CPU (36 KiB on 2 CPUs)"
fn counter_map_size(map: &CounterMap) -> String {
    format!(
        "{} slots × {} = {} per CPU ({} on {} CPUs)",
        thousands(map.slots as usize),
        bytes(map.slot_bytes),
        bytes(map.bytes_per_cpu),
        bytes(map.total_bytes),
        map.cpus
    )
}

fn userspace_targets(user: &Userspace, veth: Option<&Throughput>) -> Vec<Target> {
    let mut targets = Vec::new();
    targets.push(Target::at_most(
        "userspace: idle CPU < 1 % of a core".to_owned(),
        user.idle.cpu_percent,
        1.0,
        format!("{:.2} %", user.idle.cpu_percent),
    ));
    let many = &user.many;
    targets.push(
        Target::at_most(
            format!(
                "userspace: {} interfaces at --interval 1 < 2 % of a core",
                thousands(many.interfaces)
            ),
            many.footprint.cpu_percent,
            2.0,
            format!("{:.2} %", many.footprint.cpu_percent),
        )
        .why(|| {
            let map = &many.counter_map;
            format!(
                "one interface takes {:.2} %; here {:.2} % is in the kernel, in the syscalls of \
                 each report: reading the whole counter map ({} slots, {} on each of {} CPUs) and \
                 listing the interfaces; {:.2} % is the CLI's own",
                user.idle.cpu_percent,
                many.footprint.system_percent,
                thousands(map.slots as usize),
                bytes(map.bytes_per_cpu),
                map.cpus,
                many.footprint.cpu_percent - many.footprint.system_percent,
            )
        }),
    );
    let peak_rss_kib = veth
        .iter()
        .flat_map(|veth| &veth.scenarios)
        .filter_map(|s| s.probe_footprint.as_ref())
        .map(|f| f.peak_rss_kib)
        .chain([user.idle.peak_rss_kib])
        .max()
        .unwrap_or(0);
    targets.push(Target::at_most(
        "userspace: RSS < 30 MiB (idle and under a flood)".to_owned(),
        peak_rss_kib as f64,
        30.0 * 1024.0,
        format!("{:.1} MiB", peak_rss_kib as f64 / 1024.0),
    ));
    if let Some(attach) = user.attach.iter().find(|a| a.interfaces == 200) {
        targets.push(Target::at_most(
            "userspace: attach to 200 interfaces < 2 s".to_owned(),
            attach.seconds.median,
            2.0,
            format!("{:.2} s", attach.seconds.median),
        ));
    }
    targets
}

impl Report {
    pub fn new(
        plan: Plan,
        kernel_cost: Option<KernelCost>,
        throughput: Option<Throughput>,
        userspace: Option<Userspace>,
    ) -> anyhow::Result<Self> {
        let mut targets = Vec::new();
        if let Some(kernel_cost) = &kernel_cost {
            targets.extend(kernel_targets(kernel_cost));
        }
        if let Some(throughput) = &throughput {
            targets.extend(veth_targets(throughput));
        }
        if let Some(userspace) = &userspace {
            targets.extend(userspace_targets(userspace, throughput.as_ref()));
        }
        Ok(Self {
            machine: Machine::read()?,
            targets,
            plan,
            kernel_cost,
            throughput,
            userspace,
        })
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Machine: {}, {} CPUs, Linux {}; unix time {}.\n",
            m.cpu, m.cpus, m.kernel, m.timestamp
        );

        if let Some(k) = &self.kernel_cost {
            Self::kernel_markdown(&mut out, k);
        }
        if let Some(t) = &self.throughput {
            Self::veth_markdown(&mut out, t);
        }
        if let Some(u) = &self.userspace {
            Self::userspace_markdown(&mut out, u);
        }

        out.push_str(
            "\n**Targets**:\n\n| goal | measured | met | why, when missed |\n| --- | --- | --- | --- |\n",
        );
        for target in &self.targets {
            let met = match target.shortfall_percent {
                None => "yes".to_owned(),
                Some(shortfall) => format!("**no**, off by {shortfall:.1} %"),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {met} | {} |",
                target.goal,
                target.measured,
                target.why.as_deref().unwrap_or("")
            );
        }
        out
    }

    fn kernel_markdown(out: &mut String, k: &KernelCost) {
        use kernel_cost::{EMPTY, PROBE_DROP, PROBE_MONITOR, XDP_FILTER};

        let _ = writeln!(
            out,
            "**In-kernel cost per frame** (BPF_PROG_TEST_RUN, {} repeats × {} interleaved rounds; \
             median ns per frame, min–max; ratios are medians of per-round ratios):\n",
            k.repeat, k.rounds
        );
        out.push_str("| frame | empty XDP_PASS | probe (monitor) | probe (drop) | xdp-filter | monitor ÷ empty | drop ÷ empty | xdp-filter ÷ monitor |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for (frame, _, _) in kernel_cost::frames() {
            let cell = |subject: &str| {
                k.results
                    .iter()
                    .find(|r| r.subject == subject && r.frame == frame)
                    .map_or("–".to_owned(), |r| {
                        format!(
                            "{:.1} ({:.1}–{:.1})",
                            r.ns_per_frame.median, r.ns_per_frame.min, r.ns_per_frame.max
                        )
                    })
            };
            let ratio = |a: &str, b: &str| k.ratio(a, b, frame);
            let _ = writeln!(
                out,
                "| {frame} | {} | {} | {} | {} | {:.2}× | {:.2}× | {:.2}× |",
                cell(EMPTY),
                cell(PROBE_MONITOR),
                cell(PROBE_DROP),
                cell(XDP_FILTER),
                ratio(PROBE_MONITOR, EMPTY),
                ratio(PROBE_DROP, EMPTY),
                ratio(XDP_FILTER, PROBE_MONITOR),
            );
        }
    }

    fn veth_markdown(out: &mut String, t: &Throughput) {
        let _ = writeln!(
            out,
            "\n**veth throughput** (64-byte frames from a live-frames XDP_TX generator on CPU {}, \
             receiver NAPI threaded on CPU {}, GRO on; {} interleaved rounds of {:.1} s; Mpps \
             handled at the receiver, median and min–max; the ratio is to no program for benign \
             traffic and to XDP drop-all for loopback floods, the median of per-round ratios):\n",
            t.generator_cpu, t.napi_cpu, t.rounds, t.window_secs
        );
        out.push_str(
            "| receiver | traffic | handled Mpps | ratio | offered Mpps | localnet-probe CPU, RSS |\n",
        );
        out.push_str("| --- | --- | --- | --- | --- | --- |\n");
        for s in &t.scenarios {
            let name = if s.name == throughput::NO_PROGRAM && s.traffic == throughput::LOOPBACK {
                "no program (kernel martian drop)"
            } else {
                s.name
            };
            let footprint = s.probe_footprint.as_ref().map_or("–".to_owned(), |f| {
                format!(
                    "{:.1} %, {:.1} MiB",
                    f.cpu_percent,
                    f.peak_rss_kib as f64 / 1024.0
                )
            });
            let reference = if s.traffic == throughput::BENIGN {
                throughput::NO_PROGRAM
            } else {
                throughput::DROP_ALL
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {:.2} ({:.2}–{:.2}) | {:.2}× | {:.2} | {footprint} |",
                s.traffic,
                s.handled_per_sec.median / 1e6,
                s.handled_per_sec.min / 1e6,
                s.handled_per_sec.max / 1e6,
                t.ratio(s.name, reference, s.traffic),
                s.offered_per_sec.median / 1e6,
            );
        }
    }

    fn userspace_markdown(out: &mut String, u: &Userspace) {
        let many = &u.many;
        let _ = writeln!(
            out,
            "\n**Userspace**: `run --interval 1` idle for {:.0} s on one interface: {:.2} % of a \
             core, peak RSS {:.1} MiB; on {} (both ends of {} veth pairs, the default \
             selection): {:.2} % of a core, peak RSS {:.1} MiB. Counter map: {} for 1 interface; \
             {} for {}. Time from start to the first report (load and attach), median and \
             min–max:\n",
            u.idle_secs,
            u.idle.cpu_percent,
            u.idle.peak_rss_kib as f64 / 1024.0,
            thousands(many.interfaces),
            thousands(many.interfaces / 2),
            many.footprint.cpu_percent,
            many.footprint.peak_rss_kib as f64 / 1024.0,
            counter_map_size(&u.idle_counter_map),
            counter_map_size(&many.counter_map),
            thousands(many.interfaces),
        );
        out.push_str("| interfaces | seconds |\n| --- | --- |\n");
        for a in &u.attach {
            let _ = writeln!(
                out,
                "| {} | {:.3} ({:.3}–{:.3}) |",
                a.interfaces, a.seconds.median, a.seconds.min, a.seconds.max
            );
        }
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
