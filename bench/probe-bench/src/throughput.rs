//! Frames per second handled at the receiving veth of a namespace pair, with the probe and with
//! the alternatives, under a flood from a BPF_PROG_TEST_RUN live-frames generator.
//!
//! The generator (an `XDP_TX` program run in live-frames mode on the sending veth) is pinned to
//! one core; the receiver's NAPI runs threaded, pinned to the other. GRO stays on at the receiver
//! so veth takes XDP frames with no program attached. "Handled" is the receiver's `rx_packets`:
//! frames its NAPI took off the ring; frames the ring had no room for are counted as `offered`
//! but not handled. A receiver that handles all it is offered is bound by the generator, and its
//! figure is a floor of what it could handle.
//!
//! The tcx scenarios attach at the receiver's tcx ingress with no XDP program there, so they
//! measure the tcx path alone: the probe through the library (`Probe::attach_tc`, as `run
//! --on-conflict tc` does beside another XDP program, whose own cost is that program's), and an
//! empty and a drop-all tcx program. veth turns each generated frame into a socket buffer before
//! tcx ingress, as it does for nftables' ingress hook, which runs right after it.

use std::{
    fmt, fs, io,
    net::Ipv4Addr,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray},
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, TestRun as _, TestRunAttrs,
        TestRunOptions, Xdp, XdpMode, tc::TcAttachOptions,
    },
    sys::SyscallError,
};
use probe_common::{Framing, Mode, SampleCounts};
use probe_user::probe::{LoadOptions, Probe, attachment::XdpPrograms};
use serde::Serialize;
use test_frames::ipv4;
use testbed::{
    Link, Netns, ProbeProcess, RECEIVER_IF, RECEIVER_MAC, RECEIVER_V4, SENDER_IF, SENDER_MAC,
    SENDER_V4, xdp_md,
};

use crate::{
    BENCH_OBJECT, Plan, SAMPLE_RATE, cpu,
    process::{self, Footprint, PERCPU_ARRAY},
    stats::{Summary, paired_ratios},
};

/// Frames per BPF_PROG_TEST_RUN call of the generator, and per batch inside it.
const GENERATOR_REPEAT: u32 = 1 << 20;
const GENERATOR_BATCH: u32 = 256;

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub window_secs: f64,
    pub rounds: usize,
    pub generator_cpu: usize,
    pub napi_cpu: usize,
    pub scenarios: Vec<ScenarioResult>,
}

#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    pub name: &'static str,
    pub traffic: &'static str,
    /// Frames per second the receiver handled.
    pub handled_per_sec: Summary,
    /// Frames per second the generator put on the wire (handled plus ring overflow).
    pub offered_per_sec: Summary,
    /// The localnet-probe CLI's CPU (percent of one core) and peak RSS, when it is the receiver.
    pub probe_footprint: Option<Footprint>,
    /// Samples per second the probe's programs sent the CLI, and lost because its ring buffer
    /// was full, when it is the receiver with sampling on.
    pub samples: Option<SampleFlow>,
}

#[derive(Debug, Serialize)]
pub struct SampleFlow {
    pub sample_rate: u32,
    pub emitted_per_sec: Summary,
    pub lost_per_sec: Summary,
}

impl Throughput {
    pub fn scenario(&self, name: &str, traffic: &str) -> Option<&ScenarioResult> {
        self.scenarios
            .iter()
            .find(|s| s.name == name && s.traffic == traffic)
    }

    /// Frames handled with `name` over frames handled with `reference`, round by round.
    pub fn ratio(&self, name: &str, reference: &str, traffic: &str) -> f64 {
        self.ratios(name, reference, traffic)
            .map_or(f64::NAN, |ratios| ratios.median)
    }

    /// Frames handled over frames offered, round by round: near 1, the generator bound the run.
    pub fn handled_share(&self, name: &str, traffic: &str) -> Option<Summary> {
        let scenario = self.scenario(name, traffic)?;
        Some(paired_ratios(
            &scenario.handled_per_sec,
            &scenario.offered_per_sec,
        ))
    }

    /// The per-round ratios behind [`Self::ratio`].
    pub fn ratios(&self, name: &str, reference: &str, traffic: &str) -> Option<Summary> {
        let (a, b) = (
            self.scenario(name, traffic)?,
            self.scenario(reference, traffic)?,
        );
        Some(paired_ratios(&a.handled_per_sec, &b.handled_per_sec))
    }
}

pub const NO_PROGRAM: &str = "no program";
pub const EMPTY_PASS: &str = "empty XDP_PASS";
pub const DROP_ALL: &str = "XDP drop-all";
pub use crate::kernel_cost::HEADERS_DROP;
pub const PROBE_MONITOR_SAMPLING: &str = "probe (monitor, sampling)";
pub const PROBE_DROP_SAMPLING: &str = "probe (drop, sampling)";
pub const PROBE_DROP: &str = "probe (drop)";
pub const NFTABLES: &str = "nftables ingress drop";
pub const TCX_EMPTY: &str = "empty tcx TCX_NEXT";
pub const TCX_DROP_ALL: &str = "tcx drop-all";
pub const PROBE_TCX_MONITOR: &str = "probe at tcx ingress (monitor)";
pub const PROBE_TCX_DROP: &str = "probe at tcx ingress (drop)";
/// The receivers at tcx ingress.
pub const TCX_SCENARIOS: [&str; 4] = [TCX_EMPTY, TCX_DROP_ALL, PROBE_TCX_MONITOR, PROBE_TCX_DROP];
pub const BENIGN: &str = "benign";
pub const LOOPBACK: &str = "loopback";

#[derive(Clone, Copy, Debug)]
enum Receiver {
    Nothing,
    /// One of the reference programs of `bench-ebpf`.
    Reference(&'static str),
    /// The CLI, with `--sample-rate` (0: off).
    Probe {
        drop: bool,
        sample_rate: u32,
    },
    Nftables,
    /// One of the tcx programs of `bench-ebpf`, at tcx ingress.
    TcxReference(&'static str),
    /// The probe at tcx ingress, attached by this process through the library, sampling off.
    ProbeTcx {
        mode: Mode,
    },
}

const SCENARIOS: [(&str, &str, Receiver); 14] = [
    (NO_PROGRAM, BENIGN, Receiver::Nothing),
    (EMPTY_PASS, BENIGN, Receiver::Reference("xdp_pass")),
    (
        PROBE_MONITOR_SAMPLING,
        BENIGN,
        Receiver::Probe {
            drop: false,
            sample_rate: SAMPLE_RATE,
        },
    ),
    (TCX_EMPTY, BENIGN, Receiver::TcxReference("tcx_next")),
    (
        PROBE_TCX_MONITOR,
        BENIGN,
        Receiver::ProbeTcx {
            mode: Mode::Monitor,
        },
    ),
    (NO_PROGRAM, LOOPBACK, Receiver::Nothing),
    (DROP_ALL, LOOPBACK, Receiver::Reference("xdp_drop")),
    (
        HEADERS_DROP,
        LOOPBACK,
        Receiver::Reference("xdp_headers_drop"),
    ),
    (
        PROBE_DROP_SAMPLING,
        LOOPBACK,
        Receiver::Probe {
            drop: true,
            sample_rate: SAMPLE_RATE,
        },
    ),
    (
        PROBE_DROP,
        LOOPBACK,
        Receiver::Probe {
            drop: true,
            sample_rate: 0,
        },
    ),
    (
        PROBE_MONITOR_SAMPLING,
        LOOPBACK,
        Receiver::Probe {
            drop: false,
            sample_rate: SAMPLE_RATE,
        },
    ),
    (NFTABLES, LOOPBACK, Receiver::Nftables),
    (TCX_DROP_ALL, LOOPBACK, Receiver::TcxReference("tcx_drop")),
    (
        PROBE_TCX_DROP,
        LOOPBACK,
        Receiver::ProbeTcx { mode: Mode::Drop },
    ),
];

const NFT_TABLE: &str = "localnet_probe_bench";

/// What is attached at the receiver during one measurement; removed on drop.
enum Installed {
    Nothing,
    Reference(#[expect(dead_code, reason = "held for its attachment")] Ebpf),
    Probe(ProbeProcess),
    Nftables(String),
    ProbeTcx(#[expect(dead_code, reason = "held for its attachment")] Box<Probe>),
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Self::Nftables(netns) = self {
            let _ = Command::new("ip")
                .args([
                    "netns", "exec", netns, "nft", "delete", "table", "netdev", NFT_TABLE,
                ])
                .status();
        }
    }
}

fn install(receiver: Receiver, link: &Link, probe_binary: &str) -> anyhow::Result<Installed> {
    Ok(match receiver {
        Receiver::Nothing => Installed::Nothing,
        Receiver::Reference(name) => {
            Installed::Reference(link.receiver.enter(|| -> anyhow::Result<Ebpf> {
                let mut ebpf = Ebpf::load(BENCH_OBJECT)?;
                let program: &mut Xdp = ebpf
                    .program_mut(name)
                    .with_context(|| format!("no {name} program"))?
                    .try_into()?;
                program.load()?;
                program.attach(RECEIVER_IF, XdpMode::Driver)?;
                Ok(ebpf)
            })?)
        }
        Receiver::Probe { drop, sample_rate } => {
            let sample_rate = sample_rate.to_string();
            let mut args = vec![
                "--iface",
                RECEIVER_IF,
                "--interval",
                "1",
                "--sample-rate",
                &sample_rate,
            ];
            if drop {
                args.push("--drop");
            }
            let probe = ProbeProcess::start(probe_binary, &link.receiver, &args);
            probe.wait_ready();
            Installed::Probe(probe)
        }
        Receiver::Nftables => {
            let ruleset = format!(
                "table netdev {NFT_TABLE} {{\n\
                 \tchain ingress {{\n\
                 \t\ttype filter hook ingress device \"{RECEIVER_IF}\" priority 0; policy accept;\n\
                 \t\tip saddr 127.0.0.0/8 counter drop\n\
                 \t\tip daddr 127.0.0.0/8 counter drop\n\
                 \t\tip6 saddr ::1 counter drop\n\
                 \t\tip6 daddr ::1 counter drop\n\
                 \t}}\n\
                 }}\n"
            );
            let path = std::env::temp_dir().join(format!("{NFT_TABLE}-{}.nft", std::process::id()));
            fs::write(&path, ruleset)?;
            let status = Command::new("ip")
                .args(["netns", "exec", &link.receiver.name, "nft", "-f"])
                .arg(&path)
                .status()
                .context("cannot run nft: install Debian's nftables")?;
            let _ = fs::remove_file(&path);
            if !status.success() {
                bail!("nft -f failed: {status}");
            }
            Installed::Nftables(link.receiver.name.clone())
        }
        Receiver::TcxReference(name) => {
            Installed::Reference(link.receiver.enter(|| -> anyhow::Result<Ebpf> {
                let mut ebpf = Ebpf::load(BENCH_OBJECT)?;
                let program: &mut SchedClassifier = ebpf
                    .program_mut(name)
                    .with_context(|| format!("no {name} program"))?
                    .try_into()?;
                program.load()?;
                // A tcx link, first in the chain as the probe's: never a clsact filter.
                program.attach_with_options(
                    RECEIVER_IF,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::first()),
                )?;
                Ok(ebpf)
            })?)
        }
        Receiver::ProbeTcx { mode } => {
            let mut probe = Probe::load(LoadOptions {
                capacity: 1,
                bound: 1,
                verifier_log: false,
                sample_rate: 0,
                xdp: XdpPrograms::MultiBuffer,
            })?;
            link.receiver.enter(|| -> anyhow::Result<()> {
                let ifindex = testbed::ifindex(RECEIVER_IF);
                probe.configure(ifindex, mode)?;
                probe.attach_tc(ifindex, Framing::Ethernet)?;
                Ok(())
            })?;
            Installed::ProbeTcx(Box::new(probe))
        }
    })
}

/// `(rx_packets, rx_dropped)` of `dev`.
fn rx_counters(netns: &Netns, dev: &str) -> anyhow::Result<(u64, u64)> {
    let output = Command::new("ip")
        .args(["-n", &netns.name, "-s", "-j", "link", "show", "dev", dev])
        .output()?;
    let links: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let rx = &links[0]["stats64"]["rx"];
    Ok((
        rx["packets"].as_u64().context("rx packets")?,
        rx["dropped"].as_u64().context("rx dropped")?,
    ))
}

/// GRO on, threaded NAPI, NAPI threads pinned to `cpu`.
fn prepare_receiver(link: &Link, cpu: usize) -> anyhow::Result<()> {
    let netns = &link.receiver.name;
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "ethtool",
            "-K",
            RECEIVER_IF,
            "gro",
            "on",
        ])
        .status()
        .context("cannot run ethtool: install Debian's ethtool")?;
    if !status.success() {
        bail!("ethtool -K {RECEIVER_IF} gro on failed");
    }
    let status = Command::new("ip")
        .args(["netns", "exec", netns, "sh", "-c"])
        .arg(format!("echo 1 > /sys/class/net/{RECEIVER_IF}/threaded"))
        .status()?;
    if !status.success() {
        bail!("cannot enable threaded NAPI on {RECEIVER_IF}");
    }
    let mut pinned = 0;
    for entry in fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.starts_with(&format!("napi/{RECEIVER_IF}-")) {
            cpu::pin(pid, cpu)?;
            pinned += 1;
        }
    }
    if pinned == 0 {
        bail!("no NAPI thread of {RECEIVER_IF} found to pin");
    }
    Ok(())
}

/// The kernel refuses BPF_PROG_TEST_RUN's live-frames mode, which the generator needs: some
/// kernels (and sandboxes) answer EPERM for any program. The section is then not measured.
#[derive(Debug)]
pub struct LiveFramesRefused(io::Error);

impl fmt::Display for LiveFramesRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this kernel refuses BPF_PROG_TEST_RUN's live-frames mode ({}), which the flood \
             generator needs",
            self.0
        )
    }
}

/// One frame through the generator, to learn whether the kernel runs live frames at all.
fn try_live_frames(
    link: &Link,
    program: &Xdp,
    frame: &[u8],
) -> anyhow::Result<Option<LiveFramesRefused>> {
    link.sender.enter(|| {
        let md = xdp_md(frame.len(), testbed::ifindex(SENDER_IF));
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.ctx_in = Some(&md);
        options.attrs = TestRunAttrs::new().xdp_live_frames(1);
        match program.test_run(options) {
            Ok(_) => Ok(None),
            Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
                if io_error.raw_os_error() == Some(libc::EPERM) =>
            {
                Ok(Some(LiveFramesRefused(io_error)))
            }
            Err(error) => Err(anyhow::Error::new(error).context("live-frames generator")),
        }
    })
}

/// Runs the generator on `cpu` inside the sender's namespace until `stop`; returns frames offered.
fn generate(
    link: &Link,
    program: &Xdp,
    frame: &[u8],
    cpu: usize,
    stop: &AtomicBool,
) -> anyhow::Result<u64> {
    link.sender.enter(|| {
        cpu::pin(0, cpu)?;
        let md = xdp_md(frame.len(), testbed::ifindex(SENDER_IF));
        let mut offered = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut options = TestRunOptions::new();
            options.data_in = Some(frame);
            options.ctx_in = Some(&md);
            options.repeat = GENERATOR_REPEAT;
            options.attrs = TestRunAttrs::new().xdp_live_frames(GENERATOR_BATCH);
            program.test_run(options).context("live-frames generator")?;
            offered += u64::from(GENERATOR_REPEAT);
        }
        Ok(offered)
    })
}

struct Sample {
    handled_per_sec: f64,
    offered_per_sec: f64,
    footprint: Option<Footprint>,
    /// Samples emitted and lost per second.
    samples_per_sec: Option<(f64, f64)>,
}

/// The sample counts of a probe process's programs, read from the kernel: they hold whether the
/// rate limit was reached and the CLI kept up, whatever the CLI reports.
struct SampleCountsMap(PerCpuArray<MapData, SampleCounts>);

impl SampleCountsMap {
    fn of(pid: i32) -> anyhow::Result<Self> {
        let map =
            process::bpf_map_named(pid, PERCPU_ARRAY, probe_common::map_names::SAMPLE_COUNTS)?;
        let data = MapData::from_id(map.id).context("open the probe's sample counts")?;
        Ok(Self(PerCpuArray::try_from(Map::PerCpuArray(data))?))
    }

    /// Over every slot and CPU.
    fn total(&self) -> anyhow::Result<SampleCounts> {
        let mut total = SampleCounts::default();
        for per_cpu in self.0.iter() {
            for counts in per_cpu?.iter() {
                total.add(*counts);
            }
        }
        Ok(total)
    }
}

fn measure_one(
    plan: &Plan,
    link: &Link,
    generator: &Xdp,
    frame: &[u8],
    installed: &Installed,
    receiver: Receiver,
    cpus: (usize, usize),
) -> anyhow::Result<Sample> {
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let generator = scope.spawn(|| generate(link, generator, frame, cpus.0, &stop));
        let result = (|| {
            thread::sleep(plan.veth_warmup);
            let probe_pid = match installed {
                Installed::Probe(probe) => Some(probe.pid()),
                _ => None,
            };
            let sample_counts = match (installed, receiver) {
                (Installed::Probe(probe), Receiver::Probe { sample_rate, .. })
                    if sample_rate > 0 =>
                {
                    Some(SampleCountsMap::of(probe.pid())?)
                }
                _ => None,
            };
            let footprint_start = probe_pid.map(Footprint::start).transpose()?;
            let samples_before = sample_counts.as_ref().map(SampleCountsMap::total);
            let (packets_before, dropped_before) = rx_counters(&link.receiver, RECEIVER_IF)?;
            let start = Instant::now();
            // Samples are counted over whole seconds of the window: the CLI refills the tokens
            // once a second and a flood takes them at once, so a second holds one refill's worth
            // wherever it starts.
            let sample_span =
                Duration::from_secs(plan.veth_window.as_secs().max(1)).min(plan.veth_window);
            thread::sleep(sample_span);
            let samples_after = sample_counts.as_ref().map(SampleCountsMap::total);
            let sample_seconds = start.elapsed().as_secs_f64();
            thread::sleep(plan.veth_window - sample_span);
            let (packets_after, dropped_after) = rx_counters(&link.receiver, RECEIVER_IF)?;
            let seconds = start.elapsed().as_secs_f64();
            let footprint = footprint_start.map(|start| start.finish()).transpose()?;
            let handled = (packets_after - packets_before) as f64;
            let overflow = (dropped_after - dropped_before) as f64;
            let samples_per_sec = match (samples_before, samples_after) {
                (Some(before), Some(after)) => {
                    let (before, after) = (before?, after?);
                    Some((
                        (after.emitted - before.emitted) as f64 / sample_seconds,
                        (after.lost - before.lost) as f64 / sample_seconds,
                    ))
                }
                _ => None,
            };
            Ok(Sample {
                handled_per_sec: handled / seconds,
                offered_per_sec: (handled + overflow) / seconds,
                footprint,
                samples_per_sec,
            })
        })();
        stop.store(true, Ordering::Relaxed);
        let generated = generator.join().expect("generator thread panicked");
        generated?;
        result
    })
}

/// The scenarios, or why they cannot be measured here.
pub fn measure(
    plan: &Plan,
    probe_binary: &str,
) -> anyhow::Result<Result<Throughput, LiveFramesRefused>> {
    let cpus = cpu::two()?;
    let link = Link::new("bench");
    prepare_receiver(&link, cpus.1)?;
    let payload = [0u8; 22];
    let benign = ipv4(SENDER_V4, RECEIVER_V4)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .payload(&payload)
        .build();
    let loopback = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .payload(&payload)
        .build();
    let mut generator = Ebpf::load(BENCH_OBJECT)?;
    let generator: &mut Xdp = generator
        .program_mut("xdp_tx")
        .context("no xdp_tx program")?
        .try_into()?;
    generator.load()?;
    let generator = &*generator;
    if let Some(refused) = try_live_frames(&link, generator, &benign)? {
        return Ok(Err(refused));
    }

    let mut samples: Vec<Vec<Sample>> = SCENARIOS.iter().map(|_| Vec::new()).collect();
    for _ in 0..plan.veth_rounds {
        for (index, (_, traffic, receiver)) in SCENARIOS.iter().enumerate() {
            let frame = if *traffic == BENIGN {
                &benign
            } else {
                &loopback
            };
            let installed = install(*receiver, &link, probe_binary)?;
            samples[index].push(measure_one(
                plan, &link, generator, frame, &installed, *receiver, cpus,
            )?);
        }
    }
    let scenarios = SCENARIOS
        .iter()
        .zip(samples)
        .map(|((name, traffic, receiver), samples)| ScenarioResult {
            name,
            traffic,
            handled_per_sec: Summary::of(
                &samples
                    .iter()
                    .map(|s| s.handled_per_sec)
                    .collect::<Vec<_>>(),
            ),
            offered_per_sec: Summary::of(
                &samples
                    .iter()
                    .map(|s| s.offered_per_sec)
                    .collect::<Vec<_>>(),
            ),
            probe_footprint: Footprint::worst(samples.iter().filter_map(|s| s.footprint.clone())),
            samples: match receiver {
                Receiver::Probe { sample_rate, .. } if *sample_rate > 0 => {
                    let rates: Vec<(f64, f64)> =
                        samples.iter().filter_map(|s| s.samples_per_sec).collect();
                    Some(SampleFlow {
                        sample_rate: *sample_rate,
                        emitted_per_sec: Summary::of(
                            &rates.iter().map(|r| r.0).collect::<Vec<_>>(),
                        ),
                        lost_per_sec: Summary::of(&rates.iter().map(|r| r.1).collect::<Vec<_>>()),
                    })
                }
                _ => None,
            },
        })
        .collect();
    Ok(Ok(Throughput {
        window_secs: plan.veth_window.as_secs_f64(),
        rounds: plan.veth_rounds,
        generator_cpu: cpus.0,
        napi_cpu: cpus.1,
        scenarios,
    }))
}
