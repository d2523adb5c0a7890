//! Hot-plug: how soon `run --iface PATTERN` counts loopback frames on an interface created while
//! it runs.
//!
//! The probe serves a namespace of its own; the interfaces are veth pairs created there one at a
//! time, each matching the pattern, with the other end in a second namespace. The clock of an
//! interface starts when the `ip link add` that creates it (up) returns: from then on it exists
//! where the probe runs. Its peer is then set up and a loopback-addressed frame is sent from it
//! every [`SEND_EVERY`] until a report counts one (or [`BOUND`] has passed). Once the sending has
//! stopped and a report taken after it says how many frames were counted, those are the last
//! ones sent — the program sees every frame from its attachment on — so the first of them is
//! known: the latency is the time from creation to when that frame's `sendto` returned. The frame
//! before it was sent unattached, so the attachment came within one send period before.

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
pub const PATTERN: &str = "hp*";
/// The probe's `--interval`: a report every 50 ms, so one that counts a frame comes soon.
const INTERVAL: Duration = Duration::from_millis(50);
/// A loopback frame goes out this often on a new interface until one is counted...
const SEND_EVERY: Duration = Duration::from_millis(5);
/// ... for at most this long after its creation: at most `BOUND / SEND_EVERY` frames.
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
    /// Interfaces created one after another while the probe ran.
    pub interfaces: usize,
    pub outcome: Outcome,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Measured {
        /// From an interface's creation to the sending of the first frame counted on it, over
        /// the interfaces with one counted.
        latency_secs: Summary,
        /// From an interface's creation to the first frame sent on it: the floor of the latency
        /// (setting the peer up, opening a socket on it).
        first_send_secs: Summary,
        /// Interfaces with no frame counted within `bound_secs`.
        missed: Vec<String>,
    },
    /// The binary does not follow new interfaces: it refused the pattern, or never listed the
    /// first interface created after its start. Why, in a sentence.
    Unsupported(String),
}

/// How one new interface fared.
enum Plugged {
    Counted {
        latency: Duration,
        first_send: Duration,
    },
    /// Nothing counted within [`BOUND`]; `listed`: whether a report listed the interface.
    Missed { listed: bool },
}

pub fn measure(plan: &Plan, probe_binary: &str) -> anyhow::Result<Hotplug> {
    let served = Netns::new("bench-hp");
    let peers = Netns::new("bench-hq");
    // One interface that matches before the start, so the run has one to attach to whether or
    // not it may start with none.
    add_pair(&served, &peers, 0);
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
    let (mut latency, mut first_send, mut missed) = (Vec::new(), Vec::new(), Vec::new());
    for index in 1..=plan.hotplug_interfaces {
        match plug(&probe, &served, &peers, index, &frame)? {
            Plugged::Counted {
                latency: l,
                first_send: f,
            } => {
                latency.push(l.as_secs_f64());
                first_send.push(f.as_secs_f64());
            }
            Plugged::Missed { listed: false } if index == 1 => {
                return Ok(hotplug(Outcome::Unsupported(format!(
                    "hp1, created after the start, was not listed within {} s",
                    BOUND.as_secs_f64()
                ))));
            }
            Plugged::Missed { .. } => missed.push(format!("hp{index}")),
        }
    }
    stop(probe, "hot-plugged interfaces")?;
    Ok(hotplug(Outcome::Measured {
        latency_secs: Summary::of(&latency),
        first_send_secs: Summary::of(&first_send),
        missed,
    }))
}

/// Creates `hp<index>`, up, in `served`, its peer `hq<index>` (down) in `peers`; returns when
/// the `ip` command that did it has returned.
fn add_pair(served: &Netns, peers: &Netns, index: usize) -> Instant {
    served.ip(&[
        "link",
        "add",
        &format!("hp{index}"),
        "up",
        "type",
        "veth",
        "peer",
        "name",
        &format!("hq{index}"),
        "netns",
        &peers.name,
    ]);
    Instant::now()
}

/// Creates interface `index` and sends loopback frames to it until the probe counts one.
fn plug(
    probe: &ProbeProcess,
    served: &Netns,
    peers: &Netns,
    index: usize,
    frame: &[u8],
) -> anyhow::Result<Plugged> {
    let name = format!("hp{index}");
    let peer = format!("hq{index}");
    let created = add_pair(served, peers, index);
    // The kernel refuses to create a veth peer up in another namespace; it is set up here.
    peers.ip(&["link", "set", &peer, "up"]);
    let sender = peers.enter(|| RawSender::open(&peer));
    let deadline = created + BOUND;
    let mut sent = Vec::new();
    let mut listed = false;
    let mut counted = false;
    while !counted && Instant::now() < deadline && sent.len() < max_frames() {
        sender.send(frame);
        let now = Instant::now();
        sent.push(now - created);
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
                    bail!("run exited while {name} was plugged: {}", probe.stderr())
                }
            }
        }
    }
    if !counted {
        return Ok(Plugged::Missed { listed });
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
    let Some(latency) = first_counted(&sent, packets) else {
        bail!(
            "{name}: {packets} frames counted of {} sent: only the last ones sent can be",
            sent.len()
        );
    };
    Ok(Plugged::Counted {
        latency,
        first_send: sent[0],
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

/// When the first counted frame was sent, given when each was (in order) and how many were
/// counted: the last `counted` ones. `None` for a count that cannot be (none, or more than sent).
fn first_counted(sent: &[Duration], counted: u64) -> Option<Duration> {
    let counted = usize::try_from(counted).ok().filter(|&n| n >= 1)?;
    Some(sent[sent.len().checked_sub(counted)?])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_counted_frames_are_the_last_sent() {
        let sent = [4, 9, 14, 19].map(Duration::from_millis);
        assert_eq!(first_counted(&sent, 1), Some(Duration::from_millis(19)));
        assert_eq!(first_counted(&sent, 3), Some(Duration::from_millis(9)));
        assert_eq!(first_counted(&sent, 4), Some(Duration::from_millis(4)));
        assert_eq!(first_counted(&sent, 0), None);
        assert_eq!(first_counted(&sent, 5), None);
        assert_eq!(first_counted(&[], 1), None);
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
        assert_eq!(max_frames(), 600);
    }
}
