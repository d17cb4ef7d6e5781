//! HDR histograms: construction, percentiles in milliseconds, and a lossless
//! text form (V2 + deflate, base64) so saved summaries can be merged later.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Microsecond values with 3 significant digits; grows as needed, so no
/// latency is ever out of range.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).unwrap_or_else(|_| unreachable_histogram())
}

#[cold]
fn unreachable_histogram() -> Histogram<u64> {
    // `Histogram::new(3)` only fails for sigfig > 5; keep a total function anyway.
    Histogram::new_with_bounds(1, u64::MAX / 2, 2).unwrap_or_else(|_| std::process::abort())
}

pub fn encode_histogram(hist: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    match V2DeflateSerializer::new().serialize(hist, &mut bytes) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not a serialized HDR histogram: {0}")]
pub struct HistogramDecodeError(String);

pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, HistogramDecodeError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| HistogramDecodeError(e.to_string()))?;
    let mut hist: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| HistogramDecodeError(format!("{e:?}")))?;
    hist.auto(true);
    Ok(hist)
}

/// Latency percentiles in milliseconds, as every report shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// The figure a threshold or a rule names.
    pub fn stat(&self, stat: crate::thresholds::Stat) -> f64 {
        use crate::thresholds::Stat;
        match stat {
            Stat::Min => self.min,
            Stat::Mean => self.mean,
            Stat::P50 => self.p50,
            Stat::P90 => self.p90,
            Stat::P95 => self.p95,
            Stat::P99 => self.p99,
            Stat::P999 => self.p999,
            Stat::Max => self.max,
        }
    }

    pub fn from_histogram_us(hist: &Histogram<u64>) -> LatencySummary {
        if hist.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            min: ms(hist.min()),
            mean: hist.mean() / 1000.0,
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p95: ms(hist.value_at_quantile(0.95)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn serialization_round_trips(values in proptest::collection::vec(1u64..10_000_000_000, 0..500)) {
            let mut hist = new_histogram();
            for v in &values {
                hist.record(*v).unwrap();
            }
            let back = decode_histogram(&encode_histogram(&hist)).unwrap();
            prop_assert_eq!(back.len(), hist.len());
            prop_assert_eq!(back.max(), hist.max());
            prop_assert_eq!(back.min(), hist.min());
            for q in [0.5, 0.9, 0.99, 0.999] {
                prop_assert_eq!(back.value_at_quantile(q), hist.value_at_quantile(q));
            }
            prop_assert!(back.iter_recorded().zip(hist.iter_recorded()).all(|(a, b)| a.value_iterated_to() == b.value_iterated_to() && a.count_at_value() == b.count_at_value()));
        }

        #[test]
        fn merging_any_split_equals_recording_all(values in proptest::collection::vec(1u64..100_000_000, 0..400), cut in 0usize..400) {
            let cut = cut.min(values.len());
            let (mut left, mut right, mut all) = (new_histogram(), new_histogram(), new_histogram());
            for v in &values[..cut] { left.record(*v).unwrap(); }
            for v in &values[cut..] { right.record(*v).unwrap(); }
            for v in &values { all.record(*v).unwrap(); }
            // Through the serialized form, as shards' summaries are merged.
            let mut merged = decode_histogram(&encode_histogram(&left)).unwrap();
            merged.add(decode_histogram(&encode_histogram(&right)).unwrap()).unwrap();
            prop_assert_eq!(merged.len(), all.len());
            prop_assert_eq!(LatencySummary::from_histogram_us(&merged), LatencySummary::from_histogram_us(&all));
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("aGVsbG8=").is_err());
    }
}
