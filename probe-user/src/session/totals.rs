//! A slot's counters summed over the classes: what was matched, dropped and replied.

use probe_common::{Action, Counter, LoopbackMatch, SlotCounters};
use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Matched frames that arrived (passed or dropped).
    pub packets_matched: u64,
    pub bytes_matched: u64,
    pub packets_dropped: u64,
    pub bytes_dropped: u64,
    /// Frames with a loopback source that left (with `--egress`): replies of a service reached
    /// through route_localnet.
    pub packets_replied: u64,
    pub bytes_replied: u64,
}

impl Totals {
    pub fn of(counters: &SlotCounters) -> Self {
        let mut matched = total(counters, Some(Action::Passed));
        let dropped = total(counters, Some(Action::Dropped));
        matched.add(dropped);
        let replied = total(counters, Some(Action::Replied));
        Self {
            packets_matched: matched.packets,
            bytes_matched: matched.bytes,
            packets_dropped: dropped.packets,
            bytes_dropped: dropped.bytes,
            packets_replied: replied.packets,
            bytes_replied: replied.bytes,
        }
    }
}

impl std::fmt::Display for Totals {
    /// `N matched, N dropped`, and `, N replied` when there were replies.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} matched, {} dropped",
            self.packets_matched, self.packets_dropped
        )?;
        if self.packets_replied > 0 {
            write!(f, ", {} replied", self.packets_replied)?;
        }
        Ok(())
    }
}

/// All classes, or those of one action.
pub(crate) fn total(counters: &SlotCounters, action: Option<Action>) -> Counter {
    let mut sum = Counter::default();
    for matched in LoopbackMatch::all() {
        for class_action in Action::ALL {
            if action.is_none_or(|action| action == class_action) {
                sum.add(counters.get(matched, class_action));
            }
        }
    }
    sum
}
