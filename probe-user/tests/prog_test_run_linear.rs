//! The XDP programs without multi-buffer (`localnet_probe_linear`, `localnet_probe_linear_ip`),
//! for kernels before 5.18 and for devices whose frames fit one buffer, run with
//! BPF_PROG_TEST_RUN: the same verdicts, counters and samples as the multi-buffer ones, for
//! every case of the shared table. Loaded with CAP_BPF and CAP_NET_ADMIN only, without
//! CAP_SYS_ADMIN and CAP_PERFMON: the frame's length comes from constant steps along the frame,
//! not from `data_end - data`, which the verifier allows only with CAP_PERFMON. Needs root.
//!
//! The loader does not choose these programs yet, so this test loads the embedded object itself
//! and reads and writes its maps as the loader does.

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use probe_common::{
    Action, CLASSES_PER_INTERFACE, Counter, Framing, IfaceConfig, LoopbackMatch, Mode, counter_key,
};
use probe_user::{
    PROBE_OBJECT,
    output::samples::{Clock, SampledFrame},
};
use test_frames::Case;
use testbed::xdp_md;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// `lo`: test runs take the ingress interface from the context, and it must exist.
const IFINDEX: u32 = 1;
const SLOT: u32 = 0;
const ETHERNET: &str = "localnet_probe_linear";
const IP: &str = "localnet_probe_linear_ip";

/// Linux capability numbers.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// This thread's capability sets (capabilities are per thread).
fn capabilities() -> [CapData; 2] {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a version 3 header and room for its two data words.
    let result = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    assert_eq!(result, 0, "capget: {}", std::io::Error::last_os_error());
    data
}

fn set_capabilities(data: &[CapData; 2]) {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: a version 3 header and its two data words.
    let result = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    assert_eq!(result, 0, "capset: {}", std::io::Error::last_os_error());
}

/// Runs `f` with `capabilities` out of this thread's effective set, and puts them back (they
/// stay permitted).
fn without<T>(capabilities_left_out: &[u32], f: impl FnOnce() -> T) -> T {
    let saved = capabilities();
    let mut reduced = saved;
    for capability in capabilities_left_out {
        reduced[(capability / 32) as usize].effective &= !(1 << (capability % 32));
    }
    set_capabilities(&reduced);
    let result = f();
    set_capabilities(&saved);
    result
}

/// The embedded object with its maps sized for one interface, sampling on when `sampling`.
fn load_object(sampling: bool) -> Ebpf {
    EbpfLoader::new()
        .override_global("SAMPLING", &u8::from(sampling), true)
        .map_max_entries("COUNTERS", CLASSES_PER_INTERFACE as u32)
        .map_max_entries("SAMPLE_COUNTS", 1)
        .map_max_entries("SAMPLES", 1 << 16)
        .load(PROBE_OBJECT)
        .expect("load the embedded object")
}

fn load_program(ebpf: &mut Ebpf, name: &str) -> Result<(), aya::programs::ProgramError> {
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .unwrap_or_else(|| panic!("no {name} in the object"))
        .try_into()
        .expect("an XDP program");
    program.load()
}

/// The embedded object with the linear programs loaded and one interface (`lo`) configured.
struct Linear {
    ebpf: Ebpf,
    counters: PerCpuArray<MapData, Counter>,
    samples: RingBuf<MapData>,
}

impl Linear {
    fn load(mode: Mode, sample_tokens: i64) -> Self {
        let mut ebpf = without(&[CAP_SYS_ADMIN, CAP_PERFMON], || {
            let mut ebpf = load_object(sample_tokens > 0);
            for name in [ETHERNET, IP] {
                load_program(&mut ebpf, name)
                    .unwrap_or_else(|error| panic!("{name} refused: {error:?}"));
            }
            ebpf
        });
        let mut config: Array<MapData, IfaceConfig> =
            Array::try_from(ebpf.take_map("IFACE_CONFIG").expect("IFACE_CONFIG")).expect("array");
        config
            .set(IFINDEX, IfaceConfig::new(SLOT, mode, sample_tokens), 0)
            .expect("configure");
        let counters =
            PerCpuArray::try_from(ebpf.take_map("COUNTERS").expect("COUNTERS")).expect("array");
        let samples = RingBuf::try_from(ebpf.take_map("SAMPLES").expect("SAMPLES")).expect("ring");
        Self {
            ebpf,
            counters,
            samples,
        }
    }

    fn run(&self, program: &str, frame: &[u8]) -> u32 {
        let md = xdp_md(frame.len(), IFINDEX);
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.ctx_in = Some(&md);
        let program: &Xdp = self
            .ebpf
            .program(program)
            .expect("loaded")
            .try_into()
            .expect("an XDP program");
        program
            .test_run(options)
            .expect("BPF_PROG_TEST_RUN")
            .return_value
    }

    /// A class's counter, the CPUs summed.
    fn counter(&self, matched: LoopbackMatch, action: Action) -> Counter {
        let per_cpu = self
            .counters
            .get(&counter_key(SLOT, matched, action), 0)
            .expect("read a counter");
        let mut sum = Counter::default();
        for counter in per_cpu.iter() {
            sum.add(*counter);
        }
        sum
    }

    fn all_counters(&self) -> Counters {
        LoopbackMatch::all()
            .flat_map(|matched| Action::ALL.map(|action| (matched, action)))
            .map(|(matched, action)| ((matched, action), self.counter(matched, action)))
            .collect()
    }

    fn samples(&mut self) -> Vec<SampledFrame> {
        let clock = Clock::now();
        let mut samples = Vec::new();
        while let Some(record) = self.samples.next() {
            samples.push(SampledFrame::from_record(&record, &clock).expect("a decodable sample"));
        }
        samples
    }
}

/// The shared cases the kernel can run: BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet
/// header.
fn cases() -> Vec<Case> {
    test_frames::cases()
        .into_iter()
        .filter(|case| case.frame.len() >= 14)
        .collect()
}

/// Every class's counter, in one order.
type Counters = Vec<((LoopbackMatch, Action), Counter)>;

/// `before` with one frame of `len` bytes more in `class`.
fn plus_one(before: &Counters, class: Option<(LoopbackMatch, Action)>, len: usize) -> Counters {
    let mut expected = before.clone();
    for (key, counter) in &mut expected {
        if class == Some(*key) {
            counter.add(Counter {
                packets: 1,
                bytes: len as u64,
            });
        }
    }
    expected
}

fn check_every_case(mode: Mode) {
    let linear = Linear::load(mode, 0);
    let (action, verdict) = match mode {
        Mode::Monitor => (Action::Passed, XDP_PASS),
        Mode::Drop => (Action::Dropped, XDP_DROP),
    };
    for case in cases() {
        let before = linear.all_counters();
        let got = linear.run(ETHERNET, &case.frame);
        let expected_verdict = if case.expected.is_some() {
            verdict
        } else {
            XDP_PASS
        };
        assert_eq!(
            got, expected_verdict,
            "{}: verdict in {mode:?} mode",
            case.name
        );
        let class = case.expected.map(|matched| (matched, action));
        assert_eq!(
            linear.all_counters(),
            plus_one(&before, class, case.frame.len()),
            "{}: counters in {mode:?} mode",
            case.name
        );
    }
}

#[test]
#[ignore = "needs root"]
fn every_case_in_monitor_mode() {
    check_every_case(Mode::Monitor);
}

#[test]
#[ignore = "needs root"]
fn every_case_in_drop_mode() {
    check_every_case(Mode::Drop);
}

#[test]
#[ignore = "needs root"]
fn ip_program_classifies_packets_without_a_link_layer() {
    let linear = Linear::load(Mode::Drop, 0);
    let mut checked = 0;
    for case in cases() {
        let Some(ip_offset) = test_frames::ip_offset(&case.frame) else {
            continue;
        };
        let packet = &case.frame[ip_offset..];
        if packet.len() < 14 {
            continue;
        }
        let before = linear.all_counters();
        let verdict = linear.run(IP, packet);
        let expected = if case.expected.is_some() {
            XDP_DROP
        } else {
            XDP_PASS
        };
        assert_eq!(verdict, expected, "{} without its link layer", case.name);
        let class = case.expected.map(|matched| (matched, Action::Dropped));
        assert_eq!(
            linear.all_counters(),
            plus_one(&before, class, packet.len()),
            "{} without its link layer",
            case.name
        );
        checked += 1;
    }
    assert!(checked > 20, "only {checked} cases");
}

/// The copy into the sample, written out byte by byte, takes exactly the frame's first 128
/// bytes, or all of a shorter one.
#[test]
#[ignore = "needs root"]
fn every_matched_case_is_sampled_whole_up_to_128_bytes() {
    let mut linear = Linear::load(Mode::Drop, i64::MAX);
    let mut sampled = 0;
    for case in cases() {
        let verdict = linear.run(ETHERNET, &case.frame);
        let samples = linear.samples();
        let Some(matched) = case.expected else {
            assert_eq!(verdict, XDP_PASS, "{}", case.name);
            assert!(samples.is_empty(), "{}: sampled", case.name);
            continue;
        };
        assert_eq!(verdict, XDP_DROP, "{}", case.name);
        let [sample] = samples.as_slice() else {
            panic!("{}: {} samples", case.name, samples.len());
        };
        assert_eq!(sample.ifindex, IFINDEX, "{}", case.name);
        assert_eq!(sample.matched, matched, "{}", case.name);
        assert_eq!(sample.action, Action::Dropped, "{}", case.name);
        assert_eq!(sample.framing, Framing::Ethernet, "{}", case.name);
        assert_eq!(sample.frame_len as usize, case.frame.len(), "{}", case.name);
        let captured = case.frame.len().min(128);
        assert_eq!(
            &sample.captured[..],
            &case.frame[..captured],
            "{}",
            case.name
        );
        sampled += 1;
    }
    assert!(sampled > 10, "only {sampled} matched cases");
}

/// Where multi-buffer is missing, the probe needs no more than where it is: both programs load
/// without CAP_PERFMON with sampling off, where the length is counted only, as with it on.
#[test]
#[ignore = "needs root"]
fn both_programs_load_without_cap_perfmon_with_sampling_off_and_on() {
    for sampling in [false, true] {
        without(&[CAP_SYS_ADMIN, CAP_PERFMON], || {
            let mut ebpf = load_object(sampling);
            for name in [ETHERNET, IP] {
                load_program(&mut ebpf, name).unwrap_or_else(|error| {
                    panic!("{name} refused with sampling {sampling}: {error:?}")
                });
            }
        });
    }
}
