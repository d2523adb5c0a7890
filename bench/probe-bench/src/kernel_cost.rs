//! In-kernel cost per frame with BPF_PROG_TEST_RUN: the probe in monitor and drop mode, with
//! sampling off and on, beside an empty program, a program that only reads the headers, and
//! xdp-filter, on benign and loopback frames, interleaved round by round. The probe's tcx
//! programs (ingress, and egress, which every frame the host sends meets under `run --egress`)
//! run in the same rounds on a socket buffer, beside an empty tcx program.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp, XdpMode},
};
use probe_common::{Framing, Mode};
use probe_user::probe::attachment::Direction;
use probe_user::probe::{LoadOptions, Probe, XdpModeChoice, attachment::XdpPrograms};
use serde::Serialize;
use test_frames::{TPID_8021Q, arp_request, ipv4, ipv6};
use testbed::{Netns, xdp_md};

use crate::{
    BENCH_OBJECT, C_REFERENCE_OBJECT, ENTRY_IN_PROGRAM, Plan, SAMPLE_RATE, STOP_AFTER_CLASSIFY,
    STOP_AFTER_COUNTER, STOP_AFTER_ENTRY, cpu,
    stats::{Summary, paired_differences, paired_ratio},
};

/// `lo`: XDP test runs take the ingress interface from the context, and it must exist; a
/// socket buffer's test run is on `lo` when no context names another device.
const IFINDEX: u32 = 1;
const XDP_FILTER_PIN: &str = "/sys/fs/bpf/localnet-probe-bench-xdp-filter";

#[derive(Debug, Serialize)]
pub struct KernelCost {
    pub repeat: u32,
    pub rounds: usize,
    /// Samples per second and interface of the subjects with sampling on.
    pub sample_rate: u32,
    /// One entry per subject and frame, in ns per frame.
    pub results: Vec<CostResult>,
}

#[derive(Debug, Serialize)]
pub struct CostResult {
    pub subject: &'static str,
    pub frame: &'static str,
    /// What the program returned: an XDP action, or a tcx verdict (`TCX_NEXT` is -1).
    pub verdict: i32,
    /// Wall-clock time of each BPF_PROG_TEST_RUN call divided by `repeat`.
    pub ns_per_frame: Summary,
    /// What the kernel reported for each call (whole nanoseconds).
    pub kernel_ns: Vec<u32>,
}

impl KernelCost {
    fn result(&self, subject: &str, frame: &str) -> Option<&CostResult> {
        self.results
            .iter()
            .find(|r| r.subject == subject && r.frame == frame)
    }

    pub fn median(&self, subject: &str, frame: &str) -> f64 {
        self.result(subject, frame)
            .map_or(f64::NAN, |r| r.ns_per_frame.median)
    }

    /// The fastest and slowest run of `subject` over every frame.
    pub fn spread(&self, subject: &str) -> (f64, f64) {
        self.results
            .iter()
            .filter(|r| r.subject == subject)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(min, max), r| {
                (min.min(r.ns_per_frame.min), max.max(r.ns_per_frame.max))
            })
    }

    /// How many times `subject`'s cost `reference`'s is, on `frame`, round by round.
    pub fn ratio(&self, subject: &str, reference: &str, frame: &str) -> f64 {
        match (self.result(subject, frame), self.result(reference, frame)) {
            (Some(a), Some(b)) => paired_ratio(&a.ns_per_frame, &b.ns_per_frame),
            _ => f64::NAN,
        }
    }

    /// The nanoseconds `subject` adds to `reference` on `frame`, round by round.
    pub fn added_ns(&self, subject: &str, reference: &str, frame: &str) -> Option<Summary> {
        let (a, b) = (self.result(subject, frame)?, self.result(reference, frame)?);
        Some(paired_differences(&a.ns_per_frame, &b.ns_per_frame))
    }
}

pub const EMPTY: &str = "empty XDP_PASS";
/// What any classifier pays: the headers read, bounds-checked; no lookup, no counter.
pub const HEADERS_DROP: &str = "XDP read headers, drop";
/// The floor of counting exactly with least privilege: the headers read, then the interface's
/// entry, the frame's length (a helper call) and a per-CPU counter, for every frame.
pub const HEADERS_COUNT_DROP: &str = "XDP read headers, count exactly, drop";
/// A minimal loopback filter as C programs are usually written, built with clang: untagged IPv4
/// and IPv6 frames with a loopback source or destination dropped, no header checks, nothing
/// counted (`bench/c-reference`).
pub const C_CLASSIFY_DROP: &str = "C classifier (clang), drop";
/// The same, counting what it drops exactly as the probe does: the interface's entry by ifindex,
/// the frame's length (a helper call) and a per-CPU counter.
pub const C_CLASSIFY_COUNT_DROP: &str = "C classifier (clang), count exactly, drop";
pub const PROBE_MONITOR: &str = "probe (monitor)";
/// The same programs loaded once more: what two loads of identical code differ by (where the
/// kernel put each) is what this harness can resolve.
pub const PROBE_MONITOR_AGAIN: &str = "probe (monitor), loaded again";
pub const PROBE_DROP: &str = "probe (drop)";
pub const PROBE_MONITOR_SAMPLING: &str = "probe (monitor, sampling)";
pub const PROBE_DROP_SAMPLING: &str = "probe (drop, sampling)";
pub const XDP_FILTER: &str = "xdp-filter";
/// The floor at tcx: an empty program that hands every frame on.
pub const TCX_EMPTY: &str = "empty tcx TCX_NEXT";
pub const TCX_MONITOR: &str = "probe at tcx ingress (monitor)";
pub const TCX_DROP: &str = "probe at tcx ingress (drop)";
pub const EGRESS: &str = "probe at tcx egress";
pub const EGRESS_SAMPLING: &str = "probe at tcx egress (sampling)";

/// The egress program, sampling off and on: what `--egress` adds to every frame leaving.
pub const EGRESS_PROBES: [&str; 2] = [EGRESS, EGRESS_SAMPLING];

/// The probe's path for a matched frame built up step by step, each a build of the programs that
/// stops after it (the last, the whole path, is `PROBE_MONITOR`), with the object of each.
pub const STOPPED_AFTER_CLASSIFY: &str = "probe stopped after classifying";
pub const STOPPED_AFTER_ENTRY: &str = "probe stopped after the interface's entry";
pub const STOPPED_AFTER_COUNTER: &str = "probe stopped after the counter";
const STEPS: [(&str, &[u8]); 3] = [
    (STOPPED_AFTER_CLASSIFY, STOP_AFTER_CLASSIFY),
    (STOPPED_AFTER_ENTRY, STOP_AFTER_ENTRY),
    (STOPPED_AFTER_COUNTER, STOP_AFTER_COUNTER),
];
/// The probe with the interface's entry in the program's own global data rather than in the map
/// by ifindex: what a program instance per interface would save.
pub const PROBE_ENTRY_IN_PROGRAM: &str = "probe, entry in the program (monitor)";
/// The programs for frames in one buffer (kernels without XDP multi-buffer), which find the
/// length without a helper call.
pub const PROBE_ONE_BUFFER: &str = "probe, programs for one buffer (monitor)";

/// Every probe subject.
pub const PROBES: [&str; 4] = [
    PROBE_MONITOR,
    PROBE_DROP,
    PROBE_MONITOR_SAMPLING,
    PROBE_DROP_SAMPLING,
];
/// Each mode with sampling on, beside the same mode with sampling off.
pub const SAMPLING_PAIRS: [(&str, &str); 2] = [
    (PROBE_MONITOR_SAMPLING, PROBE_MONITOR),
    (PROBE_DROP_SAMPLING, PROBE_DROP),
];

/// The frames with a loopback source: the ones the egress program counts.
pub const LOOPBACK_SOURCE_V4: &str = "loopback source v4";
pub const LOOPBACK_SOURCE_V6: &str = "::1 v6";
pub const LOOPBACK_SOURCES: [&str; 2] = [LOOPBACK_SOURCE_V4, LOOPBACK_SOURCE_V6];

/// The ARP frames, which xdp-filter passes unread: it looks up IP addresses only.
pub const ARP_FRAMES: [&str; 2] = ["benign ARP request", "ARP who-has 127.0.0.1"];

/// The frames measured, with whether they are loopback frames.
pub fn frames() -> Vec<(&'static str, bool, Vec<u8>)> {
    let a = Ipv4Addr::new(198, 18, 0, 1);
    let b = Ipv4Addr::new(198, 18, 0, 2);
    let a6: Ipv6Addr = "fd00::1".parse().expect("valid");
    let b6: Ipv6Addr = "fd00::2".parse().expect("valid");
    let lo = Ipv4Addr::LOCALHOST;
    // 22 payload bytes make the benign IPv4 frame 64 bytes; the others carry the same payload.
    let payload = [0u8; 22];
    vec![
        (
            "benign IPv4 UDP 64 B",
            false,
            ipv4(a, b).payload(&payload).build(),
        ),
        (
            "benign IPv6 UDP",
            false,
            ipv6(a6, b6).payload(&payload).build(),
        ),
        (
            "benign 802.1Q IPv4",
            false,
            ipv4(a, b).vlan(TPID_8021Q).payload(&payload).build(),
        ),
        // Padded to 60 bytes, as on a wire.
        (
            ARP_FRAMES[0],
            false,
            arp_request(a, b).payload(&[0; 18]).build(),
        ),
        (
            LOOPBACK_SOURCE_V4,
            true,
            ipv4(lo, b).payload(&payload).build(),
        ),
        (
            "loopback destination v4",
            true,
            ipv4(a, lo).payload(&payload).build(),
        ),
        (
            LOOPBACK_SOURCE_V6,
            true,
            ipv6(Ipv6Addr::LOCALHOST, b6).payload(&payload).build(),
        ),
        (
            "v4-mapped",
            true,
            ipv6(a6, lo.to_ipv6_mapped()).payload(&payload).build(),
        ),
        (
            ARP_FRAMES[1],
            true,
            arp_request(a, lo).payload(&[0; 18]).build(),
        ),
    ]
}

/// xdp-filter from Debian's xdp-tools, loaded on a veth in a namespace of its own and told to
/// drop 127.0.0.1 and ::1 as source and destination (it matches exact addresses; it cannot
/// express 127.0.0.0/8). Its program is pinned so it can be test-run.
struct XdpFilter {
    _netns: Netns,
    program: Xdp,
}

impl XdpFilter {
    fn load() -> anyhow::Result<Self> {
        let netns = Netns::new("bench-xf");
        netns.ip(&["link", "add", "xfa", "type", "veth", "peer", "name", "xfb"]);
        netns.ip(&["link", "set", "xfa", "up"]);
        netns.ip(&["link", "set", "xfb", "up"]);
        let in_netns = |args: &[&str]| -> anyhow::Result<()> {
            let netns_path = format!("--net=/run/netns/{}", netns.name);
            let output = Command::new("nsenter")
                .arg(&netns_path)
                .arg("xdp-filter")
                .args(args)
                .output()
                .context("cannot run xdp-filter: install Debian's xdp-tools")?;
            if !output.status.success() {
                bail!(
                    "xdp-filter {args:?}: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(())
        };
        in_netns(&["load", "--mode", "skb", "--features", "ipv4,ipv6", "xfb"])?;
        for address in ["127.0.0.1", "::1"] {
            for mode in ["src", "dst"] {
                in_netns(&["ip", address, "--mode", mode])?;
            }
        }
        let id = attached_program_id(&netns, "xfb")?;
        let _ = std::fs::remove_file(XDP_FILTER_PIN);
        let output = Command::new("bpftool")
            .args(["prog", "pin", "id", &id.to_string(), XDP_FILTER_PIN])
            .output()
            .context("cannot run bpftool: install Debian's bpftool")?;
        if !output.status.success() {
            bail!(
                "bpftool prog pin: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let program = Xdp::from_pin(XDP_FILTER_PIN, aya_obj::programs::XdpAttachType::Interface);
        let _ = std::fs::remove_file(XDP_FILTER_PIN);
        Ok(Self {
            _netns: netns,
            program: program.context("open xdp-filter's pinned program")?,
        })
    }
}

/// The id of the XDP program on `dev`, from `ip -d -j link`.
fn attached_program_id(netns: &Netns, dev: &str) -> anyhow::Result<u32> {
    let output = Command::new("ip")
        .args(["-n", &netns.name, "-d", "-j", "link", "show", "dev", dev])
        .output()?;
    let links: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    links[0]["xdp"]["prog"]["id"]
        .as_u64()
        .map(|id| id as u32)
        .with_context(|| format!("no XDP program on {dev}: {links}"))
}

/// A program measured: XDP, run on an `xdp_md`, or tcx (sched_cls), run on a socket buffer the
/// kernel builds once per call from the frame and hands the program `repeat` times.
#[derive(Clone, Copy)]
enum Subject<'a> {
    Xdp(&'a Xdp),
    Tcx(&'a SchedClassifier),
}

fn run_once(subject: Subject<'_>, frame: &[u8], repeat: u32) -> anyhow::Result<(f64, u32, i32)> {
    let md = xdp_md(frame.len(), IFINDEX);
    let mut options = TestRunOptions::new();
    options.data_in = Some(frame);
    options.repeat = repeat;
    let start = Instant::now();
    let result = match subject {
        Subject::Xdp(program) => {
            options.ctx_in = Some(&md);
            program.test_run(options)?
        }
        // No context: the socket buffer is on `lo`, IFINDEX, which the probes are configured
        // for, and the program sees it as the interface the frame arrives at or leaves.
        Subject::Tcx(program) => program.test_run(options)?,
    };
    let elapsed = start.elapsed();
    Ok((
        elapsed.as_nanos() as f64 / f64::from(repeat),
        result.duration.as_nanos() as u32,
        // tcx verdicts are signed: TCX_NEXT is -1.
        result.return_value as i32,
    ))
}

/// Veths in a namespace of their own, one per subject, each subject attached (generic XDP) to its
/// own. An attached program sits in the kernel's XDP dispatcher, as xdp-filter's does; test runs
/// of one that is not would pay a dispatcher update on every call and an indirect call on every
/// frame.
struct Stage {
    netns: Netns,
}

impl Stage {
    fn new() -> Self {
        let netns = Netns::new("bench-cost");
        for (a, b) in STAGE_DEVICES {
            netns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
            netns.ip(&["link", "set", a, "up"]);
            netns.ip(&["link", "set", b, "up"]);
        }
        Self { netns }
    }

    /// `object` loaded, with each of `programs` loaded and attached to its stage device.
    fn references(&self, object: &[u8], programs: &[(&str, usize)]) -> anyhow::Result<Ebpf> {
        let mut loaded = Ebpf::load(object)?;
        for (name, dev) in programs {
            let program: &mut Xdp = loaded
                .program_mut(name)
                .with_context(|| format!("no {name} program"))?
                .try_into()?;
            program.load()?;
            self.attach(program, STAGE_DEVICES[*dev].0)?;
        }
        Ok(loaded)
    }

    /// `probe` configured for the test-run interface and attached to `dev`, in `mode`.
    fn attached(&self, mut probe: Probe, dev: &str, mode: Mode) -> anyhow::Result<Probe> {
        probe.configure(IFINDEX, mode)?;
        self.netns.enter(|| -> anyhow::Result<()> {
            let ifindex = testbed::ifindex(dev);
            probe.configure(ifindex, mode)?;
            probe.attach(ifindex, Framing::Ethernet, XdpModeChoice::Generic)?;
            Ok(())
        })?;
        Ok(probe)
    }

    fn attach(&self, program: &mut Xdp, dev: &str) -> anyhow::Result<()> {
        self.netns.enter(|| {
            program.attach(dev, XdpMode::Skb)?;
            Ok(())
        })
    }
}

/// Room for the test-run interface and the stage device each probe serves; `sample_rate` 0 is
/// sampling off.
const fn load_options(sample_rate: u32) -> LoadOptions {
    LoadOptions {
        capacity: 2,
        bound: 2,
        verifier_log: false,
        sample_rate,
        xdp: XdpPrograms::MultiBuffer,
    }
}

const STAGE_DEVICES: [(&str, &str); 15] = [
    ("ce0", "cp0"),
    ("ce1", "cp1"),
    ("ce2", "cp2"),
    ("ce3", "cp3"),
    ("ce4", "cp4"),
    ("ce5", "cp5"),
    ("ce6", "cp6"),
    ("ce7", "cp7"),
    ("ce8", "cp8"),
    ("ce9", "cp9"),
    ("ce10", "cp10"),
    ("ce11", "cp11"),
    ("ce12", "cp12"),
    ("ce13", "cp13"),
    ("ce14", "cp14"),
];

/// A build of the probe measured, on a stage device of its own.
struct ProbeLoad {
    dev: usize,
    object: ProbeObject,
    mode: Mode,
    sample_rate: u32,
}

#[derive(Clone, Copy)]
enum ProbeObject {
    /// The CLI's object, with its programs for several buffers or for one.
    Shipped(XdpPrograms),
    /// A build of the bench's (`STEPS`, `ENTRY_IN_PROGRAM`).
    Bench(&'static [u8]),
}

const fn shipped(dev: usize, mode: Mode, sample_rate: u32) -> ProbeLoad {
    ProbeLoad {
        dev,
        object: ProbeObject::Shipped(XdpPrograms::MultiBuffer),
        mode,
        sample_rate,
    }
}

const fn bench_build(dev: usize, object: &'static [u8]) -> ProbeLoad {
    ProbeLoad {
        dev,
        object: ProbeObject::Bench(object),
        mode: Mode::Monitor,
        sample_rate: 0,
    }
}

/// Indexes into `PROBE_LOADS`.
const MONITOR: usize = 0;
const MONITOR_AGAIN: usize = 1;
const DROP: usize = 2;
const MONITOR_SAMPLING: usize = 3;
const DROP_SAMPLING: usize = 4;
const ONE_BUFFER: usize = 5;
const IN_PROGRAM: usize = 6;
const FIRST_STEP: usize = 7;

const PROBE_LOADS: [ProbeLoad; 10] = [
    shipped(1, Mode::Monitor, 0),
    shipped(13, Mode::Monitor, 0),
    shipped(2, Mode::Drop, 0),
    shipped(3, Mode::Monitor, SAMPLE_RATE),
    shipped(4, Mode::Drop, SAMPLE_RATE),
    ProbeLoad {
        dev: 6,
        object: ProbeObject::Shipped(XdpPrograms::Linear),
        mode: Mode::Monitor,
        sample_rate: 0,
    },
    bench_build(14, ENTRY_IN_PROGRAM),
    bench_build(7, STEPS[0].1),
    bench_build(8, STEPS[1].1),
    bench_build(9, STEPS[2].1),
];

/// The reference programs of each object, with their stage devices.
const REFERENCES: [(&str, usize); 3] = [
    ("xdp_pass", 0),
    ("xdp_headers_drop", 5),
    ("xdp_headers_count_drop", 10),
];
const C_REFERENCES: [(&str, usize); 2] = [("c_classify_drop", 11), ("c_classify_count_drop", 12)];

/// How many programs are measured.
const SUBJECTS: usize = 21;

/// Every program measured but xdp-filter, loaded afresh for each round. Where the kernel puts a
/// program moves its cost by up to about a nanosecond (two loads of the same programs differ by
/// that much), and loading in the same order puts each at the same place again; so each round
/// loads in an order of its own, and a median over rounds is one over placements, for the
/// reference programs as for the probe.
struct Round {
    references: Ebpf,
    c_references: Ebpf,
    probes: Vec<Probe>,
}

/// What a round loads, one at a time.
#[derive(Clone, Copy)]
enum Part {
    References,
    CReferences,
    Probe(usize),
}

impl Round {
    fn load(stage: &Stage, round: usize) -> anyhow::Result<Self> {
        let mut parts = vec![Part::References, Part::CReferences];
        parts.extend((0..PROBE_LOADS.len()).map(Part::Probe));
        shuffle(&mut parts, round as u64);
        let (mut references, mut c_references) = (None, None);
        let mut probes: Vec<Option<Probe>> = PROBE_LOADS.iter().map(|_| None).collect();
        for part in parts {
            match part {
                Part::References => {
                    references = Some(stage.references(BENCH_OBJECT, &REFERENCES)?);
                }
                Part::CReferences => {
                    c_references = Some(stage.references(C_REFERENCE_OBJECT, &C_REFERENCES)?);
                }
                Part::Probe(index) => {
                    let load = &PROBE_LOADS[index];
                    let options = load_options(load.sample_rate);
                    let probe = match load.object {
                        ProbeObject::Shipped(xdp) => Probe::load(LoadOptions { xdp, ..options })?,
                        ProbeObject::Bench(object) => Probe::load_object(object, options)?,
                    };
                    probes[index] =
                        Some(stage.attached(probe, STAGE_DEVICES[load.dev].0, load.mode)?);
                }
            }
        }
        let mut references = references.expect("loaded above");
        // tcx programs run without a dispatcher, attached or not: loaded is enough.
        let tcx_next: &mut SchedClassifier = references
            .program_mut("tcx_next")
            .context("no tcx_next program")?
            .try_into()?;
        tcx_next.load()?;
        Ok(Self {
            references,
            c_references: c_references.expect("loaded above"),
            probes: probes
                .into_iter()
                .map(|p| p.expect("loaded above"))
                .collect(),
        })
    }

    /// Every subject, by name, in the order of the report.
    fn subjects<'a>(
        &'a self,
        xdp_filter: &'a XdpFilter,
    ) -> anyhow::Result<[(&'static str, Subject<'a>); SUBJECTS]> {
        let program = |object: &'a Ebpf, name: &str| -> anyhow::Result<Subject<'a>> {
            Ok(Subject::Xdp(
                object
                    .program(name)
                    .with_context(|| format!("no {name} program"))?
                    .try_into()?,
            ))
        };
        let tcx_next: &SchedClassifier = self
            .references
            .program("tcx_next")
            .context("no tcx_next program")?
            .try_into()?;
        let xdp = |index: usize| Subject::Xdp(self.probes[index].program(Framing::Ethernet));
        // The tcx programs of the same probes: one object, one configuration, one set of sample
        // tokens for IFINDEX. The egress program counts whatever the interface's mode.
        let tcx = |index: usize, direction: Direction| {
            Subject::Tcx(self.probes[index].classifier(direction, Framing::Ethernet))
        };
        Ok([
            (EMPTY, program(&self.references, "xdp_pass")?),
            (HEADERS_DROP, program(&self.references, "xdp_headers_drop")?),
            (
                HEADERS_COUNT_DROP,
                program(&self.references, "xdp_headers_count_drop")?,
            ),
            (STEPS[0].0, xdp(FIRST_STEP)),
            (STEPS[1].0, xdp(FIRST_STEP + 1)),
            (STEPS[2].0, xdp(FIRST_STEP + 2)),
            (PROBE_MONITOR, xdp(MONITOR)),
            (PROBE_MONITOR_AGAIN, xdp(MONITOR_AGAIN)),
            (PROBE_ONE_BUFFER, xdp(ONE_BUFFER)),
            (PROBE_ENTRY_IN_PROGRAM, xdp(IN_PROGRAM)),
            (PROBE_DROP, xdp(DROP)),
            (PROBE_MONITOR_SAMPLING, xdp(MONITOR_SAMPLING)),
            (PROBE_DROP_SAMPLING, xdp(DROP_SAMPLING)),
            (XDP_FILTER, Subject::Xdp(&xdp_filter.program)),
            (
                C_CLASSIFY_DROP,
                program(&self.c_references, "c_classify_drop")?,
            ),
            (
                C_CLASSIFY_COUNT_DROP,
                program(&self.c_references, "c_classify_count_drop")?,
            ),
            (TCX_EMPTY, Subject::Tcx(tcx_next)),
            (TCX_MONITOR, tcx(MONITOR, Direction::Ingress)),
            (TCX_DROP, tcx(DROP, Direction::Ingress)),
            (EGRESS, tcx(MONITOR, Direction::Egress)),
            (EGRESS_SAMPLING, tcx(MONITOR_SAMPLING, Direction::Egress)),
        ])
    }
}

/// Shuffles `items` (Fisher–Yates), the same way for the same `seed`, so a run can be repeated.
fn shuffle<T>(items: &mut [T], seed: u64) {
    // xorshift64*, seeded away from zero.
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in (1..items.len()).rev() {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let random = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        items.swap(i, (random % (i as u64 + 1)) as usize);
    }
}

/// Repeats of the short pass that starts each round: it warms the caches, and its loopback
/// frames take the sample tokens, which nothing refills here, so the sampling subjects are
/// measured as under a flood: the limit used up.
const WARM_UP_REPEAT: u32 = 10_000;
const _: () = assert!(WARM_UP_REPEAT >= SAMPLE_RATE);

pub fn measure(plan: &Plan) -> anyhow::Result<KernelCost> {
    let stage = Stage::new();
    let xdp_filter = XdpFilter::load()?;
    let frames = frames();

    let mut names = Vec::new();
    let mut samples = vec![vec![Vec::new(); SUBJECTS]; frames.len()];
    let mut kernel_ns = vec![vec![Vec::new(); SUBJECTS]; frames.len()];
    let mut verdicts = vec![vec![0; SUBJECTS]; frames.len()];
    // One CPU throughout, so no run pays for a migration or a cold cache.
    cpu::pinned(cpu::two()?.1, || {
        for round in 0..plan.cost_rounds {
            let loaded = Round::load(&stage, round)?;
            let subjects = loaded.subjects(&xdp_filter)?;
            for (_, _, frame) in &frames {
                for (_, program) in &subjects {
                    run_once(*program, frame, WARM_UP_REPEAT)?;
                }
            }
            for (f, (_, _, frame)) in frames.iter().enumerate() {
                for (s, (_, program)) in subjects.iter().enumerate() {
                    let (wall, kernel, verdict) = run_once(*program, frame, plan.cost_repeat)?;
                    samples[f][s].push(wall);
                    kernel_ns[f][s].push(kernel);
                    verdicts[f][s] = verdict;
                }
            }
            names = subjects.iter().map(|(name, _)| *name).collect();
        }
        Ok(())
    })?;

    let mut results = Vec::new();
    for (f, (frame_name, _, _)) in frames.iter().enumerate() {
        for (s, subject) in names.iter().enumerate() {
            results.push(CostResult {
                subject,
                frame: frame_name,
                verdict: verdicts[f][s],
                ns_per_frame: Summary::of(&samples[f][s]),
                kernel_ns: std::mem::take(&mut kernel_ns[f][s]),
            });
        }
    }
    Ok(KernelCost {
        repeat: plan.cost_repeat,
        rounds: plan.cost_rounds,
        sample_rate: SAMPLE_RATE,
        results,
    })
}
