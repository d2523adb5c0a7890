//! Link events in a burst taken together: the interfaces are listed again for them at most every
//! so often, so that deleting a thousand veths (an event every few milliseconds for seconds,
//! each listing all the interfaces left) costs a bounded share of a core, not one listing per
//! event.

use std::time::{Duration, Instant};

/// The least time between the end of one following of link events and the start of the next.
const SPACING: Duration = Duration::from_millis(100);
/// The spacing is at least this many times as long as the last following took: following then
/// takes at most a fifth of a core, however many interfaces a listing reads.
const COST_SHARE: u32 = 4;
/// The spacing is never longer than this: an interface that appears in a burst is attached
/// within it.
const SPACING_MAX: Duration = Duration::from_secs(1);

/// When the last following of link events ended and how long it took.
#[derive(Debug, Default)]
pub(super) struct Coalescer {
    last: Option<(Instant, Duration)>,
}

impl Coalescer {
    /// When link events that arrive at `now` are to be followed: `None` for at once, else the
    /// instant the spacing after the last following is over (every event until then is taken
    /// with it). Events that announce an interface not listed before (`appeared`) are followed
    /// at once whatever the spacing: it passes frames unfiltered from when it comes up until it
    /// is attached, which may be moments after it appears.
    pub(super) fn due(&self, now: Instant, appeared: bool) -> Option<Instant> {
        if appeared {
            return None;
        }
        let (ended, took) = self.last?;
        let spacing = (took * COST_SHARE).clamp(SPACING, SPACING_MAX);
        let due = ended + spacing;
        (due > now).then_some(due)
    }

    /// Link events were followed from `started` until `ended`.
    pub(super) fn followed(&mut self, started: Instant, ended: Instant) {
        self.last = Some((ended, ended.saturating_duration_since(started)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_followed_at_once() {
        assert_eq!(Coalescer::default().due(Instant::now(), false), None);
    }

    #[test]
    fn events_soon_after_a_following_wait_for_the_spacing() {
        let start = Instant::now();
        let mut coalescer = Coalescer::default();
        coalescer.followed(start, start + Duration::from_millis(2));
        let ended = start + Duration::from_millis(2);
        assert_eq!(
            coalescer.due(ended + Duration::from_millis(10), false),
            Some(ended + SPACING)
        );
        // Every event until then is due at the same instant: they are followed once.
        assert_eq!(
            coalescer.due(ended + Duration::from_millis(90), false),
            Some(ended + SPACING)
        );
        assert_eq!(coalescer.due(ended + SPACING, false), None);
    }

    #[test]
    fn a_costly_following_spaces_the_next_by_its_cost_within_a_bound() {
        let start = Instant::now();
        let mut coalescer = Coalescer::default();
        let ended = start + Duration::from_millis(60);
        coalescer.followed(start, ended);
        assert_eq!(
            coalescer.due(ended, false),
            Some(ended + Duration::from_millis(240))
        );
        let ended = ended + Duration::from_secs(2);
        coalescer.followed(ended - Duration::from_secs(2), ended);
        assert_eq!(coalescer.due(ended, false), Some(ended + SPACING_MAX));
    }

    #[test]
    fn an_interface_that_appeared_is_followed_at_once_within_the_spacing() {
        let start = Instant::now();
        let mut coalescer = Coalescer::default();
        let ended = start + Duration::from_secs(2);
        coalescer.followed(start, ended);
        assert_eq!(coalescer.due(ended, false), Some(ended + SPACING_MAX));
        assert_eq!(coalescer.due(ended, true), None);
    }
}
