//! The embedded object run in the kernel with BPF_PROG_TEST_RUN: verdicts and counter deltas
//! for every case of the shared table, in monitor and drop mode, at XDP and at tcx ingress and
//! egress. Needs root.

use aya::{
    maps::{MapData, RingBuf},
    programs::{TestRun as _, TestRunOptions},
};
use std::net::Ipv4Addr;

use probe_common::{
    Action, Counter, Framing, LINEAR_FRAME_MAX, LoopbackMatch, Mode, SampleCounts, SlotCounters,
};
use probe_user::{
    output::samples::{Clock, SampledFrame},
    probe::attachment::Direction,
    probe::{LoadOptions, Probe, attachment::XdpPrograms},
};
use test_frames::Case;
use testbed::xdp_md;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// `lo`: test runs take the ingress interface from the context, and it must exist.
const IFINDEX: u32 = 1;

fn run(probe: &Probe, frame: &[u8], repeat: u32) -> u32 {
    run_program(probe, Framing::Ethernet, frame, repeat)
}

fn run_program(probe: &Probe, program: Framing, frame: &[u8], repeat: u32) -> u32 {
    let md = xdp_md(frame.len(), IFINDEX);
    let mut options = TestRunOptions::new();
    options.data_in = Some(frame);
    options.ctx_in = Some(&md);
    options.repeat = repeat;
    probe
        .program(program)
        .test_run(options)
        .expect("BPF_PROG_TEST_RUN (are you root?)")
        .return_value
}

/// The shared cases the kernel can run: BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet
/// header (the host tests cover those).
fn cases() -> Vec<Case> {
    test_frames::cases()
        .into_iter()
        .filter(|case| case.frame.len() >= 14)
        .collect()
}

/// The shared case named `name`.
fn case(name: &str) -> Case {
    cases()
        .into_iter()
        .find(|case| case.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

fn load() -> Probe {
    load_sampling(4, 0)
}

fn load_sampling(capacity: u32, sample_rate: u32) -> Probe {
    Probe::load(options(capacity, sample_rate))
        .expect("load the embedded XDP object (are you root?)")
}

fn options(capacity: u32, sample_rate: u32) -> LoadOptions {
    LoadOptions {
        capacity,
        bound: capacity,
        verifier_log: true,
        sample_rate,
        xdp: XdpPrograms::MultiBuffer,
    }
}

/// Every sample in the ring now.
fn samples_in(ring: &mut RingBuf<MapData>) -> Vec<SampledFrame> {
    let clock = Clock::now();
    let mut samples = Vec::new();
    while let Some(record) = ring.next() {
        samples.push(SampledFrame::from_record(&record, &clock).expect("a decodable sample"));
    }
    samples
}

fn counters_of(probe: &mut Probe, ifindex: u32) -> SlotCounters {
    probe
        .counters()
        .expect("read counters")
        .remove(&ifindex)
        .expect("a configured interface")
}

fn counters(probe: &mut Probe) -> SlotCounters {
    counters_of(probe, IFINDEX)
}

/// Asserts `after` is `before` plus `packets` frames of `len` bytes in one class, nothing else.
fn assert_delta(
    name: &str,
    before: &SlotCounters,
    after: &SlotCounters,
    class: Option<(LoopbackMatch, Action)>,
    packets: u64,
    len: usize,
) {
    for matched in LoopbackMatch::all() {
        for action in Action::ALL {
            let mut expected = before.get(matched, action);
            if class == Some((matched, action)) {
                expected.add(Counter {
                    packets,
                    bytes: packets * len as u64,
                });
            }
            assert_eq!(
                after.get(matched, action),
                expected,
                "{name}: counter {matched:?}/{action:?}"
            );
        }
    }
}

fn check_every_case(mode: Mode) {
    let mut probe = load();
    probe.configure(IFINDEX, mode).expect("configure");
    let (action, verdict) = match mode {
        Mode::Monitor => (Action::Passed, XDP_PASS),
        Mode::Drop => (Action::Dropped, XDP_DROP),
    };
    for case in cases() {
        let before = counters(&mut probe);
        let got = run(&probe, &case.frame, 1);
        let after = counters(&mut probe);
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
        assert_delta(case.name, &before, &after, class, 1, case.frame.len());
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
fn repeated_runs_are_counted_exactly() {
    let mut probe = load();
    probe.configure(IFINDEX, Mode::Drop).expect("configure");
    let matching: Vec<_> = cases()
        .into_iter()
        .filter(|c| c.expected.is_some())
        .collect();
    for case in &matching {
        let before = counters(&mut probe);
        assert_eq!(run(&probe, &case.frame, 10_000), XDP_DROP, "{}", case.name);
        let class = case.expected.map(|matched| (matched, Action::Dropped));
        let after = counters(&mut probe);
        assert_delta(case.name, &before, &after, class, 10_000, case.frame.len());
    }
}

/// The longest frame a test run keeps in one buffer: a page less XDP's headroom and the room for
/// `skb_shared_info` (320 bytes on x86-64); it hands the rest of a longer one over as a fragment,
/// which a program without multi-buffer does not see.
const TEST_RUN_ONE_BUFFER_MAX: usize = 4096 - 256 - 320;

/// The programs for frames in one buffer find a frame's length by successive approximation:
/// every length from the shortest IPv4 frame to the longest one buffer of a test run holds is
/// counted to the byte (each step of the approximation taken and not taken).
#[test]
#[ignore = "needs root"]
fn one_buffer_programs_count_every_length_to_the_byte() {
    let mut probe = Probe::load(LoadOptions {
        xdp: XdpPrograms::Linear,
        ..options(4, 0)
    })
    .expect("load the embedded XDP object (are you root?)");
    probe.configure(IFINDEX, Mode::Monitor).expect("configure");
    let frame_of = |payload: usize| {
        test_frames::ipv4(Ipv4Addr::LOCALHOST, Ipv4Addr::new(198, 18, 0, 2))
            .payload(&vec![0x5a; payload])
            .build()
    };
    let shortest = frame_of(0).len();
    let (mut packets, mut bytes) = (0, 0);
    for len in shortest..=TEST_RUN_ONE_BUFFER_MAX.min(LINEAR_FRAME_MAX as usize) {
        let frame = frame_of(len - shortest);
        assert_eq!(frame.len(), len);
        assert_eq!(run(&probe, &frame, 1), XDP_PASS, "{len} bytes");
        packets += 1;
        bytes += len as u64;
    }
    let counted = counters(&mut probe);
    let matched = LoopbackMatch::all()
        .map(|matched| counted.get(matched, Action::Passed))
        .fold(Counter::default(), |mut total, counter| {
            total.add(counter);
            total
        });
    assert_eq!(matched, Counter { packets, bytes });
}

#[test]
#[ignore = "needs root"]
fn mode_changes_without_reattaching() {
    let mut probe = load();
    let case = case("ipv4 loopback destination");
    probe.configure(IFINDEX, Mode::Drop).expect("configure");
    assert_eq!(run(&probe, &case.frame, 3), XDP_DROP);
    probe
        .configure(IFINDEX, Mode::Monitor)
        .expect("reconfigure");
    assert_eq!(run(&probe, &case.frame, 5), XDP_PASS);
    let matched = case.expected.expect("a matching case");
    let counters = counters(&mut probe);
    assert_eq!(counters.get(matched, Action::Dropped).packets, 3);
    assert_eq!(counters.get(matched, Action::Passed).packets, 5);
    assert_eq!(total_packets(&counters), 8);
}

#[test]
#[ignore = "needs root"]
fn unconfigured_interfaces_pass_uncounted() {
    let mut probe = load();
    // A different interface is configured; frames on IFINDEX find no entry.
    probe
        .configure(IFINDEX + 1_000_000, Mode::Drop)
        .expect("configure");
    for case in cases() {
        assert_eq!(run(&probe, &case.frame, 1), XDP_PASS, "{}", case.name);
    }
    assert_eq!(
        counters_of(&mut probe, IFINDEX + 1_000_000),
        SlotCounters::default()
    );
}

/// Interfaces with an ifindex past the direct array are configured in the hash map; the program
/// must find them there.
#[test]
#[ignore = "needs root"]
fn high_ifindexes_are_configured_too() {
    const HIGH: u32 = 70_000;
    let netns = testbed::Netns::new("high-ifindex");
    netns.ip(&[
        "link",
        "add",
        "hi0",
        "index",
        &HIGH.to_string(),
        "type",
        "veth",
        "peer",
        "name",
        "hi1",
    ]);
    let case = case("ipv6 ::1 source");
    let matched = case.expected.expect("a matching case");
    let mut probe = load();
    probe.configure(HIGH, Mode::Drop).expect("configure");
    let md = xdp_md(case.frame.len(), HIGH);
    let verdict = netns.enter(|| {
        let mut options = TestRunOptions::new();
        options.data_in = Some(&case.frame);
        options.ctx_in = Some(&md);
        options.repeat = 4;
        probe
            .program(Framing::Ethernet)
            .test_run(options)
            .expect("BPF_PROG_TEST_RUN")
            .return_value
    });
    assert_eq!(verdict, XDP_DROP);
    let counters = counters_of(&mut probe, HIGH);
    assert_eq!(counters.get(matched, Action::Dropped).packets, 4);
    assert_eq!(total_packets(&counters), 4);
}

fn total_packets(counters: &SlotCounters) -> u64 {
    counters.classes.iter().map(|counter| counter.packets).sum()
}

/// The program for layer-3 devices gets packets that start at the IP header: every case, its
/// link-layer headers stripped, gets the verdict and the counter the whole frame gets.
#[test]
#[ignore = "needs root"]
fn ip_program_classifies_packets_without_a_link_layer() {
    let mut probe = load();
    probe.configure(IFINDEX, Mode::Drop).expect("configure");
    let mut checked = 0;
    for case in cases() {
        let Some(ip_offset) = test_frames::ip_offset(&case.frame) else {
            continue;
        };
        let packet = &case.frame[ip_offset..];
        // BPF_PROG_TEST_RUN wants at least an Ethernet header's worth of bytes.
        if packet.len() < 14 {
            continue;
        }
        let before = counters(&mut probe);
        let verdict = run_program(&probe, Framing::Ip, packet, 1);
        let after = counters(&mut probe);
        let expected = if case.expected.is_some() {
            XDP_DROP
        } else {
            XDP_PASS
        };
        assert_eq!(verdict, expected, "{} without its link layer", case.name);
        let class = case.expected.map(|matched| (matched, Action::Dropped));
        assert_delta(case.name, &before, &after, class, 1, packet.len());
        checked += 1;
    }
    assert!(checked > 20, "only {checked} cases");
}

/// Interfaces come and go for days: slots are freed with their counters zeroed, and a slot
/// given out again starts from zero, whatever it counted before.
#[test]
#[ignore = "needs root"]
fn slots_are_reused_with_zeroed_counters() {
    let case = case("ipv4 loopback destination");
    let matched = case.expected.expect("a matching case");
    let mut probe = load();
    for round in 0..5_000_u32 {
        // Four slots, cycled through by ever new "interfaces" and the test-run one.
        probe.configure(IFINDEX, Mode::Drop).expect("configure");
        let other = 100_000 + round;
        probe
            .configure(other, Mode::Monitor)
            .expect("configure another");
        assert_eq!(
            counters(&mut probe),
            SlotCounters::default(),
            "round {round}"
        );
        // A test run costs milliseconds: count in some rounds, release counted slots in all.
        let frames = if round % 250 == 0 { 2 } else { 0 };
        if frames > 0 {
            assert_eq!(run(&probe, &case.frame, frames), XDP_DROP);
        }
        let released = probe.release(IFINDEX).expect("release");
        assert_eq!(
            released.get(matched, Action::Dropped).packets,
            u64::from(frames),
            "round {round}"
        );
        assert_eq!(total_packets(&released), u64::from(frames));
        assert_eq!(total_packets(&probe.release(other).expect("release")), 0);
        if frames > 0 {
            // Released: its frames are no longer dropped.
            assert_eq!(run(&probe, &case.frame, 1), XDP_PASS);
        }
    }
    for ifindex in 0..4 {
        probe
            .configure(200_000 + ifindex, Mode::Monitor)
            .expect("configure");
    }
    assert!(
        probe.configure(300_000, Mode::Monitor).is_err(),
        "a fifth interface finds no slot"
    );
}

/// With sampling on, every case gets the verdict and counts it gets with sampling off, and
/// each matched frame sends one sample that says what the counters say, with the frame's first
/// 128 bytes and its whole length.
#[test]
#[ignore = "needs root"]
fn every_matched_case_is_sampled_as_it_is_counted() {
    let mut probe = load_sampling(4, 100_000);
    let mut ring = probe.take_samples().pop().expect("the ring");
    probe.configure(IFINDEX, Mode::Drop).expect("configure");
    for case in cases() {
        let before = counters(&mut probe);
        let verdict = run(&probe, &case.frame, 1);
        let after = counters(&mut probe);
        let samples = samples_in(&mut ring);
        let Some(matched) = case.expected else {
            assert_eq!(verdict, XDP_PASS, "{}", case.name);
            assert!(samples.is_empty(), "{}: sampled", case.name);
            assert_eq!(after, before, "{}", case.name);
            continue;
        };
        assert_eq!(verdict, XDP_DROP, "{}", case.name);
        let class = Some((matched, Action::Dropped));
        assert_delta(case.name, &before, &after, class, 1, case.frame.len());
        assert_eq!(
            after.samples.emitted,
            before.samples.emitted + 1,
            "{}",
            case.name
        );
        assert_eq!(after.samples.lost, 0, "{}", case.name);
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
    }
}

/// The limit holds per second (the loader refills it), and every matched frame is either
/// sampled or suppressed: matched = emitted + lost + suppressed.
#[test]
#[ignore = "needs root"]
fn samples_are_limited_per_interface() {
    let mut probe = load_sampling(4, 5);
    let mut ring = probe.take_samples().pop().expect("the ring");
    probe.configure(IFINDEX, Mode::Monitor).expect("configure");
    let case = case("ipv4 loopback destination");
    assert_eq!(run(&probe, &case.frame, 20), XDP_PASS);
    assert_eq!(samples_in(&mut ring).len(), 5);
    let counted = counters(&mut probe);
    assert_eq!(total_packets(&counted), 20);
    assert_eq!(
        counted.samples,
        SampleCounts {
            emitted: 5,
            lost: 0
        }
    );

    probe.refill_sample_tokens().expect("refill");
    assert_eq!(run(&probe, &case.frame, 3), XDP_PASS);
    assert_eq!(samples_in(&mut ring).len(), 3);
    assert_eq!(counters(&mut probe).samples.emitted, 8);
}

/// A ring nobody reads fills up: the samples that no longer fit are counted as lost, and the
/// frames are still counted and judged.
#[test]
#[ignore = "needs root"]
fn samples_that_find_the_ring_full_are_counted_as_lost() {
    const FRAMES: u32 = 60_000;
    let mut probe = load_sampling(1, 100_000);
    let mut ring = probe.take_samples().pop().expect("the ring");
    probe.configure(IFINDEX, Mode::Drop).expect("configure");
    let case = case("ipv6 ::1 source");
    assert_eq!(run(&probe, &case.frame, FRAMES), XDP_DROP);
    let counted = counters(&mut probe);
    assert_eq!(total_packets(&counted), u64::from(FRAMES));
    let SampleCounts { emitted, lost } = counted.samples;
    assert_eq!(emitted + lost, u64::from(FRAMES));
    assert!(lost > 0, "the ring never filled: {emitted} sent");
    assert_eq!(samples_in(&mut ring).len() as u64, emitted);
}

/// The layer-3 program's samples start at the IP header and say so.
#[test]
#[ignore = "needs root"]
fn ip_program_samples_start_at_the_ip_header() {
    let mut probe = load_sampling(4, 10);
    let mut ring = probe.take_samples().pop().expect("the ring");
    probe.configure(IFINDEX, Mode::Monitor).expect("configure");
    let case = case("ipv4 loopback destination");
    let packet = &case.frame[test_frames::ip_offset(&case.frame).expect("an IP frame")..];
    assert_eq!(run_program(&probe, Framing::Ip, packet, 1), XDP_PASS);
    let samples = samples_in(&mut ring);
    let [sample] = samples.as_slice() else {
        panic!("{} samples", samples.len());
    };
    assert_eq!(sample.framing, Framing::Ip);
    assert_eq!(&sample.captured[..], packet);
    assert_eq!(
        sample.headers.destination_ip,
        Some(std::net::Ipv4Addr::new(127, 0, 0, 1).into())
    );
}

/// `TCX_NEXT` and `TCX_DROP`, the tcx programs' verdicts.
const TCX_NEXT: i32 = -1;
const TCX_DROP: i32 = 2;

/// Runs a tcx program once on `frame` as a socket buffer of `lo` (the interface when the
/// context gives none).
fn run_tcx(probe: &Probe, direction: Direction, program: Framing, frame: &[u8]) -> i32 {
    let mut options = TestRunOptions::new();
    options.data_in = Some(frame);
    probe
        .classifier(direction, program)
        .test_run(options)
        .expect("BPF_PROG_TEST_RUN (are you root?)")
        .return_value as i32
}

/// The frames a case's program gets: whole for the Ethernet programs, from the IP header on for
/// the layer-3 ones; `None` for those BPF_PROG_TEST_RUN refuses as a socket buffer: shorter than
/// an Ethernet header, or with an IPv4 or IPv6 ethertype (bytes 12–13, which it reads whatever
/// the framing) and less than that header after it. (The XDP tests and the host tests run them.)
fn framed(case: &Case, program: Framing) -> Option<&[u8]> {
    let frame = match program {
        Framing::Ethernet => &case.frame[..],
        Framing::Ip => &case.frame[test_frames::ip_offset(&case.frame)?..],
    };
    let needed = match frame.get(12..14)? {
        [0x08, 0x00] => 14 + 20,
        [0x86, 0xdd] => 14 + 40,
        _ => 14,
    };
    (frame.len() >= needed).then_some(frame)
}

/// At tcx ingress, beside another XDP program, every case gets the verdict and the counter the
/// XDP program gives it, in both modes and both framings: `TCX_DROP` for a matched frame in drop
/// mode, `TCX_NEXT` (hand on to the next program) otherwise, never `TCX_PASS`, which would skip
/// the programs after it.
#[test]
#[ignore = "needs root"]
fn tcx_ingress_classifies_and_counts_as_xdp_does() {
    let mut probe = load();
    for mode in [Mode::Monitor, Mode::Drop] {
        probe.configure(IFINDEX, mode).expect("configure");
        for program in Framing::ALL {
            let mut checked = 0;
            for case in cases() {
                let Some(frame) = framed(&case, program) else {
                    continue;
                };
                let before = counters(&mut probe);
                let verdict = run_tcx(&probe, Direction::Ingress, program, frame);
                let after = counters(&mut probe);
                let expected = match (case.expected, mode) {
                    (Some(_), Mode::Drop) => TCX_DROP,
                    _ => TCX_NEXT,
                };
                assert_eq!(verdict, expected, "{} ({program:?}, {mode:?})", case.name);
                let class = case.expected.map(|matched| (matched, mode.action()));
                assert_delta(case.name, &before, &after, class, 1, frame.len());
                checked += 1;
            }
            assert!(checked > 20, "only {checked} cases for {program:?}");
        }
    }
}

/// At tcx egress, every case is handed on, whatever the mode; those with a loopback source (or
/// both addresses loopback), and ARP with a loopback address on either side, are counted as
/// replied, and nothing else is.
#[test]
#[ignore = "needs root"]
fn tcx_egress_counts_loopback_sources_as_replies_and_drops_nothing() {
    let mut probe = load_sampling(4, 1000);
    let mut ring = probe.take_samples().pop().expect("sampling is on");
    probe.configure(IFINDEX, Mode::Drop).expect("configure");
    let mut replies = 0;
    for program in Framing::ALL {
        for case in cases() {
            let Some(frame) = framed(&case, program) else {
                continue;
            };
            let before = counters(&mut probe);
            let verdict = run_tcx(&probe, Direction::Egress, program, frame);
            let after = counters(&mut probe);
            assert_eq!(verdict, TCX_NEXT, "{} ({program:?})", case.name);
            let class = case
                .expected
                .filter(|matched| matched.counted_leaving())
                .map(|matched| (matched, Action::Replied));
            assert_delta(case.name, &before, &after, class, 1, frame.len());
            if let Some((matched, _)) = class {
                replies += 1;
                let samples = samples_in(&mut ring);
                assert_eq!(samples.len(), 1, "{}: one sample", case.name);
                assert_eq!(samples[0].action, Action::Replied);
                assert_eq!(samples[0].matched, matched);
                assert_eq!(samples[0].frame_len as usize, frame.len());
            }
        }
    }
    assert!(replies > 10, "only {replies} replies");
    assert!(samples_in(&mut ring).is_empty(), "no sample but of replies");
}

/// A small deterministic generator (xorshift64*), so a failure names a seed that repeats it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Frames nobody chose: random bytes shaped just enough to reach the classifier's every branch
/// (ethertypes, tags, versions, IHLs, loopback addresses, lengths around each header's end),
/// and the shared cases with bytes flipped or cut.
fn frames_nobody_chose(rng: &mut Rng, count: usize) -> Vec<Vec<u8>> {
    const ETHERTYPES: [[u8; 2]; 6] = [
        [0x08, 0x00],
        [0x86, 0xdd],
        [0x81, 0x00],
        [0x88, 0xa8],
        [0x91, 0x00],
        [0x08, 0x06],
    ];
    let cases = test_frames::cases();
    (0..count)
        .map(|_| {
            let mut frame: Vec<u8> = if rng.chance(2) {
                let case = &cases[rng.below(cases.len())];
                let mut frame = case.frame.clone();
                for _ in 0..1 + rng.below(4) {
                    if !frame.is_empty() {
                        let at = rng.below(frame.len());
                        frame[at] = rng.next() as u8;
                    }
                }
                frame
            } else {
                let len = 14 + rng.below(120);
                let mut frame: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let mut at = 12;
                for _ in 0..rng.below(4) {
                    if at + 2 > frame.len() {
                        break;
                    }
                    frame[at..at + 2].copy_from_slice(&ETHERTYPES[rng.below(ETHERTYPES.len())]);
                    at += 4;
                }
                // Right after the last ethertype written.
                let l3 = at - 2;
                if let Some(first) = frame.get_mut(l3) {
                    *first = [0x45, 0x46, 0x4f, 0x44, 0x60, 0x65][rng.below(6)];
                }
                // Loopback addresses where IPv4 and IPv6 keep theirs.
                for offset in [12, 16, 8, 24] {
                    if rng.chance(3) {
                        if let Some(byte) = frame.get_mut(l3 + offset) {
                            *byte = 127;
                        }
                    }
                }
                if rng.chance(4) && frame.len() >= l3 + 40 {
                    let side = if rng.chance(2) { 8 } else { 24 };
                    frame[l3 + side..l3 + side + 16].copy_from_slice(
                        &[&[0; 10][..], &[0xff, 0xff, 127, rng.next() as u8, 0, 1]].concat(),
                    );
                    if rng.chance(2) {
                        frame[l3 + side..l3 + side + 16]
                            .copy_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
                    }
                }
                frame
            };
            if rng.chance(4) && frame.len() > 14 {
                let keep = 14 + rng.below(frame.len() - 13);
                frame.truncate(keep);
            }
            frame
        })
        .filter(|frame| frame.len() >= 14)
        .collect()
}

/// Differential: 10,000 and more frames nobody chose, through the real object in the kernel at
/// XDP and at tcx ingress, in drop mode, get exactly the verdict and, class by class, the counts
/// the host classifier gives them.
#[test]
#[ignore = "needs root"]
fn frames_nobody_chose_get_the_host_classifiers_verdict_and_class_in_the_kernel() {
    let seed = 0x6c6e_7072_6f62_6531;
    let frames = frames_nobody_chose(&mut Rng(seed), 12_000);
    assert!(frames.len() >= 10_000, "only {} frames", frames.len());
    let matched = frames
        .iter()
        .filter(|frame| probe_common::classify(&frame[..]).is_some())
        .count();
    assert!(
        matched > frames.len() / 10 && matched < frames.len() * 9 / 10,
        "{matched} of {} match: the generator lost its shape",
        frames.len()
    );
    for hook in ["xdp", "tcx"] {
        let mut probe = load();
        probe.configure(IFINDEX, Mode::Drop).expect("configure");
        let mut expected = SlotCounters::default();
        let mut ran = 0;
        for (index, frame) in frames.iter().enumerate() {
            let class = probe_common::classify(&frame[..]);
            let verdict_matches = if hook == "xdp" {
                let verdict = run(&probe, frame, 1);
                verdict == if class.is_some() { XDP_DROP } else { XDP_PASS }
            } else {
                // The frames BPF_PROG_TEST_RUN refuses as a socket buffer (see `framed`).
                let case = Case {
                    name: "generated",
                    frame: frame.clone(),
                    expected: class,
                };
                let Some(frame) = framed(&case, Framing::Ethernet) else {
                    continue;
                };
                let verdict = run_tcx(&probe, Direction::Ingress, Framing::Ethernet, frame);
                verdict == if class.is_some() { TCX_DROP } else { TCX_NEXT }
            };
            assert!(
                verdict_matches,
                "{hook}: frame {index} of seed {seed:#x} ({frame:02x?}): not the verdict of {class:?}"
            );
            if let Some(matched) = class {
                let mut counter = expected.get(matched, Action::Dropped);
                counter.add(Counter {
                    packets: 1,
                    bytes: frame.len() as u64,
                });
                expected.classes[probe_common::class_index(matched, Action::Dropped)] = counter;
            }
            ran += 1;
        }
        assert!(ran >= 10_000, "{hook}: only {ran} frames ran");
        let counted = counters(&mut probe);
        assert_eq!(
            counted.classes, expected.classes,
            "{hook}: the kernel's counts, class by class, are the host's"
        );
    }
}
