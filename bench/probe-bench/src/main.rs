//! localnet-probe's benchmark: the in-kernel cost per frame, the throughput at a veth receiver and
//! the CLI's own footprint, each beside reference programs, in one run. Run it as root through
//! `cargo xtask bench`; it writes `report.md` and `report.json`.

use std::{path::PathBuf, ptr, time::Duration};

use anyhow::{Context as _, bail};
use clap::Parser;

mod churn;
mod cpu;
mod growth;
mod hotplug;
mod kernel_cost;
mod node;
mod process;
mod report;
mod scan;
mod startup;
mod stats;
mod throughput;
mod userspace;

/// The probe with sampling on is measured at the CLI's default `--sample-rate`.
const SAMPLE_RATE: u32 = probe_user::probe::DEFAULT_SAMPLE_RATE;

static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-xdp"));
/// The reference programs written in C and built with clang (`bench/c-reference`).
static C_REFERENCE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/c-reference"));

/// The probe's programs built to stop after classifying a matched frame, after reading the
/// interface's entry, and after updating the counter (with a constant for the length).
static STOP_AFTER_CLASSIFY: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/stop-after-classify"));
static STOP_AFTER_ENTRY: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/stop-after-entry"));
static STOP_AFTER_COUNTER: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/stop-after-counter"));
/// The probe's programs built to read the interface's entry from their own global data, as a
/// program instance per interface would.
static ENTRY_IN_PROGRAM: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/entry-in-program"));

#[derive(Debug, Parser)]
#[command(name = "localnet-probe-bench")]
struct Args {
    /// The localnet-probe binary to measure (build it with the release profile).
    #[arg(long, value_name = "PATH")]
    probe_binary: PathBuf,
    /// Directory for report.md and report.json.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    out: PathBuf,
    /// A short run that checks the harness end to end; its figures mean nothing.
    #[arg(long)]
    quick: bool,
    /// Measure only these sections (repeatable, or comma-separated); targets involving the others
    /// are left out.
    #[arg(long = "section", value_enum, value_delimiter = ',')]
    sections: Vec<Section>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// In-kernel cost per frame (BPF_PROG_TEST_RUN).
    Kernel,
    /// Throughput at a veth receiver.
    Veth,
    /// The CLI's CPU and memory, idle and serving many interfaces, and its metrics scrape.
    Userspace,
    /// The CLI's start-up: time to the first report and peak RSS, up to 1,000 interfaces.
    Startup,
    /// How soon `run --iface PATTERN` counts frames on an interface created while it runs.
    Hotplug,
    /// A busy node's telemetry at 2,000 interfaces, in process: the metrics page (raw, gzip,
    /// encode time), series per pod restart, JSON bytes a day under churn; and churn with the
    /// binary: 1,000 pairs added and deleted in a batch each (CPU, report gaps), an hour of
    /// pod churn compressed (RSS), a 500-interface node's CPU and memory.
    Node,
    Scan,
}

/// How long and how often to measure.
#[derive(Debug, Clone, serde::Serialize)]
struct Plan {
    cost_repeat: u32,
    cost_rounds: usize,
    veth_rounds: usize,
    veth_warmup: Duration,
    veth_window: Duration,
    idle: Duration,
    /// veth pairs for the many-interface footprint; the probe serves both ends of each.
    many_veth_pairs: usize,
    /// Scrapes of `/metrics` while serving them.
    scrapes: usize,
    attach_counts: Vec<usize>,
    attach_rounds: usize,
    /// Interfaces created one at a time while `run --iface PATTERN` runs.
    hotplug_interfaces: usize,
    /// Encodings of each metrics page at 2,000 interfaces.
    node_rounds: usize,
    /// Seconds of `--interval 1` objects under churn, scaled to a day.
    node_json_seconds: u32,
    /// veth pairs plugged in one batch into a probe started with room for 257 interfaces.
    growth_pairs: usize,
    /// veth pairs added in one batch and deleted in one while the probe runs.
    churn_pairs: usize,
    /// Interfaces of the node whose pods are replaced in the compressed hour...
    churn_node_interfaces: usize,
    /// ... in at most this many cycles (an hour of the soak's churn, 144,000 interfaces, is
    /// 288 of 500).
    churn_cycles: usize,
    scan_frames: u64,
    scan_rounds: usize,
}

impl Plan {
    fn full() -> Self {
        Self {
            cost_repeat: 1_000_000,
            cost_rounds: 21,
            veth_rounds: 7,
            veth_warmup: Duration::from_millis(500),
            veth_window: Duration::from_millis(1500),
            idle: Duration::from_secs(10),
            many_veth_pairs: 512,
            scrapes: 11,
            attach_counts: vec![1, 50, 200, 1000],
            attach_rounds: 5,
            hotplug_interfaces: 50,
            node_rounds: 11,
            node_json_seconds: 600,
            growth_pairs: 1_000,
            churn_pairs: 1_000,
            churn_node_interfaces: 500,
            churn_cycles: 288,
            scan_frames: 5_000_000,
            scan_rounds: 5,
        }
    }

    fn quick() -> Self {
        Self {
            cost_repeat: 10_000,
            cost_rounds: 1,
            veth_rounds: 1,
            veth_warmup: Duration::from_millis(100),
            veth_window: Duration::from_millis(300),
            idle: Duration::from_millis(500),
            many_veth_pairs: 64,
            scrapes: 2,
            attach_counts: vec![1, 3],
            attach_rounds: 1,
            hotplug_interfaces: 2,
            node_rounds: 1,
            node_json_seconds: 30,
            // The goal's burst: quick runs measure it too.
            growth_pairs: 1_000,
            churn_pairs: 20,
            churn_node_interfaces: 500,
            churn_cycles: 6,
            scan_frames: 100_000,
            scan_rounds: 1,
        }
    }
}

/// xdp-filter keeps its state in bpffs. Mount one in a mount namespace of this process's own, so
/// the host's mounts are left as they are. Must run before any thread starts.
fn private_bpffs() -> anyhow::Result<()> {
    // SAFETY: plain syscalls with valid C strings; the process is still single-threaded.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            bail!("unshare(CLONE_NEWNS): {}", std::io::Error::last_os_error());
        }
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            ptr::null(),
        ) != 0
        {
            bail!("make / private: {}", std::io::Error::last_os_error());
        }
        if libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            ptr::null(),
        ) != 0
        {
            bail!("mount bpffs: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What `measure` gives when `wanted`, said as it starts; nothing otherwise.
fn measured<T>(
    wanted: bool,
    what: &str,
    measure: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<Option<T>> {
    if !wanted {
        return Ok(None);
    }
    eprintln!("bench: {what}");
    measure().map(Some)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    private_bpffs()?;
    let probe_binary = args
        .probe_binary
        .to_str()
        .context("the probe binary's path is not UTF-8")?;
    let plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };

    let wanted = |section| args.sections.is_empty() || args.sections.contains(&section);
    let kernel_cost = measured(
        wanted(Section::Kernel),
        "in-kernel cost per frame (BPF_PROG_TEST_RUN)",
        || kernel_cost::measure(&plan),
    )?;
    let mut not_measured = Vec::new();
    let throughput = match measured(wanted(Section::Veth), "veth throughput", || {
        throughput::measure(&plan, probe_binary)
    })? {
        Some(Ok(throughput)) => Some(throughput),
        Some(Err(refused)) => {
            eprintln!("bench: veth throughput not measured: {refused}");
            not_measured.push(report::NotMeasured {
                section: "veth throughput",
                why: refused.to_string(),
            });
            None
        }
        None => None,
    };
    let userspace = measured(wanted(Section::Userspace), "userspace footprint", || {
        userspace::measure(&plan, probe_binary)
    })?;
    let startup = measured(wanted(Section::Startup), "start-up time and memory", || {
        startup::measure(&plan, probe_binary)
    })?;
    let hotplug = measured(wanted(Section::Hotplug), "hot-plug latency", || {
        hotplug::measure(&plan, probe_binary)
    })?;

    let node = measured(wanted(Section::Node), "a busy node's telemetry", || {
        node::measure(&plan, probe_binary)
    })?;

    let scan = measured(wanted(Section::Scan), "scan against tcpdump -r", || {
        scan::measure(&plan, probe_binary)
    })?;

    let report = report::Report::new(
        plan,
        report::Sections {
            kernel_cost,
            throughput,
            userspace,
            startup,
            hotplug,
            node,
            scan,
            not_measured,
        },
    )?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let markdown = report.markdown();
    std::fs::write(args.out.join("report.md"), &markdown)?;
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{markdown}");
    eprintln!(
        "bench: wrote {} and {}",
        args.out.join("report.md").display(),
        args.out.join("report.json").display()
    );
    Ok(())
}
