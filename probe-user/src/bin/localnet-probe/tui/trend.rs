//! Matched frames over the last minutes, per interface and per class, in buckets of a few
//! seconds: what the live view's sparklines draw.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

/// The shortest bucket: shorter ones would make a sparkline of a column's width cover seconds.
const SHORTEST_BUCKET: Duration = Duration::from_secs(5);
/// Buckets kept per series: the widest sparkline drawn.
const BUCKETS_KEPT: usize = 240;
/// From the lowest to the highest.
const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// What a series counts: an interface's matched frames, or one class of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Series {
    Interface(u32),
    /// ifindex, family, address, action.
    Class(u32, &'static str, &'static str, &'static str),
}

#[derive(Debug)]
struct History {
    /// The counter at the last reading.
    last_total: u64,
    /// The bucket `counts[0]` is.
    first_bucket: u64,
    counts: VecDeque<u64>,
}

#[derive(Debug)]
pub(crate) struct Trends {
    bucket: Duration,
    started: Instant,
    series: BTreeMap<Series, History>,
}

impl Trends {
    /// Buckets of `interval` (the refresh period), at least five seconds.
    pub(crate) fn new(interval: Duration, now: Instant) -> Self {
        Self {
            bucket: interval.max(SHORTEST_BUCKET),
            started: now,
            series: BTreeMap::new(),
        }
    }

    pub(crate) const fn bucket(&self) -> Duration {
        self.bucket
    }

    fn bucket_at(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.started);
        (since.as_nanos() / self.bucket.as_nanos()) as u64
    }

    /// Adds what `series`' counter gained since its last reading to the bucket of `now`. The
    /// first reading of a series is its baseline: a standing filter's counts from before the
    /// view started are no spike.
    pub(crate) fn record(&mut self, series: Series, total: u64, now: Instant) {
        let bucket = self.bucket_at(now);
        let history = self.series.entry(series).or_insert(History {
            last_total: total,
            first_bucket: bucket,
            counts: VecDeque::from([0]),
        });
        // A counter that went back (a slot given to a new interface) starts a new baseline.
        let gained = total.saturating_sub(history.last_total);
        history.last_total = total;
        while history.first_bucket + history.counts.len() as u64 <= bucket {
            history.counts.push_back(0);
        }
        while history.counts.len() > BUCKETS_KEPT {
            history.counts.pop_front();
            history.first_bucket += 1;
        }
        if let Some(newest) = history.counts.back_mut() {
            *newest += gained;
        }
    }

    pub(crate) fn follows(&self, series: Series) -> bool {
        self.series.contains_key(&series)
    }

    /// Forgets the series for which `keep` is false.
    pub(crate) fn retain(&mut self, keep: impl Fn(&Series) -> bool) {
        self.series.retain(|series, _| keep(series));
    }

    /// The last `width` buckets of `series` up to `now` as a sparkline, oldest first, scaled to
    /// their highest: a blank for none, at least the lowest bar for any.
    pub(crate) fn sparkline(&self, series: Series, width: usize, now: Instant) -> String {
        let newest = self.bucket_at(now);
        let counts: Vec<u64> = (0..width as u64)
            .rev()
            .map(|back| {
                let Some(bucket) = newest.checked_sub(back) else {
                    return 0;
                };
                self.series.get(&series).map_or(0, |history| {
                    bucket
                        .checked_sub(history.first_bucket)
                        .and_then(|index| history.counts.get(index as usize))
                        .copied()
                        .unwrap_or(0)
                })
            })
            .collect();
        let highest = counts.iter().copied().max().unwrap_or(0);
        counts
            .iter()
            .map(|&count| match count {
                0 => ' ',
                count => {
                    let level = (count * LEVELS.len() as u64).div_ceil(highest);
                    LEVELS[(level as usize).clamp(1, LEVELS.len()) - 1]
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sparkline_scales_to_the_highest_bucket() {
        let start = Instant::now();
        let mut trends = Trends::new(Duration::from_secs(1), start);
        let series = Series::Interface(7);
        // The first reading is the baseline: 1000 frames from before are no spike.
        trends.record(series, 1000, start);
        trends.record(series, 1008, start + Duration::from_secs(6));
        trends.record(series, 1008, start + Duration::from_secs(11));
        trends.record(series, 1009, start + Duration::from_secs(16));
        let at = start + Duration::from_secs(16);
        assert_eq!(trends.sparkline(series, 4, at), " █ ▁");
        assert_eq!(trends.sparkline(series, 6, at), "   █ ▁");
        assert_eq!(trends.sparkline(Series::Interface(8), 3, at), "   ");
    }

    #[test]
    fn old_buckets_are_forgotten_and_a_reset_counter_is_a_new_baseline() {
        let start = Instant::now();
        let mut trends = Trends::new(Duration::from_secs(5), start);
        let series = Series::Class(1, "ipv4", "source", "passed");
        trends.record(series, 0, start);
        for n in 1..=300_u64 {
            trends.record(series, n * 10, start + Duration::from_secs(5 * n));
        }
        let history = &trends.series[&series];
        assert_eq!(history.counts.len(), BUCKETS_KEPT);
        assert_eq!(history.first_bucket, 300 - BUCKETS_KEPT as u64 + 1);
        trends.record(series, 5, start + Duration::from_secs(1500));
        assert_eq!(trends.series[&series].counts.back(), Some(&10));
        trends.record(series, 7, start + Duration::from_secs(1501));
        assert_eq!(trends.series[&series].counts.back(), Some(&12));
    }
}
