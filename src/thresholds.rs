//! Thresholds.
