//! Hot-plug: how soon `run --iface PATTERN` counts loopback frames on an interface created while
//! it runs.
//!
//! The probe serves a namespace of its own. Each interface is one end of a veth pair made in a
//! second namespace, where the other end stays, up, with a raw socket open on it; then one
//! `ip link set … netns … up` moves the interface, matching the pattern, into the probe's
//! namespace and sets it up. The interface appears there, up, during that call (moving takes the
//! kernel milliseconds), and frames can reach it at once. From when the call returns a
//! loopback-addressed frame is sent from the peer every [`SEND_EVERY`] until a report counts one
//! (or [`BOUND`] has passed). Once the sending has stopped and a report made after it says how
//! many frames were counted, those are the last ones sent — the program sees every frame from its
//! attachment on — so the first of them is known, and when its `sendto` returned. The frame before
//! it was sent unattached, so the attachment came within one send period before; when the first
//! frame is counted, the program was attached before it went out, maybe during the call.
//!
//! The latency is taken from the start of the call, before which the interface was not there:
//! an upper bound, by at most the call's duration, which is given too, as is the time from its
//! return.

use std::{
    net::Ipv4Addr,
    sync::mpsc::RecvTimeoutError,
    time::{Duration, Instant},
};

use anyhow::bail;
use serde::Serialize;
use serde_json::Value;
use testbed::{Netns, ProbeProcess, RawSender, SENDER_V4};

use crate::{Plan, stats::Summary, userspace::stop};

/// What the interfaces are named: `hp<i>`, their peers `hq<i>`.
const PATTERN: &str = "hp*";
/// The probe's `--interval`: a report every 50 ms, so one that counts a frame comes soon.
const INTERVAL: Duration = Duration::from_millis(50);
/// A loopback frame goes out this often on a new interface until one is counted...
const SEND_EVERY: Duration = Duration::from_millis(1);
/// ... for at most this long after it was moved in: at most `BOUND / SEND_EVERY` frames.
const BOUND: Duration = Duration::from_secs(3);
/// Reports read after the sending stops before the count is taken: the first may have been
/// made before the last frame arrived, the second was made an interval later.
const SETTLE_REPORTS: usize = 2;

#[derive(Debug, Serialize)]
pub struct Hotplug {
    /// `--iface`'s pattern.
    pub pattern: &'static str,
    pub interval_secs: f64,
    pub send_every_secs: f64,
    pub bound_secs: f64,
    /// Interfaces plugged in one after another while the probe ran.
    pub interfaces: usize,
    pub outcome: Outcome,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Measured {
        /// From the start of the call that moved an interface in to the sending of the first
        /// frame counted on it, over the interfaces with one counted: an upper bound.
        latency_secs: Summary,
        /// The same from the call's return, when the interface was there.
        after_move_secs: Summary,
        /// Interfaces whose first frame was counted: attached before it went out.
        first_frame_counted: usize,
        /// How long the `ip` call that moved each interface in took: it appeared during it.
        move_secs: Summary,
        /// Interfaces with no frame counted within `bound_secs`.
        missed: Vec<String>,
    },
    /// The binary does not follow new interfaces: it refused the pattern, or never listed the
    /// first interface created after its start. Why, in a sentence.
    Unsupported(String),
}

/// How one new interface fared.
struct Plugged {
    /// The `ip` call that moved it in.
    moved_in: Duration,
    counted: Counted,
}

enum Counted {
    /// From the `n`th frame sent (from 0), which went out `after_move`.
    Frame { after_move: Duration, n: usize },
    /// Nothing within [`BOUND`]; `listed`: whether a report listed the interface.
    Missed { listed: bool },
}

pub fn measure(plan: &Plan, probe_binary: &str) -> anyhow::Result<Hotplug> {
    let served = Netns::new("bench-hp");
    let peers = Netns::new("bench-hq");
    // One interface that matches before the start, so the run has one to attach to whether or
    // not it may start with none.
    make_pair(&peers, 0);
    move_in(&served, &peers, 0);
    let probe = ProbeProcess::start(
        probe_binary,
        &served,
        &[
            "--iface",
            PATTERN,
            "--interval",
            &INTERVAL.as_secs_f64().to_string(),
        ],
    );
    let hotplug = |outcome| Hotplug {
        pattern: PATTERN,
        interval_secs: INTERVAL.as_secs_f64(),
        send_every_secs: SEND_EVERY.as_secs_f64(),
        bound_secs: BOUND.as_secs_f64(),
        interfaces: plan.hotplug_interfaces,
        outcome,
    };
    match probe.next_report(Duration::from_secs(30)) {
        Ok(_) => {}
        Err(RecvTimeoutError::Disconnected) => {
            return Ok(hotplug(Outcome::Unsupported(format!(
                "run --iface '{PATTERN}' exited: {}",
                probe.stderr().trim()
            ))));
        }
        Err(RecvTimeoutError::Timeout) => {
            bail!(
                "run --iface '{PATTERN}' made no report within 30 s; stderr: {}",
                probe.stderr()
            )
        }
    }

    let frame = test_frames::ipv4(SENDER_V4, Ipv4Addr::LOCALHOST).build();
    let (mut latency, mut after_move, mut moves) = (Vec::new(), Vec::new(), Vec::new());
    let mut missed = Vec::new();
    let mut first_frame_counted = 0;
    for index in 1..=plan.hotplug_interfaces {
        let plugged = plug(&probe, &served, &peers, index, &frame)?;
        moves.push(plugged.moved_in.as_secs_f64());
        match plugged.counted {
            Counted::Frame { after_move: a, n } => {
                latency.push((plugged.moved_in + a).as_secs_f64());
                after_move.push(a.as_secs_f64());
                first_frame_counted += usize::from(n == 0);
            }
            Counted::Missed { listed: false } if index == 1 => {
                return Ok(hotplug(Outcome::Unsupported(format!(
                    "hp1, plugged in after the start, was not listed within {} s",
                    BOUND.as_secs_f64()
                ))));
            }
            Counted::Missed { .. } => missed.push(format!("hp{index}")),
        }
    }
    stop(probe, "hot-plugged interfaces")?;
    Ok(hotplug(Outcome::Measured {
        latency_secs: Summary::of(&latency),
        after_move_secs: Summary::of(&after_move),
        first_frame_counted,
        move_secs: Summary::of(&moves),
        missed,
    }))
}

/// Makes the veth pair `hq<index>` (up) and `hp<index>` in `peers`, where nothing serves them.
fn make_pair(peers: &Netns, index: usize) {
    peers.ip(&[
        "link",
        "add",
        &format!("hq{index}"),
        "up",
        "type",
        "veth",
        "peer",
        "name",
        &format!("hp{index}"),
    ]);
}

/// Moves `hp<index>` from `peers` into `served` and sets it up, in one call; returns when that
/// call returned and how long it took. The kernel refuses to make a veth pair with both ends up,
/// so this is also when its peer gets its carrier.
fn move_in(served: &Netns, peers: &Netns, index: usize) -> (Instant, Duration) {
    let start = Instant::now();
    peers.ip(&[
        "link",
        "set",
        &format!("hp{index}"),
        "netns",
        &served.name,
        "up",
    ]);
    let done = Instant::now();
    (done, done - start)
}

/// Plugs interface `index` in and sends loopback frames to it until the probe counts one.
fn plug(
    probe: &ProbeProcess,
    served: &Netns,
    peers: &Netns,
    index: usize,
    frame: &[u8],
) -> anyhow::Result<Plugged> {
    let name = format!("hp{index}");
    make_pair(peers, index);
    let sender = peers.enter(|| RawSender::open(&format!("hq{index}")));
    let (appeared, moved_in) = move_in(served, peers, index);
    let deadline = appeared + BOUND;
    let mut sent = Vec::new();
    let mut listed = false;
    let mut counted = false;
    while !counted && Instant::now() < deadline && sent.len() < max_frames() {
        sender.send(frame);
        let now = Instant::now();
        sent.push(now - appeared);
        let next = now + SEND_EVERY;
        // Reports that come before the next frame is due.
        loop {
            match probe.next_report(next.saturating_duration_since(Instant::now())) {
                Ok(report) => {
                    let matched = packets_matched(&report, &name);
                    listed |= matched.is_some();
                    if matched.is_some_and(|packets| packets >= 1) {
                        counted = true;
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("run exited while {name} was plugged in: {}", probe.stderr())
                }
            }
        }
    }
    if !counted {
        return Ok(Plugged {
            moved_in,
            counted: Counted::Missed { listed },
        });
    }
    let mut packets = 0;
    for _ in 0..SETTLE_REPORTS {
        let report = match probe.next_report(Duration::from_secs(10)) {
            Ok(report) => report,
            Err(error) => bail!(
                "no report after {name}'s frames ({error}): {}",
                probe.stderr()
            ),
        };
        packets = packets_matched(&report, &name).unwrap_or(0);
    }
    let Some(n) = first_counted(sent.len(), packets) else {
        bail!(
            "{name}: {packets} frames counted of {} sent: only the last ones sent can be",
            sent.len()
        );
    };
    Ok(Plugged {
        moved_in,
        counted: Counted::Frame {
            after_move: sent[n],
            n,
        },
    })
}

/// The most frames sent on one interface.
fn max_frames() -> usize {
    (BOUND.as_secs_f64() / SEND_EVERY.as_secs_f64()).ceil() as usize
}

/// `packets_matched` of `name` in a report; `None` when it is not listed.
fn packets_matched(report: &Value, name: &str) -> Option<u64> {
    report["interfaces"]
        .as_array()?
        .iter()
        .find(|interface| interface["name"] == name)?["packets_matched"]
        .as_u64()
}

/// Which of `sent` frames (from 0) was the first counted, given how many were: the last
/// `counted` ones. `None` for a count that cannot be (none, or more than sent).
fn first_counted(sent: usize, counted: u64) -> Option<usize> {
    let counted = usize::try_from(counted).ok().filter(|&n| n >= 1)?;
    sent.checked_sub(counted)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_counted_frames_are_the_last_sent() {
        assert_eq!(first_counted(4, 1), Some(3));
        assert_eq!(first_counted(4, 3), Some(1));
        assert_eq!(first_counted(4, 4), Some(0));
        assert_eq!(first_counted(4, 0), None);
        assert_eq!(first_counted(4, 5), None);
        assert_eq!(first_counted(0, 1), None);
    }

    #[test]
    fn reads_one_interfaces_count() {
        let report = json!({
            "interfaces": [
                { "name": "hp0", "packets_matched": 0 },
                { "name": "hp1", "packets_matched": 3 },
            ],
        });
        assert_eq!(packets_matched(&report, "hp1"), Some(3));
        assert_eq!(packets_matched(&report, "hp0"), Some(0));
        assert_eq!(packets_matched(&report, "hp2"), None);
        assert_eq!(packets_matched(&json!({ "type": "event" }), "hp1"), None);
    }

    #[test]
    fn frames_per_interface_are_bounded() {
        assert_eq!(max_frames(), 3000);
    }
}
