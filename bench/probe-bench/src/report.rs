//! The benchmark's report: raw figures, medians and ranges, ratios, and the targets they are held to.

use std::{
    fmt::Write as _,
    fs,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::{
    Plan,
    hotplug::{Hotplug, Outcome},
    kernel_cost::{self, KernelCost},
    process::Footprint,
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

/// The item with the largest value, or the smallest when `largest` is false.
fn extreme<T>(values: impl IntoIterator<Item = (T, f64)>, largest: bool) -> Option<(T, f64)> {
    values.into_iter().reduce(|a, b| {
        let pick_b = if largest { b.1 > a.1 } else { b.1 < a.1 };
        if pick_b { b } else { a }
    })
}

fn kernel_targets(kernel: &KernelCost) -> Vec<Target> {
    use kernel_cost::{
        EMPTY, HEADERS_DROP, PROBES, PROBES_NO_SAMPLING, SAMPLING_PAIRS, XDP_FILTER,
    };

    let frames = kernel_cost::frames();
    let frames_of = |loopback: bool| -> Vec<&'static str> {
        frames
            .iter()
            .filter(|(_, is_loopback, _)| *is_loopback == loopback)
            .map(|(frame, _, _)| *frame)
            .collect()
    };
    // Every (frame, subject) pair of a kind of frame and some subjects, with `value` of it.
    let pairs = |loopback: bool, subjects: &[&'static str], value: &dyn Fn(&str, &str) -> f64| {
        frames_of(loopback)
            .into_iter()
            .flat_map(|frame| subjects.iter().map(move |subject| (frame, *subject)))
            .map(|(frame, subject)| ((frame, subject), value(frame, subject)))
            .collect::<Vec<_>>()
    };
    // Nanoseconds `subjects` add to `reference`, median over frames of a kind and subjects.
    let added_ns = |loopback: bool, subjects: &[&'static str], reference: &str| {
        let added = pairs(loopback, subjects, &|frame, subject| {
            kernel.median(subject, frame) - kernel.median(reference, frame)
        });
        Summary::of(&added.iter().map(|(_, ns)| *ns).collect::<Vec<_>>()).median
    };
    let mut targets = Vec::new();
    for (loopback, subjects, limit, goal) in [
        (
            false,
            &PROBES[..],
            1.15,
            "BPF_PROG_TEST_RUN: probe on benign frames ≤ 1.15× the empty program, sampling on or off",
        ),
        (
            true,
            &PROBES_NO_SAMPLING[..],
            1.25,
            "BPF_PROG_TEST_RUN: probe on loopback frames ≤ 1.25× the empty program, sampling off",
        ),
    ] {
        let Some(((frame, subject), ratio)) = extreme(
            pairs(loopback, subjects, &|frame, subject| {
                kernel.ratio(subject, EMPTY, frame)
            }),
            true,
        ) else {
            continue;
        };
        let (kind, other) = if loopback {
            ("loopback", "benign")
        } else {
            ("benign", "loopback")
        };
        targets.push(
            Target::at_most(
                goal.to_owned(),
                ratio,
                limit,
                format!("worst {ratio:.2}× ({frame}, {subject})"),
            )
            .why(|| {
                let rest = if loopback {
                    "the interface's entry, the counter and the frame length"
                } else {
                    "the rest of the parsing"
                };
                format!(
                    "the probe adds {:.1} ns to {kind} frames ({:.1} ns to {other} ones): \
                     reading the headers, as any classifier must, {:.1} ns, and {rest} {:.1} ns; \
                     the empty program's runs spread over {:.1}–{:.1} ns",
                    added_ns(loopback, subjects, EMPTY),
                    added_ns(!loopback, subjects, EMPTY),
                    added_ns(loopback, &[HEADERS_DROP], EMPTY),
                    added_ns(loopback, subjects, HEADERS_DROP),
                    kernel.spread(EMPTY).0,
                    kernel.spread(EMPTY).1,
                )
            }),
        );
    }

    let sampling_adds = SAMPLING_PAIRS.iter().flat_map(|&(on, off)| {
        frames_of(true).into_iter().filter_map(move |frame| {
            let added = kernel.added_ns(on, off, frame)?;
            Some(((frame, on, added.clone()), added.median))
        })
    });
    if let Some(((frame, on, added), worst)) = extreme(sampling_adds, true) {
        targets.push(
            Target::at_most(
                format!(
                    "BPF_PROG_TEST_RUN: sampling on ({}/s, limit used up) adds ≤ 3 ns to \
                     loopback frames",
                    kernel.sample_rate
                ),
                worst,
                3.0,
                format!("worst {worst:+.1} ns ({frame}, {on})"),
            )
            .why(|| {
                format!(
                    "round by round it added {:+.1} to {:+.1} ns on this frame, where the empty \
                     program took {:.1} ns",
                    added.min,
                    added.max,
                    kernel.median(EMPTY, frame),
                )
            }),
        );
    }

    let speedups = [true, false]
        .into_iter()
        .flat_map(|loopback| {
            pairs(loopback, &PROBES, &|frame, subject| {
                kernel.ratio(XDP_FILTER, subject, frame)
            })
        })
        .collect::<Vec<_>>();
    if let Some(((frame, subject), speedup)) = extreme(speedups, false) {
        targets.push(
            Target::at_least(
                "BPF_PROG_TEST_RUN: probe ≥ 2× faster than xdp-filter on every frame, sampling \
                 on or off"
                    .to_owned(),
                speedup,
                2.0,
                format!("least {speedup:.2}× ({frame}, {subject})"),
            )
            .why(|| {
                let (filter, empty, probe) = (
                    kernel.median(XDP_FILTER, frame),
                    kernel.median(EMPTY, frame),
                    kernel.median(subject, frame),
                );
                format!(
                    "on this frame xdp-filter takes {filter:.1} ns (its first lookup hits), the \
                     empty program {empty:.1} ns and the probe {probe:.1} ns: the probe's own \
                     {:.1} ns would have to stay under {:.1} ns",
                    probe - empty,
                    filter / 2.0 - empty,
                )
            }),
        );
    }
    targets.extend(egress_target(kernel, &frames_of(false)));
    targets
}

/// The nanoseconds `--egress` adds to each benign frame leaving an interface. The limit is the
/// XDP program's own on benign frames (1.15× an empty program of ~28 ns here), in nanoseconds:
/// a ratio to an empty program is a ratio to the test run's loop, not to a frame's way out.
const EGRESS_ADDS_NS: f64 = 4.0;

fn egress_target(kernel: &KernelCost, benign: &[&'static str]) -> Option<Target> {
    use kernel_cost::{EGRESS_PROBES, TCX_EMPTY, TCX_MONITOR};

    let adds = benign.iter().flat_map(|&frame| {
        EGRESS_PROBES.iter().filter_map(move |&subject| {
            let added = kernel.added_ns(subject, TCX_EMPTY, frame)?;
            Some(((frame, subject, added.clone()), added.median))
        })
    });
    let ((frame, subject, added), worst) = extreme(adds, true)?;
    Some(
        Target::at_most(
            format!(
                "BPF_PROG_TEST_RUN: the egress program (`run --egress`) adds ≤ \
                 {EGRESS_ADDS_NS:.0} ns to a benign frame leaving, over an empty tcx program, \
                 sampling on or off"
            ),
            worst,
            EGRESS_ADDS_NS,
            format!("worst {worst:+.1} ns ({frame}, {subject})"),
        )
        .why(|| {
            let (low, high) = kernel.spread(TCX_EMPTY);
            format!(
                "round by round it added {:+.1} to {:+.1} ns on this frame, where the empty tcx \
                 program took {:.1} ns (its runs spread over {low:.1}–{high:.1} ns); the ingress \
                 program, the same classifier, adds {:+.1} ns there in monitor mode",
                added.min,
                added.max,
                kernel.median(TCX_EMPTY, frame),
                kernel
                    .added_ns(TCX_MONITOR, TCX_EMPTY, frame)
                    .map_or(f64::NAN, |added| added.median),
            )
        }),
    )
}

/// Frames handled over frames offered at or above which the receiver kept up: the generator
/// bound the run.
const GENERATOR_BOUND: f64 = 0.97;

/// What bounded a veth run: the generator when the receiver handled (nearly) all it was offered.
fn bound_by(handled_share: f64) -> &'static str {
    if handled_share >= GENERATOR_BOUND {
        "generator"
    } else {
        "receiver"
    }
}

fn veth_targets(veth: &Throughput) -> Vec<Target> {
    use throughput::{
        BENIGN, EMPTY_PASS, HEADERS_DROP, LOOPBACK, NFTABLES, NO_PROGRAM, PROBE_DROP_SAMPLING,
        PROBE_MONITOR_SAMPLING, PROBE_TCX_DROP, PROBE_TCX_MONITOR, TCX_DROP_ALL, TCX_EMPTY,
    };

    let mpps = |name: &str, traffic: &str| {
        veth.scenario(name, traffic)
            .map_or(f64::NAN, |s| s.handled_per_sec.median / 1e6)
    };
    let handled_share = |name: &str, traffic: &str| {
        veth.handled_share(name, traffic)
            .map_or(f64::NAN, |share| share.median)
    };
    let mut targets = Vec::new();
    for (subject, reference, traffic, floor, goal) in [
        (
            PROBE_DROP_SAMPLING,
            HEADERS_DROP,
            LOOPBACK,
            0.95,
            "veth: probe drop mode, sampling on, ≥ 0.95× an XDP program that reads the headers \
             and drops",
        ),
        (
            PROBE_DROP_SAMPLING,
            NFTABLES,
            LOOPBACK,
            3.0,
            "veth: probe drop mode, sampling on, ≥ 3× the nftables ingress rule",
        ),
        (
            PROBE_MONITOR_SAMPLING,
            NO_PROGRAM,
            BENIGN,
            0.95,
            "veth: probe monitor mode on benign traffic ≥ 0.95× no program",
        ),
        // Parity, within the 5 % the other goals allow: at tcx, as at nftables' hook right after
        // it, the frame is a socket buffer already, which costs far more than either classifier.
        (
            PROBE_TCX_DROP,
            NFTABLES,
            LOOPBACK,
            0.95,
            "veth: probe at tcx ingress, drop mode, ≥ 0.95× the nftables ingress rule it stands \
             in for where another XDP program holds the interface",
        ),
        (
            PROBE_TCX_MONITOR,
            NO_PROGRAM,
            BENIGN,
            0.95,
            "veth: probe at tcx ingress, monitor mode on benign traffic ≥ 0.95× no program",
        ),
    ] {
        let ratio = veth.ratio(subject, reference, traffic);
        let mut measured = format!(
            "{ratio:.2}× ({:.2} vs {:.2} Mpps)",
            mpps(subject, traffic),
            mpps(reference, traffic)
        );
        // What attaching any program at that hook costs here, or the most it could handle, to
        // tell them from the probe's own cost.
        let beside = match (subject, reference) {
            (PROBE_TCX_MONITOR, _) => Some(("an empty tcx program", TCX_EMPTY)),
            (_, NO_PROGRAM) => Some(("an empty XDP_PASS program", EMPTY_PASS)),
            (PROBE_TCX_DROP, _) => Some(("a tcx program that drops everything", TCX_DROP_ALL)),
            _ => None,
        };
        if let Some((what, other)) = beside {
            let _ = write!(
                measured,
                "; {what}: {:.2}×",
                veth.ratio(other, reference, traffic)
            );
        }
        let spread = veth.ratios(subject, reference, traffic);
        targets.push(
            Target::at_least(goal.to_owned(), ratio, floor, measured).why(|| {
                let (subject_share, reference_share) = (
                    handled_share(subject, traffic),
                    handled_share(reference, traffic),
                );
                let mut why = format!(
                    "{subject} handled {:.0} % of the frames offered (bound by the {}), \
                     {reference} {:.0} % (bound by the {})",
                    subject_share * 100.0,
                    bound_by(subject_share),
                    reference_share * 100.0,
                    bound_by(reference_share),
                );
                if let Some(spread) = spread {
                    let _ = write!(
                        why,
                        "; per-round ratios ranged {:.2}–{:.2}×",
                        spread.min, spread.max
                    );
                }
                why
            }),
        );
    }
    targets.extend(flood_footprint_targets(veth));
    targets
}

/// The CLI's CPU and memory while a loopback flood runs and samples flow at the limit.
fn flood_footprint_targets(veth: &Throughput) -> Vec<Target> {
    let flooded: Vec<_> = veth
        .scenarios
        .iter()
        .filter(|s| s.traffic == throughput::LOOPBACK && s.samples.is_some())
        .filter_map(|s| Some((s, s.probe_footprint.as_ref()?, s.samples.as_ref()?)))
        .collect();
    let Some((scenario, footprint, samples)) = flooded
        .iter()
        .max_by(|a, b| a.1.cpu_percent.total_cmp(&b.1.cpu_percent))
    else {
        return Vec::new();
    };
    let flow = format!(
        "{:.0} samples/s emitted, {:.0}/s lost, at a limit of {}/s",
        samples.emitted_per_sec.median, samples.lost_per_sec.median, samples.sample_rate
    );
    let largest = Footprint::worst(flooded.iter().map(|(_, footprint, _)| (*footprint).clone()))
        .expect("at least one");
    vec![
        Target::at_most(
            "veth: the CLI during a loopback flood, samples at the limit, < 2 % of a core"
                .to_owned(),
            footprint.cpu_percent,
            2.0,
            format!("{:.2} % ({}; {flow})", footprint.cpu_percent, scenario.name),
        )
        .why(|| {
            format!(
                "{:.2} % of it in the kernel, on the CLI's behalf (its syscalls)",
                footprint.system_percent
            )
        }),
        Target::at_most(
            "veth: the CLI during a loopback flood, samples at the limit, RSS < 30 MiB".to_owned(),
            largest.peak_rss_kib as f64,
            30.0 * 1024.0,
            format!("{:.1} MiB", largest.peak_rss_kib as f64 / 1024.0),
        )
        .why(|| resident_set(&largest)),
    ]
}

/// What the resident set is made of, for a miss.
fn resident_set(footprint: &Footprint) -> String {
    format!(
        "at the end of the window {:.1} MiB were the process's own memory and {:.1} MiB mapped \
         files and BPF maps (the binary, the samples' ring buffer, which the kernel maps twice)",
        footprint.anon_rss_kib as f64 / 1024.0,
        footprint.file_rss_kib as f64 / 1024.0,
    )
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

fn userspace_targets(user: &Userspace) -> Vec<Target> {
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
                 listing the interfaces, and of the sample tokens' refill, one map update per \
                 interface each second; {:.2} % is the CLI's own",
                user.idle.cpu_percent,
                many.footprint.system_percent,
                thousands(map.slots as usize),
                bytes(map.bytes_per_cpu),
                map.cpus,
                many.footprint.cpu_percent - many.footprint.system_percent,
            )
        }),
    );
    let largest = Footprint::worst([user.idle.clone(), many.footprint.clone()].into_iter())
        .expect("two footprints");
    targets.push(
        Target::at_most(
            format!(
                "userspace: RSS < 30 MiB, idle on 1 and on {} interfaces",
                thousands(many.interfaces)
            ),
            largest.peak_rss_kib as f64,
            30.0 * 1024.0,
            format!("{:.1} MiB", largest.peak_rss_kib as f64 / 1024.0),
        )
        .why(|| resident_set(&largest)),
    );
    let scrape = &many.scrape;
    targets.push(
        Target::at_most(
            format!(
                "userspace: a Prometheus scrape of /metrics serving {} interfaces < 50 ms",
                thousands(many.interfaces)
            ),
            scrape.seconds.median * 1e3,
            50.0,
            format!(
                "{:.1} ms ({:.1}–{:.1}), {}",
                scrape.seconds.median * 1e3,
                scrape.seconds.min * 1e3,
                scrape.seconds.max * 1e3,
                bytes(scrape.bytes as u64)
            ),
        )
        .why(|| {
            format!(
                "each scrape reads every counter of {} slots from the kernel and encodes {} \
                 of text",
                thousands(many.counter_map.slots as usize),
                bytes(scrape.bytes as u64)
            )
        }),
    );
    targets
}

/// The start-up with the most interfaces: its time to the first report and its memory then.
fn startup_targets(attach: &[AttachTime]) -> Vec<Target> {
    let Some(most) = attach.iter().max_by_key(|a| a.interfaces) else {
        return Vec::new();
    };
    let interfaces = thousands(most.interfaces);
    let (seconds, rss) = (&most.seconds, &most.peak_rss_kib);
    vec![
        Target::at_most(
            format!("start-up: the first report listing all {interfaces} interfaces < 2 s"),
            seconds.median,
            2.0,
            format!(
                "{:.2} s (max {:.2} s over {} starts)",
                seconds.median,
                seconds.max,
                seconds.samples.len()
            ),
        ),
        Target::at_most(
            format!("start-up: peak RSS at that report, {interfaces} interfaces, < 40 MiB"),
            rss.max,
            40.0 * 1024.0,
            format!(
                "{:.1} MiB (largest of {} starts)",
                rss.max / 1024.0,
                rss.samples.len()
            ),
        ),
    ]
}

/// Every interface created while the probe runs has a frame counted within a second.
fn hotplug_targets(hotplug: &Hotplug) -> Target {
    let goal = "hot-plug: a loopback frame counted on every interface created while `run --iface \
                PATTERN` runs < 1 s after it appears"
        .to_owned();
    match &hotplug.outcome {
        Outcome::Unsupported(why) => Target::unmeasured(
            goal,
            "hot-plug not supported by this binary".to_owned(),
            why.clone(),
        ),
        Outcome::Measured {
            latency_secs,
            missed,
            ..
        } => {
            // A missed interface took longer than the bound, so at least that long.
            let worst = if missed.is_empty() {
                latency_secs.max
            } else {
                hotplug.bound_secs
            };
            let mut measured = format!(
                "{:.2} ms median, {:.2} ms max over {} interfaces",
                latency_secs.median * 1e3,
                latency_secs.max * 1e3,
                latency_secs.samples.len()
            );
            if !missed.is_empty() {
                let _ = write!(
                    measured,
                    "; {} never counted within {} s",
                    missed.len(),
                    hotplug.bound_secs
                );
            }
            Target::at_most(goal, worst, 1.0, measured).why(|| {
                if missed.is_empty() {
                    format!(
                        "{} of {} interfaces took longer",
                        latency_secs.samples.iter().filter(|&&s| s > 1.0).count(),
                        latency_secs.samples.len()
                    )
                } else {
                    format!("no frame was counted on {}", missed.join(", "))
                }
            })
        }
    }
}

impl Report {
    pub fn new(
        plan: Plan,
        kernel_cost: Option<KernelCost>,
        throughput: Option<Throughput>,
        userspace: Option<Userspace>,
        startup: Option<Vec<AttachTime>>,
        hotplug: Option<Hotplug>,
    ) -> anyhow::Result<Self> {
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
        Ok(Self {
            machine: Machine::read()?,
            targets,
            plan,
            kernel_cost,
            throughput,
            userspace,
            startup,
            hotplug,
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
        if self.kernel_cost.is_some() || self.throughput.is_some() {
            Self::tc_markdown(
                &mut out,
                self.kernel_cost.as_ref(),
                self.throughput.as_ref(),
            );
        }
        if let Some(u) = &self.userspace {
            Self::userspace_markdown(&mut out, u);
        }
        if let Some(s) = &self.startup {
            Self::startup_markdown(&mut out, s);
        }
        if let Some(h) = &self.hotplug {
            Self::hotplug_markdown(&mut out, h);
        }

        out.push_str(
            "\n**Targets**:\n\n| goal | measured | met | why, when missed |\n| --- | --- | --- | --- |\n",
        );
        for target in &self.targets {
            let met = match (target.met, target.shortfall_percent) {
                (true, _) => "yes".to_owned(),
                (false, Some(shortfall)) => format!("**no**, off by {shortfall:.1} %"),
                (false, None) => "**no**".to_owned(),
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
        use kernel_cost::{
            EMPTY, HEADERS_DROP, PROBE_DROP, PROBE_DROP_SAMPLING, PROBE_MONITOR,
            PROBE_MONITOR_SAMPLING, XDP_FILTER,
        };

        let _ = writeln!(
            out,
            "**In-kernel cost per frame** (BPF_PROG_TEST_RUN, {} repeats × {} interleaved rounds \
             after one left out; median ns per frame, min–max; ratios and differences are medians \
             of per-round ones; \"read headers\": a program that reads the ethertype and the \
             IP addresses, bounds-checked, and drops, what any classifier pays; \"sampling\": {} \
             samples/s per interface, the CLI's default, with the limit used up, as under a \
             flood):\n",
            k.repeat, k.rounds, k.sample_rate
        );
        out.push_str(
            "| frame | empty XDP_PASS | read headers | probe (monitor) | probe (drop) | probe (monitor, \
             sampling) | probe (drop, sampling) | xdp-filter | monitor ÷ empty | drop ÷ empty | \
             sampling adds (monitor / drop) | xdp-filter ÷ monitor |\n",
        );
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
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
            let added = |on: &str, off: &str| {
                k.added_ns(on, off, frame)
                    .map_or(f64::NAN, |added| added.median)
            };
            let _ = writeln!(
                out,
                "| {frame} | {} | {} | {} | {} | {} | {} | {} | {:.2}× | {:.2}× | {:+.1} / {:+.1} \
                 ns | {:.2}× |",
                cell(EMPTY),
                cell(HEADERS_DROP),
                cell(PROBE_MONITOR),
                cell(PROBE_DROP),
                cell(PROBE_MONITOR_SAMPLING),
                cell(PROBE_DROP_SAMPLING),
                cell(XDP_FILTER),
                ratio(PROBE_MONITOR, EMPTY),
                ratio(PROBE_DROP, EMPTY),
                added(PROBE_MONITOR_SAMPLING, PROBE_MONITOR),
                added(PROBE_DROP_SAMPLING, PROBE_DROP),
                ratio(XDP_FILTER, PROBE_MONITOR),
            );
        }
    }

    fn veth_markdown(out: &mut String, t: &Throughput) {
        let _ = writeln!(
            out,
            "\n**veth throughput** (64-byte frames from a live-frames XDP_TX generator on CPU {}, \
             receiver NAPI threaded on CPU {}, GRO on; {} interleaved rounds of {:.1} s; Mpps \
             handled at the receiver and offered to it, median and min–max; a receiver that \
             handles {:.0} % or more of what it is offered is bound by the generator, and its \
             figure is a floor; the ratio is to no program for benign traffic and to the XDP \
             program that reads the headers and drops for loopback floods, the median of \
             per-round ratios; \"sampling\": the CLI's default --sample-rate; samples/s as the \
             kernel counted them over whole seconds of the window, lost ones found the ring \
             buffer full):\n",
            t.generator_cpu,
            t.napi_cpu,
            t.rounds,
            t.window_secs,
            GENERATOR_BOUND * 100.0
        );
        out.push_str(
            "| receiver | traffic | handled Mpps | offered Mpps | handled ÷ offered | bound by | \
             ratio | samples/s (lost/s) | localnet-probe CPU, RSS |\n",
        );
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for s in t
            .scenarios
            .iter()
            .filter(|s| !throughput::TCX_SCENARIOS.contains(&s.name))
        {
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
            let samples = s.samples.as_ref().map_or("–".to_owned(), |samples| {
                format!(
                    "{:.0} ({:.0})",
                    samples.emitted_per_sec.median, samples.lost_per_sec.median
                )
            });
            let reference = if s.traffic == throughput::BENIGN {
                throughput::NO_PROGRAM
            } else {
                throughput::HEADERS_DROP
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {:.2}× | {samples} | {footprint} |",
                s.traffic,
                Self::veth_cells(t, s),
                t.ratio(s.name, reference, s.traffic),
            );
        }
    }

    /// Handled and offered Mpps, their ratio and what bound the run, as table cells.
    fn veth_cells(t: &Throughput, s: &ScenarioResult) -> String {
        let share = t
            .handled_share(s.name, s.traffic)
            .map_or(f64::NAN, |share| share.median);
        format!(
            "{:.2} ({:.2}–{:.2}) | {:.2} ({:.2}–{:.2}) | {:.0} % | {}",
            s.handled_per_sec.median / 1e6,
            s.handled_per_sec.min / 1e6,
            s.handled_per_sec.max / 1e6,
            s.offered_per_sec.median / 1e6,
            s.offered_per_sec.min / 1e6,
            s.offered_per_sec.max / 1e6,
            share * 100.0,
            bound_by(share),
        )
    }

    /// The tc hooks: the tcx programs' in-kernel cost, and the tcx ingress scenarios at veth.
    fn tc_markdown(out: &mut String, k: Option<&KernelCost>, t: Option<&Throughput>) {
        out.push_str(
            "\n**tc hooks**: where another XDP program holds an interface, `run --on-conflict tc` \
             serves it at tcx ingress, first in the chain, with the same classifier and counters; \
             `run --egress` adds a program at tcx egress that counts frames with a loopback \
             source leaving (replies of a service reached through route_localnet) and hands \
             every frame on.\n",
        );
        if let Some(k) = k {
            Self::tc_kernel_markdown(out, k);
        }
        if let Some(t) = t {
            Self::tc_veth_markdown(out, t);
        }
    }

    fn tc_kernel_markdown(out: &mut String, k: &KernelCost) {
        use kernel_cost::{
            EGRESS, EGRESS_SAMPLING, LOOPBACK_SOURCES, TCX_DROP, TCX_EMPTY, TCX_MONITOR,
        };

        let _ = writeln!(
            out,
            "\nIn-kernel cost per frame of the tcx programs (BPF_PROG_TEST_RUN on a socket buffer \
             the kernel builds once per call from the frame, on `lo`, run {} times; in the same \
             interleaved rounds as the XDP programs above; median ns per frame, min–max; \
             \"adds\": the median of per-round differences to an empty tcx program that hands \
             every frame on, TCX_NEXT; \"sampling\" as above):\n",
            k.repeat
        );
        out.push_str(
            "| frame | empty tcx | ingress (monitor) | ingress (drop) | egress | egress \
             (sampling) | ingress adds (monitor / drop) | egress adds (sampling off / on) |\n",
        );
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
        let frames = kernel_cost::frames();
        for (frame, _, _) in &frames {
            let cell = |subject: &str| {
                k.results
                    .iter()
                    .find(|r| r.subject == subject && r.frame == *frame)
                    .map_or("–".to_owned(), |r| {
                        format!(
                            "{:.1} ({:.1}–{:.1})",
                            r.ns_per_frame.median, r.ns_per_frame.min, r.ns_per_frame.max
                        )
                    })
            };
            let added = |subject: &str| {
                k.added_ns(subject, TCX_EMPTY, frame)
                    .map_or(f64::NAN, |added| added.median)
            };
            let _ = writeln!(
                out,
                "| {frame} | {} | {} | {} | {} | {} | {:+.1} / {:+.1} ns | {:+.1} / {:+.1} ns |",
                cell(TCX_EMPTY),
                cell(TCX_MONITOR),
                cell(TCX_DROP),
                cell(EGRESS),
                cell(EGRESS_SAMPLING),
                added(TCX_MONITOR),
                added(TCX_DROP),
                added(EGRESS),
                added(EGRESS_SAMPLING),
            );
        }
        // The median over some frames of what `subject` adds to each, and the extremes of its
        // per-round differences there.
        let adds = |subject: &str, frames: &[&str]| {
            let added: Vec<Summary> = frames
                .iter()
                .filter_map(|frame| k.added_ns(subject, TCX_EMPTY, frame))
                .collect();
            let medians: Vec<f64> = added.iter().map(|a| a.median).collect();
            let low = added.iter().map(|a| a.min).fold(f64::INFINITY, f64::min);
            let high = added
                .iter()
                .map(|a| a.max)
                .fold(f64::NEG_INFINITY, f64::max);
            (Summary::of(&medians).median, low, high)
        };
        let benign: Vec<&str> = frames
            .iter()
            .filter(|(_, loopback, _)| !loopback)
            .map(|(frame, _, _)| *frame)
            .collect();
        let (off, low, high) = adds(EGRESS, &benign);
        let (on, _, _) = adds(EGRESS_SAMPLING, &benign);
        let (counted, _, _) = adds(EGRESS, &LOOPBACK_SOURCES);
        let (counted_sampling, _, _) = adds(EGRESS_SAMPLING, &LOOPBACK_SOURCES);
        let (ingress, _, _) = adds(TCX_MONITOR, &benign);
        let _ = writeln!(
            out,
            "\nEvery frame the host sends out of an interface served with `--egress` meets the \
             egress program. On benign frames, nearly all of them, it adds {off:+.1} ns \
             (median over the benign frames; per-round differences {low:+.1} to {high:+.1} ns), \
             {on:+.1} ns with sampling on, which they never reach; on frames with a loopback \
             source, which it counts, {counted:+.1} ns ({counted_sampling:+.1} ns with sampling \
             on). The ingress program, the same classifier, adds {ingress:+.1} ns to benign \
             frames arriving. These are the figures to quote for the egress hook: a frame's way \
             out from a socket through the stack and a veth takes on the order of microseconds, \
             hundreds of times this, so a send-rate comparison with and without the program \
             measures only its own run-to-run spread; and the senders fast enough to resolve it \
             (XDP live frames, AF_PACKET with qdisc bypass) leave without passing tcx egress."
        );
    }

    fn tc_veth_markdown(out: &mut String, t: &Throughput) {
        use throughput::{
            BENIGN, LOOPBACK, NFTABLES, NO_PROGRAM, PROBE_DROP, PROBE_TCX_DROP, PROBE_TCX_MONITOR,
            TCX_DROP_ALL, TCX_EMPTY,
        };

        out.push_str(
            "\nveth throughput at tcx ingress (as above; no XDP program on the receiving \
             interface, so the tcx path alone: beside another XDP program, `run --on-conflict \
             tc` adds that program's own cost; the probe attached by the harness through the \
             library, `Probe::attach_tcx`, as the CLI does, sampling off; the ratio is to no \
             program for benign traffic and to the nftables ingress rule for the loopback \
             flood, the median of per-round ratios):\n\n",
        );
        out.push_str(
            "| receiver | traffic | handled Mpps | offered Mpps | handled ÷ offered | bound by | \
             ratio |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for (name, traffic, reference) in [
            (NO_PROGRAM, BENIGN, NO_PROGRAM),
            (TCX_EMPTY, BENIGN, NO_PROGRAM),
            (PROBE_TCX_MONITOR, BENIGN, NO_PROGRAM),
            (NFTABLES, LOOPBACK, NFTABLES),
            (TCX_DROP_ALL, LOOPBACK, NFTABLES),
            (PROBE_TCX_DROP, LOOPBACK, NFTABLES),
        ] {
            let Some(s) = t.scenario(name, traffic) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {name} | {traffic} | {} | {:.2}× |",
                Self::veth_cells(t, s),
                t.ratio(name, reference, traffic),
            );
        }
        let mpps = |name: &str, traffic: &str| {
            t.scenario(name, traffic)
                .map_or(f64::NAN, |s| s.handled_per_sec.median / 1e6)
        };
        let spread = t
            .ratios(PROBE_TCX_DROP, NFTABLES, LOOPBACK)
            .map_or((f64::NAN, f64::NAN), |ratios| (ratios.min, ratios.max));
        let _ = writeln!(
            out,
            "\nIn drop mode at tcx ingress the probe handled {:.2} Mpps of the loopback flood: \
             {:.2}× the nftables ingress rule on the same traffic (per-round ratios {:.2}–{:.2}×) \
             and {:.2}× a tcx program that drops everything. At tcx, as at nftables' hook right \
             after it, each frame has become a socket buffer already; at XDP, before that, the \
             probe in drop mode handled {:.2} Mpps. In monitor \
             mode on benign traffic it kept {:.2}× the rate with no program, an empty tcx \
             program {:.2}×.",
            mpps(PROBE_TCX_DROP, LOOPBACK),
            t.ratio(PROBE_TCX_DROP, NFTABLES, LOOPBACK),
            spread.0,
            spread.1,
            t.ratio(PROBE_TCX_DROP, TCX_DROP_ALL, LOOPBACK),
            mpps(PROBE_DROP, LOOPBACK),
            t.ratio(PROBE_TCX_MONITOR, NO_PROGRAM, BENIGN),
            t.ratio(TCX_EMPTY, NO_PROGRAM, BENIGN),
        );
    }

    fn userspace_markdown(out: &mut String, u: &Userspace) {
        let many = &u.many;
        let _ = writeln!(
            out,
            "\n**Userspace**: `run --interval 1` idle for {:.0} s on one interface: {:.2} % of a \
             core, peak RSS {:.1} MiB; on {} (both ends of {} veth pairs, the default \
             selection): {:.2} % of a core, peak RSS {:.1} MiB. Counter map: {} for 1 interface; \
             {} for {}. A scrape of `/metrics` (a fresh connection, GET, the whole page) \
             serving those {}: {:.1} ms median ({:.1}–{:.1} ms over {} scrapes), {}.",
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
            thousands(many.interfaces),
            many.scrape.seconds.median * 1e3,
            many.scrape.seconds.min * 1e3,
            many.scrape.seconds.max * 1e3,
            many.scrape.seconds.samples.len(),
            bytes(many.scrape.bytes as u64),
        );
    }

    fn startup_markdown(out: &mut String, attach: &[AttachTime]) {
        let _ = writeln!(
            out,
            "\n**Start-up**: `run --interval 1 --iface a0 --iface a1 …`, one end of each of as \
             many veth pairs, from starting it to its first report, which lists every interface \
             (the program loaded and attached everywhere), and the process's peak RSS (VmHWM) \
             then; {} starts each, median and min–max:\n",
            attach.first().map_or(0, |a| a.seconds.samples.len())
        );
        out.push_str("| interfaces | seconds | peak RSS, MiB |\n| --- | --- | --- |\n");
        for a in attach {
            let rss = &a.peak_rss_kib;
            let _ = writeln!(
                out,
                "| {} | {:.3} ({:.3}–{:.3}) | {:.1} ({:.1}–{:.1}) |",
                thousands(a.interfaces),
                a.seconds.median,
                a.seconds.min,
                a.seconds.max,
                rss.median / 1024.0,
                rss.min / 1024.0,
                rss.max / 1024.0
            );
        }
    }

    fn hotplug_markdown(out: &mut String, h: &Hotplug) {
        let _ = write!(
            out,
            "\n**Hot-plug**: `run --iface '{}' --interval {}`; {} veth interfaces plugged in one \
             at a time, each moved, up, into the probe's namespace by one `ip link set … netns … \
             up` from a second namespace where its peer is, so it appears during that call; from \
             the start of the call to the sending of the first loopback frame counted on the \
             interface (an upper bound), frames going out every {:.0} ms from the call's return, \
             for at most {} s (the frame before the counted one went uncounted, so the program \
             attached within {:.0} ms before it; when the first frame is counted, the program \
             was attached before it went out): ",
            h.pattern,
            h.interval_secs,
            h.interfaces,
            h.send_every_secs * 1e3,
            h.bound_secs,
            h.send_every_secs * 1e3,
        );
        match &h.outcome {
            Outcome::Unsupported(why) => {
                let _ = writeln!(out, "hot-plug not supported by this binary ({why}).");
            }
            Outcome::Measured {
                latency_secs,
                after_move_secs,
                first_frame_counted,
                move_secs,
                missed,
            } => {
                let ms = |summary: &Summary| {
                    format!(
                        "{:.2} ms median, {:.2}–{:.2} ms",
                        summary.median * 1e3,
                        summary.min * 1e3,
                        summary.max * 1e3
                    )
                };
                let _ = write!(
                    out,
                    "{} over {} interfaces; the first frame was counted on {first_frame_counted} \
                     of them. The call took {}; from its return to the first frame counted: {}",
                    ms(latency_secs),
                    latency_secs.samples.len(),
                    ms(move_secs),
                    ms(after_move_secs),
                );
                if missed.is_empty() {
                    out.push_str(".\n");
                } else {
                    let _ = writeln!(
                        out,
                        "; none was counted within {} s on {}.",
                        h.bound_secs,
                        missed.join(", ")
                    );
                }
            }
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
