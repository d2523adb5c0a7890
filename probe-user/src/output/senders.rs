//! Who sent the sampled frames of each interface over the last minute: source MAC and source
//! IP, counted from the samples (so a share of the frames, not all of them). Replies leaving
//! the interface are the host's own, not a sender's, and are not counted.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

use probe_common::Action;

use crate::output::samples::SampledFrame;

/// How far back the counts go.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Distinct senders one interface keeps per second; more (a flood from random sources) are not
/// told apart: memory stays bounded, and such senders would not make a top list anyway.
const MAX_SENDERS_PER_SECOND: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sender {
    /// `None` on layer-3 devices.
    pub mac: Option<[u8; 6]>,
    pub ip: Option<IpAddr>,
}

/// One second of one interface's samples.
#[derive(Debug)]
struct Second {
    started: Instant,
    samples: HashMap<Sender, u64>,
}

#[derive(Debug, Default)]
pub struct TopSenders {
    by_interface: BTreeMap<u32, VecDeque<Second>>,
}

impl TopSenders {
    pub fn record(&mut self, frame: &SampledFrame, now: Instant) {
        if frame.action == Action::Replied {
            return;
        }
        let sender = Sender {
            mac: frame.headers.source_mac,
            ip: frame.headers.source_ip,
        };
        let seconds = self.by_interface.entry(frame.ifindex).or_default();
        if seconds
            .back()
            .is_none_or(|last| now.duration_since(last.started) >= Duration::from_secs(1))
        {
            seconds.push_back(Second {
                started: now,
                samples: HashMap::new(),
            });
        }
        let second = seconds.back_mut().expect("pushed above");
        let full = second.samples.len() >= MAX_SENDERS_PER_SECOND;
        match second.samples.get_mut(&sender) {
            Some(count) => *count += 1,
            None if full => {}
            None => {
                second.samples.insert(sender, 1);
            }
        }
    }

    /// Forgets what is older than [`WINDOW`], and interfaces no longer served.
    pub fn expire(&mut self, now: Instant, served: impl Fn(u32) -> bool) {
        self.by_interface.retain(|ifindex, seconds| {
            while seconds
                .front()
                .is_some_and(|second| now.duration_since(second.started) > WINDOW)
            {
                seconds.pop_front();
            }
            served(*ifindex) && !seconds.is_empty()
        });
    }

    /// The `n` senders with the most samples on `ifindex` within the window, most first (ties by
    /// address, so the order is stable).
    pub fn top(&self, ifindex: u32, n: usize) -> Vec<(Sender, u64)> {
        let mut totals: HashMap<Sender, u64> = HashMap::new();
        for second in self.by_interface.get(&ifindex).into_iter().flatten() {
            for (sender, count) in &second.samples {
                *totals.entry(*sender).or_default() += count;
            }
        }
        let mut senders: Vec<(Sender, u64)> = totals.into_iter().collect();
        senders.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        senders.truncate(n);
        senders
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use bytes::Bytes;
    use probe_common::{Action, Address, Family, Framing, LoopbackMatch};

    use super::*;
    use crate::output::samples::Headers;

    fn frame(ifindex: u32, mac: u8, ip: [u8; 4]) -> SampledFrame {
        SampledFrame {
            at: std::time::SystemTime::now(),
            ifindex,
            matched: LoopbackMatch {
                family: Family::Ipv4,
                address: Address::Destination,
            },
            action: Action::Passed,
            framing: Framing::Ethernet,
            frame_len: 60,
            captured: Bytes::new(),
            headers: Headers {
                source_mac: Some([2, 0, 0, 0, 0, mac]),
                source_ip: Some(Ipv4Addr::from(ip).into()),
                ..Headers::default()
            },
        }
    }

    #[test]
    fn senders_are_ranked_per_interface_over_the_last_minute() {
        let start = Instant::now();
        let mut senders = TopSenders::default();
        for _ in 0..3 {
            senders.record(&frame(2, 1, [198, 18, 0, 1]), start);
        }
        senders.record(&frame(2, 2, [198, 18, 0, 2]), start);
        senders.record(&frame(3, 2, [198, 18, 0, 2]), start);
        let later = start + Duration::from_secs(30);
        senders.record(&frame(2, 2, [198, 18, 0, 2]), later);
        senders.record(&frame(2, 2, [198, 18, 0, 2]), later);
        senders.record(&frame(2, 2, [198, 18, 0, 2]), later);

        let top = senders.top(2, 5);
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].0.mac, top[0].1), (Some([2, 0, 0, 0, 0, 2]), 4));
        assert_eq!((top[1].0.mac, top[1].1), (Some([2, 0, 0, 0, 0, 1]), 3));
        assert_eq!(senders.top(2, 1).len(), 1);
        assert_eq!(senders.top(3, 5).len(), 1);

        // A minute after the first second, only the later samples count.
        senders.expire(start + Duration::from_secs(61), |_| true);
        assert_eq!(senders.top(2, 5), [(top[0].0, 3)]);
        assert!(senders.top(3, 5).is_empty());
        // An interface no longer served is forgotten.
        senders.expire(later, |ifindex| ifindex != 2);
        assert!(senders.top(2, 5).is_empty());
    }

    #[test]
    fn a_flood_from_random_sources_is_bounded() {
        let now = Instant::now();
        let mut senders = TopSenders::default();
        for n in 0..(MAX_SENDERS_PER_SECOND as u32 + 100) {
            senders.record(&frame(2, 1, n.to_be_bytes()), now);
        }
        assert_eq!(senders.top(2, usize::MAX).len(), MAX_SENDERS_PER_SECOND);
        assert_eq!(senders.top(2, 5).len(), 5);
    }
}
