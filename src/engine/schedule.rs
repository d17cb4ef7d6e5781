//! When each iteration of the open model is due. Iteration `k` (counted over
//! the whole run, all threads and shards) starts when the integral of the rate
//! profile reaches `k`; each thread takes every n-th `k`, so together they
//! follow the profile exactly and ramps stay in phase.

use crate::scenario::Profile;

#[derive(Debug, Clone)]
pub struct ArrivalSchedule {
    segments: Vec<ArrivalSegment>,
}

#[derive(Debug, Clone, Copy)]
struct ArrivalSegment {
    start_s: f64,
    duration_s: f64,
    from: f64,
    to: f64,
    /// Iterations due before this segment.
    count_before: f64,
    count_after: f64,
}

impl ArrivalSchedule {
    pub fn new(profile: &Profile) -> ArrivalSchedule {
        let mut segments = Vec::new();
        let (mut start_s, mut count) = (0.0, 0.0);
        for s in &profile.segments {
            let d = s.duration.as_secs_f64();
            let n = (s.from + s.to) / 2.0 * d;
            segments.push(ArrivalSegment {
                start_s,
                duration_s: d,
                from: s.from,
                to: s.to,
                count_before: count,
                count_after: count + n,
            });
            start_s += d;
            count += n;
        }
        ArrivalSchedule { segments }
    }

    /// Iterations due over the whole profile.
    pub fn total(&self) -> u64 {
        // A hair of tolerance so 200/s × 3 s is 600, not 599.
        self.segments
            .last()
            .map_or(0, |s| (s.count_after - 1e-9).ceil().max(0.0) as u64)
    }

    /// How many iterations are due before `t_s` seconds from the start, at a
    /// segment's end (where the warmup ends) exactly as [`Self::time_of`]
    /// counts them.
    pub fn due_before(&self, t_s: f64) -> u64 {
        if t_s <= 0.0 {
            return 0;
        }
        let count = self
            .segments
            .iter()
            .find(|s| t_s < s.start_s + s.duration_s)
            .map_or_else(
                || self.segments.last().map_or(0.0, |s| s.count_after),
                |s| {
                    let tau = t_s - s.start_s;
                    s.count_before
                        + s.from * tau
                        + (s.to - s.from) * tau * tau / (2.0 * s.duration_s)
                },
            );
        (count - 1e-9).ceil().max(0.0) as u64
    }

    /// Seconds from the start at which iteration `k` is due, or `None` past the end.
    pub fn time_of(&self, k: u64) -> Option<f64> {
        let x = k as f64;
        let seg = self
            .segments
            .iter()
            .find(|s| x < s.count_after - 1e-9 && s.count_after > s.count_before)?;
        let x = (x - seg.count_before).max(0.0);
        // Count within the segment: from·τ + (to − from)·τ²/(2d) = x. The
        // root is written so it stays exact when the rate is flat or starts at 0.
        let a = (seg.to - seg.from) / (2.0 * seg.duration_s);
        let b = seg.from;
        let tau = if x == 0.0 {
            0.0
        } else {
            let disc = (b * b + 4.0 * a * x).max(0.0);
            2.0 * x / (b + disc.sqrt())
        };
        Some(seg.start_s + tau.clamp(0.0, seg.duration_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::plan::Segment;
    use proptest::prelude::*;
    use std::time::Duration;

    fn profile(parts: &[(f64, f64, u64)]) -> Profile {
        Profile {
            segments: parts
                .iter()
                .map(|(f, t, ms)| Segment {
                    from: *f,
                    to: *t,
                    duration: Duration::from_millis(*ms),
                })
                .collect(),
        }
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let s = ArrivalSchedule::new(&Profile::constant(200.0, Duration::from_secs(3)));
        assert_eq!(s.total(), 600);
        assert_eq!(s.time_of(0), Some(0.0));
        assert!((s.time_of(100).unwrap() - 0.5).abs() < 1e-9);
        assert!(s.time_of(599).is_some());
        assert_eq!(s.time_of(600), None);
    }

    #[test]
    fn ramp_from_zero_follows_the_integral() {
        // 0 → 100/s over 10 s: 500 iterations, half of them in the last 2.93 s.
        let s = ArrivalSchedule::new(&profile(&[(0.0, 100.0, 10_000)]));
        assert_eq!(s.total(), 500);
        let t = s.time_of(250).unwrap();
        assert!((t - 50f64.sqrt()).abs() < 1e-6, "{t}");
    }

    proptest! {
        #[test]
        fn times_are_monotonic_and_within_the_profile(
            parts in proptest::collection::vec((0.0f64..500.0, 0.0f64..500.0, 1u64..3000), 1..4)
        ) {
            let p = profile(&parts);
            let s = ArrivalSchedule::new(&p);
            let end = p.duration().as_secs_f64();
            let mut last = -1.0;
            for k in 0..s.total().min(3000) {
                if let Some(t) = s.time_of(k) {
                    prop_assert!(t >= last - 1e-9, "k={} t={} last={}", k, t, last);
                    prop_assert!(t <= end + 1e-9);
                    last = t;
                }
            }
        }

        /// The warmup's iterations are the first `due_before(W)`: exactly
        /// those `time_of` puts before the warmup's end.
        #[test]
        fn due_before_a_segment_end_counts_what_time_of_puts_before_it(
            warm_rate in 0.5f64..400.0,
            warm_s in 1u64..5,
            parts in proptest::collection::vec((0.0f64..400.0, 0.0f64..400.0, 1u64..3000), 1..3)
        ) {
            let mut p = profile(&parts);
            p.segments.insert(0, Segment { from: warm_rate, to: warm_rate, duration: Duration::from_secs(warm_s) });
            let s = ArrivalSchedule::new(&p);
            let w = warm_s as f64;
            let before = s.due_before(w);
            let by_time = (0..s.total().min(5000)).filter(|&k| s.time_of(k).is_some_and(|t| t < w)).count() as u64;
            prop_assert_eq!(before, by_time);
            prop_assert!(s.time_of(before).is_none_or(|t| t >= w - 1e-9));
        }

        #[test]
        fn count_matches_the_integral(rate in 1.0f64..5000.0, ms in 100u64..5000) {
            let s = ArrivalSchedule::new(&Profile::constant(rate, Duration::from_millis(ms)));
            let expected = rate * ms as f64 / 1000.0;
            prop_assert!((s.total() as f64 - expected).abs() <= 1.0);
        }
    }
}
