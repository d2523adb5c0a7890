//! The embedded XDP object run in the kernel with BPF_PROG_TEST_RUN: verdicts and counter deltas
//! for every case of the shared table, in monitor and drop mode. Needs root.

use aya::programs::{TestRun as _, TestRunOptions};
use probe_common::{Action, Counter, LoopbackMatch, Mode};
use probe_user::probe::{InterfaceCounters, Probe};
use test_frames::Case;
use testbed::xdp_md;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// `lo`: test runs take the ingress interface from the context, and it must exist.
const IFINDEX: u32 = 1;

fn run(probe: &Probe, frame: &[u8], repeat: u32) -> u32 {
    let md = xdp_md(frame.len(), IFINDEX);
    let mut options = TestRunOptions::new();
    options.data_in = Some(frame);
    options.ctx_in = Some(&md);
    options.repeat = repeat;
    probe
        .program()
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

fn load() -> Probe {
    Probe::load(true).expect("load the embedded XDP object (are you root?)")
}

fn counters(probe: &Probe) -> InterfaceCounters {
    probe.counters(IFINDEX).expect("read counters")
}

/// Asserts `after` is `before` plus `packets` frames of `len` bytes in one class, nothing else.
fn assert_delta(
    name: &str,
    before: &InterfaceCounters,
    after: &InterfaceCounters,
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
        let before = counters(&probe);
        let got = run(&probe, &case.frame, 1);
        let after = counters(&probe);
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
fn every_case_in_monitor_mode() {
    check_every_case(Mode::Monitor);
}

#[test]
fn every_case_in_drop_mode() {
    check_every_case(Mode::Drop);
}

#[test]
fn repeated_runs_are_counted_exactly() {
    let mut probe = load();
    probe.configure(IFINDEX, Mode::Drop).expect("configure");
    let matching: Vec<_> = cases()
        .into_iter()
        .filter(|c| c.expected.is_some())
        .collect();
    for case in &matching {
        let before = counters(&probe);
        assert_eq!(run(&probe, &case.frame, 10_000), XDP_DROP, "{}", case.name);
        let class = case.expected.map(|matched| (matched, Action::Dropped));
        assert_delta(
            case.name,
            &before,
            &counters(&probe),
            class,
            10_000,
            case.frame.len(),
        );
    }
}

#[test]
fn mode_changes_without_reattaching() {
    let mut probe = load();
    let case = cases()
        .into_iter()
        .find(|c| c.name == "ipv4 loopback destination")
        .expect("case exists");
    probe.configure(IFINDEX, Mode::Drop).expect("configure");
    assert_eq!(run(&probe, &case.frame, 3), XDP_DROP);
    probe
        .configure(IFINDEX, Mode::Monitor)
        .expect("reconfigure");
    assert_eq!(run(&probe, &case.frame, 5), XDP_PASS);
    let matched = case.expected.expect("a matching case");
    let counters = counters(&probe);
    assert_eq!(counters.get(matched, Action::Dropped).packets, 3);
    assert_eq!(counters.get(matched, Action::Passed).packets, 5);
    assert_eq!(counters.total(None).packets, 8);
}

#[test]
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
        probe
            .counters(IFINDEX + 1_000_000)
            .expect("read")
            .total(None),
        Counter::default()
    );
}

/// Interfaces with an ifindex past the direct array are configured in the hash map; the program
/// must find them there.
#[test]
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
    let case = cases()
        .into_iter()
        .find(|c| c.name == "ipv6 ::1 source")
        .expect("case exists");
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
            .program()
            .test_run(options)
            .expect("BPF_PROG_TEST_RUN")
            .return_value
    });
    assert_eq!(verdict, XDP_DROP);
    let counters = probe.counters(HIGH).expect("read counters");
    assert_eq!(counters.get(matched, Action::Dropped).packets, 4);
    assert_eq!(counters.total(None).packets, 4);
}
