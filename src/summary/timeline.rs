//! The run's timeline, bounded: one point per second until there are
//! `MAX_POINTS` of them, then neighbours are folded in pairs (each point then
//! covers twice the time), so a day-long soak keeps as many points as a
//! quarter-hour run. A point's histogram is kept encoded (~1 KB a second at
//! a few thousand requests/s): an unbounded list of them was most of what
//! grew in a long run's memory (about 3 MB an hour at 10 000 requests/s).
//!
//! Points cover aligned spans (`t` a multiple of `width_s`, widths powers of
//! two), so shards' timelines of different lengths still line up: `merge`
//! folds the finer ones to the coarsest width and adds the points exactly.

use super::{StepPoint, TimelinePoint};
use crate::metrics::{
    HistogramDecodeError, LatencySummary, decode_histogram, encode_histogram, new_histogram,
};

/// Points kept before neighbours are folded: a 17-minute run keeps its
/// seconds; an hour keeps 900 four-second points, a day 675 two-minute ones.
pub const MAX_POINTS: usize = 1024;

#[derive(Debug)]
pub struct Timeline {
    width: u64,
    limit: usize,
    /// Sorted by `t`; every point's span is `width` long.
    points: Vec<TimelinePoint>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::with_limit(MAX_POINTS)
    }
}

impl Timeline {
    pub fn with_limit(limit: usize) -> Timeline {
        Timeline {
            width: 1,
            limit: limit.max(2),
            points: Vec::new(),
        }
    }

    /// Adds one second's point (its `t` a second, its width 1). Seconds may
    /// come late or out of order: the last, partial ones do.
    pub fn push(&mut self, second: TimelinePoint) {
        let start = second.t / self.width * self.width;
        match self.points.binary_search_by_key(&start, |p| p.t) {
            Ok(i) => {
                let folded = fold(start, self.width, &[&self.points[i], &second]);
                self.points[i] = folded;
            }
            Err(i) => {
                // A span's first second is the span as it stands so far.
                let mut point = second;
                point.t = start;
                point.width_s = self.width;
                self.points.insert(i, point);
            }
        }
        while self.points.len() > self.limit {
            self.widen();
        }
    }

    /// Doubles the span of every point by folding neighbours.
    fn widen(&mut self) {
        let width = self.width * 2;
        let span = |p: &TimelinePoint| p.t / width * width;
        self.points = self
            .points
            .chunk_by(|a, b| span(a) == span(b))
            .map(|group| {
                let refs: Vec<&TimelinePoint> = group.iter().collect();
                fold(span(&group[0]), width, &refs)
            })
            .collect();
        self.width = width;
    }

    pub fn width(&self) -> u64 {
        self.width
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn into_points(self) -> Vec<TimelinePoint> {
        self.points
    }
}

/// Points folded in the engine: exact where the histograms decode (they are
/// the engine's own), else the approximation `combine_approx` documents.
fn fold(t: u64, width: u64, points: &[&TimelinePoint]) -> TimelinePoint {
    combine(t, width, points).unwrap_or_else(|_| combine_approx(t, width, points))
}

/// The points of one span (`t`, `width_s`) as one: counts added, the overall
/// percentiles from the added histograms. Steps keep no histogram of their
/// own per point, so a step's p50 is request-weighted and its p99 the highest.
/// Fails on a histogram that does not decode; points without one (older
/// summaries) make the result `combine_approx`'s.
pub fn combine(
    t: u64,
    width: u64,
    points: &[&TimelinePoint],
) -> Result<TimelinePoint, HistogramDecodeError> {
    // A span with no requests carries no histogram: it adds nothing.
    let with_requests: Vec<&&TimelinePoint> = points.iter().filter(|p| p.requests > 0).collect();
    if with_requests.is_empty() || with_requests.iter().any(|p| p.histogram.is_none()) {
        return Ok(combine_approx(t, width, points));
    }
    let mut sum = new_histogram();
    for point in &with_requests {
        if let Some(text) = &point.histogram {
            let hist = decode_histogram(text)?;
            // Auto-resizing histograms only fail to add on a count overflow.
            let _ = sum.add(hist);
        }
    }
    let all = LatencySummary::from_histogram_us(&sum);
    Ok(TimelinePoint {
        p50_ms: all.p50,
        p99_ms: all.p99,
        histogram: Some(encode_histogram(&sum)),
        ..combine_approx(t, width, points)
    })
}

/// Without histograms: the request-weighted p50 and the highest p99 (an
/// upper bound), and no histogram.
pub fn combine_approx(t: u64, width: u64, points: &[&TimelinePoint]) -> TimelinePoint {
    let weighted = |pairs: &mut dyn Iterator<Item = (f64, u64)>| {
        let (sum, n) = pairs.fold((0.0, 0u64), |(s, w), (v, n)| (s + v * n as f64, w + n));
        if n == 0 { 0.0 } else { sum / n as f64 }
    };
    let step_count = points.iter().map(|p| p.steps.len()).max().unwrap_or(0);
    let steps = (0..step_count)
        .map(|i| {
            let mine: Vec<&StepPoint> = points.iter().filter_map(|p| p.steps.get(i)).collect();
            StepPoint {
                requests: mine.iter().map(|s| s.requests).sum(),
                errors: mine.iter().map(|s| s.errors).sum(),
                p50_ms: weighted(&mut mine.iter().map(|s| (s.p50_ms, s.requests))),
                p99_ms: mine.iter().map(|s| s.p99_ms).fold(0.0, f64::max),
            }
        })
        .collect();
    TimelinePoint {
        t,
        width_s: width,
        requests: points.iter().map(|p| p.requests).sum(),
        errors: points.iter().map(|p| p.errors).sum(),
        p50_ms: weighted(&mut points.iter().map(|p| (p.p50_ms, p.requests))),
        p99_ms: points.iter().map(|p| p.p99_ms).fold(0.0, f64::max),
        steps,
        histogram: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn second(t: u64, latencies_us: &[u64]) -> TimelinePoint {
        let mut h = new_histogram();
        for &v in latencies_us {
            let _ = h.record(v);
        }
        let l = LatencySummary::from_histogram_us(&h);
        TimelinePoint {
            t,
            width_s: 1,
            requests: latencies_us.len() as u64,
            errors: t.is_multiple_of(3) as u64,
            p50_ms: l.p50,
            p99_ms: l.p99,
            steps: vec![StepPoint {
                requests: latencies_us.len() as u64,
                errors: 0,
                p50_ms: l.p50,
                p99_ms: l.p99,
            }],
            histogram: (!latencies_us.is_empty()).then(|| encode_histogram(&h)),
        }
    }

    #[test]
    fn a_short_run_keeps_its_seconds() {
        let mut t = Timeline::with_limit(8);
        for s in 0..8 {
            t.push(second(s, &[1000 + s]));
        }
        assert_eq!(t.width(), 1);
        let points = t.into_points();
        assert_eq!(
            points.iter().map(|p| p.t).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_long_run_folds_neighbours_and_stays_bounded() {
        let mut t = Timeline::with_limit(8);
        for s in 0..100 {
            t.push(second(s, &[1000; 10]));
            assert!(t.len() <= 8, "{} points at second {s}", t.len());
        }
        // 100 seconds in at most 8 points: 16-second spans.
        assert_eq!(t.width(), 16);
        let points = t.into_points();
        assert_eq!(points.iter().map(|p| p.requests).sum::<u64>(), 1000);
        assert!(points.iter().all(|p| p.t % 16 == 0 && p.width_s == 16));
        assert_eq!(points[0].requests, 160);
    }

    proptest! {
        /// However the seconds arrive (late ones included) and however often
        /// the timeline folds, the counts add up and every span's histogram
        /// holds exactly the latencies of its seconds.
        #[test]
        fn folding_is_exact(
            seconds in prop::collection::vec(prop::collection::vec(1u64..5_000_000, 0..20), 1..60),
            limit in 2usize..10,
            late in 0usize..3,
        ) {
            let mut t = Timeline::with_limit(limit);
            let n = seconds.len();
            let late = late.min(n);
            // The last `late` seconds come first, as a partial second does.
            for (s, lat) in seconds.iter().enumerate().skip(n - late).chain(seconds.iter().enumerate().take(n - late)) {
                t.push(second(s as u64, lat));
            }
            let width = t.width();
            let points = t.into_points();
            prop_assert!(points.len() <= limit);
            prop_assert!(points.windows(2).all(|w| w[0].t < w[1].t));
            let total: u64 = seconds.iter().map(|s| s.len() as u64).sum();
            prop_assert_eq!(points.iter().map(|p| p.requests).sum::<u64>(), total);
            for p in &points {
                prop_assert_eq!(p.width_s, width);
                let mut want = new_histogram();
                for s in p.t..p.t + width {
                    for &v in seconds.get(s as usize).map(|v| v.as_slice()).unwrap_or(&[]) {
                        let _ = want.record(v);
                    }
                }
                match &p.histogram {
                    Some(text) => {
                        let got = decode_histogram(text).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(got.len(), want.len());
                        prop_assert_eq!(got.value_at_quantile(0.99), want.value_at_quantile(0.99));
                        prop_assert_eq!(got.max(), want.max());
                    }
                    None => prop_assert_eq!(want.len(), 0),
                }
            }
        }
    }
}
